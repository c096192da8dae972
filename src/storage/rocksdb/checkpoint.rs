//! The journal on disk: one record per batch, checkpoints into `numbers`, recovery at open,
//! and the checkpointer thread that owns the checkpoints. The in-memory half is
//! [`Journal`](super::journal::Journal); the crash argument is in `design/storage.md`,
//! "The journal".

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rocksdb::{IteratorMode, ReadOptions, WriteBatch};

use super::journal::{CHECKPOINT_EVERY, Logged};
use super::{CF_CHECKPOINT, CF_JOURNAL, CF_NUMBERS, Inner, cf, map_error};
use crate::storage::{SeqValue, StorageError, codec};
use crate::types::{PLogOffset, PartitionId, SeqId, WsId};

/// Longest pause after a failed checkpoint before the next attempt.
const RETRY_AT_MOST: Duration = Duration::from_secs(2);

impl Inner {
    /// Makes `values` and `next_offset` of partition `p` durable as one journal record (one
    /// put; fsynced if `sync` and the database's durability asks for it). Reads find the
    /// values in memory from now until a checkpoint has put them in `numbers`.
    pub(super) fn log_batch(
        &self,
        p: PartitionId,
        values: &[SeqValue],
        next_offset: PLogOffset,
        sync: bool,
    ) -> Result<(), StorageError> {
        let db = self.db()?;
        let journal = cf(&db, CF_JOURNAL)?;
        let record = codec::encode_event(values)?;
        self.fresh.raise(values);
        // The values in memory before the record is written: a value whose write then fails
        // stays readable (and is checkpointed), which can only skip numbers, never reissue
        // one — numbers only grow, and a failed write's numbers were never acknowledged. The
        // offset only after: recovery resumes at the largest offset it finds and takes every
        // transaction below it for written.
        self.journal.log(values)?;
        let mut options = self.write_options();
        if !sync {
            options.set_sync(false);
        }
        self.crash_point()?;
        let result = db.put_cf_opt(journal, codec::plog_key(p, next_offset), record, &options);
        self.check_write(db, result)?;
        self.journal.written(p, next_offset);
        Ok(())
    }

    /// Writes everything the journal holds into `numbers` with each partition's checkpoint
    /// offset, and deletes the journal records up to those offsets, in one atomic batch;
    /// fsynced only if `sync` (otherwise the next fsynced write of any kind makes it durable,
    /// and until then the records it deletes are still on disk). One at a time.
    pub(super) fn checkpoint(&self, sync: bool) -> Result<(), StorageError> {
        let _one = self.checkpointing.lock().unwrap_or_else(|e| e.into_inner());
        let Some(drained) = self.journal.begin() else {
            return Ok(());
        };
        let result = self.write_checkpoint(&drained, sync);
        self.journal.finish(drained, result.is_ok());
        result
    }

    /// Checkpoints until nothing waits: a checkpoint a failure left is written first
    /// ([`Journal::begin`](super::journal::Journal::begin) returns it again), then what was
    /// logged since — two rounds, when nothing is logged meanwhile (at open and at close).
    pub(super) fn checkpoint_all(&self, sync: bool) -> Result<(), StorageError> {
        for _ in 0..2 {
            if self.journal.is_empty() {
                break;
            }
            self.checkpoint(sync)?;
        }
        Ok(())
    }

    fn write_checkpoint(&self, drained: &Logged, sync: bool) -> Result<(), StorageError> {
        let db = self.db()?;
        let (numbers, checkpoint, journal) = (
            cf(&db, CF_NUMBERS)?,
            cf(&db, CF_CHECKPOINT)?,
            cf(&db, CF_JOURNAL)?,
        );
        // Sorted, so that each memtable insert starts its search where the last one went in.
        let mut values: Vec<([u8; 10], u64)> = drained
            .values
            .iter()
            .map(|(&(ws, seq), &n)| (codec::number_key(WsId(ws), SeqId(seq)), n))
            .collect();
        values.sort_unstable_by_key(|v| v.0);
        let mut batch = WriteBatch::default();
        for (key, n) in &values {
            batch.put_cf(numbers, key, codec::u64_value(*n));
        }
        for (&p, &next) in &drained.offsets {
            let p = PartitionId(p);
            batch.put_cf(checkpoint, codec::checkpoint_key(p), codec::u64_value(next));
            // Every record of `p` up to `next`: their values are all in this batch or an
            // earlier checkpoint (a batch's values reach memory before its record is written).
            batch.delete_range_cf(
                journal,
                codec::plog_key(p, PLogOffset(0)).as_slice(),
                journal_end(p, next).as_slice(),
            );
        }
        let mut options = self.write_options();
        if !sync {
            options.set_sync(false);
        }
        self.crash_point()?;
        let result = db.write_opt(batch, &options);
        self.check_write(db, result)
    }

