//! [`Backend`]: the storage a daemon runs on — one [`SeqStorage`] per partition, plus the
//! saved cursors of lease mode.

use std::sync::{Arc, Mutex};

use rustc_hash::FxHashMap;

use super::config::{Config, StoreKind};
use crate::error::{Error, Result};
use crate::storage::{MemoryStorage, SeqStorage, SeqValue, StorageError};
use crate::types::PartitionId;
use crate::util::lock;

/// What the daemon needs from storage. Implemented for RocksDB and memory; tests implement
/// it to put fault-injecting storage under a daemon.
pub trait Backend: Send + Sync + 'static {
    /// Partition `p`'s storage. Called once per partition at start.
    fn partition(&self, p: PartitionId) -> Arc<dyn SeqStorage>;

    /// Durably records that numbers from `number` on were never handed out by each
    /// `(ws, seq)` (lease mode, graceful shutdown).
    fn save_cursors(&self, cursors: &[SeqValue]) -> std::result::Result<(), StorageError>;

    /// Returns the saved cursors and durably forgets them.
    fn take_cursors(&self) -> std::result::Result<Vec<SeqValue>, StorageError>;

    /// Lease mode's resume floor: after a crash every sequence resumes at or above it
    /// (`design/daemon.md`, "The resume floor"). `None`: none recorded.
    fn resume_floor(&self) -> std::result::Result<Option<u64>, StorageError> {
        Ok(None)
    }

    /// Durably records the resume floor (`None` forgets it). A backend that keeps none
    /// refuses, and every sequence's first numbers then wait for its own reservation.
    fn set_resume_floor(&self, _floor: Option<u64>) -> std::result::Result<(), StorageError> {
        Err(StorageError::permanent(
            "this storage keeps no resume floor",
        ))
    }

    /// How many sequences have a stored number, over all partitions (`DBSIZE`). May read all
    /// of storage: called off the event loops.
    fn count_sequences(&self) -> std::result::Result<u64, StorageError>;

    /// For logs: what and where.
    fn describe(&self) -> String;

    /// The version authority's storage (`VERSION ...`), apart from every partition's
    /// numbers; `None` when this backend keeps none (the commands then answer that the
    /// authority is not available here). Called once at start.
    fn version_storage(&self) -> Option<Arc<dyn SeqStorage>> {
        None
    }
}

/// Opens the backend `config` asks for.
pub fn open_backend(config: &Config) -> Result<Arc<dyn Backend>> {
    match config.store {
        StoreKind::Memory => Ok(Arc::new(MemoryBackend::default())),
        #[cfg(feature = "rocksdb")]
        StoreKind::Rocksdb => {
            std::fs::create_dir_all(&config.data_dir).map_err(|e| Error::Io {
                context: format!("cannot create data directory {}", config.data_dir.display()),
                source: e,
            })?;
            // The journal: a group commit is one record, and its numbers reach the
            // `numbers` family in sorted, coalesced checkpoints — which in-place memtable
            // updates would only slow down (11 against 6 ticks of checkpoint CPU per
            // 600,000 sync requests on 100,000 keys, BENCHMARKS.md).
            let options = crate::storage::RocksDbOptions {
                journal: true,
                ..Default::default()
            };
            let db = crate::storage::RocksDbStorage::open_with(&config.data_dir, options)?;
            Ok(Arc::new(db))
        }
        #[cfg(not(feature = "rocksdb"))]
        StoreKind::Rocksdb => Err(Error::InvalidOptions(
            "this seqd was built without the `rocksdb` feature; use --store memory".into(),
        )),
    }
}

#[cfg(feature = "rocksdb")]
impl Backend for crate::storage::RocksDbStorage {
    fn partition(&self, p: PartitionId) -> Arc<dyn SeqStorage> {
        Arc::new(crate::storage::RocksDbStorage::partition(self, p))
    }

    fn save_cursors(&self, cursors: &[SeqValue]) -> std::result::Result<(), StorageError> {
        crate::storage::RocksDbStorage::save_cursors(self, cursors)
    }

