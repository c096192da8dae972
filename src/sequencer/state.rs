//! What a sequencer's writer and its background worker share: the unflushed values, the
//! durable offset, the status latch, and counters.
//!
//! One mutex guards [`Inner`]; it is held only for map operations, never across storage I/O.
//! The hot path reads the status, generation and unflushed count from atomics without it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub(crate) use super::flight::ValueMap;
use super::flight::{Flight, WorkerWait};
use super::staging::Staging;
use crate::options::Options;
use crate::storage::SeqStorage;
use crate::types::{PLogOffset, SeqId, WsId};
use crate::util::lock;

/// How many ended generations [`Inner::discards`] remembers for `wait_durable`.
const DISCARD_HISTORY: usize = 1024;

/// The sequencer's lifecycle, as stored in [`Shared::status`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub(crate) enum Status {
    /// Transactions may start.
    Ready = 0,
    /// The actualizer is rebuilding state; `start` answers `Busy`.
    Actualizing = 1,
    /// `close` was called.
    Closing = 2,
    /// The background worker panicked; nothing more is accepted.
    Poisoned = 3,
}

impl Status {
    /// The state as the public API names it.
    pub(crate) fn public(self) -> crate::stats::SequencerState {
        use crate::stats::SequencerState;
        match self {
            Status::Ready => SequencerState::Ready,
            Status::Actualizing => SequencerState::Actualizing,
            Status::Closing => SequencerState::Closing,
            Status::Poisoned => SequencerState::Poisoned,
        }
    }

    fn from_u8(v: u8) -> Status {
        match v {
            0 => Status::Ready,
            1 => Status::Actualizing,
            2 => Status::Closing,
            _ => Status::Poisoned,
        }
    }
}

pub(crate) struct Shared {
    pub(crate) storage: Arc<dyn SeqStorage>,
    pub(crate) options: Options,
    status: AtomicU8,
    /// Bumped when an actualization discards state. The writer compares it with its own copy
    /// to know it must drop its cache and take the new next offset.
    pub(crate) generation: AtomicU64,
    /// The writer has a transaction open. The actualizer waits for it to end before it reads
    /// the PLog, so an event the application logs and then flushes is never missed.
    pub(crate) tx_open: AtomicBool,
    /// `pending.len() + flight.len()`, readable without the lock.
    pub(crate) unflushed: AtomicUsize,
    /// Mirror of `Inner::durable_next`.
    pub(crate) durable_next: AtomicU64,
    /// The last write to storage (or replay read) failed; cleared by the next success.
    pub(crate) storage_failing: AtomicBool,
    pub(crate) inner: Mutex<Inner>,
    /// The writer's commits not yet in `Inner::pending` (`sequencer/staging.rs`).
    pub(crate) staging: Staging,
    /// The worker waits here for work.
    pub(crate) work: Condvar,
    /// Writers and durability waiters wait here; notified after every write, actualization
    /// and state change.
    pub(crate) progress: Condvar,
    pub(crate) counters: Counters,
}

pub(crate) struct Inner {
    /// Committed since the worker last took a batch.
    pub(crate) pending: ValueMap,
    /// The offset after the newest committed transaction, if any was committed since the last
    /// take (a transaction without numbers still advances the offset).
    pub(crate) pending_next: Option<PLogOffset>,
    /// When the worker writes the pending batch (`flush_interval` after its first commit);
    /// `None`: at once.
    pub(crate) due: Option<Instant>,
    /// The batch taken for writing, if any, and who writes it (`sequencer/flight.rs`).
    pub(crate) flight: Flight,
    /// An emptied map kept to swap in for `pending`, so steady state does not allocate.
    pub(crate) spare: ValueMap,
    /// What the worker waits for, so others know whether to wake it.
    pub(crate) worker: WorkerWait,
    pub(crate) actualize_requested: bool,
    pub(crate) stop: Option<Instant>,
    /// The checkpoint known durable: every transaction below it is on disk.
    pub(crate) durable_next: PLogOffset,
    /// Where the writer's offsets resume after the last actualization.
    pub(crate) base_offset: PLogOffset,
    /// (generation that ended, first offset of it that was discarded), newest last.
    pub(crate) discards: VecDeque<(u64, PLogOffset)>,
    pub(crate) worker_done: bool,
    pub(crate) poison: Option<String>,
    /// What the worker could not persist when it stopped: (values, first offset).
    pub(crate) lost: Option<(usize, PLogOffset)>,
    /// The most recent storage error the worker met (flush or actualization).
    pub(crate) last_error: Option<String>,
}

