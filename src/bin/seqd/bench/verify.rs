//! The check that no number was handed out twice.
//!
//! Replies for one key can arrive out of order across connections (each connection's
//! replies come in its own request order, but connections race), so the tool does not
//! expect a global order. What must hold:
//!
//! * per connection, the numbers received for one key strictly increase;
//! * across all connections, the ranges `first..first+count-1` received for one key never
//!   overlap — in particular no number comes twice.
//!
//! Every integer reply is recorded as `(key, first)` (16 bytes per request) and checked at
//! the end by sorting: memory bounded by the requests, nothing in the hot loop but a push.

use serde::Serialize;

use super::keys::KeyChooser;

/// Examples of each kind of violation kept for the report.
const EXAMPLES: usize = 5;
/// Keys listed in the report (the most requested ones).
const LISTED_KEYS: usize = 16;

/// One integer reply: the first number of the range it stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Record {
    /// `ws * seqs + seq`.
    pub key: u64,
    pub first: u64,
}

/// What the check found.
#[derive(Debug, Default, Serialize)]
pub struct Verification {
    /// False with `--no-verify`: nothing was recorded.
    pub checked: bool,
    /// Distinct keys that got at least one number.
    pub keys: u64,
    /// Numbers received (integer replies times `--count`).
    pub numbers: u64,
    /// Replies whose range equals one received before for the same key.
    pub duplicates: u64,
    /// Replies whose range overlaps another one's without being equal to it.
    pub overlaps: u64,
    /// Replies not above the previous one for the same key on the same connection.
    pub non_increasing: u64,
    /// A few of the violations, in words.
    pub examples: Vec<String>,
    /// The most requested keys: replies, lowest and highest number received.
    pub top_keys: Vec<KeyStat>,
}

impl Verification {
    /// Duplicates, overlaps and per-connection decreases together.
    pub fn violations(&self) -> u64 {
        self.duplicates + self.overlaps + self.non_increasing
    }
}

/// What was received for one key.
#[derive(Debug, Clone, Serialize)]
pub struct KeyStat {
    pub ws: u64,
    pub seq: u64,
    pub replies: u64,
    /// The lowest number received.
    pub min: u64,
    /// The highest number received (the last of its range).
    pub max: u64,
}

/// Checks the records of every connection (`per_connection[i]` in the order received).
pub fn verify(
    mut per_connection: Vec<Vec<Record>>,
    count: u64,
    chooser: &KeyChooser,
) -> Verification {
    let mut v = Verification {
        checked: true,
        ..Verification::default()
    };
    let examples = |v: &mut Verification, text: String| {
        if v.examples.len() < EXAMPLES * 2 {
            v.examples.push(text);
        }
    };

    // Per connection: a stable sort by key keeps each key's replies in arrival order.
    for (conn, records) in per_connection.iter_mut().enumerate() {
        records.sort_by_key(|r| r.key);
        for pair in records.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            if a.key == b.key && b.first <= a.first {
                v.non_increasing += 1;
                let (ws, seq) = chooser.split(a.key);
                examples(
                    &mut v,
                    format!(
                        "connection {conn}: workspace {ws} sequence {seq}: {} came after {}",
                        b.first, a.first
                    ),
                );
            }
        }
    }

    // Across connections: sorted by (key, first), a range overlaps another one only if it
    // overlaps its predecessor (all ranges have the same length).
    let mut all: Vec<Record> = per_connection.into_iter().flatten().collect();
    all.sort_unstable();
    v.numbers = all.len() as u64 * count;
    let mut keys: Vec<KeyStat> = Vec::new();
    let mut previous: Option<Record> = None;
    for r in &all {
        let last = r.first.saturating_add(count - 1);
        match previous {
            Some(p) if p.key == r.key => {
                if let Some(k) = keys.last_mut() {
                    k.replies += 1;
                    k.max = k.max.max(last);
                }
                if r.first == p.first {
                    v.duplicates += 1;
                    let (ws, seq) = chooser.split(r.key);
                    examples(
                        &mut v,
                        format!(
                            "workspace {ws} sequence {seq}: {} handed out twice",
                            r.first
                        ),
                    );
                } else if r.first <= p.first.saturating_add(count - 1) {
                    v.overlaps += 1;
                    let (ws, seq) = chooser.split(r.key);
                    examples(
                        &mut v,
                        format!(
                            "workspace {ws} sequence {seq}: {}..={} overlaps {}..={}",
                            p.first,
                            p.first.saturating_add(count - 1),
                            r.first,
                            last
                        ),
                    );
                }
            }
            _ => {
                let (ws, seq) = chooser.split(r.key);
                keys.push(KeyStat {
                    ws,
                    seq,
                    replies: 1,
                    min: r.first,
                    max: last,
                });
            }
        }
        previous = Some(*r);
    }
    v.keys = keys.len() as u64;
    keys.sort_by(|a, b| {
        b.replies
            .cmp(&a.replies)
            .then((a.ws, a.seq).cmp(&(b.ws, b.seq)))
    });
    keys.truncate(LISTED_KEYS);
    v.top_keys = keys;
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::args::test_plan;

    fn chooser(seqs: &str) -> KeyChooser {
        KeyChooser::new(&test_plan(&["--workspaces", "10", "--seqs", seqs]))
    }

    fn rec(key: u64, first: u64) -> Record {
        Record { key, first }
    }

    #[test]
    fn interleaved_connections_are_fine() {
        // Two connections, replies for key 0 interleaved; count 2.
        let v = verify(
            vec![
                vec![rec(0, 1), rec(1, 1), rec(0, 5)],
                vec![rec(0, 3), rec(0, 7)],
            ],
            2,
            &chooser("2"),
        );
        assert_eq!(v.violations(), 0, "{v:?}");
        assert_eq!((v.keys, v.numbers), (2, 10));
        assert_eq!(
            (v.top_keys[0].replies, v.top_keys[0].min, v.top_keys[0].max),
            (4, 1, 8)
        );
    }

    #[test]
    fn finds_duplicates_overlaps_and_decreases() {
        let v = verify(
            vec![vec![rec(3, 10), rec(3, 4)], vec![rec(3, 10), rec(3, 5)]],
            2,
            &chooser("1"),
        );
        assert_eq!(v.duplicates, 1, "{v:?}");
        assert_eq!(v.overlaps, 1, "{v:?}");
        assert_eq!(v.non_increasing, 2, "{v:?}");
        assert!(
            v.examples
                .iter()
                .any(|e| e.contains("workspace 3 sequence 0: 10 handed out twice"))
        );
    }
}
