//! The daemon's protocol, end to end: a real server on 127.0.0.1:0, the `redis` crate and raw
//! TCP as clients. Every command, every error path, pipelining, many connections, limits.

#![cfg(feature = "daemon")]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::daemon::{TestServer, config, next};
use seqd::daemon::{Config, DurabilityMode, MemoryBackend};

const SHORT: Duration = Duration::from_millis(500);

fn err_of<T: std::fmt::Debug>(r: redis::RedisResult<T>) -> String {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => format!("{} {}", e.code().unwrap_or("?"), e.detail().unwrap_or("")),
    }
}

#[test]
fn every_command_answers_as_documented() {
    for mode in [DurabilityMode::Sync, DurabilityMode::Lease] {
        let (server, _backend) = TestServer::memory(mode);
        let mut con = server.redis();
        let get =
            |con: &mut redis::Connection, c: &str| -> u64 { redis::cmd(c).query(con).unwrap() };
        assert_eq!(get(&mut con, "CURRENT"), 1, "{mode:?}");
        assert_eq!(get(&mut con, "GETSEQ"), 1);
        assert_eq!(get(&mut con, "GETSEQ"), 2);
        assert_eq!(get(&mut con, "CURRENT"), 3);
        assert_eq!(get(&mut con, "CURRENT"), 3, "CURRENT does not advance");
        // NEXT ws seq [count]: a block first..first+count-1.
        assert_eq!(next(&mut con, 42, 7, 1000).unwrap(), 1);
        assert_eq!(next(&mut con, 42, 7, 1).unwrap(), 1001);
        let one: u64 = redis::cmd("NEXT").arg(42).arg(7).query(&mut con).unwrap();
        assert_eq!(one, 1002, "count defaults to 1");
        let peek: u64 = redis::cmd("PEEK").arg(42).arg(7).query(&mut con).unwrap();
        assert_eq!(peek, 1003);
        assert_eq!(
            next(&mut con, 42, 8, 1).unwrap(),
            1,
            "sequences are independent"
        );
        assert_eq!(
            next(&mut con, 43, 7, 1).unwrap(),
            1,
            "workspaces are independent"
        );
        assert_eq!(next(&mut con, u64::MAX, 65535, 1_000_000).unwrap(), 1);
        let pong: String = redis::cmd("PING").query(&mut con).unwrap();
        assert_eq!(pong, "PONG");
        let echo: String = redis::cmd("PING").arg("hi").query(&mut con).unwrap();
        assert_eq!(echo, "hi");
        let cfg: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("appendonly")
            .query(&mut con)
            .unwrap();
        assert_eq!(cfg, vec!["appendonly".to_string(), "yes".to_string()]);
        let docs: Vec<redis::Value> = redis::cmd("COMMAND")
            .arg("DOCS")
            .arg("NEXT")
            .query(&mut con)
            .unwrap();
        assert_eq!(docs.len(), 2, "{docs:?}");
        assert_eq!(docs[0], redis::Value::BulkString(b"next".to_vec()));
        assert!(format!("{docs:?}").contains("summary"), "{docs:?}");
        let ok: String = redis::cmd("SELECT").arg(0).query(&mut con).unwrap();
        assert_eq!(ok, "OK");
        assert!(
            err_of(redis::cmd("SELECT").arg(1).query::<String>(&mut con)).contains("out of range")
        );
        let hello: Vec<redis::Value> = redis::cmd("HELLO").arg(2).query(&mut con).unwrap();
        assert_eq!(hello.len(), 14);
        assert!(
            err_of(redis::cmd("HELLO").arg(4).query::<redis::Value>(&mut con))
                .starts_with("NOPROTO")
        );
        let quit: String = redis::cmd("QUIT").query(&mut con).unwrap();
        assert_eq!(quit, "OK");
        server.stop().unwrap();
    }
}

#[test]
fn bad_arguments_get_clear_errors_and_the_connection_stays_usable() {
    let (server, _b) = TestServer::memory(DurabilityMode::Lease);
    let mut con = server.redis();
    let cases: [(&[&str], &str); 8] = [
        (&["NEXT", "x", "1"], "workspace must be an integer"),
        (
            &["NEXT", "1", "70000"],
            "sequence must be an integer in 0..=65535",
        ),
        (
            &["NEXT", "1", "1", "0"],
            "count must be an integer in 1..=1000000",
        ),
        (
            &["NEXT", "1", "1", "1000001"],
            "count must be an integer in 1..=1000000",
        ),
        (&["NEXT", "-1", "1"], "workspace must be an integer"),
        (&["NEXT", "1"], "wrong number of arguments for 'next'"),
        (
            &["PEEK", "1", "2", "3"],
            "wrong number of arguments for 'peek'",
        ),
        (
            &["FLUSHALL"],
            "Unknown command 'FLUSHALL'. Supported: GETSEQ",
        ),
    ];
    for (args, want) in cases {
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        let e = err_of(cmd.query::<u64>(&mut con));
        assert!(e.starts_with("ERR") && e.contains(want), "{args:?}: {e}");
    }
    assert_eq!(
        next(&mut con, 1, 1, 1).unwrap(),
        1,
        "nothing was taken by the errors"
    );
}

