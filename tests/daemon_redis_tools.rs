//! Redis's own clients, unchanged, against the real `seqd serve` (the "done when":
//! `redis-cli -p PORT GETSEQ`): `redis-cli` for every command and `redis-benchmark` with a
//! pipelined load. Both come with Debian's `redis-tools`; where they are missing the test is
//! skipped with a warning, unless `SEQD_REQUIRE_REDIS_TOOLS=1` (CI) makes that a failure.
#![cfg(all(feature = "daemon", feature = "rocksdb"))]

mod common;

use std::process::Command;

use common::process::Daemon;

/// Whether `program` runs here; panics if it does not and CI requires it.
fn available(program: &str) -> bool {
    let found = Command::new(program).arg("--version").output().is_ok();
    if !found {
        assert!(
            std::env::var("SEQD_REQUIRE_REDIS_TOOLS").as_deref() != Ok("1"),
            "{program} is not installed and SEQD_REQUIRE_REDIS_TOOLS=1: \
             apt-get install redis-tools"
        );
        eprintln!("WARNING: {program} is not installed; skipping (apt-get install redis-tools)");
    }
    found
}

/// Runs `program -p PORT args...`; its exit status must be 0; its stdout.
fn run(program: &str, port: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(["-h", "127.0.0.1", "-p", port])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{program} {args:?}: {stdout}\n{stderr}"
    );
    stdout
}

#[test]
fn redis_cli_and_redis_benchmark_run_unchanged() {
    if !(available("redis-cli") && available("redis-benchmark")) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), "lease", &[]);
    d.wait_ready();
    let port = d.addr.rsplit(':').next().unwrap().to_string();
    // Not a terminal: redis-cli prints bare values.
    let cli = |args: &[&str]| run("redis-cli", &port, args).trim().to_string();
    assert_eq!(cli(&["GETSEQ"]), "1");
    assert_eq!(cli(&["NEXT", "42", "5", "10"]), "1");
    assert_eq!(cli(&["PEEK", "42", "5"]), "11");
    assert_eq!(cli(&["PING"]), "PONG");
    assert_eq!(cli(&["CURRENT"]), "2");
    assert!(cli(&["NEXT", "1", "x"]).contains("sequence must be an integer"));

    let bench = run(
        "redis-benchmark",
        &port,
        &["-c", "4", "-n", "2000", "-P", "4", "-q", "GETSEQ"],
    );
    assert!(bench.contains("requests per second"), "{bench}");
    let next: u64 = cli(&["GETSEQ"]).parse().unwrap();
    assert!(
        next > 2000,
        "redis-benchmark's 2000 GETSEQ took numbers: next is {next}"
    );
    d.terminate();
}
