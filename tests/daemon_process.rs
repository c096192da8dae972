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
