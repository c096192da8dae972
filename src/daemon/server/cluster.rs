//! The Redis Cluster protocol on a connection (SPEC §5, "Routing"): `CLUSTER SLOTS`,
//! `SHARDS`, `NODES`, `INFO`, `KEYSLOT`, `MYID`, answered from the node's slot map
//! (`cluster::slots`); and what cluster mode asks of every request before it is routed —
//! a sequencer-only node refuses clients, `--routing redirect` answers `-MOVED`, a workspace
//! must be spelled canonically.

use super::Conn;
use crate::daemon::command::ClusterSub;
#[cfg(feature = "cluster")]
use crate::daemon::command::Command;
use crate::daemon::protocol;

/// Redis's reply to `CLUSTER ...` on a server without cluster mode.
const DISABLED: &str = "ERR This instance has cluster support disabled";

impl Conn {
    /// `CLUSTER ...`.
    pub(super) fn cluster(&mut self, sub: ClusterSub<'_>) {
        if let ClusterSub::KeySlot(key) = sub {
            let slot = crate::hashslot::keyslot(key);
            return self.local(|o| protocol::write_uint(o, u64::from(slot)));
        }
        if let ClusterSub::Help = sub {
            return self.local(|o| {
                let lines = [
                    "CLUSTER <subcommand> [<arg> ...]. Subcommands are:",
                    "SLOTS, SHARDS, NODES: where each hash slot is served.",
                    "INFO: the cluster's state. MYID: this node's id.",
                    "KEYSLOT <key>: the hash slot of a key (a workspace: its decimal form).",
                ];
                protocol::write_array_len(o, lines.len());
                for l in lines {
                    protocol::write_simple(o, l);
                }
            });
        }
        #[cfg(feature = "cluster")]
        if let Some(node) = self.shared.cluster.clone() {
            let map = node.view.slots();
            let proto = self.proto;
            let me = node.id.as_str();
            return match sub {
                ClusterSub::Slots => self.local(|o| slots(o, &map)),
                ClusterSub::Shards => self.local(|o| shards(o, proto, &map)),
                ClusterSub::Nodes => {
                    let text = nodes(&map, me);
                    self.local(|o| protocol::write_verbatim(o, proto, text.as_bytes()))
                }
                ClusterSub::Info => {
                    let text = info(&map, node.config_routing());
                    self.local(|o| protocol::write_verbatim(o, proto, text.as_bytes()))
                }
                ClusterSub::MyId => {
                    let id = crate::cluster::slots::hex_id(me);
                    self.local(|o| protocol::write_bulk(o, id.as_bytes()))
                }
                ClusterSub::KeySlot(_) | ClusterSub::Help => {}
            };
        }
        self.local_error(DISABLED);
    }

    /// What cluster mode refuses of a command queued in `MULTI`: what [`cluster_check`]
    /// refuses, and a keyed request `--routing redirect` would answer `-MOVED` (or
    /// `-TRYAGAIN`) for.
    ///
    /// [`cluster_check`]: Self::cluster_check
    #[cfg(feature = "cluster")]
    pub(super) fn queue_refusal(&mut self, cmd: &Command<'_>, argv: &[&[u8]]) -> Option<String> {
        if let Some(refusal) = self.cluster_check(cmd, argv) {
            return Some(refusal);
        }
        let ws = match cmd {
            Command::Next { ws, .. } | Command::Peek { ws, .. } => *ws,
            _ => return None,
        };
        let p = self.shared.partitions.of(ws);
        let refusal = self.redirect(p, ws);
        // Queueing decides nothing for the read: EXEC decides again when it runs.
        self.redirected.clear();
        refusal
    }

