//! Advertisers' counters: one campaign's stats by day and slot (JSON, or CSV for
//! spreadsheets), and the caller's campaigns.

use actix_web::http::header::{
    ContentDisposition, DispositionParam, DispositionType, HeaderValue, CONTENT_TYPE,
};
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{Days, NaiveDate};
use serde::{Deserialize, Serialize};

use super::auth::{caller, Caller};
use super::errors::allow;
use crate::error::ApiError;
use crate::inventory::CampaignId;
use crate::ivt::Reason;
use crate::reporting::{by_day_and_slot, ctr, write_csv, DayReport};
use crate::state::AppState;
use crate::store::{Backend, Counts, Tally};

/// The longest range one stats request covers.
const MAX_DAYS: i64 = 366;
/// The default range: the last 30 days, today included.
const DEFAULT_DAYS: u64 = 30;

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        super::resource("/v1/campaigns/{id}/stats")
            .route(web::get().to(campaign_stats))
            .default_service(allow("GET")),
    )
    .service(
        super::resource("/v1/campaigns/{id}/stats.csv")
            .route(web::get().to(campaign_stats_csv))
            .default_service(allow("GET")),
    )
    .service(
        super::resource("/v1/advertisers/me/campaigns")
            .route(web::get().to(my_campaigns))
            .default_service(allow("GET")),
    );
}

#[derive(Debug, Deserialize)]
struct Range {
    from: Option<String>,
    to: Option<String>,
}

/// Counters with the click-through rate.
#[derive(Debug, Serialize)]
struct Totals {
    served: u64,
    impressions: u64,
    viewable: u64,
    clicks: u64,
    ctr: f64,
    invalid: Invalid,
}

impl From<Counts> for Totals {
    fn from(c: Counts) -> Self {
        Self {
            served: c.served,
            impressions: c.impressions,
            viewable: c.viewable,
            clicks: c.clicks,
            ctr: ctr(c.clicks, c.impressions),
            invalid: Invalid::from(&c),
        }
    }
}

/// Invalid traffic, counted apart from the valid counters beside it (contract section 8);
/// in a campaign's `totals`, also by reason.
#[derive(Debug, Serialize)]
struct Invalid {
    #[serde(flatten)]
    total: Tally,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasons: Option<serde_json::Map<String, serde_json::Value>>,
}

impl Invalid {
    fn from(c: &Counts) -> Self {
        Self {
            total: c.invalid.total(),
            reasons: None,
        }
    }

    fn with_reasons(c: &Counts) -> Self {
        let reasons = Reason::ALL
            .iter()
            .map(|r| {
                let tally = serde_json::to_value(c.invalid.reason(*r)).expect("plain counters");
                (r.as_str().to_owned(), tally)
            })
            .collect();
        Self {
            total: c.invalid.total(),
            reasons: Some(reasons),
        }
    }
}

#[derive(Debug, Serialize)]
struct Day {
    date: NaiveDate,
    #[serde(flatten)]
    totals: Totals,
    /// The day's counters by slot (an addition to the contract: the dashboard's CTR per slot).
    slots: Vec<DaySlot>,
}

#[derive(Debug, Serialize)]
struct DaySlot {
    slot: String,
    #[serde(flatten)]
    totals: Totals,
}

#[derive(Debug, Serialize)]
struct SlotTotals {
    slot: String,
    served: u64,
    impressions: u64,
    viewable: u64,
    clicks: u64,
    invalid: Invalid,
}

fn parse_day(raw: &str, name: &str) -> Result<NaiveDate, ApiError> {
    NaiveDate::parse_from_str(raw, "%Y-%m-%d").map_err(|_| {
        ApiError::bad_request(
            "invalid_date",
            format!("{name} must be a date written YYYY-MM-DD"),
        )
    })
}

fn days(state: &AppState, range: &Range) -> Result<(NaiveDate, NaiveDate), ApiError> {
    stats_range(state.today(), range.from.as_deref(), range.to.as_deref())
}

