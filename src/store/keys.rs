//! Every Redis key regie writes, built in one place. `P` is the configured prefix
//! (`REGIE_KEY_PREFIX`, `regie` by default).
//!
//! The part between braces is the Redis Cluster hash tag: keys with the same tag share a hash
//! slot, so every script and transaction touches keys of one slot, on one Redis or a cluster
//! alike. Tags spread the load: per campaign for its counters, leases and batch markers; per
//! viewer for frequency history; per decision for de-duplication marks (most of the keys);
//! the inventory's keys together; advertiser keys together. docs/scaling.md explains the
//! choice.
//!
//! | key | type | what it holds | written by |
//! | --- | --- | --- | --- |
//! | `P:{inventory}:json` | string | the inventory document (JSON), as its writer wrote it but for a top-level `version` | `put_inventory.lua`, `restore_inventory.lua` |
//! | `P:{inventory}:version` | string (integer) | its version | `put_inventory.lua`, `restore_inventory.lua` |
//! | `P:{inventory}:staging:ID` | string, expiring after 10 minutes | a document on its way in, renamed to `P:{inventory}:json` by `put_inventory.lua` (or deleted on a conflict) | `put_inventory` |
//! | `P:inventory:changed` | pub/sub channel | a new version, published on every write (on a cluster, to every node's subscribers) | `put_inventory.lua`, `restore_inventory.lua` |
//! | `P:{c:CAMPAIGN}:stats:YYYY-MM-DD` | hash `{counter}\|{slot}` → count, invalid traffic as `invalid.{reason}.{counter}\|{slot}` | counters of a campaign for a reporting day | `flush_share.lua` |
//! | `P:{c:CAMPAIGN}:totals` | hash counter → count (invalid ones as above) | lifetime counters of a campaign | `flush_share.lua` |
//! | `P:{c:CAMPAIGN}:slot-totals` | hash `{counter}\|{slot}` → count | lifetime counters of a campaign's valid tracking events by slot (the `optimize` rotation's evidence) | `flush_share.lua` |
//! | `P:{c:CAMPAIGN}:batch:BATCH` | string, expiring after a day, deleted once the batch is acknowledged | a flushed batch's share for the campaign, so that a retry is not counted twice | `flush_share.lua` |
//! | `P:{d:DECISION}:seen:COUNTER` | string (the id of the batch that counted it; an impression counted as invalid traffic has `:x` after it), expiring after its kind's token life plus ten minutes (`MarkLifetimes`) | de-duplication mark of one event | the flush (`SET … NX GET`) |
//! | `P:{keys}:apikey:SHA256` | string | the advertiser id owning an API key | `set_api_key.lua`, `revoke_api_key.lua` |
//! | `P:{keys}:advertiser-key:ADVERTISER` | string | the hash of the advertiser's current key | `set_api_key.lua`, `revoke_api_key.lua` |
//! | `P:{keys}:tracking-secret` | string | the tracking signing secret of instances without `REGIE_TRACKING_KEYS` | `tracking_secret.lua` |
//! | `P:{c:CAMPAIGN}:lease` | string (integer) | budget units leased over the campaign's life | `lease.lua`, `release.lua` |
//! | `P:{c:CAMPAIGN}:lease:YYYY-MM-DD` | string (integer), expiring after three days | units leased for a reporting day | `lease.lua`, `release.lua` |
//! | `P:{v:VIEWER}:freq:CAMPAIGN` | sorted set reservation → time (ms), expiring after the cap's window | a viewer's views of a frequency-capped campaign | `redis::frequency` (reserve, count, cancel), `frequency_check`, `frequency_release` |
//!
//! `VIEWER` is the hex of the first 128 bits of the HMAC-SHA256 of the viewer id under the
//! viewer key (`crate::serving::ViewerKeys`): raw ids never reach the store, and the stored
//! ones cannot be matched against likely ids without the key. Every key of one viewer shares the
//! hash tag `{v:VIEWER}`, so a page's frequency walk is one pipeline to one node.

use chrono::NaiveDate;
use ulid::Ulid;

use crate::inventory::{AdvertiserId, CampaignId};

