//! The authority against its guarantees, on `FaultyStorage` with crashes, failures and
//! restarts: commit versions chain and strictly increase per domain, forever; read versions
//! stay between the reported and the handed out, never going down; nothing below a baseline.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::storage::{FaultyStorage, MemoryStorage};

type Store = Arc<FaultyStorage<MemoryStorage>>;

fn store() -> Store {
    Arc::new(FaultyStorage::new(MemoryStorage::new()))
}

fn quick() -> VersionOptions {
    VersionOptions {
        wait: Duration::from_millis(300),
        retry: crate::options::RetryPolicy {
            base: Duration::from_millis(1),
            cap: Duration::from_millis(5),
            max_attempts: 3,
            ..Default::default()
        },
        close_timeout: Duration::from_millis(300),
        ..VersionOptions::default()
    }
}

/// What the versions handed out so far promise, per domain.
#[derive(Default)]
struct Model {
    /// The last commit version handed out, per domain (across every epoch).
    last: HashMap<u64, u64>,
    /// The largest reported commit version, per domain.
    reported: HashMap<u64, u64>,
    /// The largest read version answered, per domain.
    read: HashMap<u64, u64>,
    epoch: u64,
}

impl Model {
    fn opened(&mut self, a: &VersionAuthority<Store>) {
        assert!(a.epoch() > self.epoch, "epochs increase");
        self.epoch = a.epoch();
    }

    fn committed(&mut self, d: u64, c: Commit, first_of_epoch: bool) {
        let before = self.last.get(&d).copied().unwrap_or(0);
        assert!(c.version > c.last, "{c:?}");
        assert!(c.last >= before, "domain {d}: {c:?} chains below {before}");
        if !first_of_epoch {
            assert_eq!(c.last, before, "domain {d}: {c:?} must chain to {before}");
        }
        assert_eq!(c.epoch, self.epoch);
        self.last.insert(d, c.version);
    }

    /// A read version `v`, with the authority's last commit version (the baseline before
    /// the first commit of an epoch) read after it.
    fn read(&mut self, d: u64, v: u64, last_commit: u64) {
        let reported = self.reported.get(&d).copied().unwrap_or(0);
        let earlier = self.read.get(&d).copied().unwrap_or(0);
        assert!(
            v >= reported,
            "domain {d}: read {v} below reported {reported}"
        );
        assert!(
            v >= earlier,
            "domain {d}: read {v} went down from {earlier}"
        );
        assert!(
            v <= last_commit,
            "domain {d}: read {v} above the last commit {last_commit}"
        );
        self.read.insert(d, v);
    }
}

#[derive(Clone, Debug)]
enum Op {
    Commit(u64),
    Read(u64),
    /// Report the commit version `back` commits ago (0 = the last).
    Report(u64, u8),
    FailNext(u8),
    Crash,
    Close,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0u64..3).prop_map(Op::Commit),
        3 => (0u64..3).prop_map(Op::Read),
        3 => (0u64..3, 0u8..4).prop_map(|(d, b)| Op::Report(d, b)),
        1 => (1u8..4).prop_map(Op::FailNext),
        1 => Just(Op::Crash),
        1 => Just(Op::Close),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn versions_keep_their_guarantees_through_faults_crashes_and_restarts(
        ops in proptest::collection::vec(op(), 1..120),
        baseline in prop_oneof![Just(0u64), 1u64..5_000],
    ) {
        let storage = store();
        let options = VersionOptions { baseline, ..quick() };
        let mut model = Model::default();
        let mut history: HashMap<u64, Vec<u64>> = HashMap::new();
        let mut a = Some(VersionAuthority::open(Arc::clone(&storage), options.clone()).unwrap());
        model.opened(a.as_ref().unwrap());
        let mut fresh: std::collections::HashSet<u64> = (0..3).collect();
        for op in ops {
            let auth = a.as_ref().unwrap();
            match op {
                Op::Commit(d) => match auth.commit(d) {
                    Ok(c) => {
                        assert!(c.version > baseline, "{c:?} not above baseline {baseline}");
                        model.committed(d, c, fresh.remove(&d));
                        history.entry(d).or_default().push(c.version);
                    }
                    Err(e) => assert!(e.is_retryable(), "{e}"),
                },
                Op::Read(d) => if let Ok(v) = auth.read(d) {
                    let last_commit = auth.status(d).unwrap().last_commit;
                    model.read(d, v, last_commit);
                },
                Op::Report(d, back) => {
                    let h = history.get(&d).cloned().unwrap_or_default();
                    if let Some(&v) = h.iter().rev().nth(usize::from(back)) {
                        auth.report(d, v).unwrap();
                        let r = model.reported.entry(d).or_default();
                        *r = (*r).max(v);
                    }
                }
                Op::FailNext(n) => storage.fail_next(u64::from(n), true),
                Op::Crash | Op::Close => {
                    let old = a.take().unwrap();
                    if matches!(op, Op::Crash) {
                        storage.crash();
                        drop(old);
                        storage.restart();
                    } else {
                        let _ = old.close();
                    }
                    storage.heal();
                    let reopened = VersionAuthority::open(Arc::clone(&storage), options.clone()).unwrap();
                    model.opened(&reopened);
                    a = Some(reopened);
                    fresh = (0..3).collect();
                }
            }
        }
        // Every domain's versions strictly increase: no version was handed out twice.
        for (d, h) in &history {
            prop_assert!(h.windows(2).all(|w| w[0] < w[1]), "domain {d}: {h:?}");
        }
    }
}

