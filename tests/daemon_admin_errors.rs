//! The HTTP admin API's error paths against a real server: 503 with `Retry-After` while a
//! partition recovers (`next`, `peek`) or its storage fails (`next`, `flush`), 422 for an exhausted
//! sequence, and the bearer token on every `POST`.

#![cfg(feature = "daemon")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::daemon::{FaultyBackend, TestServer, config, json, next};
use reqwest::StatusCode;
use reqwest::blocking::{Client, RequestBuilder};
use seqd::daemon::{Config, DurabilityMode, MemoryBackend};
use seqd::storage::FaultOps;

/// Sends `req`; asserts a 503 with `Retry-After: 1` and a JSON error naming `why`.
fn assert_unavailable(req: RequestBuilder, why: &str) {
    let resp = req.send().unwrap();
    let retry_after = resp.headers().get("retry-after").cloned();
    let (status, body) = json(resp);
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(retry_after.as_ref().map(|v| v.to_str().unwrap()), Some("1"));
    let msg = body["error"].as_str().unwrap_or_default();
    assert!(msg.contains(why), "{msg}");
}

#[test]
fn busy_is_503_with_retry_after_while_recovering_and_while_storage_fails() {
    let backend = FaultyBackend::with_partitions(2);
    backend.part(1).limit_to(FaultOps::READS);
    backend.part(1).set_latency(Duration::from_millis(800));
    let server = TestServer::start_unready(config(DurabilityMode::Sync), backend.clone());
    let http = Client::new();
    // Partition 1 (workspace 1) is still recovering.
    assert_unavailable(http.get(server.url("/v1/sequences/1/0")), "recovering");
    assert_unavailable(
        http.post(server.url("/v1/sequences/1/0/next")),
        "recovering",
    );
    server.wait_ready();
    backend.part(1).set_latency(Duration::ZERO);

    let (status, v) = json(
        http.post(server.url("/v1/sequences/2/0/next?count=5"))
            .send()
            .unwrap(),
    );
    assert_eq!(status, StatusCode::OK, "{v}");
    // Partition 0 (workspace 2) loses its disk: the numbers are never acknowledged...
    let part = backend.part(0);
    part.limit_to(FaultOps::WRITES);
    part.fail_forever(true, true);
    assert_unavailable(http.post(server.url("/v1/sequences/2/0/next")), "retry");
    // ...nor is a flush. (A peek needs no write: it is answered whenever the partition is
    // not in the middle of rebuilding, so its answer here depends on timing.)
    assert_unavailable(http.post(server.url("/v1/flush")), "partition 0");
    // Partition 1 is unaffected.
    let (status, v) = json(http.get(server.url("/v1/sequences/1/0")).send().unwrap());
    assert_eq!(
        (status, v["next"].as_u64()),
        (StatusCode::OK, Some(1)),
        "{v}"
    );
    part.fail_forever(false, true);
    let mut first = 0;
    common::eventually("serving again", || {
        let (status, v) = json(
            http.post(server.url("/v1/sequences/2/0/next"))
                .send()
                .unwrap(),
        );
        first = v["first"].as_u64().unwrap_or(0);
        status == StatusCode::OK
    });
    assert!(first > 5, "acknowledged 1..=5 and {first} again");
}

#[test]
fn an_exhausted_sequence_is_422() {
    for mode in [DurabilityMode::Sync, DurabilityMode::Lease] {
        let cfg = Config {
            initial: u64::MAX - 5,
            ..config(mode)
        };
        let server = TestServer::start(cfg, Arc::new(MemoryBackend::default()));
        let http = Client::new();
        let post = |path: &str| json(http.post(server.url(path)).send().unwrap());
        let (status, v) = post("/v1/sequences/1/1/next?count=10");
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{mode:?}: {v}");
        assert!(v["error"].as_str().unwrap().contains("exhausted"), "{v}");
        // The numbers that are left are handed out; then nothing more.
        let (status, v) = post("/v1/sequences/1/1/next?count=6");
        assert_eq!(status, StatusCode::OK, "{mode:?}: {v}");
        assert_eq!(
            (v["first"].as_u64(), v["last"].as_u64()),
            (Some(u64::MAX - 5), Some(u64::MAX))
        );
        let (status, v) = post("/v1/sequences/1/1/next");
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{mode:?}: {v}");
        let e = next(&mut server.redis(), 1, 1, 1).unwrap_err();
        assert!(e.to_string().contains("exhausted"), "{mode:?}: {e}");
    }
}

#[test]
fn every_post_needs_the_bearer_token() {
    let cfg = Config {
        auth_token: Some("t0ken".into()),
        // Exact numbers: no lease window to skip when partition 1 actualizes.
        ..config(DurabilityMode::Sync)
    };
    let server = TestServer::start(cfg, Arc::new(MemoryBackend::default()));
    let http = Client::new();
    for (path, ok) in [
        ("/v1/sequences/1/1/next?count=2", StatusCode::OK),
        ("/v1/flush", StatusCode::OK),
        ("/v1/partitions/1/actualize", StatusCode::ACCEPTED),
    ] {
        for token in [None, Some("nope")] {
            let mut req = http.post(server.url(path));
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let resp = req.send().unwrap();
            assert_eq!(resp.headers()["www-authenticate"], "Bearer", "{path}");
            let (status, v) = json(resp);
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{path} with {token:?}: {v}"
            );
        }
        let (status, v) = json(
            http.post(server.url(path))
                .bearer_auth("t0ken")
                .send()
                .unwrap(),
        );
        assert_eq!(status, ok, "{path}: {v}");
    }
    // Nothing was taken by the refused requests.
    server.wait_ready();
    let (_, v) = json(
        http.get(server.url("/v1/sequences/1/1"))
            .bearer_auth("t0ken")
            .send()
            .unwrap(),
    );
    assert_eq!(v["next"].as_u64(), Some(3), "{v}");
}
