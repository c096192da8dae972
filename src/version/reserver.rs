//! The reserver: the authority's one background thread (`seqd-versions`). It reads the stored
//! bounds of newly asked domains and writes every domain's next window in one storage write
//! per pass, then wakes the waiters. Owned by the [`VersionAuthority`](super::VersionAuthority)
//! handle, which stops and joins it.
//!
//! A pass: under the lock, collect the domains to load and plan the windows to write; without
//! the lock, write the windows, then read the new domains' bounds; under the lock again, apply
//! what succeeded. A domain whose stored bound is malformed is refused alone (`Broken`). A failed call is retried
//! at the retry policy's pace for as long as the authority is open: requests meanwhile wait
//! (bounded by `VersionOptions::wait`) and nothing above the durable bound is handed out.

use std::time::{Duration, Instant};

use super::domain::Phase;
use super::{BOUND_SEQ, DomainId, Inner, State, value};
use crate::options::Backoff;
use crate::storage::{SeqStorage, SeqValue, StorageError};
use crate::types::WsId;
use crate::util::lock;

/// How often an idle reserver looks (the micros clock moves without requests).
const TICK: Duration = Duration::from_millis(100);
/// Most domains loaded in one pass (each a storage read).
const LOADS_PER_PASS: usize = 256;

/// The reserver's loop, until the authority closes.
pub(super) fn run<S: SeqStorage>(inner: &Inner<S>) {
    let mut backoff = Backoff::new(&inner.options.retry);
    let mut st = lock(&inner.state);
    loop {
        if st.closing {
            return;
        }
        st.poked = false;
        let (loads, plans) = collect(inner, &mut st);
        if loads.is_empty() && plans.is_empty() {
            st = inner
                .wake
                .wait_timeout_while(st, TICK, |s| !s.poked && !s.closing)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
            continue;
        }
        drop(st);
        // Windows first: a slow or failing load of a new domain delays no other domain's.
        let values: Vec<SeqValue> = plans
            .iter()
            .map(|&(d, end)| value(d, BOUND_SEQ, end))
            .collect();
        let written = if values.is_empty() {
            Ok(())
        } else {
            inner
                .storage
                .write_values_and_offset(&values, inner.next_offset)
        };
        let loaded = load(inner, &loads);
        st = lock(&inner.state);
        let mut failed = None;
        for (id, result) in loaded {
            let Some(d) = st.domains.get_mut(&id) else {
                continue;
            };
            match result {
                Ok(stored) => d.loaded(stored, inner.options.baseline),
                Err(e) if e.is_retryable() => failed = Some(e.to_string()),
                Err(e) => {
                    // This domain's stored state is unreadable: refuse it, alone.
                    tracing::error!(domain = id, error = %e, "version domain unreadable");
                    d.phase = Phase::Broken;
                    d.broken = Some(format!("version domain {id} cannot be read: {e}"));
                }
            }
        }
        for &(id, end) in &plans {
            if let Some(d) = st.domains.get_mut(&id) {
                d.reserved(end, written.is_ok());
            }
        }
        if !values.is_empty() {
            match &written {
                Ok(()) => st.window_writes += 1,
                Err(e) => failed = Some(e.to_string()),
            }
        }
        inner.progress.notify_all();
        match failed {
            None => {
                backoff.reset();
                st.failure = None;
            }
            Some(e) => {
                st.storage_errors += 1;
                if st.failure.is_none() {
                    tracing::warn!(error = %e, "version authority: storage failed; retrying");
                }
                st.failure = Some(e);
                // Waits out the backoff (woken early only to close).
                let delay = backoff.next_delay();
                st = inner
                    .wake
                    .wait_timeout_while(st, delay, |s| !s.closing)
                    .map(|(g, _)| g)
                    .unwrap_or_else(|e| e.into_inner().0);
            }
        }
    }
}

/// The domains to load and the windows to write now (marked as being written).
fn collect<S: SeqStorage>(
    inner: &Inner<S>,
    st: &mut State,
) -> (Vec<DomainId>, Vec<(DomainId, u64)>) {
    let now = Instant::now();
    let now_micros = inner.options.clock.now_micros();
    let mut loads = Vec::new();
    let mut plans = Vec::new();
    for (&id, d) in st.domains.iter_mut() {
        match d.phase {
            Phase::Loading if loads.len() < LOADS_PER_PASS => loads.push(id),
            Phase::Loading | Phase::Broken => {}
            Phase::Ready => {
                if d.wants_reserve(now_micros, now)
                    && let Some(end) = d.plan(now_micros, now)
                {
                    plans.push((id, end));
                }
            }
        }
    }
    (loads, plans)
}

/// Reads the stored bound of each domain in `loads`.
fn load<S: SeqStorage>(
    inner: &Inner<S>,
    loads: &[DomainId],
) -> Vec<(DomainId, Result<u64, StorageError>)> {
    loads
        .iter()
        .map(|&id| {
            let read = inner.storage.read_numbers(WsId(id), &[BOUND_SEQ]);
            let bound = read.and_then(|v| {
                v.first().map(|n| n.0).ok_or_else(|| {
                    StorageError::permanent("the version store answered a read with no value")
                })
            });
            (id, bound)
        })
        .collect()
}
