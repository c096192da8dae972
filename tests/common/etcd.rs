//! A real etcd (Debian's `etcd-server`) for the cluster tests: one member on loopback, data in
//! a temporary directory, fast elections so that one-second leases are granted; stopped and
//! removed when dropped.
//!
//! Absent etcd skips a test with a note, unless `SEQD_REQUIRE_ETCD=1` (CI) makes it a failure.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use seqd::cluster::Etcd;

pub struct EtcdServer {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The command line, to start it again on the same data and ports.
    args: Vec<String>,
    _dir: tempfile::TempDir,
}

/// `Some` when the `etcd` binary is installed, `None` (with a note) when the test should be
/// skipped.
fn binary() -> Option<&'static str> {
    let found = Command::new("etcd")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return Some("etcd");
    }
    assert!(
        std::env::var_os("SEQD_REQUIRE_ETCD").is_none(),
        "etcd is not installed (Debian: apt-get install etcd-server) and SEQD_REQUIRE_ETCD is set"
    );
    eprintln!("note: etcd is not installed (Debian: etcd-server); skipping this cluster test");
    None
}

fn spawn(args: &[String]) -> Child {
    Command::new("etcd")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start etcd")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl EtcdServer {
    /// Starts one member and waits until it answers; `None` when etcd is not installed.
    pub fn start() -> Option<EtcdServer> {
        binary()?;
        // A port picked here can be taken before etcd binds it: then try other ports.
        for _attempt in 0..3 {
            let dir = tempfile::tempdir().expect("temp dir");
            let (client, peer) = (free_port(), free_port());
            let url = format!("http://127.0.0.1:{client}");
            let peer_url = format!("http://127.0.0.1:{peer}");
            let data = dir.path().join("data");
            let args = vec![
                "--name=seqd-test".to_string(),
                format!("--data-dir={}", data.display()),
                format!("--listen-client-urls={url}"),
                format!("--advertise-client-urls={url}"),
                format!("--listen-peer-urls={peer_url}"),
                format!("--initial-advertise-peer-urls={peer_url}"),
                format!("--initial-cluster=seqd-test={peer_url}"),
                "--initial-cluster-state=new".into(),
                "--heartbeat-interval=50".into(),
                "--election-timeout=500".into(),
                "--log-level=error".into(),
            ];
            let mut server = EtcdServer {
                child: spawn(&args),
                url,
                args,
                _dir: dir,
            };
            if server.wait_ready(Duration::from_secs(15)) {
                return Some(server);
            }
            drop(server);
        }
        panic!("etcd did not become ready within 15 s, three times");
    }

    fn wait_ready(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if Etcd::connect(std::slice::from_ref(&self.url), Duration::from_millis(500))
                .and_then(|e| {
                    let mut c = e.client();
                    e.wait("get", async move { c.get("/", None).await })
                        .map(|_| ())
                })
                .is_ok()
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Kills etcd (SIGKILL); its data stays for [`restart`](Self::restart).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts etcd again on the same data and ports and waits until it answers.
    pub fn restart(&mut self) {
        self.kill();
        self.child = spawn(&self.args);
        assert!(
            self.wait_ready(Duration::from_secs(15)),
            "etcd did not come back"
        );
    }

    /// A client of this server.
    pub fn client(&self) -> Arc<Etcd> {
        Etcd::connect(std::slice::from_ref(&self.url), Duration::from_secs(2))
            .expect("connect to etcd")
    }

    /// The process id (to SIGSTOP it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
