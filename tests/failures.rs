//! Storage failures: backpressure, retries, give-up and actualization, bounded close, poison.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use seqd::storage::{
    FaultOps, FaultyStorage, MemoryStorage, ReplayFn, SeqStorage, SeqValue, StorageError,
};
use seqd::{
    BusyReason, Error, ManualClock, Number, Options, PLogOffset, RetryPolicy, SeqId, Sequencer,
    SequencerState, WsId,
};

type Faulty = Arc<FaultyStorage<Arc<MemoryStorage>>>;

fn faulty() -> (Arc<MemoryStorage>, Faulty) {
    let mem = mem();
    let f = Arc::new(FaultyStorage::new(Arc::clone(&mem)));
    (mem, f)
}

/// A retry budget longer than any test: the flusher keeps retrying instead of giving up.
fn retry_forever(base_ms: u64, cap_ms: u64) -> RetryPolicy {
    RetryPolicy {
        base: Duration::from_millis(base_ms),
        cap: Duration::from_millis(cap_ms),
        max_attempts: 1_000_000,
        ..RetryPolicy::default()
    }
}

/// Opens a sequencer, waits for recovery, then makes every write fail (retryably).
fn open_with_writes_down(storage: &Faulty, opts: Options) -> Sequencer {
    let mut seq = Sequencer::open(storage.clone(), opts).unwrap();
    seq.wait_ready(WAIT).unwrap();
    storage.limit_to(FaultOps::WRITES);
    storage.fail_forever(true, true);
    seq
}

#[test]
fn busy_while_over_max_unflushed_then_recovers_when_storage_returns() {
    let (mem, storage) = faulty();
    let opts = Options {
        max_unflushed: 50,
        retry: retry_forever(1, 2),
        ..options()
    };
    let mut seq = open_with_writes_down(&storage, opts);
    let mut committed = 0u64;
    let busy = loop {
        match seq.start(KIND, WsId(committed)) {
            Ok(mut tx) => {
                let n = tx.next(ID).unwrap();
                mem.append(tx.offset(), &[id_value(committed, n)]).unwrap();
                tx.flush();
                committed += 1;
                assert!(committed < 1000, "backpressure never kicked in");
            }
            Err(e) => break e,
        }
    };
    match busy {
        Error::Busy {
            reason: BusyReason::Backpressure { unflushed, limit },
        } => {
            assert_eq!(limit, 50);
            assert!(unflushed >= 50);
        }
        other => panic!("expected backpressure, got {other}"),
    }
    assert!(busy.is_retryable());
    assert_eq!(committed, 50, "I7: exactly max_unflushed values fit");
    assert!(seq.stats().busy_rejections >= 1);
    assert!(is_busy(&seq.start_timeout(
        KIND,
        WsId(0),
        Duration::from_millis(30)
    )));
    storage.fail_forever(false, true);
    let tx = seq
        .start_timeout(KIND, WsId(0), WAIT)
        .expect("storage is back");
    assert_eq!(tx.offset(), PLogOffset(51));
    tx.flush();
    seq.close().unwrap();
    assert_eq!(mem.len(), 50);
}

#[test]
fn busy_while_actualizing_until_storage_comes_back() {
    let (_mem, storage) = faulty();
    storage.limit_to(FaultOps::READS);
    storage.fail_forever(true, true);
    let mut seq = Sequencer::open(storage.clone(), options()).unwrap();
    eventually("recovery fails and retries", || {
        seq.stats().actualize_errors > 0
    });
    match seq.start(KIND, WsId(1)) {
        Err(Error::Busy {
            reason: BusyReason::Actualizing,
        }) => {}
        other => panic!("expected Busy(Actualizing), got {other:?}"),
    }
    assert_eq!(seq.stats().state, SequencerState::Actualizing);
    assert!(seq.stats().actualize_errors > 0, "recovery keeps retrying");
    let last = seq.stats().last_storage_error.unwrap_or_default();
    assert!(last.contains("injected"), "the cause is reported: {last:?}");
    storage.fail_forever(false, true);
    let tx = seq.start_timeout(KIND, WsId(1), WAIT).unwrap();
    assert_eq!(tx.offset(), PLogOffset(1));
    tx.flush();
}

#[test]
fn transient_write_failures_are_retried_with_backoff() {
    let (mem, storage) = faulty();
    let clock = Arc::new(ManualClock::new());
    let opts = Options {
        clock: clock.clone(),
        flush_interval: Duration::ZERO,
        retry: RetryPolicy {
            base: Duration::from_millis(100),
            cap: Duration::from_millis(400),
            max_attempts: 10,
            jitter: 0.0,
            ..RetryPolicy::default()
        },
        ..options()
    };
    let mut seq = Sequencer::open(storage.clone(), opts).unwrap();
    seq.wait_ready(WAIT).unwrap();
    storage.limit_to(FaultOps::WRITES);
    storage.fail_next(5, true);
    let (_, _, _, c) = command(&mut seq, &mem, 1, 1);
    seq.wait_durable(c, WAIT).unwrap();
    let st = seq.stats();
    assert_eq!(
        (st.flush_errors, st.flush_retries, st.flush_give_ups),
        (5, 5, 0),
        "{st:?}"
    );
    let ms: Vec<u128> = clock.pauses().iter().map(|d| d.as_millis()).collect();
    assert_eq!(
        ms,
        vec![100, 200, 400, 400, 400],
        "exponential, capped, no jitter"
    );
    assert_eq!(st.generation, 1, "no actualization was needed");
}

