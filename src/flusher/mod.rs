//! The background worker of one sequencer: the flusher loop, which hands over to the
//! actualizer when asked to or when a batch cannot be written.
//!
//! The writer commits into `Inner::pending`; the worker takes everything pending at once
//! (swapping in an empty map), writes it with one `write_values_and_offset`, and meanwhile
//! new commits pile up into the next batch: group commit, so batches grow exactly as fast as
//! storage is slow. Failed writes are retried with jittered exponential backoff; when the
//! retry budget is spent, or the error is permanent, the batch is given up and the partition
//! is actualized. The worker never holds the lock across a storage call.
//!
//! A batch may also be written by the embedder on its own thread ([`FlushHandle`], in
//! `caller.rs`). Who holds the batch in flight, and who waits for whom, are the two state
//! types of `sequencer/flight.rs`: one write in flight at a time, and the worker retries a batch a
//! caller failed to write.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::actualizer;
use crate::options::Backoff;
use crate::sequencer::state::{Collected, Counters, Inner, Shared, Status, ValueMap};
use crate::storage::{SeqValue, StorageError};
use crate::types::Number;

mod caller;

use crate::sequencer::flight::{Taken, WorkerWait, Writer};
use caller::caller_done;
pub use caller::{FlushHandle, FlushNow};

/// How often the worker looks for staged commits while the writer has a transaction open
/// (the writer publishes at its commit, which wakes the worker sooner).
const STAGED_POLL: Duration = Duration::from_millis(1);

/// What the worker does next.
enum Job {
    Actualize,
    /// Write a batch; `Some(retryable)` when a caller's write of it already failed
    /// ([`FlushHandle`] hands such a batch over).
    Flush(Taken, Option<bool>),
    Exit,
}

/// Starts the worker thread. It runs until `Inner::stop` is set and it has written what it
/// could, and it always marks `Inner::worker_done` on the way out, panics included.
pub(crate) fn spawn(shared: Arc<Shared>, name: String) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name(name).spawn(move || {
        let outcome = catch_unwind(AssertUnwindSafe(|| run(&shared)));
        let mut inner = shared.lock();
        if let Err(panic) = outcome {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            inner.poison = Some(msg);
            shared.set_status(Status::Poisoned);
        }
        if inner.lost.is_none() {
            inner.lost = shared.unpersisted(&inner);
        }
        inner.worker_done = true;
        drop(inner);
        shared.notify_progress();
    })
}

fn run(shared: &Shared) {
    let mut backoff = Backoff::new(&shared.options.retry);
    let mut values: Vec<SeqValue> = Vec::new();
    loop {
        match next_job(shared) {
            Job::Exit => return,
            Job::Actualize => {
                if actualizer::run(shared, &mut backoff).is_err() {
                    return; // stopped
                }
            }
            Job::Flush(taken, failed) => {
                if !flush(shared, &mut backoff, &mut values, taken, failed) {
                    return; // stopped with what it could not write recorded
                }
            }
        }
    }
}

/// Blocks until there is something to do.
fn next_job(shared: &Shared) -> Job {
    let mut inner = shared.lock();
    loop {
        if inner.flight.caller_writing() {
            // A caller is writing a batch ([`FlushHandle`]); it wakes the worker when done.
            inner.worker = WorkerWait::ForCaller;
            inner = shared.work.wait(inner).unwrap_or_else(|e| e.into_inner());
            inner.worker = WorkerWait::Running;
            continue;
        }
        if inner.actualize_requested && inner.stop.is_none() {
            return Job::Actualize;
        }
        if inner.flight.handed_over()
            && let Some((taken, retryable)) = inner.flight.resume()
        {
            return Job::Flush(taken, Some(retryable));
        }
        let staged = shared.collect_staged(&mut inner, true);
        let ready = shared.status() == Status::Ready || shared.status() == Status::Closing;
        if inner.pending_next.is_some() && ready && !inner.actualize_requested {
            // Let the batch grow until it is due (`flush_interval` after its first commit).
            let now = shared.options.clock.now();
            if let Some(due) = inner.due.filter(|&due| due > now && inner.stop.is_none()) {
                inner.worker = WorkerWait::Lingering;
                drop(inner);
                shared.pause(due - now);
                inner = shared.lock();
                inner.worker = WorkerWait::Running;
                continue;
            }
            return Job::Flush(take_batch(&mut inner, Writer::Worker), None);
        }
        if staged == Collected::WriterBusy {
            // The writer, asked to publish at its commit, has a transaction open: it may end
            // without one (a dropped or peeking transaction), so look again soon.
            if inner.stop.is_some_and(|d| Instant::now() >= d) {
                return Job::Exit;
            }
            inner.worker = WorkerWait::Idle;
            inner = shared
                .work
                .wait_timeout(inner, STAGED_POLL)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            inner.worker = WorkerWait::Running;
            continue;
        }
        if inner.stop.is_some() {
            return Job::Exit;
        }
        // Nothing anywhere; the writer was asked to publish its next commit, which wakes us.
        inner.worker = WorkerWait::Idle;
        inner = shared.work.wait(inner).unwrap_or_else(|e| e.into_inner());
        inner.worker = WorkerWait::Running;
    }
}

