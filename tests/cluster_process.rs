//! Cluster mode with real processes: a real etcd and `seqd serve --etcd` nodes on loopback,
//! talked to by the `redis` crate. Any node answers any request; a graceful stop and a
//! joining node hand partitions over with nothing skipped; a frozen owner is replaced within
//! 2 × TTL + 1 s and hands out nothing after it resumes; a killed Director is replaced with a
//! larger epoch; a node with another partition count refuses to start. Every run: no number
//! twice.
#![cfg(feature = "cluster")]

mod common;

use std::collections::{BTreeMap, HashSet};
use std::process::Command;
use std::time::{Duration, Instant};

use common::cluster::{Cluster, next};

const PARTITIONS: u16 = 8;
const WORKSPACES: u64 = 64;

/// Every number handed out, per workspace (sequence 0), in the order received.
#[derive(Default)]
struct Record(BTreeMap<u64, Vec<u64>>);

impl Record {
    fn add(&mut self, ws: u64, n: u64) {
        self.0.entry(ws).or_default().push(n);
    }

    fn last(&self, ws: u64) -> u64 {
        self.0.get(&ws).and_then(|v| v.last().copied()).unwrap_or(0)
    }

    /// No number twice, each workspace's numbers increasing in the order received.
    fn check(&self) {
        for (ws, numbers) in &self.0 {
            let unique: HashSet<_> = numbers.iter().collect();
            assert_eq!(
                unique.len(),
                numbers.len(),
                "workspace {ws}: a number twice: {numbers:?}"
            );
            assert!(
                numbers.windows(2).all(|w| w[0] < w[1]),
                "workspace {ws}: not increasing: {numbers:?}"
            );
        }
    }
}

