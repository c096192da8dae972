//! [`Sequencer`]: one partition's source of numbers.

mod durability;
pub(crate) mod flight;
mod floor;
mod lifecycle;
mod resident;
pub(crate) mod staging;
pub(crate) mod state;
mod transaction;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::cache::WsCache;
use crate::error::{BusyReason, Error, Result};
use crate::flusher::{self, FlushHandle};
use crate::options::Options;
use crate::stats::Stats;
use crate::storage::SeqStorage;
use rustc_hash::FxHashMap;

use crate::types::{KindSeqs, Number, PLogOffset, SeqId, WsId, WsKind};

pub use durability::{Committed, DurabilityWatcher};
pub use lifecycle::Closing;
use state::{Shared, Status};
pub use transaction::Transaction;

/// One partition's sequencer: hands out numbers per (workspace, sequence) from memory, persists
/// them in the background, and recovers from storage and the partition log (PLog).
///
/// ```
/// use seqd::{Sequencer, Options, SeqTypes, WsKind, WsId, SeqId, Number, PLogOffset};
/// use seqd::storage::MemoryStorage;
/// use std::time::Duration;
///
/// let options = Options {
///     seq_types: SeqTypes::new().with(WsKind(1), SeqId(5), Number(200_001)),
///     ..Options::default()
/// };
/// let mut seq = Sequencer::open(MemoryStorage::new(), options)?;
/// // Recovery runs in the background; start_timeout waits for it.
/// let mut tx = seq.start_timeout(WsKind(1), WsId(42), Duration::from_secs(5))?;
/// assert_eq!(tx.offset(), PLogOffset(1));
/// assert_eq!(tx.next(SeqId(5))?, Number(200_001));
/// let committed = tx.flush();
/// seq.wait_durable(committed, Duration::from_secs(5))?;
/// seq.close()?;
/// # Ok::<(), seqd::Error>(())
/// ```
pub struct Sequencer {
    shared: Arc<Shared>,
    /// `Options::seq_types`, compiled: kind → index into `kinds`.
    kind_index: FxHashMap<WsKind, usize>,
    kinds: Vec<KindSeqs>,
    pub(crate) cache: WsCache,
    next_offset: PLogOffset,
    generation: u64,
    max_unflushed: usize,
    /// The writer publishes its staged commits once it holds this many values.
    stage_limit: usize,
    /// The open transaction's last number per sequence of its kind (0 = not touched).
    pub(crate) tx_last: Vec<u64>,
    /// Scratch for loading a workspace.
    load_buf: Vec<u64>,
    commits: u64,
    /// What an actualization raises every sequence to (see `floor.rs`).
    floor: floor::DiscardFloor,
    worker: Option<JoinHandle<()>>,
}

impl Sequencer {
    /// Opens a sequencer on `storage` and starts recovery in the background: it returns at
    /// once, and `start` answers `Busy` until recovery has replayed the PLog tail.
    ///
    /// Errors: [`Error::InvalidOptions`] when `options` fail [`Options::validate`].
    pub fn open<S: SeqStorage>(storage: S, options: Options) -> Result<Sequencer> {
        Self::open_named(storage, options, "seqd-partition")
    }

    /// [`open`](Self::open), naming the background thread (for a partition number, say).
    pub fn open_named<S: SeqStorage>(
        storage: S,
        options: Options,
        name: &str,
    ) -> Result<Sequencer> {
        options.validate()?;
        let (kind_index, kinds) = options.seq_types.compile();
        let cache = WsCache::new(options.cache_capacity);
        let max_unflushed = options.max_unflushed;
        // Staged values count towards `max_unflushed`; a quarter leaves room for the rest.
        let stage_limit = (max_unflushed / 4).clamp(1, staging::STAGE_LIMIT);
        let shared = Arc::new(Shared::new(Arc::new(storage), options));
        let worker =
            flusher::spawn(Arc::clone(&shared), name.to_string()).map_err(|e| Error::Io {
                context: "cannot start the sequencer's background worker thread".into(),
                source: e,
            })?;
        Ok(Sequencer {
            shared,
            kind_index,
            kinds,
            cache,
            next_offset: PLogOffset::FIRST,
            generation: 0,
            max_unflushed,
            stage_limit,
            tx_last: Vec::new(),
            load_buf: Vec::new(),
            commits: 0,
            floor: floor::DiscardFloor::default(),
            worker: Some(worker),
        })
    }

