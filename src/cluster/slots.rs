//! [`SlotMap`]: which node Redis Cluster clients are sent to for each slot — what
//! `CLUSTER SLOTS`, `CLUSTER SHARDS` and `CLUSTER NODES` answer and where `-MOVED` points.
//!
//! Partition `p` owns a contiguous slot range (`keys::slot_range`). Its slots go to its owner
//! when the owner accepts clients (a gateway as well as a sequencer); when the owner is
//! sequencer-only, or the partition has no owner yet, to a gateway picked by the partition's
//! number among the gateways sorted by id (so every node computes the same map), which
//! forwards. Only nodes that accept clients ever appear.

use std::collections::BTreeMap;

pub use crate::hashslot::keyslot;

use super::keys::slot_range;
use super::records::{NodeRecord, Role};
use crate::types::PartitionId;

/// A node clients may connect to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotNode {
    /// Its `--node-id`.
    pub id: String,
    /// Its 40-hexadecimal-digit id in the Redis Cluster protocol ([`hex_id`]).
    pub hex_id: String,
    /// Its protocol address, `host:port` as advertised.
    pub address: String,
    /// The host part of `address`.
    pub host: String,
    /// The port part of `address` (0 when it has none).
    pub port: u16,
    /// Whether it may own partitions.
    pub sequencer: bool,
}

/// The slot map of one view of the cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SlotMap {
    /// The client-facing nodes, sorted by id.
    pub nodes: Vec<SlotNode>,
    /// Per partition: the index in `nodes` its slots go to (`None`: no gateway at all).
    targets: Vec<Option<usize>>,
    /// Per partition: a handover is pending (`-TRYAGAIN` in redirect mode).
    moving: Vec<bool>,
    /// The Director's epoch (`cluster_current_epoch`).
    pub epoch: u64,
}

impl SlotMap {
    /// The map of `partitions` partitions given the live `nodes`, each partition's `owners`
    /// and pending handovers.
    pub fn build(
        nodes: &BTreeMap<String, NodeRecord>,
        owners: &[Option<(String, i64)>],
        moving: &[bool],
        partitions: u16,
        epoch: i64,
    ) -> SlotMap {
        let clients: Vec<SlotNode> = nodes
            .values()
            .filter(|n| n.accepts_clients)
            .map(|n| {
                let (host, port) = split_address(&n.address);
                SlotNode {
                    id: n.id.clone(),
                    hex_id: hex_id(&n.id),
                    address: n.address.clone(),
                    host,
                    port,
                    sequencer: n.roles.contains(&Role::Sequencer),
                }
            })
            .collect();
        let targets = (0..usize::from(partitions))
            .map(|p| {
                let owner = owners.get(p).cloned().flatten().map(|(id, _)| id);
                owner
                    .and_then(|id| clients.iter().position(|n| n.id == id))
                    .or_else(|| (!clients.is_empty()).then(|| p % clients.len()))
            })
            .collect();
        SlotMap {
            nodes: clients,
            targets,
            moving: (0..usize::from(partitions))
                .map(|p| moving.get(p).copied().unwrap_or(false))
                .collect(),
            epoch: u64::try_from(epoch).unwrap_or(0),
        }
    }

    /// The node partition `p`'s slots go to.
    pub fn target(&self, p: PartitionId) -> Option<&SlotNode> {
        let i = (*self.targets.get(usize::from(p.0))?)?;
        self.nodes.get(i)
    }

    /// Whether partition `p` is being handed over.
    pub fn moving(&self, p: PartitionId) -> bool {
        self.moving.get(usize::from(p.0)).copied().unwrap_or(false)
    }

    /// The slot ranges and their nodes, in slot order, adjacent partitions of one node merged:
    /// `(first slot, last slot, node)`.
    pub fn ranges(&self) -> Vec<(u16, u16, &SlotNode)> {
        let partitions = u16::try_from(self.targets.len()).unwrap_or(u16::MAX);
        let mut out: Vec<(u16, u16, &SlotNode)> = Vec::new();
        for p in 0..partitions {
            let Some(node) = self.target(PartitionId(p)) else {
                continue;
            };
            let (first, last) = slot_range(PartitionId(p), partitions);
            match out.last_mut() {
                Some(r) if r.2.id == node.id && u32::from(r.1) + 1 == u32::from(first) => {
                    r.1 = last;
                }
                _ => out.push((first, last, node)),
            }
        }
        out
    }