/// The days a stats request covers: `to` defaults to `today`, `from` to 30 days before `to`.
/// Any date chrono can write is taken, down to its smallest (the default range is then cut at
/// it rather than overflowing).
fn stats_range(
    today: NaiveDate,
    from: Option<&str>,
    to: Option<&str>,
) -> Result<(NaiveDate, NaiveDate), ApiError> {
    let to = match to {
        Some(raw) => parse_day(raw, "to")?,
        None => today,
    };
    let from = match from {
        Some(raw) => parse_day(raw, "from")?,
        None => to
            .checked_sub_days(Days::new(DEFAULT_DAYS - 1))
            .unwrap_or(NaiveDate::MIN),
    };
    if from > to {
        return Err(ApiError::bad_request(
            "invalid_range",
            "from must not be after to",
        ));
    }
    if (to - from).num_days() >= MAX_DAYS {
        return Err(ApiError::bad_request(
            "invalid_range",
            format!("a range covers at most {MAX_DAYS} days"),
        ));
    }
    Ok((from, to))
}

/// A campaign's counters over the requested period, for a caller allowed to see them.
struct Report {
    campaign: CampaignId,
    from: NaiveDate,
    to: NaiveDate,
    days: Vec<DayReport>,
}

async fn report(
    req: &HttpRequest,
    state: &AppState,
    id: &str,
    range: &Range,
) -> Result<Report, ApiError> {
    let caller = caller(req, state).await?;
    let not_found =
        || ApiError::not_found("unknown_campaign", "there is no such campaign for this key");
    let snapshot = state.catalog.snapshot().ok_or(ApiError::NotReady)?;
    // A malformed id names no campaign: 404 as well.
    let campaign = CampaignId::parse(id)
        .ok()
        .and_then(|id| snapshot.campaign(&id))
        .ok_or_else(not_found)?;
    // Another advertiser's campaign answers exactly as a missing one: ids are not disclosed.
    if !caller.may_see(&campaign.campaign.advertiser_id) {
        return Err(not_found());
    }
    let (from, to) = days(state, range)?;
    let dates: Vec<NaiveDate> = from.iter_days().take_while(|d| *d <= to).collect();
    let per_day = state
        .store
        .daily_stats(&campaign.campaign.id, &dates)
        .await?;
    let current: Vec<&str> = campaign.campaign.slots.iter().map(|s| s.as_str()).collect();
    Ok(Report {
        campaign: campaign.campaign.id.clone(),
        from,
        to,
        days: by_day_and_slot(&dates, per_day, &current),
    })
}

async fn campaign_stats(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
    range: web::Query<Range>,
) -> Result<HttpResponse, ApiError> {
    let report = report(&req, &state, &id, &range).await?;
    let mut total = Counts::default();
    let mut by_slot: Vec<(String, Counts)> = Vec::new();
    let mut days_out = Vec::new();
    for day_report in report.days {
        let mut day = Counts::default();
        let mut slots = Vec::new();
        for (slot, counts) in day_report.slots {
            day.add(&counts);
            // Slots of the campaign with nothing over the whole period stay out of `slots`,
            // as they always have; each day lists every slot, for the series.
            if counts != Counts::default() {
                match by_slot.iter_mut().find(|(s, _)| *s == slot) {
                    Some((_, c)) => c.add(&counts),
                    None => by_slot.push((slot.clone(), counts)),
                }
            }
            slots.push(DaySlot {
                slot,
                totals: counts.into(),
            });
        }
        total.add(&day);
        days_out.push(Day {
            date: day_report.date,
            totals: day.into(),
            slots,
        });
    }
    by_slot.sort_by(|a, b| a.0.cmp(&b.0));
    let slots: Vec<SlotTotals> = by_slot
        .into_iter()
        .map(|(slot, c)| SlotTotals {
            slot,
            served: c.served,
            impressions: c.impressions,
            viewable: c.viewable,
            clicks: c.clicks,
            invalid: Invalid::from(&c),
        })
        .collect();
    let mut totals = Totals::from(total);
    totals.invalid = Invalid::with_reasons(&total);
    Ok(HttpResponse::Ok()
        .insert_header(super::no_store())
        .json(serde_json::json!({
            "campaign_id": report.campaign.as_str(),
            "from": report.from,
            "to": report.to,
            "totals": totals,
            "days": days_out,
            "slots": slots,
        })))
}

