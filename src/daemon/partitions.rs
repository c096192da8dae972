//! [`Partitions`]: the handle connections and HTTP handlers use to reach the partition workers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use tokio::sync::{mpsc, oneshot, watch};

use super::config::Config;
use super::gate::{Gate, Opening};
use super::lease::{Key, LeaseTable, Leases, ResumeFloor};
use super::partition::{
    Batch, Core, DrainReport, KIND, Msg, Opener, Partition, Parts, Reply, Req, Worker,
};
use super::status::{PartitionStatus, not_ready_because};
use super::store::Backend;
use crate::error::{BusyReason, Error, Result};
use crate::flusher::FlushHandle;
use crate::options::{Options, ProgressHook};
use crate::sequencer::Sequencer;
use crate::storage::{SeqStorage, SeqValue, StorageLatency};
use crate::types::{Number, PLogOffset, PartitionId, SeqTypes};
use crate::util::lock;

/// Messages (status, flush, actualize, prefetch, stop) queued per partition worker before
/// senders wait; prefetches beyond it are dropped (a later request asks again).
const QUEUE: usize = 1024;
/// How long the partition's worker leaves a pending batch to the connection threads (which
/// write it when they go idle, within microseconds) before it writes it itself; it bounds
/// the wait of a commit no connection thread writes.
const CALLER_WRITES: std::time::Duration = std::time::Duration::from_millis(2);
/// Longest a reply waits for its numbers to become durable before it is answered `-BUSY`.
pub(crate) const DURABLE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

struct Handle {
    /// The partition, answered under its lock by connections and HTTP handlers.
    core: Core,
    /// Its worker thread.
    tx: mpsc::Sender<Msg>,
    /// Lease mode: the table connections answer `NEXT` from without a hop to the worker.
    leases: Option<LeaseTable>,
    /// Bumped by the flusher on every durable write, discard and actualization.
    durable: watch::Receiver<u64>,
    /// The durability watcher and the flush handle (which writes the partition's pending
    /// batch on the caller's thread, see `IoContext::write_before_sleep`) of the current
    /// sequencer.
    parts: Arc<arc_swap::ArcSwap<Parts>>,
    /// Cluster mode: whether this node answers for the partition now.
    gate: Option<Arc<Gate>>,
    /// Cluster mode: not owned here (its sequencer refuses everything); left out of readiness.
    vacant: AtomicBool,
    /// Its storage is local ([`StorageLatency::Local`]): event loops may answer its requests
    /// (reading storage on a cache miss) and write its batches. Otherwise only blocking
    /// threads call it.
    local: bool,
    ready: Arc<AtomicBool>,
    thread: std::sync::Mutex<Option<JoinHandle<()>>>,
}

/// The partition workers of a running daemon.
pub(crate) struct Partitions {
    handles: Vec<Handle>,
    /// Cluster mode: workspaces map to partitions by their Redis hash slot, not `ws % n`.
    by_slot: bool,
    /// Where sequences start in this run, and the resume floor in force.
    floor: ResumeFloor,
}

/// What stopping every partition left behind.
#[derive(Debug, Default)]
pub(crate) struct Stopped {
    pub(crate) cursors: Vec<SeqValue>,
    /// Each an [`Error::Partition`].
    pub(crate) close_errors: Vec<Error>,
    /// The highest discard floor of the partitions' sequencers (0: no actualization
    /// discarded numbers handed out under the resume floor).
    pub(crate) discard_floor: u64,
}

