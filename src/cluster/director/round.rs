//! A Director's round: phases 1 to 5 (discover, layout, lock, versions, publish), every
//! write fenced by the Director's epoch.

use etcd_client::{Compare, CompareOp, GetOptions, PutOptions, Txn, TxnOp};

use super::{Campaign, LOCKS_PER_TXN};
use crate::cluster::layout::plan;
use crate::cluster::records::{
    HandoverRecord, LayoutRecord, NodeRecord, OwnerRecord, decode, encode,
};
use crate::storage::StorageError;
use crate::types::PartitionId;
use crate::util::lock;

impl Campaign {
    /// Phases 1 to 5; returns the revision the next watch starts after.
    pub(super) async fn round(&self, epoch: i64) -> Result<i64, RoundError> {
        // Phase 1: discover.
        let (nodes, revision) = self.read_nodes().await?;
        // Still elected at or after `revision`: a deposition before it is seen here, one
        // after it by the watch that starts there (phase 6).
        self.check_elected(epoch).await?;
        let sequencers: Vec<String> = nodes
            .iter()
            .filter(|(n, _)| n.is_sequencer())
            .map(|(n, _)| n.id.clone())
            .collect();
        tracing::info!(
            epoch,
            phase = "discover",
            nodes = nodes.len(),
            sequencers = sequencers.len()
        );
        // Phase 2: layout.
        let current = self.read_owners().await?;
        let target = plan(&sequencers, &current);
        tracing::info!(epoch, phase = "layout", layout = ?target);
        if target.is_empty() && self.partitions > 0 {
            tracing::warn!(
                epoch,
                "director: no live sequencer node; partitions stay unowned"
            );
        }
        // Phase 3: lock.
        let lease_of = |id: &str| nodes.iter().find(|(n, _)| n.id == id).map(|(_, l)| *l);
        let mut locks = Vec::new();
        let mut handovers = Vec::new();
        for (p, want) in target.iter().enumerate() {
            let p = PartitionId(p as u16);
            match current.get(usize::from(p.0)).cloned().flatten() {
                None => {
                    if let Some(lease) = lease_of(want) {
                        locks.push((p, want.clone(), lease));
                    }
                }
                Some(owner) if owner != *want => handovers.push((p, owner, want.clone())),
                Some(_) => {}
            }
        }
        for chunk in locks.chunks(LOCKS_PER_TXN) {
            self.lock(epoch, chunk).await?;
        }
        self.clear_stale_handovers(epoch, &current, &target).await?;
        self.request_handovers(epoch, &handovers).await?;
        tracing::info!(
            epoch,
            phase = "lock",
            locked = locks.len(),
            handovers = handovers.len()
        );
        // Phase 4: versions.
        self.hooks
            .elected(epoch)
            .await
            .map_err(RoundError::Storage)?;
        // Phase 5: publish (when it changed).
        let unchanged = lock(&self.published)
            .as_ref()
            .is_some_and(|(e, l)| *e == epoch && *l == target);
        if !unchanged {
            let layout = encode(&LayoutRecord {
                director_epoch: epoch,
                partitions: target.clone(),
            });
            self.fenced(epoch, vec![TxnOp::put(self.keys.layout(), layout, None)])
                .await?;
            *lock(&self.published) = Some((epoch, target));
            tracing::info!(epoch, phase = "publish");
        }
        Ok(revision)
    }

    async fn read_nodes(&self) -> Result<(Vec<(NodeRecord, i64)>, i64), RoundError> {
        let mut client = self.etcd.client();
        let prefix = self.keys.nodes();
        let response = self
            .etcd
            .call("read nodes", async move {
                client
                    .get(prefix, Some(GetOptions::new().with_prefix()))
                    .await
            })
            .await?;
        let revision = response.header().map_or(0, |h| h.revision());
        let mut nodes = Vec::new();
        for kv in response.kvs() {
            match decode::<NodeRecord>(kv.key(), kv.value()) {
                Ok(n) => nodes.push((n, kv.lease())),
                Err(e) => tracing::warn!(error = %e, "director: ignoring a malformed node key"),
            }
        }
        Ok((nodes, revision))
    }

    /// The owner of each partition (`None`: unowned).
    async fn read_owners(&self) -> Result<Vec<Option<String>>, RoundError> {
        let mut client = self.etcd.client();
        let prefix = self.keys.owners();
        let response = self
            .etcd
            .call("read owners", async move {
                client
                    .get(prefix, Some(GetOptions::new().with_prefix()))
                    .await
            })
            .await?;
        let mut owners = vec![None; usize::from(self.partitions)];
        let prefix = self.keys.owners();
        for kv in response.kvs() {
            let Some(p) = self.keys.partition_in(&prefix, kv.key()) else {
                continue;
            };
            if let (Some(slot), Ok(record)) = (
                owners.get_mut(usize::from(p.0)),
                decode::<OwnerRecord>(kv.key(), kv.value()),
            ) {
                *slot = Some(record.node);
            }
        }
        Ok(owners)
    }

