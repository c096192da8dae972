//! A partition worker: one thread owning one [`Sequencer`], answering batches of requests.
//!
//! Connections and HTTP handlers send [`Msg`]s over a bounded channel. The worker assigns
//! numbers at once, in arrival order, and parks a batch whose numbers are not durable yet
//! (sync mode: every `NEXT`; lease mode: only when a reservation is still being written)
//! until the sequencer's flusher reports progress through [`crate::ProgressHook`]. A parked
//! batch whose reservation an actualization discarded gets `-BUSY` for those replies: they
//! were never acknowledged, so their numbers may be handed out again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::config::DurabilityMode;
use super::lease::Leases;
use super::status::{PartitionCounters, PartitionStatus};
use crate::error::{BusyReason, Error};
use crate::sequencer::{Committed, Sequencer};
use crate::storage::SeqValue;
use crate::types::{Number, PLogOffset, PartitionId, SeqId, WsId, WsKind};

/// The one workspace kind of the daemon: open, every sequence exists.
pub(crate) const KIND: WsKind = WsKind(0);

/// A request a partition answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Req {
    /// `count` consecutive numbers.
    Next { ws: u64, seq: u16, count: u64 },
    /// The number the next `Next` would return.
    Peek { ws: u64, seq: u16 },
}

impl Req {
    /// The workspace, which picks the partition.
    pub(crate) fn ws(self) -> u64 {
        match self {
            Req::Next { ws, .. } | Req::Peek { ws, .. } => ws,
        }
    }
}

/// A partition's answer to one [`Req`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Reply {
    /// The first number (`Next`) or the next number (`Peek`).
    Number(u64),
    /// Try again: recovering, backpressure, or the numbers could not be persisted.
    Busy(String),
    /// A permanent refusal (sequence exhausted, storage corrupt).
    Error(String),
}

/// Requests of one connection read for one partition, sent together and returned together.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    pub(crate) reqs: Vec<Req>,
    pub(crate) replies: Vec<Reply>,
    deps: Vec<Option<Committed>>,
}

impl Batch {
    pub(crate) fn clear(&mut self) {
        self.reqs.clear();
        self.replies.clear();
        self.deps.clear();
    }

    /// Answers every request with `msg` (the partition could not be reached).
    pub(crate) fn fail(&mut self, msg: &str) {
        self.replies.clear();
        self.deps.clear();
        self.replies
            .extend(self.reqs.iter().map(|_| Reply::Busy(msg.to_string())));
    }
}

/// What a partition worker is asked to do.
pub(crate) enum Msg {
    /// Answer the batch, then send it back.
    Batch(Batch, oneshot::Sender<Batch>),
    /// The flusher made progress (sent by the progress hook).
    Wake,
    /// Report state and counters.
    Status(oneshot::Sender<PartitionStatus>),
    /// Answer once everything handed out so far is durable: the flushed offset, or why not.
    Flush(oneshot::Sender<Result<PLogOffset, String>>),
    /// Discard unflushed state and rebuild from storage.
    Actualize(oneshot::Sender<()>),
    /// Finish: wait for parked replies, close the sequencer, return unused lease cursors.
    Stop(oneshot::Sender<StopReport>),
}

/// What a stopped worker hands back.
#[derive(Debug, Default)]
pub(crate) struct StopReport {
    pub(crate) cursors: Vec<SeqValue>,
    pub(crate) close_error: Option<String>,
}

enum Parked {
    Batch(Batch, oneshot::Sender<Batch>),
    Flush(Committed, oneshot::Sender<Result<PLogOffset, String>>),
}

pub(crate) struct Worker {
    pub(crate) id: PartitionId,
    pub(crate) seq: Sequencer,
    pub(crate) mode: DurabilityMode,
    pub(crate) rx: mpsc::Receiver<Msg>,
    /// Set by the progress hook; cleared by the worker before it looks at durability.
    pub(crate) progress: Arc<AtomicBool>,
    /// Public readiness: recovered and cursors restored.
    pub(crate) ready: Arc<AtomicBool>,
    /// Lease cursors saved at the last graceful shutdown, restored once recovery is done.
    pub(crate) restore: Option<Vec<SeqValue>>,
    pub(crate) leases: Leases,
    parked: Vec<Parked>,
    /// The last commit of this worker: what `Flush` waits for.
    last_commit: Option<Committed>,
    generation: u64,
    pub(crate) counters: PartitionCounters,
}

