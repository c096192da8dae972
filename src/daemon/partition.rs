//! A partition: one [`Sequencer`] behind a mutex ([`Partition`]), and a worker thread for
//! what may wait ([`Worker`]).
//!
//! Connections and HTTP handlers answer their batches of requests themselves, on their own
//! thread, under the partition's lock ([`Partition::answer`]): numbers are assigned at once,
//! in arrival order, and each reply carries the commit that must be durable before it may be
//! acknowledged (sync mode: every `NEXT`; lease mode: only when its reservation is still
//! being written). The connection then waits for that itself ([`Batch::settle`], woken by the
//! flusher's progress), so a reply leaves as soon as its write is durable. A reply whose
//! commit an actualization discarded becomes `-BUSY`: it was never acknowledged, so its
//! numbers may be handed out again. Answering on the connection's thread, rather than
//! handing the batch to a worker thread and back, saves two thread wake-ups per batch, which
//! on a two-core machine were most of the cost of a `-P 1` request in sync mode.
//!
//! The lock is held for sequencer calls only: no waiting under it. A cache miss reads
//! storage under it — on the connection's thread when the storage is local (a RocksDB point
//! read), on the blocking pool when it is remote (`Partitions::answer_async`).
//!
//! The worker thread takes [`Msg`]s: status, flush (parked until durable), actualize,
//! lease prefetches (reservations ahead, kept off the connections' threads), progress
//! wake-ups and stop.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

mod batch;
mod leased;
mod worker;

pub(crate) use batch::{Batch, Reply, Req};
pub(crate) use worker::{Opener, Worker};

use super::config::DurabilityMode;
use super::gate::{Gate, Opening};
use super::lease::{Key, LeaseTable};
use super::status::{PartitionCounters, PartitionStatus};
use crate::error::{BusyReason, Error};
use crate::sequencer::{Closing, Committed, DurabilityWatcher, Sequencer};
use crate::storage::SeqValue;
use crate::types::{Number, PLogOffset, PartitionId, SeqId, WsId, WsKind};
use crate::util::lock;

/// The one workspace kind of the daemon: open, every sequence exists.
pub(crate) const KIND: WsKind = WsKind(0);

/// What a partition worker is asked to do.
pub(crate) enum Msg {
    /// The flusher made progress (sent by the progress hook while the worker wants to know).
    Wake,
    /// Report state and counters.
    Status(oneshot::Sender<PartitionStatus>),
    /// Answer once everything handed out so far is durable: the flushed offset, or why not.
    Flush(oneshot::Sender<Result<PLogOffset, Error>>),
    /// Discard unflushed state and rebuild from storage.
    Actualize(oneshot::Sender<()>),
    /// Lease mode: a connection left less than half a window in this sequence's lease; top
    /// it up.
    Prefetch(Key),
    /// Finish: wait for the last commit, close the sequencer, return unused lease cursors.
    Stop(oneshot::Sender<StopReport>),
    /// Cluster mode: the partition is now owned under `opening.epoch`; serve it from a new
    /// sequencer on `storage` once that has recovered. The old sequencer is closed.
    Acquire {
        storage: Arc<dyn crate::storage::SeqStorage>,
        opening: Opening,
        done: oneshot::Sender<bool>,
    },
    /// Cluster mode: stop answering, finish the writes in flight, and report the exact next
    /// number of every leased sequence (a graceful handover).
    Drain(oneshot::Sender<DrainReport>),
    /// Cluster mode: the partition is no longer owned here; its sequencer is dropped for one
    /// on `storage` (which refuses everything) without writing anything more.
    Release {
        storage: Arc<dyn crate::storage::SeqStorage>,
        done: oneshot::Sender<bool>,
    },
}

/// What a drained partition hands over.
#[derive(Debug, Default)]
pub(crate) struct DrainReport {
    /// The next number of each sequence that holds unused reserved numbers.
    pub(crate) cursors: Vec<SeqValue>,
    /// Whether everything committed before the drain became durable.
    pub(crate) settled: bool,
}

/// The parts of a partition bound to its current sequencer, read by the connection threads
/// without the partition's lock (swapped when cluster mode replaces the sequencer).
pub(crate) struct Parts {
    pub(crate) watcher: DurabilityWatcher,
    pub(crate) flush: crate::flusher::FlushHandle,
}

impl Parts {
    pub(crate) fn of(seq: &Sequencer) -> Arc<Parts> {
        Arc::new(Parts {
            watcher: seq.watcher(),
            flush: seq.flush_handle(),
        })
    }
}

