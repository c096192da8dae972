//! Connection threads: each runs a single-threaded event loop that owns its connections.
//!
//! Answering a request from a lease takes well under a microsecond; what costs is waking
//! threads. On a multi-threaded runtime every readable socket may wake a parked worker
//! thread on another core, and the profile of `redis-benchmark -P 1` was dominated by
//! those wake-ups (futex, eventfd, scheduler). An event loop per thread, as in Redis,
//! handles every socket that became readable in one `epoll_wait` without waking anyone.
//! The accept loop hands each new connection to the threads in turn.
//!
//! Replies that wait for durability wait on their thread's relay of each partition's
//! progress signal ([`relays`]), not on the signal itself: the flusher then wakes one task
//! per thread instead of every waiting connection. Waking a task from another thread costs
//! an `eventfd` write (and the thread's wake-up) per task; a relay wakes the connections
//! from inside the event loop, which costs nothing. In sync `-P 1` the flusher had been
//! making ~1.8 such writes per request.
//!
//! A thread writes the batches its connections committed itself (sync mode: every `NEXT`;
//! lease mode: the reservations replies wait for, a sequence's first above all), when it has
//! answered everything it read ([`IoContext::write_before_sleep`], its event loop's park
//! hook), as Redis writes its AOF before it sleeps — if the partition's storage is local; a
//! remote store's batches are left to the partition's worker. After its last request it keeps
//! polling for `--io-spin-us` before it sleeps ([`spin`]). Each thread's [`IoContext`] is
//! passed to its connections and its park hook explicitly.
//!
//! Stopping: [`IoThreads::stop`] closes the hand-over channels; each thread then waits up
//! to [`super::DRAIN`] for its connections (which saw the daemon's stop signal) to finish
//! the requests they read, aborts what is left, and exits. `stop` joins the threads.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, mpsc, watch};
use tokio::task::JoinSet;

use super::Shared;
use crate::error::{Error, Result};

pub(crate) mod context;

use context::IoContext;

/// A connection on its way to a thread.
type Handover = (std::net::TcpStream, OwnedSemaphorePermit);

/// The connection threads of a running daemon.
pub(crate) struct IoThreads {
    senders: Vec<mpsc::UnboundedSender<Handover>>,
    threads: Vec<JoinHandle<()>>,
    next: usize,
}

impl IoThreads {
    /// Starts `n` threads serving connections of `shared` until `stop` turns true.
    pub(crate) fn start(
        n: u16,
        shared: &Arc<Shared>,
        stop: &watch::Receiver<bool>,
    ) -> Result<Self> {
        let mut senders = Vec::with_capacity(usize::from(n));
        let mut threads = Vec::with_capacity(usize::from(n));
        for i in 0..n {
            // The thread's context, shared by its connections and its event loop's park hook.
            let io = IoContext::new(shared);
            let before_sleep = Arc::clone(&io);
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .on_thread_park(move || before_sleep.write_before_sleep())
                .build()
                .map_err(|e| Error::Io {
                    context: format!("cannot start the event loop of connection thread {i}"),
                    source: e,
                })?;
            let (tx, rx) = mpsc::unbounded_channel();
            let (shared, stop) = (Arc::clone(shared), stop.clone());
            let thread = std::thread::Builder::new()
                .name(format!("seqd-io-{i}"))
                .spawn(move || runtime.block_on(serve(shared, io, rx, stop)))
                .map_err(|e| Error::Io {
                    context: format!("cannot start connection thread {i}"),
                    source: e,
                })?;
            senders.push(tx);
            threads.push(thread);
        }
        Ok(IoThreads {
            senders,
            threads,
            next: 0,
        })
    }

    /// Hands a new connection to the next thread in turn.
    pub(crate) fn hand_over(
        &mut self,
        stream: tokio::net::TcpStream,
        permit: OwnedSemaphorePermit,
    ) {
        let Ok(stream) = stream.into_std() else {
            return; // the peer is already gone
        };
        let i = self.next % self.senders.len().max(1);
        self.next = self.next.wrapping_add(1);
        if let Some(tx) = self.senders.get(i) {
            // Fails only when that thread is gone (stopping): the connection is dropped.
            let _ = tx.send((stream, permit));
        }
    }

    /// Closes the hand-over channels and joins the threads (each drains its connections
    /// for at most [`super::DRAIN`] first).
    pub(crate) async fn stop(self) {
        drop(self.senders);
        for t in self.threads {
            if tokio::task::spawn_blocking(move || t.join()).await.is_err() {
                tracing::warn!("a connection thread panicked");
            }
        }
    }
}

/// One thread's event loop: serves the connections it is handed until the channel closes,
/// then drains them.
async fn serve(
    shared: Arc<Shared>,
    io: Arc<IoContext>,
    mut rx: mpsc::UnboundedReceiver<Handover>,
    stop: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    // This thread's relays of the partitions' progress and its spinner; aborted on the way out.
    let (progress, mut background) = relays(&shared);
    let window = Duration::from_micros(shared.config.io_spin_us);
    if !window.is_zero() {
        background.spawn(spin(Arc::clone(&io), window));
    }
    loop {
        tokio::select! {
            handed = rx.recv() => {
                let Some((stream, permit)) = handed else { break };
                let Ok(stream) = tokio::net::TcpStream::from_std(stream) else {
                    continue;
                };
                let shared = Arc::clone(&shared);
                let stop = stop.clone();
                let progress = progress.clone();
                let io = Arc::clone(&io);
                shared.metrics.connections.inc();
                conns.spawn(async move {
                    let _open = OpenConnection(Arc::clone(&shared));
                    super::server::serve_connection(shared, io, stream, permit, stop, progress)
                        .await;
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    let drained = tokio::time::timeout(super::DRAIN, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        conns.abort_all();
        while conns.join_next().await.is_some() {}
    }
    background.abort_all();
}

/// One relay per partition on the calling thread's event loop: a task that waits for the
/// partition's progress signal and bumps a local copy, which this thread's connections wait
/// on. The local copy closes when the partition's does (its sequencer closed), so waiters
/// see that too.
fn relays(shared: &Shared) -> (Vec<watch::Receiver<u64>>, JoinSet<()>) {
    let mut tasks = JoinSet::new();
    let mut receivers = Vec::with_capacity(shared.partitions.len());
    for p in 0..shared.partitions.len() {
        let (tx, rx) = watch::channel(0u64);
        if let Some(mut source) = shared.partitions.progress(p) {
            tasks.spawn(async move {
                while source.changed().await.is_ok() {
                    tx.send_modify(|n| *n = n.wrapping_add(1));
                }
            });
        }
        receivers.push(rx);
    }
    (receivers, tasks)
}

/// Keeps the event loop polling for `window` after the last request instead of sleeping in
/// `epoll_wait`: a task that yields makes the loop poll epoll without blocking before it
/// runs the task again. Waking a sleeping thread costs tens of microseconds on a virtual
/// machine, more than a request; at `-P 1` it happened once per request or two. While it
/// polls it also writes what connections committed (the loop does not reach
/// [`IoContext::write_before_sleep`] while a task is runnable). Sleeps when no request came
/// for `window`, until the next one.
async fn spin(io: Arc<IoContext>, window: Duration) {
    loop {
        if io.recently_read(window) {
            io.write_before_sleep();
            tokio::task::yield_now().await;
        } else {
            io.next_request().await;
        }
    }
}

/// Counts a connection as open until it ends, however it ends (also when aborted).
struct OpenConnection(Arc<Shared>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.metrics.connections.dec();
    }
}
