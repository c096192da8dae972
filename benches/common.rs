//! Shared setup of the workload benches (SPEC §4).
#![allow(dead_code)]

use std::time::Duration;

use criterion::{Criterion, Throughput};
use seqd::{Number, Options, SeqId, SeqTypes, Sequencer, WsId, WsKind};

pub const KIND: WsKind = WsKind(1);

/// The W1/W2/W3 sequence catalogue: sequences 5 and 4, as in the voedger benchmarks.
pub fn options() -> Options {
    Options {
        seq_types: SeqTypes::new().with(KIND, SeqId(5), Number(200_001)).with(
            KIND,
            SeqId(4),
            Number(1),
        ),
        ..Options::default()
    }
}

/// One W1/W2/W3 transaction: start, next(5), next(4), flush. Waits if the sequencer is busy.
#[inline]
pub fn tx(seq: &mut Sequencer, ws: u64) {
    let mut tx = match seq.start_timeout(KIND, WsId(ws), Duration::from_secs(60)) {
        Ok(tx) => tx,
        Err(e) => panic!("start: {e}"),
    };
    let a = tx.next(SeqId(5));
    let b = tx.next(SeqId(4));
    assert!(a.is_ok() && b.is_ok());
    tx.flush();
}

/// Benchmarks one [`tx`] per iteration, over `workspaces` workspaces round robin (W2, W3).
pub fn bench_round_robin(c: &mut Criterion, group: &str, seq: &mut Sequencer, workspaces: u64) {
    let mut ws = 0u64;
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Elements(1));
    g.bench_function("tx", |b| {
        b.iter(|| {
            ws = (ws + 1) % workspaces;
            tx(seq, ws)
        })
    });
    g.finish();
}

/// Peak resident set size of this process, from /proc (Linux), in MiB.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}
