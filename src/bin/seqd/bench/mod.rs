//! `seqd bench`: a load generator for `seqd serve` (and for Redis with `--command incr`), in
//! the spirit of redis-benchmark and pgbench, that also checks what it received.
//!
//! * [`args`]: flags and the checked [`args::Plan`];
//! * [`keys`]: seeded PRNG, uniform and zipfian workspace choice;
//! * [`resp`]: requests encoded ahead, reply parsing;
//! * [`client`]: one connection's pipelined loop;
//! * [`verify`]: no number twice, increasing per connection;
//! * [`progress`], [`report`]: what is shown during and after the run.
//!
//! Exit status: 0 when the run passed; 1 when a connection failed, fewer replies came than
//! requested, every request failed, or the verifier found a violation; 2 for bad arguments.

pub mod args;
mod client;
#[cfg(feature = "cluster")]
mod cluster;
mod keys;
mod progress;
mod report;
mod resp;
mod verify;

use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use tokio::task::JoinSet;

use args::{BenchArgs, Plan};
use client::{ConnResult, Shared};
use report::{Errors, Measured, Summary};
use resp::Requests;

/// Runs the benchmark the flags describe and prints its report.
pub fn run(args: BenchArgs) -> ExitCode {
    let plan = match Plan::new(args) {
        Ok(plan) => Arc::new(plan),
        Err(e) => {
            eprintln!("seqd bench: {e}");
            return ExitCode::from(2);
        }
    };
    let threads = plan.args.threads as usize;
    let runtime = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("seqd-bench")
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("seqd bench: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let summary = match runtime.block_on(execute(plan.clone())) {
        Ok(summary) => summary,
        Err(e) => {
            eprintln!("seqd bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let text = if plan.args.json {
        match serde_json::to_string_pretty(&summary) {
            Ok(json) => json + "\n",
            Err(e) => {
                eprintln!("seqd bench: cannot encode the result as JSON: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        summary.table()
    };
    // A closed stdout (`| head`) is not worth a panic; the exit status still tells.
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush());
    if summary.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        for f in &summary.failures {
            eprintln!("seqd bench: FAILED: {f}");
        }
        ExitCode::FAILURE
    }
}

/// Connects every connection, runs them all, gathers and checks what they saw.
/// `--cluster`: the slot map of the cluster `--host:--port` belongs to.
#[cfg(feature = "cluster")]
async fn routes(plan: &Plan) -> Result<Option<Arc<cluster::Routes>>, String> {
    if !plan.args.cluster {
        return Ok(None);
    }
    Ok(Some(Arc::new(cluster::Routes::fetch(plan).await?)))
}

/// Without cluster support `--cluster` is refused.
#[cfg(not(feature = "cluster"))]
async fn routes(plan: &Plan) -> Result<Option<Arc<NoRoutes>>, String> {
    if plan.args.cluster {
        return Err("--cluster needs a seqd built with the `cluster` feature".into());
    }
    Ok(None)
}

/// Stands in for the slot map without cluster support.
#[cfg(not(feature = "cluster"))]
struct NoRoutes {
    nodes: Vec<String>,
}

#[cfg(not(feature = "cluster"))]
impl NoRoutes {
    fn node_of(&self, _ws: u64) -> Option<usize> {
        None
    }
}

async fn execute(plan: Arc<Plan>) -> Result<Summary, String> {
    let requests = Requests::new(&plan);

    let routes = routes(&plan).await?;
    let mut connecting = JoinSet::new();
    for i in 0..plan.args.connections as usize {
        let plan = plan.clone();
        let addr = match &routes {
            Some(r) => r.nodes[i % r.nodes.len()].clone(),
            None => format!("{}:{}", plan.args.host, plan.args.port),
        };
        connecting.spawn(async move { (i, client::connect_to(&plan, &addr).await) });
    }
    let mut streams: Vec<_> = (0..plan.args.connections).map(|_| None).collect();
    while let Some(joined) = connecting.join_next().await {
        let (i, stream) = joined.map_err(|e| format!("a connecting task failed: {e}"))?;
        streams[i] = Some(stream?);
    }

    let start = Instant::now();
    let shared = Arc::new(Shared::new(&plan, start)?);
    let interrupt = tokio::spawn(on_interrupt(shared.clone()));
    let progress = progress::Progress::start(&plan, shared.clone(), start);
    let mut running = JoinSet::new();
    for (i, stream) in streams.into_iter().enumerate() {
        let Some(stream) = stream else { continue };
        let (plan, requests, shared) = (plan.clone(), requests.clone(), shared.clone());
        let routes = routes.clone();
        running.spawn(async move {
            let node_of = |ws: u64| routes.as_ref().and_then(|r| r.node_of(ws));
            let route = routes.as_ref().map(|r| client::Route {
                node_of: &node_of,
                node: i % r.nodes.len(),
            });
            (
                i,
                client::drive(stream, i, &plan, &requests, &shared, route).await,
            )
        });
    }
    let mut results: Vec<(usize, ConnResult)> = Vec::with_capacity(plan.args.connections as usize);
    while let Some(joined) = running.join_next().await {
        results.push(joined.map_err(|e| format!("a connection task failed: {e}"))?);
    }
    let elapsed = start.elapsed();
    if let Some(p) = progress {
        p.finish();
    }
    interrupt.abort();
    results.sort_by_key(|(i, _)| *i);

    let mut latency = client::new_histogram()?;
    for h in &shared.latency {
        let h = h
            .lock()
            .map_err(|_| "a latency histogram was poisoned".to_string())?;
        latency
            .add(&*h)
            .map_err(|e| format!("cannot merge latency histograms: {e}"))?;
    }
    let (mut ok, mut errors, mut failures, mut records) = (0, Errors::default(), vec![], vec![]);
    let mut redirects = 0;
    for (_, r) in results {
        ok += r.ok;
        redirects += r.redirects;
        for (kind, n) in r.errors {
            errors.total += n;
            *errors.by_kind.entry(kind).or_default() += n;
        }
        failures.extend(r.failure);
        records.push(r.records);
    }
    let verification = if plan.args.no_verify {
        verify::Verification::default()
    } else {
        verify::verify(records, plan.args.count, requests.chooser())
    };
    Ok(Summary::new(
        &plan,
        Measured {
            elapsed,
            interrupted: shared.interrupted.load(Ordering::Relaxed),
            ok,
            errors,
            latency,
            verification,
            connection_failures: failures,
            redirects,
            nodes: routes.map(|r| r.nodes.clone()).unwrap_or_default(),
        },
    ))
}

/// The first Ctrl-C ends the run early (replies in flight are still collected and
/// reported); a second one exits at once.
async fn on_interrupt(shared: Arc<Shared>) {
    if tokio::signal::ctrl_c().await.is_ok() {
        shared.interrupted.store(true, Ordering::Relaxed);
        eprintln!(
            "seqd bench: interrupted; collecting the replies in flight (Ctrl-C again to quit)"
        );
        if tokio::signal::ctrl_c().await.is_ok() {
            std::process::exit(130);
        }
    }
}