/// One `NEXT ws 0` through node `i`, retried (bounded) while the answer is an error.
fn take(c: &Cluster, conns: &mut BTreeMap<usize, redis::Connection>, i: usize, ws: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let conn = conns.entry(i).or_insert_with(|| c.client(i));
        match next(conn, ws, 0) {
            Ok(n) => return n,
            Err(e) => {
                assert!(Instant::now() < deadline, "NEXT {ws} 0 on node {i}: {e}");
                conns.remove(&i);
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

#[test]
fn any_node_answers_and_handovers_skip_nothing() {
    let Some(mut c) = Cluster::start(3, "lease", PARTITIONS) else {
        return;
    };
    c.wait_placed(Duration::from_secs(30), |_| true);
    let mut conns = BTreeMap::new();
    let mut record = Record::default();
    // Every workspace through every node: consecutive numbers, whoever owns it.
    for round in 0..3 {
        for ws in 0..WORKSPACES {
            let i = (ws as usize + round) % 3;
            let n = take(&c, &mut conns, i, ws);
            assert_eq!(n, record.last(ws) + 1, "workspace {ws} through node {i}");
            record.add(ws, n);
        }
    }

    // `GET /v1/cluster`'s shape.
    let view = c.view(1);
    assert_eq!(view["cluster"], c.name.as_str());
    assert_eq!(view["partitions_count"], PARTITIONS);
    assert!(view["director"]["node"].is_string() && view["director"]["epoch"].is_i64());
    let nodes = view["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3);
    for n in nodes {
        assert!(n["id"].is_string() && n["address"].is_string() && n["admin"].is_string());
        assert_eq!(n["roles"], serde_json::json!(["sequencer", "gateway"]));
        assert_eq!(
            (n["accepts_clients"].as_bool(), n["alive"].as_bool()),
            (Some(true), Some(true))
        );
    }
    let parts = view["partitions"].as_array().unwrap();
    assert_eq!(parts[0]["slots"], serde_json::json!([0, 2047]));
    assert!(
        parts
            .iter()
            .all(|p| p["owner"].is_string() && p["epoch"].is_i64())
    );

    // SIGTERM the owner of partition 0: its partitions are handed over; nothing skipped.
    let victim = c.index(&c.owner(0, 0).unwrap());
    c.stop(victim);
    c.wait_placed(Duration::from_secs(15), |_| true);
    conns.clear();
    let survivor = c.running()[0];
    for ws in 0..WORKSPACES {
        let n = take(&c, &mut conns, survivor, ws);
        assert_eq!(n, record.last(ws) + 1, "after SIGTERM, workspace {ws}");
        record.add(ws, n);
    }

    // A node joins: the layout is rebalanced by handovers; nothing skipped.
    let joined = c.add("n3");
    c.wait_placed(Duration::from_secs(30), |owners| {
        owners.iter().filter(|o| *o == "n3").count() >= 2
    });
    conns.clear();
    for ws in 0..WORKSPACES {
        let n = take(&c, &mut conns, joined, ws);
        assert_eq!(n, record.last(ws) + 1, "after the join, workspace {ws}");
        record.add(ws, n);
    }
    record.check();
    let metrics = reqwest::blocking::get(format!("http://{}/metrics", c.node(joined).admin))
        .and_then(|r| r.text())
        .unwrap();
    assert!(
        metrics.contains("seqd_cluster_partitions_served 2")
            || metrics.contains("seqd_cluster_partitions_served 3"),
        "{metrics}"
    );
    assert!(metrics.contains("seqd_etcd_requests_total"), "{metrics}");
}

#[test]
fn a_frozen_owner_is_replaced_and_hands_out_nothing_after() {
    let Some(c) = Cluster::start(3, "lease", PARTITIONS) else {
        return;
    };
    c.wait_placed(Duration::from_secs(30), |_| true);
    let mut conns = BTreeMap::new();
    let mut record = Record::default();
    let ws = 7;
    let p = c.partition(ws);
    let victim = c.index(&c.owner(0, p).unwrap());
    let gateway = (victim + 1) % 3;
    for w in 0..WORKSPACES {
        let n = take(&c, &mut conns, gateway, w);
        record.add(w, n);
    }
    let mut old = c.client(victim);
    assert!(next(&mut old, ws, 0).is_ok());

    // Freeze the owner; a survivor answers for its partition within 2 × TTL + 1 s.
    let pid = c.node(victim).pid().to_string();
    assert!(
        Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .unwrap()
            .success()
    );
    let t0 = Instant::now();
    let mut probe = c.client(gateway);
    let first = loop {
        match next(&mut probe, ws, 0) {
            Ok(n) => break n,
            Err(_) => {
                assert!(t0.elapsed() < Duration::from_secs(10), "no failover");
                probe = c.client(gateway);
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    };
    let failover = t0.elapsed();
    eprintln!("failover after SIGSTOP: {failover:?}");
    assert!(
        failover <= Duration::from_secs(3),
        "failover took {failover:?} (> 2 × TTL + 1 s)"
    );
    record.add(ws, first);

    // Resume the old owner: whatever it answers is unique (it forwards to the new owner
    // or refuses), never a number from its old window.
    assert!(
        Command::new("kill")
            .args(["-CONT", &pid])
            .status()
            .unwrap()
            .success()
    );
    if let Ok(n) = next(&mut old, ws, 0) {
        record.add(ws, n);
    }
    let mut fresh = c.client(victim);
    for _ in 0..20 {
        if let Ok(n) = next(&mut fresh, ws, 0) {
            record.add(ws, n);
        }
    }
    for w in 0..WORKSPACES {
        let n = take(&c, &mut conns, gateway, w);
        record.add(w, n);
    }
    record.check();
}

#[test]
fn a_killed_director_is_replaced_with_a_larger_epoch() {
    let Some(mut c) = Cluster::start(3, "sync", PARTITIONS) else {
        return;
    };
    c.wait_placed(Duration::from_secs(30), |_| true);
    let view = c.view(0);
    let director = view["director"]["node"].as_str().unwrap().to_owned();
    let epoch = view["director"]["epoch"].as_i64().unwrap();
    let mut conns = BTreeMap::new();
    let mut record = Record::default();
    for w in 0..WORKSPACES {
        let n = take(&c, &mut conns, 0, w);
        record.add(w, n);
    }
    let d = c.index(&director);
    c.kill(d);
    let survivor = c.running()[0];
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let v = c.view(survivor);
        if let (Some(node), Some(e)) = (
            v["director"]["node"].as_str(),
            v["director"]["epoch"].as_i64(),
        ) && node != director
        {
            assert!(
                e > epoch,
                "the new Director's epoch {e} is not above {epoch}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "no new Director: {v}");
        std::thread::sleep(Duration::from_millis(50));
    }
    c.wait_placed(Duration::from_secs(15), |_| true);
    conns.clear();
    // Sync mode: every acknowledged number was stored; the next one follows it exactly.
    for w in 0..WORKSPACES {
        let n = take(&c, &mut conns, survivor, w);
        assert_eq!(n, record.last(w) + 1, "workspace {w} after the kill");
        record.add(w, n);
    }
    record.check();
}

#[test]
fn a_node_with_another_partition_count_refuses_to_start() {
    let Some(c) = Cluster::start(1, "lease", PARTITIONS) else {
        return;
    };
    c.wait_placed(Duration::from_secs(30), |_| true);
    let mut args = c.args("other");
    let at = args.iter().position(|a| a == "--partitions").unwrap();
    args[at + 1] = "4".into();
    let out = Command::new(env!("CARGO_BIN_EXE_seqd"))
        .arg("serve")
        .args(["--port", "0", "--admin-port", "0"])
        .args(&args)
        .output()
        .expect("run seqd");
    assert!(!out.status.success());
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("--partitions 4") && log.contains("8 partitions"),
        "{log}"
    );
}

#[test]
fn an_etcd_outage_is_waited_out() {
    let Some(mut c) = Cluster::start(2, "sync", PARTITIONS) else {
        return;
    };
    c.wait_placed(Duration::from_secs(30), |_| true);
    let mut conns = BTreeMap::new();
    let mut record = Record::default();
    for w in 0..WORKSPACES {
        let n = take(&c, &mut conns, 0, w);
        record.add(w, n);
    }
    // etcd down: nothing can be acknowledged (sync mode needs etcd's commit); requests are
    // refused, never answered with a number that could come again.
    c.etcd.kill();
    std::thread::sleep(Duration::from_millis(1500));
    let mut conn = c.client(1);
    for w in 0..2 {
        match next(&mut conn, w, 0) {
            Ok(n) => record.add(w, n),
            Err(e) => {
                let e = e.to_lowercase();
                assert!(
                    e.contains("busy") || e.contains("tryagain") || e.contains("timed out"),
                    "{e}"
                );
            }
        }
    }
    let ready = reqwest::blocking::get(format!("http://{}/readyz", c.node(1).admin)).unwrap();
    assert_eq!(ready.status(), 503, "not ready while etcd is down");
    // etcd back: service resumes by itself, above everything acknowledged.
    c.etcd.restart();
    c.wait_placed(Duration::from_secs(30), |_| true);
    conns.clear();
    for w in 0..WORKSPACES {
        let n = take(&c, &mut conns, 1, w);
        assert!(
            n > record.last(w),
            "workspace {w}: {n} after {}",
            record.last(w)
        );
        record.add(w, n);
    }
    record.check();
}
