//! The `seqd` command: `seqd serve` runs the daemon; `seqd demo` runs the embedded
//! sequencer on a local store and prints what it hands out and how fast; `seqd bench` is a
//! load generator for the daemon (and Redis) that checks no number comes twice.

mod bench;
mod demo;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "seqd",
    version,
    about = "A persistent, partitioned sequence service"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the daemon: Redis-compatible protocol (default 127.0.0.1:10001) and HTTP admin
    /// (default 127.0.0.1:10080) over RocksDB under ./seqd-data.
    Serve(Box<seqd::daemon::Config>),
    /// Run a demo workload on the embedded sequencer and print numbers and throughput.
    Demo(demo::DemoArgs),
    /// Load-test a running daemon (or Redis, with --command incr): throughput, latency
    /// percentiles, errors, and a check that no number was handed out twice.
    Bench(Box<bench::args::BenchArgs>),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(config) => return serve::run(*config),
        Command::Demo(args) => demo::run(&args),
        Command::Bench(args) => return bench::run(*args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("seqd: {e}");
            ExitCode::FAILURE
        }
    }
}
