//! Where the cluster keeps its state in etcd, and which partition serves a workspace.
//!
//! Every key of cluster `NAME` starts with `/seqd/NAME/` (`design/cluster.md`, "Keys"):
//!
//! | key | value | lease | written by |
//! |---|---|---|---|
//! | `meta` | [`Meta`](super::records::Meta) | — | the first node (create-only) |
//! | `nodes/ID` | [`NodeRecord`](super::records::NodeRecord) | the node's | the node |
//! | `director` | [`DirectorRecord`](super::records::DirectorRecord); epoch = its create revision | the Director's node's | the campaign |
//! | `owner/PPPPP` | [`OwnerRecord`](super::records::OwnerRecord); partition epoch = its mod revision | the owner node's | the Director, fenced by its epoch |
//! | `handover/PPPPP` | [`HandoverRecord`](super::records::HandoverRecord) | — | the Director (rebalance) |
//! | `layout` | [`LayoutRecord`](super::records::LayoutRecord) | — | the Director, fenced |
//! | `ck/PPPPP` | next PLog offset, decimal | — | the owner, fenced |
//! | `v/PPPPP/WWWWWWWWWWWWWWWW/SSSS` | last number or reservation end, decimal | — | the owner, fenced |
//!
//! Partitions are five decimal digits and workspaces and sequences fixed-width hexadecimal,
//! so a prefix read returns them in numeric order and one workspace's sequences are one
//! range read.

use crate::error::{Error, Result};
use crate::types::{PartitionId, SeqId, WsId};

pub use crate::hashslot::{SLOTS, crc16};

/// The longest cluster name (`--cluster`).
const MAX_NAME: usize = 64;

/// The key names of one cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// The keys of cluster `name`: 1 to 64 of `A-Z a-z 0-9 . _ -`.
    pub fn new(name: &str) -> Result<Keys> {
        let valid = !name.is_empty()
            && name.len() <= MAX_NAME
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !valid {
            return Err(Error::InvalidOptions(format!(
                "--cluster {name:?}: a cluster name is 1 to {MAX_NAME} characters of A-Z, a-z, \
                 0-9, '.', '_' and '-'"
            )));
        }
        Ok(Keys {
            prefix: format!("/seqd/{name}/"),
        })
    }

    /// `/seqd/NAME/`: every key of the cluster.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The cluster's fixed facts (format, partition count).
    pub fn meta(&self) -> String {
        format!("{}meta", self.prefix)
    }

    /// The prefix of every node registration.
    pub fn nodes(&self) -> String {
        format!("{}nodes/", self.prefix)
    }

    /// Node `id`'s registration.
    pub fn node(&self, id: &str) -> String {
        format!("{}nodes/{id}", self.prefix)
    }

    /// The Director's election key.
    pub fn director(&self) -> String {
        format!("{}director", self.prefix)
    }

    /// The layout the Director published last.
    pub fn layout(&self) -> String {
        format!("{}layout", self.prefix)
    }

    /// The prefix of every ownership key.
    pub fn owners(&self) -> String {
        format!("{}owner/", self.prefix)
    }

    /// Partition `p`'s ownership key: its mod revision is the partition's epoch.
    pub fn owner(&self, p: PartitionId) -> String {
        format!("{}owner/{:05}", self.prefix, p.0)
    }

    /// The prefix of every handover request.
    pub fn handovers(&self) -> String {
        format!("{}handover/", self.prefix)
    }

    /// A request that partition `p`'s owner hand it over.
    pub fn handover(&self, p: PartitionId) -> String {
        format!("{}handover/{:05}", self.prefix, p.0)
    }

    /// Partition `p`'s checkpoint: the next PLog offset.
    pub fn checkpoint(&self, p: PartitionId) -> String {
        format!("{}ck/{:05}", self.prefix, p.0)
    }

    /// The prefix of partition `p`'s values.
    pub fn values(&self, p: PartitionId) -> String {
        format!("{}v/{:05}/", self.prefix, p.0)
    }

    /// The prefix of workspace `ws`'s values (in partition `p`).
    pub fn workspace(&self, p: PartitionId, ws: WsId) -> String {
        format!("{}v/{:05}/{:016x}/", self.prefix, p.0, ws.0)
    }

    /// The value of sequence `seq` of workspace `ws` (in partition `p`).
    pub fn value(&self, p: PartitionId, ws: WsId, seq: SeqId) -> String {
        format!("{}v/{:05}/{:016x}/{:04x}", self.prefix, p.0, ws.0, seq.0)
    }

    /// A value of the version authority (`crate::version`): domain bounds and the epoch.
    pub fn version_value(&self, ws: WsId, seq: SeqId) -> String {
        format!("{}versions/{:016x}/{:04x}", self.prefix, ws.0, seq.0)
    }

    /// The version authority's chain key (`cluster/versions.rs`).
    pub fn versions_chain(&self) -> String {
        format!("{}versions/chain", self.prefix)
    }

    /// The partition a key under `prefix` names (`owner/00003` → 3).
    pub fn partition_in(&self, prefix: &str, key: &[u8]) -> Option<PartitionId> {
        let rest = key.strip_prefix(prefix.as_bytes())?;
        let text = std::str::from_utf8(rest).ok()?;
        (text.len() == 5).then_some(())?;
        text.parse().ok().map(PartitionId)
    }

    /// The node id of a registration key.
    pub fn node_in<'a>(&self, key: &'a [u8]) -> Option<&'a str> {
        let rest = key.strip_prefix(self.nodes().as_bytes())?;
        std::str::from_utf8(rest).ok().filter(|id| !id.is_empty())
    }
}

