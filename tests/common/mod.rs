//! Helpers shared by the integration tests.
#![allow(dead_code)]

#[cfg(feature = "daemon")]
pub mod bench;
#[cfg(feature = "cluster")]
pub mod cluster;
#[cfg(feature = "daemon")]
pub mod daemon;
#[cfg(feature = "cluster")]
pub mod etcd;
#[cfg(feature = "daemon")]
pub mod load;
pub mod model;
#[cfg(feature = "daemon")]
pub mod process;

use std::sync::Arc;
use std::time::{Duration, Instant};

use seqd::storage::{MemoryStorage, SeqValue};
use seqd::{
    Committed, Error, Number, Options, PLogOffset, RetryPolicy, SeqId, SeqTypes, Sequencer, WsId,
    WsKind,
};

pub const KIND: WsKind = WsKind(1);
pub const ID: SeqId = SeqId(5);
pub const BLOCK: SeqId = SeqId(4);
pub const WAIT: Duration = Duration::from_secs(10);

/// Kind 1: sequence 5 starts at 200_001 (record IDs), sequence 4 at 1.
pub fn types() -> SeqTypes {
    SeqTypes::new()
        .with(KIND, ID, Number(200_001))
        .with(KIND, BLOCK, Number(1))
}

/// Options with fast retries, so failure tests run quickly.
pub fn options() -> Options {
    Options {
        seq_types: types(),
        retry: RetryPolicy {
            base: Duration::from_millis(1),
            cap: Duration::from_millis(5),
            max_attempts: 3,
            ..RetryPolicy::default()
        },
        close_timeout: Duration::from_secs(2),
        ..Options::default()
    }
}

/// [`options`] with `flush_interval` and a retry budget that outlasts any test: for tests of
/// writes on the caller's thread (`FlushHandle`), where the worker retries what failed.
pub fn caller_options(flush_interval: Duration) -> Options {
    let base = options();
    Options {
        flush_interval,
        retry: RetryPolicy {
            max_attempts: 1_000,
            ..base.retry
        },
        ..base
    }
}

/// The value an event logs for sequence `ID` of workspace `ws`.
pub fn id_value(ws: u64, number: Number) -> SeqValue {
    SeqValue {
        ws: WsId(ws),
        seq: ID,
        number,
    }
}

/// Starts a transaction, waiting out recovery and backpressure.
pub fn start(seq: &mut Sequencer, ws: u64) -> seqd::Transaction<'_> {
    match seq.start_timeout(KIND, WsId(ws), WAIT) {
        Ok(tx) => tx,
        Err(e) => panic!("start on ws {ws} failed: {e}"),
    }
}

/// One application command: take `next(ID)` and `next_n(BLOCK, n)`, log the event to the
/// PLog, flush. Returns the offset and the numbers.
pub fn command(
    seq: &mut Sequencer,
    plog: &MemoryStorage,
    ws: u64,
    n: u64,
) -> (PLogOffset, Number, Number, Committed) {
    let mut tx = start(seq, ws);
    let offset = tx.offset();
    let id = tx.next(ID).expect("next");
    let block = tx.next_n(BLOCK, n).expect("next_n");
    plog.append(
        offset,
        &[
            id_value(ws, id),
            SeqValue {
                ws: WsId(ws),
                seq: BLOCK,
                number: Number(block.0 + n - 1),
            },
        ],
    )
    .expect("plog append");
    let c = tx.flush();
    (offset, id, block, c)
}

/// Polls `f` until it holds or `WAIT` passes.
pub fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

pub fn mem() -> Arc<MemoryStorage> {
    Arc::new(MemoryStorage::new())
}

pub fn is_busy<T: std::fmt::Debug>(r: &Result<T, Error>) -> bool {
    matches!(r, Err(Error::Busy { .. }))
}
