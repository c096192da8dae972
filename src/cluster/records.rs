//! The JSON values of the cluster's etcd keys ([`super::keys`]). Readers ignore fields they do
//! not know, so a newer node may add some.

use serde::{Deserialize, Serialize};

use crate::storage::StorageError;

/// The version of the key layout and records; a node refuses a cluster of another format.
pub const FORMAT: u32 = 1;

/// `meta`: what every node of the cluster must agree on. Written once, by the first node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// [`FORMAT`] of the cluster.
    pub format: u32,
    /// The number of partitions, fixed when the cluster is created.
    pub partitions: u16,
}

/// What a node does ([`NodeRecord::roles`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Role {
    /// Owns partitions: the Director places partitions only on sequencer nodes.
    Sequencer,
    /// Accepts client connections and forwards each request to its partition's owner.
    Gateway,
}

impl Role {
    /// The name in `--roles` and in the records.
    pub fn name(self) -> &'static str {
        match self {
            Role::Sequencer => "sequencer",
            Role::Gateway => "gateway",
        }
    }

    /// Parses one name of `--roles`.
    pub fn parse(name: &str) -> Option<Role> {
        match name.trim() {
            "sequencer" => Some(Role::Sequencer),
            "gateway" => Some(Role::Gateway),
            _ => None,
        }
    }
}

/// `nodes/ID`: a live node, under its lease (gone when the node is).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// `--node-id`.
    pub id: String,
    /// Where clients and other nodes reach its protocol (`--advertise`).
    pub address: String,
    /// Its HTTP admin address.
    pub admin: String,
    /// What it does.
    pub roles: Vec<Role>,
    /// Whether it serves client connections (a sequencer-only node does not).
    pub accepts_clients: bool,
    /// The seqd version it runs.
    pub version: String,
    /// When it started, in milliseconds since the Unix epoch.
    pub started_ms: u64,
}

impl NodeRecord {
    /// Whether the Director may place partitions on it.
    pub fn is_sequencer(&self) -> bool {
        self.roles.contains(&Role::Sequencer)
    }
}

/// `director`: the node that won the last election. Its epoch is the key's create revision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectorRecord {
    /// The Director's node id.
    pub node: String,
}

/// `owner/P`: the node a Director placed partition `P` on. The partition's epoch is the key's
/// mod revision; the key lives on the owner's lease, so it goes when the owner does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnerRecord {
    /// The owner's node id.
    pub node: String,
    /// The epoch of the Director that placed it.
    pub director_epoch: i64,
}

/// `handover/P`: the Director asks partition `P`'s owner to hand it over (rebalance); the
/// owner stops serving it, writes its exact values and deletes its ownership key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandoverRecord {
    /// The owner asked to let go (the request is void for any other).
    pub from: String,
    /// The node the Director will place the partition on next.
    pub to: String,
    /// The epoch of the Director that asked.
    pub director_epoch: i64,
}

/// `layout`: the placement the Director computed last, for operators and gateways; the
/// `owner/P` keys are what ownership is checked against.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayoutRecord {
    /// The Director's epoch.
    pub director_epoch: i64,
    /// The node id each partition is placed on, by partition.
    pub partitions: Vec<String>,
}

/// Encodes a record as the JSON stored in etcd.
pub(crate) fn encode<T: Serialize>(record: &T) -> Vec<u8> {
    // Plain structs of strings and numbers: serializing cannot fail.
    serde_json::to_vec(record).unwrap_or_default()
}

/// Decodes a record read from `key`; a malformed one is a permanent error naming the key.
pub(crate) fn decode<T: for<'de> Deserialize<'de>>(
    key: &[u8],
    value: &[u8],
) -> Result<T, StorageError> {
    serde_json::from_slice(value).map_err(|e| {
        StorageError::permanent(format!(
            "malformed value of etcd key {}: {e}; was it written by another program?",
            String::from_utf8_lossy(key)
        ))
    })
}

/// Decodes a decimal number stored under `key`.
pub(crate) fn decode_u64(key: &[u8], value: &[u8]) -> Result<u64, StorageError> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            StorageError::permanent(format!(
                "malformed number {:?} under etcd key {}; was it written by another program?",
                String::from_utf8_lossy(value),
                String::from_utf8_lossy(key)
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_ignore_unknown_fields() {
        let n = NodeRecord {
            id: "n1".into(),
            address: "127.0.0.1:10001".into(),
            admin: "127.0.0.1:10080".into(),
            roles: vec![Role::Sequencer, Role::Gateway],
            accepts_clients: true,
            version: "0.1.0".into(),
            started_ms: 1,
        };
        let bytes = encode(&n);
        assert!(String::from_utf8_lossy(&bytes).contains(r#""roles":["sequencer","gateway"]"#));
        assert_eq!(decode::<NodeRecord>(b"k", &bytes).unwrap(), n);
        let m: Meta = decode(b"k", br#"{"format":1,"partitions":8,"later":true}"#).unwrap();
        assert_eq!(m.partitions, 8);
        let e = decode::<Meta>(b"/seqd/x/meta", b"{").unwrap_err();
        assert!(e.message().contains("/seqd/x/meta"), "{e}");
        assert_eq!(decode_u64(b"k", b"17").unwrap(), 17);
        assert!(decode_u64(b"k", b"-1").is_err());
        assert_eq!(Role::parse(" gateway"), Some(Role::Gateway));
    }
}
