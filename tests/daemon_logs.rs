//! The binary's log on stderr: one JSON object per line with `--log-format json` (level and
//! message included), human-readable lines by default.

#![cfg(feature = "daemon")]

mod common;

use std::time::Duration;

use common::process::Daemon;

/// Starts `seqd serve` (memory store) with `extra` flags, stops it gracefully, and returns
/// every line it logged.
fn log_of_a_run(extra: &[&str]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec!["--store", "memory"];
    args.extend_from_slice(extra);
    let mut d = Daemon::start(dir.path(), "lease", &args);
    let n: u64 = redis::cmd("GETSEQ").query(&mut d.ready()).unwrap();
    assert_eq!(n, 1);
    d.signal(&["TERM"]);
    let (status, _) = d.wait_exit(Duration::from_secs(30)).expect("exit");
    assert!(status.success(), "{status:?}");
    let mut log = Vec::new();
    // The reader thread may still be taking the last lines off the pipe.
    common::eventually("the last line logged", || {
        log = d.log();
        log.iter().any(|l| l.contains("stopped"))
    });
    log
}

#[test]
fn json_logs_are_one_object_per_line_with_level_and_message() {
    let log = log_of_a_run(&["--log-format", "json"]);
    let mut messages = Vec::new();
    for line in &log {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(v.is_object(), "{line}");
        let level = v["level"]
            .as_str()
            .unwrap_or_else(|| panic!("no level: {line}"));
        assert!(
            ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"].contains(&level),
            "{line}"
        );
        let message = v["fields"]["message"].as_str();
        messages.push(
            message
                .unwrap_or_else(|| panic!("no message: {line}"))
                .to_string(),
        );
    }
    for want in ["starting", "protocol listening on 127.0.0.1:", "stopped"] {
        assert!(
            messages.iter().any(|m| m.contains(want)),
            "{want}: {messages:?}"
        );
    }
}

#[test]
fn human_logs_are_the_default() {
    let log = log_of_a_run(&[]);
    assert!(
        log.iter().any(|l| l.contains("protocol listening on")),
        "{log:?}"
    );
    for line in &log {
        assert!(
            serde_json::from_str::<serde_json::Value>(line).is_err(),
            "JSON: {line}"
        );
        assert!(line.contains(" INFO ") || line.contains(" WARN "), "{line}");
    }
}
