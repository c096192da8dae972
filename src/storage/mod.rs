//! Where a sequencer keeps its checkpoint, and where it finds the partition log (PLog).
//!
//! A sequencer needs four things from storage ([`SeqStorage`]): read a workspace's numbers, write
//! numbers together with the next PLog offset in one atomic batch, read that offset back, and
//! replay the PLog from an offset. Three implementations ship with the crate:
//!
//! * [`MemoryStorage`]: a map plus an in-memory PLog that tests append to;
//! * [`FaultyStorage`]: wraps any storage and injects failures, latency and crashes;
//! * `RocksDbStorage` (cargo feature `rocksdb`): the durable one.

pub(crate) mod codec;
mod faulty;
mod memory;
#[cfg(feature = "rocksdb")]
mod rocksdb;

use std::fmt;
use std::sync::Arc;

use crate::types::{Number, PLogOffset, SeqId, WsId};

pub use faulty::{FaultOps, FaultyStorage};
pub use memory::MemoryStorage;
#[cfg(feature = "rocksdb")]
pub use rocksdb::{Durability, RocksDbOptions, RocksDbPartition, RocksDbStorage, RocksDbVersions};

/// One sequence's number: "sequence `seq` of workspace `ws` has handed out `number`".
///
/// In a write it is the last number handed out; in a PLog event it is the last number the event
/// used from that sequence.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct SeqValue {
    /// The workspace.
    pub ws: WsId,
    /// The sequence inside the workspace.
    pub seq: SeqId,
    /// The number.
    pub number: Number,
}

/// The callback [`SeqStorage::replay`] calls once per PLog event.
pub type ReplayFn<'a> = dyn FnMut(PLogOffset, &[SeqValue]) -> Result<(), StorageError> + 'a;

/// The storage a [`crate::Sequencer`] checkpoints to and recovers from.
///
/// Implementations must be safe to call from two threads at once: the sequencer's writer reads
/// numbers on a cache miss while its background worker writes batches and replays the log.
/// None of the methods is called re-entrantly (a `replay` callback never calls back into the
/// storage).
pub trait SeqStorage: Send + Sync + 'static {
    /// All numbers of one workspace in one read, in the order of `seqs`. A sequence that was
    /// never written reads as `Number(0)`.
    fn read_numbers(&self, ws: WsId, seqs: &[SeqId]) -> Result<Vec<Number>, StorageError>;

    /// Writes `values` and `next_offset` ATOMICALLY: after a crash either all of them are
    /// visible or none is. Never the offset alone. `values` may be empty (the batch then only
    /// advances the offset); keys are distinct within one call and, from the
    /// flusher, sorted by (workspace, sequence).
    fn write_values_and_offset(
        &self,
        values: &[SeqValue],
        next_offset: PLogOffset,
    ) -> Result<(), StorageError>;

    /// The `next_offset` of the last successful write; [`PLogOffset::FIRST`] for a fresh store.
    fn read_next_offset(&self) -> Result<PLogOffset, StorageError>;

    /// Calls `apply` once per PLog event with offset ≥ `from`, in ascending offset order, and
    /// stops at the first error `apply` returns (passing it back). Calling it again with a
    /// later `from` resumes there. A storage without a log replays nothing.
    fn replay(&self, from: PLogOffset, apply: &mut ReplayFn<'_>) -> Result<(), StorageError>;

    /// A hint that `read_numbers` of `ws` may follow shortly: a storage held in memory can
    /// start fetching the workspace's entry into the CPU's caches, so that miss overlaps with
    /// the sequencer's own cache lookup. Must be cheap, must not block, and cannot fail; the
    /// default does nothing. The writer calls it before looking `ws` up in its cache while its
    /// lookups have been missing.
    fn prefetch(&self, ws: WsId) {
        let _ = ws;
    }

    /// Like [`write_values_and_offset`](Self::write_values_and_offset), atomic in the same
    /// way, but it may return before the write is durable. It becomes durable no later than
    /// the next successful `write_values_and_offset` to any storage with the same
    /// [`shared_log`](Self::shared_log), and a caller acknowledges nothing of it before that
    /// write returned. The default is the durable write.
    fn write_values_and_offset_deferred(
        &self,
        values: &[SeqValue],
        next_offset: PLogOffset,
    ) -> Result<(), StorageError> {
        self.write_values_and_offset(values, next_offset)
    }

    /// The log this storage's writes go to, when it shares one with other storages (the
    /// partitions of one RocksDB database share its write-ahead log): storages with equal
    /// `Some` values make each other's deferred writes durable, so several partitions' batches
    /// take one fsync ([`crate::FlushHandle::flush_together`]). `None` (the default): no
    /// other storage shares this one's log.
    fn shared_log(&self) -> Option<usize> {
        None
    }

    /// How long its calls take, which decides which threads may make them
    /// ([`StorageLatency`]). The default is [`StorageLatency::Remote`]: a storage that does
    /// not say is never called from a thread that serves other work meanwhile.
    fn latency(&self) -> StorageLatency {
        StorageLatency::Remote
    }
}

