//! Recovery: drop unflushed state, then rebuild from the checkpoint and the PLog tail.
//!
//! Runs on the sequencer's background worker, at open and whenever the writer calls
//! `actualize` (or drops a transaction) or the flusher gives up on a batch. While it runs,
//! `start` answers `Busy`. Steps:
//!
//! 1. Wait until the writer has no transaction open, so an event the application is about to
//!    flush is in the PLog before replay reads it.
//! 2. Discard: staged, pending and in-flight values go; the generation is bumped so the writer drops
//!    its cache and takes the new offset at its next `start`.
//! 3. Read the checkpoint offset and replay the PLog from it, merging numbers by `max`. Every
//!    `max_unflushed` distinct values the replay pauses, writes what it merged together with
//!    the offset it reached (never lowering a stored number), and resumes there, so memory is
//!    bounded and a failed replay restarts from the last written point.
//! 4. Write the rest with the offset after the last event, and open for business.
//!
//! Storage errors are retried with backoff without limit; `close` interrupts it.

use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;

use crate::options::Backoff;
use crate::sequencer::state::{Counters, Shared, Status, ValueMap};
use crate::storage::{SeqValue, StorageError};
use crate::types::{Number, PLogOffset, SeqId, WsId};

/// The actualizer stopped because `close` was called.
#[derive(Debug)]
pub(crate) struct Stopped;

enum ReplayError {
    Stopped,
    Storage(StorageError),
}

impl From<StorageError> for ReplayError {
    fn from(e: StorageError) -> Self {
        ReplayError::Storage(e)
    }
}

/// How often the actualizer re-checks for the writer's open transaction.
const TX_POLL: Duration = Duration::from_millis(1);

pub(crate) fn run(shared: &Shared, backoff: &mut Backoff) -> Result<(), Stopped> {
    let ended = loop {
        wait_for_writer(shared)?;
        let mut inner = shared.lock();
        // Transactions wait for this run even when it was queued behind another one, whose
        // end set the status back to Ready.
        shared.begin_actualizing();
        // The writer's staged commits go with the rest. It has no transaction open, but may
        // be in a handshake that is about to fail: then look again.
        match shared.staging.claim(&shared.tx_open, &inner) {
            Some(mut staged) => staged.discard(),
            None => continue,
        }
        inner.actualize_requested = false;
        inner.pending.clear();
        inner.pending_next = None;
        inner.due = None;
        inner.flight.discard();
        shared.recompute_unflushed(&inner);
        break shared
            .generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    };
    Counters::add(&shared.counters.actualizations, 1);
    backoff.reset();
    let base = loop {
        match replay(shared) {
            Ok(base) => break base,
            Err(ReplayError::Stopped) => return Err(Stopped),
            Err(ReplayError::Storage(e)) => {
                // Reported through stats; retried until it works or `close`.
                Counters::add(&shared.counters.actualize_errors, 1);
                shared
                    .storage_failing
                    .store(true, std::sync::atomic::Ordering::Release);
                shared.lock().last_error = Some(e.to_string());
                if stopping(shared) {
                    return Err(Stopped);
                }
                shared.pause(backoff.next_delay());
            }
        }
    };
    let mut inner = shared.lock();
    inner.base_offset = base;
    shared.set_durable(&mut inner, base);
    // After a failed write, the flusher writes the checkpoint again (nothing else) as a probe,
    // retrying as any write: `Stats::storage_failing` stays set until a write succeeds, even
    // when nobody commits meanwhile.
    if shared
        .storage_failing
        .load(std::sync::atomic::Ordering::Acquire)
    {
        inner.pending_next.get_or_insert(base);
    }
    Shared::push_discard(&mut inner, ended, base);
    // Another actualization asked for meanwhile runs next; until it is done, none start.
    if shared.status() == Status::Actualizing && !inner.actualize_requested {
        shared.set_status(Status::Ready);
    }
    drop(inner);
    shared.notify_progress();
    Ok(())
}

fn stopping(shared: &Shared) -> bool {
    shared.lock().stop.is_some()
}

/// Step 1: the writer's open transaction, if any, ends (flush, actualize or drop) soon.
fn wait_for_writer(shared: &Shared) -> Result<(), Stopped> {
    while shared.tx_open.load(std::sync::atomic::Ordering::SeqCst) {
        let inner = shared.lock();
        if inner.stop.is_some() {
            return Err(Stopped);
        }
        let _ = shared.work.wait_timeout(inner, TX_POLL);
    }
    Ok(())
}

/// Steps 3 and 4; returns the offset the writer resumes at.
fn replay(shared: &Shared) -> Result<PLogOffset, ReplayError> {
    let storage = &shared.storage;
    let limit = shared.options.max_unflushed;
    let checkpoint = storage.read_next_offset()?;
    let mut next = checkpoint;
    let mut merged = ValueMap::default();
    loop {
        let (mut paused, mut stopped, mut out_of_order) = (false, false, None);
        let from = next;
        let result = storage.replay(from, &mut |offset, values| {
            if offset < next || offset.0 == 0 {
                out_of_order = Some(offset);
                return Err(StorageError::permanent("out of order"));
            }
            if stopping(shared) {
                stopped = true;
                return Err(StorageError::permanent("stopped"));
            }
            for v in values {
                let n = merged.entry((v.ws, v.seq)).or_insert(0);
                *n = (*n).max(v.number.0);
            }
            next = PLogOffset(offset.0.saturating_add(1));
            Counters::add(&shared.counters.replayed_events, 1);
            if merged.len() >= limit {
                paused = true;
                return Err(StorageError::retryable("paused"));
            }
            Ok(())
        });
        if stopped {
            return Err(ReplayError::Stopped);
        }
        if let Some(o) = out_of_order {
            return Err(ReplayError::Storage(StorageError::permanent(format!(
                "PLog replay from offset {from} returned event {o} out of order"
            ))));
        }
        if paused {
            write_merged(shared, &mut merged, next)?;
            continue;
        }
        result?;
        break;
    }
    if next != checkpoint || !merged.is_empty() {
        write_merged(shared, &mut merged, next)?;
    }
    Ok(next)
}

/// Writes replayed numbers with the offset reached, keeping stored numbers that are higher:
/// a replayed event can carry a lower number than the checkpoint already has, and writing it
/// would move the sequence backwards.
fn write_merged(
    shared: &Shared,
    merged: &mut ValueMap,
    next: PLogOffset,
) -> Result<(), StorageError> {
    let mut by_ws: FxHashMap<WsId, Vec<(SeqId, u64)>> = FxHashMap::default();
    for (&(ws, seq), &n) in merged.iter() {
        by_ws.entry(ws).or_default().push((seq, n));
    }
    let mut values = Vec::with_capacity(merged.len());
    let mut seqs = Vec::new();
    for (ws, list) in by_ws {
        seqs.clear();
        seqs.extend(list.iter().map(|(s, _)| *s));
        let stored = shared.storage.read_numbers(ws, &seqs)?;
        for ((seq, n), old) in list.into_iter().zip(stored) {
            if n > old.0 {
                values.push(SeqValue {
                    ws,
                    seq,
                    number: Number(n),
                });
            }
        }
    }
    let t0 = Instant::now();
    shared.storage.write_values_and_offset(&values, next)?;
    shared.counters.record_write(values.len(), t0.elapsed());
    merged.clear();
    Ok(())
}
