//! `seqd serve`'s command line: clap's defaults are `Config::default()`, every flag has the
//! name `design/daemon.md` gives it and a `SEQD_*` variable that is honoured, the seed's
//! spellings parse, bad values are clear errors (never a panic); and the real binary started
//! with the seed's spellings.

#![cfg(feature = "daemon")]

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use clap::{CommandFactory, Parser};
use common::process::Daemon;
use seqd::daemon::{Config, DurabilityMode, LogFormat, StoreKind, VersionClockKind};

/// `seqd serve`'s flags, as the binary declares them (`Serve(Box<Config>)`).
#[derive(Parser, Debug)]
struct Serve {
    #[command(flatten)]
    config: Config,
}

fn parse(args: &[&str]) -> Result<Config, clap::Error> {
    Serve::try_parse_from(std::iter::once("serve").chain(args.iter().copied())).map(|s| s.config)
}

/// Every variable, with a value unlike its default.
const ENV: &[(&str, &str)] = &[
    ("SEQD_DATA_DIR", "/tmp/seqd-env"),
    ("SEQD_HOST", "0.0.0.0"),
    ("SEQD_PORT", "1"),
    ("SEQD_ADMIN_PORT", "2"),
    ("SEQD_PARTITIONS", "3"),
    ("SEQD_IO_THREADS", "4"),
    ("SEQD_INITIAL", "5"),
    ("SEQD_MAX_CONNECTIONS", "6"),
    ("SEQD_DURABILITY", "sync"),
    ("SEQD_AUTH_TOKEN", "t0ken"),
    ("SEQD_STORE", "memory"),
    ("SEQD_CACHE_CAPACITY", "7"),
    ("SEQD_MAX_UNFLUSHED", "8"),
    ("SEQD_MAX_LEASES", "9"),
    ("SEQD_LEASE_FLOOR", "13"),
    ("SEQD_REQUEST_TIMEOUT", "10"),
    ("SEQD_WRITE_TIMEOUT", "11"),
    ("SEQD_LOG_FORMAT", "json"),
    ("SEQD_VERSION_BASELINE", "12"),
    ("SEQD_VERSION_CLOCK", "micros"),
    ("SEQD_IO_SPIN_US", "12"),
    ("SEQD_MAX_PENDING_BYTES", "70000"),
    #[cfg(feature = "cluster")]
    ("SEQD_ETCD", "http://127.0.0.1:1,http://127.0.0.1:2"),
    #[cfg(feature = "cluster")]
    ("SEQD_CLUSTER", "c1"),
    #[cfg(feature = "cluster")]
    ("SEQD_NODE_ID", "n1"),
    #[cfg(feature = "cluster")]
    ("SEQD_ADVERTISE", "10.0.0.1:7"),
    #[cfg(feature = "cluster")]
    ("SEQD_ROLES", "gateway"),
    #[cfg(feature = "cluster")]
    ("SEQD_ROUTING", "redirect"),
    #[cfg(feature = "cluster")]
    ("SEQD_LEASE_TTL", "3"),
    #[cfg(feature = "cluster")]
    ("SEQD_ETCD_TIMEOUT_MS", "500"),
    #[cfg(feature = "cluster")]
    ("SEQD_ETCD_MAX_TXN_OPS", "64"),
];

/// The configuration `ENV` describes.
fn from_env() -> Config {
    Config {
        data_dir: PathBuf::from("/tmp/seqd-env"),
        host: "0.0.0.0".into(),
        port: 1,
        admin_port: 2,
        partitions: Some(3),
        io_threads: Some(4),
        io_spin_us: 12,
        initial: 5,
        max_connections: 6,
        durability: DurabilityMode::Sync,
        auth_token: Some("t0ken".into()),
        store: StoreKind::Memory,
        cache_capacity: 7,
        max_unflushed: 8,
        max_leases: 9,
        lease_floor: 13,
        max_pending_bytes: 70_000,
        request_timeout_secs: 10,
        write_timeout_secs: 11,
        version_baseline: 12,
        version_clock: VersionClockKind::Micros,
        log_format: LogFormat::Json,
        #[cfg(feature = "cluster")]
        cluster: seqd::daemon::ClusterConfig {
            etcd: vec!["http://127.0.0.1:1".into(), "http://127.0.0.1:2".into()],
            cluster: "c1".into(),
            node_id: Some("n1".into()),
            advertise: Some("10.0.0.1:7".into()),
            roles: vec!["gateway".into()],
            routing: seqd::daemon::Routing::Redirect,
            lease_ttl_secs: 3,
            etcd_timeout_ms: 500,
            etcd_max_txn_ops: 64,
        },
    }
}

#[test]
fn clap_defaults_are_config_default() {
    let set: Vec<_> = ENV
        .iter()
        .filter(|(k, _)| std::env::var_os(k).is_some())
        .collect();
    assert!(set.is_empty(), "unset {set:?} to run this test");
    let parsed = parse(&[]).unwrap();
    assert_eq!(parsed, Config::default());
    assert_eq!(parsed.data_dir, PathBuf::from("./seqd-data"));
    assert_eq!((parsed.host.as_str(), parsed.port), ("127.0.0.1", 10001));
    assert_eq!(parsed.admin_port, 10080);
    assert_eq!(parsed.durability, DurabilityMode::Lease);
    let cores = std::thread::available_parallelism().unwrap().get();
    assert_eq!(usize::from(parsed.partition_count()), cores);
}

/// The flags `design/daemon.md`'s Configuration section names.
fn documented_flags() -> BTreeSet<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/design/daemon.md");
    let doc = std::fs::read_to_string(path).unwrap();
    let section = doc.split("## Configuration").nth(1).unwrap();
    let section = section.split("\n## ").next().unwrap();
    section
        .split("--")
        .skip(1)
        .map(|s| {
            s.chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '-')
        })
        .map(|name| name.collect::<String>())
        .filter(|name| !name.is_empty() && name != "help")
        .collect()
}

