//! The embedded in-memory store: one process, nothing shared, nothing kept across restarts.
//! It behaves as the Redis store does, so the same behaviour tests run against both.

use std::collections::{HashMap, HashSet, VecDeque};

use chrono::NaiveDate;
use parking_lot::Mutex;
use ulid::Ulid;

use super::{
    counter_field, first_allowed, grant, stored_field, Backend, Batch, Counted, Counts,
    FlushReport, FrequencyItem, FrequencyRelease, Lease, LeaseRequest, PutOutcome, StoreError,
    StoredInventory,
};
use crate::inventory::{AdvertiserId, CampaignId};
use crate::ivt::Reason;
use crate::tracking::EventKind;

/// The embedded store.
#[derive(Debug, Default)]
pub struct MemoryStore {
    data: Mutex<Data>,
}

#[derive(Debug, Default)]
struct Data {
    inventory: Option<StoredInventory>,
    /// (campaign, day) → slot → counters.
    daily: HashMap<(CampaignId, NaiveDate), HashMap<String, Counts>>,
    totals: HashMap<CampaignId, Counts>,
    /// campaign → slot → lifetime counters of valid tracking events.
    slot_totals: HashMap<CampaignId, HashMap<String, Counts>>,
    /// De-duplication marks: their expiry (Unix seconds), and whether the event counted as
    /// valid (a click needs its decision's valid impression).
    seen: HashMap<(EventKind, Ulid), (i64, bool)>,
    /// Marks in insertion order; with one TTL for all, that is expiry order.
    seen_order: VecDeque<(i64, EventKind, Ulid)>,
    applied_batches: HashSet<Ulid>,
    key_hashes: HashMap<String, AdvertiserId>,
    advertiser_keys: HashMap<AdvertiserId, String>,
    /// The signing secret shared by the store's users (one process here).
    tracking_secret: Option<String>,
    leased_total: HashMap<CampaignId, u64>,
    leased_daily: HashMap<(CampaignId, NaiveDate), u64>,
    /// (viewer, campaign) → reservations (time in ms, reservation id) within the window.
    frequency: HashMap<(String, CampaignId), Vec<(i64, String)>>,
    frequency_calls: u64,
}

