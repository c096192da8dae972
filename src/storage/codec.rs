//! The on-disk encoding of keys and values (see `design/storage.md`). Pure functions, so they
//! are unit-tested and fuzzed without RocksDB.
//!
//! All integers are big-endian, so byte order is numeric order and range scans work.
//!
//! | column family | key | value |
//! |---|---|---|
//! | `numbers` | ws (8) ++ seq (2) | last number (8) |
//! | `checkpoint` | partition (2) | next PLog offset (8) |
//! | `plog` | partition (2) ++ offset (8) | version (1) ++ count (4) ++ count × [ws (8) ++ seq (2) ++ number (8)] |
//! | `journal` | partition (2) ++ next offset (8) | as `plog` |
//! | `default` | `b"format"` | format version (4) |
#![cfg_attr(not(feature = "rocksdb"), allow(dead_code))]

use super::{SeqValue, StorageError};
use crate::types::{Number, PLogOffset, PartitionId, SeqId, WsId};

/// The format this build writes. It also opens format 1 (the same without the `journal`
/// column family), upgrading it.
pub(crate) const FORMAT_VERSION: u32 = 2;
pub(crate) const FORMAT_KEY: &[u8] = b"format";
const EVENT_VERSION: u8 = 1;
const VALUE_LEN: usize = 18;

pub(crate) fn number_key(ws: WsId, seq: SeqId) -> [u8; 10] {
    let mut k = [0u8; 10];
    k[..8].copy_from_slice(&ws.0.to_be_bytes());
    k[8..].copy_from_slice(&seq.0.to_be_bytes());
    k
}

/// The inverse of [`number_key`]; storage reads numbers by key and never needs it.
pub(crate) fn decode_number_key(key: &[u8]) -> Result<(WsId, SeqId), StorageError> {
    let k: &[u8; 10] = key
        .try_into()
        .map_err(|_| corrupt("numbers key", key.len(), 10))?;
    let (ws, seq) = k.split_at(8);
    Ok((WsId(be64(ws)), SeqId(u16::from_be_bytes([seq[0], seq[1]]))))
}

pub(crate) fn u64_value(n: u64) -> [u8; 8] {
    n.to_be_bytes()
}

pub(crate) fn decode_u64(what: &str, v: &[u8]) -> Result<u64, StorageError> {
    let b: [u8; 8] = v.try_into().map_err(|_| corrupt(what, v.len(), 8))?;
    Ok(u64::from_be_bytes(b))
}

pub(crate) fn checkpoint_key(p: PartitionId) -> [u8; 2] {
    p.0.to_be_bytes()
}

pub(crate) fn plog_key(p: PartitionId, offset: PLogOffset) -> [u8; 10] {
    let mut k = [0u8; 10];
    k[..2].copy_from_slice(&p.0.to_be_bytes());
    k[2..].copy_from_slice(&offset.0.to_be_bytes());
    k
}

pub(crate) fn decode_plog_key(key: &[u8]) -> Result<(PartitionId, PLogOffset), StorageError> {
    let k: &[u8; 10] = key
        .try_into()
        .map_err(|_| corrupt("plog key", key.len(), 10))?;
    Ok((
        PartitionId(u16::from_be_bytes([k[0], k[1]])),
        PLogOffset(be64(&k[2..])),
    ))
}

pub(crate) fn encode_event(values: &[SeqValue]) -> Result<Vec<u8>, StorageError> {
    let count = u32::try_from(values.len())
        .map_err(|_| StorageError::permanent("a PLog event holds at most 2^32-1 values"))?;
    let mut out = Vec::with_capacity(5 + values.len() * VALUE_LEN);
    out.push(EVENT_VERSION);
    out.extend_from_slice(&count.to_be_bytes());
    for v in values {
        out.extend_from_slice(&v.ws.0.to_be_bytes());
        out.extend_from_slice(&v.seq.0.to_be_bytes());
        out.extend_from_slice(&v.number.0.to_be_bytes());
    }
    Ok(out)
}

