//! The writer's staging area: commits not yet handed to the flusher, kept without a lock.
//!
//! A commit inserts its numbers into [`Staged`], which the writer owns while a transaction
//! is open, without the shared mutex (whose lock and unlock would be two atomic
//! read-modify-writes per transaction, a large part of the embedded hot path, W1). The
//! writer hands them over in bulk under the lock (`publish` in `sequencer/mod.rs`) when the
//! worker asks or [`STAGE_LIMIT`] values wait; the background worker and the other takers
//! (a [`FlushHandle`], the actualizer) fetch them themselves while no transaction is open
//! ([`Staging::claim`]).
//!
//! **Who may touch [`Staged`]** — a Dekker handshake on two flags, `Shared::tx_open` and
//! [`Staging::claimed`], all four accesses `SeqCst`:
//!
//! * the writer, from its handshake (`tx_open` stored `true`, then `claimed` loaded `false`)
//!   until the transaction ends (`tx_open` stored `false`, `Release`);
//! * a claimer, holding the `Inner` lock, from `claimed` stored `true` and `tx_open` loaded
//!   `false` until it stores `claimed = false` (`Release`), before it unlocks.
//!
//! In the single total order of `SeqCst` operations, whichever of the two stores comes first
//! is seen by the other side's load, so both cannot pass: a claimer that loads `tx_open ==
//! true` backs off (and asks the writer to publish at its next commit), a writer that loads
//! `claimed == true` ends its handshake and waits for the lock, which the claimer holds.
//! Each side's writes to [`Staged`] are visible to the next one through the `Release` store
//! that ends its access and the `SeqCst` load that begins the other's. The writer's side
//! adds no read-modify-write to the transaction: its `tx_open` store existed already for
//! the actualizer, which waits for it in the same way.
//!
//! [`FlushHandle`]: crate::FlushHandle

#![allow(unsafe_code)] // one `UnsafeCell`, owned by the handshake above

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::flight::ValueMap;
use super::state::Inner;
use crate::types::PLogOffset;

/// The most values the writer stages before it publishes by itself (a quarter of
/// `Options::max_unflushed` when that is less).
pub(crate) const STAGE_LIMIT: usize = 4096;

/// Commits the writer has not handed over yet.
#[derive(Default)]
pub(crate) struct Staged {
    /// The last number of each key committed here.
    pub(crate) values: ValueMap,
    /// The offset after the newest transaction committed here, if any was.
    pub(crate) next: Option<PLogOffset>,
    /// When the first of them was committed (the batch is due `flush_interval` later).
    pub(crate) since: Option<Instant>,
}

impl Staged {
    /// Moves everything into the shared state under the lock: the values into
    /// `Inner::pending` (newer than what is there), the offset into `Inner::pending_next`,
    /// and, when that starts a batch, its due time (`linger` after its first commit, as
    /// `Options::flush_interval` says). Returns whether there was anything.
    pub(crate) fn drain_into(&mut self, inner: &mut Inner, linger: Duration) -> bool {
        let Some(next) = self.next.take() else {
            return false;
        };
        let since = self.since.take();
        if inner.pending_next.is_none() && !linger.is_zero() {
            inner.due = since.map(|t| t + linger);
        }
        if inner.pending.is_empty() {
            std::mem::swap(&mut inner.pending, &mut self.values);
        } else {
            inner.pending.extend(self.values.drain());
        }
        inner.pending_next = Some(next);
        true
    }
}

/// The staging area and its handshake flags (module docs).
#[derive(Default)]
pub(crate) struct Staging {
    cell: UnsafeCell<Staged>,
    /// A claimer wants the cell (module docs).
    claimed: AtomicBool,
    /// The worker wants the staged commits: the writer publishes at its next commit.
    asked: AtomicBool,
    /// How many values are staged, for backpressure; written by whoever holds the cell.
    len: AtomicUsize,
}

// SAFETY: the cell is reached only through `writer` (by the writer inside its transaction)
// and `claim` (by a claimer holding the lock), which the handshake of the module docs keeps
// apart; everything else is atomic.
unsafe impl Sync for Staging {}

impl std::fmt::Debug for Staging {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Staging")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

/// A claimer's access to the cell; ends (`claimed` cleared) when dropped.
pub(crate) struct Claim<'a> {
    staging: &'a Staging,
}

impl std::ops::Deref for Claim<'_> {
    type Target = Staged;
    fn deref(&self) -> &Staged {
        // SAFETY: the claim holds the cell (module docs) until it is dropped.
        unsafe { &*self.staging.cell.get() }
    }
}

impl std::ops::DerefMut for Claim<'_> {
    fn deref_mut(&mut self) -> &mut Staged {
        // SAFETY: as `deref`; `&mut self` makes this the only reference.
        unsafe { &mut *self.staging.cell.get() }
    }
}

impl Claim<'_> {
    /// Takes everything staged into the shared state (`Staged::drain_into`), and records
    /// the area as empty.
    pub(crate) fn drain_into(&mut self, inner: &mut Inner, linger: Duration) -> bool {
        let any = Staged::drain_into(self, inner, linger);
        self.staging.len.store(0, Ordering::Relaxed);
        any
    }

    /// Drops everything staged (the actualizer discards unflushed state).
    pub(crate) fn discard(&mut self) {
        let staged: &mut Staged = self;
        staged.values.clear();
        staged.next = None;
        staged.since = None;
        self.staging.len.store(0, Ordering::Relaxed);
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.staging.claimed.store(false, Ordering::Release);
    }
}