#[test]
fn pipelined_replies_come_in_request_order() {
    for mode in [DurabilityMode::Sync, DurabilityMode::Lease] {
        let (server, _b) = TestServer::memory(mode);
        let mut con = server.redis();
        let mut pipe = redis::pipe();
        for i in 0..2000u64 {
            pipe.cmd("NEXT").arg(i % 5).arg(i % 3).arg(1 + i % 4);
        }
        let got: Vec<u64> = pipe.query(&mut con).unwrap();
        let mut last: HashMap<(u64, u64), u64> = HashMap::new();
        for (i, n) in got.iter().enumerate() {
            let i = i as u64;
            let key = (i % 5, i % 3);
            let expected = last.get(&key).copied().unwrap_or(1);
            assert_eq!(*n, expected, "{mode:?}: request {i}");
            last.insert(key, n + 1 + i % 4);
        }
    }
}

/// In lease mode a connection answers a `NEXT` from its lease one request late (its lease
/// is prefetched meanwhile): replies of other commands in between keep their places.
#[test]
fn lease_answers_keep_their_place_among_other_replies() {
    let (server, _b) = TestServer::memory(DurabilityMode::Lease);
    let mut con = server.redis();
    let mut last: HashMap<String, i64> = HashMap::new();
    // Rounds, so that later ones find the leases the first made durable.
    for round in 0..5u64 {
        let mut pipe = redis::pipe();
        let mut expected = Vec::new();
        for i in 0..600u64 {
            let n = round * 600 + i;
            match n % 7 {
                0 => {
                    pipe.cmd("ECHO").arg(format!("e{n}"));
                    expected.push(format!("e{n}"));
                }
                1 => {
                    pipe.cmd("PING");
                    expected.push("PONG".into());
                }
                _ => {
                    pipe.cmd("NEXT").arg(n % 11).arg(0);
                    expected.push(format!("next {}", n % 11));
                }
            }
        }
        let got: Vec<redis::Value> = pipe.query(&mut con).unwrap();
        assert_eq!(got.len(), expected.len());
        for (i, (g, want)) in got.iter().zip(&expected).enumerate() {
            match g {
                redis::Value::Int(v) => {
                    assert!(want.starts_with("next"), "round {round} request {i}: {g:?}");
                    let before = last.insert(want.clone(), *v);
                    assert_eq!(*v, before.unwrap_or(0) + 1, "round {round} request {i}");
                }
                other => {
                    let text: String = redis::from_redis_value(other.clone()).unwrap();
                    assert_eq!(&text, want, "round {round} request {i}");
                }
            }
        }
    }
}

#[test]
fn many_connections_never_see_the_same_number() {
    // Both modes, with the io threads polling after a request (the default) and sleeping
    // at once: in sync mode the batches are then written by the spinner or before the
    // event loop sleeps, respectively.
    for mode in [DurabilityMode::Lease, DurabilityMode::Sync] {
        for io_spin_us in [0, 50] {
            many_connections_in(Config {
                io_spin_us,
                ..config(mode)
            });
        }
    }
}

