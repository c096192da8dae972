//! [`Config`]: everything `seqd serve` can be told, as flags and `SEQD_*` environment variables.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::error::{Error, Result};

/// When a reply may leave the server (see `design/daemon.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DurabilityMode {
    /// A reply leaves only after the numbers in it are on disk (group commit). Nothing
    /// acknowledged is ever lost or reissued, and a crash skips nothing acknowledged.
    Sync,
    /// Each sequence reserves a window of numbers on disk ahead of use and answers from memory
    /// below it. A crash skips at most one window per sequence; a graceful shutdown none.
    Lease,
}

/// Where the daemon keeps its numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StoreKind {
    /// RocksDB under `--data-dir` (needs the `rocksdb` cargo feature, on by default).
    Rocksdb,
    /// Memory only: everything is lost when the process ends. For trying things out and tests.
    Memory,
}

/// `--version-clock`: how commit versions advance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum VersionClockKind {
    /// By one per commit.
    Counter,
    /// By one per commit and at least to the wall clock in microseconds.
    Micros,
}

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

/// The daemon's configuration. Every field has a flag and an environment variable; the
/// defaults make `seqd serve` with no arguments a working local server.
#[derive(Args, Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Data directory (RocksDB). Created if missing.
    #[arg(long, env = "SEQD_DATA_DIR", default_value = "./seqd-data")]
    pub data_dir: PathBuf,

    /// Address the protocol and the HTTP admin listen on. Loopback by default: expose it
    /// deliberately, with --auth-token.
    #[arg(long, env = "SEQD_HOST", default_value = "127.0.0.1")]
    pub host: String,

    /// Protocol (RESP2/RESP3) port; 0 picks a free one.
    #[arg(long, env = "SEQD_PORT", default_value_t = 10001)]
    pub port: u16,

    /// HTTP admin port; 0 picks a free one.
    #[arg(long, env = "SEQD_ADMIN_PORT", default_value_t = 10080)]
    pub admin_port: u16,

    /// Partitions (one sequencer and one worker thread each); workspace w belongs to
    /// partition w % partitions. Default: the number of cores.
    #[arg(long, env = "SEQD_PARTITIONS")]
    pub partitions: Option<u16>,

    /// Threads serving client connections (each an event loop owning its connections, like
    /// Redis's one). Default: a quarter of the cores, at least 1 — answering from a lease
    /// takes well under a microsecond, so one thread serves hundreds of thousands of
    /// requests per second and the rest of the cores go to partitions and storage.
    #[arg(long, env = "SEQD_IO_THREADS")]
    pub io_threads: Option<u16>,

    /// Microseconds a connection thread keeps polling for input after its last request
    /// before it sleeps in `epoll_wait` (0: sleep at once). Waking a sleeping thread costs
    /// tens of microseconds on a virtual machine, more than answering a request; under load
    /// the thread polls instead, at the price of a busy core while requests keep coming.
    /// Idle, it sleeps. Default: 50. At most 10,000.
    #[arg(long, env = "SEQD_IO_SPIN_US", default_value_t = 50)]
    pub io_spin_us: u64,

    /// First number of every sequence.
    #[arg(long, env = "SEQD_INITIAL", default_value_t = 1)]
    pub initial: u64,

    /// Most client connections at once; the next one gets an error and is closed. Lowered at
    /// start (with a warning) when the open-file limit cannot be raised to fit it.
    #[arg(long, env = "SEQD_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,

    /// When replies may leave: `sync` (after fsync) or `lease` (from a reserved window).
    #[arg(long, env = "SEQD_DURABILITY", value_enum, default_value_t = DurabilityMode::Lease)]
    pub durability: DurabilityMode,

    /// Require this token: `AUTH token` on the protocol, `Authorization: Bearer token` on
    /// HTTP (except /healthz and /readyz).
    #[arg(long, env = "SEQD_AUTH_TOKEN", hide_env_values = true)]
    pub auth_token: Option<String>,

    /// Storage engine.
    #[arg(long, env = "SEQD_STORE", value_enum, default_value_t = StoreKind::Rocksdb)]
    pub store: StoreKind,

    /// Workspaces resident in memory per partition.
    #[arg(long, env = "SEQD_CACHE_CAPACITY", default_value_t = 100_000)]
    pub cache_capacity: usize,

    /// Values awaiting their write per partition before requests get -BUSY.
    #[arg(long, env = "SEQD_MAX_UNFLUSHED", default_value_t = 100_000)]
    pub max_unflushed: usize,

    /// Lease mode: sequences holding a reserved window per partition. Beyond it the least
    /// recently used are evicted and their unused numbers parked (resumed when used again,
    /// saved at shutdown); beyond as many parked, the oldest give them up (a gap of at most
    /// one window, never a reuse).
    #[arg(long, env = "SEQD_MAX_LEASES", default_value_t = 100_000)]
    pub max_leases: usize,

    /// Lease mode, single node: how many numbers each sequence may hand out before its own
    /// first reservation is durable. At start seqd durably records a *resume floor* this far
    /// above where sequences start; after a crash every sequence resumes at or above it, so
    /// a sequence's first numbers need no fsync of their own. The price: each crash moves
    /// the start of sequences never used before up by this much. 0 turns it off (the first
    /// `NEXT` of a sequence waits for its reservation). At most 1048576.
    #[arg(long, env = "SEQD_LEASE_FLOOR", default_value_t = 1024)]
    pub lease_floor: u64,

    /// Bytes all connections together may hold in requests they have not received whole and
    /// in queued MULTI transactions, beyond 32 KiB each. A connection that would go over is
    /// told so and closed. At least 65536.
    #[arg(long, env = "SEQD_MAX_PENDING_BYTES", default_value_t = 256 << 20)]
    pub max_pending_bytes: usize,

    /// Close a connection that sent part of a request and did not complete it within this
    /// many seconds (`--request-timeout`).
    #[arg(
        long = "request-timeout",
        env = "SEQD_REQUEST_TIMEOUT",
        value_name = "SECONDS",
        default_value_t = 30
    )]
    pub request_timeout_secs: u64,

    /// Close a connection whose replies have not been read for this many seconds
    /// (`--write-timeout`).
    #[arg(
        long = "write-timeout",
        env = "SEQD_WRITE_TIMEOUT",
        value_name = "SECONDS",
        default_value_t = 30
    )]
    pub write_timeout_secs: u64,

    /// The version authority (`VERSION ...`) resumes every domain above this version, even
    /// when its storage holds less: a recovery baseline from elsewhere (the last commit
    /// version of a restored backup or of the system seqd replaces).
    #[arg(long, env = "SEQD_VERSION_BASELINE", default_value_t = 0)]
    pub version_baseline: u64,

    /// How commit versions advance: `counter` (by one) or `micros` (by one and at least to
    /// the wall clock's microseconds since the Unix epoch, never back when the clock is).
    #[arg(long, env = "SEQD_VERSION_CLOCK", value_enum, default_value_t = VersionClockKind::Counter)]
    pub version_clock: VersionClockKind,

    /// Log format.
    #[arg(long, env = "SEQD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,

    /// Cluster mode (`--etcd` and the flags that go with it).
    #[cfg(feature = "cluster")]
    #[command(flatten)]
    pub cluster: super::cluster::ClusterConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./seqd-data"),
            host: "127.0.0.1".into(),
            port: 10001,
            admin_port: 10080,
            partitions: None,
            io_threads: None,
            io_spin_us: 50,
            initial: 1,
            max_connections: 10_000,
            durability: DurabilityMode::Lease,
            auth_token: None,
            store: StoreKind::Rocksdb,
            cache_capacity: 100_000,
            max_unflushed: 100_000,
            max_leases: 100_000,
            lease_floor: 1024,
            max_pending_bytes: 256 << 20,
            request_timeout_secs: 30,
            write_timeout_secs: 30,
            version_baseline: 0,
            version_clock: VersionClockKind::Counter,
            log_format: LogFormat::Human,
            #[cfg(feature = "cluster")]
            cluster: super::cluster::ClusterConfig::default(),
        }
    }
}

