//! `FlushHandle`: writing the pending batch on the caller's thread instead of waiting for the
//! worker's `flush_interval`, and how that coexists with the worker.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use seqd::storage::{FaultOps, FaultyStorage, MemoryStorage, SeqStorage};
use seqd::{FlushNow, Sequencer, WsId};

type Faulty = Arc<FaultyStorage<Arc<MemoryStorage>>>;

/// The worker would wait this long before writing: far longer than any test waits.
const NEVER: Duration = Duration::from_secs(10);

fn open(storage: &Faulty, flush_interval: Duration) -> Sequencer {
    let mut seq = Sequencer::open(storage.clone(), caller_options(flush_interval)).unwrap();
    seq.wait_ready(WAIT).unwrap();
    seq
}

fn faulty() -> (Arc<MemoryStorage>, Faulty) {
    let mem = mem();
    let f = Arc::new(FaultyStorage::new(Arc::clone(&mem)));
    (mem, f)
}

/// Commits one transaction taking `ID` in workspace `ws`; returns the number.
fn commit(seq: &mut Sequencer, ws: u64) -> (seqd::Committed, u64) {
    let mut tx = start(seq, ws);
    let n = tx.next(ID).unwrap();
    (tx.flush(), n.0)
}

/// Makes writes take `latency` and starts a caller's write of what is pending on another
/// thread; returns once that write is in flight (it took the batch, leaving nothing pending).
fn slow_write_in_flight(
    seq: &Sequencer,
    storage: &Faulty,
    latency: Duration,
) -> std::thread::JoinHandle<FlushNow> {
    storage.limit_to(FaultOps::WRITES);
    storage.set_latency(latency);
    let calls = storage.calls();
    let mut handle = seq.flush_handle();
    let writer = std::thread::spawn(move || handle.flush_now());
    eventually("the caller's write to start", || storage.calls() > calls);
    writer
}

#[test]
fn writes_at_once_what_the_worker_would_write_later() {
    let (mem, storage) = faulty();
    let mut seq = open(&storage, NEVER);
    let mut handle = seq.flush_handle();
    assert_eq!(handle.flush_now(), FlushNow::Nothing);
    let (c1, n1) = commit(&mut seq, 1);
    let (c2, n2) = commit(&mut seq, 2);
    assert!(
        seq.flushed_offset() < c1.offset(),
        "the worker must still be waiting"
    );
    assert_eq!(handle.flush_now(), FlushNow::Written);
    // Durable when flush_now returns: no waiting.
    assert!(seq.flushed_offset() >= c2.offset());
    let stored = mem.read_numbers(WsId(1), &[ID]).unwrap();
    assert_eq!(stored, vec![seqd::Number(n1)]);
    let stored = mem.read_numbers(WsId(2), &[ID]).unwrap();
    assert_eq!(stored, vec![seqd::Number(n2)]);
    assert_eq!(handle.flush_now(), FlushNow::Nothing);
    let stats = seq.stats();
    assert_eq!(
        stats.flush_batches, 1,
        "one write for both commits: {stats:?}"
    );
}

#[test]
fn while_a_write_is_in_flight_the_next_batch_follows_it_at_once() {
    let (_mem, storage) = faulty();
    let mut seq = open(&storage, NEVER);
    commit(&mut seq, 1);
    let writer = slow_write_in_flight(&seq, &storage, Duration::from_millis(300));
    let mut probe = seq.flush_handle();
    let (c2, _) = commit(&mut seq, 2);
    let t0 = Instant::now();
    assert_eq!(probe.flush_now(), FlushNow::Busy);
    assert_eq!(writer.join().unwrap(), FlushNow::Written);
    // Marked due by the Busy answer: the worker writes it right after, not after NEVER.
    seq.wait_durable(c2, Duration::from_secs(5)).unwrap();
    assert!(t0.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_failed_write_is_retried_by_the_worker() {
    let (mem, storage) = faulty();
    let mut seq = open(&storage, NEVER);
    let (c, n) = commit(&mut seq, 3);
    storage.limit_to(FaultOps::WRITES);
    storage.fail_forever(true, true);
    let mut handle = seq.flush_handle();
    assert_eq!(handle.flush_now(), FlushNow::Failed);
    // The batch is the worker's now: nothing is left pending, and a later commit waits
    // for the worker's write.
    assert_eq!(handle.flush_now(), FlushNow::Nothing);
    let (c2, n2) = commit(&mut seq, 4);
    assert_eq!(handle.flush_now(), FlushNow::Busy);
    eventually("the worker to retry", || seq.stats().flush_retries > 0);
    assert!(seq.flushed_offset() < c.offset());
    storage.heal();
    seq.wait_durable(c, Duration::from_secs(5)).unwrap();
    seq.wait_durable(c2, Duration::from_secs(5)).unwrap();
    let stored = mem.read_numbers(WsId(3), &[ID]).unwrap();
    assert_eq!(stored, vec![seqd::Number(n)]);
    let stored = mem.read_numbers(WsId(4), &[ID]).unwrap();
    assert_eq!(stored, vec![seqd::Number(n2)]);
    let stats = seq.stats();
    assert!(
        stats.flush_errors >= 1 && stats.flush_retries >= 1,
        "{stats:?}"
    );
    // A later number continues above the one the failed write carried.
    let (_, next) = commit(&mut seq, 3);
    assert!(next > n);
}

#[test]
fn close_waits_for_a_callers_write() {
    let (mem, storage) = faulty();
    let mut seq = open(&storage, NEVER);
    let (_, n) = commit(&mut seq, 4);
    let writer = slow_write_in_flight(&seq, &storage, Duration::from_millis(200));
    seq.close().unwrap();
    assert_eq!(writer.join().unwrap(), FlushNow::Written);
    let stored = mem.read_numbers(WsId(4), &[ID]).unwrap();
    assert_eq!(stored, vec![seqd::Number(n)]);
}

#[test]
fn nothing_is_written_while_recovering_or_after_close() {
    let (_mem, storage) = faulty();
    let mut seq = open(&storage, NEVER);
    let mut handle = seq.flush_handle();
    commit(&mut seq, 5);
    seq.actualize();
    // While the actualizer runs, nothing; once it is done the commit was discarded.
    assert_ne!(handle.flush_now(), FlushNow::Written);
    seq.wait_ready(WAIT).unwrap();
    assert_eq!(handle.flush_now(), FlushNow::Nothing);
    commit(&mut seq, 5);
    seq.close().unwrap();
    assert_eq!(handle.flush_now(), FlushNow::Nothing);
}

#[test]
fn flush_soon_has_the_worker_write_at_once() {
    let (mem, storage) = faulty();
    let mut seq = open(&storage, NEVER);
    let handle = seq.flush_handle();
    handle.flush_soon(); // nothing pending: nothing to do
    let (c, n) = commit(&mut seq, 6);
    let t0 = Instant::now();
    handle.flush_soon();
    // Written by the worker, long before NEVER.
    seq.wait_durable(c, Duration::from_secs(5)).unwrap();
    assert!(t0.elapsed() < Duration::from_secs(5));
    let stored = mem.read_numbers(WsId(6), &[ID]).unwrap();
    assert_eq!(stored, vec![seqd::Number(n)]);
    assert_eq!(seq.stats().flush_batches, 1);
}
