//! Counting served decisions, impressions, viewable impressions and clicks.
//!
//! The request path only appends to memory ([`Recorder`]); a [`Flusher`] task writes batches to
//! the store at least every flush interval, one round trip per batch. A batch that fails stays
//! queued with its id and is retried as is, so a retry after a timeout is not counted twice.
//! While the store is down, events wait in bounded memory; past the bound they are dropped and
//! counted as dropped. An event already waiting (a replayed beacon) is not admitted again, so
//! one valid token fired over and over cannot fill the bound and crowd real events out. On
//! shutdown the flusher writes what is left before the process exits.

use std::cell::Cell;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDate;
use parking_lot::Mutex;
use tokio::sync::watch;
use ulid::Ulid;

use crate::clock::SharedClock;
use crate::inventory::{CampaignId, SlotName};
use crate::ivt::Reason;
use crate::metrics::thread_index;
use crate::metrics::Metrics;
use crate::store::{Backend, Batch, Counted, Event, MarkLifetimes, ServedCount, Store};
use crate::tracking::EventKind;

/// Events per batch: one script call each, small enough not to stall Redis for long.
const MAX_EVENTS_PER_BATCH: usize = 5_000;

#[derive(Default)]
struct Pending {
    /// hashbrown's map, for lookups by [`ServedKey`].
    served: hashbrown::HashMap<(CampaignId, SlotName, NaiveDate), u64>,
    /// Invalid served decisions, apart: rare, so kept out of the hot map's key.
    invalid_served: HashMap<(CampaignId, SlotName, NaiveDate, Reason), u64>,
    events: Vec<Event>,
}

/// The key of a served count, borrowed: counting a decision copies the campaign and slot
/// names only the first time that count is made. It hashes as the owned tuple does.
#[derive(Hash)]
struct ServedKey<'a>(&'a CampaignId, &'a SlotName, NaiveDate);

impl hashbrown::Equivalent<(CampaignId, SlotName, NaiveDate)> for ServedKey<'_> {
    fn equivalent(&self, key: &(CampaignId, SlotName, NaiveDate)) -> bool {
        *self.0 == key.0 && *self.1 == key.1 && self.2 == key.2
    }
}

/// The events (kind and decision) that wait to be written, in one shard of
/// [`Recorder::event`]'s replay guard.
type Waiting = Mutex<HashSet<(EventKind, Ulid)>>;

/// How many shards the pending counts are split into.
const SHARDS: usize = 16;

thread_local! {
    /// The last event this thread found waiting: its recorder's id, that recorder's
    /// [`Recorder::written_epoch`] then, and the event's kind and decision.
    static LAST_WAITING: Cell<Option<(u64, u64, EventKind, Ulid)>> = const { Cell::new(None) };
}

static NEXT_RECORDER: AtomicU64 = AtomicU64::new(0);

/// One shard, alone on its cache lines so that two workers' shards do not share one.
#[derive(Default)]
#[repr(align(128))]
struct Shard(Mutex<Pending>);

/// The in-memory side of counting, shared by every request.
///
/// Each thread appends to its own shard, so requests on different workers never wait for
/// one another; only the flusher visits every shard.
pub struct Recorder {
    shards: Box<[Shard]>,
    /// The events held in the shards or by batches waiting for a retry, by kind and
    /// decision, split by decision id: a repeat of one is not admitted. At most
    /// `max_pending` entries, since each stands for an event that takes room.
    waiting: Box<[Waiting]>,
    /// Events and served entries held in the shards.
    held: AtomicUsize,
    /// Events and served entries held by batches that failed and wait for a retry.
    queued: AtomicUsize,
    max_pending: usize,
    metrics: Metrics,
    /// Told apart from other recorders of the process (tests make several) in
    /// [`LAST_WAITING`].
    id: u64,
    /// Moves on each time written events leave `waiting`. While it has not moved, an event a
    /// thread found waiting still waits, and a repeat of it is refused without taking the
    /// lock of its shard of `waiting`: a token replayed from every worker would otherwise
    /// move that lock's cache line from core to core on each request.
    written_epoch: AtomicU64,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("max_pending", &self.max_pending)
            .finish_non_exhaustive()
    }
}

