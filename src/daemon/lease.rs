//! Lease mode's table: per sequence, a window of numbers reserved on disk ahead of use.
//!
//! The sequencer's stored number for a sequence is the *end of its reservation*; the lease
//! holds the cursor below it in memory. A request is answered from `cursor` as soon as the
//! reservation covering it is durable — at once in the steady state, because the next window
//! is reserved (and written by the flusher) when half of the current one is used. The window
//! adapts to the sequence's rate: it doubles when a window lasted under
//! [`GROW_BELOW`] and halves when it lasted over [`SHRINK_ABOVE`], between [`MIN_WINDOW`] and
//! [`MAX_WINDOW`]. A crash loses (skips) at most the unused rest of one window and the one
//! reserved ahead; a graceful shutdown saves each cursor so nothing is skipped.
//!
//! The table of a partition is shared ([`LeaseTable`]) between its worker and the
//! connections. A connection answers `NEXT` itself, under the table's lock and without a
//! hop to the worker, when the numbers lie below the lease's `durable_end` (the worker moves
//! that up only when a reservation's write is durable); it asks the worker for the next
//! window with [`Prefetch`](super::partition::Msg::Prefetch). Everything else — new leases,
//! reservations, numbers still in flight — goes through the worker. No I/O happens under the
//! lock: the worker reserves between two short critical sections.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;

use crate::sequencer::Committed;
use crate::types::{Number, PLogOffset, SeqId, WsId};

/// Smallest window: what a sequence used once reserves (and a crash may skip).
pub const MIN_WINDOW: u64 = 16;
/// Largest window.
pub const MAX_WINDOW: u64 = 1 << 20;
/// A window used up faster than this doubles the next one.
pub const GROW_BELOW: Duration = Duration::from_millis(100);
/// A window that lasted longer than this halves the next one.
pub const SHRINK_ABOVE: Duration = Duration::from_secs(10);

pub(crate) type Key = (WsId, SeqId);

/// One sequence's lease.
#[derive(Debug)]
pub(crate) struct Lease {
    /// The next number to hand out (meaningless when `left` is 0).
    pub(crate) cursor: u64,
    /// Reserved numbers from `cursor` on.
    pub(crate) left: u64,
    pub(crate) window: u64,
    /// Numbers below this are durably reserved: a connection may hand them out at once.
    durable_end: u64,
    last_reserve: Instant,
    /// Reservations not yet known to be durable, oldest first: (last number, ticket).
    unconfirmed: VecDeque<(u64, Committed)>,
    /// A connection asked the worker for the next window; not asked again until it arrives.
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
            last_reserve: now,
            unconfirmed: VecDeque::new(),
            prefetching: false,
            listed: false,
            referenced: true,
        }
    }

    /// Takes `count` numbers from the reserved range; returns the first and the reservation
    /// that must be durable before they may be acknowledged. The caller checked `left`.
    pub(crate) fn take(&mut self, count: u64) -> (Number, Option<Committed>) {
        let first = self.cursor;
        self.cursor = self.cursor.wrapping_add(count);
        self.left -= count.min(self.left);
        let last = first.saturating_add(count - 1);
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
    /// reservation of an older generation is never taken for durable here; the worker drops
    /// every lease when the generation changes.)
    pub(crate) fn prune(&mut self, flushed: PLogOffset, generation: u64) {
        while let Some(&(end, c)) = self.unconfirmed.front() {
            if c.generation != generation || c.offset() > flushed {
                break;
            }
            self.unconfirmed.pop_front();
            self.durable_end = self.durable_end.max(end.saturating_add(1));
        }
    }

    /// Whether the next window should be reserved now: half of the current one is used and
    /// nothing is being reserved.
    pub(crate) fn wants_prefetch(&self) -> bool {
        self.unconfirmed.is_empty() && self.left < self.window / 2
    }

    /// The size of the next reservation, adapting the window to how fast the last one went.
    pub(crate) fn next_window(&mut self, now: Instant) -> u64 {
        let lasted = now.saturating_duration_since(self.last_reserve);
        if lasted < GROW_BELOW {
            self.window = (self.window * 2).min(MAX_WINDOW);
        } else if lasted > SHRINK_ABOVE {
            self.window = (self.window / 2).max(MIN_WINDOW);
        }
        self.last_reserve = now;
        self.window
    }

    /// Adds the reservation `first..first+n-1` made by `ticket`. Contiguous with the current
    /// range it extends it; otherwise (the stored number moved past our range, e.g. after an
    /// ambiguous write) the rest of the current range is given up: a gap, never a reuse.
    pub(crate) fn add(&mut self, first: u64, n: u64, ticket: Committed) {
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
            .push_back((first.saturating_add(n - 1), ticket));
    }

    /// The worker took up a connection's prefetch request.
    pub(crate) fn prefetch_done(&mut self) {
        self.prefetching = false;
    }

    /// Whether reservations are still waiting to become durable.
    pub(crate) fn has_unconfirmed(&self) -> bool {
        !self.unconfirmed.is_empty()
    }
}

