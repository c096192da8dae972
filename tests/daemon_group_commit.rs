//! Group commit in `sync` mode: many connections asking at once share flush writes (one
//! batch holds everything committed while the previous write was in flight), and still no
//! reply leaves before its number is stored.

#![cfg(feature = "daemon")]

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use common::daemon::{FaultyBackend, TestServer, config, metric};
use seqd::daemon::DurabilityMode;
use seqd::storage::FaultOps;

const CONNECTIONS: usize = 32;
const EACH: usize = 200;

fn batches(server: &TestServer) -> u64 {
    metric(
        &server.metrics(),
        "seqd_flush_batches_total{partition=\"0\"}",
    )
}

#[test]
fn concurrent_requests_share_flush_writes_and_every_reply_is_durable() {
    let backend = FaultyBackend::with_partitions(2);
    // A write takes a millisecond, like an fsync on a fast disk.
    backend.part(0).limit_to(FaultOps::WRITES);
    backend.part(0).set_latency(Duration::from_millis(1));
    let server = Arc::new(TestServer::start(
        config(DurabilityMode::Sync),
        backend.clone(),
    ));
    let before = batches(&server);
    let clients: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let (server, backend) = (Arc::clone(&server), Arc::clone(&backend));
            std::thread::spawn(move || {
                let mut con = server.redis();
                (0..EACH)
                    .map(|_| {
                        let n: u64 = redis::cmd("GETSEQ").query(&mut con).unwrap();
                        // Acknowledged: storage already holds it.
                        assert!(backend.stored(0, 0, 0) >= n, "{n} acknowledged, not stored");
                        n
                    })
                    .collect::<Vec<u64>>()
            })
        })
        .collect();
    let mut seen = HashSet::new();
    for c in clients {
        for n in c.join().unwrap() {
            assert!(seen.insert(n), "{n} handed out twice");
        }
    }
    let requests = (CONNECTIONS * EACH) as u64;
    assert_eq!(seen.len() as u64, requests);
    let writes = batches(&server) - before;
    println!("{requests} requests from {CONNECTIONS} connections: {writes} flush writes");
    assert!(
        writes < requests / 2,
        "{requests} requests took {writes} flush writes: no group commit"
    );
}
