//! The version authority through the daemon (SPEC §6): `VERSION COMMIT/READ/REPORT/STATUS`
//! over the protocol (RESP2 and RESP3, pipelined, in `MULTI`), the same over HTTP, `INFO
//! versions` and metrics; a store that cannot be read keeps the authority and `/readyz`
//! down until it can; the real binary across SIGTERM (nothing skipped), kill -9 (nothing
//! reissued) and `--version-baseline`, `--version-clock micros`.
#![cfg(feature = "daemon")]

mod common;

use common::daemon::{FaultyBackend, TestServer, config, json, metric};
use redis::Value;
use seqd::daemon::DurabilityMode;

/// `VERSION COMMIT [domain]` as (last, version, epoch).
fn commit(con: &mut redis::Connection, domain: u64) -> (u64, u64, u64) {
    redis::cmd("VERSION")
        .arg("COMMIT")
        .arg(domain)
        .query(con)
        .expect("VERSION COMMIT")
}

#[test]
fn commits_chain_reads_follow_reports_and_replies_come_in_order() {
    let backend = FaultyBackend::with_partitions(2);
    let server = TestServer::start(config(DurabilityMode::Lease), backend);
    let mut con = server.redis();
    let (last, v1, epoch) = commit(&mut con, 0);
    assert_eq!(
        (last, v1, epoch),
        (0, 1, 1),
        "a fresh authority's first commit"
    );
    let (last, v2, _) = commit(&mut con, 0);
    assert_eq!((last, v2), (v1, 2));
    // Without a domain: domain 0.
    let (last, v3, _): (u64, u64, u64) =
        redis::cmd("VERSION").arg("COMMIT").query(&mut con).unwrap();
    assert_eq!((last, v3), (v2, 3));
    // Domains are independent.
    assert_eq!(commit(&mut con, 9), (0, 1, epoch));
    // Pipelined: REPORT then READ in one read are answered in order.
    let mut pipe = redis::pipe();
    pipe.cmd("VERSION").arg("READ").arg(0);
    pipe.cmd("VERSION").arg("REPORT").arg(0).arg(v2);
    pipe.cmd("VERSION").arg("READ").arg(0);
    pipe.cmd("VERSION").arg("COMMIT").arg(0);
    pipe.cmd("PING");
    let (r0, ok, r1, c, pong): (u64, String, u64, (u64, u64, u64), String) =
        pipe.query(&mut con).unwrap();
    assert_eq!(
        (r0, ok.as_str(), r1, c.0, c.1, pong.as_str()),
        (0, "OK", v2, v3, 4, "PONG")
    );
    // A report of a version not handed out is refused and changes nothing.
    let err = redis::cmd("VERSION")
        .arg("REPORT")
        .arg(0)
        .arg(1_000)
        .query::<()>(&mut con)
        .unwrap_err();
    assert!(err.to_string().contains("not handed out"), "{err}");
    let read: u64 = redis::cmd("VERSION").arg("READ").query(&mut con).unwrap();
    assert_eq!(read, v2);
    // Bad input: clear errors, the connection stays usable.
    for (args, want) in [
        (vec!["VERSION"], "wrong number of arguments"),
        (vec!["VERSION", "NOPE"], "unknown subcommand"),
        (vec!["VERSION", "COMMIT", "-1"], "domain must be an integer"),
        (
            vec!["VERSION", "COMMIT", "1", "2"],
            "wrong number of arguments",
        ),
        (vec!["VERSION", "REPORT", "0"], "wrong number of arguments"),
        (
            vec!["VERSION", "REPORT", "0", "x"],
            "version must be an integer",
        ),
    ] {
        let err = redis::cmd(args[0])
            .arg(&args[1..])
            .query::<Value>(&mut con)
            .unwrap_err();
        assert!(err.to_string().contains(want), "{args:?}: {err}");
    }
    // In a transaction, in its place.
    let mut tx = redis::pipe();
    tx.atomic()
        .cmd("VERSION")
        .arg("COMMIT")
        .cmd("NEXT")
        .arg(1)
        .arg(1);
    let ((last, v, _), n): ((u64, u64, u64), u64) = tx.query(&mut con).unwrap();
    assert_eq!((last, v, n), (4, 5, 1));
    // STATUS: a flat array in RESP2.
    let status: Vec<Value> = redis::cmd("VERSION").arg("STATUS").query(&mut con).unwrap();
    let text = format!("{status:?}");
    for field in [
        "epoch",
        "baseline",
        "last_commit",
        "read_version",
        "durable_bound",
        "clock",
    ] {
        assert!(text.contains(field), "{field} in {text}");
    }
    // INFO and metrics.
    let info: String = redis::cmd("INFO").arg("versions").query(&mut con).unwrap();
    assert!(info.contains("version_authority:serving"), "{info}");
    assert!(info.contains("version_last_commit:5"), "{info}");
    let m = server.metrics();
    assert!(metric(&m, "seqd_version_commits_total") >= 6, "{m}");
    assert_eq!(metric(&m, "seqd_version_serving"), 1);
}

