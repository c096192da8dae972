//! [`FreshFloor`]: knowing, without reading, that a workspace was never written.
//!
//! A cache miss of the sequencer reads the workspace's numbers; for a workspace that was never
//! written RocksDB still walks the memtable and asks the bloom filter of every level (0.6 to
//! 2 µs on the reference machine), which made the reads of new workspaces the writer's
//! bottleneck in W4. Workspace IDs are usually handed out in increasing order (new tenants get
//! new, higher IDs), so the storage keeps one number: a floor at and above which no workspace
//! has ever been written. Reads above it answer "never written" without touching RocksDB.
//!
//! Why it is never wrong: the floor starts above the largest workspace key in the numbers
//! column family (one seek at open) and every write raises it *before* it is handed to
//! RocksDB, so a workspace at or above the floor has no key, written or in flight. Nothing
//! else writes numbers (PLog events are replayed through the sequencer, which writes through
//! `write_values_and_offset`). A failed write leaves the floor raised, which only costs reads.

use std::sync::atomic::{AtomicU64, Ordering};

use rocksdb::{DB, IteratorMode, ReadOptions};

use super::{CF_NUMBERS, cf, map_error};
use crate::storage::{SeqValue, StorageError, codec};
use crate::types::WsId;

/// Every workspace at or above [`FreshFloor::get`] was never written. `u64::MAX` disables the
/// shortcut (workspace `u64::MAX` itself cannot be told apart).
#[derive(Debug)]
pub(super) struct FreshFloor(AtomicU64);

impl FreshFloor {
    /// The floor of the database as it is on disk: one past its largest workspace.
    pub(super) fn load(db: &DB) -> Result<Self, StorageError> {
        let numbers = cf(db, CF_NUMBERS)?;
        let mut ro = ReadOptions::default();
        ro.set_total_order_seek(true);
        let mut it = db.iterator_cf_opt(numbers, ro, IteratorMode::End);
        let floor = match it.next() {
            None => 0,
            Some(Ok((key, _))) => {
                let (ws, _) = codec::decode_number_key(&key)?;
                ws.0.saturating_add(1)
            }
            Some(Err(e)) => return Err(map_error(e)),
        };
        Ok(Self(AtomicU64::new(floor)))
    }

    /// True if `ws` certainly has no stored number.
    #[inline]
    pub(super) fn never_written(&self, ws: WsId) -> bool {
        let floor = self.0.load(Ordering::Acquire);
        floor != u64::MAX && ws.0 >= floor
    }

    /// Raises the floor above every workspace of `values`; call before writing them.
    pub(super) fn raise(&self, values: &[SeqValue]) {
        if let Some(max) = values.iter().map(|v| v.ws.0).max() {
            self.0.fetch_max(max.saturating_add(1), Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::storage::{RocksDbStorage, SeqStorage, SeqValue};
    use crate::types::{Number, PLogOffset, PartitionId, SeqId, WsId};

    fn value(ws: u64, number: u64) -> SeqValue {
        SeqValue {
            ws: WsId(ws),
            seq: SeqId(1),
            number: Number(number),
        }
    }

    #[test]
    fn the_floor_follows_writes_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = RocksDbStorage::open(dir.path()).unwrap();
            assert!(s.inner.fresh.never_written(WsId(0)));
            let p = s.partition(PartitionId(0));
            p.write_values_and_offset(&[value(10, 5)], PLogOffset(2))
                .unwrap();
            assert!(!s.inner.fresh.never_written(WsId(10)));
            assert!(!s.inner.fresh.never_written(WsId(3)));
            assert!(s.inner.fresh.never_written(WsId(11)));
            assert_eq!(p.read_numbers(WsId(10), &[SeqId(1)]).unwrap(), [Number(5)]);
            // Below the floor but never written: read from RocksDB, still zero.
            assert_eq!(p.read_numbers(WsId(3), &[SeqId(1)]).unwrap(), [Number(0)]);
        }
        // Another partition's workspace raises the same floor (one numbers family per
        // database); the floor is recomputed from the keys at open.
        let s = RocksDbStorage::open(dir.path()).unwrap();
        assert!(!s.inner.fresh.never_written(WsId(10)));
        assert!(s.inner.fresh.never_written(WsId(11)));
        let p = s.partition(PartitionId(1));
        assert_eq!(
            p.read_numbers(WsId(10), &[SeqId(1), SeqId(2)]).unwrap(),
            [Number(5), Number(0)]
        );
    }

    #[test]
    fn the_largest_workspace_disables_the_shortcut() {
        let dir = tempfile::tempdir().unwrap();
        let s = RocksDbStorage::open(dir.path()).unwrap();
        let p = s.partition(PartitionId(0));
        p.write_values_and_offset(&[value(u64::MAX, 9)], PLogOffset(2))
            .unwrap();
        assert!(!s.inner.fresh.never_written(WsId(u64::MAX)));
        assert_eq!(
            p.read_numbers(WsId(u64::MAX), &[SeqId(1)]).unwrap(),
            [Number(9)]
        );
        drop(p);
        drop(s);
        let s = RocksDbStorage::open(dir.path()).unwrap();
        assert!(!s.inner.fresh.never_written(WsId(u64::MAX)));
    }
}
