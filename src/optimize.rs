//! The evidence of the `optimize` rotation: each campaign's counted impressions and clicks in
//! each `optimize` slot, read from the store in the background and handed to the served
//! snapshot's rotations.
//!
//! The counts are the store's lifetime counters per campaign × slot, which every instance
//! writes through its flusher: all instances learn from all traffic. One read every
//! `REGIE_OPTIMIZE_REFRESH_MS` (a pipeline of one hash per campaign) replaces the posteriors;
//! a decision never waits on the store. The last counts read are kept, so a new inventory
//! version starts from them rather than from the prior (see [`crate::catalog::Catalog`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::catalog::Catalog;
use crate::inventory::{CampaignId, Rotation};
use crate::selection::Trials;
use crate::snapshot::{CampaignIndex, Snapshot};
use crate::store::{Backend, Store, StoreError};

/// Counts of the campaigns of `optimize` slots, by slot.
#[derive(Debug, Default, Clone)]
pub struct CtrStats {
    slots: HashMap<String, HashMap<CampaignId, Trials>>,
}

impl CtrStats {
    /// The counts of `campaign` in `slot` (NFC name); none yet is zero.
    pub fn trials(&self, slot: &str, campaign: &CampaignId) -> Trials {
        self.slots
            .get(slot)
            .and_then(|campaigns| campaigns.get(campaign))
            .copied()
            .unwrap_or_default()
    }

    /// Records the counts of `campaign` in `slot`.
    pub fn insert(&mut self, slot: &str, campaign: CampaignId, trials: Trials) {
        self.slots
            .entry(slot.to_owned())
            .or_default()
            .insert(campaign, trials);
    }

    /// Hands every `optimize` tier of the snapshot its members' counts.
    pub fn apply(&self, snapshot: &Snapshot) {
        for slot in snapshot.slots.values() {
            if slot.slot.rotation != Rotation::Optimize {
                continue;
            }
            for tier in &slot.tiers {
                let trials: Vec<Trials> = tier
                    .members
                    .iter()
                    .map(|m| {
                        let id = &snapshot.campaign_at(m.campaign).campaign.id;
                        self.trials(slot.slot.name.as_str(), id)
                    })
                    .collect();
                tier.rotation.set_trials(&trials);
            }
        }
    }
}

/// The campaigns that are members of an `optimize` slot's tiers, each once.
pub fn optimized_campaigns(snapshot: &Snapshot) -> Vec<CampaignId> {
    let mut indexes: Vec<CampaignIndex> = snapshot
        .slots
        .values()
        .filter(|slot| slot.slot.rotation == Rotation::Optimize)
        .flat_map(|slot| slot.tiers.iter())
        .flat_map(|tier| tier.members.iter().map(|m| m.campaign))
        .collect();
    indexes.sort_unstable();
    indexes.dedup();
    indexes
        .into_iter()
        .map(|i| snapshot.campaign_at(i).campaign.id.clone())
        .collect()
}

/// Reads the counts of the snapshot's `optimize` slots from the store (one round trip).
pub async fn read(store: &Store, snapshot: &Snapshot) -> Result<CtrStats, StoreError> {
    let campaigns = optimized_campaigns(snapshot);
    let mut stats = CtrStats::default();
    if campaigns.is_empty() {
        return Ok(stats);
    }
    let totals = store.slot_totals(&campaigns).await?;
    for (campaign, slots) in campaigns.into_iter().zip(totals) {
        for (slot, counts) in slots {
            let trials = Trials {
                impressions: counts.impressions,
                clicks: counts.clicks,
            };
            stats.insert(&slot, campaign.clone(), trials);
        }
    }
    Ok(stats)
}

/// Refreshes the counts every `every` until `shutdown` turns true. Nothing is read while no
/// slot uses `optimize`.
pub async fn run(
    catalog: Arc<Catalog>,
    store: Store,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut failing = false;
    loop {
        if let Some(snapshot) = catalog.snapshot() {
            match read(&store, &snapshot).await {
                Ok(stats) => {
                    failing = false;
                    catalog.set_ctr_stats(stats);
                }
                // The posteriors keep their last counts; once per outage in the log.
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(error = %e, "cannot read the optimize rotation's counts");
                }
                Err(_) => {}
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Simulated decisions behind the shares `explain=1` shows for an `optimize` tier, when it has
/// at most [`EXPLAIN_SAMPLE_BUDGET`] / [`EXPLAIN_DRAWS`] eligible members: a share is then
/// within about ±0.01 of the truth (twice the standard error of 10 000 draws).
pub const EXPLAIN_DRAWS: u32 = 10_000;
/// Beta samples one explanation of one tier may draw; larger tiers get fewer simulated
/// decisions (never under 100), so an explanation stays well under a second.
pub const EXPLAIN_SAMPLE_BUDGET: u64 = 1_000_000;
/// The explanation's generator is seeded: the same counts give the same shares.
const EXPLAIN_SEED: u64 = 0x5eed;

/// The shares an `optimize` tier's members would get now, estimated for `explain=1`.
#[derive(Debug, Clone)]
pub struct ShareEstimate {
    shares: Vec<f64>,
    draws: u32,
}

/// Estimates by Monte Carlo the share of decisions each member of an `optimize` tier would
/// get now, among the members marked eligible.
pub fn explain_shares(
    rotation: &crate::selection::ThompsonRotation,
    eligible: &[bool],
) -> ShareEstimate {
    use rand::SeedableRng;
    let members = eligible.iter().filter(|&&e| e).count().max(1) as u64;
    let draws = (EXPLAIN_SAMPLE_BUDGET / members).clamp(100, u64::from(EXPLAIN_DRAWS)) as u32;
    let mut rng = rand::rngs::SmallRng::seed_from_u64(EXPLAIN_SEED);
    let shares = rotation.shares(&mut rng, draws, |i| eligible.get(i) == Some(&true));
    ShareEstimate { shares, draws }
}

impl ShareEstimate {
    /// Writes member `m`'s counts, posterior mean and estimated share into its explanation
    /// (`probability` becomes the share: it is the chance of being served).
    pub fn describe(
        &self,
        rotation: &crate::selection::ThompsonRotation,
        m: usize,
        value: &mut serde_json::Value,
    ) {
        let trials = rotation.trials(m);
        let share = self.shares.get(m).copied().unwrap_or(0.0);
        value["impressions"] = trials.impressions.into();
        value["clicks"] = trials.clicks.into();
        value["posterior_mean"] = trials.posterior_mean().into();
        value["share"] = share.into();
        value["probability"] = share.into();
    }

    /// How the shares were estimated.
    pub fn method(&self) -> serde_json::Value {
        serde_json::json!({ "method": "monte_carlo", "draws": self.draws })
    }
}
