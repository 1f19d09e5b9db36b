//! The data the stores exchange with the rest of regie.

use chrono::NaiveDate;
use serde::Serialize;
use ulid::Ulid;

use crate::inventory::{CampaignId, SlotName};
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
}

impl Counts {
    /// Adds `n` to the counter named `field` (`served`, `impressions`, `viewable`, `clicks`).
    pub fn add_field(&mut self, field: &str, n: u64) {
        match field {
            "served" => self.served += n,
            "impressions" => self.impressions += n,
            "viewable" => self.viewable += n,
            "clicks" => self.clicks += n,
            _ => {}
        }
    }

    /// Adds another set of counters.
    pub fn add(&mut self, other: &Counts) {
        self.served += other.served;
        self.impressions += other.impressions;
        self.viewable += other.viewable;
        self.clicks += other.clicks;
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
    /// How long de-duplication marks are kept, in seconds (at least the longest token life).
    pub dedup_ttl_secs: u64,
    /// The time of the flush, in Unix seconds (the embedded store expires marks with it).
    pub now_secs: i64,
}

/// The events of a batch the store counted, i.e. not duplicates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlushReport {
    /// For each event of the batch, in order, whether it was counted.
    pub counted: Vec<bool>,
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