    /// Cluster mode's checks of a request before it runs: `None` lets it run, `Some` is the
    /// error to answer instead.
    #[cfg(feature = "cluster")]
    pub(super) fn cluster_check(&self, cmd: &Command<'_>, argv: &[&[u8]]) -> Option<String> {
        let node = self.shared.cluster.as_ref()?;
        let serves = matches!(
            cmd,
            Command::GetSeq
                | Command::Current
                | Command::Next { .. }
                | Command::Peek { .. }
                | Command::Version(_)
                | Command::Multi
                | Command::Exec
                | Command::DbSize
        );
        if serves
            && !self.peer
            && let Some(refusal) = node.client_refusal()
        {
            return Some(refusal);
        }
        // A client hashes the workspace as written: `042` would go to another slot than 42.
        if matches!(cmd, Command::Next { .. } | Command::Peek { .. })
            && let Some(ws) = argv.get(1)
            && ws.len() > 1
            && ws.first() == Some(&b'0')
        {
            return Some(format!(
                "ERR workspace '{}' is not in canonical form: in cluster mode write it without \
                 leading zeros, as cluster clients hash the key as written",
                String::from_utf8_lossy(ws.get(..32).unwrap_or(ws))
            ));
        }
        None
    }
}

#[cfg(feature = "cluster")]
impl Conn {
    /// `--routing redirect`: `-MOVED slot host:port` for a workspace whose slot clients are
    /// sent elsewhere, `-TRYAGAIN` while its partition is handed over. Never for a peer's
    /// request (peers forward to owners, which answer).
    pub(super) fn redirect(&mut self, p: usize, ws: u64) -> Option<String> {
        use crate::daemon::cluster::Routing;
        let node = self.shared.cluster.as_ref()?;
        if node.routing != Routing::Redirect || self.peer {
            return None;
        }
        // Within one read, a partition's requests are all redirected or all served here,
        // whatever the map does meanwhile: a client's replies stay in request order.
        let pid = crate::types::PartitionId(u16::try_from(p).unwrap_or(u16::MAX));
        if self.redirected.contains(&pid.0) {
            return Some(self.moved(pid, ws, node));
        }
        let decided = !self.batches.get(p).is_none_or(|b| b.reqs.is_empty())
            || self.forwards.get(p).is_some_and(|f| !f.is_empty());
        if decided {
            return None;
        }
        let map = node.view.slots();
        let slot = crate::cluster::keys::slot(crate::types::WsId(ws));
        match map.target(pid) {
            Some(t) if t.id != node.id => {
                self.redirected.push(pid.0);
                Some(self.moved(pid, ws, node))
            }
            None => Some(format!(
                "CLUSTERDOWN Hash slot {slot} is not served: no gateway is up"
            )),
            Some(_) if map.moving(pid) => {
                node.stats
                    .handover_retries
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Some(format!(
                    "TRYAGAIN slot {slot} is being handed over to another node; retry shortly"
                ))
            }
            Some(_) => None,
        }
    }

    /// `-MOVED slot host:port` for workspace `ws` of partition `pid`, as the map says now.
    fn moved(
        &self,
        pid: crate::types::PartitionId,
        ws: u64,
        node: &crate::daemon::ClusterNode,
    ) -> String {
        let slot = crate::cluster::keys::slot(crate::types::WsId(ws));
        let map = node.view.slots();
        node.stats
            .redirects
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match map.target(pid) {
            // Redis's form: the host as is (no brackets around an IPv6 address), the port.
            Some(t) => format!("MOVED {slot} {}:{}", t.host, t.port),
            None => format!("CLUSTERDOWN Hash slot {slot} is not served: no gateway is up"),
        }
    }
}

#[cfg(feature = "cluster")]
use crate::cluster::slots::SlotMap;

/// `CLUSTER SLOTS`: `[first, last, [host, port, id]]` per range.
#[cfg(feature = "cluster")]
fn slots(o: &mut Vec<u8>, map: &SlotMap) {
    let ranges = map.ranges();
    protocol::write_array_len(o, ranges.len());
    for (first, last, node) in ranges {
        protocol::write_array_len(o, 3);
        protocol::write_uint(o, u64::from(first));
        protocol::write_uint(o, u64::from(last));
        protocol::write_array_len(o, 3);
        protocol::write_bulk(o, node.host.as_bytes());
        protocol::write_uint(o, u64::from(node.port));
        protocol::write_bulk(o, node.hex_id.as_bytes());
    }
}

