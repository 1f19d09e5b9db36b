//! Frequency caps on Redis: a page's walk ([`first_allowed`]) with views reserved by plain
//! commands in one pipeline, not by a script.
//!
//! A view is reserved first and checked after: the pipeline trims the viewer's history of the
//! campaign to its window, adds the request's reservation, renews the key's expiry and counts
//! what is left. A count within the cap keeps the view; a count past it refuses the campaign,
//! and the reservation is taken back. Every request counts after its own addition, so of any
//! views that stand at once, the one counted last saw all the others: no more than `max` can
//! stand in a window, across instances, without an atomic script. Racing requests may refuse
//! each other (a viewer near the cap is served less, never more).
//!
//! Plain commands cost Redis about half of what the same work costs inside `EVALSHA` (the
//! script call's own overhead, and each `redis.call`'s), which is what frequency caps cost per
//! new viewer; `docs/benchmarks.md` has the figures. The price is more round trips for a page
//! whose first choice is refused: the walk goes on with what it knows, and from its second
//! round it also counts every capped candidate still unknown, so that a viewer at the cap of
//! several campaigns costs two or three round trips, more only when requests race.
//!
//! Every command of a walk names one viewer's keys, which share a hash tag and so a slot:
//! each round is one pipeline to one node, in a cluster too. Adding the same reservation twice
//! (a retried pipeline) changes nothing.

use redis::{Cmd, Pipeline};
use smallvec::SmallVec;

use super::RedisStore;
use crate::inventory::CampaignId;
use crate::store::{first_allowed, FrequencyCap, FrequencyItem, Positions, StoreError};

/// The replies of one campaign's [`Walk::reserve`].
const RESERVE_REPLIES: usize = 4;

/// What a walk knows of one capped campaign.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Verdict {
    /// A view is reserved under this request's reservation.
    Reserved,
    /// The viewer is at the cap (or was counted past it).
    Refused,
}

/// The verdicts of one walk, by campaign; a page has a few dozen candidates at most.
#[derive(Default)]
struct Verdicts<'a>(SmallVec<[(&'a CampaignId, Verdict); 4]>);

/// Capped campaigns of a walk: a page's few, without allocating.
type Campaigns<'a> = SmallVec<[&'a CampaignId; 4]>;

/// Capped campaigns of a walk with their caps, as [`Campaigns`].
type CappedCampaigns<'a> = SmallVec<[(&'a CampaignId, FrequencyCap); 4]>;

impl<'a> Verdicts<'a> {
    fn get(&self, campaign: &CampaignId) -> Option<Verdict> {
        self.0.iter().find(|(c, _)| *c == campaign).map(|&(_, v)| v)
    }

    fn set(&mut self, campaign: &'a CampaignId, verdict: Verdict) {
        self.0.push((campaign, verdict));
    }

    fn reserved(&self) -> impl Iterator<Item = &'a CampaignId> + '_ {
        self.0
            .iter()
            .filter(|(_, v)| *v == Verdict::Reserved)
            .map(|&(c, _)| c)
    }
}

/// One walk: the viewer, the reservation and the chains of [`crate::store::Backend::frequency_pick`].
pub(super) struct Walk<'a> {
    pub(super) store: &'a RedisStore,
    pub(super) viewer: &'a str,
    pub(super) now_ms: i64,
    pub(super) reservation: &'a str,
    pub(super) chains: &'a [Vec<FrequencyItem>],
}

