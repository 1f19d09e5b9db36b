//! The data the stores exchange with the rest of regie.

use chrono::NaiveDate;
use serde::Serialize;
use ulid::Ulid;

use crate::inventory::{CampaignId, SlotName};
use crate::ivt::Reason;
use crate::tracking::EventKind;

/// The inventory document as stored, with its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredInventory {
    /// Monotonic version, incremented by every write.
    pub version: u64,
    /// The JSON document.
    pub json: String,
}

/// The outcome of a versioned inventory write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// Written under this new version.
    Written(u64),
    /// The caller's expected version is not the current one.
    Conflict {
        /// The current version.
        current: u64,
    },
}

/// The four counters of a campaign, slot or day.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Served decisions.
    pub served: u64,
    /// Impressions.
    pub impressions: u64,
    /// Viewable impressions.
    pub viewable: u64,
    /// Clicks.
    pub clicks: u64,
    /// Invalid decisions and events, counted apart from the four above (contract section 8).
    #[serde(skip)]
    pub invalid: InvalidCounts,
}

impl Counts {
    /// Adds `n` to the counter named `field`: `served`, `impressions`, `viewable`, `clicks`,
    /// or an invalid one, `invalid.{reason}.{counter}` ([`invalid_field`]).
    pub fn add_field(&mut self, field: &str, n: u64) {
        match field {
            "served" => self.served += n,
            "impressions" => self.impressions += n,
            "viewable" => self.viewable += n,
            "clicks" => self.clicks += n,
            _ => {
                let Some((reason, counter)) = field
                    .strip_prefix("invalid.")
                    .and_then(|rest| rest.split_once('.'))
                else {
                    return;
                };
                if let Some(reason) = Reason::parse(reason) {
                    self.invalid.by_reason[reason as usize].add_field(counter, n);
                }
            }
        }
    }

    /// Adds another set of counters.
    pub fn add(&mut self, other: &Counts) {
        self.served += other.served;
        self.impressions += other.impressions;
        self.viewable += other.viewable;
        self.clicks += other.clicks;
        for (mine, theirs) in self
            .invalid
            .by_reason
            .iter_mut()
            .zip(&other.invalid.by_reason)
        {
            mine.add(theirs);
        }
    }
}

/// Invalid decisions and events, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InvalidCounts {
    /// Indexed by [`Reason`] in the order of [`Reason::ALL`].
    pub by_reason: [Tally; 4],
}

impl InvalidCounts {
    /// The counters of one reason.
    pub fn reason(&self, reason: Reason) -> Tally {
        self.by_reason[reason as usize]
    }

    /// Every reason's counters added up.
    pub fn total(&self) -> Tally {
        let mut total = Tally::default();
        self.by_reason.iter().for_each(|t| total.add(t));
        total
    }
}

/// Four counters without anything else: one reason's invalid traffic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    /// Decisions served.
    pub served: u64,
    /// Impressions.
    pub impressions: u64,
    /// Viewable impressions.
    pub viewable: u64,
    /// Clicks.
    pub clicks: u64,
}

impl Tally {
    fn add_field(&mut self, field: &str, n: u64) {
        match field {
            "served" => self.served += n,
            "impressions" => self.impressions += n,
            "viewable" => self.viewable += n,
            "clicks" => self.clicks += n,
            _ => {}
        }
    }

    fn add(&mut self, other: &Tally) {
        self.served += other.served;
        self.impressions += other.impressions;
        self.viewable += other.viewable;
        self.clicks += other.clicks;
    }
}

/// The stored name of an invalid counter: `invalid.{reason}.{counter}`, beside the valid
/// `{counter}` in the same hashes, so reading stats reads both at once.
pub fn invalid_field(reason: Reason, counter: &str) -> String {
    format!("invalid.{}.{counter}", reason.as_str())
}

