//! One domain's versions in memory: what was handed out, what is durable, and the window
//! reserved ahead. Pure state; the I/O is the reserver's (`reserver.rs`).
//!
//! **The window bound.** Between operations, `durable − last ≤ window ≤ MAX_WINDOW`
//! (counter clock; with the micros clock `last` is `max(last, now_µs)`, and the window is at
//! least [`MICROS_WINDOW`]). Storage holds at most `durable`, so a crash skips at most one
//! window; a graceful stop writes `last` itself and skips nothing.

use std::time::{Duration, Instant};

use super::Commit;

/// Smallest window (counter clock).
pub(crate) const MIN_WINDOW: u64 = 1024;
/// Largest window: the most versions a crash may skip per domain.
pub(crate) const MAX_WINDOW: u64 = 1 << 22;
/// Smallest window with the micros clock: two seconds of the clock's time, so that the
/// window is not used up by time alone between two writes.
pub(crate) const MICROS_WINDOW: u64 = 2_000_000;
/// A window used up faster than this doubles the next one.
const GROW_BELOW: Duration = Duration::from_millis(100);
/// A window that lasted longer than this halves the next one.
const SHRINK_ABOVE: Duration = Duration::from_secs(10);
/// With the micros clock, the writer keeps a domain's window ahead of the clock while it was
/// used within this long; after that the next commit waits for a write.
pub(crate) const KEEP_AHEAD: Duration = Duration::from_secs(10);

/// Where a domain is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Asked for; its stored bound is being read.
    Loading,
    /// Its baseline is known; versions up to `durable` may be handed out.
    Ready,
    /// Its stored bound cannot be read (malformed): every request for it is refused with
    /// the reason; other domains are unaffected.
    Broken,
}

/// One domain's state.
#[derive(Debug)]
pub(crate) struct Domain {
    pub(crate) phase: Phase,
    /// The recovery baseline: the first commit version of this epoch chains to it.
    pub(crate) baseline: u64,
    /// The last commit version handed out (the baseline before the first).
    pub(crate) last: u64,
    /// The read version: the largest reported commit version (at least the baseline).
    pub(crate) read: u64,
    /// Versions up to this are durably reserved: storage holds at least it.
    pub(crate) durable: u64,
    /// A reservation being written, up to this version.
    pub(crate) reserving: Option<u64>,
    /// A request found no room: the reserver must extend the window now.
    pub(crate) starved: bool,
    window: u64,
    last_reserve: Instant,
    pub(crate) last_used: Instant,
    /// Why the domain is [`Phase::Broken`].
    pub(crate) broken: Option<String>,
}

impl Domain {
    /// A domain about to be read from storage.
    pub(crate) fn loading(now: Instant) -> Self {
        Domain {
            phase: Phase::Loading,
            baseline: 0,
            last: 0,
            read: 0,
            durable: 0,
            reserving: None,
            starved: true,
            window: MIN_WINDOW,
            last_reserve: now,
            last_used: now,
            broken: None,
        }
    }

    /// The stored bound was read: the domain resumes above `max(stored, baseline)`. Nothing
    /// is reserved yet; the reserver reserves a window next.
    pub(crate) fn loaded(&mut self, stored: u64, baseline: u64) {
        let start = stored.max(baseline);
        self.phase = Phase::Ready;
        self.baseline = start;
        self.last = start;
        self.read = start;
        self.durable = start;
        self.starved = true;
    }

    /// The next commit version, if it may be handed out now: `Ok(None)` = wait for the
    /// window; `Err(())` = the domain's versions are exhausted.
    pub(crate) fn next(&self, now_micros: Option<u64>) -> Result<Option<u64>, ()> {
        if self.phase != Phase::Ready {
            return Ok(None);
        }
        let next = self.last.checked_add(1).ok_or(())?;
        let next = now_micros.map_or(next, |t| next.max(t));
        Ok((next <= self.durable).then_some(next))
    }

    /// Hands out `version` (from [`next`](Self::next)) in `epoch`.
    pub(crate) fn take(&mut self, version: u64, epoch: u64, now: Instant) -> Commit {
        let commit = Commit {
            last: self.last,
            version,
            epoch,
        };
        self.last = version;
        self.last_used = now;
        commit
    }

    /// What is left of the reserved window.
    fn left(&self, now_micros: Option<u64>) -> u64 {
        let from = now_micros.map_or(self.last, |t| self.last.max(t));
        self.durable.saturating_sub(from)
    }

