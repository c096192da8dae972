//! Start / next / flush / actualize: the contract of SPEC §2, scenario by scenario (the voedger
//! `isequencer` suite, ported in spirit).

mod common;

use std::time::Duration;

use common::*;
use seqd::storage::{MemoryStorage, SeqStorage, SeqValue};
use seqd::{Error, Number, PLogOffset, SeqId, SeqTypes, Sequencer, WsId, WsKind};

#[test]
fn fresh_partition_starts_at_offset_one_and_initial_values() {
    let storage = mem();
    let mut seq = Sequencer::open(storage.clone(), options()).unwrap();
    let (offset, id, block, _) = command(&mut seq, &storage, 1, 10);
    assert_eq!(offset, PLogOffset(1));
    assert_eq!(id, Number(200_001));
    assert_eq!(block, Number(1));
    let (offset, id, block, _) = command(&mut seq, &storage, 1, 1);
    assert_eq!(offset, PLogOffset(2));
    assert_eq!(id, Number(200_002));
    assert_eq!(block, Number(11), "next_n(10) took 1..=10");
    seq.close().unwrap();
    assert_eq!(storage.read_next_offset().unwrap(), PLogOffset(3));
    assert_eq!(storage.number(WsId(1), ID), Some(Number(200_002)));
    assert_eq!(storage.number(WsId(1), BLOCK), Some(Number(11)));
}

#[test]
fn numbers_within_a_transaction_and_peek() {
    let mut seq = Sequencer::open(MemoryStorage::new(), options()).unwrap();
    let mut tx = start(&mut seq, 7);
    assert_eq!(tx.peek(ID).unwrap(), Number(200_001));
    assert_eq!(tx.next(ID).unwrap(), Number(200_001));
    assert_eq!(tx.next(ID).unwrap(), Number(200_002));
    assert_eq!(tx.peek(ID).unwrap(), Number(200_003));
    assert_eq!(tx.next_n(ID, 5).unwrap(), Number(200_003));
    assert_eq!(tx.next(ID).unwrap(), Number(200_008));
    assert_eq!((tx.ws(), tx.kind()), (WsId(7), KIND));
    tx.flush();
    let mut tx = start(&mut seq, 7);
    assert_eq!(tx.next(ID).unwrap(), Number(200_009));
    assert_eq!(tx.offset(), PLogOffset(2));
    tx.flush();
    // Workspaces are independent.
    let mut tx = start(&mut seq, 8);
    assert_eq!(tx.next(ID).unwrap(), Number(200_001));
    tx.flush();
}

#[test]
fn unknown_kind_and_sequence_are_errors_not_panics() {
    let mut seq = Sequencer::open(MemoryStorage::new(), options()).unwrap();
    let _ = start(&mut seq, 1).flush();
    match seq.start(WsKind(99), WsId(1)) {
        Err(Error::UnknownKind(WsKind(99))) => {}
        other => panic!("expected UnknownKind, got {other:?}"),
    }
    let mut tx = start(&mut seq, 1);
    match tx.next(SeqId(77)) {
        Err(Error::UnknownSeq { kind, seq }) => assert_eq!((kind, seq), (KIND, SeqId(77))),
        other => panic!("expected UnknownSeq, got {other:?}"),
    }
    assert!(matches!(tx.next_n(ID, 0), Err(Error::InvalidArgument(_))));
    // The transaction is still usable after argument errors.
    assert_eq!(tx.next(ID).unwrap(), Number(200_001));
    tx.flush();
}

#[test]
fn invalid_options_are_rejected_at_open() {
    let bad = seqd::Options {
        cache_capacity: 0,
        ..options()
    };
    assert!(matches!(
        Sequencer::open(MemoryStorage::new(), bad),
        Err(Error::InvalidOptions(_))
    ));
    let zero = seqd::Options {
        seq_types: SeqTypes::new().with(KIND, ID, Number(0)),
        ..options()
    };
    let err = Sequencer::open(MemoryStorage::new(), zero).unwrap_err();
    assert!(err.to_string().contains("initial value 0"), "{err}");
}

