//! The Lua scripts of the Redis store (`src/store/lua/`), each behind a wrapper that builds
//! its keys and arguments and decodes its reply into the store's types.

use redis::Script;

use super::RedisStore;
use crate::store::connection::SlotCmd;
use crate::store::{Lease, LeaseRequest, PutOutcome, StoreError};

/// How long a staged inventory document waits to be moved into place: far longer than the
/// round trips between its write and its move, short enough that one an instance left
/// behind (it stopped in between) does not stay.
const STAGING_TTL_MS: u64 = 600_000;

/// The part of a large inventory document written to its staging key at a time.
const STAGING_CHUNK_BYTES: usize = 1 << 20;

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
    pub(super) set_api_key: SetApiKey,
    pub(super) revoke_api_key: RevokeApiKey,
    pub(super) tracking_secret: TrackingSecret,
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
            set_api_key: SetApiKey(Script::new(include_str!("../lua/set_api_key.lua"))),
            revoke_api_key: RevokeApiKey(Script::new(include_str!("../lua/revoke_api_key.lua"))),
            tracking_secret: TrackingSecret(Script::new(include_str!(
                "../lua/tracking_secret.lua"
            ))),
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
        let staging = keys.inventory_staging(&ulid::Ulid::new().to_string());
        stage(store, &staging, json.as_bytes()).await?;
        let (written, version): (i8, u64) = store.observe(
            "put_inventory",
            self.0
                .key(keys.inventory())
                .key(keys.inventory_version())
                .key(&staging)
                .arg(expected.map(|v| v.to_string()).unwrap_or_default())
                .arg(floor)
                .arg(keys.inventory_changed())
                .invoke_async(&mut store.conn())
                .await,
        )?;
        match written {
            1 => Ok(PutOutcome::Written(version)),
            0 => Ok(PutOutcome::Conflict { current: version }),
            _ => Err(StoreError::Corrupt(
                "the staged inventory expired before it was moved",
            )),
        }
    }
}

/// Writes `document` to the staging key `staging`, expiring: in one `SET` when it is small, in
/// chunks when it is not. A `SET` of tens of megabytes has the client copy the document into
/// fresh buffers three times over while the PUT compiles it, which took a third of a second
/// of an instance's first PUTs; chunks go through the same few megabytes of buffers. The last
/// chunk is written first, so that Redis makes the whole string at once and writes every
/// other chunk in place.
async fn stage(store: &RedisStore, staging: &str, document: &[u8]) -> Result<(), StoreError> {
    if document.len() <= STAGING_CHUNK_BYTES {
        return store.observe(
            "put_inventory",
            redis::cmd("SET")
                .arg(staging)
                .arg(document)
                .arg("PX")
                .arg(STAGING_TTL_MS)
                .query_async::<()>(&mut store.conn())
                .await,
        );
    }
    let last = document.len().div_ceil(STAGING_CHUNK_BYTES) - 1;
    for (index, chunk) in document.chunks(STAGING_CHUNK_BYTES).enumerate().rev() {
        let mut pipe = redis::pipe();
        pipe.cmd("SETRANGE")
            .arg(staging)
            .arg(index * STAGING_CHUNK_BYTES)
            .arg(chunk)
            .ignore();
        if index == last {
            // Expiring from its first part on, should this instance stop before the move.
            pipe.cmd("PEXPIRE")
                .arg(staging)
                .arg(STAGING_TTL_MS)
                .ignore();
        }
        store.observe(
            "put_inventory",
            pipe.query_async::<()>(&mut store.conn()).await,
        )?;
    }
    Ok(())
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

/// `set_api_key.lua`: an advertiser's new key, replacing the previous one atomically.
#[derive(Clone)]
pub(super) struct SetApiKey(Script);

impl SetApiKey {
    pub(super) async fn run(
        &self,
        store: &RedisStore,
        advertiser: &crate::inventory::AdvertiserId,
        key_hash: &str,
    ) -> Result<(), StoreError> {
        let keys = &store.keys;
        store.observe(
            "set_api_key",
            self.0
                .key(keys.advertiser_key(advertiser))
                .arg(keys.api_key_prefix())
                .arg(key_hash)
                .arg(advertiser.as_str())
                .invoke_async::<()>(&mut store.conn())
                .await,
        )
    }
}

/// `revoke_api_key.lua`: an advertiser's key revoked.
#[derive(Clone)]
pub(super) struct RevokeApiKey(Script);

impl RevokeApiKey {
    pub(super) async fn run(
        &self,
        store: &RedisStore,
        advertiser: &crate::inventory::AdvertiserId,
    ) -> Result<bool, StoreError> {
        let keys = &store.keys;
        let revoked: u8 = store.observe(
            "revoke_api_key",
            self.0
                .key(keys.advertiser_key(advertiser))
                .arg(keys.api_key_prefix())
                .invoke_async(&mut store.conn())
                .await,
        )?;
        Ok(revoked == 1)
    }
}

/// `tracking_secret.lua`: the signing secret shared by the store's instances.
#[derive(Clone)]
pub(super) struct TrackingSecret(Script);

impl TrackingSecret {
    pub(super) async fn run(
        &self,
        store: &RedisStore,
        candidate: &str,
    ) -> Result<String, StoreError> {
        store.observe(
            "tracking_secret",
            self.0
                .key(store.keys.tracking_secret())
                .arg(candidate)
                .invoke_async(&mut store.conn())
                .await,
        )
    }
}
