//! What a partition reports: [`PartitionStatus`] for `/v1/status` and `/metrics`.

use serde::Serialize;

use super::lease::LeaseStats;
use crate::stats::{SequencerState, Stats};
use crate::types::PartitionId;

/// Counters a partition worker keeps about the requests it answered.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct PartitionCounters {
    pub(crate) nexts: u64,
    pub(crate) peeks: u64,
    pub(crate) numbers: u64,
    pub(crate) busy: u64,
    pub(crate) reservations: u64,
}

/// One partition's state and counters (JSON in `/v1/status`).
#[derive(Clone, Debug, Serialize)]
pub struct PartitionStatus {
    /// Partition id.
    pub partition: u16,
    /// `ready`, `actualizing`, `closing` or `poisoned`.
    pub state: &'static str,
    /// Recovered and serving.
    pub ready: bool,
    /// Workspaces resident in the sequencer's cache.
    pub resident_workspaces: usize,
    /// Values committed but not yet durable.
    pub unflushed: usize,
    /// Every commit at or below this offset is durable.
    pub checkpoint_offset: u64,
    /// The offset the next commit gets.
    pub next_offset: u64,
    /// Last flush write, microseconds.
    pub last_flush_latency_us: u64,
    /// Mean flush write, microseconds.
    pub mean_flush_latency_us: u64,
    /// Flush writes that succeeded.
    pub flush_batches: u64,
    /// Values they wrote.
    pub flushed_values: u64,
    /// Flush writes that failed.
    pub flush_errors: u64,
    /// Batches the flusher gave up on (each led to an actualization).
    pub flush_give_ups: u64,
    /// Actualizations (the first is the recovery at start).
    pub actualizations: u64,
    /// Requests answered -BUSY.
    pub busy_replies: u64,
    /// NEXT requests.
    pub next_requests: u64,
    /// PEEK/CURRENT requests.
    pub peek_requests: u64,
    /// Numbers handed out.
    pub numbers_issued: u64,
    /// Reservations written (sync: one per NEXT; lease: one per window).
    pub reservations: u64,
    /// Sequences holding a lease.
    pub leases: usize,
    /// Leases evicted to stay within --max-leases (their unused ranges are parked).
    pub lease_evictions: u64,
    /// Unused ranges of evicted leases, kept to resume from and saved at shutdown.
    pub parked_leases: usize,
    /// Parked ranges given up beyond --max-leases of them: each a gap of at most one window.
    pub dropped_lease_ranges: u64,
    /// Sequencer cache hits, misses and evictions.
    pub cache_hits: u64,
    /// See `cache_hits`.
    pub cache_misses: u64,
    /// See `cache_hits`.
    pub cache_evictions: u64,
    /// The most recent storage error, if any (it may have been retried successfully since).
    pub last_storage_error: Option<String>,
    /// The last write to storage failed and has not succeeded since (retrying).
    pub storage_failing: bool,
    /// The sequencer's whole snapshot this status was made from: `/metrics` reads any of its
    /// counters (`metrics.rs`) without a field here for each.
    #[serde(skip)]
    pub(crate) sequencer: Stats,
}

/// Why a partition cannot acknowledge numbers now (`None`: it can): it has not restored its
/// cursors (`restored`), it is recovering, or its writes to storage fail. The one rule behind
/// `/readyz`, `/v1/status` `ready` and `seqd_partition_ready`.
pub(crate) fn not_ready_because(
    restored: bool,
    state: SequencerState,
    storage_failing: bool,
) -> Option<String> {
    if !restored || state != SequencerState::Ready {
        Some(format!("recovering ({})", state.as_str()))
    } else if storage_failing {
        Some("storage writes failing, retrying".into())
    } else {
        None
    }
}

impl PartitionStatus {
    pub(crate) fn new(
        id: PartitionId,
        ready: bool,
        s: Stats,
        c: &PartitionCounters,
        leases: LeaseStats,
    ) -> Self {
        let ready = not_ready_because(ready, s.state, s.storage_failing).is_none();
        let sequencer = s.clone();
        let us = |d: std::time::Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        PartitionStatus {
            partition: id.0,
            state: s.state.as_str(),
            ready,
            resident_workspaces: s.resident_workspaces,
            unflushed: s.unflushed,
            checkpoint_offset: s.flushed_offset.0,
            next_offset: s.next_offset.0,
            last_flush_latency_us: us(s.last_flush_latency),
            mean_flush_latency_us: us(s.mean_flush_latency),
            flush_batches: s.flush_batches,
            flushed_values: s.flushed_values,
            flush_errors: s.flush_errors,
            flush_give_ups: s.flush_give_ups,
            actualizations: s.actualizations,
            busy_replies: c.busy,
            next_requests: c.nexts,
            peek_requests: c.peeks,
            numbers_issued: c.numbers,
            reservations: c.reservations,
            leases: leases.leases,
            lease_evictions: leases.evictions,
            parked_leases: leases.parked,
            dropped_lease_ranges: leases.dropped,
            cache_hits: s.cache_hits,
            cache_misses: s.cache_misses,
            cache_evictions: s.cache_evictions,
            last_storage_error: s.last_storage_error,
            storage_failing: s.storage_failing,
            sequencer,
        }
    }
}
