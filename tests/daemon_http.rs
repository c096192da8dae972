//! The HTTP admin API against a real server, with a real HTTP client (reqwest).

#![cfg(feature = "daemon")]

mod common;

use std::sync::Arc;

use common::daemon::{TestServer, config, json, next};
use reqwest::StatusCode;
use reqwest::blocking::Client;
use seqd::daemon::{Config, DurabilityMode, MemoryBackend};

#[test]
fn every_endpoint_answers() {
    let (server, _b) = TestServer::memory(DurabilityMode::Lease);
    let http = Client::new();
    let get = |path: &str| json(http.get(server.url(path)).send().unwrap());
    let post = |path: &str| json(http.post(server.url(path)).send().unwrap());

    assert_eq!(get("/healthz").0, StatusCode::OK);
    common::eventually("ready", || get("/readyz").0 == StatusCode::OK);

    let (s, v) = post("/v1/sequences/7/3/next?count=10");
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (v["first"].as_u64(), v["last"].as_u64(), v["count"].as_u64()),
        (Some(1), Some(10), Some(10))
    );
    let (s, v) = post("/v1/sequences/7/3/next");
    assert_eq!((s, v["first"].as_u64()), (StatusCode::OK, Some(11)));
    let (s, v) = get("/v1/sequences/7/3");
    assert_eq!((s, v["next"].as_u64()), (StatusCode::OK, Some(12)));
    // The protocol and HTTP share the sequences.
    let mut con = server.redis();
    assert_eq!(next(&mut con, 7, 3, 1).unwrap(), 12);

    let (s, v) = post("/v1/flush");
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["checkpoint_offsets"].as_array().map(Vec::len), Some(2));

    let (s, v) = get("/v1/status");
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["role"], "standalone");
    assert_eq!(v["durability"], "lease");
    let parts = v["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), 2);
    let p1 = &parts[1];
    for field in [
        "state",
        "resident_workspaces",
        "unflushed",
        "checkpoint_offset",
        "last_flush_latency_us",
        "flush_errors",
        "busy_replies",
    ] {
        assert!(!p1[field].is_null(), "status lacks {field}: {p1}");
    }
    assert_eq!(p1["numbers_issued"].as_u64(), Some(12));

    let (s, v) = post("/v1/partitions/1/actualize");
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    common::eventually("ready again", || get("/readyz").0 == StatusCode::OK);
    // Nothing acknowledged is handed out again after an actualization.
    let mut after = 0;
    common::eventually("serving after actualize", || {
        next(&mut con, 7, 3, 1).map(|n| after = n).is_ok()
    });
    assert!(after > 12, "{after}");

    let metrics = http.get(server.url("/metrics")).send().unwrap();
    assert_eq!(metrics.status(), StatusCode::OK);
    let text = metrics.text().unwrap();
    for name in [
        "seqd_requests_total{command=\"next\"}",
        "seqd_numbers_issued_total{partition=\"1\"}",
        "seqd_flush_batches_total",
        "seqd_flush_errors_total",
        "seqd_cache_hits_total",
        "seqd_cache_misses_total",
        "seqd_cache_evictions_total",
        "seqd_unflushed{partition=\"0\"}",
        "seqd_busy_replies_total",
        "seqd_connections ",
        "seqd_last_flush_latency_microseconds",
        "seqd_commits_total{partition=\"1\"}",
        "seqd_flush_retries_total",
        "seqd_backpressure_rejections_total",
        "seqd_replayed_events_total",
        "seqd_max_flush_latency_microseconds",
        "seqd_largest_batch{partition=\"0\"}",
    ] {
        assert!(text.contains(name), "metrics lack {name}:\n{text}");
    }
}

#[test]
fn errors_are_json_with_the_right_status() {
    let (server, _b) = TestServer::memory(DurabilityMode::Sync);
    let http = Client::new();
    let cases = [
        (
            "GET",
            "/v1/sequences/abc/1",
            StatusCode::BAD_REQUEST,
            "workspace must be an integer",
        ),
        (
            "GET",
            "/v1/sequences/1/65536",
            StatusCode::BAD_REQUEST,
            "sequence must be an integer",
        ),
        (
            "POST",
            "/v1/sequences/1/1/next?count=0",
            StatusCode::BAD_REQUEST,
            "count must be",
        ),
        (
            "POST",
            "/v1/sequences/1/1/next?count=1000001",
            StatusCode::BAD_REQUEST,
            "count must be",
        ),
        (
            "POST",
            "/v1/sequences/1/1/next?cnt=3",
            StatusCode::BAD_REQUEST,
            "unknown query parameter",
        ),
        // Not UTF-8 once percent-decoded: axum's own rejection, answered as JSON too.
        (
            "GET",
            "/v1/sequences/%ff/1",
            StatusCode::BAD_REQUEST,
            "bad path",
        ),
        (
            "POST",
            "/v1/sequences/1/%ff%fe/next",
            StatusCode::BAD_REQUEST,
            "bad path",
        ),
        (
            "POST",
            "/v1/partitions/%ff/actualize",
            StatusCode::BAD_REQUEST,
            "bad path",
        ),
        (
            "GET",
            "/v1/nothing",
            StatusCode::NOT_FOUND,
            "no such endpoint",
        ),
        (
            "DELETE",
            "/v1/status",
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed",
        ),
        (
            "GET",
            "/v1/sequences/1/1/next",
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed",
        ),
        (
            "POST",
            "/v1/partitions/2/actualize",
            StatusCode::NOT_FOUND,
            "no partition",
        ),
        (
            "POST",
            "/v1/partitions/x/actualize",
            StatusCode::NOT_FOUND,
            "no partition",
        ),
    ];
    for (method, path, status, want) in cases {
        let req = http.request(method.parse().unwrap(), server.url(path));
        let (s, v) = json(req.send().unwrap());
        assert_eq!(s, status, "{method} {path}: {v}");
        let msg = v["error"].as_str().unwrap_or_default();
        assert!(msg.contains(want), "{method} {path}: {msg}");
    }
    let long = format!("/v1/sequences/{}/1", "9".repeat(5000));
    let (s, _) = json(http.get(server.url(&long)).send().unwrap());
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // A body on an endpoint that takes none is ignored, not fatal.
    let resp = http
        .post(server.url("/v1/flush"))
        .body(vec![0u8; 100_000])
        .send()
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

#[test]
fn bearer_token_guards_everything_but_health() {
    let cfg = Config {
        auth_token: Some("t0ken".into()),
        ..config(DurabilityMode::Lease)
    };
    let server = TestServer::start(cfg, Arc::new(MemoryBackend::default()));
    let http = Client::new();
    assert_eq!(
        http.get(server.url("/healthz")).send().unwrap().status(),
        StatusCode::OK
    );
    common::eventually("ready", || {
        http.get(server.url("/readyz")).send().unwrap().status() == StatusCode::OK
    });
    for path in ["/v1/status", "/metrics", "/v1/sequences/1/1"] {
        let resp = http.get(server.url(path)).send().unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(resp.headers()["www-authenticate"], "Bearer");
        let wrong = http
            .get(server.url(path))
            .bearer_auth("nope")
            .send()
            .unwrap();
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED, "{path}");
        let ok = http
            .get(server.url(path))
            .bearer_auth("t0ken")
            .send()
            .unwrap();
        assert_eq!(ok.status(), StatusCode::OK, "{path}");
    }
}
