//! [`RocksDbVersions`]: the version authority's storage inside a seqd database. Column family
//! `versions`, keys ws (8) ++ seq (2) as for numbers, values u64 big-endian: per domain its
//! durable bound, and the authority's epoch (see `crate::version`). Every write is fsynced,
//! whatever the database's [`Durability`](super::Durability): a window is written once per
//! many thousand versions. It keeps no PLog.

use rocksdb::{WriteBatch, WriteOptions};

use super::{CF_VERSIONS, RocksDbStorage, cf, map_error};
use crate::storage::codec;
use crate::storage::{ReplayFn, SeqStorage, SeqValue, StorageError, StorageLatency};
use crate::types::{Number, PLogOffset, SeqId, WsId};

/// The version authority's [`SeqStorage`] in a [`RocksDbStorage`]
/// ([`RocksDbStorage::versions`]).
#[derive(Clone)]
pub struct RocksDbVersions {
    storage: RocksDbStorage,
}

impl RocksDbStorage {
    /// The storage of a [`VersionAuthority`](crate::version::VersionAuthority) in this
    /// database, apart from every partition's numbers.
    pub fn versions(&self) -> RocksDbVersions {
        RocksDbVersions {
            storage: self.clone(),
        }
    }
}

impl SeqStorage for RocksDbVersions {
    fn read_numbers(&self, ws: WsId, seqs: &[SeqId]) -> Result<Vec<Number>, StorageError> {
        let db = self.storage.db()?;
        let versions = cf(&db, CF_VERSIONS)?;
        seqs.iter()
            .map(|&seq| {
                let stored = db
                    .get_pinned_cf(versions, codec::number_key(ws, seq))
                    .map_err(map_error)?;
                match stored {
                    Some(v) => Ok(Number(codec::decode_u64("version bound", &v)?)),
                    None => Ok(Number(0)),
                }
            })
            .collect()
    }

    fn write_values_and_offset(
        &self,
        values: &[SeqValue],
        _next_offset: PLogOffset,
    ) -> Result<(), StorageError> {
        let db = self.storage.db()?;
        let versions = cf(&db, CF_VERSIONS)?;
        let mut batch = WriteBatch::default();
        for v in values {
            batch.put_cf(
                versions,
                codec::number_key(v.ws, v.seq),
                codec::u64_value(v.number.0),
            );
        }
        let mut synced = WriteOptions::default();
        synced.set_sync(true);
        let result = db.write_opt(batch, &synced);
        self.storage.check_write(db, result)
    }

    fn read_next_offset(&self) -> Result<PLogOffset, StorageError> {
        Ok(PLogOffset(1))
    }

    fn replay(&self, _from: PLogOffset, _apply: &mut ReplayFn<'_>) -> Result<(), StorageError> {
        Ok(())
    }

    fn latency(&self) -> StorageLatency {
        StorageLatency::Local
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::{VersionAuthority, VersionOptions};

    #[test]
    fn versions_survive_a_reopen_apart_from_the_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let last = {
            let db = RocksDbStorage::open(dir.path()).unwrap();
            let a = VersionAuthority::open(db.versions(), VersionOptions::default()).unwrap();
            let mut c = a.commit(0).unwrap();
            for _ in 0..10 {
                c = a.commit(0).unwrap();
            }
            a.close().unwrap();
            assert_eq!(db.count_sequences().unwrap(), 0, "not among the numbers");
            c
        };
        let db = RocksDbStorage::open(dir.path()).unwrap();
        let a = VersionAuthority::open(db.versions(), VersionOptions::default()).unwrap();
        let next = a.commit(0).unwrap();
        assert_eq!((next.last, next.version), (last.version, last.version + 1));
        assert_eq!(next.epoch, last.epoch + 1);
    }
}
