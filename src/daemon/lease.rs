//! Lease mode's table: per sequence, a window of numbers reserved on disk ahead of use.
//!
//! The sequencer's stored number for a sequence is the *end of its reservation*; the lease
//! holds the cursor below it in memory. A request is answered from `cursor` as soon as the
//! reservation covering it is durable — at once in the steady state, because the lease is
//! topped up (and the flusher writes the top-up) when less than half a window is left.
//!
//! **The window bound.** For every lease, between operations,
//!
//! ```text
//! reservation end − cursor ≤ window ≤ MAX_WINDOW
//! ```
//!
//! where the reservation end is one past the last number reserved — durable or still being
//! written — and `cursor` is the next number to hand out. What storage holds for a sequence
//! is at most its reservation end, so a crash skips at most one window per sequence (plus
//! the numbers of requests that were being answered and never acknowledged). It holds
//! because taking only moves the cursor up, and every reservation is a *top-up*
//! ([`Lease::top_up`]): when less than half a window is left it reserves `window − left`
//! more (at least half a window), and a `NEXT` that does not fit reserves
//! `count − left + window`, so that a window is left once its numbers are taken. The window
//! adapts to the sequence's rate at each top-up: it doubles when the last one was used up
//! within [`GROW_BELOW`], halves when it lasted over [`SHRINK_ABOVE`] (but never below
//! twice what is left, so the bound keeps holding), between [`MIN_WINDOW`] and
//! [`MAX_WINDOW`]. `lease/bound_tests.rs` checks the bound after every operation of random
//! operation sequences.
//!
//! A graceful shutdown saves each cursor, so nothing is skipped. Leases are bounded
//! (`--max-leases`): an evicted lease's unused range is *parked* (cursor and end, a few dozen
//! bytes), resumed when the sequence is used again and saved at shutdown like a lease; only
//! parked ranges beyond another `--max-leases` are given up, oldest first (each a gap of at
//! most one window, counted in `dropped_lease_ranges`).
//!
//! The table of a partition is shared ([`LeaseTable`]) between its worker and the
//! connections. A connection answers `NEXT` itself, under the table's lock and without a
//! hop to the worker, when the numbers lie below the lease's `durable_end`. That moves up
//! only when a reservation's write is durable, as whoever looks first finds: the connection
//! itself, which reads the sequencer's checkpoint (atomics) while the lease has a
//! reservation in flight, the partition answering a request, or the worker after flusher
//! progress. A connection asks the worker for the top-up with
//! [`Prefetch`](super::partition::Msg::Prefetch). Everything else — new leases,
//! reservations, numbers still in flight — goes through the partition. No I/O happens under
//! the lock: reservations are made between two short critical sections.

use std::collections::VecDeque;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::sequencer::Committed;
use crate::types::{Number, PLogOffset, SeqId, WsId};

#[cfg(test)]
mod bound_tests;
mod map;
mod resume;
mod table;
#[cfg(test)]
mod tests;

pub(crate) use resume::ResumeFloor;
pub(crate) use table::{LeaseStats, LeaseTable, Leases, Plan, Served};

/// Smallest window: what a sequence used once reserves (and a crash may skip).
pub const MIN_WINDOW: u64 = 16;
/// Largest window: the most numbers a crash may skip per sequence.
pub const MAX_WINDOW: u64 = 1 << 20;
/// A window used up faster than this doubles the next one.
pub const GROW_BELOW: Duration = Duration::from_millis(100);
/// A window that lasted longer than this halves the next one.
pub const SHRINK_ABOVE: Duration = Duration::from_secs(10);

pub(crate) type Key = (WsId, SeqId);

/// One sequence's lease: 48 bytes, so that with its key it fills one cache line of the
/// table ([`map::LeaseMap`]).
#[derive(Debug)]
pub(crate) struct Lease {
    /// The next number to hand out (meaningless when `left` is 0).
    cursor: u64,
    /// Reserved numbers from `cursor` on; `cursor + left` is the reservation end.
    left: u64,
    /// At most `MAX_WINDOW`, at least `left` (the window bound).
    window: u64,
    /// Numbers below this are durably reserved: a connection may hand them out at once.
    durable_end: u64,
    /// When the window was last adapted, in [`millis`].
    last_reserve: u32,
    /// Reservations not yet known to be durable, oldest first: (last number, ticket).
    unconfirmed: Unconfirmed,
    /// A connection asked the worker for a top-up; not asked again until it arrives.
    prefetching: bool,
    /// Listed in [`Leases::pending`].
    listed: bool,
    /// Used since the eviction hand last passed (second chance).
    referenced: bool,
}

impl Lease {
    fn new(now: Instant) -> Self {
        Lease {
            cursor: 0,
            left: 0,
            window: MIN_WINDOW,
            durable_end: 0,
            last_reserve: millis(now),
            unconfirmed: Unconfirmed::default(),
            prefetching: false,
            listed: false,
            referenced: true,
        }
    }

