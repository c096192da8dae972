//! The version authority: commit and read versions for distributed transactions (the
//! Bedrock / FoundationDB sequencer; SPEC §6).
//!
//! ```
//! use seqd::version::{VersionAuthority, VersionOptions};
//! use seqd::storage::MemoryStorage;
//! use std::sync::Arc;
//!
//! let storage = Arc::new(MemoryStorage::new());
//! let authority = VersionAuthority::open(Arc::clone(&storage), VersionOptions::default())?;
//! let a = authority.commit(0)?;              // a commit proxy's version
//! let b = authority.commit(0)?;
//! assert_eq!(b.last, a.version);             // each chains to the one before
//! authority.report(0, a.version)?;           // that commit succeeded
//! assert_eq!(authority.read(0)?, a.version); // snapshots read at it
//! authority.close()?;                        // the next open continues from b.version
//! let again = VersionAuthority::open(storage, VersionOptions::default())?;
//! assert_eq!(again.commit(0)?.last, b.version);
//! # Ok::<(), seqd::Error>(())
//! ```
//!
//! **State.** Per domain (any `u64`): the recovery baseline, the last commit version handed
//! out, the read version (the largest reported commit version) and the durable bound; one
//! epoch for the whole authority. All of it sits under one mutex, held for a few dozen
//! nanoseconds per request (the reserver's pass walks every domain under it) and never
//! across I/O.
//!
//! **Durability.** Storage holds, per domain, a bound at or above every version handed out
//! (key: workspace = domain, sequence 0) and the epoch (workspace 0, sequence 1). The
//! background reserver (`reserver.rs`) writes bounds a window ahead of use, adapting the
//! window to the rate, so commits are answered from memory; a commit beyond the durable
//! bound waits for the reserver. A graceful [`close`](VersionAuthority::close) writes the
//! exact last versions.
//!
//! **Recovery.** [`open`](VersionAuthority::open) reads the stored epoch and domain 0's
//! bound, durably takes a new epoch (one more, or [`VersionOptions::min_epoch`]) and resumes
//! every domain above max(stored bound, [`VersionOptions::baseline`]). Nothing handed out
//! before was above the stored bound, so nothing is handed out twice, and the first commit
//! of the epoch chains to the baseline. If storage cannot be read, `open` fails: the
//! authority never starts from a guess.
//!
//! `design/versions.md` has the argument in full.

mod domain;
mod lifecycle;
mod options;
mod reserver;
#[cfg(test)]
mod tests;
mod types;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;

use crate::error::{BusyReason, Error, Result};
use crate::storage::{SeqStorage, SeqValue, StorageError};
use crate::types::{Number, PLogOffset, SeqId, WsId};
use crate::util::lock;
use domain::{Domain, Phase};
pub use options::{ServeGate, VersionClock, VersionOptions, WallClock};
pub use types::{Attempt, Commit, DomainId, VersionStats, VersionStatus};

/// The stored bound of domain `d`: workspace `d`, this sequence.
const BOUND_SEQ: SeqId = SeqId(0);
/// The stored epoch: workspace 0, this sequence.
const EPOCH_SEQ: SeqId = SeqId(1);

/// Shared between the handle, the reserver thread and blocking callers.
pub(crate) struct Inner<S> {
    storage: S,
    options: VersionOptions,
    epoch: u64,
    next_offset: PLogOffset,
    state: Mutex<State>,
    /// Signalled after every reserver pass: waiters look again.
    progress: Condvar,
    /// Wakes the reserver.
    wake: Condvar,
    commits: AtomicU64,
    reads: AtomicU64,
    reports: AtomicU64,
    waits: AtomicU64,
}

/// Everything under the mutex.
pub(crate) struct State {
    domains: FxHashMap<DomainId, Domain>,
    /// Refusing requests: `close` began or the handle was dropped.
    closing: bool,
    /// The reserver was asked to work (set by requests, taken by the reserver).
    poked: bool,
    /// The last storage error, until a write succeeds again.
    failure: Option<String>,
    window_writes: u64,
    storage_errors: u64,
}

