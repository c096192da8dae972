//! What a [`Node`] tells about itself: `/metrics` series, `INFO cluster`, `GET /v1/cluster`'s
//! `this_node`, and a sequencer-only node's refusal of clients.

use std::sync::atomic::{AtomicU64, Ordering};

use super::Node;

impl Node {
    /// `--routing`, as `CLUSTER INFO` and `INFO` name it.
    pub(crate) fn config_routing(&self) -> &'static str {
        self.routing.name()
    }

    /// A sequencer-only node's refusal of a client's request (`None` on a gateway): it
    /// names the gateways, so the client knows where to go.
    pub(crate) fn client_refusal(&self) -> Option<String> {
        if self.record.accepts_clients {
            return None;
        }
        let map = self.view.slots();
        let gateways: Vec<&str> = map.nodes.iter().map(|n| n.address.as_str()).collect();
        Some(if gateways.is_empty() {
            "ERR this node is sequencer-only and serves no clients, and no gateway is up; \
             retry later"
                .into()
        } else {
            format!(
                "ERR this node is sequencer-only and serves no clients; connect to a gateway: {}",
                gateways.join(", ")
            )
        })
    }

    /// `INFO cluster`: the node's id, roles, routing and forwarding counters.
    pub(crate) fn info(&self, f: &mut crate::daemon::info::Field<'_>) {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let roles: Vec<&str> = self.record.roles.iter().map(|r| r.name()).collect();
        let batches = get(&self.stats.forward_batches);
        f("seqd_node_id", &self.id);
        f("seqd_roles", &roles.join(","));
        f("seqd_routing", &self.routing.name());
        f("forwarded_requests", &get(&self.stats.forwarded_requests));
        f("forward_batches", &batches);
        f(
            "mean_forward_latency_us",
            &get(&self.stats.forward_latency_us)
                .checked_div(batches)
                .unwrap_or(0),
        );
        f("redirects", &get(&self.stats.redirects));
        f("handover_retries", &get(&self.stats.handover_retries));
    }

    /// This node in `GET /v1/cluster`: its id, roles, routing and forwarding counters.
    pub(crate) fn this_node(&self) -> serde_json::Value {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let batches = get(&self.stats.forward_batches);
        serde_json::json!({
            "id": self.id,
            "roles": self.record.roles,
            "accepts_clients": self.record.accepts_clients,
            "routing": self.routing.name(),
            "forwarded_requests": get(&self.stats.forwarded_requests),
            "forward_batches": batches,
            "mean_forward_latency_us": get(&self.stats.forward_latency_us).checked_div(batches).unwrap_or(0),
            "redirects": get(&self.stats.redirects),
            "handover_retries": get(&self.stats.handover_retries),
        })
    }

    /// The node's series for `/metrics`.
    pub(crate) fn series(
        &self,
        partitions: &crate::daemon::partitions::Partitions,
    ) -> crate::daemon::metrics::NodeSeries {
        let etcd = self.etcd.stats();
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let served = (0..partitions.len())
            .filter(|p| partitions.serving_epoch(*p).is_some())
            .count();
        let epoch = self.director_epoch();
        crate::daemon::metrics::NodeSeries {
            counters: vec![
                (
                    "seqd_cluster_ownership_changes",
                    "Partitions this node took over or gave up",
                    get(&self.stats.ownership_changes),
                ),
                (
                    "seqd_cluster_handovers",
                    "Partitions this node handed over gracefully (exact values, nothing skipped)",
                    get(&self.stats.handovers),
                ),
                (
                    "seqd_fenced_writes",
                    "Writes etcd refused because the partition had another owner",
                    get(&etcd.fenced_writes),
                ),
                ("seqd_etcd_requests", "Calls to etcd", get(&etcd.calls)),
                (
                    "seqd_etcd_errors",
                    "Calls to etcd that failed (unreachable, timed out, refused)",
                    get(&etcd.errors),
                ),
                (
                    "seqd_etcd_latency_microseconds",
                    "Sum of the etcd calls' latencies (divide by seqd_etcd_requests for the mean)",
                    get(&etcd.latency_us),
                ),
                (
                    "seqd_director_elections",
                    "Times this node was elected Director",
                    get(&self.stats.elections),
                ),
                (
                    "seqd_cluster_leases",
                    "etcd leases this node registered with (more than one: it lost one)",
                    get(&self.stats.leases),
                ),
                (
                    "seqd_forwarded_requests",
                    "Requests forwarded to the nodes that own their partitions",
                    get(&self.stats.forwarded_requests),
                ),
                (
                    "seqd_forward_batches",
                    "Pipelined batches of forwarded requests",
                    get(&self.stats.forward_batches),
                ),
                (
                    "seqd_forward_latency_microseconds",
                    "Sum of the forwarded batches' round trips (divide by seqd_forward_batches)",
                    get(&self.stats.forward_latency_us),
                ),
                (
                    "seqd_redirects",
                    "-MOVED replies sent (--routing redirect)",
                    get(&self.stats.redirects),
                ),
                (
                    "seqd_handover_retries",
                    "-TRYAGAIN replies sent for slots being handed over (--routing redirect)",
                    get(&self.stats.handover_retries),
                ),
            ],
            gauges: vec![
                (
                    "seqd_cluster_partitions_served",
                    "Partitions this node answers for now",
                    i64::try_from(served).unwrap_or(i64::MAX),
                ),
                (
                    "seqd_director_epoch",
                    "This node's Director epoch (0: not the Director)",
                    epoch.unwrap_or(0),
                ),
            ],
        }
    }
}
