//! [`EtcdStorage`]: a partition's [`SeqStorage`] in etcd, every write and read fenced by the
//! writer's ownership, and one owner's writes applied in order.
//!
//! **Fence.** Every transaction is `If mod_revision(owner/P) == E ...`, where `E` is the
//! partition epoch the owner took the partition at ([`Ownership`]). When another node has
//! taken the partition since (the owner key was deleted with an expired lease, or created
//! again by a Director), the revision differs and etcd refuses the whole transaction: a
//! paused or partitioned owner can never get a write accepted once its ownership moved,
//! whatever its clock says. The refusal is a [`StorageError::fenced`] error, and the storage
//! refuses everything after it at once ([`Ownership::is_fenced`]). Reads are fenced too: a
//! node that lost the partition must not read the next owner's checkpoint, or its recovery
//! would take that owner's offsets for its own and call its own unwritten commits durable.
//!
//! **Chain.** Within one epoch, writes must apply in the order they were made: a write that
//! timed out may still reach etcd later (stuck behind a slow member, say), and applied after
//! a newer one it would lower the stored values below numbers already acknowledged. So every
//! write also puts the checkpoint key `ck/P` and is conditional on `ck/P` still having the
//! revision this storage last saw ([`Chain`]). A late write finds a newer revision and is
//! refused. When this storage's own condition fails — its last write did land after all — it
//! reads the checkpoint again and reports a retryable error; the flusher retries the batch.
//!
//! **Batches.** etcd limits a transaction to `--max-txn-ops` operations (128 by default). A
//! larger batch is written as several chained transactions in order, the new checkpoint
//! offset in the last one (the earlier ones put the checkpoint unchanged, for the chain): a
//! crash between them leaves some values written without the offset that covers them, never
//! the offset without its values (I6). Values are the flusher's — numbers already
//! committed — so writing some of them early hands nothing out twice.

mod vacant;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use etcd_client::{Compare, CompareOp, GetOptions, KeyValue, Txn, TxnOp, TxnOpResponse};

pub use vacant::Vacant;

use super::etcd::Etcd;
use super::keys::{Keys, seq_in};
use super::records::decode_u64;
use crate::storage::{ReplayFn, SeqStorage, SeqValue, StorageError, StorageLatency};
use crate::types::{Number, PLogOffset, PartitionId, SeqId, WsId};
use crate::util::lock;

/// etcd's default `--max-txn-ops`.
pub const DEFAULT_MAX_TXN_OPS: usize = 128;

/// Times a handover is tried again after finding the checkpoint moved.
const HANDOVER_TRIES: usize = 5;

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

    /// Whether etcd refused a write or read under it: the partition has another owner (or
    /// this owner handed it over).
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

/// The checkpoint key as this storage last wrote or read it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Chain {
    /// Its mod revision (0: absent): the next write's condition.
    revision: i64,
    /// Its value, the next PLog offset.
    offset: u64,
}

/// Partition storage in etcd (cluster mode).
pub struct EtcdStorage {
    inner: Arc<Inner>,
}

struct Inner {
    etcd: Arc<Etcd>,
    keys: Keys,
    ownership: Arc<Ownership>,
    /// Operations per transaction (`--max-txn-ops` of the etcd cluster).
    max_ops: usize,
    chain: Mutex<Option<Chain>>,
}

impl EtcdStorage {
    /// The storage of `ownership`'s partition in cluster `keys`, writing at most `max_ops`
    /// operations per transaction (etcd's `--max-txn-ops`; at least 4).
    pub fn new(
        etcd: Arc<Etcd>,
        keys: Keys,
        ownership: Arc<Ownership>,
        max_ops: usize,
    ) -> EtcdStorage {
        EtcdStorage {
            inner: Arc::new(Inner {
                etcd,
                keys,
                ownership,
                max_ops: max_ops.max(4),
                chain: Mutex::new(None),
            }),
        }
    }

    /// The ownership its writes are fenced by.
    pub fn ownership(&self) -> &Arc<Ownership> {
        &self.inner.ownership
    }

