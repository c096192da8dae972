//! W2 in a plain loop, for profilers: `valgrind --tool=callgrind --separate-threads=yes
//! target/release/examples/w2_profile 1000000 100000 2000000` counts instructions per
//! transaction for the writer and the flusher separately. Arguments: workspaces, cache
//! capacity, transactions (defaults: the W2 figures 1,000,000 / 100,000, and 3,000,000).

use std::time::{Duration, Instant};

use seqd::storage::MemoryStorage;
use seqd::{Number, Options, SeqId, SeqTypes, Sequencer, WsId, WsKind};

fn main() {
    let arg = |i: usize, d: u64| {
        std::env::args()
            .nth(i)
            .and_then(|s| s.parse().ok())
            .unwrap_or(d)
    };
    let (workspaces, cache, n) = (arg(1, 1_000_000), arg(2, 100_000), arg(3, 3_000_000));
    let o = Options {
        seq_types: SeqTypes::new()
            .with(WsKind(1), SeqId(5), Number(200_001))
            .with(WsKind(1), SeqId(4), Number(1)),
        cache_capacity: cache as usize,
        ..Options::default()
    };
    let mut seq = Sequencer::open(MemoryStorage::new(), o).unwrap();
    // One full round first, as in the criterion bench: storage holds every workspace.
    let t = Instant::now();
    for ws in 0..workspaces {
        let mut tx = seq
            .start_timeout(WsKind(1), WsId(ws), Duration::from_secs(60))
            .unwrap();
        tx.next(SeqId(5)).unwrap();
        tx.next(SeqId(4)).unwrap();
        tx.flush();
    }
    eprintln!("first round: {:?}", t.elapsed());
    let t = Instant::now();
    for i in 0..n {
        let mut tx = seq
            .start_timeout(WsKind(1), WsId(i % workspaces), Duration::from_secs(60))
            .unwrap();
        tx.next(SeqId(5)).unwrap();
        tx.next(SeqId(4)).unwrap();
        tx.flush();
    }
    let st = seq.stats();
    eprintln!(
        "{:?}/tx; {} batches, largest {}, busy {}",
        t.elapsed() / n as u32,
        st.flush_batches,
        st.largest_batch,
        st.busy_rejections
    );
    seq.close().unwrap();
}