    /// Whether the reserver should extend the window now: a request waits, or less than
    /// half a window is left (with the micros clock: of a domain in recent use).
    pub(crate) fn wants_reserve(&self, now_micros: Option<u64>, now: Instant) -> bool {
        if self.phase != Phase::Ready || self.reserving.is_some() {
            return false;
        }
        if self.starved {
            return true;
        }
        let recent =
            now_micros.is_none() || now.saturating_duration_since(self.last_used) < KEEP_AHEAD;
        recent && self.left(now_micros) < self.window / 2
    }

    /// The end of the next reservation, marked as being written: a window (adapted to the
    /// rate) beyond what was handed out. `None` when it would not extend the durable bound.
    pub(crate) fn plan(&mut self, now_micros: Option<u64>, now: Instant) -> Option<u64> {
        let lasted = now.saturating_duration_since(self.last_reserve);
        let floor = if now_micros.is_some() {
            MICROS_WINDOW
        } else {
            MIN_WINDOW
        };
        if lasted < GROW_BELOW {
            self.window = self.window.saturating_mul(2).min(MAX_WINDOW);
        } else if lasted > SHRINK_ABOVE {
            self.window /= 2;
        }
        self.window = self.window.clamp(floor, MAX_WINDOW.max(floor));
        self.last_reserve = now;
        let from = now_micros.map_or(self.last, |t| self.last.max(t));
        let end = from.saturating_add(self.window);
        self.starved = false;
        if end <= self.durable {
            return None;
        }
        self.reserving = Some(end);
        Some(end)
    }

    /// The reservation up to `end` is durable (`ok`), or failed and will be tried again.
    pub(crate) fn reserved(&mut self, end: u64, ok: bool) {
        if self.reserving == Some(end) {
            self.reserving = None;
        }
        if ok {
            self.durable = self.durable.max(end);
        } else {
            self.starved = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loaded_domain_chains_to_its_baseline_and_waits_for_a_window() {
        let now = Instant::now();
        let mut d = Domain::loading(now);
        assert_eq!(d.next(None), Ok(None), "loading: nothing yet");
        d.loaded(500, 700);
        assert_eq!((d.baseline, d.last, d.read), (700, 700, 700));
        assert_eq!(d.next(None), Ok(None), "no window reserved yet");
        assert!(d.wants_reserve(None, now));
        let end = d.plan(None, now).expect("a window");
        assert!(end > 700 && end - 700 <= MAX_WINDOW);
        assert!(!d.wants_reserve(None, now), "being written");
        d.reserved(end, true);
        let v = d.next(None).unwrap().unwrap();
        let c = d.take(v, 3, now);
        assert_eq!((c.last, c.version, c.epoch), (700, 701, 3));
    }

    #[test]
    fn the_window_bound_holds_and_windows_adapt() {
        let mut now = Instant::now();
        let mut d = Domain::loading(now);
        d.loaded(0, 0);
        for round in 0..200 {
            if d.wants_reserve(None, now)
                && let Some(end) = d.plan(None, now)
            {
                assert!(end - d.last <= MAX_WINDOW, "round {round}");
                d.reserved(end, true);
            }
            while let Ok(Some(v)) = d.next(None) {
                d.take(v, 1, now);
                if d.durable - d.last < d.window / 2 {
                    break;
                }
            }
            assert!(d.durable - d.last <= d.window, "the window bound");
            now += Duration::from_millis(1);
        }
        assert!(d.window > MIN_WINDOW, "a fast domain's window grew");
    }

    #[test]
    fn micros_versions_track_the_clock_and_never_go_back() {
        let now = Instant::now();
        let mut d = Domain::loading(now);
        d.loaded(10, 0);
        let t = 1_000_000_000u64;
        let end = d.plan(Some(t), now).unwrap();
        assert!(end >= t + MICROS_WINDOW);
        d.reserved(end, true);
        let v = d.next(Some(t)).unwrap().unwrap();
        assert_eq!(v, t);
        d.take(v, 1, now);
        // The clock steps back: versions keep counting.
        let back = d.next(Some(t - 500)).unwrap().unwrap();
        assert_eq!(back, t + 1);
        // Past the window: wait for the writer.
        assert_eq!(d.next(Some(end + 1)), Ok(None));
    }

    #[test]
    fn exhaustion_is_an_error_and_a_failed_write_starves() {
        let now = Instant::now();
        let mut d = Domain::loading(now);
        d.loaded(u64::MAX, 0);
        assert_eq!(d.next(None), Err(()));
        let mut e = Domain::loading(now);
        e.loaded(1, 0);
        let end = e.plan(None, now).unwrap();
        e.reserved(end, false);
        assert_eq!(e.durable, 1);
        assert!(e.wants_reserve(None, now));
    }
}
