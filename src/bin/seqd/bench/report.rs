//! The result of a run: throughput, errors by kind, latency percentiles and histogram, the
//! verification, and what made the run fail — as a table or as one JSON object.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::args::{BenchCommand, Distribution, Plan, Stop};
use super::verify::Verification;

/// Upper bounds (ms) of the histogram's buckets; the last bucket is everything above.
const BUCKETS_MS: [f64; 13] = [
    0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 500.0, 1000.0,
];

/// Everything a run measured.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub target: String,
    pub command: BenchCommand,
    pub connections: u64,
    pub pipeline: u64,
    pub threads: u64,
    /// `--requests`, when the run was bounded by a count.
    pub requested: Option<u64>,
    /// `--duration`, when the run was bounded by time.
    pub duration_secs: Option<f64>,
    pub workspaces: u64,
    pub seqs: u64,
    pub distribution: Distribution,
    pub zipf_theta: Option<f64>,
    pub count: u64,
    pub seed: u64,
    /// Ctrl-C ended the run early.
    pub interrupted: bool,
    /// Replies received (integer and error).
    pub requests: u64,
    /// Integer replies.
    pub ok: u64,
    pub errors: Errors,
    pub elapsed_secs: f64,
    pub requests_per_sec: f64,
    /// Integer replies times `--count`, per second.
    pub numbers_per_sec: f64,
    pub latency_ms: Latency,
    /// Replies per latency bucket (`le_ms` is the bucket's upper bound; `null` = above all).
    pub latency_histogram: Vec<Bucket>,
    pub verification: Verification,
    /// `--cluster`: the nodes the connections were spread over, and `-MOVED` followed.
    pub cluster_nodes: Vec<String>,
    pub redirects: u64,
    pub connection_failures: Vec<String>,
    /// Why the run counts as failed (the process then exits non-zero); empty when it passed.
    pub failures: Vec<String>,
}

#[derive(Debug, Default, Serialize)]
pub struct Errors {
    pub total: u64,
    /// Error replies by code word (`BUSY`, `ERR`, ...), and unexpected replies.
    pub by_kind: BTreeMap<String, u64>,
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Default, Serialize)]
pub struct Latency {
    pub min: f64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p99_9: f64,
    pub max: f64,
}

#[derive(Debug, Serialize)]
pub struct Bucket {
    pub le_ms: Option<f64>,
    pub count: u64,
}

/// What the connections returned, gathered.
pub struct Measured {
    pub elapsed: Duration,
    pub interrupted: bool,
    pub ok: u64,
    pub errors: Errors,
    pub latency: Histogram<u64>,
    pub verification: Verification,
    pub connection_failures: Vec<String>,
    /// `-MOVED` replies followed (`--cluster`).
    pub redirects: u64,
    /// The nodes the connections were spread over (`--cluster`).
    pub nodes: Vec<String>,
}