impl<'a> Walk<'a> {
    /// Per chain, the position of the campaign served; every view it returns is reserved,
    /// and every other view it reserved is taken back before it returns.
    pub(super) async fn run(self) -> Result<Positions, StoreError> {
        let mut verdicts = Verdicts::default();
        // Reservations to take back: refused campaigns, sent with the next round.
        let mut to_cancel = Campaigns::new();
        let mut round = 0;
        loop {
            round += 1;
            let mut tried = CappedCampaigns::new();
            let positions = first_allowed(
                self.chains,
                |item| &item.campaign,
                |item| match (item.cap, verdicts.get(&item.campaign)) {
                    (None, _) => Some(true),
                    (Some(_), Some(verdict)) => Some(verdict == Verdict::Reserved),
                    // Unknown: served if its reservation holds, which this round finds out.
                    (Some(cap), None) => {
                        tried.push((&item.campaign, cap));
                        Some(true)
                    }
                },
            )
            .expect("every candidate has a verdict");
            if tried.is_empty() {
                to_cancel.extend(self.unused(&verdicts, &positions));
                if !to_cancel.is_empty() {
                    let mut pipe = Pipeline::with_capacity(to_cancel.len());
                    self.cancel(&mut pipe, &to_cancel);
                    self.store.read::<()>("frequency_release", &pipe).await?;
                }
                return Ok(positions);
            }
            // From the second round on, the viewer is at some cap: every capped candidate not
            // yet known is counted as well, so that the next round rarely needs a third.
            let counted = if round == 1 {
                CappedCampaigns::new()
            } else {
                self.unknown(&verdicts, &tried)
            };
            let mut pipe = Pipeline::with_capacity(
                to_cancel.len() + RESERVE_REPLIES * tried.len() + counted.len(),
            );
            self.cancel(&mut pipe, &to_cancel);
            let cancelled = to_cancel.len();
            to_cancel.clear();
            for &(campaign, cap) in &tried {
                self.reserve(&mut pipe, campaign, cap);
            }
            for &(campaign, cap) in &counted {
                pipe.zcount(
                    self.key(campaign),
                    format!("({}", self.now_ms - cap.window_ms),
                    "+inf",
                );
            }
            // Every reply is an integer; only the counts matter. Reading them all is cheaper
            // than having the pipeline drop the others (it keeps a hash set of them).
            let replies: Vec<u64> = self.store.read("frequency", &pipe).await?;
            let counts = replies.get(cancelled..).unwrap_or_default();
            if counts.len() != RESERVE_REPLIES * tried.len() + counted.len() {
                return Err(StoreError::Corrupt("frequency answer"));
            }
            let (tried_counts, counted_counts) = counts.split_at(RESERVE_REPLIES * tried.len());
            let tried_counts = tried_counts
                .chunks_exact(RESERVE_REPLIES)
                .map(|replies| replies[RESERVE_REPLIES - 1]);
            for (&(campaign, cap), count) in tried.iter().zip(tried_counts) {
                if count <= u64::from(cap.max) {
                    verdicts.set(campaign, Verdict::Reserved);
                } else {
                    verdicts.set(campaign, Verdict::Refused);
                    to_cancel.push(campaign);
                }
            }
            for (&(campaign, cap), &count) in counted.iter().zip(counted_counts) {
                // At the cap now: refused (a view leaving the window meanwhile is missed
                // for this page only).
                if count >= u64::from(cap.max) {
                    verdicts.set(campaign, Verdict::Refused);
                }
            }
        }
    }

    /// The capped candidates of every chain with no verdict yet and not tried this round.
    fn unknown(
        &self,
        verdicts: &Verdicts<'a>,
        tried: &[(&'a CampaignId, FrequencyCap)],
    ) -> CappedCampaigns<'a> {
        let mut unknown = CappedCampaigns::new();
        for item in self.chains.iter().flatten() {
            let Some(cap) = item.cap else { continue };
            let campaign = &item.campaign;
            if verdicts.get(campaign).is_none()
                && !tried.iter().any(|(c, _)| *c == campaign)
                && !unknown.iter().any(|(c, _)| *c == campaign)
            {
                unknown.push((campaign, cap));
            }
        }
        unknown
    }

    /// Reserved campaigns that no chain ended up with. The walk only moves each chain forward,
    /// so there are none; taking them back keeps a mistake from tightening a cap.
    fn unused(&self, verdicts: &Verdicts<'a>, positions: &[Option<usize>]) -> Campaigns<'a> {
        let served: Campaigns<'_> = positions
            .iter()
            .zip(self.chains)
            .filter_map(|(p, chain)| Some(&chain.get((*p)?)?.campaign))
            .collect();
        verdicts
            .reserved()
            .filter(|c| !served.contains(c))
            .collect()
    }

    fn key(&self, campaign: &CampaignId) -> String {
        self.store.keys.frequency(self.viewer, campaign)
    }

    /// Trims the history to the window, adds the reservation, renews the expiry, and answers
    /// how many views the window holds with it: [`RESERVE_REPLIES`] replies, the count last.
    ///
    /// Each command's buffers are sized once: built by the pipeline's methods, every argument
    /// grew them, seven reallocations per reservation.
    fn reserve(&self, pipe: &mut Pipeline, campaign: &CampaignId, cap: FrequencyCap) {
        let key = self.key(campaign);
        // The key, the longest other argument and two integers, with room for the names.
        let data = 2 * key.len() + self.reservation.len() + 64;
        let mut trim = Cmd::with_capacity(4, data);
        trim.arg("ZREMRANGEBYSCORE")
            .arg(&key)
            .arg("-inf")
            .arg(self.now_ms - cap.window_ms);
        let mut add = Cmd::with_capacity(4, data);
        add.arg("ZADD")
            .arg(&key)
            .arg(self.now_ms)
            .arg(self.reservation);
        let mut expire = Cmd::with_capacity(3, data);
        expire.arg("PEXPIRE").arg(&key).arg(cap.window_ms);
        let mut count = Cmd::with_capacity(2, data);
        count.arg("ZCARD").arg(&key);
        pipe.add_command(trim)
            .add_command(add)
            .add_command(expire)
            .add_command(count);
    }

    /// Takes back the reservations of `campaigns`: one reply each.
    fn cancel(&self, pipe: &mut Pipeline, campaigns: &[&CampaignId]) {
        for campaign in campaigns {
            pipe.zrem(self.key(campaign), self.reservation);
        }
    }
}
