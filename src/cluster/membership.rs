//! Joining a cluster: the cluster's fixed facts ([`check_meta`]) and the node's registration
//! under its lease ([`register`]).

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp, TxnOpResponse};

use super::etcd::Etcd;
use super::keys::Keys;
use super::records::{FORMAT, Meta, NodeRecord, decode, encode};
use crate::error::{Error, Result};

/// Stores the cluster's [`Meta`] when the cluster is new, or checks this node against it: a
/// node started with another `--partitions` than the cluster's refuses to start.
pub async fn check_meta(etcd: &Arc<Etcd>, keys: &Keys, partitions: u16) -> Result<Meta> {
    if !(1..=super::keys::SLOTS).contains(&partitions) {
        return Err(Error::InvalidOptions(format!(
            "--partitions {partitions}: a cluster has 1 to {} partitions (each owns at least \
             one Redis hash slot)",
            super::keys::SLOTS
        )));
    }
    let mine = Meta {
        format: FORMAT,
        partitions,
    };
    let key = keys.meta();
    let txn = Txn::new()
        .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
        .and_then([TxnOp::put(key.clone(), encode(&mine), None)])
        .or_else([TxnOp::get(key.clone(), None)]);
    let mut client = etcd.client();
    let response = etcd
        .call("create the cluster", async move { client.txn(txn).await })
        .await?;
    if response.succeeded() {
        tracing::info!(partitions, cluster = %keys.prefix(), "created the cluster");
        return Ok(mine);
    }
    let stored = response.op_responses().into_iter().find_map(|r| match r {
        TxnOpResponse::Get(g) => g
            .kvs()
            .first()
            .map(|kv| decode::<Meta>(kv.key(), kv.value())),
        _ => None,
    });
    let stored = match stored {
        Some(m) => m?,
        None => return Err(Error::Cluster(format!("{key} vanished while read; retry"))),
    };
    if stored.format != FORMAT {
        return Err(Error::Cluster(format!(
            "the cluster at {} has format {}, this seqd speaks format {FORMAT}; run a seqd \
             version of the cluster's format",
            keys.prefix(),
            stored.format
        )));
    }
    if !(1..=super::keys::SLOTS).contains(&stored.partitions) {
        return Err(Error::Cluster(format!(
            "{key} says {} partitions, which no cluster can have (1 to {}); was it written by \
             another program?",
            stored.partitions,
            super::keys::SLOTS
        )));
    }
    if stored.partitions != partitions {
        return Err(Error::Cluster(format!(
            "this node was started with --partitions {partitions}, but the cluster at {} has \
             {} partitions (fixed when it was created); start it with --partitions {} or \
             choose another --cluster",
            keys.prefix(),
            stored.partitions,
            stored.partitions
        )));
    }
    Ok(stored)
}

/// The cluster's [`Meta`], if the cluster exists.
pub async fn read_meta(etcd: &Arc<Etcd>, keys: &Keys) -> Result<Option<Meta>> {
    let mut client = etcd.client();
    let key = keys.meta();
    let response = etcd
        .call(
            "read the cluster",
            async move { client.get(key, None).await },
        )
        .await?;
    match response.kvs().first() {
        None => Ok(None),
        Some(kv) => Ok(Some(decode::<Meta>(kv.key(), kv.value())?)),
    }
}

/// Puts `record` under `nodes/ID` on `lease`, only if no live node holds that id. While one
/// does (a restarted node whose previous incarnation's lease has not expired yet), retries
/// for up to `wait`, then fails naming the id.
pub async fn register(
    etcd: &Arc<Etcd>,
    keys: &Keys,
    record: &NodeRecord,
    lease: i64,
    wait: Duration,
) -> Result<i64> {
    let key = keys.node(&record.id);
    let value = encode(record);
    let started = tokio::time::Instant::now();
    loop {
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                key.clone(),
                value.clone(),
                Some(PutOptions::new().with_lease(lease)),
            )]);
        let mut client = etcd.client();
        let response = etcd
            .call("register the node", async move { client.txn(txn).await })
            .await?;
        if response.succeeded() {
            let revision = response.header().map_or(0, |h| h.revision());
            tracing::info!(node = %record.id, lease, "registered in the cluster");
            return Ok(revision);
        }
        if started.elapsed() >= wait {
            return Err(Error::Cluster(format!(
                "node id {:?} is held by a live node (its key {key} exists): another seqd runs \
                 with this --node-id; give this one another --node-id, or stop the other",
                record.id
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
