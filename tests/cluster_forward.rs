//! Forwarding to a peer (`seqd::cluster::forward::Peers`) against a real daemon: pipelined
//! batches from many tasks come back in order, authentication, and the two failure kinds.
#![cfg(feature = "cluster")]

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use seqd::cluster::forward::{ForwardError, PeerOptions, PeerReply, Peers};
use seqd::daemon::DurabilityMode;

use common::daemon::{TestServer, config};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn pipelined_batches_come_back_in_order() {
    let (server, _backend) = TestServer::memory(DurabilityMode::Sync);
    let addr = server.addr.to_string();
    let rt = runtime();
    let peers = Peers::new(rt.handle().clone(), PeerOptions::default());
    let numbers = rt.block_on(async {
        let mut tasks = Vec::new();
        for t in 0..8u64 {
            let peers = Arc::clone(&peers);
            let addr = addr.clone();
            tasks.push(tokio::spawn(async move {
                let mut mine = Vec::new();
                for _ in 0..50 {
                    // Each batch: a NEXT per workspace 0..20 of sequence t, then a PEEK.
                    let ws: Vec<String> = (0..20).map(|w| w.to_string()).collect();
                    let seq = t.to_string();
                    let mut commands: Vec<Vec<&[u8]>> = ws
                        .iter()
                        .map(|w| vec![&b"NEXT"[..], w.as_bytes(), seq.as_bytes()])
                        .collect();
                    commands.push(vec![b"PEEK", b"0", seq.as_bytes()]);
                    let replies = peers.send(&addr, &commands).await.expect("forwarded");
                    assert_eq!(replies.len(), 21);
                    let first = match &replies[0] {
                        PeerReply::Integer(n) => *n,
                        other => panic!("{other:?}"),
                    };
                    // PEEK of workspace 0 follows its NEXT in the same pipeline.
                    assert_eq!(replies[20], PeerReply::Integer(first + 1));
                    for (w, r) in replies[..20].iter().enumerate() {
                        match r {
                            PeerReply::Integer(n) => mine.push((w, t, *n)),
                            other => panic!("{other:?}"),
                        }
                    }
                }
                mine
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.expect("task"));
        }
        all
    });
    // Every (workspace, sequence) got 1..=50, each once.
    let unique: HashSet<_> = numbers.iter().collect();
    assert_eq!(unique.len(), numbers.len());
    assert_eq!(numbers.len(), 8 * 50 * 20);
    assert!(numbers.iter().all(|(_, _, n)| (1..=50).contains(n)));

    // An error reply is a reply, not a failure.
    let replies = rt
        .block_on(peers.send(&addr, &[vec![b"NEXT", b"x", b"0"]]))
        .unwrap();
    assert!(matches!(&replies[0], PeerReply::Error(e) if e.starts_with("ERR")));
}

#[test]
fn authentication_and_failures() {
    let cfg = seqd::daemon::Config {
        auth_token: Some("s3cret".into()),
        ..config(DurabilityMode::Lease)
    };
    let server = TestServer::start(cfg, Arc::new(seqd::daemon::MemoryBackend::default()));
    let addr = server.addr.to_string();
    let rt = runtime();
    let good = Peers::new(
        rt.handle().clone(),
        PeerOptions {
            auth_token: Some("s3cret".into()),
            timeout: Duration::from_secs(2),
            name: Some("seqd-peer".into()),
            ..PeerOptions::default()
        },
    );
    let replies = rt
        .block_on(good.send(&addr, &[vec![b"NEXT", b"1", b"1"]]))
        .unwrap();
    assert_eq!(replies, vec![PeerReply::Integer(1)]);

    let bad = Peers::new(
        rt.handle().clone(),
        PeerOptions {
            auth_token: Some("wrong".into()),
            timeout: Duration::from_secs(2),
            name: None,
            ..PeerOptions::default()
        },
    );
    let e = rt
        .block_on(bad.send(&addr, &[vec![b"NEXT", b"1", b"1"]]))
        .unwrap_err();
    assert!(
        matches!(&e, ForwardError::Unreachable(why) if why.contains("AUTH")),
        "{e}"
    );

    // Nobody listens: unreachable (safe to retry), not lost.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let e = rt
        .block_on(good.send(&closed, &[vec![b"PING"]]))
        .unwrap_err();
    assert!(matches!(e, ForwardError::Unreachable(_)), "{e}");

    // The peer stops while the connection is idle: the next batch reconnects or fails as
    // unreachable, never hangs.
    drop(server);
    let e = rt
        .block_on(good.send(&addr, &[vec![b"NEXT", b"1", b"1"]]))
        .unwrap_err();
    assert!(
        matches!(e, ForwardError::Unreachable(_) | ForwardError::Lost(_)),
        "{e}"
    );
}