/// What a stopped worker hands back.
#[derive(Debug, Default)]
pub(crate) struct StopReport {
    pub(crate) cursors: Vec<SeqValue>,
    pub(crate) close_error: Option<Error>,
    /// The sequencer's discard floor: nonzero when an actualization discarded numbers
    /// handed out under the resume floor (`lease/resume.rs`).
    pub(crate) discard_floor: u64,
}

/// A `Flush` waiting for the commit it names to become durable.
type ParkedFlush = (Committed, oneshot::Sender<Result<PLogOffset, Error>>);

/// A partition's sequencer and the state around it. Shared as [`Core`].
pub(crate) struct Partition {
    pub(crate) id: PartitionId,
    pub(crate) seq: Sequencer,
    pub(crate) mode: DurabilityMode,
    /// Public readiness: recovered and cursors restored.
    pub(crate) ready: Arc<AtomicBool>,
    /// Lease cursors saved at the last graceful shutdown, restored once recovery is done.
    pub(crate) restore: Option<Vec<SeqValue>>,
    pub(crate) leases: LeaseTable,
    parked: Vec<ParkedFlush>,
    /// The last commit of this worker: what `Flush` waits for.
    last_commit: Option<Committed>,
    generation: u64,
    pub(crate) counters: PartitionCounters,
    /// Replies answered with a number that became `-BUSY` while waiting for durability
    /// (discarded, not persisted in time, shutdown); `counters.busy` counts the others.
    late_busy: Arc<AtomicU64>,
    /// The sequencer-bound parts the connection threads read.
    pub(crate) parts: Arc<arc_swap::ArcSwap<Parts>>,
    /// Cluster mode: whether requests may be answered here now.
    pub(crate) gate: Option<Arc<Gate>>,
    /// Cluster mode: the gate to open once the current sequencer has recovered.
    pending_open: Option<Opening>,
    /// Lease mode: the resume floor to put in force once recovery is done
    /// (`lease/resume.rs`).
    cover: Option<u64>,
}

/// A [`Partition`] as connections, HTTP handlers and its worker share it.
pub(crate) type Core = Arc<Mutex<Partition>>;

impl Partition {
    pub(crate) fn new(
        id: PartitionId,
        seq: Sequencer,
        mode: DurabilityMode,
        restore: Vec<SeqValue>,
        leases: LeaseTable,
        gate: Option<Arc<Gate>>,
        cover: Option<u64>,
    ) -> Self {
        let parts = Arc::new(arc_swap::ArcSwap::new(Parts::of(&seq)));
        Partition {
            parts,
            gate,
            pending_open: None,
            cover,
            id,
            seq,
            mode,
            ready: Arc::new(AtomicBool::new(false)),
            restore: Some(restore),
            leases,
            parked: Vec::new(),
            last_commit: None,
            generation: 0,
            counters: PartitionCounters::default(),
            late_busy: Arc::default(),
        }
    }

    fn on_progress(&mut self) {
        self.try_restore();
        self.release();
        if self.mode == DurabilityMode::Lease {
            self.sync_generation();
            if let Some((flushed, generation)) = self.seq.checkpoint() {
                lock(&self.leases).prune_pending(flushed, generation);
            }
        }
    }

    /// Drops every lease when an actualization discarded unflushed state since the last
    /// look: their reservations in flight are gone, and offsets are reused after it.
    fn sync_generation(&mut self) {
        let generation = self.seq.generation();
        if generation != self.generation {
            lock(&self.leases).clear();
            self.generation = generation;
        }
    }

    /// Once recovery is done, restores the saved cursors and declares the partition ready.
    fn try_restore(&mut self) {
        if self.restore.is_none() || self.seq.wait_ready(Duration::ZERO).is_err() {
            return;
        }
        let now = Instant::now();
        let mut failed = None;
        let mut limits = Vec::new();
        for c in self.restore.take().unwrap_or_default() {
            match self.seq.peek(KIND, c.ws, c.seq) {
                Ok(limit) => limits.push((c, limit)),
                Err(e) => failed = Some(e),
            }
        }
        let mut leases = lock(&self.leases);
        for (c, limit) in limits {
            leases.restore((c.ws, c.seq), c.number.0, limit.0, now);
        }
        let stats = leases.stats();
        let restored = stats.leases + stats.parked;
        drop(leases);
        if let Some(floor) = self.cover.take() {
            // Promised to the sequencer first: from here on an actualization cannot hand
            // out again what goes out under the floor.
            self.seq.set_discard_floor(Number(floor));
            lock(&self.leases).set_cover(floor);
        }
        if let Some(e) = failed {
            // Those sequences resume above their stored reservation: a gap, never a reuse.
            tracing::warn!(partition = self.id.0, error = %e, "could not restore some lease cursors");
        }
        self.generation = self.seq.generation();
        self.ready.store(true, Ordering::Release);
        match (&self.gate, self.pending_open.take()) {
            (Some(gate), Some(opening)) => {
                tracing::info!(
                    partition = self.id.0,
                    epoch = opening.epoch,
                    "partition serving"
                );
                gate.open(opening);
            }
            (None, _) => {
                tracing::info!(partition = self.id.0, leases = restored, "partition ready")
            }
            (Some(_), None) => {}
        }
    }

