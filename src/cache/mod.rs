//! The resident workspaces of one partition: an exact LRU, owned by the partition's writer.
//!
//! Only the writer thread touches it (`start` takes `&mut Sequencer`), so it needs no locks
//! and no cross-thread bookkeeping: a hash map from workspace to slot, and an intrusive
//! doubly-linked recency list threaded through a slab of slots. Lookups and evictions are
//! O(1) and allocation-free in the steady state (an evicted slot, numbers included, is reused
//! by the workspace that replaces it). Why not `moka`: see `design/cache.md`.
//!
//! Every miss evicts one workspace, so eviction is on the hot path of W2 and W4; its memory
//! misses are taken ahead of time: after each eviction the cache prefetches the next victim's
//! index cell and its neighbour in the recency list (see [`index`]).

mod index;

use smallvec::SmallVec;

use crate::types::{SeqId, WsId, WsKind};
use crate::util::prefetch;
use index::Index;

const NIL: u32 = u32::MAX;

/// Sequences of an open kind resident per workspace before a newly used one replaces one of
/// them (one the open transaction has not touched). Only a single transaction that touches
/// more sequences than this makes an entry grow past it.
pub(crate) const MAX_RESIDENT_SEQS: usize = 64;

/// One resident workspace: the last number handed out by each of its kind's sequences, in the
/// kind's sequence order (0 = never handed out). For an open kind, `seqs` names the sequences
/// loaded so far and `last` follows its order instead.
///
/// `repr(C)` keeps the fields eviction reads (`ws`, the links) in the first cache line.
#[derive(Debug)]
#[repr(C)]
pub(crate) struct Workspace {
    pub(crate) ws: WsId,
    prev: u32,
    next: u32,
    pub(crate) kind: WsKind,
    /// Inline up to four sequences: touching a workspace costs one cache miss, not two.
    pub(crate) last: SmallVec<[u64; 4]>,
    pub(crate) seqs: Vec<SeqId>,
    /// Where an open kind's search for a sequence to replace starts next (round robin).
    pub(crate) hand: usize,
}

/// Hit, miss and eviction counts since the sequencer opened.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct CacheCounters {
    pub(crate) hits: u64,
    pub(crate) misses: u64,
    pub(crate) evictions: u64,
}

#[derive(Debug)]
pub(crate) struct WsCache {
    /// Workspace → slot.
    index: Index,
    slots: Vec<Workspace>,
    /// Most recently used.
    head: u32,
    /// Least recently used: the next to go.
    tail: u32,
    capacity: usize,
    /// The last `lookup` missed.
    last_missed: bool,
    pub(crate) counters: CacheCounters,
}

impl WsCache {
    pub(crate) fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            index: Index::new(),
            slots: Vec::new(),
            head: NIL,
            tail: NIL,
            capacity,
            last_missed: false,
            counters: CacheCounters::default(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }

    /// The slot of `ws` if resident with the same kind, marked most recently used.
    #[cfg(test)]
    pub(crate) fn get(&mut self, ws: WsId, kind: WsKind) -> Option<u32> {
        self.get_recent(ws, kind).or_else(|| self.lookup(ws, kind))
    }

    /// The slot of `ws` if it is the most recently used workspace (a hot tenant): neither a
    /// hash lookup nor a relink. Counts a hit; on `None`, call [`lookup`](Self::lookup).
    #[inline]
    pub(crate) fn get_recent(&mut self, ws: WsId, kind: WsKind) -> Option<u32> {
        if self.head != NIL {
            let w = &self.slots[self.head as usize];
            if w.ws == ws && w.kind == kind {
                self.counters.hits += 1;
                return Some(self.head);
            }
        }
        None
    }

    /// The slot of `ws` if resident with the same kind, marked most recently used.
    #[inline]
    pub(crate) fn lookup(&mut self, ws: WsId, kind: WsKind) -> Option<u32> {
        match self.index.get(ws) {
            Some(slot) if self.slots[slot as usize].kind == kind => {
                self.counters.hits += 1;
                self.last_missed = false;
                self.touch(slot);
                Some(slot)
            }
            _ => {
                self.counters.misses += 1;
                self.last_missed = true;
                None
            }
        }
    }

    /// Asks the CPU for the index cell `ws` would be found in (a lookup's first miss).
    #[inline]
    pub(crate) fn prefetch_index(&self, ws: WsId) {
        self.index.prefetch(ws);
    }

    /// Asks the CPU for the entry of `ws`, if resident (a lookup's second miss). Reads the
    /// index cell: call it once [`prefetch_index`](Self::prefetch_index) had time to land.
    #[inline]
    pub(crate) fn prefetch_entry(&self, ws: WsId) {
        if let Some(slot) = self.index.get(ws) {
            prefetch(&self.slots[slot as usize]);
        }
    }

    /// Whether the last [`lookup`](Self::lookup) missed: the next one probably will too (a
    /// working set larger than the cache), so the caller may start fetching what a miss needs.
    #[inline]
    pub(crate) fn missing(&self) -> bool {
        self.last_missed
    }

