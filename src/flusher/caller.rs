//! Writing the pending batch on the caller's thread: [`FlushHandle`].
//!
//! The background worker starts a write `flush_interval` after the first commit of a batch.
//! An embedder that knows better when a batch is complete can write it itself, at once, on
//! its own thread. The daemon's connection threads do so in sync mode when they have
//! answered every request they read and are about to sleep, as Redis writes its AOF before
//! it sleeps: the batch then holds everything those reads committed, and the replies go out
//! from the thread that wrote it, with no hand-over to the worker and back (on these machines
//! each cross-thread wake-up cost about 100 µs, a third of an fsync).
//!
//! Only one write is in flight at a time: the handle writes only when neither the worker nor
//! another handle is writing, and the worker waits while a handle writes. A failed write is
//! handed over to the worker, which retries it (with backoff, and the actualizer after its
//! retry budget) exactly as if it had failed there.

use std::sync::Arc;
use std::time::Instant;

use super::{record_error, sorted_values, take_batch, written};
use crate::sequencer::state::{Inner, Shared, Status};
use crate::storage::SeqValue;

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
        let shared = &*self.shared;
        let mut inner = shared.lock();
        if inner.pending_next.is_none() {
            return FlushNow::Nothing;
        }
        let writing = inner.inflight.is_some() || inner.caller_writing;
        if writing
            || shared.status() != Status::Ready
            || inner.actualize_requested
            || inner.stop.is_some()
        {
            if writing {
                // Due now: the worker writes it as soon as the write in flight ends.
                inner.due = None;
                if inner.worker_lingering {
                    drop(inner);
                    shared.work.notify_one();
                }
            }
            return FlushNow::Busy;
        }
        let (batch, next) = take_batch(&mut inner);
        inner.caller_writing = true;
        drop(inner);
        sorted_values(&mut self.values, &batch);
        let t0 = Instant::now();
        let result = shared.storage.write_values_and_offset(&self.values, next);
        let took = t0.elapsed();
        match result {
            Ok(()) => {
                written(shared, batch, self.values.len(), took, next, true);
                FlushNow::Written
            }
            Err(e) => {
                record_error(shared, &e);
                let mut inner = shared.lock();
                // `inflight` keeps the batch reachable for cache misses until the worker
                // writes it or the actualizer discards it.
                inner.handed_over = Some((batch, next, e.is_retryable()));
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
        if inner.pending_next.is_none() || inner.due.is_none() {
            return; // nothing pending, or due already (the worker is on it)
        }
        inner.due = None;
        let wake = shared.wake_worker(&mut inner) || inner.worker_lingering;
        drop(inner);
        if wake {
            shared.work.notify_one();
        }
    }
}

/// Ends a caller's write; true when the worker waits for that and must be notified.
pub(super) fn caller_done(inner: &mut Inner) -> bool {
    inner.caller_writing = false;
    let overdue = inner.pending_next.is_some() && inner.due.is_none();
    let wake =
        inner.worker_waits_for_caller || ((inner.worker_idle || inner.worker_lingering) && overdue);
    if wake {
        inner.worker_idle = false;
    }
    wake
}
