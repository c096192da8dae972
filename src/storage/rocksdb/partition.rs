//! [`RocksDbPartition`]: one partition's [`SeqStorage`] and PLog inside a [`RocksDbStorage`].

use std::fmt;
use std::sync::Arc;

use rocksdb::{Direction, IteratorMode, ReadOptions, WriteBatch};

use super::{CF_CHECKPOINT, CF_NUMBERS, CF_PLOG, RocksDbPartition, RocksDbStorage, cf, map_error};
use crate::storage::codec;
use crate::storage::{ReplayFn, SeqStorage, SeqValue, StorageError, StorageLatency};
use crate::types::{Number, PLogOffset, PartitionId, SeqId, WsId};

impl RocksDbPartition {
    /// The partition id.
    pub fn id(&self) -> PartitionId {
        self.partition
    }

    /// The database this partition lives in.
    pub fn storage(&self) -> &RocksDbStorage {
        &self.storage
    }

    /// Appends a PLog event at `offset` (durably, per the database's [`Durability`]).
    /// Refuses an offset that already holds an event: the log is append-only.
    pub fn append(&self, offset: PLogOffset, values: &[SeqValue]) -> Result<(), StorageError> {
        if offset.0 == 0 {
            return Err(StorageError::permanent("PLog offsets start at 1"));
        }
        let db = self.storage.db()?;
        let plog = cf(&db, CF_PLOG)?;
        let key = codec::plog_key(self.partition, offset);
        if db.get_pinned_cf(plog, key).map_err(map_error)?.is_some() {
            return Err(StorageError::permanent(format!(
                "PLog of partition {} already has an event at offset {offset}",
                self.partition
            )));
        }
        let bytes = codec::encode_event(values)?;
        let result = db.put_cf_opt(plog, key, bytes, &self.storage.write_options());
        self.storage.check_write(db, result)
    }

    /// The offset of this partition's last PLog event, if any.
    pub fn last_plog_offset(&self) -> Result<Option<PLogOffset>, StorageError> {
        let db = self.storage.db()?;
        let plog = cf(&db, CF_PLOG)?;
        let mut ro = ReadOptions::default();
        ro.set_iterate_lower_bound(codec::plog_key(self.partition, PLogOffset(0)).to_vec());
        ro.set_iterate_upper_bound(self.upper_bound());
        ro.set_total_order_seek(true);
        let mut it = db.iterator_cf_opt(plog, ro, IteratorMode::End);
        match it.next() {
            Some(Ok((k, _))) => Ok(Some(codec::decode_plog_key(&k)?.1)),
            Some(Err(e)) => Err(map_error(e)),
            None => Ok(None),
        }
    }

    /// One atomic write of `values` and `next_offset`, fsynced if `sync` and the database's
    /// [`Durability`](super::Durability) asks for it: a journal record, or with the journal
    /// off the values' own keys and the checkpoint.
    fn write(
        &self,
        values: &[SeqValue],
        next_offset: PLogOffset,
        sync: bool,
    ) -> Result<(), StorageError> {
        if self.storage.inner.options.journal {
            self.storage
                .inner
                .log_batch(self.partition, values, next_offset, sync)
        } else {
            self.write_batch(values, next_offset, sync)
        }
    }

    /// Without the journal: `values` and the checkpoint in one batch.
    fn write_batch(
        &self,
        values: &[SeqValue],
        next_offset: PLogOffset,
        sync: bool,
    ) -> Result<(), StorageError> {
        let db = self.storage.db()?;
        let numbers = cf(&db, CF_NUMBERS)?;
        let checkpoint = cf(&db, CF_CHECKPOINT)?;
        self.storage.inner.fresh.raise(values);
        let mut batch = WriteBatch::default();
        for v in values {
            batch.put_cf(
                numbers,
                codec::number_key(v.ws, v.seq),
                codec::u64_value(v.number.0),
            );
        }
        batch.put_cf(
            checkpoint,
            codec::checkpoint_key(self.partition),
            codec::u64_value(next_offset.0),
        );
        let mut options = self.storage.write_options();
        if !sync {
            options.set_sync(false);
        }
        let result = db.write_opt(batch, &options);
        self.storage.check_write(db, result)
    }