    /// At open: reads every journal record a crash left into memory, then checkpoints them
    /// (fsynced) and removes them, so the database is as if they had been checkpointed before.
    /// Runs whether or not the journal is on: a database written with it may be opened
    /// without it.
    pub(super) fn recover_journal(&self) -> Result<(), StorageError> {
        let db = self.db()?;
        let journal = cf(&db, CF_JOURNAL)?;
        let mut ro = ReadOptions::default();
        ro.set_total_order_seek(true);
        let mut values = Vec::new();
        let mut found = false;
        for item in db.iterator_cf_opt(journal, ro, IteratorMode::Start) {
            let (k, v) = item.map_err(map_error)?;
            let (p, next_offset) = codec::decode_plog_key(&k)?;
            codec::decode_event(&v, &mut values)?;
            self.fresh.raise(&values);
            self.journal.log_recovered(p, &values, next_offset);
            found = true;
        }
        if !found {
            return Ok(());
        }
        drop(db);
        self.checkpoint_all(true)?;
        self.clear_journal()
    }

    /// Deletes every journal record (fsynced): for a graceful close and the end of recovery,
    /// once a checkpoint has written everything in memory.
    pub(super) fn clear_journal(&self) -> Result<(), StorageError> {
        if !self.journal.is_empty() {
            return Err(StorageError::retryable(
                "rocksdb: the journal still holds numbers that are not checkpointed",
            ));
        }
        let db = self.db()?;
        let journal = cf(&db, CF_JOURNAL)?;
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(journal, [0u8; 10].as_slice(), [0xffu8; 11].as_slice());
        let mut options = self.write_options();
        options.set_sync(true);
        self.crash_point()?;
        let result = db.write_opt(batch, &options);
        self.check_write(db, result)
    }
}

#[cfg(not(test))]
impl Inner {
    /// Tests simulate a crash here (`crash_tests.rs`).
    #[inline]
    #[allow(clippy::unnecessary_wraps)]
    fn crash_point(&self) -> Result<(), StorageError> {
        Ok(())
    }

    fn crashed(&self) -> bool {
        false
    }
}

/// The first journal key after partition `p`'s records up to `next` (inclusive).
fn journal_end(p: PartitionId, next: u64) -> Vec<u8> {
    match next.checked_add(1) {
        Some(after) => codec::plog_key(p, PLogOffset(after)).to_vec(),
        None => {
            let mut k = codec::plog_key(p, PLogOffset(u64::MAX)).to_vec();
            k.push(0);
            k
        }
    }
}

/// The thread that checkpoints the journal: at least every [`CHECKPOINT_EVERY`] while
/// numbers wait, at once when many do. Owned by the storage: stopped and joined when the
/// last handle is dropped, which then writes a final checkpoint itself.
pub(super) struct Checkpointer {
    inner: Arc<Inner>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    pub(super) fn start(inner: &Arc<Inner>) -> Result<Self, StorageError> {
        let shared = Arc::clone(inner);
        let thread = std::thread::Builder::new()
            .name("seqd-checkpoint".into())
            .spawn(move || run(&shared))
            .map_err(|e| {
                StorageError::permanent("cannot start the journal's checkpoint thread")
                    .with_source(e)
            })?;
        Ok(Checkpointer {
            inner: Arc::clone(inner),
            thread: Some(thread),
        })
    }
}

fn run(inner: &Inner) {
    let mut pause = CHECKPOINT_EVERY;
    while inner.journal.wait(pause) {
        match inner.checkpoint(false) {
            Ok(()) => pause = CHECKPOINT_EVERY,
            Err(e) => {
                tracing::warn!(error = %e, "journal checkpoint failed; retrying");
                pause = (pause * 2).min(RETRY_AT_MOST);
            }
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.inner.journal.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if self.inner.crashed() {
            return;
        }
        // What is left, then the records themselves; if either fails the records stay and
        // the next open recovers them.
        if let Err(e) = self
            .inner
            .checkpoint_all(true)
            .and_then(|()| self.inner.clear_journal())
        {
            tracing::warn!(error = %e, "final journal checkpoint failed; the next open replays the journal");
        }
    }
}
