//! Which threads call storage, by what the storage says of itself (`SeqStorage::latency`):
//! a remote store is never called from a connection thread's event loop — its requests are
//! answered on the blocking pool and its batches written by the partition's worker — while a
//! local one is written by the connection threads before they sleep, as it always was. The
//! real daemon on 127.0.0.1:0, the `redis` crate and raw TCP as clients.

#![cfg(feature = "daemon")]

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use common::daemon::{TestServer, config};
use seqd::daemon::{Backend, Config, DurabilityMode};
use seqd::storage::{MemoryStorage, ReplayFn, SeqStorage, SeqValue, StorageError, StorageLatency};
use seqd::{Number, PLogOffset, PartitionId, SeqId, WsId};

/// The prefix of the daemon's connection threads' names.
const IO_THREAD: &str = "seqd-io-";
/// Bounds every wait of these tests (none should take more than milliseconds).
const WAIT: Duration = Duration::from_secs(10);
/// How long a write waits at a closed gate at most: longer than `WAIT`, so a client blocked
/// behind it times out first.
const GATE_MAX: Duration = Duration::from_secs(30);

/// Memory storage that reports a chosen latency, records which thread made each call, and can
/// hold writes back (a gate) to stand for a slow network store.
struct Watched {
    inner: MemoryStorage,
    latency: StorageLatency,
    /// (operation, thread name) per call.
    calls: Mutex<Vec<(&'static str, String)>>,
    /// Writes wait while it is true; `writing` counts those waiting.
    gate: Mutex<Gate>,
    changed: Condvar,
}

#[derive(Default)]
struct Gate {
    closed: bool,
    writing: usize,
}

impl Watched {
    fn new(latency: StorageLatency) -> Self {
        Watched {
            inner: MemoryStorage::new(),
            latency,
            calls: Mutex::new(Vec::new()),
            gate: Mutex::new(Gate::default()),
            changed: Condvar::new(),
        }
    }

    fn record(&self, op: &'static str) {
        let name = std::thread::current().name().unwrap_or("").to_string();
        self.calls.lock().unwrap().push((op, name));
    }

    /// Waits while the gate is closed (at most `GATE_MAX`, so a broken test cannot hang).
    fn pass_gate(&self) {
        let mut g = self.gate.lock().unwrap();
        g.writing += 1;
        self.changed.notify_all();
        let deadline = Instant::now() + GATE_MAX;
        while g.closed && Instant::now() < deadline {
            g = self.changed.wait_timeout(g, GATE_MAX).unwrap().0;
        }
        g.writing -= 1;
    }

    fn set_gate(&self, closed: bool) {
        self.gate.lock().unwrap().closed = closed;
        self.changed.notify_all();
    }

    /// Waits until a write waits at the closed gate.
    fn wait_for_blocked_write(&self) {
        let deadline = Instant::now() + WAIT;
        let mut g = self.gate.lock().unwrap();
        while g.writing == 0 {
            assert!(Instant::now() < deadline, "no write reached the storage");
            g = self.changed.wait_timeout(g, WAIT).unwrap().0;
        }
    }

    /// Calls per operation, split by whether a connection thread made them.
    fn tally(&self) -> HashMap<(&'static str, bool), usize> {
        let mut t = HashMap::new();
        for (op, thread) in self.calls.lock().unwrap().iter() {
            *t.entry((*op, thread.starts_with(IO_THREAD))).or_default() += 1;
        }
        t
    }
}

impl SeqStorage for Watched {
    fn read_numbers(&self, ws: WsId, seqs: &[SeqId]) -> Result<Vec<Number>, StorageError> {
        self.record("read");
        self.inner.read_numbers(ws, seqs)
    }
    fn write_values_and_offset(
        &self,
        values: &[SeqValue],
        next_offset: PLogOffset,
    ) -> Result<(), StorageError> {
        self.record("write");
        self.pass_gate();
        self.inner.write_values_and_offset(values, next_offset)
    }
    fn read_next_offset(&self) -> Result<PLogOffset, StorageError> {
        self.inner.read_next_offset()
    }
    fn replay(&self, from: PLogOffset, apply: &mut ReplayFn<'_>) -> Result<(), StorageError> {
        self.inner.replay(from, apply)
    }
    fn latency(&self) -> StorageLatency {
        self.latency
    }
}

struct WatchedBackend {
    parts: Vec<Arc<Watched>>,
}

impl WatchedBackend {
    fn new(partitions: usize, latency: StorageLatency) -> Arc<Self> {
        Arc::new(WatchedBackend {
            parts: (0..partitions)
                .map(|_| Arc::new(Watched::new(latency)))
                .collect(),
        })
    }

