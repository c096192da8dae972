//! [`MemoryStorage`]: numbers, checkpoint and PLog in memory, for tests, benchmarks and embedders
//! that persist elsewhere.

mod table;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::{ReplayFn, SeqStorage, SeqValue, StorageError, StorageLatency};
use crate::types::{Number, PLogOffset, SeqId, WsId};
use crate::util::prefetch;
use table::{Cell, Table, home_of};

/// Storage held in memory: a map of numbers, the checkpoint offset, and a PLog that tests
/// append events to with [`MemoryStorage::append`].
///
/// Numbers live in [`SHARDS`] tables, sharded by workspace, so a large batch being written
/// blocks a concurrent `read_numbers` for one shard's share of it, not for the whole batch. A
/// write stores every value before it publishes the offset, so a reader that sees the new
/// offset sees the values it covers (I6); there is no crash to be atomic against. Share one
/// between a test and a sequencer through an `Arc`, which implements [`SeqStorage`] too.
pub struct MemoryStorage {
    shards: Box<[Shard]>,
    /// 0 until the first write: reads as [`PLogOffset::FIRST`].
    next_offset: AtomicU64,
    plog: RwLock<BTreeMap<u64, Vec<SeqValue>>>,
    writes: AtomicU64,
    reads: AtomicU64,
}

/// One shard of a [`MemoryStorage`]'s numbers: each workspace's sequences together in one
/// table cell (see [`table`]), so reading a workspace is one cache miss in a large store.
#[derive(Default)]
struct Shard {
    table: RwLock<Table>,
    /// The table's cells and `log2` of their count, stored after every write batch, so
    /// [`SeqStorage::prefetch`] can find a workspace's cell without taking the lock. A stale
    /// pair only makes the hint miss: a prefetch never faults.
    cells: AtomicPtr<Cell>,
    bits: AtomicU32,
}

/// Number of shards of a [`MemoryStorage`].
const SHARDS: usize = 64;

impl Default for MemoryStorage {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
            next_offset: AtomicU64::new(0),
            plog: RwLock::default(),
            writes: AtomicU64::new(0),
            reads: AtomicU64::new(0),
        }
    }
}

fn shard_of(ws: WsId) -> usize {
    // The low bits of the id, mixed: a table's cell comes from the product's high bits, so
    // the two stay independent.
    ((ws.0 ^ (ws.0 >> 29)).wrapping_mul(0xBF58_476D_1CE4_E5B9) >> 58) as usize
}

impl MemoryStorage {
    /// An empty store: no numbers, next offset 1, empty PLog.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a PLog event at `offset`. Offsets must increase: appending at or below the last
    /// one is refused with a permanent error, as a real log would refuse a duplicate position.
    pub fn append(&self, offset: PLogOffset, values: &[SeqValue]) -> Result<(), StorageError> {
        let mut plog = self.plog.write().unwrap_or_else(|e| e.into_inner());
        if let Some((&last, _)) = plog.last_key_value()
            && offset.0 <= last
        {
            return Err(StorageError::permanent(format!(
                "PLog append at offset {offset} refused: the log already reaches offset {last}"
            )));
        }
        if offset.0 == 0 {
            return Err(StorageError::permanent("PLog offsets start at 1"));
        }
        plog.insert(offset.0, values.to_vec());
        Ok(())
    }

    /// The offset of the last PLog event, if any.
    pub fn last_plog_offset(&self) -> Option<PLogOffset> {
        let plog = self.plog.read().unwrap_or_else(|e| e.into_inner());
        plog.last_key_value().map(|(&o, _)| PLogOffset(o))
    }

    /// Drops every PLog event at or after `offset`: a log that lost its tail.
    pub fn truncate_plog(&self, offset: PLogOffset) {
        let mut plog = self.plog.write().unwrap_or_else(|e| e.into_inner());
        plog.split_off(&offset.0);
    }

    /// The stored number of one sequence (`None` = never written).
    pub fn number(&self, ws: WsId, seq: SeqId) -> Option<Number> {
        self.read(shard_of(ws)).get(ws, seq)
    }

    /// How many distinct sequences have a stored number.
    pub fn len(&self) -> usize {
        (0..SHARDS).map(|i| self.read(i).len()).sum()
    }

    /// Whether no number has been stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many successful `write_values_and_offset` calls this store has seen.
    pub fn write_count(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    /// How many `read_numbers` calls this store has seen.
    pub fn read_count(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    fn read(&self, shard: usize) -> RwLockReadGuard<'_, Table> {
        self.shards[shard]
            .table
            .read()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self, shard: usize) -> RwLockWriteGuard<'_, Table> {
        self.shards[shard]
            .table
            .write()
            .unwrap_or_else(|e| e.into_inner())
    }
}

impl fmt::Debug for MemoryStorage {
    // Sizes, not contents: a store can hold millions of numbers.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (numbers, next_offset) = (self.len(), self.next_offset.load(Ordering::Acquire));
        let plog = self.plog.read().map(|p| p.len()).unwrap_or(0);
        f.debug_struct("MemoryStorage")
            .field("numbers", &numbers)
            .field("next_offset", &next_offset)
            .field("plog_events", &plog)
            .finish()
    }
}

