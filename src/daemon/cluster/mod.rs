//! The daemon in cluster mode (SPEC §5; `design/cluster.md`): [`Node`] joins the cluster,
//! the driver makes the node's partitions follow their owner keys, and requests for
//! partitions served elsewhere are forwarded to their owners.
//!
//! Every partition of the cluster has a slot in the daemon's `Partitions`; a slot this node
//! does not own holds a sequencer on [`Vacant`] storage behind a closed gate, and one it owns
//! a sequencer on [`EtcdStorage`](crate::cluster::EtcdStorage) under the epoch it took it at.

mod config;
pub(crate) mod driver;
pub(crate) mod node;
mod report;
mod route;
pub(crate) mod versions;

pub use config::{ClusterConfig, Routing};
pub(crate) use node::Node;
