//! [`ClusterView`]: a node's picture of the cluster — live nodes, the Director, each
//! partition's owner and epoch — kept current by an etcd watch, for routing, ownership and
//! `GET /v1/cluster` ([`ClusterSnapshot`]).
//!
//! It reads every key of the cluster outside the values (`v/`) once, then applies the watch's
//! events from the next revision on. When the watch breaks (etcd restarted, compacted past
//! the revision), it reads everything again and watches from there: the view may lag, never
//! skip an event silently. Nothing decides safety from it — etcd's fenced transactions do —
//! so a stale view costs a redirect or a retry, not a number.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use arc_swap::ArcSwap;
use std::time::Duration;

use etcd_client::{EventType, GetOptions, KeyValue, WatchOptions};
use serde::Serialize;
use tokio::sync::watch;

use super::etcd::Etcd;
use super::keys::{Keys, slot_range};
use super::records::{DirectorRecord, HandoverRecord, NodeRecord, OwnerRecord, Role, decode};
use super::slots::SlotMap;
use crate::storage::StorageError;
use crate::types::PartitionId;

/// What the view holds.
#[derive(Clone, Debug, Default)]
struct State {
    nodes: BTreeMap<String, NodeRecord>,
    /// By partition: owner node and epoch.
    owners: Vec<Option<(String, i64)>>,
    /// Node and epoch.
    director: Option<(String, i64)>,
    /// By partition: a pending handover request.
    handovers: Vec<Option<HandoverRecord>>,
}

/// The cluster as `GET /v1/cluster` shows it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ClusterSnapshot {
    /// `--cluster`.
    pub cluster: String,
    /// The cluster's partition count.
    pub partitions_count: u16,
    /// The Director, when one is elected.
    pub director: Option<DirectorSnapshot>,
    /// The version authority's node and epoch: the Director runs it on its own node under
    /// its own epoch.
    pub version_authority: Option<DirectorSnapshot>,
    /// The live nodes.
    pub nodes: Vec<NodeSnapshot>,
    /// Every partition, in order.
    pub partitions: Vec<PartitionSnapshot>,
}

/// The Director in a [`ClusterSnapshot`].
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct DirectorSnapshot {
    /// Its node id.
    pub node: String,
    /// Its epoch.
    pub epoch: i64,
}

/// A node in a [`ClusterSnapshot`].
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct NodeSnapshot {
    /// `--node-id`.
    pub id: String,
    /// Its protocol address.
    pub address: String,
    /// Its HTTP admin address.
    pub admin: String,
    /// What it does.
    pub roles: Vec<Role>,
    /// Whether it serves clients.
    pub accepts_clients: bool,
    /// Registered under a live lease.
    pub alive: bool,
}

/// A partition in a [`ClusterSnapshot`].
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct PartitionSnapshot {
    /// The partition.
    pub partition: u16,
    /// Its owner's node id (`null` while unowned).
    pub owner: Option<String>,
    /// Its epoch (`null` while unowned).
    pub epoch: Option<i64>,
    /// Its first and last Redis hash slot.
    pub slots: [u16; 2],
}

/// A node's watch-fed picture of the cluster.
pub struct ClusterView {
    name: String,
    partitions: u16,
    state: Arc<RwLock<State>>,
    /// The slot map of `state`, rebuilt after every change (read per request in redirect
    /// mode, without a lock).
    slots: Arc<ArcSwap<SlotMap>>,
    changes: watch::Receiver<u64>,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl ClusterView {
    /// Reads the cluster `keys` (named `name`, of `partitions` partitions) and follows it.
    pub async fn start(
        etcd: &Arc<Etcd>,
        keys: Keys,
        name: &str,
        partitions: u16,
    ) -> Result<ClusterView, StorageError> {
        let state = Arc::new(RwLock::new(State::default()));
        let slots = Arc::new(ArcSwap::from_pointee(SlotMap::default()));
        let reader = Reader {
            etcd: Arc::clone(etcd),
            keys,
            partitions,
            state: Arc::clone(&state),
            slots: Arc::clone(&slots),
        };
        let (changed, changes) = watch::channel(0u64);
        let revision = reader.load(&changed).await?;
        let (stop, stopped) = watch::channel(false);
        let task = etcd.spawn(reader.follow(revision, changed, stopped));
        Ok(ClusterView {
            name: name.to_owned(),
            partitions,
            state,
            slots,
            changes,
            stop,
            task,
        })
    }

    /// Bumped after every change applied: wait on it for the view to move.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.clone()
    }

