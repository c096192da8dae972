//! The database handle, reopened after an I/O error.
//!
//! When a write fails with an I/O error — a full disk is the common case — RocksDB records a
//! background error and refuses every later write, even once the cause is gone; recovering
//! from "no space" needs an `SstFileManager` the `rocksdb` crate does not expose. So the
//! storage takes a handle that failed a write out of service ([`DbSlot::close`]) and the next
//! call opens the database again ([`DbSlot::get`]): RocksDB replays its write-ahead log, which
//! holds every write that was acknowledged, and the flusher's retry finds a working database
//! as soon as there is space again. Until then calls get a retryable error, so the sequencer
//! keeps retrying (and the daemon answers `-BUSY`).
//!
//! Calls in flight keep their `Arc<DB>`; the old instance closes when the last one drops it,
//! and the database is not reopened before that (RocksDB allows one instance per directory).
//! Reopen attempts are spaced [`REOPEN_EVERY`] apart.

use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use rocksdb::DB;

use crate::storage::StorageError;

/// Least time between two attempts to reopen.
const REOPEN_EVERY: Duration = Duration::from_millis(100);

pub(super) struct DbSlot {
    db: RwLock<Option<Arc<DB>>>,
    reopen: Mutex<Reopen>,
}

#[derive(Default)]
struct Reopen {
    last_attempt: Option<Instant>,
    /// The instance taken out of service, until its last user drops it.
    retired: Option<Weak<DB>>,
}

fn reopening() -> StorageError {
    StorageError::retryable(
        "rocksdb: the database is being reopened after an I/O error (is the disk full?)",
    )
}

impl DbSlot {
    pub(super) fn new(db: DB) -> Self {
        DbSlot {
            db: RwLock::new(Some(Arc::new(db))),
            reopen: Mutex::new(Reopen::default()),
        }
    }

    /// The open database; reopens it (with `open`) if a failed write closed it.
    pub(super) fn get(
        &self,
        open: impl FnOnce() -> Result<DB, StorageError>,
    ) -> Result<Arc<DB>, StorageError> {
        if let Some(db) = self.current() {
            return Ok(db);
        }
        // One thread reopens; the others get a retryable error meanwhile.
        let Ok(mut state) = self.reopen.try_lock() else {
            return Err(reopening());
        };
        if let Some(db) = self.current() {
            return Ok(db);
        }
        if state.retired.as_ref().is_some_and(|w| w.strong_count() > 0) {
            return Err(reopening());
        }
        if state
            .last_attempt
            .is_some_and(|t| t.elapsed() < REOPEN_EVERY)
        {
            return Err(reopening());
        }
        state.last_attempt = Some(Instant::now());
        let db = match open() {
            Ok(db) => Arc::new(db),
            // The retired instance may still be closing on the thread that dropped it last.
            Err(e) if e.message().contains("already in use") => return Err(reopening()),
            Err(e) => return Err(e),
        };
        state.retired = None;
        tracing::info!("rocksdb: database reopened after an I/O error");
        *self.db.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::clone(&db));
        Ok(db)
    }

    /// `db` failed a write with an I/O error: takes it out of service, so the next call
    /// reopens the database once every call still using `db` is done.
    pub(super) fn close(&self, db: Arc<DB>) {
        let mut slot = self.db.write().unwrap_or_else(|e| e.into_inner());
        if slot.as_ref().is_some_and(|cur| Arc::ptr_eq(cur, &db)) {
            *slot = None;
            drop(slot);
            tracing::warn!("rocksdb: a write failed with an I/O error; reopening the database");
            let mut state = self.reopen.lock().unwrap_or_else(|e| e.into_inner());
            state.retired = Some(Arc::downgrade(&db));
        }
    }

    fn current(&self) -> Option<Arc<DB>> {
        self.db
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(Arc::clone)
    }
}
