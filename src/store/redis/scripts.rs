//! The Lua scripts of the Redis store (`src/store/lua/`), each behind a wrapper that builds
//! its keys and arguments and decodes its reply into the store's types.

use redis::Script;

use super::RedisStore;
use crate::store::connection::SlotCmd;
use crate::store::{FrequencyItem, Lease, LeaseRequest, PutOutcome, StoreError};

/// How long a daily lease counter is kept: the day and a margin for time zones.
const DAILY_LEASE_TTL_SECS: u64 = 3 * 86_400;

/// Every script, loaded once when the store is built.
#[derive(Clone)]
pub(super) struct Scripts {
    pub(super) put_inventory: PutInventory,
    pub(super) restore_inventory: RestoreInventory,
    pub(super) flush_share: FlushShare,
    pub(super) lease: LeaseScript,
    pub(super) release: Release,
    pub(super) frequency_pick: FrequencyPick,
}

impl Scripts {
    /// The sources of the scripts sent in pipelines by hash, for a node that lacks them.
    pub(super) fn pipelined(&self) -> [&'static str; 2] {
        [
            include_str!("../lua/flush_share.lua"),
            include_str!("../lua/lease.lua"),
        ]
    }

    pub(super) fn load() -> Self {
        Self {
            put_inventory: PutInventory(Script::new(include_str!("../lua/put_inventory.lua"))),
            restore_inventory: RestoreInventory(Script::new(include_str!(
                "../lua/restore_inventory.lua"
            ))),
            flush_share: FlushShare(Script::new(include_str!("../lua/flush_share.lua"))),
            lease: LeaseScript(Script::new(include_str!("../lua/lease.lua"))),
            release: Release(Script::new(include_str!("../lua/release.lua"))),
            frequency_pick: FrequencyPick(Script::new(include_str!("../lua/frequency_pick.lua"))),
        }
    }
}

/// `put_inventory.lua`: a versioned inventory write.
#[derive(Clone)]
pub(super) struct PutInventory(Script);

impl PutInventory {
    pub(super) async fn run(
        &self,
        store: &RedisStore,
        json: &str,
        expected: Option<u64>,
        floor: u64,
    ) -> Result<PutOutcome, StoreError> {
        let keys = &store.keys;
        let (written, version): (u8, u64) = store.observe(
            "put_inventory",
            self.0
                .key(keys.inventory())
                .key(keys.inventory_version())
                .arg(json)
                .arg(expected.map(|v| v.to_string()).unwrap_or_default())
                .arg(floor)
                .arg(keys.inventory_changed())
                .invoke_async(&mut store.conn())
                .await,
        )?;
        Ok(if written == 1 {
            PutOutcome::Written(version)
        } else {
            PutOutcome::Conflict { current: version }
        })
    }
}

/// `restore_inventory.lua`: a write that never goes back to an older version.
#[derive(Clone)]
pub(super) struct RestoreInventory(Script);

impl RestoreInventory {
    pub(super) async fn run(
        &self,
        store: &RedisStore,
        json: &str,
        version: u64,
    ) -> Result<bool, StoreError> {
        let keys = &store.keys;
        let written: u8 = store.observe(
            "restore_inventory",
            self.0
                .key(keys.inventory())
                .key(keys.inventory_version())
                .arg(json)
                .arg(version)
                .arg(keys.inventory_changed())
                .invoke_async(&mut store.conn())
                .await,
        )?;
        Ok(written == 1)
    }
}

/// `flush_share.lua`: a flushed batch's counts for one campaign, applied once. It is sent in
/// the flush's pipelines ([`super::flush`]), which build its arguments.
#[derive(Clone)]
pub(super) struct FlushShare(pub(super) Script);

/// `lease.lua`: budget units of a capped campaign.
#[derive(Clone)]
pub(super) struct LeaseScript(Script);

impl LeaseScript {
    /// Leases units. The grant is used only once replicas acknowledged it: units granted by a
    /// primary that then fails over unreplicated would be granted again by its successor. A
    /// grant not acknowledged is an error and its units are not used (under-delivery by one
    /// block at worst, never a budget granted twice).
    pub(super) async fn run(
        &self,
        store: &RedisStore,
        request: &LeaseRequest<'_>,
    ) -> Result<Lease, StoreError> {
        let keys = &store.keys;
        let total_key = keys.lease_total(request.campaign);
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(self.0.get_hash())
            .arg(2)
            .arg(&total_key)
            .arg(keys.lease_day(request.campaign, request.day))
            .arg(request.total_cap.map(|c| c.to_string()).unwrap_or_default())
            .arg(request.daily_cap.map(|c| c.to_string()).unwrap_or_default())
            .arg(request.wanted)
            .arg(DAILY_LEASE_TTL_SECS);
        let answers = store.observe_many(
            "lease",
            store
                .connections
                .by_node(
                    vec![SlotCmd::new(&total_key, cmd)],
                    true,
                    Some(store.durability),
                )
                .await,
        )?;
        let (granted, total_leased, day_leased): (u64, u64, u64) = answers
            .into_iter()
            .next()
            .and_then(|answer| redis::from_redis_value(answer).ok())
            .ok_or(StoreError::Corrupt("lease answer"))?;
        Ok(Lease {
            granted,
            total_leased,
            day_leased,
        })
    }
}

/// `release.lua`: leased units given back.
#[derive(Clone)]
pub(super) struct Release(Script);

impl Release {
    pub(super) async fn run(
        &self,
        store: &RedisStore,
        campaign: &crate::inventory::CampaignId,
        day: chrono::NaiveDate,
        units: u64,
    ) -> Result<(), StoreError> {
        let keys = &store.keys;
        store.observe(
            "release",
            self.0
                .key(keys.lease_total(campaign))
                .key(keys.lease_day(campaign, day))
                .arg(units)
                .invoke_async::<()>(&mut store.conn())
                .await,
        )
    }
}

/// `frequency_pick.lua`: a page's frequency walk for one viewer.
#[derive(Clone)]
pub(super) struct FrequencyPick(Script);

impl FrequencyPick {
    pub(super) async fn run(
        &self,
        store: &RedisStore,
        viewer: &str,
        now_ms: i64,
        reservation: &str,
        chains: &[Vec<FrequencyItem>],
    ) -> Result<Vec<Option<usize>>, StoreError> {
        let mut invocation = self.0.prepare_invoke();
        invocation
            .key(store.keys.frequency_prefix(viewer))
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
        let picks: Vec<usize> = store.observe(
            "frequency",
            invocation.invoke_async(&mut store.conn()).await,
        )?;
        if picks.len() != chains.len()
            || picks.iter().zip(chains).any(|(&p, chain)| p > chain.len())
        {
            return Err(StoreError::Corrupt("frequency answer"));
        }
        Ok(picks.into_iter().map(|p| p.checked_sub(1)).collect())
    }
}
