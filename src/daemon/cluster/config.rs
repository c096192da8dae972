//! [`ClusterConfig`]: the flags of cluster mode (SPEC §5), part of `seqd serve`'s
//! [`Config`](crate::daemon::Config).

use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::cluster::keys::valid_node_id;
use crate::cluster::records::Role;
use crate::error::{Error, Result};

/// `--routing`: what a node does with a request for a slot clients are meant to send
/// elsewhere (SPEC §5, "Routing").
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Routing {
    /// Forward it to the partition's owner and answer (any Redis client works).
    Proxy,
    /// Answer `-MOVED slot host:port` (`-TRYAGAIN` during a handover): for Redis Cluster
    /// clients, which then go to the right node themselves.
    Redirect,
}

impl Routing {
    /// `proxy` or `redirect`.
    pub fn name(self) -> &'static str {
        match self {
            Routing::Proxy => "proxy",
            Routing::Redirect => "redirect",
        }
    }
}

/// Cluster mode's flags. Without `--etcd` the daemon is the single-node server.
#[derive(Args, Clone, Debug, PartialEq, Eq)]
pub struct ClusterConfig {
    /// etcd endpoints (`http://HOST:PORT`, comma-separated): turns cluster mode on. Every
    /// durable fact then lives in etcd; `--data-dir` and `--store` are not used.
    #[arg(long, env = "SEQD_ETCD", value_delimiter = ',', value_name = "URL")]
    pub etcd: Vec<String>,

    /// The cluster's name: its etcd key prefix is `/seqd/NAME/`.
    #[arg(
        long,
        env = "SEQD_CLUSTER",
        default_value = "default",
        value_name = "NAME"
    )]
    pub cluster: String,

    /// This node's id in the cluster. Default: the `--advertise` address.
    #[arg(long, env = "SEQD_NODE_ID", value_name = "ID")]
    pub node_id: Option<String>,

    /// The protocol address other nodes and clients reach this node at. Default: the
    /// listen address (`--host:--port`, the bound port when 0 was asked for).
    #[arg(long, env = "SEQD_ADVERTISE", value_name = "HOST:PORT")]
    pub advertise: Option<String>,

    /// What this node does: `sequencer` (owns partitions), `gateway` (serves clients and
    /// forwards their requests to the owners); comma-separated.
    #[arg(
        long,
        env = "SEQD_ROLES",
        value_delimiter = ',',
        default_value = "sequencer,gateway"
    )]
    pub roles: Vec<String>,

    /// Requests for slots clients are meant to send elsewhere: `proxy` forwards them to the
    /// partition's owner, `redirect` answers `-MOVED slot host:port` (Redis Cluster clients).
    #[arg(long, env = "SEQD_ROUTING", value_enum, default_value_t = Routing::Proxy)]
    pub routing: Routing,

    /// Seconds of the node's etcd lease: a node that stops renewing it loses its partitions
    /// after about this long, and another node answers for them within 2 × TTL + 1 s.
    /// etcd raises it to its own minimum (1.5 × its election timeout).
    #[arg(
        long = "lease-ttl",
        env = "SEQD_LEASE_TTL",
        value_name = "SECS",
        default_value_t = 2
    )]
    pub lease_ttl_secs: u64,

    /// Milliseconds each etcd call may take before it counts as failed (and is retried).
    #[arg(
        long = "etcd-timeout-ms",
        env = "SEQD_ETCD_TIMEOUT_MS",
        value_name = "MS",
        default_value_t = 2000
    )]
    pub etcd_timeout_ms: u64,

    /// Operations per etcd transaction: etcd's `--max-txn-ops` (128 by default). Larger
    /// batches are written as several fenced transactions.
    #[arg(long, env = "SEQD_ETCD_MAX_TXN_OPS", default_value_t = 128)]
    pub etcd_max_txn_ops: usize,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            etcd: Vec::new(),
            cluster: "default".into(),
            node_id: None,
            advertise: None,
            roles: vec!["sequencer".into(), "gateway".into()],
            routing: Routing::Proxy,
            lease_ttl_secs: 2,
            etcd_timeout_ms: 2000,
            etcd_max_txn_ops: 128,
        }
    }
}

