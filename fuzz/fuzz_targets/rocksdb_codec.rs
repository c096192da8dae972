//! The RocksDB key and value encoding (`src/storage/codec.rs`, reached through
//! `seqd::fuzzing::codec`), which the `rocksdb` feature uses and this crate builds without.
//!
//! Properties:
//! * arbitrary bytes decode, as every kind of key and value, to a value or a clean permanent
//!   `StorageError`, never a panic; each decoder accepts exactly the lengths (and, for PLog
//!   events, the version and count) of its format;
//! * whatever decodes re-encodes to the same bytes (the encoding is canonical), and whatever is
//!   encoded decodes back to itself;
//! * keys sort like the values they encode (range scans rely on it);
//! * an event of another format version is refused and the error names the version.

#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use seqd::fuzzing::codec::{
    FORMAT_KEY, FORMAT_VERSION, checkpoint_key, decode_event, decode_format, decode_number_key,
    decode_plog_key, decode_u64, encode_event, number_key, plog_key, u64_value,
};
use seqd::storage::{SeqValue, StorageError};
use seqd::{Number, PLogOffset, PartitionId, SeqId, WsId};

/// Header of a PLog event: version (1) ++ count (4); then 18 bytes per value.
const EVENT_HEADER: usize = 5;
const VALUE_LEN: usize = 18;

fuzz_target!(|data: &[u8]| {
    decode_arbitrary_bytes(data);
    round_trip(&mut Unstructured::new(data));
});

/// A decoder's verdict on bytes it refuses: a permanent error with a message.
fn refused(e: &StorageError, what: &str) {
    assert!(!e.is_retryable(), "{what}: corruption must be permanent");
    assert!(!e.message().is_empty(), "{what}: empty message");
}

fn decode_arbitrary_bytes(data: &[u8]) {
    match decode_number_key(data) {
        Ok((ws, seq)) => assert_eq!(number_key(ws, seq), data),
        Err(e) => {
            assert_ne!(data.len(), 10, "a 10-byte numbers key refused: {e}");
            refused(&e, "numbers key");
        }
    }
    match decode_plog_key(data) {
        Ok((p, offset)) => assert_eq!(plog_key(p, offset), data),
        Err(e) => {
            assert_ne!(data.len(), 10, "a 10-byte plog key refused: {e}");
            refused(&e, "plog key");
        }
    }
    match decode_u64("number", data) {
        Ok(n) => assert_eq!(u64_value(n), data),
        Err(e) => {
            assert_ne!(data.len(), 8, "an 8-byte value refused: {e}");
            refused(&e, "u64 value");
            assert!(e.message().contains("number"), "{e}: which value?");
        }
    }
    match decode_format(data) {
        Ok(v) => {
            assert_eq!(v.to_be_bytes(), data);
            // What `check_format` compares: only this build's version is accepted.
            let _accepted = v == FORMAT_VERSION;
        }
        Err(e) => {
            assert_ne!(data.len(), 4, "a 4-byte format version refused: {e}");
            refused(&e, "format version");
        }
    }

    let mut out = vec![SeqValue {
        ws: WsId(9),
        seq: SeqId(9),
        number: Number(9),
    }];
    let well_formed = match data {
        [1, c0, c1, c2, c3, body @ ..] => {
            let count = u32::from_be_bytes([*c0, *c1, *c2, *c3]) as usize;
            count.checked_mul(VALUE_LEN) == Some(body.len())
        }
        _ => false,
    };
    match decode_event(data, &mut out) {
        Ok(()) => {
            assert!(well_formed, "accepted a malformed event");
            assert_eq!((data.len() - EVENT_HEADER) / VALUE_LEN, out.len());
            assert_eq!(encode_event(&out).expect("encode"), data);
        }
        Err(e) => {
            assert!(!well_formed, "refused a well-formed event: {e}");
            assert!(out.is_empty(), "a refused event was half-read");
            refused(&e, "event");
            if let Some(&version) = data.first()
                && version != 1
            {
                assert!(
                    e.message().contains(&format!("version {version}")),
                    "{e}: which version?"
                );
            }
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Values {
    a: (u64, u16),
    b: (u64, u16),
    pa: (u16, u64),
    pb: (u16, u64),
    n: u64,
    event: Vec<(u64, u16, u64)>,
    version: u8,
}

fn round_trip(u: &mut Unstructured<'_>) {
    let Ok(v) = Values::arbitrary(u) else {
        return;
    };
    let (ka, kb) = (
        number_key(WsId(v.a.0), SeqId(v.a.1)),
        number_key(WsId(v.b.0), SeqId(v.b.1)),
    );
    assert_eq!(
        decode_number_key(&ka).expect("decode"),
        (WsId(v.a.0), SeqId(v.a.1))
    );
    assert_eq!(
        ka.cmp(&kb),
        v.a.cmp(&v.b),
        "numbers keys sort like (ws, seq)"
    );

    let (pa, pb) = (
        plog_key(PartitionId(v.pa.0), PLogOffset(v.pa.1)),
        plog_key(PartitionId(v.pb.0), PLogOffset(v.pb.1)),
    );
    assert_eq!(
        decode_plog_key(&pa).expect("decode"),
        (PartitionId(v.pa.0), PLogOffset(v.pa.1))
    );
    assert_eq!(
        pa.cmp(&pb),
        v.pa.cmp(&v.pb),
        "plog keys sort like (partition, offset)"
    );
    // A partition's checkpoint key is its plog keys' prefix.
    assert_eq!(checkpoint_key(PartitionId(v.pa.0)), pa[..2]);

    assert_eq!(decode_u64("n", &u64_value(v.n)).expect("decode"), v.n);
    assert_eq!(
        decode_format(&FORMAT_VERSION.to_be_bytes()).expect("decode"),
        FORMAT_VERSION
    );
    assert_eq!(FORMAT_KEY, b"format");

    let values: Vec<SeqValue> = v
        .event
        .iter()
        .map(|&(ws, seq, n)| SeqValue {
            ws: WsId(ws),
            seq: SeqId(seq),
            number: Number(n),
        })
        .collect();
    let bytes = encode_event(&values).expect("encode");
    assert_eq!(bytes.len(), EVENT_HEADER + VALUE_LEN * values.len());
    let mut out = Vec::new();
    decode_event(&bytes, &mut out).expect("decode");
    assert_eq!(out, values);

    // The same event in another format version is refused, naming the version.
    let mut other = bytes.clone();
    other[0] = v.version;
    match decode_event(&other, &mut out) {
        Ok(()) => {
            assert_eq!(v.version, bytes[0]);
            assert_eq!(out, values);
        }
        Err(e) => {
            assert_ne!(v.version, bytes[0]);
            assert!(
                e.message().contains(&format!("version {}", v.version)),
                "{e}"
            );
        }
    }
    // Truncated or extended by a byte, it is refused.
    assert!(decode_event(&bytes[..bytes.len() - 1], &mut out).is_err());
    let mut longer = bytes;
    longer.push(0);
    assert!(decode_event(&longer, &mut out).is_err());
}
