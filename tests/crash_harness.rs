//! W7, the crash harness: the real `seqd serve` on RocksDB under pipelined load from several
//! connections (many workspaces and sequences, `NEXT` with counts) is killed with SIGKILL at
//! a random moment and restarted on the same data directory, over and over, in `sync` and in
//! `lease` mode. The clients record every acknowledged number; at the end no number may have
//! been acknowledged twice, and a `NEXT` after the last restart must be above every one.
//!
//! Reported per mode: cycles, numbers acknowledged, numbers reissued (must be 0), numbers
//! skipped (never acknowledged below the last acknowledged one, plus the gap up to the next
//! number after the last restart) with the largest gap, the most one crash skipped of one
//! sequence, and recovery time (spawn to `/readyz` 200).
//!
//! What one crash may skip of a sequence (checked after every restart, with `PEEK`): the
//! numbers of requests that were being answered and never acknowledged — at most
//! [`IN_FLIGHT`] — and, in `lease` mode, the unused rest of its reservation, at most one
//! window ([`MAX_WINDOW`], `design/daemon.md`).
//!
//! CI runs 20 cycles per mode. The long run (figures in BENCHMARKS.md):
//!
//! ```text
//! SEQD_CRASH_CYCLES=1000 cargo test --release --test crash_harness -- --nocapture
//! ```
//!
//! `SEQD_CRASH_SEED` picks the random kill moments and keys (printed at the start).
#![cfg(all(feature = "daemon", feature = "rocksdb"))]

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::process::Daemon;
use seqd::daemon::MAX_WINDOW;

/// Workspaces and sequences the clients spread over (workspaces land on both partitions).
const WORKSPACES: u64 = 64;
const SEQS: u64 = 3;
const CLIENTS: u64 = 4;
const PIPELINE: u64 = 8;
/// Most numbers a `NEXT` of the load takes.
const MAX_COUNT: u64 = 4;
/// Most numbers of one sequence in requests sent and not yet answered: every client's whole
/// pipeline on that sequence.
const IN_FLIGHT: u64 = CLIENTS * PIPELINE * MAX_COUNT;

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
            let count = 1 + rng.below(MAX_COUNT);
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
    /// The most numbers of one sequence a single crash skipped.
    largest_crash_gap: u64,
    recovery: Vec<Duration>,
}

/// One past the highest number acknowledged of `ranges`.
fn end_of(ranges: &[(u64, u64)]) -> u64 {
    ranges
        .iter()
        .map(|&(first, count)| first + count)
        .max()
        .unwrap_or(0)
}

/// After a restart: for every sequence acknowledged so far, what the crash skipped — from
/// one past everything acknowledged (or, if more, where the last restart resumed) to where
/// this one resumes. Returns the most, and asserts nothing acknowledged comes again.
fn crash_gaps(
    mode: &str,
    con: &mut redis::Connection,
    all: &Acked,
    resumed: &mut HashMap<Key, u64>,
) -> u64 {
    let keys: Vec<Key> = all.keys().copied().collect();
    if keys.is_empty() {
        return 0;
    }
    let mut pipe = redis::pipe();
    for key in &keys {
        pipe.cmd("PEEK").arg(key.0).arg(key.1);
    }
    let next: Vec<u64> = pipe.query(con).expect("PEEK after a restart");
    let mut largest = 0;
    for (key, next) in keys.into_iter().zip(next) {
        let acked_end = end_of(&all[&key]);
        assert!(
            next >= acked_end,
            "{mode}: {key:?} would hand out {next} again"
        );
        let from = acked_end.max(resumed.get(&key).copied().unwrap_or(0));
        largest = largest.max(next.saturating_sub(from));
        resumed.insert(key, next);
    }
    largest
}

