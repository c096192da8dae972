//! [`Node`]: this daemon as a member of a cluster — its etcd connection, lease and
//! registration, its view of the cluster, its Director campaign, its peers — and joining.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use tokio::sync::watch;

use super::ClusterConfig;
use super::versions::VersionHooks;
use crate::cluster::forward::{PEER_NAME, PeerOptions, Peers};
use crate::cluster::records::{NodeRecord, Role};
use crate::cluster::{
    Campaign, ClusterView, DirectorStatus, Etcd, Keys, LeaseState, NodeLease, Validity, check_meta,
    read_meta, register,
};
use crate::daemon::Config;
use crate::daemon::versions::{Authority, Versions};
use crate::error::{Error, Result};
use crate::util::lock;

/// Counters behind the cluster's metrics.
#[derive(Debug, Default)]
pub(crate) struct NodeStats {
    /// Partitions this node took or lost.
    pub(crate) ownership_changes: AtomicU64,
    /// Partitions this node handed over gracefully.
    pub(crate) handovers: AtomicU64,
    /// Times this node was elected Director.
    pub(crate) elections: AtomicU64,
    /// Leases this node registered with (more than one: it lost its lease and registered again).
    pub(crate) leases: AtomicU64,
    /// Requests forwarded to other nodes, in how many batches, and their latency (sum).
    pub(crate) forwarded_requests: AtomicU64,
    pub(crate) forward_batches: AtomicU64,
    pub(crate) forward_latency_us: AtomicU64,
    /// `-MOVED` replies sent (redirect routing).
    pub(crate) redirects: AtomicU64,
    /// `-TRYAGAIN` replies sent for slots being handed over (redirect routing).
    pub(crate) handover_retries: AtomicU64,
}

impl NodeStats {
    /// A batch of `n` requests was forwarded and answered (or failed) after `took`.
    pub(crate) fn forwarded(&self, n: usize, took: Duration) {
        self.forwarded_requests
            .fetch_add(n as u64, Ordering::Relaxed);
        self.forward_batches.fetch_add(1, Ordering::Relaxed);
        self.forward_latency_us.fetch_add(
            u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }
}

/// A running Director campaign.
struct Director {
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
    status: watch::Receiver<DirectorStatus>,
}

/// This daemon in its cluster.
pub(crate) struct Node {
    pub(crate) etcd: Arc<Etcd>,
    pub(crate) keys: Keys,
    /// `--node-id`.
    pub(crate) id: String,
    /// The cluster's partition count.
    pub(crate) partitions: u16,
    pub(crate) view: ClusterView,
    pub(crate) peers: Arc<Peers>,
    pub(crate) stats: NodeStats,
    pub(crate) record: NodeRecord,
    ttl: Duration,
    pub(crate) max_ops: usize,
    lease_slot: Mutex<Option<NodeLease>>,
    /// The current lease's deadline check, for the gates opened under it.
    validity: ArcSwap<Validity>,
    director: Mutex<Option<Director>>,
    /// `--routing`.
    pub(crate) routing: super::Routing,
    /// This node's Director epoch now (0: not the Director), as its campaign last said.
    pub(crate) director_now: Arc<AtomicI64>,
    /// The version authority: run here while this node is the Director.
    pub(crate) versions: Arc<Versions>,
    /// The daemon's runtime (the Director's hooks hand blocking work to it).
    main: tokio::runtime::Handle,
}

impl Node {
    /// Joins the cluster `config` names: connects to etcd (retrying, with the reason logged,
    /// until it answers), agrees on the partition count, takes a lease, registers, reads
    /// the cluster and campaigns for Director. `listen` and `admin` are the bound addresses.
    pub(crate) async fn join(
        config: &Config,
        listen: SocketAddr,
        admin: SocketAddr,
    ) -> Result<Arc<Node>> {
        let cc: &ClusterConfig = &config.cluster;
        let keys = Keys::new(&cc.cluster)?;
        let roles = cc.parsed_roles()?;
        let advertise = cc.advertise.clone().unwrap_or_else(|| listen.to_string());
        if listen.ip().is_unspecified() && cc.advertise.is_none() {
            tracing::warn!(
                %listen,
                "listening on all interfaces without --advertise: other nodes are told {advertise}; set --advertise HOST:PORT"
            );
        }
        let id = cc.node_id.clone().unwrap_or_else(|| advertise.clone());
        let (etcd, partitions) = connect(config, &keys).await?;
        let record = NodeRecord {
            id: id.clone(),
            address: advertise,
            admin: admin.to_string(),
            accepts_clients: roles.contains(&Role::Gateway),
            roles,
            version: env!("CARGO_PKG_VERSION").into(),
            started_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        };
        let ttl = cc.lease_ttl();
        let node_lease = NodeLease::start(&etcd, ttl).await?;
        // A previous incarnation of this id may hold it until its lease expires.
        register(
            &etcd,
            &keys,
            &record,
            node_lease.lease(),
            node_lease.ttl() + Duration::from_secs(2),
        )
        .await?;
        let view = ClusterView::start(&etcd, keys.clone(), &cc.cluster, partitions).await?;
        // Forwarding runs on the daemon's runtime, not the etcd client's thread: heavy
        // forwarding must never delay the lease's keep-alives.
        let peers = Peers::new(
            tokio::runtime::Handle::current(),
            PeerOptions {
                auth_token: config.auth_token.clone(),
                timeout: Duration::from_secs(5),
                name: Some(PEER_NAME.into()),
                ..PeerOptions::default()
            },
        );
        tracing::info!(
            node = %id,
            cluster = %cc.cluster,
            partitions,
            lease_ttl_s = node_lease.ttl().as_secs(),
            "joined the cluster"
        );
        let node = Arc::new(Node {
            validity: ArcSwap::from_pointee(node_lease.validity()),
            etcd,
            keys,
            id,
            partitions,
            view,
            peers,
            stats: NodeStats::default(),
            record,
            ttl,
            max_ops: cc.etcd_max_txn_ops,
            lease_slot: Mutex::new(None),
            director: Mutex::new(None),
            routing: cc.routing,
            director_now: Arc::new(AtomicI64::new(0)),
            versions: Arc::new(Versions::new(config, Authority::Elsewhere)),
            main: tokio::runtime::Handle::current(),
        });
        node.stats.leases.fetch_add(1, Ordering::Relaxed);
        node.campaign(node_lease.lease());
        *lock(&node.lease_slot) = Some(node_lease);
        Ok(node)
    }