fn many_connections_in(config: Config) {
    let server = TestServer::start(config, std::sync::Arc::new(MemoryBackend::default()));
    let threads: Vec<_> = (0..16)
        .map(|_| {
            let mut con = server.redis();
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                for _ in 0..50 {
                    let mut pipe = redis::pipe();
                    for _ in 0..10 {
                        pipe.cmd("GETSEQ");
                    }
                    let got: Vec<u64> = pipe.query(&mut con).unwrap();
                    mine.extend(got);
                }
                mine
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in threads {
        let mine = t.join().unwrap();
        assert!(
            mine.windows(2).all(|w| w[0] < w[1]),
            "each client sees increasing numbers"
        );
        all.extend(mine);
    }
    all.sort_unstable();
    assert_eq!(all, (1..=8000).collect::<Vec<u64>>(), "dense and unique");
}

#[test]
fn inline_commands_work_like_telnet() {
    let (server, _b) = TestServer::memory(DurabilityMode::Lease);
    let out = server.raw(
        b"GETSEQ\r\nGETSEQ\nCURRENT\r\n\r\nNEXT 9 9 5\r\nQUIT\r\n",
        SHORT,
    );
    assert_eq!(out, b":1\r\n:2\r\n:3\r\n:1\r\n+OK\r\n");
}

#[test]
fn malformed_frames_close_only_their_connection() {
    let (server, _b) = TestServer::memory(DurabilityMode::Lease);
    let mut healthy = server.redis();
    assert_eq!(next(&mut healthy, 1, 1, 1).unwrap(), 1);
    for bad in [
        &b"*2\r\n:x\r\n"[..],
        b"*99999\r\n",
        b"*1\r\n$999999999\r\n",
        b"*1\r\n$3\r\nabcXY",
        b"*-5\r\n",
    ] {
        let out = String::from_utf8_lossy(&server.raw(bad, SHORT)).to_string();
        assert!(out.starts_with("-ERR Protocol error"), "{bad:?}: {out}");
    }
    // An inline line longer than the limit, with no newline: refused, not buffered forever.
    let huge = vec![b'a'; 70 * 1024];
    let out = String::from_utf8_lossy(&server.raw(&huge, SHORT)).to_string();
    assert!(out.starts_with("-ERR Protocol error"), "{out}");
    // Binary garbage.
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let _ = server.raw(&garbage, SHORT);
    assert_eq!(
        next(&mut healthy, 1, 1, 1).unwrap(),
        2,
        "others are unaffected"
    );
}

#[test]
fn max_connections_is_enforced_with_an_error() {
    let backend = std::sync::Arc::new(MemoryBackend::default());
    let cfg = Config {
        max_connections: 2,
        ..config(DurabilityMode::Lease)
    };
    let server = TestServer::start(cfg, backend);
    let mut a = server.redis();
    let mut b = server.redis();
    assert_eq!(next(&mut a, 1, 1, 1).unwrap(), 1);
    assert_eq!(next(&mut b, 1, 1, 1).unwrap(), 2);
    let out = String::from_utf8_lossy(&server.raw(b"GETSEQ\r\n", SHORT)).to_string();
    assert_eq!(out, "-ERR max number of clients reached\r\n");
    drop(a);
    common::eventually("a slot frees up", || {
        server.raw(b"GETSEQ\r\n", SHORT).starts_with(b":")
    });
}

#[test]
fn auth_token_is_required_when_configured() {
    let backend = std::sync::Arc::new(MemoryBackend::default());
    let cfg = Config {
        auth_token: Some("s3cret".into()),
        ..config(DurabilityMode::Lease)
    };
    let server = TestServer::start(cfg, backend);
    let out = String::from_utf8_lossy(
        &server.raw(b"GETSEQ\r\nAUTH nope\r\nAUTH s3cret\r\nGETSEQ\r\n", SHORT),
    )
    .to_string();
    assert_eq!(
        out,
        "-NOAUTH Authentication required.\r\n-WRONGPASS invalid username-password pair or user is disabled.\r\n+OK\r\n:1\r\n"
    );
    // The redis crate authenticates from the URL.
    let client = redis::Client::open(format!("redis://:s3cret@{}/", server.addr)).unwrap();
    let mut con = client.get_connection().unwrap();
    assert_eq!(next(&mut con, 0, 0, 1).unwrap(), 2);
    let wrong = redis::Client::open(format!("redis://:wrong@{}/", server.addr)).unwrap();
    assert!(wrong.get_connection().is_err());
    // Without a token configured, AUTH is an error, as in Redis.
    let (open, _b) = TestServer::memory(DurabilityMode::Lease);
    let out = String::from_utf8_lossy(&open.raw(b"AUTH x\r\n", SHORT)).to_string();
    assert!(
        out.starts_with("-ERR AUTH <password> called without any password configured"),
        "{out}"
    );
}

#[test]
fn a_half_sent_request_times_out() {
    let backend = std::sync::Arc::new(MemoryBackend::default());
    let cfg = Config {
        request_timeout_secs: 1,
        ..config(DurabilityMode::Lease)
    };
    let server = TestServer::start(cfg, backend);
    let started = std::time::Instant::now();
    let out = server.raw(b"*2\r\n$6\r\nGETSEQ", Duration::from_secs(10));
    assert!(out.is_empty(), "{out:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "closed by the server"
    );
    // Trickling a byte at a time does not reset the clock (slowloris): a request that never
    // completes is cut off one request timeout after its first byte.
    use std::io::{ErrorKind, Read, Write};
    let mut s = std::net::TcpStream::connect(server.addr).unwrap();
    let _ = s.write_all(b"*1\r\n$1000\r\n");
    for _ in 0..25 {
        std::thread::sleep(Duration::from_millis(100));
        if s.write_all(b"a").is_err() {
            break;
        }
    }
    // Less than the request timeout: only a server that counts from the first byte has
    // closed by now.
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    match s.read(&mut [0u8; 16]) {
        Ok(0) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        other => panic!("a trickled request must be cut off, got {other:?}"),
    }
}
