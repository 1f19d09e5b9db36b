//! The Redis store, on one primary or a Redis Cluster: connections built at start-up and
//! shared by every request and task ([`super::connection`]), with explicit connect and
//! response timeouts; every key under the configured prefix.
//!
//! Every key is named in [`super::keys`], with hash tags so that each script touches one slot;
//! every script lives in `src/store/lua/` behind a wrapper in [`scripts`]. Writes that count
//! (a flush, a budget lease) are acknowledged by replicas ([`Durability`]) before regie lets
//! go of them, so a primary that fails over loses none; a flush spans slots and is written in
//! two rounds of one pipeline per node ([`flush`]).

mod flush;
mod frequency;
mod scripts;

use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDate;

use self::scripts::Scripts;
use super::breaker::Breaker;
use super::connection::{Conn, Connections, Durability, RedisTarget, RedisTimeouts, SlotCmd};
use super::keys::Keys;
use super::{
    split_stats_field, Backend, Batch, Counts, FlushReport, FrequencyItem, FrequencyRelease, Lease,
    LeaseRequest, Positions, PutOutcome, StoreError, StoredInventory,
};
use crate::inventory::{AdvertiserId, CampaignId};
use crate::metrics::Metrics;

/// The Redis store.
#[derive(Clone)]
pub struct RedisStore {
    connections: Arc<Connections>,
    keys: Keys,
    durability: Durability,
    metrics: Metrics,
    scripts: Scripts,
    /// Markers of batches acknowledged in full, deleted with the next flush.
    acknowledged: Arc<parking_lot::Mutex<Vec<String>>>,
    /// Keeps public requests from waiting on a slow or unreachable Redis.
    breaker: Arc<Breaker>,
}