    /// The TTL asked for the node's lease.
    pub(crate) fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The current lease's deadline check.
    pub(crate) fn validity(&self) -> Arc<Validity> {
        self.validity.load_full()
    }

    /// Where the current lease stands.
    pub(crate) fn lease_state(&self) -> LeaseState {
        lock(&self.lease_slot)
            .as_ref()
            .map_or(LeaseState::Lost, NodeLease::state)
    }

    /// This node's Director epoch, if it directs.
    pub(crate) fn director_epoch(&self) -> Option<i64> {
        lock(&self.director)
            .as_ref()
            .and_then(|d| d.status.borrow().epoch)
    }

    /// Starts campaigning for Director on `lease`, replacing a campaign on an older lease.
    fn campaign(self: &Arc<Self>, lease: i64) {
        let (campaign, status) = Campaign::new(
            Arc::clone(&self.etcd),
            self.keys.clone(),
            self.id.clone(),
            lease,
            self.partitions,
            Arc::new(VersionHooks {
                node: Arc::downgrade(self),
                main: self.main.clone(),
            }),
        );
        let (stop, stopped) = watch::channel(false);
        let task = self.etcd.spawn(campaign.run(stopped));
        // Count elections.
        let mut watch_status = status.clone();
        let me = Arc::downgrade(self);
        self.etcd.spawn(async move {
            let mut last = None;
            while watch_status.changed().await.is_ok() {
                let epoch = watch_status.borrow().epoch;
                let Some(node) = me.upgrade() else {
                    return;
                };
                if epoch.is_some() && epoch != last {
                    node.stats.elections.fetch_add(1, Ordering::Relaxed);
                }
                node.director_now
                    .store(epoch.unwrap_or(0), Ordering::Release);
                if epoch.is_none() {
                    // Deposed (or stopped): the version authority goes at once, not at the
                    // next request.
                    super::versions::deposed(&node.versions, None);
                }
                last = epoch;
            }
        });
        let old = lock(&self.director).replace(Director { stop, task, status });
        if let Some(old) = old {
            let _ = old.stop.send(true);
        }
    }

