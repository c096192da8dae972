//! Model-based test of the sequencer on `MemoryStorage` behind `FaultyStorage`: random
//! transactions, evictions, storage faults, crashes and reopens, foreign PLog events; the
//! sequencer must match a plain model exactly and keep I1–I9 after every step.

mod common;

use common::model::{Harness, Memory, cases, op_strategy};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(96),
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "tests/regressions/model_memory.txt",
        ))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn model_memory(ops in prop::collection::vec(op_strategy(), 1..60)) {
        Harness::run(Memory::new(), &ops);
    }
}
