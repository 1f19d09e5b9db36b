//! Thompson sampling on click-through rates, for slots whose rotation is `optimize`.
//!
//! Each member's click-through rate has the posterior Beta(clicks + 1, impressions − clicks + 1)
//! (the uniform prior updated by its counted events in the slot). A decision draws one rate
//! from every eligible member's posterior and serves the highest `weight × rate`: members are
//! served in proportion to the probability that they are the best, so a campaign with few
//! impressions (a wide posterior) is tried, and one that is clearly worse fades out.
//!
//! The counts come from outside (the store, every few seconds) and replace the posteriors
//! whole: a decision reads them through one `ArcSwap` load and takes no lock.

use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};
use rand::Rng;
use rand_distr::{Beta, Distribution};

/// A member's counted (valid) impressions and clicks in the slot, over its lifetime.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Trials {
    /// Impressions.
    pub impressions: u64,
    /// Clicks.
    pub clicks: u64,
}

impl Trials {
    /// The posterior's parameters (α, β) = (clicks + 1, impressions − clicks + 1). Clicks whose
    /// impression was not counted could make clicks exceed impressions; they count as at most
    /// one click per impression.
    pub fn posterior(&self) -> (f64, f64) {
        let clicks = self.clicks.min(self.impressions);
        (
            clicks as f64 + 1.0,
            (self.impressions - clicks) as f64 + 1.0,
        )
    }

    /// The posterior mean of the click-through rate, (clicks + 1) / (impressions + 2).
    pub fn posterior_mean(&self) -> f64 {
        let (alpha, beta) = self.posterior();
        alpha / (alpha + beta)
    }
}

/// One member's posterior, ready to draw from.
#[derive(Debug, Clone)]
struct Arm {
    trials: Trials,
    beta: Beta<f64>,
}

impl Arm {
    fn new(trials: Trials) -> Self {
        let (alpha, beta) = trials.posterior();
        Self {
            trials,
            beta: Beta::new(alpha, beta).expect("both parameters are at least 1"),
        }
    }
}

/// The posteriors of one tier's members.
#[derive(Debug)]
pub struct ThompsonRotation {
    weights: Vec<f64>,
    arms: ArcSwap<Vec<Arm>>,
}

impl ThompsonRotation {
    /// A rotation over members of these weights, every member at the uniform prior.
    pub fn new(weights: &[u64]) -> Self {
        let arms = vec![Arm::new(Trials::default()); weights.len()];
        Self {
            weights: weights.iter().map(|&w| w as f64).collect(),
            arms: ArcSwap::from_pointee(arms),
        }
    }

    /// Replaces every member's counts (in member order; a missing entry is the prior).
    pub fn update(&self, trials: &[Trials]) {
        let arms = (0..self.weights.len())
            .map(|i| Arm::new(trials.get(i).copied().unwrap_or_default()))
            .collect();
        self.arms.store(Arc::new(arms));
    }

    /// The counts a member's posterior is built from.
    pub fn trials(&self, member: usize) -> Trials {
        self.arms.load()[member].trials
    }

    /// Starts one decision's draw: see [`ThompsonDraw`].
    pub fn draw(&self) -> ThompsonDraw<'_> {
        ThompsonDraw {
            weights: &self.weights,
            arms: self.arms.load(),
            scores: Vec::new(),
        }
    }

    /// The share of decisions each member would get now among those `eligible` accepts,
    /// estimated from `draws` simulated decisions (Monte Carlo: the standard error of a share
    /// is at most 0.5 / √draws). Ineligible members get 0; all are 0 when none is eligible.
    pub fn shares<R: Rng + ?Sized>(
        &self,
        rng: &mut R,
        draws: u32,
        eligible: impl Fn(usize) -> bool,
    ) -> Vec<f64> {
        let arms = self.arms.load();
        let members: Vec<usize> = (0..arms.len()).filter(|&i| eligible(i)).collect();
        let mut wins = vec![0u32; arms.len()];
        if members.is_empty() || draws == 0 {
            return vec![0.0; arms.len()];
        }
        for _ in 0..draws {
            let mut best = (members[0], f64::NEG_INFINITY);
            for &i in &members {
                let score = self.weights[i] * arms[i].beta.sample(rng);
                if score > best.1 {
                    best = (i, score);
                }
            }
            wins[best.0] += 1;
        }
        wins.iter()
            .map(|&w| f64::from(w) / f64::from(draws))
            .collect()
    }
}