impl Config {
    /// Partitions to run: the configured number, or the number of cores.
    pub fn partition_count(&self) -> u16 {
        self.partitions.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map_or(1, |n| u16::try_from(n.get()).unwrap_or(u16::MAX))
        })
    }

    /// The number of connection threads (`--io-threads`, or a quarter of the cores).
    pub fn io_thread_count(&self) -> u16 {
        self.io_threads.unwrap_or_else(|| {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            u16::try_from((cores / 4).max(1)).unwrap_or(u16::MAX)
        })
    }

    pub(crate) fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
    }

    pub(crate) fn write_timeout(&self) -> Duration {
        Duration::from_secs(self.write_timeout_secs)
    }

    /// Checks every field; the error names the flag and the rule it breaks.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::InvalidOptions(m.into()));
        if self.partitions == Some(0) {
            return bad("--partitions must be >= 1");
        }
        if self.io_threads == Some(0) {
            return bad("--io-threads must be >= 1");
        }
        if self.io_spin_us > 10_000 {
            return bad("--io-spin-us must be <= 10000 (10 ms)");
        }
        if self.initial == 0 {
            return bad("--initial must be >= 1 (0 means 'never written' in storage)");
        }
        if self.max_connections == 0 {
            return bad("--max-connections must be >= 1");
        }
        if self.max_pending_bytes < 65_536 {
            return bad("--max-pending-bytes must be >= 65536 (one largest argument)");
        }
        if self.max_leases == 0 {
            return bad("--max-leases must be >= 1");
        }
        if self.lease_floor > crate::daemon::lease::MAX_WINDOW {
            return bad(
                "--lease-floor must be <= 1048576 (a crash may skip that many per sequence)",
            );
        }
        if self.request_timeout_secs == 0 || self.write_timeout_secs == 0 {
            return bad("--request-timeout and --write-timeout must be >= 1 second");
        }
        if self.version_baseline == u64::MAX {
            return bad("--version-baseline must be below 18446744073709551615 (u64::MAX)");
        }
        if self.auth_token.as_deref() == Some("") {
            return bad("--auth-token must not be empty");
        }
        #[cfg(feature = "cluster")]
        {
            self.cluster.validate()?;
            if self.cluster.enabled() {
                // Not the local store: every durable fact lives in etcd.
                return Ok(());
            }
        }
        if cfg!(not(feature = "rocksdb")) && self.store == StoreKind::Rocksdb {
            return bad(
                "this seqd was built without the `rocksdb` feature; use --store memory or \
                 rebuild with default features",
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_rules_are_enforced() {
        let ok = Config {
            store: StoreKind::Memory,
            ..Config::default()
        };
        assert!(ok.validate().is_ok());
        for bad in [
            Config {
                partitions: Some(0),
                ..ok.clone()
            },
            Config {
                io_threads: Some(0),
                ..ok.clone()
            },
            Config {
                initial: 0,
                ..ok.clone()
            },
            Config {
                max_connections: 0,
                ..ok.clone()
            },
            Config {
                auth_token: Some(String::new()),
                ..ok.clone()
            },
        ] {
            assert!(matches!(bad.validate(), Err(Error::InvalidOptions(_))));
        }
        assert!(ok.partition_count() >= 1);
    }
}
