//! The real binary under a low open-file limit (`prlimit --nofile=64`): it lowers
//! `--max-connections` to fit and says so; the connection past it gets Redis's error at once
//! instead of hanging; and when descriptors run out anyway (here: held by HTTP admin
//! connections) accepting backs off and logs, without spinning a core, and resumes when they
//! are freed.
#![cfg(all(feature = "daemon", feature = "rocksdb", target_os = "linux"))]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::process::Daemon;

const LIMIT: &str = "--nofile=64:64";

fn prlimit_works() -> bool {
    let ok = Command::new("prlimit")
        .args([LIMIT, "--", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("WARNING: prlimit (util-linux) is missing or fails here; skipping");
    }
    ok
}

/// Connects and sends PING; the first reply line, or `None` if nothing came within `wait`.
fn ping(port: u16, wait: Duration) -> (TcpStream, Option<String>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(wait)).unwrap();
    let _ = s.write_all(b"PING\r\n");
    let mut buf = [0u8; 256];
    let line = match s.read(&mut buf) {
        Ok(n) if n > 0 => Some(String::from_utf8_lossy(&buf[..n]).trim_end().to_owned()),
        _ => None,
    };
    (s, line)
}

/// The process's descriptors numbered below the limit of 64 (inherited ones above it do not
/// count against it).
fn low_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&fd| fd < 64)
        .count()
}

/// User + system CPU seconds the process has used (from /proc/PID/stat; 100 ticks a second).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = stat.rsplit(')').next().unwrap();
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

#[test]
fn a_low_open_file_limit_lowers_max_connections_and_never_hangs_a_client() {
    if !prlimit_works() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // One connection thread: its descriptors do not grow with this machine's cores.
    let d = Daemon::start_wrapped(
        &["prlimit", LIMIT, "--"],
        dir.path(),
        "lease",
        &["--io-threads", "1"],
    );
    d.wait_ready();
    let log = d.log().join("\n");
    let lowered = log
        .lines()
        .find(|l| l.contains("lowered --max-connections"))
        .unwrap_or_else(|| panic!("no warning about the limit in:\n{log}"));
    let allowed: usize = lowered
        .split("allowed=")
        .nth(1)
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no allowed= in {lowered}"));
    assert!((1..64).contains(&allowed), "{lowered}");

    // Up to the limit: served. One more: Redis's error at once, not silence.
    let mut held = Vec::new();
    for i in 0..allowed {
        let (s, line) = ping(d.port(), Duration::from_secs(10));
        assert_eq!(
            line.as_deref(),
            Some("+PONG"),
            "connection {i} of {allowed}"
        );
        held.push(s);
    }
    for _ in 0..3 {
        let (_s, line) = ping(d.port(), Duration::from_secs(10));
        assert_eq!(
            line.as_deref(),
            Some("-ERR max number of clients reached"),
            "past --max-connections ({allowed})"
        );
    }
    drop(held);
    // Until the server has closed them.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (mut s, line) = ping(d.port(), Duration::from_secs(10));
        if line.as_deref() == Some("+PONG") {
            let _ = s.write_all(b"INFO clients\r\n");
            let mut buf = [0u8; 1024];
            let n = s.read(&mut buf).unwrap_or(0);
            if String::from_utf8_lossy(&buf[..n]).contains("connected_clients:1\r\n") {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the closed connections stay open"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // Descriptors exhausted by other means: idle HTTP admin connections.
    let mut http = Vec::new();
    for _ in 0..64 {
        match TcpStream::connect(&d.admin) {
            Ok(s) => http.push(s),
            Err(_) => break,
        }
    }
    let admin_port = d.admin.rsplit(':').next().unwrap().to_owned();
    // Until the HTTP server holds every descriptor left (it retries its accepts each second).
    let deadline = Instant::now() + Duration::from_secs(30);
    while low_fds(d.pid()) < 64 {
        assert!(
            Instant::now() < deadline,
            "the admin connections never used up the limit"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let waiting = TcpStream::connect(("127.0.0.1", d.port())).expect("connect");
    // The accept loop backs off and says why; it does not spin.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !d
        .log()
        .iter()
        .any(|l| l.contains("cannot accept a connection"))
    {
        assert!(
            Instant::now() < deadline,
            "no accept warning with {} admin connections held (admin port {admin_port}); log:\n{}",
            http.len(),
            d.log().join("\n")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let before = cpu_seconds(d.pid());
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_seconds(d.pid()) - before;
    assert!(
        used < 1.0,
        "the server used {used:.2} s of CPU in 2 s while it could not accept: spinning"
    );
    // Freed: the waiting client is accepted and answered.
    drop(http);
    let mut waiting = waiting;
    waiting
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    waiting.write_all(b"PING\r\n").unwrap();
    let mut buf = [0u8; 64];
    let n = waiting.read(&mut buf).expect("the queued client is served");
    assert_eq!(&buf[..n], b"+PONG\r\n");
    d.terminate();
}
