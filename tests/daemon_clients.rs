//! The client matrix: the client libraries people use, each at its default settings, against
//! the real `seqd serve` on RocksDB — redis-py, node-redis and ioredis (the scripts in
//! `tests/clients/`), the Rust `redis` crate in RESP2 and RESP3, `redis-cli` in `-2`, `-3`
//! and `--pipe` modes, and `redis-benchmark` with a password in both protocols. Each connects, takes numbers (`NEXT`, `GETSEQ`), pipelines, runs its
//! default transaction (`MULTI`/`EXEC`, and one that aborts and takes nothing), reads an error
//! reply, with authentication on and off.
//!
//! The libraries come from `$SEQD_CLIENTS_DIR` (`.ci/run` installs them, see
//! `tests/clients/README.md`); where they or `redis-cli` are missing the cases are skipped
//! with a warning, unless `SEQD_REQUIRE_CLIENTS=1` (CI) makes that a failure.
#![cfg(all(feature = "daemon", feature = "rocksdb"))]

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use common::process::Daemon;

const TOKEN: &str = "s3cret-token";

fn required() -> bool {
    std::env::var("SEQD_REQUIRE_CLIENTS").as_deref() == Ok("1")
}

fn skip(what: &str) {
    assert!(
        !required(),
        "{what} is missing and SEQD_REQUIRE_CLIENTS=1 (see tests/clients/README.md)"
    );
    eprintln!("WARNING: {what} is missing; skipping (see tests/clients/README.md)");
}

fn clients_dir() -> PathBuf {
    std::env::var_os("SEQD_CLIENTS_DIR").map_or_else(
        || {
            let home = std::env::var_os("HOME").unwrap_or_default();
            PathBuf::from(home).join(".cache/seqd-clients")
        },
        PathBuf::from,
    )
}

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients")
        .join(name)
}

/// Runs one client script against `d`; false if its library is not installed.
fn run_script(d: &Daemon, interpreter: &str, name: &str, auth: Option<&str>) -> bool {
    let dir = clients_dir();
    let mut cmd = Command::new(interpreter);
    cmd.arg(script(name))
        .env("SEQD_PORT", d.port().to_string())
        .env("PYTHONPATH", dir.join("py"))
        .env("SEQD_NODE_MODULES", dir.join("node/node_modules"))
        .env_remove("SEQD_FAKE_REDIS");
    match auth {
        Some(token) => cmd.env("SEQD_AUTH", token),
        None => cmd.env_remove("SEQD_AUTH"),
    };
    let out = match cmd.output() {
        Ok(out) => out,
        Err(e) => {
            skip(&format!("{interpreter} ({e})"));
            return false;
        }
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    match out.status.code() {
        Some(0) => true,
        Some(3) => {
            skip(&format!("the library behind {name}: {text}"));
            false
        }
        _ => panic!(
            "{name} (auth {}) failed: {:?}\n{text}\nseqd log:\n{}",
            auth.is_some(),
            out.status,
            d.log().join("\n")
        ),
    }
}

#[test]
fn redis_py_node_redis_and_ioredis_at_their_defaults() {
    for (mode, auth) in [("lease", None), ("sync", Some(TOKEN))] {
        let dir = tempfile::tempdir().unwrap();
        let extra: Vec<&str> = auth.map(|t| vec!["--auth-token", t]).unwrap_or_default();
        let d = Daemon::start(dir.path(), mode, &extra);
        d.wait_ready();
        for (interpreter, name) in [
            ("python3", "redis_py.py"),
            ("node", "node_redis.mjs"),
            ("node", "ioredis.mjs"),
        ] {
            run_script(&d, interpreter, name, auth);
        }
        d.terminate();
    }
}

#[test]
fn the_redis_crate_in_resp2_and_resp3() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), "lease", &["--auth-token", TOKEN]);
    d.wait_ready();
    for (i, query) in ["", "?protocol=resp3"].into_iter().enumerate() {
        let ws = 100 + i as u64;
        let url = format!("redis://default:{TOKEN}@{}/{query}", d.addr);
        let mut con = redis::Client::open(url).unwrap().get_connection().unwrap();
        let first: u64 = redis::cmd("NEXT").arg(ws).arg(1).query(&mut con).unwrap();
        assert_eq!(first, 1, "{query}");
        let a: u64 = redis::cmd("GETSEQ").query(&mut con).unwrap();
        let b: u64 = redis::cmd("GETSEQ").query(&mut con).unwrap();
        assert_eq!(b, a + 1);
        // A plain pipeline and the transactional one (MULTI/EXEC).
        let mut pipe = redis::pipe();
        for _ in 0..50 {
            pipe.cmd("NEXT").arg(ws).arg(2);
        }
        let got: Vec<u64> = pipe.query(&mut con).unwrap();
        assert_eq!(got, (1..=50).collect::<Vec<u64>>(), "{query}");
        let (x, y): (u64, u64) = redis::pipe()
            .atomic()
            .cmd("NEXT")
            .arg(ws)
            .arg(3)
            .arg(10)
            .cmd("PEEK")
            .arg(ws)
            .arg(3)
            .query(&mut con)
            .unwrap();
        assert_eq!((x, y), (1, 11), "{query}");
        let aborted: redis::RedisResult<(u64, u64)> = redis::pipe()
            .atomic()
            .cmd("NEXT")
            .arg(ws)
            .arg(4)
            .cmd("NEXT")
            .arg(ws)
            .arg("x")
            .query(&mut con);
        assert!(aborted.is_err(), "{query}: {aborted:?}");
        let peek: u64 = redis::cmd("PEEK").arg(ws).arg(4).query(&mut con).unwrap();
        assert_eq!(peek, 1, "{query}: the aborted transaction took nothing");
        // An error reply, and the types RESP3 changes.
        let e = redis::cmd("NEXT")
            .arg(ws)
            .arg("x")
            .query::<u64>(&mut con)
            .unwrap_err();
        assert!(e.to_string().contains("sequence must be"), "{e}");
        let name: Option<String> = redis::cmd("CLIENT").arg("GETNAME").query(&mut con).unwrap();
        assert_eq!(name, None);
        let config: std::collections::HashMap<String, String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("append*")
            .query(&mut con)
            .unwrap();
        assert_eq!(config.get("appendonly").map(String::as_str), Some("yes"));
        let info: String = redis::cmd("INFO").query(&mut con).unwrap();
        assert!(
            info.contains("redis_version:") && info.contains("loading:0"),
            "{info}"
        );
        let me: String = redis::cmd("CLIENT").arg("INFO").query(&mut con).unwrap();
        let resp = if query.is_empty() { "resp=2" } else { "resp=3" };
        assert!(me.contains(resp), "{me}");
    }
    // Authentication off for a client without the password.
    let mut anonymous = d.redis();
    let e = redis::cmd("GETSEQ")
        .query::<u64>(&mut anonymous)
        .unwrap_err();
    assert_eq!(e.code(), Some("NOAUTH"), "{e}");
    d.terminate();
}