fn run_mode(mode: &str, cycles: u64, seed: u64) -> Report {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(seed ^ mode.len() as u64);
    let mut all = Acked::new();
    let mut report = Report::default();
    let mut resumed = HashMap::new();
    for _ in 0..cycles {
        let d = Daemon::start(dir.path(), mode, &[]);
        report.recovery.push(d.wait_ready());
        let gap = crash_gaps(mode, &mut d.redis(), &all, &mut resumed);
        report.largest_crash_gap = report.largest_crash_gap.max(gap);
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
    let gap = crash_gaps(mode, &mut con, &all, &mut resumed);
    report.largest_crash_gap = report.largest_crash_gap.max(gap);
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
        "| mode | cycles | acknowledged | reissued | skipped | largest gap | largest crash gap | recovery p50 | recovery max |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut failures = Vec::new();
    for mode in ["sync", "lease"] {
        let mut r = run_mode(mode, cycles, seed);
        r.recovery.sort_unstable();
        println!(
            "| {mode} | {} | {} | {} | {} | {} | {} | {:.0} ms | {:.0} ms |",
            r.cycles,
            r.acknowledged,
            r.reissued,
            r.skipped,
            r.largest_gap,
            r.largest_crash_gap,
            percentile(&r.recovery, 0.5).as_secs_f64() * 1e3,
            percentile(&r.recovery, 1.0).as_secs_f64() * 1e3,
        );
        if r.reissued != 0 {
            failures.push(format!("{mode}: {} numbers reissued", r.reissued));
        }
        // SPEC §3: a crash skips at most one window per sequence (lease), nothing acknowledged
        // (sync); plus what was being answered.
        let bound = IN_FLIGHT + if mode == "lease" { MAX_WINDOW } else { 0 };
        if r.largest_crash_gap > bound {
            failures.push(format!(
                "{mode}: a crash skipped {} numbers of one sequence (at most {bound})",
                r.largest_crash_gap
            ));
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

/// One client of the version load: pipelines of `VERSION COMMIT domain` until the
/// connection dies or `stop`; every acknowledged (domain, last, version, epoch).
fn version_client(addr: String, seed: u64, stop: Arc<AtomicBool>) -> Vec<(u64, Commit)> {
    let mut acked = Vec::new();
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
            let domain = rng.below(VERSION_DOMAINS);
            pipe.cmd("VERSION").arg("COMMIT").arg(domain);
            sent.push(domain);
        }
        let Ok(replies) = pipe.query::<Vec<redis::Value>>(&mut con) else {
            break;
        };
        for (reply, domain) in replies.into_iter().zip(sent) {
            if let Ok(c) = redis::from_redis_value::<Commit>(reply) {
                acked.push((domain, c));
            }
        }
    }
    acked
}

/// Domains the version load spreads over.
const VERSION_DOMAINS: u64 = 3;

/// `(last_commit_version, commit_version, epoch)`.
type Commit = (u64, u64, u64);

/// The crash harness for the version authority (SPEC §6, W9): `VERSION COMMIT` under
/// pipelined load, kill -9 at random moments, restart on the same directory. No commit
/// version may be acknowledged twice in a domain; every epoch is larger than the one before;
/// the first commit of each epoch chains at or above everything acknowledged before it.
/// Reported: versions per second across the whole run, restarts included.
#[test]
fn kill_9_under_version_load_reissues_nothing() {
    let cycles = env_or("SEQD_CRASH_CYCLES", 20);
    let seed = env_or("SEQD_CRASH_SEED", 0x5EED_C0DE);
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(seed ^ 0xF00D);
    let mut all: Vec<(u64, Commit)> = Vec::new();
    let started = std::time::Instant::now();
    let mut last_epoch = 0;
    for _ in 0..=cycles {
        let d = Daemon::start(dir.path(), "lease", &[]);
        d.wait_ready();
        // The first commit of this epoch, per domain, chains above everything acknowledged.
        let mut con = d.redis();
        for domain in 0..VERSION_DOMAINS {
            let c: Commit = redis::cmd("VERSION")
                .arg("COMMIT")
                .arg(domain)
                .query(&mut con)
                .unwrap();
            let acked = all
                .iter()
                .filter(|(d, _)| *d == domain)
                .map(|(_, c)| c.1)
                .max()
                .unwrap_or(0);
            assert!(c.0 >= acked, "domain {domain}: {c:?} chains below {acked}");
            assert!(c.2 > last_epoch, "epoch {} after {last_epoch}", c.2);
            all.push((domain, c));
        }
        last_epoch = all.last().map_or(0, |(_, c)| c.2);
        let stop = Arc::new(AtomicBool::new(false));
        let clients: Vec<_> = (0..CLIENTS)
            .map(|_| {
                let (addr, stop, s) = (d.addr.clone(), stop.clone(), rng.next());
                std::thread::spawn(move || version_client(addr, s, stop))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(20 + rng.below(230)));
        d.kill9();
        stop.store(true, Ordering::Relaxed);
        for c in clients {
            all.extend(c.join().expect("client thread"));
        }
    }
    let elapsed = started.elapsed();
    let mut reissued = 0;
    for domain in 0..VERSION_DOMAINS {
        let mut versions: Vec<u64> = all
            .iter()
            .filter(|(d, _)| *d == domain)
            .map(|(_, c)| c.1)
            .collect();
        let n = versions.len();
        versions.sort_unstable();
        versions.dedup();
        reissued += n - versions.len();
    }
    println!(
        "versions through {cycles} kill -9: {} acknowledged, {} reissued, {:.0} versions/s \
         over {:.1} s (restarts included)",
        all.len(),
        reissued,
        all.len() as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    assert_eq!(reissued, 0, "commit versions acknowledged twice");
    assert!(
        all.len() as u64 > cycles * VERSION_DOMAINS,
        "the load did not run"
    );
}
