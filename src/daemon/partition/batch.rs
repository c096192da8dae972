//! What connections and HTTP handlers ask a partition ([`Req`]), what it answers
//! ([`Reply`]), and the [`Batch`] that carries both, with the commits the replies wait for.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::sequencer::{Committed, DurabilityWatcher};

/// A request a partition answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Req {
    /// `count` consecutive numbers.
    Next { ws: u64, seq: u16, count: u64 },
    /// The number the next `Next` would return.
    Peek { ws: u64, seq: u16 },
}

impl Req {
    /// The workspace, which picks the partition.
    pub(crate) fn ws(self) -> u64 {
        match self {
            Req::Next { ws, .. } | Req::Peek { ws, .. } => ws,
        }
    }
}

/// A partition's answer to one [`Req`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Reply {
    /// The first number (`Next`) or the next number (`Peek`).
    Number(u64),
    /// Try again: recovering, backpressure, or the numbers could not be persisted.
    Busy(String),
    /// A permanent refusal (sequence exhausted, storage corrupt).
    Error(String),
}

/// Requests of one connection read for one partition, sent together and returned together.
#[derive(Default)]
pub(crate) struct Batch {
    pub(crate) reqs: Vec<Req>,
    pub(crate) replies: Vec<Reply>,
    pub(super) deps: Vec<Option<Committed>>,
    /// The answering partition's count of replies that became `-BUSY` after answering
    /// (set by [`Partition::answer`](super::Partition::answer)).
    pub(super) late_busy: Option<Arc<AtomicU64>>,
    /// Cluster mode: the sequencer parts that answered it, which its commits must be
    /// checked against (the partition's sequencer may be replaced before they settle).
    pub(crate) answered_by: Option<Arc<super::Parts>>,
}

impl Batch {
    pub(crate) fn clear(&mut self) {
        self.reqs.clear();
        self.replies.clear();
        self.deps.clear();
    }

    /// Whether every number in the batch may be acknowledged: resolves each reply whose
    /// commit is now durable, and turns one whose commit an actualization discarded into
    /// `-BUSY` (never acknowledged, so its numbers may be handed out again).
    pub(crate) fn settle(&mut self, watcher: &DurabilityWatcher) -> bool {
        let mut settled = true;
        for (reply, dep) in self.replies.iter_mut().zip(self.deps.iter_mut()) {
            let Some(c) = dep else { continue };
            match watcher.is_durable(*c) {
                Ok(true) => *dep = None,
                Ok(false) => settled = false,
                Err(_) => {
                    *reply = Reply::Busy(discarded());
                    *dep = None;
                    count_late_busy(&self.late_busy);
                }
            }
        }
        settled
    }

    /// Replaces every reply still waiting for durability with `msg`: not acknowledged.
    pub(crate) fn abandon_unsettled(&mut self, msg: &str) {
        for (reply, dep) in self.replies.iter_mut().zip(self.deps.iter_mut()) {
            if dep.take().is_some() {
                *reply = Reply::Busy(msg.to_string());
                count_late_busy(&self.late_busy);
            }
        }
    }

    /// Answers every request with `msg` (the partition could not be reached).
    pub(crate) fn fail(&mut self, msg: &str) {
        self.replies.clear();
        self.deps.clear();
        self.replies
            .extend(self.reqs.iter().map(|_| Reply::Busy(msg.to_string())));
    }
}

fn count_late_busy(counter: &Option<Arc<AtomicU64>>) {
    if let Some(c) = counter {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// The reply that replaces a number whose commit an actualization discarded.
pub(super) fn discarded() -> String {
    "BUSY storage failed before these numbers were persisted; they were not issued, retry".into()
}
