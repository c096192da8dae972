//! `--max-pending-bytes`: a bound on the memory all connections together hold for requests
//! they have not received whole (and for queued `MULTI` transactions).
//!
//! Each connection may hold one request of up to 1 MiB (`server::MAX_REQUEST`); with 10,000
//! connections that would be 10 GiB. Every connection gets [`FREE_BYTES`] for nothing — its
//! usual read buffer — and holds a [`Charge`] against the shared [`PendingBudget`] for what
//! its read buffer's allocation and its queued transaction take beyond. A connection
//! whose charge cannot grow is told so and closed (`-ERR ... --max-pending-bytes`); the others
//! are unaffected. So the memory held for partial requests is at most
//! `--max-connections` × [`FREE_BYTES`] + `--max-pending-bytes`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Bytes a connection may hold without a charge: a read buffer of the usual 16 KiB and one
/// reserve of as much (`server/buffer.rs`), what every connection that pipelines holds.
pub(crate) const FREE_BYTES: usize = 32 * 1024;

/// The shared budget.
#[derive(Debug)]
pub(crate) struct PendingBudget {
    limit: usize,
    held: AtomicUsize,
}

/// One connection's part of the budget; returned when dropped.
#[derive(Debug)]
pub(crate) struct Charge {
    budget: Arc<PendingBudget>,
    bytes: usize,
}

impl PendingBudget {
    /// A budget of `limit` bytes.
    pub(crate) fn new(limit: usize) -> Arc<Self> {
        Arc::new(PendingBudget {
            limit,
            held: AtomicUsize::new(0),
        })
    }

    /// Bytes charged now, over all connections.
    pub(crate) fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// An empty charge.
    pub(crate) fn charge(self: &Arc<Self>) -> Charge {
        Charge {
            budget: Arc::clone(self),
            bytes: 0,
        }
    }
}

impl Charge {
    /// Sets this connection's charge to what it holds beyond [`FREE_BYTES`] of `held` bytes.
    /// False (and the charge unchanged) when the budget has no room for the growth.
    pub(crate) fn set(&mut self, held: usize) -> bool {
        let want = held.saturating_sub(FREE_BYTES);
        if want == self.bytes {
            return true; // the usual case: nothing to write to the shared counter
        }
        if want < self.bytes {
            self.budget
                .held
                .fetch_sub(self.bytes - want, Ordering::Relaxed);
            self.bytes = want;
            return true;
        }
        let grow = want - self.bytes;
        let limit = self.budget.limit;
        let grown = self
            .budget
            .held
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |h| {
                h.checked_add(grow).filter(|&n| n <= limit)
            });
        if grown.is_ok() {
            self.bytes = want;
        }
        grown.is_ok()
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget.held.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_grow_within_the_limit_and_are_returned() {
        let budget = PendingBudget::new(100_000);
        let mut a = budget.charge();
        let mut b = budget.charge();
        assert!(a.set(FREE_BYTES), "the free part costs nothing");
        assert_eq!(budget.held(), 0);
        assert!(a.set(FREE_BYTES + 60_000));
        assert_eq!(budget.held(), 60_000);
        assert!(!b.set(FREE_BYTES + 50_000), "over the limit");
        assert_eq!(budget.held(), 60_000, "a refused growth changes nothing");
        assert!(b.set(FREE_BYTES + 40_000));
        assert_eq!(budget.held(), 100_000);
        assert!(a.set(10), "shrinking always succeeds");
        assert_eq!(budget.held(), 40_000);
        drop(b);
        assert_eq!(budget.held(), 0);
        drop(a);
        assert_eq!(budget.held(), 0);
    }
}
