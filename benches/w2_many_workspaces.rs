//! W2 many workspaces: 1,000,000 workspaces round-robin, cache of 100,000 workspaces, so
//! every transaction misses the cache and loads its workspace (from unflushed state or
//! storage), and every commit is new work for the flusher. Reports time per transaction and
//! the process's peak RSS.

mod common;

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use seqd::storage::MemoryStorage;
use seqd::{Options, Sequencer};

const WORKSPACES: u64 = 1_000_000;

fn w2(c: &mut Criterion) {
    let options = Options {
        cache_capacity: 100_000,
        ..common::options()
    };
    let mut seq = Sequencer::open(MemoryStorage::new(), options).expect("open");
    seq.wait_ready(Duration::from_secs(10)).expect("ready");
    // One full round first, so storage holds every workspace like a long-running partition.
    let t0 = Instant::now();
    for ws in 0..WORKSPACES {
        common::tx(&mut seq, ws);
    }
    println!(
        "w2: first round of {WORKSPACES} workspaces took {:?}",
        t0.elapsed()
    );
    common::bench_round_robin(c, "w2_many_workspaces", &mut seq, WORKSPACES);
    let st = seq.stats();
    println!(
        "w2: {} commits, hit rate {:.1}%, resident {}, {} batches (largest {}), busy {}, peak RSS {:.0} MiB",
        st.commits,
        100.0 * st.cache_hits as f64 / (st.cache_hits + st.cache_misses).max(1) as f64,
        st.resident_workspaces,
        st.flush_batches,
        st.largest_batch,
        st.busy_rejections,
        common::peak_rss_mib().unwrap_or(f64::NAN)
    );
    seq.close().expect("close");
}

criterion_group!(benches, w2);
criterion_main!(benches);
