//! The ownership driver: one task per node that makes the node's partitions follow the owner
//! keys. For each partition it keeps a [`Holding`] and carries out the [`Action`]s its
//! transitions return: open a sequencer on etcd under a new epoch, drop one whose ownership
//! is gone, or hand one over with its exact values when the Director asks (or the node
//! stops). It looks after every change of the [`ClusterView`](crate::cluster::ClusterView)
//! and every [`TICK`] (fenced writes, recovered sequencers, the lease).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::watch;

use super::node::Node;
use crate::cluster::{Action, EtcdStorage, Holding, LeaseState, Ownership, Vacant};
use crate::daemon::gate::Opening;
use crate::daemon::partitions::Partitions;
use crate::storage::{SeqStorage, SeqValue};
use crate::types::{Number, PartitionId};

/// How often the driver looks even when the view did not change.
const TICK: Duration = Duration::from_millis(50);

/// What the driver knows of one partition.
struct Slot {
    holding: Holding,
    /// The storage of the epoch it holds (opening, serving or draining).
    storage: Option<Arc<EtcdStorage>>,
    /// Draining: the exact values still to be written (a failed attempt is retried).
    exact: Option<Vec<SeqValue>>,
}

/// Runs until `stop`, then hands over every partition this node serves and returns.
pub(crate) async fn run(
    node: Arc<Node>,
    partitions: Arc<Partitions>,
    mut stop: watch::Receiver<bool>,
) {
    let n = usize::from(node.partitions);
    let mut slots: Vec<Slot> = (0..n)
        .map(|_| Slot {
            holding: Holding::NotMine,
            storage: None,
            exact: None,
        })
        .collect();
    let mut changes = node.view.changes();
    while !*stop.borrow() {
        if node.lease_state() == LeaseState::Lost {
            tracing::warn!(node = %node.id, "the node's lease is gone: dropping its partitions");
            for (p, slot) in slots.iter_mut().enumerate() {
                fence(&node, &partitions, p, slot).await;
            }
            node.renew_lease(&mut stop).await;
            continue;
        }
        for (p, slot) in slots.iter_mut().enumerate() {
            step(&node, &partitions, p, slot).await;
        }
        if wait(&mut stop, &mut changes).await.is_err() {
            break;
        }
    }
    // Stopping: no longer a sequencer, so the Director moves every partition to its next
    // owner, each handed over with its exact values as a rebalance is.
    if node.retire().await.is_ok() {
        let deadline = tokio::time::Instant::now() + RETIRE_WAIT;
        // Already stopping: a stop signal that never changes (its sender kept alive).
        let (_stopped, mut never) = watch::channel(false);
        while slots
            .iter()
            .any(|s| s.holding.serving().is_some() || s.exact.is_some())
            && tokio::time::Instant::now() < deadline
            // Nobody to hand over to (the whole cluster is stopping): in place, below.
            && node.other_sequencers()
        {
            for (p, slot) in slots.iter_mut().enumerate() {
                step(&node, &partitions, p, slot).await;
            }
            if wait(&mut never, &mut changes).await.is_err() {
                break;
            }
        }
    }
    // What is left (no other sequencer, or etcd unreachable): hand it over here, so that
    // the next owners skip nothing. A write that fails is tried again a few times; then the
    // lease's expiry frees the partition (its reservations are skipped, nothing reissued).
    for (p, slot) in slots.iter_mut().enumerate() {
        if matches!(
            slot.holding,
            Holding::Serving { .. } | Holding::Opening { .. }
        ) {
            drain(&node, &partitions, p, slot).await;
        }
        for _ in 0..STOP_RETRIES {
            if slot.exact.is_none() {
                break;
            }
            tokio::time::sleep(TICK).await;
            hand_over(&node, &partitions, p, slot).await;
        }
    }
}

/// Tries of a failed handover write when the node stops.
const STOP_RETRIES: usize = 20;

/// Longest a stopping node waits for the Director to move its partitions.
const RETIRE_WAIT: Duration = Duration::from_secs(10);

/// Until a stop, a change of the view, or [`TICK`]; `Err` when the view no longer changes
/// (its task ended): the caller stops looking.
async fn wait(
    stop: &mut watch::Receiver<bool>,
    changes: &mut watch::Receiver<u64>,
) -> Result<(), ()> {
    tokio::select! {
        _ = stop.changed() => Ok(()),
        changed = changes.changed() => changed.map_err(|_| ()),
        () = tokio::time::sleep(TICK) => Ok(()),
    }
}

/// One look at partition `p`.
async fn step(node: &Arc<Node>, partitions: &Partitions, p: usize, slot: &mut Slot) {
    let pid = PartitionId(p as u16);
    // A write refused by etcd: the partition has another owner.
    if slot
        .storage
        .as_ref()
        .is_some_and(|s| s.ownership().is_fenced())
    {
        fence(node, partitions, p, slot).await;
    }
    // Its sequencer recovered and the gate opened.
    if let Holding::Opening { epoch } = slot.holding
        && partitions.serving_epoch(p) == Some(epoch)
        && let Ok((next, _)) = slot.holding.on_opened(epoch)
    {
        slot.holding = next;
    }
    // The Director asks for it elsewhere.
    if matches!(slot.holding, Holding::Serving { .. })
        && node.view.handover(pid).is_some_and(|h| h.from == node.id)
    {
        drain(node, partitions, p, slot).await;
    }
    // A handover whose write failed: again.
    if slot.exact.is_some() {
        hand_over(node, partitions, p, slot).await;
    }
    let owner = node
        .view
        .owner(pid)
        .map(|(owner, epoch)| (owner == node.id, epoch));
    // A discard is followed by a second look, which opens the new epoch.
    for _ in 0..2 {
        let (next, action) = slot.holding.on_owner(owner);
        slot.holding = next;
        match action {
            Action::None => return,
            Action::Open { epoch } => return open(node, partitions, p, slot, epoch).await,
            Action::Discard { epoch } => discard(node, partitions, p, slot, epoch).await,
            Action::Drain { .. } => return,
        }
    }
}

