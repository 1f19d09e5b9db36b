//! Every Redis key regie uses, in one place.
//!
//! The part between braces is the Redis Cluster hash tag: keys with the same tag share a hash
//! slot, so each script and transaction touches one slot. Tags spread the load: per campaign
//! for its counters, budget leases and flushed-batch markers; per viewer for frequency
//! history; per decision for de-duplication marks (most of the keys); the inventory's two
//! keys together; advertiser keys together. One layout serves one Redis and a cluster.
//! docs/scaling.md explains the choice.

use chrono::NaiveDate;
use ulid::Ulid;

use crate::inventory::Id;

/// Key names under one prefix (`REGIE_KEY_PREFIX`).
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// Keys under `prefix`, which must not contain braces (they would change the hash tag).
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    /// The inventory document (JSON).
    pub fn inventory(&self) -> String {
        format!("{}:{{inventory}}:json", self.prefix)
    }

    /// The inventory's version (an integer).
    pub fn inventory_version(&self) -> String {
        format!("{}:{{inventory}}:version", self.prefix)
    }

    /// The channel on which inventory changes are published (a channel, not a key: in a
    /// cluster it reaches the subscribers of every node).
    pub fn changes_channel(&self) -> String {
        format!("{}:inventory:changed", self.prefix)
    }

    /// A campaign's counters of one reporting day: hash `{counter}|{slot}` → count.
    pub fn stats(&self, campaign: &str, day: NaiveDate) -> String {
        format!("{}:{{c:{campaign}}}:stats:{day}", self.prefix)
    }

    /// A campaign's lifetime counters: hash counter → count.
    pub fn totals(&self, campaign: &str) -> String {
        format!("{}:{{c:{campaign}}}:totals", self.prefix)
    }

    /// Budget units of a campaign leased by every instance over its life.
    pub fn lease_total(&self, campaign: &Id) -> String {
        format!("{}:{{c:{campaign}}}:lease", self.prefix)
    }

    /// Budget units of a campaign leased by every instance for one day.
    pub fn lease_day(&self, campaign: &Id, day: NaiveDate) -> String {
        format!("{}:{{c:{campaign}}}:lease:{day}", self.prefix)
    }

    /// The marker of a flushed batch's share for one campaign: a retry is not counted twice.
    pub fn batch(&self, campaign: &str, batch: Ulid) -> String {
        format!("{}:{{c:{campaign}}}:batch:{batch}", self.prefix)
    }

    /// The de-duplication mark of one event kind of one decision; it holds the id of the
    /// batch that counted it.
    pub fn seen(&self, field: &str, decision: Ulid) -> String {
        format!("{}:{{d:{decision}}}:seen:{field}", self.prefix)
    }

    /// The common start of a viewer's frequency keys; a campaign's key is this followed by
    /// the campaign id. Scripts name this as their key, so the viewer's slot routes them.
    pub fn frequency_base(&self, viewer: &str) -> String {
        format!("{}:{{v:{viewer}}}:freq:", self.prefix)
    }

    /// A viewer's recent views of a campaign (sorted set scored by time).
    pub fn frequency(&self, viewer: &str, campaign: &str) -> String {
        format!("{}{campaign}", self.frequency_base(viewer))
    }

    /// The advertiser owning an API key, by the key's hash.
    pub fn api_key(&self, key_hash: &str) -> String {
        format!("{}:{{keys}}:apikey:{key_hash}", self.prefix)
    }

    /// The hash of an advertiser's current API key.
    pub fn advertiser_key(&self, advertiser: &Id) -> String {
        format!("{}:{{keys}}:advertiser-key:{advertiser}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::connection::slot_of;

    #[test]
    fn what_one_script_touches_shares_a_slot() {
        let keys = Keys::new("regie");
        let day = NaiveDate::from_ymd_opt(2026, 11, 30).unwrap();
        let campaign = Id::parse("3vision-visitez").unwrap();
        let slot = slot_of(&keys.totals("3vision-visitez"));
        for key in [
            keys.stats("3vision-visitez", day),
            keys.lease_total(&campaign),
            keys.lease_day(&campaign, day),
            keys.batch("3vision-visitez", Ulid::nil()),
        ] {
            assert_eq!(slot_of(&key), slot, "{key}");
        }
        assert_eq!(
            slot_of(&keys.inventory()),
            slot_of(&keys.inventory_version())
        );
        assert_eq!(
            slot_of(&keys.frequency_base("abc")),
            slot_of(&keys.frequency("abc", "c1"))
        );
        assert_eq!(
            slot_of(&keys.api_key("h")),
            slot_of(&keys.advertiser_key(&campaign))
        );
    }

    #[test]
    fn decisions_spread_their_marks_over_the_slots() {
        let keys = Keys::new("regie");
        let slots: std::collections::HashSet<u16> = (0..1_000u128)
            .map(|i| slot_of(&keys.seen("impressions", Ulid::from(i * 7_919 + 1))))
            .collect();
        assert!(slots.len() > 950, "{} distinct slots", slots.len());
    }
}
