//! The values the authority hands out and reports.

/// A domain of versions: independent counters of one authority.
pub type DomainId = u64;

/// A commit version, as `VERSION COMMIT` replies it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Commit {
    /// The commit version handed out just before in this domain (after a recovery: the
    /// baseline).
    pub last: u64,
    /// This commit's version.
    pub version: u64,
    /// The authority's epoch.
    pub epoch: u64,
}

/// A domain's state, as `VERSION STATUS` replies it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VersionStatus {
    /// The domain.
    pub domain: DomainId,
    /// The authority's epoch.
    pub epoch: u64,
    /// The recovery baseline this epoch's versions started above.
    pub baseline: u64,
    /// The last commit version handed out (the baseline before the first).
    pub last_commit: u64,
    /// The read version.
    pub read_version: u64,
    /// Versions up to this may be handed out without a storage write.
    pub durable_bound: u64,
}

/// Counts since open, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VersionStats {
    /// Commit versions handed out.
    pub commits: u64,
    /// Read versions answered.
    pub reads: u64,
    /// Reports accepted.
    pub reports: u64,
    /// Window writes that succeeded.
    pub window_writes: u64,
    /// Window writes (and bound reads) that failed.
    pub storage_errors: u64,
    /// Requests that found no durable window and waited for one.
    pub waits: u64,
    /// Domains in memory.
    pub domains: u64,
}

/// What a non-blocking call came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attempt<T> {
    /// Answered.
    Done(T),
    /// It needs storage first (a window, or the domain's stored bound): call the blocking
    /// form, or try again after the reserver's next write.
    Wait,
}
