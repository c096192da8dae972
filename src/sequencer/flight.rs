//! The batch in flight and the worker's wait, as two state types whose transitions are
//! checked: who may write, who waits for whom, who must be woken.
//!
//! A sequencer writes one batch at a time. Its background worker or a [`FlushHandle`]
//! (a caller's thread) takes everything pending as the batch ([`Flight::take`]), writes it
//! without the lock, and ends the write ([`Flight::written`], or for a caller whose write
//! failed [`Flight::hand_over`] to the worker, which retries it). While a batch is taken, its
//! numbers stay reachable through [`Flight::values`]: a cache miss must find them, or a
//! number committed but not yet durable would be handed out again.
//!
//! ```text
//!              take(by)                     written(by)
//!   Idle ──────────────────► Writing{by} ──────────────────► Idle
//!                             │       ▲
//!        hand_over (a caller  │       │ resume (the worker)
//!        whose write failed)  ▼       │
//!                            HandedOver ───────────┐
//!                                                  │ discard (the actualizer)
//!   Writing{Worker} ── give_up ──► GivenUp ────────┴─────────► Idle
//!   (budget spent, permanent error, stopping)
//! ```
//!
//! Every transition is a method that checks (`debug_assert!`) the state it leaves; nothing
//! else changes the state. The single-writer rule is `take` from `Idle` only.
//!
//! [`FlushHandle`]: crate::FlushHandle

use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::types::{PLogOffset, SeqId, WsId};

/// Committed values not yet durable, by (workspace, sequence): the last number handed out.
/// `Inner::pending` is one; a taken batch is another.
pub(crate) type ValueMap = FxHashMap<(WsId, SeqId), u64>;

/// Who writes a taken batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Writer {
    /// The sequencer's background worker.
    Worker,
    /// A [`FlushHandle`](crate::FlushHandle) on the embedder's thread.
    Caller,
}

/// A taken batch, as its writer holds it while it writes without the lock.
pub(crate) struct Taken {
    pub(crate) batch: Arc<ValueMap>,
    /// The checkpoint it makes durable: the offset after its last transaction.
    pub(crate) next: PLogOffset,
}

/// The batch in flight (see the module docs for the transitions).
#[derive(Debug, Default)]
pub(crate) enum Flight {
    /// Nothing taken: every unflushed value is in `Inner::pending`.
    #[default]
    Idle,
    /// `by` is writing `batch`; nobody else writes until it ends.
    Writing {
        batch: Arc<ValueMap>,
        next: PLogOffset,
        by: Writer,
    },
    /// A caller's write of `batch` failed (`retryable` or not); the worker takes it next.
    HandedOver {
        batch: Arc<ValueMap>,
        next: PLogOffset,
        retryable: bool,
    },
    /// The worker gave the batch up; it stays reachable until the actualizer discards it
    /// (a transaction open now may still miss its cache and must find these numbers).
    GivenUp {
        batch: Arc<ValueMap>,
        next: PLogOffset,
    },
}

impl Flight {
    /// Whether no batch is taken: a writer may take one.
    pub(crate) fn is_idle(&self) -> bool {
        matches!(self, Flight::Idle)
    }

    /// Whether a caller is writing (the worker waits for it to end).
    pub(crate) fn caller_writing(&self) -> bool {
        matches!(
            self,
            Flight::Writing {
                by: Writer::Caller,
                ..
            }
        )
    }

    /// The taken batch's number for a key, if any.
    pub(crate) fn get(&self, key: &(WsId, SeqId)) -> Option<&u64> {
        self.values().and_then(|m| m.get(key))
    }

    /// The taken batch, whatever its state.
    pub(crate) fn values(&self) -> Option<&ValueMap> {
        match self {
            Flight::Idle => None,
            Flight::Writing { batch, .. }
            | Flight::HandedOver { batch, .. }
            | Flight::GivenUp { batch, .. } => Some(batch),
        }
    }

