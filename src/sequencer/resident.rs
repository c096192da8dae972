//! Making workspaces and sequences resident: loading them from unflushed state and storage
//! on a cache miss.

use super::Sequencer;
use crate::cache::MAX_RESIDENT_SEQS;
use crate::error::{Error, Result};
use crate::storage::StorageError;
use crate::types::{Number, SeqId, WsId};

impl Sequencer {
    /// The cache slot of `ws`, loading it on a miss: unflushed values first (the writer's
    /// staged ones, then under the lock pending and in flight), then one `read_numbers` for
    /// the whole workspace, merged by `max`. The order matters:
    /// the flusher moves values pending → in flight → storage and clears "in flight" only
    /// after the write, so looking at the maps before storage cannot miss a value in transit.
    #[allow(unsafe_code)] // the writer's staging area: `staging.rs`
    pub(crate) fn resolve(&mut self, ki: usize, ws: WsId) -> Result<u32> {
        let k = &self.kinds[ki];
        let kind = k.kind;
        if let Some(slot) = self.cache.get_recent(ws, kind) {
            return Ok(slot);
        }
        if self.cache.missing() {
            // Misses are likely: let storage fetch the workspace while the cache looks.
            self.shared.storage.prefetch(ws);
        }
        if let Some(slot) = self.cache.lookup(ws, kind) {
            return Ok(slot);
        }
        if k.is_open() {
            // Sequences load one by one as they are used (`open_position`).
            return Ok(self.cache.insert(ws, kind, &[]));
        }
        self.load_buf.clear();
        self.load_buf.resize(k.len(), 0);
        let mut missing = false;
        {
            // SAFETY: the writer, inside the transaction its handshake opened (`resolve` runs
            // only for an open transaction).
            let staged = unsafe { self.shared.staging.writer() };
            let inner = self.shared.lock();
            for (i, seq) in k.seqs.iter().enumerate() {
                let key = (ws, *seq);
                match staged.values.get(&key).or_else(|| inner.unflushed(&key)) {
                    Some(&n) => self.load_buf[i] = n,
                    None => missing = true,
                }
            }
        }
        if missing {
            let stored = self.shared.storage.read_numbers(ws, &k.seqs)?;
            if stored.len() != k.len() {
                return Err(Error::Storage(StorageError::permanent(format!(
                    "read_numbers returned {} numbers for {} sequences",
                    stored.len(),
                    k.len()
                ))));
            }
            for (have, Number(s)) in self.load_buf.iter_mut().zip(stored) {
                *have = (*have).max(s);
            }
        }
        Ok(self.cache.insert(ws, kind, &self.load_buf))
    }

    /// The position of `seq` in the resident entry of `ws` (an open kind's), loading it on
    /// first use: unflushed values first, then storage (the order `resolve` explains). When
    /// the entry is full, the new sequence replaces one the open transaction has not touched.
    /// Returns the position and the sequence's initial value.
    #[allow(unsafe_code)] // the writer's staging area: `staging.rs`
    pub(crate) fn open_position(
        &mut self,
        ki: usize,
        slot: u32,
        ws: WsId,
        seq: SeqId,
    ) -> Result<(usize, u64)> {
        let k = &self.kinds[ki];
        let initial = k.initial_of(seq).map_or(1, |n| n.0);
        if let Some(i) = self.cache.slot(slot).seqs.iter().position(|s| *s == seq) {
            return Ok((i, initial));
        }
        // SAFETY: as in `resolve`.
        let staged = unsafe { self.shared.staging.writer() };
        let key = (ws, seq);
        let unflushed = match staged.values.get(&key) {
            Some(&n) => Some(n),
            None => self.shared.lock().unflushed(&key).copied(),
        };
        let last = match unflushed {
            Some(n) => n,
            None => match self.shared.storage.read_numbers(ws, &[seq])?.as_slice() {
                [Number(n)] => *n,
                other => {
                    return Err(Error::Storage(StorageError::permanent(format!(
                        "read_numbers returned {} numbers for 1 sequence",
                        other.len()
                    ))));
                }
            },
        };
        let entry = self.cache.slot_mut(slot);
        let len = entry.seqs.len();
        if len >= MAX_RESIDENT_SEQS {
            for _ in 0..len {
                let v = entry.hand % len;
                entry.hand = v + 1;
                if self.tx_last.get(v).is_none_or(|n| *n == 0) {
                    entry.seqs[v] = seq;
                    entry.last[v] = last;
                    return Ok((v, initial));
                }
            }
        }
        entry.seqs.push(seq);
        entry.last.push(last);
        Ok((len, initial))
    }
}
