//! W1 hot: one partition, one workspace; a transaction = start, next(5), next(4), flush, on
//! `MemoryStorage` with the real background flusher running. Reports time per transaction.

mod common;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use seqd::Sequencer;
use seqd::storage::MemoryStorage;

fn w1(c: &mut Criterion) {
    let mut seq = Sequencer::open(MemoryStorage::new(), common::options()).expect("open");
    seq.wait_ready(std::time::Duration::from_secs(10))
        .expect("ready");
    let mut g = c.benchmark_group("w1_hot");
    g.throughput(Throughput::Elements(1));
    g.bench_function("tx", |b| b.iter(|| common::tx(&mut seq, 42)));
    g.finish();
    let st = seq.stats();
    println!(
        "w1: {} commits, {} flusher batches (largest {}), busy rejections {}",
        st.commits, st.flush_batches, st.largest_batch, st.busy_rejections
    );
    seq.close().expect("close");
}

criterion_group!(benches, w1);
criterion_main!(benches);