/// The version authority over any [`SeqStorage`]; see the [module docs](self).
///
/// Every method takes `&self` and may be called from many threads at once. The `try_*`
/// forms never block (an event loop calls them); the others wait up to
/// [`VersionOptions::wait`] for storage.
pub struct VersionAuthority<S: SeqStorage> {
    inner: Arc<Inner<S>>,
    /// Taken by the first `close` (or the drop) that stops it.
    reserver: Mutex<Option<JoinHandle<()>>>,
}

impl<S: SeqStorage> VersionAuthority<S> {
    /// This authority's epoch: larger than every earlier one on the same storage.
    pub fn epoch(&self) -> u64 {
        self.inner.epoch
    }

    /// The options it was opened with.
    pub fn options(&self) -> &VersionOptions {
        &self.inner.options
    }

    /// A new commit version of `domain`, without blocking.
    pub fn try_commit(&self, domain: DomainId) -> Result<Attempt<Commit>> {
        let inner = &*self.inner;
        let now_micros = inner.options.clock.now_micros();
        let mut st = lock(&inner.state);
        let Some(d) = inner.domain(&mut st, domain)? else {
            return Ok(Attempt::Wait);
        };
        let next = d.next(now_micros).map_err(|()| exhausted(domain))?;
        let Some(version) = next else {
            d.starved = true;
            inner.poke(&mut st);
            return Ok(Attempt::Wait);
        };
        let now = Instant::now();
        let commit = d.take(version, inner.epoch, now);
        if d.wants_reserve(now_micros, now) {
            inner.poke(&mut st);
        }
        drop(st);
        inner.commits.fetch_add(1, Ordering::Relaxed);
        Ok(Attempt::Done(commit))
    }

    /// `domain`'s read version, without blocking.
    pub fn try_read(&self, domain: DomainId) -> Result<Attempt<u64>> {
        let inner = &*self.inner;
        let mut st = lock(&inner.state);
        let Some(d) = inner.domain(&mut st, domain)? else {
            return Ok(Attempt::Wait);
        };
        let read = d.read;
        drop(st);
        inner.reads.fetch_add(1, Ordering::Relaxed);
        Ok(Attempt::Done(read))
    }

    /// Records that the commit at `version` succeeded, without blocking: later read versions
    /// are at least `version`. A version above the last one handed out is refused
    /// ([`Error::VersionNotIssued`]); one of an earlier epoch is already below every read
    /// version and changes nothing.
    pub fn try_report(&self, domain: DomainId, version: u64) -> Result<Attempt<()>> {
        let inner = &*self.inner;
        let mut st = lock(&inner.state);
        let Some(d) = inner.domain(&mut st, domain)? else {
            return Ok(Attempt::Wait);
        };
        if version > d.last {
            return Err(Error::VersionNotIssued {
                domain,
                version,
                last: d.last,
            });
        }
        d.read = d.read.max(version);
        drop(st);
        inner.reports.fetch_add(1, Ordering::Relaxed);
        Ok(Attempt::Done(()))
    }

    /// `domain`'s state, without blocking.
    pub fn try_status(&self, domain: DomainId) -> Result<Attempt<VersionStatus>> {
        let inner = &*self.inner;
        let mut st = lock(&inner.state);
        let Some(d) = inner.domain(&mut st, domain)? else {
            return Ok(Attempt::Wait);
        };
        Ok(Attempt::Done(VersionStatus {
            domain,
            epoch: inner.epoch,
            baseline: d.baseline,
            last_commit: d.last,
            read_version: d.read,
            durable_bound: d.durable,
        }))
    }

    /// A new commit version of `domain`, waiting up to [`VersionOptions::wait`] for storage.
    pub fn commit(&self, domain: DomainId) -> Result<Commit> {
        self.blocking(|| self.try_commit(domain))
    }

    /// `domain`'s read version: at least every commit version reported before this call, at
    /// most the last one handed out, never lower than an earlier answer.
    pub fn read(&self, domain: DomainId) -> Result<u64> {
        self.blocking(|| self.try_read(domain))
    }

    /// Records that the commit at `version` succeeded (see [`try_report`](Self::try_report)).
    pub fn report(&self, domain: DomainId, version: u64) -> Result<()> {
        self.blocking(|| self.try_report(domain, version))
    }