impl Summary {
    pub fn new(plan: &Plan, m: Measured) -> Summary {
        let a = &plan.args;
        let requests = m.ok + m.errors.total;
        let secs = m.elapsed.as_secs_f64().max(1e-9);
        let mut failures = Vec::new();
        if !m.connection_failures.is_empty() {
            failures.push(format!(
                "{} connection(s) failed; first: {}",
                m.connection_failures.len(),
                m.connection_failures[0]
            ));
        }
        if let Stop::Requests(n) = plan.stop
            && requests < n
            && !m.interrupted
        {
            failures.push(format!("{requests} replies of {n} requests"));
        }
        if requests > 0 && m.ok == 0 {
            let kinds: Vec<_> = m.errors.by_kind.keys().map(String::as_str).collect();
            failures.push(format!("every request failed ({})", kinds.join(", ")));
        }
        let v = &m.verification;
        for (n, what) in [
            (
                v.duplicates,
                "duplicate replies (a number handed out twice)",
            ),
            (v.overlaps, "overlapping ranges"),
            (
                v.non_increasing,
                "replies not above the connection's previous one for the key",
            ),
        ] {
            if n > 0 {
                failures.push(format!("{n} {what}"));
            }
        }
        Summary {
            target: format!("{}:{}", a.host, a.port),
            command: a.command,
            connections: a.connections,
            pipeline: a.pipeline,
            threads: a.threads,
            requested: match plan.stop {
                Stop::Requests(n) => Some(n),
                Stop::Duration(_) => None,
            },
            duration_secs: match plan.stop {
                Stop::Duration(d) => Some(d.as_secs_f64()),
                Stop::Requests(_) => None,
            },
            workspaces: a.workspaces,
            seqs: a.seqs,
            distribution: a.distribution,
            zipf_theta: (a.distribution == Distribution::Zipfian).then_some(a.zipf_theta),
            count: a.count,
            seed: a.seed,
            interrupted: m.interrupted,
            requests,
            ok: m.ok,
            errors: m.errors,
            elapsed_secs: secs,
            requests_per_sec: requests as f64 / secs,
            numbers_per_sec: (m.ok * a.count) as f64 / secs,
            latency_ms: latency(&m.latency),
            latency_histogram: buckets(&m.latency),
            verification: m.verification,
            cluster_nodes: m.nodes,
            redirects: m.redirects,
            connection_failures: m.connection_failures,
            failures,
        }
    }

    /// The human-readable report.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let what = match self.command {
            BenchCommand::Next => format!("NEXT ws seq {}", self.count),
            BenchCommand::Getseq => "GETSEQ".into(),
            BenchCommand::Incr if self.count == 1 => "INCR seq:{ws}:{seq}".into(),
            BenchCommand::Incr => format!("INCRBY seq:{{ws}}:{{seq}} {}", self.count),
        };
        let _ = writeln!(
            s,
            "seqd bench: {what} against {}; {} connections, pipeline {}, {} thread(s)",
            self.target, self.connections, self.pipeline, self.threads
        );
        if self.command != BenchCommand::Getseq {
            let dist = match self.zipf_theta {
                Some(t) => format!("zipfian, theta {t}"),
                None => "uniform".into(),
            };
            let _ = writeln!(
                s,
                "  keys: {} workspace(s) ({dist}) x {} sequence(s)",
                group(self.workspaces),
                group(self.seqs)
            );
        }
        if !self.cluster_nodes.is_empty() {
            let _ = writeln!(
                s,
                "  cluster: routed by slot over {}; {} -MOVED followed",
                self.cluster_nodes.join(", "),
                group(self.redirects)
            );
        }
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "  requests    {} in {:.3} s{}",
            group(self.requests),
            self.elapsed_secs,
            if self.interrupted {
                " (interrupted)"
            } else {
                ""
            }
        );
        let _ = writeln!(
            s,
            "  throughput  {} req/s, {} numbers/s",
            group(self.requests_per_sec.round() as u64),
            group(self.numbers_per_sec.round() as u64)
        );
        let errors = if self.errors.total == 0 {
            "none".to_string()
        } else {
            let kinds: Vec<_> = (self.errors.by_kind.iter())
                .map(|(k, n)| format!("{k} {}", group(*n)))
                .collect();
            format!("{} ({})", group(self.errors.total), kinds.join(", "))
        };
        let _ = writeln!(s, "  errors      {errors}");
        let l = &self.latency_ms;
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "  latency (ms)     min      p50      p90      p99    p99.9      max     mean"
        );
        let _ = writeln!(
            s,
            "              {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>8.3}",
            l.min, l.p50, l.p90, l.p99, l.p99_9, l.max, l.mean
        );
        let _ = writeln!(s);
        let _ = writeln!(s, "  latency histogram");
        let total = self.requests.max(1) as f64;
        for b in &self.latency_histogram {
            let label = match b.le_ms {
                Some(le) => format!("<= {le} ms"),
                None => format!("> {} ms", BUCKETS_MS[BUCKETS_MS.len() - 1]),
            };
            let share = b.count as f64 / total;
            let bar = "#".repeat((share * 40.0).ceil() as usize);
            let _ = writeln!(
                s,
                "    {label:>11} {:>12} {:>6.2}%  {bar}",
                group(b.count),
                share * 100.0
            );
        }
        let _ = writeln!(s);
        self.verification_lines(&mut s);
        for f in &self.connection_failures {
            let _ = writeln!(s, "  connection failure: {f}");
        }
        let verdict = if self.failures.is_empty() {
            "PASSED".to_string()
        } else {
            format!("FAILED: {}", self.failures.join("; "))
        };
        let _ = writeln!(s, "  result      {verdict}");
        s
    }

    fn verification_lines(&self, s: &mut String) {
        let v = &self.verification;
        if !v.checked {
            let _ = writeln!(s, "  verification skipped (--no-verify)");
            return;
        }
        let verdict = if v.violations() == 0 {
            "ok: no number handed out twice, each connection saw increasing numbers per key"
                .to_string()
        } else {
            format!(
                "{} duplicate(s), {} overlap(s), {} per-connection decrease(s)",
                group(v.duplicates),
                group(v.overlaps),
                group(v.non_increasing)
            )
        };
        let _ = writeln!(
            s,
            "  verification {} numbers over {} key(s): {verdict}",
            group(v.numbers),
            group(v.keys)
        );
        for e in &v.examples {
            let _ = writeln!(s, "    {e}");
        }
        if let Some(k) = v.top_keys.first() {
            let _ = writeln!(
                s,
                "    busiest key: workspace {} sequence {}: {} replies, numbers {}..={}",
                k.ws,
                k.seq,
                group(k.replies),
                k.min,
                k.max
            );
        }
    }
}

