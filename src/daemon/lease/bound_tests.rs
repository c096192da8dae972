//! The window bound (module docs of `lease`), property-tested: random sequences of the
//! partition's requests, connection takes, top-ups, flusher progress, time passing, evictions
//! and actualizations against a model of the sequencer and the clients.

use std::collections::{HashMap, HashSet};

use proptest::prelude::*;

use super::tests::{k, ticket};
use super::*;

/// What the property test does to a lease table, as the partition and connections would.
#[derive(Clone, Debug)]
enum Op {
    /// The partition's `NEXT` (and the top-up it may plan).
    Next { key: u64, count: u64 },
    /// A connection's `NEXT` from a durable lease; its prefetch request is queued.
    Serve { key: u64, count: u64 },
    /// The worker takes up the queued prefetch requests.
    Prefetch,
    /// The flusher makes the reservations up to this share of those committed durable.
    Flush { percent: u64 },
    /// Time passes (ms): under GROW_BELOW, between, over SHRINK_ABOVE.
    Tick { ms: u64 },
    /// An actualization drops every lease.
    Clear,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..8u64, 1..40u64).prop_map(|(key, count)| Op::Next { key, count }),
        4 => (0..8u64, 1..8u64).prop_map(|(key, count)| Op::Serve { key, count }),
        2 => Just(Op::Prefetch),
        2 => (0..=100u64).prop_map(|percent| Op::Flush { percent }),
        2 => prop_oneof![Just(1u64), Just(2_000), Just(11_000)].prop_map(|ms| Op::Tick { ms }),
        1 => Just(Op::Clear),
    ]
}

/// The sequencer and the clients, as far as the lease table can tell.
struct Model {
    /// Per key, the next number the sequencer would reserve (its reservation end).
    next: HashMap<Key, u64>,
    /// Per key, one past the last number handed out.
    handed: HashMap<Key, u64>,
    /// Keys whose unused range was given up (cleared or dropped) since their last hand-out.
    gap_ok: HashSet<Key>,
    offset: u64,
    flushed: u64,
    prefetches: Vec<Key>,
    now: Instant,
}

impl Model {
    fn new() -> Self {
        let (next, handed, gap_ok) = (HashMap::new(), HashMap::new(), HashSet::new());
        let (offset, flushed, prefetches, now) = (0, 0, Vec::new(), Instant::now());
        Model {
            next,
            handed,
            gap_ok,
            offset,
            flushed,
            prefetches,
            now,
        }
    }

    fn reserve(&mut self, key: Key, n: u64) -> (u64, Committed) {
        let next = self.next.entry(key).or_insert(1);
        let first = *next;
        *next += n;
        self.offset += 1;
        (first, ticket(self.offset))
    }

    /// A hand-out: within the reservation, and right after the last one unless the
    /// sequence's range was given up since.
    fn hand_out(&mut self, key: Key, first: u64, count: u64) {
        let handed = self.handed.get(&key).copied().unwrap_or(1);
        if self.gap_ok.remove(&key) {
            assert!(first >= handed, "{key:?}: {first} handed out again");
        } else {
            assert_eq!(first, handed, "{key:?}: numbers skipped or reused");
        }
        assert!(
            first + count <= self.next[&key],
            "{key:?}: beyond the reservation"
        );
        self.handed.insert(key, first + count);
    }

