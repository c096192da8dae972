//! The Director (seed 002): one node at a time, elected through etcd, places partitions on
//! live sequencer nodes under a strictly increasing epoch.
//!
//! Election: `If create_revision(director) == 0 Then put director (lease of the node)`. The
//! winner's epoch is the revision of that write — etcd revisions only go up, so every later
//! election yields a larger epoch. The key lives on the node's lease: a dead or paused
//! Director loses it at expiry and the others campaign again.
//!
//! Each round of the Director's recovery runs in phases, each logged with the epoch:
//!
//! 1. **discover**: read the live nodes and their roles (`nodes/`);
//! 2. **layout**: read the owners and compute the target placement ([`super::layout::plan`]);
//! 3. **lock**: create the owner key of every unowned partition for its target node, on that
//!    node's lease; ask the owner of every partition that should move to hand it over
//!    (`handover/P`; the owner deletes its key when it has written its exact values, and the
//!    next round places the partition);
//! 4. **versions**: start the version authority on the Director's node ([`DirectorHooks`]);
//! 5. **publish**: write the layout (`layout`);
//! 6. **watch**: wait for a node or an owner key to change, then run the next round.
//!
//! Every write of the Director is one transaction conditional on
//! `create_revision(director) == epoch`: once another node has been elected (or this one's
//! lease expired), etcd refuses them and the Director stops acting at once.

mod round;

use round::RoundError;

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Compare, CompareOp, EventType, PutOptions, Txn, TxnOp, WatchOptions};
use tokio::sync::watch;

use super::etcd::Etcd;
use super::keys::Keys;
use super::records::{DirectorRecord, encode};
use crate::storage::StorageError;

/// How long a round waits after a change before it looks (changes come in bursts: a node's
/// lease takes its node key and all its owner keys at once).
const SETTLE: Duration = Duration::from_millis(20);
/// A round runs at least this often even when no change is seen.
const RECHECK: Duration = Duration::from_secs(5);
/// The pause after a watch broke, before looking again.
const WATCH_BROKEN: Duration = Duration::from_millis(200);
/// Owner keys created per transaction (each adds a compare: etcd's limit is 128).
const LOCKS_PER_TXN: usize = 64;

/// What the Director starts on its node when it is elected (the version authority, SPEC §6).
pub trait DirectorHooks: Send + Sync + 'static {
    /// Every round of the Director elected under `epoch` (phase 4): start what runs on the
    /// Director's node under that epoch, if it does not run yet. An error fails the round,
    /// which is retried. Runs on the etcd client's thread: block nowhere, hand blocking work
    /// to another runtime.
    fn elected(&self, epoch: i64) -> HookFuture<'_>;
}

/// What [`DirectorHooks::elected`] returns.
pub type HookFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), StorageError>> + Send + 'a>>;

/// No hooks.
#[derive(Debug, Default)]
pub struct NoHooks;

impl DirectorHooks for NoHooks {
    fn elected(&self, _epoch: i64) -> HookFuture<'_> {
        Box::pin(std::future::ready(Ok(())))
    }
}

/// Who directs the cluster, as this node knows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DirectorStatus {
    /// This node is the Director under this epoch.
    pub epoch: Option<i64>,
    /// Completed rounds under the current epoch.
    pub rounds: u64,
}

/// The Director's campaign on one node.
pub struct Campaign {
    pub(crate) etcd: Arc<Etcd>,
    pub(crate) keys: Keys,
    /// This node's id.
    pub(crate) node: String,
    /// This node's lease (the election key lives on it).
    pub(crate) lease: i64,
    pub(crate) partitions: u16,
    pub(crate) hooks: Arc<dyn DirectorHooks>,
    pub(crate) status: watch::Sender<DirectorStatus>,
    /// The layout this Director published last, and under which epoch (not written again
    /// unchanged).
    pub(crate) published: std::sync::Mutex<Option<(i64, Vec<String>)>>,
}

/// Why a Director stopped directing.
enum Deposed {
    /// Another node holds the election key now (or this node's lease expired).
    Fenced,
    /// Asked to stop.
    Stopped,
}

impl Campaign {
    /// A campaign of node `node` (lease `lease`) in cluster `keys` of `partitions` partitions.
    pub fn new(
        etcd: Arc<Etcd>,
        keys: Keys,
        node: String,
        lease: i64,
        partitions: u16,
        hooks: Arc<dyn DirectorHooks>,
    ) -> (Campaign, watch::Receiver<DirectorStatus>) {
        let (status, rx) = watch::channel(DirectorStatus::default());
        let campaign = Campaign {
            etcd,
            keys,
            node,
            lease,
            partitions,
            hooks,
            status,
            published: std::sync::Mutex::new(None),
        };
        (campaign, rx)
    }

