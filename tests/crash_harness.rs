//! W7, the crash harness: the real `seqd serve` on RocksDB under pipelined load from several
//! connections (many workspaces and sequences, `NEXT` with counts) is killed with SIGKILL at
//! a random moment and restarted on the same data directory, over and over, in `sync` and in
//! `lease` mode. The clients record every acknowledged number; at the end no number may have
//! been acknowledged twice, and a `NEXT` after the last restart must be above every one.
//!
//! Reported per mode: cycles, numbers acknowledged, numbers reissued (must be 0), numbers
//! skipped (never acknowledged below the last acknowledged one, plus the gap up to the next
//! number after the last restart) with the largest gap, and recovery time (spawn to
//! `/readyz` 200).
//!
//! CI runs 20 cycles per mode. The long run (figures in BENCHMARKS.md):
//!
//! ```text
//! SEQD_CRASH_CYCLES=1000 cargo test --release --test crash_harness -- --nocapture
//! ```
//!
//! `SEQD_CRASH_SEED` picks the random kill moments and keys (printed at the start).
#![cfg(feature = "rocksdb")]

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::process::Daemon;

/// Workspaces and sequences the clients spread over (workspaces land on both partitions).
const WORKSPACES: u64 = 64;
const SEQS: u64 = 3;
const CLIENTS: u64 = 4;
const PIPELINE: u64 = 8;

type Key = (u64, u16);
/// Acknowledged ranges per key: (first, count).
type Acked = HashMap<Key, Vec<(u64, u64)>>;

/// xorshift64*: reproducible from the printed seed, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One client: pipelines of `NEXT ws seq count` until the connection dies or `stop`.
fn client(addr: String, seed: u64, stop: Arc<AtomicBool>) -> Acked {
    let mut acked = Acked::new();
    let mut rng = Rng(seed | 1);
    let Ok(mut con) =
        redis::Client::open(format!("redis://{addr}/")).and_then(|c| c.get_connection())
    else {
        return acked;
    };
    while !stop.load(Ordering::Relaxed) {
        let mut pipe = redis::pipe();
        let mut sent = Vec::with_capacity(PIPELINE as usize);
        for _ in 0..PIPELINE {
            let key = (rng.below(WORKSPACES), rng.below(SEQS) as u16);
            let count = 1 + rng.below(4);
            pipe.cmd("NEXT").arg(key.0).arg(key.1).arg(count);
            sent.push((key, count));
        }
        let Ok(replies) = pipe.query::<Vec<redis::Value>>(&mut con) else {
            break; // killed: these were never acknowledged
        };
        for (reply, (key, count)) in replies.into_iter().zip(sent) {
            // -BUSY replies (recovering) acknowledge nothing.
            if let redis::Value::Int(first) = reply {
                acked.entry(key).or_default().push((first as u64, count));
            }
        }
    }
    acked
}

#[derive(Debug, Default)]
struct Report {
    cycles: u64,
    acknowledged: u64,
    reissued: u64,
    skipped: u64,
    largest_gap: u64,
    recovery: Vec<Duration>,
}

fn run_mode(mode: &str, cycles: u64, seed: u64) -> Report {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(seed ^ mode.len() as u64);
    let mut all = Acked::new();
    let mut report = Report::default();
    for _ in 0..cycles {
        let d = Daemon::start(dir.path(), mode, &[]);
        report.recovery.push(d.wait_ready());
        let stop = Arc::new(AtomicBool::new(false));
        let clients: Vec<_> = (0..CLIENTS)
            .map(|_| {
                let (addr, stop, s) = (d.addr.clone(), stop.clone(), rng.next());
                std::thread::spawn(move || client(addr, s, stop))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(20 + rng.below(230)));
        d.kill9();
        stop.store(true, Ordering::Relaxed);
        for c in clients {
            for (key, ranges) in c.join().expect("client thread") {
                all.entry(key).or_default().extend(ranges);
            }
        }
        report.cycles += 1;
    }
    // After the last crash: every key must continue above all it acknowledged.
    let d = Daemon::start(dir.path(), mode, &[]);
    report.recovery.push(d.wait_ready());
    let mut con = d.redis();
    for (key, ranges) in &mut all {
        ranges.sort_unstable();
        let mut end = 0u64; // one past the highest number acknowledged so far
        for &(first, count) in ranges.iter() {
            report.acknowledged += count;
            if first < end {
                report.reissued += (end - first).min(count);
            } else if end > 0 {
                report.skipped += first - end;
                report.largest_gap = report.largest_gap.max(first - end);
            }
            end = end.max(first + count);
        }
        let next: u64 = redis::cmd("PEEK")
            .arg(key.0)
            .arg(key.1)
            .query(&mut con)
            .unwrap();
        assert!(
            next >= end,
            "{mode}: {key:?} would hand out {next} again (acknowledged up to {})",
            end - 1
        );
        report.skipped += next - end;
        report.largest_gap = report.largest_gap.max(next - end);
    }
    drop(con);
    d.terminate();
    report
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

#[test]
fn kill_9_at_random_moments_reissues_nothing() {
    let cycles = env_or("SEQD_CRASH_CYCLES", 20);
    let seed = env_or("SEQD_CRASH_SEED", 0x5EED_C0DE);
    println!("crash harness: {cycles} cycles per mode, SEQD_CRASH_SEED={seed}");
    println!(
        "| mode | cycles | acknowledged | reissued | skipped | largest gap | recovery p50 | recovery max |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let mut failures = Vec::new();
    for mode in ["sync", "lease"] {
        let mut r = run_mode(mode, cycles, seed);
        r.recovery.sort_unstable();
        println!(
            "| {mode} | {} | {} | {} | {} | {} | {:.0} ms | {:.0} ms |",
            r.cycles,
            r.acknowledged,
            r.reissued,
            r.skipped,
            r.largest_gap,
            percentile(&r.recovery, 0.5).as_secs_f64() * 1e3,
            percentile(&r.recovery, 1.0).as_secs_f64() * 1e3,
        );
        if r.reissued != 0 {
            failures.push(format!("{mode}: {} numbers reissued", r.reissued));
        }
        if r.acknowledged < cycles {
            failures.push(format!(
                "{mode}: the load did not run ({} acknowledged)",
                r.acknowledged
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:?}");
}
