//! Writing a batch of counters to Redis, on one primary or a cluster, in two rounds of one
//! pipeline per node:
//!
//! 1. **Marks.** Each event sets its de-duplication mark, keyed by decision (so marks spread
//!    over every slot), to the batch's id: `SET mark BATCH NX GET EX ttl`. An event counts
//!    when the mark was absent, or already holds this batch's id (a retry whose first answer
//!    was lost). An impression counted as invalid traffic marks `BATCH:x`. A click with no
//!    reason of its own to be invalid also reads its decision's impression mark (same hash
//!    tag, so same node, and after that impression's own `SET` when the batch holds it: the
//!    recorder puts impressions first): without a valid impression, the click is invalid
//!    (`no_impression`).
//! 2. **Shares.** Each campaign of the batch gets one script call on its slot that adds the
//!    batch's aggregated counts for it to its stats and totals, unless the campaign's marker
//!    of this batch says it already did.
//!
//! Each round's pipelines end with `WAIT` when replicas must acknowledge (a cluster). The
//! flusher drops a batch only when both rounds succeeded; otherwise it sends the same batch
//! again, to whichever primaries serve the slots by then, and the marks and markers make the
//! retry count each event exactly once. Markers of acknowledged batches are deleted with the
//! next flush.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::NaiveDate;
use redis::Value;

use super::RedisStore;
use crate::inventory::CampaignId;
use crate::ivt::Reason;
use crate::store::connection::SlotCmd;
use crate::store::{counter_field, stored_field, Batch, Counted, FlushReport, StoreError};
use crate::tracking::EventKind;

/// How long a batch marker is kept when its batch is never acknowledged (the flusher deletes
/// it once it is): longer than any outage a batch waits through in memory.
const BATCH_TTL_SECS: u64 = 86_400;

/// The most acknowledged markers kept for deletion; past it they are left to expire.
const MAX_ACKNOWLEDGED: usize = 100_000;

/// What one flush adds to one campaign.
#[derive(Default)]
struct Share {
    /// Lifetime counters: counter → count (invalid ones as `invalid.{reason}.{counter}`).
    totals: BTreeMap<String, u64>,
    /// Lifetime counters of tracking events by slot: `counter|slot` → count.
    slot_totals: BTreeMap<String, u64>,
    /// Day → (`counter|slot` → count).
    days: BTreeMap<NaiveDate, BTreeMap<String, u64>>,
}

impl Share {
    fn add_event(
        &mut self,
        counter: &'static str,
        invalid: Option<Reason>,
        slot: &str,
        day: NaiveDate,
    ) {
        self.add(&stored_field(invalid, counter), slot, day, 1);
        // The optimize rotation learns from valid events only.
        if invalid.is_none() {
            *self
                .slot_totals
                .entry(format!("{counter}|{slot}"))
                .or_default() += 1;
        }
    }

    fn add(&mut self, counter: &str, slot: &str, day: NaiveDate, n: u64) {
        *self.totals.entry(counter.to_owned()).or_default() += n;
        *self
            .days
            .entry(day)
            .or_default()
            .entry(format!("{counter}|{slot}"))
            .or_default() += n;
    }
}

