//! Writing the pending batch on the caller's thread: [`FlushHandle`].
//!
//! The background worker starts a write `flush_interval` after the first commit of a batch.
//! An embedder that knows better when a batch is complete can write it itself, at once, on
//! its own thread. The daemon's connection threads do so when they have answered every
//! request they read and are about to sleep, as Redis writes its AOF before it sleeps: the
//! batch then holds everything those reads committed, and the replies go out from the
//! thread that wrote it, with no hand-over to the worker and back (on these machines each
//! cross-thread wake-up cost about 100 µs, a third of an fsync).
//!
//! Only one write is in flight at a time: the handle writes only when neither the worker nor
//! another handle is writing, and the worker waits while a handle writes. A failed write is
//! handed over to the worker, which retries it (with backoff, and the actualizer after its
//! retry budget) exactly as if it had failed there.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{record_error, sorted_values, take_batch, written};
use crate::sequencer::flight::{Taken, Writer};
use crate::sequencer::state::{Collected, Inner, Shared, Status};
use crate::storage::{SeqValue, StorageError};

/// What [`FlushHandle::flush_now`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FlushNow {
    /// The pending batch is durable now (waiters were woken).
    Written,
    /// Nothing was pending.
    Nothing,
    /// Not now: a write is in flight (the pending batch is marked due, so whoever finishes
    /// that write starts the next one at once), or the sequencer is recovering or closing.
    Busy,
    /// The write failed; the background worker retries the batch.
    Failed,
}

/// Writes a sequencer's pending batch on the calling thread; get one from
/// [`Sequencer::flush_handle`](crate::Sequencer::flush_handle). Each thread that writes
/// should own its own handle (it keeps a buffer), cloned from one.
pub struct FlushHandle {
    shared: Arc<Shared>,
    values: Vec<SeqValue>,
}

impl Clone for FlushHandle {
    fn clone(&self) -> Self {
        FlushHandle::new(Arc::clone(&self.shared))
    }
}

impl std::fmt::Debug for FlushHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlushHandle").finish_non_exhaustive()
    }
}

