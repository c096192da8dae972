//! The daemon's version authority (`VERSION ...`, `/v1/versions/...`; SPEC §6): where the
//! [`VersionAuthority`] of this node is in its life, and the answers to its requests.
//!
//! On a single node the authority runs on the backend's version storage, opened at start by
//! a task that retries (logging why) until it succeeds or the server stops: until then
//! requests get `-BUSY` and `/readyz` answers 503 — never versions from a guessed baseline.
//! In a cluster the Director's node runs it (`daemon/cluster`), and the other nodes forward.
//! Connections read the state without a lock ([`ArcSwap`]); the authority's non-blocking
//! calls answer in place, and a request that must wait for a window goes to the blocking
//! pool with the rest of its read's version requests, in order.

mod answer;
pub(crate) mod http;

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::watch;

pub(crate) use super::command::VersionSub as VersionReq;
use super::config::{Config, VersionClockKind};
use crate::storage::SeqStorage;
use crate::version::{VersionAuthority, VersionClock, VersionOptions};
pub(crate) use answer::{VersionReply, write_reply};

/// The authority on this node's storage.
pub(crate) type Local = VersionAuthority<Arc<dyn SeqStorage>>;

/// How long a failed start waits before the next attempt.
const RETRY_START: Duration = Duration::from_secs(2);

/// Where the version authority is, as this node sees it.
pub(crate) enum Authority {
    /// This node keeps none (a backend without version storage).
    Unavailable,
    /// Being opened here; the last attempt's failure, if one failed.
    Starting { failure: Option<String> },
    /// Serving here, opened for `term`: its own epoch on a single node, the Director's epoch
    /// in a cluster (the authority's epoch may be larger after a failed start).
    Serving { authority: Arc<Local>, term: u64 },
    /// Cluster mode: on the Director's node, which this one forwards to.
    Elsewhere,
    /// Closed (the server is stopping, or this node lost the Director's role).
    Stopped,
}

/// The version authority's state on this node, shared by connections and HTTP.
pub(crate) struct Versions {
    state: ArcSwap<Authority>,
    options: VersionOptions,
}

impl Versions {
    /// The state before anything started: `Starting` when this node will run it, else
    /// `Unavailable` or (cluster mode) `Elsewhere`.
    pub(crate) fn new(config: &Config, initial: Authority) -> Self {
        Versions {
            state: ArcSwap::from_pointee(initial),
            options: options(config),
        }
    }

    /// The options an authority of this node opens with.
    pub(crate) fn options(&self) -> &VersionOptions {
        &self.options
    }

    /// Whether it was closed (the server is stopping): it never starts again.
    pub(crate) fn is_stopped(&self) -> bool {
        matches!(&**self.state.load(), Authority::Stopped)
    }

    /// The term of the authority serving here, if one does.
    pub(crate) fn serving_term(&self) -> Option<u64> {
        match &**self.state.load() {
            Authority::Serving { term, .. } => Some(*term),
            _ => None,
        }
    }

    /// The current state, to compare against in [`swap_if`](Self::swap_if).
    pub(crate) fn current(&self) -> Arc<Authority> {
        self.state.load_full()
    }

    /// Moves to `next`; returns what it replaced (hand it to [`release`]).
    pub(crate) fn set(&self, next: Authority) -> Arc<Authority> {
        self.state.swap(Arc::new(next))
    }

    /// Moves to `next` only if the state is still `current`; true if it did.
    pub(crate) fn swap_if(&self, current: &Arc<Authority>, next: Authority) -> bool {
        let previous = self.state.compare_and_swap(current, Arc::new(next));
        Arc::ptr_eq(&previous, current)
    }

    /// `INFO versions`.
    pub(crate) fn info(&self, f: &mut crate::daemon::info::Field<'_>) {
        let state = self.state.load();
        let name = match &**state {
            Authority::Unavailable => "unavailable",
            Authority::Starting { .. } => "starting",
            Authority::Serving { .. } => "serving",
            Authority::Elsewhere => "elsewhere",
            Authority::Stopped => "stopped",
        };
        f("version_authority", &name);
        f("version_clock", &self.options.clock.name());
        f("version_baseline", &self.options.baseline);
        match &**state {
            Authority::Serving { authority: a, .. } => {
                let s = a.stats();
                f("version_epoch", &a.epoch());
                f("version_domains", &s.domains);
                f("version_commits", &s.commits);
                f("version_reads", &s.reads);
                f("version_reports", &s.reports);
                f("version_window_writes", &s.window_writes);
                f("version_storage_errors", &s.storage_errors);
                f("version_waits", &s.waits);
                if let Ok(crate::version::Attempt::Done(d0)) = a.try_status(0) {
                    f("version_last_commit", &d0.last_commit);
                    f("version_read_version", &d0.read_version);
                    f("version_durable_bound", &d0.durable_bound);
                }
            }
            Authority::Starting { failure: Some(why) } => f("version_failure", &why),
            _ => {}
        }
    }

