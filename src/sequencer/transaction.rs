//! [`Transaction`]: one event's worth of numbers from one workspace.

use crate::error::{Error, Result};
use crate::sequencer::{Committed, Sequencer};
use crate::types::{Number, PLogOffset, SeqId, WsId, WsKind};

/// A sequencing transaction: the numbers one PLog event uses, from one workspace.
///
/// Get one from [`Sequencer::start`]. Take numbers with [`next`](Self::next) and
/// [`next_n`](Self::next_n); they are visible to nobody else until the transaction ends:
///
/// * [`flush`](Self::flush) once the event is in the PLog: the numbers are committed, the
///   offset advances, and the flusher persists them in the background;
/// * [`actualize`](Self::actualize) if the PLog write failed: the numbers and the offset are
///   discarded and handed out again by the next transaction, after the sequencer rebuilds its
///   state from storage and the PLog.
///
/// Dropping a transaction without either is `actualize`. The transaction borrows the sequencer
/// mutably, so there is never more than one at a time.
#[must_use = "a transaction dropped without flush() is actualized: its numbers are discarded"]
pub struct Transaction<'a> {
    pub(super) seq: &'a mut Sequencer,
    pub(super) kind: WsKind,
    /// Index of the kind in the sequencer's compiled catalogue.
    pub(super) ki: usize,
    pub(super) ws: WsId,
    pub(super) offset: PLogOffset,
    /// Cache slot of the workspace, once a `next` has needed it.
    pub(super) slot: Option<u32>,
    pub(super) done: bool,
}

impl Transaction<'_> {
    /// The PLog offset of this transaction's event.
    pub fn offset(&self) -> PLogOffset {
        self.offset
    }

    /// The workspace.
    pub fn ws(&self) -> WsId {
        self.ws
    }

    /// The workspace kind.
    pub fn kind(&self) -> WsKind {
        self.kind
    }

    /// The next number of sequence `seq`.
    ///
    /// Errors: [`Error::UnknownSeq`] if the kind has no such sequence, [`Error::Exhausted`] past
    /// `u64::MAX`, [`Error::Storage`] if loading the workspace failed (the transaction stays
    /// usable; retry or actualize). On error nothing changes.
    #[inline]
    pub fn next(&mut self, seq: SeqId) -> Result<Number> {
        self.next_n(seq, 1)
    }

    /// A block of `count` consecutive numbers of `seq`, in one step: returns the first,
    /// `first..first+count-1` are this transaction's. `count` must be ≥ 1.
    pub fn next_n(&mut self, seq: SeqId, count: u64) -> Result<Number> {
        if count == 0 {
            return Err(Error::InvalidArgument("next_n count must be >= 1".into()));
        }
        let (idx, initial) = self.locate(seq)?;
        let last = self.last_of(idx)?;
        let exhausted = || Error::Exhausted {
            ws: self.ws,
            seq,
            last: Number(last),
            requested: count,
        };
        let first = last.checked_add(1).ok_or_else(exhausted)?.max(initial);
        let new_last = first.checked_add(count - 1).ok_or_else(exhausted)?;
        self.seq.tx_last[idx] = new_last;
        Ok(Number(first))
    }

    /// The number the next `next(seq)` would return, without taking it.
    pub fn peek(&mut self, seq: SeqId) -> Result<Number> {
        let (idx, initial) = self.locate(seq)?;
        let last = self.last_of(idx)?;
        match last.checked_add(1) {
            Some(n) => Ok(Number(n.max(initial))),
            None => Err(Error::Exhausted {
                ws: self.ws,
                seq,
                last: Number(last),
                requested: 1,
            }),
        }
    }

    /// Where `seq` lives in this transaction's state, and its initial value. A sequence of an
    /// open kind is loaded into the workspace's cache entry on first use.
    #[inline]
    fn locate(&mut self, seq: SeqId) -> Result<(usize, u64)> {
        if !self.seq.is_open(self.ki) {
            let idx = self.seq.seq_index(self.ki, seq)?;
            return Ok((idx, self.seq.initial(self.ki, idx)));
        }
        let slot = self.slot()?;
        let (idx, initial) = self.seq.open_position(self.ki, slot, self.ws, seq)?;
        if self.seq.tx_last.len() <= idx {
            self.seq.tx_last.resize(idx + 1, 0);
        }
        Ok((idx, initial.max(self.seq.floor.get())))
    }

    /// The workspace's cache slot, loading it on first use.
    #[inline]
    fn slot(&mut self) -> Result<u32> {
        match self.slot {
            Some(s) => Ok(s),
            None => {
                let s = self.seq.resolve(self.ki, self.ws)?;
                self.slot = Some(s);
                Ok(s)
            }
        }
    }

    /// Ends a transaction that took no numbers without committing or actualizing it: no
    /// event, no offset used ([`Sequencer::peek`]).
    pub(super) fn abandon(mut self) {
        self.done = true;
        self.seq.end_unused();
    }

    /// The last number this transaction (or, before it, the workspace) handed out from the
    /// sequence at `idx` of the kind; 0 if none. Loads the workspace on first use.
    #[inline]
    fn last_of(&mut self, idx: usize) -> Result<u64> {
        let last = self.seq.tx_last[idx];
        if last != 0 {
            return Ok(last);
        }
        let slot = self.slot()?;
        Ok(self.seq.cache.slot(slot).last[idx])
    }

    /// Commits: the event is in the PLog. Publishes the numbers, advances the offset and
    /// queues the values for the flusher. No I/O; never blocks on storage.
    ///
    /// The returned [`Committed`] can be passed to [`Sequencer::wait_durable`].
    pub fn flush(mut self) -> Committed {
        self.done = true;
        self.seq.commit(self.ki, self.ws, self.slot, self.offset)
    }

    /// Cancels: the PLog write failed. Discards this transaction's numbers and all unflushed
    /// state, and starts rebuilding from storage and the PLog in the background; `start`
    /// answers `Busy` until that is done.
    pub fn actualize(mut self) {
        self.done = true;
        self.seq.request_actualize();
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.seq.request_actualize();
        }
    }
}

impl std::fmt::Debug for Transaction<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction")
            .field("kind", &self.kind)
            .field("ws", &self.ws)
            .field("offset", &self.offset)
            .finish_non_exhaustive()
    }
}
