//! [`FaultyStorage`]: wraps any storage and makes it fail, slow down or "crash" on command.

use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::{ReplayFn, SeqStorage, SeqValue, StorageError, StorageLatency};
use crate::types::{Number, PLogOffset, SeqId, WsId};
use crate::util::{Rng, lock};

/// Which storage operations injected faults apply to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct FaultOps {
    /// `read_numbers`.
    pub read_numbers: bool,
    /// `write_values_and_offset` and `write_values_and_offset_deferred`.
    pub writes: bool,
    /// `read_next_offset`.
    pub read_offset: bool,
    /// `replay`.
    pub replay: bool,
}

impl FaultOps {
    /// Every operation.
    pub const ALL: FaultOps = FaultOps {
        read_numbers: true,
        writes: true,
        read_offset: true,
        replay: true,
    };
    /// Only `write_values_and_offset`.
    pub const WRITES: FaultOps = FaultOps {
        read_numbers: false,
        writes: true,
        read_offset: false,
        replay: false,
    };
    /// Only the reads: `read_numbers`, `read_next_offset` and `replay`.
    pub const READS: FaultOps = FaultOps {
        read_numbers: true,
        writes: false,
        read_offset: true,
        replay: true,
    };
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    ReadNumbers,
    Write,
    ReadOffset,
    Replay,
}

/// A storage wrapper that injects failures, for tests of everything above storage.
///
/// Faults are configured through `&self` methods, so a test keeps an `Arc<FaultyStorage<_>>`
/// and changes the weather while a sequencer runs on it:
///
/// * [`fail_next`](Self::fail_next): the next N calls fail (retryable or not);
/// * [`fail_rate`](Self::fail_rate): each call fails with probability p, from a seeded generator;
/// * [`fail_forever`](Self::fail_forever): every call fails until switched off;
/// * [`set_latency`](Self::set_latency): every call first sleeps;
/// * [`ambiguous_writes`](Self::ambiguous_writes): the write lands but reports failure (a
///   timeout after commit);
/// * [`crash`](Self::crash) / [`crash_after_writes`](Self::crash_after_writes): the "process"
///   dies: nothing more reaches the inner storage until [`restart`](Self::restart), so whatever
///   the sequencer had not written is lost, as in a real crash.
///
/// [`limit_to`](Self::limit_to) restricts failures and latency (not crashes) to some operations.
pub struct FaultyStorage<S> {
    inner: S,
    faults: Mutex<Faults>,
    injected: AtomicU64,
    calls: AtomicU64,
}

struct Faults {
    ops: FaultOps,
    fail_next: u64,
    fail_next_retryable: bool,
    rate: f64,
    rng: Rng,
    forever: bool,
    forever_retryable: bool,
    latency: Duration,
    crashed: bool,
    writes_until_crash: Option<u64>,
    ambiguous: u64,
    reported_latency: Option<StorageLatency>,
}

