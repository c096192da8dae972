//! Hostile and broken clients: each gets a clear error or a clean disconnect, and the
//! clients beside it are served as if nothing happened.

#![cfg(feature = "daemon")]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::daemon::{TestServer, config, next};
use seqd::daemon::{Config, DurabilityMode, MemoryBackend};

const SHORT: Duration = Duration::from_millis(500);

fn server(cfg: impl FnOnce(Config) -> Config) -> TestServer {
    TestServer::start(
        cfg(config(DurabilityMode::Lease)),
        Arc::new(MemoryBackend::default()),
    )
}

/// A well-behaved client keeps getting increasing numbers.
fn still_served(con: &mut redis::Connection, last: &mut u64) {
    let n = next(con, 42, 1, 1).expect("a well-behaved client is still served");
    assert!(n > *last, "{n} after {last}");
    *last = n;
}

#[test]
fn a_client_that_never_reads_is_disconnected_and_bounded() {
    let server = server(|c| Config {
        write_timeout_secs: 1,
        ..c
    });
    let mut good = server.redis();
    let mut last = 0;
    still_served(&mut good, &mut last);

    // Pipelines NEXT without ever reading a reply.
    let mut slow = TcpStream::connect(server.addr).unwrap();
    slow.set_write_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let chunk = b"NEXT 7 0\r\n".repeat(10_000);
    let started = Instant::now();
    let mut sent = 0usize;
    let cut_off = loop {
        match slow.write(&chunk) {
            Ok(n) => sent += n,
            Err(_) => break true,
        }
        still_served(&mut good, &mut last);
        if started.elapsed() > Duration::from_secs(20) {
            break false;
        }
    };
    // Either the write failed (reset) or it blocked until our write timeout: the server
    // stopped reading once its replies could not be written.
    assert!(
        cut_off || sent < 512 << 20,
        "the server kept reading a client that never reads ({sent} bytes)"
    );
    // It closes the connection after --write-timeout: reading now drains what the kernel
    // buffered and then hits end of stream (or a reset).
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let closed_at = Instant::now();
    loop {
        match slow.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => assert!(
                closed_at.elapsed() < Duration::from_secs(10),
                "the connection was never closed"
            ),
        }
    }
    still_served(&mut good, &mut last);
}

#[test]
fn a_connection_flood_beyond_the_limit_gets_errors_and_the_rest_is_served() {
    let server = server(|c| Config {
        max_connections: 20,
        ..c
    });
    let mut good = server.redis();
    let mut last = 0;
    let flood: Vec<TcpStream> = (0..200)
        .map(|_| TcpStream::connect(server.addr).unwrap())
        .collect();
    // A refused connection gets the error and is closed; one with a slot answers PING.
    let mut held = Vec::new();
    let mut refused = 0;
    for mut s in flood {
        let mut buf = [0u8; 64];
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut n = s.read(&mut buf).unwrap_or(0);
        if n == 0 {
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let _ = s.write_all(b"PING\r\n");
            n = s.read(&mut buf).unwrap_or(0);
        }
        match &buf[..n] {
            b"+PONG\r\n" => held.push(s),
            // The error, or (when it came late and our PING met a closed socket) a reset.
            b"-ERR max number of clients reached\r\n" | b"" => refused += 1,
            other => panic!("unexpected {:?}", String::from_utf8_lossy(other)),
        }
    }
    assert_eq!(held.len(), 19, "the limit counts the good client too");
    assert_eq!(refused, 181);
    still_served(&mut good, &mut last);
    drop(held);
    common::eventually("slots free up", || {
        server.raw(b"PING\r\n", SHORT) == b"+PONG\r\n"
    });
}

