//! [`Leases`]: a partition's leases, bounded, with the parked ranges of evicted ones.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rustc_hash::FxHashMap;

use super::map::LeaseMap;
use super::{Key, Lease, MAX_WINDOW, MIN_WINDOW};
use crate::sequencer::Committed;
use crate::types::{Number, PLogOffset};

/// The unused range `cursor..end` of an evicted lease, kept so that the sequence resumes
/// from it when used again and a graceful shutdown saves it.
#[derive(Clone, Copy, Debug)]
struct Parked {
    cursor: u64,
    end: u64,
    durable_end: u64,
    window: u64,
    /// The newest reservation not yet known to be durable, if any (it covers `end - 1`).
    ticket: Option<Committed>,
    /// Tells this parking apart from an earlier one of the same key in `parked_order`.
    stamp: u64,
}

/// The leases of one partition, bounded: beyond `capacity`, the least recently reserved lease
/// not used since the eviction hand last passed is evicted (CLOCK) and its unused range
/// parked; beyond `capacity` parked ranges, the oldest is given up (a gap, never a reuse).
#[derive(Debug)]
pub(crate) struct Leases {
    map: LeaseMap,
    order: VecDeque<Key>,
    capacity: usize,
    parked: FxHashMap<Key, Parked>,
    /// Parkings, oldest first; entries whose stamp no longer matches are stale.
    parked_order: VecDeque<(Key, u64)>,
    stamp: u64,
    evictions: u64,
    dropped: u64,
    /// Keys with reservations not yet known to be durable, pruned on every flusher progress.
    pending: Vec<Key>,
    /// Set when the worker stops (its cursors are being saved): connections must not take.
    closed: bool,
    /// Numbers below this are covered by the resume floor (0: none): a reservation's part
    /// below it may be handed out before the reservation is durable ([`Leases::set_cover`]).
    cover: u64,
    /// `NEXT` requests and numbers the connections answered themselves.
    pub(crate) served: (u64, u64),
}

/// A partition's leases, shared by its worker and the connections.
pub(crate) type LeaseTable = Arc<Mutex<Leases>>;

/// What a connection's attempt to answer from a lease came to.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Served {
    /// Answered: the first number; `prefetch` asks the worker to top the lease up.
    Number { first: u64, prefetch: bool },
    /// Not answerable here: send the request to the partition.
    Route,
}

/// What the partition must do for a `NEXT` ([`Leases::plan_next`]).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Plan {
    /// Taken from the lease: the first number and the reservation that must be durable
    /// before it may be acknowledged; then reserve `top_up` more ahead, if set
    /// ([`Leases::reserved`] with `take` 0).
    Taken {
        first: Number,
        dep: Option<Committed>,
        top_up: Option<u64>,
    },
    /// Reserve this many numbers, then take the request's from them ([`Leases::reserved`]).
    Reserve(u64),
}

/// Counts for `/v1/status` and `/metrics`.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct LeaseStats {
    pub(crate) leases: usize,
    pub(crate) parked: usize,
    pub(crate) evictions: u64,
    pub(crate) dropped: u64,
}

impl Leases {
    pub(crate) fn new(capacity: usize) -> Self {
        Leases {
            map: LeaseMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
            parked: FxHashMap::default(),
            parked_order: VecDeque::new(),
            stamp: 0,
            evictions: 0,
            dropped: 0,
            pending: Vec::new(),
            closed: false,
            cover: 0,
            served: (0, 0),
        }
    }

    /// Numbers below `floor` may go out at once, durable or not: after a crash every sequence
    /// resumes at or above it, and the partition's sequencer was promised it for an
    /// actualization (`lease/resume.rs`). Call only once both hold.
    pub(crate) fn set_cover(&mut self, floor: u64) {
        self.cover = self.cover.max(floor);
    }