impl Recorder {
    /// A recorder holding at most `max_pending` events and served entries in memory.
    pub fn new(max_pending: usize, metrics: Metrics) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
            waiting: (0..SHARDS).map(|_| Mutex::default()).collect(),
            held: AtomicUsize::new(0),
            queued: AtomicUsize::new(0),
            max_pending,
            metrics,
            id: NEXT_RECORDER.fetch_add(1, Ordering::Relaxed),
            written_epoch: AtomicU64::new(0),
        }
    }

    fn shard(&self) -> &Mutex<Pending> {
        &self.shards[thread_index() % SHARDS].0
    }

    /// Makes room for one more entry, if the bound allows it.
    fn reserve_room(&self) -> bool {
        let held = self.held.fetch_add(1, Ordering::Relaxed);
        if held + self.queued.load(Ordering::Relaxed) < self.max_pending {
            self.metrics.pending_events.inc();
            true
        } else {
            self.held.fetch_sub(1, Ordering::Relaxed);
            self.metrics.dropped_events.inc();
            false
        }
    }

    /// Counts one served decision.
    pub fn served(&self, campaign: &CampaignId, slot: &SlotName, day: NaiveDate) {
        let mut pending = self.shard().lock();
        if let Some(n) = pending.served.get_mut(&ServedKey(campaign, slot, day)) {
            *n += 1;
        } else if self.reserve_room() {
            pending
                .served
                .insert((campaign.clone(), slot.clone(), day), 1);
        }
    }

    /// Counts one served decision that is invalid (a bot's), apart from the valid ones.
    pub fn invalid_served(
        &self,
        campaign: &CampaignId,
        slot: &SlotName,
        day: NaiveDate,
        reason: Reason,
    ) {
        let mut pending = self.shard().lock();
        let key = (campaign.clone(), slot.clone(), day, reason);
        if let Some(n) = pending.invalid_served.get_mut(&key) {
            *n += 1;
        } else if self.reserve_room() {
            pending.invalid_served.insert(key, 1);
        }
    }

    fn waiting_of(&self, decision: Ulid) -> &Waiting {
        &self.waiting[(decision.random() % SHARDS as u128) as usize]
    }

    /// Records one tracking event, unless the same event (kind and decision) already waits
    /// to be written: the store would count it once anyway, and a replayed token must not
    /// take the room of real events while the store is down. Events already written are
    /// de-duplicated by the store.
    pub fn event(&self, event: Event) {
        let key = (event.kind, event.decision_id);
        let seen = Some((
            self.id,
            self.written_epoch.load(Ordering::Acquire),
            key.0,
            key.1,
        ));
        // Found waiting by this thread, and nothing written has left since: it still waits.
        // Should a write begin meanwhile, refusing the repeat is what the store would do.
        if LAST_WAITING.get() == seen {
            return;
        }
        let mut waiting = self.waiting_of(event.decision_id).lock();
        if waiting.contains(&key) {
            LAST_WAITING.set(seen);
            return;
        }
        if !self.reserve_room() {
            return;
        }
        waiting.insert(key);
        drop(waiting);
        LAST_WAITING.set(seen);
        self.shard().lock().events.push(event);
    }

    /// Forgets the events of a written batch: a repeat of one is admitted again, for the
    /// store to recognise.
    fn written(&self, events: &[Event]) {
        // Before any leaves `waiting`: no thread may take one as waiting from here on.
        self.written_epoch.fetch_add(1, Ordering::AcqRel);
        for event in events {
            self.waiting_of(event.decision_id)
                .lock()
                .remove(&(event.kind, event.decision_id));
        }
    }

    /// Takes everything pending, as batches ready to write.
    fn take_batches(&self, mark_ttl: MarkLifetimes, now_secs: i64) -> Vec<Batch> {
        let mut served: HashMap<(CampaignId, SlotName, NaiveDate), u64> = HashMap::new();
        let mut invalid_served: HashMap<(CampaignId, SlotName, NaiveDate, Reason), u64> =
            HashMap::new();
        let mut events = Vec::new();
        let mut taken = 0;
        for shard in self.shards.iter() {
            let pending = std::mem::take(&mut *shard.0.lock());
            taken += pending.served.len() + pending.invalid_served.len() + pending.events.len();
            events.extend(pending.events);
            for (key, count) in pending.served {
                *served.entry(key).or_insert(0) += count;
            }
            for (key, count) in pending.invalid_served {
                *invalid_served.entry(key).or_insert(0) += count;
            }
        }
        self.held.fetch_sub(taken, Ordering::Relaxed);
        // The same count kept by two shards is one entry from here on.
        let merged = served.len() + invalid_served.len() + events.len();
        self.metrics.pending_events.sub((taken - merged) as i64);
        // Impressions before clicks, whichever shard held them: the store counts a click as
        // valid only after its decision's impression.
        events.sort_by_key(|event| event.kind);
        let served: Vec<ServedCount> = served
            .into_iter()
            .map(|((campaign, slot, day), count)| ServedCount {
                campaign,
                slot,
                day,
                count,
                invalid: None,
            })
            .chain(
                invalid_served
                    .into_iter()
                    .map(|((campaign, slot, day, reason), count)| ServedCount {
                        campaign,
                        slot,
                        day,
                        count,
                        invalid: Some(reason),
                    }),
            )
            .collect();
        if served.is_empty() && events.is_empty() {
            return Vec::new();
        }
        let mut batches = vec![Batch {
            id: Ulid::new(),
            served,
            events: Vec::new(),
            mark_ttl,
            now_secs,
        }];
        for chunk in events.chunks(MAX_EVENTS_PER_BATCH) {
            let last = batches.last_mut().expect("one batch at least");
            if last.events.is_empty() {
                last.events = chunk.to_vec();
            } else {
                batches.push(Batch {
                    id: Ulid::new(),
                    served: Vec::new(),
                    events: chunk.to_vec(),
                    mark_ttl,
                    now_secs,
                });
            }
        }
        batches
    }
}

