//! Time, behind a trait so tests can run retry schedules without waiting for them.

use std::fmt::Debug;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::util::lock;

/// The source of time for a sequencer's background worker: backoff between retries and the
/// flush interval go through [`Clock::pause`].
pub trait Clock: Send + Sync + Debug + 'static {
    /// The current time.
    fn now(&self) -> Instant;

    /// Lets `d` pass. `wait` blocks for at most `d` and returns early when the worker is woken
    /// (new work, stop); a clock may call it or not. [`SystemClock`] waits; [`ManualClock`]
    /// advances its own time and returns at once.
    fn pause(&self, d: Duration, wait: &mut dyn FnMut(Duration));
}

/// Real time.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn pause(&self, d: Duration, wait: &mut dyn FnMut(Duration)) {
        wait(d)
    }
}

/// Time that only moves when told to, or when the worker pauses on it: a retry schedule of
/// seconds runs in microseconds, and tests can read what was slept.
#[derive(Debug)]
pub struct ManualClock {
    start: Instant,
    elapsed_ns: AtomicU64,
    pauses: Mutex<Vec<Duration>>,
}

impl Default for ManualClock {
    fn default() -> Self {
        Self {
            start: Instant::now(),
            elapsed_ns: AtomicU64::new(0),
            pauses: Mutex::new(Vec::new()),
        }
    }
}

impl ManualClock {
    /// A clock at an arbitrary fixed instant.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves time forward by `d`.
    pub fn advance(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.elapsed_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// Every pause taken so far, in order (bounded to the last 10,000).
    pub fn pauses(&self) -> Vec<Duration> {
        lock(&self.pauses).clone()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.start + Duration::from_nanos(self.elapsed_ns.load(Ordering::Relaxed))
    }

    fn pause(&self, d: Duration, _wait: &mut dyn FnMut(Duration)) {
        self.advance(d);
        let mut p = lock(&self.pauses);
        if p.len() >= 10_000 {
            p.remove(0);
        }
        p.push(d);
        drop(p);
        // Yield so a test thread polling for progress gets to run between retries.
        std::thread::yield_now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_advances_on_pause_without_waiting() {
        let c = ManualClock::new();
        let t0 = c.now();
        let real = Instant::now();
        c.pause(Duration::from_secs(60), &mut |_| panic!("must not wait"));
        assert_eq!(c.now() - t0, Duration::from_secs(60));
        assert!(real.elapsed() < Duration::from_secs(5));
        assert_eq!(c.pauses(), vec![Duration::from_secs(60)]);
    }

    #[test]
    fn system_clock_delegates_wait() {
        let mut waited = Duration::ZERO;
        SystemClock.pause(Duration::from_millis(3), &mut |d| waited = d);
        assert_eq!(waited, Duration::from_millis(3));
    }
}