    fn apply(&mut self, ls: &mut Leases, op: Op) {
        match op {
            Op::Next { key, count } => {
                let key = k(key);
                match ls.plan_next(key, count, self.now, Some((PLogOffset(self.flushed), 0))) {
                    Plan::Taken { first, top_up, .. } => {
                        self.hand_out(key, first.0, count);
                        if let Some(n) = top_up {
                            let (at, t) = self.reserve(key, n);
                            ls.reserved(key, at, n, t, 0);
                        }
                    }
                    Plan::Reserve(n) => {
                        assert!(n >= count);
                        let (at, t) = self.reserve(key, n);
                        let taken = ls.reserved(key, at, n, t, count).expect("taken");
                        self.hand_out(key, taken.0.0, count);
                    }
                }
            }
            Op::Serve { key, count } => {
                // Connections confirm durable reservations themselves, as `Flush` does.
                let durable = Some((PLogOffset(self.flushed), 0));
                if let Served::Number { first, prefetch } = ls.serve_next(k(key), count, || durable)
                {
                    self.hand_out(k(key), first, count);
                    if prefetch {
                        self.prefetches.push(k(key));
                    }
                }
            }
            Op::Prefetch => {
                for key in std::mem::take(&mut self.prefetches) {
                    if let Some(n) = ls.plan_prefetch(key, self.now) {
                        let (at, t) = self.reserve(key, n);
                        ls.reserved(key, at, n, t, 0);
                    }
                }
            }
            Op::Flush { percent } => {
                self.flushed = self.flushed.max(self.offset * percent / 100);
                ls.prune_pending(PLogOffset(self.flushed), 0);
            }
            Op::Tick { ms } => self.now += Duration::from_millis(ms),
            Op::Clear => ls.clear(),
        }
    }

    /// The window bound for every lease and parked range, and no skipped number while a
    /// sequence holds one. A sequence's unused range may disappear only in an actualization
    /// (`cleared`) or as one of the parked ranges counted as dropped (`dropped` new ones).
    fn check(
        &mut self,
        ls: &Leases,
        before: &HashMap<Key, (u64, u64)>,
        cleared: bool,
        dropped: u64,
    ) -> HashMap<Key, (u64, u64)> {
        let mut now = HashMap::new();
        for (key, cursor, end, window) in ls.ranges() {
            assert!(
                (MIN_WINDOW..=MAX_WINDOW).contains(&window),
                "{key:?}: window {window}"
            );
            if end > cursor {
                let reserved_end = self.next[&key];
                assert!(
                    reserved_end - cursor <= window,
                    "{key:?}: reserved up to {reserved_end}, cursor {cursor}, window {window}"
                );
                if !self.gap_ok.contains(&key) {
                    assert_eq!(
                        cursor,
                        self.handed.get(&key).copied().unwrap_or(1),
                        "{key:?}"
                    );
                }
                now.insert(key, (cursor, end));
            }
        }
        let mut gone = 0;
        for key in before.keys() {
            if !now.contains_key(key) && self.next[key] > self.handed.get(key).copied().unwrap_or(1)
            {
                self.gap_ok.insert(*key);
                gone += 1;
            }
        }
        assert!(
            cleared || gone <= dropped,
            "{gone} unused ranges lost, {dropped} dropped"
        );
        now
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn the_window_bound_holds_after_every_operation(
        capacity in 1..6usize,
        ops in proptest::collection::vec(op(), 1..300),
    ) {
        let mut ls = Leases::new(capacity);
        let mut m = Model::new();
        let mut ranges = HashMap::new();
        for op in ops {
            let (cleared, dropped) = (matches!(op, Op::Clear), ls.stats().dropped);
            m.apply(&mut ls, op);
            ranges = m.check(&ls, &ranges, cleared, ls.stats().dropped - dropped);
        }
        // A graceful shutdown saves every unused range; a restart resumes each exactly.
        ls.close();
        let saved: Vec<_> = ls.cursors().collect();
        prop_assert_eq!(saved.len(), ranges.len());
        let mut after = Leases::new(capacity);
        for &(key, cursor) in &saved {
            prop_assert_eq!(Some(&(cursor, m.next[&key])), ranges.get(&key));
            after.restore(key, cursor, m.next[&key], m.now);
        }
        for (key, cursor) in saved {
            let plan = after.plan_next(key, 1, m.now, None);
            prop_assert!(
                matches!(plan, Plan::Taken { first, dep: None, .. } if first.0 == cursor),
                "{:?}: {:?}", key, plan
            );
        }
    }
}
