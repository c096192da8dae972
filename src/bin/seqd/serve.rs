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
    let served = runtime.block_on(async {
        // Registered before anything is served, so that neither signal is ever missed: not
        // the first (before the daemon listens), not a second one right after it.
        let signals = Signals::register().map_err(|e| format!("cannot listen for signals: {e}"))?;
        daemon::serve(config, shutdown_signal(signals))
            .await
            .map_err(|e| e.to_string())
    });
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves at the first SIGTERM or SIGINT; a second one exits at once with status 130.
async fn shutdown_signal(mut signals: Signals) {
    if !signals.recv().await {
        // No signal can arrive: run until killed.
        std::future::pending::<()>().await;
    }
    tracing::info!("signal received: shutting down (send it again to exit at once)");
    tokio::spawn(async move {
        if signals.recv().await {
            tracing::warn!("second signal: exiting without a clean shutdown");
            std::process::exit(130);
        }
    });
}

/// SIGTERM and SIGINT (Ctrl-C elsewhere), as one stream of "stop" requests. Each kind is
/// delivered once however often it arrived since the last `recv`, like any Unix signal.
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installs the handlers (inside the runtime).
    fn register() -> std::io::Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Signals {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Signals {})
        }
    }

    /// The next signal; false if none can arrive any more.
    async fn recv(&mut self) -> bool {
        #[cfg(unix)]
        {
            tokio::select! {
                r = self.term.recv() => r.is_some(),
                r = self.int.recv() => r.is_some(),
            }
        }
        #[cfg(not(unix))]
        {
            tokio::signal::ctrl_c().await.is_ok()
        }
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