/// The leases of one partition, bounded: beyond `capacity`, the least recently reserved lease
/// not used since the eviction hand last passed is dropped (CLOCK).
#[derive(Debug)]
pub(crate) struct Leases {
    map: FxHashMap<Key, Lease>,
    order: VecDeque<Key>,
    capacity: usize,
    pub(crate) evictions: u64,
    /// Keys with reservations not yet known to be durable, pruned on every flusher progress.
    pending: Vec<Key>,
    /// Set when the worker stops (its cursors are being saved): connections must not take.
    closed: bool,
    /// `NEXT` requests and numbers the connections answered themselves.
    pub(crate) served: (u64, u64),
}

/// A partition's leases, shared by its worker and the connections.
pub(crate) type LeaseTable = Arc<Mutex<Leases>>;

/// What a connection's attempt to answer from a lease came to.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Served {
    /// Answered: the first number; `prefetch` asks the worker to reserve the next window.
    Number { first: u64, prefetch: bool },
    /// Not answerable here: send the request to the worker.
    Route,
}

impl Leases {
    pub(crate) fn new(capacity: usize) -> Self {
        Leases {
            map: FxHashMap::default(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
            evictions: 0,
            pending: Vec::new(),
            closed: false,
            served: (0, 0),
        }
    }

    /// A connection's `NEXT`: `count` numbers at once if they are durably reserved.
    pub(crate) fn serve_next(&mut self, key: Key, count: u64) -> Served {
        if self.closed {
            return Served::Route;
        }
        let Some(lease) = self.map.get_mut(&key) else {
            return Served::Route;
        };
        let Some(first) = lease.take_durable(count) else {
            return Served::Route;
        };
        let prefetch = !lease.prefetching && lease.wants_prefetch();
        lease.prefetching |= prefetch;
        self.served.0 += 1;
        self.served.1 += count;
        Served::Number { first, prefetch }
    }

    /// A connection's `PEEK`: the lease's cursor, if it holds reserved numbers.
    pub(crate) fn serve_peek(&mut self, key: Key) -> Option<u64> {
        if self.closed {
            return None;
        }
        self.map.get(&key).filter(|l| l.left > 0).map(|l| l.cursor)
    }

    /// Remembers that `key` has a reservation in flight (see [`Leases::prune_pending`]).
    pub(crate) fn mark_pending(&mut self, key: Key) {
        if let Some(lease) = self.map.get_mut(&key)
            && !lease.listed
        {
            lease.listed = true;
            self.pending.push(key);
        }
    }

    /// After flusher progress: confirms every reservation that is now durable, so the
    /// connections can hand its numbers out.
    pub(crate) fn prune_pending(&mut self, flushed: PLogOffset, generation: u64) {
        let map = &mut self.map;
        self.pending.retain(|key| match map.get_mut(key) {
            Some(lease) => {
                lease.prune(flushed, generation);
                lease.listed = lease.has_unconfirmed();
                lease.listed
            }
            None => false,
        });
    }

    /// The worker is stopping: from now on only it touches the table.
    pub(crate) fn close(&mut self) {
        self.closed = true;
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    #[inline]
    pub(crate) fn get_mut(&mut self, key: Key) -> Option<&mut Lease> {
        let lease = self.map.get_mut(&key)?;
        lease.referenced = true;
        Some(lease)
    }

    /// The lease of `key`, created empty (nothing reserved) if missing.
    pub(crate) fn entry(&mut self, key: Key, now: Instant) -> &mut Lease {
        if !self.map.contains_key(&key) {
            self.make_room();
            self.order.push_back(key);
        }
        let lease = self.map.entry(key).or_insert_with(|| Lease::new(now));
        lease.referenced = true;
        lease
    }

    fn make_room(&mut self) {
        while self.map.len() >= self.capacity {
            let Some(key) = self.order.pop_front() else {
                return;
            };
            match self.map.get_mut(&key) {
                Some(l) if l.referenced => {
                    l.referenced = false;
                    self.order.push_back(key);
                }
                Some(_) => {
                    self.map.remove(&key);
                    self.evictions += 1;
                }
                None => {}
            }
        }
    }

    /// Drops every lease (after an actualization: reservations in flight were discarded).
    pub(crate) fn clear(&mut self) {
        self.map.clear();
        self.order.clear();
        self.pending.clear();
    }

    /// Restores a cursor saved at the last graceful shutdown: `cursor..limit` is reserved and
    /// durable (`limit` is what the sequencer would hand out next).
    pub(crate) fn restore(&mut self, key: Key, cursor: u64, limit: u64, now: Instant) {
        if cursor >= limit {
            return;
        }
        let lease = self.entry(key, now);
        lease.cursor = cursor;
        lease.left = limit - cursor;
        lease.durable_end = limit;
    }

    /// Sequences with unused reserved numbers: (key, next number).
    pub(crate) fn cursors(&self) -> impl Iterator<Item = (Key, u64)> + '_ {
        self.map
            .iter()
            .filter(|(_, l)| l.left > 0)
            .map(|(k, l)| (*k, l.cursor))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticket(offset: u64) -> Committed {
        Committed {
            offset: PLogOffset(offset),
            generation: 0,
        }
    }

    #[test]
    fn take_names_the_reservation_it_depends_on() {
        let now = Instant::now();
        let mut l = Lease::new(now);
        l.add(10, 16, ticket(1));
        assert_eq!(l.take(4), (Number(10), Some(ticket(1))));
        l.add(26, 16, ticket(2));
        assert_eq!(l.left, 12 + 16);
        assert_eq!(l.take(12), (Number(14), Some(ticket(1))));
        assert_eq!(l.take(1), (Number(26), Some(ticket(2))));
        l.prune(PLogOffset(1), 0);
        assert_eq!(l.take(1), (Number(27), Some(ticket(2))));
        l.prune(PLogOffset(5), 1);
        assert_eq!(
            l.take(1),
            (Number(28), Some(ticket(2))),
            "another generation"
        );
        l.prune(PLogOffset(2), 0);
        assert_eq!(l.take(1), (Number(29), None));
    }

    #[test]
    fn a_non_contiguous_reservation_gives_up_the_rest() {
        let mut l = Lease::new(Instant::now());
        l.add(10, 16, ticket(1));
        l.take(1);
        l.add(100, 16, ticket(2));
        assert_eq!((l.cursor, l.left), (100, 16));
    }

    #[test]
    fn window_adapts_to_the_rate() {
        let t0 = Instant::now();
        let mut l = Lease::new(t0);
        assert_eq!(l.next_window(t0 + Duration::from_millis(1)), MIN_WINDOW * 2);
        assert_eq!(l.next_window(t0 + Duration::from_millis(2)), MIN_WINDOW * 4);
        assert_eq!(l.next_window(t0 + Duration::from_secs(1)), MIN_WINDOW * 4);
        assert_eq!(l.next_window(t0 + Duration::from_secs(30)), MIN_WINDOW * 2);
        for i in 0..40 {
            l.next_window(t0 + Duration::from_secs(30) + Duration::from_micros(i));
        }
        assert_eq!(l.window, MAX_WINDOW);
    }

    #[test]
    fn leases_stay_within_capacity_with_second_chance() {
        let now = Instant::now();
        let mut ls = Leases::new(2);
        let k = |i: u64| (WsId(i), SeqId(0));
        ls.entry(k(1), now).add(1, 16, ticket(1));
        ls.entry(k(2), now).add(1, 16, ticket(1));
        ls.entry(k(3), now);
        assert_eq!(ls.len(), 2);
        assert_eq!(ls.evictions, 1);
        ls.restore(k(4), 5, 9, now);
        ls.restore(k(5), 9, 9, now);
        assert_eq!(ls.len(), 2);
        let cursors: Vec<_> = ls.cursors().collect();
        assert!(cursors.contains(&(k(4), 5)), "{cursors:?}");
        ls.clear();
        assert_eq!(ls.len(), 0);
    }

    #[test]
    fn connections_take_only_durably_reserved_numbers() {
        let now = Instant::now();
        let mut ls = Leases::new(8);
        let key = (WsId(7), SeqId(1));
        assert_eq!(ls.serve_next(key, 1), Served::Route, "no lease yet");
        let lease = ls.entry(key, now);
        lease.add(1, 16, ticket(1));
        assert_eq!(lease.take(1), (Number(1), Some(ticket(1))));
        ls.mark_pending(key);
        assert_eq!(ls.serve_next(key, 1), Served::Route, "still being written");
        ls.prune_pending(PLogOffset(1), 1);
        assert_eq!(ls.serve_next(key, 1), Served::Route, "another generation");
        ls.prune_pending(PLogOffset(1), 0);
        assert_eq!(
            ls.serve_next(key, 4),
            Served::Number {
                first: 2,
                prefetch: false
            }
        );
        assert_eq!(ls.serve_next(key, 12), Served::Route, "only 11 left");
        let prefetch = ls.serve_next(key, 5);
        assert_eq!(
            prefetch,
            Served::Number {
                first: 6,
                prefetch: true
            },
            "half the window used: ask for the next one"
        );
        assert_eq!(
            ls.serve_next(key, 1),
            Served::Number {
                first: 11,
                prefetch: false
            },
            "asked once"
        );
        assert_eq!(ls.serve_peek(key), Some(12));
        ls.entry(key, now).add(17, 32, ticket(2));
        ls.mark_pending(key);
        assert_eq!(
            ls.serve_next(key, 5),
            Served::Number {
                first: 12,
                prefetch: false
            }
        );
        assert_eq!(
            ls.serve_next(key, 1),
            Served::Route,
            "17 is not durable yet"
        );
        ls.prune_pending(PLogOffset(2), 0);
        assert_eq!(
            ls.serve_next(key, 1),
            Served::Number {
                first: 17,
                prefetch: false
            }
        );
        ls.close();
        assert_eq!(
            ls.serve_next(key, 1),
            Served::Route,
            "closed: cursors being saved"
        );
        assert_eq!(ls.serve_peek(key), None);
        assert_eq!(ls.served, (5, 16));
    }
}
