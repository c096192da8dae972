//! A sequencer bug the `sequencer` fuzz target found (fuzz/regressions/README.md, issue 1),
//! kept as a named regression test. Fixed in `actualizer::run`: a run marks the sequencer
//! `Actualizing` itself and sets `Ready` only when no other actualization was asked for.

use std::sync::Arc;
use std::time::Duration;

use seqd::storage::{FaultOps, FaultyStorage, MemoryStorage, SeqValue};
use seqd::{
    Error, Number, Options, PLogOffset, SeqId, SeqTypes, Sequencer, SequencerState, WsId, WsKind,
};

const KIND: WsKind = WsKind(1);

/// `Sequencer::actualize()` while an actualization is running: the running one ends with the
/// sequencer `Ready` although the requested one has not run yet, and the requested one never
/// marks it `Actualizing` again. So `start` succeeds *during* the second actualization, at the
/// first one's offset and with numbers read from storage, missing what the PLog gained since:
/// the offset of a PLog event and a number below a logged one are handed out (I5, I2).
///
/// Timing: every storage read takes `L`, so each actualization takes 2L (read the checkpoint,
/// replay). The test waits until the first has started before asking for the second (asked
/// earlier, the two merge into one), and lands the event as soon as the second has started,
/// before its replay reads the PLog.
#[test]
fn actualize_during_actualization_leaves_the_sequencer_ready_too_early() {
    const L: Duration = Duration::from_millis(200);
    let mem = Arc::new(MemoryStorage::new());
    let faulty = Arc::new(FaultyStorage::new(Arc::clone(&mem)));
    let options = Options {
        seq_types: SeqTypes::new().with(KIND, SeqId(1), Number(1)),
        ..Options::default()
    };
    let mut seq = Sequencer::open(Arc::clone(&faulty), options).unwrap();
    seq.wait_ready(Duration::from_secs(5)).unwrap();
    let runs = seq.stats().actualizations;
    let wait_for_run = |seq: &Sequencer, n: u64| {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while seq.stats().actualizations < runs + n {
            assert!(
                std::time::Instant::now() < deadline,
                "actualization {n} never started"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    };

    faulty.limit_to(FaultOps::READS);
    faulty.set_latency(L);
    seq.actualize();
    wait_for_run(&seq, 1);
    seq.actualize(); // requested while the first runs
    wait_for_run(&seq, 2);
    // The first actualization is over; the second has not read the PLog yet. An event lands.
    mem.append(
        PLogOffset(1),
        &[SeqValue {
            ws: WsId(1),
            seq: SeqId(1),
            number: Number(100),
        }],
    )
    .unwrap();

    let state = seq.stats().state;
    let started = seq.start(KIND, WsId(1)).map(|mut tx| {
        let offset = tx.offset();
        let n = tx.next(SeqId(1));
        tx.actualize();
        (offset, n)
    });
    // Correct: Busy while the second actualization runs (or, after it, offset 2 and 101).
    match started {
        Err(Error::Busy { .. }) => {}
        Ok((PLogOffset(2), Ok(Number(101)))) => {}
        other => panic!(
            "started during the second actualization (state {state:?}): {other:?}; \
             offset 1 is the PLog's and 100 was logged"
        ),
    }
    assert_ne!(
        state,
        SequencerState::Ready,
        "Ready while an actualization is queued"
    );
}