/// Decodes a PLog event into `out` (cleared first). Rejects unknown versions, truncation and
/// trailing bytes: a damaged event is never half-read.
pub(crate) fn decode_event(bytes: &[u8], out: &mut Vec<SeqValue>) -> Result<(), StorageError> {
    out.clear();
    let (&version, rest) = bytes
        .split_first()
        .ok_or_else(|| StorageError::permanent("corrupt PLog event: empty"))?;
    if version != EVENT_VERSION {
        return Err(StorageError::permanent(format!(
            "PLog event has format version {version}; this build reads version {EVENT_VERSION}: \
             upgrade seqd"
        )));
    }
    if rest.len() < 4 {
        return Err(corrupt("PLog event header", bytes.len(), 5));
    }
    let (count, body) = rest.split_at(4);
    let count = u32::from_be_bytes([count[0], count[1], count[2], count[3]]) as usize;
    let expected = count
        .checked_mul(VALUE_LEN)
        .ok_or_else(|| corrupt("PLog event", bytes.len(), 0))?;
    if body.len() != expected {
        return Err(corrupt("PLog event body", body.len(), expected));
    }
    out.reserve(count);
    for chunk in body.chunks_exact(VALUE_LEN) {
        out.push(SeqValue {
            ws: WsId(be64(&chunk[..8])),
            seq: SeqId(u16::from_be_bytes([chunk[8], chunk[9]])),
            number: Number(be64(&chunk[10..18])),
        });
    }
    Ok(())
}

pub(crate) fn decode_format(v: &[u8]) -> Result<u32, StorageError> {
    let b: [u8; 4] = v
        .try_into()
        .map_err(|_| corrupt("format version", v.len(), 4))?;
    Ok(u32::from_be_bytes(b))
}

fn be64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

fn corrupt(what: &str, got: usize, want: usize) -> StorageError {
    StorageError::permanent(format!("corrupt {what}: {got} bytes, expected {want}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_sort_numerically() {
        let k = number_key(WsId(0x0102_0304_0506_0708), SeqId(0x0a0b));
        assert_eq!(k, [1, 2, 3, 4, 5, 6, 7, 8, 0x0a, 0x0b]);
        assert_eq!(
            decode_number_key(&k).unwrap(),
            (WsId(0x0102_0304_0506_0708), SeqId(0x0a0b))
        );
        assert!(number_key(WsId(1), SeqId(65535)) < number_key(WsId(2), SeqId(0)));
        let p = plog_key(PartitionId(3), PLogOffset(256));
        assert_eq!(
            decode_plog_key(&p).unwrap(),
            (PartitionId(3), PLogOffset(256))
        );
        assert!(plog_key(PartitionId(3), PLogOffset(255)) < p);
        assert!(decode_number_key(&k[..9]).is_err());
        assert!(decode_plog_key(&[0; 11]).is_err());
    }

    #[test]
    fn events_round_trip_and_reject_damage() {
        let vals = vec![
            SeqValue {
                ws: WsId(1),
                seq: SeqId(2),
                number: Number(3),
            },
            SeqValue {
                ws: WsId(u64::MAX),
                seq: SeqId(u16::MAX),
                number: Number(u64::MAX),
            },
        ];
        let bytes = encode_event(&vals).unwrap();
        let mut out = vec![];
        decode_event(&bytes, &mut out).unwrap();
        assert_eq!(out, vals);
        decode_event(&encode_event(&[]).unwrap(), &mut out).unwrap();
        assert!(out.is_empty());
        assert!(
            decode_event(&bytes[..bytes.len() - 1], &mut out).is_err(),
            "truncated"
        );
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode_event(&longer, &mut out).is_err(), "trailing bytes");
        let mut v2 = bytes.clone();
        v2[0] = 2;
        assert!(
            decode_event(&v2, &mut out)
                .unwrap_err()
                .message()
                .contains("version 2")
        );
        assert!(decode_event(&[], &mut out).is_err());
        assert!(
            decode_event(&[1, 0xff, 0xff, 0xff, 0xff], &mut out).is_err(),
            "huge count"
        );
    }

    #[test]
    fn values_decode_strictly() {
        assert_eq!(decode_u64("n", &u64_value(42)).unwrap(), 42);
        assert!(decode_u64("n", &[0; 7]).is_err());
        assert_eq!(decode_format(&FORMAT_VERSION.to_be_bytes()).unwrap(), 2);
        assert!(decode_format(&[1]).is_err());
    }
}
