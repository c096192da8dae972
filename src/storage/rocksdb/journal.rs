//! [`Journal`]: the numbers logged but not yet checkpointed, in memory.
//!
//! With the journal on (`RocksDbOptions::journal`), a batch of numbers is made durable as one
//! record in the `journal` column family — one put, however many sequences it holds — instead
//! of one `numbers` key per sequence. Until a checkpoint (`checkpoint.rs`) writes them into
//! `numbers`, the batch's numbers live here, where reads find them:
//!
//! ```text
//!   write: values → current (max per sequence) ──► journal record (put, fsynced)
//!          ──► once the put returned: its next offset → current
//!   checkpoint: current ──swap──► draining ──► numbers + checkpoint offsets
//!                                               − journal records up to them (one batch)
//!               draining cleared once that batch returned
//!   read: current, then draining, then `numbers` — the largest wins
//! ```
//!
//! A number moves from `current` to `draining` under the lock, and leaves `draining` only
//! after the batch that put it in `numbers` returned, so a reader that looks at both maps and
//! then at RocksDB cannot miss it. Numbers only grow, so taking the largest of the three
//! places is always right, whatever order the writes landed in.
//!
//! A batch's values are here before its record is written, its offset only after: a write
//! that fails leaves numbers that are checkpointed anyway (which can only skip numbers), but
//! never an offset that [`next_offset`](Journal::next_offset) or a checkpoint would take for
//! durable — recovery resumes at that offset and treats every transaction below it as
//! written.
//!
//! Everything here is memory and a mutex held for map operations only; the I/O is the
//! caller's.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use rustc_hash::FxHashMap;

use crate::storage::{SeqValue, StorageError};
use crate::types::{PLogOffset, PartitionId, SeqId, WsId};

/// A checkpoint is started at least this often while numbers are waiting.
pub(super) const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);
/// A checkpoint is started at once when this many sequences are waiting.
pub(super) const CHECKPOINT_AT: usize = 100_000;
/// Writes are refused (retryably) while this many sequences wait for a checkpoint that is
/// behind or failing: memory stays bounded, and the sequencer's retries and backpressure
/// take over.
pub(super) const MAX_LOGGED: usize = 1_000_000;

/// Numbers logged since a checkpoint began: the largest per sequence, and per partition the
/// largest next offset.
#[derive(Debug, Default)]
pub(super) struct Logged {
    pub(super) values: FxHashMap<(u64, u16), u64>,
    pub(super) offsets: FxHashMap<u16, u64>,
}

impl Logged {
    fn add_values(&mut self, values: &[SeqValue]) {
        for v in values {
            let n = self.values.entry((v.ws.0, v.seq.0)).or_insert(0);
            *n = (*n).max(v.number.0);
        }
    }

    fn add_offset(&mut self, p: PartitionId, next_offset: PLogOffset) {
        let o = self.offsets.entry(p.0).or_insert(0);
        *o = (*o).max(next_offset.0);
    }

    fn is_empty(&self) -> bool {
        self.values.is_empty() && self.offsets.is_empty()
    }

    fn clear(&mut self) {
        self.values.clear();
        self.offsets.clear();
    }
}

struct State {
    current: Logged,
    /// Being written into `numbers` (or left by a checkpoint that failed, to be written
    /// first by the next one).
    draining: Option<Arc<Logged>>,
    /// A drained map, emptied, kept for the next swap (no reallocation per checkpoint).
    spare: Logged,
    /// The checkpointer was asked to start early (`CHECKPOINT_AT`); asked once.
    asked: bool,
    stop: bool,
}

/// The in-memory half of the journal, shared by writers, readers and the checkpointer.
pub(super) struct Journal {
    state: Mutex<State>,
    /// Wakes the checkpointer: early start, or stop.
    wake: Condvar,
}