/// Frequency calls between two sweeps of expired viewers.
const FREQUENCY_SWEEP_EVERY: u64 = 4_096;

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Backend for MemoryStore {
    async fn load_inventory(&self) -> Result<Option<StoredInventory>, StoreError> {
        Ok(self.data.lock().inventory.clone())
    }

    async fn inventory_version(&self) -> Result<Option<u64>, StoreError> {
        Ok(self.data.lock().inventory.as_ref().map(|i| i.version))
    }

    async fn put_inventory(
        &self,
        json: &str,
        expected: Option<u64>,
        floor: u64,
    ) -> Result<PutOutcome, StoreError> {
        let mut data = self.data.lock();
        let current = data.inventory.as_ref().map_or(0, |i| i.version).max(floor);
        if expected.is_some_and(|e| e != current) {
            return Ok(PutOutcome::Conflict { current });
        }
        let version = current + 1;
        data.inventory = Some(StoredInventory {
            version,
            json: json.to_owned(),
        });
        Ok(PutOutcome::Written(version))
    }

    async fn restore_inventory(&self, json: &str, version: u64) -> Result<bool, StoreError> {
        let mut data = self.data.lock();
        if data
            .inventory
            .as_ref()
            .is_some_and(|i| i.version >= version)
        {
            return Ok(false);
        }
        data.inventory = Some(StoredInventory {
            version,
            json: json.to_owned(),
        });
        Ok(true)
    }

    async fn flush(&self, batch: &Batch) -> Result<FlushReport, StoreError> {
        let mut data = self.data.lock();
        data.expire_marks(batch.now_secs);
        if !data.applied_batches.insert(batch.id) {
            return Ok(FlushReport {
                counted: vec![Counted::Duplicate; batch.events.len()],
                already_applied: true,
            });
        }
        for served in &batch.served {
            let field = stored_field(served.invalid, "served");
            data.daily
                .entry((served.campaign.clone(), served.day))
                .or_default()
                .entry(served.slot.to_string())
                .or_default()
                .add_field(&field, served.count);
            data.totals
                .entry(served.campaign.clone())
                .or_default()
                .add_field(&field, served.count);
        }
        let expires = batch.now_secs + batch.dedup_ttl_secs as i64;
        let mut counted = Vec::with_capacity(batch.events.len());
        for event in &batch.events {
            let mut invalid = event.invalid;
            if invalid.is_none()
                && event.kind == EventKind::Click
                && data
                    .seen
                    .get(&(EventKind::Impression, event.decision_id))
                    .map(|m| m.1)
                    != Some(true)
            {
                invalid = Some(Reason::NoImpression);
            }
            let key = (event.kind, event.decision_id);
            if data.seen.contains_key(&key) {
                counted.push(Counted::Duplicate);
                continue;
            }
            data.seen.insert(key, (expires, invalid.is_none()));
            data.seen_order
                .push_back((expires, event.kind, event.decision_id));
            let field = stored_field(invalid, counter_field(event.kind));
            data.daily
                .entry((event.campaign.clone(), event.day))
                .or_default()
                .entry(event.slot.to_string())
                .or_default()
                .add_field(&field, 1);
            data.totals
                .entry(event.campaign.clone())
                .or_default()
                .add_field(&field, 1);
            if invalid.is_none() {
                // The optimize rotation learns from valid events only.
                data.slot_totals
                    .entry(event.campaign.clone())
                    .or_default()
                    .entry(event.slot.to_string())
                    .or_default()
                    .add_field(&field, 1);
            }
            counted.push(invalid.map_or(Counted::Valid, Counted::Invalid));
        }
        Ok(FlushReport {
            counted,
            already_applied: false,
        })
    }

    async fn daily_stats(
        &self,
        campaign: &CampaignId,
        days: &[NaiveDate],
    ) -> Result<Vec<Vec<(String, Counts)>>, StoreError> {
        let data = self.data.lock();
        Ok(days
            .iter()
            .map(|day| {
                data.daily
                    .get(&(campaign.clone(), *day))
                    .map(|slots| slots.iter().map(|(s, c)| (s.clone(), *c)).collect())
                    .unwrap_or_default()
            })
            .collect())
    }

    async fn totals(&self, campaigns: &[CampaignId]) -> Result<Vec<Counts>, StoreError> {
        let data = self.data.lock();
        Ok(campaigns
            .iter()
            .map(|c| data.totals.get(c).copied().unwrap_or_default())
            .collect())
    }

    async fn slot_totals(
        &self,
        campaigns: &[CampaignId],
    ) -> Result<Vec<Vec<(String, Counts)>>, StoreError> {
        let data = self.data.lock();
        Ok(campaigns
            .iter()
            .map(|c| {
                data.slot_totals
                    .get(c)
                    .map(|slots| slots.iter().map(|(s, c)| (s.clone(), *c)).collect())
                    .unwrap_or_default()
            })
            .collect())
    }

    async fn set_api_key(
        &self,
        advertiser: &AdvertiserId,
        key_hash: &str,
    ) -> Result<(), StoreError> {
        let mut data = self.data.lock();
        if let Some(old) = data
            .advertiser_keys
            .insert(advertiser.clone(), key_hash.to_owned())
        {
            data.key_hashes.remove(&old);
        }
        data.key_hashes
            .insert(key_hash.to_owned(), advertiser.clone());
        Ok(())
    }

    async fn advertiser_for_key(&self, key_hash: &str) -> Result<Option<AdvertiserId>, StoreError> {
        Ok(self.data.lock().key_hashes.get(key_hash).cloned())
    }

    async fn revoke_api_key(&self, advertiser: &AdvertiserId) -> Result<bool, StoreError> {
        let mut data = self.data.lock();
        let Some(old) = data.advertiser_keys.remove(advertiser) else {
            return Ok(false);
        };
        data.key_hashes.remove(&old);
        Ok(true)
    }

    async fn tracking_secret(&self, candidate: &str) -> Result<String, StoreError> {
        Ok(self
            .data
            .lock()
            .tracking_secret
            .get_or_insert_with(|| candidate.to_owned())
            .clone())
    }

    async fn lease(&self, request: &LeaseRequest<'_>) -> Result<Lease, StoreError> {
        let mut data = self.data.lock();
        let total = data
            .leased_total
            .get(request.campaign)
            .copied()
            .unwrap_or(0);
        let day = data
            .leased_daily
            .get(&(request.campaign.clone(), request.day))
            .copied()
            .unwrap_or(0);
        let granted = grant(request, total, day);
        *data
            .leased_total
            .entry(request.campaign.clone())
            .or_default() += granted;
        *data
            .leased_daily
            .entry((request.campaign.clone(), request.day))
            .or_default() += granted;
        Ok(Lease {
            granted,
            total_leased: total + granted,
            day_leased: day + granted,
        })
    }

    async fn release(
        &self,
        campaign: &CampaignId,
        day: NaiveDate,
        units: u64,
    ) -> Result<(), StoreError> {
        let mut data = self.data.lock();
        if let Some(total) = data.leased_total.get_mut(campaign) {
            *total = total.saturating_sub(units);
        }
        if let Some(daily) = data.leased_daily.get_mut(&(campaign.clone(), day)) {
            *daily = daily.saturating_sub(units);
        }
        Ok(())
    }

    async fn frequency_pick(
        &self,
        viewer: &str,
        now_ms: i64,
        reservation: &str,
        chains: &[Vec<FrequencyItem>],
    ) -> Result<Vec<Option<usize>>, StoreError> {
        let mut data = self.data.lock();
        data.frequency_calls += 1;
        if data.frequency_calls % FREQUENCY_SWEEP_EVERY == 0 {
            // The longest window the inventory allows bounds how long a viewer is remembered.
            let oldest = now_ms - 366 * 86_400_000;
            data.frequency
                .retain(|_, views| views.iter().any(|(t, _)| *t > oldest));
        }
        let data = &mut *data;
        let picks = first_allowed(
            chains,
            |item| &item.campaign,
            |item| {
                let Some(cap) = item.cap else {
                    return Some(true);
                };
                let views = data
                    .frequency
                    .entry((viewer.to_owned(), item.campaign.clone()))
                    .or_default();
                views.retain(|(t, _)| *t > now_ms - cap.window_ms);
                let allowed = views.len() < cap.max as usize;
                if allowed {
                    views.push((now_ms, reservation.to_owned()));
                }
                Some(allowed)
            },
        );
        Ok(picks.expect("every verdict is known"))
    }

    async fn frequency_check(
        &self,
        viewer: &str,
        now_ms: i64,
        items: &[FrequencyItem],
    ) -> Result<Vec<bool>, StoreError> {
        let data = self.data.lock();
        Ok(items
            .iter()
            .map(|item| {
                let Some(cap) = item.cap else { return true };
                let seen = data
                    .frequency
                    .get(&(viewer.to_owned(), item.campaign.clone()))
                    .map_or(0, |views| {
                        views
                            .iter()
                            .filter(|(t, _)| *t > now_ms - cap.window_ms)
                            .count()
                    });
                seen < cap.max as usize
            })
            .collect())
    }

    async fn frequency_release(&self, releases: &[FrequencyRelease]) -> Result<(), StoreError> {
        let mut data = self.data.lock();
        for release in releases {
            for campaign in &release.campaigns {
                if let Some(views) = data
                    .frequency
                    .get_mut(&(release.viewer.clone(), campaign.clone()))
                {
                    views.retain(|(_, r)| *r != release.reservation);
                }
            }
        }
        Ok(())
    }
}

impl Data {
    fn expire_marks(&mut self, now_secs: i64) {
        while let Some(&(expires, kind, id)) = self.seen_order.front() {
            if expires > now_secs {
                break;
            }
            self.seen_order.pop_front();
            // A mark re-inserted later carries a later expiry; only drop the one that expired.
            if self.seen.get(&(kind, id)).map(|m| m.0) == Some(expires) {
                self.seen.remove(&(kind, id));
            }
        }
        // Batch ids only guard retries, which happen within seconds.
        if self.applied_batches.len() > 100_000 {
            self.applied_batches.clear();
        }
    }
}
