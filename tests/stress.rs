//! Concurrency stress: the writer commits as fast as it can over many workspaces with a small
//! cache, while the flusher races it on storage that fails at a seeded rate, stalls, and goes
//! down completely for stretches (toggled by a "weather" thread), and a watcher thread waits
//! for durability of commits, and a caller thread writes batches itself (`FlushHandle`),
//! taking the writer's staged commits between its transactions. Every number must be exactly
//! the model's (dense per workspace and sequence, never reissued), and at the end storage must
//! hold exactly the model.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use common::*;
use seqd::storage::{FaultOps, FaultyStorage};
use seqd::{Error, FlushNow, Number, Options, Sequencer, WsId};

#[test]
fn writer_flusher_and_watcher_race_under_faults() {
    let mem = mem();
    let storage = Arc::new(FaultyStorage::new(Arc::clone(&mem)));
    storage.fail_rate(0.05, 99);
    let opts = Options {
        cache_capacity: 8,
        max_unflushed: 200,
        flush_interval: Duration::ZERO,
        ..options()
    };
    let mut seq = Sequencer::open(Arc::clone(&storage), opts).unwrap();
    let watcher = seq.watcher();

    let stop = Arc::new(AtomicBool::new(false));
    let weather = {
        let (storage, stop) = (Arc::clone(&storage), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut round = 0u64;
            while !stop.load(Ordering::Relaxed) {
                round += 1;
                match round % 4 {
                    0 => {
                        storage.limit_to(FaultOps::WRITES);
                        storage.fail_forever(true, true);
                    }
                    1 => storage.set_latency(Duration::from_millis(2)),
                    _ => {
                        storage.heal();
                        storage.fail_rate(0.05, round);
                    }
                }
                std::thread::sleep(Duration::from_millis(15));
            }
            storage.heal();
        })
    };
    let caller = {
        let (mut handle, stop) = (seq.flush_handle(), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut written = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if handle.flush_now() == FlushNow::Written {
                    written += 1;
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            written
        })
    };
    let (tx_commits, rx_commits) = mpsc::sync_channel::<seqd::Committed>(1024);
    let checker = std::thread::spawn(move || {
        let (mut durable, mut discarded) = (0u64, 0u64);
        for c in rx_commits {
            match watcher.wait_durable(c, Duration::from_secs(20)) {
                Ok(()) => durable += 1,
                // Not expected (every commit is in the PLog) but counted, not hidden.
                Err(Error::Discarded { .. }) => discarded += 1,
                Err(e) => panic!("wait_durable: {e}"),
            }
        }
        (durable, discarded)
    });

    let mut model: HashMap<u64, u64> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(3);
    let (mut commits, mut busy, mut read_errors, mut i) = (0u64, 0u64, 0u64, 0u64);
    while Instant::now() < deadline {
        i += 1;
        let ws = (i * 2_654_435_761) % 64;
        let mut tx = match seq.start_timeout(KIND, WsId(ws), Duration::from_millis(5)) {
            Ok(tx) => tx,
            Err(Error::Busy { .. }) => {
                busy += 1;
                continue;
            }
            Err(e) => panic!("start: {e}"),
        };
        let id = match tx.next(ID) {
            Ok(id) => id,
            Err(e) => {
                assert!(e.is_retryable(), "{e}");
                read_errors += 1;
                tx.actualize();
                continue;
            }
        };
        let want = model.get(&ws).map_or(200_001, |n| n + 1);
        assert_eq!(id.0, want, "ws {ws} after {commits} commits");
        mem.append(tx.offset(), &[id_value(ws, id)]).unwrap();
        model.insert(ws, id.0);
        let c = tx.flush();
        commits += 1;
        if commits % 64 == 0 {
            tx_commits.send(c).unwrap();
        }
    }
    stop.store(true, Ordering::Relaxed);
    weather.join().unwrap();
    let caller_writes = caller.join().unwrap();
    assert!(caller_writes > 0, "the caller thread wrote no batch");
    drop(tx_commits);
    let (durable, discarded) = checker.join().unwrap();
    assert_eq!(discarded, 0, "a logged commit was reported discarded");
    assert!(durable >= 1);
    assert!(
        commits > 1000,
        "only {commits} commits (busy {busy}, read errors {read_errors})"
    );

    storage.heal();
    let tx = seq.start_timeout(KIND, WsId(0), WAIT).unwrap();
    let c = tx.flush();
    seq.wait_durable(c, WAIT).unwrap();
    let st = seq.stats();
    assert!(
        st.flush_errors > 0 && st.actualizations > 1,
        "faults were exercised: {st:?}"
    );
    seq.close().unwrap();
    for (ws, n) in model {
        assert_eq!(mem.number(WsId(ws), ID), Some(Number(n)), "ws {ws}");
    }
}