impl<S: SeqStorage> FaultyStorage<S> {
    /// Wraps `inner` with no faults configured.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            faults: Mutex::new(Faults {
                ops: FaultOps::ALL,
                fail_next: 0,
                fail_next_retryable: true,
                rate: 0.0,
                rng: Rng::new(0),
                forever: false,
                forever_retryable: true,
                latency: Duration::ZERO,
                crashed: false,
                writes_until_crash: None,
                ambiguous: 0,
                reported_latency: None,
            }),
            injected: AtomicU64::new(0),
            calls: AtomicU64::new(0),
        }
    }

    /// Reports `latency` from [`SeqStorage::latency`] instead of the wrapped storage's: to
    /// stand in for a network store (with [`set_latency`](Self::set_latency) for its delay).
    /// Not cleared by [`heal`](Self::heal).
    pub fn report_latency(&self, latency: StorageLatency) {
        lock(&self.faults).reported_latency = Some(latency);
    }

    /// The wrapped storage.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The next `n` matching calls fail; `retryable` picks the kind of error.
    pub fn fail_next(&self, n: u64, retryable: bool) {
        let mut f = lock(&self.faults);
        f.fail_next = n;
        f.fail_next_retryable = retryable;
    }

    /// Each matching call fails (retryably) with probability `p`, drawn from a generator seeded
    /// with `seed`, so a failing run can be replayed. `p` is clamped to [0, 1].
    pub fn fail_rate(&self, p: f64, seed: u64) {
        let mut f = lock(&self.faults);
        f.rate = if p.is_nan() { 0.0 } else { p.clamp(0.0, 1.0) };
        f.rng = Rng::new(seed);
    }

    /// While on, every matching call fails; `retryable` picks the kind of error.
    pub fn fail_forever(&self, on: bool, retryable: bool) {
        let mut f = lock(&self.faults);
        f.forever = on;
        f.forever_retryable = retryable;
    }

    /// Every matching call (see [`limit_to`](Self::limit_to)) first sleeps `latency`.
    pub fn set_latency(&self, latency: Duration) {
        lock(&self.faults).latency = latency;
    }

    /// Restricts injected failures and latency to `ops` (crashes still apply to every call).
    pub fn limit_to(&self, ops: FaultOps) {
        lock(&self.faults).ops = ops;
    }

    /// The next `n` writes reach the inner storage and then report a retryable error.
    pub fn ambiguous_writes(&self, n: u64) {
        lock(&self.faults).ambiguous = n;
    }

    /// The process "dies" now: every later call fails without touching the inner storage.
    pub fn crash(&self) {
        lock(&self.faults).crashed = true;
    }

    /// `n` more writes land, then the process "dies" (see [`crash`](Self::crash)).
    pub fn crash_after_writes(&self, n: u64) {
        let mut f = lock(&self.faults);
        if n == 0 {
            f.crashed = true;
        } else {
            f.writes_until_crash = Some(n);
        }
    }

    /// Whether a crash has happened and not yet been [`restart`](Self::restart)ed.
    pub fn is_crashed(&self) -> bool {
        lock(&self.faults).crashed
    }

    /// A new "process" starts on the same storage: calls reach the inner storage again.
    /// Other faults stay as configured.
    pub fn restart(&self) {
        let mut f = lock(&self.faults);
        f.crashed = false;
        f.writes_until_crash = None;
    }

    /// Clears every fault and the crash.
    pub fn heal(&self) {
        let mut f = lock(&self.faults);
        f.fail_next = 0;
        f.rate = 0.0;
        f.forever = false;
        f.latency = Duration::ZERO;
        f.crashed = false;
        f.writes_until_crash = None;
        f.ambiguous = 0;
        f.ops = FaultOps::ALL;
    }

    /// How many failures have been injected so far.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::Relaxed)
    }

    /// How many calls have been made so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Decides the fate of one call before it reaches the inner storage.
    fn before(&self, op: Op) -> Result<(), StorageError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let (latency, verdict) = {
            let mut f = lock(&self.faults);
            let latency = if f.applies(op) {
                f.latency
            } else {
                Duration::ZERO
            };
            (latency, f.verdict(op))
        };
        if !latency.is_zero() {
            std::thread::sleep(latency);
        }
        if verdict.is_err() {
            self.injected.fetch_add(1, Ordering::Relaxed);
        }
        verdict
    }
}

impl Faults {
    fn applies(&self, op: Op) -> bool {
        match op {
            Op::ReadNumbers => self.ops.read_numbers,
            Op::Write => self.ops.writes,
            Op::ReadOffset => self.ops.read_offset,
            Op::Replay => self.ops.replay,
        }
    }

    fn verdict(&mut self, op: Op) -> Result<(), StorageError> {
        if self.crashed {
            return Err(StorageError::permanent("injected: the process has crashed"));
        }
        let applies = self.applies(op);
        if op == Op::Write
            && let Some(n) = self.writes_until_crash.as_mut()
        {
            if *n == 0 {
                self.crashed = true;
                self.writes_until_crash = None;
                return Err(StorageError::permanent("injected: the process has crashed"));
            }
            *n -= 1;
        }
        if !applies {
            return Ok(());
        }
        if self.forever {
            return Err(injected(
                self.forever_retryable,
                "failing until switched off",
            ));
        }
        if self.fail_next > 0 {
            self.fail_next -= 1;
            return Err(injected(self.fail_next_retryable, "fail-next countdown"));
        }
        if self.rate > 0.0 && self.rng.next_f64() < self.rate {
            return Err(injected(true, "seeded failure rate"));
        }
        Ok(())
    }
}

fn injected(retryable: bool, why: &str) -> StorageError {
    let msg = format!("injected: {why}");
    if retryable {
        StorageError::retryable(msg)
    } else {
        StorageError::permanent(msg)
    }
}

impl<S: SeqStorage> FaultyStorage<S> {
    /// A write of the inner storage, durable or deferred, with the faults of writes.
    fn write(
        &self,
        values: &[SeqValue],
        next_offset: PLogOffset,
        deferred: bool,
    ) -> Result<(), StorageError> {
        self.before(Op::Write)?;
        if deferred {
            self.inner
                .write_values_and_offset_deferred(values, next_offset)?;
        } else {
            self.inner.write_values_and_offset(values, next_offset)?;
        }
        let ambiguous = {
            let mut f = lock(&self.faults);
            let hit = f.ambiguous > 0;
            f.ambiguous = f.ambiguous.saturating_sub(1);
            hit
        };
        if ambiguous {
            self.injected.fetch_add(1, Ordering::Relaxed);
            return Err(StorageError::retryable(
                "injected: write landed but reported a timeout",
            ));
        }
        Ok(())
    }
}

