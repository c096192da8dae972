//! The daemon behind `seqd serve`: a Redis-compatible (RESP2) protocol and an HTTP admin API
//! over one [`crate::Sequencer`] per partition. Design: `design/daemon.md`.
//!
//! [`run`] owns everything it starts — partition worker threads, the accept loop, the
//! connections and the HTTP server — and stops them all when its `shutdown` future resolves:
//! stop accepting, let connections finish the requests they have read, wait for parked
//! replies, write the final flush, save lease cursors, close storage.

pub mod command;
mod config;
mod http;
mod io;
mod lease;
mod metrics;
mod partition;
mod partitions;
pub mod protocol;
mod server;
mod status;
mod store;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

pub use config::{Config, DurabilityMode, LogFormat, StoreKind};
pub use lease::{GROW_BELOW, MAX_WINDOW, MIN_WINDOW, SHRINK_ABOVE};
pub use status::PartitionStatus;
pub use store::{Backend, MemoryBackend, open_backend};

use crate::error::{Error, Result};
use io::IoThreads;
use metrics::Metrics;
use partitions::Partitions;

/// What connections and HTTP handlers share.
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) partitions: Partitions,
    pub(crate) metrics: Metrics,
}

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
    let c = config.clone();
    let backend = tokio::task::spawn_blocking(move || open_backend(&c))
        .await
        .map_err(|e| Error::InvalidOptions(format!("opening storage panicked: {e}")))??;
    run_with_backend(config, backend, listener, admin, shutdown).await
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
        .map_err(|e| Error::InvalidOptions(format!("reading lease cursors panicked: {e}")))??;
    let partitions = Partitions::start(&config, &*backend, cursors)?;
    let shared = Arc::new(Shared {
        config,
        partitions,
        metrics: Metrics::new(),
    });
    let (stop_tx, stop_rx) = watch::channel(false);

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

    let max = shared.config.max_connections.min(Semaphore::MAX_PERMITS);
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
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                accept(&shared, &slots, &mut io, stream);
            }
        }
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
    let report = shared.partitions.stop().await;
    if shared.config.durability == DurabilityMode::Lease && !report.cursors.is_empty() {
        let n = report.cursors.len();
        match tokio::task::spawn_blocking(move || backend.save_cursors(&report.cursors)).await {
            Ok(Ok(())) => tracing::info!(sequences = n, "saved lease cursors"),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "could not save lease cursors; the next start skips the unused windows")
            }
            Err(e) => tracing::warn!(error = %e, "saving lease cursors panicked"),
        }
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