    /// The checkpoint the taken batch would make durable, whatever its state.
    pub(crate) fn next(&self) -> Option<PLogOffset> {
        match self {
            Flight::Idle => None,
            Flight::Writing { next, .. }
            | Flight::HandedOver { next, .. }
            | Flight::GivenUp { next, .. } => Some(*next),
        }
    }

    /// How many values the taken batch holds (counted as unflushed).
    pub(crate) fn len(&self) -> usize {
        self.values().map_or(0, |m| m.len())
    }

    /// `Idle → Writing{by}`: `by` takes `batch` to write it.
    pub(crate) fn take(&mut self, batch: ValueMap, next: PLogOffset, by: Writer) -> Taken {
        debug_assert!(self.is_idle(), "two writes in flight: {self:?} and {by:?}");
        let batch = Arc::new(batch);
        *self = Flight::Writing {
            batch: Arc::clone(&batch),
            next,
            by,
        };
        Taken { batch, next }
    }

    /// `HandedOver → Writing{Worker}`: the worker takes a batch a caller failed to write,
    /// with whether that error was retryable.
    pub(crate) fn resume(&mut self) -> Option<(Taken, bool)> {
        let Flight::HandedOver {
            batch,
            next,
            retryable,
        } = self
        else {
            debug_assert!(false, "resume without a handed-over batch: {self:?}");
            return None;
        };
        let (batch, next, retryable) = (Arc::clone(batch), *next, *retryable);
        *self = Flight::Writing {
            batch: Arc::clone(&batch),
            next,
            by: Writer::Worker,
        };
        Some((Taken { batch, next }, retryable))
    }

    /// Whether a caller's failed batch waits for the worker.
    pub(crate) fn handed_over(&self) -> bool {
        matches!(self, Flight::HandedOver { .. })
    }

    /// `Writing{by} → Idle`: the batch is durable. Returns its map for reuse when no other
    /// reference is left (the writer drops its [`Taken`] first).
    pub(crate) fn written(&mut self, by: Writer) -> Option<ValueMap> {
        let previous = std::mem::take(self);
        match previous {
            Flight::Writing { batch, by: b, .. } if b == by => Arc::try_unwrap(batch).ok(),
            other => {
                debug_assert!(false, "written by {by:?} in {other:?}");
                *self = other;
                None
            }
        }
    }

    /// `Writing{Caller} → HandedOver`: a caller's write failed; the worker retries it.
    pub(crate) fn hand_over(&mut self, retryable: bool) {
        match std::mem::take(self) {
            Flight::Writing {
                batch,
                next,
                by: Writer::Caller,
            } => {
                *self = Flight::HandedOver {
                    batch,
                    next,
                    retryable,
                }
            }
            other => {
                debug_assert!(false, "hand_over in {other:?}");
                *self = other;
            }
        }
    }

    /// `Writing{Worker} → GivenUp`: the worker will not write the batch (budget spent, a
    /// permanent error, or stopping).
    pub(crate) fn give_up(&mut self) {
        match std::mem::take(self) {
            Flight::Writing {
                batch,
                next,
                by: Writer::Worker,
            } => *self = Flight::GivenUp { batch, next },
            other => {
                debug_assert!(false, "give_up in {other:?}");
                *self = other;
            }
        }
    }

    /// `→ Idle` from anything but `Writing`: the actualizer drops the batch with the rest of
    /// the unflushed state (it runs only once no write is in flight).
    pub(crate) fn discard(&mut self) {
        debug_assert!(
            !matches!(self, Flight::Writing { .. }),
            "discarding a batch being written: {self:?}"
        );
        *self = Flight::Idle;
    }
}

/// What the background worker is doing, as far as others must know to wake it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum WorkerWait {
    /// Working, or about to look for work: no wake-up needed.
    #[default]
    Running,
    /// Waiting for work: commits, requests and stop wake it.
    Idle,
    /// Letting a batch grow until it is due: only a batch made due at once (or stop or an
    /// actualization request) wakes it; commits do not.
    Lingering,
    /// Waiting for a caller's write to end.
    ForCaller,
}

