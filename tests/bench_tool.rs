//! `seqd bench`, the real binary, against a real daemon on 127.0.0.1:0 (memory store, both
//! durability modes): it does the requests it was asked for, its numbers agree with the
//! server's, its verifier catches a server that hands out a number twice, and bad arguments
//! and unreachable servers end it with a clear error and a non-zero status.

#![cfg(feature = "daemon")]

mod common;

use std::sync::Arc;

use common::bench::{Fake, closed_port, fake_server, run};
use common::daemon::{TestServer, config};
use seqd::daemon::{DurabilityMode, MemoryBackend};
use serde_json::Value;

fn u(v: &Value, path: &str) -> u64 {
    v.pointer(path)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("{path} is not a number in {v:#}"))
}

fn f(v: &Value, path: &str) -> f64 {
    v.pointer(path)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("{path} is not a number in {v:#}"))
}

/// Every request answered with a number, no violation, percentiles in order.
fn assert_clean(v: &Value, requests: u64, count: u64) {
    assert_eq!(u(v, "/requests"), requests, "{v:#}");
    assert_eq!(u(v, "/ok"), requests, "{v:#}");
    assert_eq!(u(v, "/errors/total"), 0, "{v:#}");
    assert_eq!(v["failures"], Value::Array(vec![]), "{v:#}");
    assert_eq!(v["verification"]["checked"], Value::Bool(true));
    for what in ["duplicates", "overlaps", "non_increasing"] {
        assert_eq!(u(v, &format!("/verification/{what}")), 0, "{what}: {v:#}");
    }
    assert_eq!(u(v, "/verification/numbers"), requests * count, "{v:#}");
    let p: Vec<f64> = ["min", "p50", "p90", "p99", "p99_9", "max"]
        .iter()
        .map(|q| f(v, &format!("/latency_ms/{q}")))
        .collect();
    assert!(p[0] > 0.0, "{p:?}");
    assert!(
        p.windows(2).all(|w| w[0] <= w[1]),
        "percentiles out of order: {p:?}"
    );
    assert!(p[5] < 30_000.0, "{p:?}");
    assert!(f(v, "/requests_per_sec") > 0.0);
    let buckets: u64 = (v["latency_histogram"].as_array().expect("histogram").iter())
        .map(|b| u(b, "/count"))
        .sum();
    assert_eq!(buckets, requests, "{v:#}");
}

/// For every key the tool lists, the server's `PEEK` is one past the highest number the
/// tool received: the tool saw what the server handed out.
fn assert_matches_server(server: &TestServer, v: &Value) {
    let mut con = server.redis();
    let keys = v["verification"]["top_keys"].as_array().expect("top_keys");
    assert!(!keys.is_empty(), "{v:#}");
    for k in keys {
        let (ws, seq, max) = (u(k, "/ws"), u(k, "/seq"), u(k, "/max"));
        let peek: u64 = redis::cmd("PEEK")
            .arg(ws)
            .arg(seq)
            .query(&mut con)
            .expect("PEEK");
        assert_eq!(peek, max + 1, "workspace {ws} sequence {seq}: {v:#}");
    }
}

#[test]
fn pipelined_many_keys_count_above_one_both_modes() {
    for mode in [DurabilityMode::Lease, DurabilityMode::Sync] {
        let (server, _backend) = TestServer::memory(mode);
        let v = run(
            server.addr.port(),
            &[
                "--json",
                "-c",
                "8",
                "-P",
                "8",
                "-n",
                "4000",
                "--workspaces",
                "7",
                "--seqs",
                "3",
                "--count",
                "5",
            ],
        )
        .passed();
        assert_clean(&v, 4000, 5);
        assert_eq!(u(&v, "/verification/keys"), 21, "{mode:?}: {v:#}");
        assert_matches_server(&server, &v);
    }
}

#[test]
fn zipfian_workspaces_both_modes() {
    for mode in [DurabilityMode::Sync, DurabilityMode::Lease] {
        let (server, _backend) = TestServer::memory(mode);
        let v = run(
            server.addr.port(),
            &[
                "--json",
                "-c",
                "6",
                "-P",
                "4",
                "-n",
                "3000",
                "--workspaces",
                "200",
                "--distribution",
                "zipfian",
                "--count",
                "2",
                "--threads",
                "2",
            ],
        )
        .passed();
        assert_clean(&v, 3000, 2);
        assert_eq!(f(&v, "/zipf_theta"), 0.99);
        // Workspace 0 is the hottest.
        assert_eq!(u(&v, "/verification/top_keys/0/ws"), 0, "{mode:?}: {v:#}");
        assert_matches_server(&server, &v);
    }
}