impl Staging {
    /// The writer's half of the handshake, after it stored `tx_open = true` (`SeqCst`):
    /// whether a claimer holds the cell, in which case the writer must end its handshake and
    /// wait for the lock.
    #[inline]
    pub(crate) fn claimed(&self) -> bool {
        self.claimed.load(Ordering::SeqCst)
    }

    /// The cell, for the writer inside its transaction.
    ///
    /// # Safety
    ///
    /// The caller is the writer with a transaction open: it stored `tx_open = true` and then
    /// saw [`claimed`](Self::claimed) false, and has not cleared `tx_open` since. No other
    /// reference from this function may be alive.
    #[inline]
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn writer(&self) -> &mut Staged {
        // SAFETY: exclusive by the caller's contract and the handshake (module docs).
        unsafe { &mut *self.cell.get() }
    }

    /// A claimer's half: with the `Inner` lock held (`_locked`), takes the cell unless the
    /// writer has a transaction open (`tx_open`), in which case it asks the writer to publish
    /// at its next commit and returns `None`: try again later.
    pub(crate) fn claim<'a>(&'a self, tx_open: &AtomicBool, _locked: &Inner) -> Option<Claim<'a>> {
        self.claimed.store(true, Ordering::SeqCst);
        if tx_open.load(Ordering::SeqCst) {
            self.claimed.store(false, Ordering::Release);
            self.ask();
            return None;
        }
        Some(Claim { staging: self })
    }

    /// Asks the writer to publish at its next commit.
    pub(crate) fn ask(&self) {
        self.asked.store(true, Ordering::Release);
    }

    /// Whether the writer must publish now: asked to, or holding `limit` values.
    #[inline]
    pub(crate) fn must_publish(&self, staged: &Staged, limit: usize) -> bool {
        staged.values.len() >= limit || self.asked.load(Ordering::Acquire)
    }

    /// The writer has published (under the lock): the area is empty and nobody asks.
    pub(crate) fn published(&self) {
        self.asked.store(false, Ordering::Relaxed);
        self.len.store(0, Ordering::Relaxed);
    }

    /// Records how many values the writer holds.
    #[inline]
    pub(crate) fn set_len(&self, n: usize) {
        self.len.store(n, Ordering::Relaxed);
    }

    /// How many values are staged (for backpressure and stats; a moment's estimate).
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::Options;
    use crate::sequencer::state::{Collected, Shared};
    use crate::storage::MemoryStorage;
    use crate::types::{SeqId, WsId};
    use std::sync::Arc;

    fn shared() -> Shared {
        Shared::new(Arc::new(MemoryStorage::new()), Options::default())
    }

    #[test]
    fn a_claim_backs_off_while_a_transaction_is_open_and_asks_for_a_publish() {
        let shared = shared();
        let staged = Staged::default();
        assert!(!shared.staging.must_publish(&staged, 10));
        shared.tx_open.store(true, Ordering::SeqCst);
        let mut inner = shared.lock();
        assert_eq!(
            shared.collect_staged(&mut inner, false),
            Collected::WriterBusy
        );
        assert!(!shared.staging.claimed(), "a failed claim lets go at once");
        assert!(
            shared.staging.must_publish(&staged, 10),
            "the writer is asked"
        );
        shared.staging.published();
        assert!(!shared.staging.must_publish(&staged, 10));
        shared.tx_open.store(false, Ordering::SeqCst);
        {
            let claim = shared.staging.claim(&shared.tx_open, &inner);
            assert!(claim.is_some() && shared.staging.claimed());
        }
        assert!(!shared.staging.claimed(), "a claim ends when dropped");
        assert_eq!(shared.collect_staged(&mut inner, true), Collected::Nothing);
        assert!(
            shared.staging.must_publish(&staged, 10),
            "an idle worker asks"
        );
    }

    #[test]
    fn collecting_merges_newer_values_and_dates_the_batch_from_its_first_commit() {
        let shared = shared();
        let linger = shared.options.flush_interval;
        let t0 = shared.options.clock.now();
        let mut inner = shared.lock();
        inner.pending.insert((WsId(1), SeqId(1)), 5);
        inner.pending.insert((WsId(2), SeqId(1)), 9);
        {
            // SAFETY: no transaction and no claim: this test is the only thread.
            let staged = unsafe { shared.staging.writer() };
            staged.values.insert((WsId(1), SeqId(1)), 7);
            staged.next = Some(PLogOffset(4));
            staged.since = Some(t0);
            shared.staging.set_len(1);
        }
        assert_eq!(shared.unflushed_values(), 1, "staged values count");
        assert_eq!(shared.collect_staged(&mut inner, true), Collected::Some);
        assert_eq!(
            inner.pending.get(&(WsId(1), SeqId(1))),
            Some(&7),
            "newer wins"
        );
        assert_eq!(inner.pending.get(&(WsId(2), SeqId(1))), Some(&9));
        assert_eq!(inner.pending_next, Some(PLogOffset(4)));
        assert_eq!(inner.due, Some(t0 + linger));
        assert_eq!(shared.unflushed_values(), 2);
        assert_eq!(shared.collect_staged(&mut inner, false), Collected::Nothing);
        assert_eq!(inner.pending_next, Some(PLogOffset(4)));
    }
}