fn latency(h: &Histogram<u64>) -> Latency {
    if h.is_empty() {
        return Latency::default();
    }
    let ms = |ns: u64| ns as f64 / 1e6;
    Latency {
        min: ms(h.min()),
        mean: h.mean() / 1e6,
        p50: ms(h.value_at_quantile(0.50)),
        p90: ms(h.value_at_quantile(0.90)),
        p99: ms(h.value_at_quantile(0.99)),
        p99_9: ms(h.value_at_quantile(0.999)),
        max: ms(h.max()),
    }
}

/// Replies per bucket of [`BUCKETS_MS`], leaving out empty buckets.
fn buckets(h: &Histogram<u64>) -> Vec<Bucket> {
    let mut counts = [0u64; BUCKETS_MS.len() + 1];
    for v in h.iter_recorded() {
        let ms = v.value_iterated_to() as f64 / 1e6;
        let i = BUCKETS_MS
            .iter()
            .position(|&b| ms <= b)
            .unwrap_or(BUCKETS_MS.len());
        counts[i] += v.count_since_last_iteration();
    }
    counts
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(i, &count)| Bucket {
            le_ms: BUCKETS_MS.get(i).copied(),
            count,
        })
        .collect()
}

/// `1234567` as `1,234,567`.
pub fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_digits() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1000), "1,000");
        assert_eq!(group(1_234_567), "1,234,567");
    }

    #[test]
    fn buckets_and_percentiles() {
        let mut h = crate::bench::client::new_histogram().expect("histogram");
        for _ in 0..90 {
            h.record(80_000).expect("record"); // 0.08 ms
        }
        for _ in 0..10 {
            h.record(3_000_000).expect("record"); // 3 ms
        }
        let b = buckets(&h);
        assert_eq!(b.len(), 2);
        assert_eq!((b[0].le_ms, b[0].count), (Some(0.1), 90));
        assert_eq!((b[1].le_ms, b[1].count), (Some(5.0), 10));
        let l = latency(&h);
        assert!(
            (l.p50 - 0.08).abs() < 0.001 && (l.p99 - 3.0).abs() < 0.01,
            "{l:?}"
        );
    }
}
