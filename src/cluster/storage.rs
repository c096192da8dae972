//! [`EtcdStorage`]: a partition's [`SeqStorage`] in etcd, every write fenced by the writer's
//! ownership.
//!
//! A write is one etcd transaction `If mod_revision(owner/P) == E Then put…`, where `E` is the
//! partition epoch the owner took the partition at ([`Ownership`]). When another node has
//! taken the partition since (the owner key was deleted with an expired lease, or rewritten by
//! a Director), the revision differs and etcd refuses the whole transaction: a paused or
//! partitioned owner can never get a write accepted once its ownership moved, whatever its
//! clock says. The refusal is a [`StorageError::fenced`] error, and the storage refuses every
//! later write at once ([`Ownership::is_fenced`]).
//!
//! Reads are fenced the same way: a node that lost the partition must not read the next
//! owner's checkpoint, or its recovery would take that owner's offsets for its own.
//!
//! etcd limits a transaction to `--max-txn-ops` operations (128 by default). A larger batch
//! is written as several fenced transactions in order, the checkpoint in the last one: a crash
//! between them leaves some values written without the offset that covers them, never the
//! offset without its values (I6). Values are the flusher's — numbers already committed — so
//! writing some of them early hands nothing out twice.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use etcd_client::{Compare, CompareOp, GetOptions, KeyValue, Txn, TxnOp, TxnOpResponse};

use super::etcd::Etcd;
use super::keys::{Keys, seq_in};
use super::records::decode_u64;
use crate::storage::{ReplayFn, SeqStorage, SeqValue, StorageError, StorageLatency};
use crate::types::{Number, PLogOffset, PartitionId, SeqId, WsId};

/// etcd's default `--max-txn-ops`.
pub const DEFAULT_MAX_TXN_OPS: usize = 128;

/// A partition held under an epoch: what every write of its storage is conditional on.
#[derive(Debug)]
pub struct Ownership {
    partition: PartitionId,
    epoch: i64,
    fenced: AtomicBool,
}

impl Ownership {
    /// Partition `partition` owned at `epoch` (the mod revision of its owner key).
    pub fn new(partition: PartitionId, epoch: i64) -> Arc<Ownership> {
        Arc::new(Ownership {
            partition,
            epoch,
            fenced: AtomicBool::new(false),
        })
    }

    /// The partition.
    pub fn partition(&self) -> PartitionId {
        self.partition
    }

    /// The epoch.
    pub fn epoch(&self) -> i64 {
        self.epoch
    }

    /// Whether etcd refused a write under it: the partition has another owner now.
    pub fn is_fenced(&self) -> bool {
        self.fenced.load(Ordering::Acquire)
    }

    fn fence(&self) {
        self.fenced.store(true, Ordering::Release);
    }

    fn fenced_error(&self) -> StorageError {
        StorageError::fenced(format!(
            "partition {} is no longer owned under epoch {}: another node took it over, and \
             etcd refuses this node's writes to it",
            self.partition.0, self.epoch
        ))
    }
}

/// Partition storage in etcd (cluster mode).
pub struct EtcdStorage {
    etcd: Arc<Etcd>,
    keys: Keys,
    ownership: Arc<Ownership>,
    /// Puts per transaction (`--max-txn-ops` of the etcd cluster).
    max_ops: usize,
}

impl EtcdStorage {
    /// The storage of `ownership`'s partition in cluster `keys`, writing at most `max_ops`
    /// operations per transaction (etcd's `--max-txn-ops`; at least 2).
    pub fn new(
        etcd: Arc<Etcd>,
        keys: Keys,
        ownership: Arc<Ownership>,
        max_ops: usize,
    ) -> EtcdStorage {
        EtcdStorage {
            etcd,
            keys,
            ownership,
            max_ops: max_ops.max(2),
        }
    }

    /// The ownership its writes are fenced by.
    pub fn ownership(&self) -> &Arc<Ownership> {
        &self.ownership
    }