impl<S: SeqStorage> SeqStorage for FaultyStorage<S> {
    fn read_numbers(&self, ws: WsId, seqs: &[SeqId]) -> Result<Vec<Number>, StorageError> {
        self.before(Op::ReadNumbers)?;
        self.inner.read_numbers(ws, seqs)
    }

    fn prefetch(&self, ws: WsId) {
        self.inner.prefetch(ws)
    }

    fn write_values_and_offset(
        &self,
        values: &[SeqValue],
        next_offset: PLogOffset,
    ) -> Result<(), StorageError> {
        self.write(values, next_offset, false)
    }

    /// Faults as for the durable write.
    fn write_values_and_offset_deferred(
        &self,
        values: &[SeqValue],
        next_offset: PLogOffset,
    ) -> Result<(), StorageError> {
        self.write(values, next_offset, true)
    }

    fn shared_log(&self) -> Option<usize> {
        self.inner.shared_log()
    }

    fn latency(&self) -> StorageLatency {
        lock(&self.faults)
            .reported_latency
            .unwrap_or_else(|| self.inner.latency())
    }

    fn read_next_offset(&self) -> Result<PLogOffset, StorageError> {
        self.before(Op::ReadOffset)?;
        self.inner.read_next_offset()
    }

    fn replay(&self, from: PLogOffset, apply: &mut ReplayFn<'_>) -> Result<(), StorageError> {
        self.before(Op::Replay)?;
        self.inner.replay(from, apply)
    }
}

impl<S: fmt::Debug> fmt::Debug for FaultyStorage<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultyStorage")
            .field("inner", &self.inner)
            .field("injected", &self.injected.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemoryStorage;

    fn write(s: &FaultyStorage<MemoryStorage>, off: u64) -> Result<(), StorageError> {
        s.write_values_and_offset(&[], PLogOffset(off))
    }

    #[test]
    fn reports_the_wrapped_latency_unless_told_otherwise() {
        let s = FaultyStorage::new(MemoryStorage::new());
        assert_eq!(s.latency(), StorageLatency::Local);
        s.report_latency(StorageLatency::Remote);
        s.heal();
        assert_eq!(s.latency(), StorageLatency::Remote, "heal keeps it");
    }

    #[test]
    fn fail_next_counts_down_and_keeps_kind() {
        let s = FaultyStorage::new(MemoryStorage::new());
        s.fail_next(2, false);
        assert!(!write(&s, 2).unwrap_err().is_retryable());
        assert!(write(&s, 2).is_err());
        write(&s, 2).unwrap();
        assert_eq!(s.injected(), 2);
        assert_eq!(s.inner().write_count(), 1);
    }

    #[test]
    fn limit_to_spares_other_ops() {
        let s = FaultyStorage::new(MemoryStorage::new());
        s.limit_to(FaultOps::WRITES);
        s.fail_forever(true, true);
        assert!(s.read_next_offset().is_ok());
        assert!(write(&s, 2).unwrap_err().is_retryable());
        s.fail_forever(false, true);
        write(&s, 2).unwrap();
    }

    #[test]
    fn crash_after_writes_drops_later_writes_until_restart() {
        let s = FaultyStorage::new(MemoryStorage::new());
        s.crash_after_writes(1);
        write(&s, 2).unwrap();
        assert!(write(&s, 3).is_err());
        assert!(s.is_crashed());
        assert!(s.read_next_offset().is_err());
        assert_eq!(s.inner().read_next_offset().unwrap(), PLogOffset(2));
        s.restart();
        assert_eq!(s.read_next_offset().unwrap(), PLogOffset(2));
    }

    #[test]
    fn ambiguous_write_lands_and_fails() {
        let s = FaultyStorage::new(MemoryStorage::new());
        s.ambiguous_writes(1);
        assert!(write(&s, 9).unwrap_err().is_retryable());
        assert_eq!(s.inner().read_next_offset().unwrap(), PLogOffset(9));
    }

    #[test]
    fn seeded_rate_is_reproducible() {
        let run = || {
            let s = FaultyStorage::new(MemoryStorage::new());
            s.fail_rate(0.5, 42);
            (0..64).map(|_| write(&s, 2).is_err()).collect::<Vec<_>>()
        };
        let a = run();
        assert_eq!(a, run());
        assert!(a.iter().any(|x| *x) && a.iter().any(|x| !*x));
    }
}
