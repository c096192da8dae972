//! [`LeaseMap`]: a partition's leases by sequence, an open-addressing table whose cells hold
//! the lease itself.
//!
//! A connection looks a lease up for every `NEXT` it answers, and with 100,000 random
//! sequences that lookup was a memory miss each time: a control-byte table (hashbrown)
//! holding 104-byte entries read a control group and then a bucket spread over two cache
//! lines, neither of which the caller could ask for ahead of time. Here a cell is one cache
//! line (the key and a [`Lease`] of 48 bytes), the cell a key will be found in follows from
//! its hash alone, so a connection prefetches it while it parses the next request
//! ([`LeaseMap::prefetch`]); linear probing moves on to the next line, which the hardware
//! usually fetches along. The table is at most half full, and a removal shifts the following
//! cells of its run back instead of leaving a tombstone, so runs stay short however long the
//! leases churn. Hashing is Fibonacci hashing of the workspace mixed with the sequence: like
//! the FxHash it replaces, fast and not resistant to keys chosen to collide.

use super::{Key, Lease};
use crate::types::{SeqId, WsId};
use crate::util::prefetch;

/// Cells a new or cleared table starts with.
const MIN_CELLS: usize = 16;

/// One cache line: a key and its lease, or nothing.
#[derive(Debug, Default)]
#[repr(align(64))]
struct Cell(Option<(Key, Lease)>);

/// The leases of one partition by key (see the module docs).
#[derive(Debug)]
pub(super) struct LeaseMap {
    cells: Vec<Cell>,
    /// `log2(cells.len())`.
    bits: u32,
    len: usize,
}

impl LeaseMap {
    pub(super) fn new() -> Self {
        Self {
            cells: empty_cells(MIN_CELLS),
            bits: MIN_CELLS.trailing_zeros(),
            len: 0,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn contains_key(&self, key: &Key) -> bool {
        self.position(*key).is_some()
    }

    pub(super) fn get(&self, key: &Key) -> Option<&Lease> {
        let i = self.position(*key)?;
        self.cells[i].0.as_ref().map(|(_, l)| l)
    }

    pub(super) fn get_mut(&mut self, key: &Key) -> Option<&mut Lease> {
        let i = self.position(*key)?;
        self.cells[i].0.as_mut().map(|(_, l)| l)
    }

    /// Adds `lease` under `key`, replacing the lease it had, if any.
    pub(super) fn insert(&mut self, key: Key, lease: Lease) {
        let i = self.cell_for(key);
        self.cells[i].0 = Some((key, lease));
    }

    /// The lease of `key`, made by `make` if there is none.
    pub(super) fn get_or_insert_with(
        &mut self,
        key: Key,
        make: impl FnOnce() -> Lease,
    ) -> &mut Lease {
        let i = self.cell_for(key);
        &mut self.cells[i].0.get_or_insert_with(|| (key, make())).1
    }

    /// Removes the lease of `key` and returns it. Backward-shift deletion: every later cell
    /// of the run that may move into the hole does, so no tombstones are left.
    pub(super) fn remove(&mut self, key: &Key) -> Option<Lease> {
        let mut hole = self.position(*key)?;
        let removed = self.cells[hole].0.take().map(|(_, l)| l);
        let mask = self.cells.len() - 1;
        let mut j = hole;
        loop {
            j = (j + 1) & mask;
            let Some((k, _)) = &self.cells[j].0 else {
                break;
            };
            // The cell at `j` may fill the hole unless its home lies cyclically in (hole, j].
            let home = self.home(*k);
            let stays = if hole <= j {
                hole < home && home <= j
            } else {
                hole < home || home <= j
            };
            if !stays {
                self.cells[hole].0 = self.cells[j].0.take();
                hole = j;
            }
        }
        self.len -= 1;
        removed
    }

    /// Asks the CPU to fetch the cell `key` would be found in, ahead of a lookup.
    #[inline]
    pub(super) fn prefetch(&self, key: Key) {
        prefetch(&self.cells[self.home(key)]);
    }

    /// Drops every lease and gives the table's memory back.
    pub(super) fn clear(&mut self) {
        *self = Self::new();
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&Key, &Lease)> + '_ {
        self.cells
            .iter()
            .filter_map(|c| c.0.as_ref().map(|(k, l)| (k, l)))
    }

    /// The cell `key` hashes to: the multiply's high bits.
    #[inline]
    fn home(&self, (WsId(ws), SeqId(seq)): Key) -> usize {
        let mixed = ws ^ u64::from(seq).wrapping_mul(0xFF51_AFD7_ED55_8CCD);
        (mixed.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - self.bits)) as usize
    }