    /// Whether this node may answer requests of the partition now (always, single-node).
    #[inline]
    pub(crate) fn serving(&self) -> bool {
        self.gate.as_ref().is_none_or(|g| g.serving().is_some())
    }

    /// Cluster mode: replaces the sequencer with `seq`, dropping every state bound to the old
    /// one (leases, parked flushes, readiness), and returns the old one for the caller to
    /// close without the lock. `opening` opens the gate once `seq` has recovered; `None`
    /// leaves it closed.
    pub(crate) fn replace(&mut self, seq: Sequencer, opening: Option<Opening>) -> Sequencer {
        if let Some(g) = &self.gate {
            g.close();
        }
        for (_, tx) in self.parked.drain(..) {
            let _ = tx.send(Err(Error::Busy {
                reason: BusyReason::Closing,
            }));
        }
        lock(&self.leases).clear();
        self.last_commit = None;
        self.ready.store(false, Ordering::Release);
        self.restore = Some(Vec::new());
        self.generation = seq.generation();
        self.parts.store(Parts::of(&seq));
        self.pending_open = opening;
        std::mem::replace(&mut self.seq, seq)
    }

    /// Cluster mode: the gate closed and not to open (a new sequencer could not be opened).
    pub(crate) fn disarm(&mut self) {
        if let Some(g) = &self.gate {
            g.close();
        }
        self.pending_open = None;
    }

    /// Cluster mode: stops answering (gate closed, leases closed) and returns the cursors of
    /// the leased sequences, the last commit and the watcher to wait for it with.
    pub(crate) fn begin_drain(&mut self) -> (Vec<SeqValue>, Option<Committed>, DurabilityWatcher) {
        if let Some(g) = &self.gate {
            g.close();
        }
        self.pending_open = None;
        let cursors = self.close_leases();
        (cursors, self.last_commit, self.seq.watcher())
    }

    /// Answers every request of `batch`, in order (see the module docs).
    pub(crate) fn answer(&mut self, batch: &mut Batch) {
        batch.replies.clear();
        batch.deps.clear();
        if batch.late_busy.is_none() {
            batch.late_busy = Some(Arc::clone(&self.late_busy));
        }
        if self.gate.is_some() {
            batch.answered_by = Some(self.parts.load_full());
        }
        self.try_restore();
        let restoring = self.restore.is_some();
        let serving = self.serving();
        for i in 0..batch.reqs.len() {
            if serving && !restoring {
                // The workspace lookups' memory misses, taken while the requests before run.
                if let Some(r) = batch.reqs.get(i + 2) {
                    self.seq.prefetch_index(WsId(r.ws()));
                }
                if let Some(r) = batch.reqs.get(i + 1) {
                    self.seq.prefetch_entry(WsId(r.ws()));
                }
            }
            let (reply, dep) = if !serving {
                (Reply::Busy(moved(self.id)), None)
            } else if restoring {
                (Reply::Busy(recovering()), None)
            } else {
                self.one(batch.reqs[i])
            };
            if matches!(reply, Reply::Busy(_)) {
                self.counters.busy += 1;
            }
            batch.replies.push(reply);
            batch.deps.push(dep);
        }
    }