#[test]
fn every_flag_has_its_documented_name_and_a_variable() {
    let cmd = Serve::command();
    let args: Vec<_> = cmd
        .get_arguments()
        .filter(|a| a.get_long().is_some())
        .collect();
    let flags: BTreeSet<String> = args
        .iter()
        .filter_map(|a| a.get_long())
        .filter(|l| *l != "help")
        .map(String::from)
        .collect();
    assert_eq!(
        flags,
        documented_flags(),
        "clap's flags vs design/daemon.md"
    );
    // SPEC §3's flags.
    for spec in [
        "data-dir",
        "host",
        "port",
        "admin-port",
        "partitions",
        "initial",
        "max-connections",
        "durability",
        "auth-token",
    ] {
        assert!(flags.contains(spec), "--{spec} missing");
    }
    let vars: BTreeSet<String> = args
        .iter()
        .filter_map(|a| a.get_env())
        .map(|e| e.to_string_lossy().into_owned())
        .collect();
    let listed: BTreeSet<String> = ENV.iter().map(|(k, _)| k.to_string()).collect();
    assert_eq!(
        vars, listed,
        "every flag has a SEQD_* variable, and ENV lists them all"
    );
    let timeouts = parse(&["--request-timeout", "3", "--write-timeout", "4"]).unwrap();
    assert_eq!(
        (timeouts.request_timeout_secs, timeouts.write_timeout_secs),
        (3, 4)
    );
}

#[test]
fn every_seqd_variable_is_honoured() {
    // The environment is the process's: parse it in a child (this test binary, running
    // `env_child` only) with every variable set.
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "env_child", "--ignored", "--nocapture"])
        .envs(ENV.iter().copied())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("1 passed"), "the child ran: {stdout}");
}

#[test]
#[ignore = "run by every_seqd_variable_is_honoured, with every SEQD_* variable set"]
fn env_child() {
    assert_eq!(parse(&[]).unwrap(), from_env());
    // A flag beats its variable.
    assert_eq!(parse(&["--port", "99"]).unwrap().port, 99);
}

#[test]
fn the_seed_spellings_parse() {
    let c = parse(&[
        "--initial=1000",
        "--port=7000",
        "--host=127.0.0.2",
        "--max-connections=3",
    ])
    .unwrap();
    assert_eq!(
        (c.initial, c.port, c.host.as_str(), c.max_connections),
        (1000, 7000, "127.0.0.2", 3)
    );
}

#[test]
fn bad_values_are_clear_errors() {
    for (args, want) in [
        (
            &["--port", "abc"][..],
            "invalid value 'abc' for '--port <PORT>'",
        ),
        (&["--port=70000"], "70000 is not in 0..=65535"),
        (
            &["--initial=-1"],
            "invalid value '-1' for '--initial <INITIAL>'",
        ),
        (&["--max-connections=x"], "invalid value 'x'"),
        (&["--durability", "fast"], "[possible values: sync, lease]"),
        (&["--log-format", "xml"], "[possible values: human, json]"),
        (&["--request-timeout-secs", "3"], "unexpected argument"),
    ] {
        let e = parse(args).expect_err(&format!("{args:?} must be refused"));
        assert!(e.to_string().contains(want), "{args:?}: {e}");
    }
    // Values clap accepts and the daemon does not: `validate` names the flag.
    for (args, want) in [
        (&["--partitions", "0"][..], "--partitions must be >= 1"),
        (&["--initial=0"], "--initial must be >= 1"),
        (&["--write-timeout", "0"], "--write-timeout must be >= 1"),
        (&["--io-spin-us", "20000"], "--io-spin-us must be <= 10000"),
        (&["--auth-token="], "--auth-token must not be empty"),
    ] {
        let e = parse(args).unwrap().validate().expect_err("refused");
        assert!(e.to_string().contains(want), "{args:?}: {e}");
    }
}

#[test]
fn the_binary_refuses_bad_flags_with_a_message() {
    for (args, code, want) in [
        (&["--port", "abc"][..], 2, "invalid value 'abc'"),
        (
            &["--store", "memory", "--partitions", "0"],
            1,
            "--partitions must be >= 1",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_seqd"))
            .arg("serve")
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[test]
fn the_binary_serves_with_the_seed_spellings() {
    let dir = tempfile::tempdir().unwrap();
    let seed = [
        "--store=memory",
        "--initial=1000",
        "--host=127.0.0.1",
        "--max-connections=3",
    ];
    let d = Daemon::start(dir.path(), "lease", &seed);
    let mut cons: Vec<_> = (0..3).map(|_| d.ready()).collect();
    let first: u64 = redis::cmd("GETSEQ").query(&mut cons[0]).unwrap();
    assert_eq!(first, 1000);
    for con in &mut cons[1..] {
        let pong: String = redis::cmd("PING").query(con).unwrap();
        assert_eq!(pong, "PONG");
    }
    // A fourth connection is refused with Redis's error, and closed.
    use std::io::{Read, Write};
    let mut fourth = std::net::TcpStream::connect(&d.addr).unwrap();
    fourth
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = fourth.write_all(b"GETSEQ\r\n");
    let mut reply = String::new();
    let _ = fourth.read_to_string(&mut reply);
    assert_eq!(reply, "-ERR max number of clients reached\r\n");
    let next: u64 = redis::cmd("GETSEQ").query(&mut cons[2]).unwrap();
    assert_eq!(next, 1001, "the three others are still served");
    drop(cons);
    d.terminate();
}
