//! `FlushHandle::flush_together`: several partitions' pending batches written on the caller's
//! thread with one fsync when their storages share a log (the partitions of one RocksDB
//! database), and what happens to each batch when one of the writes fails.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use seqd::storage::{FaultyStorage, SeqStorage};
use seqd::{FlushHandle, FlushNow, Number, Sequencer, WsId};

/// The worker would wait this long before writing: far longer than any test waits.
const NEVER: Duration = Duration::from_secs(10);

fn open<S: SeqStorage + 'static>(storage: Arc<FaultyStorage<S>>) -> Sequencer {
    let mut seq = Sequencer::open(storage, caller_options(NEVER)).unwrap();
    seq.wait_ready(WAIT).unwrap();
    seq
}

/// Commits one transaction taking `ID` in workspace `ws`; returns the number.
fn commit(seq: &mut Sequencer, ws: u64) -> (seqd::Committed, u64) {
    let mut tx = start(seq, ws);
    let n = tx.next(ID).unwrap();
    (tx.flush(), n.0)
}

fn together(a: &Sequencer, b: &Sequencer) -> Vec<FlushNow> {
    let (mut ha, mut hb) = (a.flush_handle(), b.flush_handle());
    FlushHandle::flush_together(&mut [&mut ha, &mut hb])
}

#[test]
fn storages_that_share_no_log_are_written_one_after_another() {
    let (ma, mb) = (mem(), mem());
    assert_eq!(ma.shared_log(), None);
    let mut a = open(Arc::new(FaultyStorage::new(Arc::clone(&ma))));
    let mut b = open(Arc::new(FaultyStorage::new(Arc::clone(&mb))));
    assert_eq!(together(&a, &b), [FlushNow::Nothing, FlushNow::Nothing]);
    let (ca, na) = commit(&mut a, 1);
    let (cb, nb) = commit(&mut b, 2);
    assert_eq!(together(&a, &b), [FlushNow::Written, FlushNow::Written]);
    assert!(a.flushed_offset() >= ca.offset() && b.flushed_offset() >= cb.offset());
    assert_eq!(ma.read_numbers(WsId(1), &[ID]).unwrap(), [Number(na)]);
    assert_eq!(mb.read_numbers(WsId(2), &[ID]).unwrap(), [Number(nb)]);
    commit(&mut b, 2);
    assert_eq!(together(&a, &b), [FlushNow::Nothing, FlushNow::Written]);
}

#[cfg(feature = "rocksdb")]
mod rocksdb {
    use super::*;
    use seqd::PartitionId;
    use seqd::storage::{FaultOps, RocksDbPartition, RocksDbStorage};

    type Part = Arc<FaultyStorage<RocksDbPartition>>;

    fn two(db: &RocksDbStorage) -> (Part, Part) {
        let part = |p| Arc::new(FaultyStorage::new(db.partition(PartitionId(p))));
        (part(0), part(1))
    }

    /// What a fresh instance of the database in `dir` holds for `ws`.
    fn stored_after_reopen(dir: &std::path::Path, ws: u64) -> Number {
        let db = RocksDbStorage::open(dir).unwrap();
        db.partition(PartitionId(0))
            .read_numbers(WsId(ws), &[ID])
            .unwrap()[0]
    }

    #[test]
    fn partitions_of_one_database_are_written_in_one_group() {
        let dir = tempfile::tempdir().unwrap();
        let (na, nb) = {
            let db = RocksDbStorage::open(dir.path()).unwrap();
            let (pa, pb) = two(&db);
            assert!(pa.shared_log().is_some());
            assert_eq!(pa.shared_log(), pb.shared_log());
            let other = RocksDbStorage::open(dir.path().join("other")).unwrap();
            assert_ne!(
                other.partition(PartitionId(0)).shared_log(),
                pa.shared_log()
            );
            let (mut a, mut b) = (open(Arc::clone(&pa)), open(Arc::clone(&pb)));
            let (ca, na) = commit(&mut a, 10);
            let (cb, nb) = commit(&mut b, 11);
            let calls = (pa.calls(), pb.calls());
            assert_eq!(together(&a, &b), [FlushNow::Written, FlushNow::Written]);
            // Durable when flush_together returns, one storage call each.
            assert!(a.flushed_offset() >= ca.offset() && b.flushed_offset() >= cb.offset());
            assert_eq!((pa.calls(), pb.calls()), (calls.0 + 1, calls.1 + 1));
            assert_eq!(a.stats().flush_batches, 1);
            assert_eq!(b.stats().flush_batches, 1);
            a.close().unwrap();
            b.close().unwrap();
            (na, nb)
        };
        assert_eq!(stored_after_reopen(dir.path(), 10), Number(na));
        assert_eq!(stored_after_reopen(dir.path(), 11), Number(nb));
    }