impl Partitions {
    /// Opens one sequencer per partition on `backend` and starts its worker thread.
    /// Recovery runs in the background; a partition answers -BUSY until it is ready. With
    /// `cluster: Some(n)` (cluster mode): `n` partitions that start vacant, each behind a
    /// closed [`Gate`], and workspaces map to partitions by hash slot.
    pub(crate) fn start(
        config: &Config,
        backend: &dyn Backend,
        cursors: Vec<SeqValue>,
        cluster: Option<u16>,
        floor: ResumeFloor,
    ) -> Result<Partitions> {
        let n = cluster.unwrap_or_else(|| config.partition_count());
        let mut per_partition: Vec<Vec<SeqValue>> = (0..n).map(|_| Vec::new()).collect();
        if config.durability == super::DurabilityMode::Sync {
            if !cursors.is_empty() {
                tracing::info!(
                    sequences = cursors.len(),
                    "sync mode: lease cursors of the last run are dropped (their windows are skipped)"
                );
            }
        } else {
            for c in cursors {
                if let Some(v) = per_partition.get_mut((c.ws.0 % u64::from(n)) as usize) {
                    v.push(c);
                }
            }
        }
        let mut handles = Vec::with_capacity(usize::from(n));
        for (p, restore) in (0..n).zip(per_partition) {
            let (tx, rx) = mpsc::channel(QUEUE);
            let progress = Arc::new(AtomicBool::new(false));
            let wants_progress = Arc::new(AtomicBool::new(true));
            let (durable_tx, durable) = watch::channel(0u64);
            let hook = {
                let durable_tx = Arc::new(durable_tx);
                let progress = Arc::clone(&progress);
                let wants = Arc::clone(&wants_progress);
                let weak = tx.downgrade();
                move || {
                    let durable_tx = Arc::clone(&durable_tx);
                    let progress = Arc::clone(&progress);
                    let wants = Arc::clone(&wants);
                    let weak = weak.clone();
                    ProgressHook::new(move || {
                        // Connections waiting for their replies' durability first, then the
                        // worker if it has something to do with it (see `Worker`).
                        durable_tx.send_modify(|n| *n = n.wrapping_add(1));
                        if wants.load(Ordering::SeqCst)
                            && !progress.swap(true, Ordering::AcqRel)
                            && let Some(tx) = weak.upgrade()
                        {
                            let _ = tx.try_send(Msg::Wake);
                        }
                    })
                }
            };
            let (initial, cache_capacity, max_unflushed) =
                (floor.start, config.cache_capacity, config.max_unflushed);
            // A remote store's batches are written by the flusher alone (no connection thread
            // writes them), so it starts at once rather than after CALLER_WRITES.
            let options = move |flush_interval| Options {
                seq_types: SeqTypes::new().with_all(KIND, Number(initial)),
                cache_capacity,
                max_unflushed,
                // The connection threads write what their requests committed before they
                // sleep (sync: every `NEXT`; lease: reservations a reply waits for); the
                // worker writes only what they left (after CALLER_WRITES), and retries. Lease
                // top-ups, committed by the partition's worker, are written at once
                // (`flush_soon`).
                flush_interval,
                on_progress: Some(hook()),
                ..Options::default()
            };
            let leases: LeaseTable =
                Arc::new(std::sync::Mutex::new(Leases::new(config.max_leases)));
            let storage = backend.partition(PartitionId(p));
            let local = storage.latency() == StorageLatency::Local;
            let interval = if local {
                CALLER_WRITES
            } else {
                std::time::Duration::ZERO
            };
            let name = format!("seqd-flush-{p}");
            let seq = Sequencer::open_named(storage, options(interval), &name)?;
            let gate = cluster.map(|_| Arc::new(Gate::default()));
            let partition = Partition::new(
                PartitionId(p),
                seq,
                config.durability,
                restore,
                Arc::clone(&leases),
                gate.clone(),
                floor.cover,
            );
            let parts = Arc::clone(&partition.parts);
            let ready = Arc::clone(&partition.ready);
            let core: Core = Arc::new(std::sync::Mutex::new(partition));
            let opener = Opener {
                options: Box::new(move || options(std::time::Duration::ZERO)),
                name,
            };
            let worker = Worker::new(Arc::clone(&core), rx, progress, wants_progress, opener);
            let thread = std::thread::Builder::new()
                .name(format!("seqd-part-{p}"))
                .spawn(move || worker.run())
                .map_err(|e| Error::Io {
                    context: format!("cannot start the worker thread of partition {p}"),
                    source: e,
                })?;
            let lease_mode = config.durability == super::DurabilityMode::Lease;
            handles.push(Handle {
                core,
                tx,
                leases: lease_mode.then_some(leases),
                durable,
                parts,
                vacant: AtomicBool::new(gate.is_some()),
                gate,
                local,
                ready,
                thread: std::sync::Mutex::new(Some(thread)),
            });
        }
        Ok(Partitions {
            handles,
            by_slot: cluster.is_some(),
            floor,
        })
    }

