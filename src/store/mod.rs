//! The shared store: the inventory document with its version, counters, de-duplication marks,
//! advertiser keys, budget leases and frequency reservations.
//!
//! [`Backend`] lists what a store does; two implement it with the same behaviour, checked by
//! the compiler (the trait) and by one parity suite run against both (`tests/api/store.rs`):
//! [`RedisStore`], shared by every instance (on one Redis primary or a Redis Cluster, through
//! [`connection`]), and [`MemoryStore`], embedded in one process. [`Store`] is the one the
//! application runs with.

pub mod breaker;
pub mod connection;
mod keys;
mod memory;
pub mod migrate;
mod redis;
mod types;
mod walk;

pub use self::connection::{Durability, RedisTarget, RedisTimeouts};
pub use self::memory::MemoryStore;
pub use self::redis::RedisStore;
pub use self::types::*;
pub use self::walk::{first_allowed, Positions};

use std::future::Future;

use chrono::NaiveDate;

use crate::inventory::{AdvertiserId, CampaignId};

/// The operations every store offers. Their futures are `Send`, so that tasks that hold a
/// store can be spawned on any thread.
pub trait Backend: Send + Sync {
    /// The stored inventory, if any.
    fn load_inventory(
        &self,
    ) -> impl Future<Output = Result<Option<StoredInventory>, StoreError>> + Send;

    /// The stored inventory's version, if any (one small read, for polling).
    fn inventory_version(&self) -> impl Future<Output = Result<Option<u64>, StoreError>> + Send;

    /// Writes a new inventory atomically. `expected`, when given, must equal the current
    /// version; `floor` is the version this instance serves, so versions never go backwards
    /// even if the store lost its data.
    fn put_inventory(
        &self,
        json: &str,
        expected: Option<u64>,
        floor: u64,
    ) -> impl Future<Output = Result<PutOutcome, StoreError>> + Send;

