//! RocksDbStorage: the storage contract on a real RocksDB in a temp directory, reopen, the
//! PLog, partitions, ownership of the directory, and the sequencer on top.
#![cfg(feature = "rocksdb")]

mod common;

use std::sync::Arc;

use common::*;
use seqd::storage::{
    Durability, RocksDbOptions, RocksDbPartition, RocksDbStorage, SeqStorage, SeqValue,
};
use seqd::{Number, PLogOffset, PartitionId, SeqId, Sequencer, WsId};

fn v(ws: u64, seq: u16, n: u64) -> SeqValue {
    SeqValue {
        ws: WsId(ws),
        seq: SeqId(seq),
        number: Number(n),
    }
}

#[test]
fn fresh_directory_starts_at_offset_one() {
    let dir = tempfile::tempdir().unwrap();
    let db = RocksDbStorage::open(dir.path()).unwrap();
    let p = db.partition(PartitionId(0));
    assert_eq!(p.read_next_offset().unwrap(), PLogOffset(1));
    assert_eq!(
        p.read_numbers(WsId(1), &[SeqId(1), SeqId(2)]).unwrap(),
        vec![Number(0); 2]
    );
    assert_eq!(p.last_plog_offset().unwrap(), None);
    assert_eq!(db.path(), dir.path());
}

#[test]
fn numbers_and_offset_survive_reopen_per_partition() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = RocksDbStorage::open(dir.path()).unwrap();
        let p0 = db.partition(PartitionId(0));
        let p7 = db.partition(PartitionId(7));
        p0.write_values_and_offset(&[v(10, 1, 5), v(10, 2, 6)], PLogOffset(3))
            .unwrap();
        p7.write_values_and_offset(&[v(17, 1, 9)], PLogOffset(42))
            .unwrap();
        p0.write_values_and_offset(&[], PLogOffset(4)).unwrap();
    }
    let db = RocksDbStorage::open(dir.path()).unwrap();
    let (p0, p7) = (db.partition(PartitionId(0)), db.partition(PartitionId(7)));
    assert_eq!(p0.read_next_offset().unwrap(), PLogOffset(4));
    assert_eq!(p7.read_next_offset().unwrap(), PLogOffset(42));
    assert_eq!(
        db.partition(PartitionId(1)).read_next_offset().unwrap(),
        PLogOffset(1)
    );
    assert_eq!(
        p0.read_numbers(WsId(10), &[SeqId(2), SeqId(1), SeqId(3)])
            .unwrap(),
        vec![Number(6), Number(5), Number(0)]
    );
    assert_eq!(
        p7.read_numbers(WsId(17), &[SeqId(1)]).unwrap(),
        vec![Number(9)]
    );
}

#[test]
fn plog_append_replay_and_partition_isolation() {
    let dir = tempfile::tempdir().unwrap();
    let db = RocksDbStorage::open(dir.path()).unwrap();
    let (p1, p2) = (db.partition(PartitionId(1)), db.partition(PartitionId(2)));
    for o in 1..=5 {
        p1.append(PLogOffset(o), &[v(o, 1, o * 10)]).unwrap();
    }
    p2.append(PLogOffset(1), &[v(99, 1, 1), v(99, 2, 2)])
        .unwrap();
    p2.append(PLogOffset(2), &[]).unwrap();
    assert!(
        p1.append(PLogOffset(3), &[]).is_err(),
        "an offset holds one event"
    );
    assert!(p1.append(PLogOffset(0), &[]).is_err());
    let mut seen = vec![];
    p1.replay(PLogOffset(3), &mut |o, vals| {
        seen.push((o.0, vals.to_vec()));
        Ok(())
    })
    .unwrap();
    assert_eq!(
        seen,
        vec![
            (3, vec![v(3, 1, 30)]),
            (4, vec![v(4, 1, 40)]),
            (5, vec![v(5, 1, 50)])
        ]
    );
    let mut seen2 = vec![];
    p2.replay(PLogOffset(1), &mut |o, vals| {
        seen2.push((o.0, vals.len()));
        Ok(())
    })
    .unwrap();
    assert_eq!(seen2, vec![(1, 2), (2, 0)]);
    assert_eq!(p1.last_plog_offset().unwrap(), Some(PLogOffset(5)));
    assert_eq!(p2.last_plog_offset().unwrap(), Some(PLogOffset(2)));
    assert_eq!(
        db.partition(PartitionId(u16::MAX))
            .last_plog_offset()
            .unwrap(),
        None
    );
    // Replay stops at the callback's error.
    let mut n = 0;
    let r = p1.replay(PLogOffset(1), &mut |_, _| {
        n += 1;
        if n == 2 {
            Err(seqd::storage::StorageError::retryable("stop"))
        } else {
            Ok(())
        }
    });
    assert!(r.is_err());
    assert_eq!(n, 2);
}

#[test]
fn a_directory_has_one_owner() {
    let dir = tempfile::tempdir().unwrap();
    let _db = RocksDbStorage::open(dir.path()).unwrap();
    let err = RocksDbStorage::open(dir.path()).unwrap_err();
    assert!(err.message().contains("already in use"), "{err}");
}

#[test]
fn nosync_durability_and_explicit_sync() {
    let dir = tempfile::tempdir().unwrap();
    {
        let opts = RocksDbOptions {
            durability: Durability::NoSync,
            ..RocksDbOptions::default()
        };
        let db = RocksDbStorage::open_with(dir.path(), opts).unwrap();
        db.partition(PartitionId(0))
            .write_values_and_offset(&[v(1, 1, 1)], PLogOffset(2))
            .unwrap();
        db.sync().unwrap();
    }
    let db = RocksDbStorage::open(dir.path()).unwrap();
    assert_eq!(
        db.partition(PartitionId(0)).read_next_offset().unwrap(),
        PLogOffset(2)
    );
}