/// The key names under one prefix.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    /// Keys under `prefix`, which holds no braces (the settings refuse them: they would change
    /// the hash tags).
    pub(crate) fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    /// The prefix itself.
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `P:{inventory}:json`.
    pub(crate) fn inventory(&self) -> String {
        format!("{}:{{inventory}}:json", self.prefix)
    }

    /// `P:{inventory}:version`.
    pub(crate) fn inventory_version(&self) -> String {
        format!("{}:{{inventory}}:version", self.prefix)
    }

    /// `P:{inventory}:staging:ID`: a document written before `put_inventory.lua` moves it into
    /// place, so that the script does not carry megabytes through Lua.
    pub(crate) fn inventory_staging(&self, id: &str) -> String {
        format!("{}:{{inventory}}:staging:{id}", self.prefix)
    }

    /// `P:inventory:changed`, the channel of inventory changes.
    pub(crate) fn inventory_changed(&self) -> String {
        format!("{}:inventory:changed", self.prefix)
    }

    /// `P:{c:CAMPAIGN}:stats:DAY`.
    pub(crate) fn stats(&self, campaign: &CampaignId, day: NaiveDate) -> String {
        format!("{}:{{c:{campaign}}}:stats:{day}", self.prefix)
    }

    /// `P:{c:CAMPAIGN}:totals`.
    pub(crate) fn totals(&self, campaign: &CampaignId) -> String {
        format!("{}:{{c:{campaign}}}:totals", self.prefix)
    }

    /// `P:{c:CAMPAIGN}:slot-totals`.
    pub(crate) fn slot_totals(&self, campaign: &CampaignId) -> String {
        format!("{}:{{c:{campaign}}}:slot-totals", self.prefix)
    }

    /// `P:{c:CAMPAIGN}:batch:BATCH`.
    pub(crate) fn batch(&self, campaign: &CampaignId, batch: Ulid) -> String {
        format!("{}:{{c:{campaign}}}:batch:{batch}", self.prefix)
    }

    /// `P:{d:DECISION}:seen:COUNTER`.
    pub(crate) fn seen(&self, counter: &str, decision: Ulid) -> String {
        format!("{}:{{d:{decision}}}:seen:{counter}", self.prefix)
    }

    /// `P:{keys}:apikey:HASH`.
    pub(crate) fn api_key(&self, key_hash: &str) -> String {
        format!("{}:{{keys}}:apikey:{key_hash}", self.prefix)
    }

    /// `P:{keys}:apikey:`, to which the key scripts append a key's hash.
    pub(crate) fn api_key_prefix(&self) -> String {
        format!("{}:{{keys}}:apikey:", self.prefix)
    }

    /// `P:{keys}:tracking-secret`.
    pub(crate) fn tracking_secret(&self) -> String {
        format!("{}:{{keys}}:tracking-secret", self.prefix)
    }

    /// `P:{keys}:advertiser-key:ADVERTISER`.
    pub(crate) fn advertiser_key(&self, advertiser: &AdvertiserId) -> String {
        format!("{}:{{keys}}:advertiser-key:{advertiser}", self.prefix)
    }

    /// `P:{c:CAMPAIGN}:lease`.
    pub(crate) fn lease_total(&self, campaign: &CampaignId) -> String {
        format!("{}:{{c:{campaign}}}:lease", self.prefix)
    }

    /// `P:{c:CAMPAIGN}:lease:DAY`.
    pub(crate) fn lease_day(&self, campaign: &CampaignId, day: NaiveDate) -> String {
        format!("{}:{{c:{campaign}}}:lease:{day}", self.prefix)
    }

    /// `P:{v:VIEWER}:freq:CAMPAIGN`. Made for each frequency-capped candidate of a decision:
    /// written in one allocation, where two `format!` calls cost 1 900 instructions.
    pub(crate) fn frequency(&self, viewer: &str, campaign: &CampaignId) -> String {
        const PARTS: [&str; 2] = [":{v:", "}:freq:"];
        let campaign = campaign.as_str();
        let mut key = String::with_capacity(
            self.prefix.len() + viewer.len() + campaign.len() + PARTS[0].len() + PARTS[1].len(),
        );
        key.push_str(&self.prefix);
        key.push_str(PARTS[0]);
        key.push_str(viewer);
        key.push_str(PARTS[1]);
        key.push_str(campaign);
        key
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::connection::slot_of;

    #[test]
    fn what_one_script_or_transaction_touches_shares_a_slot() {
        let keys = Keys::new("regie");
        let day = NaiveDate::from_ymd_opt(2026, 11, 30).unwrap();
        let campaign = CampaignId::parse("3vision-visitez").unwrap();
        let advertiser = AdvertiserId::parse("3vision").unwrap();
        let slot = slot_of(&keys.totals(&campaign));
        for key in [
            keys.stats(&campaign, day),
            keys.slot_totals(&campaign),
            keys.lease_total(&campaign),
            keys.lease_day(&campaign, day),
            keys.batch(&campaign, Ulid::nil()),
        ] {
            assert_eq!(slot_of(&key), slot, "{key}");
        }
        let inventory = slot_of(&keys.inventory());
        assert_eq!(inventory, slot_of(&keys.inventory_version()));
        assert_eq!(
            inventory,
            slot_of(&keys.inventory_staging("01ARZ3NDEKTSV4RRFFQ69G5FAV"))
        );
        // A page's frequency walk names one viewer's keys only: one slot, one node.
        assert_eq!(
            keys.frequency("abc", &campaign),
            "regie:{v:abc}:freq:3vision-visitez"
        );
        assert_eq!(
            slot_of(&keys.frequency("abc", &campaign)),
            slot_of(&keys.frequency("abc", &CampaignId::parse("other").unwrap()))
        );
        assert_eq!(
            slot_of(&keys.api_key("h")),
            slot_of(&keys.advertiser_key(&advertiser))
        );
    }

    #[test]
    fn marks_of_different_decisions_spread_over_the_slots() {
        let keys = Keys::new("regie");
        let slots: std::collections::HashSet<u16> = (0..1_000u128)
            .map(|i| {
                slot_of(&keys.seen(
                    "impressions",
                    Ulid::from(i.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835)),
                ))
            })
            .collect();
        assert!(slots.len() > 900, "{} distinct slots", slots.len());
    }
}
