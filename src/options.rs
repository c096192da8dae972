//! [`Options`] for a sequencer and the flusher's [`RetryPolicy`], each default documented and
//! every value checked by [`Options::validate`] when the sequencer opens.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::{Clock, SystemClock};
use crate::error::{Error, Result};
use crate::types::SeqTypes;
use crate::util::Rng;

/// How a [`crate::Sequencer`] behaves. Build it with struct update syntax:
///
/// ```
/// use seqd::{Options, SeqTypes, WsKind, SeqId, Number};
/// let options = Options {
///     seq_types: SeqTypes::new().with(WsKind(1), SeqId(1), Number(1)),
///     cache_capacity: 10_000,
///     ..Options::default()
/// };
/// assert!(options.validate().is_ok());
/// ```
#[derive(Clone, Debug)]
pub struct Options {
    /// Which sequences each workspace kind has. Default: empty, which `open` rejects: there is
    /// nothing to hand out.
    pub seq_types: SeqTypes,

    /// Workspaces whose numbers stay resident in memory (least recently used are evicted; a
    /// miss costs one `read_numbers`). Default: 100,000. Must be ≥ 1.
    pub cache_capacity: usize,

    /// Backpressure bound: committed values not yet durable, counted per distinct
    /// (workspace, sequence). At or above it `start` answers `Busy` (or waits, with
    /// `start_timeout`), so memory stays bounded while storage is slow or down. It bounds
    /// memory, not throughput: the flusher writes whatever is pending in one batch, of any size.
    /// Default: 100,000. Must be ≥ 1.
    pub max_unflushed: usize,

    /// How long the flusher lets a batch grow: it writes the pending batch this long after
    /// the batch's first commit (or at once when a write in flight ends later than that).
    /// Default: 1 ms. Zero writes at once and lets batches grow only while a write is in
    /// flight (group commit), for the lowest latency. A [`FlushHandle`](crate::FlushHandle)
    /// may write the batch sooner. At most 10 s.
    pub flush_interval: Duration,

    /// Retries of failed flushes. Default: see [`RetryPolicy::default`].
    pub retry: RetryPolicy,

    /// How long `close` (and dropping the sequencer) may take to write what is left before it
    /// gives up and reports it. Default: 5 s. Must be ≤ 1 hour.
    pub close_timeout: Duration,

    /// The clock the background worker waits on. Default: [`SystemClock`]; tests use
    /// [`crate::ManualClock`] to run retry schedules instantly.
    pub clock: Arc<dyn Clock>,

    /// Called by the background worker after each step a waiter may care about: a durable
    /// write, a discard, the end of an actualization, the worker stopping. It lets an event
    /// loop learn of durability without a thread blocked in `wait_durable` (the daemon wakes
    /// its partition workers with it). Default: none.
    pub on_progress: Option<ProgressHook>,
}

/// A callback for [`Options::on_progress`]. It runs on the background worker's thread, so it
/// must be quick, must not block, and must not call into the sequencer.
#[derive(Clone)]
pub struct ProgressHook(Arc<dyn Fn() + Send + Sync>);

impl ProgressHook {
    /// Wraps `f`.
    pub fn new(f: impl Fn() + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }

    pub(crate) fn call(&self) {
        (self.0)()
    }
}

impl std::fmt::Debug for ProgressHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProgressHook")
    }
}

impl Default for Options {
    fn default() -> Self {
        Self {
            seq_types: SeqTypes::new(),
            cache_capacity: 100_000,
            max_unflushed: 100_000,
            flush_interval: Duration::from_millis(1),
            retry: RetryPolicy::default(),
            close_timeout: Duration::from_secs(5),
            clock: Arc::new(SystemClock),
            on_progress: None,
        }
    }
}

impl Options {
    /// Checks every field; the error names the field and the rule it breaks.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidOptions(m));
        self.seq_types.validate().map_err(Error::InvalidOptions)?;
        if self.cache_capacity == 0 {
            return bad("cache_capacity must be >= 1 workspace".into());
        }
        if self.cache_capacity > u32::MAX as usize - 1 {
            return bad(format!("cache_capacity must be < {}", u32::MAX));
        }
        if self.max_unflushed == 0 {
            return bad("max_unflushed must be >= 1 value".into());
        }
        if self.flush_interval > Duration::from_secs(10) {
            return bad(format!(
                "flush_interval is {:?}; at most 10s",
                self.flush_interval
            ));
        }
        if self.close_timeout > Duration::from_secs(3600) {
            return bad(format!(
                "close_timeout is {:?}; at most 1h",
                self.close_timeout
            ));
        }
        self.retry.validate()
    }
}

