//! A full disk under the daemon: the data directory sits on a small tmpfs that the test fills
//! up. While it is full the daemon answers `-BUSY` and `/readyz` 503, acknowledges no number
//! it could not persist, and serves PEEK; once space returns it recovers on its own (the
//! storage reopens RocksDB, which refuses writes after an I/O error until reopened); nothing
//! acknowledged is handed out again; a restart reopens the database cleanly.
//!
//! Needs root (to mount a tmpfs). Elsewhere it is skipped with a message, unless
//! `SEQD_REQUIRE_TMPFS=1` (CI sets it), which turns "cannot mount" into a failure.
#![cfg(all(feature = "daemon", feature = "rocksdb"))]

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::process::Daemon;

/// A tmpfs of `size` mounted on a temp directory, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs { dir }),
            other => {
                let why = match other {
                    Ok(o) => String::from_utf8_lossy(&o.stderr).into_owned(),
                    Err(e) => e.to_string(),
                };
                assert!(
                    std::env::var("SEQD_REQUIRE_TMPFS").as_deref() != Ok("1"),
                    "cannot mount a tmpfs: {why}"
                );
                eprintln!("skipping the disk-full test: cannot mount a tmpfs ({why})");
                None
            }
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Fills the file system of `path` with one file; returns its path.
fn fill(dir: &Path) -> PathBuf {
    let filler = dir.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let chunk = vec![0xAAu8; 256 * 1024];
    while f.write_all(&chunk).is_ok() {}
    // The last bytes that fit.
    while f.write_all(&chunk[..512]).is_ok() {}
    let _ = f.sync_all();
    filler
}

fn http_status(admin: &str, path: &str) -> u16 {
    reqwest::blocking::get(format!("http://{admin}{path}"))
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

type Acked = HashMap<u64, u64>;

/// One pipeline of `NEXT ws 0` over `n` new workspaces from `*ws_next`: acknowledged numbers
/// are recorded; returns how many replies were -BUSY.
fn burst(con: &mut redis::Connection, ws_next: &mut u64, n: u64, acked: &mut Acked) -> u64 {
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    let first_ws = *ws_next;
    for i in 0..n {
        pipe.cmd("NEXT").arg(first_ws + i).arg(0).arg(3);
    }
    *ws_next += n;
    let replies: Vec<redis::Value> = pipe.query(con).expect("the connection survives");
    let mut busy = 0;
    for (i, v) in replies.into_iter().enumerate() {
        match v {
            redis::Value::Int(first) => {
                acked.insert(first_ws + i as u64, first as u64 + 2);
            }
            redis::Value::ServerError(e) => {
                assert_eq!(e.code(), "BUSY", "{e:?}");
                busy += 1;
            }
            other => panic!("unexpected reply {other:?}"),
        }
    }
    busy
}

fn run(mode: &str) {
    let Some(fs) = Tmpfs::mount("24m") else {
        return;
    };
    let data = fs.path().join("data");
    let d = Daemon::start(&data, mode, &[]);
    let mut con = d.ready();
    let mut acked = Acked::new();
    let mut ws_next = 1;
    assert_eq!(burst(&mut con, &mut ws_next, 100, &mut acked), 0);

    let filler = fill(fs.path());
    // Keep asking for new numbers until the disk refuses them (RocksDB's preallocated log may
    // take some writes first) and the daemon says so.
    let started = Instant::now();
    let mut busy = 0;
    let mut saw_503 = false;
    while busy < 200 || !saw_503 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{mode}: a full disk never showed (busy replies: {busy}, 503 seen: {saw_503})"
        );
        busy += burst(&mut con, &mut ws_next, 200, &mut acked);
        saw_503 |= http_status(&d.admin, "/readyz") == 503;
    }
    // Reads that need no write still answer (or say BUSY while the partition rebuilds).
    let peek: redis::RedisResult<u64> = redis::cmd("PEEK").arg(1).arg(0).query(&mut con);
    match peek {
        Ok(n) => assert!(n > acked[&1], "{mode}: PEEK {n}"),
        Err(e) => assert_eq!(e.code(), Some("BUSY"), "{mode}: {e}"),
    }

    // Space returns: the daemon recovers on its own.
    std::fs::remove_file(&filler).unwrap();
    let freed = Instant::now();
    while http_status(&d.admin, "/readyz") != 200 {
        assert!(
            freed.elapsed() < Duration::from_secs(60),
            "{mode}: not ready a minute after the disk has room"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    println!(
        "{mode}: ready {:?} after the disk has room",
        freed.elapsed()
    );
    let mut more = Acked::new();
    let recovered = Instant::now();
    loop {
        let busy = burst(&mut con, &mut ws_next, 50, &mut more);
        if busy == 0 {
            break;
        }
        assert!(
            recovered.elapsed() < Duration::from_secs(30),
            "{mode}: still BUSY after the disk has room"
        );
    }
    // Old keys continue above everything acknowledged.
    for ws in 1..=100u64 {
        let n: u64 = redis::cmd("NEXT").arg(ws).arg(0).query(&mut con).unwrap();
        assert!(n > acked[&ws], "{mode}: ws {ws} reissued {n}");
        acked.insert(ws, n);
    }
    acked.extend(more);
    drop(con);
    d.terminate();

    // The database reopens cleanly and nothing acknowledged comes back.
    let d = Daemon::start(&data, mode, &[]);
    let mut con = d.ready();
    let all: Vec<(u64, u64)> = acked.into_iter().collect();
    for chunk in all.chunks(1000) {
        let mut pipe = redis::pipe();
        for (ws, _) in chunk {
            pipe.cmd("PEEK").arg(*ws).arg(0);
        }
        let next: Vec<u64> = pipe.query(&mut con).unwrap();
        for ((ws, last), n) in chunk.iter().zip(next) {
            assert!(
                n > *last,
                "{mode}: ws {ws} would reissue {n} (acknowledged {last})"
            );
        }
    }
    drop(con);
    d.terminate();
}

#[test]
fn a_full_disk_answers_busy_and_recovers_on_its_own() {
    for mode in ["sync", "lease"] {
        run(mode);
    }
}
