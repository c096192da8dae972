//! The version authority in a cluster (SPEC §5, §6): the Director runs it on its own node,
//! under its own epoch, on [`VersionStore`]; every other node forwards `VERSION` requests to
//! it.
//!
//! **Start.** Phase 4 of every Director round calls [`VersionHooks::elected`]: when no
//! authority of this epoch runs here yet, it opens one (on the main runtime's blocking pool;
//! the hook runs on the etcd client's thread). The authority resumes above the bounds in
//! etcd and takes the Director's epoch. If it cannot open, the round fails and is retried.
//!
//! **Serving, and stopping.** This node answers from its authority only while (a) it is the
//! Director under the authority's epoch and (b) its node lease's local deadline has not
//! passed. A new Director is elected only after this node's lease expired in etcd, which
//! is after that deadline: by then the old authority has stopped answering, so versions
//! from two authorities never interleave. Its late writes are refused by the fence.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use crate::cluster::forward::PeerReply;
use crate::cluster::{DirectorHooks, HookFuture, VersionStore};
use crate::daemon::Shared;
use crate::daemon::versions::{Authority, Local, VersionReply, VersionReq, Versions, release};
use crate::storage::{SeqStorage, StorageError};
use crate::version::{Commit, ServeGate, VersionOptions, VersionStatus};

use super::Node;

/// Starts the version authority when this node is elected Director.
pub(crate) struct VersionHooks {
    /// The node (weak: the node owns the campaign that owns these hooks).
    pub(crate) node: Weak<Node>,
    /// The daemon's runtime: opening the authority blocks on etcd calls.
    pub(crate) main: tokio::runtime::Handle,
}

impl DirectorHooks for VersionHooks {
    fn elected(&self, epoch: i64) -> HookFuture<'_> {
        Box::pin(async move {
            let Some(node) = self.node.upgrade() else {
                return Ok(());
            };
            let versions = &node.versions;
            let term = u64::try_from(epoch).unwrap_or(0);
            if versions.serving_term() == Some(term) || versions.is_stopped() {
                // Running already, or closed for good (the node is stopping).
                return Ok(());
            }
            let store: Arc<dyn SeqStorage> = Arc::new(VersionStore::new(
                Arc::clone(&node.etcd),
                node.keys.clone(),
                epoch,
                node.max_ops,
            ));
            // Answers only while this node holds the lease it was elected on and is still
            // the Director of this epoch (checked under the authority's lock, per request).
            let validity = node.validity();
            let director = Arc::clone(&node.director_now);
            let gate = ServeGate::new(move || {
                if !validity.is_valid() {
                    Err("this node's etcd lease is not confirmed; another node may direct".into())
                } else if director.load(Ordering::Acquire) != epoch {
                    Err(format!(
                        "this node is no longer the Director of epoch {epoch}"
                    ))
                } else {
                    Ok(())
                }
            });
            let options = VersionOptions {
                min_epoch: term,
                gate: Some(gate),
                ..versions.options().clone()
            };
            let opened = self
                .main
                .spawn_blocking(move || Local::open(store, options))
                .await;
            let failure = match opened {
                Ok(Ok(authority)) => {
                    let authority = Arc::new(authority);
                    if versions.is_stopped() {
                        // The node began stopping meanwhile: it serves nothing more.
                        release(authority);
                        return Ok(());
                    }
                    tracing::info!(
                        epoch,
                        version_epoch = authority.epoch(),
                        "version authority started on this node (the Director)"
                    );
                    release(versions.set(Authority::Serving { authority, term }));
                    return Ok(());
                }
                Ok(Err(e)) => e.to_string(),
                Err(e) => format!("opening it panicked: {e}"),
            };
            tracing::error!(epoch, error = %failure, "the version authority cannot start");
            release(versions.set(Authority::Starting {
                failure: Some(failure.clone()),
            }));
            Err(StorageError::retryable(format!(
                "the version authority cannot start: {failure}"
            )))
        })
    }
}

/// This node stopped being the Director of `term` (or never was): the authority it runs, or
/// failed to start, gives way to the one on the Director's node.
pub(crate) fn deposed(versions: &Versions, director: Option<u64>) {
    let current = versions.current();
    let stale = match &*current {
        Authority::Serving { term, .. } => Some(*term) != director,
        Authority::Starting { .. } => director.is_none(),
        _ => false,
    };
    if stale && versions.swap_if(&current, Authority::Elsewhere) {
        tracing::warn!("no longer the Director: the version authority stops on this node");
        release(current);
    }
}