#[test]
fn ambiguous_writes_are_retried_idempotently() {
    let (mem, storage) = faulty();
    let mut seq = Sequencer::open(storage.clone(), options()).unwrap();
    seq.wait_ready(WAIT).unwrap();
    storage.ambiguous_writes(2);
    let (_, id, _, c) = command(&mut seq, &mem, 1, 1);
    seq.wait_durable(c, WAIT).unwrap();
    assert_eq!(mem.number(WsId(1), ID), Some(id));
    let (_, id2, _, _) = command(&mut seq, &mem, 1, 1);
    assert_eq!(id2.0, id.0 + 1);
}

#[test]
fn permanent_flush_failure_gives_up_and_actualizes_from_the_plog() {
    let (mem, storage) = faulty();
    let mut seq = Sequencer::open(storage.clone(), options()).unwrap();
    seq.wait_ready(WAIT).unwrap();
    storage.limit_to(FaultOps::WRITES);
    storage.fail_next(1, false);
    let (_, id, _, c) = command(&mut seq, &mem, 1, 1);
    // The flusher gives up at once on a permanent error; the actualizer replays the event
    // from the PLog and writes it, so the commit still becomes durable.
    seq.wait_durable(c, WAIT).unwrap();
    let st = seq.stats();
    assert_eq!(st.flush_give_ups, 1, "{st:?}");
    assert_eq!(st.generation, 2);
    assert_eq!(mem.number(WsId(1), ID), Some(id));
    let (offset, id2, _, _) = command(&mut seq, &mem, 1, 1);
    assert_eq!((offset, id2), (PLogOffset(2), Number(id.0 + 1)));
}

#[test]
fn flush_permanently_failing_keeps_busy_and_close_is_bounded() {
    let (mem, storage) = faulty();
    let mut seq = Sequencer::open(storage.clone(), options()).unwrap();
    for ws in 0..5 {
        command(&mut seq, &mem, ws, 1);
    }
    storage.limit_to(FaultOps::WRITES);
    storage.fail_forever(true, false);
    command(&mut seq, &mem, 9, 1);
    // Give-up → actualization → its final write fails too → retried until close.
    eventually("actualizing", || {
        seq.stats().state == SequencerState::Actualizing
    });
    assert!(is_busy(&seq.start(KIND, WsId(1))));
    let t0 = Instant::now();
    let r = seq.close();
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "I8: close took {:?}",
        t0.elapsed()
    );
    // Nothing unflushed is left (the actualizer discarded it; the PLog has it), or it says so.
    if let Err(e) = r {
        assert!(matches!(e, Error::Unpersisted { .. }), "{e}");
    }
    // A new process recovers everything from the PLog.
    storage.heal();
    let mut seq = Sequencer::open(storage.clone(), options()).unwrap();
    let (offset, id, _, _) = command(&mut seq, &mem, 9, 1);
    assert_eq!(offset, PLogOffset(7));
    assert_eq!(id, Number(200_002));
}

#[test]
fn close_reports_unpersisted_values_in_bounded_time() {
    let (mem, storage) = faulty();
    let opts = Options {
        close_timeout: Duration::from_millis(300),
        retry: retry_forever(5, 50),
        ..options()
    };
    let mut seq = open_with_writes_down(&storage, opts);
    for ws in 0..3 {
        command(&mut seq, &mem, ws, 1);
    }
    let t0 = Instant::now();
    let err = seq.close().unwrap_err();
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(2), "I8: close took {took:?}");
    match err {
        Error::Unpersisted {
            values,
            from_offset,
        } => {
            assert_eq!(values, 6, "3 workspaces x 2 sequences");
            assert_eq!(from_offset, PLogOffset(1));
        }
        other => panic!("expected Unpersisted, got {other}"),
    }
}

#[test]
fn drop_is_bounded_while_storage_is_slow() {
    let (mem, storage) = faulty();
    let opts = Options {
        close_timeout: Duration::from_millis(100),
        ..options()
    };
    let mut seq = Sequencer::open(storage.clone(), opts).unwrap();
    seq.wait_ready(WAIT).unwrap();
    command(&mut seq, &mem, 1, 1);
    storage.set_latency(Duration::from_secs(2));
    command(&mut seq, &mem, 2, 1);
    let t0 = Instant::now();
    drop(seq);
    assert!(
        t0.elapsed() < Duration::from_millis(1500),
        "I8: drop took {:?}",
        t0.elapsed()
    );
}

/// Storage whose writes panic: stands for a bug in a user's storage implementation.
struct PanickingStorage(MemoryStorage);

