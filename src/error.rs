//! The crate's one error type. Each message says what the caller can do about it.

use std::fmt;
use std::time::Duration;

use crate::storage::StorageError;
use crate::types::{Number, PLogOffset, PartitionId, SeqId, WsId, WsKind};

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything a [`crate::Sequencer`] can refuse or fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The sequencer cannot start a transaction right now; nothing was changed. Retry after a
    /// short pause, or use [`crate::Sequencer::start_timeout`], which waits.
    #[error("sequencer busy: {reason}; retry shortly or use start_timeout to wait")]
    Busy {
        /// Why.
        reason: BusyReason,
    },

    /// The workspace kind is not configured in `Options::seq_types`.
    #[error("unknown workspace kind {0}: configure its sequences in Options::seq_types")]
    UnknownKind(WsKind),

    /// The sequence is not configured for this workspace kind.
    #[error("unknown sequence {seq} for workspace kind {kind}: configure it in Options::seq_types")]
    UnknownSeq {
        /// The workspace kind of the transaction.
        kind: WsKind,
        /// The sequence asked for.
        seq: SeqId,
    },

    /// Handing out the requested numbers would pass `u64::MAX`. The sequence is unchanged.
    #[error(
        "sequence {seq} of workspace {ws} is exhausted: its last number is {last} and {requested} \
         more would pass u64::MAX; use another sequence"
    )]
    Exhausted {
        /// The workspace.
        ws: WsId,
        /// The sequence.
        seq: SeqId,
        /// The last number handed out.
        last: Number,
        /// How many numbers were asked for.
        requested: u64,
    },

    /// An I/O operation failed: binding a port, spawning a thread (the sequencer's worker, a
    /// connection thread). The message names what it was doing.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// An argument is out of its documented range. Nothing was changed.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// `Options` failed validation at open. The message names the field and the rule.
    #[error("invalid options: {0}")]
    InvalidOptions(String),

    /// Storage failed while the transaction read a workspace's numbers. The transaction is
    /// still usable if the error is retryable: call `next` again, or `actualize`.
    #[error("{0}")]
    Storage(#[from] StorageError),

    /// A wait for durability ran out of time; the transaction may still become durable.
    #[error(
        "timed out after {waited:?} waiting for offset {offset} to become durable; wait again or check storage health"
    )]
    Timeout {
        /// The offset waited for.
        offset: PLogOffset,
        /// How long the call waited.
        waited: Duration,
    },

    /// The transaction at this offset was discarded by actualization before it became durable,
    /// because its event was not in the PLog. Its numbers may be handed out again.
    #[error(
        "the transaction at offset {offset} was discarded by actualization before it became durable; redo it"
    )]
    Discarded {
        /// The offset of the discarded transaction.
        offset: PLogOffset,
    },

    /// `close` could not persist everything within its deadline. What is listed is lost unless
    /// the PLog has it (the next open replays it from there).
    #[error(
        "closed with {values} unflushed values (offsets from {from_offset}) not persisted; \
         the next open recovers them from the PLog if the events are there"
    )]
    Unpersisted {
        /// Distinct sequence values that were committed but not written.
        values: usize,
        /// The first offset whose values were not written.
        from_offset: PLogOffset,
    },

    /// The background worker panicked; the sequencer accepts no more work. Close it and open a
    /// new one on the same storage (recovery replays the PLog).
    #[error("sequencer poisoned: its background worker panicked ({0}); close it and reopen")]
    Poisoned(String),

    /// One partition of the daemon failed (its flush, its close, its worker): `source` says
    /// how, and what to do.
    #[error("partition {partition}: {source}")]
    Partition {
        /// The partition.
        partition: PartitionId,
        /// What it failed with.
        #[source]
        source: Box<Error>,
    },

    /// `VERSION REPORT` of a version the authority has not handed out (yet) in that domain.
    /// Report only versions [`crate::version::VersionAuthority::commit`] returned.
    #[error(
        "version {version} of domain {domain} was not handed out (the last commit version is \
         {last}); report only versions VERSION COMMIT returned"
    )]
    VersionNotIssued {
        /// The domain.
        domain: u64,
        /// The version reported.
        version: u64,
        /// The last commit version handed out.
        last: u64,
    },

    /// The version authority cannot answer now: it is not started, its storage is failing,
    /// or no durable window arrived in time. Nothing was handed out; retry shortly.
    #[error("version authority unavailable: {0}; retry shortly")]
    VersionsUnavailable(String),

    /// Cluster mode cannot go on as configured: this node disagrees with the cluster stored in
    /// etcd (another `--partitions`, another format), or its `--node-id` is taken by a live
    /// node. The message names both sides and what to change.
    #[error("cluster: {0}")]
    Cluster(String),

    /// A task run on another thread (opening storage, reading the lease cursors, a
    /// partition's worker) panicked. A bug: the message says where; report it.
    #[error("{context} panicked: {message}; this is a bug in seqd, please report it")]
    Panicked {
        /// What the task was doing.
        context: String,
        /// The panic's message.
        message: String,
    },
}

impl Error {
    /// Whether the same call may succeed if made again later (busy, or a retryable storage
    /// error).
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Busy { .. } | Error::Timeout { .. } | Error::VersionsUnavailable(_) => true,
            Error::Storage(e) => e.is_retryable(),
            Error::Partition { source, .. } => source.is_retryable(),
            _ => false,
        }
    }
}

/// Why a sequencer answered [`Error::Busy`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum BusyReason {
    /// Recovery (actualization) is rebuilding state from storage and the PLog.
    Actualizing,
    /// More than `max_unflushed` values wait for the flusher (storage is slow or failing).
    Backpressure {
        /// Values waiting.
        unflushed: usize,
        /// `Options::max_unflushed`.
        limit: usize,
    },
    /// `close` was called.
    Closing,
}

impl fmt::Display for BusyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BusyReason::Actualizing => f.write_str("recovering state from storage and the PLog"),
            BusyReason::Backpressure { unflushed, limit } => {
                write!(
                    f,
                    "{unflushed} unflushed values reached the limit of {limit}"
                )
            }
            BusyReason::Closing => f.write_str("closing"),
        }
    }
}