/// How often the breaker's probe pings a store that stopped answering.
const PROBE_EVERY: Duration = Duration::from_millis(250);

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.keys.prefix())
            .field("cluster", &self.connections.is_cluster())
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// A store on the Redis primary at `url`, waiting for no replica.
    pub fn new(
        url: &str,
        prefix: &str,
        timeouts: RedisTimeouts,
        metrics: Metrics,
    ) -> Result<Self, StoreError> {
        let durability = Durability {
            replicas: 0,
            timeout: Duration::ZERO,
        };
        Self::connect(
            &RedisTarget::Single(url.to_owned()),
            prefix,
            timeouts,
            durability,
            metrics,
        )
    }

    /// Prepares the store on `target`. Connections are made on first use and re-made after
    /// failures, so an instance starts even while Redis is down.
    pub fn connect(
        target: &RedisTarget,
        prefix: &str,
        timeouts: RedisTimeouts,
        durability: Durability,
        metrics: Metrics,
    ) -> Result<Self, StoreError> {
        let scripts = Scripts::load();
        let connections = Connections::new(target, timeouts, &scripts.pipelined())
            .map_err(|source| StoreError::Redis { op: "open", source })?;
        Ok(Self {
            connections: Arc::new(connections),
            keys: Keys::new(prefix),
            durability,
            metrics,
            scripts,
            acknowledged: Arc::default(),
            breaker: Arc::new(Breaker::new(timeouts.request)),
        })
    }

    /// A connection for commands on one slot (see [`Connections::conn`]).
    fn conn(&self) -> Conn {
        self.connections.conn()
    }

    /// Clients for the pub/sub connection of the inventory watcher (any node of a cluster).
    pub fn pubsub_clients(&self) -> &[redis::Client] {
        self.connections.pubsub_clients()
    }

    /// Whether the store is a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.connections.is_cluster()
    }

    /// The channel on which inventory changes are published.
    pub fn changes_channel(&self) -> String {
        self.keys.inventory_changed()
    }

    /// Records the outcome of one round trip and adds the operation to an error. A store that
    /// cannot be reached opens the breaker, whichever task found out.
    fn observe<T>(&self, op: &'static str, result: redis::RedisResult<T>) -> Result<T, StoreError> {
        self.metrics.store_call(op, result.is_ok());
        result.map_err(|source| {
            if super::is_outage(&source) {
                self.trip(op, &source);
            }
            StoreError::Redis { op, source }
        })
    }

    /// Runs a call of a public request: at once [`StoreError::Skipped`] while the breaker is
    /// open, else the call, given up after the breaker's budget. A call given up on may
    /// still be carried out by Redis later: a frequency reservation made then only makes the
    /// viewer's cap stricter, never looser.
    async fn on_request_path<T>(
        &self,
        op: &'static str,
        call: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        if self.breaker.is_open() {
            return Err(StoreError::Skipped { op });
        }
        match tokio::time::timeout(self.breaker.budget(), call).await {
            Ok(result) => result,
            Err(_) => {
                self.metrics.store_call(op, false);
                let budget = self.breaker.budget();
                self.trip(op, &format_args!("no answer within {budget:?}"));
                Err(StoreError::Skipped { op })
            }
        }
    }

    /// Opens the breaker; the first failure of an outage logs it and starts the probe.
    fn trip(&self, op: &'static str, cause: &dyn std::fmt::Display) {
        if self.breaker.trip() {
            tracing::error!(
                op,
                cause = %cause,
                "store slow or unreachable: requests skip it (frequency-capped campaigns are not served) until it answers"
            );
            tokio::spawn(self.clone().probe());
        }
    }

    /// Opens the calling thread's connection (see [`Connections::conn`]) with a `PING`, counted
    /// as the round trip `connect`. Each actix worker calls it as it starts: otherwise the
    /// worker's first request that needs the store would also pay for the TCP connection and
    /// the handshake within the breaker's budget, and on a loaded host or a distant store
    /// that opens the breaker for nothing. A failure is left to the request path and the probe.
    pub async fn connect_this_thread(&self) {
        let ping: redis::RedisResult<String> =
            redis::cmd("PING").query_async(&mut self.conn()).await;
        self.metrics.store_call("connect", ping.is_ok());
    }

    /// Pings the store until it answers, then closes the breaker.
    async fn probe(self) {
        loop {
            tokio::time::sleep(PROBE_EVERY).await;
            let ping: redis::RedisResult<String> =
                redis::cmd("PING").query_async(&mut self.conn()).await;
            if ping.is_ok() {
                self.metrics.store_call("probe", true);
                if self.breaker.reset() {
                    tracing::info!("store answers again: requests use it");
                }
                return;
            }
        }
    }

    /// [`Self::observe`] for the pipelines of [`Connections::by_node`], one round trip each.
    fn observe_many<T>(
        &self,
        op: &'static str,
        (pipelines, result): (usize, redis::RedisResult<T>),
    ) -> Result<T, StoreError> {
        for _ in 1..pipelines {
            self.metrics.store_call(op, result.is_ok());
        }
        self.observe(op, result)
    }

    /// Reads hashes that live in different slots (one per campaign): one pipeline per node.
    async fn hashes(
        &self,
        op: &'static str,
        keys: impl Iterator<Item = String>,
    ) -> Result<Vec<Vec<(String, u64)>>, StoreError> {
        let cmds = keys
            .map(|key| {
                let mut cmd = redis::cmd("HGETALL");
                cmd.arg(&key);
                SlotCmd::new(&key, cmd)
            })
            .collect();
        let values = self.observe_many(op, self.connections.by_node(cmds, false, None).await)?;
        values
            .into_iter()
            .map(|value| redis::from_redis_value(value).map_err(|_| StoreError::Corrupt(op)))
            .collect()
    }

    /// Runs a read-only pipeline on one slot; sends it once more when the connection turns
    /// out to be broken (Redis restarted): it has reconnected by then, and a read is safe to
    /// repeat.
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
        flush::flush(self, batch).await
    }

    async fn daily_stats(
        &self,
        campaign: &CampaignId,
        days: &[NaiveDate],
    ) -> Result<Vec<Vec<(String, Counts)>>, StoreError> {
        if days.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for day in days {
            pipe.hgetall(self.keys.stats(campaign, *day));
        }
        let hashes: Vec<Vec<(String, u64)>> = self.read("read_stats", &pipe).await?;
        Ok(hashes.into_iter().map(by_slot).collect())
    }

    async fn totals(&self, campaigns: &[CampaignId]) -> Result<Vec<Counts>, StoreError> {
        // An empty pipeline is a client error, not an empty answer: an advertiser without
        // campaigns has no totals to read.
        if campaigns.is_empty() {
            return Ok(Vec::new());
        }
        let keys = campaigns.iter().map(|c| self.keys.totals(c));
        let hashes = self.hashes("read_totals", keys).await?;
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
        let keys = campaigns.iter().map(|c| self.keys.slot_totals(c));
        let hashes = self.hashes("read_slot_totals", keys).await?;
        Ok(hashes.into_iter().map(by_slot).collect())
    }

    async fn set_api_key(
        &self,
        advertiser: &AdvertiserId,
        key_hash: &str,
    ) -> Result<(), StoreError> {
        self.scripts
            .set_api_key
            .run(self, advertiser, key_hash)
            .await
    }

    async fn revoke_api_key(&self, advertiser: &AdvertiserId) -> Result<bool, StoreError> {
        self.scripts.revoke_api_key.run(self, advertiser).await
    }

    async fn tracking_secret(&self, candidate: &str) -> Result<String, StoreError> {
        self.scripts.tracking_secret.run(self, candidate).await
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
    ) -> Result<Positions, StoreError> {
        let walk = frequency::Walk {
            store: self,
            viewer,
            now_ms,
            reservation,
            chains,
        };
        self.on_request_path("frequency", walk.run()).await
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
        let seen: Vec<u64> = self
            .on_request_path("frequency_check", self.read("frequency_check", &pipe))
            .await?;
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
        // Viewers live in different slots: one pipeline per node.
        let mut cmds = Vec::new();
        for release in releases {
            for campaign in &release.campaigns {
                let key = self.keys.frequency(&release.viewer, campaign);
                let mut cmd = redis::cmd("ZREM");
                cmd.arg(&key).arg(&release.reservation);
                cmds.push(SlotCmd::new(&key, cmd));
            }
        }
        self.observe_many(
            "frequency_release",
            self.connections.by_node(cmds, false, None).await,
        )
        .map(drop)
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