impl SeqStorage for PanickingStorage {
    fn read_numbers(&self, ws: WsId, seqs: &[SeqId]) -> Result<Vec<Number>, StorageError> {
        self.0.read_numbers(ws, seqs)
    }
    fn write_values_and_offset(
        &self,
        values: &[SeqValue],
        _: PLogOffset,
    ) -> Result<(), StorageError> {
        if !values.is_empty() {
            panic!("storage bug");
        }
        Ok(())
    }
    fn read_next_offset(&self) -> Result<PLogOffset, StorageError> {
        self.0.read_next_offset()
    }
    fn replay(&self, from: PLogOffset, apply: &mut ReplayFn<'_>) -> Result<(), StorageError> {
        self.0.replay(from, apply)
    }
}

#[test]
fn a_panicking_worker_poisons_the_sequencer() {
    let mut seq = Sequencer::open(PanickingStorage(MemoryStorage::new()), options()).unwrap();
    let mut tx = start(&mut seq, 1);
    tx.next(ID).unwrap();
    let c = tx.flush();
    let r = seq.wait_durable(c, WAIT);
    assert!(
        matches!(r, Err(Error::Poisoned(ref m)) if m.contains("storage bug")),
        "{r:?}"
    );
    assert_eq!(seq.stats().state, SequencerState::Poisoned);
    match seq.start(KIND, WsId(1)) {
        Err(Error::Poisoned(m)) => assert!(m.contains("storage bug")),
        other => panic!("expected Poisoned, got {other:?}"),
    }
    let t0 = Instant::now();
    let _ = seq.close();
    assert!(t0.elapsed() < Duration::from_secs(1));
}

#[test]
fn many_random_flush_and_actualize_cycles() {
    let (mem, storage) = faulty();
    storage.fail_rate(0.05, 7);
    let mut seq = Sequencer::open(storage.clone(), options()).unwrap();
    let mut last = std::collections::HashMap::new();
    let mut rng = 0x1234_5678_u64;
    let mut flushed = 0;
    for i in 0..3000u64 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let ws = rng % 7;
        let Ok(mut tx) = seq.start_timeout(KIND, WsId(ws), WAIT) else {
            continue;
        };
        let id = match tx.next(ID) {
            Ok(id) => id,
            Err(e) => {
                assert!(e.is_retryable(), "{e}");
                tx.actualize();
                continue;
            }
        };
        if (rng >> 8).is_multiple_of(4) {
            tx.actualize();
            continue;
        }
        mem.append(tx.offset(), &[id_value(ws, id)]).unwrap();
        let expected = last.get(&ws).map_or(200_001, |p: &Number| p.0 + 1);
        assert_eq!(id.0, expected, "dense and monotonic on ws {ws} at step {i}");
        last.insert(ws, id);
        tx.flush();
        flushed += 1;
    }
    assert!(flushed > 1000);
    storage.heal();
    let tx = start(&mut seq, 0);
    let offset = tx.offset();
    tx.flush();
    assert_eq!(offset.0, flushed + 1);
    seq.close().unwrap();
    for (ws, n) in last {
        assert_eq!(mem.number(WsId(ws), ID), Some(n));
    }
}

/// A batch the flusher gives up stays readable (the flight's `GivenUp`) until the actualizer,
/// after its handshake with the open transaction, discards it. Were it dropped at once, a
/// transaction already open on an evicted workspace would miss its committed numbers, read the
/// older stored ones and hand out a committed number again.
#[test]
fn regression_give_up_keeps_the_failed_batch_visible_to_the_open_transaction() {
    let (mem, storage) = faulty();
    let opts = Options {
        cache_capacity: 1,
        ..options()
    };
    let mut seq = Sequencer::open(storage.clone(), opts).unwrap();
    let (_, a1, _, c) = command(&mut seq, &mem, 1, 1);
    seq.wait_durable(c, WAIT).unwrap();
    // Writes now take a while and then fail permanently: the flusher gives up at once.
    storage.limit_to(FaultOps::WRITES);
    storage.set_latency(Duration::from_millis(300));
    storage.fail_forever(true, false);
    let (_, a2, _, _) = command(&mut seq, &mem, 1, 1); // in the doomed batch
    assert_eq!(a2.0, a1.0 + 1);
    command(&mut seq, &mem, 2, 1); // evicts workspace 1
    let watcher = seq.watcher();
    let mut tx = start(&mut seq, 1); // open before the give-up
    // The give-up marks the sequencer Actualizing; the actualizer then waits for `tx`.
    eventually("the flusher gives up", || {
        watcher.state() == SequencerState::Actualizing
    });
    let a3 = tx.next(ID).unwrap();
    assert_eq!(
        a3.0,
        a2.0 + 1,
        "I2: {a2} was committed and must not be handed out again"
    );
    tx.actualize();
    storage.heal();
    let mut tx = start(&mut seq, 1);
    assert_eq!(tx.next(ID).unwrap().0, a2.0 + 1);
    tx.flush();
}
