//! The real `seqd serve` binary as a child process on `127.0.0.1`, ports picked by the OS:
//! start, wait for readiness, stop gracefully (SIGTERM) or crash it (SIGKILL).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub struct Daemon {
    child: Child,
    /// The protocol address, `127.0.0.1:port`.
    pub addr: String,
    /// The HTTP admin address.
    pub admin: String,
    started: Instant,
}

impl Daemon {
    /// `seqd serve` on `dir` in durability `mode` with two partitions, plus `extra` flags.
    pub fn start(dir: &Path, mode: &str, extra: &[&str]) -> Daemon {
        let started = Instant::now();
        let mut child = Command::new(env!("CARGO_BIN_EXE_seqd"))
            .args([
                "serve",
                "--port",
                "0",
                "--admin-port",
                "0",
                "--partitions",
                "2",
            ])
            .arg("--durability")
            .arg(mode)
            .arg("--data-dir")
            .arg(dir)
            .args(extra)
            .env("SEQD_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn seqd");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        // SEQD_TEST_LOG=1 shows the daemon's log with the test's output.
        let echo = std::env::var("SEQD_TEST_LOG").as_deref() == Ok("1");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if echo {
                    eprintln!("seqd: {line}");
                }
                for (what, marker) in [
                    ("addr", "protocol listening on "),
                    ("admin", "http admin listening on "),
                ] {
                    if let Some(addr) = line.split(marker).nth(1) {
                        let _ = tx.send((what, addr.trim().to_string()));
                    }
                }
            }
        });
        let (mut addr, mut admin) = (None, None);
        while addr.is_none() || admin.is_none() {
            let (what, a) = rx
                .recv_timeout(Duration::from_secs(60))
                .expect("seqd did not start listening");
            if what == "addr" {
                addr = Some(a);
            } else {
                admin = Some(a);
            }
        }
        Daemon {
            child,
            addr: addr.unwrap_or_default(),
            admin: admin.unwrap_or_default(),
            started,
        }
    }

    /// A connection whose reads give up after 60 s, so a hung server fails the test.
    pub fn redis(&self) -> redis::Connection {
        let client = redis::Client::open(format!("redis://{}/", self.addr)).unwrap();
        let con = client.get_connection().unwrap();
        con.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        con
    }

    /// Waits until `/readyz` says every partition recovered; the time since the spawn.
    pub fn wait_ready(&self) -> Duration {
        super::daemon::wait_readyz(&self.admin);
        self.started.elapsed()
    }

    /// A connection once the daemon is ready.
    pub fn ready(&self) -> redis::Connection {
        self.wait_ready();
        self.redis()
    }

    /// SIGTERM; asserts a clean exit (status 0).
    pub fn terminate(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let exit = self.child.wait().unwrap();
        assert!(exit.success(), "graceful shutdown exits 0: {exit:?}");
    }

    /// SIGKILL: a crash.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
