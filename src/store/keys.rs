//! Every Redis key regie writes, built in one place. `P` is the configured prefix
//! (`REGIE_KEY_PREFIX`, `regie` by default):
//!
//! | key | type | what it holds | written by |
//! | --- | --- | --- | --- |
//! | `P:inventory` | string | the inventory document (JSON) | `put_inventory.lua`, `restore_inventory.lua` |
//! | `P:inventory:version` | string (integer) | its version | `put_inventory.lua`, `restore_inventory.lua` |
//! | `P:inventory:changed` | pub/sub channel | a new version, published on every write | `put_inventory.lua`, `restore_inventory.lua` |
//! | `P:stats:{campaign}:{YYYY-MM-DD}` | hash `{counter}\|{slot}` → count, invalid traffic as `invalid.{reason}.{counter}\|{slot}` | counters of a campaign for a reporting day | `flush.lua` |
//! | `P:totals:{campaign}` | hash counter → count (invalid ones as above) | lifetime counters of a campaign | `flush.lua` |
//! | `P:slot-totals:{campaign}` | hash `{counter}\|{slot}` → count | lifetime counters of a campaign's valid tracking events by slot (the `optimize` rotation's evidence) | `flush.lua` |
//! | `P:seen:{counter}:{decision_id}` | string `1` (counted valid) or `0` (invalid), expiring after the longest token life | de-duplication mark of one event | `flush.lua` |
//! | `P:batch:{batch_id}` | string, expiring after a day | a flushed batch, so that a retry is not counted twice | `flush.lua` |
//! | `P:apikey:{sha256}` | string | the advertiser id owning an API key | `set_api_key` |
//! | `P:advertiser-key:{advertiser}` | string | the hash of the advertiser's current key | `set_api_key` |
//! | `P:lease:{campaign}` | string (integer) | budget units leased over the campaign's life | `lease.lua`, `release.lua` |
//! | `P:lease:{campaign}:{YYYY-MM-DD}` | string (integer), expiring after three days | units leased for a reporting day | `lease.lua`, `release.lua` |
//! | `P:freq:{viewer}:{campaign}` | sorted set reservation → time (ms), expiring after the cap's window | a viewer's views of a frequency-capped campaign | `frequency_pick.lua`, `frequency_release` |
//!
//! `{viewer}` is the hex of the first 128 bits of the SHA-256 of the viewer id: raw ids never
//! reach the store. The flush script builds the `stats`, `totals`, `slot-totals`, `seen` and `batch` keys
//! itself from the prefix (their number depends on the batch), with the same shapes as here.

use chrono::NaiveDate;

use crate::inventory::{AdvertiserId, CampaignId};

/// The key names under one prefix.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    /// Keys under `prefix`.
    pub(crate) fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    /// The prefix itself, for scripts that build keys from it.
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `P:inventory`.
    pub(crate) fn inventory(&self) -> String {
        format!("{}:inventory", self.prefix)
    }

    /// `P:inventory:version`.
    pub(crate) fn inventory_version(&self) -> String {
        format!("{}:inventory:version", self.prefix)
    }

    /// `P:inventory:changed`, the channel of inventory changes.
    pub(crate) fn inventory_changed(&self) -> String {
        format!("{}:inventory:changed", self.prefix)
    }

    /// `P:stats:{campaign}:{day}`.
    pub(crate) fn stats(&self, campaign: &CampaignId, day: NaiveDate) -> String {
        format!("{}:stats:{campaign}:{day}", self.prefix)
    }

    /// `P:totals:{campaign}`.
    pub(crate) fn totals(&self, campaign: &CampaignId) -> String {
        format!("{}:totals:{campaign}", self.prefix)
    }

    /// `P:slot-totals:{campaign}`.
    pub(crate) fn slot_totals(&self, campaign: &CampaignId) -> String {
        format!("{}:slot-totals:{campaign}", self.prefix)
    }

    /// `P:apikey:{key_hash}`.
    pub(crate) fn api_key(&self, key_hash: &str) -> String {
        format!("{}:apikey:{key_hash}", self.prefix)
    }

    /// `P:advertiser-key:{advertiser}`.
    pub(crate) fn advertiser_key(&self, advertiser: &AdvertiserId) -> String {
        format!("{}:advertiser-key:{advertiser}", self.prefix)
    }

    /// `P:lease:{campaign}`.
    pub(crate) fn lease_total(&self, campaign: &CampaignId) -> String {
        format!("{}:lease:{campaign}", self.prefix)
    }

    /// `P:lease:{campaign}:{day}`.
    pub(crate) fn lease_day(&self, campaign: &CampaignId, day: NaiveDate) -> String {
        format!("{}:lease:{campaign}:{day}", self.prefix)
    }

    /// `P:freq:{viewer}:`, to which the frequency script appends a campaign id.
    pub(crate) fn frequency_prefix(&self, viewer: &str) -> String {
        format!("{}:freq:{viewer}:", self.prefix)
    }

    /// `P:freq:{viewer}:{campaign}`.
    pub(crate) fn frequency(&self, viewer: &str, campaign: &CampaignId) -> String {
        format!("{}:freq:{viewer}:{campaign}", self.prefix)
    }
}
