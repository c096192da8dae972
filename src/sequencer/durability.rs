//! Waiting for a committed transaction to become durable.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::state::{Inner, Shared, Status};
use crate::error::{Error, Result};
use crate::types::PLogOffset;

/// Proof of a commit, from [`crate::Transaction::flush`]: the transaction's offset and the
/// generation (count of actualizations) it was committed in.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Committed {
    pub(crate) offset: PLogOffset,
    pub(crate) generation: u64,
}

impl Committed {
    /// The offset of the committed transaction.
    pub fn offset(&self) -> PLogOffset {
        self.offset
    }
}

/// Waits for durability from any thread; get one from [`crate::Sequencer::watcher`].
#[derive(Clone)]
pub struct DurabilityWatcher {
    shared: Arc<Shared>,
}

/// Where a commit stands.
enum Verdict {
    Durable,
    Discarded,
    Pending,
}

impl DurabilityWatcher {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// Every transaction with an offset at or below this is durable.
    pub fn flushed_offset(&self) -> PLogOffset {
        PLogOffset(
            self.shared
                .durable_next
                .load(Ordering::Acquire)
                .saturating_sub(1),
        )
    }

    /// How many actualizations have discarded state so far (see
    /// [`Sequencer::generation`](crate::Sequencer::generation)).
    pub fn generation(&self) -> u64 {
        self.shared.generation.load(Ordering::Acquire)
    }

    /// The checkpoint and the generation it belongs to, read consistently: every transaction
    /// of that generation at or below the offset is durable. `None` while an actualization
    /// moves the generation on (ask again).
    pub fn checkpoint(&self) -> Option<(PLogOffset, u64)> {
        self.shared.checkpoint()
    }

    /// The sequencer's state now (e.g. `Actualizing` while it rebuilds after a storage
    /// failure), readable from any thread.
    pub fn state(&self) -> crate::stats::SequencerState {
        self.shared.status().public()
    }

    /// Whether the last write to storage (or recovery read) failed and has not succeeded
    /// since.
    pub fn storage_failing(&self) -> bool {
        self.shared.storage_failing.load(Ordering::Acquire)
    }

    /// Whether `committed` is durable now (`Ok(false)`: not yet), or was discarded.
    pub fn is_durable(&self, committed: Committed) -> Result<bool> {
        match self.verdict(committed) {
            Verdict::Durable => Ok(true),
            Verdict::Pending => Ok(false),
            Verdict::Discarded => Err(Error::Discarded {
                offset: committed.offset,
            }),
        }
    }

    /// Blocks until `committed` is durable, at most `timeout`.
    ///
    /// Errors: [`Error::Timeout`] (it may still become durable); [`Error::Discarded`] when an
    /// actualization dropped it before it was written and its event was not in the PLog, so
    /// its numbers may be handed out again; [`Error::Poisoned`].
    pub fn wait_durable(&self, committed: Committed, timeout: Duration) -> Result<()> {
        self.wait_until(committed.offset, timeout, |inner| {
            match verdict(&self.shared, inner, committed) {
                Verdict::Durable => Some(Ok(())),
                Verdict::Discarded => Some(Err(Error::Discarded {
                    offset: committed.offset,
                })),
                Verdict::Pending => None,
            }
        })
    }

    /// Blocks until every transaction up to and including `offset` is durable
    /// ([`flushed_offset`](Self::flushed_offset) ≥ `offset`), at most `timeout`. Unlike
    /// [`wait_durable`](Self::wait_durable) it cannot tell a discarded transaction from a later
    /// one that reused its offset; use it when the PLog is the source of truth.
    pub fn wait_flushed(&self, offset: PLogOffset, timeout: Duration) -> Result<()> {
        self.wait_until(offset, timeout, |inner| {
            (inner.durable_next > offset).then_some(Ok(()))
        })
    }

    /// Waits on the progress condvar until `decide` answers, the worker is gone, or time is up.
    fn wait_until(
        &self,
        offset: PLogOffset,
        timeout: Duration,
        mut decide: impl FnMut(&Inner) -> Option<Result<()>>,
    ) -> Result<()> {
        let start = Instant::now();
        let deadline = start + timeout;
        let mut inner = self.shared.lock();
        loop {
            if let Some(answer) = decide(&inner) {
                return answer;
            }
            if self.shared.status() == Status::Poisoned || inner.worker_done {
                let why = inner
                    .poison
                    .clone()
                    .unwrap_or_else(|| "the sequencer closed".into());
                return Err(Error::Poisoned(why));
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::Timeout {
                    offset,
                    waited: now - start,
                });
            }
            inner = self
                .shared
                .progress
                .wait_timeout(inner, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    fn verdict(&self, committed: Committed) -> Verdict {
        let inner = self.shared.lock();
        verdict(&self.shared, &inner, committed)
    }
}

/// A commit of generation g at offset o is durable once the checkpoint passes o, unless an
/// actualization ended generation g first and resumed at or below o (then o's event was not
/// in the PLog and it was discarded). While that actualization is still running the answer
/// is not known yet.
fn verdict(shared: &Shared, inner: &Inner, c: Committed) -> Verdict {
    let current = shared.generation.load(Ordering::Acquire);
    if c.generation != current {
        match inner
            .discards
            .iter()
            .find(|(ended, _)| *ended == c.generation)
        {
            Some(&(_, resumed_at)) if c.offset >= resumed_at => return Verdict::Discarded,
            Some(_) => {}
            // Still running (not recorded yet) or forgotten (too old to tell).
            None if inner
                .discards
                .back()
                .is_some_and(|(ended, _)| *ended > c.generation) =>
            {
                return Verdict::Discarded;
            }
            None => return Verdict::Pending,
        }
    }
    if inner.durable_next > c.offset {
        Verdict::Durable
    } else {
        Verdict::Pending
    }
}

impl std::fmt::Debug for DurabilityWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DurabilityWatcher")
            .field("flushed_offset", &self.flushed_offset())
            .finish()
    }
}
