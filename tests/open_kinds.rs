//! Open workspace kinds (`SeqTypes::with_all`: every `SeqId` exists) and `Sequencer::peek`.

mod common;

use std::time::Duration;

use common::{WAIT, mem};
use seqd::storage::{FaultOps, FaultyStorage, MemoryStorage, SeqStorage};
use seqd::{Error, Number, Options, PLogOffset, SeqId, SeqTypes, Sequencer, WsId, WsKind};

const OPEN: WsKind = WsKind(0);

fn open_options() -> Options {
    Options {
        seq_types: SeqTypes::new()
            .with_all(OPEN, Number(10))
            .with(OPEN, SeqId(7), Number(1000)),
        ..common::options()
    }
}

fn next(seq: &mut Sequencer, ws: u64, s: u16, n: u64) -> Number {
    let mut tx = seq.start_timeout(OPEN, WsId(ws), WAIT).expect("start");
    let first = tx.next_n(SeqId(s), n).expect("next_n");
    seq_flush(tx);
    first
}

fn seq_flush(tx: seqd::Transaction<'_>) {
    let _ = tx.flush();
}

#[test]
fn every_sequence_exists_and_starts_at_its_initial() {
    let mut seq = Sequencer::open(MemoryStorage::new(), open_options()).unwrap();
    assert_eq!(next(&mut seq, 1, 0, 1), Number(10));
    assert_eq!(next(&mut seq, 1, 65535, 1), Number(10));
    assert_eq!(next(&mut seq, 1, 7, 1), Number(1000));
    assert_eq!(next(&mut seq, 1, 0, 5), Number(11));
    assert_eq!(next(&mut seq, 1, 0, 1), Number(16));
    assert_eq!(
        next(&mut seq, 2, 0, 1),
        Number(10),
        "workspaces are independent"
    );
    seq.close().unwrap();
}

#[test]
fn more_sequences_than_stay_resident_keep_their_numbers() {
    let storage = mem();
    let mut seq = Sequencer::open(storage.clone(), open_options()).unwrap();
    // Three rounds over 200 sequences of one workspace: far more than one cache entry keeps,
    // so most `next` calls reload their sequence from unflushed state or storage.
    for round in 0..3u64 {
        for s in 0..200u16 {
            let initial = if s == 7 { 1000 } else { 10 };
            assert_eq!(next(&mut seq, 9, s, 1), Number(initial + round), "seq {s}");
        }
        if round == 1 {
            let last = seq.next_offset();
            seq.wait_flushed(PLogOffset(last.0 - 1), WAIT).unwrap();
        }
    }
    seq.close().unwrap();
    // Everything reached storage, and a reopened sequencer continues.
    assert_eq!(
        storage.read_numbers(WsId(9), &[SeqId(0)]).unwrap(),
        vec![Number(12)]
    );
    let mut seq = Sequencer::open(storage, open_options()).unwrap();
    assert_eq!(next(&mut seq, 9, 199, 1), Number(13));
    seq.close().unwrap();
}

#[test]
fn one_transaction_may_touch_many_sequences() {
    let storage = mem();
    let mut seq = Sequencer::open(storage.clone(), open_options()).unwrap();
    let mut tx = seq.start_timeout(OPEN, WsId(3), WAIT).unwrap();
    for s in 0..150u16 {
        assert_eq!(tx.next(SeqId(s + 100)).unwrap(), Number(10));
        assert_eq!(tx.next(SeqId(s + 100)).unwrap(), Number(11));
    }
    let c = tx.flush();
    seq.wait_durable(c, WAIT).unwrap();
    for s in [100u16, 180, 249] {
        assert_eq!(next(&mut seq, 3, s, 1), Number(12), "seq {s}");
    }
    seq.close().unwrap();
    let stored = storage
        .read_numbers(WsId(3), &[SeqId(100), SeqId(249)])
        .unwrap();
    assert_eq!(stored, vec![Number(12), Number(12)]);
}

#[test]
fn a_failed_load_leaves_the_transaction_usable() {
    let faulty = std::sync::Arc::new(FaultyStorage::new(MemoryStorage::new()));
    let mut seq = Sequencer::open(faulty.clone(), open_options()).unwrap();
    seq.wait_ready(WAIT).unwrap();
    let mut tx = seq.start(OPEN, WsId(4)).unwrap();
    assert_eq!(tx.next(SeqId(1)).unwrap(), Number(10));
    faulty.fail_next(1, true);
    assert!(matches!(tx.next(SeqId(2)), Err(Error::Storage(_))));
    assert_eq!(tx.next(SeqId(2)).unwrap(), Number(10));
    assert_eq!(tx.next(SeqId(1)).unwrap(), Number(11));
    let _ = tx.flush();
    seq.close().unwrap();
}

#[test]
fn peek_takes_nothing_and_uses_no_offset() {
    let mut seq = Sequencer::open(MemoryStorage::new(), open_options()).unwrap();
    seq.wait_ready(WAIT).unwrap();
    assert_eq!(seq.peek(OPEN, WsId(1), SeqId(3)).unwrap(), Number(10));
    assert_eq!(seq.peek(OPEN, WsId(1), SeqId(3)).unwrap(), Number(10));
    assert_eq!(seq.next_offset(), PLogOffset(1), "peek is not an event");
    assert_eq!(next(&mut seq, 1, 3, 4), Number(10));
    assert_eq!(seq.peek(OPEN, WsId(1), SeqId(3)).unwrap(), Number(14));
    assert_eq!(seq.next_offset(), PLogOffset(2));
    assert!(matches!(
        seq.peek(WsKind(9), WsId(1), SeqId(3)),
        Err(Error::UnknownKind(_))
    ));
    // Fixed kinds: unknown sequences are an error, not a panic.
    let mut fixed = Sequencer::open(MemoryStorage::new(), common::options()).unwrap();
    fixed.wait_ready(WAIT).unwrap();
    assert!(matches!(
        fixed.peek(common::KIND, WsId(1), SeqId(99)),
        Err(Error::UnknownSeq { .. })
    ));
    assert_eq!(
        fixed.peek(common::KIND, WsId(1), common::ID).unwrap(),
        Number(200_001)
    );
    // No actualization followed: peek did not end its transaction by dropping it.
    assert_eq!(fixed.stats().actualizations, 1);
    fixed.close().unwrap();
    seq.close().unwrap();
}

#[test]
fn peek_answers_under_backpressure() {
    let faulty = std::sync::Arc::new(FaultyStorage::new(MemoryStorage::new()));
    let options = Options {
        max_unflushed: 2,
        ..open_options()
    };
    let mut seq = Sequencer::open(faulty.clone(), options).unwrap();
    seq.wait_ready(WAIT).unwrap();
    faulty.limit_to(FaultOps::WRITES);
    faulty.fail_forever(true, true);
    for s in 0..2 {
        next(&mut seq, 1, s, 1);
    }
    assert!(common::is_busy(&seq.start(OPEN, WsId(1))));
    assert_eq!(seq.peek(OPEN, WsId(1), SeqId(0)).unwrap(), Number(11));
    faulty.fail_forever(false, true);
    seq.wait_ready(Duration::from_secs(10)).unwrap();
    seq.close().unwrap();
}