    /// A connection's `NEXT`: `count` numbers at once if they are durably reserved. While a
    /// reservation of the lease is being written, the connection checks the sequencer's
    /// checkpoint itself (`durability`: the checkpoint and its generation, read from the
    /// sequencer's atomics, `None` while an actualization moves on), so a top-up is served
    /// as soon as it is durable, with no hop through the partition's worker.
    pub(crate) fn serve_next(
        &mut self,
        key: Key,
        count: u64,
        durability: impl FnOnce() -> Option<(PLogOffset, u64)>,
    ) -> Served {
        if self.closed {
            return Served::Route;
        }
        let Some(lease) = self.map.get_mut(&key) else {
            return Served::Route;
        };
        if !lease.unconfirmed.is_empty()
            && let Some((flushed, generation)) = durability()
        {
            lease.prune(flushed, generation);
        }
        let Some(first) = lease.take_durable(count) else {
            return Served::Route;
        };
        let prefetch = !lease.prefetching && lease.wants_prefetch();
        lease.prefetching |= prefetch;
        self.served.0 += 1;
        self.served.1 += count;
        Served::Number { first, prefetch }
    }

    /// Asks the CPU to fetch where the lease of `key` would be, ahead of [`Leases::serve_next`].
    pub(crate) fn prefetch(&self, key: Key) {
        self.map.prefetch(key);
    }

    /// A connection's `PEEK`: the cursor of the lease (or parked range) holding reserved
    /// numbers of `key` — what its next `NEXT` returns.
    pub(crate) fn serve_peek(&mut self, key: Key) -> Option<u64> {
        if self.closed {
            return None;
        }
        match self.map.get(&key) {
            Some(l) => (l.left > 0).then_some(l.cursor),
            None => self.parked.get(&key).map(|p| p.cursor),
        }
    }

    /// The partition's `NEXT` of `count` numbers (`durability`: the checkpoint and its
    /// generation, if known): takes them from the lease (created, or resumed from a parked
    /// range, if missing) when it holds enough, else says how many to reserve.
    pub(crate) fn plan_next(
        &mut self,
        key: Key,
        count: u64,
        now: Instant,
        durability: Option<(PLogOffset, u64)>,
    ) -> Plan {
        let lease = self.entry(key, now);
        if let Some((flushed, generation)) = durability {
            lease.prune(flushed, generation);
        }
        if lease.left >= count {
            let (first, dep) = lease.take(count);
            let top_up = lease.wants_prefetch().then(|| lease.top_up(0, now));
            return Plan::Taken { first, dep, top_up };
        }
        Plan::Reserve(lease.top_up(count, now))
    }

    /// A connection's [`super::super::partition::Msg::Prefetch`] taken up by the worker: how
    /// many numbers to reserve ahead, unless one is already on its way or the lease is gone.
    pub(crate) fn plan_prefetch(&mut self, key: Key, now: Instant) -> Option<u64> {
        let lease = self.map.get_mut(&key)?;
        // Answered now; a connection may ask again if this reservation fails.
        lease.prefetching = false;
        lease.wants_prefetch().then(|| lease.top_up(0, now))
    }

    /// Adds the reservation `first..first+n-1` (made by `ticket`) to the lease of `key` and
    /// takes `take` numbers from it: the first and the reservation they depend on. `None`
    /// when the lease is gone or holds fewer than `take` numbers (never expected: the plan
    /// reserved enough).
    pub(crate) fn reserved(
        &mut self,
        key: Key,
        first: u64,
        n: u64,
        ticket: Committed,
        take: u64,
    ) -> Option<(Number, Option<Committed>)> {
        let lease = self.map.get_mut(&key)?;
        lease.add(first, n, ticket);
        if first < self.cover {
            // Everything from the cursor up to the floor is covered: the cursor is at or
            // below `first` when the range is contiguous, and equal to it when not.
            lease.durable_end = lease.durable_end.max(self.cover);
        }
        let taken = (lease.left >= take).then(|| lease.take(take));
        self.mark_pending(key);
        taken
    }

