//! W1 in a plain loop, for profilers: `valgrind --tool=callgrind target/release/examples/w1_profile 200000`
//! counts instructions per transaction (repeatable on a noisy machine); with no profiler it
//! prints the time per transaction. Argument: transactions (default 200,000).

use seqd::storage::MemoryStorage;
use seqd::{Number, Options, SeqId, SeqTypes, Sequencer, WsId, WsKind};
fn main() {
    let o = Options {
        seq_types: SeqTypes::new()
            .with(WsKind(1), SeqId(5), Number(200_001))
            .with(WsKind(1), SeqId(4), Number(1)),
        ..Options::default()
    };
    let mut seq = Sequencer::open(MemoryStorage::new(), o).unwrap();
    seq.wait_ready(std::time::Duration::from_secs(5)).unwrap();
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(200_000);
    let t = std::time::Instant::now();
    for _ in 0..n {
        let mut tx = seq.start(WsKind(1), WsId(42)).unwrap();
        tx.next(SeqId(5)).unwrap();
        tx.next(SeqId(4)).unwrap();
        tx.flush();
    }
    eprintln!("{:?}/tx", t.elapsed() / n as u32);
    seq.close().unwrap();
}
