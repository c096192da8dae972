//! The real `seqd serve` binary as a child process on `127.0.0.1`, ports picked by the OS:
//! start, wait for readiness, stop gracefully (SIGTERM) or crash it (SIGKILL).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

pub struct Daemon {
    child: Child,
    /// The protocol address, `127.0.0.1:port`.
    pub addr: String,
    /// The HTTP admin address.
    pub admin: String,
    started: Instant,
    /// Every line the daemon wrote to stderr (its log) so far.
    log: Arc<Mutex<Vec<String>>>,
}

/// The address a log line announces after `marker`: up to the first space or quote (the
/// line may be JSON).
fn address_after(line: &str, marker: &str) -> Option<String> {
    let rest = line.split(marker).nth(1)?;
    let addr: String = rest
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != '"')
        .collect();
    (!addr.is_empty()).then_some(addr)
}

impl Daemon {
    /// `seqd serve` on `dir` in durability `mode` with two partitions, plus `extra` flags.
    pub fn start(dir: &Path, mode: &str, extra: &[&str]) -> Daemon {
        Daemon::start_wrapped(&[], dir, mode, extra)
    }

    /// [`start`](Self::start) through `wrapper` (a program and its arguments that runs the
    /// command after them, such as `prlimit --nofile=64 --`).
    pub fn start_wrapped(wrapper: &[&str], dir: &Path, mode: &str, extra: &[&str]) -> Daemon {
        let dir = dir.to_string_lossy();
        let mut args = vec![
            "--partitions",
            "2",
            "--durability",
            mode,
            "--data-dir",
            &dir,
        ];
        args.extend_from_slice(extra);
        Daemon::serve_wrapped(wrapper, &args)
    }

    /// `seqd serve --port 0 --admin-port 0` plus `args`, and nothing else (cluster nodes).
    pub fn serve(args: &[&str]) -> Daemon {
        Daemon::serve_wrapped(&[], args)
    }

    fn serve_wrapped(wrapper: &[&str], args: &[&str]) -> Daemon {
        let started = Instant::now();
        let seqd = env!("CARGO_BIN_EXE_seqd");
        let mut command = match wrapper.split_first() {
            None => Command::new(seqd),
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(seqd);
                c
            }
        };
        let mut child = command
            .args(["serve", "--port", "0", "--admin-port", "0"])
            .args(args)
            .env("SEQD_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn seqd");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        // SEQD_TEST_LOG=1 shows the daemon's log with the test's output.
        let echo = std::env::var("SEQD_TEST_LOG").as_deref() == Ok("1");
        let log = Arc::new(Mutex::new(Vec::new()));
        let lines = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if echo {
                    eprintln!("seqd: {line}");
                }
                for (what, marker) in [
                    ("addr", "protocol listening on "),
                    ("admin", "http admin listening on "),
                ] {
                    if let Some(addr) = address_after(&line, marker) {
                        let _ = tx.send((what, addr));
                    }
                }
                lines.lock().unwrap().push(line);
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
            log,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The protocol port.
    pub fn port(&self) -> u16 {
        self.addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap()
    }

    /// The daemon's log lines (stderr) so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Sends the signals named (`TERM`, `INT`, ...) back to back, from one shell.
    pub fn signal(&self, names: &[&str]) {
        let script: Vec<String> = names.iter().map(|n| format!("kill -{n} $0")).collect();
        let status = Command::new("sh")
            .args(["-c", &script.join("; "), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {names:?}");
    }

    /// Waits at most `limit` for the daemon to exit: its status and how long it took.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<(ExitStatus, Duration)> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some((status, start.elapsed()));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        None
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
    pub fn terminate(self) {
        self.stop_with("TERM");
    }

    /// Sends `signal` (`TERM` or `INT`); asserts a clean exit (status 0) within the drain
    /// bound and the final flush (30 s on a loaded machine).
    pub fn stop_with(mut self, signal: &str) {
        self.signal(&[signal]);
        let exit = self.wait_exit(Duration::from_secs(30));
        let (status, _) = exit.unwrap_or_else(|| panic!("SIG{signal}: no exit within 30 s"));
        assert!(status.success(), "graceful shutdown exits 0: {status:?}");
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
