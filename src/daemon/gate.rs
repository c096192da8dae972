//! [`Gate`]: whether this node may answer for a partition now (cluster mode). Open while the
//! partition is owned under an epoch, its sequencer has recovered, and the node's lease
//! deadline has not passed; checked per request by the connection threads, without a lock.

use arc_swap::ArcSwapOption;
use std::sync::Arc;

/// What an open gate holds.
pub(crate) struct Opening {
    /// The partition epoch the node answers under.
    pub(crate) epoch: i64,
    /// Whether the node's lease is still valid (its lease deadline has not passed).
    pub(crate) valid: Box<dyn Fn() -> bool + Send + Sync>,
}

/// A partition's gate; closed when created.
#[derive(Default)]
pub(crate) struct Gate {
    open: ArcSwapOption<Opening>,
}

impl Gate {
    /// The epoch requests may be answered under now, if any.
    #[inline]
    pub(crate) fn serving(&self) -> Option<i64> {
        let open = self.open.load();
        match open.as_deref() {
            Some(o) if (o.valid)() => Some(o.epoch),
            _ => None,
        }
    }

    pub(crate) fn open(&self, opening: Opening) {
        self.open.store(Some(Arc::new(opening)));
    }

    pub(crate) fn close(&self) {
        self.open.store(None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[test]
    fn serves_only_while_open_and_valid() {
        let gate = Gate::default();
        assert_eq!(gate.serving(), None);
        let valid = Arc::new(AtomicBool::new(true));
        let v = Arc::clone(&valid);
        gate.open(Opening {
            epoch: 9,
            valid: Box::new(move || v.load(Ordering::Relaxed)),
        });
        assert_eq!(gate.serving(), Some(9));
        valid.store(false, Ordering::Relaxed);
        assert_eq!(gate.serving(), None, "past the deadline");
        valid.store(true, Ordering::Relaxed);
        gate.close();
        assert_eq!(gate.serving(), None);
    }
}
