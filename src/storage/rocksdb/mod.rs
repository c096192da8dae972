//! [`RocksDbStorage`]: the durable storage, one RocksDB database per data directory holding
//! any number of partitions. Format and durability argument: `design/storage.md`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use checkpoint::Checkpointer;
use fresh::FreshFloor;
use handle::DbSlot;
use journal::Journal;

use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, DB, DBCompressionType, ErrorKind,
    SliceTransform, WriteOptions,
};

mod checkpoint;
#[cfg(test)]
mod crash_tests;
mod cursors;
mod fresh;
mod handle;
mod journal;
mod partition;
mod versions;

pub use versions::RocksDbVersions;

use super::StorageError;
use super::codec::{self, FORMAT_KEY, FORMAT_VERSION};
use crate::types::PartitionId;

const CF_NUMBERS: &str = "numbers";
const CF_CHECKPOINT: &str = "checkpoint";
const CF_PLOG: &str = "plog";
const CF_CURSORS: &str = "cursors";
const CF_VERSIONS: &str = "versions";
const CF_JOURNAL: &str = "journal";

/// When a write is on disk.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[non_exhaustive]
pub enum Durability {
    /// Every write (checkpoint batch or PLog append) is fsynced before it returns. A returned
    /// write survives power loss. The flusher's group commit is what makes this affordable.
    #[default]
    Sync,
    /// Writes go to the write-ahead log without fsync: they survive a process crash but not
    /// power loss, until the caller calls [`RocksDbStorage::sync`]. Atomicity is unchanged.
    NoSync,
}

/// How a [`RocksDbStorage`] opens its database. Every default is documented on its field.
#[derive(Clone, Debug)]
pub struct RocksDbOptions {
    /// Default: [`Durability::Sync`].
    pub durability: Durability,
    /// Bytes of block cache shared by all column families. Default: 64 MiB. The hot set is
    /// the resident workspaces of the sequencers, so this only serves cache misses.
    pub block_cache_bytes: usize,
    /// LZ4-compress SST blocks. Default: true (keys share long prefixes; LZ4 is cheap).
    pub compression: bool,
    /// Bytes of memtable per column family before it is flushed. Default: 4 MiB. Every
    /// write inserts each of its keys into the memtable, a skip list holding every version
    /// written since the last flush; at 32 MiB (about 700,000 versions) that insert was 40 %
    /// of the daemon's CPU with 100,000 random keys, at 4 MiB it stays shallow and mostly in
    /// the CPU cache (`BENCHMARKS.md`, 4651d37). Raise it for write bursts of many
    /// distinct keys that should not flush more than a few times per second.
    pub write_buffer_bytes: usize,
    /// Total write-ahead log size that forces memtable flushes. Default: 256 MiB.
    pub max_total_wal_bytes: u64,
    /// Overwrite a sequence's value in the memtable when it is there already, instead of
    /// adding a version. Default: false. Pays off when the same sequences are written again
    /// and again between memtable flushes — a daemon in sync mode writes a busy sequence
    /// with every group commit: the memtable then holds each sequence once, fills with
    /// distinct sequences rather than versions, and its flushes and compactions shrink
    /// (`BENCHMARKS.md`). Costs a second skip-list search for every sequence not in the
    /// memtable yet, and the search no longer starts where the previous key of a sorted
    /// batch went in: W4's new workspaces fell from 1.3 to 0.95 M keys/s with it.
    pub inplace_updates: bool,
    /// Make a batch durable as one journal record instead of one `numbers` key per
    /// sequence, and write the numbers into `numbers` in the background (a checkpoint at
    /// least every 250 ms, sorted, each sequence once however often it was written
    /// meanwhile). Default: false. A write then costs one memtable insert instead of one per
    /// sequence — with 100,000 random keys that insert was half of a sync daemon's
    /// connection thread, and the daemon turns the journal on — and reads look in memory
    /// first. It is off by default because large sorted batches of new keys, which the
    /// direct write inserts cheaply, pay for the in-memory map and the checkpoint besides:
    /// W4 fell from 2.1 to 1.8 M keys/s with it (`BENCHMARKS.md`). Either way, journal
    /// records a crash left are checkpointed when the database is opened. Format and crash
    /// argument: `design/storage.md`, "The journal".
    pub journal: bool,
}