impl WorkerWait {
    /// A commit arrived: whether the worker must be notified (it was idle), marking it awake.
    pub(crate) fn wake_for_commit(&mut self) -> bool {
        let wake = *self == WorkerWait::Idle;
        if wake {
            *self = WorkerWait::Running;
        }
        wake
    }

    /// The pending batch became due now: whether the worker must be notified.
    pub(crate) fn wake_for_due(&mut self) -> bool {
        let wake = matches!(self, WorkerWait::Idle | WorkerWait::Lingering);
        if wake {
            *self = WorkerWait::Running;
        }
        wake
    }

    /// A batch became due while a write is in flight: whether a lingering worker must be
    /// notified (an idle one is woken when that write ends, if it must be).
    pub(crate) fn wake_if_lingering(&mut self) -> bool {
        let wake = *self == WorkerWait::Lingering;
        if wake {
            *self = WorkerWait::Running;
        }
        wake
    }

    /// A caller's write ended (`overdue`: a batch is pending and due): whether the worker
    /// must be notified — it waits for that write, or it sleeps while a batch is due.
    pub(crate) fn wake_after_caller(&mut self, overdue: bool) -> bool {
        let wake = *self == WorkerWait::ForCaller
            || (overdue && matches!(self, WorkerWait::Idle | WorkerWait::Lingering));
        if wake {
            *self = WorkerWait::Running;
        }
        wake
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(n: u64) -> ValueMap {
        let mut m = ValueMap::default();
        m.insert((WsId(1), SeqId(1)), n);
        m
    }

    #[test]
    fn a_written_batch_returns_its_map_once_the_writer_let_go() {
        let mut f = Flight::Idle;
        let taken = f.take(map(5), PLogOffset(2), Writer::Worker);
        assert_eq!(f.get(&(WsId(1), SeqId(1))), Some(&5));
        assert_eq!(f.len(), 1);
        drop(taken);
        let reused = f.written(Writer::Worker);
        assert!(f.is_idle());
        assert_eq!(reused.map(|m| m.len()), Some(1));
    }

    #[test]
    fn a_caller_failure_goes_to_the_worker_which_may_give_it_up() {
        let mut f = Flight::Idle;
        let _taken = f.take(map(5), PLogOffset(2), Writer::Caller);
        assert!(f.caller_writing());
        f.hand_over(true);
        assert!(f.handed_over());
        assert_eq!(f.len(), 1, "still reachable for cache misses");
        let (taken, retryable) = f.resume().expect("handed over");
        assert!(retryable);
        assert_eq!(taken.next, PLogOffset(2));
        f.give_up();
        assert_eq!(f.get(&(WsId(1), SeqId(1))), Some(&5));
        f.discard();
        assert!(f.is_idle());
    }

    #[test]
    #[should_panic(expected = "two writes in flight")]
    #[cfg(debug_assertions)]
    fn a_second_take_is_refused() {
        let mut f = Flight::Idle;
        let _a = f.take(map(1), PLogOffset(2), Writer::Worker);
        let _b = f.take(map(2), PLogOffset(3), Writer::Caller);
    }

    #[test]
    #[should_panic(expected = "written by Caller")]
    #[cfg(debug_assertions)]
    fn only_the_writer_ends_its_write() {
        let mut f = Flight::Idle;
        let _a = f.take(map(1), PLogOffset(2), Writer::Worker);
        f.written(Writer::Caller);
    }

    #[test]
    fn the_worker_is_woken_only_when_it_would_not_notice() {
        let mut w = WorkerWait::Lingering;
        assert!(!w.wake_for_commit(), "commits do not cut a linger short");
        assert!(w.wake_for_due());
        assert_eq!(w, WorkerWait::Running);
        let mut w = WorkerWait::ForCaller;
        assert!(w.wake_after_caller(false));
        let mut w = WorkerWait::Idle;
        assert!(!w.wake_after_caller(false));
        assert!(w.wake_after_caller(true));
    }
}