/// How long a storage's calls take, as far as where they may be made is concerned
/// ([`SeqStorage::latency`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StorageLatency {
    /// Memory or a local disk: a read takes microseconds, a durable write one fsync (tens to
    /// hundreds of microseconds). A thread serving many clients (the daemon's connection
    /// threads) may read on a cache miss and write a batch itself before it sleeps: cheaper
    /// than handing the work to another thread and back.
    Local,
    /// A network store: a call takes milliseconds. Only threads that may block make it — the
    /// sequencer's worker, a blocking pool — never an event loop.
    Remote,
}

impl<S: SeqStorage + ?Sized> SeqStorage for Arc<S> {
    fn read_numbers(&self, ws: WsId, seqs: &[SeqId]) -> Result<Vec<Number>, StorageError> {
        (**self).read_numbers(ws, seqs)
    }
    fn write_values_and_offset(
        &self,
        values: &[SeqValue],
        next_offset: PLogOffset,
    ) -> Result<(), StorageError> {
        (**self).write_values_and_offset(values, next_offset)
    }
    fn read_next_offset(&self) -> Result<PLogOffset, StorageError> {
        (**self).read_next_offset()
    }
    fn replay(&self, from: PLogOffset, apply: &mut ReplayFn<'_>) -> Result<(), StorageError> {
        (**self).replay(from, apply)
    }
    fn prefetch(&self, ws: WsId) {
        (**self).prefetch(ws)
    }
    fn write_values_and_offset_deferred(
        &self,
        values: &[SeqValue],
        next_offset: PLogOffset,
    ) -> Result<(), StorageError> {
        (**self).write_values_and_offset_deferred(values, next_offset)
    }
    fn shared_log(&self) -> Option<usize> {
        (**self).shared_log()
    }
    fn latency(&self) -> StorageLatency {
        (**self).latency()
    }
}

/// A storage failure, and whether trying again can help.
///
/// Retryable errors (the device is busy, a call timed out) are retried by the flusher with
/// backoff; permanent ones (corruption, invalid arguments) make it give up at once and hand
/// the partition to the actualizer. A fenced one is permanent too, and says more: the writer
/// no longer owns what it writes to (cluster mode: another node took the partition over), so
/// nothing it holds in memory may be handed out any more.
#[derive(Debug)]
pub struct StorageError {
    kind: ErrorKind,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ErrorKind {
    Retryable,
    Permanent,
    Fenced,
}

impl StorageError {
    fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// A failure that may go away if the same call is made again later.
    pub fn retryable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Retryable, message)
    }

    /// A failure that the same call will hit again.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Permanent, message)
    }

    /// A write refused because the writer lost its ownership (a newer owner holds it): never
    /// retryable. [`is_fenced`](Self::is_fenced) tells it apart.
    pub fn fenced(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Fenced, message)
    }

    /// Whether the write was refused because the writer no longer owns its partition.
    pub fn is_fenced(&self) -> bool {
        self.kind == ErrorKind::Fenced
    }

    /// Attaches the underlying error.
    #[must_use]
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// Whether trying the same call again can succeed.
    pub fn is_retryable(&self) -> bool {
        self.kind == ErrorKind::Retryable
    }

    /// The message, without the retryable/permanent prefix.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            ErrorKind::Retryable => "retryable",
            ErrorKind::Permanent => "permanent",
            ErrorKind::Fenced => "fenced",
        };
        write!(f, "{kind} storage error: {}", self.message)
    }
}

impl std::error::Error for StorageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// `SeqValue { ws, seq, number }` from plain integers, for the storages' unit tests.
#[cfg(test)]
pub(crate) fn test_value(ws: u64, seq: u16, n: u64) -> SeqValue {
    SeqValue {
        ws: WsId(ws),
        seq: SeqId(seq),
        number: Number(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_error_kinds_and_display() {
        let e = StorageError::retryable("disk busy");
        assert!(e.is_retryable());
        assert_eq!(e.to_string(), "retryable storage error: disk busy");
        let e = StorageError::permanent("corrupt").with_source(std::io::Error::other("bad block"));
        assert!(!e.is_retryable());
        assert_eq!(e.message(), "corrupt");
        assert!(std::error::Error::source(&e).is_some());
        let e = StorageError::fenced("partition 3 moved");
        assert!(e.is_fenced() && !e.is_retryable());
        assert_eq!(e.to_string(), "fenced storage error: partition 3 moved");
    }
}
