//! Lease mode in the partition: the requests the connections could not answer from a durable
//! lease themselves (no lease yet, too few numbers left, numbers still being written), and
//! the top-ups they ask for. What to take and how much to reserve is the lease table's
//! decision ([`Leases::plan_next`](super::super::lease::Leases::plan_next)); this file makes
//! the reservations.
//!
//! The lease table is shared with the connections, so the partition takes its lock only
//! around table updates — never across a sequencer call, which may read storage on a cache
//! miss. Between the two critical sections connections may take numbers from the same lease;
//! that keeps `cursor + left` unchanged, which is what a reservation's `add` uses to tell
//! whether it extends the current range, and only lowers `reservation end − cursor`.

use std::time::Instant;

use super::Partition;
use crate::daemon::lease::Plan;
use crate::error::Error;
use crate::sequencer::Committed;
use crate::storage::StorageError;
use crate::types::{Number, SeqId, WsId};
use crate::util::lock;

impl Partition {
    /// `count` numbers: from the lease if it holds them, else after reserving more; tops the
    /// lease up when less than half a window is left.
    pub(super) fn next_leased(
        &mut self,
        ws: WsId,
        seq: SeqId,
        count: u64,
    ) -> Result<(Number, Option<Committed>), Error> {
        let key = (ws, seq);
        let now = Instant::now();
        let durability = self.seq.checkpoint();
        let plan = lock(&self.leases).plan_next(key, count, now, durability);
        let wanted = match plan {
            Plan::Taken { first, dep, top_up } => {
                if let Some(n) = top_up {
                    self.reserve_ahead(ws, seq, n);
                }
                return Ok((first, dep));
            }
            Plan::Reserve(n) => n,
        };
        let (first, n, ticket) = match self.reserve_raw(ws, seq, wanted) {
            Ok((first, ticket)) => (first, wanted, ticket),
            // Near u64::MAX: reserve only what this request needs.
            Err(Error::Exhausted { .. }) if wanted > count => {
                let (first, ticket) = self.reserve_raw(ws, seq, count)?;
                (first, count, ticket)
            }
            Err(e) => return Err(e),
        };
        self.counters.reservations += 1;
        lock(&self.leases)
            .reserved(key, first.0, n, ticket, count)
            .ok_or_else(|| {
                Error::Storage(StorageError::retryable(
                    "lease reservation did not cover the request; nothing was taken",
                ))
            })
    }

    /// A connection's [`super::Msg::Prefetch`]: tops up the lease of `key` unless a
    /// reservation is already on its way or the lease is gone.
    pub(super) fn prefetch(&mut self, key: (WsId, SeqId)) {
        if !self.serving() {
            return;
        }
        self.sync_generation();
        let n = lock(&self.leases).plan_prefetch(key, Instant::now());
        if let Some(n) = n {
            self.reserve_ahead(key.0, key.1, n);
            // No connection thread committed it, so none will write it: the flusher does,
            // at once, not after its `flush_interval`.
            self.seq.flush_handle().flush_soon();
        }
    }

    /// Reserves `n` numbers after the lease's range (best effort: when the sequencer is busy,
    /// a later request asks again).
    fn reserve_ahead(&mut self, ws: WsId, seq: SeqId, n: u64) {
        let Ok((first, ticket)) = self.reserve_raw(ws, seq, n) else {
            return;
        };
        self.counters.reservations += 1;
        // The lease cannot be gone: leases are created, evicted and cleared only under the
        // partition's lock, which the caller holds.
        let _ = lock(&self.leases).reserved((ws, seq), first.0, n, ticket, 0);
    }
}
