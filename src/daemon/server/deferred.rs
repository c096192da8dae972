//! `INFO` and `DBSIZE`: replies that need more than the connection knows — the partitions'
//! statuses (asked of their workers) and a count of storage (a pass over it). They are
//! answered after the read's batches, in their places among the replies, without blocking
//! the connection thread: the statuses are awaited, the count runs on a blocking thread.

use std::sync::Arc;

use super::{Conn, Deferred, Slot};
use crate::daemon::command::Sections;
use crate::daemon::info::{self, Snapshot};
use crate::daemon::protocol;

impl Conn {
    /// A reply answered after the batches.
    pub(super) fn defer(&mut self, deferred: Deferred) {
        self.deferred = true;
        self.push_slot(Slot::Deferred(deferred));
    }

    /// Answers the `INFO` and `DBSIZE` of this read: after the batches, with the partitions'
    /// statuses and the storage's count, fetched once for all of them (off this thread).
    pub(super) async fn resolve_deferred(&mut self) {
        if !std::mem::take(&mut self.deferred) {
            return;
        }
        let mut info = false;
        let mut count = false;
        // Only these sections report the partitions' statuses (asked of their workers).
        let mut needs_statuses = false;
        for slot in &self.slots {
            match slot {
                Slot::Deferred(Deferred::Info(sections, _)) => {
                    info = true;
                    count |= sections.contains(Sections::KEYSPACE);
                    needs_statuses |= [
                        Sections::STATS,
                        Sections::PARTITIONS,
                        Sections::DURABILITY,
                        Sections::LEASES,
                    ]
                    .into_iter()
                    .any(|s| sections.contains(s));
                }
                Slot::Deferred(Deferred::DbSize) => count = true,
                _ => {}
            }
        }
        if !(info || count) {
            return;
        }
        let statuses = if info && needs_statuses {
            self.shared.partitions.statuses().await
        } else {
            Vec::new()
        };
        let keys = if count {
            if self.shared.config.durability == crate::daemon::DurabilityMode::Lease {
                // A sequence's first numbers may go out before its reservation is written
                // (the resume floor): wait for what was handed out so far, so a `NEXT`
                // answered before `DBSIZE` is counted. A failing or slow partition (at most
                // 5 s) counts as it is.
                let flushed = self.shared.partitions.flush();
                let _ = tokio::time::timeout(std::time::Duration::from_secs(5), flushed).await;
            }
            let backend = Arc::clone(&self.shared.backend);
            match tokio::task::spawn_blocking(move || backend.count_sequences()).await {
                Ok(Ok(n)) => Ok(n),
                Ok(Err(e)) => Err(format!("ERR cannot count the stored sequences: {e}")),
                Err(e) => Err(format!("ERR counting the stored sequences failed: {e}")),
            }
        } else {
            Ok(0)
        };
        let mut slots = std::mem::take(&mut self.slots);
        for slot in &mut slots {
            let Slot::Deferred(deferred) = *slot else {
                continue;
            };
            let start = self.local.len();
            match (deferred, &keys) {
                (Deferred::Info(sections, proto), _) => {
                    let snap = Snapshot {
                        statuses: &statuses,
                        keys: keys.as_ref().ok().copied(),
                    };
                    let text = info::render(&self.shared, sections, &snap);
                    protocol::write_verbatim(&mut self.local, proto, text.as_bytes());
                }
                (Deferred::DbSize, Ok(n)) => {
                    protocol::write_uint(&mut self.local, *n);
                }
                (Deferred::DbSize, Err(msg)) => {
                    self.counts.errors += 1;
                    protocol::write_error(&mut self.local, msg);
                }
            }
            *slot = Slot::Local(start..self.local.len());
        }
        self.slots = slots;
    }
}
