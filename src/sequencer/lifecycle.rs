//! Closing a sequencer: stop the worker within a deadline and report what was not persisted.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::Sequencer;
use super::state::{Shared, Status};
use crate::error::{Error, Result};

/// A close in progress, from [`Sequencer::begin_close`]: the worker has been told to stop;
/// [`Closing::wait`] waits for it. Lets a caller that keeps the sequencer behind a lock start
/// the close under the lock and wait without it, and close several sequencers at once.
#[must_use = "the close is complete only when `wait` returns"]
pub struct Closing {
    shared: Arc<Shared>,
    /// `None` when the sequencer was closed already.
    worker: Option<JoinHandle<()>>,
    deadline: Instant,
}

impl Sequencer {
    /// Stops the background worker after it writes what is pending, within
    /// `Options::close_timeout` even if storage fails forever.
    ///
    /// Errors: [`Error::Unpersisted`] with what could not be written (the next open recovers
    /// it from the PLog if the events are there).
    pub fn close(mut self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<()> {
        self.begin_close().wait()
    }

    /// Tells the worker to write what is pending and stop, by `Options::close_timeout`, and
    /// returns at once; from now on `start` answers `Busy` (closing). [`Closing::wait`]
    /// finishes the close as [`close`](Self::close) would; calling it again returns a
    /// `Closing` that waits for nothing.
    pub fn begin_close(&mut self) -> Closing {
        let deadline = Instant::now() + self.shared.options.close_timeout;
        let worker = self.worker.take();
        if worker.is_some() {
            let mut inner = self.shared.lock();
            inner.stop = Some(deadline);
            if self.shared.status() != Status::Poisoned {
                self.shared.set_status(Status::Closing);
            }
            drop(inner);
            self.shared.work.notify_all();
        }
        Closing {
            shared: Arc::clone(&self.shared),
            worker,
            deadline,
        }
    }
}

impl Closing {
    /// Waits for the worker to stop, at most until the close's deadline. Errors:
    /// [`Error::Unpersisted`] with what could not be written.
    pub fn wait(self) -> Result<()> {
        let Some(worker) = self.worker else {
            return Ok(());
        };
        // The worker checks the deadline between storage calls; one call in progress may
        // overrun it, so allow a grace period before leaving the thread behind.
        let give_up_at = self.deadline + Duration::from_millis(500);
        let mut inner = self.shared.lock();
        while !inner.worker_done {
            let now = Instant::now();
            if now >= give_up_at {
                break;
            }
            inner = self
                .shared
                .progress
                .wait_timeout(inner, give_up_at - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        let done = inner.worker_done;
        let lost = if done {
            inner.lost
        } else {
            self.shared.unpersisted(&inner)
        };
        drop(inner);
        if done {
            let _ = worker.join();
        }
        match lost {
            Some((values, from_offset)) => Err(Error::Unpersisted {
                values,
                from_offset,
            }),
            None => Ok(()),
        }
    }
}

impl Drop for Sequencer {
    /// Closes (bounded by `Options::close_timeout`); what could not be persisted is recovered
    /// from the PLog at the next open.
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}