    /// `domain`'s state.
    pub fn status(&self, domain: DomainId) -> Result<VersionStatus> {
        self.blocking(|| self.try_status(domain))
    }

    /// Counts since open.
    pub fn stats(&self) -> VersionStats {
        let inner = &*self.inner;
        let st = lock(&inner.state);
        VersionStats {
            commits: inner.commits.load(Ordering::Relaxed),
            reads: inner.reads.load(Ordering::Relaxed),
            reports: inner.reports.load(Ordering::Relaxed),
            window_writes: st.window_writes,
            storage_errors: st.storage_errors,
            waits: inner.waits.load(Ordering::Relaxed),
            domains: st.domains.len() as u64,
        }
    }

    /// The last storage failure, while storage keeps failing.
    pub fn failure(&self) -> Option<String> {
        lock(&self.inner.state).failure.clone()
    }

    /// Runs `attempt` until it is answered or [`VersionOptions::wait`] passes.
    fn blocking<T>(&self, mut attempt: impl FnMut() -> Result<Attempt<T>>) -> Result<T> {
        let inner = &*self.inner;
        let deadline = Instant::now() + inner.options.wait;
        let mut waited = false;
        loop {
            if let Attempt::Done(v) = attempt()? {
                return Ok(v);
            }
            if !waited {
                waited = true;
                inner.waits.fetch_add(1, Ordering::Relaxed);
            }
            let st = lock(&inner.state);
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let why = st
                    .failure
                    .clone()
                    .unwrap_or_else(|| "storage is slow".into());
                return Err(Error::VersionsUnavailable(format!(
                    "no durable version window within {:?} ({why})",
                    inner.options.wait
                )));
            }
            // Woken by the reserver's next pass; bounded so a missed signal costs little.
            let wait = left.min(Duration::from_millis(50));
            drop(
                inner
                    .progress
                    .wait_timeout(st, wait)
                    .unwrap_or_else(|e| e.into_inner()),
            );
        }
    }
}

impl<S: SeqStorage> std::fmt::Debug for VersionAuthority<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VersionAuthority")
            .field("epoch", &self.inner.epoch)
            .field("clock", &self.inner.options.clock)
            .finish()
    }
}

impl<S: SeqStorage> Inner<S> {
    /// `domain`'s state, if it is ready; a new domain is registered for loading.
    fn domain<'a>(&self, st: &'a mut State, id: DomainId) -> Result<Option<&'a mut Domain>> {
        if st.closing {
            return Err(Error::Busy {
                reason: BusyReason::Closing,
            });
        }
        if let Some(gate) = &self.options.gate {
            gate.check().map_err(Error::VersionsUnavailable)?;
        }
        if !st.domains.contains_key(&id) {
            if st.domains.len() >= self.options.max_domains {
                return Err(Error::InvalidArgument(format!(
                    "domain {id} would be one more than the {} version domains allowed; \
                     use fewer domains or raise the limit",
                    self.options.max_domains
                )));
            }
            st.domains.insert(id, Domain::loading(Instant::now()));
            self.poke(st);
            return Ok(None);
        }
        match st.domains.get_mut(&id) {
            Some(d) if d.phase == Phase::Broken => Err(Error::Storage(StorageError::permanent(
                d.broken.clone().unwrap_or_default(),
            ))),
            d => Ok(d.filter(|d| d.phase == Phase::Ready)),
        }
    }

    /// Asks the reserver for a pass (one signal per pass, not per request).
    fn poke(&self, st: &mut State) {
        if !st.poked {
            st.poked = true;
            self.wake.notify_one();
        }
    }
}

/// The stored value of `seq` of workspace `ws`.
fn value(ws: u64, seq: SeqId, number: u64) -> SeqValue {
    SeqValue {
        ws: WsId(ws),
        seq,
        number: Number(number),
    }
}

fn exhausted(domain: DomainId) -> Error {
    Error::InvalidArgument(format!(
        "the versions of domain {domain} are exhausted (the last is u64::MAX); use another domain"
    ))
}
