//! The daemon behind `seqd serve`: a Redis-compatible (RESP2 and RESP3) protocol and an HTTP admin API
//! over one [`crate::Sequencer`] per partition. Design: `design/daemon.md`.
//!
//! [`run`] owns everything it starts — partition worker threads, the accept loop, the
//! connections and the HTTP server — and stops them all when its `shutdown` future resolves:
//! stop accepting, let connections finish the requests they have read, wait for parked
//! replies, write the final flush, save lease cursors, close storage.

mod clients;
#[cfg(feature = "cluster")]
mod cluster;
pub mod command;
mod config;
mod gate;
mod http;
mod info;
mod io;
mod lease;
mod limits;
mod metrics;
mod partition;
mod partitions;
mod pending;
pub mod protocol;
mod server;
mod status;
mod store;
pub(crate) mod versions;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

#[cfg(feature = "cluster")]
pub use cluster::{ClusterConfig, Routing};
pub use config::{Config, DurabilityMode, LogFormat, StoreKind, VersionClockKind};
pub use lease::{GROW_BELOW, MAX_WINDOW, MIN_WINDOW, SHRINK_ABOVE};
pub use status::PartitionStatus;
pub use store::{Backend, MemoryBackend, open_backend};

use crate::error::{Error, Result};
use clients::Clients;
use io::IoThreads;
use lease::ResumeFloor;
use metrics::Metrics;
use partitions::Partitions;
use pending::PendingBudget;

/// This node in its cluster (cluster mode); never present without the `cluster` feature.
#[cfg(feature = "cluster")]
pub(crate) type ClusterNode = Arc<cluster::Node>;
/// This node in its cluster (cluster mode); never present without the `cluster` feature.
#[cfg(not(feature = "cluster"))]
pub(crate) type ClusterNode = std::convert::Infallible;

/// What connections and HTTP handlers share.
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) partitions: Arc<Partitions>,
    /// Cluster mode: this node in its cluster.
    pub(crate) cluster: Option<ClusterNode>,
    pub(crate) metrics: Metrics,
    pub(crate) backend: Arc<dyn Backend>,
    /// The open connections (`CLIENT LIST`).
    pub(crate) clients: Arc<Clients>,
    /// `--max-pending-bytes`.
    pub(crate) pending: Arc<PendingBudget>,
    /// `--max-connections`, fitted to the open-file limit.
    pub(crate) max_connections: usize,
    /// The protocol's port (the bound one, also when 0 was asked for).
    pub(crate) port: u16,
    pub(crate) started: Instant,
    /// The version authority (`VERSION ...`).
    pub(crate) versions: Arc<versions::Versions>,
}

/// The longest pause after a failed `accept` (at the open-file limit, say); the first is 10 ms
/// and each next one doubles, until one succeeds.
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// How long stopping waits for connections to finish what they read.
const DRAIN: Duration = Duration::from_secs(5);

/// Binds the addresses of `config` and runs until `shutdown` resolves.
pub async fn serve(config: Config, shutdown: impl Future<Output = ()> + Send) -> Result<()> {
    let bind = |port: u16, what: &'static str| {
        let addr = format!("{}:{port}", config.host);
        async move {
            TcpListener::bind(&addr).await.map_err(|e| Error::Io {
                context: format!("cannot listen for {what} on {addr}"),
                source: e,
            })
        }
    };
    let listener = bind(config.port, "the protocol").await?;
    let admin = bind(config.admin_port, "HTTP admin").await?;
    run(config, listener, admin, shutdown).await
}

/// Runs the daemon on already bound listeners (tests bind `127.0.0.1:0`) with the storage
/// `config` names, until `shutdown` resolves.
pub async fn run(
    config: Config,
    listener: TcpListener,
    admin: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    config.validate()?;
    #[cfg(feature = "cluster")]
    if config.cluster.enabled() {
        return run_cluster(config, listener, admin, shutdown).await;
    }
    let c = config.clone();
    let backend = tokio::task::spawn_blocking(move || open_backend(&c))
        .await
        .map_err(|e| panicked("opening storage", e))??;
    run_with_backend(config, backend, listener, admin, shutdown).await
}

