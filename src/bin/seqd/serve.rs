//! `seqd serve`: logging, the runtime, signals; the daemon itself is `seqd::daemon`.

use std::process::ExitCode;

use seqd::daemon::{self, Config, LogFormat};
use tracing_subscriber::EnvFilter;

pub fn run(config: Config) -> ExitCode {
    init_logging(config.log_format);
    // Accepting and the HTTP admin: connections are served on the daemon's own
    // `--io-threads` event loops, partitions on their own threads.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("seqd-main")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(daemon::serve(config, shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves at the first SIGTERM or SIGINT; a second one exits at once.
async fn shutdown_signal() {
    first_signal().await;
    tracing::info!("signal received: shutting down (send it again to exit at once)");
    tokio::spawn(async {
        first_signal().await;
        tracing::warn!("second signal: exiting without a clean shutdown");
        std::process::exit(130);
    });
}

async fn first_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_env("SEQD_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
