//! [`ResumeFloor`]: lease mode's partition-wide promise that lets a sequence's first numbers
//! go out before its own reservation is durable.
//!
//! A lease hands out numbers below its durable reservation. A sequence used for the first
//! time has none, and without a floor its first `NEXT` waits for the fsync of its first
//! reservation: with many new keys that wait (a flush cycle, about a millisecond) bounds
//! every client. So at start seqd durably records one number for the whole store, the *resume
//! floor* `F = S + --lease-floor`, where `S` is where sequences start in this run (`--initial`,
//! or the floor the last run left, whichever is higher). The promise: after a crash, every
//! sequence resumes at `F` or above (the next start's `S` is `F`; a stored number above it
//! wins as always). So any number below `F` of any sequence may be handed out at once —
//! a crash cannot reissue it — and a lease treats the part of a reservation below `F` as
//! durable ([`Leases::set_cover`](super::Leases::set_cover)).
//!
//! The two other ways state is lost are covered too:
//! * an actualization (storage failing) discards unflushed reservations and rebuilds from
//!   storage; the partition promised `F` to its sequencer
//!   ([`Sequencer::set_discard_floor`](crate::Sequencer::set_discard_floor)) before any
//!   number went out under it, so afterwards every sequence resumes at `F` or above;
//! * a graceful stop writes every reservation (each partition's final flush); only when all
//!   partitions closed cleanly does the floor go back to `S`, what sequences never stored
//!   must still start at (some may have handed out numbers in an earlier run that crashed) —
//!   or to `F` if an actualization discarded numbers handed out under it: those sequences
//!   have nothing stored, and only the floor keeps them from starting at `S` again.
//!
//! The cost is a gap: each crash moves the start of every sequence not yet stored up by
//! `--lease-floor` (1,024 by default), as a crash skips the rest of a window. Sync mode reads
//! the floor (a lease-mode run may have crashed before) and never writes one. Cluster mode
//! keeps none: partitions move between nodes with their exact values.

use super::super::config::Config;
use super::super::store::Backend;
use crate::error::Result;

/// Where this run's sequences start and, when the promise is in force, the resume floor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ResumeFloor {
    /// Every sequence's first number in this run: `--initial` or the recorded floor.
    pub(crate) start: u64,
    /// The recorded floor `F`: numbers below it go out without waiting. `None`: off
    /// (sync mode, `--lease-floor 0`, cluster mode, or the record could not be written).
    pub(crate) cover: Option<u64>,
}

impl ResumeFloor {
    /// Reads the floor the last run left and, in lease mode with `--lease-floor` above 0,
    /// durably records this run's. Blocking (an fsync): call it off the event loops.
    ///
    /// Errors: the recorded floor cannot be read (starting below it could reissue numbers).
    pub(crate) fn open(backend: &dyn Backend, config: &Config, cluster: bool) -> Result<Self> {
        if cluster {
            return Ok(ResumeFloor {
                start: config.initial,
                cover: None,
            });
        }
        let recorded = backend.resume_floor()?;
        let start = recorded.map_or(config.initial, |f| f.max(config.initial));
        let lease = config.durability == super::super::DurabilityMode::Lease;
        let cover = match start.checked_add(config.lease_floor) {
            Some(floor) if lease && config.lease_floor > 0 => {
                match backend.set_resume_floor(Some(floor)) {
                    Ok(()) => Some(floor),
                    Err(e) => {
                        tracing::warn!(error = %e, "could not record the resume floor; each sequence's first numbers wait for its own reservation");
                        None
                    }
                }
            }
            _ => None,
        };
        if start > config.initial {
            tracing::info!(
                start,
                "the last run did not stop gracefully: sequences without a stored number start at the resume floor it left"
            );
        }
        Ok(ResumeFloor { start, cover })
    }

    /// After a graceful stop in which every partition closed cleanly: every number handed
    /// out under the floor is stored — unless an actualization discarded it, which raised
    /// its partition's sequences to the floor (`discarded`, the highest partition's discard
    /// floor, 0 for none). The floor goes back to where this run started, or stays where
    /// such an actualization left it. Blocking.
    pub(crate) fn close(&self, backend: &dyn Backend, config: &Config, discarded: u64) {
        if self.cover.is_none() {
            return;
        }
        let keep = Some(self.start.max(discarded)).filter(|&f| f > config.initial);
        if let Err(e) = backend.set_resume_floor(keep) {
            tracing::warn!(error = %e, "could not lower the resume floor; the next start treats this stop as a crash (a gap, never a reuse)");
        }
    }
}
