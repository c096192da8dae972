//! [`IoContext`]: what the connections of one connection thread share with that thread's
//! event loop — the partitions they committed to since the thread last wrote, a flush handle
//! per partition, and when a request was last read (for the spinner).
//!
//! One context per thread, created with the thread and passed to each of its connections and
//! to the event loop's park hook; only that thread touches it, so its locks are never
//! contended (they exist because tokio's tasks and hooks must be `Send + Sync`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::FlushHandle;
use crate::daemon::{DurabilityMode, Shared};
use crate::util::lock;

/// One connection thread's shared state (see the module docs).
pub(crate) struct IoContext {
    /// Per partition: a handle to write its pending batch, and whether its storage may be
    /// written from this thread ([`StorageLatency::Local`](crate::storage::StorageLatency)).
    writers: Mutex<Vec<Writer>>,
    /// Per partition: a connection of this thread committed to it since the last write.
    marked: Vec<AtomicBool>,
    /// Whether any of `marked` is set.
    any: AtomicBool,
    /// When a connection last read a request, in nanoseconds after `epoch` (0: the spinner
    /// sleeps).
    last_request: AtomicU64,
    epoch: Instant,
    /// Wakes the spinner when a request arrives while it sleeps.
    spin_wake: Notify,
}

struct Writer {
    handle: Option<FlushHandle>,
    local: bool,
}

impl IoContext {
    pub(crate) fn new(shared: &Shared) -> Arc<Self> {
        let n = shared.partitions.len();
        Arc::new(IoContext {
            writers: Mutex::new(
                (0..n)
                    .map(|p| Writer {
                        handle: shared.partitions.flush_handle(p),
                        local: shared.partitions.local(p)
                            && shared.config.durability == DurabilityMode::Sync,
                    })
                    .collect(),
            ),
            marked: (0..n).map(|_| AtomicBool::new(false)).collect(),
            any: AtomicBool::new(false),
            last_request: AtomicU64::new(0),
            epoch: Instant::now(),
            spin_wake: Notify::new(),
        })
    }

    /// A connection on this thread committed numbers on partition `p`; they are written when
    /// the thread has nothing left to run ([`write_before_sleep`](Self::write_before_sleep)).
    pub(crate) fn committed(&self, p: usize) {
        if let Some(m) = self.marked.get(p) {
            m.store(true, Ordering::Relaxed);
            self.any.store(true, Ordering::Relaxed);
        }
    }

    /// Runs when the thread's event loop is about to sleep (every connection with input has
    /// been answered): writes each partition's batch its connections committed to, as Redis
    /// writes its AOF before it sleeps. The batch holds everything those reads committed; the
    /// durable write's progress signal then wakes this thread's connections without a
    /// cross-thread hand-over. Batches of several partitions go in one group with one fsync
    /// (`FlushHandle::flush_together`: the partitions share RocksDB's write-ahead log); with
    /// one fsync per partition, two partitions made sync `-P 1` with 100,000 keys 30 % slower
    /// than one. A partition that is already writing (its worker) writes this batch right
    /// after (`FlushNow::Busy`); a failure goes to its worker.
    ///
    /// Only storage that says it is local is written here. A remote store's batch is left to
    /// its partition's worker, asked to write it now (`flush_soon`): an event loop never waits
    /// for a network round trip.
    pub(crate) fn write_before_sleep(&self) {
        // A plain load first: the spinner calls this between every two polls.
        if !self.any.load(Ordering::Relaxed) {
            return;
        }
        self.any.store(false, Ordering::Relaxed);
        let mut writers = lock(&self.writers);
        let mut group: Vec<&mut FlushHandle> = Vec::new();
        for (w, marked) in writers.iter_mut().zip(&self.marked) {
            if !marked.swap(false, Ordering::Relaxed) {
                continue;
            }
            let Some(handle) = w.handle.as_mut() else {
                continue;
            };
            if w.local {
                group.push(handle);
            } else {
                handle.flush_soon();
            }
        }
        match group.as_mut_slice() {
            [] => {}
            [one] => {
                one.flush_now();
            }
            all => {
                FlushHandle::flush_together(all);
            }
        }
    }

    /// A connection on this thread read a request: keep polling for a while
    /// ([`spin`](super::spin)).
    pub(crate) fn request_read(&self) {
        let now = self.nanos(Instant::now());
        if self.last_request.swap(now, Ordering::Relaxed) == 0 {
            self.spin_wake.notify_one();
        }
    }

    /// Whether a request was read less than `window` ago; if not, marks the spinner asleep.
    pub(super) fn recently_read(&self, window: Duration) -> bool {
        let last = self.last_request.load(Ordering::Relaxed);
        let now = self.nanos(Instant::now());
        let recent = last != 0 && now.saturating_sub(last) < nanos(window);
        if !recent {
            // Unless a request came in between: then the spinner goes on.
            return self
                .last_request
                .compare_exchange(last, 0, Ordering::Relaxed, Ordering::Relaxed)
                .is_err();
        }
        recent
    }

    /// Waits until the next request is read (after [`recently_read`](Self::recently_read)
    /// answered false).
    pub(super) async fn next_request(&self) {
        self.spin_wake.notified().await;
    }

    /// Nanoseconds from `epoch` to `t`, never 0 (0 means "none").
    fn nanos(&self, t: Instant) -> u64 {
        nanos(t.saturating_duration_since(self.epoch)).max(1)
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
