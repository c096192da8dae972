//! Placement: which live sequencer node each partition goes to ([`plan`]), balanced so that
//! node counts differ by at most one, moving as few partitions as that allows.

use std::collections::BTreeMap;

/// The target owner of every partition, given the live sequencer nodes and the current owners
/// (`current[p]`, `None` for an unowned partition). Deterministic: the same inputs give the
/// same layout on every Director.
///
/// A partition keeps its owner when the owner is live and under its share; the nodes with
/// the most partitions now get the larger shares, so a balanced cluster moves nothing. Every
/// other partition goes to the node with the fewest so far (ties: the smaller id). Empty
/// when there is no sequencer node.
pub fn plan(nodes: &[String], current: &[Option<String>]) -> Vec<String> {
    let mut ids: Vec<&str> = nodes.iter().map(String::as_str).collect();
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        return Vec::new();
    }
    let partitions = current.len();
    let base = partitions / ids.len();
    let extra = partitions % ids.len();

    // What each live node holds now.
    let mut held: BTreeMap<&str, usize> = ids.iter().map(|id| (*id, 0)).collect();
    for owner in current.iter().flatten() {
        if let Some(n) = held.get_mut(owner.as_str()) {
            *n += 1;
        }
    }
    // Shares: the `extra` nodes that hold the most get one more.
    let mut by_held: Vec<&str> = ids.clone();
    by_held.sort_by(|a, b| held[b].cmp(&held[a]).then(a.cmp(b)));
    let cap: BTreeMap<&str, usize> = by_held
        .iter()
        .enumerate()
        .map(|(i, id)| (*id, base + usize::from(i < extra)))
        .collect();

    let mut count: BTreeMap<&str, usize> = ids.iter().map(|id| (*id, 0)).collect();
    let mut target: Vec<Option<&str>> = vec![None; partitions];
    for (p, owner) in current.iter().enumerate() {
        let Some(owner) = owner.as_deref() else {
            continue;
        };
        if let (Some(c), Some(&cap)) = (count.get_mut(owner), cap.get(owner))
            && *c < cap
        {
            *c += 1;
            target[p] = Some(owner);
        }
    }
    for slot in target.iter_mut().filter(|t| t.is_none()) {
        let pick = ids
            .iter()
            .filter(|id| count[**id] < cap[**id])
            .min_by(|a, b| count[**a].cmp(&count[**b]).then(a.cmp(b)))
            .copied();
        if let Some(id) = pick {
            *count.entry(id).or_default() += 1;
            *slot = Some(id);
        }
    }
    target
        .into_iter()
        .map(|t| t.unwrap_or_default().to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("n{i}")).collect()
    }

    #[test]
    fn a_fresh_cluster_is_spread_evenly() {
        let layout = plan(&ids(3), &vec![None; 8]);
        let count = |id: &str| layout.iter().filter(|o| *o == id).count();
        assert_eq!((count("n0"), count("n1"), count("n2")), (3, 3, 2));
    }

    #[test]
    fn a_dead_nodes_partitions_move_and_nothing_else() {
        let current: Vec<Option<String>> = ["n0", "n1", "n2", "n0", "n1", "n2"]
            .iter()
            .map(|s| Some((*s).to_owned()))
            .collect();
        let alive = vec!["n0".to_owned(), "n1".to_owned()];
        let layout = plan(&alive, &current);
        for (p, owner) in current.iter().enumerate() {
            if owner.as_deref() != Some("n2") {
                assert_eq!(Some(layout[p].as_str()), owner.as_deref());
            }
        }
        assert_eq!(layout.iter().filter(|o| *o == "n0").count(), 3);
    }

    #[test]
    fn no_sequencer_no_layout() {
        assert!(plan(&[], &[None, None]).is_empty());
    }

    proptest! {
        #[test]
        fn balanced_and_minimal(
            n in 1usize..6,
            partitions in 0usize..40,
            owners in proptest::collection::vec(proptest::option::of(0usize..8), 40),
        ) {
            let nodes = ids(n);
            let current: Vec<Option<String>> =
                owners[..partitions].iter().map(|o| o.map(|i| format!("n{i}"))).collect();
            let layout = plan(&nodes, &current);
            prop_assert_eq!(layout.len(), partitions);
            let counts: Vec<usize> =
                nodes.iter().map(|id| layout.iter().filter(|o| *o == id).count()).collect();
            let (min, max) = (counts.iter().min().copied(), counts.iter().max().copied());
            prop_assert!(max.unwrap_or(0) - min.unwrap_or(0) <= 1, "{:?}", counts);
            prop_assert!(layout.iter().all(|o| nodes.contains(o)));
            // Moves: only partitions unowned, owned by a dead node, or over their owner's share.
            let mut kept: BTreeMap<&str, usize> = BTreeMap::new();
            for (p, owner) in current.iter().enumerate() {
                if let Some(o) = owner && nodes.contains(o) && layout[p] != *o {
                    *kept.entry(o.as_str()).or_default() += 1;
                    let held = current.iter().flatten().filter(|x| *x == o).count();
                    prop_assert!(held > partitions / n, "{} moved off {} with {}", p, o, held);
                }
            }
        }
    }
}
