//! [`Holding`]: what a node does with one partition, as an explicit state with checked
//! transitions. The node feeds it what it learns — the owner key from its [`ClusterView`],
//! its sequencer opened, a handover asked for, a write fenced, its values handed over — and
//! carries out the [`Action`] each transition returns.
//!
//! ```text
//!              owner key = me @E                 opened(E)
//!   NotMine ─────────────────────────▶ Opening ───────────▶ Serving
//!      ▲                                  │                  │   │ handover asked / stop
//!      │ owner key ≠ me @E                │ fenced           │   ▼
//!      │ (close, write nothing)           ▼        fenced    │ Draining ──handed over──▶ Released
//!      └──────────────────────────────  Fenced ◀─────────────┘                              │
//!                                          ▲ owner key ≠ me@E ─────────────────────────────┘
//! ```
//!
//! A partition is answered only in `Serving`, and only under the epoch the owner key had when
//! it was opened: a new owner key for this same node (a later incarnation) is a new epoch, so
//! the old sequencer is closed and a new one opened from etcd — never old memory reused.
//!
//! [`ClusterView`]: super::ClusterView

/// What a node does with one partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Holding {
    /// Owned by another node, or by none: requests are forwarded.
    NotMine,
    /// Placed on this node under `epoch`; its sequencer is opening from etcd.
    Opening {
        /// The partition epoch.
        epoch: i64,
    },
    /// Answered here under `epoch`.
    Serving {
        /// The partition epoch.
        epoch: i64,
    },
    /// Handing over under `epoch`: no new numbers; the exact values are being written and
    /// the owner key deleted.
    Draining {
        /// The partition epoch.
        epoch: i64,
    },
    /// Handed over: the owner key under `epoch` was deleted by this node.
    Released {
        /// The epoch it was handed over from.
        epoch: i64,
    },
    /// etcd refused a write under `epoch`: another node owns the partition. Nothing more is
    /// written or answered under it.
    Fenced {
        /// The epoch it lost.
        epoch: i64,
    },
}

/// What the node must do after a transition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing.
    None,
    /// Open the partition's sequencer on etcd under `epoch`.
    Open {
        /// The partition epoch.
        epoch: i64,
    },
    /// Stop answering; write the exact values and delete the owner key, fenced by `epoch`.
    Drain {
        /// The partition epoch.
        epoch: i64,
    },
    /// Drop the sequencer opened or serving under `epoch` without writing anything (its
    /// writes would be refused).
    Discard {
        /// The partition epoch.
        epoch: i64,
    },
}

/// A transition that does not apply to the current state: an event about another epoch, or
/// out of order. The state is left as it was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stale {
    /// The state the event found.
    pub state: Holding,
}

impl Holding {
    /// The epoch requests may be answered under, if any.
    pub fn serving(self) -> Option<i64> {
        match self {
            Holding::Serving { epoch } => Some(epoch),
            _ => None,
        }
    }

    /// The owner key now says `owner` — `Some((is_me, epoch))` — or that nobody owns the
    /// partition (`None`).
    pub fn on_owner(self, owner: Option<(bool, i64)>) -> (Holding, Action) {
        match (self, owner) {
            // Placed here under a new epoch: whatever ran under another one goes.
            (Holding::Opening { epoch } | Holding::Serving { epoch }, Some((true, e)))
                if e == epoch =>
            {
                (self, Action::None)
            }
            // Draining goes on; a released or fenced epoch seen again is the view lagging
            // behind etcd (that key is gone): never reopened.
            (
                Holding::Draining { epoch }
                | Holding::Released { epoch }
                | Holding::Fenced { epoch },
                Some((true, e)),
            ) if e == epoch => (self, Action::None),
            (current, Some((true, e))) => {
                let discard = current.live_epoch().filter(|old| *old != e);
                match discard {
                    // The new sequencer opens once the old one is gone: the node carries out
                    // the discard, then feeds the owner key again.
                    Some(old) => (
                        Holding::Fenced { epoch: old },
                        Action::Discard { epoch: old },
                    ),
                    None => (Holding::Opening { epoch: e }, Action::Open { epoch: e }),
                }
            }
            // Owned elsewhere or by nobody.
            (current, _) => match current.live_epoch() {
                Some(old) => (Holding::NotMine, Action::Discard { epoch: old }),
                None => (Holding::NotMine, Action::None),
            },
        }
    }

    /// The sequencer opened under `epoch` is ready.
    pub fn on_opened(self, epoch: i64) -> Result<(Holding, Action), Stale> {
        match self {
            Holding::Opening { epoch: e } if e == epoch => {
                Ok((Holding::Serving { epoch }, Action::None))
            }
            state => Err(Stale { state }),
        }
    }

    /// The sequencer for `epoch` could not be opened: back to not holding it, so that the
    /// next look at the owner key tries again.
    pub fn on_open_failed(self, epoch: i64) -> Result<(Holding, Action), Stale> {
        match self {
            Holding::Opening { epoch: e } if e == epoch => Ok((Holding::NotMine, Action::None)),
            state => Err(Stale { state }),
        }
    }

