//! Proof that `optimize` learns: simulated readers click with known rates, and the counts reach
//! the rotation in batches, as they reach it from the store every few seconds.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{TierRotation, Trials};
use crate::inventory::Rotation;

/// Decisions between two refreshes of the counts (about 2 s of a slot with 50 decisions/s).
const REFRESH_EVERY: usize = 100;

/// A slot with known click-through rates, its rotation and the counts the store would hold.
struct Simulation {
    rates: Vec<f64>,
    rotation: TierRotation,
    counted: Vec<Trials>,
    rng: StdRng,
    decisions: usize,
}

impl Simulation {
    fn new(rates: &[f64], seed: u64) -> Self {
        Self {
            rates: rates.to_vec(),
            rotation: TierRotation::new(vec![1; rates.len()], Rotation::Optimize).unwrap(),
            counted: vec![Trials::default(); rates.len()],
            rng: StdRng::seed_from_u64(seed),
            decisions: 0,
        }
    }

    /// A new campaign joins the slot: a new inventory version, whose rotation starts from the
    /// counts the store holds (none for the newcomer).
    fn add_campaign(&mut self, rate: f64) {
        self.rates.push(rate);
        self.counted.push(Trials::default());
        self.rotation = TierRotation::new(vec![1; self.rates.len()], Rotation::Optimize).unwrap();
        self.rotation.set_trials(&self.counted);
    }

    /// Runs `n` decisions, each followed by its impression and, at the campaign's rate, a
    /// click; returns how many decisions each campaign got.
    fn run(&mut self, n: usize) -> Vec<usize> {
        let mut served = vec![0; self.rates.len()];
        for _ in 0..n {
            let i = self.rotation.pick(&mut self.rng, |_| true).unwrap();
            served[i] += 1;
            self.counted[i].impressions += 1;
            if self.rng.random_bool(self.rates[i]) {
                self.counted[i].clicks += 1;
            }
            self.decisions += 1;
            if self.decisions % REFRESH_EVERY == 0 {
                self.rotation.set_trials(&self.counted);
            }
        }
        served
    }
}

fn share(served: &[usize], i: usize) -> f64 {
    served[i] as f64 / served.iter().sum::<usize>() as f64
}

#[test]
fn the_campaign_clicked_five_times_as_often_gets_over_80_percent_within_3000_decisions() {
    let mut sim = Simulation::new(&[0.05, 0.01], 0x0b7);

    let first = sim.run(REFRESH_EVERY);
    let _learning = sim.run(2_000 - REFRESH_EVERY);
    let settled = sim.run(1_000);

    // Even before the first counts arrive (equal weights, the same prior)...
    assert!(
        (share(&first, 0) - 0.5).abs() < 0.15,
        "first {REFRESH_EVERY}: {first:?}"
    );
    // ...and past 80 % for the better campaign in decisions 2 001 to 3 000.
    assert!(share(&settled, 0) > 0.8, "decisions 2001-3000: {settled:?}");
}

#[test]
fn the_result_does_not_hang_on_one_seed() {
    // The same claim over twenty seeds: every one of them past 80 % in decisions 2 001-3 000.
    let shares: Vec<f64> = (0..20)
        .map(|seed| {
            let mut sim = Simulation::new(&[0.05, 0.01], seed);
            sim.run(2_000);
            share(&sim.run(1_000), 0)
        })
        .collect();
    assert!(shares.iter().all(|&s| s > 0.8), "{shares:?}");
}

#[test]
fn a_campaign_added_later_is_explored_then_judged_on_its_clicks() {
    let mut sim = Simulation::new(&[0.05, 0.01], 0x0b8);
    sim.run(3_000);

    sim.add_campaign(0.01);
    let after = sim.run(3_000);

    // The newcomer starts from the uniform prior (mean 50 %), far above what the others have
    // shown: it is tried at once, at least a hundred times...
    assert!(after[2] >= 100, "after the newcomer came: {after:?}");
    // ...and once its 1 % shows, the 5 % campaign keeps most of the slot.
    assert!(share(&after, 0) > 0.7, "after the newcomer came: {after:?}");
}
