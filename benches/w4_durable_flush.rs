//! W4 durable flush: distinct keys persisted per second through the sequencer's flusher into
//! `RocksDbStorage` with fsync on every write, at batch sizes 1, 100 and 10,000 (the writer
//! commits a batch's worth of transactions on distinct workspaces, then waits until the last
//! is durable), and the fsync latency of one small write on the same disk, to show how close
//! the flusher gets to the device. `SEQD_W4_KEYS` sets the key count (default 1,000,000; the
//! batch-size-1 run uses 1/100 of it, since it is fsync-bound). Each batch size runs twice:
//! one key per transaction (one sequence of a new workspace), and two (the W1 transaction
//! shape, `next(5)` and `next(4)`: both sequences of a new workspace, one storage read).
//!
//! New workspaces normally arrive in increasing ID order, and the storage answers reads above
//! the highest workspace it ever wrote without touching RocksDB (`storage/rocksdb/fresh.rs`).
//! The batch-10,000 runs are repeated with workspaces in *decreasing* order, where every
//! read of a new workspace goes to RocksDB, to show what that shortcut is worth.
//!
//! `SEQD_W4_JOURNAL=0` writes every key directly instead of through the journal
//! (`RocksDbOptions::journal`, on by default), for an A/B of the two write paths.

mod common;

use std::time::{Duration, Instant};

use seqd::storage::{RocksDbOptions, RocksDbStorage, SeqStorage, SeqValue};
use seqd::{Number, Options, PLogOffset, PartitionId, SeqId, Sequencer, WsId};

fn main() {
    // criterion passes `--bench`; this harness takes no arguments.
    let keys: u64 = std::env::var("SEQD_W4_KEYS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let options = RocksDbOptions {
        journal: std::env::var("SEQD_W4_JOURNAL").as_deref() != Ok("0"),
        ..RocksDbOptions::default()
    };
    println!("w4: journal {}", if options.journal { "on" } else { "off" });
    let db = RocksDbStorage::open_with(dir.path().join("w4"), options).expect("open");

    // Device baseline: one small fsynced write at a time, in its own database on the same
    // disk (its high workspace IDs would otherwise switch the shortcut above off).
    let baseline = RocksDbStorage::open(dir.path().join("baseline")).expect("open");
    let p = baseline.partition(PartitionId(9));
    let n = 2000u64;
    let t0 = Instant::now();
    for i in 0..n {
        let v = [SeqValue {
            ws: WsId(u64::MAX - i),
            seq: SeqId(0),
            number: Number(1),
        }];
        p.write_values_and_offset(&v, PLogOffset(i + 2))
            .expect("write");
    }
    let fsync = t0.elapsed() / n as u32;
    println!(
        "w4: fsync'd write of 1 key: {fsync:?} mean over {n} writes ({:.0} writes/s)",
        1.0 / fsync.as_secs_f64()
    );

    drop(p);
    drop(baseline);

    let ascending = [1u64, 2]
        .into_iter()
        .flat_map(|k| [1u64, 100, 10_000].map(|b| (b, k, true)));
    let descending = [(10_000, 1, false), (10_000, 2, false)];
    // `SEQD_W4_ONLY=10000` runs only that batch size (for profiling).
    let only: Option<u64> = std::env::var("SEQD_W4_ONLY")
        .ok()
        .and_then(|s| s.parse().ok());
    for (i, (batch, keys_per_tx, up)) in ascending.chain(descending).enumerate() {
        if only.is_some_and(|b| b != batch) {
            continue;
        }
        let total = if batch == 1 { keys / 100 } else { keys };
        let p = db.partition(PartitionId(i as u16));
        let options = Options {
            flush_interval: Duration::ZERO,
            max_unflushed: 1_000_000,
            cache_capacity: 100_000,
            ..common::options()
        };
        let mut seq = Sequencer::open(p, options).expect("sequencer");
        seq.wait_ready(Duration::from_secs(10)).expect("ready");
        // Each run has its own workspaces: ascending runs count up from `i << 40`, above
        // every earlier run; descending runs count down from `i << 36`, below all of them.
        let id = |n: u64| {
            if up {
                ((i as u64) << 40) + n
            } else {
                ((i as u64) << 36) - n - 1
            }
        };
        let t0 = Instant::now();
        let mut persisted = 0u64;
        let mut ws = 0u64;
        while persisted < total {
            let mut last = None;
            let mut in_batch = 0;
            while in_batch < batch {
                let mut tx = seq
                    .start_timeout(common::KIND, WsId(id(ws)), Duration::from_secs(60))
                    .expect("start");
                tx.next(SeqId(5)).expect("next");
                if keys_per_tx == 2 {
                    tx.next(SeqId(4)).expect("next");
                }
                last = Some(tx.flush());
                ws += 1;
                in_batch += keys_per_tx;
                persisted += keys_per_tx;
            }
            if let Some(c) = last {
                seq.wait_durable(c, Duration::from_secs(60))
                    .expect("durable");
            }
        }
        let took = t0.elapsed();
        let st = seq.stats();
        let order = if up { "ascending " } else { "descending" };
        println!(
            "w4: batch {batch:>6}, {keys_per_tx} key(s)/tx, {order}: {persisted:>8} distinct keys in {took:>10.3?} = \
             {:>10.0} keys/s persisted ({} writes, mean write {:?}, largest batch {})",
            persisted as f64 / took.as_secs_f64(),
            st.flush_batches,
            st.mean_flush_latency,
            st.largest_batch
        );
        seq.close().expect("close");
    }
}
