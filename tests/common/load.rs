//! Load for process tests: client threads pipelining `NEXT` (and `GETSEQ`) over a few
//! sequences until told to stop or their connection dies, recording every acknowledged
//! number.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

pub type Key = (u64, u16);
/// Every acknowledged number, per sequence.
pub type Acked = HashMap<Key, Vec<u64>>;

/// What one client saw.
#[derive(Debug, Default)]
pub struct Outcome {
    pub acked: Acked,
    /// Replies that were not numbers (`-BUSY` while recovering or shutting down).
    pub refused: u64,
    /// A pipeline got no reply (the connection died): its requests may have taken numbers.
    pub cut_off: bool,
}

impl Outcome {
    /// Merges the outcomes of several clients.
    pub fn merge(outcomes: impl IntoIterator<Item = Outcome>) -> Outcome {
        let mut all = Outcome::default();
        for o in outcomes {
            for (key, nums) in o.acked {
                all.acked.entry(key).or_default().extend(nums);
            }
            all.refused += o.refused;
            all.cut_off |= o.cut_off;
        }
        all
    }
}

/// `clients` threads, each pipelining 16 requests at a time over `keys`: `GETSEQ` for
/// `(0, 0)` with count 1, else `NEXT ws seq count` with counts 1..=3. They stop after the
/// pipeline in flight once `stop` is set.
pub fn start(
    addr: &str,
    keys: &'static [Key],
    clients: u64,
    stop: &Arc<AtomicBool>,
) -> Vec<JoinHandle<Outcome>> {
    (0..clients)
        .map(|c| {
            let url = format!("redis://{addr}/");
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut out = Outcome::default();
                let Ok(mut con) = redis::Client::open(url).and_then(|c| c.get_connection()) else {
                    out.cut_off = true;
                    return out;
                };
                let mut i = c;
                while !stop.load(Ordering::Relaxed) {
                    let mut pipe = redis::pipe();
                    let mut sent = Vec::new();
                    for j in 0..16u64 {
                        let key = keys[((i + j) % keys.len() as u64) as usize];
                        let count = 1 + (i + j) % 3;
                        if key == (0, 0) && count == 1 {
                            pipe.cmd("GETSEQ");
                        } else {
                            pipe.cmd("NEXT").arg(key.0).arg(key.1).arg(count);
                        }
                        sent.push((key, count));
                    }
                    i += 1;
                    let Ok(replies) = pipe.query::<Vec<redis::Value>>(&mut con) else {
                        out.cut_off = true;
                        break;
                    };
                    for (v, (key, count)) in replies.into_iter().zip(sent) {
                        match v {
                            redis::Value::Int(first) => {
                                let first = first as u64;
                                out.acked
                                    .entry(key)
                                    .or_default()
                                    .extend(first..first + count);
                            }
                            _ => out.refused += 1,
                        }
                    }
                }
                out
            })
        })
        .collect()
}

/// Sets `stop` and joins the clients.
pub fn finish(stop: &Arc<AtomicBool>, clients: Vec<JoinHandle<Outcome>>) -> Outcome {
    stop.store(true, Ordering::Relaxed);
    Outcome::merge(
        clients
            .into_iter()
            .map(|c| c.join().expect("client thread")),
    )
}

/// After a restart: per sequence acknowledged, the highest number acknowledged and the one
/// `NEXT` hands out now. Asserts no number was acknowledged twice.
pub fn resume(con: &mut redis::Connection, acked: &mut Acked) -> Vec<(Key, u64, u64)> {
    let mut out = Vec::new();
    for (key, nums) in acked.iter_mut() {
        nums.sort_unstable();
        let before = nums.len();
        nums.dedup();
        assert_eq!(
            before,
            nums.len(),
            "{key:?}: a number was acknowledged twice"
        );
        let next: u64 = redis::cmd("NEXT").arg(key.0).arg(key.1).query(con).unwrap();
        out.push((*key, *nums.last().unwrap_or(&0), next));
    }
    out
}

/// Waits until the daemon has handed out numbers (`/v1/status`), so a signal lands on a
/// daemon under load.
pub fn wait_until_served(d: &super::process::Daemon) {
    let url = format!("http://{}/v1/status", d.admin);
    super::eventually("numbers handed out", || {
        let Ok(body) = reqwest::blocking::get(&url).and_then(|r| r.text()) else {
            return false;
        };
        let status: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let parts = status["partitions"].as_array().cloned().unwrap_or_default();
        parts
            .iter()
            .filter_map(|p| p["numbers_issued"].as_u64())
            .sum::<u64>()
            > 1000
    });
}
