//! W3 slow storage: 10,000 workspaces round-robin, every storage write takes 3 ms. Measures
//! committed transactions per second over 10 s (`SEQD_W3_SECS` to change) with a writer that
//! retries refused starts at once, as the voedger benchmark does, and how often `start` was
//! refused. Also a criterion measurement of the same loop with waiting starts.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use seqd::storage::{FaultOps, FaultyStorage, MemoryStorage};
use seqd::{Error, SeqId, Sequencer, WsId};

const WORKSPACES: u64 = 10_000;

fn slow_sequencer() -> Sequencer {
    let storage = Arc::new(FaultyStorage::new(MemoryStorage::new()));
    storage.limit_to(FaultOps::WRITES);
    storage.set_latency(Duration::from_millis(3));
    let mut seq = Sequencer::open(storage, common::options()).expect("open");
    seq.wait_ready(Duration::from_secs(10)).expect("ready");
    seq
}

fn fixed_run() {
    let secs = std::env::var("SEQD_W3_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10u64);
    let mut seq = slow_sequencer();
    let (mut committed, mut refused, mut ws) = (0u64, 0u64, 0u64);
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs(secs);
    while Instant::now() < end {
        for _ in 0..256 {
            match seq.start(common::KIND, WsId(ws)) {
                Ok(mut tx) => {
                    let ok = tx.next(SeqId(5)).is_ok() && tx.next(SeqId(4)).is_ok();
                    assert!(ok);
                    tx.flush();
                    committed += 1;
                    ws = (ws + 1) % WORKSPACES;
                }
                Err(Error::Busy { .. }) => refused += 1,
                Err(e) => panic!("start: {e}"),
            }
        }
    }
    let took = t0.elapsed().as_secs_f64();
    let st = seq.stats();
    println!(
        "w3: {:.0} committed tx/s over {took:.1} s; {:.2}% of {} starts refused; \
         {} batches of mean {:.0} values (largest {}), mean write {:?}",
        committed as f64 / took,
        100.0 * refused as f64 / (committed + refused).max(1) as f64,
        committed + refused,
        st.flush_batches,
        st.flushed_values as f64 / st.flush_batches.max(1) as f64,
        st.largest_batch,
        st.mean_flush_latency,
    );
    seq.close().expect("close");
}

fn w3(c: &mut Criterion) {
    fixed_run();
    let mut seq = slow_sequencer();
    common::bench_round_robin(c, "w3_slow_storage", &mut seq, WORKSPACES);
    seq.close().expect("close");
}

criterion_group!(benches, w3);
criterion_main!(benches);