    fn take_cursors(&self) -> std::result::Result<Vec<SeqValue>, StorageError> {
        crate::storage::RocksDbStorage::take_cursors(self)
    }

    fn resume_floor(&self) -> std::result::Result<Option<u64>, StorageError> {
        Ok(crate::storage::RocksDbStorage::resume_floor(self)?.map(|n| n.0))
    }

    fn set_resume_floor(&self, floor: Option<u64>) -> std::result::Result<(), StorageError> {
        crate::storage::RocksDbStorage::set_resume_floor(self, floor.map(crate::types::Number))
    }

    fn count_sequences(&self) -> std::result::Result<u64, StorageError> {
        crate::storage::RocksDbStorage::count_sequences(self)
    }

    fn version_storage(&self) -> Option<Arc<dyn SeqStorage>> {
        Some(Arc::new(crate::storage::RocksDbStorage::versions(self)))
    }

    fn describe(&self) -> String {
        format!("rocksdb at {}", self.path().display())
    }
}

/// Memory only: one [`MemoryStorage`] per partition; nothing survives the process. The same
/// backend can be handed to a second daemon in one process to test restarts.
#[derive(Default, Debug)]
pub struct MemoryBackend {
    partitions: Mutex<FxHashMap<PartitionId, Arc<MemoryStorage>>>,
    cursors: Mutex<Vec<SeqValue>>,
    floor: Mutex<Option<u64>>,
    versions: Arc<MemoryStorage>,
}

impl Backend for MemoryBackend {
    fn partition(&self, p: PartitionId) -> Arc<dyn SeqStorage> {
        lock(&self.partitions)
            .entry(p)
            .or_insert_with(|| Arc::new(MemoryStorage::new()))
            .clone()
    }

    fn save_cursors(&self, cursors: &[SeqValue]) -> std::result::Result<(), StorageError> {
        lock(&self.cursors).extend_from_slice(cursors);
        Ok(())
    }

    fn take_cursors(&self) -> std::result::Result<Vec<SeqValue>, StorageError> {
        Ok(std::mem::take(&mut *lock(&self.cursors)))
    }

    fn resume_floor(&self) -> std::result::Result<Option<u64>, StorageError> {
        Ok(*lock(&self.floor))
    }

    fn set_resume_floor(&self, floor: Option<u64>) -> std::result::Result<(), StorageError> {
        *lock(&self.floor) = floor;
        Ok(())
    }

    fn count_sequences(&self) -> std::result::Result<u64, StorageError> {
        let parts = lock(&self.partitions);
        Ok(parts.values().map(|p| p.len() as u64).sum())
    }

    fn describe(&self) -> String {
        "memory (nothing survives the process)".into()
    }

    fn version_storage(&self) -> Option<Arc<dyn SeqStorage>> {
        Some(Arc::clone(&self.versions) as Arc<dyn SeqStorage>)
    }
}

/// The daemon's storage in cluster mode: each partition slot starts on
/// [`Vacant`](crate::cluster::Vacant) storage;
/// the driver gives it etcd storage while the node owns it.
#[cfg(feature = "cluster")]
pub(crate) struct ClusterBackend {
    pub(crate) etcd: Arc<crate::cluster::Etcd>,
    pub(crate) keys: crate::cluster::Keys,
}

#[cfg(feature = "cluster")]
impl Backend for ClusterBackend {
    fn partition(&self, p: PartitionId) -> Arc<dyn SeqStorage> {
        Arc::new(crate::cluster::Vacant::new(p))
    }

    fn save_cursors(&self, _cursors: &[SeqValue]) -> std::result::Result<(), StorageError> {
        Err(StorageError::permanent(
            "cluster mode hands partitions over with their exact values instead of saving cursors",
        ))
    }

    fn take_cursors(&self) -> std::result::Result<Vec<SeqValue>, StorageError> {
        Ok(Vec::new())
    }

    fn count_sequences(&self) -> std::result::Result<u64, StorageError> {
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