impl Default for RocksDbOptions {
    fn default() -> Self {
        Self {
            durability: Durability::Sync,
            block_cache_bytes: 64 << 20,
            compression: true,
            write_buffer_bytes: 4 << 20,
            max_total_wal_bytes: 256 << 20,
            inplace_updates: false,
            journal: false,
        }
    }
}

impl RocksDbOptions {
    fn validate(&self) -> Result<(), StorageError> {
        if self.write_buffer_bytes < (1 << 20) {
            return Err(StorageError::permanent(
                "write_buffer_bytes must be at least 1 MiB",
            ));
        }
        if self.max_total_wal_bytes < self.write_buffer_bytes as u64 {
            return Err(StorageError::permanent(
                "max_total_wal_bytes must be >= write_buffer_bytes",
            ));
        }
        Ok(())
    }
}

/// A RocksDB database in one data directory. Cheap to clone; [`partition`](Self::partition)
/// gives each partition's [`SeqStorage`]. One process owns a directory at a time: opening one
/// that another process holds fails with an "already in use" error.
#[derive(Clone)]
pub struct RocksDbStorage {
    inner: Arc<Inner>,
    /// With the journal on: its thread, stopped (and a final checkpoint written) when the
    /// last handle is dropped.
    _checkpointer: Option<Arc<Checkpointer>>,
}

/// What the handles and the checkpointer share.
struct Inner {
    slot: DbSlot,
    /// Workspaces at or above it were never written: their reads skip RocksDB.
    fresh: FreshFloor,
    path: PathBuf,
    options: RocksDbOptions,
    /// Numbers logged in journal records and not yet checkpointed (empty with the journal
    /// off, once the journal a crash left was recovered at open).
    journal: Journal,
    /// Held by a checkpoint from start to end: one at a time.
    checkpointing: Mutex<()>,
    /// Tests: a simulated crash at the n-th journal write (`crash_tests.rs`).
    #[cfg(test)]
    crash: crash_tests::CrashPoint,
}

/// One partition of a [`RocksDbStorage`]: its checkpoint and its PLog. Numbers are keyed by
/// workspace alone, since a workspace belongs to exactly one partition.
#[derive(Clone)]
pub struct RocksDbPartition {
    storage: RocksDbStorage,
    partition: PartitionId,
}