    /// The authority's series for `/metrics`.
    pub(crate) fn series(&self, out: &mut crate::daemon::metrics::NodeSeries) {
        let state = self.state.load();
        let serving = matches!(&**state, Authority::Serving { .. });
        out.gauges.push((
            "seqd_version_serving",
            "1 while this node serves the version authority",
            i64::from(serving),
        ));
        if let Authority::Serving { authority: a, .. } = &**state {
            let s = a.stats();
            out.gauges.push((
                "seqd_version_epoch",
                "The version authority's epoch",
                i64::try_from(a.epoch()).unwrap_or(i64::MAX),
            ));
            out.counters.extend([
                (
                    "seqd_version_commits",
                    "Commit versions handed out",
                    s.commits,
                ),
                ("seqd_version_reads", "Read versions answered", s.reads),
                ("seqd_version_reports", "Commit reports accepted", s.reports),
                (
                    "seqd_version_window_writes",
                    "Durable version windows written",
                    s.window_writes,
                ),
                (
                    "seqd_version_storage_errors",
                    "Failed storage calls of the version authority",
                    s.storage_errors,
                ),
                (
                    "seqd_version_waits",
                    "Version requests that waited for a durable window",
                    s.waits,
                ),
            ]);
        }
    }

    /// Why `/readyz` must answer 503, if it must.
    pub(crate) fn not_ready(&self) -> Option<String> {
        match &**self.state.load() {
            Authority::Starting { failure: None } => {
                Some("the version authority is starting".into())
            }
            Authority::Starting { failure: Some(why) } => {
                Some(format!("the version authority cannot start: {why}"))
            }
            _ => None,
        }
    }

    /// Opens the authority on `storage`, retrying every [`RETRY_START`] until it opens or
    /// `stop` is set. Run as a task the server owns.
    pub(crate) async fn start(
        self: Arc<Self>,
        storage: Arc<dyn SeqStorage>,
        mut stop: watch::Receiver<bool>,
    ) {
        loop {
            let s = Arc::clone(&storage);
            let options = self.options.clone();
            let opened = tokio::task::spawn_blocking(move || Local::open(s, options)).await;
            let failure = match opened {
                Ok(Ok(authority)) => {
                    let term = authority.epoch();
                    let authority = Arc::new(authority);
                    release(self.set(Authority::Serving { authority, term }));
                    if *stop.borrow() {
                        self.close().await;
                    }
                    return;
                }
                Ok(Err(e)) => e.to_string(),
                Err(e) => format!("opening it panicked: {e}"),
            };
            tracing::error!(
                error = %failure,
                "the version authority cannot start (its stored state is unreadable); \
                 VERSION requests get -BUSY and /readyz 503 until it does; retrying"
            );
            release(self.set(Authority::Starting {
                failure: Some(failure),
            }));
            tokio::select! {
                () = tokio::time::sleep(RETRY_START) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }

    /// Stops serving and, if this node served, saves the exact last versions (so the next
    /// start skips nothing).
    pub(crate) async fn close(&self) {
        let previous = self.set(Authority::Stopped);
        if let Authority::Serving { authority, .. } = &*previous {
            let authority = Arc::clone(authority);
            drop(previous);
            let closed = tokio::task::spawn_blocking(move || authority.close()).await;
            match closed {
                Ok(Ok(())) => tracing::info!("version authority closed; nothing skipped"),
                Ok(Err(e)) => tracing::warn!(
                    error = %e,
                    "the version authority could not save its last versions; the next start \
                     skips at most one window per domain"
                ),
                Err(e) => tracing::warn!(error = %e, "closing the version authority panicked"),
            }
        }
    }
}

/// Drops `x` where dropping may block: stopping an authority joins its reserver thread, which
/// may be waiting on storage (or on the etcd client's thread). The last holder hands it to
/// the blocking pool of the runtime it runs on; others just let go of theirs.
pub(crate) fn release<T: Send + Sync + 'static>(x: Arc<T>) {
    if Arc::strong_count(&x) == 1
        && let Ok(runtime) = tokio::runtime::Handle::try_current()
    {
        runtime.spawn_blocking(move || drop(x));
    }
}

/// Answers `reqs` into `out`: here, or (cluster mode) by the node serving the authority.
/// `from_peer`: they came from another node, and are never forwarded again.
pub(crate) async fn answer_anywhere(
    shared: &super::Shared,
    reqs: &[VersionReq],
    out: &mut Vec<VersionReply>,
    from_peer: bool,
) {
    #[cfg(feature = "cluster")]
    if let Some(node) = &shared.cluster {
        return super::cluster::versions::answer(node, shared, reqs, out, from_peer).await;
    }
    let _ = from_peer;
    shared.versions.answer(reqs, out).await;
}

/// The authority's options from the server's flags.
fn options(config: &Config) -> VersionOptions {
    VersionOptions {
        baseline: config.version_baseline,
        clock: match config.version_clock {
            VersionClockKind::Counter => VersionClock::Counter,
            VersionClockKind::Micros => VersionClock::Micros,
        },
        wait: Duration::from_secs(2),
        ..VersionOptions::default()
    }
}