    fn fence_compare(&self) -> Compare {
        Compare::mod_revision(
            self.keys.owner(self.ownership.partition),
            CompareOp::Equal,
            self.ownership.epoch,
        )
    }

    /// One fenced transaction of `ops`.
    fn fenced_txn(&self, ops: Vec<TxnOp>) -> Result<(), StorageError> {
        if self.ownership.is_fenced() {
            return Err(self.ownership.fenced_error());
        }
        let txn = Txn::new().when([self.fence_compare()]).and_then(ops);
        let mut client = self.etcd.client();
        let response = self
            .etcd
            .wait("txn", async move { client.txn(txn).await })?;
        self.outcome(response.succeeded())
    }

    /// A fenced write's outcome: refused means the partition has another owner.
    fn outcome(&self, succeeded: bool) -> Result<(), StorageError> {
        if succeeded {
            return Ok(());
        }
        self.ownership.fence();
        self.etcd
            .stats()
            .fenced_writes
            .fetch_add(1, Ordering::Relaxed);
        Err(self.ownership.fenced_error())
    }

    /// A read, fenced like a write: `If mod_revision(owner/P) == E Then get`. A node that
    /// lost the partition must not read another owner's checkpoint either: its recovery would
    /// take that owner's offsets for its own and call its own unwritten commits durable.
    fn fenced_get(
        &self,
        key: String,
        options: Option<GetOptions>,
    ) -> Result<Vec<KeyValue>, StorageError> {
        if self.ownership.is_fenced() {
            return Err(self.ownership.fenced_error());
        }
        let txn = Txn::new()
            .when([self.fence_compare()])
            .and_then([TxnOp::get(key, options)]);
        let mut client = self.etcd.client();
        let response = self
            .etcd
            .wait("read", async move { client.txn(txn).await })?;
        if !response.succeeded() {
            self.ownership.fence();
            return Err(self.ownership.fenced_error());
        }
        Ok(response
            .op_responses()
            .into_iter()
            .find_map(|r| match r {
                TxnOpResponse::Get(mut g) => Some(g.take_kvs()),
                _ => None,
            })
            .unwrap_or_default())
    }

    fn read_u64(&self, key: String) -> Result<Option<u64>, StorageError> {
        match self.fenced_get(key, None)?.first() {
            None => Ok(None),
            Some(kv) => decode_u64(kv.key(), kv.value()).map(Some),
        }
    }
}

impl EtcdStorage {
    /// A graceful handover: writes `exact` — the last number each sequence handed out, below
    /// what its stored reservation may say — and deletes the partition's owner key and
    /// handover request, the delete in the last transaction; every transaction fenced by the
    /// epoch. The next owner starts right after `exact`: nothing skipped. The caller must
    /// have stopped handing out numbers of the partition and let its last write finish.
    pub async fn hand_over(&self, exact: &[SeqValue]) -> Result<(), StorageError> {
        let p = self.ownership.partition;
        let put = |v: &SeqValue| {
            TxnOp::put(
                self.keys.value(p, v.ws, v.seq),
                v.number.0.to_string(),
                None,
            )
        };
        let deletes = 2;
        let mut rest = exact;
        while rest.len() + deletes > self.max_ops {
            let (chunk, tail) = rest.split_at(self.max_ops.min(rest.len()));
            self.fenced_txn_async(chunk.iter().map(put).collect())
                .await?;
            rest = tail;
        }
        let mut ops: Vec<TxnOp> = rest.iter().map(put).collect();
        ops.push(TxnOp::delete(self.keys.owner(p), None));
        ops.push(TxnOp::delete(self.keys.handover(p), None));
        self.fenced_txn_async(ops).await?;
        // Its key is gone: whatever this storage might still be asked to write is refused.
        self.ownership.fence();
        Ok(())
    }