    /// Where sequences start in this run, and the resume floor in force (`lease/resume.rs`).
    pub(crate) fn resume_floor(&self) -> ResumeFloor {
        self.floor
    }

    pub(crate) fn len(&self) -> usize {
        self.handles.len()
    }

    /// The partition of workspace `ws`.
    #[inline]
    pub(crate) fn of(&self, ws: u64) -> usize {
        #[cfg(feature = "cluster")]
        if self.by_slot {
            let n = u16::try_from(self.handles.len()).unwrap_or(u16::MAX);
            return usize::from(crate::cluster::keys::partition_of(crate::types::WsId(ws), n).0);
        }
        (ws % self.handles.len() as u64) as usize
    }

    /// Cluster mode: whether this node answers for partition `p` now (always, single-node).
    #[inline]
    pub(crate) fn serving(&self, p: usize) -> bool {
        match self.handles.get(p) {
            Some(h) => h.gate.as_ref().is_none_or(|g| g.serving().is_some()),
            None => false,
        }
    }

    /// Cluster mode: the epoch partition `p` is served under here, if it is.
    pub(crate) fn serving_epoch(&self, p: usize) -> Option<i64> {
        self.handles.get(p)?.gate.as_ref()?.serving()
    }

    /// Cluster mode: serves partition `p` under `opening` from a new sequencer on
    /// `storage`, once it has recovered.
    pub(crate) async fn acquire(
        &self,
        p: usize,
        storage: Arc<dyn SeqStorage>,
        opening: Opening,
    ) -> bool {
        let Some(h) = self.handles.get(p) else {
            return false;
        };
        h.vacant.store(false, Ordering::Release);
        let (done, rx) = oneshot::channel();
        let msg = Msg::Acquire {
            storage,
            opening,
            done,
        };
        h.tx.send(msg).await.is_ok() && rx.await.unwrap_or(false)
    }

    /// Cluster mode: stops answering partition `p` and reports what a graceful handover
    /// writes.
    pub(crate) async fn drain(&self, p: usize) -> Option<DrainReport> {
        self.ask(p, Msg::Drain).await
    }

    /// Cluster mode: drops partition `p`'s sequencer for one on `storage` (a vacant one).
    pub(crate) async fn release(&self, p: usize, storage: Arc<dyn SeqStorage>) -> bool {
        let Some(h) = self.handles.get(p) else {
            return false;
        };
        if let Some(g) = &h.gate {
            g.close();
        }
        h.vacant.store(true, Ordering::Release);
        let (done, rx) = oneshot::channel();
        h.tx.send(Msg::Release { storage, done }).await.is_ok() && rx.await.unwrap_or(false)
    }

    /// Lease mode: partition `p`'s lease table, for answering from durable leases.
    #[inline]
    pub(crate) fn leases(&self, p: usize) -> Option<&LeaseTable> {
        self.handles.get(p)?.leases.as_ref()
    }

    /// Asks partition `p` to reserve the next window of `key` (best effort: when its queue
    /// is full the request is dropped, and a later one reserves).
    pub(crate) fn prefetch(&self, p: usize, key: Key) {
        if let Some(h) = self.handles.get(p) {
            let _ = h.tx.try_send(Msg::Prefetch(key));
        }
    }

    /// Why each partition that cannot acknowledge numbers now cannot: still recovering
    /// (start-up or an actualization after storage failed), or its writes failing. Empty
    /// when every partition is ready.
    pub(crate) fn not_ready(&self) -> Vec<String> {
        let restored = |h: &Handle| h.ready.load(Ordering::Acquire);
        self.handles
            .iter()
            .enumerate()
            .filter(|(_, h)| !h.vacant.load(Ordering::Acquire))
            .filter_map(|(p, h)| {
                let parts = h.parts.load();
                not_ready_because(
                    restored(h),
                    parts.watcher.state(),
                    parts.watcher.storage_failing(),
                )
                .map(|why| format!("partition {p}: {why}"))
            })
            .collect()
    }

