//! The cache's index: workspace → slot, an open-addressing table with linear probing.
//!
//! Each cell holds the workspace id and its slot number side by side (16 bytes, four to a
//! cache line), so a lookup reads one line of the table and never the slot itself — one
//! memory miss where a control-byte table (hashbrown) takes two — and the cell a workspace
//! will be found in is known from its hash alone, which lets the cache prefetch the index
//! entry of the next workspace it will evict (see [`Index::prefetch`]). Deletion shifts the
//! following cells back instead of leaving tombstones, so probe lengths stay short however
//! long the cache churns. The table is at most half full.

use crate::types::WsId;
use crate::util::prefetch;

/// The slot number that marks an empty cell.
const EMPTY: u32 = u32::MAX;

/// Cells a new index starts with.
const MIN_CELLS: usize = 16;

#[derive(Clone, Copy, Debug)]
#[repr(C, align(16))]
struct Cell {
    ws: u64,
    slot: u32,
}

const VACANT: Cell = Cell { ws: 0, slot: EMPTY };

#[derive(Debug)]
pub(crate) struct Index {
    cells: Vec<Cell>,
    /// `log2(cells.len())`.
    bits: u32,
    len: usize,
}

impl Index {
    pub(crate) fn new() -> Self {
        Self {
            cells: vec![VACANT; MIN_CELLS],
            bits: MIN_CELLS.trailing_zeros(),
            len: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The cell `ws` hashes to: Fibonacci hashing, the multiply's high bits.
    #[inline]
    fn home(&self, ws: u64) -> usize {
        (ws.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - self.bits)) as usize
    }

    #[inline]
    fn mask(&self) -> usize {
        self.cells.len() - 1
    }

    /// The slot of `ws`, if indexed.
    #[inline]
    pub(crate) fn get(&self, ws: WsId) -> Option<u32> {
        self.position(ws.0).map(|i| self.cells[i].slot)
    }

    /// Indexes `ws` (which must not be indexed yet) at `slot`.
    pub(crate) fn insert(&mut self, ws: WsId, slot: u32) {
        if (self.len + 1) * 2 > self.cells.len() {
            self.grow();
        }
        self.place(ws.0, slot);
        self.len += 1;
    }

    /// Points the entry of `ws` at another slot; returns whether `ws` was indexed.
    pub(crate) fn set(&mut self, ws: WsId, slot: u32) -> bool {
        match self.position(ws.0) {
            Some(i) => {
                self.cells[i].slot = slot;
                true
            }
            None => false,
        }
    }

    /// Removes `ws`; returns whether it was indexed. Backward-shift deletion: every later cell
    /// of the probe run that may move into the hole does, so no tombstones are left.
    pub(crate) fn remove(&mut self, ws: WsId) -> bool {
        let Some(mut hole) = self.position(ws.0) else {
            return false;
        };
        let mask = self.mask();
        let mut j = hole;
        loop {
            j = (j + 1) & mask;
            let c = self.cells[j];
            if c.slot == EMPTY {
                break;
            }
            // `c` may fill the hole unless its home lies cyclically in (hole, j].
            let home = self.home(c.ws);
            let stays = if hole <= j {
                hole < home && home <= j
            } else {
                hole < home || home <= j
            };
            if !stays {
                self.cells[hole] = c;
                hole = j;
            }
        }
        self.cells[hole] = VACANT;
        self.len -= 1;
        true
    }

    /// Asks the CPU to fetch the cell `ws` would be found in, ahead of a lookup.
    #[inline]
    pub(crate) fn prefetch(&self, ws: WsId) {
        prefetch(&self.cells[self.home(ws.0)]);
    }

    pub(crate) fn clear(&mut self) {
        self.cells.fill(VACANT);
        self.len = 0;
    }

    #[inline]
    fn position(&self, ws: u64) -> Option<usize> {
        let mask = self.mask();
        let mut i = self.home(ws);
        loop {
            let c = self.cells[i];
            if c.slot == EMPTY {
                return None;
            }
            if c.ws == ws {
                return Some(i);
            }
            i = (i + 1) & mask;
        }
    }

    fn place(&mut self, ws: u64, slot: u32) {
        let mask = self.mask();
        let mut i = self.home(ws);
        while self.cells[i].slot != EMPTY {
            i = (i + 1) & mask;
        }
        self.cells[i] = Cell { ws, slot };
    }

    fn grow(&mut self) {
        let doubled = vec![VACANT; self.cells.len() * 2];
        let old = std::mem::replace(&mut self.cells, doubled);
        self.bits += 1;
        for c in old.into_iter().filter(|c| c.slot != EMPTY) {
            self.place(c.ws, c.slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Random inserts, removals and moves against a `HashMap`, with keys chosen to collide
    /// (a small key space in a table that wraps around).
    #[test]
    fn matches_a_hash_map() {
        let mut rng = crate::util::Rng::new(0x2545_f491_4f6c_dd1d);
        let mut next = move |n: u64| rng.next_u64() % n;
        for space in [4u64, 40, 400, 4000] {
            let mut index = Index::new();
            let mut model: HashMap<u64, u32> = HashMap::new();
            for step in 0..40_000u32 {
                let ws = next(space);
                match next(4) {
                    0 | 1 => {
                        if let std::collections::hash_map::Entry::Vacant(e) = model.entry(ws) {
                            index.insert(WsId(ws), step);
                            e.insert(step);
                        }
                    }
                    2 => assert_eq!(index.remove(WsId(ws)), model.remove(&ws).is_some()),
                    _ => {
                        let had = model.get_mut(&ws).map(|s| *s = step).is_some();
                        assert_eq!(index.set(WsId(ws), step), had);
                    }
                }
                assert_eq!(index.len(), model.len());
                let probe = next(space);
                assert_eq!(index.get(WsId(probe)), model.get(&probe).copied());
            }
            for (ws, slot) in &model {
                assert_eq!(index.get(WsId(*ws)), Some(*slot), "space {space}");
            }
            assert!(index.len() * 2 <= index.cells.len());
            index.clear();
            assert_eq!(index.len(), 0);
            assert!(model.keys().all(|ws| index.get(WsId(*ws)).is_none()));
        }
    }

    /// A run that wraps past the end (homes n-2, n-2, n-1, 0, 0), every entry removed first in
    /// turn: the rest stay findable, including those that must not move back across the end.
    #[test]
    fn wrapped_runs_survive_every_removal() {
        let n = Index::new().cells.len();
        let homed = |home: usize, count: usize| -> Vec<u64> {
            let probe = Index::new();
            (0..u64::MAX)
                .filter(|ws| probe.home(*ws) == home)
                .take(count)
                .collect()
        };
        let mut keys = homed(n - 2, 2);
        keys.extend(homed(n - 1, 1));
        keys.extend(homed(0, 2));
        for first in 0..keys.len() {
            let mut index = Index::new();
            for (slot, ws) in keys.iter().enumerate() {
                index.insert(WsId(*ws), slot as u32);
            }
            assert!(index.remove(WsId(keys[first])));
            for (slot, ws) in keys.iter().enumerate() {
                let want = (slot != first).then_some(slot as u32);
                assert_eq!(index.get(WsId(*ws)), want, "removed {first} first");
            }
            // Then the rest, in order: the table ends empty.
            for (slot, ws) in keys.iter().enumerate().filter(|(s, _)| *s != first) {
                assert!(index.remove(WsId(*ws)), "slot {slot}");
            }
            assert_eq!(index.len(), 0);
            assert!(index.cells.iter().all(|c| c.slot == EMPTY));
        }
    }

    /// Workspaces whose homes wrap past the end of the table are found and removed.
    #[test]
    fn wrap_around_runs() {
        let mut index = Index::new();
        let n = index.cells.len();
        let last: Vec<u64> = (0..u64::MAX)
            .filter(|ws| index.home(*ws) == n - 1)
            .take(4)
            .collect();
        for (i, ws) in last.iter().enumerate() {
            index.insert(WsId(*ws), i as u32);
        }
        for (i, ws) in last.iter().enumerate() {
            assert_eq!(index.get(WsId(*ws)), Some(i as u32));
        }
        assert!(index.remove(WsId(last[0])));
        for (i, ws) in last.iter().enumerate().skip(1) {
            assert_eq!(index.get(WsId(*ws)), Some(i as u32));
        }
    }
}
