//! Node roles and routing (SPEC §5, "Roles" and "Routing") with real clients, a real etcd and
//! four real nodes: two sequencer+gateway nodes in `--routing redirect`, one sequencer-only,
//! one gateway-only (proxy routing, the default).
//!
//! * the sequencer-only node owns partitions and refuses clients, naming the gateways; the
//!   gateway-only node owns none;
//! * `CLUSTER SLOTS/SHARDS/NODES/INFO/KEYSLOT/MYID` answer from the layout, never offering the
//!   sequencer-only node;
//! * a plain client on the gateway-only node gets every number; a redirect node answers
//!   `-MOVED`; `redis-cli -c`, the `redis` crate's cluster client and redis-py's
//!   `RedisCluster` route by slot and follow `-MOVED`, also after a failover;
//! * forwarding under a failover (kill -9 of an owner): no number twice, each client's
//!   replies in request order.
#![cfg(feature = "cluster")]

mod common;

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::cluster::{Cluster, next};
use seqd::cluster::slots::keyslot;

const PARTITIONS: u16 = 8;
const WORKSPACES: u64 = 64;

fn required() -> bool {
    std::env::var("SEQD_REQUIRE_CLIENTS").as_deref() == Ok("1")
}

/// Waits until every partition is owned by a sequencer node, the gateway-only node `g` sees
/// the slots covered (`CLUSTER INFO` ok) and every node answers `/readyz`.
fn wait_routed(c: &Cluster, g: usize, sequencers: &[&str]) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let http = reqwest::blocking::Client::new();
    loop {
        let owners: Vec<String> = (0..PARTITIONS).filter_map(|p| c.owner(g, p)).collect();
        let ready = c.running().iter().all(|&i| {
            http.get(format!("http://{}/readyz", c.node(i).admin))
                .send()
                .is_ok_and(|r| r.status().is_success())
        });
        let info: String = redis::cmd("CLUSTER")
            .arg("INFO")
            .query(&mut c.client(g))
            .unwrap_or_default();
        let balanced = sequencers
            .iter()
            .all(|s| owners.iter().filter(|o| o == s).count() >= 2);
        if ready
            && owners.len() == usize::from(PARTITIONS)
            && balanced
            && info.contains("cluster_state:ok")
        {
            return owners;
        }
        assert!(
            Instant::now() < deadline,
            "not routed: owners {owners:?}, info {info:?}, view {}",
            c.view(g)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `CLUSTER SLOTS` of node `i`: (first, last, address).
fn slots(c: &Cluster, i: usize) -> Vec<(u16, u16, String)> {
    let ranges: Vec<(u16, u16, (String, u16, String))> = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query(&mut c.client(i))
        .expect("CLUSTER SLOTS");
    ranges
        .into_iter()
        .map(|(a, b, (host, port, _id))| (a, b, format!("{host}:{port}")))
        .collect()
}

/// The address `CLUSTER SLOTS` sends workspace `ws` to.
fn target(map: &[(u16, u16, String)], ws: u64) -> String {
    let slot = keyslot(ws.to_string().as_bytes());
    map.iter()
        .find(|(a, b, _)| (*a..=*b).contains(&slot))
        .map(|r| r.2.clone())
        .expect("every slot covered")
}

fn clients_dir() -> PathBuf {
    std::env::var_os("SEQD_CLIENTS_DIR").map_or_else(
        || PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/seqd-clients"),
        PathBuf::from,
    )
}

/// redis-py's `RedisCluster` seeded with `port`: `rounds` numbers of each workspace's
/// sequence 0, per workspace; `None` when redis-py is not installed (and not required).
fn redis_py(port: u16, rounds: u64) -> Option<BTreeMap<u64, Vec<u64>>> {
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients/redis_py_cluster.py");
    let out = Command::new("python3")
        .arg(script)
        .env("SEQD_PORT", port.to_string())
        .env("SEQD_WORKSPACES", WORKSPACES.to_string())
        .env("SEQD_ROUNDS", rounds.to_string())
        .env("PYTHONPATH", clients_dir().join("py"))
        .output()
        .expect("python3");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    match out.status.code() {
        Some(0) => {}
        Some(3) if !required() => {
            eprintln!("WARNING: redis-py is missing; skipping its part: {text}");
            return None;
        }
        _ => panic!(
            "redis_py_cluster.py failed: {:?}\n{text}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
    }
    let v: serde_json::Value = serde_json::from_str(text.trim()).expect("JSON from the script");
    let mut numbers = BTreeMap::new();
    for (ws, ns) in v["numbers"].as_object().expect("numbers") {
        let ns: Vec<u64> = ns
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_u64().unwrap())
            .collect();
        numbers.insert(ws.parse().unwrap(), ns);
    }
    Some(numbers)
}

/// The `redis` crate's cluster client seeded with `addr`: one `NEXT ws seq` per workspace.
fn redis_rs(addr: &str, seq: u16) -> BTreeMap<u64, u64> {
    let client = redis::cluster::ClusterClient::new(vec![format!("redis://{addr}/")]).unwrap();
    let mut con = client.get_connection().expect("a cluster connection");
    (0..WORKSPACES)
        .map(|ws| {
            let n: u64 = redis::cmd("NEXT")
                .arg(ws)
                .arg(seq)
                .query(&mut con)
                .unwrap_or_else(|e| panic!("NEXT {ws} {seq} through the cluster client: {e}"));
            (ws, n)
        })
        .collect()
}

/// Pipelines of `NEXT ws 4` over all workspaces through `addr` until `stop`: every number,
/// per workspace, in the order received.
/// Pipelines `NEXT` for every workspace through `addr` until `stop`, reconnecting after an
/// error; counts each pipeline answered in full in `answered`.
fn load(addr: String, stop: Arc<AtomicBool>, answered: Arc<AtomicU64>) -> BTreeMap<u64, Vec<u64>> {
    let mut got: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        let Ok(mut con) =
            redis::Client::open(format!("redis://{addr}/")).and_then(|c| c.get_connection())
        else {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        let _ = con.set_read_timeout(Some(Duration::from_secs(10)));
        while !stop.load(Ordering::Relaxed) {
            let mut pipe = redis::pipe();
            for ws in 0..WORKSPACES {
                pipe.cmd("NEXT").arg(ws).arg(4);
            }
            let Ok(replies) = pipe.query::<Vec<redis::Value>>(&mut con) else {
                break;
            };
            for (ws, r) in (0..WORKSPACES).zip(replies) {
                if let redis::Value::Int(n) = r {
                    got.entry(ws).or_default().push(n as u64);
                }
            }
            answered.fetch_add(1, Ordering::Relaxed);
        }
    }
    got
}

/// Waits (at most 30 s) until the load has answered `count` pipelines in all.
fn wait_answered(answered: &AtomicU64, count: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while answered.load(Ordering::Relaxed) < count {
        assert!(
            Instant::now() < deadline,
            "the load was answered {} times in 30 s, not {count}",
            answered.load(Ordering::Relaxed)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn roles_and_routing_with_real_cluster_clients() {
    let Some(mut c) = Cluster::start(0, "lease", PARTITIONS) else {
        return;
    };
    let n0 = c.add_with("n0", &["--routing", "redirect"]);
    let n1 = c.add_with("n1", &["--routing", "redirect"]);
    let n2 = c.add_with("n2", &["--roles", "sequencer"]);
    let g = c.add_with("n3", &["--roles", "gateway"]);
    let owners = wait_routed(&c, g, &["n0", "n1", "n2"]);
    assert!(
        owners.iter().any(|o| o == "n2"),
        "the sequencer-only node owns partitions"
    );
    assert!(
        !owners.iter().any(|o| o == "n3"),
        "the gateway-only node owns none"
    );
    let view = c.view(g);
    let roles: BTreeMap<String, serde_json::Value> = view["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["id"].as_str().unwrap().to_owned(), n["roles"].clone()))
        .collect();
    assert_eq!(roles["n2"], serde_json::json!(["sequencer"]));
    assert_eq!(roles["n3"], serde_json::json!(["gateway"]));
    assert_eq!(view["this_node"]["routing"], "proxy", "{view}");
    assert_eq!(c.view(n0)["this_node"]["routing"], "redirect");

    // The Redis Cluster protocol, from the gateway-only node.
    let mut gw = c.client(g);
    let slot: u16 = redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(42)
        .query(&mut gw)
        .unwrap();
    assert_eq!(slot, 8000);
    let id: String = redis::cmd("CLUSTER").arg("MYID").query(&mut gw).unwrap();
    assert_eq!(id.len(), 40);
    let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut gw).unwrap();
    assert!(info.contains("cluster_slots_assigned:16384") && info.contains("seqd_routing:proxy"));
    let info: String = redis::cmd("INFO").arg("cluster").query(&mut gw).unwrap();
    for want in [
        "cluster_enabled:1",
        "seqd_roles:gateway",
        "seqd_routing:proxy",
    ] {
        assert!(info.contains(want), "{want} in {info}");
    }
    let map = slots(&c, g);
    let covered: u32 = map
        .iter()
        .map(|(a, b, _)| u32::from(*b) - u32::from(*a) + 1)
        .sum();
    assert_eq!(covered, 16384);
    let sequencer_only = c.node(n2).addr.clone();
    assert!(map.iter().all(|r| r.2 != sequencer_only), "{map:?}");
    let nodes: String = redis::cmd("CLUSTER").arg("NODES").query(&mut gw).unwrap();
    assert_eq!(nodes.lines().count(), 3, "{nodes}");
    assert_eq!(nodes.lines().filter(|l| l.contains("myself")).count(), 1);
    let shards: Vec<redis::Value> = redis::cmd("CLUSTER").arg("SHARDS").query(&mut gw).unwrap();
    assert_eq!(shards.len(), 3);

    // The sequencer-only node refuses clients and names the gateways; PING still works.
    let mut seq_only = c.client(n2);
    let err = next(&mut seq_only, 1, 0).unwrap_err();
    assert!(err.contains("sequencer-only"), "{err}");
    assert!(err.contains(&c.node(g).addr), "{err}");
    let pong: String = redis::cmd("PING").query(&mut seq_only).unwrap();
    assert_eq!(pong, "PONG");

    // A plain client on the gateway-only node gets every number.
    for round in 1..=3 {
        for ws in 0..WORKSPACES {
            assert_eq!(next(&mut gw, ws, 1), Ok(round), "workspace {ws}");
        }
    }
    // Non-canonical workspaces are refused: clients would hash them to another slot.
    let err = redis::cmd("NEXT")
        .arg("042")
        .arg(1)
        .query::<u64>(&mut gw)
        .unwrap_err();
    assert!(err.to_string().contains("canonical"), "{err}");

    // A redirect node answers -MOVED for a slot it does not serve.
    let here = c.node(n0).addr.clone();
    let away = (0..WORKSPACES)
        .find(|ws| target(&map, *ws) != here)
        .expect("a workspace served elsewhere");
    let err = next(&mut c.client(n0), away, 2).unwrap_err();
    let slot = keyslot(away.to_string().as_bytes());
    assert!(
        err.contains(&format!("{slot} {}", target(&map, away))),
        "{err}"
    );

    // Keyless CURRENT (and GETSEQ) is answered wherever it lands; a transaction with a key served
    // elsewhere is refused when queued and aborts whole (as Redis does with -MOVED).
    let mut r0 = c.client(n0);
    let current: u64 = redis::cmd("CURRENT")
        .query(&mut r0)
        .expect("CURRENT on a redirect node");
    assert_eq!(current, 1);
    let _: () = redis::cmd("MULTI").query(&mut r0).unwrap();
    let err = next(&mut r0, away, 2).unwrap_err();
    assert!(err.to_lowercase().contains("moved"), "{err}");
    let err = redis::cmd("EXEC")
        .query::<redis::Value>(&mut r0)
        .unwrap_err();
    assert!(err.to_string().contains("Transaction discarded"), "{err}");
    // The sequencer-only node refuses HTTP clients too.
    let url = format!("http://{}/v1/sequences/1/0/next", c.node(n2).admin);
    let resp = reqwest::blocking::Client::new().post(url).send().unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    assert!(resp.text().unwrap().contains("sequencer-only"));

    // redis-cli -c follows it.
    let port = c.node(n0).port().to_string();
    let out = Command::new("redis-cli")
        .args(["-c", "-p", &port, "NEXT", &away.to_string(), "2"])
        .output();
    match out {
        Ok(out) => assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1", "{out:?}"),
        Err(e) => assert!(!required(), "redis-cli: {e}"),
    }

    // Cluster clients route by slot through the redirect nodes.
    let rs = redis_rs(&here, 3);
    assert!(rs.values().all(|&n| n == 1), "{rs:?}");
    let py = redis_py(c.node(n0).port(), 3);
    if let Some(py) = &py {
        for (ws, ns) in py {
            assert_eq!(ns, &vec![1, 2, 3], "redis-py, workspace {ws}");
        }
    }

    // `seqd bench --cluster` routes by slot over the client-facing nodes, with nothing twice.
    let out = Command::new(env!("CARGO_BIN_EXE_seqd"))
        .args([
            "bench",
            "--cluster",
            "-p",
            &port,
            "-n",
            "4000",
            "-c",
            "6",
            "-P",
            "8",
        ])
        .args(["--workspaces", "64", "--seqs", "1", "--json", "--quiet"])
        .output()
        .expect("seqd bench");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_str(&text).expect("bench JSON");
    assert_eq!(summary["ok"], 4000, "{summary}");
    // Spread over the nodes CLUSTER SLOTS names (those that serve slots).
    let spread = summary["cluster_nodes"].as_array().map_or(0, Vec::len);
    assert!(spread >= 2, "{summary}");

    // A failover under load through the gateway-only node: kill -9 a redirect node.
    // The kill comes once the load has been answered, and the load stops once it has been
    // answered again after the failover: fixed sleeps were too short on a slow disk.
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let loaders: Vec<_> = (0..2)
        .map(|_| {
            let addr = c.node(g).addr.clone();
            let (stop, answered) = (Arc::clone(&stop), Arc::clone(&answered));
            std::thread::spawn(move || load(addr, stop, answered))
        })
        .collect();
    wait_answered(&answered, 4);
    c.kill(n1);
    wait_routed(&c, g, &["n0", "n2"]);
    wait_answered(&answered, answered.load(Ordering::Relaxed) + 4);
    stop.store(true, Ordering::Relaxed);
    let mut all: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for l in loaders {
        for (ws, ns) in l.join().expect("load thread") {
            assert!(
                ns.windows(2).all(|w| w[0] < w[1]),
                "workspace {ws}: out of order {ns:?}"
            );
            all.entry(ws).or_default().extend(ns);
        }
    }
    for (ws, ns) in &all {
        let unique: HashSet<&u64> = ns.iter().collect();
        assert_eq!(unique.len(), ns.len(), "workspace {ws}: a number twice");
    }
    assert!(
        all.values().map(Vec::len).sum::<usize>() > 0,
        "the load ran"
    );

    // The cluster clients follow the new layout (-MOVED from the stale one).
    let after = redis_rs(&c.node(n0).addr, 3);
    assert!(after.values().all(|&n| n > 1), "{after:?}");
    if py.is_some() {
        let again = redis_py(c.node(n0).port(), 1).unwrap();
        for (ws, ns) in again {
            assert!(
                ns[0] > 3,
                "redis-py, workspace {ws}: {ns:?} after the failover"
            );
        }
    }
}
