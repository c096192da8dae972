//! [`Etcd`]: the connection to etcd that every cluster component shares — one client, one
//! runtime thread of its own, a deadline on every call, and the counters behind the
//! `seqd_etcd_*` metrics.
//!
//! The runtime is the client's own (thread `seqd-etcd`), not the daemon's: gRPC's connection
//! tasks, the lease keep-alive and the watches run there, so neither busy connection threads
//! nor a blocked caller can delay a keep-alive. Async callers await [`Etcd::call`]; the
//! storage's synchronous callers (the sequencer's flusher, blocking-pool threads) use
//! [`Etcd::wait`], which never runs on an event loop ([`StorageLatency::Remote`]).
//!
//! [`StorageLatency::Remote`]: crate::storage::StorageLatency::Remote

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions};

use crate::storage::StorageError;

/// The name of the client's runtime thread.
const THREAD: &str = "seqd-etcd";

/// Counters of the calls to etcd (metrics `seqd_etcd_*`, `seqd_fenced_writes_total`).
#[derive(Debug, Default)]
pub struct EtcdStats {
    /// Calls made.
    pub calls: AtomicU64,
    /// Calls that failed (unreachable, timed out, refused).
    pub errors: AtomicU64,
    /// Sum of the calls' latencies, in microseconds.
    pub latency_us: AtomicU64,
    /// Writes etcd refused because the writer no longer owned the partition.
    pub fenced_writes: AtomicU64,
}

/// A shared connection to etcd.
pub struct Etcd {
    client: Client,
    runtime: Runtime,
    timeout: Duration,
    stats: Arc<EtcdStats>,
    endpoints: Vec<String>,
}

/// The client's runtime; dropped without waiting (it may be dropped on an event loop).
struct Runtime(Option<tokio::runtime::Runtime>);

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

impl Runtime {
    fn handle(&self) -> Option<&tokio::runtime::Handle> {
        self.0.as_ref().map(|rt| rt.handle())
    }
}