#[test]
fn a_graceful_close_skips_nothing_and_a_crash_at_most_one_window() {
    let storage = store();
    let a = VersionAuthority::open(Arc::clone(&storage), quick()).unwrap();
    let first = a.commit(7).unwrap();
    assert_eq!(first.last, 0, "a new domain chains to 0");
    let mut last = first;
    for _ in 0..100 {
        last = a.commit(7).unwrap();
    }
    a.close().unwrap();
    let b = VersionAuthority::open(Arc::clone(&storage), quick()).unwrap();
    let next = b.commit(7).unwrap();
    assert_eq!(
        next.last, last.version,
        "chains to the last version before the stop"
    );
    assert_eq!(next.version, last.version + 1, "nothing skipped");
    assert_eq!(next.epoch, last.epoch + 1);
    // A crash: the handle is dropped without close.
    let mut before = next;
    for _ in 0..10 {
        before = b.commit(7).unwrap();
    }
    storage.crash();
    drop(b);
    storage.restart();
    let c = VersionAuthority::open(Arc::clone(&storage), quick()).unwrap();
    let after = c.commit(7).unwrap();
    assert!(after.last >= before.version, "never reissued");
    assert!(after.version - before.version <= domain::MAX_WINDOW + 1);
    assert_eq!(c.status(7).unwrap().baseline, after.last);
}

#[test]
fn the_baseline_flag_lifts_every_domain() {
    let storage = store();
    let options = VersionOptions {
        baseline: 1_000_000,
        ..quick()
    };
    let a = VersionAuthority::open(Arc::clone(&storage), options).unwrap();
    for d in [0, 5] {
        let c = a.commit(d).unwrap();
        assert_eq!((c.last, c.version), (1_000_000, 1_000_001));
        assert_eq!(a.read(d).unwrap(), 1_000_000);
    }
    a.close().unwrap();
    // A lower baseline later changes nothing: storage is above it.
    let b = VersionAuthority::open(storage, quick()).unwrap();
    assert_eq!(b.commit(5).unwrap().last, 1_000_001);
}