    /// The Director asked for a handover, or the node is stopping.
    pub fn on_handover(self) -> Result<(Holding, Action), Stale> {
        match self {
            Holding::Serving { epoch } => {
                Ok((Holding::Draining { epoch }, Action::Drain { epoch }))
            }
            // Not serving yet: nothing was handed out under it; drop it and let go.
            Holding::Opening { epoch } => {
                Ok((Holding::Draining { epoch }, Action::Drain { epoch }))
            }
            state => Err(Stale { state }),
        }
    }

    /// The exact values were written and the owner key deleted under `epoch`.
    pub fn on_handed_over(self, epoch: i64) -> Result<(Holding, Action), Stale> {
        match self {
            Holding::Draining { epoch: e } if e == epoch => {
                Ok((Holding::Released { epoch }, Action::None))
            }
            state => Err(Stale { state }),
        }
    }

    /// etcd refused a write under `epoch` (or the node's lease was lost).
    pub fn on_fenced(self, epoch: i64) -> Result<(Holding, Action), Stale> {
        match self.live_epoch() {
            Some(e) if e == epoch => Ok((Holding::Fenced { epoch }, Action::Discard { epoch })),
            _ => Err(Stale { state: self }),
        }
    }

    /// The epoch of a sequencer this state keeps open.
    fn live_epoch(self) -> Option<i64> {
        match self {
            Holding::Opening { epoch }
            | Holding::Serving { epoch }
            | Holding::Draining { epoch } => Some(epoch),
            Holding::NotMine | Holding::Released { .. } | Holding::Fenced { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placed_opened_served_handed_over() {
        let (h, a) = Holding::NotMine.on_owner(Some((true, 7)));
        assert_eq!(
            (h, a),
            (Holding::Opening { epoch: 7 }, Action::Open { epoch: 7 })
        );
        assert_eq!(h.serving(), None);
        let (h, _) = h.on_opened(7).unwrap();
        assert_eq!(h.serving(), Some(7));
        // The same owner key seen again changes nothing.
        assert_eq!(h.on_owner(Some((true, 7))), (h, Action::None));
        let (h, a) = h.on_handover().unwrap();
        assert_eq!(a, Action::Drain { epoch: 7 });
        assert_eq!(h.serving(), None, "a draining partition answers nothing");
        let (h, _) = h.on_handed_over(7).unwrap();
        assert_eq!(h, Holding::Released { epoch: 7 });
        // Its key deleted, then placed elsewhere.
        assert_eq!(h.on_owner(None), (Holding::NotMine, Action::None));
        assert_eq!(
            h.on_owner(Some((false, 9))),
            (Holding::NotMine, Action::None)
        );
    }

    #[test]
    fn a_new_epoch_for_this_node_discards_the_old_sequencer_first() {
        let serving = Holding::Serving { epoch: 7 };
        let (h, a) = serving.on_owner(Some((true, 12)));
        assert_eq!(a, Action::Discard { epoch: 7 });
        assert_eq!(h.serving(), None);
        let (h, a) = h.on_owner(Some((true, 12)));
        assert_eq!(
            (h, a),
            (Holding::Opening { epoch: 12 }, Action::Open { epoch: 12 })
        );
        // A lagging view showing a fenced or released epoch again does not reopen it.
        let fenced = Holding::Fenced { epoch: 12 };
        assert_eq!(fenced.on_owner(Some((true, 12))), (fenced, Action::None));
        let released = Holding::Released { epoch: 12 };
        assert_eq!(
            released.on_owner(Some((true, 12))),
            (released, Action::None)
        );
        // The old epoch's late news is stale.
        assert!(h.on_opened(7).is_err());
        assert!(h.on_fenced(7).is_err());
    }

    #[test]
    fn fenced_or_moved_away_discards_without_writing() {
        let serving = Holding::Serving { epoch: 7 };
        let (h, a) = serving.on_fenced(7).unwrap();
        assert_eq!(
            (h, a),
            (Holding::Fenced { epoch: 7 }, Action::Discard { epoch: 7 })
        );
        assert_eq!(h.serving(), None);
        assert!(h.on_handover().is_err());
        let (h, a) = Holding::Serving { epoch: 7 }.on_owner(Some((false, 9)));
        assert_eq!((h, a), (Holding::NotMine, Action::Discard { epoch: 7 }));
        let (h, a) = Holding::Opening { epoch: 7 }.on_owner(None);
        assert_eq!((h, a), (Holding::NotMine, Action::Discard { epoch: 7 }));
    }

    #[test]
    fn out_of_order_events_leave_the_state() {
        let h = Holding::NotMine;
        assert_eq!(h.on_opened(3), Err(Stale { state: h }));
        assert_eq!(h.on_handover(), Err(Stale { state: h }));
        assert_eq!(h.on_handed_over(3), Err(Stale { state: h }));
        let d = Holding::Draining { epoch: 3 };
        assert!(d.on_handed_over(4).is_err());
        assert!(d.on_opened(3).is_err());
        let opening = Holding::Opening { epoch: 3 };
        assert_eq!(
            opening.on_open_failed(3),
            Ok((Holding::NotMine, Action::None))
        );
        assert!(opening.on_open_failed(4).is_err());
        assert_eq!(
            Holding::NotMine.on_owner(Some((true, 3))),
            (opening, Action::Open { epoch: 3 }),
            "tried again"
        );
    }
}