fn open_seq(p: &RocksDbPartition) -> Sequencer {
    let mut seq = Sequencer::open(p.clone(), options()).unwrap();
    seq.wait_ready(WAIT).unwrap();
    seq
}

fn logged_tx(seq: &mut Sequencer, p: &RocksDbPartition, ws: u64) -> (PLogOffset, Number) {
    let mut tx = start(seq, ws);
    let id = tx.next(ID).unwrap();
    p.append(tx.offset(), &[id_value(ws, id)]).unwrap();
    let offset = tx.offset();
    tx.flush();
    (offset, id)
}

#[test]
fn sequencer_on_rocksdb_resumes_after_close_and_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = RocksDbStorage::open(dir.path()).unwrap();
        let p = db.partition(PartitionId(3));
        let mut seq = open_seq(&p);
        for i in 0..100 {
            logged_tx(&mut seq, &p, i % 10);
        }
        seq.close().unwrap();
        assert_eq!(
            p.read_next_offset().unwrap(),
            PLogOffset(101),
            "close writes everything"
        );
    }
    {
        let db = RocksDbStorage::open(dir.path()).unwrap();
        let p = db.partition(PartitionId(3));
        let faulty = Arc::new(seqd::storage::FaultyStorage::new(p.clone()));
        // Retry (rather than give up) while writes fail, so transactions keep starting.
        let retry = seqd::RetryPolicy {
            max_attempts: u32::MAX,
            ..seqd::RetryPolicy::default()
        };
        let opts = seqd::Options {
            retry,
            close_timeout: std::time::Duration::from_millis(200),
            ..options()
        };
        let mut seq = Sequencer::open(faulty.clone(), opts).unwrap();
        seq.wait_ready(WAIT).unwrap();
        let (offset, id) = logged_tx(&mut seq, &p, 0);
        assert_eq!((offset, id), (PLogOffset(101), Number(200_011)));
        // From here no write of the sequencer lands (as if the process were about to die),
        // while the application keeps logging events to the PLog.
        faulty.limit_to(seqd::storage::FaultOps::WRITES);
        faulty.fail_forever(true, true);
        for ws in 1..=5 {
            logged_tx(&mut seq, &p, ws);
        }
        drop(seq); // bounded, writes nothing
    }
    // The database is closed without the last checkpoints; the PLog has the events.
    let db = RocksDbStorage::open(dir.path()).unwrap();
    let p = db.partition(PartitionId(3));
    assert!(p.read_next_offset().unwrap() <= PLogOffset(102));
    let mut seq = open_seq(&p);
    let (offset, id) = logged_tx(&mut seq, &p, 0);
    assert_eq!(
        offset,
        PLogOffset(107),
        "resumes after the last logged event"
    );
    assert_eq!(id, Number(200_012));
    let (_, id3) = logged_tx(&mut seq, &p, 3);
    assert_eq!(
        id3,
        Number(200_012),
        "ws 3 logged 200_011 before the crash: not reissued"
    );
    seq.close().unwrap();
    assert_eq!(p.read_next_offset().unwrap(), PLogOffset(109));
}

#[test]
fn flusher_writes_while_the_writer_reads_misses_from_the_same_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = RocksDbStorage::open(dir.path()).unwrap();
    let p = db.partition(PartitionId(0));
    let opts = seqd::Options {
        cache_capacity: 16,
        ..options()
    };
    let mut seq = Sequencer::open(Arc::new(p.clone()), opts).unwrap();
    let mut expect = std::collections::HashMap::new();
    let mut last = None;
    for i in 0..20_000u64 {
        // A stride that keeps evicting: most starts miss and read while batches are written.
        let ws = (i * 7919) % 500;
        let mut tx = start(&mut seq, ws);
        let id = tx.next(ID).unwrap();
        let want = expect.get(&ws).map_or(200_001, |n: &u64| n + 1);
        assert_eq!(id.0, want, "ws {ws} at step {i}");
        expect.insert(ws, id.0);
        last = Some(tx.flush());
    }
    seq.wait_durable(last.unwrap(), WAIT).unwrap();
    let st = seq.stats();
    assert!(st.cache_misses > 10_000, "{st:?}");
    assert!(st.flush_batches > 10, "{st:?}");
    seq.close().unwrap();
    for (ws, n) in expect {
        assert_eq!(p.read_numbers(WsId(ws), &[ID]).unwrap()[0], Number(n));
    }
}

#[test]
fn saved_cursors_are_taken_once_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let db = RocksDbStorage::open(dir.path()).unwrap();
    assert!(db.take_cursors().unwrap().is_empty());
    db.save_cursors(&[v(1, 2, 30), v(u64::MAX, 65535, 7)])
        .unwrap();
    drop(db);
    let db = RocksDbStorage::open(dir.path()).unwrap();
    let mut got = db.take_cursors().unwrap();
    got.sort_by_key(|c| c.ws);
    assert_eq!(got, vec![v(1, 2, 30), v(u64::MAX, 65535, 7)]);
    drop(db);
    let db = RocksDbStorage::open(dir.path()).unwrap();
    assert!(
        db.take_cursors().unwrap().is_empty(),
        "taking deletes, durably"
    );
}