impl Journal {
    pub(super) fn new() -> Self {
        Journal {
            state: Mutex::new(State {
                current: Logged::default(),
                draining: None,
                spare: Logged::default(),
                asked: false,
                stop: false,
            }),
            wake: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing here leaves the maps half-changed on a panic: take the state as it is.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records the values of a batch about to be written as a journal record (its offset
    /// follows with [`written`](Self::written) once the record is). Refused (retryably)
    /// while [`MAX_LOGGED`] sequences wait for a checkpoint.
    pub(super) fn log(&self, values: &[SeqValue]) -> Result<(), StorageError> {
        let mut s = self.lock();
        if s.current.values.len() >= MAX_LOGGED {
            return Err(StorageError::retryable(format!(
                "rocksdb: {MAX_LOGGED} sequences wait for a journal checkpoint, which is behind \
                 or failing; writes resume when it catches up"
            )));
        }
        s.current.add_values(values);
        if s.current.values.len() >= CHECKPOINT_AT && !s.asked {
            s.asked = true;
            self.wake.notify_one();
        }
        Ok(())
    }

    /// The record of partition `p`'s batch up to `next_offset` is written.
    pub(super) fn written(&self, p: PartitionId, next_offset: PLogOffset) {
        self.lock().current.add_offset(p, next_offset);
    }

    /// Records a journal record found at open (no limit: it was accepted before the crash).
    pub(super) fn log_recovered(
        &self,
        p: PartitionId,
        values: &[SeqValue],
        next_offset: PLogOffset,
    ) {
        let mut s = self.lock();
        s.current.add_values(values);
        s.current.add_offset(p, next_offset);
    }

    /// The largest logged number of each of `seqs` (0: none), or `None` if nothing of `ws`
    /// can be here (both maps empty).
    pub(super) fn lookup(&self, ws: WsId, seqs: &[SeqId]) -> Option<Vec<u64>> {
        let s = self.lock();
        if s.current.values.is_empty() && s.draining.as_ref().is_none_or(|d| d.values.is_empty()) {
            return None;
        }
        let find = |seq: &SeqId| {
            let key = (ws.0, seq.0);
            let a = s.current.values.get(&key).copied().unwrap_or(0);
            let b = s
                .draining
                .as_ref()
                .and_then(|d| d.values.get(&key).copied())
                .unwrap_or(0);
            a.max(b)
        };
        Some(seqs.iter().map(find).collect())
    }

    /// The largest next offset logged for `p`, if any is still in memory.
    pub(super) fn next_offset(&self, p: PartitionId) -> Option<PLogOffset> {
        let s = self.lock();
        let a = s.current.offsets.get(&p.0).copied();
        let b = s
            .draining
            .as_ref()
            .and_then(|d| d.offsets.get(&p.0).copied());
        a.max(b).map(PLogOffset)
    }

    /// Starts a checkpoint: what a failed one left, else everything logged (swapped out of
    /// `current`). `None` when there is nothing to write. The caller writes it and then calls
    /// [`finish`](Self::finish); checkpoints must not overlap (the caller serialises them).
    pub(super) fn begin(&self) -> Option<Arc<Logged>> {
        let mut s = self.lock();
        s.asked = false;
        if let Some(d) = &s.draining {
            return Some(Arc::clone(d));
        }
        if s.current.is_empty() {
            return None;
        }
        let fresh = std::mem::take(&mut s.spare);
        let drained = Arc::new(std::mem::replace(&mut s.current, fresh));
        s.draining = Some(Arc::clone(&drained));
        Some(drained)
    }

    /// Ends the checkpoint begun with `drained`: on success its numbers are in `numbers` and
    /// leave memory; on failure they stay, to be written first by the next checkpoint.
    pub(super) fn finish(&self, drained: Arc<Logged>, written: bool) {
        if !written {
            return;
        }
        let mut s = self.lock();
        s.draining = None;
        // The last reference (readers hold none beyond the lock): keep its allocation.
        if let Ok(mut spare) = Arc::try_unwrap(drained) {
            spare.clear();
            s.spare = spare;
        }
    }

    /// Whether anything waits for a checkpoint.
    pub(super) fn is_empty(&self) -> bool {
        let s = self.lock();
        s.current.is_empty() && s.draining.is_none()
    }

    /// The checkpointer's wait: until asked to start early, `timeout` passed, or stop.
    /// Returns false once stopped.
    pub(super) fn wait(&self, timeout: Duration) -> bool {
        let s = self.lock();
        if s.stop {
            return false;
        }
        let (s, _) = self
            .wake
            .wait_timeout_while(s, timeout, |s| !s.stop && !s.asked)
            .unwrap_or_else(|e| e.into_inner());
        !s.stop
    }

    /// Stops the checkpointer's waits.
    pub(super) fn stop(&self) {
        self.lock().stop = true;
        self.wake.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch logged and its record written.
    fn log(j: &Journal, values: &[SeqValue], next: u64) -> Result<(), StorageError> {
        j.log(values)?;
        j.written(PartitionId(0), PLogOffset(next));
        Ok(())
    }

    use crate::storage::test_value as v;

    #[test]
    fn reads_find_numbers_while_they_move_to_a_checkpoint() {
        let j = Journal::new();
        assert_eq!(j.lookup(WsId(1), &[SeqId(0)]), None);
        log(&j, &[v(1, 0, 5), v(2, 0, 7)], 3).unwrap();
        log(&j, &[v(1, 0, 4)], 4).unwrap();
        assert_eq!(j.lookup(WsId(1), &[SeqId(0), SeqId(1)]), Some(vec![5, 0]));
        let d = j.begin().unwrap();
        // Logged during the checkpoint: the larger of the two maps wins.
        log(&j, &[v(1, 0, 6)], 5).unwrap();
        assert_eq!(j.lookup(WsId(1), &[SeqId(0)]), Some(vec![6]));
        assert_eq!(j.lookup(WsId(2), &[SeqId(0)]), Some(vec![7]));
        assert_eq!(j.next_offset(PartitionId(0)), Some(PLogOffset(5)));
        // A failed checkpoint keeps its numbers, and the next one writes them first.
        j.finish(Arc::clone(&d), false);
        let again = j.begin().unwrap();
        assert!(Arc::ptr_eq(&d, &again));
        assert_eq!(again.offsets.get(&0), Some(&4));
        drop(d);
        j.finish(again, true);
        assert_eq!(j.lookup(WsId(2), &[SeqId(0)]), Some(vec![0]));
        assert_eq!(j.lookup(WsId(1), &[SeqId(0)]), Some(vec![6]));
        let last = j.begin().unwrap();
        j.finish(last, true);
        assert!(j.is_empty());
        assert_eq!(j.begin().map(|_| ()), None);
        assert_eq!(j.next_offset(PartitionId(0)), None);
    }

    #[test]
    fn a_batch_whose_record_failed_leaves_its_numbers_but_no_offset() {
        let j = Journal::new();
        log(&j, &[v(1, 0, 5)], 3).unwrap();
        // Logged, then the put failed: readable (it can only skip numbers), not durable.
        j.log(&[v(1, 0, 6)]).unwrap();
        assert_eq!(j.lookup(WsId(1), &[SeqId(0)]), Some(vec![6]));
        assert_eq!(j.next_offset(PartitionId(0)), Some(PLogOffset(3)));
        let d = j.begin().unwrap();
        assert_eq!(
            d.offsets.get(&0),
            Some(&3),
            "a checkpoint claims written records only"
        );
    }

    #[test]
    fn refuses_writes_while_too_much_waits() {
        let j = Journal::new();
        let batch: Vec<SeqValue> = (0..MAX_LOGGED as u64).map(|ws| v(ws, 0, 1)).collect();
        log(&j, &batch, 2).unwrap();
        let err = log(&j, &[v(0, 0, 2)], 3).unwrap_err();
        assert!(
            err.is_retryable() && err.message().contains("checkpoint"),
            "{err}"
        );
        let d = j.begin().unwrap();
        log(&j, &[v(0, 0, 2)], 3).unwrap();
        j.finish(d, true);
    }

    #[test]
    fn the_checkpointer_is_woken_early_and_stopped() {
        let j = Arc::new(Journal::new());
        let waiter = {
            let j = Arc::clone(&j);
            std::thread::spawn(move || j.wait(Duration::from_secs(30)))
        };
        let batch: Vec<SeqValue> = (0..CHECKPOINT_AT as u64).map(|ws| v(ws, 0, 1)).collect();
        log(&j, &batch, 2).unwrap();
        assert!(waiter.join().unwrap(), "woken early, not stopped");
        j.stop();
        assert!(!j.wait(Duration::from_secs(30)));
    }
}
