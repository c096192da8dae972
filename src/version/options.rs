//! [`VersionOptions`]: how a [`super::VersionAuthority`] starts and paces its windows.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};
use crate::options::RetryPolicy;

/// How commit versions advance.
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum VersionClock {
    /// By one per commit: `commit_version = last_commit_version + 1` (the default).
    #[default]
    Counter,
    /// By one per commit and at least to the wall clock in microseconds since the Unix epoch:
    /// `commit_version = max(last_commit_version + 1, now_µs)`. Versions then also tell time,
    /// and never go back when the wall clock does (they keep counting from the last one).
    Micros,
    /// [`Micros`](Self::Micros) read from another clock (microseconds since the Unix epoch):
    /// for tests that step time back and forth.
    MicrosFrom(WallClock),
}

/// A source of microseconds since the Unix epoch, for [`VersionClock::MicrosFrom`].
#[derive(Clone)]
pub struct WallClock(Arc<dyn Fn() -> u64 + Send + Sync>);

impl WallClock {
    /// A clock that reads `now`.
    pub fn new(now: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        WallClock(Arc::new(now))
    }
}

impl fmt::Debug for WallClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WallClock")
    }
}

impl fmt::Debug for VersionClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl VersionClock {
    /// `counter` or `micros`, as `--version-clock` spells it.
    pub fn name(&self) -> &'static str {
        match self {
            VersionClock::Counter => "counter",
            VersionClock::Micros | VersionClock::MicrosFrom(_) => "micros",
        }
    }

    /// The wall clock in microseconds, or `None` for a counter.
    pub(crate) fn now_micros(&self) -> Option<u64> {
        match self {
            VersionClock::Counter => None,
            VersionClock::Micros => Some(
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
            ),
            VersionClock::MicrosFrom(c) => Some((c.0)()),
        }
    }
}

/// A check every request passes before it is answered, under the authority's lock: `Err`
/// (why) refuses it ([`Error::VersionsUnavailable`]). Cluster mode: "this node still holds
/// the Director's lease", so that an authority whose node was replaced answers nothing more,
/// even a request that waited for a window meanwhile.
#[derive(Clone)]
pub struct ServeGate(Arc<dyn Fn() -> std::result::Result<(), String> + Send + Sync>);

impl ServeGate {
    /// A gate that asks `check`.
    pub fn new(
        check: impl Fn() -> std::result::Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        ServeGate(Arc::new(check))
    }

    pub(crate) fn check(&self) -> std::result::Result<(), String> {
        (self.0)()
    }
}

impl fmt::Debug for ServeGate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ServeGate")
    }
}

/// Options of a [`super::VersionAuthority`]; every field has a documented default and is
/// checked by [`validate`](Self::validate) at open.
#[derive(Clone, Debug)]
pub struct VersionOptions {
    /// Every domain resumes above this version, even when storage holds less (a recovery
    /// baseline taken from elsewhere: the last version a restored backup or another system
    /// handed out). Default 0.
    pub baseline: u64,
    /// How versions advance. Default [`VersionClock::Counter`].
    pub clock: VersionClock,
    /// The epoch is at least this (cluster mode: the Director's epoch); otherwise it is one
    /// more than the stored one. Default 0.
    pub min_epoch: u64,
    /// Most domains served at once (each holds a few dozen bytes and a stored bound). A
    /// request for one more is refused. Default 65,536; at least 1.
    pub max_domains: usize,
    /// How long a blocking call ([`commit`](super::VersionAuthority::commit) and the others)
    /// waits for a durable window before it gives up with
    /// [`Error::VersionsUnavailable`]. Default 5 s; more than 0.
    pub wait: Duration,
    /// How failed storage calls are retried: at open (bounded by `max_attempts`), and by the
    /// background writer of windows (forever, at the policy's pace, until storage recovers
    /// or the authority closes). Default [`RetryPolicy::default`].
    pub retry: RetryPolicy,
    /// How long `close` tries to save the exact last versions (so that the next start skips
    /// nothing). Default 5 s.
    pub close_timeout: Duration,
    /// Checked before every answer; `None` (the default) answers while open.
    pub gate: Option<ServeGate>,
}

impl Default for VersionOptions {
    fn default() -> Self {
        VersionOptions {
            baseline: 0,
            clock: VersionClock::Counter,
            min_epoch: 0,
            max_domains: 65_536,
            wait: Duration::from_secs(5),
            retry: RetryPolicy::default(),
            close_timeout: Duration::from_secs(5),
            gate: None,
        }
    }
}

impl VersionOptions {
    /// Checks every field; the error names the field and the rule.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::InvalidOptions(m.to_string()));
        if self.max_domains == 0 {
            return bad("max_domains must be >= 1");
        }
        if self.wait.is_zero() {
            return bad("wait must be > 0");
        }
        if self.close_timeout.is_zero() {
            return bad("close_timeout must be > 0");
        }
        if self.baseline == u64::MAX {
            return bad("baseline must be below u64::MAX: versions above it must exist");
        }
        self.retry.validate()
    }
}