fn batch_size(batch: &Batch) -> usize {
    batch.served.len() + batch.events.len()
}

/// Writes the recorder's batches to the store.
pub struct Flusher {
    recorder: Arc<Recorder>,
    store: Store,
    clock: SharedClock,
    metrics: Metrics,
    mark_ttl: MarkLifetimes,
    retry: VecDeque<Batch>,
    /// Whether the last write failed: an outage is logged when it starts and when it ends.
    failing: bool,
}

impl Flusher {
    /// A flusher for `recorder`. De-duplication marks are kept as `mark_ttl` says, which must
    /// be at least each kind's token life so a replayed token is never counted twice.
    pub fn new(
        recorder: Arc<Recorder>,
        store: Store,
        clock: SharedClock,
        metrics: Metrics,
        mark_ttl: MarkLifetimes,
    ) -> Self {
        Self {
            recorder,
            store,
            clock,
            metrics,
            mark_ttl,
            retry: VecDeque::new(),
            failing: false,
        }
    }

    /// Writes queued and pending batches, oldest first; stops at the first failure and keeps
    /// what was not written. True when nothing is left.
    pub async fn flush(&mut self) -> bool {
        let now_secs = self.clock.now().timestamp();
        for batch in self.recorder.take_batches(self.mark_ttl, now_secs) {
            self.recorder
                .queued
                .fetch_add(batch_size(&batch), Ordering::Relaxed);
            self.retry.push_back(batch);
        }
        while let Some(batch) = self.retry.front() {
            match self.store.flush(batch).await {
                Ok(report) => {
                    for (event, counted) in batch.events.iter().zip(&report.counted) {
                        self.count_metric(event, *counted);
                    }
                    self.recorder.written(&batch.events);
                    let size = batch_size(batch);
                    self.recorder.queued.fetch_sub(size, Ordering::Relaxed);
                    self.metrics.pending_events.sub(size as i64);
                    self.retry.pop_front();
                    if std::mem::take(&mut self.failing) {
                        tracing::info!("counter flushes succeed again");
                    }
                }
                Err(e) => {
                    let queued = self.retry.len();
                    if self.failing {
                        tracing::debug!(error = %e, queued, "counter flush failed again");
                    } else {
                        tracing::warn!(error = %e, queued, "counter flush failed; counts wait in memory and will be retried");
                    }
                    self.failing = true;
                    return false;
                }
            }
        }
        true
    }

    fn count_metric(&self, event: &Event, counted: Counted) {
        match counted {
            Counted::Duplicate => {}
            Counted::Invalid(reason) => self.metrics.invalid(event.kind.as_str(), reason),
            Counted::Valid => {
                self.metrics
                    .count_event(event.kind, event.slot.as_str(), event.campaign.as_str())
            }
        }
    }

