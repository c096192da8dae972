//! The daemon's durability modes and storage failures, in process (memory and
//! fault-injecting storage). The RocksDB and kill -9 versions are in `daemon_process.rs`.

#![cfg(feature = "daemon")]

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use common::daemon::{FaultyBackend, TestServer, config, metric, next};
use seqd::daemon::{Backend, DurabilityMode, MemoryBackend};
use seqd::storage::{FaultOps, SeqStorage};
use seqd::{PartitionId, SeqId, WsId};

fn stored(backend: &MemoryBackend, ws: u64, seq: u16) -> u64 {
    let p = PartitionId((ws % 2) as u16);
    backend
        .partition(p)
        .read_numbers(WsId(ws), &[SeqId(seq)])
        .unwrap()[0]
        .0
}

#[test]
fn an_acknowledged_number_is_already_durable() {
    for (mode, lease_floor) in [
        (DurabilityMode::Sync, 1024),
        (DurabilityMode::Lease, 1024),
        (DurabilityMode::Lease, 0),
    ] {
        let backend = Arc::new(MemoryBackend::default());
        let cfg = seqd::daemon::Config {
            lease_floor,
            ..config(mode)
        };
        let server = TestServer::start(cfg, backend.clone());
        let mut con = server.redis();
        for i in 0..300u64 {
            let (ws, seq, count) = (i % 7, (i % 3) as u16, 1 + i % 5);
            let first = next(&mut con, ws, seq, count).unwrap();
            let last = first + count - 1;
            // Lease mode may also answer below the resume floor, recorded before it served:
            // after a crash every sequence resumes at or above it.
            let floor = backend.resume_floor().unwrap().unwrap_or(0);
            assert!(
                stored(&backend, ws, seq) >= last
                    || (mode == DurabilityMode::Lease && last < floor),
                "{mode:?}: {last} acknowledged, neither stored nor below the resume floor {floor}"
            );
        }
        let want = (mode == DurabilityMode::Lease && lease_floor > 0).then_some(1 + lease_floor);
        let recorded = backend.resume_floor().unwrap();
        assert_eq!(recorded, want, "{mode:?} --lease-floor {lease_floor}");
        server.stop().unwrap();
        let recorded = backend.resume_floor().unwrap();
        assert_eq!(
            recorded, None,
            "a graceful stop of a first run forgets the floor"
        );
    }
}

#[test]
fn a_graceful_restart_skips_nothing() {
    for mode in [DurabilityMode::Sync, DurabilityMode::Lease] {
        let backend = Arc::new(MemoryBackend::default());
        let server = TestServer::start(config(mode), backend.clone());
        let mut con = server.redis();
        let mut expect = std::collections::HashMap::new();
        for i in 0..100u64 {
            let key = (i % 10, (i % 4) as u16);
            let first = next(&mut con, key.0, key.1, 3).unwrap();
            expect.insert(key, first + 3);
        }
        drop(con);
        server.stop().unwrap();
        let server = TestServer::start(config(mode), backend.clone());
        let mut con = server.redis();
        let mut got = 0;
        common::eventually("ready after restart", || {
            next(&mut con, 0, 0, 1).map(|n| got = n).is_ok()
        });
        assert_eq!(
            got,
            expect[&(0, 0)],
            "{mode:?}: resumes exactly where it stopped"
        );
        for (key, want) in &expect {
            if *key == (0, 0) {
                continue;
            }
            let peek: u64 = redis::cmd("PEEK")
                .arg(key.0)
                .arg(key.1)
                .query(&mut con)
                .unwrap();
            assert_eq!(peek, *want, "{mode:?} {key:?}");
            assert_eq!(
                next(&mut con, key.0, key.1, 1).unwrap(),
                *want,
                "{mode:?} {key:?}"
            );
        }
        server.stop().unwrap();
    }
}

fn get_text(http: &reqwest::blocking::Client, url: &str) -> String {
    http.get(url).send().unwrap().text().unwrap()
}

