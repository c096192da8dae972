//! A sequencer bug the `sequencer` fuzz target found (fuzz/regressions/README.md, issue 1),
//! kept as a named regression test. Fixed in `actualizer::run`: a run marks the sequencer
//! `Actualizing` itself and sets `Ready` only when no other actualization was asked for.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use seqd::storage::{MemoryStorage, ReplayFn, SeqStorage, SeqValue, StorageError};
use seqd::{
    Error, Number, Options, PLogOffset, SeqId, SeqTypes, Sequencer, SequencerState, WsId, WsKind,
};

const KIND: WsKind = WsKind(1);
/// Bounds every wait (none should take more than milliseconds).
const WAIT: Duration = Duration::from_secs(10);

/// Memory storage whose recovery reads (`read_next_offset`, `replay`) each need a permit the
/// test hands out: the test decides exactly how far an actualization gets.
struct Gated {
    inner: Arc<MemoryStorage>,
    gate: Mutex<Gate>,
    changed: Condvar,
}

#[derive(Default)]
struct Gate {
    permits: usize,
    /// Reads waiting for a permit.
    waiting: usize,
}

impl Gated {
    fn pass(&self) {
        let deadline = Instant::now() + WAIT;
        let mut g = self.gate.lock().unwrap();
        g.waiting += 1;
        self.changed.notify_all();
        while g.permits == 0 {
            assert!(Instant::now() < deadline, "a recovery read waited too long");
            g = self.changed.wait_timeout(g, WAIT).unwrap().0;
        }
        g.permits -= 1;
        g.waiting -= 1;
    }

    fn permit(&self, n: usize) {
        self.gate.lock().unwrap().permits += n;
        self.changed.notify_all();
    }

    /// Waits until a recovery read waits for a permit, and none is left.
    fn wait_for_blocked_read(&self) {
        let deadline = Instant::now() + WAIT;
        let mut g = self.gate.lock().unwrap();
        while g.waiting == 0 || g.permits > 0 {
            assert!(
                Instant::now() < deadline,
                "no recovery read reached the gate"
            );
            g = self.changed.wait_timeout(g, WAIT).unwrap().0;
        }
    }
}

impl SeqStorage for Gated {
    fn read_numbers(&self, ws: WsId, seqs: &[SeqId]) -> Result<Vec<Number>, StorageError> {
        self.inner.read_numbers(ws, seqs)
    }
    fn write_values_and_offset(
        &self,
        values: &[SeqValue],
        next_offset: PLogOffset,
    ) -> Result<(), StorageError> {
        self.inner.write_values_and_offset(values, next_offset)
    }
    fn read_next_offset(&self) -> Result<PLogOffset, StorageError> {
        self.pass();
        self.inner.read_next_offset()
    }
    fn replay(&self, from: PLogOffset, apply: &mut ReplayFn<'_>) -> Result<(), StorageError> {
        self.pass();
        self.inner.replay(from, apply)
    }
}

/// `Sequencer::actualize()` while an actualization is running: the running one ended with the
/// sequencer `Ready` although the requested one had not run yet, and the requested one never
/// marked it `Actualizing` again. So `start` succeeded *during* the second actualization, at
/// the first one's offset and with numbers read from storage, missing what the PLog gained
/// since: the offset of a PLog event and a number below a logged one were handed out (I5, I2).
///
/// The gate holds the first actualization at its first read, the test asks for the second,
/// lets the first finish (its two reads), and holds the second at its first read, before it
/// reads the PLog; then an event lands.
#[test]
fn actualize_during_actualization_leaves_the_sequencer_ready_too_early() {
    let mem = Arc::new(MemoryStorage::new());
    let gated = Arc::new(Gated {
        inner: Arc::clone(&mem),
        gate: Mutex::new(Gate {
            permits: usize::MAX / 2, // recovery at open passes freely
            waiting: 0,
        }),
        changed: Condvar::new(),
    });
    let options = Options {
        seq_types: SeqTypes::new().with(KIND, SeqId(1), Number(1)),
        ..Options::default()
    };
    let mut seq = Sequencer::open(Arc::clone(&gated), options).unwrap();
    seq.wait_ready(WAIT).unwrap();
    let runs = seq.stats().actualizations;
    gated.gate.lock().unwrap().permits = 0;

    seq.actualize();
    gated.wait_for_blocked_read(); // the first run, at its checkpoint read
    seq.actualize(); // requested while the first runs
    gated.permit(2); // the first run reads the checkpoint and replays, and ends
    gated.wait_for_blocked_read(); // the second run, at its checkpoint read
    assert_eq!(seq.stats().actualizations, runs + 2);
    // The second actualization has not read the PLog yet. An event lands.
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
    assert_ne!(
        state,
        SequencerState::Ready,
        "Ready while an actualization is queued"
    );
    let started = seq.start(KIND, WsId(1)).map(|mut tx| {
        let offset = tx.offset();
        let n = tx.next(SeqId(1));
        tx.actualize();
        (offset, n)
    });
    assert!(
        matches!(started, Err(Error::Busy { .. })),
        "started during the second actualization (state {state:?}): {started:?}; \
         offset 1 is the PLog's and 100 was logged"
    );

    // Once it is done: the offset after the event, the number after the logged one.
    gated.permit(usize::MAX / 2);
    let mut tx = seq.start_timeout(KIND, WsId(1), WAIT).unwrap();
    assert_eq!(tx.offset(), PLogOffset(2));
    assert_eq!(tx.next(SeqId(1)).unwrap(), Number(101));
    tx.actualize();
}