    /// Partition `p`'s owner and epoch.
    pub fn owner(&self, p: PartitionId) -> Option<(String, i64)> {
        self.read(|s| s.owners.get(usize::from(p.0)).cloned().flatten())
    }

    /// The handover the Director asked of partition `p`'s owner, if one is pending.
    pub fn handover(&self, p: PartitionId) -> Option<HandoverRecord> {
        self.read(|s| s.handovers.get(usize::from(p.0)).cloned().flatten())
    }

    /// Where Redis Cluster clients are sent for each slot.
    pub fn slots(&self) -> arc_swap::Guard<Arc<SlotMap>> {
        self.slots.load()
    }

    /// The Director's node and epoch.
    pub fn director(&self) -> Option<(String, i64)> {
        self.read(|s| s.director.clone())
    }

    /// Node `id`'s registration, while it lives.
    pub fn node(&self, id: &str) -> Option<NodeRecord> {
        self.read(|s| s.nodes.get(id).cloned())
    }

    /// The cluster as `GET /v1/cluster` shows it.
    pub fn snapshot(&self) -> ClusterSnapshot {
        self.read(|s| ClusterSnapshot {
            cluster: self.name.clone(),
            partitions_count: self.partitions,
            director: s.director.as_ref().map(|(node, epoch)| DirectorSnapshot {
                node: node.clone(),
                epoch: *epoch,
            }),
            version_authority: s.director.as_ref().map(|(node, epoch)| DirectorSnapshot {
                node: node.clone(),
                epoch: *epoch,
            }),
            nodes: s
                .nodes
                .values()
                .map(|n| NodeSnapshot {
                    id: n.id.clone(),
                    address: n.address.clone(),
                    admin: n.admin.clone(),
                    roles: n.roles.clone(),
                    accepts_clients: n.accepts_clients,
                    alive: true,
                })
                .collect(),
            partitions: (0..self.partitions)
                .map(|p| {
                    let owner = s.owners.get(usize::from(p)).cloned().flatten();
                    let (first, last) = slot_range(PartitionId(p), self.partitions);
                    PartitionSnapshot {
                        partition: p,
                        epoch: owner.as_ref().map(|(_, e)| *e),
                        owner: owner.map(|(n, _)| n),
                        slots: [first, last],
                    }
                })
                .collect(),
        })
    }

    fn read<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        match self.state.read() {
            Ok(s) => f(&s),
            Err(poisoned) => f(&poisoned.into_inner()),
        }
    }

    /// Stops following.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for ClusterView {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// The task behind a [`ClusterView`].
struct Reader {
    etcd: Arc<Etcd>,
    keys: Keys,
    partitions: u16,
    state: Arc<RwLock<State>>,
    slots: Arc<ArcSwap<SlotMap>>,
}

