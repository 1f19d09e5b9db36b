//! The Redis store, on one primary or a Redis Cluster: connections built at start-up and shared
//! by every request and task, with explicit connect and response timeouts. Key names come
//! from [`Keys`]; every script touches keys of one hash slot.
//!
//! Writes that count (a flush's marks and counters, a budget lease) are acknowledged by a
//! replica (`WAIT`, see [`Durability`]) before the caller lets go of them: a primary that fails
//! over loses none of them. A flush spans many slots; it is written in two rounds of one
//! pipeline per node (`redis_flush`).

use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDate;
use redis::{AsyncCommands, Script};

use super::connection::{Connections, Durability, RedisTarget, RedisTimeouts, SlotCmd};
use super::keys::Keys;
use super::{
    split_stats_field, Batch, Counts, FlushReport, FrequencyItem, FrequencyRelease, Lease,
    LeaseRequest, PutOutcome, StoreError, StoredInventory,
};
use crate::inventory::Id;
use crate::metrics::Metrics;

const PUT_SCRIPT: &str = r"
local current = tonumber(redis.call('GET', KEYS[2]) or '0')
local floor = tonumber(ARGV[3])
if floor > current then current = floor end
if ARGV[2] ~= '' and tonumber(ARGV[2]) ~= current then return {0, current} end
local version = current + 1
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], version)
redis.call('PUBLISH', ARGV[4], version)
return {1, version}
";

const RESTORE_SCRIPT: &str = r"
local current = tonumber(redis.call('GET', KEYS[2]) or '0')
if redis.call('EXISTS', KEYS[1]) == 1 and current >= tonumber(ARGV[2]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[2])
return 1
";

/// A flushed batch's share for one campaign. KEYS: the batch marker, the campaign's totals,
/// then its stats hash of each day the share counts. ARGV: marker TTL, number of totals
/// fields, (field, count) per totals field, then (index into KEYS, field, count) per stats
/// field. Answers 1 when applied, 0 when the marker says it already was (a retry).
const SHARE_SCRIPT: &str = r"
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return 0 end
local i = 3
for _ = 1, tonumber(ARGV[2]) do
  redis.call('HINCRBY', KEYS[2], ARGV[i], ARGV[i + 1])
  i = i + 2
end
while i <= #ARGV do
  redis.call('HINCRBY', KEYS[tonumber(ARGV[i])], ARGV[i + 1], ARGV[i + 2])
  i = i + 3
end
return 1
";

/// KEYS: lifetime and daily lease counters. ARGV: total cap ('' for none), daily cap, units
/// wanted, TTL of the daily counter. The grant rule is `store::grant`'s.
const LEASE_SCRIPT: &str = r"
local total = tonumber(redis.call('GET', KEYS[1]) or '0')
local day = tonumber(redis.call('GET', KEYS[2]) or '0')
local remaining = -1
if ARGV[1] ~= '' then remaining = tonumber(ARGV[1]) - total end
if ARGV[2] ~= '' then
  local left = tonumber(ARGV[2]) - day
  if remaining < 0 or left < remaining then remaining = left end
end
local grant = 0
if remaining ~= 0 then
  grant = tonumber(ARGV[3])
  if remaining > 0 then grant = math.min(grant, math.max(1, math.floor(remaining / 4))) end
  if grant < 0 then grant = 0 end
end
if grant > 0 then
  redis.call('INCRBY', KEYS[1], grant)
  redis.call('INCRBY', KEYS[2], grant)
end
redis.call('EXPIRE', KEYS[2], ARGV[4])
return {grant, total + grant, day + grant}
";

/// KEYS: lifetime and daily lease counters. ARGV: units to give back.
const RELEASE_SCRIPT: &str = r"
for _, key in ipairs(KEYS) do
  local left = tonumber(redis.call('GET', key) or '0') - tonumber(ARGV[1])
  if left < 0 then left = 0 end
  if redis.call('EXISTS', key) == 1 then redis.call('SET', key, left, 'KEEPTTL') end
end
return 1
";

