//! [`NodeLease`]: a node's etcd lease, kept alive from the etcd client's own thread, and the
//! local deadline a node checks before it answers for a partition.
//!
//! The deadline is the *send* time of the last acknowledged keep-alive plus the TTL etcd
//! granted, minus a margin for clock-rate differences, on `CLOCK_BOOTTIME` ([`now`]): a clock
//! that keeps counting while the machine is suspended, unlike `Instant`. etcd starts the TTL
//! when it receives the keep-alive, after it was sent, so the deadline passes before etcd can
//! expire the lease and before any other node can own what this node owned. A node past its
//! deadline answers nothing from memory; a node whose keep-alive says the lease is gone has
//! lost the lease for good ([`LeaseState::Lost`]): everything it owned has another epoch
//! now, and it must register again as a new incarnation.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use super::etcd::Etcd;
use crate::storage::StorageError;

/// Time on `CLOCK_BOOTTIME` (Linux), which counts suspension; elsewhere a monotonic clock.
pub fn now() -> Duration {
    #[cfg(target_os = "linux")]
    {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
        Duration::new(
            t.tv_sec.max(0) as u64,
            t.tv_nsec.clamp(0, 999_999_999) as u32,
        )
    }
    #[cfg(not(target_os = "linux"))]
    {
        static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        START.get_or_init(std::time::Instant::now).elapsed()
    }
}

/// Where a [`NodeLease`] stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseState {
    /// The lease was renewed recently enough: the node may answer for what it owns.
    Valid,
    /// No keep-alive was acknowledged in time (etcd unreachable, the process paused): the node
    /// answers nothing until one is, which may still happen if etcd kept the lease.
    Expired,
    /// etcd says the lease is gone, or the lease was revoked: for good.
    Lost,
}

const VALID: u8 = 0;
const LOST: u8 = 2;

/// What the keep-alive task and the node share.
#[derive(Debug)]
struct Shared {
    /// [`now`] in nanoseconds past which the node must not answer.
    deadline_ns: AtomicU64,
    /// `VALID` or `LOST` (expiry is read off the deadline).
    state: AtomicU8,
}

/// A node's lease in etcd and its keep-alive.
pub struct NodeLease {
    etcd: Arc<Etcd>,
    lease: i64,
    ttl: Duration,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl NodeLease {
    /// Grants a lease of `ttl` (whole seconds, at least 1; etcd may raise it to its minimum)
    /// and starts keeping it alive every third of the granted TTL.
    pub async fn start(etcd: &Arc<Etcd>, ttl: Duration) -> Result<NodeLease, StorageError> {
        let asked = i64::try_from(ttl.as_secs().max(1)).unwrap_or(i64::MAX);
        let sent = now();
        let mut client = etcd.client();
        let granted = etcd
            .call("lease grant", async move {
                client.lease_grant(asked, None).await
            })
            .await?;
        let ttl = Duration::from_secs(u64::try_from(granted.ttl()).unwrap_or(0).max(1));
        let shared = Arc::new(Shared {
            deadline_ns: AtomicU64::new(deadline(sent, ttl)),
            state: AtomicU8::new(VALID),
        });
        let (stop, stopped) = watch::channel(false);
        let task = etcd.spawn(keep_alive(
            Arc::clone(etcd),
            granted.id(),
            ttl,
            Arc::clone(&shared),
            stopped,
        ));
        Ok(NodeLease {
            etcd: Arc::clone(etcd),
            lease: granted.id(),
            ttl,
            shared,
            stop,
            task,
        })
    }

    /// The lease id (keys put with it go when it does).
    pub fn lease(&self) -> i64 {
        self.lease
    }

    /// The TTL etcd granted.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Where the lease stands now.
    pub fn state(&self) -> LeaseState {
        if self.shared.state.load(Ordering::Acquire) == LOST {
            LeaseState::Lost
        } else if as_nanos(now()) < self.shared.deadline_ns.load(Ordering::Acquire) {
            LeaseState::Valid
        } else {
            LeaseState::Expired
        }
    }

    /// A cheap handle for checking the deadline from other threads.
    pub fn validity(&self) -> Validity {
        Validity(Arc::clone(&self.shared))
    }

    /// Stops the keep-alive and revokes the lease: its keys go at once.
    pub async fn close(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        self.shared.state.store(LOST, Ordering::Release);
        let mut client = self.etcd.client();
        let lease = self.lease;
        if let Err(e) = self
            .etcd
            .call(
                "lease revoke",
                async move { client.lease_revoke(lease).await },
            )
            .await
        {
            tracing::warn!(error = %e, "could not revoke the node's lease; it expires by itself");
        }
    }
}

impl Drop for NodeLease {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        self.shared.state.store(LOST, Ordering::Release);
    }
}