#[test]
fn exhaustion_is_an_error_and_changes_nothing() {
    let storage = mem();
    storage
        .write_values_and_offset(&[id_value(1, Number(u64::MAX - 2))], PLogOffset(1))
        .unwrap();
    let mut seq = Sequencer::open(storage.clone(), options()).unwrap();
    let mut tx = start(&mut seq, 1);
    assert!(matches!(tx.next_n(ID, 3), Err(Error::Exhausted { .. })));
    assert_eq!(
        tx.next(ID).unwrap(),
        Number(u64::MAX - 1),
        "a failed next_n takes nothing"
    );
    assert_eq!(tx.next(ID).unwrap(), Number(u64::MAX));
    let err = tx.next(ID).unwrap_err();
    assert!(matches!(err, Error::Exhausted { .. }), "{err}");
    assert!(matches!(tx.peek(ID), Err(Error::Exhausted { .. })));
    tx.flush();
    seq.close().unwrap();
    assert_eq!(storage.number(WsId(1), ID), Some(Number(u64::MAX)));
}

#[test]
fn initial_value_is_a_floor_over_lower_stored_numbers() {
    let storage = mem();
    storage
        .write_values_and_offset(&[id_value(1, Number(17))], PLogOffset(1))
        .unwrap();
    let mut seq = Sequencer::open(storage, options()).unwrap();
    let mut tx = start(&mut seq, 1);
    assert_eq!(
        tx.next(ID).unwrap(),
        Number(200_001),
        "I4: never below the initial value"
    );
    tx.flush();
}

#[test]
fn actualize_discards_and_reissues_the_same_numbers_and_offset() {
    let storage = mem();
    let mut seq = Sequencer::open(storage.clone(), options()).unwrap();
    command(&mut seq, &storage, 1, 1);
    let mut tx = start(&mut seq, 1);
    let offset = tx.offset();
    let id = tx.next(ID).unwrap();
    tx.actualize(); // the PLog write failed
    assert!(is_busy(&seq.start(KIND, WsId(1))) || seq.stats().generation >= 2);
    let mut tx = start(&mut seq, 1);
    assert_eq!(tx.offset(), offset, "I3: the offset is handed out again");
    assert_eq!(
        tx.next(ID).unwrap(),
        id,
        "I3: the number is handed out again"
    );
    tx.flush();
}

#[test]
fn dropping_a_transaction_actualizes() {
    let storage = mem();
    let mut seq = Sequencer::open(storage.clone(), options()).unwrap();
    command(&mut seq, &storage, 1, 1);
    {
        let mut tx = start(&mut seq, 1);
        tx.next(ID).unwrap();
    }
    let mut tx = start(&mut seq, 1);
    assert_eq!(tx.offset(), PLogOffset(2));
    assert_eq!(tx.next(ID).unwrap(), Number(200_002));
    tx.flush();
    assert_eq!(seq.stats().actualizations, 2, "open + the drop");
}

#[test]
fn actualize_keeps_flushed_events_that_are_in_the_plog() {
    let storage = mem();
    let mut seq = Sequencer::open(storage.clone(), options()).unwrap();
    // Commit without waiting for durability, then actualize at once: the committed but
    // perhaps unflushed numbers must come back from the PLog.
    for _ in 0..20 {
        command(&mut seq, &storage, 3, 2);
    }
    start(&mut seq, 3).actualize();
    let mut tx = start(&mut seq, 3);
    assert_eq!(tx.offset(), PLogOffset(21));
    assert_eq!(tx.next(ID).unwrap(), Number(200_021));
    assert_eq!(tx.next(BLOCK).unwrap(), Number(41));
    tx.flush();
}

#[test]
fn cache_capacity_one_evicts_and_reloads_from_unflushed_and_storage() {
    let storage = mem();
    let opts = seqd::Options {
        cache_capacity: 1,
        ..options()
    };
    let mut seq = Sequencer::open(storage.clone(), opts).unwrap();
    for round in 0..50u64 {
        for ws in 1..=3 {
            let (_, id, _, _) = command(&mut seq, &storage, ws, 1);
            assert_eq!(id, Number(200_001 + round), "ws {ws} round {round}");
        }
    }
    let st = seq.stats();
    assert_eq!(st.resident_workspaces, 1, "I7: capacity 1");
    assert!(st.cache_evictions >= 149, "{st:?}");
    assert!(seq.evict(WsId(3)));
    assert!(!seq.evict(WsId(3)));
    let (_, id, _, _) = command(&mut seq, &storage, 3, 1);
    assert_eq!(id, Number(200_051));
}