    fn one(&mut self, req: Req) -> (Reply, Option<Committed>) {
        // Per request, not only on wake-ups: a lease must never outlive the generation its
        // reservations were made in.
        self.sync_generation();
        match req {
            Req::Next { ws, seq, count } => {
                self.counters.nexts += 1;
                let r = match self.mode {
                    DurabilityMode::Sync => self
                        .reserve_raw(WsId(ws), SeqId(seq), count)
                        .map(|(first, ticket)| (first, Some(ticket))),
                    DurabilityMode::Lease => self.next_leased(WsId(ws), SeqId(seq), count),
                };
                match r {
                    Ok((first, dep)) => {
                        self.counters.numbers += count;
                        (Reply::Number(first.0), dep)
                    }
                    Err(e) => (reply_for(e), None),
                }
            }
            Req::Peek { ws, seq } => {
                self.counters.peeks += 1;
                if self.mode == DurabilityMode::Lease
                    && let Some(cursor) = lock(&self.leases).serve_peek((WsId(ws), SeqId(seq)))
                {
                    return (Reply::Number(cursor), None);
                }
                match self.seq.peek(KIND, WsId(ws), SeqId(seq)) {
                    Ok(n) => (Reply::Number(n.0), None),
                    Err(e) => (reply_for(e), None),
                }
            }
        }
    }

    /// One sequencer transaction taking `n` numbers of `(ws, seq)`.
    fn reserve_raw(&mut self, ws: WsId, seq: SeqId, n: u64) -> Result<(Number, Committed), Error> {
        let mut tx = self.seq.start(KIND, ws)?;
        match tx.next_n(seq, n) {
            Ok(first) => {
                let c = tx.flush();
                self.last_commit = Some(c);
                Ok((first, c))
            }
            Err(e) => {
                // Nothing was taken: commit the empty event rather than actualize.
                let c = tx.flush();
                self.last_commit = Some(c);
                Err(e)
            }
        }
    }

    /// Answers every parked `Flush` whose commit is now durable (or was discarded).
    fn release(&mut self) {
        if self.parked.is_empty() {
            return;
        }
        let watcher = self.seq.watcher();
        let mut i = 0;
        while i < self.parked.len() {
            let answer = match watcher.is_durable(self.parked[i].0) {
                Ok(true) => Ok(self.seq.flushed_offset()),
                Ok(false) => {
                    i += 1;
                    continue;
                }
                Err(e) => Err(e),
            };
            let (_, tx) = self.parked.swap_remove(i);
            let _ = tx.send(answer);
        }
    }

    fn status(&self) -> PartitionStatus {
        let leases = lock(&self.leases);
        let (stats, served) = (leases.stats(), leases.served);
        drop(leases);
        let mut counters = self.counters;
        counters.nexts += served.0;
        counters.numbers += served.1;
        counters.busy += self.late_busy.load(Ordering::Relaxed);
        PartitionStatus::new(
            self.id,
            self.ready.load(Ordering::Acquire),
            self.seq.stats(),
            &counters,
            stats,
        )
    }

    /// Answers parked flushes, closes the leases and collects their cursors, and starts
    /// closing the sequencer (requests from now on are answered `-BUSY`).
    fn begin_stop(&mut self) -> (Vec<SeqValue>, Closing) {
        let cursors = self.close_leases();
        (cursors, self.seq.begin_close())
    }

    /// Answers parked flushes `-BUSY`, closes the lease table (connections answer nothing
    /// from it any more) and returns the next number of every sequence holding unused
    /// reserved numbers.
    fn close_leases(&mut self) -> Vec<SeqValue> {
        self.on_progress();
        for (_, tx) in self.parked.drain(..) {
            let _ = tx.send(Err(Error::Busy {
                reason: BusyReason::Closing,
            }));
        }
        let mut leases = lock(&self.leases);
        leases.close();
        leases
            .cursors()
            .map(|((ws, seq), next)| SeqValue {
                ws,
                seq,
                number: Number(next),
            })
            .collect()
    }
}

/// The reply of a request that reached a partition this node does not serve now (cluster
/// mode: it moved, or this node's lease may have expired). Nothing was taken.
pub(crate) fn moved(p: PartitionId) -> String {
    format!(
        "TRYAGAIN partition {} is not served by this node now; retry",
        p.0
    )
}

fn recovering() -> String {
    "BUSY partition is recovering; retry shortly".into()
}

/// The reply for a sequencer error.
pub(crate) fn reply_for(e: Error) -> Reply {
    match e {
        Error::Busy { reason } => Reply::Busy(match reason {
            BusyReason::Backpressure { .. } => {
                "BUSY storage is behind (too many unflushed numbers); retry shortly".into()
            }
            BusyReason::Actualizing => {
                "BUSY partition is recovering state from storage; retry shortly".into()
            }
            BusyReason::Closing => "BUSY the server is shutting down".into(),
        }),
        Error::Exhausted { .. } => Reply::Error(format!("ERR {e}")),
        Error::Storage(ref s) if s.is_retryable() => Reply::Busy(format!("BUSY {e}; retry")),
        other => Reply::Error(format!("ERR {other}")),
    }
}
