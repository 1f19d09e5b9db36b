//! The Redis store: one connection manager built at start-up and shared by every request and
//! task, with explicit connect and response timeouts; every key under the configured prefix.
//!
//! Every key is named in [`super::keys`]; every script lives in `src/store/lua/` behind a
//! wrapper in [`scripts`].
//!
//! The flush and frequency scripts build keys from the prefix, so they need every key on one
//! node: plain Redis or a single-shard deployment (see the README on Redis Cluster).

mod scripts;

use std::time::Duration;

use chrono::NaiveDate;
use redis::aio::ConnectionManager;
use redis::AsyncCommands;

use self::scripts::Scripts;
use super::keys::Keys;
use super::{
    split_stats_field, Backend, Batch, Counts, FlushReport, FrequencyItem, FrequencyRelease, Lease,
    LeaseRequest, PutOutcome, StoreError, StoredInventory,
};
use crate::inventory::{AdvertiserId, CampaignId};
use crate::metrics::Metrics;

static NEXT_STORE_ID: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

thread_local! {
    /// This thread's connection to each store.
    static CONNECTIONS: std::cell::RefCell<Vec<(usize, ConnectionManager)>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The Redis store.
#[derive(Clone)]
pub struct RedisStore {
    client: redis::Client,
    /// Distinguishes stores in the per-thread connection table (tests run several).
    id: usize,
    config: redis::aio::ConnectionManagerConfig,
    keys: Keys,
    metrics: Metrics,
    scripts: Scripts,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.keys.prefix())
            .finish_non_exhaustive()
    }
}

/// Timeouts of the Redis connection.
#[derive(Debug, Clone, Copy)]
pub struct RedisTimeouts {
    /// Time allowed to connect.
    pub connect: Duration,
    /// Time allowed for an answer.
    pub response: Duration,
}

impl RedisStore {
    /// Prepares the store; the connection is made on first use and re-made after failures, so
    /// an instance starts even while Redis is down.
    pub fn new(
        url: &str,
        prefix: &str,
        timeouts: RedisTimeouts,
        metrics: Metrics,
    ) -> Result<Self, StoreError> {
        let client =
            redis::Client::open(url).map_err(|source| StoreError::Redis { op: "open", source })?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeouts.connect))
            .set_response_timeout(Some(timeouts.response))
            // Fail fast and let regie's own loops retry: a request must not hang on Redis.
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        // Checks the configuration now rather than on first use.
        ConnectionManager::new_lazy_with_config(client.clone(), config.clone()).map_err(
            |source| StoreError::Redis {
                op: "connect",
                source,
            },
        )?;
        Ok(Self {
            client,
            id: NEXT_STORE_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            config,
            keys: Keys::new(prefix),
            metrics,
            scripts: Scripts::load(),
        })
    }

    /// This thread's connection to Redis. Each actix worker runs its own single-threaded
    /// runtime; a connection driven by another thread's runtime would cost two cross-thread
    /// wake-ups per command, so every thread gets one connection, made on first use and
    /// re-made by the manager after failures. Never a connection per request.
    fn conn(&self) -> ConnectionManager {
        CONNECTIONS.with(|connections| {
            let mut connections = connections.borrow_mut();
            if let Some((_, conn)) = connections.iter().find(|(id, _)| *id == self.id) {
                return conn.clone();
            }
            let conn =
                ConnectionManager::new_lazy_with_config(self.client.clone(), self.config.clone())
                    .expect("the configuration was checked when the store was built");
            connections.push((self.id, conn.clone()));
            conn
        })
    }

    /// The client, for the pub/sub connection of the inventory watcher.
    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    /// The channel on which inventory changes are published.
    pub fn changes_channel(&self) -> String {
        self.keys.inventory_changed()
    }

    /// Records the outcome of one round trip and adds the operation to an error.
    fn observe<T>(&self, op: &'static str, result: redis::RedisResult<T>) -> Result<T, StoreError> {
        self.metrics.store_call(op, result.is_ok());
        result.map_err(|source| StoreError::Redis { op, source })
    }

    /// Runs a read-only pipeline; sends it once more when this thread's connection turns out
    /// to be broken (Redis restarted): the manager has reconnected by then, and a read is safe
    /// to repeat.
    async fn read<T: redis::FromRedisValue>(
        &self,
        op: &'static str,
        pipe: &redis::Pipeline,
    ) -> Result<T, StoreError> {
        let mut result = pipe.query_async(&mut self.conn()).await;
        if matches!(&result, Err(e) if e.is_io_error() || e.is_connection_dropped()) {
            result = pipe.query_async(&mut self.conn()).await;
        }
        self.observe(op, result)
    }
}

impl Backend for RedisStore {
    async fn load_inventory(&self) -> Result<Option<StoredInventory>, StoreError> {
        let mut pipe = redis::pipe();
        pipe.get(self.keys.inventory())
            .get(self.keys.inventory_version());
        let (json, version): (Option<String>, Option<String>) =
            self.read("load_inventory", &pipe).await?;
        match (json, version) {
            (Some(json), Some(version)) => {
                let version = version
                    .parse()
                    .map_err(|_| StoreError::Corrupt("inventory version"))?;
                Ok(Some(StoredInventory { version, json }))
            }
            _ => Ok(None),
        }
    }

    async fn inventory_version(&self) -> Result<Option<u64>, StoreError> {
        let mut pipe = redis::pipe();
        pipe.get(self.keys.inventory_version());
        let (version,): (Option<String>,) = self.read("poll_version", &pipe).await?;
        version
            .map(|v| {
                v.parse()
                    .map_err(|_| StoreError::Corrupt("inventory version"))
            })
            .transpose()
    }