impl Worker {
    pub(crate) fn new(
        id: PartitionId,
        seq: Sequencer,
        mode: DurabilityMode,
        rx: mpsc::Receiver<Msg>,
        progress: Arc<AtomicBool>,
        restore: Vec<SeqValue>,
        max_leases: usize,
    ) -> Self {
        Worker {
            id,
            seq,
            mode,
            rx,
            progress,
            ready: Arc::new(AtomicBool::new(false)),
            restore: Some(restore),
            leases: Leases::new(max_leases),
            parked: Vec::new(),
            last_commit: None,
            generation: 0,
            counters: PartitionCounters::default(),
        }
    }

    /// The worker's loop; returns when told to stop or when every sender is gone.
    pub(crate) fn run(mut self) {
        self.try_restore();
        while let Some(msg) = self.rx.blocking_recv() {
            match msg {
                Msg::Batch(mut batch, done) => {
                    self.answer(&mut batch);
                    self.park_or_send(batch, done);
                }
                Msg::Wake => {}
                Msg::Status(tx) => {
                    let _ = tx.send(self.status());
                }
                Msg::Flush(tx) => match self.last_commit {
                    Some(c) => {
                        self.parked.push(Parked::Flush(c, tx));
                        self.release();
                    }
                    None => {
                        let _ = tx.send(Ok(self.seq.flushed_offset()));
                    }
                },
                Msg::Actualize(tx) => {
                    self.seq.actualize();
                    let _ = tx.send(());
                }
                Msg::Stop(tx) => {
                    let _ = tx.send(self.stop());
                    return;
                }
            }
            if self.progress.swap(false, Ordering::AcqRel) {
                self.on_progress();
            }
        }
        // Every handle is gone without a Stop: close anyway; the cursors are lost (a gap).
        let id = self.id;
        let report = self.stop();
        tracing::warn!(
            partition = id.0,
            lost_cursors = report.cursors.len(),
            "partition stopped without a shutdown"
        );
    }

    fn on_progress(&mut self) {
        self.try_restore();
        self.release();
    }

