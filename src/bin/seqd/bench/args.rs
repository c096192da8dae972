//! `seqd bench` flags, and the checked plan they describe.

use std::time::Duration;

use clap::{Args, ValueEnum};

/// Requests sent when neither `--requests` nor `--duration` is given.
pub const DEFAULT_REQUESTS: u64 = 100_000;
/// The most numbers one `NEXT` may take (the daemon's limit).
pub const MAX_COUNT: u64 = 1_000_000;
/// Sequence ids are 0..=65535 in the daemon.
pub const MAX_SEQS: u64 = 65_536;

/// A load generator for `seqd serve` (and for Redis, with `--command incr`): many
/// connections, each keeping `--pipeline` requests in flight; prints throughput, errors,
/// latency percentiles, and checks that no number was handed out twice.
#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Server address.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Server port (seqd's protocol port).
    #[arg(short = 'p', long, default_value_t = 10001)]
    pub port: u16,
    /// Token sent with `AUTH` on every connection before the run.
    #[arg(long, value_name = "TOKEN")]
    pub auth: Option<String>,
    /// Parallel connections (1..=10000).
    #[arg(short = 'c', long, value_name = "N", default_value_t = 50,
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub connections: u64,
    /// Requests each connection keeps in flight (pipelining): as soon as replies arrive,
    /// that many new requests are sent (1..=10000).
    #[arg(short = 'P', long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub pipeline: u64,
    /// Total requests to send [default: 100000, unless --duration is given].
    #[arg(short = 'n', long, value_name = "N", conflicts_with = "duration",
          value_parser = clap::value_parser!(u64).range(1..=10_000_000_000))]
    pub requests: Option<u64>,
    /// Run for this many seconds instead of a request count.
    #[arg(long, value_name = "SECS", value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Workspaces to spread requests over (workspace ids 0..N).
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
    pub workspaces: u64,
    /// How workspaces are picked. `zipfian`: workspace 0 is the hottest, then 1, 2, ...
    #[arg(long, value_enum, default_value_t = Distribution::Uniform)]
    pub distribution: Distribution,
    /// Skew of `--distribution zipfian`, in (0, 1); 0.99 is YCSB's default.
    #[arg(long, value_name = "THETA", default_value_t = 0.99)]
    pub zipf_theta: f64,
    /// Sequences per workspace (sequence ids 0..N, picked uniformly).
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u64).range(1..=MAX_SEQS))]
    pub seqs: u64,
    /// Numbers per request (`NEXT ws seq COUNT`, or `INCRBY` with `--command incr`).
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u64).range(1..=MAX_COUNT))]
    pub count: u64,
    /// What to send.
    #[arg(long, value_enum, default_value_t = BenchCommand::Next)]
    pub command: BenchCommand,
    /// Seed of the key choice (each connection derives its own stream from it).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Runtime threads driving the connections (redis-benchmark uses one by default).
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u64).range(1..=256))]
    pub threads: u64,
    /// Do not record the numbers received (saves 16 bytes per request on long runs); no
    /// duplicate check then.
    #[arg(long)]
    pub no_verify: bool,
    /// Print the result as one JSON object on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
    /// No progress output on stderr.
    #[arg(short, long)]
    pub quiet: bool,

    /// Route as a Redis Cluster client: read `CLUSTER SLOTS` from --host:--port, spread the
    /// connections over the nodes it names, send each connection the keys its node serves,
    /// follow `-MOVED`.
    #[arg(long)]
    pub cluster: bool,
}

/// The request each connection sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BenchCommand {
    /// `NEXT ws seq count` (seqd).
    Next,
    /// `GETSEQ`: one global key (seqd's workspace 0, sequence 0).
    Getseq,
    /// `INCR seq:{ws}:{seq}`, or `INCRBY seq:{ws}:{seq} count` (Redis).
    Incr,
}

/// How workspaces are picked for each request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Distribution {
    /// Every workspace equally likely.
    Uniform,
    /// Zipf's law with `--zipf-theta` (YCSB's generator, Gray et al.).
    Zipfian,
}

/// When a run ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// After this many requests got a reply.
    Requests(u64),
    /// When this much time passed (requests in flight then are still awaited).
    Duration(Duration),
}

/// Checked arguments.
#[derive(Debug, Clone)]
pub struct Plan {
    pub args: BenchArgs,
    pub stop: Stop,
}

impl Plan {
    /// Checks what clap cannot: combinations and the zipf skew.
    pub fn new(args: BenchArgs) -> Result<Plan, String> {
        let stop = match (args.requests, args.duration) {
            (Some(n), _) => Stop::Requests(n),
            (None, Some(d)) => Stop::Duration(d),
            (None, None) => Stop::Requests(DEFAULT_REQUESTS),
        };
        if args.command == BenchCommand::Getseq {
            if args.count != 1 {
                return Err(format!(
                    "--count {} does not apply to --command getseq (GETSEQ takes one number); \
                     use --command next",
                    args.count
                ));
            }
            if args.workspaces != 1 || args.seqs != 1 {
                return Err("--command getseq has one key (workspace 0, sequence 0): \
                            --workspaces and --seqs must be 1; use --command next"
                    .into());
            }
        }
        let theta = args.zipf_theta;
        if !(theta > 0.0 && theta < 1.0) {
            return Err(format!(
                "--zipf-theta {theta} is out of range: it must be in (0, 1)"
            ));
        }
        if args.workspaces.checked_mul(args.seqs).is_none() {
            return Err("--workspaces times --seqs is too large".into());
        }
        Ok(Plan { args, stop })
    }

    /// Distinct keys the run may touch.
    pub fn keys(&self) -> u64 {
        self.args.workspaces * self.args.seqs
    }
}

/// Seconds, fractional allowed: `10`, `0.5`.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a number of seconds"))?;
    if !(secs > 0.0 && secs <= 86_400.0) {
        return Err(format!("{secs} s is out of range: 0 < SECS <= 86400"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// The plan for `seqd bench ARGV...`, for unit tests.
#[cfg(test)]
pub fn test_plan(argv: &[&str]) -> Plan {
    use clap::Parser;
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: BenchArgs,
    }
    let cli = Cli::try_parse_from(std::iter::once("bench").chain(argv.iter().copied()))
        .expect("arguments");
    Plan::new(cli.args).expect("plan")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("x").is_err());
        assert!(parse_duration("-3").is_err());
    }
}
