//! Cluster mode's storage against a real etcd: fenced writes, chunked batches, a sequencer
//! moving between owners, the cluster's meta and node registrations, the node lease.
#![cfg(feature = "cluster")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{GetOptions, PutOptions};
use seqd::cluster::{
    EtcdStorage, Keys, LeaseState, NodeLease, Ownership, check_meta, records::NodeRecord,
    records::Role, register,
};
use seqd::storage::{FaultyStorage, SeqStorage, SeqValue};
use seqd::{Error, Number, PLogOffset, PartitionId, SeqId, Sequencer, WsId};

use common::etcd::EtcdServer;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Takes partition `p` for a test: writes its owner key, returns the epoch (its revision).
fn take(etcd: &seqd::cluster::Etcd, keys: &Keys, p: PartitionId, node: &str) -> i64 {
    let mut c = etcd.client();
    let key = keys.owner(p);
    let value = format!(r#"{{"node":"{node}","director_epoch":0}}"#);
    let r = etcd
        .wait("put", async move { c.put(key, value, None).await })
        .expect("put owner");
    r.header().expect("header").revision()
}

fn values(n: u64) -> Vec<SeqValue> {
    (0..n)
        .map(|i| SeqValue {
            ws: WsId(i / 3),
            seq: SeqId((i % 3) as u16),
            number: Number(1000 + i),
        })
        .collect()
}

#[test]
fn writes_are_fenced_by_the_partition_epoch() {
    let Some(server) = EtcdServer::start() else {
        return;
    };
    let etcd = server.client();
    let keys = Keys::new("fence").unwrap();
    let p = PartitionId(2);
    let epoch = take(&etcd, &keys, p, "a");
    let mine = Ownership::new(p, epoch);
    let storage = EtcdStorage::new(Arc::clone(&etcd), keys.clone(), Arc::clone(&mine), 128);

    // A batch larger than one transaction: 300 values, checkpoint last.
    storage
        .write_values_and_offset(&values(300), PLogOffset(301))
        .expect("owner writes");
    assert_eq!(storage.read_next_offset().unwrap(), PLogOffset(301));
    assert_eq!(
        storage
            .read_numbers(WsId(1), &[SeqId(0), SeqId(1), SeqId(2), SeqId(9)])
            .unwrap(),
        vec![Number(1003), Number(1004), Number(1005), Number(0)]
    );

    // Another node takes the partition: the old owner's writes are refused, by etcd first
    // and then at once.
    let newer = take(&etcd, &keys, p, "b");
    assert!(newer > epoch);
    let stale = [SeqValue {
        ws: WsId(1),
        seq: SeqId(0),
        number: Number(5),
    }];
    let e = storage
        .write_values_and_offset(&stale, PLogOffset(400))
        .unwrap_err();
    assert!(e.is_fenced(), "{e}");
    assert!(mine.is_fenced());
    assert!(e.message().contains("epoch"), "{e}");
    assert_eq!(
        etcd.stats()
            .fenced_writes
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    let e = storage
        .write_values_and_offset(&stale, PLogOffset(400))
        .unwrap_err();
    assert!(e.is_fenced());
    // Nothing of the refused writes landed.
    let theirs = EtcdStorage::new(
        Arc::clone(&etcd),
        keys.clone(),
        Ownership::new(p, newer),
        128,
    );
    assert_eq!(theirs.read_next_offset().unwrap(), PLogOffset(301));
    assert_eq!(
        theirs.read_numbers(WsId(1), &[SeqId(0)]).unwrap(),
        vec![Number(1003)]
    );
    // A deleted owner key fences as well (the owner's lease expired).
    let mut c = etcd.client();
    let key = keys.owner(p);
    etcd.wait("delete", async move { c.delete(key, None).await })
        .unwrap();
    assert!(
        theirs
            .write_values_and_offset(&stale, PLogOffset(400))
            .unwrap_err()
            .is_fenced()
    );
}

/// Within one epoch, a write made against an older checkpoint revision — a timed-out write
/// of this owner reaching etcd late — is refused, so it can never lower newer values.
#[test]
fn a_late_write_of_the_same_owner_cannot_lower_values() {
    let Some(server) = EtcdServer::start() else {
        return;
    };
    let etcd = server.client();
    let keys = Keys::new("chain").unwrap();
    let p = PartitionId(1);
    let epoch = take(&etcd, &keys, p, "a");
    let value = |n| {
        [SeqValue {
            ws: WsId(9),
            seq: SeqId(0),
            number: Number(n),
        }]
    };
    let early = EtcdStorage::new(
        Arc::clone(&etcd),
        keys.clone(),
        Ownership::new(p, epoch),
        128,
    );
    assert_eq!(early.read_next_offset().unwrap(), PLogOffset::FIRST);
    early
        .write_values_and_offset(&value(10), PLogOffset(2))
        .unwrap();
    // Newer writes of the same owner (another handle stands for them) move the checkpoint.
    let newer = EtcdStorage::new(
        Arc::clone(&etcd),
        keys.clone(),
        Ownership::new(p, epoch),
        128,
    );
    assert_eq!(newer.read_next_offset().unwrap(), PLogOffset(2));
    newer
        .write_values_and_offset(&value(20), PLogOffset(3))
        .unwrap();
    // The late one is refused (retryable: this handle learns the new checkpoint) ...
    let e = early
        .write_values_and_offset(&value(5), PLogOffset(2))
        .unwrap_err();
    assert!(e.is_retryable() && !e.is_fenced(), "{e}");
    assert_eq!(
        newer.read_numbers(WsId(9), &[SeqId(0)]).unwrap(),
        vec![Number(20)]
    );
    assert_eq!(newer.read_next_offset().unwrap(), PLogOffset(3));
    // ... and a write made after it goes through.
    early
        .write_values_and_offset(&value(30), PLogOffset(4))
        .unwrap();
    assert_eq!(
        newer.read_numbers(WsId(9), &[SeqId(0)]).unwrap(),
        vec![Number(30)]
    );
    // Batches larger than a transaction are chained too, the offset last.
    let many: Vec<SeqValue> = (0..300)
        .map(|i| SeqValue {
            ws: WsId(100 + i / 4),
            seq: SeqId((i % 4) as u16),
            number: Number(7),
        })
        .collect();
    early.write_values_and_offset(&many, PLogOffset(5)).unwrap();
    assert_eq!(newer.read_next_offset().unwrap(), PLogOffset(5));
}

/// The fault-injection case: an owner's write stalls (a disk or network stall, GC) past a
/// takeover; when it reaches etcd it is refused, its numbers are never acknowledged, and the
/// new owner's state is what stays.
#[test]
fn a_write_delayed_past_a_takeover_is_refused() {
    let Some(server) = EtcdServer::start() else {
        return;
    };
    let etcd = server.client();
    let keys = Keys::new("stall").unwrap();
    let p = PartitionId(5);
    let old_epoch = take(&etcd, &keys, p, "old");
    let old = Arc::new(FaultyStorage::new(EtcdStorage::new(
        Arc::clone(&etcd),
        keys.clone(),
        Ownership::new(p, old_epoch),
        128,
    )));
    let mut seq = Sequencer::open(Arc::clone(&old), common::options()).expect("open");
    let watcher = seq.watcher();
    let mut last = Number(0);
    for _ in 0..10 {
        let mut tx = seq
            .start_timeout(common::KIND, WsId(3), common::WAIT)
            .unwrap();
        last = tx.next(common::BLOCK).unwrap();
        let c = tx.flush();
        watcher
            .wait_durable(c, common::WAIT)
            .expect("durable before the stall");
    }
    assert_eq!(last, Number(10));

    // The next write stalls for a second; meanwhile another node takes the partition.
    old.set_latency(Duration::from_secs(1));
    let mut tx = seq
        .start_timeout(common::KIND, WsId(3), common::WAIT)
        .unwrap();
    assert_eq!(tx.next(common::BLOCK).unwrap(), Number(11));
    let stalled = tx.flush();
    std::thread::sleep(Duration::from_millis(200));
    let new_epoch = take(&etcd, &keys, p, "new");
    let new = EtcdStorage::new(
        Arc::clone(&etcd),
        keys.clone(),
        Ownership::new(p, new_epoch),
        128,
    );
    let mut next = Sequencer::open(new, common::options()).expect("open");
    let mut tx = next
        .start_timeout(common::KIND, WsId(3), common::WAIT)
        .unwrap();
    let theirs = tx.next_n(common::BLOCK, 5).unwrap();
    // 11 was never acknowledged (its write had not landed): the new owner may hand it out.
    assert_eq!(theirs, Number(11));
    let c = tx.flush();
    next.watcher()
        .wait_durable(c, common::WAIT)
        .expect("new owner writes");

    // The stalled write reaches etcd after the takeover and is refused; the old owner's
    // recovery cannot read the new owner's checkpoint (fenced reads), so the stalled commit
    // is never taken for durable.
    watcher
        .wait_durable(stalled, Duration::from_secs(3))
        .expect_err("the stalled commit never becomes durable");
    assert!(old.inner().ownership().is_fenced());
    assert!(
        old.inner().read_next_offset().is_err_and(|e| e.is_fenced()),
        "a fenced owner reads nothing"
    );
    assert!(
        etcd.stats()
            .fenced_writes
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
    old.set_latency(Duration::ZERO);
    drop(seq);
    // What etcd holds is the new owner's 15, not the old owner's 11.
    let check = EtcdStorage::new(Arc::clone(&etcd), keys, Ownership::new(p, new_epoch), 128);
    assert_eq!(
        check.read_numbers(WsId(3), &[common::BLOCK]).unwrap(),
        vec![Number(15)]
    );
    next.close().expect("close");
}

#[test]
fn a_sequencer_moves_between_owners_without_reissuing() {
    let Some(server) = EtcdServer::start() else {
        return;
    };
    let etcd = server.client();
    let keys = Keys::new("move").unwrap();
    let p = PartitionId(0);
    let mut last = 0u64;
    for owner in ["a", "b", "c"] {
        let epoch = take(&etcd, &keys, p, owner);
        let storage = EtcdStorage::new(
            Arc::clone(&etcd),
            keys.clone(),
            Ownership::new(p, epoch),
            128,
        );
        let mut seq = Sequencer::open(storage, common::options()).expect("open");
        for _ in 0..50 {
            let mut tx = seq
                .start_timeout(common::KIND, WsId(7), common::WAIT)
                .expect("start");
            let n = tx.next(common::BLOCK).expect("next").0;
            assert!(n > last, "{owner}: {n} after {last}");
            last = n;
            tx.flush();
        }
        seq.close().expect("close writes everything");
    }
    assert_eq!(last, 150);
}

#[test]
fn meta_registration_and_lease() {
    let Some(server) = EtcdServer::start() else {
        return;
    };
    let etcd = server.client();
    let keys = Keys::new("meta").unwrap();
    let rt = runtime();
    rt.block_on(async {
        check_meta(&etcd, &keys, 8).await.expect("creates");
        check_meta(&etcd, &keys, 8).await.expect("agrees");
        let e = check_meta(&etcd, &keys, 4).await.unwrap_err();
        assert!(matches!(e, Error::Cluster(_)), "{e}");
        let text = e.to_string();
        assert!(
            text.contains("--partitions 4") && text.contains("8 partitions"),
            "{text}"
        );

        let node_lease = NodeLease::start(&etcd, Duration::from_secs(1))
            .await
            .expect("lease");
        assert_eq!(node_lease.state(), LeaseState::Valid);
        let record = NodeRecord {
            id: "n1".into(),
            address: "127.0.0.1:1".into(),
            admin: "127.0.0.1:2".into(),
            roles: vec![Role::Sequencer],
            accepts_clients: true,
            version: "test".into(),
            started_ms: 0,
        };
        register(&etcd, &keys, &record, node_lease.lease(), Duration::ZERO)
            .await
            .expect("registers");
        // A second node with the same id is refused while the first lives.
        let other = NodeLease::start(&etcd, Duration::from_secs(1))
            .await
            .unwrap();
        let e = register(
            &etcd,
            &keys,
            &record,
            other.lease(),
            Duration::from_millis(300),
        )
        .await
        .unwrap_err();
        assert!(e.to_string().contains("--node-id"), "{e}");

        // The keep-alive holds the lease past several TTLs.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert_eq!(node_lease.state(), LeaseState::Valid);
        let mut c = etcd.client();
        let prefix = keys.nodes();
        let nodes = etcd
            .call("get", async move {
                c.get(prefix, Some(GetOptions::new().with_prefix())).await
            })
            .await
            .unwrap();
        assert_eq!(nodes.kvs().len(), 1);

        // Closing revokes: the registration goes at once, and the id is free again.
        node_lease.close().await;
        register(&etcd, &keys, &record, other.lease(), Duration::ZERO)
            .await
            .expect("the id is free after the first node closed");

        // A lease that is not kept alive ends.
        let mut c = etcd.client();
        let lease = etcd
            .call("grant", async move { c.lease_grant(1, None).await })
            .await
            .unwrap()
            .id();
        let mut c = etcd.client();
        let key = keys.node("ghost");
        etcd.call("put", async move {
            c.put(key, "{}", Some(PutOptions::new().with_lease(lease)))
                .await
        })
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(2600)).await;
        let mut c = etcd.client();
        let key = keys.node("ghost");
        let gone = etcd
            .call("get", async move { c.get(key, None).await })
            .await
            .unwrap();
        assert!(gone.kvs().is_empty(), "an unrenewed lease expires");
    });
}
