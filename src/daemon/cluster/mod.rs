//! The daemon in cluster mode (SPEC §5; `design/cluster.md`): [`Node`] joins the cluster,
//! the driver makes the node's partitions follow their owner keys, and requests for
//! partitions served elsewhere are forwarded to their owners.
//!
//! Every partition of the cluster has a slot in the daemon's `Partitions`; a slot this node
//! does not own holds a sequencer on [`Vacant`] storage behind a closed gate, and one it owns
//! a sequencer on [`EtcdStorage`](crate::cluster::EtcdStorage) under the epoch it took it at.

mod config;
pub(crate) mod driver;
pub(crate) mod node;
mod route;

use std::sync::Arc;

pub use config::ClusterConfig;
pub(crate) use node::Node;

use super::store::Backend;
use crate::cluster::{Etcd, Keys, Vacant};
use crate::storage::{SeqStorage, SeqValue, StorageError};
use crate::types::PartitionId;

/// The daemon's storage in cluster mode: each partition slot starts on [`Vacant`] storage;
/// the driver gives it etcd storage while the node owns it.
pub(crate) struct ClusterBackend {
    pub(crate) etcd: Arc<Etcd>,
    pub(crate) keys: Keys,
}

impl Backend for ClusterBackend {
    fn partition(&self, p: PartitionId) -> Arc<dyn SeqStorage> {
        Arc::new(Vacant::new(p))
    }

    fn save_cursors(&self, _cursors: &[SeqValue]) -> Result<(), StorageError> {
        Err(StorageError::permanent(
            "cluster mode hands partitions over with their exact values instead of saving cursors",
        ))
    }

    fn take_cursors(&self) -> Result<Vec<SeqValue>, StorageError> {
        Ok(Vec::new())
    }

    fn count_sequences(&self) -> Result<u64, StorageError> {
        let mut client = self.etcd.client();
        let prefix = format!("{}v/", self.keys.prefix());
        let response = self.etcd.wait("count the sequences", async move {
            client
                .get(
                    prefix,
                    Some(
                        etcd_client::GetOptions::new()
                            .with_prefix()
                            .with_count_only(),
                    ),
                )
                .await
        })?;
        Ok(u64::try_from(response.count()).unwrap_or(0))
    }

    fn describe(&self) -> String {
        format!(
            "etcd at {}, cluster prefix {}",
            self.etcd.endpoints().join(","),
            self.keys.prefix()
        )
    }
}
