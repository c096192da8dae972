//! The model test of `model_memory.rs`, on a real RocksDB in a temp directory: a "crash" drops
//! the sequencer with its storage failing (nothing more lands) and closes and reopens the
//! database. Fewer cases: each reopen costs milliseconds.
#![cfg(feature = "rocksdb")]

mod common;

use common::model::{Backend, Harness, cases, op_strategy};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use seqd::storage::{RocksDbPartition, RocksDbStorage, SeqValue, StorageError};
use seqd::{PLogOffset, PartitionId};

struct Rocks {
    dir: tempfile::TempDir,
    partition: Option<RocksDbPartition>,
}

impl Rocks {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = RocksDbStorage::open(dir.path()).expect("open");
        Self {
            partition: Some(db.partition(PartitionId(5))),
            dir,
        }
    }
    fn p(&self) -> &RocksDbPartition {
        self.partition.as_ref().expect("open")
    }
}

impl Backend for Rocks {
    type S = RocksDbPartition;
    fn storage(&self) -> Self::S {
        self.p().clone()
    }
    fn append(&self, offset: PLogOffset, values: &[SeqValue]) -> Result<(), StorageError> {
        self.p().append(offset, values)
    }
    fn restart(&mut self) {
        // Every other handle is gone by now; dropping the last one closes the database.
        self.partition = None;
        let db = RocksDbStorage::open(self.dir.path()).expect("reopen after crash");
        self.partition = Some(db.partition(PartitionId(5)));
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(24),
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "tests/regressions/model_rocksdb.txt",
        ))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn model_rocksdb(ops in prop::collection::vec(op_strategy(), 1..40)) {
        Harness::run(Rocks::new(), &ops);
    }
}