/// The stored name of a counter, valid or invalid.
pub fn stored_field(
    invalid: Option<Reason>,
    counter: &'static str,
) -> std::borrow::Cow<'static, str> {
    match invalid {
        None => counter.into(),
        Some(reason) => invalid_field(reason, counter).into(),
    }
}

/// The counter field an event kind increments.
pub fn counter_field(kind: EventKind) -> &'static str {
    match kind {
        EventKind::Impression => "impressions",
        EventKind::Viewable => "viewable",
        EventKind::Click => "clicks",
    }
}

/// Served decisions of one campaign in one slot on one reporting day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedCount {
    /// The campaign.
    pub campaign: CampaignId,
    /// The slot.
    pub slot: SlotName,
    /// The reporting day.
    pub day: NaiveDate,
    /// How many decisions.
    pub count: u64,
    /// Why these decisions are invalid, if they are (counted apart).
    pub invalid: Option<Reason>,
}

/// One tracking event, counted at most once per decision and kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Impression, viewable or click.
    pub kind: EventKind,
    /// The decision it reports.
    pub decision_id: Ulid,
    /// The campaign.
    pub campaign: CampaignId,
    /// The slot.
    pub slot: SlotName,
    /// The reporting day of the event.
    pub day: NaiveDate,
    /// Why the event is invalid, as the request showed (`bot`, `rate`, `too_fast`). A click
    /// without one is still invalid (`no_impression`) when the store holds no valid
    /// impression of its decision.
    pub invalid: Option<Reason>,
}

/// A batch of counters written in one round trip. Its id makes a retried write idempotent: a
/// batch whose first attempt timed out after Redis applied it is not counted twice.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Unique id of the batch.
    pub id: Ulid,
    /// Aggregated served decisions.
    pub served: Vec<ServedCount>,
    /// Tracking events, de-duplicated by the store.
    pub events: Vec<Event>,
    /// How long the de-duplication marks of each kind of event are kept.
    pub mark_ttl: MarkLifetimes,
    /// The time of the flush, in Unix seconds (the embedded store expires marks with it).
    pub now_secs: i64,
}

/// Added to a token's life for its event's de-duplication mark: a token is accepted from
/// [`crate::tracking::CLOCK_SKEW_SECS`] before its issue time, and the clocks of the instances
/// that accept it may disagree by as much, so the span in which one token can be replayed is
/// its life plus twice that.
pub const MARK_MARGIN_SECS: u64 = 2 * crate::tracking::CLOCK_SKEW_SECS as u64;

/// How long the de-duplication marks of each kind of event are kept, in seconds: as long as
/// that kind's token can be replayed, and no longer, since marks are most of what the store
/// holds (one per impression, viewable impression and click).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MarkLifetimes {
    /// Impression marks. They also prove a click's impression (contract section 8: a click
    /// whose impression was never counted is `no_impression`), so they live as long as click
    /// tokens when those live longer.
    pub impression: u64,
    /// Viewable impression marks.
    pub viewable: u64,
    /// Click marks.
    pub click: u64,
}

impl MarkLifetimes {
    /// Marks that outlive every token that needs them, plus [`MARK_MARGIN_SECS`]: viewable
    /// marks the impression token's life (the viewable token lives as long), click marks the
    /// click token's, impression marks the longer of the two (a click token checks them).
    pub fn for_tokens(impression_token_secs: u64, click_token_secs: u64) -> Self {
        Self {
            impression: impression_token_secs.max(click_token_secs) + MARK_MARGIN_SECS,
            viewable: impression_token_secs + MARK_MARGIN_SECS,
            click: click_token_secs + MARK_MARGIN_SECS,
        }
    }

    /// The same life for every kind (tests, tools).
    pub fn uniform(secs: u64) -> Self {
        Self {
            impression: secs,
            viewable: secs,
            click: secs,
        }
    }

    /// How long a mark of this kind is kept, in seconds.
    pub fn of(&self, kind: EventKind) -> u64 {
        match kind {
            EventKind::Impression => self.impression,
            EventKind::Viewable => self.viewable,
            EventKind::Click => self.click,
        }
    }
}

