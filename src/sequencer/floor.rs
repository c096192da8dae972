//! [`DiscardFloor`]: numbers an owner handed out on the strength of its own durable promise,
//! which an actualization must not hand out again.
//!
//! The daemon's lease mode may answer a sequence's first numbers before the sequence's own
//! reservation is durable, because it has durably recorded a partition-wide promise: "after
//! a crash, every sequence resumes at or above `F`" (`design/daemon.md`, "The resume
//! floor"). A crash is covered by that record; an actualization is not — it discards the
//! unflushed reservations and rebuilds from storage, where such a sequence may have no
//! number at all. So the owner tells the sequencer ([`Sequencer::set_discard_floor`]), and
//! every actualization that discards state *after* that call raises every sequence to at
//! least `F`: a gap of at most `F` numbers per sequence, never a reuse.
//!
//! Why "after that call" and not at once: raising at once would move every sequence up in
//! the steady state. The call records the generation it was made in; the writer applies
//! the floor when it sees a later generation (`Sequencer::begin`). Numbers under the
//! promise are handed out only after the call, so only in that generation or later, and
//! the discard of any of them bumps the generation past the recorded one.

use super::Sequencer;
use crate::types::Number;
use std::sync::atomic::Ordering;

/// The floor applied so far, and one waiting for the next discard.
#[derive(Debug, Default)]
pub(crate) struct DiscardFloor {
    /// Every sequence's next number is at least this (0: none).
    applied: u64,
    /// (floor, the generation it was promised in): applied by the first later generation.
    pending: Option<(u64, u64)>,
}

impl DiscardFloor {
    /// The floor in force.
    #[inline]
    pub(crate) fn get(&self) -> u64 {
        self.applied
    }

    /// The floor in force once the writer sees `generation`.
    pub(crate) fn at(&self, generation: u64) -> u64 {
        match self.pending {
            Some((floor, promised_in)) if generation > promised_in => self.applied.max(floor),
            _ => self.applied,
        }
    }

    /// The writer sees `generation`: applies a floor promised in an earlier one.
    pub(crate) fn settle(&mut self, generation: u64) {
        if let Some((floor, promised_in)) = self.pending
            && generation > promised_in
        {
            self.applied = self.applied.max(floor);
            self.pending = None;
        }
    }
}

impl Sequencer {
    /// Promises that numbers below `floor` of any sequence may have been handed out without
    /// this sequencer's having stored them (the caller holds its own durable record that
    /// after a restart every sequence starts at `floor` or above). From the next
    /// actualization on, every sequence resumes at `floor` or above, so none of them is
    /// handed out twice. Floors only go up; a lower one than promised before changes nothing.
    ///
    /// Call it once the sequencer is ready: an actualization already under way (recovery at
    /// open included) when it is called does not apply it.
    pub fn set_discard_floor(&mut self, floor: Number) {
        let now = self.shared.generation.load(Ordering::Acquire);
        // A discard the writer has not seen yet settles what was promised before it.
        self.floor.settle(now);
        let previous = self.floor.pending.map_or(0, |(f, _)| f);
        self.floor.pending = Some((floor.0.max(previous), now));
    }

    /// The floor every sequence's next number is raised to (0: none): what was promised
    /// with [`set_discard_floor`](Self::set_discard_floor) once an actualization discarded
    /// state after the promise — including one the writer has not started a transaction
    /// since. While it is 0, nothing handed out under a promise was discarded.
    pub fn discard_floor(&self) -> Number {
        Number(
            self.floor
                .at(self.shared.generation.load(Ordering::Acquire)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::DiscardFloor;
    use crate::storage::MemoryStorage;
    use crate::{Number, Options, SeqId, SeqTypes, Sequencer, WsId, WsKind};
    use std::time::Duration;

    const WAIT: Duration = Duration::from_secs(5);

    fn next(seq: &mut Sequencer, ws: u64) -> u64 {
        let mut tx = seq.start_timeout(WsKind(1), WsId(ws), WAIT).unwrap();
        let n = tx.next(SeqId(1)).unwrap();
        let committed = tx.flush();
        seq.wait_durable(committed, WAIT).unwrap();
        n.0
    }

    #[test]
    fn the_next_actualization_resumes_every_sequence_at_the_floor() {
        let options = Options {
            seq_types: SeqTypes::new().with(WsKind(1), SeqId(1), Number(1)),
            ..Options::default()
        };
        let mut seq = Sequencer::open(MemoryStorage::new(), options).unwrap();
        assert_eq!(next(&mut seq, 1), 1);
        seq.set_discard_floor(Number(100));
        assert_eq!(seq.discard_floor(), Number(0));
        assert_eq!(next(&mut seq, 1), 2, "nothing moves before a discard");
        assert_eq!(next(&mut seq, 2), 1);
        seq.actualize();
        seq.wait_ready(WAIT).unwrap();
        assert_eq!(
            seq.discard_floor(),
            Number(100),
            "known before the writer sees it"
        );
        assert_eq!(next(&mut seq, 1), 100);
        assert_eq!(next(&mut seq, 3), 100, "a sequence never used too");
        assert_eq!(seq.discard_floor(), Number(100));
        // A second promise, made after that discard, waits for the next one.
        seq.set_discard_floor(Number(200));
        assert_eq!(next(&mut seq, 4), 100);
        seq.actualize();
        assert_eq!(next(&mut seq, 5), 200);
        assert_eq!(next(&mut seq, 1), 200);
        seq.close().unwrap();
    }

    #[test]
    fn a_floor_waits_for_a_later_generation_and_only_rises() {
        let mut f = DiscardFloor {
            applied: 0,
            pending: Some((100, 3)),
        };
        f.settle(3);
        assert_eq!(
            f.get(),
            0,
            "the generation it was promised in does not apply it"
        );
        f.settle(4);
        assert_eq!(f.get(), 100);
        f.pending = Some((50, 4));
        f.settle(5);
        assert_eq!(f.get(), 100, "a lower floor never lowers the one in force");
    }
}
