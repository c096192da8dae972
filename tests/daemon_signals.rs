//! The real `seqd serve` binary and its signals: SIGTERM under load drains and exits 0
//! without reissuing (or, once the load stopped cleanly, skipping) a number, in both modes;
//! a second signal right after the first exits at once with status 130.
#![cfg(all(feature = "daemon", feature = "rocksdb"))]

mod common;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use common::load::{self, Acked};
use common::process::Daemon;

const KEYS: [(u64, u16); 4] = [(0, 0), (3, 1), (4, 0), (77, 65535)];
/// Connections get up to 5 s to finish (design/daemon.md), then the final flush.
const DRAIN_BOUND: Duration = Duration::from_secs(15);

#[test]
fn a_second_signal_exits_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(dir.path(), "sync", &[]);
    drop(d.ready());
    let stop = Arc::new(AtomicBool::new(false));
    let clients = load::start(&d.addr, &KEYS, 4, &stop);
    load::wait_until_served(&d);
    // Back to back, from one shell: the second lands while the first's drain is under way
    // (two of the same kind sent before the first is handled would be one, as for any Unix
    // signal — hence TERM then INT).
    d.signal(&["TERM", "INT"]);
    let (status, took) = d
        .wait_exit(DRAIN_BOUND)
        .expect("exit after a second signal");
    assert_eq!(status.code(), Some(130), "{status:?}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    let log = d.log().join("\n");
    assert!(log.contains("second signal"), "{log}");
    load::finish(&stop, clients);
}

/// Load on `d` until SIGTERM (`cut`: the load still running) or after the load stopped
/// cleanly; asserts exit 0 within the drain bound. What the clients saw.
fn stop_under_load(mut d: Daemon, cut: bool) -> load::Outcome {
    drop(d.ready());
    let stop = Arc::new(AtomicBool::new(false));
    let clients = load::start(&d.addr, &KEYS, 4, &stop);
    load::wait_until_served(&d);
    let outcome = if cut {
        d.signal(&["TERM"]);
        let exit = d.wait_exit(DRAIN_BOUND);
        let outcome = load::finish(&stop, clients);
        let (status, _) = exit.expect("exit within the drain bound");
        assert!(status.success(), "{status:?}");
        outcome
    } else {
        let outcome = load::finish(&stop, clients);
        d.signal(&["TERM"]);
        let (status, _) = d
            .wait_exit(DRAIN_BOUND)
            .expect("exit within the drain bound");
        assert!(status.success(), "{status:?}");
        outcome
    };
    assert_eq!(outcome.acked.len(), KEYS.len(), "the load ran: {outcome:?}");
    outcome
}

#[test]
fn sigterm_under_load_drains_and_reissues_nothing() {
    for mode in ["sync", "lease"] {
        let dir = tempfile::tempdir().unwrap();
        // SIGTERM while the clients hammer it: requests cut off without a reply may have
        // taken numbers, so a restart continues above everything acknowledged.
        let mut all: Acked = stop_under_load(Daemon::start(dir.path(), mode, &[]), true).acked;
        let d = Daemon::start(dir.path(), mode, &[]);
        for (key, max, next) in load::resume(&mut d.ready(), &mut all) {
            assert!(next > max, "{mode}: {key:?} reissued: {next} <= {max}");
        }
        // The load stopped cleanly first (every request answered): nothing is skipped.
        let out = stop_under_load(d, false);
        assert!(!out.cut_off && out.refused == 0, "{mode}: {out:?}");
        let mut acked = out.acked;
        let d = Daemon::start(dir.path(), mode, &[]);
        for (key, max, next) in load::resume(&mut d.ready(), &mut acked) {
            assert_eq!(next, max + 1, "{mode}: {key:?} after a clean stop");
        }
        d.terminate();
    }
}
