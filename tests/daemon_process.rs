//! The real `seqd serve` binary on RocksDB: graceful restarts (SIGTERM, SIGINT) and `kill -9` under
//! load, in both durability modes. Clients record every acknowledged number; none may be
//! handed out again, and a graceful restart may skip none.
#![cfg(all(feature = "daemon", feature = "rocksdb"))]

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use common::load;
use common::process::Daemon;

const KEYS: [(u64, u16); 4] = [(0, 0), (1, 7), (2, 0), (1_000_003, 65535)];

#[test]
fn graceful_restart_continues_exactly() {
    // SIGINT (Ctrl-C) stops as gracefully as SIGTERM.
    for (mode, signal) in [("lease", "TERM"), ("lease", "INT"), ("sync", "TERM")] {
        let dir = tempfile::tempdir().unwrap();
        let d = Daemon::start(dir.path(), mode, &[]);
        let mut con = d.ready();
        let mut next_expected = HashMap::new();
        for (ws, seq) in KEYS {
            let first: u64 = redis::cmd("NEXT")
                .arg(ws)
                .arg(seq)
                .arg(5)
                .query(&mut con)
                .unwrap();
            next_expected.insert((ws, seq), first + 5);
        }
        drop(con);
        d.stop_with(signal);
        let d = Daemon::start(dir.path(), mode, &[]);
        let mut con = d.ready();
        for (ws, seq) in KEYS {
            let n: u64 = redis::cmd("NEXT").arg(ws).arg(seq).query(&mut con).unwrap();
            assert_eq!(
                n,
                next_expected[&(ws, seq)],
                "{mode}: ({ws},{seq}) after SIG{signal}"
            );
        }
        d.terminate();
    }
}

#[test]
fn kill_9_under_load_never_reissues() {
    for mode in ["sync", "lease"] {
        let dir = tempfile::tempdir().unwrap();
        let mut all = load::Acked::new();
        for cycle in 0..3 {
            let d = Daemon::start(dir.path(), mode, &[]);
            drop(d.ready());
            let stop = Arc::new(AtomicBool::new(false));
            let clients = load::start(&d.addr, &KEYS, 3, &stop);
            std::thread::sleep(Duration::from_millis(300 + 100 * cycle));
            d.kill9();
            for (key, nums) in load::finish(&stop, clients).acked {
                all.entry(key).or_default().extend(nums);
            }
        }
        let d = Daemon::start(dir.path(), mode, &[]);
        let mut con = d.ready();
        let total: usize = all.values().map(Vec::len).sum();
        for (key, max, next) in load::resume(&mut con, &mut all) {
            assert!(
                next > max,
                "{mode}: {key:?} reissued: next {next} <= acknowledged {max}"
            );
        }
        assert!(total > 100, "{mode}: the load ran ({total} numbers)");
        d.terminate();
    }
}

/// `INFO leases` field `name`.
fn info_field(con: &mut redis::Connection, name: &str) -> u64 {
    let info: String = redis::cmd("INFO").arg("leases").query(con).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {info}"))
}

fn next1(con: &mut redis::Connection, ws: u64) -> u64 {
    redis::cmd("NEXT").arg(ws).arg(1).query(con).unwrap()
}

/// Lease mode's resume floor across a kill -9 and a graceful stop: numbers handed out under
/// it are never handed out again, a crash moves where new sequences start up by
/// `--lease-floor`, and a graceful stop skips nothing and keeps that start (sequences never
/// stored may have handed out numbers before the crash).
#[test]
fn the_resume_floor_across_kill_9_and_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let floor = ["--lease-floor", "100"];
    let d = Daemon::start(dir.path(), "lease", &floor);
    let mut con = d.ready();
    assert_eq!(info_field(&mut con, "sequences_start_at"), 1);
    assert_eq!(info_field(&mut con, "resume_floor"), 101);
    let before: Vec<u64> = (0..3).map(|_| next1(&mut con, 10)).collect();
    assert_eq!(before, [1, 2, 3]);
    drop(con);
    d.kill9();

    let d = Daemon::start(dir.path(), "lease", &floor);
    let mut con = d.ready();
    assert_eq!(info_field(&mut con, "sequences_start_at"), 101);
    assert_eq!(info_field(&mut con, "resume_floor"), 201);
    let resumed = next1(&mut con, 10);
    assert!(resumed >= 101, "{resumed}: may repeat {before:?}");
    assert_eq!(
        next1(&mut con, 11),
        101,
        "a new sequence starts at the floor"
    );
    assert_eq!(next1(&mut con, 12), 101);
    drop(con);
    d.stop_with("TERM");

    let d = Daemon::start(dir.path(), "lease", &floor);
    let mut con = d.ready();
    assert_eq!(info_field(&mut con, "sequences_start_at"), 101);
    assert_eq!(next1(&mut con, 12), 102, "a graceful stop skips nothing");
    assert_eq!(next1(&mut con, 10), resumed + 1);
    assert_eq!(next1(&mut con, 13), 101);
    drop(con);
    d.stop_with("TERM");

    // Sync mode honours the floor a lease-mode run left, and writes none of its own.
    let d = Daemon::start(dir.path(), "sync", &[]);
    let mut con = d.ready();
    assert_eq!(info_field(&mut con, "sequences_start_at"), 101);
    assert_eq!(info_field(&mut con, "resume_floor"), 0);
    assert_eq!(next1(&mut con, 14), 101);
    drop(con);
    d.terminate();
}
