//! The reference model of a sequencer, shared by the property tests
//! (`tests/common/model.rs`) and the `sequencer` fuzz target (`fuzz/fuzz_targets/`): what a
//! correct sequencer hands out, given every event the application logged.
//!
//! Both drive a real `Sequencer` as an application would — a transaction's event is appended
//! to the PLog before `flush`, a failed append means `actualize` — so after any
//! actualization, crash or storage fault the sequencer's numbers are the `max` over the PLog,
//! and the model predicts each of them exactly. The harnesses own the operations, the faults
//! and the sequencer; the model owns the truth (the PLog), the sequencer's expected view and
//! its expected next offset, and the checks that go with a commit (I1, I2, I5).
//!
//! No dependency, not even on seqd: keys are whatever the harness uses (workspace and
//! sequence, as plain numbers), numbers and offsets plain `u64`s.

#![deny(missing_docs)]

use std::collections::HashMap;
use std::hash::Hash;

/// The first of `count` numbers after `last` for a sequence starting at `initial`, and the
/// last of them; `None` when that passes `u64::MAX` (I4, I9) or `count` is 0.
pub fn take(last: u64, initial: u64, count: u64) -> Option<(u64, u64)> {
    let first = last.checked_add(1)?.max(initial);
    Some((first, first.checked_add(count.checked_sub(1)?)?))
}

/// The model (see the crate docs). `K` is the harness's key of a sequence.
#[derive(Debug)]
pub struct Model<K> {
    /// The truth: the max number per key over every PLog event.
    plog_max: HashMap<K, u64>,
    /// The offset of the last PLog event (0: none).
    plog_last: u64,
    /// What the sequencer should believe: the truth as of its last actualization, plus its
    /// own commits since.
    view: HashMap<K, u64>,
    /// The offset the sequencer's next transaction must get (I5).
    expected_offset: u64,
    /// An event not from the sequencer (a foreign writer) landed since the last
    /// actualization: the sequencer cannot know it yet.
    foreign_pending: bool,
    /// Every PLog event: (offset, [(key, number)]).
    events: Vec<(u64, Vec<(K, u64)>)>,
}

impl<K: Copy + Eq + Hash + std::fmt::Debug> Default for Model<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Copy + Eq + Hash + std::fmt::Debug> Model<K> {
    /// An empty PLog, a fresh sequencer: its first offset is 1.
    pub fn new() -> Self {
        Model {
            plog_max: HashMap::new(),
            plog_last: 0,
            view: HashMap::new(),
            expected_offset: 1,
            foreign_pending: false,
            events: Vec::new(),
        }
    }

    /// The last number the sequencer should believe `key` handed out (0: none).
    pub fn last(&self, key: &K) -> u64 {
        self.view.get(key).copied().unwrap_or(0)
    }

    /// The highest number of `key` in the PLog (0: none).
    pub fn logged_max(&self, key: &K) -> u64 {
        self.plog_max.get(key).copied().unwrap_or(0)
    }

    /// What the sequencer should believe, per key.
    pub fn view(&self) -> &HashMap<K, u64> {
        &self.view
    }

    /// The offset of the last PLog event (0: none).
    pub fn plog_last(&self) -> u64 {
        self.plog_last
    }

    /// The offset the sequencer's next transaction must get.
    pub fn expected_offset(&self) -> u64 {
        self.expected_offset
    }

    /// Whether a foreign event landed that the sequencer has not actualized since.
    pub fn foreign_pending(&self) -> bool {
        self.foreign_pending
    }

    /// The sequencer discarded its state: from now on it believes the PLog.
    pub fn actualized(&mut self) {
        self.actualized_at(self.plog_last + 1);
    }

    /// The sequencer actualized on its own (the flusher gave up) while foreign events were
    /// landing, and its replay read the PLog up to `base`.
    pub fn actualized_at(&mut self, base: u64) {
        self.view.clear();
        for (_, values) in self.events.iter().filter(|(o, _)| *o < base) {
            for &(key, n) in values {
                let m = self.view.entry(key).or_insert(0);
                *m = (*m).max(n);
            }
        }
        self.expected_offset = base;
        self.foreign_pending = base <= self.plog_last;
    }

    /// A transaction started at `offset` although the model expected another: legitimate
    /// only if the flusher gave up and actualized on its own while foreign events were
    /// landing, picking them up to `offset`; then the model follows. Call before checking
    /// the offset against [`expected_offset`](Self::expected_offset).
    pub fn resync(&mut self, offset: u64) {
        if self.foreign_pending
            && offset != self.expected_offset
            && (self.expected_offset..=self.plog_last + 1).contains(&offset)
        {
            self.actualized_at(offset);
        }
    }

    /// Someone other than the sequencer appended an event at the next PLog offset; returns
    /// that offset.
    pub fn foreign(&mut self, values: Vec<(K, u64)>) -> u64 {
        let offset = self.plog_last + 1;
        self.logged(offset, values);
        self.foreign_pending = true;
        offset
    }

    /// The transaction at `offset` logged its event (`values`: the last number it took per
    /// key) and committed. Checks that no number was committed before (I1, I2); panics with
    /// what went wrong otherwise.
    pub fn committed(&mut self, offset: u64, values: Vec<(K, u64)>) {
        for &(key, l) in &values {
            let prior = self.logged_max(&key);
            assert!(
                l > prior,
                "I1/I2: {l} handed out for {key:?} after {prior} was committed"
            );
            self.view.insert(key, l);
        }
        self.logged(offset, values);
        self.expected_offset = offset + 1;
    }

    fn logged(&mut self, offset: u64, values: Vec<(K, u64)>) {
        for &(key, n) in &values {
            let m = self.plog_max.entry(key).or_insert(0);
            *m = (*m).max(n);
        }
        self.plog_last = offset;
        self.events.push((offset, values));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_starts_at_the_initial_value_and_stops_at_u64_max() {
        assert_eq!(take(0, 1, 1), Some((1, 1)));
        assert_eq!(take(0, 1000, 3), Some((1000, 1002)));
        assert_eq!(take(1500, 1000, 2), Some((1501, 1502)));
        assert_eq!(take(u64::MAX - 2, 1, 2), Some((u64::MAX - 1, u64::MAX)));
        assert_eq!(take(u64::MAX - 2, 1, 3), None);
        assert_eq!(take(u64::MAX, 1, 1), None);
        assert_eq!(take(5, 1, 0), None);
    }

    #[test]
    fn an_own_actualization_picks_up_foreign_events_up_to_where_it_read() {
        let mut m: Model<u8> = Model::new();
        m.committed(1, vec![(1, 5)]);
        assert_eq!(m.expected_offset(), 2);
        assert_eq!(m.foreign(vec![(1, 9)]), 2);
        assert_eq!(m.foreign(vec![(2, 3)]), 3);
        m.resync(3); // the flusher gave up and replayed offset 2 only
        assert_eq!((m.expected_offset(), m.last(&1), m.last(&2)), (3, 9, 0));
        assert!(m.foreign_pending());
        m.actualized();
        assert_eq!((m.expected_offset(), m.last(&2)), (4, 3));
        assert!(!m.foreign_pending());
    }

    #[test]
    #[should_panic(expected = "I1/I2")]
    fn a_committed_number_handed_out_again_is_caught() {
        let mut m: Model<u8> = Model::new();
        m.committed(1, vec![(1, 5)]);
        m.committed(2, vec![(1, 5)]);
    }
}
