//! seqd hands out numbers that only go up — record IDs, log offsets, invoice numbers,
//! transaction versions — for many tenants at once, from memory, and persists them in the
//! background without ever handing the same number out twice.
//!
//! This crate is the embeddable core: one [`Sequencer`] per partition, running one
//! *sequencing transaction* per command of an event-sourced application. The application's
//! partition log (PLog) is the source of truth; the sequencer's storage is a checkpoint that
//! makes recovery replay only the tail of the log.
//!
//! ```
//! use seqd::{Sequencer, Options, SeqTypes, WsKind, WsId, SeqId, Number};
//! use seqd::storage::MemoryStorage;
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! let storage = Arc::new(MemoryStorage::new());
//! let options = Options {
//!     seq_types: SeqTypes::new()
//!         .with(WsKind(1), SeqId(5), Number(200_001))
//!         .with(WsKind(1), SeqId(4), Number(1)),
//!     ..Options::default()
//! };
//! let mut seq = Sequencer::open(Arc::clone(&storage), options)?;
//! let mut tx = seq.start_timeout(WsKind(1), WsId(42), Duration::from_secs(5))?;
//! let offset = tx.offset();
//! let id = tx.next(SeqId(5))?;                // 200001
//! let block = tx.next_n(SeqId(4), 1000)?;     // 1..=1000 in one step
//! // ... write the event (offset, id, block) to the PLog, then:
//! storage.append(offset, &[
//!     seqd::storage::SeqValue { ws: WsId(42), seq: SeqId(5), number: id },
//!     seqd::storage::SeqValue { ws: WsId(42), seq: SeqId(4), number: Number(block.0 + 999) },
//! ])?;
//! tx.flush();                                 // commit: no I/O
//! seq.close()?;                               // bounded time, even if storage fails
//! # assert_eq!(id, Number(200_001));
//! # assert_eq!(block, Number(1));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The design — state machine, invariants I1–I9 and why they hold — is in `design/` of the
//! source tree.

#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod actualizer;
mod cache;
mod clock;
#[cfg(feature = "cluster")]
pub mod cluster;
#[cfg(feature = "daemon")]
pub mod daemon;
mod error;
mod flusher;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
#[cfg(feature = "daemon")]
mod hashslot;
mod options;
mod sequencer;
mod stats;
pub mod storage;
mod types;
mod util;
pub mod version;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{BusyReason, Error, Result};
pub use flusher::{FlushHandle, FlushNow};
pub use options::{Options, ProgressHook, RetryPolicy};
pub use sequencer::{Closing, Committed, DurabilityWatcher, Sequencer, Transaction};
pub use stats::{SequencerState, Stats};
pub use types::{Number, PLogOffset, PartitionId, SeqId, SeqTypes, WsId, WsKind};