/// `redis-cli` with `args` on `d`; its stdout and stderr, None if it is not installed.
fn cli(d: &Daemon, args: &[&str], stdin: Option<&[u8]>) -> Option<(String, String)> {
    let mut child = match Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &d.port().to_string()])
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(_) => {
            skip("redis-cli (apt-get install redis-tools)");
            return None;
        }
    };
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "redis-cli {args:?}: {stdout}\n{stderr}"
    );
    Some((stdout, stderr))
}

#[test]
fn redis_cli_in_resp2_resp3_and_pipe_mode() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), "lease", &[]);
    d.wait_ready();
    let Some((out, _)) = cli(&d, &["-2", "NEXT", "1", "1", "5"], None) else {
        return;
    };
    assert_eq!(out.trim(), "1");
    // RESP3: HELLO 3 succeeds (redis-cli warns when it does not), replies print by type.
    let (out, err) = cli(&d, &["-3", "--no-raw", "CONFIG", "GET", "appendonly"], None).unwrap();
    assert!(!err.contains("HELLO"), "{err}");
    assert_eq!(out.trim(), "1# \"appendonly\" => \"yes\"");
    let (out, _) = cli(&d, &["-3", "--no-raw", "CLIENT", "GETNAME"], None).unwrap();
    assert_eq!(out.trim(), "(nil)");
    let (out, _) = cli(&d, &["-3", "--no-raw", "NEXT", "1", "1"], None).unwrap();
    assert_eq!(out.trim(), "(integer) 6");
    let (out, _) = cli(&d, &["-3", "NEXT", "1", "x"], None).unwrap();
    assert!(out.contains("ERR sequence must be"), "{out}");
    // --pipe: raw protocol from stdin, then its ECHO of a random marker to know it is done.
    let mut input = Vec::new();
    for _ in 0..1000 {
        input.extend_from_slice(b"*3\r\n$4\r\nNEXT\r\n$1\r\n5\r\n$1\r\n1\r\n");
    }
    let (out, err) = cli(&d, &["--pipe"], Some(&input)).unwrap();
    let all = format!("{out}{err}");
    assert!(all.contains("errors: 0, replies: 1000"), "{all}");
    let (out, _) = cli(&d, &["PEEK", "5", "1"], None).unwrap();
    assert_eq!(out.trim(), "1001");
    d.terminate();

    // Authentication on: -a, in both protocols.
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), "sync", &["--auth-token", TOKEN]);
    d.wait_ready();
    for proto in ["-2", "-3"] {
        let (out, _) = cli(
            &d,
            &[proto, "-a", TOKEN, "--no-auth-warning", "GETSEQ"],
            None,
        )
        .unwrap();
        assert!(out.trim().parse::<u64>().is_ok(), "{proto}: {out}");
        let (out, _) = cli(&d, &[proto, "GETSEQ"], None).unwrap();
        assert!(out.contains("NOAUTH"), "{proto}: {out}");
    }
    // redis-benchmark with the password, in RESP2 and RESP3.
    let port = d.port().to_string();
    for proto in [None, Some("-3")] {
        let out = Command::new("redis-benchmark")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-a",
                TOKEN,
                "-c",
                "4",
                "-n",
                "2000",
            ])
            .args(["-P", "4", "-q"])
            .args(proto)
            .arg("GETSEQ")
            .output()
            .expect("redis-benchmark (apt-get install redis-tools)");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("requests per second"),
            "redis-benchmark {proto:?}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    d.terminate();
}