impl Inner {
    /// The newest committed number of a key that is not durable yet: pending first, then the
    /// batch in flight.
    pub(crate) fn unflushed(&self, key: &(WsId, SeqId)) -> Option<&u64> {
        self.pending.get(key).or_else(|| self.flight.get(key))
    }

    /// What is committed and not durable, for `Error::Unpersisted`: the distinct values, and
    /// the first offset not covered by the checkpoint. `None` when nothing is: no value, and
    /// no transaction past the checkpoint (a batch that would only rewrite the checkpoint
    /// where it is, as the probe after a failed write does, loses nothing).
    pub(crate) fn unpersisted(&self) -> Option<(usize, PLogOffset)> {
        let values = self.pending.len() + self.flight.len();
        let beyond = [self.pending_next, self.flight.next()]
            .into_iter()
            .flatten()
            .any(|next| next > self.durable_next);
        (values > 0 || beyond).then_some((values, self.durable_next))
    }
}

impl Shared {
    pub(crate) fn new(storage: Arc<dyn SeqStorage>, options: Options) -> Self {
        Self {
            storage,
            options,
            status: AtomicU8::new(Status::Actualizing as u8),
            generation: AtomicU64::new(0),
            tx_open: AtomicBool::new(false),
            unflushed: AtomicUsize::new(0),
            durable_next: AtomicU64::new(PLogOffset::FIRST.0),
            storage_failing: AtomicBool::new(false),
            inner: Mutex::new(Inner {
                pending: ValueMap::default(),
                pending_next: None,
                due: None,
                flight: Flight::Idle,
                spare: ValueMap::default(),
                worker: WorkerWait::Running,
                // Opening is an actualization: recovery runs before the first start.
                actualize_requested: true,
                stop: None,
                durable_next: PLogOffset::FIRST,
                base_offset: PLogOffset::FIRST,
                discards: VecDeque::new(),
                worker_done: false,
                poison: None,
                lost: None,
                last_error: None,
            }),
            staging: Staging::default(),
            work: Condvar::new(),
            progress: Condvar::new(),
            counters: Counters::default(),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        lock(&self.inner)
    }

    #[inline]
    pub(crate) fn status(&self) -> Status {
        Status::from_u8(self.status.load(Ordering::Acquire))
    }

    /// Status as seen after a SeqCst store of `tx_open` (the writer's half of the handshake
    /// with the actualizer).
    #[inline]
    pub(crate) fn status_seqcst(&self) -> Status {
        Status::from_u8(self.status.load(Ordering::SeqCst))
    }

    pub(crate) fn set_status(&self, s: Status) {
        self.status.store(s as u8, Ordering::SeqCst);
    }

    /// Moves Ready to Actualizing; leaves Closing and Poisoned alone. Returns whether it moved.
    pub(crate) fn begin_actualizing(&self) -> bool {
        self.status
            .compare_exchange(
                Status::Ready as u8,
                Status::Actualizing as u8,
                Ordering::SeqCst,
                Ordering::SeqCst,
            )
            .is_ok()
    }

    /// The deadline `close` set, if it was called.
    pub(crate) fn stop_deadline(&self) -> Option<Instant> {
        self.lock().stop
    }

    /// The checkpoint and the generation it belongs to, read consistently: every transaction
    /// of that generation at or below the offset is durable. `None` while an actualization
    /// moves the generation on.
    pub(crate) fn checkpoint(&self) -> Option<(PLogOffset, u64)> {
        let generation = self.generation.load(Ordering::Acquire);
        let flushed = PLogOffset(self.durable_next.load(Ordering::Acquire).saturating_sub(1));
        (self.generation.load(Ordering::Acquire) == generation).then_some((flushed, generation))
    }

    /// Records a durable checkpoint (never moving it back); the caller notifies `progress`.
    pub(crate) fn set_durable(&self, inner: &mut Inner, next: PLogOffset) {
        if next > inner.durable_next {
            inner.durable_next = next;
            self.durable_next.store(next.0, Ordering::Release);
        }
    }

    /// Moves the writer's staged commits into `Inner::pending`, unless it has a transaction
    /// open (then it is asked to publish at its commit). With `ask`, an empty staging area
    /// asks too: the worker, about to sleep, hears of the next commit.
    pub(crate) fn collect_staged(&self, inner: &mut Inner, ask: bool) -> Collected {
        let Some(mut claim) = self.staging.claim(&self.tx_open, inner) else {
            return Collected::WriterBusy;
        };
        if claim.drain_into(inner, self.options.flush_interval) {
            drop(claim);
            self.recompute_unflushed(inner);
            return Collected::Some;
        }
        if ask {
            // Before the claim ends: the writer's next handshake sees the claim end, and so
            // this (`sequencer/staging.rs`).
            self.staging.ask();
        }
        Collected::Nothing
    }

    /// What is committed and not durable, staged values included (for `Error::Unpersisted`,
    /// see [`Inner::unpersisted`]).
    pub(crate) fn unpersisted(&self, inner: &Inner) -> Option<(usize, PLogOffset)> {
        let staged = self.staging.len();
        match inner.unpersisted() {
            Some((values, from)) => Some((values + staged, from)),
            None => (staged > 0).then_some((staged, inner.durable_next)),
        }
    }

    /// Values committed and not durable: pending, in flight and staged.
    pub(crate) fn unflushed_values(&self) -> usize {
        self.unflushed.load(Ordering::Acquire) + self.staging.len()
    }

    pub(crate) fn recompute_unflushed(&self, inner: &Inner) {
        self.unflushed
            .store(inner.pending.len() + inner.flight.len(), Ordering::Release);
    }

    /// Lets `d` pass on the configured clock (the worker's backoff and linger). `close` and
    /// actualization requests cut it short; commits do not (the worker is not marked idle),
    /// so a stream of commits cannot turn a backoff into a retry storm.
    pub(crate) fn pause(&self, d: Duration) {
        if d.is_zero() {
            return;
        }
        self.options.clock.pause(d, &mut |d| {
            let inner = self.lock();
            if inner.stop.is_some() || inner.actualize_requested {
                return;
            }
            let _ = self.work.wait_timeout(inner, d);
        });
    }

    /// Wakes every thread waiting on `progress`, and the embedder's hook.
    pub(crate) fn notify_progress(&self) {
        self.progress.notify_all();
        if let Some(hook) = &self.options.on_progress {
            hook.call();
        }
    }

    pub(crate) fn push_discard(inner: &mut Inner, ended_generation: u64, from: PLogOffset) {
        if inner.discards.len() >= DISCARD_HISTORY {
            inner.discards.pop_front();
        }
        inner.discards.push_back((ended_generation, from));
    }
}

/// What [`Shared::collect_staged`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Collected {
    /// Staged commits moved into `Inner::pending`.
    Some,
    /// Nothing was staged.
    Nothing,
    /// The writer has a transaction open; it publishes at its commit.
    WriterBusy,
}