/// Answers `reqs` in a cluster: here when this node serves the authority, else forwarded to
/// the Director's node (never again when they came from a peer).
pub(crate) async fn answer(
    node: &Arc<Node>,
    shared: &Shared,
    reqs: &[VersionReq],
    out: &mut Vec<VersionReply>,
    from_peer: bool,
) {
    let versions = &shared.versions;
    let director = node.director_epoch().and_then(|e| u64::try_from(e).ok());
    let serving = versions.serving_term();
    if serving.is_some() && serving == director && node.validity().is_valid() {
        return versions.answer(reqs, out).await;
    }
    out.clear();
    if serving.is_some() && serving != director {
        // Deposed: stop answering from it at once.
        deposed(versions, director);
    }
    let fail = |out: &mut Vec<VersionReply>, msg: String| {
        out.extend(reqs.iter().map(|_| VersionReply::Error(msg.clone())));
    };
    if director.is_some() {
        return fail(
            out,
            "TRYAGAIN the version authority is starting on this node (the Director)".into(),
        );
    }
    let target = node
        .view
        .director()
        .filter(|(id, _)| *id != node.id)
        .and_then(|(id, _)| node.view.node(&id).map(|n| (id, n.address)));
    let Some((id, address)) = target else {
        return fail(
            out,
            "TRYAGAIN no Director is elected yet, so no version authority runs; retry shortly"
                .into(),
        );
    };
    if from_peer {
        return fail(
            out,
            format!("TRYAGAIN the version authority is on node {id} at {address}"),
        );
    }
    let args: Vec<Vec<Vec<u8>>> = reqs.iter().map(|r| command(*r)).collect();
    let commands: Vec<Vec<&[u8]>> = args
        .iter()
        .map(|c| c.iter().map(Vec::as_slice).collect())
        .collect();
    match node.peers.send(&address, &commands).await {
        Ok(replies) => {
            out.extend(reqs.iter().zip(replies).map(|(r, p)| reply(*r, p)));
            out.resize_with(reqs.len(), || {
                VersionReply::Error("ERR the version authority's node sent no reply".into())
            });
        }
        Err(e) => fail(
            out,
            format!("TRYAGAIN the version authority on node {id} did not answer ({e})"),
        ),
    }
}

/// `req` as the command a peer is sent.
fn command(req: VersionReq) -> Vec<Vec<u8>> {
    let n = |v: u64| v.to_string().into_bytes();
    let (sub, args) = match req {
        VersionReq::Commit(d) => ("COMMIT", vec![n(d)]),
        VersionReq::Read(d) => ("READ", vec![n(d)]),
        VersionReq::Report(d, v) => ("REPORT", vec![n(d), n(v)]),
        VersionReq::Status(d) => ("STATUS", vec![n(d)]),
    };
    let mut c = vec![b"VERSION".to_vec(), sub.as_bytes().to_vec()];
    c.extend(args);
    c
}

/// A peer's reply to `req`, as this node's reply.
fn reply(req: VersionReq, p: PeerReply) -> VersionReply {
    let int = |p: &PeerReply| match p {
        PeerReply::Integer(n) => u64::try_from(*n).ok(),
        _ => None,
    };
    let malformed = || VersionReply::Error("ERR malformed reply from the version authority".into());
    match (req, p) {
        (_, PeerReply::Error(e)) => VersionReply::Error(e),
        (VersionReq::Commit(_), PeerReply::Array(Some(a))) => match a.as_slice() {
            [l, v, e] => match (int(l), int(v), int(e)) {
                (Some(last), Some(version), Some(epoch)) => VersionReply::Commit(Commit {
                    last,
                    version,
                    epoch,
                }),
                _ => malformed(),
            },
            _ => malformed(),
        },
        (VersionReq::Read(_), p) => int(&p).map_or_else(malformed, VersionReply::Read),
        (VersionReq::Report(..), PeerReply::Simple(s)) if s == "OK" => VersionReply::Ok,
        (VersionReq::Status(_), PeerReply::Array(Some(a))) => status(&a).unwrap_or_else(malformed),
        _ => malformed(),
    }
}

/// `VERSION STATUS`'s flat RESP2 array, read back.
fn status(a: &[PeerReply]) -> Option<VersionReply> {
    let mut s = VersionStatus {
        domain: 0,
        epoch: 0,
        baseline: 0,
        last_commit: 0,
        read_version: 0,
        durable_bound: 0,
    };
    let mut clock = "counter";
    for pair in a.chunks(2) {
        let [PeerReply::Bulk(Some(name)), value] = pair else {
            return None;
        };
        let n = match value {
            PeerReply::Integer(n) => u64::try_from(*n).ok(),
            _ => None,
        };
        match (name.as_slice(), n) {
            (b"domain", Some(n)) => s.domain = n,
            (b"epoch", Some(n)) => s.epoch = n,
            (b"baseline", Some(n)) => s.baseline = n,
            (b"last_commit", Some(n)) => s.last_commit = n,
            (b"read_version", Some(n)) => s.read_version = n,
            (b"durable_bound", Some(n)) => s.durable_bound = n,
            (b"clock", None) => {
                if matches!(value, PeerReply::Bulk(Some(c)) if c == b"micros") {
                    clock = "micros";
                }
            }
            _ => return None,
        }
    }
    Some(VersionReply::Status(s, clock))
}
