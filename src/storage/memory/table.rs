//! One shard of a [`MemoryStorage`](super::MemoryStorage)'s numbers: workspace → the numbers
//! of its sequences, in an open-addressing table with linear probing.
//!
//! A cell holds a workspace id and up to two of its sequences' numbers inline (32 bytes, two
//! to a cache line), so reading a workspace of one or two sequences touches one line of the
//! table — one memory miss in a large store, where a control-byte table (hashbrown) takes two
//! — and the line is known from the workspace id alone, so it can be prefetched
//! ([`Table::home_of`]). A workspace's third and later sequences live in a side map, looked at
//! only when the cell says some spilled there. Numbers are never deleted; the table is at most
//! half full and doubles when it would pass that.

use rustc_hash::FxHashMap;

use crate::types::{Number, SeqId, WsId};

const INLINE: usize = 2;
const MIN_CELLS: usize = 16;

#[derive(Clone, Copy, Debug)]
#[repr(C, align(32))]
pub(super) struct Cell {
    ws: u64,
    /// Inline numbers in use; 0 marks an empty cell (a stored workspace has at least one).
    used: u8,
    /// Some of this workspace's sequences are in [`Table::spilled`].
    spilled: bool,
    seqs: [u16; INLINE],
    numbers: [u64; INLINE],
}

const VACANT: Cell = Cell {
    ws: 0,
    used: 0,
    spilled: false,
    seqs: [0; INLINE],
    numbers: [0; INLINE],
};

#[derive(Debug)]
pub(super) struct Table {
    cells: Vec<Cell>,
    /// `log2(cells.len())`.
    bits: u32,
    /// Occupied cells (stored workspaces).
    workspaces: usize,
    /// Numbers stored, inline and spilled.
    numbers: usize,
    spilled: FxHashMap<(u64, u16), u64>,
}

impl Default for Table {
    fn default() -> Self {
        Self {
            cells: vec![VACANT; MIN_CELLS],
            bits: MIN_CELLS.trailing_zeros(),
            workspaces: 0,
            numbers: 0,
            spilled: FxHashMap::default(),
        }
    }
}

/// The cell index `ws` hashes to in a table of `2^bits` cells (Fibonacci hashing).
#[inline]
pub(super) fn home_of(ws: WsId, bits: u32) -> usize {
    (ws.0.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - bits)) as usize
}

impl Table {
    /// Where the cells start and `log2` of their count, for prefetching without the lock.
    pub(super) fn layout(&self) -> (*const Cell, u32) {
        (self.cells.as_ptr(), self.bits)
    }

    pub(super) fn len(&self) -> usize {
        self.numbers
    }

    /// The stored number of `seq` in `ws` (`None` = never written).
    pub(super) fn get(&self, ws: WsId, seq: SeqId) -> Option<Number> {
        self.find(ws).and_then(|i| self.number_in(i, seq))
    }

    /// Appends the numbers of `seqs` in `ws` to `out`, `Number(0)` for those never written.
    pub(super) fn read_into(&self, ws: WsId, seqs: &[SeqId], out: &mut Vec<Number>) {
        match self.find(ws) {
            Some(i) => out.extend(
                seqs.iter()
                    .map(|s| self.number_in(i, *s).unwrap_or(Number(0))),
            ),
            None => out.resize(out.len() + seqs.len(), Number(0)),
        }
    }

    /// Stores `number` as the number of `seq` in `ws`.
    pub(super) fn set(&mut self, ws: WsId, seq: SeqId, number: Number) {
        let i = match self.find(ws) {
            Some(i) => i,
            None => {
                if (self.workspaces + 1) * 2 > self.cells.len() {
                    self.grow();
                }
                self.workspaces += 1;
                let i = self.vacancy(ws.0);
                self.cells[i].ws = ws.0;
                i
            }
        };
        let c = &mut self.cells[i];
        let used = usize::from(c.used);
        if let Some(k) = c.seqs[..used].iter().position(|s| *s == seq.0) {
            c.numbers[k] = number.0;
        } else if used < INLINE {
            c.seqs[used] = seq.0;
            c.numbers[used] = number.0;
            c.used += 1;
            self.numbers += 1;
        } else {
            c.spilled = true;
            if self.spilled.insert((ws.0, seq.0), number.0).is_none() {
                self.numbers += 1;
            }
        }
    }

    fn number_in(&self, i: usize, seq: SeqId) -> Option<Number> {
        let c = &self.cells[i];
        let used = usize::from(c.used);
        match c.seqs[..used].iter().position(|s| *s == seq.0) {
            Some(k) => Some(Number(c.numbers[k])),
            None if c.spilled => self.spilled.get(&(c.ws, seq.0)).map(|n| Number(*n)),
            None => None,
        }
    }

    /// The cell holding `ws`, if stored.
    #[inline]
    fn find(&self, ws: WsId) -> Option<usize> {
        let mask = self.cells.len() - 1;
        let mut i = home_of(ws, self.bits);
        loop {
            let c = &self.cells[i];
            if c.used == 0 {
                return None;
            }
            if c.ws == ws.0 {
                return Some(i);
            }
            i = (i + 1) & mask;
        }
    }

    /// The first empty cell of `ws`'s probe run.
    fn vacancy(&self, ws: u64) -> usize {
        let mask = self.cells.len() - 1;
        let mut i = home_of(WsId(ws), self.bits);
        while self.cells[i].used != 0 {
            i = (i + 1) & mask;
        }
        i
    }

    fn grow(&mut self) {
        let doubled = vec![VACANT; self.cells.len() * 2];
        let old = std::mem::replace(&mut self.cells, doubled);
        self.bits += 1;
        for c in old.into_iter().filter(|c| c.used != 0) {
            let i = self.vacancy(c.ws);
            self.cells[i] = c;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Random writes and reads against a `HashMap`, with workspaces of one to five sequences
    /// (so some spill) and enough of them to grow the table several times.
    #[test]
    fn matches_a_hash_map() {
        let mut rng = crate::util::Rng::new(0x9e37_79b9_7f4a_7c15);
        let mut next = move |n: u64| rng.next_u64() % n;
        let mut t = Table::default();
        let mut model: HashMap<(u64, u16), u64> = HashMap::new();
        for step in 1..50_000u64 {
            let (ws, seq) = (next(3_000), next(5) as u16);
            t.set(WsId(ws), SeqId(seq), Number(step));
            model.insert((ws, seq), step);
            let (qws, qseq) = (next(3_500), next(6) as u16);
            assert_eq!(
                t.get(WsId(qws), SeqId(qseq)),
                model.get(&(qws, qseq)).map(|n| Number(*n))
            );
        }
        assert_eq!(t.len(), model.len());
        assert!(t.workspaces * 2 <= t.cells.len());
        let mut out = vec![Number(7)];
        t.read_into(WsId(5), &[SeqId(4), SeqId(9), SeqId(0)], &mut out);
        let want = |s: u16| model.get(&(5, s)).map_or(Number(0), |n| Number(*n));
        assert_eq!(out, vec![Number(7), want(4), Number(0), want(0)]);
        out.clear();
        t.read_into(WsId(1 << 40), &[SeqId(1), SeqId(2)], &mut out);
        assert_eq!(out, vec![Number(0); 2], "a workspace never stored");
    }
}
