//! `INFO`: the server described in Redis's text format (`# Section` headers, `field:value`
//! lines, CRLF line ends), so tools and client libraries that read Redis's fields find them —
//! `redis_version`, `loading`, `role`, `connected_clients` — and seqd's own sections after
//! them: partitions, durability, leases, versions.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use super::command::Sections;
use super::status::PartitionStatus;
use super::{DurabilityMode, Shared};

/// The Redis version seqd's protocol matches: clients that compare versions to choose
/// features (RESP3, `CLIENT SETINFO`) see one that has them.
pub(crate) const REDIS_VERSION: &str = "7.2.0";

/// What `INFO` reports beyond what `shared` holds: the partitions' statuses (when a section
/// needs them) and the number of stored sequences (`# Keyspace` only).
pub(crate) struct Snapshot<'a> {
    pub(crate) statuses: &'a [PartitionStatus],
    pub(crate) keys: Option<u64>,
}

/// The text of `INFO` for `sections`.
pub(crate) fn render(shared: &Shared, sections: Sections, snap: &Snapshot<'_>) -> String {
    let mut out = String::new();
    for (name, section) in Sections::NAMED {
        if !sections.contains(section) {
            continue;
        }
        if !out.is_empty() {
            out.push_str("\r\n");
        }
        let mut title = name.to_owned();
        if let Some(first) = title.get_mut(..1) {
            first.make_ascii_uppercase();
        }
        let _ = write!(out, "# {title}\r\n");
        let mut field = |k: &str, v: &dyn std::fmt::Display| {
            let _ = write!(out, "{k}:{v}\r\n");
        };
        write_section(&mut field, shared, section, snap);
    }
    out
}

pub(crate) type Field<'f> = dyn FnMut(&str, &dyn std::fmt::Display) + 'f;

fn write_section(f: &mut Field<'_>, shared: &Shared, section: Sections, snap: &Snapshot<'_>) {
    let config = &shared.config;
    let sum = |field: fn(&PartitionStatus) -> u64| snap.statuses.iter().map(field).sum::<u64>();
    let durability = match config.durability {
        DurabilityMode::Sync => "sync",
        DurabilityMode::Lease => "lease",
    };
    if section == Sections::SERVER {
        let uptime = shared.started.elapsed().as_secs();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros());
        f("redis_version", &REDIS_VERSION);
        let mode = if shared.cluster.is_some() {
            "cluster"
        } else {
            "standalone"
        };
        f("redis_mode", &mode);
        f("server_name", &"seqd");
        f("seqd_version", &env!("CARGO_PKG_VERSION"));
        f(
            "os",
            &format_args!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
        );
        f("arch_bits", &(usize::BITS));
        f("process_id", &std::process::id());
        f("tcp_port", &shared.port);
        f("server_time_usec", &now);
        f("uptime_in_seconds", &uptime);
        f("uptime_in_days", &(uptime / 86_400));
    } else if section == Sections::CLIENTS {
        f("connected_clients", &shared.clients.len());
        f("maxclients", &shared.max_connections);
        f("blocked_clients", &0);
        f("pending_bytes", &shared.pending.held());
        f("max_pending_bytes", &config.max_pending_bytes);
    } else if section == Sections::STATS {
        let m = shared.metrics.totals();
        f("total_connections_received", &m.connections_accepted);
        f("total_commands_processed", &(m.next + m.peek + m.other));
        f("rejected_connections", &m.connections_rejected);
        f("total_error_replies", &(m.errors + m.busy));
        f("next_requests", &m.next);
        f("peek_requests", &m.peek);
        f("numbers_issued", &sum(|s| s.numbers_issued));
        f("busy_replies", &m.busy);
        f("auth_failures", &m.auth_failures);
    } else if section == Sections::PERSISTENCE {
        let loading = shared.partitions.recovering();
        f("loading", &u8::from(loading));
        f("async_loading", &0);
        f("rdb_changes_since_last_save", &0);
        f("aof_enabled", &1);
        f("aof_rewrite_in_progress", &0);
        f("durability", &durability);
        f("storage", &shared.backend.describe());
    } else if section == Sections::REPLICATION {
        f("role", &"master");
        f("connected_slaves", &0);
    } else if section == Sections::PARTITIONS {
        f("partitions", &snap.statuses.len());
        for s in snap.statuses {
            f(
                &format!("partition{}", s.partition),
                &format_args!(
                    "state={},ready={},resident_workspaces={},unflushed={},\
                     checkpoint_offset={},next_offset={},actualizations={},storage_failing={}",
                    s.state,
                    u8::from(s.ready),
                    s.resident_workspaces,
                    s.unflushed,
                    s.checkpoint_offset,
                    s.next_offset,
                    s.actualizations,
                    u8::from(s.storage_failing),
                ),
            );
        }
    } else if section == Sections::DURABILITY {
        let batches = sum(|s| s.flush_batches);
        let weighted = sum(|s| s.mean_flush_latency_us.saturating_mul(s.flush_batches));
        f("durability", &durability);
        f("flush_batches", &batches);
        f("flushed_values", &sum(|s| s.flushed_values));
        f("flush_errors", &sum(|s| s.flush_errors));
        f("flush_give_ups", &sum(|s| s.flush_give_ups));
        f(
            "mean_flush_latency_us",
            &weighted.checked_div(batches).unwrap_or(0),
        );
        f("reservations", &sum(|s| s.reservations));
        f(
            "storage_failing",
            &u8::from(snap.statuses.iter().any(|s| s.storage_failing)),
        );
    } else if section == Sections::LEASES {
        let usize_sum =
            |field: fn(&PartitionStatus) -> usize| snap.statuses.iter().map(field).sum::<usize>();
        f(
            "lease_mode",
            &u8::from(config.durability == DurabilityMode::Lease),
        );
        f("leases", &usize_sum(|s| s.leases));
        f("parked_leases", &usize_sum(|s| s.parked_leases));
        f("lease_evictions", &sum(|s| s.lease_evictions));
        f("dropped_lease_ranges", &sum(|s| s.dropped_lease_ranges));
        f("max_leases", &config.max_leases);
        let floor = shared.partitions.resume_floor();
        f("lease_floor", &config.lease_floor);
        f("resume_floor", &floor.cover.unwrap_or(0));
        f("sequences_start_at", &floor.start);
    } else if section == Sections::VERSIONS {
        shared.versions.info(f);
    } else if section == Sections::CLUSTER {
        f("cluster_enabled", &u8::from(shared.cluster.is_some()));
        #[cfg(feature = "cluster")]
        if let Some(node) = &shared.cluster {
            node.info(f);
        }
    } else if section == Sections::KEYSPACE {
        // Redis omits an empty database.
        if let Some(keys) = snap.keys.filter(|&k| k > 0) {
            f("db0", &format_args!("keys={keys},expires=0,avg_ttl=0"));
        }
    }
}
