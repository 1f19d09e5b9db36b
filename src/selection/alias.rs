//! Walker's alias method (Vose's construction): O(n) to build, O(1) per draw.

use rand::Rng;

/// A table drawing index `i` with probability `weights[i] / sum(weights)`.
#[derive(Debug, Clone)]
pub struct AliasTable {
    /// Probability of keeping column `i` rather than taking its alias.
    keep: Vec<f64>,
    alias: Vec<u32>,
}

impl AliasTable {
    /// Builds the table; `None` when there is nothing to draw (no weights or all zero).
    pub fn new(weights: &[u64]) -> Option<Self> {
        let n = weights.len();
        let total: u128 = weights.iter().map(|&w| u128::from(w)).sum();
        if n == 0 || total == 0 || n > u32::MAX as usize {
            return None;
        }
        // Scaled so that the average column holds exactly 1.0.
        let mut scaled: Vec<f64> = weights
            .iter()
            .map(|&w| (w as f64) * (n as f64) / (total as f64))
            .collect();
        let mut keep = vec![1.0; n];
        let mut alias: Vec<u32> = (0..n as u32).collect();
        let (mut small, mut large): (Vec<usize>, Vec<usize>) =
            (0..n).partition(|&i| scaled[i] < 1.0);
        while let (Some(s), Some(&l)) = (small.pop(), large.last()) {
            keep[s] = scaled[s];
            alias[s] = l as u32;
            scaled[l] -= 1.0 - scaled[s];
            if scaled[l] < 1.0 {
                large.pop();
                small.push(l);
            }
        }
        // Whatever is left holds 1.0 up to rounding: it always keeps itself.
        Some(Self { keep, alias })
    }

    /// How many indexes the table draws from.
    pub fn len(&self) -> usize {
        self.keep.len()
    }

    /// Whether the table is empty (never true for a built table).
    pub fn is_empty(&self) -> bool {
        self.keep.is_empty()
    }

    /// Draws one index.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> usize {
        let column = rng.random_range(0..self.keep.len());
        if rng.random::<f64>() < self.keep[column] {
            column
        } else {
            self.alias[column] as usize
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::StdRng, SeedableRng};

    #[test]
    fn nothing_to_draw_builds_no_table() {
        assert!(AliasTable::new(&[]).is_none());
        assert!(AliasTable::new(&[0, 0]).is_none());
    }

    #[test]
    fn a_zero_weight_is_never_drawn() {
        let table = AliasTable::new(&[0, 5, 0, 1]).unwrap();
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..10_000 {
            let i = table.sample(&mut rng);
            assert!(i == 1 || i == 3);
        }
    }

    #[test]
    fn a_single_weight_is_always_drawn() {
        let table = AliasTable::new(&[42]).unwrap();
        let mut rng = StdRng::seed_from_u64(2);
        assert!((0..100).all(|_| table.sample(&mut rng) == 0));
    }
}