/// Whether `id` can name a node (`--node-id`): 1 to 128 printable ASCII characters, no
/// spaces or slashes.
pub fn valid_node_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic() && b != b'/')
}

/// The sequence a value key names (its last 4 hexadecimal digits).
pub(crate) fn seq_in(key: &[u8]) -> Option<SeqId> {
    let hex = key.get(key.len().checked_sub(4)?..)?;
    let text = std::str::from_utf8(hex).ok()?;
    u16::from_str_radix(text, 16).ok().map(SeqId)
}

/// Workspace `ws`'s Redis hash slot: CRC16 of its canonical decimal form, mod 16384 — the slot
/// a Redis Cluster client computes for `NEXT ws seq` (the workspace is the key).
pub fn slot(ws: WsId) -> u16 {
    // The decimal digits on the stack: this runs per request in cluster mode.
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut n = ws.0;
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    crc16(&digits[at..]) % SLOTS
}

/// The partition that owns `slot`: partitions split the slots into contiguous ranges.
pub fn partition_of_slot(slot: u16, partitions: u16) -> PartitionId {
    let p = u32::from(slot) * u32::from(partitions) / u32::from(SLOTS);
    PartitionId(p as u16)
}

/// The partition that serves workspace `ws` in a cluster of `partitions` partitions.
pub fn partition_of(ws: WsId, partitions: u16) -> PartitionId {
    partition_of_slot(slot(ws), partitions)
}

/// The first and last slot of partition `p` (inclusive), for `CLUSTER SLOTS` and
/// `GET /v1/cluster`.
pub fn slot_range(p: PartitionId, partitions: u16) -> (u16, u16) {
    let n = u32::from(partitions.max(1));
    let slots = u32::from(SLOTS);
    // The smallest slot s with s * n / slots >= p.
    let first = |p: u32| (p * slots).div_ceil(n);
    let start = first(u32::from(p.0));
    let end = first(u32::from(p.0) + 1).saturating_sub(1);
    (start as u16, end.min(slots - 1) as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc16_matches_redis() {
        assert_eq!(crc16(b"123456789"), 12739);
        assert_eq!(crc16(b"foo") % SLOTS, 12182);
        for ws in [0, 7, 42, 1_000_000, u64::MAX] {
            assert_eq!(slot(WsId(ws)), crc16(ws.to_string().as_bytes()) % SLOTS);
        }
    }

    #[test]
    fn slot_ranges_tile_the_slots() {
        for n in [1u16, 2, 3, 7, 8, 16, 100, 1000, 16384] {
            let mut next = 0u32;
            for p in 0..n {
                let (a, b) = slot_range(PartitionId(p), n);
                assert_eq!(u32::from(a), next, "n={n} p={p}");
                assert!(a <= b);
                assert_eq!(partition_of_slot(a, n), PartitionId(p));
                assert_eq!(partition_of_slot(b, n), PartitionId(p));
                next = u32::from(b) + 1;
            }
            assert_eq!(next, u32::from(SLOTS));
        }
    }

    #[test]
    fn key_names_round_trip() {
        let k = Keys::new("prod-1").unwrap();
        assert_eq!(k.owner(PartitionId(3)), "/seqd/prod-1/owner/00003");
        assert_eq!(
            k.partition_in(&k.owners(), k.owner(PartitionId(3)).as_bytes()),
            Some(PartitionId(3))
        );
        assert_eq!(k.partition_in(&k.owners(), b"/seqd/prod-1/owner/3"), None);
        let v = k.value(PartitionId(1), WsId(42), SeqId(7));
        assert_eq!(v, "/seqd/prod-1/v/00001/000000000000002a/0007");
        assert!(v.starts_with(&k.workspace(PartitionId(1), WsId(42))));
        assert_eq!(seq_in(v.as_bytes()), Some(SeqId(7)));
        assert_eq!(k.node_in(k.node("n1").as_bytes()), Some("n1"));
        assert!(Keys::new("").is_err());
        assert!(Keys::new("a/b").is_err());
        assert!(valid_node_id("127.0.0.1:10001") && !valid_node_id("a b") && !valid_node_id("a/b"));
    }
}
