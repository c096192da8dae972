//! The journal against a crash between any two of its writes.
//!
//! A process that dies leaves RocksDB a prefix of its writes (the write-ahead log is replayed
//! in order, up to the last complete record). So a crash is modelled as: every journal and
//! checkpoint write before the n-th lands, none from the n-th on, and the process does
//! nothing more (no final checkpoint). For every n up to past the end of a random script of
//! writes, checkpoints and reads on two partitions, the reopened database must hold every
//! acknowledged number (and nothing never attempted), each partition's acknowledged offset,
//! and no journal record.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use super::{CF_JOURNAL, Inner, RocksDbOptions, RocksDbStorage, cf};
use crate::storage::{SeqStorage, SeqValue, StorageError};
use crate::types::{Number, PLogOffset, PartitionId, SeqId, WsId};

/// The simulated crash: armed with the number of writes that land before it.
#[derive(Debug, Default)]
pub(super) struct CrashPoint {
    armed: AtomicBool,
    left: AtomicI64,
    crashed: AtomicBool,
    /// Writes that reached the crash point (landed or not).
    reached: AtomicI64,
}

impl Inner {
    pub(super) fn crash_point(&self) -> Result<(), StorageError> {
        let c = &self.crash;
        c.reached.fetch_add(1, Ordering::SeqCst);
        if c.crashed.load(Ordering::SeqCst)
            || (c.armed.load(Ordering::SeqCst) && c.left.fetch_sub(1, Ordering::SeqCst) <= 0)
        {
            c.crashed.store(true, Ordering::SeqCst);
            return Err(StorageError::retryable("simulated crash"));
        }
        Ok(())
    }

    pub(super) fn crashed(&self) -> bool {
        self.crash.crashed.load(Ordering::SeqCst)
    }
}

/// xorshift64*: a reproducible script per crash point.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

type Key = (u64, u16);

fn journal(on: bool) -> RocksDbOptions {
    RocksDbOptions {
        journal: on,
        ..RocksDbOptions::default()
    }
}

#[derive(Default)]
struct Model {
    acked: HashMap<Key, u64>,
    attempted: HashMap<Key, u64>,
    offsets: [u64; 2],
    acked_offsets: [u64; 2],
}

/// Runs the script until the crash (or its end); returns whether the crash came.
fn script(db: &RocksDbStorage, seed: u64, m: &mut Model) -> bool {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let parts = [db.partition(PartitionId(0)), db.partition(PartitionId(1))];
    for _ in 0..40 {
        match rng.below(6) {
            0..=2 => {
                let p = rng.below(2) as usize;
                let mut values = Vec::new();
                for _ in 0..=rng.below(3) {
                    let key = (rng.below(4) * 2 + p as u64, rng.below(2) as u16);
                    let n = m.attempted.get(&key).copied().unwrap_or(0) + 1 + rng.below(3);
                    m.attempted.insert(key, n);
                    values.push(SeqValue {
                        ws: WsId(key.0),
                        seq: SeqId(key.1),
                        number: Number(n),
                    });
                }
                m.offsets[p] += 1;
                let next = PLogOffset(m.offsets[p] + 1);
                if parts[p].write_values_and_offset(&values, next).is_err() {
                    return true;
                }
                for v in &values {
                    let a = m.acked.entry((v.ws.0, v.seq.0)).or_insert(0);
                    *a = (*a).max(v.number.0);
                }
                m.acked_offsets[p] = next.0;
            }
            3 | 4 => {
                if db.inner.checkpoint(rng.below(2) == 0).is_err() {
                    return true;
                }
            }
            _ => check(db, m, "before the crash"),
        }
    }
    false
}

fn check(db: &RocksDbStorage, m: &Model, when: &str) {
    for (&(ws, seq), &acked) in &m.acked {
        let p = db.partition(PartitionId((ws % 2) as u16));
        let got = p.read_numbers(WsId(ws), &[SeqId(seq)]).unwrap()[0].0;
        let attempted = m.attempted[&(ws, seq)];
        assert!(
            got >= acked && got <= attempted,
            "{when}: ws {ws} seq {seq}: read {got}, acknowledged {acked}, attempted {attempted}"
        );
    }
    for p in 0..2 {
        let next = db.partition(PartitionId(p)).read_next_offset().unwrap().0;
        assert!(
            next >= m.acked_offsets[p as usize],
            "{when}: partition {p}: next offset {next} below {}",
            m.acked_offsets[p as usize]
        );
    }
}

fn journal_records(db: &RocksDbStorage) -> usize {
    let rdb = db.db().unwrap();
    let journal = cf(&rdb, CF_JOURNAL).unwrap();
    rdb.iterator_cf(journal, rocksdb::IteratorMode::Start)
        .count()
}

/// Runs script `seed` with a crash at write `crash_at` (never, if `None`), reopens, checks;
/// returns the writes the script reached.
fn crash_and_reopen(seed: u64, crash_at: Option<i64>) -> i64 {
    let dir = tempfile::tempdir().unwrap();
    let mut m = Model::default();
    let reached = {
        let db = RocksDbStorage::open_inner(dir.path(), journal(true), false).unwrap();
        if let Some(n) = crash_at {
            db.inner.crash.left.store(n, Ordering::SeqCst);
            db.inner.crash.armed.store(true, Ordering::SeqCst);
        }
        let crashed = script(&db, seed, &mut m);
        assert_eq!(
            crashed,
            crash_at.is_some(),
            "seed {seed}, crash at {crash_at:?}"
        );
        // The process dies here: no final checkpoint.
        db.inner.crash.crashed.store(true, Ordering::SeqCst);
        db.inner.crash.reached.load(Ordering::SeqCst)
    };
    // Reopened with and without the journal: recovery does not depend on the option.
    let db =
        RocksDbStorage::open_with(dir.path(), journal(crash_at.unwrap_or(0) % 2 == 0)).unwrap();
    assert_eq!(
        journal_records(&db),
        0,
        "seed {seed}, crash at {crash_at:?}: journal left"
    );
    check(
        &db,
        &m,
        &format!("seed {seed}, after a crash at write {crash_at:?}"),
    );
    reached
}

#[test]
fn a_crash_between_any_two_writes_loses_no_acknowledged_number() {
    for seed in 1..=4 {
        let writes = crash_and_reopen(seed, None);
        assert!(writes >= 20, "seed {seed}: only {writes} writes");
        for crash_at in 0..writes {
            crash_and_reopen(seed, Some(crash_at));
        }
    }
}

#[test]
fn a_graceful_close_checkpoints_everything() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = Model::default();
    {
        let db = RocksDbStorage::open_with(dir.path(), journal(true)).unwrap();
        assert!(!script(&db, 7, &mut m));
        check(&db, &m, "before the close");
    }
    let db = RocksDbStorage::open_with(dir.path(), journal(false)).unwrap();
    assert_eq!(journal_records(&db), 0);
    assert!(!m.acked.is_empty());
    check(&db, &m, "after the close");
}
