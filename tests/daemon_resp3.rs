//! The protocol byte for byte, over raw TCP against a real server (in process, memory
//! storage): RESP3 after `HELLO 3` and back, every reply type seqd sends in both protocols,
//! `MULTI`/`EXEC`/`DISCARD`, inline quotes, `HELLO ... AUTH` on an authenticated connection,
//! `INFO`, `DBSIZE`, and the `--max-pending-bytes` bound.

#![cfg(feature = "daemon")]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::daemon::{TestServer, config, metric};
use seqd::daemon::{Config, DurabilityMode, MemoryBackend};

/// A raw protocol connection that reads whole replies.
struct Raw {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    fn new(server: &TestServer) -> Raw {
        let s = TcpStream::connect(server.addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Raw { s, buf: Vec::new() }
    }

    /// Sends `req`, then reads `n` whole replies; their bytes as text.
    fn send(&mut self, req: &str, n: usize) -> String {
        self.s.write_all(req.as_bytes()).expect("write");
        let mut out = Vec::new();
        for _ in 0..n {
            out.extend(self.reply());
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Reads one whole reply.
    fn reply(&mut self) -> Vec<u8> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(len) = reply_len(&self.buf) {
                return self.buf.drain(..len).collect();
            }
            assert!(
                Instant::now() < deadline,
                "no whole reply in {:?}",
                self.buf
            );
            let mut chunk = [0u8; 65536];
            match self.s.read(&mut chunk) {
                Ok(0) => panic!("closed; have {:?}", String::from_utf8_lossy(&self.buf)),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) => panic!("read: {e}; have {:?}", String::from_utf8_lossy(&self.buf)),
            }
        }
    }