/// Opens partition `p` under `epoch`.
async fn open(node: &Arc<Node>, partitions: &Partitions, p: usize, slot: &mut Slot, epoch: i64) {
    let pid = PartitionId(p as u16);
    let storage = Arc::new(EtcdStorage::new(
        Arc::clone(&node.etcd),
        node.keys.clone(),
        Ownership::new(pid, epoch),
        node.max_ops,
    ));
    slot.storage = Some(Arc::clone(&storage));
    let validity = node.validity();
    let opening = Opening {
        epoch,
        valid: Box::new(move || validity.is_valid()),
    };
    node.stats.ownership_changes.fetch_add(1, Ordering::Relaxed);
    tracing::info!(partition = p, epoch, "taking the partition over");
    let storage: Arc<dyn SeqStorage> = storage;
    if !partitions.acquire(p, storage, opening).await {
        tracing::warn!(
            partition = p,
            epoch,
            "could not open the partition; trying again"
        );
        slot.storage = None;
        if let Ok((next, _)) = slot.holding.on_open_failed(epoch) {
            slot.holding = next;
        }
    }
}

/// Drops partition `p`'s sequencer (epoch `epoch`) without writing more.
async fn discard(node: &Arc<Node>, partitions: &Partitions, p: usize, slot: &mut Slot, epoch: i64) {
    tracing::info!(
        partition = p,
        epoch,
        "the partition is no longer owned here"
    );
    node.stats.ownership_changes.fetch_add(1, Ordering::Relaxed);
    slot.storage = None;
    if !partitions
        .release(p, Arc::new(Vacant::new(PartitionId(p as u16))))
        .await
    {
        tracing::error!(
            partition = p,
            "could not replace the partition's sequencer; its gate stays closed"
        );
    }
}

/// The held epoch was fenced (or the lease lost): discard.
async fn fence(node: &Arc<Node>, partitions: &Partitions, p: usize, slot: &mut Slot) {
    let epoch = match slot.holding {
        Holding::Opening { epoch } | Holding::Serving { epoch } | Holding::Draining { epoch } => {
            epoch
        }
        _ => return,
    };
    if let Ok((next, Action::Discard { epoch })) = slot.holding.on_fenced(epoch) {
        slot.holding = next;
        discard(node, partitions, p, slot, epoch).await;
    }
}

/// Hands partition `p` over: stop answering, let the last write finish, write the exact
/// values and delete the ownership, fenced; then drop the sequencer.
async fn drain(node: &Arc<Node>, partitions: &Partitions, p: usize, slot: &mut Slot) {
    let Ok((next, Action::Drain { epoch })) = slot.holding.on_handover() else {
        return;
    };
    slot.holding = next;
    let report = partitions.drain(p).await.unwrap_or_default();
    if !report.settled {
        tracing::warn!(
            partition = p,
            epoch,
            "the partition's last write did not finish in time; handing over anyway"
        );
    }
    // A cursor is the next number never handed out; the stored value is the last one that was.
    slot.exact = Some(
        report
            .cursors
            .iter()
            .map(|c| SeqValue {
                number: Number(c.number.0.saturating_sub(1)),
                ..*c
            })
            .collect(),
    );
    hand_over(node, partitions, p, slot).await;
}

/// Writes a draining partition's exact values and deletes its ownership; on success drops
/// the sequencer. A fenced refusal drops it too (someone else owns it already); any other
/// failure leaves the write for the next try.
async fn hand_over(node: &Arc<Node>, partitions: &Partitions, p: usize, slot: &mut Slot) {
    let (Holding::Draining { epoch }, Some(exact)) = (slot.holding, slot.exact.as_ref()) else {
        slot.exact = None;
        return;
    };
    let handed = match &slot.storage {
        Some(storage) => storage.hand_over(exact).await,
        None => Ok(()),
    };
    match handed {
        Ok(()) => {
            node.stats.handovers.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                partition = p,
                epoch,
                sequences = exact.len(),
                "handed the partition over"
            );
            slot.exact = None;
            if let Ok((next, _)) = slot.holding.on_handed_over(epoch) {
                slot.holding = next;
            }
            slot.storage = None;
            partitions
                .release(p, Arc::new(Vacant::new(PartitionId(p as u16))))
                .await;
        }
        Err(e) if e.is_fenced() => {
            tracing::warn!(partition = p, epoch, error = %e, "the partition moved before its handover");
            slot.exact = None;
            fence(node, partitions, p, slot).await;
        }
        Err(e) if !e.is_retryable() => {
            // It will never be written (etcd refuses the request itself): let the partition
            // go without its exact values. Its unused reservations are skipped, never
            // reissued.
            tracing::warn!(partition = p, epoch, error = %e, "cannot hand the partition over; giving it up");
            slot.exact = None;
            let given = match &slot.storage {
                Some(storage) => storage.give_up().await,
                None => Ok(()),
            };
            if let Err(e) = given {
                tracing::warn!(partition = p, epoch, error = %e, "could not give the partition up; its lease's expiry will");
            }
            fence(node, partitions, p, slot).await;
        }
        Err(e) => {
            tracing::warn!(partition = p, epoch, error = %e, "could not hand the partition over yet; retrying");
        }
    }
}
