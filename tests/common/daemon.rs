//! Starting a real daemon (`seqd::daemon::run_with_backend`) on `127.0.0.1:0` for a test, and
//! talking to it with real clients: the `redis` crate, `reqwest`, raw TCP.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use seqd::daemon::{Backend, Config, DurabilityMode, StoreKind};
use seqd::storage::{FaultyStorage, MemoryStorage, SeqStorage, SeqValue, StorageError};
use seqd::{PartitionId, SeqId, WsId};

pub struct TestServer {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<seqd::Result<()>>>,
}

/// A memory-store config with two partitions and short timeouts.
pub fn config(mode: DurabilityMode) -> Config {
    Config {
        store: StoreKind::Memory,
        partitions: Some(2),
        durability: mode,
        ..Config::default()
    }
}

impl TestServer {
    /// Starts a server and waits until `/readyz` says every partition has recovered, so a
    /// test's first request is never refused as `BUSY ... recovering`.
    pub fn start(config: Config, backend: Arc<dyn Backend>) -> TestServer {
        let server = TestServer::start_unready(config, backend);
        server.wait_ready();
        server
    }

    /// Waits until `/readyz` answers 200.
    pub fn wait_ready(&self) {
        wait_readyz(&self.admin.to_string());
    }

    /// Starts a server without waiting for recovery (for readiness tests).
    pub fn start_unready(config: Config, backend: Arc<dyn Backend>) -> TestServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let admin = std::net::TcpListener::bind("127.0.0.1:0").expect("bind admin");
        let (addr, admin_addr) = (listener.local_addr().unwrap(), admin.local_addr().unwrap());
        listener.set_nonblocking(true).unwrap();
        admin.set_nonblocking(true).unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let l = tokio::net::TcpListener::from_std(listener).expect("listener");
                let a = tokio::net::TcpListener::from_std(admin).expect("admin");
                seqd::daemon::run_with_backend(config, backend, l, a, async {
                    let _ = rx.await;
                })
                .await
            })
        });
        TestServer {
            addr,
            admin: admin_addr,
            stop: Some(tx),
            thread: Some(thread),
        }
    }

    /// A memory-backed server; the backend is returned so a second server can reuse it.
    pub fn memory(mode: DurabilityMode) -> (TestServer, Arc<seqd::daemon::MemoryBackend>) {
        let backend = Arc::new(seqd::daemon::MemoryBackend::default());
        (TestServer::start(config(mode), backend.clone()), backend)
    }

    pub fn redis(&self) -> redis::Connection {
        let client = redis::Client::open(format!("redis://{}/", self.addr)).expect("client");
        client.get_connection().expect("connect")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    /// `GET /v1/status`, parsed.
    pub fn status(&self) -> serde_json::Value {
        let body = reqwest::blocking::get(self.url("/v1/status"))
            .and_then(|r| r.text())
            .expect("GET /v1/status");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("status is not JSON ({e}): {body}"))
    }

    /// `GET /metrics`, the Prometheus text.
    pub fn metrics(&self) -> String {
        reqwest::blocking::get(self.url("/metrics"))
            .and_then(|r| r.text())
            .expect("GET /metrics")
    }

    /// Raw TCP: sends `bytes`, reads until the server closes or `wait` passes.
    pub fn raw(&self, bytes: &[u8], wait: Duration) -> Vec<u8> {
        let mut s = TcpStream::connect(self.addr).expect("connect");
        s.set_read_timeout(Some(wait)).unwrap();
        s.write_all(bytes).expect("write");
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
        out
    }

    /// Graceful stop (what SIGTERM does); returns what `run` returned.
    pub fn stop(mut self) -> seqd::Result<()> {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> seqd::Result<()> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        match self.thread.take() {
            Some(t) => t.join().expect("server thread panicked"),
            None => Ok(()),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.stop_inner();
    }
}

/// Waits until `GET http://{admin}/readyz` answers 200 (every partition recovered).
pub fn wait_readyz(admin: &str) {
    let http = reqwest::blocking::Client::new();
    let url = format!("http://{admin}/readyz");
    super::eventually("the server is ready", || {
        http.get(&url)
            .send()
            .is_ok_and(|r| r.status() == reqwest::StatusCode::OK)
    });
}