/// `CLUSTER SHARDS`: per node, its slot ranges and itself as the shard's one master.
#[cfg(feature = "cluster")]
fn shards(o: &mut Vec<u8>, proto: protocol::Proto, map: &SlotMap) {
    let ranges = map.ranges();
    protocol::write_array_len(o, map.nodes.len());
    for node in &map.nodes {
        let mine: Vec<(u16, u16)> = ranges
            .iter()
            .filter(|r| r.2.id == node.id)
            .map(|r| (r.0, r.1))
            .collect();
        protocol::write_map_len(o, proto, 2);
        protocol::write_bulk(o, b"slots");
        protocol::write_array_len(o, 2 * mine.len());
        for (a, b) in mine {
            protocol::write_uint(o, u64::from(a));
            protocol::write_uint(o, u64::from(b));
        }
        protocol::write_bulk(o, b"nodes");
        protocol::write_array_len(o, 1);
        protocol::write_map_len(o, proto, 7);
        for (k, v) in [
            ("id", node.hex_id.as_str()),
            ("ip", node.host.as_str()),
            ("endpoint", node.host.as_str()),
        ] {
            protocol::write_bulk(o, k.as_bytes());
            protocol::write_bulk(o, v.as_bytes());
        }
        protocol::write_bulk(o, b"port");
        protocol::write_uint(o, u64::from(node.port));
        for (k, v) in [("role", "master"), ("health", "online")] {
            protocol::write_bulk(o, k.as_bytes());
            protocol::write_bulk(o, v.as_bytes());
        }
        protocol::write_bulk(o, b"replication-offset");
        protocol::write_uint(o, 0);
    }
}

/// `CLUSTER NODES`: Redis's line per node.
#[cfg(feature = "cluster")]
fn nodes(map: &SlotMap, me: &str) -> String {
    use std::fmt::Write as _;
    let ranges = map.ranges();
    let mut out = String::new();
    for node in &map.nodes {
        let flags = if node.id == me {
            "myself,master"
        } else {
            "master"
        };
        let _ = write!(
            out,
            "{} {}:{}@{} {flags} - 0 0 {} connected",
            node.hex_id,
            node.host,
            node.port,
            u32::from(node.port) + 10_000,
            map.epoch
        );
        for (a, b, _) in ranges.iter().filter(|r| r.2.id == node.id) {
            if a == b {
                let _ = write!(out, " {a}");
            } else {
                let _ = write!(out, " {a}-{b}");
            }
        }
        out.push('\n');
    }
    out
}

/// `CLUSTER INFO`.
#[cfg(feature = "cluster")]
fn info(map: &SlotMap, routing: &str) -> String {
    let covered = map.covered();
    let ranges = map.ranges();
    let state = if covered == u32::from(crate::cluster::keys::SLOTS) {
        "ok"
    } else {
        "fail"
    };
    let serving = map
        .nodes
        .iter()
        .filter(|n| ranges.iter().any(|r| r.2.id == n.id))
        .count();
    [
        format!("cluster_state:{state}"),
        format!("cluster_slots_assigned:{covered}"),
        format!("cluster_slots_ok:{covered}"),
        "cluster_slots_pfail:0".into(),
        "cluster_slots_fail:0".into(),
        format!("cluster_known_nodes:{}", map.nodes.len()),
        format!("cluster_size:{serving}"),
        format!("cluster_current_epoch:{}", map.epoch),
        format!("cluster_my_epoch:{}", map.epoch),
        "cluster_stats_messages_sent:0".into(),
        "cluster_stats_messages_received:0".into(),
        "total_cluster_links_buffer_limit_exceeded:0".into(),
        format!("seqd_routing:{routing}"),
    ]
    .join("\r\n")
        + "\r\n"
}