impl SeqStorage for MemoryStorage {
    fn read_numbers(&self, ws: WsId, seqs: &[SeqId]) -> Result<Vec<Number>, StorageError> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        let mut out = Vec::with_capacity(seqs.len());
        self.read(shard_of(ws)).read_into(ws, seqs, &mut out);
        Ok(out)
    }

    fn latency(&self) -> StorageLatency {
        StorageLatency::Local
    }

    fn prefetch(&self, ws: WsId) {
        let shard = &self.shards[shard_of(ws)];
        let cells = shard.cells.load(Ordering::Relaxed);
        let bits = shard.bits.load(Ordering::Relaxed);
        if bits != 0 {
            prefetch(cells.wrapping_add(home_of(ws, bits)));
        }
    }

    fn write_values_and_offset(
        &self,
        values: &[SeqValue],
        next_offset: PLogOffset,
    ) -> Result<(), StorageError> {
        // Group by shard so each shard is locked once per batch.
        let mut by_shard: Vec<Vec<&SeqValue>> = vec![Vec::new(); SHARDS];
        for v in values {
            by_shard[shard_of(v.ws)].push(v);
        }
        for (i, vals) in by_shard.iter().enumerate().filter(|(_, v)| !v.is_empty()) {
            let mut table = self.write(i);
            for v in vals {
                table.set(v.ws, v.seq, v.number);
            }
            let (cells, bits) = table.layout();
            self.shards[i]
                .cells
                .store(cells.cast_mut(), Ordering::Relaxed);
            self.shards[i].bits.store(bits, Ordering::Relaxed);
        }
        // Published after the values it covers.
        self.next_offset.store(next_offset.0, Ordering::Release);
        self.writes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn read_next_offset(&self) -> Result<PLogOffset, StorageError> {
        Ok(match self.next_offset.load(Ordering::Acquire) {
            0 => PLogOffset::FIRST,
            n => PLogOffset(n),
        })
    }

    fn replay(&self, from: PLogOffset, apply: &mut ReplayFn<'_>) -> Result<(), StorageError> {
        let plog = self.plog.read().unwrap_or_else(|e| e.into_inner());
        for (&offset, values) in plog.range(from.0..) {
            apply(PLogOffset(offset), values)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::storage::test_value as v;

    #[test]
    fn fresh_store_reads_zero_and_offset_one() {
        let s = MemoryStorage::new();
        assert_eq!(s.read_next_offset().unwrap(), PLogOffset(1));
        assert_eq!(
            s.read_numbers(WsId(1), &[SeqId(1), SeqId(2)]).unwrap(),
            vec![Number(0); 2]
        );
    }

    /// The prefetch hint is safe before any write (no table published yet) and after the
    /// tables grew (the published layout moved), and shard selection stays in range.
    #[test]
    fn prefetch_before_and_after_growth() {
        let s = MemoryStorage::new();
        for ws in [0, 1, u64::MAX] {
            s.prefetch(WsId(ws));
            assert!(shard_of(WsId(ws)) < SHARDS);
        }
        let batch: Vec<SeqValue> = (0..10_000).map(|ws| v(ws, 1, ws + 1)).collect();
        s.write_values_and_offset(&batch, PLogOffset(2)).unwrap();
        for ws in (0..20_000).step_by(7) {
            s.prefetch(WsId(ws));
            assert!(shard_of(WsId(ws)) < SHARDS);
        }
        assert_eq!(s.len(), 10_000);
        assert_eq!(s.number(WsId(9_999), SeqId(1)), Some(Number(10_000)));
    }

    #[test]
    fn write_then_read() {
        let s = MemoryStorage::new();
        s.write_values_and_offset(&[v(1, 1, 10), v(1, 2, 20)], PLogOffset(5))
            .unwrap();
        assert_eq!(
            s.read_numbers(WsId(1), &[SeqId(2), SeqId(3), SeqId(1)])
                .unwrap(),
            vec![Number(20), Number(0), Number(10)]
        );
        assert_eq!(s.read_next_offset().unwrap(), PLogOffset(5));
        assert_eq!(s.write_count(), 1);
    }

    #[test]
    fn plog_append_order_and_replay_from() {
        let s = MemoryStorage::new();
        s.append(PLogOffset(1), &[v(1, 1, 1)]).unwrap();
        s.append(PLogOffset(2), &[v(1, 1, 2)]).unwrap();
        assert!(s.append(PLogOffset(2), &[]).is_err());
        assert!(s.append(PLogOffset(0), &[]).is_err());
        s.append(PLogOffset(3), &[]).unwrap();
        let mut seen = vec![];
        s.replay(PLogOffset(2), &mut |o, vals| {
            seen.push((o, vals.len()));
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, vec![(PLogOffset(2), 1), (PLogOffset(3), 0)]);
        s.truncate_plog(PLogOffset(3));
        assert_eq!(s.last_plog_offset(), Some(PLogOffset(2)));
    }

    #[test]
    fn replay_stops_at_callback_error() {
        let s = MemoryStorage::new();
        for o in 1..=5 {
            s.append(PLogOffset(o), &[]).unwrap();
        }
        let mut n = 0;
        let r = s.replay(PLogOffset(1), &mut |_, _| {
            n += 1;
            if n == 3 {
                Err(StorageError::retryable("pause"))
            } else {
                Ok(())
            }
        });
        assert!(r.is_err());
        assert_eq!(n, 3);
    }
}
