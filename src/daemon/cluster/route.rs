//! Answering for partitions served elsewhere: [`Node::forward_all`] sends a connection's
//! requests to the partitions' owners, one pipelined batch per owner, and
//! [`Node::forward`] waits out a failover for one partition.

use std::collections::BTreeMap;
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
                        let watched = [(pid, epoch)];
                        let outcome = self
                            .send_watching(&owner, &record.address, reqs, &watched, &mut changes)
                            .await;
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

    /// Every partition's forwarded requests (`forwards[p]`, empty for most) answered into
    /// `out[p]`. The requests of all partitions owned by one node go to it as one pipelined
    /// batch — one round trip per owner, not per partition; a partition whose owner is not
    /// known or reachable now takes [`forward`](Self::forward)'s waiting path.
    pub(crate) async fn forward_all(
        &self,
        shared: &Shared,
        forwards: &[Vec<Req>],
        out: &mut [Vec<Reply>],
    ) {
        // Subscribed before the owners are read: an epoch change after the read is seen.
        let changes = self.view.changes();
        // By owner: its address and, per partition, the epoch the batch was sent under.
        let mut by_owner: BTreeMap<String, (String, Vec<(usize, i64)>)> = BTreeMap::new();
        let mut slow = Vec::new();
        for (p, reqs) in forwards.iter().enumerate() {
            if reqs.is_empty() {
                continue;
            }
            let pid = PartitionId(u16::try_from(p).unwrap_or(u16::MAX));
            match self.view.owner(pid) {
                Some((owner, epoch)) if owner != self.id => match self.view.node(&owner) {
                    Some(record) => by_owner
                        .entry(owner)
                        .or_insert_with(|| (record.address, Vec::new()))
                        .1
                        .push((p, epoch)),
                    None => slow.push(p),
                },
                _ => slow.push(p),
            }
        }
        // Every owner's batch at once: a slow owner delays only its own partitions' replies.
        let sends = by_owner.into_iter().map(|(owner, (addr, parts))| {
            let mut changes = changes.clone();
            async move {
                let reqs: Vec<Req> = parts
                    .iter()
                    .flat_map(|(p, _)| forwards[*p].iter().copied())
                    .collect();
                let watched: Vec<(PartitionId, i64)> = parts
                    .iter()
                    .map(|(p, e)| (PartitionId(u16::try_from(*p).unwrap_or(u16::MAX)), *e))
                    .collect();
                let outcome = self
                    .send_watching(&owner, &addr, &reqs, &watched, &mut changes)
                    .await;
                (parts, reqs.len(), outcome)
            }
        });
        for (parts, sent, outcome) in futures_util::future::join_all(sends).await {
            match outcome {
                Some(Ok(replies)) if replies.len() == sent => {
                    let mut replies = replies.into_iter();
                    for (p, _) in &parts {
                        out[*p] = replies.by_ref().take(forwards[*p].len()).collect();
                        if all_try_again(&out[*p]) {
                            slow.push(*p);
                        }
                    }
                }
                Some(Err(ForwardError::Lost(why))) => {
                    for (p, _) in &parts {
                        out[*p] = busy(
                            &forwards[*p],
                            &format!(
                                "TRYAGAIN the connection to the owner of partition {p} broke ({why}); the request may have been served"
                            ),
                        );
                    }
                }
                // Not sent, a short answer, or a partition moved meanwhile: each on its own.
                _ => slow.extend(parts.iter().map(|(p, _)| *p)),
            }
        }
        for p in slow {
            out[p] = self.forward(shared, p, &forwards[p]).await;
        }
    }

    /// Sends `reqs` to node `owner` at `addr`, abandoning the wait (`None`) when the owner
    /// is gone from the view (its lease expired: it froze or died, and its reply no longer
    /// matters — if it ever comes, its numbers are skipped, never reissued) and one of the
    /// `watched` partitions got a new epoch meanwhile, or when all of them did. While the
    /// owner lives, a partition that moved by handover is answered by it (a number before
    /// the handover, or `-TRYAGAIN` after): waiting for that reply, instead of sending the
    /// batch again, keeps the owner from serving the other partitions' requests twice.
    async fn send_watching(
        &self,
        owner: &str,
        addr: &str,
        reqs: &[Req],
        watched: &[(PartitionId, i64)],
        changes: &mut tokio::sync::watch::Receiver<u64>,
    ) -> Option<Result<Vec<Reply>, ForwardError>> {
        let sent = self.send(addr, reqs);
        tokio::pin!(sent);
        loop {
            tokio::select! {
                r = &mut sent => return Some(r),
                changed = changes.changed() => {
                    if changed.is_err() {
                        // The view stopped following etcd (the node is stopping): wait for
                        // the owner's reply alone.
                        return Some(sent.as_mut().await);
                    }
                    let moved = watched
                        .iter()
                        .filter(|(p, epoch)| self.view.owner(*p).is_none_or(|(_, e)| e != *epoch))
                        .count();
                    let gone = self.view.node(owner).is_none();
                    if moved == watched.len() || (moved > 0 && gone) {
                        return None;
                    }
                }
            }
        }
    }

    /// Sends `reqs` to the node at `addr`, counted in the forwarding metrics.
    async fn send(&self, addr: &str, reqs: &[Req]) -> Result<Vec<Reply>, ForwardError> {
        let encoded: Vec<Vec<Vec<u8>>> = reqs.iter().map(|r| encode(*r)).collect();
        let commands: Vec<Vec<&[u8]>> = encoded
            .iter()
            .map(|c| c.iter().map(Vec::as_slice).collect())
            .collect();
        let started = Instant::now();
        let replies = self.peers.send(addr, &commands).await;
        self.stats.forwarded(reqs.len(), started.elapsed());
        Ok(replies?.into_iter().map(reply).collect())
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
