//! W8's failover trials (SPEC §4): a 3-node cluster under load, the owner of a partition
//! frozen (SIGSTOP) or killed (SIGKILL), timed until a survivor hands out the partition's
//! next number; every number recorded, none twice; the numbers skipped per failover
//! reported. `SEQD_CLUSTER_CYCLES=N` runs N trials of each kind (default 2), with
//! `--nocapture` for the figures:
//!
//! `SEQD_CLUSTER_CYCLES=20 cargo test --release --test cluster_failover -- --nocapture`
#![cfg(feature = "cluster")]

mod common;

use std::collections::{BTreeMap, HashSet};
use std::process::Command;
use std::time::{Duration, Instant};

use common::cluster::{Cluster, next};

const PARTITIONS: u16 = 8;

fn cycles() -> usize {
    std::env::var("SEQD_CLUSTER_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2)
}

/// One trial: returns (failover time, numbers skipped in the failed-over sequence).
fn trial(
    c: &mut Cluster,
    kind: &str,
    ws: u64,
    seen: &mut BTreeMap<u64, HashSet<u64>>,
) -> (Duration, u64) {
    c.wait_placed(Duration::from_secs(30), |_| true);
    let p = c.partition(ws);
    let any = c.running()[0];
    let victim = c.index(&c.owner(any, p).expect("an owner"));
    let gateway = *c
        .running()
        .iter()
        .find(|i| **i != victim)
        .expect("a survivor");
    let mut conn = c.client(gateway);
    let mut last = 0;
    for _ in 0..200 {
        let n = next(&mut conn, ws, 0).expect("NEXT before the failover");
        assert!(seen.entry(ws).or_default().insert(n), "{n} twice");
        last = n;
    }
    let pid = c.node(victim).pid().to_string();
    let t0 = Instant::now();
    match kind {
        "stop" => assert!(
            Command::new("kill")
                .args(["-STOP", &pid])
                .status()
                .unwrap()
                .success()
        ),
        _ => c.kill(victim),
    }
    let first = loop {
        match next(&mut conn, ws, 0) {
            Ok(n) => break n,
            Err(_) => {
                assert!(t0.elapsed() < Duration::from_secs(15), "no failover");
                conn = c.client(gateway);
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    };
    let took = t0.elapsed();
    assert!(seen.entry(ws).or_default().insert(first), "{first} twice");
    assert!(first > last);
    if kind == "stop" {
        assert!(
            Command::new("kill")
                .args(["-CONT", &pid])
                .status()
                .unwrap()
                .success()
        );
        // The resumed node hands out nothing from its old window.
        let mut old = c.client(victim);
        for _ in 0..10 {
            if let Ok(n) = next(&mut old, ws, 0) {
                assert!(
                    seen.entry(ws).or_default().insert(n),
                    "{n} twice after SIGCONT"
                );
            }
        }
    } else {
        let id = c.ids[victim].clone();
        c.add(&id);
    }
    (took, first - last - 1)
}

#[test]
fn failover_trials() {
    let Some(mut c) = Cluster::start(3, "lease", PARTITIONS) else {
        return;
    };
    let mut seen = BTreeMap::new();
    for kind in ["stop", "kill"] {
        let mut times = Vec::new();
        let mut skips = Vec::new();
        for i in 0..cycles() {
            let (t, skipped) = trial(&mut c, kind, 1000 + i as u64, &mut seen);
            times.push(t);
            skips.push(skipped);
        }
        times.sort();
        let p50 = times[times.len() / 2];
        let max = times[times.len() - 1];
        eprintln!(
            "W8 failover ({kind}, TTL 1 s, {} trials): p50 {p50:?}, max {max:?}; skipped per failover: {skips:?}",
            times.len()
        );
        assert!(
            max <= Duration::from_secs(3),
            "{kind}: failover {max:?} > 2 × TTL + 1 s"
        );
    }
}