impl Reader {
    /// Rebuilds the slot map from the state, then tells the waiters.
    fn changed(&self, changed: &watch::Sender<u64>) {
        let map = {
            let s = match self.state.read() {
                Ok(s) => s,
                Err(p) => p.into_inner(),
            };
            let moving: Vec<bool> = s.handovers.iter().map(Option::is_some).collect();
            let epoch = s.director.as_ref().map_or(0, |(_, e)| *e);
            SlotMap::build(&s.nodes, &s.owners, &moving, self.partitions, epoch)
        };
        self.slots.store(Arc::new(map));
        changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Reads every key outside `v/` and replaces the state; returns the read's revision.
    async fn load(&self, changed: &watch::Sender<u64>) -> Result<i64, StorageError> {
        let mut client = self.etcd.client();
        let (start, end) = self.range();
        let response = self
            .etcd
            .call("read the cluster", async move {
                client
                    .get(start, Some(GetOptions::new().with_range(end)))
                    .await
            })
            .await?;
        let mut fresh = State {
            owners: vec![None; usize::from(self.partitions)],
            handovers: vec![None; usize::from(self.partitions)],
            ..State::default()
        };
        for kv in response.kvs() {
            self.apply_put(&mut fresh, kv);
        }
        self.replace(fresh);
        self.changed(changed);
        Ok(response.header().map_or(0, |h| h.revision()))
    }

    /// From `director` up to (not including) the values.
    fn range(&self) -> (String, String) {
        (
            self.keys.prefix().to_owned(),
            format!("{}v/", self.keys.prefix()),
        )
    }

    fn replace(&self, fresh: State) {
        match self.state.write() {
            Ok(mut s) => *s = fresh,
            Err(poisoned) => *poisoned.into_inner() = fresh,
        }
    }

    fn apply_put(&self, state: &mut State, kv: &KeyValue) {
        let key = kv.key();
        if let Some(id) = self.keys.node_in(key) {
            if let Ok(n) = decode::<NodeRecord>(key, kv.value()) {
                state.nodes.insert(id.to_owned(), n);
            }
        } else if let Some(p) = self.keys.partition_in(&self.keys.owners(), key) {
            if let (Some(slot), Ok(o)) = (
                state.owners.get_mut(usize::from(p.0)),
                decode::<OwnerRecord>(key, kv.value()),
            ) {
                *slot = Some((o.node, kv.mod_revision()));
            }
        } else if let Some(p) = self.keys.partition_in(&self.keys.handovers(), key) {
            if let (Some(slot), Ok(h)) = (
                state.handovers.get_mut(usize::from(p.0)),
                decode::<HandoverRecord>(key, kv.value()),
            ) {
                *slot = Some(h);
            }
        } else if key == self.keys.director().as_bytes()
            && let Ok(d) = decode::<DirectorRecord>(key, kv.value())
        {
            state.director = Some((d.node, kv.create_revision()));
        }
    }

    fn apply_delete(&self, state: &mut State, key: &[u8]) {
        if let Some(id) = self.keys.node_in(key) {
            state.nodes.remove(id);
        } else if let Some(p) = self.keys.partition_in(&self.keys.owners(), key) {
            if let Some(slot) = state.owners.get_mut(usize::from(p.0)) {
                *slot = None;
            }
        } else if let Some(p) = self.keys.partition_in(&self.keys.handovers(), key) {
            if let Some(slot) = state.handovers.get_mut(usize::from(p.0)) {
                *slot = None;
            }
        } else if key == self.keys.director().as_bytes() {
            state.director = None;
        }
    }

    /// Applies the watch's events after `revision` until stopped; reloads after a break.
    async fn follow(
        self,
        mut revision: i64,
        changed: watch::Sender<u64>,
        mut stopped: watch::Receiver<bool>,
    ) {
        let mut failures = 0u32;
        while !*stopped.borrow() {
            let mut client = self.etcd.client();
            let (start, end) = self.range();
            let options = WatchOptions::new()
                .with_range(end)
                .with_start_revision(revision + 1);
            let watched = self
                .etcd
                .call("watch the cluster", async move {
                    client.watch(start, Some(options)).await
                })
                .await;
            if let Ok(mut events) = watched {
                loop {
                    tokio::select! {
                        _ = stopped.changed() => return,
                        message = events.message() => match message {
                            Ok(Some(m)) if !m.canceled() => {
                                failures = 0;
                                if let Some(h) = m.header() {
                                    revision = revision.max(h.revision());
                                }
                                if m.events().is_empty() {
                                    continue;
                                }
                                let mut s = match self.state.write() {
                                    Ok(s) => s,
                                    Err(p) => p.into_inner(),
                                };
                                for e in m.events() {
                                    let Some(kv) = e.kv() else { continue };
                                    match e.event_type() {
                                        EventType::Put => self.apply_put(&mut s, kv),
                                        EventType::Delete => self.apply_delete(&mut s, kv.key()),
                                    }
                                }
                                drop(s);
                                self.changed(&changed);
                            }
                            _ => break,
                        },
                    }
                }
            }
            // The watch broke: read everything again, then watch from there.
            failures = failures.saturating_add(1);
            let wait = Duration::from_millis(50 * u64::from(failures.min(20)));
            tokio::select! {
                _ = stopped.changed() => return,
                () = tokio::time::sleep(wait) => {}
            }
            match self.load(&changed).await {
                Ok(r) => revision = r,
                Err(e) => tracing::warn!(error = %e, "cannot read the cluster from etcd; retrying"),
            }
        }
    }
}