    /// Starts a transaction on workspace `ws` of kind `kind`.
    ///
    /// Errors: [`Error::Busy`] while recovering or while more than `max_unflushed` values wait
    /// for storage (retry, or use [`start_timeout`](Self::start_timeout));
    /// [`Error::UnknownKind`]; [`Error::Poisoned`].
    #[inline]
    pub fn start(&mut self, kind: WsKind, ws: WsId) -> Result<Transaction<'_>> {
        self.ready()?;
        self.begin(kind, ws)
    }

    /// Like [`start`](Self::start), but waits up to `timeout` while the sequencer is busy —
    /// also when an actualization starts between the wait and the transaction's handshake with
    /// the actualizer: `Busy` only once `timeout` has passed.
    pub fn start_timeout(
        &mut self,
        kind: WsKind,
        ws: WsId,
        timeout: Duration,
    ) -> Result<Transaction<'_>> {
        // The common case first: no clock read on the hot path.
        let ki = match self.ready().and_then(|()| self.handshake(kind)) {
            Ok(ki) => ki,
            Err(Error::Busy { .. }) => self.handshake_within(kind, timeout)?,
            Err(e) => return Err(e),
        };
        Ok(self.transaction(kind, ki, ws))
    }

    /// [`start_timeout`](Self::start_timeout)'s wait: the kind's index once a handshake
    /// succeeds, or `Busy` once `timeout` has passed.
    #[cold]
    fn handshake_within(&mut self, kind: WsKind, timeout: Duration) -> Result<usize> {
        let deadline = Instant::now() + timeout;
        loop {
            self.wait_ready(deadline.saturating_duration_since(Instant::now()))?;
            match self.handshake(kind) {
                Err(e @ Error::Busy { .. }) if Instant::now() >= deadline => return Err(e),
                Err(Error::Busy { .. }) => {} // an actualization began: wait for it
                other => return other,
            }
        }
    }

    /// Waits up to `timeout` until a transaction could start: recovery done and unflushed
    /// state below `max_unflushed`. Errors as [`start`](Self::start) when it runs out of time.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        // The common case first: no clock read on the hot path.
        match self.ready() {
            Err(Error::Busy { .. }) => {}
            other => return other,
        }
        let deadline = Instant::now() + timeout;
        loop {
            match self.ready() {
                Err(e @ Error::Busy { .. }) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(e);
                    }
                    // Woken by every write and actualization; the cap covers a missed wakeup.
                    let wait = (deadline - now).min(Duration::from_millis(10));
                    let inner = self.shared.lock();
                    let _ = self.shared.progress.wait_timeout(inner, wait);
                }
                other => return other,
            }
        }
    }

    /// Whether a transaction may start now (the handshake re-checks the status and
    /// resynchronizes after an actualization).
    #[inline]
    fn ready(&mut self) -> Result<()> {
        match self.shared.status() {
            Status::Ready => {}
            Status::Actualizing => {
                return Err(Error::Busy {
                    reason: BusyReason::Actualizing,
                });
            }
            Status::Closing => {
                return Err(Error::Busy {
                    reason: BusyReason::Closing,
                });
            }
            Status::Poisoned => return Err(self.poisoned()),
        }
        let unflushed = self.shared.unflushed_values();
        if unflushed >= self.max_unflushed {
            state::Counters::add(&self.shared.counters.busy_rejections, 1);
            return Err(Error::Busy {
                reason: BusyReason::Backpressure {
                    unflushed,
                    limit: self.max_unflushed,
                },
            });
        }
        Ok(())
    }

    #[inline]
    fn begin(&mut self, kind: WsKind, ws: WsId) -> Result<Transaction<'_>> {
        let ki = self.handshake(kind)?;
        Ok(self.transaction(kind, ki, ws))
    }

    /// The first half of [`begin`](Self::begin): the kind's index, and the handshake with the
    /// actualizer (`tx_open` set) — `Busy` if an actualization began, `tx_open` clear again.
    #[inline]
    fn handshake(&mut self, kind: WsKind) -> Result<usize> {
        let ki = *self
            .kind_index
            .get(&kind)
            .ok_or_else(|| Error::UnknownKind(kind))?;
        // An open kind's positions are per workspace entry; `locate` grows `tx_last`.
        let k = &self.kinds[ki];
        let n = if k.is_open() { 0 } else { k.len() };
        self.tx_last.clear();
        self.tx_last.resize(n, 0);
        // Handshake with the actualizer: it flips the status, then waits for tx_open to clear.
        // The same store opens the staging area to the writer (`staging.rs`).
        self.shared.tx_open.store(true, Ordering::SeqCst);
        if self.shared.staging.claimed() {
            // A claimer holds the staging area for a moment, under the lock. None can while
            // the writer holds the lock, so set tx_open again under it.
            self.shared.tx_open.store(false, Ordering::SeqCst);
            let inner = self.shared.lock();
            self.shared.tx_open.store(true, Ordering::SeqCst);
            drop(inner);
        }
        if self.shared.status_seqcst() != Status::Ready {
            self.shared.tx_open.store(false, Ordering::SeqCst);
            return Err(Error::Busy {
                reason: BusyReason::Actualizing,
            });
        }
        // Only now, with `Ready` seen after `tx_open` was set, is the generation settled: no
        // actualization can have bumped it without also having set its `base_offset` (both
        // before `Ready`), and none can bump it again until `tx_open` clears. Read earlier, a
        // generation bumped by a run still replaying would pair with the previous run's
        // `base_offset`, and the writer would reissue offsets (I5).
        let generation = self.shared.generation.load(Ordering::Acquire);
        if generation != self.generation {
            // An actualization discarded state: drop the cache, resume at its offset.
            let inner = self.shared.lock();
            self.next_offset = inner.base_offset;
            drop(inner);
            self.cache.clear();
            self.generation = generation;
            self.floor.settle(generation);
        }
        Ok(ki)
    }

    /// The second half of [`begin`](Self::begin): the transaction, after [`handshake`](Self::handshake).
    #[inline]
    fn transaction(&mut self, kind: WsKind, ki: usize, ws: WsId) -> Transaction<'_> {
        Transaction {
            kind,
            ki,
            ws,
            offset: self.next_offset,
            slot: None,
            done: false,
            seq: self,
        }
    }

    /// A hint for a caller that knows its next workspaces (a batch of requests): call it two
    /// transactions ahead of `ws`'s, and [`prefetch_entry`](Self::prefetch_entry) one ahead,
    /// so that the two memory misses of looking a resident workspace up are taken while the
    /// transactions before it run. Changes nothing else.
    #[inline]
    pub fn prefetch_index(&self, ws: WsId) {
        self.cache.prefetch_index(ws);
    }

    /// The second half of [`prefetch_index`](Self::prefetch_index): the workspace's entry.
    #[inline]
    pub fn prefetch_entry(&self, ws: WsId) {
        self.cache.prefetch_entry(ws);
    }

    /// The number the next `next(seq)` of workspace `ws` would return, without taking it and
    /// without starting an event: no offset is used. Works under backpressure (it changes
    /// nothing); errors as [`start`](Self::start) otherwise, plus [`Error::UnknownSeq`] and
    /// [`Error::Storage`] when loading the workspace failed.
    pub fn peek(&mut self, kind: WsKind, ws: WsId, seq: SeqId) -> Result<Number> {
        match self.ready() {
            Ok(())
            | Err(Error::Busy {
                reason: BusyReason::Backpressure { .. },
            }) => {}
            Err(e) => return Err(e),
        }
        let mut tx = self.begin(kind, ws)?;
        let answer = tx.peek(seq);
        tx.abandon();
        answer
    }

    /// Ends a transaction that took nothing: releases the actualizer handshake only.
    pub(crate) fn end_unused(&mut self) {
        self.shared.tx_open.store(false, Ordering::Release);
    }

    #[inline]
    pub(crate) fn is_open(&self, ki: usize) -> bool {
        self.kinds[ki].is_open()
    }

    #[inline]
    pub(crate) fn seq_index(&self, ki: usize, seq: SeqId) -> Result<usize> {
        let k = &self.kinds[ki];
        // `ok_or_else`: an eager error would be built and dropped on every call.
        k.index_of(seq)
            .ok_or_else(|| Error::UnknownSeq { kind: k.kind, seq })
    }

    #[inline]
    pub(crate) fn initial(&self, ki: usize, idx: usize) -> u64 {
        self.kinds[ki].initials[idx].0.max(self.floor.get())
    }

    /// Publishes the open transaction's numbers and stages them for the flusher: no lock,
    /// unless the worker asked for them or the staging area is full (`staging.rs`).
    #[allow(unsafe_code)] // the writer's staging area: `staging.rs`
    pub(crate) fn commit(
        &mut self,
        ki: usize,
        ws: WsId,
        slot: Option<u32>,
        offset: PLogOffset,
    ) -> Committed {
        let next = PLogOffset(offset.0 + 1);
        // SAFETY: the writer, inside the transaction its handshake opened.
        let staged = unsafe { self.shared.staging.writer() };
        if staged.next.is_none() {
            staged.since = Some(self.shared.options.clock.now());
        }
        if let Some(slot) = slot {
            let k = &self.kinds[ki];
            let entry = self.cache.slot_mut(slot);
            let open = k.is_open();
            for (i, &n) in self.tx_last.iter().enumerate() {
                if n != 0 {
                    entry.last[i] = n;
                    let seq = if open { entry.seqs[i] } else { k.seqs[i] };
                    staged.values.insert((ws, seq), n);
                }
            }
        }
        staged.next = Some(next);
        let staging = &self.shared.staging;
        if staging.must_publish(staged, self.stage_limit) {
            publish(&self.shared, staged);
        } else {
            staging.set_len(staged.values.len());
        }
        self.next_offset = next;
        self.commits += 1;
        self.shared.tx_open.store(false, Ordering::Release);
        Committed {
            offset,
            generation: self.generation,
        }
    }

    /// Discards all unflushed state and rebuilds it from storage and the PLog in the
    /// background, as a failed transaction's `actualize` does; `start` answers `Busy` until
    /// that is done. For operators (the daemon's `POST /v1/partitions/{p}/actualize`).
    pub fn actualize(&mut self) {
        self.request_actualize();
    }

    /// How many actualizations have discarded state so far, as [`Committed`] tickets record
    /// it. When it changes, whatever was committed and not yet durable was dropped, and the
    /// offsets of transactions whose events are not in the PLog will be used again.
    pub fn generation(&self) -> u64 {
        self.shared.generation.load(Ordering::Acquire)
    }

    /// Drops all resident and unflushed state and asks the worker to rebuild it.
    pub(crate) fn request_actualize(&mut self) {
        self.cache.clear();
        let mut inner = self.shared.lock();
        inner.actualize_requested = true;
        self.shared.begin_actualizing();
        inner.worker.wake_for_commit();
        drop(inner);
        self.shared.tx_open.store(false, Ordering::SeqCst);
        self.shared.work.notify_one();
    }

    /// The checkpoint and the generation it belongs to, read consistently (see
    /// [`DurabilityWatcher::checkpoint`]).
    pub fn checkpoint(&self) -> Option<(PLogOffset, u64)> {
        self.shared.checkpoint()
    }

    /// Every transaction with an offset at or below this is durable (`PLogOffset(0)`: none yet).
    pub fn flushed_offset(&self) -> PLogOffset {
        PLogOffset(
            self.shared
                .durable_next
                .load(Ordering::Acquire)
                .saturating_sub(1),
        )
    }

    /// The offset the next transaction will get (after recovery, where the PLog ended).
    pub fn next_offset(&self) -> PLogOffset {
        if self.shared.generation.load(Ordering::Acquire) != self.generation {
            return self.shared.lock().base_offset;
        }
        self.next_offset
    }

    /// Waits until the transaction `committed` is durable. Errors: [`Error::Timeout`] (it may
    /// still become durable), [`Error::Discarded`] (an actualization dropped it: redo it).
    pub fn wait_durable(&self, committed: Committed, timeout: Duration) -> Result<()> {
        self.watcher().wait_durable(committed, timeout)
    }

    /// Waits until every transaction up to and including `offset` is durable. See
    /// [`DurabilityWatcher::wait_flushed`].
    pub fn wait_flushed(&self, offset: PLogOffset, timeout: Duration) -> Result<()> {
        self.watcher().wait_flushed(offset, timeout)
    }

    /// A handle that writes the pending batch on the calling thread, at once, instead of
    /// leaving it to the background worker (see [`FlushHandle`]).
    pub fn flush_handle(&self) -> FlushHandle {
        FlushHandle::new(Arc::clone(&self.shared))
    }

    /// A handle other threads can use to wait for durability while this one keeps sequencing.
    pub fn watcher(&self) -> DurabilityWatcher {
        DurabilityWatcher::new(Arc::clone(&self.shared))
    }

    /// Forgets workspace `ws` from the cache (its numbers stay in unflushed state and storage).
    /// Returns whether it was resident.
    pub fn evict(&mut self, ws: WsId) -> bool {
        self.cache.evict(ws)
    }

    /// A snapshot of state and counters.
    pub fn stats(&self) -> Stats {
        let c = &self.shared.counters;
        let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let batches = get(&c.flush_batches);
        let state = self.shared.status().public();
        Stats {
            state,
            generation: self.shared.generation.load(Ordering::Acquire),
            next_offset: self.next_offset(),
            flushed_offset: self.flushed_offset(),
            unflushed: self.shared.unflushed_values(),
            resident_workspaces: self.cache.len(),
            cache_hits: self.cache.counters.hits,
            cache_misses: self.cache.counters.misses,
            cache_evictions: self.cache.counters.evictions,
            commits: self.commits,
            busy_rejections: get(&c.busy_rejections),
            flush_batches: batches,
            flushed_values: get(&c.flushed_values),
            largest_batch: get(&c.largest_batch),
            flush_errors: get(&c.flush_errors),
            flush_retries: get(&c.flush_retries),
            flush_give_ups: get(&c.flush_give_ups),
            last_flush_latency: Duration::from_nanos(get(&c.last_flush_ns)),
            max_flush_latency: Duration::from_nanos(get(&c.max_flush_ns)),
            mean_flush_latency: Duration::from_nanos(get(&c.total_flush_ns) / batches.max(1)),
            actualizations: get(&c.actualizations),
            actualize_errors: get(&c.actualize_errors),
            replayed_events: get(&c.replayed_events),
            last_storage_error: self.shared.lock().last_error.clone(),
            storage_failing: self.shared.storage_failing.load(Ordering::Acquire),
        }
    }

    fn poisoned(&self) -> Error {
        let msg = self.shared.lock().poison.clone();
        Error::Poisoned(msg.unwrap_or_else(|| "unknown".into()))
    }
}

/// Hands the writer's staged commits to the worker (under the lock), waking it if it waits
/// for work. Called by the writer inside a transaction, with its staging area.
#[cold]
fn publish(shared: &Shared, staged: &mut staging::Staged) {
    let mut inner = shared.lock();
    staged.drain_into(&mut inner, shared.options.flush_interval);
    shared.staging.published();
    shared.recompute_unflushed(&inner);
    let wake = inner.worker.wake_for_commit();
    drop(inner);
    if wake {
        shared.work.notify_one();
    }
}

impl std::fmt::Debug for Sequencer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sequencer")
            .field("state", &self.shared.status())
            .field("next_offset", &self.next_offset)
            .field("resident_workspaces", &self.cache.len())
            .finish_non_exhaustive()
    }
}
