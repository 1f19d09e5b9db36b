//! The embedded in-memory store: one process, nothing shared, nothing kept across restarts.
//! It behaves as the Redis store does, so the same behaviour tests run against both.
//!
//! What grows with traffic is bounded: de-duplication marks expire with their kind's token
//! (swept at every flush), and viewer histories expire with their campaign's frequency window
//! and are capped in number ([`MemoryStore::with_max_histories`]).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};

use chrono::NaiveDate;
use parking_lot::Mutex;
use prometheus::IntCounter;
use ulid::Ulid;

use super::{
    counter_field, first_allowed, grant, stored_field, Backend, Batch, Counted, Counts,
    FlushReport, FrequencyItem, FrequencyRelease, Lease, LeaseRequest, Positions, PutOutcome,
    StoreError, StoredInventory,
};
use crate::inventory::{AdvertiserId, CampaignId};
use crate::ivt::Reason;
use crate::tracking::EventKind;

/// Viewer histories (one per viewer and frequency-capped campaign) kept by
/// [`MemoryStore::new`], as `REGIE_MAX_VIEWER_HISTORIES` does by default: about 350 bytes each
/// with one view (measured), so some 175 MB at most.
pub const DEFAULT_MAX_HISTORIES: usize = 500_000;

/// The embedded store.
#[derive(Debug)]
pub struct MemoryStore {
    data: Mutex<Data>,
    /// The most viewer histories kept; past it, the least recently seen are forgotten.
    max_histories: usize,
    /// Histories forgotten to stay under `max_histories` (`regie_viewer_histories_evicted_total`).
    evicted: IntCounter,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
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
    /// Marks by expiry, soonest first: each kind has its own life, so insertion order is not
    /// expiry order.
    seen_order: BinaryHeap<Reverse<(i64, EventKind, Ulid)>>,
    applied_batches: HashSet<Ulid>,
    key_hashes: HashMap<String, AdvertiserId>,
    advertiser_keys: HashMap<AdvertiserId, String>,
    /// The signing secret shared by the store's users (one process here).
    tracking_secret: Option<String>,
    leased_total: HashMap<CampaignId, u64>,
    leased_daily: HashMap<(CampaignId, NaiveDate), u64>,
    /// (viewer, campaign) → the viewer's views of the campaign within its window.
    frequency: HashMap<(String, CampaignId), History>,
    frequency_calls: u64,
}

/// A viewer's views of one frequency-capped campaign.
#[derive(Debug)]
struct History {
    /// The campaign's window when it was last served, in milliseconds: once its latest view
    /// is older than that, the history is forgotten.
    window_ms: i64,
    /// Reservations: (time in ms, reservation id).
    views: Vec<(i64, String)>,
}

impl History {
    /// The time of the latest view; `i64::MIN` when every view was cancelled.
    fn latest(&self) -> i64 {
        self.views.iter().map(|(t, _)| *t).max().unwrap_or(i64::MIN)
    }

    /// Whether no view is left within the window.
    fn expired(&self, now_ms: i64) -> bool {
        self.latest() <= now_ms.saturating_sub(self.window_ms)
    }
}

/// Frequency calls between two sweeps of expired viewers.
const FREQUENCY_SWEEP_EVERY: u64 = 4_096;

impl MemoryStore {
    /// An empty store keeping at most [`DEFAULT_MAX_HISTORIES`] viewer histories, whose
    /// evictions are counted by a counter of its own.
    pub fn new() -> Self {
        let evicted = IntCounter::new(
            "regie_viewer_histories_evicted_total",
            "Viewer histories forgotten",
        )
        .expect("valid metric");
        Self::with_max_histories(DEFAULT_MAX_HISTORIES, evicted)
    }

    /// An empty store keeping at most `max_histories` viewer histories (one per viewer and
    /// frequency-capped campaign, at least one), counting in `evicted` those it forgets to
    /// stay under the bound.
    pub fn with_max_histories(max_histories: usize, evicted: IntCounter) -> Self {
        Self {
            data: Mutex::default(),
            max_histories: max_histories.max(1),
            evicted,
        }
    }

