//! Lease mode in the worker: the requests the connections could not answer from a durable
//! lease themselves (no lease yet, too few numbers left, numbers still being written), and
//! the reservations ahead they ask for.
//!
//! The lease table is shared with the connections, so the worker takes its lock only around
//! table updates — never across a sequencer call, which may read storage on a cache miss.
//! Between the two critical sections connections may take numbers from the same lease; that
//! keeps `cursor + left` unchanged, which is what [`super::super::lease::Lease::add`] uses to
//! tell whether a new reservation extends the current range.

use std::time::Instant;

use super::Partition;
use crate::error::Error;
use crate::sequencer::Committed;
use crate::types::{Number, SeqId, WsId};
use crate::util::lock;

impl Partition {
    /// `count` numbers: from the reserved window if it has them, else after reserving more;
    /// reserves the next window ahead when half of this one is used.
    pub(super) fn next_leased(
        &mut self,
        ws: WsId,
        seq: SeqId,
        count: u64,
    ) -> Result<(Number, Option<Committed>), Error> {
        let key = (ws, seq);
        let now = Instant::now();
        let durability = self.durability();
        let mut leases = lock(&self.leases);
        if let Some(lease) = leases.get_mut(key) {
            if let Some((flushed, generation)) = durability {
                lease.prune(flushed, generation);
            }
            if lease.left >= count {
                let taken = lease.take(count);
                let ahead = lease.wants_prefetch().then(|| lease.next_window(now));
                drop(leases);
                if let Some(n) = ahead {
                    self.reserve_ahead(ws, seq, n);
                }
                return Ok(taken);
            }
        }
        // Reserve `count` plus a window: enough whether or not the reservation turns out
        // contiguous with what is left of the current range.
        let window = leases.entry(key, now).next_window(now);
        drop(leases);
        let wanted = count.saturating_add(window);
        let (first, n, ticket) = match self.reserve_raw(ws, seq, wanted) {
            Ok((first, ticket)) => (first, wanted, ticket),
            // Near u64::MAX: reserve only what this request needs.
            Err(Error::Exhausted { .. }) => {
                let (first, ticket) = self.reserve_raw(ws, seq, count)?;
                (first, count, ticket)
            }
            Err(e) => return Err(e),
        };
        self.counters.reservations += 1;
        let mut leases = lock(&self.leases);
        let lease = leases.entry(key, now);
        lease.add(first.0, n, ticket);
        let taken = lease.take(count);
        leases.mark_pending(key);
        Ok(taken)
    }

    /// A connection's [`super::Msg::Prefetch`]: reserves the next window of `key` unless one
    /// is already on its way or the lease is gone.
    pub(super) fn prefetch(&mut self, key: (WsId, SeqId)) {
        self.sync_generation();
        let now = Instant::now();
        let mut leases = lock(&self.leases);
        let Some(lease) = leases.get_mut(key) else {
            return;
        };
        // Answered now; a connection may ask again if this reservation fails.
        lease.prefetch_done();
        if !lease.wants_prefetch() {
            return;
        }
        let n = lease.next_window(now);
        drop(leases);
        self.reserve_ahead(key.0, key.1, n);
    }

    /// Reserves `n` numbers after the lease's range (best effort: when the sequencer is busy,
    /// a later request asks again).
    fn reserve_ahead(&mut self, ws: WsId, seq: SeqId, n: u64) {
        let Ok((first, ticket)) = self.reserve_raw(ws, seq, n) else {
            return;
        };
        self.counters.reservations += 1;
        let mut leases = lock(&self.leases);
        if let Some(lease) = leases.get_mut((ws, seq)) {
            lease.add(first.0, n, ticket);
            leases.mark_pending((ws, seq));
        }
    }
}
