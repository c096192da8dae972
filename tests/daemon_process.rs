//! The real `seqd serve` binary on RocksDB: graceful restarts (SIGTERM) and `kill -9` under
//! load, in both durability modes. Clients record every acknowledged number; none may be
//! handed out again, and a graceful restart may skip none.
#![cfg(feature = "rocksdb")]

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::process::Daemon;

const KEYS: [(u64, u16); 4] = [(0, 0), (1, 7), (2, 0), (1_000_003, 65535)];

#[test]
fn graceful_restart_continues_exactly() {
    for mode in ["lease", "sync"] {
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
        d.terminate();
        let d = Daemon::start(dir.path(), mode, &[]);
        let mut con = d.ready();
        for (ws, seq) in KEYS {
            let n: u64 = redis::cmd("NEXT").arg(ws).arg(seq).query(&mut con).unwrap();
            assert_eq!(
                n,
                next_expected[&(ws, seq)],
                "{mode}: ({ws},{seq}) after SIGTERM"
            );
        }
        d.terminate();
    }
}

/// Clients pipelining NEXT until the connection dies; every acknowledged number per key.
type Acked = HashMap<(u64, u16), Vec<u64>>;

fn load(addr: &str, stop: Arc<AtomicBool>) -> Vec<std::thread::JoinHandle<Acked>> {
    (0..3)
        .map(|c| {
            let url = format!("redis://{addr}/");
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut acked = Acked::new();
                let Ok(mut con) = redis::Client::open(url).and_then(|c| c.get_connection()) else {
                    return acked;
                };
                let mut i = c as u64;
                while !stop.load(Ordering::Relaxed) {
                    let mut pipe = redis::pipe();
                    let mut keys = Vec::new();
                    for j in 0..16u64 {
                        let (ws, seq) = KEYS[((i + j) % 4) as usize];
                        let count = 1 + (i + j) % 3;
                        pipe.cmd("NEXT").arg(ws).arg(seq).arg(count);
                        keys.push(((ws, seq), count));
                    }
                    i += 1;
                    match pipe.query::<Vec<redis::Value>>(&mut con) {
                        Ok(replies) => {
                            for (v, (key, count)) in replies.into_iter().zip(keys) {
                                if let redis::Value::Int(first) = v {
                                    let first = first as u64;
                                    acked.entry(key).or_default().extend(first..first + count);
                                }
                            }
                        }
                        Err(_) => break,
                    }
                }
                acked
            })
        })
        .collect()
}

#[test]
fn kill_9_under_load_never_reissues() {
    for mode in ["sync", "lease"] {
        let dir = tempfile::tempdir().unwrap();
        let mut all = Acked::new();
        for cycle in 0..3 {
            let d = Daemon::start(dir.path(), mode, &[]);
            drop(d.ready());
            let stop = Arc::new(AtomicBool::new(false));
            let clients = load(&d.addr, stop.clone());
            std::thread::sleep(Duration::from_millis(300 + 100 * cycle));
            d.kill9();
            stop.store(true, Ordering::Relaxed);
            for c in clients {
                for (key, nums) in c.join().unwrap() {
                    all.entry(key).or_default().extend(nums);
                }
            }
        }
        let d = Daemon::start(dir.path(), mode, &[]);
        let mut con = d.ready();
        let mut total = 0;
        for (key, nums) in &mut all {
            total += nums.len();
            nums.sort_unstable();
            let before = nums.len();
            nums.dedup();
            assert_eq!(
                before,
                nums.len(),
                "{mode}: {key:?} had a number acknowledged twice"
            );
            let n: u64 = redis::cmd("NEXT")
                .arg(key.0)
                .arg(key.1)
                .query(&mut con)
                .unwrap();
            let max = *nums.last().unwrap();
            assert!(
                n > max,
                "{mode}: {key:?} reissued: next {n} <= acknowledged {max}"
            );
        }
        assert!(total > 100, "{mode}: the load ran ({total} numbers)");
        d.terminate();
    }
}
