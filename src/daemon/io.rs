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
//! answered everything it read ([`write_before_sleep`]), as Redis writes its AOF before it
//! sleeps. After its last request it keeps polling for `--io-spin-us` before it sleeps
//! ([`spin`]).
//!
//! Stopping: [`IoThreads::stop`] closes the hand-over channels; each thread then waits up
//! to [`super::DRAIN`] for its connections (which saw the daemon's stop signal) to finish
//! the requests they read, aborts what is left, and exits. `stop` joins the threads.

use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::{Notify, OwnedSemaphorePermit, mpsc, watch};
use tokio::task::JoinSet;

use super::Shared;
use crate::error::{Error, Result};
use crate::flusher::FlushHandle;

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
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .on_thread_park(write_before_sleep)
                .build()
                .map_err(|e| Error::Io {
                    context: format!("cannot start the event loop of connection thread {i}"),
                    source: e,
                })?;
            let (tx, rx) = mpsc::unbounded_channel();
            let (shared, stop) = (Arc::clone(shared), stop.clone());
            let thread = std::thread::Builder::new()
                .name(format!("seqd-io-{i}"))
                .spawn(move || {
                    install_writers(&shared);
                    runtime.block_on(serve(shared, rx, stop))
                })
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
    mut rx: mpsc::UnboundedReceiver<Handover>,
    stop: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    // This thread's relays of the partitions' progress and its spinner; aborted on the way out.
    let (progress, mut background) = relays(&shared);
    let window = Duration::from_micros(shared.config.io_spin_us);
    if !window.is_zero() {
        background.spawn(spin(window));
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
                shared.metrics.connections.inc();
                conns.spawn(async move {
                    let _open = OpenConnection(Arc::clone(&shared));
                    super::server::serve_connection(shared, stream, permit, stop, progress)
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

/// Per connection thread: a handle per partition to write its pending batch,
/// and the partitions this thread's connections committed to since it last wrote.
struct Writers {
    handles: Vec<Option<FlushHandle>>,
    /// Whether any of `marked` is set.
    any: bool,
    marked: Vec<bool>,
}

thread_local! {
    static WRITERS: RefCell<Option<Writers>> = const { RefCell::new(None) };
}

fn install_writers(shared: &Shared) {
    let n = shared.partitions.len();
    let writers = Writers {
        handles: (0..n).map(|p| shared.partitions.flush_handle(p)).collect(),
        any: false,
        marked: vec![false; n],
    };
    WRITERS.with(|w| *w.borrow_mut() = Some(writers));
}

/// A connection on this thread committed numbers on partition `p`; they are
/// written when the thread has nothing left to run ([`write_before_sleep`]).
pub(crate) fn committed(p: usize) {
    WRITERS.with(|w| {
        if let Some(w) = w.borrow_mut().as_mut()
            && let Some(marked) = w.marked.get_mut(p)
        {
            *marked = true;
            w.any = true;
        }
    });
}

/// Runs when the thread's event loop is about to sleep (every connection with input has
/// been answered): writes each partition's batch its connections committed to, as Redis
/// writes its AOF before it sleeps. The batch holds everything those reads committed; the
/// durable write's progress signal then wakes this thread's connections without a
/// cross-thread hand-over. Batches of several partitions go in one group with one fsync
/// (`FlushHandle::flush_together`: the partitions share RocksDB's write-ahead log); with
/// one fsync per partition, two partitions made sync `-P 1` with 100,000 keys 30 % slower
/// than one. A partition that is already writing (its worker) writes this batch right after
/// (`FlushNow::Busy`); a failure goes to its worker.
fn write_before_sleep() {
    WRITERS.with(|w| {
        let mut guard = w.borrow_mut();
        let Some(w) = guard.as_mut() else { return };
        if !std::mem::take(&mut w.any) {
            return;
        }
        let mut group: Vec<&mut FlushHandle> = w
            .handles
            .iter_mut()
            .zip(w.marked.iter_mut())
            .filter_map(|(handle, marked)| std::mem::take(marked).then_some(handle.as_mut())?)
            .collect();
        match group.as_mut_slice() {
            [] => {}
            [one] => {
                one.flush_now();
            }
            all => {
                FlushHandle::flush_together(all);
            }
        }
    });
}

/// When a connection on this thread last read a request (`None`: the spinner sleeps), and
/// what wakes the spinner.
struct Spin {
    last_request: Cell<Option<Instant>>,
    wake: RefCell<Option<Arc<Notify>>>,
}

thread_local! {
    static SPIN: Spin = const {
        Spin {
            last_request: Cell::new(None),
            wake: RefCell::new(None),
        }
    };
}

/// A connection on this thread read a request: keep polling for a while ([`spin`]).
pub(crate) fn request_read() {
    SPIN.with(|s| {
        if s.last_request.replace(Some(Instant::now())).is_none()
            && let Some(wake) = s.wake.borrow().as_ref()
        {
            wake.notify_one();
        }
    });
}

/// Keeps the event loop polling for `window` after the last request instead of sleeping in
/// `epoll_wait`: a task that yields makes the loop poll epoll without blocking before it
/// runs the task again. Waking a sleeping thread costs tens of microseconds on a virtual
/// machine, more than a request; at `-P 1` it happened once per request or two. While it
/// polls it also writes what connections committed (the loop does not reach
/// [`write_before_sleep`] while a task is runnable). Sleeps when no request came for
/// `window`, until the next one.
async fn spin(window: Duration) {
    let wake = Arc::new(Notify::new());
    SPIN.with(|s| *s.wake.borrow_mut() = Some(Arc::clone(&wake)));
    loop {
        let last = SPIN.with(|s| s.last_request.get());
        if last.is_some_and(|t| t.elapsed() < window) {
            write_before_sleep();
            tokio::task::yield_now().await;
        } else {
            SPIN.with(|s| s.last_request.set(None));
            wake.notified().await;
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