#[test]
fn recovery_from_plog_of_1_to_50_events() {
    for events in 1..=50u64 {
        let storage = mem();
        // An application logged `events` events but the checkpoint never got written.
        for o in 1..=events {
            storage
                .append(
                    PLogOffset(o),
                    &[
                        id_value(o % 4, Number(200_000 + o)),
                        SeqValue {
                            ws: WsId(o % 4),
                            seq: BLOCK,
                            number: Number(o * 10),
                        },
                    ],
                )
                .unwrap();
        }
        let mut seq = Sequencer::open(storage.clone(), options()).unwrap();
        let mut tx = start(&mut seq, events % 4);
        assert_eq!(
            tx.offset(),
            PLogOffset(events + 1),
            "I5 with {events} events"
        );
        assert_eq!(tx.next(ID).unwrap(), Number(200_000 + events + 1));
        assert_eq!(tx.next(BLOCK).unwrap(), Number(events * 10 + 1));
        tx.flush();
        seq.close().unwrap();
        // Replayed state is flushed: the checkpoint covers the whole log.
        assert_eq!(storage.read_next_offset().unwrap(), PLogOffset(events + 2));
    }
}

#[test]
fn replay_merges_by_max_and_never_lowers() {
    let storage = mem();
    storage
        .write_values_and_offset(&[id_value(1, Number(300_000))], PLogOffset(1))
        .unwrap();
    // Events carrying lower numbers than the checkpoint (and than each other).
    storage
        .append(PLogOffset(1), &[id_value(1, Number(250_000))])
        .unwrap();
    storage
        .append(PLogOffset(2), &[id_value(1, Number(260_000))])
        .unwrap();
    storage
        .append(PLogOffset(3), &[id_value(1, Number(255_000))])
        .unwrap();
    storage
        .append(PLogOffset(4), &[id_value(2, Number(200_500))])
        .unwrap();
    let mut seq = Sequencer::open(storage.clone(), options()).unwrap();
    let mut tx = start(&mut seq, 1);
    assert_eq!(tx.offset(), PLogOffset(5));
    assert_eq!(
        tx.next(ID).unwrap(),
        Number(300_001),
        "I4: replay never lowers"
    );
    tx.flush();
    let mut tx = start(&mut seq, 2);
    assert_eq!(tx.next(ID).unwrap(), Number(200_501));
    tx.flush();
    seq.close().unwrap();
    assert_eq!(storage.number(WsId(1), ID), Some(Number(300_001)));
}

#[test]
fn replay_in_bounded_batches_writes_progress() {
    let storage = mem();
    for o in 1..=1000u64 {
        storage
            .append(PLogOffset(o), &[id_value(o, Number(200_001))])
            .unwrap();
    }
    let opts = seqd::Options {
        max_unflushed: 100,
        ..options()
    };
    let mut seq = Sequencer::open(storage.clone(), opts).unwrap();
    let tx = start(&mut seq, 1);
    assert_eq!(tx.offset(), PLogOffset(1001));
    tx.flush();
    let st = seq.stats();
    assert_eq!(st.replayed_events, 1000);
    assert!(
        st.flush_batches >= 10,
        "replay wrote in batches of <= 100 values: {st:?}"
    );
    assert!(st.largest_batch <= 100, "{st:?}");
    assert_eq!(storage.len(), 1000);
}

#[test]
fn empty_and_offset_only_commits() {
    let storage = mem();
    let mut seq = Sequencer::open(storage.clone(), options()).unwrap();
    let c = start(&mut seq, 1).flush();
    seq.wait_durable(c, WAIT).unwrap();
    assert_eq!(
        storage.read_next_offset().unwrap(),
        PLogOffset(2),
        "an offset-only batch"
    );
    let writes = storage.write_count();
    assert_eq!(seq.flushed_offset(), PLogOffset(1));
    // Closing flushes whatever is pending: with nothing committed since, nothing.
    seq.close().unwrap();
    assert_eq!(
        storage.write_count(),
        writes,
        "nothing committed, nothing written"
    );
}

#[test]
fn wait_durable_and_watcher() {
    let storage = mem();
    let mut seq = Sequencer::open(storage.clone(), options()).unwrap();
    let watcher = seq.watcher();
    let (_, _, _, c) = command(&mut seq, &storage, 1, 1);
    assert_eq!(c.offset(), PLogOffset(1));
    let w = watcher.clone();
    let t = std::thread::spawn(move || w.wait_durable(c, WAIT));
    t.join().unwrap().unwrap();
    assert!(watcher.is_durable(c).unwrap());
    assert!(watcher.flushed_offset() >= PLogOffset(1));
    let (_, _, _, c2) = command(&mut seq, &storage, 2, 1);
    seq.wait_flushed(c2.offset(), WAIT).unwrap();
    assert!(seq.flushed_offset() >= PLogOffset(2));
    assert!(matches!(
        seq.wait_flushed(PLogOffset(99), Duration::from_millis(5)),
        Err(Error::Timeout {
            offset: PLogOffset(99),
            ..
        })
    ));
}

