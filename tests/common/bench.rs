//! Running the real `seqd bench` binary against a test server, and a fake server that
//! answers every request with the same reply (to see the verifier catch it).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Longest a bench run may take in a test before it is killed.
const RUN_LIMIT: Duration = Duration::from_secs(60);

/// What a `seqd bench` process did.
#[derive(Debug)]
pub struct BenchRun {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl BenchRun {
    /// The `--json` result.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "bench printed no JSON ({e}); stdout:\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    /// Asserts exit status 0 and returns the JSON.
    pub fn passed(&self) -> serde_json::Value {
        assert!(
            self.status.success(),
            "bench failed ({}); stdout:\n{}\nstderr:\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
        self.json()
    }
}

/// Runs `seqd bench --port PORT -q ARGS...` and waits for it (killing it after a minute).
pub fn run(port: u16, args: &[&str]) -> BenchRun {
    let mut child = Command::new(env!("CARGO_BIN_EXE_seqd"))
        .arg("bench")
        .arg("--port")
        .arg(port.to_string())
        .arg("-q")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn seqd bench");
    let (mut out, mut err) = (child.stdout.take(), child.stderr.take());
    let out_reader = std::thread::spawn(move || read_all(out.as_mut()));
    let err_reader = std::thread::spawn(move || read_all(err.as_mut()));
    let deadline = Instant::now() + RUN_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for seqd bench") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("seqd bench {args:?} ran longer than {RUN_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    BenchRun {
        status,
        stdout: out_reader.join().expect("stdout reader"),
        stderr: err_reader.join().expect("stderr reader"),
    }
}

fn read_all(r: Option<&mut impl Read>) -> String {
    let mut s = String::new();
    if let Some(r) = r {
        let _ = r.read_to_string(&mut s);
    }
    s
}

/// What a [`fake_server`] answers to every request.
#[derive(Clone, Copy, Debug)]
pub enum Fake {
    /// The same bytes every time (e.g. `:1\r\n`: every number handed out again).
    Constant(&'static [u8]),
    /// `:1`, `:2`, `:3`, ... per connection (increasing, but ranges of `count > 1` overlap).
    Counter,
}

/// A server on `127.0.0.1:0` that answers every RESP request (every `*`) as `fake` says,
/// however many connections come. Its threads end with the test process.
pub fn fake_server(fake: Fake) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind fake server");
    let addr = listener.local_addr().expect("fake server address");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            std::thread::spawn(move || answer(stream, fake));
        }
    });
    addr
}

fn answer(mut stream: TcpStream, fake: Fake) {
    let mut buf = [0u8; 16 * 1024];
    let mut out = Vec::new();
    let mut counter = 0u64;
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        // The tool's requests carry no `*` but the one that starts each of them.
        let requests = buf[..n].iter().filter(|&&b| b == b'*').count();
        out.clear();
        for _ in 0..requests {
            match fake {
                Fake::Constant(reply) => out.extend_from_slice(reply),
                Fake::Counter => {
                    counter += 1;
                    out.extend_from_slice(format!(":{counter}\r\n").as_bytes());
                }
            }
        }
        if stream.write_all(&out).is_err() {
            return;
        }
    }
}

/// A port nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("address").port()
}
