//! [`Stats`]: a snapshot of one sequencer's counters and state.

use std::time::Duration;

use crate::types::PLogOffset;

/// The lifecycle state of a sequencer.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum SequencerState {
    /// Transactions start.
    Ready,
    /// Recovery is running; `start` answers `Busy`.
    Actualizing,
    /// `close` was called.
    Closing,
    /// The background worker panicked; reopen.
    Poisoned,
}

impl SequencerState {
    /// Lower-case name, for logs and status pages.
    pub fn as_str(self) -> &'static str {
        match self {
            SequencerState::Ready => "ready",
            SequencerState::Actualizing => "actualizing",
            SequencerState::Closing => "closing",
            SequencerState::Poisoned => "poisoned",
        }
    }
}

/// A snapshot of a sequencer's state and counters, from [`crate::Sequencer::stats`]. Counters
/// count since the sequencer opened.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Stats {
    /// Lifecycle state.
    pub state: SequencerState,
    /// How many actualizations have discarded state (1 after the recovery at open).
    pub generation: u64,
    /// The offset the next transaction gets.
    pub next_offset: PLogOffset,
    /// Every transaction with an offset at or below this is durable (0: none yet).
    pub flushed_offset: PLogOffset,
    /// Committed values waiting to be written.
    pub unflushed: usize,
    /// Workspaces resident in the cache.
    pub resident_workspaces: usize,
    /// Workspace lookups served from the cache.
    pub cache_hits: u64,
    /// Workspace lookups that had to load (from unflushed state or storage).
    pub cache_misses: u64,
    /// Workspaces evicted to make room.
    pub cache_evictions: u64,
    /// Transactions committed with `flush`.
    pub commits: u64,
    /// `start` calls answered `Busy` because of backpressure.
    pub busy_rejections: u64,
    /// Successful storage writes (flusher batches and replay batches).
    pub flush_batches: u64,
    /// Values written by those batches.
    pub flushed_values: u64,
    /// The most values one batch wrote.
    pub largest_batch: u64,
    /// Failed storage writes.
    pub flush_errors: u64,
    /// Retries after failed writes.
    pub flush_retries: u64,
    /// Batches abandoned (retry budget spent or permanent error), each followed by actualization.
    pub flush_give_ups: u64,
    /// Latency of the last successful write.
    pub last_flush_latency: Duration,
    /// Latency of the slowest successful write.
    pub max_flush_latency: Duration,
    /// Mean latency of successful writes.
    pub mean_flush_latency: Duration,
    /// Actualizations run, the one at open included.
    pub actualizations: u64,
    /// Storage errors met (and retried) while actualizing.
    pub actualize_errors: u64,
    /// PLog events replayed.
    pub replayed_events: u64,
    /// The most recent storage error the background worker met, if any (it may have been
    /// retried successfully since: compare with the error counters).
    pub last_storage_error: Option<String>,
    /// The last write to storage (or recovery read) failed and has not succeeded since: the
    /// sequencer is retrying, and nothing committed meanwhile becomes durable.
    pub storage_failing: bool,
}