impl RocksDbStorage {
    /// Opens (creating if needed) the database in `path` with default options.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StorageError> {
        Self::open_with(path, RocksDbOptions::default())
    }

    /// Opens (creating if needed) the database in `path`.
    ///
    /// Errors: the directory is used by another process; it is not a seqd database; it was
    /// written by another format version; RocksDB failed to open it.
    pub fn open_with(
        path: impl AsRef<Path>,
        options: RocksDbOptions,
    ) -> Result<Self, StorageError> {
        Self::open_inner(path, options, true)
    }

    /// Opens the database; with the journal on and `checkpoints`, starts the checkpointer.
    fn open_inner(
        path: impl AsRef<Path>,
        options: RocksDbOptions,
        checkpoints: bool,
    ) -> Result<Self, StorageError> {
        options.validate()?;
        let path = path.as_ref().to_path_buf();
        let db = open_db(&path, &options)?;
        let fresh = FreshFloor::load(&db)?;
        let journal = options.journal;
        let inner = Arc::new(Inner {
            slot: DbSlot::new(db),
            fresh,
            path,
            options,
            journal: Journal::new(),
            checkpointing: Mutex::new(()),
            #[cfg(test)]
            crash: crash_tests::CrashPoint::default(),
        });
        inner.recover_journal()?;
        let checkpointer = if journal && checkpoints {
            Some(Arc::new(Checkpointer::start(&inner)?))
        } else {
            None
        };
        Ok(Self {
            inner,
            _checkpointer: checkpointer,
        })
    }

    /// Partition `p`'s storage.
    pub fn partition(&self, p: PartitionId) -> RocksDbPartition {
        RocksDbPartition {
            storage: self.clone(),
            partition: p,
        }
    }

    /// The data directory.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Fsyncs the write-ahead log: with [`Durability::NoSync`], everything written before this
    /// call survives power loss after it returns.
    pub fn sync(&self) -> Result<(), StorageError> {
        let db = self.db()?;
        let result = db.flush_wal(true);
        self.check_write(db, result)
    }

    /// How many sequences have a stored number (all partitions): one pass over the numbers'
    /// keys, O(stored sequences). For `DBSIZE`; not for a hot path.
    pub fn count_sequences(&self) -> Result<u64, StorageError> {
        // Sequences written since the last checkpoint are in memory only.
        self.inner.checkpoint_all(false)?;
        let db = self.db()?;
        let numbers = cf(&db, CF_NUMBERS)?;
        let mut it = db.raw_iterator_cf(numbers);
        it.seek_to_first();
        let mut n = 0u64;
        while it.valid() {
            n += 1;
            it.next();
        }
        it.status().map_err(map_error)?;
        Ok(n)
    }

    /// The open database, or a retryable error while it is being reopened after an I/O
    /// error (see [`handle`]).
    fn db(&self) -> Result<Arc<DB>, StorageError> {
        self.inner.db()
    }

    fn check_write(
        &self,
        db: Arc<DB>,
        result: Result<(), rocksdb::Error>,
    ) -> Result<(), StorageError> {
        self.inner.check_write(db, result)
    }

    fn write_options(&self) -> WriteOptions {
        self.inner.write_options()
    }
}

impl Inner {
    /// The open database, or a retryable error while it is being reopened after an I/O
    /// error (see [`handle`]).
    fn db(&self) -> Result<Arc<DB>, StorageError> {
        self.slot.get(|| open_db(&self.path, &self.options))
    }

    /// Maps a write's result; after an I/O error (a full disk, say) RocksDB refuses every
    /// further write until the database is reopened, so the handle is reopened (in the
    /// background of the next call) and the error stays retryable.
    fn check_write(
        &self,
        db: Arc<DB>,
        result: Result<(), rocksdb::Error>,
    ) -> Result<(), StorageError> {
        match result {
            Ok(()) => Ok(()),
            Err(e) => {
                if e.kind() == ErrorKind::IOError {
                    self.slot.close(db);
                }
                Err(map_error(e))
            }
        }
    }

    fn write_options(&self) -> WriteOptions {
        let mut w = WriteOptions::default();
        w.set_sync(self.options.durability == Durability::Sync);
        w
    }
}

/// Column family `name` of `db`.
fn cf<'a>(db: &'a DB, name: &str) -> Result<&'a rocksdb::ColumnFamily, StorageError> {
    db.cf_handle(name)
        .ok_or_else(|| StorageError::permanent(format!("column family '{name}' is missing")))
}