    /// Slots that some node serves.
    pub fn covered(&self) -> u32 {
        self.ranges()
            .iter()
            .map(|(a, b, _)| u32::from(*b) - u32::from(*a) + 1)
            .sum()
    }
}

/// A node's id in the Redis Cluster protocol: 40 hexadecimal digits, as Redis's are (clients
/// check the length), derived from `--node-id` so every node computes the same.
pub fn hex_id(id: &str) -> String {
    let fnv = |seed: u64| {
        id.bytes().fold(0xcbf2_9ce4_8422_2325 ^ seed, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
    };
    let (a, b, c) = (fnv(0), fnv(0x9e37_79b9), fnv(0x7f4a_7c15));
    format!("{a:016x}{b:016x}{:08x}", c >> 32)
}

/// `host:port` split (the port 0 when missing or malformed; IPv6 brackets removed).
fn split_address(address: &str) -> (String, u16) {
    match address.rsplit_once(':') {
        Some((host, port)) => (
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port.parse().unwrap_or(0),
        ),
        None => (address.to_owned(), 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, roles: &[Role]) -> (String, NodeRecord) {
        (
            id.to_owned(),
            NodeRecord {
                id: id.into(),
                address: format!("127.0.0.1:{}", 7000 + id.len()),
                admin: String::new(),
                roles: roles.to_vec(),
                accepts_clients: roles.contains(&Role::Gateway),
                version: String::new(),
                started_ms: 0,
            },
        )
    }

    #[test]
    fn sequencer_only_owners_are_served_by_gateways_and_ranges_merge() {
        let both = [Role::Sequencer, Role::Gateway];
        let nodes: BTreeMap<_, _> = [
            node("a", &both),
            node("bb", &[Role::Sequencer]),
            node("ccc", &[Role::Gateway]),
        ]
        .into_iter()
        .collect();
        let owners = vec![
            Some(("a".to_string(), 5)),
            Some(("a".to_string(), 6)),
            Some(("bb".to_string(), 7)),
            None,
        ];
        let map = SlotMap::build(&nodes, &owners, &[false, false, true, false], 4, 9);
        assert_eq!(
            map.nodes.len(),
            2,
            "the sequencer-only node is not offered to clients"
        );
        assert_eq!(map.target(PartitionId(0)).unwrap().id, "a");
        // Partition 2's owner is sequencer-only: gateway 2 % 2 = "a"; partition 3 is
        // unowned: gateway 3 % 2 = "ccc".
        assert_eq!(map.target(PartitionId(2)).unwrap().id, "a");
        assert_eq!(map.target(PartitionId(3)).unwrap().id, "ccc");
        assert!(map.moving(PartitionId(2)));
        let ranges: Vec<(u16, u16, &str)> = map
            .ranges()
            .iter()
            .map(|(a, b, n)| (*a, *b, n.id.as_str()))
            .collect();
        assert_eq!(ranges, vec![(0, 12287, "a"), (12288, 16383, "ccc")]);
        assert_eq!(map.covered(), 16384);
        assert_eq!(map.epoch, 9);
    }

    #[test]
    fn ids_are_redis_shaped() {
        let id = hex_id("n1");
        assert_eq!(id.len(), 40);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(hex_id("n1"), hex_id("n2"));
        assert_eq!(keyslot(b"42"), 8000);
        assert_eq!(keyslot(b"foo"), 12182);
        assert_eq!(keyslot(b"{user1000}.following"), keyslot(b"user1000"));
        assert_eq!(
            keyslot(b"foo{}{bar}"),
            keyslot(b"foo{}{bar}"),
            "an empty tag hashes all"
        );
        assert_eq!(keyslot(b"foo{{bar}}zap"), keyslot(b"{bar"));
    }
}
