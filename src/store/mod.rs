//! The shared store: the inventory document with its version, counters, de-duplication marks
//! and advertiser keys. Two implementations with the same behaviour: Redis (one primary or a
//! Redis Cluster), shared by every instance, and an embedded in-memory store for a single
//! process.

pub mod connection;
pub mod keys;
mod memory;
mod redis;
mod redis_flush;

pub use self::connection::{Durability, RedisTarget, RedisTimeouts};
pub use self::memory::MemoryStore;
pub use self::redis::RedisStore;

use chrono::NaiveDate;
use serde::Serialize;
use ulid::Ulid;

use crate::inventory::{Id, SlotName};
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
    pub campaign: Id,
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
    pub campaign: Id,
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
    pub campaign: &'a Id,
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
    pub campaign: Id,
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
    pub campaigns: Vec<Id>,
}

/// The store, either Redis or embedded. An enum rather than a trait object: the set is closed
/// and async methods stay plain.
#[derive(Debug, Clone)]
pub enum Store {
    /// The embedded in-memory store.
    Memory(std::sync::Arc<MemoryStore>),
    /// Redis, shared by every instance.
    Redis(std::sync::Arc<RedisStore>),
}

macro_rules! dispatch {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            Store::Memory($store) => $call,
            Store::Redis($store) => $call,
        }
    };
}

impl Store {
    /// `memory` or `redis`, for `/readyz` and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Store::Memory(_) => "memory",
            Store::Redis(_) => "redis",
        }
    }

    /// The stored inventory, if any.
    pub async fn load_inventory(&self) -> Result<Option<StoredInventory>, StoreError> {
        dispatch!(self, s => s.load_inventory().await)
    }

    /// The stored inventory's version, if any (one small read, for polling).
    pub async fn inventory_version(&self) -> Result<Option<u64>, StoreError> {
        dispatch!(self, s => s.inventory_version().await)
    }

    /// Writes a new inventory atomically. `expected`, when given, must equal the current
    /// version; `floor` is the version this instance serves, so versions never go backwards
    /// even if the store lost its data.
    pub async fn put_inventory(
        &self,
        json: &str,
        expected: Option<u64>,
        floor: u64,
    ) -> Result<PutOutcome, StoreError> {
        dispatch!(self, s => s.put_inventory(json, expected, floor).await)
    }

    /// Writes `json` as `version` only if the store holds no inventory or an older one; used to
    /// seed an empty store and to restore one that restarted empty. True when written.
    pub async fn restore_inventory(&self, json: &str, version: u64) -> Result<bool, StoreError> {
        dispatch!(self, s => s.restore_inventory(json, version).await)
    }

    /// Applies a batch of counters atomically and idempotently.
    pub async fn flush(&self, batch: &Batch) -> Result<FlushReport, StoreError> {
        dispatch!(self, s => s.flush(batch).await)
    }

    /// Counters of a campaign for each day, by slot.
    pub async fn daily_stats(
        &self,
        campaign: &Id,
        days: &[NaiveDate],
    ) -> Result<Vec<Vec<(String, Counts)>>, StoreError> {
        dispatch!(self, s => s.daily_stats(campaign, days).await)
    }

    /// Lifetime counters of each campaign.
    pub async fn totals(&self, campaigns: &[Id]) -> Result<Vec<Counts>, StoreError> {
        dispatch!(self, s => s.totals(campaigns).await)
    }

    /// Makes `key_hash` the advertiser's only API key (the previous one stops working).
    pub async fn set_api_key(&self, advertiser: &Id, key_hash: &str) -> Result<(), StoreError> {
        dispatch!(self, s => s.set_api_key(advertiser, key_hash).await)
    }

    /// The advertiser owning the key of this hash.
    pub async fn advertiser_for_key(&self, key_hash: &str) -> Result<Option<Id>, StoreError> {
        dispatch!(self, s => s.advertiser_for_key(key_hash).await)
    }

    /// Leases up to `wanted` units of a capped campaign's budget for `day`, atomically across
    /// instances: never more than what is left under the lifetime and daily caps, and a
    /// quarter of what is left at most, so blocks shrink as the budget runs out.
    pub async fn lease(&self, request: &LeaseRequest<'_>) -> Result<Lease, StoreError> {
        dispatch!(self, s => s.lease(request).await)
    }

    /// Gives back units leased for `day` and not served (shutdown, day change).
    pub async fn release(
        &self,
        campaign: &Id,
        day: NaiveDate,
        units: u64,
    ) -> Result<(), StoreError> {
        dispatch!(self, s => s.release(campaign, day, units).await)
    }

    /// For one viewer, atomically and in one round trip, serves each chain (a slot's candidates
    /// in the order they would be served) its first campaign that is under its cap and not
    /// already served by an earlier chain of the call, and reserves a view of it under
    /// `reservation`. Answers, per chain, the position of the campaign served.
    pub async fn frequency_pick(
        &self,
        viewer: &str,
        now_ms: i64,
        reservation: &str,
        chains: &[Vec<FrequencyItem>],
    ) -> Result<Vec<Option<usize>>, StoreError> {
        dispatch!(self, s => s.frequency_pick(viewer, now_ms, reservation, chains).await)
    }

    /// For one viewer, whether each campaign is under its cap; reserves nothing.
    pub async fn frequency_check(
        &self,
        viewer: &str,
        now_ms: i64,
        items: &[FrequencyItem],
    ) -> Result<Vec<bool>, StoreError> {
        dispatch!(self, s => s.frequency_check(viewer, now_ms, items).await)
    }

    /// Cancels reservations that were not used for a decision, many requests' at once.
    pub async fn frequency_release(&self, releases: &[FrequencyRelease]) -> Result<(), StoreError> {
        dispatch!(self, s => s.frequency_release(releases).await)
    }
}

/// Parses a stats field `metric|slot`.
pub(crate) fn split_stats_field(field: &str) -> Option<(&str, &str)> {
    field.split_once('|')
}

/// Where the Redis store is, from the settings, if it is not the embedded one.
pub fn redis_target(settings: &crate::settings::Settings) -> Option<RedisTarget> {
    use secrecy::ExposeSecret;
    if let Some(seeds) = &settings.redis_cluster {
        let seeds = seeds
            .expose_secret()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        return Some(RedisTarget::Cluster(seeds));
    }
    settings
        .redis_url
        .as_ref()
        .map(|url| RedisTarget::Single(url.expose_secret().to_owned()))
}

/// How writes that count wait for replicas, from the settings: by default one replica on a
/// cluster (each primary has one), none on a single Redis.
pub fn durability(settings: &crate::settings::Settings) -> Durability {
    Durability {
        replicas: settings
            .redis_wait_replicas
            .unwrap_or(u32::from(settings.redis_cluster.is_some())),
        timeout: std::time::Duration::from_millis(settings.redis_wait_timeout_ms),
    }
}

/// The Redis timeouts from the settings.
pub fn redis_timeouts(settings: &crate::settings::Settings) -> RedisTimeouts {
    RedisTimeouts {
        connect: std::time::Duration::from_millis(settings.redis_connect_timeout_ms),
        response: std::time::Duration::from_millis(settings.redis_response_timeout_ms),
    }
}
