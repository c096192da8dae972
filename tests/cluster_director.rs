//! The Director against a real etcd: one elected at a time with a strictly larger epoch each
//! time, a balanced layout, a dead node's partitions placed again, a joining node's share
//! handed over, and a deposed Director's writes refused.
#![cfg(feature = "cluster")]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use etcd_client::{Compare, CompareOp, GetOptions, Txn, TxnOp};
use seqd::cluster::records::{HandoverRecord, NodeRecord, OwnerRecord, Role};
use seqd::cluster::{
    Campaign, ClusterView, DirectorStatus, Etcd, Keys, NoHooks, NodeLease, register,
};
use tokio::sync::watch;

use common::etcd::EtcdServer;

const PARTITIONS: u16 = 8;

struct Node {
    id: String,
    node_lease: Option<NodeLease>,
    status: watch::Receiver<DirectorStatus>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

async fn start_node(etcd: &Arc<Etcd>, keys: &Keys, id: &str, roles: Vec<Role>) -> Node {
    let node_lease = NodeLease::start(etcd, Duration::from_secs(1))
        .await
        .expect("lease");
    let record = NodeRecord {
        id: id.into(),
        address: format!("127.0.0.1:{}", 10_000 + id.len()),
        admin: "127.0.0.1:1".into(),
        roles,
        accepts_clients: true,
        version: "test".into(),
        started_ms: 0,
    };
    register(etcd, keys, &record, node_lease.lease(), Duration::ZERO)
        .await
        .expect("register");
    let (campaign, status) = Campaign::new(
        Arc::clone(etcd),
        keys.clone(),
        id.into(),
        node_lease.lease(),
        PARTITIONS,
        Arc::new(NoHooks),
    );
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(campaign.run(stopped));
    Node {
        id: id.into(),
        node_lease: Some(node_lease),
        status,
        stop,
        task,
    }
}

/// The owner keys: partition → (node, epoch).
async fn owners(etcd: &Arc<Etcd>, keys: &Keys) -> BTreeMap<u16, (String, i64)> {
    let mut c = etcd.client();
    let prefix = keys.owners();
    let r = etcd
        .call("get", async move {
            c.get(prefix, Some(GetOptions::new().with_prefix())).await
        })
        .await
        .expect("read owners");
    r.kvs()
        .iter()
        .map(|kv| {
            let p = keys
                .partition_in(&keys.owners(), kv.key())
                .expect("owner key");
            let o: OwnerRecord = serde_json::from_slice(kv.value()).expect("owner record");
            (p.0, (o.node, kv.mod_revision()))
        })
        .collect()
}

fn counts(owners: &BTreeMap<u16, (String, i64)>) -> BTreeMap<String, usize> {
    let mut c = BTreeMap::new();
    for (node, _) in owners.values() {
        *c.entry(node.clone()).or_default() += 1;
    }
    c
}

/// Waits (bounded) until `check` holds.
async fn until<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

fn directors(nodes: &[Node]) -> Vec<(String, i64)> {
    nodes
        .iter()
        .filter_map(|n| n.status.borrow().epoch.map(|e| (n.id.clone(), e)))
        .collect()
}

/// Plays an owner's part of a handover: deletes its owner key and the request, fenced by its
/// epoch (what a node does once it has written its exact values).
async fn hand_over_requested(etcd: &Arc<Etcd>, keys: &Keys) -> usize {
    let mut c = etcd.client();
    let prefix = keys.handovers();
    let r = etcd
        .call("get", async move {
            c.get(prefix, Some(GetOptions::new().with_prefix())).await
        })
        .await
        .unwrap();
    let owned = owners(etcd, keys).await;
    let mut done = 0;
    for kv in r.kvs() {
        let p = keys.partition_in(&keys.handovers(), kv.key()).unwrap();
        let h: HandoverRecord = serde_json::from_slice(kv.value()).unwrap();
        let Some((node, epoch)) = owned.get(&p.0) else {
            continue;
        };
        assert_eq!(*node, h.from);
        let txn = Txn::new()
            .when([Compare::mod_revision(
                keys.owner(p),
                CompareOp::Equal,
                *epoch,
            )])
            .and_then([
                TxnOp::delete(keys.owner(p), None),
                TxnOp::delete(keys.handover(p), None),
            ]);
        let mut c = etcd.client();
        let r = etcd
            .call("txn", async move { c.txn(txn).await })
            .await
            .unwrap();
        assert!(r.succeeded());
        done += 1;
    }
    done
}

#[test]
fn director_elections_placement_failover_and_rebalance() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("seqd=info")
        .try_init();
    let Some(server) = EtcdServer::start() else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let etcd = server.client();
    rt.block_on(async {
        let keys = Keys::new("director").unwrap();
        let mut nodes = Vec::new();
        for id in ["n0", "n1", "n2"] {
            nodes.push(start_node(&etcd, &keys, id, vec![Role::Sequencer, Role::Gateway]).await);
        }
        // A gateway-only node gets no partition.
        nodes.push(start_node(&etcd, &keys, "gw", vec![Role::Gateway]).await);

        // One Director; every partition placed, 3/3/2 over the sequencers (the nodes joined
        // one after the other: the first ones' surplus is handed over as the others join).
        until("a balanced layout", Duration::from_secs(10), || {
            let etcd = Arc::clone(&etcd);
            let keys = keys.clone();
            async move {
                hand_over_requested(&etcd, &keys).await;
                let o = owners(&etcd, &keys).await;
                let mut c: Vec<usize> = counts(&o).into_values().collect();
                c.sort_unstable();
                o.len() == usize::from(PARTITIONS) && c == vec![2, 3, 3]
            }
        })
        .await;
        let elected = directors(&nodes);
        assert_eq!(elected.len(), 1, "{elected:?}");
        let (first, first_epoch) = elected[0].clone();
        assert!(!counts(&owners(&etcd, &keys).await).contains_key("gw"));

        // A node's view of the cluster agrees with etcd, in `GET /v1/cluster`'s shape.
        let view = ClusterView::start(&etcd, keys.clone(), "director", PARTITIONS)
            .await
            .expect("view");
        let stored = owners(&etcd, &keys).await;
        let json = serde_json::to_value(view.snapshot()).unwrap();
        assert_eq!(json["cluster"], "director");
        assert_eq!(json["partitions_count"], PARTITIONS);
        assert_eq!(json["director"]["node"], first.as_str());
        assert_eq!(json["director"]["epoch"], first_epoch);
        assert_eq!(json["nodes"].as_array().unwrap().len(), 4);
        let gw = &json["nodes"][0];
        assert_eq!(gw["id"], "gw");
        assert_eq!(gw["roles"], serde_json::json!(["gateway"]));
        assert_eq!(gw["alive"], true);
        assert!(gw["address"].is_string() && gw["admin"].is_string());
        assert_eq!(gw["accepts_clients"], true);
        let parts = json["partitions"].as_array().unwrap();
        assert_eq!(parts.len(), usize::from(PARTITIONS));
        assert_eq!(parts[0]["slots"], serde_json::json!([0, 2047]));
        assert_eq!(parts[7]["slots"], serde_json::json!([14336, 16383]));
        for part in parts {
            let p = part["partition"].as_u64().unwrap() as u16;
            assert_eq!(part["owner"], stored[&p].0.as_str());
            assert_eq!(part["epoch"], stored[&p].1);
        }

        // The Director's node dies (its lease is revoked): another is elected with a larger
        // epoch, and the dead node's partitions go to the live ones.
        let i = nodes.iter().position(|n| n.id == first).unwrap();
        let mut dead = nodes.remove(i);
        dead.node_lease.take().unwrap().close().await;
        let _ = dead.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(5), dead.task).await;
        until("a new Director", Duration::from_secs(10), || {
            let d = directors(&nodes);
            async move { d.len() == 1 && d[0].1 > first_epoch }
        })
        .await;
        until(
            "the dead node's partitions placed again",
            Duration::from_secs(10),
            || {
                let etcd = Arc::clone(&etcd);
                let keys = keys.clone();
                let first = first.clone();
                async move {
                    let o = owners(&etcd, &keys).await;
                    let c = counts(&o);
                    o.len() == usize::from(PARTITIONS)
                        && !c.contains_key(&first)
                        && c.values().all(|n| *n == 4)
                }
            },
        )
        .await;
        let before = owners(&etcd, &keys).await;
        // The view follows: the dead node is gone from it, the new owners are in it.
        until(
            "the view to follow the failover",
            Duration::from_secs(5),
            || {
                let snap = view.snapshot();
                let before = before.clone();
                let first = first.clone();
                async move {
                    snap.nodes.iter().all(|n| n.id != first)
                        && snap.partitions.iter().all(|p| {
                            p.owner.as_deref() == Some(before[&p.partition].0.as_str())
                                && p.epoch == Some(before[&p.partition].1)
                        })
                        && snap.director.is_some_and(|d| d.epoch > first_epoch)
                }
            },
        )
        .await;

        // A node joins: the Director asks for handovers; once the owners let go, the
        // partitions move and the layout is balanced again, with nothing else moved.
        nodes.push(start_node(&etcd, &keys, "n3", vec![Role::Sequencer]).await);
        let handed = Arc::new(AtomicUsize::new(0));
        until("a rebalanced layout", Duration::from_secs(15), || {
            let etcd = Arc::clone(&etcd);
            let keys = keys.clone();
            let handed = Arc::clone(&handed);
            async move {
                let n = hand_over_requested(&etcd, &keys).await;
                handed.fetch_add(n, Ordering::Relaxed);
                let o = owners(&etcd, &keys).await;
                let mut c: Vec<usize> = counts(&o).into_values().collect();
                c.sort_unstable();
                o.len() == usize::from(PARTITIONS) && c == vec![2, 3, 3]
            }
        })
        .await;
        assert_eq!(
            handed.load(Ordering::Relaxed),
            2,
            "exactly the new node's share moved"
        );
        let after = owners(&etcd, &keys).await;
        let moved = before
            .iter()
            .filter(|(p, (node, _))| after[*p].0 != *node)
            .count();
        assert_eq!(moved, 2);
        for (p, (node, epoch)) in &after {
            if before[p].0 != *node {
                assert_eq!(node, "n3");
                assert!(*epoch > before[p].1, "a moved partition has a larger epoch");
            }
        }

        // A deposed Director stops acting: delete the election key behind its back; it
        // notices, its status clears, and a Director (maybe itself again) gets a larger epoch.
        let (current, epoch) = directors(&nodes)[0].clone();
        let mut c = etcd.client();
        let key = keys.director();
        etcd.call("delete", async move { c.delete(key, None).await })
            .await
            .unwrap();
        until("a re-election", Duration::from_secs(10), || {
            let d = directors(&nodes);
            async move { d.len() == 1 && d[0].1 > epoch }
        })
        .await;
        let _ = current;

        view.stop().await;
        for n in nodes {
            let _ = n.stop.send(true);
            let _ = tokio::time::timeout(Duration::from_secs(5), n.task).await;
            if let Some(s) = n.node_lease {
                s.close().await;
            }
        }
    });
}