    /// A graceful handover: writes `exact` — the last number each sequence handed out, below
    /// what its stored reservation may say — and deletes the partition's owner key and
    /// handover request, the delete in the last transaction; all of it fenced and chained.
    /// The next owner starts right after `exact`: nothing skipped. The caller must have
    /// stopped handing out numbers of the partition and let its last write finish.
    pub async fn hand_over(&self, exact: &[SeqValue]) -> Result<(), StorageError> {
        let mut tries = 0;
        loop {
            match self.inner.hand_over(exact).await {
                Err(e) if e.is_retryable() && tries < HANDOVER_TRIES => tries += 1,
                done => return done,
            }
        }
    }

    /// Gives the partition up without writing values (when a handover cannot be written):
    /// deletes the owner key and handover request, fenced. Its unused reservations are
    /// skipped by the next owner, never reissued.
    pub async fn give_up(&self) -> Result<(), StorageError> {
        let p = self.inner.ownership.partition;
        let keys = &self.inner.keys;
        let deletes = vec![
            TxnOp::delete(keys.owner(p), None),
            TxnOp::delete(keys.handover(p), None),
        ];
        let response = self.inner.txn(vec![], deletes).await?;
        self.inner.outcome(response.succeeded())?;
        self.inner.ownership.fence();
        Ok(())
    }
}

impl Inner {
    fn fence_compare(&self) -> Compare {
        Compare::mod_revision(
            self.keys.owner(self.ownership.partition),
            CompareOp::Equal,
            self.ownership.epoch,
        )
    }

    /// One transaction: `If fence && compares Then ops`.
    async fn txn(
        &self,
        compares: Vec<Compare>,
        ops: Vec<TxnOp>,
    ) -> Result<etcd_client::TxnResponse, StorageError> {
        if self.ownership.is_fenced() {
            return Err(self.ownership.fenced_error());
        }
        let mut all = vec![self.fence_compare()];
        all.extend(compares);
        let txn = Txn::new().when(all).and_then(ops);
        let mut client = self.etcd.client();
        self.etcd
            .call("txn", async move { client.txn(txn).await })
            .await
    }

    /// A fenced write's outcome when only the fence was its condition.
    fn outcome(&self, succeeded: bool) -> Result<(), StorageError> {
        if succeeded {
            return Ok(());
        }
        self.fenced()
    }

    /// Marks the ownership lost; the error to return.
    fn fenced<T>(&self) -> Result<T, StorageError> {
        self.ownership.fence();
        self.etcd
            .stats()
            .fenced_writes
            .fetch_add(1, Ordering::Relaxed);
        Err(self.ownership.fenced_error())
    }