    /// Creates the owner keys of `locks` (partition, node, that node's lease) in one fenced
    /// transaction; falls back to one transaction each when one of the keys appeared meanwhile.
    async fn lock(
        &self,
        epoch: i64,
        locks: &[(PartitionId, String, i64)],
    ) -> Result<(), RoundError> {
        let mut compares = vec![self.fence(epoch)];
        let mut ops = Vec::new();
        for (p, node, lease) in locks {
            let key = self.keys.owner(*p);
            compares.push(Compare::create_revision(key.clone(), CompareOp::Equal, 0));
            let record = encode(&OwnerRecord {
                node: node.clone(),
                director_epoch: epoch,
            });
            ops.push(TxnOp::put(
                key,
                record,
                Some(PutOptions::new().with_lease(*lease)),
            ));
        }
        if self.txn(compares, ops).await? {
            for (p, node, _) in locks {
                tracing::info!(epoch, partition = p.0, owner = %node, "director: partition placed");
            }
            return Ok(());
        }
        self.check_elected(epoch).await?;
        if locks.len() > 1 {
            for one in locks {
                Box::pin(self.lock(epoch, std::slice::from_ref(one))).await?;
            }
        }
        Ok(())
    }

    /// Asks each `(partition, owner, target)` owner to hand its partition over, once.
    async fn request_handovers(
        &self,
        epoch: i64,
        handovers: &[(PartitionId, String, String)],
    ) -> Result<(), RoundError> {
        for (p, from, to) in handovers {
            let record = encode(&HandoverRecord {
                from: from.clone(),
                to: to.clone(),
                director_epoch: epoch,
            });
            let key = self.keys.handover(*p);
            // Only when no request is pending: a rewrite would not make it faster.
            let compares = vec![
                self.fence(epoch),
                Compare::create_revision(key.clone(), CompareOp::Equal, 0),
            ];
            if self
                .txn(compares, vec![TxnOp::put(key, record, None)])
                .await?
            {
                tracing::info!(epoch, partition = p.0, from = %from, to = %to, "director: handover requested");
            } else {
                self.check_elected(epoch).await?;
            }
        }
        Ok(())
    }

    /// Deletes the handover requests no longer wanted: their owner is gone, or the partition
    /// stays where it is now.
    async fn clear_stale_handovers(
        &self,
        epoch: i64,
        current: &[Option<String>],
        target: &[String],
    ) -> Result<(), RoundError> {
        let mut client = self.etcd.client();
        let prefix = self.keys.handovers();
        let response = self
            .etcd
            .call("read handovers", async move {
                client
                    .get(prefix, Some(GetOptions::new().with_prefix()))
                    .await
            })
            .await?;
        let prefix = self.keys.handovers();
        let mut stale = Vec::new();
        for kv in response.kvs() {
            let Some(p) = self.keys.partition_in(&prefix, kv.key()) else {
                continue;
            };
            let i = usize::from(p.0);
            let owner = current.get(i).cloned().flatten();
            let wanted = match decode::<HandoverRecord>(kv.key(), kv.value()) {
                Ok(h) => {
                    owner.as_deref() == Some(h.from.as_str()) && target.get(i) != owner.as_ref()
                }
                Err(_) => false,
            };
            if !wanted {
                stale.push(kv.key().to_vec());
            }
        }
        for chunk in stale.chunks(LOCKS_PER_TXN) {
            let ops = chunk
                .iter()
                .map(|k| TxnOp::delete(k.clone(), None))
                .collect();
            self.fenced(epoch, ops).await?;
        }
        Ok(())
    }

    pub(super) fn fence(&self, epoch: i64) -> Compare {
        Compare::create_revision(self.keys.director(), CompareOp::Equal, epoch)
    }

    async fn fenced(&self, epoch: i64, ops: Vec<TxnOp>) -> Result<(), RoundError> {
        if self.txn(vec![self.fence(epoch)], ops).await? {
            Ok(())
        } else {
            Err(RoundError::Deposed)
        }
    }

    async fn txn(&self, compares: Vec<Compare>, ops: Vec<TxnOp>) -> Result<bool, RoundError> {
        let txn = Txn::new().when(compares).and_then(ops);
        let mut client = self.etcd.client();
        let response = self
            .etcd
            .call("director txn", async move { client.txn(txn).await })
            .await?;
        Ok(response.succeeded())
    }

    async fn check_elected(&self, epoch: i64) -> Result<(), RoundError> {
        let mut client = self.etcd.client();
        let key = self.keys.director();
        let response = self
            .etcd
            .call("read director", async move { client.get(key, None).await })
            .await?;
        match response.kvs().first() {
            Some(kv) if kv.create_revision() == epoch => Ok(()),
            _ => Err(RoundError::Deposed),
        }
    }
}

/// Why a round did not complete.
pub(super) enum RoundError {
    Deposed,
    Storage(StorageError),
}

impl From<StorageError> for RoundError {
    fn from(e: StorageError) -> Self {
        RoundError::Storage(e)
    }
}