    #[test]
    fn a_failed_deferred_write_goes_to_its_worker_and_the_rest_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let db = RocksDbStorage::open(dir.path()).unwrap();
        let (pa, pb) = two(&db);
        let (mut a, mut b) = (open(Arc::clone(&pa)), open(Arc::clone(&pb)));
        let (ca, na) = commit(&mut a, 20);
        let (cb, nb) = commit(&mut b, 21);
        // `a` comes first in the group, so its write is the deferred one.
        pa.limit_to(FaultOps::WRITES);
        pa.fail_next(1, true);
        assert_eq!(together(&a, &b), [FlushNow::Failed, FlushNow::Written]);
        assert!(b.flushed_offset() >= cb.offset());
        // The worker retries `a`'s batch at once, not after NEVER.
        a.wait_durable(ca, Duration::from_secs(5)).unwrap();
        assert!(a.stats().flush_retries >= 1, "{:?}", a.stats());
        let read = |ws| db.partition(PartitionId(0)).read_numbers(WsId(ws), &[ID]);
        assert_eq!(read(20).unwrap(), [Number(na)]);
        assert_eq!(read(21).unwrap(), [Number(nb)]);
    }

    #[test]
    fn when_the_durable_write_fails_every_batch_of_the_group_is_retried() {
        let dir = tempfile::tempdir().unwrap();
        let (na, nb, later) = {
            let db = RocksDbStorage::open(dir.path()).unwrap();
            let (pa, pb) = two(&db);
            let (mut a, mut b) = (open(Arc::clone(&pa)), open(Arc::clone(&pb)));
            let (ca, na) = commit(&mut a, 30);
            let (cb, nb) = commit(&mut b, 31);
            // `b` is last: its write was to make `a`'s deferred one durable too.
            pb.limit_to(FaultOps::WRITES);
            pb.fail_next(1, true);
            assert_eq!(together(&a, &b), [FlushNow::Failed, FlushNow::Failed]);
            a.wait_durable(ca, Duration::from_secs(5)).unwrap();
            b.wait_durable(cb, Duration::from_secs(5)).unwrap();
            assert!(a.stats().flush_retries >= 1, "{:?}", a.stats());
            assert!(b.stats().flush_retries >= 1, "{:?}", b.stats());
            // Numbers continue above the ones the failed group carried.
            let (_, later) = commit(&mut a, 30);
            assert!(later > na);
            a.close().unwrap();
            b.close().unwrap();
            (na, nb, later)
        };
        assert_eq!(stored_after_reopen(dir.path(), 30), Number(later));
        assert_eq!(stored_after_reopen(dir.path(), 31), Number(nb));
        assert!(later > na);
    }

    #[test]
    fn a_partition_with_a_write_in_flight_is_left_to_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = RocksDbStorage::open(dir.path()).unwrap();
        let (pa, pb) = two(&db);
        let (mut a, mut b) = (open(Arc::clone(&pa)), open(Arc::clone(&pb)));
        commit(&mut a, 40);
        // A slow write of `a`'s batch in flight on another thread.
        pa.limit_to(FaultOps::WRITES);
        pa.set_latency(Duration::from_millis(300));
        let calls = pa.calls();
        let mut writer = a.flush_handle();
        let slow = std::thread::spawn(move || writer.flush_now());
        eventually("the slow write to start", || pa.calls() > calls);
        let (ca, _) = commit(&mut a, 41);
        let (cb, _) = commit(&mut b, 42);
        assert_eq!(together(&a, &b), [FlushNow::Busy, FlushNow::Written]);
        assert!(b.flushed_offset() >= cb.offset());
        assert_eq!(slow.join().unwrap(), FlushNow::Written);
        // Marked due by the Busy answer: `a`'s worker writes it right after.
        a.wait_durable(ca, Duration::from_secs(5)).unwrap();
    }

    /// The daemon in sync mode on RocksDB with four partitions: a pipelined read touching all
    /// of them is written as one group by the connection thread; every reply is stored when
    /// it arrives, and the numbers are what a fresh instance of the database reads.
    #[test]
    #[cfg(feature = "daemon")]
    fn the_daemon_writes_a_read_spanning_partitions_as_one_group() {
        use common::daemon::{TestServer, config};
        use seqd::daemon::DurabilityMode;

        let dir = tempfile::tempdir().unwrap();
        let mut acked = Vec::new();
        {
            let db = RocksDbStorage::open(dir.path()).unwrap();
            let cfg = seqd::daemon::Config {
                partitions: Some(4),
                ..config(DurabilityMode::Sync)
            };
            let server = TestServer::start(cfg, Arc::new(db.clone()));
            let mut con = server.redis();
            for round in 0..20u64 {
                let mut pipe = redis::pipe();
                for ws in 0..8u64 {
                    pipe.cmd("NEXT").arg(ws).arg(1).arg(round + 1);
                }
                let firsts: Vec<u64> = pipe.query(&mut con).unwrap();
                for (ws, first) in firsts.into_iter().enumerate() {
                    let last = first + round;
                    // Acknowledged, so already durable.
                    let p = db.partition(PartitionId(ws as u16 % 4));
                    let stored = p.read_numbers(WsId(ws as u64), &[seqd::SeqId(1)]).unwrap();
                    assert!(
                        stored[0].0 >= last,
                        "ws {ws}: {last} acknowledged, not stored"
                    );
                    acked.push((ws as u64, last));
                }
            }
            let status = server.status();
            for part in status["partitions"].as_array().unwrap() {
                assert_eq!(part["flush_errors"], 0, "{status:#}");
                assert_eq!(
                    part["numbers_issued"],
                    2 * (1..=20).sum::<u64>(),
                    "{status:#}"
                );
            }
            server.stop().unwrap();
        }
        let db = RocksDbStorage::open(dir.path()).unwrap();
        for (ws, last) in acked.iter().rev().take(8) {
            let p = db.partition(PartitionId(0));
            let stored = p.read_numbers(WsId(*ws), &[seqd::SeqId(1)]).unwrap();
            assert_eq!(stored[0].0, *last, "ws {ws}");
        }
    }
}