#[test]
fn wait_durable_reports_discarded_commits() {
    let storage = seqd::storage::FaultyStorage::new(MemoryStorage::new());
    let storage = std::sync::Arc::new(storage);
    let mut seq = Sequencer::open(storage.clone(), options()).unwrap();
    let first = start(&mut seq, 1).flush();
    seq.wait_durable(first, WAIT).unwrap();
    // Writes fail from now on, and this commit's event is NOT in the PLog.
    storage.limit_to(seqd::storage::FaultOps::WRITES);
    storage.fail_forever(true, true);
    let mut tx = start(&mut seq, 1);
    tx.next(ID).unwrap();
    let c = tx.flush();
    // The flusher gives up after its retry budget and the actualizer discards the commit.
    let r = seq.wait_durable(c, WAIT);
    assert!(
        matches!(
            r,
            Err(Error::Discarded {
                offset: PLogOffset(2)
            })
        ),
        "{r:?}"
    );
    storage.heal();
    let mut tx = start(&mut seq, 1);
    assert_eq!(
        tx.offset(),
        PLogOffset(2),
        "the discarded offset is reissued"
    );
    assert_eq!(
        tx.next(ID).unwrap(),
        Number(200_001),
        "and so is its number"
    );
    let c2 = tx.flush();
    seq.wait_durable(c2, WAIT).unwrap();
    assert!(matches!(
        seq.wait_durable(c, WAIT),
        Err(Error::Discarded { .. })
    ));
}

#[test]
fn wait_durable_times_out_while_storage_is_slow() {
    let storage = std::sync::Arc::new(seqd::storage::FaultyStorage::new(MemoryStorage::new()));
    let mut seq = Sequencer::open(storage.clone(), options()).unwrap();
    let _ = start(&mut seq, 1).flush();
    storage.set_latency(Duration::from_millis(300));
    let mut tx = start(&mut seq, 1);
    tx.next(ID).unwrap();
    let c = tx.flush();
    let r = seq.wait_durable(c, Duration::from_millis(20));
    assert!(matches!(r, Err(Error::Timeout { .. })), "{r:?}");
    storage.set_latency(Duration::ZERO);
    seq.wait_durable(c, WAIT).unwrap();
}

#[test]
fn group_commit_batches_grow_while_a_write_is_in_flight() {
    let storage = std::sync::Arc::new(seqd::storage::FaultyStorage::new(MemoryStorage::new()));
    storage.limit_to(seqd::storage::FaultOps::WRITES);
    storage.set_latency(Duration::from_millis(5));
    let mut seq = Sequencer::open(storage.clone(), options()).unwrap();
    let mut last = None;
    for ws in 0..5000 {
        let mut tx = start(&mut seq, ws);
        tx.next(ID).unwrap();
        last = Some(tx.flush());
    }
    seq.wait_durable(last.unwrap(), WAIT).unwrap();
    let st = seq.stats();
    assert!(st.largest_batch > 100, "batches grow with latency: {st:?}");
    assert!(st.flush_batches < 1000, "{st:?}");
    assert_eq!(storage.inner().len(), 5000);
}

#[test]
fn stats_reflect_activity() {
    let storage = mem();
    let mut seq = Sequencer::open(storage.clone(), options()).unwrap();
    for ws in 0..10 {
        command(&mut seq, &storage, ws, 1);
    }
    let (_, _, _, c) = command(&mut seq, &storage, 0, 1);
    seq.wait_durable(c, WAIT).unwrap();
    let st = seq.stats();
    assert_eq!(st.state, seqd::SequencerState::Ready);
    assert_eq!(st.commits, 11);
    assert_eq!(st.next_offset, PLogOffset(12));
    assert_eq!(st.flushed_offset, PLogOffset(11));
    assert_eq!(st.resident_workspaces, 10);
    assert_eq!((st.cache_misses, st.cache_hits), (10, 1));
    assert_eq!(st.unflushed, 0);
    assert!(st.flush_batches >= 1 && st.flushed_values >= 20);
    assert!(st.max_flush_latency >= st.mean_flush_latency);
    assert!(format!("{seq:?}").contains("Sequencer"));
}