    /// Makes `ws` resident with the given numbers (evicting the least recently used workspace
    /// when full) and returns its slot. Replaces an entry of `ws` with another kind.
    pub(crate) fn insert(&mut self, ws: WsId, kind: WsKind, last: &[u64]) -> u32 {
        let slot = if let Some(slot) = self.index.get(ws) {
            self.unlink(slot);
            slot
        } else if self.index.len() >= self.capacity && self.tail != NIL {
            let slot = self.tail;
            self.unlink(slot);
            let old = self.slots[slot as usize].ws;
            self.index.remove(old);
            self.counters.evictions += 1;
            self.slots[slot as usize].ws = ws;
            self.index.insert(ws, slot);
            self.prefetch_victim();
            slot
        } else {
            let slot = self.slots.len() as u32;
            self.slots.push(Workspace {
                ws,
                kind,
                last: SmallVec::new(),
                seqs: Vec::new(),
                hand: 0,
                prev: NIL,
                next: NIL,
            });
            self.index.insert(ws, slot);
            slot
        };
        // Every path above left `ws` in the slot and indexed it.
        let w = &mut self.slots[slot as usize];
        w.kind = kind;
        w.last.clear();
        w.last.extend_from_slice(last);
        w.seqs.clear();
        w.hand = 0;
        self.push_front(slot);
        slot
    }

    #[inline]
    pub(crate) fn slot_mut(&mut self, slot: u32) -> &mut Workspace {
        &mut self.slots[slot as usize]
    }

    #[inline]
    pub(crate) fn slot(&self, slot: u32) -> &Workspace {
        &self.slots[slot as usize]
    }

    /// Forgets every workspace (actualization discards resident state). Keeps the memory.
    pub(crate) fn clear(&mut self) {
        self.index.clear();
        self.slots.clear();
        self.head = NIL;
        self.tail = NIL;
        self.last_missed = false;
    }

    /// Prefetches what evicting the least recently used workspace will touch: its index cell
    /// and the slot before it in the recency list (the tail's own line is warm: unlinking the
    /// previous tail just wrote it). The misses then overlap with the rest of this transaction
    /// and the next one's lookups instead of stalling the next eviction.
    #[inline]
    fn prefetch_victim(&self) {
        if self.tail == NIL {
            return;
        }
        let victim = &self.slots[self.tail as usize];
        self.index.prefetch(victim.ws);
        if victim.prev != NIL {
            prefetch(&self.slots[victim.prev as usize]);
        }
    }

    /// Drops `ws` if resident.
    pub(crate) fn evict(&mut self, ws: WsId) -> bool {
        let Some(slot) = self.index.get(ws) else {
            return false;
        };
        self.index.remove(ws);
        self.unlink(slot);
        // Move the last slot into the hole so the slab stays dense.
        let last = (self.slots.len() - 1) as u32;
        if slot != last {
            let moved_ws = self.slots[last as usize].ws;
            let (prev, next) = (
                self.slots[last as usize].prev,
                self.slots[last as usize].next,
            );
            self.slots.swap(slot as usize, last as usize);
            if prev != NIL {
                self.slots[prev as usize].next = slot
            } else {
                self.head = slot
            }
            if next != NIL {
                self.slots[next as usize].prev = slot
            } else {
                self.tail = slot
            }
            self.index.set(moved_ws, slot);
        }
        self.slots.pop();
        true
    }

    #[inline]
    fn touch(&mut self, slot: u32) {
        if self.head != slot {
            self.unlink(slot);
            self.push_front(slot);
        }
    }

    fn unlink(&mut self, slot: u32) {
        let (prev, next) = {
            let w = &self.slots[slot as usize];
            (w.prev, w.next)
        };
        if prev != NIL {
            self.slots[prev as usize].next = next
        } else if self.head == slot {
            self.head = next
        }
        if next != NIL {
            self.slots[next as usize].prev = prev
        } else if self.tail == slot {
            self.tail = prev
        }
        let w = &mut self.slots[slot as usize];
        w.prev = NIL;
        w.next = NIL;
    }

    fn push_front(&mut self, slot: u32) {
        let old = self.head;
        {
            let w = &mut self.slots[slot as usize];
            w.prev = NIL;
            w.next = old;
        }
        if old != NIL {
            self.slots[old as usize].prev = slot;
        }
        self.head = slot;
        if self.tail == NIL {
            self.tail = slot;
        }
    }

