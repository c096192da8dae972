//! The worker thread of a partition: what may wait, off the connections' threads.
//!
//! It takes [`Msg`]s: status, `Flush` (parked until the last commit is durable), actualize,
//! lease prefetches (reservations ahead), progress wake-ups and stop. It locks the partition
//! ([`Core`]) per message, never while it waits.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::{Core, DrainReport, Msg, Partition, StopReport};
use crate::daemon::config::DurabilityMode;
use crate::options::Options;
use crate::sequencer::Sequencer;
use crate::storage::SeqStorage;
use crate::util::lock;

/// How a worker opens a new sequencer for its partition (cluster mode): the options (with
/// the partition's progress hook) and the thread name.
pub(crate) struct Opener {
    pub(crate) options: Box<dyn Fn() -> Options + Send>,
    pub(crate) name: String,
}

/// The thread of one partition: takes [`Msg`]s until told to stop.
pub(crate) struct Worker {
    core: Core,
    rx: mpsc::Receiver<Msg>,
    /// Set by the progress hook; cleared by the worker before it looks at durability.
    progress: Arc<AtomicBool>,
    /// Whether the progress hook should wake the worker: while recovering, while a `Flush`
    /// is parked, and always in lease mode (to drop every lease after an actualization and
    /// confirm reservations no connection has looked at; connections confirm the ones they
    /// serve from themselves). Otherwise, in sync mode, progress concerns only the
    /// connections waiting for their replies.
    wants_progress: Arc<AtomicBool>,
    opener: Opener,
}

impl Worker {
    pub(crate) fn new(
        core: Core,
        rx: mpsc::Receiver<Msg>,
        progress: Arc<AtomicBool>,
        wants_progress: Arc<AtomicBool>,
        opener: Opener,
    ) -> Self {
        Worker {
            core,
            rx,
            progress,
            wants_progress,
            opener,
        }
    }

    /// Cluster mode: puts a new sequencer on `storage` in place of the current one (opened
    /// here, off the partition's lock; recovery runs in its background) and closes the old
    /// one, bounded, without the lock.
    /// `done` learns whether the new sequencer is in place; it is told before the old one is
    /// closed (bounded), so the caller does not wait for that.
    fn swap(
        &self,
        storage: Arc<dyn SeqStorage>,
        opening: Option<super::Opening>,
        done: oneshot::Sender<bool>,
    ) {
        let id = lock(&self.core).id;
        match Sequencer::open_named(storage, (self.opener.options)(), &self.opener.name) {
            Ok(seq) => {
                let old = lock(&self.core).replace(seq, opening);
                let _ = done.send(true);
                if let Err(e) = old.close() {
                    tracing::debug!(partition = id.0, error = %e, "the replaced sequencer closed with an error");
                }
            }
            Err(e) => {
                // Whatever the current sequencer is, it must not start answering now.
                lock(&self.core).disarm();
                let _ = done.send(false);
                tracing::error!(partition = id.0, error = %e, "cannot open the partition's sequencer");
            }
        }
    }

    /// The worker's loop; returns when told to stop or when every sender is gone.
    pub(crate) fn run(mut self) {
        self.update_wants(&mut lock(&self.core));
        while let Some(msg) = self.rx.blocking_recv() {
            let mut core = lock(&self.core);
            match msg {
                Msg::Wake => {}
                Msg::Status(tx) => {
                    let _ = tx.send(core.status());
                }
                Msg::Flush(tx) => match core.last_commit {
                    Some(c) => {
                        core.parked.push((c, tx));
                        // Wanted before looking: progress from here on wakes the worker.
                        self.update_wants(&mut core);
                        core.release();
                    }
                    None => {
                        let _ = tx.send(Ok(core.seq.flushed_offset()));
                    }
                },
                Msg::Actualize(tx) => {
                    core.seq.actualize();
                    let _ = tx.send(());
                }
                Msg::Prefetch(key) => core.prefetch(key),
                Msg::Stop(tx) => {
                    drop(core);
                    let _ = tx.send(stop(&self.core));
                    return;
                }
                Msg::Acquire {
                    storage,
                    opening,
                    done,
                } => {
                    drop(core);
                    self.swap(storage, Some(opening), done);
                    core = lock(&self.core);
                }
                Msg::Release { storage, done } => {
                    drop(core);
                    self.swap(storage, None, done);
                    core = lock(&self.core);
                }
                Msg::Drain(tx) => {
                    let (cursors, last, watcher) = core.begin_drain();
                    drop(core);
                    let settled = last.is_none_or(|c| watcher.wait_durable(c, DRAIN_WAIT).is_ok());
                    let _ = tx.send(DrainReport { cursors, settled });
                    core = lock(&self.core);
                }
            }
            if self.progress.swap(false, Ordering::AcqRel) {
                core.on_progress();
            }
            self.update_wants(&mut core);
        }
        // Every handle is gone without a Stop: close anyway; the cursors are lost (a gap).
        let id = lock(&self.core).id;
        let report = stop(&self.core);
        tracing::warn!(
            partition = id.0,
            lost_cursors = report.cursors.len(),
            "partition stopped without a shutdown"
        );
    }

    fn update_wants(&self, core: &mut Partition) {
        let wants =
            core.mode == DurabilityMode::Lease || core.restore.is_some() || !core.parked.is_empty();
        self.wants_progress.store(wants, Ordering::SeqCst);
    }
}

/// Longest a drain waits for the last commit to become durable.
const DRAIN_WAIT: Duration = Duration::from_secs(5);

/// Waits (bounded) for the last commit, closes the sequencer, collects the cursors. Holds
/// the lock only to change state, not while it waits.
fn stop(core: &Core) -> StopReport {
    let (last, watcher) = {
        let c = lock(core);
        (c.last_commit, c.seq.watcher())
    };
    if let Some(c) = last {
        let _ = watcher.wait_durable(c, Duration::from_secs(5));
    }
    let (cursors, closing) = lock(core).begin_stop();
    let close_error = closing.wait().err();
    StopReport {
        cursors,
        close_error,
        discard_floor: lock(core).seq.discard_floor().0,
    }
}
