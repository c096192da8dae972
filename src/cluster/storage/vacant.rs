//! [`Vacant`]: the storage of a partition slot this node does not own.

use crate::storage::{ReplayFn, SeqStorage, SeqValue, StorageError, StorageLatency};
use crate::types::{Number, PLogOffset, PartitionId, SeqId, WsId};

/// The storage of a partition this node does not own: every call is refused as fenced. A
/// daemon keeps its partitions' slots on it between owners.
#[derive(Debug)]
pub struct Vacant {
    partition: PartitionId,
}

impl Vacant {
    /// Partition `partition`'s placeholder.
    pub fn new(partition: PartitionId) -> Vacant {
        Vacant { partition }
    }

    fn refused(&self) -> StorageError {
        StorageError::fenced(format!(
            "partition {} is not owned by this node",
            self.partition.0
        ))
    }
}

impl SeqStorage for Vacant {
    fn read_numbers(&self, _ws: WsId, _seqs: &[SeqId]) -> Result<Vec<Number>, StorageError> {
        Err(self.refused())
    }

    fn write_values_and_offset(
        &self,
        _values: &[SeqValue],
        _next_offset: PLogOffset,
    ) -> Result<(), StorageError> {
        Err(self.refused())
    }

    fn read_next_offset(&self) -> Result<PLogOffset, StorageError> {
        Err(self.refused())
    }

    fn replay(&self, _from: PLogOffset, _apply: &mut ReplayFn<'_>) -> Result<(), StorageError> {
        Err(self.refused())
    }

    fn latency(&self) -> StorageLatency {
        StorageLatency::Remote
    }
}