/// A response's status and JSON body; panics if the body is not JSON.
pub fn json(resp: reqwest::blocking::Response) -> (reqwest::StatusCode, serde_json::Value) {
    let status = resp.status();
    let body = resp.text().unwrap();
    let value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    (status, value)
}

/// The value of one series in a Prometheus text exposition, e.g.
/// `seqd_flush_batches_total{partition="0"}`; panics if it is missing.
pub fn metric(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
}

/// `NEXT ws seq count`.
pub fn next(con: &mut redis::Connection, ws: u64, seq: u16, count: u64) -> redis::RedisResult<u64> {
    redis::cmd("NEXT").arg(ws).arg(seq).arg(count).query(con)
}

/// A backend whose partitions are `FaultyStorage` over memory, for fault tests.
pub struct FaultyBackend {
    pub parts: std::sync::Mutex<Vec<Arc<FaultyStorage<MemoryStorage>>>>,
    cursors: std::sync::Mutex<Vec<SeqValue>>,
    /// The version authority's storage.
    pub versions: Arc<FaultyStorage<MemoryStorage>>,
    /// The resume floor, when this backend keeps one (`keeping_floor`); otherwise it refuses
    /// to, as a store without one does, and lease mode runs without it.
    floor: Option<std::sync::Mutex<Option<u64>>>,
}

impl FaultyBackend {
    pub fn with_partitions(n: usize) -> Arc<FaultyBackend> {
        Arc::new(Self::new(n, false))
    }

    /// Like `with_partitions`, keeping lease mode's resume floor.
    pub fn keeping_floor(n: usize) -> Arc<FaultyBackend> {
        Arc::new(Self::new(n, true))
    }

    fn new(n: usize, floor: bool) -> FaultyBackend {
        let faulty = || Arc::new(FaultyStorage::new(MemoryStorage::new()));
        FaultyBackend {
            parts: std::sync::Mutex::new((0..n).map(|_| faulty()).collect()),
            cursors: Default::default(),
            versions: faulty(),
            floor: floor.then(Default::default),
        }
    }

    pub fn part(&self, p: usize) -> Arc<FaultyStorage<MemoryStorage>> {
        self.parts.lock().unwrap()[p].clone()
    }

    pub fn stored(&self, p: usize, ws: u64, seq: u16) -> u64 {
        self.part(p)
            .inner()
            .read_numbers(WsId(ws), &[SeqId(seq)])
            .unwrap()[0]
            .0
    }
}

impl Backend for FaultyBackend {
    fn partition(&self, p: PartitionId) -> Arc<dyn SeqStorage> {
        self.part(usize::from(p.0))
    }
    fn save_cursors(&self, c: &[SeqValue]) -> Result<(), StorageError> {
        self.cursors.lock().unwrap().extend_from_slice(c);
        Ok(())
    }
    fn count_sequences(&self) -> Result<u64, StorageError> {
        let parts = self.parts.lock().unwrap();
        Ok(parts.iter().map(|p| p.inner().len() as u64).sum())
    }
    fn take_cursors(&self) -> Result<Vec<SeqValue>, StorageError> {
        Ok(std::mem::take(&mut *self.cursors.lock().unwrap()))
    }
    fn describe(&self) -> String {
        "faulty memory".into()
    }
    fn resume_floor(&self) -> Result<Option<u64>, StorageError> {
        Ok(self.floor.as_ref().and_then(|f| *f.lock().unwrap()))
    }
    fn set_resume_floor(&self, floor: Option<u64>) -> Result<(), StorageError> {
        match &self.floor {
            Some(f) => {
                *f.lock().unwrap() = floor;
                Ok(())
            }
            None => Err(StorageError::permanent(
                "this test backend keeps no resume floor",
            )),
        }
    }
    fn version_storage(&self) -> Option<Arc<dyn SeqStorage>> {
        Some(Arc::clone(&self.versions) as Arc<dyn SeqStorage>)
    }
}
