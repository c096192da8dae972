//! Storage failing for longer than the flusher's retry budget, in both modes: the flusher
//! gives up, the partition actualizes (both counted in `/v1/status` and `/metrics`), nothing
//! acknowledged is lost, and once storage heals the partition serves again with numbers above
//! everything it acknowledged.

#![cfg(feature = "daemon")]

mod common;

use std::time::{Duration, Instant};

use common::daemon::{FaultyBackend, TestServer, config, metric, next};
use seqd::daemon::DurabilityMode;
use seqd::storage::FaultOps;

/// Workspace 2: partition 0 of two.
const WS: u64 = 2;

fn counters(server: &TestServer) -> (u64, u64) {
    let p0 = &server.status()["partitions"][0];
    (
        p0["flush_give_ups"].as_u64().unwrap(),
        p0["actualizations"].as_u64().unwrap(),
    )
}

#[test]
fn the_partition_gives_up_actualizes_and_serves_above_everything_acknowledged() {
    for mode in [DurabilityMode::Sync, DurabilityMode::Lease] {
        let backend = FaultyBackend::with_partitions(2);
        let server = TestServer::start(config(mode), backend.clone());
        let mut con = server.redis();
        let mut acked = Vec::new();
        for _ in 0..100 {
            acked.push(next(&mut con, WS, 0, 1).unwrap());
        }
        let (give_ups, actualizations) = counters(&server);
        assert_eq!(give_ups, 0, "{mode:?}");
        let part = backend.part(0);
        part.limit_to(FaultOps::WRITES);
        part.fail_forever(true, true);
        // Keep asking (each request may wait for its write, at most 10 s) until the flusher
        // has run out of retries; lease mode answers from its durable window meanwhile.
        let deadline = Instant::now() + Duration::from_secs(60);
        while counters(&server).0 == give_ups {
            assert!(
                Instant::now() < deadline,
                "{mode:?}: the flusher never gave up"
            );
            if let Ok(n) = next(&mut con, WS, 0, 1) {
                acked.push(n);
            }
        }
        let (after_give_ups, after_actualizations) = counters(&server);
        assert!(after_give_ups > give_ups, "{mode:?}");
        assert!(after_actualizations > actualizations, "{mode:?}");
        let metrics = server.metrics();
        let series = |name: &str| metric(&metrics, &format!("{name}{{partition=\"0\"}}"));
        assert!(
            series("seqd_flush_give_ups_total") >= after_give_ups,
            "{mode:?}"
        );
        assert!(
            series("seqd_actualizations_total") >= after_actualizations,
            "{mode:?}"
        );
        assert_eq!(
            series("seqd_partition_ready"),
            0,
            "{mode:?}: not ready while failing"
        );

        part.fail_forever(false, true);
        server.wait_ready();
        let mut first = None;
        common::eventually("serving again", || {
            first = next(&mut con, WS, 0, 1).ok();
            first.is_some()
        });
        let max = *acked.iter().max().unwrap();
        let first = first.unwrap_or_default();
        assert!(
            first > max,
            "{mode:?}: {first} handed out again (acknowledged up to {max})"
        );
        assert!(
            backend.stored(0, WS, 0) >= first,
            "{mode:?}: acknowledged, not stored"
        );
    }
}