    /// Whether any partition is still recovering (start-up, or an actualization): `INFO`'s
    /// `loading:1`, which clients such as ioredis wait out before they send commands.
    pub(crate) fn recovering(&self) -> bool {
        self.handles.iter().any(|h| {
            !h.vacant.load(Ordering::Acquire)
                && (!h.ready.load(Ordering::Acquire)
                    || h.parts.load().watcher.state() != crate::stats::SequencerState::Ready)
        })
    }

    /// Answers `batch` on partition `p` (see `partition`) where its storage allows — the
    /// replies then wait for durability in [`settle`](Self::settle): on the caller's thread
    /// when the storage is local (a cache miss reads it under the partition's lock in
    /// microseconds); on the blocking pool when it is remote, so that an event loop never
    /// waits for a network round trip.
    pub(crate) async fn answer_async(&self, p: usize, batch: &mut Batch) {
        let Some(h) = self.handles.get(p) else {
            return batch.fail("BUSY no such partition");
        };
        if h.local {
            return lock(&h.core).answer(batch);
        }
        let core = Arc::clone(&h.core);
        let reqs = batch.reqs.clone();
        let mut taken = std::mem::take(batch);
        match tokio::task::spawn_blocking(move || {
            lock(&core).answer(&mut taken);
            taken
        })
        .await
        {
            Ok(answered) => *batch = answered,
            Err(_) => {
                batch.reqs = reqs;
                batch.fail("ERR internal error: answering the request failed; see the server log");
            }
        }
    }

    /// Partition `p`'s checkpoint and its generation, read from its sequencer's atomics
    /// ([`DurabilityWatcher::checkpoint`]).
    pub(crate) fn durability(&self, p: usize) -> Option<(PLogOffset, u64)> {
        self.handles.get(p)?.parts.load().watcher.checkpoint()
    }

    /// Whether partition `p`'s storage is local (see [`StorageLatency`]).
    pub(crate) fn local(&self, p: usize) -> bool {
        self.handles.get(p).is_some_and(|h| h.local)
    }

    /// A handle that writes partition `p`'s pending batch on the caller's thread.
    pub(crate) fn flush_handle(&self, p: usize) -> Option<FlushHandle> {
        Some(self.handles.get(p)?.parts.load().flush.clone())
    }

    /// Partition `p`'s progress signal: bumped by its flusher after every durable write,
    /// discard and actualization; closed when its sequencer closes.
    pub(crate) fn progress(&self, p: usize) -> Option<watch::Receiver<u64>> {
        self.handles.get(p).map(|h| h.durable.clone())
    }

    /// Waits until every number in `batch` (answered by partition `p`) is durable or was
    /// discarded (see [`Batch::settle`]), at most [`DURABLE_WAIT`]: a reply still waiting
    /// then becomes `-BUSY` — not acknowledged, so at worst its numbers are skipped later.
    /// (While storage is down the actualizer cannot tell a discarded commit from one its
    /// rebuild will keep, so without a bound such a reply would wait until storage returns.)
    ///
    /// `durable` is partition `p`'s progress signal ([`progress`](Self::progress)), or a
    /// relay of it on the caller's thread (`io::Relays`).
    pub(crate) async fn settle(
        &self,
        p: usize,
        batch: &mut Batch,
        durable: &mut watch::Receiver<u64>,
    ) {
        let Some(h) = self.handles.get(p) else {
            return;
        };
        // The sequencer that answered the batch (cluster mode may replace it meanwhile: its
        // commits then never become durable on the new one, and the batch is abandoned).
        let parts = batch
            .answered_by
            .clone()
            .unwrap_or_else(|| h.parts.load_full());
        let watcher = &parts.watcher;
        let waited = tokio::time::timeout(DURABLE_WAIT, async {
            loop {
                // Marks the current progress seen before looking, so none is missed.
                durable.borrow_and_update();
                if batch.settle(watcher) {
                    return;
                }
                if durable.changed().await.is_err() {
                    // The sequencer is closed: what is not durable now never will be.
                    batch.settle(watcher);
                    batch.abandon_unsettled("BUSY the server is shutting down");
                    return;
                }
            }
        })
        .await;
        if waited.is_err() && !batch.settle(watcher) {
            batch.abandon_unsettled(
                "BUSY storage did not persist these numbers in time; they were not issued, retry",
            );
        }
    }