    fn tally(&self) -> HashMap<(&'static str, bool), usize> {
        let mut t = HashMap::new();
        for p in &self.parts {
            for (k, n) in p.tally() {
                *t.entry(k).or_default() += n;
            }
        }
        t
    }
}

impl Backend for WatchedBackend {
    fn partition(&self, p: PartitionId) -> Arc<dyn SeqStorage> {
        self.parts[usize::from(p.0)].clone()
    }
    fn save_cursors(&self, _: &[SeqValue]) -> Result<(), StorageError> {
        Ok(())
    }
    fn take_cursors(&self) -> Result<Vec<SeqValue>, StorageError> {
        Ok(Vec::new())
    }
    fn count_sequences(&self) -> Result<u64, StorageError> {
        Ok(self.parts.iter().map(|p| p.inner.len() as u64).sum())
    }
    fn describe(&self) -> String {
        "watched memory".into()
    }
}

fn server(mode: DurabilityMode, backend: &Arc<WatchedBackend>) -> TestServer {
    let cfg = Config {
        io_threads: Some(1),
        ..config(mode)
    };
    TestServer::start(cfg, backend.clone())
}

/// Pipelines `NEXT`s over new workspaces (cache misses read storage) from three connections
/// and checks each sequence's numbers go up.
fn workload(server: &TestServer) {
    let mut last: HashMap<(u64, u64), u64> = HashMap::new();
    let mut cons: Vec<_> = (0..3).map(|_| server.redis()).collect();
    for round in 0..20u64 {
        for (c, con) in cons.iter_mut().enumerate() {
            let mut pipe = redis::pipe();
            let keys: Vec<(u64, u64)> = (0..10u64).map(|i| (round * 10 + i, c as u64)).collect();
            for &(ws, seq) in &keys {
                pipe.cmd("NEXT").arg(ws).arg(seq);
            }
            let got: Vec<u64> = pipe.query(con).expect("NEXT");
            for (key, n) in keys.into_iter().zip(got) {
                let before = last.insert(key, n).unwrap_or(0);
                assert!(n > before, "{key:?}: {n} after {before}");
            }
        }
    }
}

#[test]
fn a_remote_store_is_never_called_from_a_connection_thread() {
    for mode in [DurabilityMode::Sync, DurabilityMode::Lease] {
        let backend = WatchedBackend::new(2, StorageLatency::Remote);
        let server = server(mode, &backend);
        workload(&server);
        drop(server);
        let t = backend.tally();
        assert!(
            t.get(&("read", false)).is_some_and(|&n| n > 0),
            "{mode:?}: {t:?}"
        );
        assert!(
            t.get(&("write", false)).is_some_and(|&n| n > 0),
            "{mode:?}: {t:?}"
        );
        assert_eq!(
            t.get(&("read", true)),
            None,
            "{mode:?}: reads on an event loop"
        );
        assert_eq!(
            t.get(&("write", true)),
            None,
            "{mode:?}: writes on an event loop"
        );
    }
}

#[test]
fn a_local_store_is_written_by_the_connection_threads() {
    let backend = WatchedBackend::new(2, StorageLatency::Local);
    let server = server(DurabilityMode::Sync, &backend);
    workload(&server);
    drop(server);
    let t = backend.tally();
    assert!(
        t.get(&("write", true)).is_some_and(|&n| n > 0),
        "the connection thread wrote nothing: {t:?}"
    );
}

/// With one connection thread and a remote store whose write is held back, another client on
/// the same thread is still answered; the held reply follows once the write lands.
#[test]
fn an_event_loop_serves_others_while_a_remote_write_waits() {
    let backend = WatchedBackend::new(1, StorageLatency::Remote);
    let cfg = Config {
        io_threads: Some(1),
        partitions: Some(1),
        ..config(DurabilityMode::Sync)
    };
    let server = TestServer::start(cfg, backend.clone());
    let storage = backend.parts[0].clone();
    let connect = || {
        let s = TcpStream::connect(server.addr).expect("connect");
        s.set_read_timeout(Some(WAIT)).expect("timeout");
        s
    };
    let (mut held, mut other) = (connect(), connect());
    storage.set_gate(true);
    held.write_all(b"NEXT 7 1\r\n").expect("send");
    storage.wait_for_blocked_write();
    other.write_all(b"PING\r\n").expect("send");
    let mut buf = [0u8; 64];
    let n = other
        .read(&mut buf)
        .expect("PING answered while the write waits");
    assert_eq!(&buf[..n], b"+PONG\r\n");
    storage.set_gate(false);
    let n = held
        .read(&mut buf)
        .expect("NEXT answered once the write landed");
    assert_eq!(&buf[..n], b":1\r\n");
}

/// Lease mode leaves the writes to the partitions' flushers even with a local store: a
/// connection thread that wrote (and fsynced) a fresh key's first reservation itself stalled
/// every client on it (BENCHMARKS.md, "W5 with fresh and warm 100,000-key cells").
#[test]
fn in_lease_mode_a_local_store_is_written_by_the_flushers() {
    let backend = WatchedBackend::new(2, StorageLatency::Local);
    let server = server(DurabilityMode::Lease, &backend);
    workload(&server);
    drop(server);
    let t = backend.tally();
    assert_eq!(
        t.get(&("write", true)),
        None,
        "a connection thread wrote: {t:?}"
    );
    assert!(
        t.get(&("write", false)).is_some_and(|&n| n > 0),
        "nothing was written: {t:?}"
    );
}