#[test]
fn storage_failure_answers_busy_and_never_reissues() {
    for mode in [DurabilityMode::Sync, DurabilityMode::Lease] {
        let backend = FaultyBackend::with_partitions(2);
        let server = TestServer::start(config(mode), backend.clone());
        let mut con = server.redis();
        let mut acked = HashSet::new();
        for _ in 0..50 {
            let n = next(&mut con, 4, 1, 1).unwrap();
            assert!(acked.insert(n));
        }
        // Partition 0 (workspace 4) loses its disk: writes fail until healed.
        let part = backend.part(0);
        part.limit_to(FaultOps::WRITES);
        part.fail_forever(true, true);
        let mut busy = 0;
        for _ in 0..200 {
            match next(&mut con, 4, 1, 1) {
                Ok(n) => assert!(acked.insert(n), "{mode:?}: {n} reissued"),
                Err(e) => {
                    assert_eq!(e.code(), Some("BUSY"), "{mode:?}: {e}");
                    busy += 1;
                    if busy > 3 {
                        break;
                    }
                }
            }
        }
        assert!(busy > 0, "{mode:?}: a failing disk must show as BUSY");
        // Other partitions keep working.
        assert!(next(&mut con, 5, 1, 1).is_ok());
        // Every BUSY is counted — those decided when answering and those that replaced a
        // number whose write failed — per partition and in the node's metric, and so is
        // every HTTP 503.
        let http = reqwest::blocking::Client::new();
        let resp = http
            .post(server.url("/v1/sequences/4/1/next"))
            .send()
            .unwrap();
        assert_eq!(resp.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
        let seen = busy + 1;
        let counted = server.status()["partitions"][0]["busy_replies"]
            .as_u64()
            .unwrap();
        assert!(
            counted >= seen,
            "{mode:?}: {seen} BUSY seen, {counted} counted"
        );
        let metrics = server.metrics();
        for series in [
            "seqd_busy_replies_total",
            "seqd_partition_busy_replies_total{partition=\"0\"}",
        ] {
            let counted = metric(&metrics, series);
            assert!(
                counted >= seen,
                "{mode:?}: {seen} BUSY seen, {series} {counted}"
            );
        }
        // The admin API tells the truth about it.
        let readyz = http.get(server.url("/readyz")).send().unwrap();
        assert_eq!(readyz.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
        let why = readyz.text().unwrap();
        assert!(why.contains("partition 0"), "{mode:?}: {why}");
        assert!(!why.contains("partition 1"), "{mode:?}: {why}");
        let status: serde_json::Value = serde_json::from_str(
            &http
                .get(server.url("/v1/status"))
                .send()
                .unwrap()
                .text()
                .unwrap(),
        )
        .unwrap();
        let p0 = &status["partitions"][0];
        assert_eq!(p0["ready"], false, "{mode:?}: {p0}");
        assert!(p0["flush_errors"].as_u64().unwrap() > 0, "{mode:?}: {p0}");
        assert!(p0["last_storage_error"].is_string(), "{mode:?}: {p0}");
        assert_eq!(status["partitions"][1]["ready"], true, "{mode:?}");
        let metrics = get_text(&http, &server.url("/metrics"));
        assert!(
            metrics.contains("seqd_partition_ready{partition=\"0\"} 0"),
            "{mode:?}: {metrics}"
        );
        assert!(metrics.contains("seqd_partition_ready{partition=\"1\"} 1"));
        part.fail_forever(false, true);
        let mut after = Vec::new();
        common::eventually("serving again after the disk heals", || {
            match next(&mut con, 4, 1, 1) {
                Ok(n) => {
                    after.push(n);
                    after.len() >= 20
                }
                Err(_) => false,
            }
        });
        for n in after {
            assert!(acked.insert(n), "{mode:?}: {n} reissued after recovery");
        }
        let max_before = backend.stored(0, 4, 1);
        assert!(max_before >= *acked.iter().max().unwrap());
        common::eventually("ready again", || {
            http.get(server.url("/readyz")).send().unwrap().status() == reqwest::StatusCode::OK
        });
        let metrics = get_text(&http, &server.url("/metrics"));
        assert!(metrics.contains("seqd_storage_failing{partition=\"0\"} 0"));
    }
}

/// Lease mode's resume floor: a sequence's first numbers go out while its disk fails (they
/// are below the floor recorded at start), and the actualization that discards their
/// reservations resumes every sequence of the partition at the floor, never below.
#[test]
fn numbers_under_the_resume_floor_survive_an_actualization() {
    let backend = FaultyBackend::keeping_floor(2);
    let server = TestServer::start(config(DurabilityMode::Lease), backend.clone());
    let floor = backend.resume_floor().unwrap();
    assert_eq!(
        floor,
        Some(1025),
        "recorded at start: --initial 1 + --lease-floor 1024"
    );
    let info: String = redis::cmd("INFO")
        .arg("leases")
        .query(&mut server.redis())
        .unwrap();
    for line in [
        "resume_floor:1025",
        "sequences_start_at:1",
        "lease_floor:1024",
    ] {
        assert!(info.contains(line), "{line} in {info}");
    }
    let mut con = server.redis();
    // Partition 0 (even workspaces) cannot write at all from now on.
    let part = backend.part(0);
    part.limit_to(FaultOps::WRITES);
    part.fail_forever(true, true);
    let mut acked = HashSet::new();
    for i in 0..30u64 {
        let n = next(&mut con, 4, 1, 1).expect("answered under the floor although the disk fails");
        assert_eq!(n, 1 + i);
        acked.insert(n);
    }
    assert_eq!(backend.stored(0, 4, 1), 0, "nothing of it reached storage");
    // Above the floor the lease waits for its own reservation, which cannot be written.
    let e = next(&mut con, 4, 2, 2000).unwrap_err();
    assert_eq!(e.code(), Some("BUSY"), "{e}");
    // The operator actualizes: the unwritten reservations are discarded.
    let http = reqwest::blocking::Client::new();
    let resp = http
        .post(server.url("/v1/partitions/0/actualize"))
        .send()
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    part.fail_forever(false, true);
    let mut after = 0;
    common::eventually("serving again after the disk heals", || {
        next(&mut con, 4, 1, 1).map(|n| after = n).is_ok()
    });
    assert!(
        after >= 1025,
        "{after} is below the floor: it may have been handed out before"
    );
    assert!(!acked.contains(&after));
    assert_eq!(
        next(&mut con, 6, 1, 1).unwrap(),
        1025,
        "a sequence never used resumes at the floor too"
    );
    assert_eq!(
        next(&mut con, 5, 1, 1).unwrap(),
        1,
        "the other partition lost nothing and starts where sequences start"
    );
    // A graceful stop keeps the floor: sequences whose numbers the actualization discarded
    // have nothing stored (the 2..=30 of (4, 1) before it are gone with it).
    drop(con);
    server.stop().unwrap();
    let kept = backend.resume_floor().unwrap();
    assert_eq!(kept, Some(1025));
    let server = TestServer::start(config(DurabilityMode::Lease), backend.clone());
    let mut con = server.redis();
    assert_eq!(next(&mut con, 8, 1, 1).unwrap(), 1025);
    assert_eq!(next(&mut con, 4, 1, 1).unwrap(), after + 1);
    assert_eq!(next(&mut con, 5, 1, 1).unwrap(), 2);
    drop(con);
    server.stop().unwrap();
}

#[test]
fn readiness_waits_for_recovery() {
    let backend = FaultyBackend::with_partitions(2);
    backend.part(1).limit_to(FaultOps::READS);
    backend.part(1).set_latency(Duration::from_millis(800));
    let server = TestServer::start_unready(config(DurabilityMode::Lease), backend.clone());
    let http = reqwest::blocking::Client::new();
    let status = http.get(server.url("/readyz")).send().unwrap().status();
    assert_eq!(status, reqwest::StatusCode::SERVICE_UNAVAILABLE);
    let mut con = server.redis();
    let e = next(&mut con, 1, 0, 1).unwrap_err();
    assert_eq!(e.code(), Some("BUSY"), "{e}");
    common::eventually("ready", || {
        http.get(server.url("/readyz")).send().unwrap().status() == reqwest::StatusCode::OK
    });
    backend.part(1).set_latency(Duration::ZERO);
    assert_eq!(next(&mut con, 1, 0, 1).unwrap(), 1);
}

/// Lease mode with `--max-leases 4`: what a graceful restart resumes from, per sequence, when
/// `sequences` sequences (half per partition) each took numbers in several rounds; and the
/// partitions' statuses before the stop.
fn restart_with_few_leases(sequences: u64) -> (Vec<(u64, u64)>, Vec<serde_json::Value>) {
    let backend = Arc::new(MemoryBackend::default());
    let cfg = || seqd::daemon::Config {
        max_leases: 4,
        ..config(DurabilityMode::Lease)
    };
    let server = TestServer::start(cfg(), backend.clone());
    let mut con = server.redis();
    let mut expect = vec![0; sequences as usize];
    for _ in 0..5 {
        for ws in 0..sequences {
            expect[ws as usize] = next(&mut con, ws, 3, 2).unwrap() + 2;
        }
    }
    let http = reqwest::blocking::Client::new();
    let status: serde_json::Value =
        serde_json::from_str(&get_text(&http, &server.url("/v1/status"))).unwrap();
    let parts = status["partitions"].as_array().unwrap().clone();
    drop(con);
    server.stop().unwrap();
    let server = TestServer::start(cfg(), backend);
    let mut con = server.redis();
    let resumed = (0..sequences)
        .map(|ws| (expect[ws as usize], next(&mut con, ws, 3, 1).unwrap()))
        .collect();
    (resumed, parts)
}

fn sum(parts: &[serde_json::Value], field: &str) -> u64 {
    parts.iter().map(|p| p[field].as_u64().unwrap()).sum()
}

#[test]
fn evicted_leases_are_parked_and_a_graceful_restart_skips_nothing() {
    // 6 sequences a partition: more than 4 leases, within 4 leases and 4 parked ranges.
    let (resumed, parts) = restart_with_few_leases(12);
    assert!(sum(&parts, "lease_evictions") > 0, "{parts:?}");
    assert_eq!(sum(&parts, "dropped_lease_ranges"), 0, "{parts:?}");
    for (ws, (want, got)) in resumed.into_iter().enumerate() {
        assert_eq!(got, want, "sequence (ws {ws}, 3) resumes exactly");
    }
}

#[test]
fn parked_ranges_beyond_the_bound_skip_at_most_one_window() {
    // 20 sequences a partition: beyond 4 leases and 4 parked ranges, the oldest give up theirs.
    let (resumed, parts) = restart_with_few_leases(40);
    let dropped = sum(&parts, "dropped_lease_ranges");
    assert!(dropped > 0, "{parts:?}");
    let mut skipped = 0;
    for (ws, (want, got)) in resumed.into_iter().enumerate() {
        assert!(got >= want, "sequence (ws {ws}, 3): {got} handed out again");
        assert!(
            got - want <= seqd::daemon::MAX_WINDOW,
            "ws {ws}: {want} -> {got}"
        );
        skipped += u64::from(got > want);
    }
    assert!(
        skipped > 0 && skipped <= dropped,
        "{skipped} skipped, {dropped} dropped"
    );
}
