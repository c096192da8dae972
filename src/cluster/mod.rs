//! Cluster mode on etcd (SPEC §5; `design/cluster.md`): several seqd nodes share the
//! partitions of one cluster, every durable fact lives in etcd, and every write is fenced by
//! the writer's ownership.
//!
//! The parts, bottom up:
//!
//! * [`keys`]: the key layout and the workspace → slot → partition mapping;
//! * [`records`]: the JSON values of those keys;
//! * [`Etcd`]: the shared client, on its own thread, with deadlines and counters;
//! * [`EtcdStorage`]: a partition's [`SeqStorage`](crate::storage::SeqStorage), each write one
//!   transaction conditional on the partition's epoch ([`Ownership`]);
//! * [`NodeLease`]: the node's lease, its keep-alive and the local deadline it answers under;
//! * [`check_meta`] and [`register`]: joining;
//! * [`Campaign`]: the Director's election and its rounds; [`plan`]: where partitions go;
//! * [`ClusterView`]: a node's watch-fed picture of the cluster (`GET /v1/cluster`);
//! * [`Holding`]: what a node does with one partition, as a state with checked transitions;
//! * [`forward`]: pipelined connections to other nodes, for requests they own;
//! * [`VersionStore`]: the version authority's storage, fenced by the Director's election;
//! * [`slots`]: which node Redis Cluster clients are sent to for each slot.

mod director;
mod etcd;
pub mod forward;
mod holding;
pub mod keys;
mod layout;
mod membership;
mod node_lease;
pub mod records;
pub mod slots;
mod storage;
mod versions;
mod view;

pub use director::{Campaign, DirectorHooks, DirectorStatus, HookFuture, NoHooks};
pub use etcd::{Etcd, EtcdStats};
pub use holding::{Action, Holding, Stale};
pub use keys::Keys;
pub use layout::plan;
pub use membership::{check_meta, read_meta, register};
pub use node_lease::{LeaseState, NodeLease, Validity, now};
pub use storage::{DEFAULT_MAX_TXN_OPS, EtcdStorage, Ownership, Vacant};
pub use versions::VersionStore;
pub use view::{ClusterSnapshot, ClusterView, DirectorSnapshot, NodeSnapshot, PartitionSnapshot};