/// Opens the database in `path` (creating it if needed) and checks its format.
fn open_db(path: &Path, options: &RocksDbOptions) -> Result<DB, StorageError> {
    let mut db_opts = rocksdb::Options::default();
    db_opts.create_if_missing(true);
    db_opts.create_missing_column_families(true);
    db_opts.set_max_total_wal_size(options.max_total_wal_bytes);
    db_opts.set_keep_log_file_num(4);
    db_opts.set_max_background_jobs(2);
    db_opts.set_bytes_per_sync(1 << 20);
    if options.inplace_updates {
        // In-place memtable updates (the numbers family, below) need it; RocksDB's write
        // group leader then inserts the group's batches one after the other.
        db_opts.set_allow_concurrent_memtable_write(false);
    }

    let existing = rocksdb::DB::list_cf(&rocksdb::Options::default(), path).ok();
    if let Some(cfs) = &existing
        && !cfs.iter().any(|c| c == CF_NUMBERS)
    {
        return Err(StorageError::permanent(format!(
            "{} holds a RocksDB database that is not a seqd data directory \
             (no '{CF_NUMBERS}' column family); point --data-dir elsewhere",
            path.display()
        )));
    }

    let cache = Cache::new_lru_cache(options.block_cache_bytes);
    let cf = |name: &str, prefix: Option<usize>| {
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&cache);
        table.set_bloom_filter(10.0, false);
        table.set_whole_key_filtering(true);
        // Index and filter blocks stay with their table readers, in memory, not in the
        // block cache: when the cache held them, every cache miss of the writer re-read and
        // re-checksummed whole filter blocks of the L0 files (W4: 3,355 keys/s at 1M keys).
        table.set_cache_index_and_filter_blocks(false);
        let mut o = rocksdb::Options::default();
        o.set_block_based_table_factory(&table);
        o.set_write_buffer_size(options.write_buffer_bytes);
        o.set_compression_type(if options.compression {
            DBCompressionType::Lz4
        } else {
            DBCompressionType::None
        });
        if let Some(len) = prefix {
            o.set_prefix_extractor(SliceTransform::create_fixed_prefix(len));
        }
        if name == CF_NUMBERS {
            // A bloom filter over each memtable's keys: the read of a sequence never stored
            // (every new key's first use) answers "absent" without searching the skip list,
            // which was 8 % of the connection thread with 100,000 fresh keys.
            o.set_memtable_prefix_bloom_ratio(0.05);
            o.set_memtable_whole_key_filtering(true);
            // `RocksDbOptions::inplace_updates`. Values are fixed 8 bytes written with `put`
            // only, so every overwrite fits; nothing here reads a snapshot, which in-place
            // updates would not keep consistent.
            o.set_inplace_update_support(options.inplace_updates);
        }
        if name == CF_JOURNAL {
            // Records live until the next checkpoint deletes them, usually in the same
            // memtable, whose flush then drops them: a larger one flushes less of them.
            o.set_write_buffer_size(options.write_buffer_bytes.saturating_mul(4));
        }
        ColumnFamilyDescriptor::new(name, o)
    };
    let cfs = vec![
        cf(CF_NUMBERS, Some(8)),
        cf(CF_CHECKPOINT, None),
        cf(CF_PLOG, Some(2)),
        cf(CF_CURSORS, None),
        cf(CF_VERSIONS, None),
        cf(CF_JOURNAL, None),
    ];
    let db = DB::open_cf_descriptors(&db_opts, path, cfs).map_err(|e| open_error(path, e))?;
    check_format(&db, path, existing.is_some())?;
    Ok(db)
}

/// Writes the format version into a new database; refuses one written by another version.
fn check_format(db: &DB, path: &Path, existed: bool) -> Result<(), StorageError> {
    match db.get(FORMAT_KEY).map_err(map_error)? {
        Some(v) => {
            let version = codec::decode_format(&v)?;
            if version == 1 {
                // Format 1 is format 2 without the journal family, which the open just
                // created (empty): only the version changes.
                let mut w = WriteOptions::default();
                w.set_sync(true);
                return db
                    .put_opt(FORMAT_KEY, FORMAT_VERSION.to_be_bytes(), &w)
                    .map_err(map_error);
            }
            if version != FORMAT_VERSION {
                return Err(StorageError::permanent(format!(
                    "{} was written in seqd storage format {version}; this build reads formats 1 \
                     and {FORMAT_VERSION} only: use a matching seqd version",
                    path.display()
                )));
            }
            Ok(())
        }
        None if existed => Err(StorageError::permanent(format!(
            "{} has seqd column families but no format version: refusing to guess; \
             restore it from a backup or point --data-dir elsewhere",
            path.display()
        ))),
        None => {
            let mut w = WriteOptions::default();
            w.set_sync(true);
            db.put_opt(FORMAT_KEY, FORMAT_VERSION.to_be_bytes(), &w)
                .map_err(map_error)
        }
    }
}