#[test]
fn getseq_hands_out_one_gapless_run() {
    for mode in [DurabilityMode::Lease, DurabilityMode::Sync] {
        let (server, _backend) = TestServer::memory(mode);
        let v = run(
            server.addr.port(),
            &[
                "--json",
                "--command",
                "getseq",
                "-c",
                "10",
                "-P",
                "16",
                "-n",
                "5000",
            ],
        )
        .passed();
        assert_clean(&v, 5000, 1);
        // A fresh server, one key, nothing else running: exactly 1..=5000.
        let top = &v["verification"]["top_keys"][0];
        assert_eq!(
            (u(top, "/min"), u(top, "/max")),
            (1, 5000),
            "{mode:?}: {v:#}"
        );
        assert_matches_server(&server, &v);
    }
}

#[test]
fn duration_bounded_run_and_auth() {
    let backend = Arc::new(MemoryBackend::default());
    let server = TestServer::start(
        seqd::daemon::Config {
            auth_token: Some("s3cret".into()),
            ..config(DurabilityMode::Lease)
        },
        backend,
    );
    let port = server.addr.port();
    let v = run(
        port,
        &["--json", "--auth", "s3cret", "--duration", "0.3", "-c", "4"],
    )
    .passed();
    assert!(
        v["requested"].is_null() && f(&v, "/duration_secs") == 0.3,
        "{v:#}"
    );
    let done = u(&v, "/requests");
    assert!(done > 0, "{v:#}");
    assert_clean(&v, done, 1);

    let wrong = run(port, &["--auth", "nope", "-n", "10"]);
    assert_eq!(wrong.status.code(), Some(1), "{wrong:?}");
    assert!(wrong.stderr.contains("AUTH refused"), "{wrong:?}");
    let none = run(port, &["--json", "-n", "10"]);
    assert_eq!(none.status.code(), Some(1), "{none:?}");
    assert_eq!(u(&none.json(), "/errors/by_kind/NOAUTH"), 10, "{none:?}");
    assert!(none.stderr.contains("every request failed"), "{none:?}");
}

#[test]
fn the_verifier_catches_a_server_that_repeats_itself() {
    let addr = fake_server(Fake::Constant(b":1\r\n"));
    let r = run(
        addr.port(),
        &[
            "--json",
            "-c",
            "3",
            "-P",
            "4",
            "-n",
            "300",
            "--workspaces",
            "2",
        ],
    );
    assert_eq!(r.status.code(), Some(1), "{r:?}");
    let v = r.json();
    assert_eq!(u(&v, "/requests"), 300);
    // Two keys: all but the first reply per key are duplicates.
    assert_eq!(u(&v, "/verification/duplicates"), 298, "{v:#}");
    assert!(u(&v, "/verification/non_increasing") > 0, "{v:#}");
    assert!(
        r.stderr.contains("FAILED") && r.stderr.contains("duplicate"),
        "{r:?}"
    );

    // The table says it too.
    let table = run(addr.port(), &["-n", "20"]);
    assert_eq!(table.status.code(), Some(1));
    assert!(table.stdout.contains("handed out twice"), "{table:?}");
    assert!(table.stdout.contains("result      FAILED"), "{table:?}");
}

#[test]
fn count_above_one_overlaps_are_caught() {
    // `NEXT ws seq 3` answered `:1`, `:2`, ...: 1..=3 then 2..=4 overlap, yet each
    // connection sees increasing numbers.
    let addr = fake_server(Fake::Counter);
    let r = run(
        addr.port(),
        &["--json", "-c", "1", "-n", "5", "--count", "3"],
    );
    assert_eq!(r.status.code(), Some(1), "{r:?}");
    let v = r.json();
    assert_eq!(u(&v, "/verification/overlaps"), 4, "{v:#}");
    assert_eq!(u(&v, "/verification/duplicates"), 0, "{v:#}");
    assert_eq!(u(&v, "/verification/non_increasing"), 0, "{v:#}");
}

#[test]
fn bad_arguments_and_unreachable_servers_fail_clearly() {
    for (args, says) in [
        (&["-c", "0"][..], "--connections"),
        (&["-P", "0"][..], "--pipeline"),
        (&["-n", "10", "--duration", "1"][..], "cannot be used with"),
        (
            &["--distribution", "zipfian", "--zipf-theta", "1.5"][..],
            "--zipf-theta",
        ),
        (&["--command", "getseq", "--count", "2"][..], "--count"),
        (&["--count", "1000001"][..], "--count"),
        (&["--duration", "soon"][..], "not a number of seconds"),
    ] {
        let r = run(1, args);
        assert_eq!(r.status.code(), Some(2), "{args:?}: {r:?}");
        assert!(
            r.stderr.contains(says),
            "{args:?} should mention {says}: {r:?}"
        );
    }
    let r = run(closed_port(), &["-n", "10"]);
    assert_eq!(r.status.code(), Some(1), "{r:?}");
    assert!(r.stderr.contains("cannot connect to 127.0.0.1:"), "{r:?}");
}
