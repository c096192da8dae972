//! Crate internals for the fuzz targets in `fuzz/`. **Not a stable API**: built only with the
//! `fuzzing` cargo feature (off by default), hidden from the docs, and free to change in any
//! release. Everything here forwards to a private item without adding behaviour.

/// The RocksDB key and value encoding (`storage::codec`; format in `design/storage.md`).
pub mod codec {
    use crate::storage::codec;
    use crate::storage::{SeqValue, StorageError};
    use crate::types::{PLogOffset, PartitionId, SeqId, WsId};

    /// The storage format version this build writes and reads.
    pub const FORMAT_VERSION: u32 = codec::FORMAT_VERSION;
    /// The key of the format version in the default column family.
    pub const FORMAT_KEY: &[u8] = codec::FORMAT_KEY;

    /// Key of a number in column family `numbers` (and `cursors`).
    pub fn number_key(ws: WsId, seq: SeqId) -> [u8; 10] {
        codec::number_key(ws, seq)
    }

    /// Inverse of [`number_key`].
    pub fn decode_number_key(key: &[u8]) -> Result<(WsId, SeqId), StorageError> {
        codec::decode_number_key(key)
    }

    /// A stored number, checkpoint offset or cursor.
    pub fn u64_value(n: u64) -> [u8; 8] {
        codec::u64_value(n)
    }

    /// Inverse of [`u64_value`]; `what` names the value in errors.
    pub fn decode_u64(what: &str, v: &[u8]) -> Result<u64, StorageError> {
        codec::decode_u64(what, v)
    }

    /// Key of a partition's checkpoint in column family `checkpoint`.
    pub fn checkpoint_key(p: PartitionId) -> [u8; 2] {
        codec::checkpoint_key(p)
    }

    /// Key of a PLog event in column family `plog`.
    pub fn plog_key(p: PartitionId, offset: PLogOffset) -> [u8; 10] {
        codec::plog_key(p, offset)
    }

    /// Inverse of [`plog_key`].
    pub fn decode_plog_key(key: &[u8]) -> Result<(PartitionId, PLogOffset), StorageError> {
        codec::decode_plog_key(key)
    }

    /// A PLog event's value.
    pub fn encode_event(values: &[SeqValue]) -> Result<Vec<u8>, StorageError> {
        codec::encode_event(values)
    }

    /// Inverse of [`encode_event`], into `out` (cleared first).
    pub fn decode_event(bytes: &[u8], out: &mut Vec<SeqValue>) -> Result<(), StorageError> {
        codec::decode_event(bytes, out)
    }

    /// The value stored under [`FORMAT_KEY`].
    pub fn decode_format(v: &[u8]) -> Result<u32, StorageError> {
        codec::decode_format(v)
    }
}