    async fn fenced_txn_async(&self, ops: Vec<TxnOp>) -> Result<(), StorageError> {
        if self.ownership.is_fenced() {
            return Err(self.ownership.fenced_error());
        }
        let txn = Txn::new().when([self.fence_compare()]).and_then(ops);
        let mut client = self.etcd.client();
        let response = self
            .etcd
            .call("txn", async move { client.txn(txn).await })
            .await?;
        self.outcome(response.succeeded())
    }
}

/// The storage of a partition this node does not own: every call is refused as fenced. A
/// daemon keeps its partitions' slots on it between owners.
#[derive(Debug)]
pub struct Vacant {
    partition: PartitionId,
}

impl Vacant {
    /// Partition `partition`'s placeholder.
    pub fn new(partition: PartitionId) -> Vacant {
        Vacant { partition }
    }

    fn refused(&self) -> StorageError {
        StorageError::fenced(format!(
            "partition {} is not owned by this node",
            self.partition.0
        ))
    }
}

impl SeqStorage for Vacant {
    fn read_numbers(&self, _ws: WsId, _seqs: &[SeqId]) -> Result<Vec<Number>, StorageError> {
        Err(self.refused())
    }

    fn write_values_and_offset(
        &self,
        _values: &[SeqValue],
        _next_offset: PLogOffset,
    ) -> Result<(), StorageError> {
        Err(self.refused())
    }

    fn read_next_offset(&self) -> Result<PLogOffset, StorageError> {
        Err(self.refused())
    }

    fn replay(&self, _from: PLogOffset, _apply: &mut ReplayFn<'_>) -> Result<(), StorageError> {
        Err(self.refused())
    }

    fn latency(&self) -> StorageLatency {
        StorageLatency::Remote
    }
}

impl SeqStorage for EtcdStorage {
    fn read_numbers(&self, ws: WsId, seqs: &[SeqId]) -> Result<Vec<Number>, StorageError> {
        let prefix = self.keys.workspace(self.ownership.partition, ws);
        let kvs = self.fenced_get(prefix, Some(GetOptions::new().with_prefix()))?;
        let mut stored = HashMap::with_capacity(kvs.len());
        for kv in &kvs {
            let seq = seq_in(kv.key()).ok_or_else(|| {
                StorageError::permanent(format!(
                    "malformed etcd key {}; was it written by another program?",
                    String::from_utf8_lossy(kv.key())
                ))
            })?;
            stored.insert(seq, decode_u64(kv.key(), kv.value())?);
        }
        Ok(seqs
            .iter()
            .map(|s| Number(stored.get(s).copied().unwrap_or(0)))
            .collect())
    }

    fn write_values_and_offset(
        &self,
        values: &[SeqValue],
        next_offset: PLogOffset,
    ) -> Result<(), StorageError> {
        let p = self.ownership.partition;
        let put = |v: &SeqValue| {
            TxnOp::put(
                self.keys.value(p, v.ws, v.seq),
                v.number.0.to_string(),
                None,
            )
        };
        // All but the last chunk: `max_ops` values each; the last one leaves room for the
        // checkpoint.
        let mut rest = values;
        while rest.len() >= self.max_ops {
            let (chunk, tail) = rest.split_at(self.max_ops);
            self.fenced_txn(chunk.iter().map(put).collect())?;
            rest = tail;
        }
        let mut ops: Vec<TxnOp> = rest.iter().map(put).collect();
        ops.push(TxnOp::put(
            self.keys.checkpoint(p),
            next_offset.0.to_string(),
            None,
        ));
        self.fenced_txn(ops)
    }

    fn read_next_offset(&self) -> Result<PLogOffset, StorageError> {
        let stored = self.read_u64(self.keys.checkpoint(self.ownership.partition))?;
        Ok(stored.map_or(PLogOffset::FIRST, PLogOffset))
    }

    fn replay(&self, _from: PLogOffset, _apply: &mut ReplayFn<'_>) -> Result<(), StorageError> {
        // No partition log in etcd: the daemon keeps none (its numbers are acknowledged only
        // once their write is durable here).
        Ok(())
    }

    fn latency(&self) -> StorageLatency {
        StorageLatency::Remote
    }
}