    /// A read, fenced like a write: `If mod_revision(owner/P) == E Then get`.
    async fn get(
        &self,
        key: String,
        options: Option<GetOptions>,
    ) -> Result<Vec<KeyValue>, StorageError> {
        let response = self.txn(vec![], vec![TxnOp::get(key, options)]).await?;
        if !response.succeeded() {
            return self.fenced();
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

    /// Reads the checkpoint and makes it the chain's start.
    async fn load_chain(&self) -> Result<Chain, StorageError> {
        let kvs = self
            .get(self.keys.checkpoint(self.ownership.partition), None)
            .await?;
        let chain = match kvs.first() {
            None => Chain {
                revision: 0,
                offset: PLogOffset::FIRST.0,
            },
            Some(kv) => Chain {
                revision: kv.mod_revision(),
                offset: decode_u64(kv.key(), kv.value())?,
            },
        };
        *lock(&self.chain) = Some(chain);
        Ok(chain)
    }

    async fn chain(&self) -> Result<Chain, StorageError> {
        let known = *lock(&self.chain);
        match known {
            Some(c) => Ok(c),
            None => self.load_chain().await,
        }
    }

    /// One chained write: `ops`, the checkpoint put to `offset` (unchanged unless this is a
    /// batch's last transaction), and `tail`.
    async fn chained(
        &self,
        mut ops: Vec<TxnOp>,
        offset: Option<u64>,
        tail: Vec<TxnOp>,
    ) -> Result<(), StorageError> {
        let chain = self.chain().await?;
        let offset = offset.unwrap_or(chain.offset);
        let ck = self.keys.checkpoint(self.ownership.partition);
        let compare = Compare::mod_revision(ck.clone(), CompareOp::Equal, chain.revision);
        ops.push(TxnOp::put(ck, offset.to_string(), None));
        ops.extend(tail);
        let response = self.txn(vec![compare], ops).await?;
        if response.succeeded() {
            let revision = response.header().map_or(0, |h| h.revision());
            *lock(&self.chain) = Some(Chain { revision, offset });
            return Ok(());
        }
        // The fence or the chain: a fenced read tells which.
        let now = self.load_chain().await?;
        Err(StorageError::retryable(format!(
            "partition {}: the checkpoint moved under this writer (revision {} expected, {} \
             found: an earlier write of its own landed late); writing again",
            self.ownership.partition.0, chain.revision, now.revision
        )))
    }

    fn put(&self, v: &SeqValue) -> TxnOp {
        let p = self.ownership.partition;
        TxnOp::put(
            self.keys.value(p, v.ws, v.seq),
            v.number.0.to_string(),
            None,
        )
    }

    async fn write(
        &self,
        values: &[SeqValue],
        next_offset: PLogOffset,
    ) -> Result<(), StorageError> {
        // Each transaction: the fence and the chain compared, the checkpoint put.
        let per_txn = self.max_ops - 1;
        let mut rest = values;
        while rest.len() > per_txn {
            let (chunk, tail) = rest.split_at(per_txn);
            self.chained(chunk.iter().map(|v| self.put(v)).collect(), None, vec![])
                .await?;
            rest = tail;
        }
        let ops = rest.iter().map(|v| self.put(v)).collect();
        self.chained(ops, Some(next_offset.0), vec![]).await
    }

    async fn hand_over(&self, exact: &[SeqValue]) -> Result<(), StorageError> {
        let p = self.ownership.partition;
        let per_txn = self.max_ops - 1;
        let mut rest = exact;
        while rest.len() + 2 > per_txn {
            let (chunk, tail) = rest.split_at(per_txn.min(rest.len()));
            self.chained(chunk.iter().map(|v| self.put(v)).collect(), None, vec![])
                .await?;
            rest = tail;
        }
        let deletes = vec![
            TxnOp::delete(self.keys.owner(p), None),
            TxnOp::delete(self.keys.handover(p), None),
        ];
        self.chained(rest.iter().map(|v| self.put(v)).collect(), None, deletes)
            .await?;
        // Its key is gone: whatever this storage might still be asked to write is refused.
        self.ownership.fence();
        Ok(())
    }

    async fn read_numbers(&self, ws: WsId, seqs: &[SeqId]) -> Result<Vec<Number>, StorageError> {
        let prefix = self.keys.workspace(self.ownership.partition, ws);
        let kvs = self
            .get(prefix, Some(GetOptions::new().with_prefix()))
            .await?;
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
}

impl SeqStorage for EtcdStorage {
    fn read_numbers(&self, ws: WsId, seqs: &[SeqId]) -> Result<Vec<Number>, StorageError> {
        let inner = Arc::clone(&self.inner);
        let seqs = seqs.to_vec();
        self.inner
            .etcd
            .block(async move { inner.read_numbers(ws, &seqs).await })
    }

    fn write_values_and_offset(
        &self,
        values: &[SeqValue],
        next_offset: PLogOffset,
    ) -> Result<(), StorageError> {
        let inner = Arc::clone(&self.inner);
        let values = values.to_vec();
        self.inner
            .etcd
            .block(async move { inner.write(&values, next_offset).await })
    }

    fn read_next_offset(&self) -> Result<PLogOffset, StorageError> {
        let inner = Arc::clone(&self.inner);
        self.inner
            .etcd
            .block(async move { inner.load_chain().await })
            .map(|c| PLogOffset(c.offset))
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