/// How the flusher (and the actualizer) retry a failed storage call: exponential backoff from
/// `base`, doubling up to `cap`, with jitter, for at most `max_attempts` attempts per batch.
///
/// After `max_attempts`, or at once on a permanent error, the flusher gives up on the batch
/// and the partition is actualized: unflushed state is dropped and rebuilt from storage and
/// the PLog. The actualizer itself retries without limit (until `close`), since nothing can be
/// served until it succeeds.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// The first delay. Default: 10 ms. Must be > 0.
    pub base: Duration,
    /// The largest delay. Default: 1 s. Must be ≥ `base` and ≤ 60 s.
    pub cap: Duration,
    /// Attempts per batch, the first included. Default: 10 (about 4.6 s of backoff at the
    /// defaults before giving up). Must be ≥ 1.
    pub max_attempts: u32,
    /// Fraction of each delay that is randomized, in [0, 1]: 0.5 means a delay d is drawn
    /// from [d/2, d]. Spreads retries of many partitions apart. Default: 0.5.
    pub jitter: f64,
    /// Seed of the jitter generator, for reproducible tests. Default: 0x5e9d.
    pub seed: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(10),
            cap: Duration::from_secs(1),
            max_attempts: 10,
            jitter: 0.5,
            seed: 0x5e9d,
        }
    }
}

impl RetryPolicy {
    /// Checks the policy's fields.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidOptions(m));
        if self.base.is_zero() {
            return bad("retry.base must be > 0".into());
        }
        if self.cap < self.base || self.cap > Duration::from_secs(60) {
            return bad(format!(
                "retry.cap is {:?}; it must be >= retry.base ({:?}) and <= 60s",
                self.cap, self.base
            ));
        }
        if self.max_attempts == 0 {
            return bad("retry.max_attempts must be >= 1".into());
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return bad(format!(
                "retry.jitter is {}; it must be within [0, 1]",
                self.jitter
            ));
        }
        Ok(())
    }
}

/// The delays of one retry sequence.
#[derive(Debug)]
pub(crate) struct Backoff {
    policy: RetryPolicy,
    rng: Rng,
    attempt: u32,
}

impl Backoff {
    pub(crate) fn new(policy: &RetryPolicy) -> Self {
        Self {
            rng: Rng::new(policy.seed),
            policy: policy.clone(),
            attempt: 0,
        }
    }

    /// Starts a new retry sequence (after a success).
    pub(crate) fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Attempts made in the current sequence.
    pub(crate) fn attempts(&self) -> u32 {
        self.attempt
    }

    /// Records a failed attempt; returns the delay before the next one.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let exp = self.attempt.min(30);
        self.attempt = self.attempt.saturating_add(1);
        let full = self
            .policy
            .base
            .saturating_mul(1u32 << exp)
            .min(self.policy.cap);
        let jitter = full.mul_f64(self.policy.jitter * self.rng.next_f64());
        full.saturating_sub(jitter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Number, SeqId, WsKind};

    fn valid() -> Options {
        Options {
            seq_types: SeqTypes::new().with(WsKind(1), SeqId(1), Number(1)),
            ..Options::default()
        }
    }

    #[test]
    fn defaults_need_seq_types() {
        assert!(matches!(
            Options::default().validate(),
            Err(Error::InvalidOptions(_))
        ));
        valid().validate().unwrap();
    }

    #[test]
    fn every_bad_field_is_named() {
        let cases: Vec<(Options, &str)> = vec![
            (
                Options {
                    cache_capacity: 0,
                    ..valid()
                },
                "cache_capacity",
            ),
            (
                Options {
                    max_unflushed: 0,
                    ..valid()
                },
                "max_unflushed",
            ),
            (
                Options {
                    flush_interval: Duration::from_secs(11),
                    ..valid()
                },
                "flush_interval",
            ),
            (
                Options {
                    close_timeout: Duration::from_secs(7200),
                    ..valid()
                },
                "close_timeout",
            ),
            (
                Options {
                    retry: RetryPolicy {
                        base: Duration::ZERO,
                        ..RetryPolicy::default()
                    },
                    ..valid()
                },
                "retry.base",
            ),
            (
                Options {
                    retry: RetryPolicy {
                        cap: Duration::from_millis(1),
                        ..RetryPolicy::default()
                    },
                    ..valid()
                },
                "retry.cap",
            ),
            (
                Options {
                    retry: RetryPolicy {
                        max_attempts: 0,
                        ..RetryPolicy::default()
                    },
                    ..valid()
                },
                "retry.max_attempts",
            ),
            (
                Options {
                    retry: RetryPolicy {
                        jitter: f64::NAN,
                        ..RetryPolicy::default()
                    },
                    ..valid()
                },
                "retry.jitter",
            ),
        ];
        for (o, field) in cases {
            let msg = o.validate().unwrap_err().to_string();
            assert!(msg.contains(field), "{msg} should name {field}");
        }
    }

    #[test]
    fn backoff_doubles_to_cap_with_bounded_jitter() {
        let p = RetryPolicy {
            base: Duration::from_millis(10),
            cap: Duration::from_millis(80),
            jitter: 0.5,
            ..RetryPolicy::default()
        };
        let mut b = Backoff::new(&p);
        let full = [10, 20, 40, 80, 80, 80];
        for ms in full {
            let d = b.next_delay();
            let full = Duration::from_millis(ms);
            assert!(d <= full && d >= full / 2, "{d:?} vs {full:?}");
        }
        assert_eq!(b.attempts(), 6);
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(10));
        let mut none = Backoff::new(&RetryPolicy { jitter: 0.0, ..p });
        assert_eq!(none.next_delay(), Duration::from_millis(10));
    }
}