    /// After the lease was lost: a new lease, a new registration (a new incarnation: every
    /// partition it owns from now on has a new epoch) and a new campaign. Retries until it
    /// works or `stop`.
    pub(crate) async fn renew_lease(self: &Arc<Self>, stop: &mut watch::Receiver<bool>) {
        let mut wait = Duration::from_millis(100);
        while !*stop.borrow() {
            match self.try_renew_lease().await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot register again in the cluster; retrying");
                    tokio::select! {
                        _ = stop.changed() => {}
                        () = tokio::time::sleep(wait) => {}
                    }
                    wait = (wait * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    async fn try_renew_lease(self: &Arc<Self>) -> Result<()> {
        let node_lease = NodeLease::start(&self.etcd, self.ttl).await?;
        register(
            &self.etcd,
            &self.keys,
            &self.record,
            node_lease.lease(),
            node_lease.ttl() + Duration::from_secs(2),
        )
        .await?;
        self.validity.store(Arc::new(node_lease.validity()));
        self.stats.leases.fetch_add(1, Ordering::Relaxed);
        self.campaign(node_lease.lease());
        let old = lock(&self.lease_slot).replace(node_lease);
        drop(old);
        tracing::info!(node = %self.id, "registered again in the cluster with a new lease");
        Ok(())
    }

    /// Registers this node again without the sequencer role (same lease): the Director then
    /// moves its partitions to the other sequencers by handover requests.
    pub(crate) async fn retire(&self) -> Result<()> {
        let Some(lease) = lock(&self.lease_slot).as_ref().map(NodeLease::lease) else {
            return Ok(());
        };
        let mut record = self.record.clone();
        record.roles.retain(|r| *r != Role::Sequencer);
        let key = self.keys.node(&self.id);
        let txn = etcd_client::Txn::new()
            .when([etcd_client::Compare::lease(
                key.clone(),
                etcd_client::CompareOp::Equal,
                lease,
            )])
            .and_then([etcd_client::TxnOp::put(
                key,
                crate::cluster::records::encode(&record),
                Some(etcd_client::PutOptions::new().with_lease(lease)),
            )]);
        let mut client = self.etcd.client();
        let response = self
            .etcd
            .call("retire the node", async move { client.txn(txn).await })
            .await?;
        if response.succeeded() {
            tracing::info!(node = %self.id, "no longer a sequencer: the Director moves its partitions");
        }
        Ok(())
    }

    /// Whether another live node may take partitions (one with the sequencer role).
    pub(crate) fn other_sequencers(&self) -> bool {
        self.view
            .snapshot()
            .nodes
            .iter()
            .any(|n| n.id != self.id && n.roles.contains(&Role::Sequencer))
    }

    /// Leaves the cluster: stops campaigning (resigning if Director), stops following the
    /// cluster, and revokes the lease (its keys go at once).
    pub(crate) async fn leave(&self) {
        let director = lock(&self.director).take();
        if let Some(mut d) = director {
            let _ = d.stop.send(true);
            if let Some(task) = d.task.take() {
                let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
            }
        }
        let node_lease = lock(&self.lease_slot).take();
        if let Some(s) = node_lease {
            s.close().await;
        }
        tracing::info!(node = %self.id, "left the cluster");
    }
}

/// Connects to etcd and agrees on the partition count, retrying while etcd is unreachable.
async fn connect(config: &Config, keys: &Keys) -> Result<(Arc<Etcd>, u16)> {
    let cc = &config.cluster;
    let mut wait = Duration::from_millis(200);
    loop {
        let (endpoints, timeout) = (cc.etcd.clone(), cc.etcd_timeout());
        let connected = tokio::task::spawn_blocking(move || Etcd::connect(&endpoints, timeout))
            .await
            .map_err(|e| Error::Panicked {
                context: "connecting to etcd".into(),
                message: e.to_string(),
            })?;
        let attempt = match connected {
            Ok(etcd) => agree(config, &etcd, keys).await.map(|n| (etcd, n)),
            Err(e) => Err(Error::Storage(e)),
        };
        match attempt {
            Ok(done) => return Ok(done),
            Err(Error::Storage(e)) if e.is_retryable() => {
                tracing::error!(
                    error = %e,
                    etcd = %cc.etcd.join(","),
                    retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                    "cannot reach etcd; is it running? retrying"
                );
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e),
        }
    }
}

/// The partition count: the cluster's; `--partitions` must agree with it when given.
async fn agree(config: &Config, etcd: &Arc<Etcd>, keys: &Keys) -> Result<u16> {
    let stored = read_meta(etcd, keys).await?;
    let wanted = match (config.partitions, stored) {
        (Some(n), _) => n,
        (None, Some(meta)) => meta.partitions,
        (None, None) => config.partition_count(),
    };
    Ok(check_meta(etcd, keys, wanted).await?.partitions)
}