#[test]
fn oversized_and_garbage_frames_close_only_their_connection() {
    let server = server(|c| c);
    let mut good = server.redis();
    let mut last = 0;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("huge array", b"*100000\r\n".to_vec()),
        ("huge bulk", b"*1\r\n$999999999\r\n".to_vec()),
        ("negative bulk", b"*1\r\n$-5\r\n".to_vec()),
        ("inline line over 64 KiB", vec![b'A'; 70 * 1024]),
        ("bulk over 64 KiB", {
            let mut v = b"*2\r\n$4\r\nPING\r\n$70000\r\n".to_vec();
            v.extend(vec![b'x'; 70_000]);
            v.extend(b"\r\n");
            v
        }),
        ("binary garbage", {
            let mut x = 0x9E37_79B9_7F4A_7C15u64;
            (0..4096)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x >> 24) as u8 | 0x80
                })
                .chain(*b"\r\n")
                .collect()
        }),
        ("missing CRLF after bulk", b"*1\r\n$4\r\nPINGxx".to_vec()),
    ];
    for (what, bytes) in cases {
        let out = server.raw(&bytes, Duration::from_secs(2));
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.starts_with("-ERR"),
            "{what}: wanted an error reply, got {text:?}"
        );
        still_served(&mut good, &mut last);
    }
}

/// Sends a raw HTTP/1.1 request to the admin port; the response (status line first) or
/// what the server did instead ("closed").
fn http_raw(server: &TestServer, request: &[u8]) -> String {
    let mut s = TcpStream::connect(server.admin).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // The server may answer and close before reading all of a huge request.
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    if out.is_empty() {
        "closed".into()
    } else {
        String::from_utf8_lossy(&out).into_owned()
    }
}

fn status_of(response: &str) -> &str {
    response.split(' ').nth(1).unwrap_or(response)
}

#[test]
fn malformed_and_huge_http_requests_get_errors() {
    let server = server(|c| Config {
        auth_token: Some("t0ken".into()),
        ..c
    });
    let mut good = redis::Client::open(format!("redis://:t0ken@{}/", server.addr))
        .unwrap()
        .get_connection()
        .unwrap();
    let mut last = 0;
    let auth = "Authorization: Bearer t0ken\r\n";
    let long_path = format!("/v1/sequences/{}/1", "9".repeat(100_000));
    let huge_body = format!(
        "POST /v1/sequences/1/1/next HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 50000000\r\n\r\n{}",
        "x".repeat(1 << 20)
    );
    let cases: Vec<(&str, String, &[&str])> = vec![
        (
            "not HTTP",
            "\x16\x03\x01 hello garbage\r\n\r\n".into(),
            &["400", "closed"],
        ),
        (
            "bad percent-encoding",
            format!("GET /v1/sequences/%zz/1 HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"),
            &["400", "404"],
        ),
        (
            "non-numeric ids",
            format!("GET /v1/sequences/abc/-1 HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"),
            &["400"],
        ),
        (
            "100 KB path",
            format!("GET {long_path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"),
            &["400", "414", "431", "closed"],
        ),
        (
            "1 MB header",
            format!(
                "GET /v1/status HTTP/1.1\r\nHost: x\r\n{auth}X-Junk: {}\r\nConnection: close\r\n\r\n",
                "j".repeat(1 << 20)
            ),
            &["400", "431", "closed"],
        ),
        (
            "50 MB body announced",
            huge_body,
            &["400", "413", "200", "closed"],
        ),
        (
            "no token",
            "GET /v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".into(),
            &["401"],
        ),
        (
            "wrong token",
            "GET /v1/status HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer nope\r\nConnection: close\r\n\r\n".into(),
            &["401"],
        ),
        (
            "wrong scheme",
            "GET /v1/status HTTP/1.1\r\nHost: x\r\nAuthorization: Basic dDBrZW4=\r\nConnection: close\r\n\r\n".into(),
            &["401"],
        ),
        (
            "count out of range",
            format!("POST /v1/sequences/1/1/next?count=0 HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"),
            &["400"],
        ),
    ];
    for (what, request, allowed) in cases {
        let response = http_raw(&server, request.as_bytes());
        let status = status_of(&response);
        assert!(
            allowed.contains(&status),
            "{what}: status {status}, wanted one of {allowed:?}: {}",
            response.chars().take(300).collect::<String>()
        );
        still_served(&mut good, &mut last);
    }
    // The admin API still works.
    let ok = http_raw(
        &server,
        format!("GET /v1/status HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n").as_bytes(),
    );
    assert_eq!(status_of(&ok), "200", "{ok}");
}