    /// Drops every lease when an actualization discarded unflushed state since the last
    /// look: their reservations in flight are gone, and offsets are reused after it.
    fn sync_generation(&mut self) {
        let generation = self.seq.current_generation();
        if generation != self.generation {
            self.leases.clear();
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
        for c in self.restore.take().unwrap_or_default() {
            match self.seq.peek(KIND, c.ws, c.seq) {
                Ok(limit) => self.leases.restore((c.ws, c.seq), c.number.0, limit.0, now),
                Err(e) => failed = Some(e),
            }
        }
        if let Some(e) = failed {
            // Those sequences resume above their stored reservation: a gap, never a reuse.
            tracing::warn!(partition = self.id.0, error = %e, "could not restore some lease cursors");
        }
        self.generation = self.seq.current_generation();
        self.ready.store(true, Ordering::Release);
        tracing::info!(
            partition = self.id.0,
            leases = self.leases.len(),
            "partition ready"
        );
    }

    fn answer(&mut self, batch: &mut Batch) {
        batch.replies.clear();
        batch.deps.clear();
        self.try_restore();
        let restoring = self.restore.is_some();
        for i in 0..batch.reqs.len() {
            let (reply, dep) = if restoring {
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
                    && let Some(l) = self.leases.get_mut((WsId(ws), SeqId(seq)))
                    && l.left > 0
                {
                    return (Reply::Number(l.cursor), None);
                }
                match self.seq.peek(KIND, WsId(ws), SeqId(seq)) {
                    Ok(n) => (Reply::Number(n.0), None),
                    Err(e) => (reply_for(e), None),
                }
            }
        }
    }

    /// Lease mode: from the reserved window if it has `count` left, else after reserving
    /// more; reserves the next window ahead when half of this one is used.
    fn next_leased(
        &mut self,
        ws: WsId,
        seq: SeqId,
        count: u64,
    ) -> Result<(Number, Option<Committed>), Error> {
        let key = (ws, seq);
        let flushed = self.seq.flushed_offset();
        let generation = self.generation;
        let now = Instant::now();
        if let Some(lease) = self.leases.get_mut(key) {
            lease.prune(flushed, generation);
            if lease.left >= count {
                let taken = lease.take(count);
                if lease.wants_prefetch() {
                    let n = lease.next_window(now);
                    // Best effort: when busy, the next request tries again.
                    if let Ok((first, ticket)) = self.reserve_raw(ws, seq, n) {
                        self.counters.reservations += 1;
                        if let Some(lease) = self.leases.get_mut(key) {
                            lease.add(first.0, n, ticket);
                        }
                    }
                }
                return Ok(taken);
            }
        }
        // Reserve `count` plus a window: enough whether or not the reservation turns out
        // contiguous with what is left of the current range.
        let window = self.leases.entry(key, now).next_window(now);
        let wanted = count.saturating_add(window);
        let (first, n, ticket) = match self.reserve_raw(ws, seq, wanted) {
            Ok((first, ticket)) => (first, wanted, ticket),
            // Near u64::MAX: reserve only what this request needs.
            Err(Error::Exhausted { .. }) => {
                let (first, ticket) = self.reserve_raw(ws, seq, count)?;
                (first, count, ticket)
            }
            Err(e) => return Err(e),
        };
        self.counters.reservations += 1;
        let lease = self.leases.entry(key, now);
        lease.add(first.0, n, ticket);
        Ok(lease.take(count))
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

    fn park_or_send(&mut self, batch: Batch, done: oneshot::Sender<Batch>) {
        if batch.deps.iter().any(Option::is_some) {
            self.parked.push(Parked::Batch(batch, done));
            // The commit may have become durable before we parked it.
            self.release();
        } else {
            let _ = done.send(batch);
        }
    }

    /// Sends back every parked batch whose numbers are all durable (or were discarded).
    fn release(&mut self) {
        if self.parked.is_empty() {
            return;
        }
        let flushed = self.seq.flushed_offset();
        let generation = self.seq.current_generation();
        let watcher = self.seq.watcher();
        let verdict = |c: &Committed| -> Option<bool> {
            if c.generation == generation {
                return (c.offset <= flushed).then_some(true);
            }
            match watcher.is_durable(*c) {
                Ok(true) => Some(true),
                Ok(false) => None,
                Err(_) => Some(false),
            }
        };
        let mut i = 0;
        while i < self.parked.len() {
            let resolved = match &mut self.parked[i] {
                Parked::Batch(batch, _) => {
                    let mut pending = false;
                    for (reply, dep) in batch.replies.iter_mut().zip(batch.deps.iter_mut()) {
                        let Some(c) = dep else { continue };
                        match verdict(c) {
                            Some(true) => *dep = None,
                            Some(false) => {
                                *reply = Reply::Busy(discarded());
                                *dep = None;
                            }
                            None => pending = true,
                        }
                    }
                    !pending
                }
                Parked::Flush(c, _) => verdict(c).is_some(),
            };
            if resolved {
                match self.parked.swap_remove(i) {
                    Parked::Batch(batch, done) => {
                        let _ = done.send(batch);
                    }
                    Parked::Flush(c, tx) => {
                        let answer = match verdict(&c) {
                            Some(true) => Ok(self.seq.flushed_offset()),
                            _ => Err(discarded()),
                        };
                        let _ = tx.send(answer);
                    }
                }
            } else {
                i += 1;
            }
        }
    }

    fn status(&self) -> PartitionStatus {
        PartitionStatus::new(
            self.id,
            self.ready.load(Ordering::Acquire),
            self.seq.stats(),
            &self.counters,
            self.leases.len(),
            self.leases.evictions,
        )
    }

    /// Waits (bounded) for parked replies, closes the sequencer, collects the cursors.
    fn stop(mut self) -> StopReport {
        if let Some(c) = self.last_commit {
            let _ = self.seq.wait_durable(c, Duration::from_secs(5));
        }
        self.on_progress();
        for parked in self.parked.drain(..) {
            match parked {
                Parked::Batch(mut batch, done) => {
                    for (reply, dep) in batch.replies.iter_mut().zip(&batch.deps) {
                        if dep.is_some() {
                            *reply = Reply::Busy("BUSY the server is shutting down".into());
                        }
                    }
                    let _ = done.send(batch);
                }
                Parked::Flush(_, tx) => {
                    let _ = tx.send(Err("the server is shutting down".into()));
                }
            }
        }
        let cursors = self
            .leases
            .cursors()
            .map(|((ws, seq), next)| SeqValue {
                ws,
                seq,
                number: Number(next),
            })
            .collect();
        let close_error = self.seq.close().err().map(|e| e.to_string());
        StopReport {
            cursors,
            close_error,
        }
    }
}

fn recovering() -> String {
    "BUSY partition is recovering; retry shortly".into()
}

fn discarded() -> String {
    "BUSY storage failed before these numbers were persisted; they were not issued, retry".into()
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