impl ClusterConfig {
    /// Whether `--etcd` was given.
    pub fn enabled(&self) -> bool {
        !self.etcd.is_empty()
    }

    /// The roles, parsed.
    pub fn parsed_roles(&self) -> Result<Vec<Role>> {
        let mut roles = Vec::new();
        for name in &self.roles {
            let role = Role::parse(name).ok_or_else(|| {
                Error::InvalidOptions(format!(
                    "--roles: unknown role {name:?}; the roles are sequencer and gateway"
                ))
            })?;
            if !roles.contains(&role) {
                roles.push(role);
            }
        }
        if roles.is_empty() {
            return Err(Error::InvalidOptions(
                "--roles must name at least one of sequencer, gateway".into(),
            ));
        }
        roles.sort();
        Ok(roles)
    }

    /// The etcd call deadline.
    pub fn etcd_timeout(&self) -> Duration {
        Duration::from_millis(self.etcd_timeout_ms)
    }

    /// The lease TTL asked for.
    pub fn lease_ttl(&self) -> Duration {
        Duration::from_secs(self.lease_ttl_secs)
    }

    /// Checks the cluster flags (only when cluster mode is on).
    pub fn validate(&self) -> Result<()> {
        if !self.enabled() {
            return Ok(());
        }
        let bad = |m: String| Err(Error::InvalidOptions(m));
        for url in &self.etcd {
            if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() < 10 {
                return bad(format!(
                    "--etcd {url:?}: an endpoint is a URL such as http://127.0.0.1:2379"
                ));
            }
            if url.starts_with("https://") {
                return bad(format!(
                    "--etcd {url:?}: TLS to etcd is not supported by this build; use http:// \
                     on a trusted network"
                ));
            }
        }
        crate::cluster::Keys::new(&self.cluster)?;
        if let Some(id) = &self.node_id
            && !valid_node_id(id)
        {
            return bad(format!(
                "--node-id {id:?}: 1 to 128 printable characters, no spaces or '/'"
            ));
        }
        if let Some(a) = &self.advertise
            && a.rsplit_once(':')
                .and_then(|(h, p)| (!h.is_empty()).then(|| p.parse::<u16>().ok()).flatten())
                .is_none()
        {
            return bad(format!("--advertise {a:?}: expected HOST:PORT"));
        }
        self.parsed_roles()?;
        if !(1..=60).contains(&self.lease_ttl_secs) {
            return bad("--lease-ttl must be 1 to 60 seconds".into());
        }
        if !(100..=60_000).contains(&self.etcd_timeout_ms) {
            return bad("--etcd-timeout-ms must be 100 to 60000".into());
        }
        if self.etcd_max_txn_ops < 2 {
            return bad("--etcd-max-txn-ops must be >= 2 (etcd's default is 128)".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_checked() {
        assert!(ClusterConfig::default().validate().is_ok());
        let on = ClusterConfig {
            etcd: vec!["http://127.0.0.1:2379".into()],
            ..ClusterConfig::default()
        };
        assert!(on.validate().is_ok());
        assert_eq!(
            on.parsed_roles().unwrap(),
            vec![Role::Sequencer, Role::Gateway]
        );
        for bad in [
            ClusterConfig {
                etcd: vec!["127.0.0.1:2379".into()],
                ..on.clone()
            },
            ClusterConfig {
                roles: vec!["leader".into()],
                ..on.clone()
            },
            ClusterConfig {
                roles: vec![],
                ..on.clone()
            },
            ClusterConfig {
                lease_ttl_secs: 0,
                ..on.clone()
            },
            ClusterConfig {
                cluster: "a/b".into(),
                ..on.clone()
            },
            ClusterConfig {
                advertise: Some("nohost".into()),
                ..on.clone()
            },
            ClusterConfig {
                node_id: Some("a b".into()),
                ..on.clone()
            },
        ] {
            let e = bad.validate().unwrap_err();
            assert!(matches!(e, Error::InvalidOptions(_)), "{e}");
        }
    }
}