    /// Writes `json` as `version` only if the store holds no inventory or an older one; used to
    /// seed an empty store and to restore one that restarted empty. True when written.
    fn restore_inventory(
        &self,
        json: &str,
        version: u64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Applies a batch of counters atomically and idempotently.
    fn flush(&self, batch: &Batch) -> impl Future<Output = Result<FlushReport, StoreError>> + Send;

    /// Counters of a campaign for each day, by slot.
    fn daily_stats(
        &self,
        campaign: &CampaignId,
        days: &[NaiveDate],
    ) -> impl Future<Output = Result<Vec<Vec<(String, Counts)>>, StoreError>> + Send;

    /// Lifetime counters of each campaign.
    fn totals(
        &self,
        campaigns: &[CampaignId],
    ) -> impl Future<Output = Result<Vec<Counts>, StoreError>> + Send;

    /// Lifetime counters of tracking events (impressions, viewable, clicks) of each campaign,
    /// by slot: the evidence of the `optimize` rotation.
    fn slot_totals(
        &self,
        campaigns: &[CampaignId],
    ) -> impl Future<Output = Result<Vec<Vec<(String, Counts)>>, StoreError>> + Send;

    /// Makes `key_hash` the advertiser's only API key (the previous one stops working).
    fn set_api_key(
        &self,
        advertiser: &AdvertiserId,
        key_hash: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The advertiser owning the key of this hash.
    fn advertiser_for_key(
        &self,
        key_hash: &str,
    ) -> impl Future<Output = Result<Option<AdvertiserId>, StoreError>> + Send;

    /// Revokes the advertiser's API key, atomically with any concurrent [`Self::set_api_key`].
    /// True when there was a key.
    fn revoke_api_key(
        &self,
        advertiser: &AdvertiserId,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The tracking signing secret shared by every instance of the store: `candidate` when
    /// the store holds none yet (the first caller's is kept), else the stored one.
    fn tracking_secret(
        &self,
        candidate: &str,
    ) -> impl Future<Output = Result<String, StoreError>> + Send;

    /// Leases up to `wanted` units of a capped campaign's budget for `day`, atomically across
    /// instances: never more than what is left under the lifetime and daily caps, and a
    /// quarter of what is left at most, so blocks shrink as the budget runs out.
    fn lease(
        &self,
        request: &LeaseRequest<'_>,
    ) -> impl Future<Output = Result<Lease, StoreError>> + Send;

    /// Gives back units leased for `day` and not served (shutdown, day change).
    fn release(
        &self,
        campaign: &CampaignId,
        day: NaiveDate,
        units: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// For one viewer, serves each chain (a slot's candidates in the order they would be
    /// served) its first campaign that is under its cap and not already served by an earlier
    /// chain of the call ([`first_allowed`]), and reserves a view of it under `reservation`,
    /// never past a cap across instances; one round trip unless a choice is refused. Answers,
    /// per chain, the position of the campaign served.
    fn frequency_pick(
        &self,
        viewer: &str,
        now_ms: i64,
        reservation: &str,
        chains: &[Vec<FrequencyItem>],
    ) -> impl Future<Output = Result<Positions, StoreError>> + Send;

    /// For one viewer, whether each campaign is under its cap; reserves nothing.
    fn frequency_check(
        &self,
        viewer: &str,
        now_ms: i64,
        items: &[FrequencyItem],
    ) -> impl Future<Output = Result<Vec<bool>, StoreError>> + Send;

    /// Cancels reservations that were not used for a decision, many requests' at once.
    fn frequency_release(
        &self,
        releases: &[FrequencyRelease],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// The store the application runs with, either Redis or embedded. An enum over the two
/// backends rather than a trait object: the set is closed, and calls stay static.
#[derive(Debug, Clone)]
pub enum Store {
    /// The embedded in-memory store.
    Memory(std::sync::Arc<MemoryStore>),
    /// Redis, shared by every instance.
    Redis(std::sync::Arc<RedisStore>),
}

impl Store {
    /// `memory` or `redis`, for `/readyz` and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Store::Memory(_) => "memory",
            Store::Redis(_) => "redis",
        }
    }
}

/// Forwards a [`Backend`] operation to the store the application runs with.
macro_rules! forward {
    ($self:ident, $method:ident($($arg:expr),*)) => {
        match $self {
            Store::Memory(store) => store.$method($($arg),*).await,
            Store::Redis(store) => store.$method($($arg),*).await,
        }
    };
}

impl Backend for Store {
    async fn load_inventory(&self) -> Result<Option<StoredInventory>, StoreError> {
        forward!(self, load_inventory())
    }

    async fn inventory_version(&self) -> Result<Option<u64>, StoreError> {
        forward!(self, inventory_version())
    }

    async fn put_inventory(
        &self,
        json: &str,
        expected: Option<u64>,
        floor: u64,
    ) -> Result<PutOutcome, StoreError> {
        forward!(self, put_inventory(json, expected, floor))
    }

    async fn restore_inventory(&self, json: &str, version: u64) -> Result<bool, StoreError> {
        forward!(self, restore_inventory(json, version))
    }

    async fn flush(&self, batch: &Batch) -> Result<FlushReport, StoreError> {
        forward!(self, flush(batch))
    }

    async fn daily_stats(
        &self,
        campaign: &CampaignId,
        days: &[NaiveDate],
    ) -> Result<Vec<Vec<(String, Counts)>>, StoreError> {
        forward!(self, daily_stats(campaign, days))
    }

    async fn totals(&self, campaigns: &[CampaignId]) -> Result<Vec<Counts>, StoreError> {
        forward!(self, totals(campaigns))
    }

    async fn slot_totals(
        &self,
        campaigns: &[CampaignId],
    ) -> Result<Vec<Vec<(String, Counts)>>, StoreError> {
        forward!(self, slot_totals(campaigns))
    }

    async fn set_api_key(
        &self,
        advertiser: &AdvertiserId,
        key_hash: &str,
    ) -> Result<(), StoreError> {
        forward!(self, set_api_key(advertiser, key_hash))
    }

    async fn advertiser_for_key(&self, key_hash: &str) -> Result<Option<AdvertiserId>, StoreError> {
        forward!(self, advertiser_for_key(key_hash))
    }

    async fn revoke_api_key(&self, advertiser: &AdvertiserId) -> Result<bool, StoreError> {
        forward!(self, revoke_api_key(advertiser))
    }

    async fn tracking_secret(&self, candidate: &str) -> Result<String, StoreError> {
        forward!(self, tracking_secret(candidate))
    }

    async fn lease(&self, request: &LeaseRequest<'_>) -> Result<Lease, StoreError> {
        forward!(self, lease(request))
    }

    async fn release(
        &self,
        campaign: &CampaignId,
        day: NaiveDate,
        units: u64,
    ) -> Result<(), StoreError> {
        forward!(self, release(campaign, day, units))
    }

    async fn frequency_pick(
        &self,
        viewer: &str,
        now_ms: i64,
        reservation: &str,
        chains: &[Vec<FrequencyItem>],
    ) -> Result<Positions, StoreError> {
        forward!(self, frequency_pick(viewer, now_ms, reservation, chains))
    }

    async fn frequency_check(
        &self,
        viewer: &str,
        now_ms: i64,
        items: &[FrequencyItem],
    ) -> Result<Vec<bool>, StoreError> {
        forward!(self, frequency_check(viewer, now_ms, items))
    }

    async fn frequency_release(&self, releases: &[FrequencyRelease]) -> Result<(), StoreError> {
        forward!(self, frequency_release(releases))
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
        request: std::time::Duration::from_millis(settings.store_request_timeout_ms),
    }
}
