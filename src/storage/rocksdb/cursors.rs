//! The daemon's lease-mode records.
//!
//! Saved cursors: the exact next number of sequences whose reserved window was not used up,
//! written at a graceful shutdown and consumed at the next start. Format: column family
//! `cursors`, key ws (8) ++ seq (2), value next number (8).
//!
//! The resume floor: after a crash every sequence resumes at or above it (`design/daemon.md`,
//! "The resume floor"). Format: column family `checkpoint`, key `lease-floor` (11 bytes,
//! apart from the partitions' 2-byte checkpoint keys), value the floor (8).

use rocksdb::{IteratorMode, WriteBatch, WriteOptions};

use super::{CF_CHECKPOINT, CF_CURSORS, RocksDbStorage, cf, map_error};
use crate::storage::codec;
use crate::storage::{SeqValue, StorageError};
use crate::types::Number;

impl RocksDbStorage {
    /// Records, in one fsynced batch, that numbers from `number` on were never handed out by
    /// each `(ws, seq)`. [`take_cursors`](Self::take_cursors) reads them back once.
    pub fn save_cursors(&self, cursors: &[SeqValue]) -> Result<(), StorageError> {
        let db = self.db()?;
        let cursors_cf = cf(&db, CF_CURSORS)?;
        let mut batch = WriteBatch::default();
        for c in cursors {
            batch.put_cf(
                cursors_cf,
                codec::number_key(c.ws, c.seq),
                codec::u64_value(c.number.0),
            );
        }
        let result = db.write_opt(batch, &synced());
        self.check_write(db, result)
    }

    /// Reads every saved cursor and deletes them all, durably, before returning: a cursor is
    /// valid for one start only (after it, numbers above it may be handed out).
    pub fn take_cursors(&self) -> Result<Vec<SeqValue>, StorageError> {
        let db = self.db()?;
        let cursors_cf = cf(&db, CF_CURSORS)?;
        let mut out = Vec::new();
        let mut batch = WriteBatch::default();
        for item in db.iterator_cf(cursors_cf, IteratorMode::Start) {
            let (k, v) = item.map_err(map_error)?;
            let (ws, seq) = codec::decode_number_key(&k)?;
            let number = Number(codec::decode_u64("cursor", &v)?);
            out.push(SeqValue { ws, seq, number });
            batch.delete_cf(cursors_cf, k);
        }
        if !out.is_empty() {
            let result = db.write_opt(batch, &synced());
            self.check_write(db, result)?;
        }
        Ok(out)
    }
}

/// The resume floor's key in the `checkpoint` column family.
const FLOOR_KEY: &[u8] = b"lease-floor";

impl RocksDbStorage {
    /// The resume floor recorded by [`set_resume_floor`](Self::set_resume_floor), if any.
    pub fn resume_floor(&self) -> Result<Option<Number>, StorageError> {
        let db = self.db()?;
        let checkpoint = cf(&db, CF_CHECKPOINT)?;
        match db.get_pinned_cf(checkpoint, FLOOR_KEY) {
            Ok(Some(v)) => Ok(Some(Number(codec::decode_u64("resume floor", &v)?))),
            Ok(None) => Ok(None),
            Err(e) => Err(map_error(e)),
        }
    }

    /// Durably records the resume floor (fsynced before it returns); `None` forgets it.
    pub fn set_resume_floor(&self, floor: Option<Number>) -> Result<(), StorageError> {
        let db = self.db()?;
        let checkpoint = cf(&db, CF_CHECKPOINT)?;
        let mut batch = WriteBatch::default();
        match floor {
            Some(n) => batch.put_cf(checkpoint, FLOOR_KEY, codec::u64_value(n.0)),
            None => batch.delete_cf(checkpoint, FLOOR_KEY),
        }
        let result = db.write_opt(batch, &synced());
        self.check_write(db, result)
    }
}

fn synced() -> WriteOptions {
    let mut w = WriteOptions::default();
    w.set_sync(true);
    w
}
