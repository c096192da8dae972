//! [`MemoryStorage`]: numbers, checkpoint and PLog in memory, for tests, benchmarks and embedders
//! that persist elsewhere.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, RwLock};

use rustc_hash::FxHashMap;

use super::{ReplayFn, SeqStorage, SeqValue, StorageError};
use crate::types::{Number, PLogOffset, SeqId, WsId};

/// Storage held in memory: a map of numbers, the checkpoint offset, and a PLog that tests
/// append events to with [`MemoryStorage::append`].
///
/// Writes are atomic (values and offset change under one lock), so it satisfies the whole
/// [`SeqStorage`] contract; it just does not survive the process. Share one between a test and
/// a sequencer through an `Arc`, which implements [`SeqStorage`] too.
#[derive(Default)]
pub struct MemoryStorage {
    checkpoint: Mutex<Checkpoint>,
    plog: RwLock<BTreeMap<u64, Vec<SeqValue>>>,
    writes: AtomicU64,
    reads: AtomicU64,
}

#[derive(Default)]
struct Checkpoint {
    numbers: FxHashMap<(WsId, SeqId), Number>,
    /// `None` until the first write: reads as [`PLogOffset::FIRST`].
    next_offset: Option<PLogOffset>,
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
        self.lock().numbers.get(&(ws, seq)).copied()
    }

    /// How many distinct sequences have a stored number.
    pub fn len(&self) -> usize {
        self.lock().numbers.len()
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

    fn lock(&self) -> MutexGuard<'_, Checkpoint> {
        self.checkpoint.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl fmt::Debug for MemoryStorage {
    // Sizes, not contents: a store can hold millions of numbers.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (numbers, next_offset) = {
            let c = self.lock();
            (c.numbers.len(), c.next_offset)
        };
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
        let c = self.lock();
        Ok(seqs
            .iter()
            .map(|s| c.numbers.get(&(ws, *s)).copied().unwrap_or(Number(0)))
            .collect())
    }

    fn write_values_and_offset(
        &self,
        values: &[SeqValue],
        next_offset: PLogOffset,
    ) -> Result<(), StorageError> {
        let mut c = self.lock();
        c.numbers.reserve(values.len());
        for v in values {
            c.numbers.insert((v.ws, v.seq), v.number);
        }
        c.next_offset = Some(next_offset);
        drop(c);
        self.writes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn read_next_offset(&self) -> Result<PLogOffset, StorageError> {
        Ok(self.lock().next_offset.unwrap_or(PLogOffset::FIRST))
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

    fn v(ws: u64, seq: u16, n: u64) -> SeqValue {
        SeqValue {
            ws: WsId(ws),
            seq: SeqId(seq),
            number: Number(n),
        }
    }

    #[test]
    fn fresh_store_reads_zero_and_offset_one() {
        let s = MemoryStorage::new();
        assert_eq!(s.read_next_offset().unwrap(), PLogOffset(1));
        assert_eq!(
            s.read_numbers(WsId(1), &[SeqId(1), SeqId(2)]).unwrap(),
            vec![Number(0); 2]
        );
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
