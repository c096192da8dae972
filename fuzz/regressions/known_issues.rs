//! Sequencer bugs the `sequencer` fuzz target found, as plain tests (see README.md here).
//! They FAIL until the bugs are fixed: `cd fuzz && cargo test --test known_issues`.

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
/// replay); the second runs from 2L to 4L and reads the PLog at 4L.
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

    faulty.limit_to(FaultOps::READS);
    faulty.set_latency(L);
    seq.actualize(); // runs from 0 to 2L
    seq.actualize(); // requested while the first runs: runs from 2L to 4L
    std::thread::sleep(L * 5 / 2);
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