/// Counters of the background worker, read by `Sequencer::stats`.
#[derive(Default, Debug)]
pub(crate) struct Counters {
    pub(crate) flush_batches: AtomicU64,
    pub(crate) flushed_values: AtomicU64,
    pub(crate) flush_errors: AtomicU64,
    pub(crate) flush_retries: AtomicU64,
    pub(crate) flush_give_ups: AtomicU64,
    pub(crate) largest_batch: AtomicU64,
    pub(crate) last_flush_ns: AtomicU64,
    pub(crate) max_flush_ns: AtomicU64,
    pub(crate) total_flush_ns: AtomicU64,
    pub(crate) actualizations: AtomicU64,
    pub(crate) actualize_errors: AtomicU64,
    pub(crate) replayed_events: AtomicU64,
    pub(crate) busy_rejections: AtomicU64,
}

impl Counters {
    pub(crate) fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn record_write(&self, values: usize, took: Duration) {
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        Self::add(&self.flush_batches, 1);
        Self::add(&self.flushed_values, values as u64);
        Self::add(&self.total_flush_ns, ns);
        self.last_flush_ns.store(ns, Ordering::Relaxed);
        self.max_flush_ns.fetch_max(ns, Ordering::Relaxed);
        self.largest_batch
            .fetch_max(values as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sequencer::flight::Writer;
    use crate::storage::MemoryStorage;

    #[test]
    fn only_what_is_past_the_checkpoint_is_unpersisted() {
        let shared = Shared::new(Arc::new(MemoryStorage::new()), Options::default());
        let mut inner = shared.lock();
        inner.durable_next = PLogOffset(5);
        assert_eq!(inner.unpersisted(), None);
        // The probe after a failed write: the checkpoint again, where it is.
        inner.pending_next = Some(PLogOffset(5));
        assert_eq!(inner.unpersisted(), None);
        let probe = inner
            .flight
            .take(ValueMap::default(), PLogOffset(5), Writer::Worker);
        inner.pending_next = None;
        drop(probe);
        inner.flight.give_up();
        assert_eq!(inner.unpersisted(), None, "a given-up probe loses nothing");
        inner.flight.discard();
        // A transaction without numbers, committed at offset 5.
        inner.pending_next = Some(PLogOffset(6));
        assert_eq!(inner.unpersisted(), Some((0, PLogOffset(5))));
        inner.pending_next = None;
        inner.pending.insert((WsId(1), SeqId(1)), 7);
        assert_eq!(inner.unpersisted(), Some((1, PLogOffset(5))));
    }
}
