//! The Redis store: one connection manager built at start-up and shared by every request and
//! task, with explicit connect and response timeouts; every key under the configured prefix.
//!
//! Keys (`P` is the prefix):
//! - `P:inventory` (JSON) and `P:inventory:version` (integer); changes are published on
//!   `P:inventory:changed`.
//! - `P:stats:{campaign}:{YYYY-MM-DD}`: hash of `{counter}|{slot}` → count; invalid traffic
//!   as `invalid.{reason}.{counter}|{slot}`.
//! - `P:totals:{campaign}`: hash of counter → lifetime count (invalid ones as above).
//! - `P:seen:{kind}:{decision_id}`: de-duplication mark, expiring after the longest token life;
//!   `1` when the event counted as valid, `0` when invalid.
//! - `P:batch:{id}`: a flushed batch, so that a retry is not counted twice.
//! - `P:apikey:{sha256}` → advertiser id, and `P:advertiser-key:{id}` → its key's hash.
//!
//! The flush script builds its keys from the prefix, so it needs every key on one node: plain
//! Redis or a single-shard deployment (see the README on Redis Cluster).

use std::time::Duration;

use chrono::NaiveDate;
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script};

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

/// ARGV: prefix, batch id, batch ttl, dedup ttl, number of served entries, then
/// (campaign, day, slot, count, field) per served entry, then (field, decision id, campaign,
/// day, slot, invalid reason or '') per event. Answers -1 for a batch already applied, else a
/// string of one code per event: '0' a duplicate, '1' counted, or the first letter of the
/// reason it was counted invalid for. A click with no reason of its own is invalid
/// (`no_impression`) unless its decision's impression was counted as valid (mark '1'; an
/// invalid event's mark is '0'). Invalid counters are the fields `invalid.{reason}.{counter}`.
const FLUSH_SCRIPT: &str = r"
local p = ARGV[1]
if not redis.call('SET', p .. ':batch:' .. ARGV[2], '1', 'NX', 'EX', ARGV[3]) then return -1 end
local ttl = ARGV[4]
local i = 6
for _ = 1, tonumber(ARGV[5]) do
  local c, d, s, n, f = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  redis.call('HINCRBY', p .. ':stats:' .. c .. ':' .. d, f .. '|' .. s, n)
  redis.call('HINCRBY', p .. ':totals:' .. c, f, n)
  i = i + 5