impl FlushHandle {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        FlushHandle {
            shared,
            values: Vec::new(),
        }
    }

    /// Writes everything committed and not yet written, in one storage call on this thread,
    /// unless a write is already in flight. Blocks for that call (it never waits for a lock
    /// held across I/O). Never retries: a failure goes to the background worker.
    pub fn flush_now(&mut self) -> FlushNow {
        let taken = match self.take() {
            Ok(taken) => taken,
            Err(outcome) => return outcome,
        };
        sorted_values(&mut self.values, &taken.batch);
        let t0 = Instant::now();
        let result = self
            .shared
            .storage
            .write_values_and_offset(&self.values, taken.next);
        self.finish(taken, t0.elapsed(), result)
    }

    /// Writes the pending batches of several sequencers on this thread, each as
    /// [`flush_now`](Self::flush_now) would, but with one fsync where their storages share a
    /// log ([`SeqStorage::shared_log`](crate::storage::SeqStorage::shared_log), e.g. the
    /// partitions of one RocksDB database): every batch but the last is written deferred and
    /// the last one durably, and none counts as written before that last write returned. If
    /// it fails, every batch of the group goes to its worker, which retries it. Storages that
    /// share no log are written one after another. Returns what happened to each, in order.
    pub fn flush_together(handles: &mut [&mut FlushHandle]) -> Vec<FlushNow> {
        let mut outcomes = vec![FlushNow::Nothing; handles.len()];
        let log = handles.first().and_then(|h| h.shared.storage.shared_log());
        if log.is_none() || handles.iter().any(|h| h.shared.storage.shared_log() != log) {
            for (h, outcome) in handles.iter_mut().zip(&mut outcomes) {
                *outcome = h.flush_now();
            }
            return outcomes;
        }
        let mut taken = Vec::with_capacity(handles.len());
        for (i, h) in handles.iter_mut().enumerate() {
            match h.take() {
                Ok(t) => {
                    sorted_values(&mut h.values, &t.batch);
                    taken.push((i, t));
                }
                Err(outcome) => outcomes[i] = outcome,
            }
        }
        // The last batch taken is written durably, the others before it deferred.
        let Some((last, last_taken)) = taken.pop() else {
            return outcomes;
        };
        let t0 = Instant::now();
        let mut deferred = Vec::with_capacity(taken.len());
        for (i, t) in taken {
            let h = &mut handles[i];
            match h
                .shared
                .storage
                .write_values_and_offset_deferred(&h.values, t.next)
            {
                Ok(()) => deferred.push((i, t)),
                Err(e) => outcomes[i] = h.finish(t, t0.elapsed(), Err(e)),
            }
        }
        let h = &mut handles[last];
        let result = h
            .shared
            .storage
            .write_values_and_offset(&h.values, last_taken.next);
        let took = t0.elapsed();
        // The deferred writes are durable exactly when this one is; if it failed, they may or
        // may not be, and their own retry settles it.
        for (i, t) in deferred {
            let theirs = match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(StorageError::retryable(format!(
                    "the write that was to make this batch durable failed: {e}"
                ))),
            };
            outcomes[i] = handles[i].finish(t, took, theirs);
        }
        outcomes[last] = handles[last].finish(last_taken, took, result);
        outcomes
    }

    /// Takes the pending batch for a write on this thread, or says why not.
    fn take(&mut self) -> Result<Taken, FlushNow> {
        let shared = &*self.shared;
        let mut inner = shared.lock();
        // The writer's staged commits, unless it has a transaction open (on another thread).
        collect_for_caller(shared, &mut inner);
        if inner.pending_next.is_none() {
            return Err(FlushNow::Nothing);
        }
        let writing = !inner.flight.is_idle();
        if writing
            || shared.status() != Status::Ready
            || inner.actualize_requested
            || inner.stop.is_some()
        {
            if writing {
                // Due now: the worker writes it as soon as the write in flight ends.
                inner.due = None;
                if inner.worker.wake_if_lingering() {
                    drop(inner);
                    shared.work.notify_one();
                }
            }
            return Err(FlushNow::Busy);
        }
        Ok(take_batch(&mut inner, Writer::Caller))
    }

    /// Ends a write of a batch [`take`](Self::take) gave: records it as durable, or hands it
    /// to the worker to retry.
    fn finish(
        &mut self,
        taken: Taken,
        took: Duration,
        result: Result<(), StorageError>,
    ) -> FlushNow {
        let shared = &*self.shared;
        match result {
            Ok(()) => {
                written(shared, taken, self.values.len(), took, Writer::Caller);
                FlushNow::Written
            }
            Err(e) => {
                record_error(shared, &e);
                drop(taken);
                let mut inner = shared.lock();
                // The flight keeps the batch reachable for cache misses until the worker
                // writes it or the actualizer discards it.
                inner.flight.hand_over(e.is_retryable());
                caller_done(&mut inner);
                drop(inner);
                // The worker has a batch to retry whether it was waiting or idle.
                shared.work.notify_one();
                FlushNow::Failed
            }
        }
    }
}

impl FlushHandle {
    /// Asks the background worker to write the pending batch now instead of when it is due,
    /// without waiting: for a caller that writes another sequencer's batch itself meanwhile
    /// (two writes in flight at once, which a shared store such as RocksDB may commit with
    /// one fsync).
    pub fn flush_soon(&self) {
        let shared = &*self.shared;
        let mut inner = shared.lock();
        collect_for_caller(shared, &mut inner);
        if inner.pending_next.is_none() || inner.due.is_none() {
            return; // nothing pending, or due already (the worker is on it)
        }
        inner.due = None;
        let wake = inner.worker.wake_for_due();
        drop(inner);
        if wake {
            shared.work.notify_one();
        }
    }
}

/// Collects the writer's staged commits for a caller. When the writer (on another thread)
/// has a transaction open, they stay staged; it was asked to publish them at its commit, and
/// the worker is woken to look again until it can collect them, in case that transaction
/// ends without a commit.
fn collect_for_caller(shared: &Shared, inner: &mut Inner) {
    if shared.collect_staged(inner, false) == Collected::WriterBusy && inner.worker.wake_for_due() {
        shared.work.notify_one();
    }
}

/// A caller's write ended (the flight moved on); true when the worker must be notified: it
/// waits for that write, or it sleeps while a batch is due.
pub(super) fn caller_done(inner: &mut Inner) -> bool {
    let overdue = inner.pending_next.is_some() && inner.due.is_none();
    inner.worker.wake_after_caller(overdue)
}
