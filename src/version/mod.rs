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
mod options;
mod reserver;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;

use crate::error::{BusyReason, Error, Result};
use crate::options::Backoff;
use crate::storage::{SeqStorage, SeqValue, StorageError};
use crate::types::{Number, PLogOffset, SeqId, WsId};
use crate::util::lock;
use domain::{Domain, Phase};
pub use options::{ServeGate, VersionClock, VersionOptions, WallClock};

/// A domain of versions: independent counters of one authority.
pub type DomainId = u64;

/// The stored bound of domain `d`: workspace `d`, this sequence.
const BOUND_SEQ: SeqId = SeqId(0);
/// The stored epoch: workspace 0, this sequence.
const EPOCH_SEQ: SeqId = SeqId(1);

/// A commit version, as `VERSION COMMIT` replies it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Commit {
    /// The commit version handed out just before in this domain (after a recovery: the
    /// baseline).
    pub last: u64,
    /// This commit's version.
    pub version: u64,
    /// The authority's epoch.
    pub epoch: u64,
}

/// A domain's state, as `VERSION STATUS` replies it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VersionStatus {
    /// The domain.
    pub domain: DomainId,
    /// The authority's epoch.
    pub epoch: u64,
    /// The recovery baseline this epoch's versions started above.
    pub baseline: u64,
    /// The last commit version handed out (the baseline before the first).
    pub last_commit: u64,
    /// The read version.
    pub read_version: u64,
    /// Versions up to this may be handed out without a storage write.
    pub durable_bound: u64,
}

/// Counts since open, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VersionStats {
    /// Commit versions handed out.
    pub commits: u64,
    /// Read versions answered.
    pub reads: u64,
    /// Reports accepted.
    pub reports: u64,
    /// Window writes that succeeded.
    pub window_writes: u64,
    /// Window writes (and bound reads) that failed.
    pub storage_errors: u64,
    /// Requests that found no durable window and waited for one.
    pub waits: u64,
    /// Domains in memory.
    pub domains: u64,
}

/// What a non-blocking call came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attempt<T> {
    /// Answered.
    Done(T),
    /// It needs storage first (a window, or the domain's stored bound): call the blocking
    /// form, or try again after the reserver's next write.
    Wait,
}

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
    /// Recovers from `storage` (see the [module docs](self)) and starts the reserver.
    ///
    /// Errors: invalid options; storage failing past the retry policy (the authority does not
    /// start: nothing is handed out from a guessed baseline); a stored epoch at `u64::MAX`.
    pub fn open(storage: S, options: VersionOptions) -> Result<Self> {
        options.validate()?;
        let mut backoff = Backoff::new(&options.retry);
        let next_offset = retry(&options, &mut backoff, || storage.read_next_offset())?;
        let stored = retry(&options, &mut backoff, || {
            storage.read_numbers(WsId(0), &[BOUND_SEQ, EPOCH_SEQ])
        })?;
        let (bound0, epoch0) = match stored.as_slice() {
            [b, e] => (b.0, e.0),
            _ => {
                return Err(Error::Storage(StorageError::permanent(
                    "the version store answered a read of 2 values with another count",
                )));
            }
        };
        let epoch = epoch0
            .checked_add(1)
            .ok_or_else(|| Error::InvalidArgument("the stored version epoch is u64::MAX".into()))?
            .max(options.min_epoch);
        // Domain 0 is recovered now, with its first window, so a ready authority answers it
        // at once; the epoch is durable before any reply carries it.
        let now = Instant::now();
        let mut zero = Domain::loading(now);
        zero.loaded(bound0, options.baseline);
        let now_micros = options.clock.now_micros();
        let end = zero.plan(now_micros, now).unwrap_or(zero.durable);
        let values = [
            value(0, EPOCH_SEQ, epoch),
            value(0, BOUND_SEQ, end.max(bound0)),
        ];
        retry(&options, &mut backoff, || {
            storage.write_values_and_offset(&values, next_offset)
        })?;
        zero.reserved(end, true);
        tracing::info!(
            epoch,
            baseline = zero.baseline,
            clock = options.clock.name(),
            "version authority recovered"
        );
        let mut domains = FxHashMap::default();
        domains.insert(0, zero);
        let inner = Arc::new(Inner {
            storage,
            options,
            epoch,
            next_offset,
            state: Mutex::new(State {
                domains,
                closing: false,
                poked: false,
                failure: None,
                window_writes: 1,
                storage_errors: 0,
            }),
            progress: Condvar::new(),
            wake: Condvar::new(),
            commits: AtomicU64::new(0),
            reads: AtomicU64::new(0),
            reports: AtomicU64::new(0),
            waits: AtomicU64::new(0),
        });
        let worker = Arc::clone(&inner);
        let reserver = std::thread::Builder::new()
            .name("seqd-versions".into())
            .spawn(move || reserver::run(&worker))
            .map_err(|e| Error::Io {
                context: "spawning the version reserver thread".into(),
                source: e,
            })?;
        Ok(VersionAuthority {
            inner,
            reserver: Mutex::new(Some(reserver)),
        })
    }

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

    /// Stops handing out versions and writes the exact last version of every domain, so the
    /// next open skips nothing. Bounded by [`VersionOptions::close_timeout`]; on failure the
    /// next open still skips at most one window per domain. Every later call is refused
    /// ([`Error::Busy`], closing); a second `close` writes the same values again.
    pub fn close(&self) -> Result<()> {
        self.stop();
        let inner = &*self.inner;
        let values: Vec<SeqValue> = {
            let st = lock(&inner.state);
            st.domains
                .iter()
                .filter(|(_, d)| d.phase == Phase::Ready && d.durable > d.last)
                .map(|(&id, d)| value(id, BOUND_SEQ, d.last))
                .collect()
        };
        if values.is_empty() {
            return Ok(());
        }
        let deadline = Instant::now() + inner.options.close_timeout;
        let mut backoff = Backoff::new(&inner.options.retry);
        loop {
            match inner
                .storage
                .write_values_and_offset(&values, inner.next_offset)
            {
                Ok(()) => return Ok(()),
                Err(e) if e.is_retryable() && Instant::now() < deadline => {
                    std::thread::sleep(
                        backoff
                            .next_delay()
                            .min(deadline.saturating_duration_since(Instant::now())),
                    );
                }
                Err(e) => return Err(Error::Storage(e)),
            }
        }
    }

    /// Refuses new requests and joins the reserver.
    fn stop(&self) {
        {
            let mut st = lock(&self.inner.state);
            st.closing = true;
        }
        self.inner.wake.notify_all();
        self.inner.progress.notify_all();
        let reserver = lock(&self.reserver).take();
        if let Some(t) = reserver {
            let _ = t.join();
        }
    }
}

impl<S: SeqStorage> Drop for VersionAuthority<S> {
    /// Like a crash: stops without saving the exact versions (at most one window per domain
    /// is skipped at the next open). Call [`close`](VersionAuthority::close) to skip none.
    fn drop(&mut self) {
        self.stop();
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

/// Runs a storage call at open, retrying retryable errors as `options.retry` says.
fn retry<T>(
    options: &VersionOptions,
    backoff: &mut Backoff,
    mut call: impl FnMut() -> Result<T, StorageError>,
) -> Result<T> {
    backoff.reset();
    loop {
        match call() {
            Ok(v) => return Ok(v),
            Err(e) if e.is_retryable() && backoff.attempts() + 1 < options.retry.max_attempts => {
                std::thread::sleep(backoff.next_delay());
            }
            Err(e) => return Err(Error::Storage(e)),
        }
    }
}