/// Cluster mode: joins the cluster (retrying while etcd is unreachable, until `shutdown`),
/// then serves as a member of it.
#[cfg(feature = "cluster")]
async fn run_cluster(
    config: Config,
    listener: TcpListener,
    admin: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    let addr = local_addr(&listener)?;
    let admin_addr = local_addr(&admin)?;
    tokio::pin!(shutdown);
    let node = tokio::select! {
        node = cluster::Node::join(&config, addr, admin_addr) => node?,
        () = &mut shutdown => return Ok(()),
    };
    let backend: Arc<dyn Backend> = Arc::new(store::ClusterBackend {
        etcd: Arc::clone(&node.etcd),
        keys: node.keys.clone(),
    });
    serve_on(config, backend, listener, admin, shutdown, Some(node)).await
}

/// [`run`] on a given [`Backend`] (tests put fault-injecting storage under the daemon).
pub async fn run_with_backend(
    config: Config,
    backend: Arc<dyn Backend>,
    listener: TcpListener,
    admin: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    config.validate()?;
    serve_on(config, backend, listener, admin, shutdown, None).await
}

/// Serves on `backend` until `shutdown` resolves; in cluster mode as the member `cluster`.
async fn serve_on(
    config: Config,
    backend: Arc<dyn Backend>,
    listener: TcpListener,
    admin: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
    cluster: Option<ClusterNode>,
) -> Result<()> {
    let addr = local_addr(&listener)?;
    let admin_addr = local_addr(&admin)?;
    tracing::info!(
        storage = %backend.describe(),
        durability = ?config.durability,
        partitions = config.partition_count(),
        "starting"
    );
    let b = Arc::clone(&backend);
    let cursors = tokio::task::spawn_blocking(move || b.take_cursors())
        .await
        .map_err(|e| panicked("reading the lease cursors", e))??;
    #[cfg(feature = "cluster")]
    let slots = cluster.as_ref().map(|n| n.partitions);
    #[cfg(not(feature = "cluster"))]
    let slots = None;
    let (b, c, in_cluster) = (Arc::clone(&backend), config.clone(), cluster.is_some());
    let floor = tokio::task::spawn_blocking(move || ResumeFloor::open(&*b, &c, in_cluster))
        .await
        .map_err(|e| panicked("reading the resume floor", e))??;
    let partitions = Arc::new(Partitions::start(
        &config, &*backend, cursors, slots, floor,
    )?);
    // Each connection thread holds a few descriptors of its own (epoll, its wake-up).
    let io_fds = 4 * u64::from(config.io_thread_count());
    let max = match limits::fit_connections(config.max_connections, io_fds) {
        Ok(max) => max.min(Semaphore::MAX_PERMITS),
        Err(e) => {
            partitions.stop().await;
            return Err(e);
        }
    };
    // A single node runs the version authority on its own storage; in a cluster the
    // Director's node runs it.
    let (versions, version_storage) = match &cluster {
        #[cfg(feature = "cluster")]
        Some(node) => (Arc::clone(&node.versions), None),
        #[cfg(not(feature = "cluster"))]
        Some(never) => match *never {},
        None => {
            let storage = backend.version_storage();
            let initial = if storage.is_some() {
                versions::Authority::Starting { failure: None }
            } else {
                versions::Authority::Unavailable
            };
            (Arc::new(versions::Versions::new(&config, initial)), storage)
        }
    };
    let shared = Arc::new(Shared {
        versions,
        pending: PendingBudget::new(config.max_pending_bytes),
        config,
        partitions,
        cluster,
        metrics: Metrics::new(),
        backend: Arc::clone(&backend),
        clients: Arc::new(Clients::default()),
        max_connections: max,
        port: addr.port(),
        started: Instant::now(),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    #[cfg(feature = "cluster")]
    let (driver_stop, driver) = {
        let (tx, rx) = watch::channel(false);
        let task = shared.cluster.as_ref().map(|node| {
            tokio::spawn(cluster::driver::run(
                Arc::clone(node),
                Arc::clone(&shared.partitions),
                rx,
            ))
        });
        (tx, task)
    };

    let versions_start = version_storage
        .map(|storage| tokio::spawn(Arc::clone(&shared.versions).start(storage, stop_rx.clone())));
    let mut http_stop = stop_rx.clone();
    let router = http::router(Arc::clone(&shared));
    let http = tokio::spawn(async move {
        let stopped = async move {
            let _ = http_stop.wait_for(|s| *s).await;
        };
        if let Err(e) = axum::serve(admin, router)
            .with_graceful_shutdown(stopped)
            .await
        {
            tracing::warn!(error = %e, "the HTTP admin server failed");
        }
    });
    // Tests and scripts read these two lines to find the ports.
    tracing::info!("protocol listening on {addr}");
    tracing::info!("http admin listening on {admin_addr}");

    let slots = Arc::new(Semaphore::new(max));
    let mut io = match IoThreads::start(shared.config.io_thread_count(), &shared, &stop_rx) {
        Ok(io) => io,
        Err(e) => {
            let _ = stop_tx.send(true);
            let _ = http.await;
            shared.partitions.stop().await;
            return Err(e);
        }
    };
    tokio::pin!(shutdown);
    let mut backoff: Option<Duration> = None;
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                backoff = None;
                accept(&shared, &slots, &mut io, stream);
            }
            Err(e) => {
                // EMFILE and friends: the pending connection stays queued, so accepting again
                // at once would fail again at once. Log, wait, retry.
                let wait = backoff.map_or(Duration::from_millis(10), |b| {
                    (b * 2).min(MAX_ACCEPT_BACKOFF)
                });
                if backoff != Some(wait) {
                    tracing::warn!(
                        error = %e,
                        retry_in_ms = wait.as_millis() as u64,
                        "cannot accept a connection (at the open-file limit?); retrying"
                    );
                }
                backoff = Some(wait);
                tokio::select! {
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(wait) => {}
                }
            }
        }
    }

    #[cfg(feature = "cluster")]
    if let Some(node) = &shared.cluster {
        // Hand every partition over first, while connections are still served (requests
        // for the handed-over partitions go to their next owners).
        tracing::info!("stopping: handing the partitions over");
        let _ = driver_stop.send(true);
        if let Some(task) = driver {
            let _ = task.await;
        }
        // While still the Director: the version authority saves its exact last versions
        // (fenced by the election), so the next Director's skips nothing.
        shared.versions.close().await;
        node.leave().await;
    }
    tracing::info!("stopping: no new connections; draining");
    drop(listener);
    let _ = stop_tx.send(true);
    let permits = u32::try_from(max).unwrap_or(u32::MAX);
    if tokio::time::timeout(DRAIN, slots.acquire_many(permits))
        .await
        .is_err()
    {
        tracing::warn!("some connections did not finish within {DRAIN:?}; stopping anyway");
    }
    io.stop().await;
    let _ = http.await;
    if let Some(task) = versions_start {
        let _ = task.await;
    }
    shared.versions.close().await;
    let report = shared.partitions.stop().await;
    let (clean, discarded) = (report.close_errors.is_empty(), report.discard_floor);
    let floor_backend = Arc::clone(&backend);
    if shared.config.durability == DurabilityMode::Lease
        && !report.cursors.is_empty()
        && shared.cluster.is_none()
    {
        let n = report.cursors.len();
        match tokio::task::spawn_blocking(move || backend.save_cursors(&report.cursors)).await {
            Ok(Ok(())) => tracing::info!(sequences = n, "saved lease cursors"),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "could not save lease cursors; the next start skips the unused windows")
            }
            Err(e) => tracing::warn!(error = %e, "saving lease cursors panicked"),
        }
    }
    if clean {
        // Every partition's final flush stored what went out under the resume floor.
        let (c, floor) = (shared.config.clone(), shared.partitions.resume_floor());
        let _ =
            tokio::task::spawn_blocking(move || floor.close(&*floor_backend, &c, discarded)).await;
    }
    for e in report.close_errors {
        tracing::warn!(error = %e, "a partition did not close cleanly");
    }
    tracing::info!("stopped");
    Ok(())
}

fn accept(
    shared: &Arc<Shared>,
    slots: &Arc<Semaphore>,
    io: &mut IoThreads,
    stream: tokio::net::TcpStream,
) {
    let Ok(permit) = Arc::clone(slots).try_acquire_owned() else {
        shared.metrics.connections_rejected.inc();
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let mut stream = stream;
            let _ = stream
                .write_all(b"-ERR max number of clients reached\r\n")
                .await;
            let _ = stream.shutdown().await;
        });
        return;
    };
    shared.metrics.connections_total.inc();
    io.hand_over(stream, permit);
}

/// A blocking task that did not finish: it panicked (or was cancelled at shutdown).
fn panicked(context: &str, e: tokio::task::JoinError) -> Error {
    Error::Panicked {
        context: context.into(),
        message: e.to_string(),
    }
}

fn local_addr(l: &TcpListener) -> Result<SocketAddr> {
    l.local_addr().map_err(|e| Error::Io {
        context: "cannot read the listening address".into(),
        source: e,
    })
}

/// Compares secrets in time independent of where they differ.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