    /// Remembers that `key` has a reservation in flight (see [`Leases::prune_pending`]).
    fn mark_pending(&mut self, key: Key) {
        if let Some(lease) = self.map.get_mut(&key)
            && !lease.listed
            && !lease.unconfirmed.is_empty()
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
                lease.listed = !lease.unconfirmed.is_empty();
                lease.listed
            }
            None => false,
        });
    }

    /// The worker is stopping: from now on only it touches the table.
    pub(crate) fn close(&mut self) {
        self.closed = true;
    }

    pub(crate) fn stats(&self) -> LeaseStats {
        LeaseStats {
            leases: self.map.len(),
            parked: self.parked.len(),
            evictions: self.evictions,
            dropped: self.dropped,
        }
    }

    /// The lease of `key`: resumed from its parked range, or created empty (nothing
    /// reserved), if missing.
    fn entry(&mut self, key: Key, now: Instant) -> &mut Lease {
        if !self.map.contains_key(&key) {
            // Out of the parked ranges first, so making room never gives this one up.
            let parked = self.parked.remove(&key);
            self.make_room();
            self.order.push_back(key);
            let mut lease = Lease::new(now);
            if let Some(p) = parked {
                lease.cursor = p.cursor;
                lease.left = p.end.saturating_sub(p.cursor);
                lease.durable_end = p.durable_end;
                lease.window = p.window;
                if let Some(t) = p.ticket {
                    lease.unconfirmed.push_back((p.end.saturating_sub(1), t));
                }
            }
            self.map.insert(key, lease);
            self.mark_pending(key);
        }
        let lease = self.map.get_or_insert_with(key, || Lease::new(now));
        lease.referenced = true;
        lease
    }

    /// Evicts leases (CLOCK, second chance) until there is room for one more.
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
                    if let Some(lease) = self.map.remove(&key) {
                        self.evictions += 1;
                        self.park(key, &lease);
                    }
                }
                None => {}
            }
        }
    }

    /// Keeps the unused range of an evicted lease; gives up the oldest parked range when
    /// `capacity` are parked.
    fn park(&mut self, key: Key, lease: &Lease) {
        if lease.left == 0 {
            return;
        }
        while self.parked.len() >= self.capacity {
            let Some((old, stamp)) = self.parked_order.pop_front() else {
                break;
            };
            if self.parked.get(&old).is_some_and(|p| p.stamp == stamp) {
                self.parked.remove(&old);
                self.dropped += 1;
            }
        }
        self.stamp += 1;
        let parked = Parked {
            cursor: lease.cursor,
            end: lease.cursor.saturating_add(lease.left),
            durable_end: lease.durable_end,
            window: lease.window,
            // A later reservation's durability implies the earlier ones' (same generation,
            // higher offset): waiting for the newest is enough.
            ticket: lease.unconfirmed.back().map(|&(_, t)| t),
            stamp: self.stamp,
        };
        self.parked.insert(key, parked);
        self.parked_order.push_back((key, self.stamp));
        // Resumed ranges leave stale entries behind: keep the queue within twice the table.
        if self.parked_order.len() > 2 * self.parked.len() + 64 {
            let parked = &self.parked;
            self.parked_order
                .retain(|(k, s)| parked.get(k).is_some_and(|p| p.stamp == *s));
        }
    }

    /// Drops every lease and parked range (after an actualization: reservations in flight
    /// were discarded, and offsets are reused; or a new sequencer took over the partition)
    /// and opens the table again.
    pub(crate) fn clear(&mut self) {
        self.closed = false;
        self.map.clear();
        self.order.clear();
        self.parked.clear();
        self.parked_order.clear();
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
        // A saved range was at most a window of the last run, so at most MAX_WINDOW.
        lease.window = lease.left.clamp(MIN_WINDOW, MAX_WINDOW);
    }

    /// Every lease and parked range: (key, cursor, reservation end, window).
    #[cfg(test)]
    pub(super) fn ranges(&self) -> Vec<(Key, u64, u64, u64)> {
        let leased = self
            .map
            .iter()
            .map(|(k, l)| (*k, l.cursor, l.cursor + l.left, l.window));
        let parked = self
            .parked
            .iter()
            .map(|(k, p)| (*k, p.cursor, p.end, p.window));
        leased.chain(parked).collect()
    }

    /// Sequences with unused reserved numbers, leased or parked: (key, next number).
    pub(crate) fn cursors(&self) -> impl Iterator<Item = (Key, u64)> + '_ {
        let leased = self
            .map
            .iter()
            .filter(|(_, l)| l.left > 0)
            .map(|(k, l)| (*k, l.cursor));
        leased.chain(self.parked.iter().map(|(k, p)| (*k, p.cursor)))
    }
}
