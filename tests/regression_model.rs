//! Shrunk failures of the model test, kept as named tests. Each is headed by what broke.

mod common;

use common::model::{End, Faults, Harness, Memory, Op};

fn run(ops: &[Op]) {
    Harness::run(Memory::new(), ops);
}

/// Recovery at open ran concurrently with the first foreign PLog append, so the sequencer
/// resumed after the foreign event while the model expected offset 1. The harness now waits
/// for recovery after every open; the sequencer's behaviour (recovery sees whatever the log
/// holds when it reads it) was right.
#[test]
fn regression_open_recovery_races_a_foreign_append() {
    run(&[
        Op::Foreign {
            ws: 0,
            seq: 0,
            number: 0,
        },
        Op::Sync,
        Op::Foreign {
            ws: 0,
            seq: 0,
            number: 0,
        },
        Op::Tx {
            ws: 0,
            steps: vec![],
            end: End::Flush,
        },
    ]);
}

/// The flusher gave up on failing writes and actualized on its own while foreign events were
/// landing; the replay saw only some of them. The sequencer resumed at the offset after what
/// it saw — correct; the model learned to accept any resume point within the foreign tail.
#[test]
fn regression_give_up_actualization_sees_part_of_a_foreign_tail() {
    run(&[
        Op::Tx {
            ws: 1,
            steps: vec![(0, 1)],
            end: End::Flush,
        },
        Op::Faults(Faults::WritesForever),
        Op::Tx {
            ws: 1,
            steps: vec![(0, 2)],
            end: End::Flush,
        },
        Op::Foreign {
            ws: 1,
            seq: 0,
            number: 50,
        },
        Op::Foreign {
            ws: 2,
            seq: 1,
            number: 5,
        },
        Op::Faults(Faults::None),
        Op::Tx {
            ws: 1,
            steps: vec![(0, 1)],
            end: End::Flush,
        },
        Op::Tx {
            ws: 1,
            steps: vec![(0, 1)],
            end: End::Flush,
        },
        Op::Sync,
    ]);
}