impl Etcd {
    /// Connects to `endpoints` (`http://host:port`), giving each call `timeout`. Fails with a
    /// retryable error when no endpoint answers within `timeout`. Blocks: call it where
    /// blocking is allowed (`spawn_blocking` from async code).
    pub fn connect(endpoints: &[String], timeout: Duration) -> Result<Arc<Etcd>, StorageError> {
        if endpoints.is_empty() {
            return Err(StorageError::permanent(
                "no etcd endpoint given: pass --etcd http://HOST:PORT[,...]",
            ));
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(THREAD)
            .enable_all()
            .build()
            .map_err(|e| {
                StorageError::permanent("cannot start the etcd client's thread").with_source(e)
            })?;
        let options = ConnectOptions::new()
            .with_connect_timeout(timeout)
            .with_timeout(timeout)
            .with_keep_alive(Duration::from_secs(1), timeout);
        let eps = endpoints.to_vec();
        // On the client's runtime, waited for over a channel: callable from any thread
        // that may block (a runtime's `block_on` is not callable from inside another).
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        runtime.spawn(async move {
            let connected =
                tokio::time::timeout(timeout, Client::connect(eps, Some(options))).await;
            let _ = tx.send(connected);
        });
        let client = match rx.recv() {
            Ok(Ok(Ok(client))) => client,
            Err(_) => return Err(stopped()),
            Ok(Ok(Err(e))) => {
                return Err(StorageError::retryable(format!(
                    "cannot connect to etcd at {}: {e}; is etcd running there?",
                    endpoints.join(",")
                )));
            }
            Ok(Err(_)) => {
                return Err(StorageError::retryable(format!(
                    "no answer from etcd at {} within {timeout:?}; is etcd running there?",
                    endpoints.join(",")
                )));
            }
        };
        Ok(Arc::new(Etcd {
            client,
            runtime: Runtime(Some(runtime)),
            timeout,
            stats: Arc::default(),
            endpoints: endpoints.to_vec(),
        }))
    }

    /// A handle to the client (cheap to clone); its calls should go through [`call`](Self::call).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// The endpoints it was given.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// The deadline of each call.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The call counters.
    pub fn stats(&self) -> &Arc<EtcdStats> {
        &self.stats
    }

    /// Runs `f` on the client's runtime with the call deadline, counting it; `what` names the
    /// call in errors. A timeout or an unreachable etcd is retryable; the outcome of a timed
    /// out write is unknown, which fenced writes make harmless to retry.
    pub async fn call<T, F>(&self, what: &str, f: F) -> Result<T, StorageError>
    where
        F: Future<Output = Result<T, etcd_client::Error>> + Send + 'static,
        T: Send + 'static,
    {
        let Some(handle) = self.runtime.handle() else {
            return Err(stopped());
        };
        let view = self.view();
        let what = what.to_owned();
        match handle.spawn(async move { view.call(&what, f).await }).await {
            Ok(result) => result,
            Err(e) => Err(StorageError::permanent(format!("etcd call failed: {e}"))),
        }
    }

    /// [`call`](Self::call) from a thread that may block (never an event loop). On the
    /// client's own thread it would wait for itself: it refuses instead.
    pub fn wait<T, F>(&self, what: &str, f: F) -> Result<T, StorageError>
    where
        F: Future<Output = Result<T, etcd_client::Error>> + Send + 'static,
        T: Send + 'static,
    {
        let Some(handle) = self.runtime.handle() else {
            return Err(stopped());
        };
        if std::thread::current().name() == Some(THREAD) {
            return Err(StorageError::permanent(format!(
                "etcd {what}: a blocking call on the etcd client's own thread; this is a bug \
                 in seqd, please report it"
            )));
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let view = self.view();
        let what = what.to_owned();
        handle.spawn(async move {
            let _ = tx.send(view.call(&what, f).await);
        });
        rx.recv().unwrap_or_else(|_| Err(stopped()))
    }

    /// The client's runtime, for tasks that talk to other nodes ([`super::forward::Peers`]).
    pub fn runtime(&self) -> Option<tokio::runtime::Handle> {
        self.runtime.handle().cloned()
    }

    /// Runs `f` — a sequence of [`call`](Self::call)s — on the client's runtime and waits
    /// for it, from a thread that may block (never an event loop, never the client's own
    /// thread).
    pub fn block<T, F>(&self, f: F) -> Result<T, StorageError>
    where
        F: Future<Output = Result<T, StorageError>> + Send + 'static,
        T: Send + 'static,
    {
        let Some(handle) = self.runtime.handle() else {
            return Err(stopped());
        };
        if std::thread::current().name() == Some(THREAD) {
            return Err(StorageError::permanent(
                "a blocking etcd call on the etcd client's own thread; this is a bug in seqd, \
                 please report it",
            ));
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        handle.spawn(async move {
            let _ = tx.send(f.await);
        });
        rx.recv().unwrap_or_else(|_| Err(stopped()))
    }

    /// Spawns `f` on the client's runtime (watches, keep-alives, the Director).
    pub fn spawn<F>(&self, f: F) -> Option<tokio::task::JoinHandle<F::Output>>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.runtime.handle().map(|h| h.spawn(f))
    }

    /// What a call's task needs (the runtime stays with `self`).
    fn view(&self) -> CallView {
        CallView {
            timeout: self.timeout,
            stats: Arc::clone(&self.stats),
        }
    }
}

/// The deadline and counters of [`Etcd::call`], moved into the call's task.
struct CallView {
    timeout: Duration,
    stats: Arc<EtcdStats>,
}

impl CallView {
    async fn call<T, F>(&self, what: &str, f: F) -> Result<T, StorageError>
    where
        F: Future<Output = Result<T, etcd_client::Error>>,
    {
        let started = Instant::now();
        let out = tokio::time::timeout(self.timeout, f).await;
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.stats.latency_us.fetch_add(us, Ordering::Relaxed);
        let result = match out {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => Err(classify(what, e)),
            Err(_) => Err(StorageError::retryable(format!(
                "etcd {what}: no answer within {:?} (etcd unreachable or overloaded)",
                self.timeout
            ))),
        };
        self.stats.errors.fetch_add(1, Ordering::Relaxed);
        result
    }
}

/// Whether an etcd error may go away: transport failures and unavailability do; invalid
/// requests (too many operations in a txn, say) do not.
fn classify(what: &str, e: etcd_client::Error) -> StorageError {
    use etcd_client::Error as E;
    use tonic::Code;
    let retryable = match &e {
        E::GRpcStatus(status) => !matches!(
            status.code(),
            Code::InvalidArgument
                | Code::PermissionDenied
                | Code::Unauthenticated
                | Code::Unimplemented
                | Code::FailedPrecondition
                | Code::OutOfRange
        ),
        E::InvalidArgs(_) | E::InvalidUri(_) | E::Utf8Error(_) => false,
        _ => true,
    };
    let message = format!("etcd {what}: {e}");
    if retryable {
        StorageError::retryable(message)
    } else {
        StorageError::permanent(message)
    }
}

fn stopped() -> StorageError {
    StorageError::permanent("the etcd client was stopped")
}