    /// `numbers`' values of `seqs` (0: never stored).
    fn read_stored(&self, ws: WsId, seqs: &[SeqId]) -> Result<Vec<Number>, StorageError> {
        let db = self.storage.db()?;
        let numbers = cf(&db, CF_NUMBERS)?;
        let decode = |v: Option<&[u8]>| match v {
            Some(v) => Ok(Number(codec::decode_u64("stored number", v)?)),
            None => Ok(Number(0)),
        };
        // One key: a point read costs about half of a one-key batched MultiGet.
        if let [seq] = seqs {
            let v = db
                .get_pinned_cf(numbers, codec::number_key(ws, *seq))
                .map_err(map_error)?;
            return Ok(vec![decode(v.as_deref())?]);
        }
        let keys: Vec<[u8; 10]> = seqs.iter().map(|s| codec::number_key(ws, *s)).collect();
        let sorted = keys.windows(2).all(|w| w[0] <= w[1]);
        let results = db.batched_multi_get_cf(numbers, &keys, sorted);
        results
            .into_iter()
            .map(|r| decode(r.map_err(map_error)?.as_deref()))
            .collect()
    }

    /// The first key after this partition's PLog range.
    fn upper_bound(&self) -> Vec<u8> {
        match self.partition.0.checked_add(1) {
            Some(next) => next.to_be_bytes().to_vec(),
            None => vec![0xff; 11],
        }
    }
}

impl SeqStorage for RocksDbPartition {
    fn read_numbers(&self, ws: WsId, seqs: &[SeqId]) -> Result<Vec<Number>, StorageError> {
        if self.storage.inner.fresh.never_written(ws) {
            return Ok(vec![Number(0); seqs.len()]);
        }
        // Looked at before `numbers`: a value leaves the journal's memory only after its
        // checkpoint put it there (journal.rs).
        let logged = self.storage.inner.journal.lookup(ws, seqs);
        let stored = self.read_stored(ws, seqs)?;
        Ok(match logged {
            None => stored,
            Some(logged) => stored
                .into_iter()
                .zip(logged)
                .map(|(s, l)| Number(s.0.max(l)))
                .collect(),
        })
    }

    fn write_values_and_offset(
        &self,
        values: &[SeqValue],
        next_offset: PLogOffset,
    ) -> Result<(), StorageError> {
        self.write(values, next_offset, true)
    }

    /// Written to the WAL without waiting for the fsync: the next synced write of any
    /// partition of this database makes it durable, because RocksDB's synced write fsyncs
    /// every live WAL file, and all partitions share the database's WAL. If the database is
    /// reopened in between (after an I/O error), its recovery replays this instance's WAL and
    /// flushes it to fsynced tables before the new instance takes any write.
    fn write_values_and_offset_deferred(
        &self,
        values: &[SeqValue],
        next_offset: PLogOffset,
    ) -> Result<(), StorageError> {
        self.write(values, next_offset, false)
    }

    fn shared_log(&self) -> Option<usize> {
        Some(Arc::as_ptr(&self.storage.inner) as usize)
    }

    fn latency(&self) -> StorageLatency {
        StorageLatency::Local
    }

    fn read_next_offset(&self) -> Result<PLogOffset, StorageError> {
        let logged = self.storage.inner.journal.next_offset(self.partition);
        let db = self.storage.db()?;
        let checkpoint = cf(&db, CF_CHECKPOINT)?;
        let stored = match db.get_pinned_cf(checkpoint, codec::checkpoint_key(self.partition)) {
            Ok(Some(v)) => PLogOffset(codec::decode_u64("checkpoint", &v)?),
            Ok(None) => PLogOffset::FIRST,
            Err(e) => return Err(map_error(e)),
        };
        Ok(logged.map_or(stored, |l| l.max(stored)))
    }

    fn replay(&self, from: PLogOffset, apply: &mut ReplayFn<'_>) -> Result<(), StorageError> {
        let db = self.storage.db()?;
        let plog = cf(&db, CF_PLOG)?;
        let start = codec::plog_key(self.partition, from);
        let mut ro = ReadOptions::default();
        ro.set_iterate_upper_bound(self.upper_bound());
        ro.fill_cache(false);
        let it = db.iterator_cf_opt(plog, ro, IteratorMode::From(&start, Direction::Forward));
        let mut values = Vec::new();
        for item in it {
            let (k, v) = item.map_err(map_error)?;
            let (p, offset) = codec::decode_plog_key(&k)?;
            if p != self.partition {
                break;
            }
            codec::decode_event(&v, &mut values)?;
            apply(offset, &values)?;
        }
        Ok(())
    }
}

impl fmt::Debug for RocksDbPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RocksDbPartition")
            .field("path", &self.storage.path())
            .field("partition", &self.partition)
            .finish()
    }
}
