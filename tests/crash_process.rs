//! A real process crash: a child process runs the sequencer on RocksDB, logging each event
//! to the PLog and printing every committed number; the parent `kill -9`s it at a random
//! moment, reopens the directory and checks that nothing acknowledged is handed out again
//! (I1, I2), offsets resume after the log (I5), the checkpoint never runs ahead of its values
//! (I6) and initial values hold (I4). Repeated over several cycles on the same directory.
#![cfg(feature = "rocksdb")]

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use seqd::storage::{RocksDbStorage, SeqStorage, SeqValue};
use seqd::{Number, PLogOffset, PartitionId, Sequencer, WsId};

const DIR_ENV: &str = "SEQD_CRASH_CHILD_DIR";
const WORKSPACES: u64 = 50;

/// The child's body. Ignored in normal runs; the parent runs it with `--ignored --exact`.
#[test]
#[ignore = "runs only as the child process of kill_9_under_load_reissues_nothing"]
fn crash_child_writer() {
    let Ok(dir) = std::env::var(DIR_ENV) else {
        return;
    };
    let db = RocksDbStorage::open(&dir).expect("child open");
    let p = db.partition(PartitionId(1));
    let opts = seqd::Options {
        cache_capacity: 8,
        ..options()
    };
    let mut seq = Sequencer::open(p.clone(), opts).expect("child sequencer");
    let mut i = 0u64;
    loop {
        let ws = (i * 13) % WORKSPACES;
        i += 1;
        let mut tx = start(&mut seq, ws);
        let id = tx.next(ID).expect("next");
        let block = tx.next_n(BLOCK, 1 + i % 7).expect("next_n");
        let block_last = Number(block.0 + i % 7);
        let offset = tx.offset();
        p.append(
            offset,
            &[
                id_value(ws, id),
                SeqValue {
                    ws: WsId(ws),
                    seq: BLOCK,
                    number: block_last,
                },
            ],
        )
        .expect("plog append");
        tx.flush();
        // Acknowledged: the event is durable in the PLog and the numbers are committed.
        println!("ack {} {ws} {} {}", offset.0, id.0, block_last.0);
    }
}

#[test]
fn kill_9_under_load_reissues_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut acked: HashMap<(u64, u16), u64> = HashMap::new();
    let mut max_offset = 0u64;
    let mut total = 0u64;
    let mut rng = 0x9e37_79b9_u64;
    for cycle in 0..6 {
        let mut child = Command::new(&exe)
            .args([
                "--ignored",
                "--exact",
                "crash_child_writer",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(DIR_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let kill_after = 50 + rng % 400;
        let mut lines = BufReader::new(stdout).lines();
        let mut seen = 0u64;
        let deadline = Instant::now() + Duration::from_secs(60);
        // Read acknowledgements until the random kill point, then SIGKILL mid-stream.
        for line in lines.by_ref() {
            let line = line.unwrap();
            if record(&line, &mut acked, &mut max_offset) {
                seen += 1;
            }
            if seen >= kill_after || Instant::now() > deadline {
                break;
            }
        }
        child.kill().unwrap(); // SIGKILL
        // Whatever the child printed before it died was acknowledged too.
        for line in lines {
            let Ok(line) = line else { break };
            if record(&line, &mut acked, &mut max_offset) {
                seen += 1;
            }
        }
        child.wait().unwrap();
        assert!(seen > 0, "cycle {cycle}: the child acknowledged nothing");
        total += seen;
        verify(dir.path(), &acked, max_offset, cycle);
    }
    assert!(total >= 300, "{total}");
}

fn record(line: &str, acked: &mut HashMap<(u64, u16), u64>, max_offset: &mut u64) -> bool {
    let parts: Vec<u64> = match line.strip_prefix("ack ") {
        Some(rest) => rest.split(' ').filter_map(|x| x.parse().ok()).collect(),
        None => return false,
    };
    let [offset, ws, id, block] = parts[..] else {
        return false;
    };
    for (seq, n) in [(ID.0, id), (BLOCK.0, block)] {
        let e = acked.entry((ws, seq)).or_insert(0);
        assert!(n > *e, "I1: ws {ws} seq {seq} acknowledged {n} after {e}");
        *e = n;
    }
    assert!(
        offset > *max_offset,
        "offsets increase: {offset} after {max_offset}"
    );
    *max_offset = offset;
    true
}

fn verify(dir: &std::path::Path, acked: &HashMap<(u64, u16), u64>, max_offset: u64, cycle: u32) {
    let db = RocksDbStorage::open(dir).expect("reopen after kill -9");
    let p = db.partition(PartitionId(1));
    let last = p.last_plog_offset().unwrap().map_or(0, |o| o.0);
    assert!(
        last >= max_offset,
        "cycle {cycle}: acknowledged offset {max_offset} not in the PLog ({last})"
    );
    // I6: every event below the checkpoint is covered by stored numbers.
    let checkpoint = p.read_next_offset().unwrap();
    assert!(checkpoint.0 <= last + 1);
    let mut covered: HashMap<(WsId, seqd::SeqId), u64> = HashMap::new();
    p.replay(PLogOffset(1), &mut |o, vals| {
        if o < checkpoint {
            for v in vals {
                let m = covered.entry((v.ws, v.seq)).or_insert(0);
                *m = (*m).max(v.number.0);
            }
        }
        Ok(())
    })
    .unwrap();
    for ((ws, seq), n) in covered {
        assert!(
            p.read_numbers(ws, &[seq]).unwrap()[0].0 >= n,
            "I6 at cycle {cycle}"
        );
    }
    // I1/I2/I4/I5 through a recovered sequencer.
    let mut seq = Sequencer::open(p.clone(), options()).unwrap();
    seq.wait_ready(WAIT).unwrap();
    assert_eq!(
        seq.next_offset(),
        PLogOffset(last + 1),
        "I5 at cycle {cycle}"
    );
    for ws in 0..WORKSPACES {
        let mut tx = start(&mut seq, ws);
        for (s, initial) in [(ID, 200_001), (BLOCK, 1)] {
            let next = tx.peek(s).unwrap().0;
            let a = acked.get(&(ws, s.0)).copied().unwrap_or(0);
            assert!(
                next > a,
                "I2 at cycle {cycle}: ws {ws} seq {s} would reissue {next} (acked {a})"
            );
            assert!(next >= initial, "I4");
        }
        tx.actualize();
    }
    seq.close().unwrap();
}