    /// Whether the server closed the connection (after whatever it still sends).
    fn closed(&mut self) -> bool {
        let mut chunk = [0u8; 1024];
        loop {
            match self.s.read(&mut chunk) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
    }
}

/// The length of the first whole reply in `b` (RESP2 or RESP3), if it is all there.
fn reply_len(b: &[u8]) -> Option<usize> {
    let end = b.windows(2).position(|w| w == b"\r\n")?;
    let line = std::str::from_utf8(&b[1..end]).ok()?;
    let after = end + 2;
    let count = |per: usize| -> Option<usize> {
        let n: usize = line.parse().ok()?;
        let mut at = after;
        for _ in 0..n * per {
            at += reply_len(&b[at..])?;
        }
        Some(at)
    };
    match b[0] {
        b'+' | b'-' | b':' | b'_' | b',' | b'#' => Some(after),
        b'$' if line == "-1" => Some(after),
        b'$' | b'=' => {
            let n: usize = line.parse().ok()?;
            (b.len() >= after + n + 2).then_some(after + n + 2)
        }
        b'*' | b'~' => count(1),
        b'%' => count(2),
        other => panic!("unexpected reply type {:?}", other as char),
    }
}

#[test]
fn hello_3_switches_every_reply_to_resp3_and_hello_2_back() {
    let (server, _b) = TestServer::memory(DurabilityMode::Lease);
    let mut c = Raw::new(&server);
    let hello = c.send("HELLO 3\r\n", 1);
    assert!(hello.starts_with("%7\r\n$6\r\nserver\r\n$4\r\nseqd\r\n$7\r\nversion\r\n"));
    assert!(
        hello.contains("$5\r\nproto\r\n:3\r\n$2\r\nid\r\n:"),
        "{hello}"
    );
    assert!(hello.ends_with(
        "$4\r\nmode\r\n$10\r\nstandalone\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n"
    ));
    // Integers, simple strings, bulk strings, errors: the same bytes as RESP2.
    assert_eq!(c.send("NEXT 1 1 10\r\nPEEK 1 1\r\n", 2), ":1\r\n:11\r\n");
    assert_eq!(c.send("PING\r\nECHO hi\r\n", 2), "+PONG\r\n$2\r\nhi\r\n");
    assert!(
        c.send("NEXT 1 x\r\n", 1)
            .starts_with("-ERR sequence must be")
    );
    // Null, map, set, verbatim text.
    assert_eq!(c.send("CLIENT GETNAME\r\n", 1), "_\r\n");
    assert_eq!(
        c.send("CONFIG GET appendonly\r\n", 1),
        "%1\r\n$10\r\nappendonly\r\n$3\r\nyes\r\n"
    );
    let info = c.send("COMMAND INFO next nosuch\r\n", 1);
    assert!(
        info.starts_with(
            "*2\r\n*10\r\n$4\r\nnext\r\n:-3\r\n~2\r\n+write\r\n+fast\r\n:1\r\n:1\r\n:1\r\n~2\r\n"
        ),
        "{info}"
    );
    assert!(
        info.ends_with("~0\r\n_\r\n"),
        "unknown names are null: {info}"
    );
    let text = c.send("INFO server\r\n", 1);
    assert!(text.starts_with('='), "{text}");
    assert!(
        text.contains("\r\ntxt:# Server\r\nredis_version:"),
        "{text}"
    );
    let me = c.send("CLIENT INFO\r\n", 1);
    assert!(me.contains("txt:id=") && me.contains(" resp=3 "), "{me}");
    let docs = c.send("COMMAND DOCS peek\r\n", 1);
    assert!(
        docs.starts_with("%1\r\n$4\r\npeek\r\n%5\r\n$7\r\nsummary\r\n"),
        "{docs}"
    );

    // Back to RESP2: the same questions, RESP2's shapes.
    let hello = c.send("HELLO 2 SETNAME me\r\n", 1);
    assert!(hello.starts_with("*14\r\n$6\r\nserver\r\n"), "{hello}");
    assert!(hello.contains("$5\r\nproto\r\n:2\r\n"), "{hello}");
    assert_eq!(c.send("CLIENT GETNAME\r\n", 1), "$2\r\nme\r\n");
    assert_eq!(
        c.send("CLIENT SETNAME x\r\nCLIENT GETNAME\r\n", 2),
        "+OK\r\n$1\r\nx\r\n"
    );
    assert_eq!(
        c.send("CONFIG GET appendonly\r\n", 1),
        "*2\r\n$10\r\nappendonly\r\n$3\r\nyes\r\n"
    );
    let text = c.send("INFO server\r\n", 1);
    assert!(
        text.starts_with('$') && text.contains("\r\n# Server\r\n"),
        "{text}"
    );
    let time = c.send("TIME\r\n", 1);
    assert!(time.starts_with("*2\r\n$10\r\n"), "{time}");
    // Protocol versions other than 2 and 3, as Redis refuses them.
    assert_eq!(
        c.send("HELLO 4\r\n", 1),
        "-NOPROTO unsupported protocol version\r\n"
    );
    assert_eq!(
        c.send("HELLO x\r\n", 1),
        "-ERR Protocol version is not an integer or out of range\r\n"
    );
    assert_eq!(
        c.send("SELECT 0\r\nSELECT 1\r\n", 2),
        "+OK\r\n-ERR DB index is out of range\r\n"
    );
    assert!(c.send("CLIENT ID\r\n", 1).starts_with(':'));
}

#[test]
fn multi_exec_runs_together_and_an_aborted_transaction_takes_nothing() {
    for mode in [DurabilityMode::Sync, DurabilityMode::Lease] {
        let (server, _b) = TestServer::memory(mode);
        let mut c = Raw::new(&server);
        // Queued over several reads; replies in one array at EXEC.
        assert_eq!(c.send("MULTI\r\n", 1), "+OK\r\n");
        assert_eq!(c.send("NEXT 1 1\r\n", 1), "+QUEUED\r\n");
        assert_eq!(
            c.send("NEXT 1 1 5\r\nPEEK 1 1\r\nNEXT 2 1\r\nPING\r\n", 4),
            "+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n"
        );
        assert_eq!(
            c.send("EXEC\r\n", 1),
            "*5\r\n:1\r\n:2\r\n:7\r\n:1\r\n+PONG\r\n",
            "{mode:?}"
        );
        // A command refused while queueing: EXECABORT, and nothing ran.
        let aborted = c.send("MULTI\r\nNEXT 3 1\r\nNEXT 3 x\r\nFOO\r\nEXEC\r\n", 5);
        assert!(
            aborted.starts_with("+OK\r\n+QUEUED\r\n-ERR sequence must be"),
            "{aborted}"
        );
        assert!(
            aborted.contains("\r\n-ERR Unknown command 'FOO'"),
            "{aborted}"
        );
        assert!(
            aborted
                .ends_with("\r\n-EXECABORT Transaction discarded because of previous errors.\r\n"),
            "{aborted}"
        );
        assert_eq!(
            c.send("PEEK 3 1\r\n", 1),
            ":1\r\n",
            "{mode:?}: nothing taken"
        );
        // DISCARD drops the queue.
        assert_eq!(
            c.send("MULTI\r\nNEXT 4 1\r\nDISCARD\r\nPEEK 4 1\r\n", 4),
            "+OK\r\n+QUEUED\r\n+OK\r\n:1\r\n"
        );
        // Redis's errors for misuse; the connection stays usable.
        assert_eq!(c.send("EXEC\r\n", 1), "-ERR EXEC without MULTI\r\n");
        assert_eq!(c.send("DISCARD\r\n", 1), "-ERR DISCARD without MULTI\r\n");
        assert_eq!(
            c.send("MULTI\r\nMULTI\r\nGETSEQ\r\nEXEC\r\n", 4),
            "+OK\r\n-ERR MULTI calls can not be nested\r\n+QUEUED\r\n*1\r\n:1\r\n"
        );
        assert!(
            c.send("WATCH 1\r\n", 1)
                .starts_with("-ERR WATCH is not supported")
        );
        assert_eq!(c.send("UNWATCH\r\n", 1), "+OK\r\n");
        // RESP3 changes nothing but the shapes inside.
        c.send("HELLO 3\r\n", 1);
        assert_eq!(
            c.send("MULTI\r\nCLIENT GETNAME\r\nGETSEQ\r\nEXEC\r\n", 4),
            "+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n_\r\n:2\r\n"
        );
        // QUIT inside a transaction runs at once.
        assert_eq!(c.send("MULTI\r\nQUIT\r\n", 2), "+OK\r\n+OK\r\n");
        assert!(c.closed());
    }
}

#[test]
fn inline_commands_unquote_as_redis_does() {
    let (server, _b) = TestServer::memory(DurabilityMode::Lease);
    let mut c = Raw::new(&server);
    assert_eq!(
        c.send("PING \"hello world\"\r\n", 1),
        "$11\r\nhello world\r\n"
    );
    assert_eq!(c.send("ECHO 'it\\'s' \r\n", 1), "$4\r\nit's\r\n");
    assert_eq!(c.send("ECHO \"a\\x41\\n\"\r\n", 1), "$3\r\naA\n\r\n");
    assert_eq!(c.send("NEXT \"5\" '1' 2\r\n", 1), ":1\r\n");
    assert_eq!(
        c.send("PING \"unbalanced\r\n", 1),
        "-ERR Protocol error: unbalanced quotes in request\r\n"
    );
    assert!(c.closed());
}

#[test]
fn hello_auth_is_checked_like_auth_on_every_connection() {
    let cfg = Config {
        auth_token: Some("s3cret".into()),
        ..config(DurabilityMode::Lease)
    };
    let server = TestServer::start(cfg, Arc::new(MemoryBackend::default()));
    let mut c = Raw::new(&server);
    assert!(
        c.send("HELLO 3\r\n", 1)
            .starts_with("-NOAUTH HELLO must be called with the client already authenticated")
    );
    assert_eq!(
        c.send("GETSEQ\r\n", 1),
        "-NOAUTH Authentication required.\r\n"
    );
    assert!(
        c.send("HELLO 3 AUTH default nope\r\n", 1)
            .starts_with("-WRONGPASS")
    );
    assert!(
        c.send("HELLO 3 AUTH default s3cret\r\n", 1)
            .starts_with("%7\r\n")
    );
    assert_eq!(c.send("GETSEQ\r\n", 1), ":1\r\n");
    // Authenticated already: a wrong password is still refused, and changes nothing.
    assert_eq!(
        c.send("HELLO 2 AUTH default wrongpass\r\n", 1),
        "-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    );
    assert!(c.send("AUTH wrong\r\n", 1).starts_with("-WRONGPASS"));
    assert_eq!(
        c.send("GETSEQ\r\n", 1),
        ":2\r\n",
        "still authenticated, still RESP3"
    );
    assert!(c.send("CLIENT GETNAME\r\n", 1) == "_\r\n");
    assert!(
        c.send("INFO stats\r\n", 1)
            .contains("\r\nauth_failures:3\r\n")
    );

    // Without a token the default user needs no password (as Redis's `nopass`).
    let (open, _b) = TestServer::memory(DurabilityMode::Lease);
    let mut c = Raw::new(&open);
    assert!(
        c.send("HELLO 3 AUTH default anything\r\n", 1)
            .starts_with("%7\r\n")
    );
    assert!(
        c.send("AUTH x\r\n", 1)
            .starts_with("-ERR AUTH <password> called without any password configured")
    );
    assert!(
        c.send("HELLO 3 AUTH alice x\r\n", 1)
            .starts_with("-WRONGPASS")
    );
}

#[test]
fn info_and_dbsize_describe_the_server() {
    for mode in [DurabilityMode::Sync, DurabilityMode::Lease] {
        let (server, _b) = TestServer::memory(mode);
        let mut c = Raw::new(&server);
        assert_eq!(c.send("DBSIZE\r\n", 1), ":0\r\n");
        assert_eq!(
            c.send("NEXT 1 1\r\nNEXT 1 2\r\nNEXT 2 1\r\n", 3),
            ":1\r\n:1\r\n:1\r\n"
        );
        assert_eq!(c.send("DBSIZE\r\n", 1), ":3\r\n", "{mode:?}");
        let info = c.send("INFO\r\n", 1);
        for want in [
            "# Server\r\nredis_version:7.2.0\r\n",
            "redis_mode:standalone\r\n",
            "# Clients\r\nconnected_clients:1\r\n",
            "# Stats\r\n",
            "# Persistence\r\nloading:0\r\n",
            "# Replication\r\nrole:master\r\n",
            "# Partitions\r\npartitions:2\r\npartition0:state=ready,ready=1,",
            "# Durability\r\n",
            "# Leases\r\n",
        ] {
            assert!(info.contains(want), "{mode:?}: {want:?} in {info}");
        }
        assert!(!info.contains("# Keyspace"), "not a default section");
        let keys = c.send("INFO keyspace\r\n", 1);
        assert!(
            keys.contains("# Keyspace\r\ndb0:keys=3,expires=0,avg_ttl=0\r\n"),
            "{keys}"
        );
        let two = c.send("INFO CLIENTS stats\r\n", 1);
        assert!(two.contains("# Clients") && two.contains("# Stats") && !two.contains("# Server"));
        assert!(two.contains("total_commands_processed:"), "{two}");
        // Pipelined with numbers: replies stay in order.
        let mixed = c.send("GETSEQ\r\nDBSIZE\r\nGETSEQ\r\n", 3);
        assert_eq!(mixed, ":1\r\n:4\r\n:2\r\n", "{mode:?}");
    }
}

#[test]
fn partly_received_requests_are_bounded_in_total() {
    let cfg = Config {
        max_pending_bytes: 100_000,
        ..config(DurabilityMode::Lease)
    };
    let server = TestServer::start(cfg, Arc::new(MemoryBackend::default()));
    let mut info = Raw::new(&server);
    let pending = |info: &mut Raw| -> u64 {
        let text = info.send("INFO clients\r\n", 1);
        let line = text
            .lines()
            .find(|l| l.starts_with("pending_bytes:"))
            .expect("pending_bytes in INFO clients");
        line["pending_bytes:".len()..].parse().unwrap()
    };
    // A: 50,000 bytes of a 60,000-byte argument.
    let mut a = Raw::new(&server);
    let head = "*2\r\n$4\r\nECHO\r\n$60000\r\n";
    a.s.write_all(head.as_bytes()).unwrap();
    a.s.write_all(&[b'a'; 50_000]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while pending(&mut info) < 30_000 {
        assert!(
            Instant::now() < deadline,
            "A's partial request was never charged"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // B: more than the rest of the budget, partly received: refused and closed.
    let mut b = Raw::new(&server);
    // (The server may close before it has read all of it: writes may fail.)
    let mut req = b"*3\r\n$4\r\nECHO\r\n$60000\r\n".to_vec();
    req.extend_from_slice(&[b'b'; 60_000]);
    req.extend_from_slice(b"\r\n$60000\r\n");
    req.extend_from_slice(&[b'b'; 30_000]);
    let _ = b.s.write_all(&req);
    let refused = String::from_utf8_lossy(&b.reply()).into_owned();
    assert!(
        refused.starts_with("-ERR Protocol error: the server holds too many partly received"),
        "{refused}"
    );
    assert!(b.closed());
    // A is unaffected: it finishes its request and gets its answer.
    a.s.write_all(&[b'a'; 10_000]).unwrap();
    a.s.write_all(b"\r\n").unwrap();
    let echoed = a.reply();
    assert!(echoed.starts_with(b"$60000\r\naaaa"), "{:?}", &echoed[..20]);
    // Returned when A's connection next sizes its buffer, just after it wrote the reply.
    let deadline = Instant::now() + Duration::from_secs(20);
    while pending(&mut info) != 0 {
        assert!(Instant::now() < deadline, "A's charge was never returned");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        metric(&server.metrics(), "seqd_pending_bytes_refusals_total"),
        1
    );
    // And the budget serves new connections again.
    let mut c = Raw::new(&server);
    assert_eq!(c.send("GETSEQ\r\n", 1), ":1\r\n");
}
