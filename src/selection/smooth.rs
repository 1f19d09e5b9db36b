//! Smooth weighted round robin, as nginx rotates its upstreams.
//!
//! Each pick adds every eligible member's weight to its running score, takes the highest score
//! and subtracts the eligible total from it. Over any run of sum-of-weights consecutive picks
//! with the same eligible set, each member is picked exactly weight times, interleaved
//! (5:3:2 gives a b a c a b a b a c … rather than a a a a a b b b c c).

/// The running scores of one rotation.
#[derive(Debug, Clone)]
pub struct SmoothRotation {
    scores: Vec<i64>,
}

impl SmoothRotation {
    /// A rotation over `members` members, all scores at zero.
    pub fn new(members: usize) -> Self {
        Self {
            scores: vec![0; members],
        }
    }

    /// Picks one member among those `eligible` says yes to; `None` when none is.
    pub fn pick(
        &mut self,
        weights: &[u64],
        mut eligible: impl FnMut(usize) -> bool,
    ) -> Option<usize> {
        let mut total: i64 = 0;
        let mut best: Option<usize> = None;
        for (i, &weight) in weights.iter().enumerate() {
            if !eligible(i) {
                continue;
            }
            // Weights are at most 1e6 and members at most a few hundred thousand: no overflow.
            let weight = weight as i64;
            self.scores[i] += weight;
            total += weight;
            if best.is_none_or(|b| self.scores[i] > self.scores[b]) {
                best = Some(i);
            }
        }
        let best = best?;
        self.scores[best] -= total;
        Some(best)
    }

    /// The member [`Self::pick`] would choose now, without changing the scores: the eligible
    /// member with the highest score once its weight is added (the first one on a tie). So the
    /// members in the order of successive peeks, each without the ones before, are the order in
    /// which `pick` would prefer them.
    pub fn peek(&self, weights: &[u64], mut eligible: impl FnMut(usize) -> bool) -> Option<usize> {
        let mut best: Option<(usize, i64)> = None;
        for (i, &weight) in weights.iter().enumerate() {
            if !eligible(i) {
                continue;
            }
            let score = self.scores[i] + weight as i64;
            if best.is_none_or(|(_, b)| score > b) {
                best = Some((i, score));
            }
        }
        best.map(|(i, _)| i)
    }

    /// Records a pick of `chosen` among the eligible members, as [`Self::pick`] does once it
    /// has chosen: for a choice made by [`Self::peek`] and confirmed later.
    pub fn commit(
        &mut self,
        weights: &[u64],
        mut eligible: impl FnMut(usize) -> bool,
        chosen: usize,
    ) {
        let mut total: i64 = 0;
        for (i, &weight) in weights.iter().enumerate() {
            if i == chosen || eligible(i) {
                self.scores[i] += weight as i64;
                total += weight as i64;
            }
        }
        self.scores[chosen] -= total;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_window_of_ten_holds_exactly_five_three_and_two() {
        let weights = [5, 3, 2];
        let mut rotation = SmoothRotation::new(3);
        let picks: Vec<usize> = (0..1_000)
            .map(|_| rotation.pick(&weights, |_| true).unwrap())
            .collect();
        for window in picks.chunks(10) {
            let count = |m| window.iter().filter(|&&p| p == m).count();
            assert_eq!(
                (count(0), count(1), count(2)),
                (5, 3, 2),
                "window {window:?}"
            );
        }
        // Interleaved, not in runs: the heaviest member never comes three times in a row.
        assert!(picks
            .windows(3)
            .all(|w| !(w[0] == 0 && w[1] == 0 && w[2] == 0)));
    }

    #[test]
    fn ineligible_members_are_skipped_and_the_rest_keep_their_proportions() {
        let weights = [5, 3, 2];
        let mut rotation = SmoothRotation::new(3);
        let picks: Vec<usize> = (0..80)
            .map(|_| rotation.pick(&weights, |i| i != 1).unwrap())
            .collect();
        for window in picks.chunks(7) {
            if window.len() == 7 {
                assert_eq!(window.iter().filter(|&&p| p == 0).count(), 5);
                assert_eq!(window.iter().filter(|&&p| p == 2).count(), 2);
            }
        }
    }

    #[test]
    fn peek_then_commit_is_pick() {
        let weights = [5, 3, 2];
        let mut picked = SmoothRotation::new(3);
        let mut peeked = SmoothRotation::new(3);
        for n in 0..100 {
            // Member 2 drops out now and then, as a capped campaign would.
            let eligible = |i: usize| i != 2 || n % 3 != 0;
            let expected = picked.pick(&weights, eligible).unwrap();
            let chosen = peeked.peek(&weights, eligible).unwrap();
            assert_eq!(chosen, expected, "pick {n}");
            // Peeking again without the first gives the next preference, not the same one.
            assert_ne!(
                peeked.peek(&weights, |i| eligible(i) && i != chosen),
                Some(chosen)
            );
            peeked.commit(&weights, eligible, chosen);
        }
        assert_eq!(picked.scores, peeked.scores);
    }

    #[test]
    fn nothing_eligible_picks_nothing() {
        let mut rotation = SmoothRotation::new(2);
        assert_eq!(rotation.pick(&[1, 1], |_| false), None);
    }
}