    /// Workspaces from most to least recently used (for tests and debugging).
    #[cfg(test)]
    fn order(&self) -> Vec<u64> {
        let mut out = vec![];
        let mut s = self.head;
        while s != NIL {
            out.push(self.slots[s as usize].ws.0);
            s = self.slots[s as usize].next;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: WsKind = WsKind(1);

    #[test]
    fn lru_order_and_eviction() {
        let mut c = WsCache::new(3);
        for ws in 1..=3 {
            c.insert(WsId(ws), K, &[ws]);
        }
        assert_eq!(c.order(), vec![3, 2, 1]);
        assert!(c.get(WsId(1), K).is_some());
        assert_eq!(c.order(), vec![1, 3, 2]);
        c.insert(WsId(4), K, &[4]);
        assert_eq!(c.order(), vec![4, 1, 3]);
        assert!(c.get(WsId(2), K).is_none());
        assert_eq!(c.counters.evictions, 1);
        let s = c.get(WsId(4), K).unwrap();
        assert_eq!(c.slot(s).last.as_slice(), [4]);
        assert_eq!(c.len(), 3);
    }

    #[test]
    fn prefetching_changes_nothing() {
        let mut c = WsCache::new(3);
        for ws in 1..=3 {
            c.insert(WsId(ws), K, &[ws]);
        }
        let before = (c.order(), c.counters.hits, c.counters.misses, c.missing());
        for ws in 0..=5 {
            c.prefetch_index(WsId(ws));
            c.prefetch_entry(WsId(ws));
        }
        assert_eq!(
            (c.order(), c.counters.hits, c.counters.misses, c.missing()),
            before,
            "no hit, miss or move to the front"
        );
    }

    #[test]
    fn capacity_one_and_kind_change() {
        let mut c = WsCache::new(1);
        c.insert(WsId(1), K, &[1, 2]);
        c.insert(WsId(2), K, &[3]);
        assert_eq!(c.len(), 1);
        assert!(c.get(WsId(1), K).is_none());
        assert!(
            c.get(WsId(2), WsKind(9)).is_none(),
            "another kind is a miss"
        );
        c.insert(WsId(2), WsKind(9), &[7, 7]);
        assert_eq!(c.len(), 1);
        let s = c.get(WsId(2), WsKind(9)).unwrap();
        assert_eq!(c.slot(s).last.as_slice(), [7, 7]);
    }

    /// `missing` follows the last index lookup: set by a miss (a kind mismatch included),
    /// cleared by a hit and by `clear`; the most-recent fast path leaves it alone.
    #[test]
    fn missing_follows_the_last_lookup() {
        let mut c = WsCache::new(4);
        assert!(!c.missing());
        assert!(c.lookup(WsId(1), K).is_none());
        assert!(c.missing());
        c.insert(WsId(1), K, &[1]);
        c.insert(WsId(2), K, &[2]);
        assert!(c.get_recent(WsId(2), K).is_some());
        assert!(c.missing(), "the fast path does not look in the index");
        assert!(c.lookup(WsId(1), K).is_some());
        assert!(!c.missing());
        assert!(c.lookup(WsId(1), WsKind(9)).is_none());
        assert!(c.missing(), "another kind is a miss");
        c.clear();
        assert!(!c.missing());
    }

    #[test]
    fn evict_keeps_links_consistent() {
        let mut c = WsCache::new(10);
        for ws in 1..=5 {
            c.insert(WsId(ws), K, &[]);
        }
        assert!(c.evict(WsId(3)));
        assert!(!c.evict(WsId(3)));
        assert_eq!(c.order(), vec![5, 4, 2, 1]);
        assert!(c.evict(WsId(5)));
        assert!(c.evict(WsId(1)));
        assert_eq!(c.order(), vec![4, 2]);
        c.insert(WsId(6), K, &[]);
        assert_eq!(c.order(), vec![6, 4, 2]);
        for ws in [4, 2, 6] {
            assert!(c.get(WsId(ws), K).is_some());
        }
        c.clear();
        assert_eq!(c.len(), 0);
        assert!(c.order().is_empty());
    }

    /// Random inserts, lookups and evictions against a plain LRU list, across every slot
    /// path (fresh, reused by eviction, moved by `evict`) and index growth.
    #[test]
    fn matches_a_reference_lru() {
        let mut rng = crate::util::Rng::new(0x9e37_79b9_7f4a_7c15);
        let mut next = move |n: u64| rng.next_u64() % n;
        for capacity in [1usize, 2, 3, 8, 100] {
            let mut c = WsCache::new(capacity);
            // Most recently used first: (ws, number).
            let mut model: Vec<(u64, u64)> = Vec::new();
            for step in 0..20_000u64 {
                let ws = next(capacity as u64 * 3);
                match next(3) {
                    0 => {
                        let hit = c.get(WsId(ws), K).map(|s| c.slot(s).last[0]);
                        let pos = model.iter().position(|(w, _)| *w == ws);
                        assert_eq!(hit, pos.map(|p| model[p].1), "get {ws} at step {step}");
                        if let Some(p) = pos {
                            let e = model.remove(p);
                            model.insert(0, e);
                        }
                    }
                    1 => {
                        c.insert(WsId(ws), K, &[step]);
                        model.retain(|(w, _)| *w != ws);
                        model.insert(0, (ws, step));
                        model.truncate(capacity);
                    }
                    _ => {
                        let had = model.iter().any(|(w, _)| *w == ws);
                        assert_eq!(c.evict(WsId(ws)), had, "evict {ws} at step {step}");
                        model.retain(|(w, _)| *w != ws);
                    }
                }
                assert_eq!(c.len(), model.len());
            }
            let expected: Vec<u64> = model.iter().map(|(w, _)| *w).collect();
            assert_eq!(c.order(), expected, "capacity {capacity}");
        }
    }
}