/// How the store counted one event of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    /// Not counted: an event of that kind was already counted for the decision.
    Duplicate,
    /// Counted in the totals.
    Valid,
    /// Counted apart, as invalid for this reason.
    Invalid(Reason),
}

/// The events of a batch the store counted, i.e. not duplicates, and how.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlushReport {
    /// For each event of the batch, in order, how it was counted.
    pub counted: Vec<Counted>,
    /// The batch had already been applied (a retry after a lost answer).
    pub already_applied: bool,
}

/// A store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Redis answered with an error or could not be reached.
    #[error("redis {op} failed: {source}")]
    Redis {
        /// The operation.
        op: &'static str,
        /// The cause.
        #[source]
        source: ::redis::RedisError,
    },
    /// The store holds something regie cannot read.
    #[error("the store holds an unreadable {0}")]
    Corrupt(&'static str),
    /// A request-path call was not made, or not waited for: the store did not answer within
    /// the request budget, or is known to be unreachable ([`super::breaker`]).
    #[error("redis {op} skipped: the store is slow or unreachable")]
    Skipped {
        /// The operation.
        op: &'static str,
    },
}

impl StoreError {
    /// Whether the store could not be reached or did not answer in time, as opposed to an
    /// answer regie cannot use: an outage, which the breaker logs once.
    pub fn is_outage(&self) -> bool {
        match self {
            StoreError::Redis { source, .. } => is_outage(source),
            StoreError::Skipped { .. } => true,
            StoreError::Corrupt(_) => false,
        }
    }
}

/// Whether a Redis error means the store could not be reached or did not answer in time.
pub(crate) fn is_outage(e: &::redis::RedisError) -> bool {
    e.is_io_error() || e.is_timeout() || e.is_connection_refusal() || e.is_connection_dropped()
}

/// A request for budget units of a capped campaign.
#[derive(Debug, Clone)]
pub struct LeaseRequest<'a> {
    /// The campaign.
    pub campaign: &'a CampaignId,
    /// The reporting day the units are for.
    pub day: NaiveDate,
    /// The lifetime cap, if any.
    pub total_cap: Option<u64>,
    /// The daily cap, if any.
    pub daily_cap: Option<u64>,
    /// Units wanted.
    pub wanted: u64,
}

/// Units granted, and what every instance has leased so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Lease {
    /// Units granted now (0 when the budget is spent).
    pub granted: u64,
    /// Units leased over the campaign's life, this grant included.
    pub total_leased: u64,
    /// Units leased for the day, this grant included.
    pub day_leased: u64,
}

/// Computes a grant the way both stores do.
pub(crate) fn grant(request: &LeaseRequest<'_>, total_leased: u64, day_leased: u64) -> u64 {
    let mut remaining = u64::MAX;
    if let Some(cap) = request.total_cap {
        remaining = remaining.min(cap.saturating_sub(total_leased));
    }
    if let Some(cap) = request.daily_cap {
        remaining = remaining.min(cap.saturating_sub(day_leased));
    }
    if remaining == 0 {
        return 0;
    }
    request.wanted.min((remaining / 4).max(1))
}

/// A per-viewer frequency cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrequencyCap {
    /// Decisions allowed in the window.
    pub max: u32,
    /// The window, in milliseconds.
    pub window_ms: i64,
}

/// A campaign a viewer may be served, with its frequency cap if one applies.
#[derive(Debug, Clone)]
pub struct FrequencyItem {
    /// The campaign.
    pub campaign: CampaignId,
    /// Its cap; `None`: always allowed.
    pub cap: Option<FrequencyCap>,
}

/// Reservations of one request that were not served after all.
#[derive(Debug, Clone)]
pub struct FrequencyRelease {
    /// The hashed viewer id.
    pub viewer: String,
    /// The request's reservation id.
    pub reservation: String,
    /// The campaigns whose reservation is cancelled.
    pub campaigns: Vec<CampaignId>,
}