    /// Takes `count` numbers from the reserved range; returns the first and the reservation
    /// that must be durable before they may be acknowledged. The caller checked `left`.
    fn take(&mut self, count: u64) -> (Number, Option<Committed>) {
        let first = self.cursor;
        self.cursor = self.cursor.wrapping_add(count);
        self.left -= count.min(self.left);
        let last = first.saturating_add(count.saturating_sub(1));
        let dep = if last < self.durable_end {
            None
        } else {
            self.unconfirmed
                .iter()
                .find(|(end, _)| *end >= last)
                .map(|(_, c)| *c)
        };
        (Number(first), dep)
    }

    /// The connections' path: takes `count` numbers if they are all durably reserved.
    fn take_durable(&mut self, count: u64) -> Option<u64> {
        let end = self.cursor.checked_add(count)?;
        if count == 0 || self.left < count || end > self.durable_end {
            return None;
        }
        let first = self.cursor;
        self.cursor = end;
        self.left -= count;
        self.referenced = true;
        Some(first)
    }

    /// Forgets reservations that are durable: the sequencer's checkpoint passed them in the
    /// generation they were made in. (After an actualization offsets are reused, so a
    /// reservation of an older generation is never taken for durable here; the partition
    /// drops every lease when the generation changes.)
    fn prune(&mut self, flushed: PLogOffset, generation: u64) {
        while let Some(&(end, c)) = self.unconfirmed.front() {
            if c.generation != generation || c.offset() > flushed {
                break;
            }
            self.unconfirmed.pop_front();
            self.durable_end = self.durable_end.max(end.saturating_add(1));
        }
    }

    /// Whether to top up now: less than half a window is left and nothing is being reserved.
    fn wants_prefetch(&self) -> bool {
        self.unconfirmed.is_empty() && self.left < self.window / 2
    }

    /// Adapts the window to how fast the last one went (see the module docs); never leaves
    /// it below `left`.
    fn next_window(&mut self, now: Instant) -> u64 {
        let now = millis(now);
        // Wrapping: right for any two times less than 49 days apart; a lease idle longer may
        // be taken for a busy one, which only grows its next window (still at most
        // MAX_WINDOW).
        let lasted = Duration::from_millis(u64::from(now.wrapping_sub(self.last_reserve)));
        let halved = (self.window / 2).max(MIN_WINDOW);
        if lasted < GROW_BELOW {
            self.window = self.window.saturating_mul(2).min(MAX_WINDOW);
        } else if lasted > SHRINK_ABOVE && self.left < halved / 2 {
            // Shrinks only while what is left is under half the new window, so the top-up
            // is still at least half a window.
            self.window = halved;
        }
        self.last_reserve = now;
        self.window
    }

    /// How many numbers to reserve so that once `count` more are taken a window is left:
    /// `count − left + window` (`window − left` for a top-up ahead, `count` 0). At least
    /// `count`, so the request fits even if the reservation turns out not contiguous.
    fn top_up(&mut self, count: u64, now: Instant) -> u64 {
        let window = self.next_window(now);
        let n = window.saturating_add(count).saturating_sub(self.left);
        n.max(count)
    }

    /// Adds the reservation `first..first+n-1` made by `ticket`. Contiguous with the current
    /// range it extends it; otherwise (the stored number moved past our range, e.g. after an
    /// ambiguous write) the rest of the current range is given up: a gap, never a reuse.
    fn add(&mut self, first: u64, n: u64, ticket: Committed) {
        let contiguous = self.left > 0 && self.cursor.checked_add(self.left) == Some(first);
        if contiguous {
            self.left += n;
        } else {
            self.cursor = first;
            self.left = n;
            self.durable_end = first;
            self.unconfirmed.clear();
        }
        self.prefetching = false;
        self.unconfirmed
            .push_back((first.saturating_add(n.saturating_sub(1)), ticket));
    }
}

/// Milliseconds since the first call in this process, wrapping every 49 days: a lease keeps
/// its last reservation's time in 4 bytes.
fn millis(t: Instant) -> u32 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    // Truncation is the wrap-around.
    t.saturating_duration_since(epoch).as_millis() as u32
}

/// A lease's reservations not yet known to be durable: none most of the time, so the queue
/// lives out of line and an empty one costs a null pointer.
#[derive(Debug, Default)]
// The box keeps the lease at 48 bytes (a bare `VecDeque` is 32).
#[allow(clippy::box_collection)]
struct Unconfirmed(Option<Box<VecDeque<(u64, Committed)>>>);

impl Unconfirmed {
    fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    fn front(&self) -> Option<&(u64, Committed)> {
        self.0.as_ref()?.front()
    }

    fn back(&self) -> Option<&(u64, Committed)> {
        self.0.as_ref()?.back()
    }

    fn iter(&self) -> impl Iterator<Item = &(u64, Committed)> + '_ {
        self.0.iter().flat_map(|q| q.iter())
    }

    fn push_back(&mut self, item: (u64, Committed)) {
        self.0.get_or_insert_default().push_back(item);
    }

    /// Removes the oldest; the queue's memory goes with its last entry.
    fn pop_front(&mut self) {
        if let Some(q) = &mut self.0 {
            q.pop_front();
            if q.is_empty() {
                self.0 = None;
            }
        }
    }

    fn clear(&mut self) {
        self.0 = None;
    }
}
