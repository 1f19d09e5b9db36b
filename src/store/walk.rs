//! The frequency walk of a page: each slot, in order, is served its first candidate that is
//! allowed and that no earlier slot took. The embedded store runs it as it checks the caps,
//! the serve path runs it when every verdict is known without the store, and the Redis store
//! runs it round by round, reserving views as it goes (`redis::frequency`).

use smallvec::SmallVec;

/// Per chain, the position of its pick, if any: a page of one slot's without allocating.
pub type Positions = SmallVec<[Option<usize>; 1]>;

/// Walks `chains` (each slot's candidates, in the order they would be served): per chain, the
/// position of its first candidate that `verdict` allows and whose `key` no earlier chain's
/// pick had. `verdict` is asked only about candidates that could be served, in walk order, so
/// that it may reserve what it allows. `None` as soon as a verdict is `None` (not known).
pub fn first_allowed<'a, T: 'a, C: AsRef<[T]>, K: PartialEq>(
    chains: &'a [C],
    key: impl Fn(&'a T) -> K,
    mut verdict: impl FnMut(&'a T) -> Option<bool>,
) -> Option<Positions> {
    let mut served: SmallVec<[K; 2]> = SmallVec::with_capacity(chains.len());
    let mut positions = Positions::with_capacity(chains.len());
    for chain in chains {
        let mut pick = None;
        for (position, candidate) in chain.as_ref().iter().enumerate() {
            let candidate_key = key(candidate);
            if served.contains(&candidate_key) {
                continue;
            }
            if verdict(candidate)? {
                served.push(candidate_key);
                pick = Some(position);
                break;
            }
        }
        positions.push(pick);
    }
    Some(positions)
}

#[cfg(test)]
mod tests {
    use super::first_allowed;

    #[test]
    fn each_chain_gets_its_first_allowed_candidate_not_taken_by_an_earlier_chain() {
        let chains = vec![vec!["a", "b"], vec!["a", "c", "d"], vec!["x"]];
        let picks = first_allowed(&chains, |c| *c, |c| Some(*c != "c" && *c != "x"));
        assert_eq!(picks.as_deref(), Some(&[Some(0), Some(2), None][..]));
    }

    #[test]
    fn an_unknown_verdict_stops_the_walk() {
        let chains = vec![vec![1, 2]];
        assert_eq!(first_allowed(&chains, |c| *c, |_| None), None);
    }

    #[test]
    fn candidates_taken_earlier_are_not_asked_about() {
        let chains = vec![vec![1], vec![1, 2]];
        let mut asked = Vec::new();
        first_allowed(
            &chains,
            |c| *c,
            |c| {
                asked.push(*c);
                Some(true)
            },
        );
        assert_eq!(asked, [1, 2]);
    }
}
