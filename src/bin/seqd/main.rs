//! The `seqd` command: `seqd demo` runs the embedded sequencer on a local store and prints
//! what it hands out and how fast.

mod demo;

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
    /// Run a demo workload on the embedded sequencer and print numbers and throughput.
    Demo(demo::DemoArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => demo::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("seqd: {e}");
            ExitCode::FAILURE
        }
    }
}