#[test]
fn reports_move_read_versions_up_only_within_what_was_handed_out() {
    let a = VersionAuthority::open(store(), quick()).unwrap();
    let v1 = a.commit(0).unwrap().version;
    let v2 = a.commit(0).unwrap().version;
    assert_eq!(a.read(0).unwrap(), 0);
    a.report(0, v2).unwrap();
    assert_eq!(a.read(0).unwrap(), v2);
    a.report(0, v1).unwrap();
    assert_eq!(a.read(0).unwrap(), v2, "an older report does not lower it");
    match a.report(0, v2 + 1) {
        Err(Error::VersionNotIssued {
            domain: 0,
            version,
            last,
        }) => assert_eq!((version, last), (v2 + 1, v2)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_unreadable_store_keeps_the_authority_down() {
    let storage = store();
    storage.fail_forever(true, false);
    match VersionAuthority::open(Arc::clone(&storage), quick()) {
        Err(Error::Storage(e)) => assert!(!e.is_retryable()),
        other => panic!("{other:?}"),
    }
    storage.fail_forever(true, true);
    assert!(VersionAuthority::open(Arc::clone(&storage), quick()).is_err());
}

#[test]
fn failing_storage_delays_commits_without_reissuing() {
    let storage = store();
    let a = VersionAuthority::open(Arc::clone(&storage), quick()).unwrap();
    let mut last = 0;
    // Use up the first window, then fail every write.
    storage.fail_forever(true, true);
    let mut refused = 0;
    for _ in 0..(domain::MAX_WINDOW as usize) {
        match a.commit(0) {
            Ok(c) => last = c.version,
            Err(Error::VersionsUnavailable(why)) => {
                assert!(why.contains("injected"), "{why}");
                refused += 1;
                break;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(refused, 1, "the window ran out while storage failed");
    assert!(a.failure().is_some());
    storage.heal();
    let c = a.commit(0).unwrap();
    assert_eq!(c.last, last, "the chain continues after the outage");
    assert!(a.stats().storage_errors > 0);
}

#[test]
fn micros_versions_follow_the_wall_clock_and_survive_it_going_back() {
    let t = Arc::new(AtomicU64::new(1_700_000_000_000_000));
    let clock = Arc::clone(&t);
    let options = VersionOptions {
        clock: VersionClock::MicrosFrom(WallClock::new(move || clock.load(Ordering::Relaxed))),
        ..quick()
    };
    let storage = store();
    let a = VersionAuthority::open(Arc::clone(&storage), options.clone()).unwrap();
    let c1 = a.commit(0).unwrap();
    assert!(c1.version >= 1_700_000_000_000_000);
    t.fetch_sub(10_000_000, Ordering::Relaxed); // the clock steps back 10 s
    let c2 = a.commit(0).unwrap();
    assert_eq!(c2.version, c1.version + 1);
    t.fetch_add(20_000_000, Ordering::Relaxed); // and 10 s past where it was
    let c3 = a.commit(0).unwrap();
    assert!(c3.version >= 1_700_000_010_000_000, "{c3:?}");
    a.close().unwrap();
    t.fetch_sub(60_000_000, Ordering::Relaxed); // restarted with a clock a minute behind
    let b = VersionAuthority::open(storage, options).unwrap();
    assert_eq!(b.commit(0).unwrap().last, c3.version);
}

#[test]
fn domains_are_bounded_and_independent() {
    let options = VersionOptions {
        max_domains: 3,
        ..quick()
    };
    let a = VersionAuthority::open(store(), options).unwrap();
    assert_eq!(a.commit(1).unwrap().version, 1);
    assert_eq!(a.commit(2).unwrap().version, 1);
    assert_eq!(a.commit(1).unwrap().version, 2);
    match a.commit(3) {
        Err(Error::InvalidArgument(m)) => assert!(m.contains("3 version domains"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn concurrent_committers_never_share_a_version() {
    let a = Arc::new(VersionAuthority::open(store(), quick()).unwrap());
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let a = Arc::clone(&a);
            std::thread::spawn(move || {
                (0..20_000)
                    .map(|_| a.commit(0).unwrap().version)
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in threads {
        let mine = t.join().unwrap();
        assert!(mine.windows(2).all(|w| w[0] < w[1]));
        all.extend(mine);
    }
    all.sort_unstable();
    let n = all.len();
    all.dedup();
    assert_eq!(all.len(), n, "a version was handed out twice");
    assert_eq!(
        *all.last().unwrap(),
        n as u64,
        "dense: a counter skips nothing"
    );
}

#[test]
fn options_are_validated() {
    for bad in [
        VersionOptions {
            max_domains: 0,
            ..VersionOptions::default()
        },
        VersionOptions {
            wait: Duration::ZERO,
            ..VersionOptions::default()
        },
        VersionOptions {
            baseline: u64::MAX,
            ..VersionOptions::default()
        },
    ] {
        assert!(matches!(
            VersionAuthority::open(store(), bad),
            Err(Error::InvalidOptions(_))
        ));
    }
}

#[test]
fn a_closed_gate_refuses_every_request_until_it_opens() {
    let open = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let flag = Arc::clone(&open);
    let options = VersionOptions {
        gate: Some(ServeGate::new(move || {
            if flag.load(Ordering::Relaxed) {
                Ok(())
            } else {
                Err("deposed".into())
            }
        })),
        ..quick()
    };
    let a = VersionAuthority::open(store(), options).unwrap();
    let c = a.commit(0).unwrap();
    open.store(false, Ordering::Relaxed);
    for r in [
        a.try_commit(0).map(|_| ()),
        a.try_read(0).map(|_| ()),
        a.try_report(0, c.version).map(|_| ()),
    ] {
        assert!(
            matches!(r, Err(Error::VersionsUnavailable(ref m)) if m == "deposed"),
            "{r:?}"
        );
    }
    open.store(true, Ordering::Relaxed);
    assert_eq!(a.commit(0).unwrap().last, c.version);
}

#[test]
fn a_malformed_domain_is_refused_alone() {
    let storage = store();
    // A bound that does not decode: the memory store cannot hold one, so fail its read
    // permanently instead (what a malformed value is reported as).
    let a = VersionAuthority::open(Arc::clone(&storage), quick()).unwrap();
    storage.fail_next(1, false);
    match a.commit(4) {
        Err(Error::Storage(e)) => assert!(e.message().contains("domain 4"), "{e}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(a.commit(0).unwrap().version, 1, "other domains go on");
}