#[test]
fn resp3_status_is_a_map_and_http_answers_the_same_authority() {
    let backend = FaultyBackend::with_partitions(2);
    let server = TestServer::start(config(DurabilityMode::Sync), backend);
    let mut con = server.redis();
    let _: Value = redis::cmd("HELLO").arg(3).query(&mut con).unwrap();
    let (_, v, epoch) = commit(&mut con, 3);
    let status: Value = redis::cmd("VERSION")
        .arg("STATUS")
        .arg(3)
        .query(&mut con)
        .unwrap();
    let Value::Map(fields) = status else {
        panic!("a map in RESP3: {status:?}")
    };
    assert_eq!(fields.len(), 7);
    let http = reqwest::blocking::Client::new();
    let (code, body) = json(
        http.post(server.url("/v1/versions/3/commit"))
            .send()
            .unwrap(),
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["last_commit_version"], v);
    assert_eq!(body["commit_version"], v + 1);
    assert_eq!(body["epoch"], epoch);
    let (code, body) = json(
        http.post(server.url(&format!("/v1/versions/3/report?version={}", v + 1)))
            .send()
            .unwrap(),
    );
    assert_eq!((code.as_u16(), &body["reported"]), (200, &(v + 1).into()));
    let (_, body) = json(http.get(server.url("/v1/versions/3/read")).send().unwrap());
    assert_eq!(body["read_version"], v + 1);
    let (_, body) = json(http.get(server.url("/v1/versions/3")).send().unwrap());
    assert_eq!(body["last_commit"], v + 1);
    assert_eq!(body["clock"], "counter");
    for (path, code) in [
        ("/v1/versions/x/commit", 400),
        ("/v1/versions/3/report", 400),
        ("/v1/versions/3/report?version=abc", 400),
        ("/v1/versions/3/report?v=1", 400),
        ("/v1/versions/3/report?version=999999", 422),
    ] {
        let resp = http.post(server.url(path)).send().unwrap();
        let (got, body) = json(resp);
        assert_eq!(got.as_u16(), code, "{path}: {body}");
        assert!(body["error"].is_string(), "{path}: {body}");
    }
}

#[test]
fn an_unreadable_store_keeps_the_authority_and_readiness_down_until_it_reads() {
    let backend = FaultyBackend::with_partitions(2);
    backend.versions.fail_forever(true, false);
    let server = TestServer::start_unready(config(DurabilityMode::Lease), backend.clone());
    let http = reqwest::blocking::Client::new();
    common::eventually("the authority reports why it cannot start", || {
        let resp = http.get(server.url("/readyz")).send().unwrap();
        resp.status() == 503
            && resp
                .text()
                .unwrap()
                .contains("version authority cannot start")
    });
    let mut con = server.redis();
    let err = redis::cmd("VERSION")
        .arg("COMMIT")
        .query::<Value>(&mut con)
        .unwrap_err();
    assert!(err.to_string().contains("cannot start"), "{err}");
    // NEXT still works: only the authority is down.
    assert_eq!(common::daemon::next(&mut con, 1, 1, 1).unwrap(), 1);
    backend.versions.heal();
    server.wait_ready();
    assert_eq!(commit(&mut con, 0).0, 0);
}

#[cfg(feature = "rocksdb")]
mod process {
    use super::*;
    use common::process::Daemon;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    #[test]
    fn sigterm_skips_nothing_kill_9_reissues_nothing_and_the_baseline_lifts() {
        let dir = tempfile::tempdir().unwrap();
        let d = Daemon::start(dir.path(), "lease", &[]);
        let mut con = d.ready();
        let mut last = (0, 0, 0);
        for _ in 0..100 {
            last = commit(&mut con, 0);
        }
        drop(con);
        d.terminate();
        let d = Daemon::start(dir.path(), "lease", &[]);
        let mut con = d.ready();
        let next = commit(&mut con, 0);
        assert_eq!(next.0, last.1, "chains to the last version before SIGTERM");
        assert_eq!(next.1, last.1 + 1, "nothing skipped");
        assert!(next.2 > last.2, "a new epoch");
        let before = commit(&mut con, 0);
        drop(con);
        d.kill9();
        let d = Daemon::start(dir.path(), "lease", &["--version-baseline", "5000000000"]);
        let mut con = d.ready();
        let after = commit(&mut con, 0);
        assert!(after.0 >= before.1, "never reissued after kill -9");
        assert_eq!(
            after,
            (5_000_000_000, 5_000_000_001, before.2 + 1),
            "the baseline lifts"
        );
        drop(con);
        d.terminate();
        // A baseline below what storage holds changes nothing.
        let d = Daemon::start(dir.path(), "lease", &["--version-baseline", "7"]);
        let mut con = d.ready();
        assert_eq!(commit(&mut con, 0).0, 5_000_000_001);
        drop(con);
        d.terminate();
    }

    #[test]
    fn micros_versions_tell_time_and_keep_counting() {
        let dir = tempfile::tempdir().unwrap();
        let d = Daemon::start(dir.path(), "lease", &["--version-clock", "micros"]);
        let mut con = d.ready();
        let now = |()| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_micros() as u64
        };
        let before = now(());
        let (_, v1, _) = commit(&mut con, 0);
        let after = now(());
        assert!(
            v1 >= before && v1 <= after + 1_000,
            "{before} <= {v1} <= {after}"
        );
        let (last, v2, _) = commit(&mut con, 0);
        assert_eq!(last, v1);
        assert!(v2 > v1);
        std::thread::sleep(Duration::from_millis(20));
        let (_, v3, _) = commit(&mut con, 0);
        assert!(
            v3 >= v1 + 20_000,
            "versions follow the clock: {v1} then {v3}"
        );
        let status: Vec<Value> = redis::cmd("VERSION").arg("STATUS").query(&mut con).unwrap();
        assert!(format!("{status:?}").contains("micros"));
        drop(con);
        d.terminate();
        let bad = std::process::Command::new(env!("CARGO_BIN_EXE_seqd"))
            .args(["serve", "--version-clock", "hours"])
            .output()
            .unwrap();
        assert!(!bad.status.success());
        assert!(String::from_utf8_lossy(&bad.stderr).contains("version-clock"));
    }
}
