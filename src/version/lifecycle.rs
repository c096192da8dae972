//! Opening (recovery) and closing a [`VersionAuthority`]: the epoch and the baseline at
//! open, the exact last versions at close, and the reserver's owner-side stop and join.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use rustc_hash::FxHashMap;

use super::domain::{Domain, Phase};
use super::{
    BOUND_SEQ, EPOCH_SEQ, Inner, State, VersionAuthority, VersionOptions, reserver, value,
};
use crate::error::{Error, Result};
use crate::options::Backoff;
use crate::storage::{SeqStorage, SeqValue, StorageError};
use crate::types::WsId;
use crate::util::lock;

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