    /// Flushes every `interval` until `shutdown` turns true, then flushes what is left, trying
    /// until `final_deadline` passes.
    pub async fn run(
        mut self,
        interval: Duration,
        mut shutdown: watch::Receiver<bool>,
        final_deadline: Duration,
    ) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => { self.flush().await; }
                _ = shutdown.changed() => break,
            }
        }
        let drained = tokio::time::timeout(final_deadline, async {
            while !self.flush().await {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
        match drained {
            Ok(()) => tracing::info!("counters flushed"),
            Err(_) => {
                let lost: usize = self.retry.iter().map(batch_size).sum();
                tracing::error!(
                    lost,
                    "shutdown deadline passed before counters could be flushed"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracking::EventKind;

    fn names() -> (CampaignId, SlotName, NaiveDate) {
        (
            CampaignId::parse("camp").unwrap(),
            SlotName::parse("Publicité 2").unwrap(),
            NaiveDate::from_ymd_opt(2026, 11, 30).unwrap(),
        )
    }

    #[test]
    fn counts_kept_by_every_worker_are_merged_into_one_entry_per_campaign_slot_and_day() {
        let metrics = Metrics::new();
        let recorder = Recorder::new(1_000, metrics.clone());
        let (campaign, slot, day) = names();
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..250 {
                        recorder.served(&campaign, &slot, day);
                    }
                });
            }
        });

        let batches = recorder.take_batches(MarkLifetimes::uniform(60), 0);
        let served: Vec<(&str, u64)> = batches
            .iter()
            .flat_map(|b| b.served.iter().map(|s| (s.campaign.as_str(), s.count)))
            .collect();
        assert_eq!(served, [("camp", 1_000)]);
        assert_eq!(
            metrics.pending_events.get(),
            1,
            "one entry waits for the store"
        );
        assert!(
            recorder
                .take_batches(MarkLifetimes::uniform(60), 0)
                .is_empty(),
            "taken once"
        );
    }

    #[test]
    fn a_replayed_event_waits_once_and_leaves_room_for_others() {
        let metrics = Metrics::new();
        let recorder = Recorder::new(10, metrics.clone());
        let (campaign, slot, day) = names();
        let event = |kind, decision_id| Event {
            kind,
            decision_id,
            campaign: campaign.clone(),
            slot: slot.clone(),
            day,
            invalid: None,
        };
        let replayed = Ulid::new();

        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..100 {
                        recorder.event(event(EventKind::Impression, replayed));
                    }
                });
            }
        });
        recorder.event(event(EventKind::Viewable, replayed));
        for _ in 0..8 {
            recorder.event(event(EventKind::Impression, Ulid::new()));
        }

        assert_eq!(metrics.dropped_events.get(), 0);
        let batches = recorder.take_batches(MarkLifetimes::uniform(60), 0);
        let events: Vec<&Event> = batches.iter().flat_map(|b| &b.events).collect();
        assert_eq!(events.len(), 10);
        let replays = events
            .iter()
            .filter(|e| e.decision_id == replayed && e.kind == EventKind::Impression)
            .count();
        assert_eq!(replays, 1);
        // Taken for a write that has not succeeded yet, they still wait: no repeat comes in.
        recorder.event(event(EventKind::Impression, replayed));
        assert!(recorder
            .take_batches(MarkLifetimes::uniform(60), 0)
            .is_empty());
        // Once written, a repeat is admitted again, for the store to recognise.
        recorder.written(&batches[0].events);
        recorder.event(event(EventKind::Impression, replayed));
        assert_eq!(
            recorder.take_batches(MarkLifetimes::uniform(60), 0).len(),
            1
        );
    }

    #[test]
    fn an_event_waiting_in_one_recorder_is_admitted_by_another() {
        let (campaign, slot, day) = names();
        let event = Event {
            kind: EventKind::Click,
            decision_id: Ulid::new(),
            campaign,
            slot,
            day,
            invalid: None,
        };
        let first = Recorder::new(10, Metrics::new());
        first.event(event.clone());
        first.event(event.clone());
        let second = Recorder::new(10, Metrics::new());
        second.event(event);

        let events = |recorder: &Recorder| -> usize {
            recorder
                .take_batches(MarkLifetimes::uniform(60), 0)
                .iter()
                .map(|b| b.events.len())
                .sum()
        };
        assert_eq!(events(&first), 1);
        assert_eq!(events(&second), 1);
    }

    #[test]
    fn past_the_bound_events_are_dropped_and_counted() {
        let metrics = Metrics::new();
        let recorder = Recorder::new(2, metrics.clone());
        let (campaign, slot, day) = names();
        for _ in 0..5 {
            recorder.event(Event {
                kind: EventKind::Impression,
                decision_id: Ulid::new(),
                campaign: campaign.clone(),
                slot: slot.clone(),
                day,
                invalid: None,
            });
        }
        assert_eq!(metrics.dropped_events.get(), 3);
        assert_eq!(metrics.pending_events.get(), 2);
        let events: usize = recorder
            .take_batches(MarkLifetimes::uniform(60), 0)
            .iter()
            .map(|b| b.events.len())
            .sum();
        assert_eq!(events, 2);
    }
}