    #[inline]
    fn position(&self, key: Key) -> Option<usize> {
        let mask = self.cells.len() - 1;
        let mut i = self.home(key);
        loop {
            match &self.cells[i].0 {
                None => return None,
                Some((k, _)) if *k == key => return Some(i),
                Some(_) => i = (i + 1) & mask,
            }
        }
    }

    /// The cell holding `key`, or the free one it goes into (counted in `len` already,
    /// growing the table first if need be): the caller fills it.
    fn cell_for(&mut self, key: Key) -> usize {
        if let Some(i) = self.position(key) {
            return i;
        }
        if (self.len + 1) * 2 > self.cells.len() {
            self.grow();
        }
        self.len += 1;
        self.free_cell(key)
    }

    /// The first free cell of `key`'s run (the key is not in the table).
    fn free_cell(&self, key: Key) -> usize {
        let mask = self.cells.len() - 1;
        let mut i = self.home(key);
        while self.cells[i].0.is_some() {
            i = (i + 1) & mask;
        }
        i
    }

    fn grow(&mut self) {
        let cells = empty_cells(self.cells.len() * 2);
        let old = std::mem::replace(&mut self.cells, cells);
        self.bits += 1;
        for (key, lease) in old.into_iter().filter_map(|c| c.0) {
            let i = self.free_cell(key);
            self.cells[i].0 = Some((key, lease));
        }
    }
}

fn empty_cells(n: usize) -> Vec<Cell> {
    std::iter::repeat_with(Cell::default).take(n).collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn key(ws: u64, seq: u16) -> Key {
        (WsId(ws), SeqId(seq))
    }

    #[test]
    fn a_cell_is_one_cache_line() {
        assert_eq!(std::mem::size_of::<Cell>(), 64);
        assert_eq!(std::mem::align_of::<Cell>(), 64);
    }

    /// Random inserts, lookups and removals against a `HashMap`, on few enough keys that
    /// runs collide, wrap around the end of the table and get shifted back.
    #[test]
    fn agrees_with_a_hash_map() {
        let mut map = LeaseMap::new();
        let mut model: HashMap<Key, u64> = HashMap::new();
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        for step in 0..200_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let k = key(x % 300, (x >> 20) as u16 % 3);
            match (x >> 32) % 3 {
                0 => {
                    let mut lease = Lease::new(std::time::Instant::now());
                    lease.cursor = step;
                    map.insert(k, lease);
                    model.insert(k, step);
                }
                1 => assert_eq!(map.remove(&k).map(|l| l.cursor), model.remove(&k)),
                _ => assert_eq!(map.get(&k).map(|l| l.cursor), model.get(&k).copied()),
            }
            assert_eq!(map.len(), model.len());
            assert!(map.len() * 2 <= map.cells.len());
        }
        let mut all: Vec<(Key, u64)> = map.iter().map(|(k, l)| (*k, l.cursor)).collect();
        all.sort_unstable_by_key(|(k, _)| *k);
        let mut expected: Vec<(Key, u64)> = model.into_iter().collect();
        expected.sort_unstable_by_key(|(k, _)| *k);
        assert_eq!(all, expected);
        map.clear();
        assert_eq!((map.len(), map.cells.len()), (0, MIN_CELLS));
    }
}
