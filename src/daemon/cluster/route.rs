//! Answering for partitions served elsewhere: [`Node::forward`] sends a connection's
//! requests of one partition to the partition's owner, pipelined, and waits out a failover.

use std::time::{Duration, Instant};

use super::node::Node;
use crate::cluster::forward::{ForwardError, PeerReply};
use crate::daemon::Shared;
use crate::daemon::partition::{Reply, Req};
use crate::types::PartitionId;

/// How often a request waiting for an owner looks again (besides every view change).
const POLL: Duration = Duration::from_millis(20);

impl Node {
    /// The replies to `reqs` (all of partition `p`, which this node does not serve now),
    /// in order: from the owner; or, during a failover, once an owner is known — at most
    /// 2 × lease TTL + 1 s, then `-TRYAGAIN`.
    pub(crate) async fn forward(&self, shared: &Shared, p: usize, reqs: &[Req]) -> Vec<Reply> {
        let pid = PartitionId(u16::try_from(p).unwrap_or(u16::MAX));
        let deadline = Instant::now() + 2 * self.ttl() + Duration::from_secs(1);
        let mut changes = self.view.changes();
        loop {
            match self.view.owner(pid) {
                Some((owner, epoch)) if owner != self.id => {
                    if let Some(record) = self.view.node(&owner) {
                        // An owner that froze answers nothing until it resumes: when the
                        // partition gets a new epoch meanwhile, its reply no longer matters
                        // (if it ever comes, its numbers are skipped, never reissued).
                        let sent = self.send(&record.address, reqs);
                        tokio::pin!(sent);
                        let outcome = loop {
                            tokio::select! {
                                r = &mut sent => break Some(r),
                                changed = changes.changed() => {
                                    if changed.is_err() {
                                        // The view stopped following etcd (the node is
                                        // stopping): wait for the owner's reply alone.
                                        break Some(sent.as_mut().await);
                                    }
                                    if self.view.owner(pid).is_none_or(|(_, e)| e != epoch) {
                                        break None;
                                    }
                                }
                            }
                        };
                        match outcome {
                            // A new epoch: send again, unless the time is up.
                            None if Instant::now() < deadline => continue,
                            None => {}
                            Some(Ok(replies)) if !all_try_again(&replies) => return replies,
                            Some(Ok(_) | Err(ForwardError::Unreachable(_))) => {}
                            Some(Err(ForwardError::Lost(why))) => {
                                return busy(
                                    reqs,
                                    &format!(
                                        "TRYAGAIN the connection to the owner of partition {p} broke ({why}); the request may have been served"
                                    ),
                                );
                            }
                        }
                    }
                }
                Some(_) if shared.partitions.serving(p) => {
                    // It became this node's meanwhile.
                    let mut out = Vec::with_capacity(reqs.len());
                    for r in reqs {
                        out.push(shared.partitions.one(*r).await);
                    }
                    return out;
                }
                _ => {}
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return busy(
                    reqs,
                    &format!("TRYAGAIN partition {p} has no reachable owner right now; retry"),
                );
            }
            tokio::select! {
                changed = changes.changed() => {
                    if changed.is_err() {
                        tokio::time::sleep(POLL.min(left)).await;
                    }
                }
                () = tokio::time::sleep(POLL.min(left)) => {}
            }
        }
    }

    /// Sends `reqs` to the node at `addr`.
    async fn send(&self, addr: &str, reqs: &[Req]) -> Result<Vec<Reply>, ForwardError> {
        let encoded: Vec<Vec<Vec<u8>>> = reqs.iter().map(|r| encode(*r)).collect();
        let commands: Vec<Vec<&[u8]>> = encoded
            .iter()
            .map(|c| c.iter().map(Vec::as_slice).collect())
            .collect();
        let replies = self.peers.send(addr, &commands).await?;
        Ok(replies.into_iter().map(reply).collect())
    }
}

fn encode(r: Req) -> Vec<Vec<u8>> {
    let s = |n: u64| n.to_string().into_bytes();
    match r {
        Req::Next { ws, seq, count } => vec![b"NEXT".to_vec(), s(ws), s(u64::from(seq)), s(count)],
        Req::Peek { ws, seq } => vec![b"PEEK".to_vec(), s(ws), s(u64::from(seq))],
    }
}

fn reply(r: PeerReply) -> Reply {
    match r {
        PeerReply::Integer(n) => match u64::try_from(n) {
            Ok(n) => Reply::Number(n),
            Err(_) => Reply::Error(format!("ERR unexpected number from the owner: {n}")),
        },
        PeerReply::Error(e) if e.starts_with("ERR") => Reply::Error(e),
        PeerReply::Error(e) => Reply::Busy(e),
        other => Reply::Error(format!("ERR unexpected reply from the owner: {other:?}")),
    }
}

fn all_try_again(replies: &[Reply]) -> bool {
    !replies.is_empty()
        && replies
            .iter()
            .all(|r| matches!(r, Reply::Busy(m) if m.starts_with("TRYAGAIN")))
}

fn busy(reqs: &[Req], msg: &str) -> Vec<Reply> {
    reqs.iter().map(|_| Reply::Busy(msg.to_owned())).collect()
}