    /// Answers one request (HTTP).
    pub(crate) async fn one(&self, req: Req) -> Reply {
        let ws = req.ws();
        let p = self.of(ws);
        let mut batch = Batch::default();
        batch.reqs.push(req);
        self.answer_async(p, &mut batch).await;
        if let Some(mut flush) = self.flush_handle(p) {
            // Write what it committed (a lease top-up too, which no reply waits for) now
            // rather than after CALLER_WRITES. Busy or failed, the worker writes it; a
            // remote store's batch is always the worker's.
            if self.local(p) {
                let _ = tokio::task::spawn_blocking(move || flush.flush_now()).await;
            } else {
                flush.flush_soon();
            }
        }
        if let Some(mut durable) = self.progress(p) {
            self.settle(p, &mut batch, &mut durable).await;
        }
        batch
            .replies
            .pop()
            .unwrap_or_else(|| Reply::Busy("BUSY the server is shutting down".into()))
    }

    async fn ask<T>(&self, p: usize, make: impl FnOnce(oneshot::Sender<T>) -> Msg) -> Option<T> {
        let h = self.handles.get(p)?;
        let (tx, rx) = oneshot::channel();
        h.tx.send(make(tx)).await.ok()?;
        rx.await.ok()
    }

    /// Every partition's status, in partition order (those that are gone are left out).
    pub(crate) async fn statuses(&self) -> Vec<PartitionStatus> {
        let mut out = Vec::with_capacity(self.len());
        for p in 0..self.len() {
            if let Some(s) = self.ask(p, Msg::Status).await {
                out.push(s);
            }
        }
        out
    }

    /// Waits until everything handed out so far is durable; the checkpoint offsets. Errors:
    /// [`Error::Partition`] with what that partition's flush met (discarded by an
    /// actualization, the server stopping).
    pub(crate) async fn flush(&self) -> Result<Vec<u64>> {
        let mut out = Vec::with_capacity(self.len());
        for p in 0..self.len() {
            let answer = self.ask(p, Msg::Flush).await.unwrap_or(Err(Error::Busy {
                reason: BusyReason::Closing,
            }));
            match answer {
                Ok(offset) => out.push(offset.0),
                Err(e) => return Err(partition_error(p, e)),
            }
        }
        Ok(out)
    }

    /// Asks partition `p` to actualize. False when it is gone.
    pub(crate) async fn actualize(&self, p: usize) -> bool {
        self.ask(p, Msg::Actualize).await.is_some()
    }

    /// Stops every worker and joins its thread. All partitions stop at once (each worker's
    /// final flush and close is bounded on its own), so stopping takes as long as the slowest
    /// partition, not the sum of them.
    pub(crate) async fn stop(&self) -> Stopped {
        let mut stopped = Stopped::default();
        let mut reports = Vec::with_capacity(self.handles.len());
        for (p, h) in self.handles.iter().enumerate() {
            let (tx, rx) = oneshot::channel();
            if h.tx.send(Msg::Stop(tx)).await.is_ok() {
                reports.push((p, rx));
            }
        }
        for (p, rx) in reports {
            if let Ok(report) = rx.await {
                stopped.cursors.extend(report.cursors);
                stopped.discard_floor = stopped.discard_floor.max(report.discard_floor);
                stopped
                    .close_errors
                    .extend(report.close_error.map(|e| partition_error(p, e)));
            }
        }
        for (p, h) in self.handles.iter().enumerate() {
            let thread = lock(&h.thread).take();
            if let Some(t) = thread {
                let joined = tokio::task::spawn_blocking(move || t.join()).await;
                if !matches!(joined, Ok(Ok(_))) {
                    let panicked = Error::Panicked {
                        context: "the worker thread".into(),
                        message: "see the log".into(),
                    };
                    stopped.close_errors.push(partition_error(p, panicked));
                }
            }
        }
        stopped
    }
}

/// `e`, as partition `p`'s.
fn partition_error(p: usize, e: Error) -> Error {
    Error::Partition {
        partition: PartitionId(u16::try_from(p).unwrap_or(u16::MAX)),
        source: Box::new(e),
    }
}