/// Whether a lease is valid now, from any thread ([`NodeLease::validity`]).
#[derive(Clone, Debug)]
pub struct Validity(Arc<Shared>);

impl Validity {
    /// Whether the lease is known to be held now.
    pub fn is_valid(&self) -> bool {
        self.0.state.load(Ordering::Acquire) != LOST
            && as_nanos(now()) < self.0.deadline_ns.load(Ordering::Acquire)
    }
}

fn as_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The deadline of a keep-alive sent at `sent` and granted `ttl`: a tenth of the TTL short,
/// for clocks that run at slightly different rates.
fn deadline(sent: Duration, ttl: Duration) -> u64 {
    as_nanos(sent + ttl - ttl / 10)
}

/// Renews `lease` every `ttl / 3` until stopped or lost, re-opening the stream after errors.
async fn keep_alive(
    etcd: Arc<Etcd>,
    lease: i64,
    ttl: Duration,
    shared: Arc<Shared>,
    mut stopped: watch::Receiver<bool>,
) {
    let period = ttl / 3;
    let mut stream = None;
    loop {
        if *stopped.borrow() {
            return;
        }
        if stream.is_none() {
            let mut client = etcd.client();
            match etcd
                .call("lease keep-alive", async move {
                    client.lease_keep_alive(lease).await
                })
                .await
            {
                Ok(s) => stream = Some(s),
                Err(e) => tracing::warn!(error = %e, lease, "cannot renew the node's lease"),
            }
        }
        if let Some((keeper, responses)) = stream.as_mut() {
            let sent = now();
            let renewed = tokio::time::timeout(period.max(Duration::from_millis(100)), async {
                keeper.keep_alive().await?;
                responses.message().await
            })
            .await;
            match renewed {
                Ok(Ok(Some(r))) if r.ttl() > 0 => {
                    let granted = Duration::from_secs(u64::try_from(r.ttl()).unwrap_or(0));
                    shared
                        .deadline_ns
                        .fetch_max(deadline(sent, granted), Ordering::AcqRel);
                }
                Ok(Ok(Some(_))) => {
                    tracing::warn!(lease, "the node's lease expired in etcd: lease lost");
                    shared.state.store(LOST, Ordering::Release);
                    return;
                }
                Ok(Ok(None)) | Ok(Err(_)) | Err(_) => {
                    // etcd may refuse to renew a lease it has expired by breaking the stream
                    // rather than answering TTL 0: ask it whether the lease still exists.
                    if lease_gone(&etcd, lease).await {
                        tracing::warn!(lease, "the node's lease expired in etcd: lease lost");
                        shared.state.store(LOST, Ordering::Release);
                        return;
                    }
                    tracing::warn!(lease, "renewing the node's lease failed; retrying");
                    stream = None;
                }
            }
        }
        tokio::select! {
            _ = stopped.changed() => {}
            () = tokio::time::sleep(period) => {}
        }
    }
}

/// Whether etcd says `lease` no longer exists (TTL -1). An unreachable etcd says nothing:
/// `false`.
async fn lease_gone(etcd: &Etcd, lease: i64) -> bool {
    let mut client = etcd.client();
    let answer = etcd
        .call("lease time-to-live", async move {
            client.lease_time_to_live(lease, None).await
        })
        .await;
    answer.is_ok_and(|r| r.ttl() < 0)
}