/// KEYS: the start of the viewer's frequency keys (every key the script touches shares its
/// hash tag, so it names the viewer's slot). ARGV: now (ms), reservation id, number of
/// chains, then per chain its length and (campaign, max, window ms) per item. Answers the
/// position served per chain, 0 for none.
const FREQUENCY_SCRIPT: &str = r"
local base, now, member = KEYS[1], tonumber(ARGV[1]), ARGV[2]
local served, out = {}, {}
local i = 4
for chain = 1, tonumber(ARGV[3]) do
  local n = tonumber(ARGV[i])
  i = i + 1
  local pick = 0
  for position = 1, n do
    local campaign = ARGV[i]
    if pick == 0 and not served[campaign] then
      local max = tonumber(ARGV[i + 1])
      if max < 0 then
        pick = position
      else
        local key, window = base .. campaign, tonumber(ARGV[i + 2])
        -- Views past the window are trimmed only when they could make a difference: the set
        -- never holds more than max views, and a new viewer costs three calls, not four.
        local seen = redis.call('ZCARD', key)
        if seen >= max then
          redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
          seen = redis.call('ZCARD', key)
        end
        if seen < max then
          redis.call('ZADD', key, now, member)
          redis.call('PEXPIRE', key, window)
          pick = position
        end
      end
      if pick ~= 0 then
        served[campaign] = true
      end
    end
    i = i + 3
  end
  out[chain] = pick
end
return out
";

/// How long a daily lease counter is kept: the day and a margin for time zones.
const DAILY_LEASE_TTL_SECS: u64 = 3 * 86_400;

/// How long a batch marker is kept when its batch is never acknowledged (the flusher deletes
/// it once it is): longer than any outage a batch waits through in memory.
pub(super) const BATCH_TTL_SECS: u64 = 86_400;

/// The Redis store.
#[derive(Clone)]
pub struct RedisStore {
    pub(super) connections: Arc<Connections>,
    pub(super) keys: Keys,
    pub(super) durability: Durability,
    pub(super) metrics: Metrics,
    put_script: Script,
    restore_script: Script,
    pub(super) share_script: Script,
    lease_script: Script,
    release_script: Script,
    frequency_script: Script,
    /// Markers of batches acknowledged in full, deleted with the next flush.
    pub(super) acknowledged: Arc<parking_lot::Mutex<Vec<String>>>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("keys", &self.keys)
            .field("cluster", &self.connections.is_cluster())
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// A store on one Redis primary at `url`, waiting for no replica.
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

    /// Prepares the store on `target`; connections are made on first use and re-made after
    /// failures, so an instance starts even while Redis is down.
    pub fn connect(
        target: &RedisTarget,
        prefix: &str,
        timeouts: RedisTimeouts,
        durability: Durability,
        metrics: Metrics,
    ) -> Result<Self, StoreError> {
        let connections = Connections::new(target, timeouts, &[SHARE_SCRIPT, LEASE_SCRIPT])
            .map_err(|source| StoreError::Redis { op: "open", source })?;
        Ok(Self {
            connections: Arc::new(connections),
            keys: Keys::new(prefix),
            durability,
            metrics,
            put_script: Script::new(PUT_SCRIPT),
            restore_script: Script::new(RESTORE_SCRIPT),
            share_script: Script::new(SHARE_SCRIPT),
            lease_script: Script::new(LEASE_SCRIPT),
            release_script: Script::new(RELEASE_SCRIPT),
            frequency_script: Script::new(FREQUENCY_SCRIPT),
            acknowledged: Arc::default(),
        })
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
        self.keys.changes_channel()
    }

    /// Records the outcome of one round trip and adds the operation to an error.
    pub(super) fn observe<T>(
        &self,
        op: &'static str,
        result: redis::RedisResult<T>,
    ) -> Result<T, StoreError> {
        self.metrics.store_call(op, result.is_ok());
        result.map_err(|source| StoreError::Redis { op, source })
    }

    /// Like [`Self::observe`] for `pipelines` round trips made at once.
    pub(super) fn observe_many<T>(
        &self,
        op: &'static str,
        (pipelines, result): (usize, redis::RedisResult<T>),
    ) -> Result<T, StoreError> {
        for _ in 1..pipelines {
            self.metrics.store_call(op, result.is_ok());
        }
        self.observe(op, result)
    }

