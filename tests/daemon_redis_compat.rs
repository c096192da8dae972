//! What Redis clients send besides the sequence commands, through a real client (the `redis`
//! crate) against a real server: `COMMAND COUNT`, `CONFIG GET`, `AUTH user pass`,
//! `HELLO 2 AUTH`, `CLIENT SETNAME/SETINFO`; and an inline request over the argument limit,
//! which closes only its own connection.

#![cfg(feature = "daemon")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::daemon::{TestServer, config, next};
use seqd::daemon::{Config, DurabilityMode, MemoryBackend};

fn err_of<T: std::fmt::Debug>(r: redis::RedisResult<T>) -> String {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => format!("{} {}", e.code().unwrap_or("?"), e.detail().unwrap_or("")),
    }
}

#[test]
fn command_and_config_answer_what_clients_ask_on_connect() {
    for (mode, fsync) in [
        (DurabilityMode::Sync, "always"),
        (DurabilityMode::Lease, "lease"),
    ] {
        let (server, _b) = TestServer::memory(mode);
        let mut con = server.redis();
        let count: i64 = redis::cmd("COMMAND").arg("COUNT").query(&mut con).unwrap();
        assert_eq!(count, 25, "seqd's commands, as COMMAND lists them");
        let all: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("*")
            .query(&mut con)
            .unwrap();
        let want = [
            "save",
            "",
            "appendonly",
            "yes",
            "appendfsync",
            fsync,
            "databases",
            "1",
            "maxclients",
        ];
        assert_eq!(all[..want.len()], want, "{mode:?}");
        let port: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("po?t")
            .arg("max*")
            .query(&mut con)
            .unwrap();
        assert_eq!(port.len(), 4, "{port:?}");
        assert_eq!(port[2..], ["port", &server.addr.port().to_string()]);
        let save: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("save")
            .query(&mut con)
            .unwrap();
        assert_eq!(save, ["save", ""]);
        let none: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("maxmemory")
            .query(&mut con)
            .unwrap();
        assert!(none.is_empty(), "{none:?}");
        let e = err_of(
            redis::cmd("CONFIG")
                .arg("SET")
                .arg("save")
                .arg("")
                .query::<()>(&mut con),
        );
        assert!(e.contains("only CONFIG GET"), "{e}");
        let ok: String = redis::cmd("CLIENT")
            .arg("SETNAME")
            .arg("x")
            .query(&mut con)
            .unwrap();
        assert_eq!(ok, "OK");
        let ok: String = redis::cmd("CLIENT")
            .arg("SETINFO")
            .arg("lib-name")
            .arg("seqd-test")
            .query(&mut con)
            .unwrap();
        assert_eq!(ok, "OK");
        let e = err_of(
            redis::cmd("CLIENT")
                .arg("KILL")
                .arg("x")
                .query::<()>(&mut con),
        );
        assert!(
            e.contains("unknown subcommand 'KILL'. Try CLIENT HELP."),
            "{e}"
        );
        assert_eq!(
            next(&mut con, 0, 0, 1).unwrap(),
            1,
            "{mode:?}: still serving"
        );
    }
}

#[test]
fn auth_with_a_user_and_hello_auth() {
    let cfg = Config {
        auth_token: Some("s3cret".into()),
        ..config(DurabilityMode::Lease)
    };
    let server = TestServer::start(cfg, Arc::new(MemoryBackend::default()));
    let mut con = server.redis();
    assert!(err_of(next(&mut con, 0, 0, 1)).starts_with("NOAUTH"));
    // Redis 6 users: only `default` exists.
    let wrong_user = redis::cmd("AUTH")
        .arg("alice")
        .arg("s3cret")
        .query::<String>(&mut con);
    assert!(err_of(wrong_user).starts_with("WRONGPASS"));
    let wrong_pass = redis::cmd("AUTH")
        .arg("default")
        .arg("nope")
        .query::<String>(&mut con);
    assert!(err_of(wrong_pass).starts_with("WRONGPASS"));
    assert!(
        err_of(next(&mut con, 0, 0, 1)).starts_with("NOAUTH"),
        "still not authenticated"
    );
    let ok: String = redis::cmd("AUTH")
        .arg("default")
        .arg("s3cret")
        .query(&mut con)
        .unwrap();
    assert_eq!(ok, "OK");
    assert_eq!(next(&mut con, 0, 0, 1).unwrap(), 1);

    // HELLO 2 AUTH on a fresh connection: the server map, and authenticated.
    let mut con = server.redis();
    let mut bad = redis::cmd("HELLO");
    bad.arg(2).arg("AUTH").arg("alice").arg("s3cret");
    assert!(err_of(bad.query::<redis::Value>(&mut con)).starts_with("WRONGPASS"));
    let hello: Vec<redis::Value> = redis::cmd("HELLO")
        .arg(2)
        .arg("AUTH")
        .arg("default")
        .arg("s3cret")
        .arg("SETNAME")
        .arg("x")
        .query(&mut con)
        .unwrap();
    assert_eq!(hello.len(), 14);
    assert_eq!(hello[0], redis::Value::BulkString(b"server".to_vec()));
    assert_eq!(hello[1], redis::Value::BulkString(b"seqd".to_vec()));
    assert_eq!(next(&mut con, 0, 0, 1).unwrap(), 2);
    // The redis crate's own handshake with a user name in the URL.
    let url = format!("redis://default:s3cret@{}/", server.addr);
    let mut con = redis::Client::open(url).unwrap().get_connection().unwrap();
    assert_eq!(next(&mut con, 0, 0, 1).unwrap(), 3);
}

#[test]
fn an_inline_request_over_the_argument_limit_closes_only_its_connection() {
    let (server, _b) = TestServer::memory(DurabilityMode::Lease);
    let mut healthy = server.redis();
    assert_eq!(next(&mut healthy, 5, 5, 1).unwrap(), 1);
    let mut line = b"NEXT".to_vec();
    for _ in 0..seqd::daemon::protocol::MAX_ARGS {
        line.extend_from_slice(b" 1");
    }
    line.extend_from_slice(b"\r\nGETSEQ\r\n");
    let out = String::from_utf8_lossy(&server.raw(&line, Duration::from_secs(2))).to_string();
    assert_eq!(
        out, "-ERR Protocol error: too many arguments in inline request (more than 64)\r\n",
        "answered, then closed: the GETSEQ behind it is not read"
    );
    assert_eq!(
        next(&mut healthy, 5, 5, 1).unwrap(),
        2,
        "others are unaffected"
    );
    assert_eq!(
        next(&mut server.redis(), 0, 0, 1).unwrap(),
        1,
        "new connections too"
    );
}