/// Writes `batch`; see the module's documentation.
pub(super) async fn flush(store: &RedisStore, batch: &Batch) -> Result<FlushReport, StoreError> {
    let batch_id = batch.id.to_string();
    let wait = Some(store.durability);

    // Round 1: marks. An event repeated within the batch is counted at its first occurrence.
    let invalid_mark = format!("{batch_id}:x");
    let mut seen_in_batch = HashSet::new();
    let mut marked = Vec::new();
    let mut reads_impression = vec![false; batch.events.len()];
    let mut cmds = Vec::new();
    for (i, event) in batch.events.iter().enumerate() {
        let field = counter_field(event.kind);
        if !seen_in_batch.insert((field, event.decision_id)) {
            continue;
        }
        let key = store.keys.seen(field, event.decision_id);
        let invalid_impression = event.kind == EventKind::Impression && event.invalid.is_some();
        let mut cmd = redis::cmd("SET");
        cmd.arg(&key)
            .arg(if invalid_impression {
                &invalid_mark
            } else {
                &batch_id
            })
            .arg("NX")
            .arg("GET")
            .arg("EX")
            .arg(batch.mark_ttl.of(event.kind).max(1));
        cmds.push(SlotCmd::new(&key, cmd));
        marked.push((i, invalid_impression));
        if event.kind == EventKind::Click && event.invalid.is_none() {
            let impression = store
                .keys
                .seen(counter_field(EventKind::Impression), event.decision_id);
            let mut read = redis::cmd("GET");
            read.arg(&impression);
            cmds.push(SlotCmd::new(&impression, read));
            reads_impression[i] = true;
        }
    }
    let answers = store.observe_many("flush", store.connections.by_node(cmds, true, wait).await)?;
    let mut answers = answers.into_iter();
    let mut counted = vec![Counted::Duplicate; batch.events.len()];
    for (i, invalid_impression) in marked {
        let event = &batch.events[i];
        let ours: &[u8] = if invalid_impression {
            invalid_mark.as_bytes()
        } else {
            batch_id.as_bytes()
        };
        let fresh = match answers.next() {
            Some(Value::Nil) => true,
            Some(Value::BulkString(holder)) => holder == ours,
            _ => return Err(StoreError::Corrupt("de-duplication mark")),
        };
        let mut reason = event.invalid;
        if reads_impression[i] {
            let valid_impression = match answers.next() {
                Some(Value::Nil) => false,
                Some(Value::BulkString(holder)) => !holder.ends_with(b":x"),
                _ => return Err(StoreError::Corrupt("impression mark")),
            };
            if !valid_impression {
                reason = Some(Reason::NoImpression);
            }
        }
        if fresh {
            counted[i] = reason.map_or(Counted::Valid, Counted::Invalid);
        }
    }

    // Round 2: one share per campaign.
    let mut shares: HashMap<&CampaignId, Share> = HashMap::new();
    for s in &batch.served {
        shares.entry(&s.campaign).or_default().add(
            &stored_field(s.invalid, "served"),
            s.slot.as_str(),
            s.day,
            s.count,
        );
    }
    for (event, counted) in batch.events.iter().zip(&counted) {
        let invalid = match counted {
            Counted::Duplicate => continue,
            Counted::Valid => None,
            Counted::Invalid(reason) => Some(*reason),
        };
        shares.entry(&event.campaign).or_default().add_event(
            counter_field(event.kind),
            invalid,
            event.slot.as_str(),
            event.day,
        );
    }
    let mut markers = Vec::with_capacity(shares.len());
    let mut cmds = Vec::with_capacity(shares.len());
    for (campaign, share) in &shares {
        let marker = store.keys.batch(campaign, batch.id);
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(store.scripts.flush_share.0.get_hash())
            .arg(3 + share.days.len())
            .arg(&marker)
            .arg(store.keys.totals(campaign))
            .arg(store.keys.slot_totals(campaign));
        for day in share.days.keys() {
            cmd.arg(store.keys.stats(campaign, *day));
        }
        cmd.arg(BATCH_TTL_SECS).arg(share.totals.len());
        for (counter, n) in &share.totals {
            cmd.arg(counter).arg(*n);
        }
        cmd.arg(share.slot_totals.len());
        for (field, n) in &share.slot_totals {
            cmd.arg(field).arg(*n);
        }
        for (index, fields) in share.days.values().enumerate() {
            for (field, n) in fields {
                // KEYS[1..=3] are the marker, the totals and the slot totals; days follow.
                cmd.arg(index + 4).arg(field).arg(*n);
            }
        }
        cmds.push(SlotCmd::new(&marker, cmd));
        markers.push(marker);
    }
    let shares_sent = cmds.len();
    // Markers of batches acknowledged earlier go with this round: no extra round trip.
    let cleanup = std::mem::take(&mut *store.acknowledged.lock());
    for marker in &cleanup {
        let mut cmd = redis::cmd("UNLINK");
        cmd.arg(marker);
        cmds.push(SlotCmd::new(marker, cmd));
    }
    let answers =
        match store.observe_many("flush", store.connections.by_node(cmds, true, wait).await) {
            Ok(answers) => answers,
            Err(e) => {
                put_back(store, cleanup);
                return Err(e);
            }
        };
    // An event is counted by this call when its campaign's share was applied now, not by an
    // earlier attempt whose answer was lost.
    let applied: HashSet<&CampaignId> = shares
        .keys()
        .zip(&answers[..shares_sent])
        .filter(|(_, answer)| matches!(answer, Value::Int(1)))
        .map(|(campaign, _)| *campaign)
        .collect();
    for (event, counted) in batch.events.iter().zip(counted.iter_mut()) {
        if !applied.contains(&event.campaign) {
            *counted = Counted::Duplicate;
        }
    }
    put_back(store, markers);
    Ok(FlushReport {
        counted,
        already_applied: shares_sent > 0 && applied.is_empty(),
    })
}

/// Keeps markers for deletion with the next flush, up to a bound.
fn put_back(store: &RedisStore, markers: Vec<String>) {
    let mut acknowledged = store.acknowledged.lock();
    let room = MAX_ACKNOWLEDGED.saturating_sub(acknowledged.len());
    acknowledged.extend(markers.into_iter().take(room));
}