end
local codes = { bot = 'b', rate = 'r', no_impression = 'n', too_fast = 't' }
local counted = {}
while i <= #ARGV do
  local f, id, c, d, s, r = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5]
  if r == '' and f == 'clicks' and redis.call('GET', p .. ':seen:impressions:' .. id) ~= '1' then
    r = 'no_impression'
  end
  local mark, name, code = '1', f, '1'
  if r ~= '' then mark, name, code = '0', 'invalid.' .. r .. '.' .. f, codes[r] end
  if redis.call('SET', p .. ':seen:' .. f .. ':' .. id, mark, 'NX', 'EX', ttl) then
    redis.call('HINCRBY', p .. ':stats:' .. c .. ':' .. d, name .. '|' .. s, 1)
    redis.call('HINCRBY', p .. ':totals:' .. c, name, 1)
    counted[#counted + 1] = code
  else
    counted[#counted + 1] = '0'
  end
  i = i + 6
end
return table.concat(counted)
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

/// ARGV: key prefix for the viewer, now (ms), reservation id, then (campaign, max, window ms)
/// per item. Answers '0'/'1' per item.
const FREQUENCY_SCRIPT: &str = r"
local base, now, member = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local served, out = {}, {}
local i = 5
for chain = 1, tonumber(ARGV[4]) do
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

static NEXT_STORE_ID: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

thread_local! {
    /// This thread's connection to each store.
    static CONNECTIONS: std::cell::RefCell<Vec<(usize, ConnectionManager)>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// How long a batch id is remembered: far longer than any retry takes.
const BATCH_TTL_SECS: u64 = 86_400;

/// The Redis store.
#[derive(Clone)]
pub struct RedisStore {
    client: redis::Client,
    /// Distinguishes stores in the per-thread connection table (tests run several).
    id: usize,
    config: redis::aio::ConnectionManagerConfig,
    prefix: String,
    metrics: Metrics,
    put_script: Script,
    restore_script: Script,
    flush_script: Script,
    lease_script: Script,
    release_script: Script,
    frequency_script: Script,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
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
            prefix: prefix.to_owned(),
            metrics,
            put_script: Script::new(PUT_SCRIPT),
            restore_script: Script::new(RESTORE_SCRIPT),
            flush_script: Script::new(FLUSH_SCRIPT),
            lease_script: Script::new(LEASE_SCRIPT),
            release_script: Script::new(RELEASE_SCRIPT),
            frequency_script: Script::new(FREQUENCY_SCRIPT),
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
        format!("{}:inventory:changed", self.prefix)
    }

    fn key(&self, suffix: &str) -> String {
        format!("{}:{suffix}", self.prefix)
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

    pub(super) async fn load_inventory(&self) -> Result<Option<StoredInventory>, StoreError> {
        let mut pipe = redis::pipe();
        pipe.get(self.key("inventory"))
            .get(self.key("inventory:version"));
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
        pipe.get(self.key("inventory:version"));
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
        let mut conn = self.conn();
        let (written, version): (u8, u64) = self.observe(
            "put_inventory",
            self.put_script
                .key(self.key("inventory"))
                .key(self.key("inventory:version"))
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
        let mut conn = self.conn();
        let written: u8 = self.observe(
            "restore_inventory",
            self.restore_script
                .key(self.key("inventory"))
                .key(self.key("inventory:version"))
                .arg(json)
                .arg(version)
                .arg(self.changes_channel())
                .invoke_async(&mut conn)
                .await,
        )?;
        Ok(written == 1)
    }

    pub(super) async fn flush(&self, batch: &Batch) -> Result<FlushReport, StoreError> {
        let mut invocation = self.flush_script.prepare_invoke();
        invocation
            .arg(&self.prefix)
            .arg(batch.id.to_string())
            .arg(BATCH_TTL_SECS)
            .arg(batch.dedup_ttl_secs)
            .arg(batch.served.len());
        for s in &batch.served {
            invocation
                .arg(s.campaign.as_str())
                .arg(s.day.to_string())
                .arg(s.slot.as_str())
                .arg(s.count)
                .arg(super::stored_field(s.invalid, "served").as_ref());
        }
        for e in &batch.events {
            invocation
                .arg(super::counter_field(e.kind))
                .arg(e.decision_id.to_string())
                .arg(e.campaign.as_str())
                .arg(e.day.to_string())
                .arg(e.slot.as_str())
                .arg(e.invalid.map_or("", crate::ivt::Reason::as_str));
        }
        let mut conn = self.conn();
        let answer: redis::Value =
            self.observe("flush", invocation.invoke_async(&mut conn).await)?;
        match answer {
            redis::Value::Int(-1) => Ok(FlushReport {
                counted: vec![super::Counted::Duplicate; batch.events.len()],
                already_applied: true,
            }),
            redis::Value::BulkString(codes) if codes.len() == batch.events.len() => {
                let counted = codes
                    .iter()
                    .map(|&code| super::Counted::from_code(code))
                    .collect::<Option<Vec<_>>>()
                    .ok_or(StoreError::Corrupt("flush answer"))?;
                Ok(FlushReport {
                    counted,
                    already_applied: false,
                })
            }
            // An empty table.concat comes back as an empty string.
            redis::Value::SimpleString(s) if s.is_empty() && batch.events.is_empty() => {
                Ok(FlushReport::default())
            }
            _ => Err(StoreError::Corrupt("flush answer")),
        }
    }

    pub(super) async fn daily_stats(
        &self,
        campaign: &Id,
        days: &[NaiveDate],
    ) -> Result<Vec<Vec<(String, Counts)>>, StoreError> {
        let mut pipe = redis::pipe();
        for day in days {
            pipe.hgetall(self.key(&format!("stats:{campaign}:{day}")));
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
        let mut pipe = redis::pipe();
        for campaign in campaigns {
            pipe.hgetall(self.key(&format!("totals:{campaign}")));
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

    pub(super) async fn set_api_key(
        &self,
        advertiser: &Id,
        key_hash: &str,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let pointer = self.key(&format!("advertiser-key:{advertiser}"));
        let old: Option<String> = self.observe("set_api_key", conn.get(&pointer).await)?;
        let mut pipe = redis::pipe();
        pipe.atomic();
        if let Some(old) = old {
            pipe.del(self.key(&format!("apikey:{old}")));
        }
        pipe.set(self.key(&format!("apikey:{key_hash}")), advertiser.as_str())
            .set(&pointer, key_hash);
        self.observe("set_api_key", pipe.query_async::<()>(&mut conn).await)
    }

    pub(super) async fn advertiser_for_key(
        &self,
        key_hash: &str,
    ) -> Result<Option<Id>, StoreError> {
        let mut pipe = redis::pipe();
        pipe.get(self.key(&format!("apikey:{key_hash}")));
        let (id,): (Option<String>,) = self.read("read_api_key", &pipe).await?;
        Ok(id.and_then(|id| Id::parse(&id).ok()))
    }

    fn lease_keys(&self, campaign: &Id, day: NaiveDate) -> (String, String) {
        (
            self.key(&format!("lease:{campaign}")),
            self.key(&format!("lease:{campaign}:{day}")),
        )
    }

    pub(super) async fn lease(&self, request: &LeaseRequest<'_>) -> Result<Lease, StoreError> {
        let (total_key, day_key) = self.lease_keys(request.campaign, request.day);
        let mut conn = self.conn();
        let (granted, total_leased, day_leased): (u64, u64, u64) = self.observe(
            "lease",
            self.lease_script
                .key(total_key)
                .key(day_key)
                .arg(request.total_cap.map(|c| c.to_string()).unwrap_or_default())
                .arg(request.daily_cap.map(|c| c.to_string()).unwrap_or_default())
                .arg(request.wanted)
                .arg(DAILY_LEASE_TTL_SECS)
                .invoke_async(&mut conn)
                .await,
        )?;
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
        let (total_key, day_key) = self.lease_keys(campaign, day);
        let mut conn = self.conn();
        self.observe(
            "release",
            self.release_script
                .key(total_key)
                .key(day_key)
                .arg(units)
                .invoke_async::<()>(&mut conn)
                .await,
        )
    }

    fn frequency_prefix(&self, viewer: &str) -> String {
        self.key(&format!("freq:{viewer}:"))
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
            .arg(self.frequency_prefix(viewer))
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
        let mut conn = self.conn();
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
        let prefix = self.frequency_prefix(viewer);
        let mut pipe = redis::pipe();
        for item in items {
            let since = item.cap.map_or(now_ms, |cap| now_ms - cap.window_ms);
            pipe.zcount(
                format!("{prefix}{}", item.campaign),
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
        let mut pipe = redis::pipe();
        for release in releases {
            let prefix = self.frequency_prefix(&release.viewer);
            for campaign in &release.campaigns {
                pipe.zrem(format!("{prefix}{campaign}"), &release.reservation)
                    .ignore();
            }
        }
        let mut conn = self.conn();
        self.observe("frequency_release", pipe.query_async::<()>(&mut conn).await)
    }
}