/// One decision's draw: one rate drawn per member, at most once, and members taken in
/// decreasing order of `weight × rate`. Successive calls to [`Self::next`] give the members
/// sorted by the same sample, which is what a draw without replacement must be: the first of
/// them that passes a later check (a viewer's frequency cap) is the best of the members that
/// pass it under that sample, i.e. exactly Thompson sampling among them.
pub struct ThompsonDraw<'a> {
    weights: &'a [f64],
    arms: Guard<Arc<Vec<Arm>>>,
    /// Each member's score, NaN until drawn (members never asked about are never drawn).
    scores: Vec<f64>,
}

impl ThompsonDraw<'_> {
    /// The eligible member with the highest score, drawing the scores it has not drawn yet.
    pub fn next<R: Rng + ?Sized>(
        &mut self,
        rng: &mut R,
        mut eligible: impl FnMut(usize) -> bool,
    ) -> Option<usize> {
        if self.scores.is_empty() {
            self.scores = vec![f64::NAN; self.arms.len()];
        }
        let mut best: Option<(usize, f64)> = None;
        for i in 0..self.scores.len() {
            if !eligible(i) {
                continue;
            }
            if self.scores[i].is_nan() {
                self.scores[i] = self.weights[i] * self.arms[i].beta.sample(rng);
            }
            if best.is_none_or(|(_, b)| self.scores[i] > b) {
                best = Some((i, self.scores[i]));
            }
        }
        best.map(|(i, _)| i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::StdRng, SeedableRng};

    fn trials(impressions: u64, clicks: u64) -> Trials {
        Trials {
            impressions,
            clicks,
        }
    }

    #[test]
    fn the_posterior_is_the_uniform_prior_updated_by_the_counts() {
        assert_eq!(trials(0, 0).posterior(), (1.0, 1.0));
        assert_eq!(trials(100, 5).posterior(), (6.0, 96.0));
        assert!((trials(100, 5).posterior_mean() - 6.0 / 102.0).abs() < 1e-12);
        // A click without a counted impression does not make the posterior invalid.
        assert_eq!(trials(2, 5).posterior(), (3.0, 1.0));
    }

    #[test]
    fn successive_picks_of_one_draw_follow_one_sample_in_decreasing_order() {
        let rotation = ThompsonRotation::new(&[1, 1, 1, 1]);
        rotation.update(&[
            trials(1000, 100),
            trials(1000, 10),
            trials(1000, 50),
            trials(1000, 1),
        ]);
        let mut rng = StdRng::seed_from_u64(11);
        let mut draw = rotation.draw();
        let mut order = Vec::new();
        while let Some(i) = draw.next(&mut rng, |i| !order.contains(&i)) {
            order.push(i);
        }
        // The posteriors barely overlap: the order is the order of the rates.
        assert_eq!(order, [0, 2, 1, 3]);
    }

    #[test]
    fn weights_multiply_the_drawn_rate() {
        // Equal evidence, rates 10 % and 6 %: weight 2 on the second makes it the better bet.
        let rotation = ThompsonRotation::new(&[1, 2]);
        rotation.update(&[trials(100_000, 10_000), trials(100_000, 6_000)]);
        let mut rng = StdRng::seed_from_u64(12);
        let shares = rotation.shares(&mut rng, 2_000, |_| true);
        assert!(shares[1] > 0.99, "{shares:?}");
    }

    #[test]
    fn shares_of_equal_posteriors_are_equal_within_monte_carlo_error() {
        let rotation = ThompsonRotation::new(&[3, 3, 3]);
        rotation.update(&[trials(50, 5), trials(50, 5), trials(50, 5)]);
        let mut rng = StdRng::seed_from_u64(13);
        let shares = rotation.shares(&mut rng, 30_000, |i| i != 1);
        assert_eq!(shares[1], 0.0);
        // Standard error 0.0029: 0.02 is about seven of them.
        assert!((shares[0] - 0.5).abs() < 0.02, "{shares:?}");
        assert!((shares[0] + shares[2] - 1.0).abs() < 1e-9);
    }

    #[test]
    fn nothing_eligible_draws_nothing() {
        let rotation = ThompsonRotation::new(&[1, 1]);
        let mut rng = StdRng::seed_from_u64(14);
        assert_eq!(rotation.draw().next(&mut rng, |_| false), None);
        assert_eq!(rotation.shares(&mut rng, 100, |_| false), [0.0, 0.0]);
    }
}