/// The same counters as [`campaign_stats`], one CSV line per day and slot, as a download.
async fn campaign_stats_csv(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
    range: web::Query<Range>,
) -> Result<HttpResponse, ApiError> {
    let report = report(&req, &state, &id, &range).await?;
    let body = write_csv(&report.days);
    // Campaign ids are ASCII letters, digits, `-`, `_` and `.`: the name needs no escaping.
    let filename = format!(
        "regie-{}-{}-{}.csv",
        report.campaign, report.from, report.to
    );
    Ok(HttpResponse::Ok()
        .insert_header(super::no_store())
        .insert_header((
            CONTENT_TYPE,
            HeaderValue::from_static("text/csv; charset=utf-8"),
        ))
        .insert_header(ContentDisposition {
            disposition: DispositionType::Attachment,
            parameters: vec![DispositionParam::Filename(filename)],
        })
        .body(body))
}

async fn my_campaigns(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let caller = caller(&req, &state).await?;
    let snapshot = state.catalog.snapshot().ok_or(ApiError::NotReady)?;
    let campaigns: Vec<_> = snapshot
        .campaigns
        .iter()
        .filter(|c| caller.may_see(&c.campaign.advertiser_id))
        .collect();
    let ids: Vec<CampaignId> = campaigns.iter().map(|c| c.campaign.id.clone()).collect();
    let totals = state.store.totals(&ids).await?;
    let list: Vec<_> = campaigns
        .iter()
        .zip(totals)
        .map(|(c, t)| {
            serde_json::json!({
                "campaign_id": c.campaign.id.as_str(),
                "advertiser_id": c.campaign.advertiser_id.as_str(),
                "status": c.campaign.status,
                "priority": c.campaign.priority,
                "start": c.campaign.start,
                "end": c.campaign.end,
                "totals": Totals::from(t),
            })
        })
        .collect();
    let advertiser_id = match &caller {
        Caller::Admin => None,
        Caller::Advertiser(id) => Some(id.as_str()),
    };
    Ok(HttpResponse::Ok()
        .insert_header(super::no_store())
        .json(serde_json::json!({
            "advertiser_id": advertiser_id,
            "campaigns": list,
        })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Datelike;
    use proptest::prelude::*;

    fn day(raw: &str) -> NaiveDate {
        raw.parse().unwrap()
    }

    #[test]
    fn the_default_range_is_the_last_thirty_days_today_included() {
        let (from, to) = stats_range(day("2026-11-30"), None, None).unwrap();
        assert_eq!((from, to), (day("2026-11-01"), day("2026-11-30")));
    }

    #[test]
    fn the_earliest_date_chrono_writes_is_a_range_not_a_panic() {
        let (from, to) = stats_range(day("2026-11-30"), None, Some("-262143-01-01")).unwrap();
        assert_eq!(from, NaiveDate::MIN);
        assert_eq!(to, day("-262143-01-01"));
        let latest = NaiveDate::MAX.to_string();
        assert!(stats_range(day("2026-11-30"), Some(&latest), Some(&latest)).is_ok());
    }

    /// A date written as chrono writes it, over chrono's whole range.
    fn any_date() -> impl Strategy<Value = NaiveDate> {
        (NaiveDate::MIN.num_days_from_ce()..=NaiveDate::MAX.num_days_from_ce())
            .prop_map(|n| NaiveDate::from_num_days_from_ce_opt(n).unwrap())
    }

    /// Text that is sometimes a date, sometimes nearly one, sometimes anything.
    fn date_text() -> impl Strategy<Value = String> {
        prop_oneof![
            any_date().prop_map(|d| d.to_string()),
            "[+-]?[0-9]{1,7}-[0-9]{1,3}-[0-9]{1,3}",
            any::<String>(),
        ]
    }

    proptest! {
        #[test]
        fn any_from_and_to_give_a_range_of_at_most_366_days_or_a_clear_error(
            today in any_date(),
            from in proptest::option::of(date_text()),
            to in proptest::option::of(date_text()),
        ) {
            match stats_range(today, from.as_deref(), to.as_deref()) {
                Ok((from, to)) => {
                    prop_assert!(from <= to);
                    prop_assert!((to - from).num_days() < MAX_DAYS);
                }
                Err(ApiError::BadRequest { code, .. }) => {
                    prop_assert!(code == "invalid_date" || code == "invalid_range");
                }
                Err(other) => prop_assert!(false, "unexpected error {other:?}"),
            }
        }
    }
}