    async fn put_inventory(
        &self,
        json: &str,
        expected: Option<u64>,
        floor: u64,
    ) -> Result<PutOutcome, StoreError> {
        (self.scripts.put_inventory)
            .run(self, json, expected, floor)
            .await
    }

    async fn restore_inventory(&self, json: &str, version: u64) -> Result<bool, StoreError> {
        self.scripts
            .restore_inventory
            .run(self, json, version)
            .await
    }

    async fn flush(&self, batch: &Batch) -> Result<FlushReport, StoreError> {
        self.scripts.flush.run(self, batch).await
    }

    async fn daily_stats(
        &self,
        campaign: &CampaignId,
        days: &[NaiveDate],
    ) -> Result<Vec<Vec<(String, Counts)>>, StoreError> {
        let mut pipe = redis::pipe();
        for day in days {
            pipe.hgetall(self.keys.stats(campaign, *day));
        }
        let hashes: Vec<Vec<(String, u64)>> = self.read("read_stats", &pipe).await?;
        Ok(hashes.into_iter().map(by_slot).collect())
    }

    async fn totals(&self, campaigns: &[CampaignId]) -> Result<Vec<Counts>, StoreError> {
        let mut pipe = redis::pipe();
        for campaign in campaigns {
            pipe.hgetall(self.keys.totals(campaign));
        }
        let hashes: Vec<Vec<(String, u64)>> = self.read("read_totals", &pipe).await?;
        Ok(hashes
            .into_iter()
            .map(|fields| {
                let mut counts = Counts::default();
                fields.iter().for_each(|(f, n)| counts.add_field(f, *n));
                counts
            })
            .collect())
    }

    async fn slot_totals(
        &self,
        campaigns: &[CampaignId],
    ) -> Result<Vec<Vec<(String, Counts)>>, StoreError> {
        let mut pipe = redis::pipe();
        for campaign in campaigns {
            pipe.hgetall(self.keys.slot_totals(campaign));
        }
        let hashes: Vec<Vec<(String, u64)>> = self.read("read_slot_totals", &pipe).await?;
        Ok(hashes.into_iter().map(by_slot).collect())
    }

    async fn set_api_key(
        &self,
        advertiser: &AdvertiserId,
        key_hash: &str,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let pointer = self.keys.advertiser_key(advertiser);
        let old: Option<String> = self.observe("set_api_key", conn.get(&pointer).await)?;
        let mut pipe = redis::pipe();
        pipe.atomic();
        if let Some(old) = old {
            pipe.del(self.keys.api_key(&old));
        }
        pipe.set(self.keys.api_key(key_hash), advertiser.as_str())
            .set(&pointer, key_hash);
        self.observe("set_api_key", pipe.query_async::<()>(&mut conn).await)
    }

    async fn advertiser_for_key(&self, key_hash: &str) -> Result<Option<AdvertiserId>, StoreError> {
        let mut pipe = redis::pipe();
        pipe.get(self.keys.api_key(key_hash));
        let (id,): (Option<String>,) = self.read("read_api_key", &pipe).await?;
        Ok(id.and_then(|id| AdvertiserId::parse(&id).ok()))
    }

    async fn lease(&self, request: &LeaseRequest<'_>) -> Result<Lease, StoreError> {
        self.scripts.lease.run(self, request).await
    }

    async fn release(
        &self,
        campaign: &CampaignId,
        day: NaiveDate,
        units: u64,
    ) -> Result<(), StoreError> {
        self.scripts.release.run(self, campaign, day, units).await
    }

    async fn frequency_pick(
        &self,
        viewer: &str,
        now_ms: i64,
        reservation: &str,
        chains: &[Vec<FrequencyItem>],
    ) -> Result<Vec<Option<usize>>, StoreError> {
        (self.scripts.frequency_pick)
            .run(self, viewer, now_ms, reservation, chains)
            .await
    }

    async fn frequency_check(
        &self,
        viewer: &str,
        now_ms: i64,
        items: &[FrequencyItem],
    ) -> Result<Vec<bool>, StoreError> {
        let mut pipe = redis::pipe();
        for item in items {
            let since = item.cap.map_or(now_ms, |cap| now_ms - cap.window_ms);
            pipe.zcount(
                self.keys.frequency(viewer, &item.campaign),
                format!("({since}"),
                "+inf",
            );
        }
        let seen: Vec<u64> = self.read("frequency_check", &pipe).await?;
        if seen.len() != items.len() {
            return Err(StoreError::Corrupt("frequency check answer"));
        }
        Ok(items
            .iter()
            .zip(seen)
            .map(|(item, seen)| item.cap.is_none_or(|cap| seen < u64::from(cap.max)))
            .collect())
    }

    async fn frequency_release(&self, releases: &[FrequencyRelease]) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        for release in releases {
            for campaign in &release.campaigns {
                pipe.zrem(
                    self.keys.frequency(&release.viewer, campaign),
                    &release.reservation,
                )
                .ignore();
            }
        }
        let mut conn = self.conn();
        self.observe("frequency_release", pipe.query_async::<()>(&mut conn).await)
    }
}

/// Counters by slot from a hash of `{counter}|{slot}` fields.
fn by_slot(fields: Vec<(String, u64)>) -> Vec<(String, Counts)> {
    let mut by_slot: Vec<(String, Counts)> = Vec::new();
    for (field, n) in fields {
        let Some((counter, slot)) = split_stats_field(&field) else {
            continue;
        };
        match by_slot.iter_mut().find(|(s, _)| s == slot) {
            Some((_, counts)) => counts.add_field(counter, n),
            None => {
                let mut counts = Counts::default();
                counts.add_field(counter, n);
                by_slot.push((slot.to_owned(), counts));
            }
        }
    }
    by_slot
}