fn open_error(path: &Path, e: rocksdb::Error) -> StorageError {
    let msg = e.to_string();
    if msg.contains("lock") || msg.contains("LOCK") {
        return StorageError::permanent(format!(
            "data directory {} is already in use by another process (one owner per directory); \
             stop it or choose another --data-dir",
            path.display()
        ))
        .with_source(e);
    }
    map_error(e)
}

/// RocksDB status → retryable or not. Busy, timed out, try again, incomplete, aborted and I/O
/// errors (a full or flaky disk) may pass; corruption, invalid arguments and "not supported"
/// will not.
fn map_error(e: rocksdb::Error) -> StorageError {
    let msg = format!("rocksdb: {e}");
    let retryable = matches!(
        e.kind(),
        ErrorKind::Busy
            | ErrorKind::TimedOut
            | ErrorKind::TryAgain
            | ErrorKind::Incomplete
            | ErrorKind::Aborted
            | ErrorKind::Expired
            | ErrorKind::IOError
            | ErrorKind::ShutdownInProgress
    );
    if retryable {
        StorageError::retryable(msg)
    } else {
        StorageError::permanent(msg)
    }
    .with_source(e)
}

impl fmt::Debug for RocksDbStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RocksDbStorage")
            .field("path", &self.inner.path)
            .field("durability", &self.inner.options.durability)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::SeqStorage;
    use crate::types::{PLogOffset, SeqId, WsId};

    fn tmp() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    #[test]
    fn refuses_a_foreign_rocksdb_database() {
        let dir = tmp();
        {
            let mut o = rocksdb::Options::default();
            o.create_if_missing(true);
            let db = DB::open(&o, dir.path()).unwrap();
            db.put(b"k", b"v").unwrap();
        }
        let err = RocksDbStorage::open(dir.path()).unwrap_err();
        assert!(err.message().contains("not a seqd data directory"), "{err}");
        assert!(!err.is_retryable());
    }

    #[test]
    fn refuses_another_format_version() {
        let dir = tmp();
        drop(RocksDbStorage::open(dir.path()).unwrap());
        {
            let s = RocksDbStorage::open(dir.path()).unwrap();
            s.db().unwrap().put(FORMAT_KEY, 3u32.to_be_bytes()).unwrap();
        }
        let err = RocksDbStorage::open(dir.path()).unwrap_err();
        assert!(err.message().contains("format 3"), "{err}");
        {
            // A seqd layout without a version key is refused too.
            let mut o = rocksdb::Options::default();
            o.create_if_missing(true);
            let cfs = [
                CF_NUMBERS,
                CF_CHECKPOINT,
                CF_PLOG,
                CF_CURSORS,
                CF_VERSIONS,
                CF_JOURNAL,
            ];
            let db = DB::open_cf(&o, dir.path(), cfs).unwrap();
            db.delete(FORMAT_KEY).unwrap();
        }
        let err = RocksDbStorage::open(dir.path()).unwrap_err();
        assert!(err.message().contains("no format version"), "{err}");
    }

    /// A format 1 database (no journal family) opens, keeps its numbers and becomes format 2.
    #[test]
    fn upgrades_format_1() {
        let dir = tmp();
        {
            let mut o = rocksdb::Options::default();
            o.create_if_missing(true);
            o.create_missing_column_families(true);
            let cfs = [CF_NUMBERS, CF_CHECKPOINT, CF_PLOG, CF_CURSORS, CF_VERSIONS];
            let db = DB::open_cf(&o, dir.path(), cfs).unwrap();
            db.put(FORMAT_KEY, 1u32.to_be_bytes()).unwrap();
            let numbers = db.cf_handle(CF_NUMBERS).unwrap();
            db.put_cf(
                numbers,
                codec::number_key(WsId(3), SeqId(1)),
                codec::u64_value(41),
            )
            .unwrap();
        }
        let s = RocksDbStorage::open(dir.path()).unwrap();
        let got = s
            .partition(PartitionId(1))
            .read_numbers(WsId(3), &[SeqId(1)])
            .unwrap();
        assert_eq!(got[0].0, 41);
        let format = s.db().unwrap().get(FORMAT_KEY).unwrap().unwrap();
        assert_eq!(codec::decode_format(&format).unwrap(), FORMAT_VERSION);
    }

    /// With in-place memtable updates, every write of a sequence still reads back as its
    /// latest number, also after a reopen replays the write-ahead log and after a flush to
    /// a table file, and each sequence counts once.
    #[test]
    fn in_place_updates_keep_the_latest_number() {
        let dir = tmp();
        let options = RocksDbOptions {
            inplace_updates: true,
            ..RocksDbOptions::default()
        };
        let value = |ws, number| crate::storage::SeqValue {
            ws: WsId(ws),
            seq: SeqId(0),
            number: crate::types::Number(number),
        };
        let read = |s: &RocksDbStorage, ws| {
            let p = s.partition(PartitionId(0));
            p.read_numbers(WsId(ws), &[SeqId(0)]).unwrap()[0].0
        };
        {
            let s = RocksDbStorage::open_with(dir.path(), options.clone()).unwrap();
            let p = s.partition(PartitionId(0));
            for round in 1..=50u64 {
                let batch: Vec<_> = (1..=20).map(|ws| value(ws, round * 100 + ws)).collect();
                p.write_values_and_offset(&batch, PLogOffset(round + 1))
                    .unwrap();
            }
            assert_eq!(read(&s, 7), 5007);
            assert_eq!(s.count_sequences().unwrap(), 20);
        }
        let s = RocksDbStorage::open_with(dir.path(), options.clone()).unwrap();
        assert_eq!(read(&s, 7), 5007, "after the WAL's replay");
        assert_eq!(
            s.partition(PartitionId(0)).read_next_offset().unwrap(),
            PLogOffset(51)
        );
        let db = s.db().unwrap();
        db.flush_cf(cf(&db, CF_NUMBERS).unwrap()).unwrap();
        let p = s.partition(PartitionId(0));
        p.write_values_and_offset(&[value(7, 9000)], PLogOffset(52))
            .unwrap();
        assert_eq!(
            (read(&s, 7), read(&s, 8)),
            (9000, 5008),
            "memtable over table"
        );
        assert_eq!(s.count_sequences().unwrap(), 20);
    }

    #[test]
    fn corrupt_values_are_permanent_errors() {
        let dir = tmp();
        let s = RocksDbStorage::open(dir.path()).unwrap();
        let p = s.partition(PartitionId(0));
        // A valid write first (so the storage knows workspace 1 exists), then garbage over it.
        let v = crate::storage::SeqValue {
            ws: WsId(1),
            seq: SeqId(1),
            number: crate::types::Number(4),
        };
        p.write_values_and_offset(&[v], PLogOffset(2)).unwrap();
        let db = s.db().unwrap();
        db.put_cf(
            cf(&db, CF_NUMBERS).unwrap(),
            codec::number_key(WsId(1), SeqId(1)),
            [1, 2, 3],
        )
        .unwrap();
        let err = p.read_numbers(WsId(1), &[SeqId(1)]).unwrap_err();
        assert!(
            !err.is_retryable() && err.message().contains("corrupt"),
            "{err}"
        );
        db.put_cf(
            cf(&db, CF_PLOG).unwrap(),
            codec::plog_key(PartitionId(0), PLogOffset(1)),
            [9],
        )
        .unwrap();
        let err = p.replay(PLogOffset(1), &mut |_, _| Ok(())).unwrap_err();
        assert!(err.message().contains("version 9"), "{err}");
    }

    #[test]
    fn invalid_options_are_refused_before_opening() {
        let opts = RocksDbOptions {
            write_buffer_bytes: 10,
            ..RocksDbOptions::default()
        };
        let err = RocksDbStorage::open_with(tmp().path(), opts).unwrap_err();
        assert!(err.message().contains("write_buffer_bytes"), "{err}");
        let opts = RocksDbOptions {
            max_total_wal_bytes: 1,
            ..RocksDbOptions::default()
        };
        let err = RocksDbStorage::open_with(tmp().path(), opts).unwrap_err();
        assert!(err.message().contains("max_total_wal_bytes"), "{err}");
    }
}