    /// Viewer histories held now (one per viewer and frequency-capped campaign).
    pub fn histories(&self) -> usize {
        self.data.lock().frequency.len()
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
            let expires = batch.now_secs + batch.mark_ttl.of(event.kind) as i64;
            data.seen.insert(key, (expires, invalid.is_none()));
            data.seen_order
                .push(Reverse((expires, event.kind, event.decision_id)));
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
    ) -> Result<Positions, StoreError> {
        let mut data = self.data.lock();
        data.frequency_calls += 1;
        if data.frequency_calls % FREQUENCY_SWEEP_EVERY == 0 {
            data.sweep_histories(now_ms);
        }
        let data = &mut *data;
        let picks = first_allowed(
            chains,
            |item| &item.campaign,
            |item| {
                let Some(cap) = item.cap else {
                    return Some(true);
                };
                let key = (viewer.to_owned(), item.campaign.clone());
                if let Some(history) = data.frequency.get_mut(&key) {
                    history.window_ms = cap.window_ms;
                    history
                        .views
                        .retain(|(t, _)| *t > now_ms.saturating_sub(cap.window_ms));
                    let allowed = history.views.len() < cap.max as usize;
                    if allowed {
                        history.views.push((now_ms, reservation.to_owned()));
                    }
                    return Some(allowed);
                }
                let evicted = data.make_room(now_ms, self.max_histories);
                self.evicted.inc_by(evicted);
                data.frequency.insert(
                    key,
                    History {
                        window_ms: cap.window_ms,
                        views: vec![(now_ms, reservation.to_owned())],
                    },
                );
                Some(true)
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
                    .map_or(0, |history| {
                        history
                            .views
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
                if let Some(history) = data
                    .frequency
                    .get_mut(&(release.viewer.clone(), campaign.clone()))
                {
                    history.views.retain(|(_, r)| *r != release.reservation);
                }
            }
        }
        Ok(())
    }
}

impl Data {
    fn expire_marks(&mut self, now_secs: i64) {
        while let Some(&Reverse((expires, kind, id))) = self.seen_order.peek() {
            if expires > now_secs {
                break;
            }
            self.seen_order.pop();
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

    /// Forgets the histories with no view left in their campaign's window.
    fn sweep_histories(&mut self, now_ms: i64) {
        self.frequency.retain(|_, history| !history.expired(now_ms));
    }

    /// Makes room for one more history under `max`: expired histories go first; if that is
    /// not enough, those whose latest view is oldest, a tenth of the bound at once, so that
    /// this pass over every history runs once per tenth of the bound new viewers, not for
    /// each. Answers how many live histories were forgotten.
    fn make_room(&mut self, now_ms: i64, max: usize) -> u64 {
        if self.frequency.len() < max {
            return 0;
        }
        self.sweep_histories(now_ms);
        if self.frequency.len() < max {
            return 0;
        }
        let target = (self.frequency.len() + 1 - max).max(max / 10).max(1);
        let mut latest: Vec<i64> = self.frequency.values().map(History::latest).collect();
        let (_, &mut threshold, _) = latest.select_nth_unstable(target - 1);
        // Every history older than the threshold goes, and as many at the threshold as it
        // takes to forget exactly `target`.
        let mut at_threshold = target - latest.iter().filter(|t| **t < threshold).count();
        self.frequency.retain(|_, history| {
            let t = history.latest();
            if t < threshold {
                return false;
            }
            if t == threshold && at_threshold > 0 {
                at_threshold -= 1;
                return false;
            }
            true
        });
        target as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{FrequencyCap, MarkLifetimes};
    use crate::tracking::EventKind;

    fn campaign(id: &str) -> CampaignId {
        CampaignId::parse(id).unwrap()
    }

    fn capped(id: &str, window_ms: i64) -> FrequencyItem {
        FrequencyItem {
            campaign: campaign(id),
            cap: Some(FrequencyCap { max: 1, window_ms }),
        }
    }

    fn counter() -> IntCounter {
        IntCounter::new("evicted", "evicted").unwrap()
    }

    /// One view of each item for `viewer` at `now_ms`; answers whether each was allowed.
    async fn view(
        store: &MemoryStore,
        viewer: &str,
        now_ms: i64,
        items: &[FrequencyItem],
    ) -> Vec<bool> {
        let mut allowed = Vec::new();
        for item in items {
            let pick = store
                .frequency_pick(
                    viewer,
                    now_ms,
                    &Ulid::new().to_string(),
                    &[vec![item.clone()]],
                )
                .await
                .unwrap();
            allowed.push(pick[..] == [Some(0)]);
        }
        allowed
    }

    #[tokio::test]
    async fn each_history_is_forgotten_after_its_own_campaigns_window() {
        let store = MemoryStore::new();
        let minute = capped("minute", 60_000);
        let day = capped("day", 86_400_000);
        view(&store, "v", 0, &[minute.clone(), day.clone()]).await;
        assert_eq!(store.histories(), 2);

        store.data.lock().sweep_histories(60_001);

        assert_eq!(
            store.histories(),
            1,
            "the minute's history is gone, the day's is not"
        );
        assert_eq!(
            view(&store, "v", 60_001, &[minute, day]).await,
            [true, false],
            "the day's cap still holds"
        );
        store.data.lock().sweep_histories(86_400_001 + 60_001);
        assert_eq!(store.histories(), 0);
    }

    #[tokio::test]
    async fn histories_are_swept_as_viewers_keep_coming() {
        let store = MemoryStore::new();
        let minute = capped("minute", 60_000);
        for n in 0..FREQUENCY_SWEEP_EVERY {
            view(
                &store,
                &format!("early-{n}"),
                0,
                std::slice::from_ref(&minute),
            )
            .await;
        }
        assert_eq!(store.histories(), FREQUENCY_SWEEP_EVERY as usize);

        // The calls of the next minute and a bit trigger a sweep: the early viewers are gone.
        for n in 0..FREQUENCY_SWEEP_EVERY {
            view(
                &store,
                &format!("late-{n}"),
                61_000,
                std::slice::from_ref(&minute),
            )
            .await;
        }

        assert!(
            store.histories() <= FREQUENCY_SWEEP_EVERY as usize,
            "{}",
            store.histories()
        );
    }

    #[tokio::test]
    async fn the_number_of_histories_stays_under_its_bound_and_the_oldest_go_first() {
        let evicted = counter();
        let store = MemoryStore::with_max_histories(1_000, evicted.clone());
        let day = capped("day", 86_400_000);

        for n in 0..200_000_i64 {
            view(
                &store,
                &format!("viewer-{n}"),
                n,
                std::slice::from_ref(&day),
            )
            .await;
            assert!(store.histories() <= 1_000);
        }

        assert_eq!(evicted.get() + store.histories() as u64, 200_000);
        assert_eq!(
            view(&store, "viewer-199999", 200_000, std::slice::from_ref(&day)).await,
            [false],
            "the latest viewer is still remembered"
        );
        assert_eq!(
            view(&store, "viewer-0", 200_000, std::slice::from_ref(&day)).await,
            [true],
            "the first was forgotten"
        );
    }

    #[tokio::test]
    async fn the_bound_holds_when_every_view_has_the_same_time() {
        let evicted = counter();
        let store = MemoryStore::with_max_histories(100, evicted.clone());
        let day = capped("day", 86_400_000);

        for n in 0..1_000 {
            view(
                &store,
                &format!("viewer-{n}"),
                0,
                std::slice::from_ref(&day),
            )
            .await;
        }

        assert!(store.histories() <= 100);
        assert!(
            store.histories() >= 90,
            "a tenth goes at once, not all: {}",
            store.histories()
        );
        assert_eq!(evicted.get() + store.histories() as u64, 1_000);
    }

    #[tokio::test]
    async fn each_kinds_marks_expire_with_its_own_life() {
        let store = MemoryStore::new();
        let decision = Ulid::new();
        let event = |kind| crate::store::Event {
            kind,
            decision_id: decision,
            campaign: campaign("c"),
            slot: crate::inventory::SlotName::parse("s").unwrap(),
            day: NaiveDate::from_ymd_opt(2026, 11, 30).unwrap(),
            invalid: None,
        };
        let lives = MarkLifetimes {
            impression: 100,
            viewable: 200,
            click: 1_000,
        };
        let flush = |now_secs, kinds: &[EventKind]| {
            let batch = Batch {
                id: Ulid::new(),
                served: Vec::new(),
                events: kinds.iter().map(|k| event(*k)).collect(),
                mark_ttl: lives,
                now_secs,
            };
            let store = &store;
            async move { store.flush(&batch).await.unwrap().counted }
        };
        let all = [EventKind::Impression, EventKind::Viewable, EventKind::Click];
        flush(0, &all).await;
        let kinds_marked = || {
            let data = store.data.lock();
            all.iter()
                .filter(|k| data.seen.contains_key(&(**k, decision)))
                .count()
        };

        assert_eq!(flush(99, &all).await, [Counted::Duplicate; 3]);
        flush(100, &[]).await;
        assert_eq!(kinds_marked(), 2, "the impression's mark expired");
        flush(200, &[]).await;
        assert_eq!(kinds_marked(), 1, "the viewable's too");
        assert_eq!(flush(999, &[EventKind::Click]).await, [Counted::Duplicate]);
        flush(1_000, &[]).await;
        assert_eq!(kinds_marked(), 0);
        assert!(store.data.lock().seen_order.is_empty());
    }
}
