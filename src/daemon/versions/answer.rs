//! Answering `VERSION` requests and encoding their replies.

use std::sync::Arc;

use super::{Authority, Local, VersionReq, Versions, release};
use crate::daemon::protocol::{self, Proto};
use crate::error::Error;
use crate::version::{Attempt, Commit, VersionStatus};

/// Its reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum VersionReply {
    /// `[last_commit_version, commit_version, epoch]`.
    Commit(Commit),
    /// A read version.
    Read(u64),
    /// `+OK`.
    Ok,
    /// The domain's state.
    Status(VersionStatus, &'static str),
    /// An error reply, its text (`BUSY ...`, `ERR ...`) without the `-`.
    Error(String),
}

impl Versions {
    /// Answers `reqs` in order into `out` (cleared first). Never blocks the calling thread:
    /// what must wait for storage waits on the blocking pool.
    pub(crate) async fn answer(&self, reqs: &[VersionReq], out: &mut Vec<VersionReply>) {
        out.clear();
        let state = self.current();
        let authority = match &*state {
            Authority::Serving { authority, .. } => Arc::clone(authority),
            other => {
                let msg = unavailable(other);
                out.extend(reqs.iter().map(|_| VersionReply::Error(msg.clone())));
                return;
            }
        };
        release(state);
        let clock = self.options.clock.name();
        let mut waits = None;
        for (i, req) in reqs.iter().enumerate() {
            match attempt(&authority, *req, clock) {
                Some(reply) => out.push(reply),
                None => {
                    waits = Some(i);
                    break;
                }
            }
        }
        if let Some(i) = waits {
            // This one waits for a window or a domain's stored bound: it and the rest of the
            // read go to the blocking pool, still in order, under one deadline.
            let rest = reqs.get(i..).unwrap_or_default().to_vec();
            let a = Arc::clone(&authority);
            let waited =
                tokio::task::spawn_blocking(move || blocking_batch(&a, &rest, clock)).await;
            match waited {
                Ok(replies) => out.extend(replies),
                Err(e) => {
                    let msg = format!("ERR answering VERSION failed: {e}");
                    out.resize(reqs.len(), VersionReply::Error(msg));
                }
            }
        }
        release(authority);
    }
}

/// Answers `reqs` in order on a blocking thread: the first waits for storage as long as the
/// authority's options allow; once one gave up, the rest are answered only if they need no
/// wait (`-BUSY` otherwise), so a read's requests share one deadline.
fn blocking_batch(a: &Local, reqs: &[VersionReq], clock: &'static str) -> Vec<VersionReply> {
    let mut gave_up: Option<String> = None;
    reqs.iter()
        .map(|req| match &gave_up {
            Some(why) => {
                attempt(a, *req, clock).unwrap_or_else(|| VersionReply::Error(why.clone()))
            }
            None => {
                let reply = blocking(a, *req, clock);
                if let VersionReply::Error(e) = &reply
                    && e.starts_with("BUSY")
                {
                    gave_up = Some(e.clone());
                }
                reply
            }
        })
        .collect()
}

/// The reply when the authority does not serve here.
fn unavailable(state: &Authority) -> String {
    match state {
        Authority::Unavailable => {
            "ERR this server keeps no version authority (its storage has no place for one)".into()
        }
        Authority::Starting { failure: None } => {
            "BUSY the version authority is starting; retry shortly".into()
        }
        Authority::Starting { failure: Some(why) } => {
            format!("BUSY the version authority cannot start ({why}); retry later")
        }
        Authority::Elsewhere => "TRYAGAIN the version authority is on another node".into(),
        Authority::Stopped | Authority::Serving { .. } => {
            "BUSY the version authority is not serving on this node (stopping or moving); \
             retry shortly"
                .into()
        }
    }
}

/// Answers `req` without blocking; `None` when it must wait for storage.
fn attempt(a: &Local, req: VersionReq, clock: &'static str) -> Option<VersionReply> {
    let reply = match req {
        VersionReq::Commit(d) => a.try_commit(d).map(|r| map(r, VersionReply::Commit)),
        VersionReq::Read(d) => a.try_read(d).map(|r| map(r, VersionReply::Read)),
        VersionReq::Report(d, v) => a.try_report(d, v).map(|r| map(r, |()| VersionReply::Ok)),
        VersionReq::Status(d) => a
            .try_status(d)
            .map(|r| map(r, |s| VersionReply::Status(s, clock))),
    };
    match reply {
        Ok(r) => r,
        Err(e) => Some(error_reply(&e)),
    }
}

fn map<T>(a: Attempt<T>, f: impl FnOnce(T) -> VersionReply) -> Option<VersionReply> {
    match a {
        Attempt::Done(v) => Some(f(v)),
        Attempt::Wait => None,
    }
}

/// Answers `req`, waiting for storage as long as the authority's options allow.
fn blocking(a: &Local, req: VersionReq, clock: &'static str) -> VersionReply {
    let reply = match req {
        VersionReq::Commit(d) => a.commit(d).map(VersionReply::Commit),
        VersionReq::Read(d) => a.read(d).map(VersionReply::Read),
        VersionReq::Report(d, v) => a.report(d, v).map(|()| VersionReply::Ok),
        VersionReq::Status(d) => a.status(d).map(|s| VersionReply::Status(s, clock)),
    };
    reply.unwrap_or_else(|e| error_reply(&e))
}

/// `-BUSY` for what a retry may fix, `-ERR` for the rest.
pub(crate) fn error_reply(e: &Error) -> VersionReply {
    if e.is_retryable() {
        VersionReply::Error(format!("BUSY {e}"))
    } else {
        VersionReply::Error(format!("ERR {e}"))
    }
}

/// Encodes `reply` in the connection's protocol.
pub(crate) fn write_reply(out: &mut Vec<u8>, proto: Proto, reply: &VersionReply) {
    match reply {
        VersionReply::Commit(c) => {
            protocol::write_array_len(out, 3);
            for n in [c.last, c.version, c.epoch] {
                protocol::write_uint(out, n);
            }
        }
        VersionReply::Read(v) => protocol::write_uint(out, *v),
        VersionReply::Ok => protocol::write_simple(out, "OK"),
        VersionReply::Status(s, clock) => {
            let fields = [
                ("domain", s.domain),
                ("epoch", s.epoch),
                ("baseline", s.baseline),
                ("last_commit", s.last_commit),
                ("read_version", s.read_version),
                ("durable_bound", s.durable_bound),
            ];
            protocol::write_map_len(out, proto, fields.len() + 1);
            for (name, value) in fields {
                protocol::write_bulk(out, name.as_bytes());
                protocol::write_uint(out, value);
            }
            protocol::write_bulk(out, b"clock");
            protocol::write_bulk(out, clock.as_bytes());
        }
        VersionReply::Error(msg) => protocol::write_error(out, msg),
    }
}