/// `by` takes everything pending as the batch to write (it stays reachable in the flight
/// until written, so a cache miss still finds its numbers).
fn take_batch(inner: &mut Inner, by: Writer) -> Taken {
    let next = inner.pending_next.take().unwrap_or(inner.durable_next);
    inner.due = None;
    let spare = std::mem::take(&mut inner.spare);
    let batch = std::mem::replace(&mut inner.pending, spare);
    inner.flight.take(batch, next, by)
}

/// The batch's values in key order. An ordered store (RocksDB's skiplist memtable) then
/// inserts each key next to the previous one instead of searching from the top; with batches
/// of thousands of keys this cut RocksDB's write time per key about threefold (W4,
/// BENCHMARKS.md).
fn sorted_values(values: &mut Vec<SeqValue>, batch: &ValueMap) {
    values.clear();
    values.extend(batch.iter().map(|(&(ws, seq), &n)| SeqValue {
        ws,
        seq,
        number: Number(n),
    }));
    values.sort_unstable_by_key(|v| (v.ws, v.seq));
}

/// A batch is durable: record it, end the flight (recycling the batch's map as the next
/// `spare`), move the checkpoint and wake everyone waiting for progress — and the worker, if
/// it waits for this caller's write.
fn written(shared: &Shared, taken: Taken, keys: usize, took: Duration, by: Writer) {
    shared.counters.record_write(keys, took);
    shared.storage_failing.store(false, Ordering::Release);
    let next = taken.next;
    drop(taken); // the flight's reference is then the last one
    let mut inner = shared.lock();
    if let Some(mut map) = inner.flight.written(by) {
        map.clear();
        if inner.spare.capacity() < map.capacity() {
            inner.spare = map;
        }
    }
    shared.set_durable(&mut inner, next);
    shared.recompute_unflushed(&inner);
    let wake = by == Writer::Caller && caller_done(&mut inner);
    drop(inner);
    if wake {
        shared.work.notify_one();
    }
    shared.notify_progress();
}

/// A storage call failed: count it and remember it for `Stats`.
fn record_error(shared: &Shared, e: &StorageError) {
    Counters::add(&shared.counters.flush_errors, 1);
    shared.storage_failing.store(true, Ordering::Release);
    shared.lock().last_error = Some(e.to_string());
}

/// Writes one batch, retrying; `failed` says a caller's attempt at it already failed (and
/// whether that error was retryable). Returns false if the worker must exit (stopped).
fn flush(
    shared: &Shared,
    backoff: &mut Backoff,
    values: &mut Vec<SeqValue>,
    taken: Taken,
    mut failed: Option<bool>,
) -> bool {
    sorted_values(values, &taken.batch);
    let counters = &shared.counters;
    backoff.reset();
    loop {
        if let Some(retryable) = failed.take() {
            let stop = shared.stop_deadline();
            let past_deadline = stop.is_some_and(|d| Instant::now() >= d);
            let budget_left = backoff.attempts() + 1 < shared.options.retry.max_attempts;
            let abandon = shared.lock().actualize_requested;
            let retry = retryable && budget_left && !past_deadline && !abandon;
            if !retry {
                return give_up(shared, taken, stop.is_some());
            }
            Counters::add(&counters.flush_retries, 1);
            let mut delay = backoff.next_delay();
            if let Some(d) = stop {
                delay = delay.min(d.saturating_duration_since(Instant::now()));
            }
            shared.pause(delay);
        }
        let t0 = Instant::now();
        let result = shared.storage.write_values_and_offset(values, taken.next);
        let took = t0.elapsed();
        match result {
            Ok(()) => {
                written(shared, taken, values.len(), took, Writer::Worker);
                return true;
            }
            Err(e) => {
                record_error(shared, &e);
                failed = Some(e.is_retryable());
            }
        }
    }
}

/// The batch could not be written. Stopping: record the loss and exit. Otherwise hand the
/// partition to the actualizer, which drops unflushed state and rebuilds it from storage and
/// the PLog.
///
/// The failed batch stays in the flight (`GivenUp`) until the actualizer discards it: a
/// transaction that is open right now may still miss the cache and must find those numbers
/// there, or it would hand out a committed number again. The actualizer discards only once no
/// transaction is open.
fn give_up(shared: &Shared, taken: Taken, stopping: bool) -> bool {
    drop(taken);
    let mut inner = shared.lock();
    inner.flight.give_up();
    if stopping {
        inner.lost = shared.unpersisted(&inner);
        return false;
    }
    Counters::add(&shared.counters.flush_give_ups, 1);
    inner.actualize_requested = true;
    shared.begin_actualizing();
    drop(inner);
    shared.notify_progress();
    true
}