    /// Campaigns, directs while elected, campaigns again when deposed, until `stop` is true.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut failures = 0u32;
        while !*stop.borrow() {
            match self.campaign_once(&mut stop).await {
                Ok(Some(epoch)) => {
                    failures = 0;
                    tracing::info!(epoch, node = %self.node, "director: elected");
                    self.status.send_replace(DirectorStatus {
                        epoch: Some(epoch),
                        rounds: 0,
                    });
                    let why = self.direct(epoch, &mut stop).await;
                    self.status.send_replace(DirectorStatus::default());
                    match why {
                        Deposed::Fenced => {
                            tracing::warn!(epoch, "director: deposed; no longer acting")
                        }
                        Deposed::Stopped => {
                            self.resign(epoch).await;
                            return;
                        }
                    }
                }
                Ok(None) => failures = 0,
                Err(e) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(error = %e, "director: campaign failed; retrying");
                    let wait = Duration::from_millis(100 * u64::from(failures.min(10)));
                    tokio::select! {
                        _ = stop.changed() => {}
                        () = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
    }

    /// One try: `Some(epoch)` when elected; `None` after another Director's key went away
    /// (or a stop).
    async fn campaign_once(
        &self,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<Option<i64>, StorageError> {
        let key = self.keys.director();
        let record = encode(&DirectorRecord {
            node: self.node.clone(),
        });
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                key.clone(),
                record,
                Some(PutOptions::new().with_lease(self.lease)),
            )])
            .or_else([TxnOp::get(key.clone(), None)]);
        let mut client = self.etcd.client();
        let response = self
            .etcd
            .call("director campaign", async move { client.txn(txn).await })
            .await?;
        let revision = response.header().map_or(0, |h| h.revision());
        if response.succeeded() {
            return Ok(Some(revision));
        }
        // Someone else directs: wait until its key goes (lease expiry or resignation).
        let mut client = self.etcd.client();
        let options = WatchOptions::new().with_start_revision(revision + 1);
        let mut events = self
            .etcd
            .call("director watch", async move {
                client.watch(key, Some(options)).await
            })
            .await?;
        loop {
            tokio::select! {
                _ = stop.changed() => return Ok(None),
                message = events.message() => match message {
                    Ok(Some(m)) if m.events().iter().any(|e| e.event_type() == EventType::Delete) => return Ok(None),
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => {
                        // The watch broke: campaign again, not at once.
                        tokio::time::sleep(WATCH_BROKEN).await;
                        return Ok(None);
                    }
                },
            }
        }
    }

    /// Directs under `epoch` until deposed or stopped.
    async fn direct(&self, epoch: i64, stop: &mut watch::Receiver<bool>) -> Deposed {
        loop {
            if *stop.borrow() {
                return Deposed::Stopped;
            }
            let revision = match self.round(epoch).await {
                Ok(r) => {
                    self.status.send_modify(|s| s.rounds += 1);
                    r
                }
                Err(RoundError::Deposed) => return Deposed::Fenced,
                Err(RoundError::Storage(e)) => {
                    tracing::warn!(epoch, error = %e, "director: round failed; retrying");
                    tokio::select! {
                        _ = stop.changed() => {}
                        () = tokio::time::sleep(Duration::from_millis(200)) => {}
                    }
                    continue;
                }
            };
            // Phase 6: watch.
            match self.wait_for_change(revision, stop).await {
                Ok(true) => {}
                Ok(false) => return Deposed::Fenced,
                Err(e) => tracing::warn!(epoch, error = %e, "director: watch failed"),
            }
            tokio::select! {
                _ = stop.changed() => {}
                () = tokio::time::sleep(SETTLE) => {}
            }
        }
    }

    /// Waits for a change of the nodes or owners after `revision` (or [`RECHECK`]); `false`
    /// when the election key went away.
    async fn wait_for_change(
        &self,
        revision: i64,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<bool, StorageError> {
        let mut client = self.etcd.client();
        // The whole cluster prefix up to (not including) the values `v/`: director, handover,
        // layout, meta, nodes, owner.
        let start = self.keys.prefix().to_owned();
        let end = format!("{}v/", self.keys.prefix());
        let options = WatchOptions::new()
            .with_range(end)
            .with_start_revision(revision + 1);
        let mut events = self
            .etcd
            .call("director watch", async move {
                client.watch(start, Some(options)).await
            })
            .await?;
        let director = self.keys.director();
        let layout = self.keys.layout();
        let deadline = tokio::time::sleep(RECHECK);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = stop.changed() => return Ok(true),
                () = &mut deadline => return Ok(true),
                message = events.message() => {
                    let Ok(Some(m)) = message else {
                        tokio::time::sleep(WATCH_BROKEN).await;
                        return Ok(true);
                    };
                    let mut relevant = false;
                    for e in m.events() {
                        let Some(kv) = e.kv() else { continue };
                        if kv.key() == director.as_bytes() {
                            if e.event_type() == EventType::Delete {
                                return Ok(false);
                            }
                        } else if kv.key() != layout.as_bytes() {
                            relevant = true;
                        }
                    }
                    if relevant {
                        return Ok(true);
                    }
                }
            }
        }
    }

    /// Gives the election up (graceful stop): another node is elected at once.
    async fn resign(&self, epoch: i64) {
        let key = self.keys.director();
        let txn = Txn::new()
            .when([self.fence(epoch)])
            .and_then([TxnOp::delete(key, None)]);
        let mut client = self.etcd.client();
        if let Err(e) = self
            .etcd
            .call("director resign", async move { client.txn(txn).await })
            .await
        {
            tracing::warn!(error = %e, "director: could not resign; the election key expires with the lease");
        }
    }
}
