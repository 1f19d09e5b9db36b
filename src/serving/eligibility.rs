//! Whether one campaign may be served for one request: every rule that can set a campaign
//! aside, in the order `explain` reports the first one that does.
//!
//! A new rule is a field of [`PageRequest`] (or of its [`Viewer`](super::Viewer)), a variant
//! of [`Ineligible`] and a few lines in [`eligibility`].

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::PageRequest;
use crate::inventory::{Priority, Status};
use crate::snapshot::{CampaignIndex, CompiledCampaign, SlotMember, Snapshot};
use crate::targeting::{PageShown, SizeChoice};

/// Why a campaign was not eligible for a decision: a closed set, which `explain` reports as
/// `reason` in snake_case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Ineligible {
    /// Its status is `paused`.
    Paused,
    /// Its flight has not started.
    NotStarted,
    /// Its flight has ended.
    Ended,
    /// The page already shows it, or asked not to see it.
    Excluded,
    /// The page shows, or asked not to see, a campaign of its advertiser or one sharing an
    /// exclusion label (competitive separation).
    Separation,
    /// It targets countries and the request's is not one of them, or is unknown.
    Country,
    /// The request falls outside every window of its schedule.
    Schedule,
    /// The request's keywords do not match its targeting.
    Keywords,
    /// It has no creative for the size the slot takes at the request's width.
    Size,
    /// A lifetime or daily cap is reached.
    Capped,
    /// It is ahead of its even-delivery line.
    Paced,
    /// The viewer has seen it as often as its frequency cap allows.
    FrequencyCapped,
}

/// Delivery rules that need state outside the snapshot (caps, pacing, frequency).
pub trait DeliveryCheck {
    /// Whether the campaign at `index` may be served now.
    fn check(&self, index: CampaignIndex, campaign: &CompiledCampaign) -> Result<(), Ineligible>;
}

/// What a decision depends on besides the inventory.
#[derive(Clone, Copy)]
pub struct Context<'a> {
    /// The page request: its time, its keywords, its viewer.
    pub page: &'a PageRequest<'a>,
    /// Campaign indexes that must not be chosen: the page's exclusions, and the campaigns
    /// chosen for its earlier slots.
    pub excluded: &'a [CampaignIndex],
    /// The advertisers and exclusion labels the page shows already or asked not to see.
    pub shown: &'a PageShown,
    /// The size the slot takes for this request.
    pub size: SizeChoice,
    /// Caps, pacing and frequency, when they apply.
    pub delivery: Option<&'a dyn DeliveryCheck>,
    /// Only `house` campaigns may be chosen (a known bot's request).
    pub house_only: bool,
}

/// Whether the campaign of a slot's `member` may be served in this context.
pub fn eligibility(
    snapshot: &Snapshot,
    member: &SlotMember,
    ctx: &Context<'_>,
) -> Result<(), Ineligible> {
    let index = member.campaign;
    let compiled = snapshot.campaign_at(index);
    let campaign = &compiled.campaign;
    let now = ctx.page.now;
    if campaign.status == Status::Paused {
        return Err(Ineligible::Paused);
    }
    if campaign.start.is_some_and(|start| now < start) {
        return Err(Ineligible::NotStarted);
    }
    if campaign.end.is_some_and(|end| now >= end) {
        return Err(Ineligible::Ended);
    }
    if ctx.excluded.contains(&index) || (ctx.house_only && campaign.priority != Priority::House) {
        return Err(Ineligible::Excluded);
    }
    if !ctx.shown.admits(compiled) {
        return Err(Ineligible::Separation);
    }
    if !compiled.countries.is_empty()
        && !ctx
            .page
            .country
            .is_some_and(|country| compiled.countries.contains(&country))
    {
        return Err(Ineligible::Country);
    }
    if compiled
        .schedule
        .as_ref()
        .is_some_and(|schedule| !schedule.is_open(ctx.page.local))
    {
        return Err(Ineligible::Schedule);
    }
    if !keywords_match(compiled, &ctx.page.keywords) {
        return Err(Ineligible::Keywords);
    }
    if member.creatives_for(ctx.size).is_none() {
        return Err(Ineligible::Size);
    }
    match ctx.delivery {
        Some(delivery) => delivery.check(index, compiled),
        None => Ok(()),
    }
}

fn keywords_match(campaign: &CompiledCampaign, keywords: &[String]) -> bool {
    let any_ok = campaign.keywords_any.is_empty()
        || campaign.keywords_any.iter().any(|k| keywords.contains(k));
    let none_ok = !campaign.keywords_none.iter().any(|k| keywords.contains(k));
    any_ok && none_ok
}

/// Whether a campaign could be served at `now` whatever the request: active and in flight.
pub(crate) fn in_flight(snapshot: &Snapshot, index: CampaignIndex, now: DateTime<Utc>) -> bool {
    let campaign = &snapshot.campaign_at(index).campaign;
    campaign.status == Status::Active
        && campaign.start.is_none_or(|s| now >= s)
        && campaign.end.is_none_or(|e| now < e)
}
