//! Advertisers' reports: a campaign's counters by day and slot, and their CSV export.

use chrono::NaiveDate;

use crate::store::Counts;

/// The CSV export's header (contract section 12).
pub const CSV_HEADER: [&str; 9] = [
    "date",
    "slot",
    "served",
    "impressions",
    "viewable",
    "clicks",
    "ctr",
    "invalid_impressions",
    "invalid_clicks",
];

/// clicks / impressions, rounded to four decimals; 0 without impressions.
pub fn ctr(clicks: u64, impressions: u64) -> f64 {
    if impressions == 0 {
        return 0.0;
    }
    (clicks as f64 / impressions as f64 * 10_000.0).round() / 10_000.0
}

/// One reporting day: its counters by slot, in slot order.
#[derive(Debug, Clone, PartialEq)]
pub struct DayReport {
    /// The reporting day.
    pub date: NaiveDate,
    /// Each slot's counters that day.
    pub slots: Vec<(String, Counts)>,
}

/// Lays out a campaign's counters as one entry per day of `dates` and, within each day, one
/// per slot: every slot the campaign has counters in over the period, plus `always` (the slots
/// it runs in now), so that each slot's series has a value, zero or not, on every day.
pub fn by_day_and_slot(
    dates: &[NaiveDate],
    per_day: Vec<Vec<(String, Counts)>>,
    always: &[&str],
) -> Vec<DayReport> {
    let mut slots: Vec<String> = always.iter().map(|s| (*s).to_owned()).collect();
    for day in &per_day {
        slots.extend(day.iter().map(|(slot, _)| slot.clone()));
    }
    slots.sort();
    slots.dedup();
    dates
        .iter()
        .zip(per_day.into_iter().chain(std::iter::repeat(Vec::new())))
        .map(|(&date, day)| DayReport {
            date,
            slots: slots
                .iter()
                .map(|slot| {
                    let counts = day
                        .iter()
                        .find(|(s, _)| s == slot)
                        .map(|(_, c)| *c)
                        .unwrap_or_default();
                    (slot.clone(), counts)
                })
                .collect(),
        })
        .collect()
}

/// Writes the report as CSV: the header line, then one line per day and slot, fields quoted
/// as RFC 4180 says (a slot name with a comma, a quote or a line break is quoted, its quotes
/// doubled) and lines ended by CRLF.
pub fn write_csv(days: &[DayReport]) -> Vec<u8> {
    // Writing into memory cannot fail, and every record has the header's nine fields.
    write_records(days).expect("a CSV written into memory")
}

fn write_records(days: &[DayReport]) -> Result<Vec<u8>, csv::Error> {
    let mut writer = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    writer.write_record(CSV_HEADER)?;
    for day in days {
        let date = day.date.to_string();
        for (slot, c) in &day.slots {
            writer.write_record([
                date.as_str(),
                slot.as_str(),
                &c.served.to_string(),
                &c.impressions.to_string(),
                &c.viewable.to_string(),
                &c.clicks.to_string(),
                &format!("{:.4}", ctr(c.clicks, c.impressions)),
                &c.invalid.total().impressions.to_string(),
                &c.invalid.total().clicks.to_string(),
            ])?;
        }
    }
    writer
        .into_inner()
        .map_err(|e| csv::Error::from(e.into_error()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(impressions: u64, clicks: u64) -> Counts {
        Counts {
            served: impressions + 1,
            impressions,
            viewable: impressions / 2,
            clicks,
            invalid: Default::default(),
        }
    }

    fn date(day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, day).unwrap()
    }

    #[test]
    fn every_day_has_a_line_for_every_slot_of_the_period_and_of_the_campaign() {
        let days = by_day_and_slot(
            &[date(1), date(2)],
            vec![vec![("Publicité 2".into(), counts(10, 1))], vec![]],
            &["banner"],
        );
        assert_eq!(days.len(), 2);
        let slots = |d: &DayReport| d.slots.iter().map(|(s, _)| s.clone()).collect::<Vec<_>>();
        assert_eq!(slots(&days[0]), ["Publicité 2", "banner"]);
        assert_eq!(slots(&days[1]), ["Publicité 2", "banner"]);
        assert_eq!(days[0].slots[0].1, counts(10, 1));
        assert_eq!(days[1].slots[0].1, Counts::default());
    }

    #[test]
    fn slot_names_with_commas_quotes_and_accents_are_quoted_as_rfc_4180_says() {
        let mut with_invalid = counts(3, 1);
        with_invalid.add_field("invalid.bot.impressions", 2);
        with_invalid.add_field("invalid.rate.impressions", 1);
        with_invalid.add_field("invalid.too_fast.clicks", 1);
        let days = by_day_and_slot(
            &[date(30)],
            vec![vec![
                ("Publicité 2, \"haut\"".into(), with_invalid),
                ("Publicité 3".into(), counts(0, 0)),
            ]],
            &[],
        );
        let csv = String::from_utf8(write_csv(&days)).unwrap();
        assert_eq!(
            csv,
            "date,slot,served,impressions,viewable,clicks,ctr,invalid_impressions,invalid_clicks\r\n\
             2026-11-30,\"Publicité 2, \"\"haut\"\"\",4,3,1,1,0.3333,3,1\r\n\
             2026-11-30,Publicité 3,1,0,0,0,0.0000,0,0\r\n"
        );
    }
}
