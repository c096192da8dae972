//! Model-based test of the sequencer on `MemoryStorage` behind `FaultyStorage`: random
//! transactions, evictions, storage faults, crashes and reopens, foreign PLog events; the
//! sequencer must match a plain model exactly and keep I1–I9 after every step.

mod common;

use common::model::{Harness, Memory, op_strategy};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(96)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "tests/regressions/model_memory.txt",
        ))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn model_memory(ops in prop::collection::vec(op_strategy(), 1..60)) {
        let mut h = Harness::new(Memory::new());
        for op in &ops {
            h.apply(op);
        }
        h.finish();
    }
}
