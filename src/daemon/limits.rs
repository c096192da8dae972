//! Fitting `--max-connections` to the open-file limit, as Redis fits `maxclients`.
//!
//! Every connection is a file descriptor. If the process may open fewer than
//! `--max-connections` plus what seqd itself holds, the connection past the limit would not
//! get the `-ERR max number of clients reached` reply: `accept` itself would fail (EMFILE)
//! and the client would wait in the listen queue with no answer. So at start seqd raises its
//! soft limit as far as the hard limit allows, and if that is not enough lowers
//! `--max-connections` to fit, with a warning that says how to raise the limit.

use crate::error::{Error, Result};

/// Descriptors kept free beyond those open at start and the connections: the HTTP admin's
/// connections, storage files opened later (RocksDB's new tables and logs), log files.
pub(crate) const HEADROOM_FDS: u64 = 32;

/// What the open-file limit allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fit {
    /// The connections to allow: `wanted`, or fewer when the limit is too low.
    pub(crate) connections: usize,
    /// The soft limit before and after (equal when it was not changed).
    pub(crate) limit_before: u64,
    pub(crate) limit_after: u64,
}

/// The connections that fit under a soft limit of `soft` (raisable to `hard`) when seqd holds
/// `reserved` descriptors itself; the pure rule behind [`fit_connections`]. `raise` tries a new
/// soft limit and returns the one in force.
pub(crate) fn fit(
    wanted: usize,
    reserved: u64,
    (soft, hard): (u64, u64),
    raise: impl FnOnce(u64) -> u64,
) -> Result<Fit> {
    let need = (wanted as u64).saturating_add(reserved);
    let after = if soft >= need {
        soft
    } else {
        raise(need.min(hard)).max(soft)
    };
    let room = after.saturating_sub(reserved);
    if room == 0 {
        return Err(Error::InvalidOptions(format!(
            "the open-file limit ({after}) leaves no room for client connections: seqd needs \
             about {reserved} descriptors for itself; raise the limit (ulimit -n, or LimitNOFILE= \
             in a systemd unit) to at least {need}"
        )));
    }
    Ok(Fit {
        connections: usize::try_from(room).map_or(wanted, |room| wanted.min(room)),
        limit_before: soft,
        limit_after: after,
    })
}

/// Fits `wanted` connections to this process's open-file limit (raising the soft limit where
/// the hard limit allows), logging what it changed.
pub(crate) fn fit_connections(wanted: usize, extra_reserved: u64) -> Result<usize> {
    let Some(limits) = nofile() else {
        return Ok(wanted); // no limit to read here: nothing to fit
    };
    let reserved = open_fds() + HEADROOM_FDS + extra_reserved;
    let fit = fit(wanted, reserved, limits, raise_nofile)?;
    if fit.limit_after > fit.limit_before {
        tracing::info!(
            from = fit.limit_before,
            to = fit.limit_after,
            "raised the open-file limit to fit --max-connections"
        );
    }
    if fit.connections < wanted {
        tracing::warn!(
            wanted,
            allowed = fit.connections,
            open_file_limit = fit.limit_after,
            "lowered --max-connections to fit the open-file limit; raise the limit (ulimit -n) \
             to allow more"
        );
    }
    Ok(fit.connections)
}

#[cfg(unix)]
fn nofile() -> Option<(u64, u64)> {
    rlimit::getrlimit(rlimit::Resource::NOFILE).ok()
}

#[cfg(not(unix))]
fn nofile() -> Option<(u64, u64)> {
    None
}

#[cfg(unix)]
fn raise_nofile(to: u64) -> u64 {
    let hard = nofile().map_or(to, |(_, hard)| hard);
    let _ = rlimit::setrlimit(rlimit::Resource::NOFILE, to, hard);
    nofile().map_or(0, |(soft, _)| soft)
}

#[cfg(not(unix))]
fn raise_nofile(_to: u64) -> u64 {
    0
}

/// Descriptors open now (Linux: entries of /proc/self/fd; elsewhere a guess of 64).
fn open_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd").map_or(64, |d| d.count() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enough_room_changes_nothing() {
        let f = fit(100, 50, (1024, 4096), |_| panic!("no raise needed")).unwrap();
        assert_eq!((f.connections, f.limit_after), (100, 1024));
    }

    #[test]
    fn the_soft_limit_is_raised_up_to_the_hard_one() {
        let f = fit(10_000, 50, (1024, 1 << 20), |to| to).unwrap();
        assert_eq!((f.connections, f.limit_after), (10_000, 10_050));
        // Capped by the hard limit: connections lowered to fit.
        let f = fit(10_000, 50, (1024, 4096), |to| to).unwrap();
        assert_eq!(
            (f.connections, f.limit_before, f.limit_after),
            (4046, 1024, 4096)
        );
        // The raise failed: the soft limit stays, connections fit under it.
        let f = fit(10_000, 50, (1024, 4096), |_| 1024).unwrap();
        assert_eq!((f.connections, f.limit_after), (974, 1024));
    }

    #[test]
    fn no_room_at_all_is_an_error_that_says_what_to_do() {
        let e = fit(100, 80, (64, 64), |to| to).unwrap_err().to_string();
        assert!(e.contains("ulimit -n"), "{e}");
        assert!(e.contains("at least 180"), "{e}");
    }
}
