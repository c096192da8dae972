//! [`VersionStore`]: the version authority's storage in etcd, fenced by the Director's
//! election.
//!
//! The Director runs the authority (`crate::version`) on its own node under its epoch `E` —
//! the create revision of the `director` key. Every transaction here, read or write, is
//! `If create_revision(director) == E ...`: once another node is elected (the key was
//! deleted with this node's expired lease and created again), etcd refuses the deposed
//! authority's writes and reads, however late they arrive. Writes are also chained, as a
//! partition's are (`storage/mod.rs`): each puts `versions/chain` and is conditional on its
//! revision being the one this store last saw, so a write that timed out and lands late can
//! never lower a bound below versions already handed out.
//!
//! Keys: `versions/<ws:016x>/<seq:04x>` (the authority's domain bounds and epoch, as decimal
//! text) and `versions/chain`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use etcd_client::{Compare, CompareOp, Txn, TxnOp, TxnOpResponse};

use super::etcd::Etcd;
use super::keys::Keys;
use super::records::decode_u64;
use crate::storage::{ReplayFn, SeqStorage, SeqValue, StorageError, StorageLatency};
use crate::types::{Number, PLogOffset, SeqId, WsId};
use crate::util::lock;

/// The version authority's storage under Director epoch `epoch`.
pub struct VersionStore {
    inner: Arc<Inner>,
}

struct Inner {
    etcd: Arc<Etcd>,
    keys: Keys,
    epoch: i64,
    /// Puts per transaction (etcd's `--max-txn-ops`), the chain key's included.
    max_ops: usize,
    /// The chain key's mod revision as last seen (0: absent); `None` before the first read.
    chain: Mutex<Option<i64>>,
    /// etcd refused a call: another Director was elected.
    fenced: AtomicBool,
}

impl VersionStore {
    /// The store of the authority the Director elected under `epoch` runs, writing at most
    /// `max_ops` operations per transaction (etcd's `--max-txn-ops`; at least 2).
    pub fn new(etcd: Arc<Etcd>, keys: Keys, epoch: i64, max_ops: usize) -> VersionStore {
        VersionStore {
            inner: Arc::new(Inner {
                etcd,
                keys,
                epoch,
                max_ops: max_ops.max(2),
                chain: Mutex::new(None),
                fenced: AtomicBool::new(false),
            }),
        }
    }
}

impl Inner {
    fn fenced_error(&self) -> StorageError {
        StorageError::fenced(format!(
            "the version authority of Director epoch {} was deposed: another node is Director, \
             and etcd refuses this node's version writes",
            self.epoch
        ))
    }

    /// `If create_revision(director) == epoch && compares Then ops`: the responses and the
    /// revision, or `None` when a condition failed.
    async fn txn(
        &self,
        compares: Vec<Compare>,
        ops: Vec<TxnOp>,
    ) -> Result<Option<(Vec<TxnOpResponse>, i64)>, StorageError> {
        if self.fenced.load(Ordering::Acquire) {
            return Err(self.fenced_error());
        }
        let mut all = vec![Compare::create_revision(
            self.keys.director(),
            CompareOp::Equal,
            self.epoch,
        )];
        all.extend(compares);
        let txn = Txn::new().when(all).and_then(ops);
        let mut client = self.etcd.client();
        let response = self
            .etcd
            .call("version txn", async move { client.txn(txn).await })
            .await?;
        let revision = response.header().map_or(0, |h| h.revision());
        Ok(response
            .succeeded()
            .then(|| (response.op_responses(), revision)))
    }

    /// Reads `keys`, fenced; the chain key's revision read with them starts the chain.
    async fn get(&self, keys: Vec<String>) -> Result<Vec<Option<Vec<u8>>>, StorageError> {
        let mut ops: Vec<TxnOp> = keys.into_iter().map(|k| TxnOp::get(k, None)).collect();
        ops.push(TxnOp::get(self.keys.versions_chain(), None));
        let Some((responses, _)) = self.txn(vec![], ops).await? else {
            self.fenced.store(true, Ordering::Release);
            return Err(self.fenced_error());
        };
        let mut found: Vec<Option<(Vec<u8>, i64)>> = responses
            .into_iter()
            .map(|r| match r {
                TxnOpResponse::Get(mut g) => g
                    .take_kvs()
                    .first()
                    .map(|kv| (kv.value().to_vec(), kv.mod_revision())),
                _ => None,
            })
            .collect();
        let chain = found.pop().flatten().map_or(0, |(_, revision)| revision);
        *lock(&self.chain) = Some(chain);
        Ok(found.into_iter().map(|f| f.map(|(v, _)| v)).collect())
    }

    async fn read_numbers(&self, ws: WsId, seqs: &[SeqId]) -> Result<Vec<Number>, StorageError> {
        let keys: Vec<String> = seqs
            .iter()
            .map(|s| self.keys.version_value(ws, *s))
            .collect();
        let values = self.get(keys.clone()).await?;
        keys.iter()
            .zip(values)
            .map(|(k, v)| match v {
                None => Ok(Number(0)),
                Some(v) => decode_u64(k.as_bytes(), &v).map(Number),
            })
            .collect()
    }

    /// `values` in chained, fenced transactions of at most `max_ops` operations, in order
    /// (each domain's bound is one put: a crash between them loses nothing handed out, since
    /// the reserver counts none of them durable before all succeeded).
    async fn write(&self, values: &[SeqValue]) -> Result<(), StorageError> {
        for chunk in values.chunks(self.max_ops - 1) {
            self.write_chunk(chunk).await?;
        }
        Ok(())
    }

    /// One chained, fenced transaction.
    async fn write_chunk(&self, values: &[SeqValue]) -> Result<(), StorageError> {
        let known = *lock(&self.chain);
        let chain = match known {
            Some(c) => c,
            None => {
                self.get(vec![]).await?;
                lock(&self.chain).unwrap_or(0)
            }
        };
        let chain_key = self.keys.versions_chain();
        let mut ops: Vec<TxnOp> = values
            .iter()
            .map(|v| {
                TxnOp::put(
                    self.keys.version_value(v.ws, v.seq),
                    v.number.0.to_string(),
                    None,
                )
            })
            .collect();
        ops.push(TxnOp::put(chain_key.clone(), self.epoch.to_string(), None));
        let compare = Compare::mod_revision(chain_key, CompareOp::Equal, chain);
        if let Some((_, revision)) = self.txn(vec![compare], ops).await? {
            *lock(&self.chain) = Some(revision);
            return Ok(());
        }
        // The fence or the chain: a fenced read tells which (and reloads the chain).
        self.get(vec![]).await?;
        Err(StorageError::retryable(
            "the version authority's chain key moved under it (an earlier write of its own \
             landed late); writing again",
        ))
    }
}

impl SeqStorage for VersionStore {
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
        _next_offset: PLogOffset,
    ) -> Result<(), StorageError> {
        let inner = Arc::clone(&self.inner);
        let values = values.to_vec();
        self.inner
            .etcd
            .block(async move { inner.write(&values).await })
    }

    fn read_next_offset(&self) -> Result<PLogOffset, StorageError> {
        Ok(PLogOffset::FIRST)
    }

    fn replay(&self, _from: PLogOffset, _apply: &mut ReplayFn<'_>) -> Result<(), StorageError> {
        Ok(())
    }

    fn latency(&self) -> StorageLatency {
        StorageLatency::Remote
    }
}