    /// Runs a read-only pipeline on one slot; sends it once more when the connection turns
    /// out to be broken (Redis restarted): it has reconnected by then, and a read is safe to
    /// repeat.
    async fn read<T: redis::FromRedisValue>(
        &self,
        op: &'static str,
        pipe: &redis::Pipeline,
    ) -> Result<T, StoreError> {
        let mut result = pipe.query_async(&mut self.connections.conn()).await;
        if matches!(&result, Err(e) if e.is_io_error() || e.is_connection_dropped()) {
            result = pipe.query_async(&mut self.connections.conn()).await;
        }
        self.observe(op, result)
    }

    pub(super) async fn load_inventory(&self) -> Result<Option<StoredInventory>, StoreError> {
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

    pub(super) async fn inventory_version(&self) -> Result<Option<u64>, StoreError> {
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

    pub(super) async fn put_inventory(
        &self,
        json: &str,
        expected: Option<u64>,
        floor: u64,
    ) -> Result<PutOutcome, StoreError> {
        let mut conn = self.connections.conn();
        let (written, version): (u8, u64) = self.observe(
            "put_inventory",
            self.put_script
                .key(self.keys.inventory())
                .key(self.keys.inventory_version())
                .arg(json)
                .arg(expected.map(|v| v.to_string()).unwrap_or_default())
                .arg(floor)
                .arg(self.changes_channel())
                .invoke_async(&mut conn)
                .await,
        )?;
        Ok(if written == 1 {
            PutOutcome::Written(version)
        } else {
            PutOutcome::Conflict { current: version }
        })
    }

    pub(super) async fn restore_inventory(
        &self,
        json: &str,
        version: u64,
    ) -> Result<bool, StoreError> {
        let mut conn = self.connections.conn();
        let written: u8 = self.observe(
            "restore_inventory",
            self.restore_script
                .key(self.keys.inventory())
                .key(self.keys.inventory_version())
                .arg(json)
                .arg(version)
                .arg(self.changes_channel())
                .invoke_async(&mut conn)
                .await,
        )?;
        Ok(written == 1)
    }

    pub(super) async fn flush(&self, batch: &Batch) -> Result<FlushReport, StoreError> {
        super::redis_flush::flush(self, batch).await
    }

    pub(super) async fn daily_stats(
        &self,
        campaign: &Id,
        days: &[NaiveDate],
    ) -> Result<Vec<Vec<(String, Counts)>>, StoreError> {
        let mut pipe = redis::pipe();
        for day in days {
            pipe.hgetall(self.keys.stats(campaign.as_str(), *day));
        }
        let hashes: Vec<Vec<(String, u64)>> = self.read("read_stats", &pipe).await?;
        Ok(hashes
            .into_iter()
            .map(|fields| {
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
            })
            .collect())
    }

    pub(super) async fn totals(&self, campaigns: &[Id]) -> Result<Vec<Counts>, StoreError> {
        // Campaigns live in different slots: one pipeline per node.
        let cmds = campaigns
            .iter()
            .map(|campaign| {
                let key = self.keys.totals(campaign.as_str());
                let mut cmd = redis::cmd("HGETALL");
                cmd.arg(&key);
                SlotCmd::new(&key, cmd)
            })
            .collect();
        let values = self.observe_many(
            "read_totals",
            self.connections.by_node(cmds, false, None).await,
        )?;
        values
            .into_iter()
            .map(|value| {
                let fields: Vec<(String, u64)> = redis::from_redis_value(value)
                    .map_err(|_| StoreError::Corrupt("campaign totals"))?;
                let mut counts = Counts::default();
                fields.iter().for_each(|(f, n)| counts.add_field(f, *n));
                Ok(counts)
            })
            .collect()
    }

    pub(super) async fn set_api_key(
        &self,
        advertiser: &Id,
        key_hash: &str,
    ) -> Result<(), StoreError> {
        let mut conn = self.connections.conn();
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

    pub(super) async fn advertiser_for_key(
        &self,
        key_hash: &str,
    ) -> Result<Option<Id>, StoreError> {
        let mut pipe = redis::pipe();
        pipe.get(self.keys.api_key(key_hash));
        let (id,): (Option<String>,) = self.read("read_api_key", &pipe).await?;
        Ok(id.and_then(|id| Id::parse(&id).ok()))
    }

    /// Leases budget units. The grant is used only once a replica acknowledged it: units
    /// granted by a primary that then fails over, unreplicated, would be granted again by its
    /// successor. A grant that is not acknowledged is not used (under-delivery by one block at
    /// worst, never a budget granted twice).
    pub(super) async fn lease(&self, request: &LeaseRequest<'_>) -> Result<Lease, StoreError> {
        let total_key = self.keys.lease_total(request.campaign);
        let day_key = self.keys.lease_day(request.campaign, request.day);
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(self.lease_script.get_hash())
            .arg(2)
            .arg(&total_key)
            .arg(&day_key)
            .arg(request.total_cap.map(|c| c.to_string()).unwrap_or_default())
            .arg(request.daily_cap.map(|c| c.to_string()).unwrap_or_default())
            .arg(request.wanted)
            .arg(DAILY_LEASE_TTL_SECS);
        let values = self.observe_many(
            "lease",
            self.connections
                .by_node(
                    vec![SlotCmd::new(&total_key, cmd)],
                    true,
                    Some(self.durability),
                )
                .await,
        )?;
        let (granted, total_leased, day_leased): (u64, u64, u64) = values
            .into_iter()
            .next()
            .and_then(|v| redis::from_redis_value(v).ok())
            .ok_or(StoreError::Corrupt("lease answer"))?;
        Ok(Lease {
            granted,
            total_leased,
            day_leased,
        })
    }

    pub(super) async fn release(
        &self,
        campaign: &Id,
        day: NaiveDate,
        units: u64,
    ) -> Result<(), StoreError> {
        let mut conn = self.connections.conn();
        self.observe(
            "release",
            self.release_script
                .key(self.keys.lease_total(campaign))
                .key(self.keys.lease_day(campaign, day))
                .arg(units)
                .invoke_async::<()>(&mut conn)
                .await,
        )
    }

    pub(super) async fn frequency_pick(
        &self,
        viewer: &str,
        now_ms: i64,
        reservation: &str,
        chains: &[Vec<FrequencyItem>],
    ) -> Result<Vec<Option<usize>>, StoreError> {
        let mut invocation = self.frequency_script.prepare_invoke();
        invocation
            .key(self.keys.frequency_base(viewer))
            .arg(now_ms)
            .arg(reservation)
            .arg(chains.len());
        for chain in chains {
            invocation.arg(chain.len());
            for item in chain {
                let (max, window_ms) = item
                    .cap
                    .map_or((-1, 0), |cap| (i64::from(cap.max), cap.window_ms));
                invocation
                    .arg(item.campaign.as_str())
                    .arg(max)
                    .arg(window_ms);
            }
        }
        let mut conn = self.connections.conn();
        let picks: Vec<usize> =
            self.observe("frequency", invocation.invoke_async(&mut conn).await)?;
        if picks.len() != chains.len()
            || picks.iter().zip(chains).any(|(&p, chain)| p > chain.len())
        {
            return Err(StoreError::Corrupt("frequency answer"));
        }
        Ok(picks.into_iter().map(|p| p.checked_sub(1)).collect())
    }

    pub(super) async fn frequency_check(
        &self,
        viewer: &str,
        now_ms: i64,
        items: &[FrequencyItem],
    ) -> Result<Vec<bool>, StoreError> {
        let mut pipe = redis::pipe();
        for item in items {
            let since = item.cap.map_or(now_ms, |cap| now_ms - cap.window_ms);
            pipe.zcount(
                self.keys.frequency(viewer, item.campaign.as_str()),
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

    pub(super) async fn frequency_release(
        &self,
        releases: &[FrequencyRelease],
    ) -> Result<(), StoreError> {
        // Viewers live in different slots: one pipeline per node.
        let mut cmds = Vec::new();
        for release in releases {
            for campaign in &release.campaigns {
                let key = self.keys.frequency(&release.viewer, campaign.as_str());
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
