//! `seqd demo`: the embedded sequencer end to end — open, recover, hand out numbers, log each
//! event to the PLog, flush, wait for durability, close — with figures at the end.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use seqd::storage::{MemoryStorage, SeqStorage, SeqValue};
use seqd::{Number, Options, PLogOffset, SeqId, SeqTypes, Sequencer, WsId, WsKind};

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Transactions to run. Each one appends its event to the PLog first, which with
    /// `--durability sync` is an fsync of its own: that, not seqd, bounds the demo's rate.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
    transactions: u64,
    /// Workspaces, used round-robin.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    workspaces: u64,
    /// Where numbers are kept.
    #[arg(long, value_enum, default_value_t = Store::default())]
    store: Store,
    /// Data directory for `--store rocksdb`.
    #[arg(long, default_value = "./seqd-data")]
    data_dir: PathBuf,
    /// For `--store rocksdb`: `sync` fsyncs every write; `nosync` leaves writes in the OS
    /// (they survive a process crash, not power loss) and syncs once at the end.
    #[arg(long, value_enum, default_value_t = DemoDurability::Sync)]
    durability: DemoDurability,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum DemoDurability {
    Sync,
    Nosync,
}

#[derive(Clone, Copy, Debug, Default, ValueEnum)]
enum Store {
    /// RocksDB in --data-dir: numbers survive restarts.
    #[cfg_attr(feature = "rocksdb", default)]
    #[cfg(feature = "rocksdb")]
    Rocksdb,
    /// In memory: gone when the process exits.
    #[cfg_attr(not(feature = "rocksdb"), default)]
    Memory,
}

const KIND: WsKind = WsKind(1);
const RECORD_ID: SeqId = SeqId(1);
const INVOICE: SeqId = SeqId(2);

pub fn run(args: &DemoArgs) -> Result<(), Box<dyn std::error::Error>> {
    match args.store {
        Store::Memory => drive(Arc::new(MemoryStorage::new()), args, "memory"),
        #[cfg(feature = "rocksdb")]
        Store::Rocksdb => {
            use seqd::storage::{Durability, RocksDbOptions, RocksDbStorage};
            let durability = match args.durability {
                DemoDurability::Sync => Durability::Sync,
                DemoDurability::Nosync => Durability::NoSync,
            };
            let options = RocksDbOptions {
                durability,
                ..RocksDbOptions::default()
            };
            let db = RocksDbStorage::open_with(&args.data_dir, options)?;
            let what = format!(
                "rocksdb at {} ({:?})",
                args.data_dir.display(),
                args.durability
            );
            drive(Arc::new(db.partition(seqd::PartitionId(0))), args, &what)?;
            Ok(db.sync()?)
        }
    }
}

/// Storage that also keeps a PLog the demo can append its events to.
pub trait DemoLog: SeqStorage {
    fn log(
        &self,
        offset: PLogOffset,
        values: &[SeqValue],
    ) -> Result<(), Box<dyn std::error::Error>>;
}

impl DemoLog for MemoryStorage {
    fn log(
        &self,
        offset: PLogOffset,
        values: &[SeqValue],
    ) -> Result<(), Box<dyn std::error::Error>> {
        Ok(self.append(offset, values)?)
    }
}

#[cfg(feature = "rocksdb")]
impl DemoLog for seqd::storage::RocksDbPartition {
    fn log(
        &self,
        offset: PLogOffset,
        values: &[SeqValue],
    ) -> Result<(), Box<dyn std::error::Error>> {
        Ok(self.append(offset, values)?)
    }
}

fn drive<S: DemoLog>(
    storage: Arc<S>,
    args: &DemoArgs,
    what: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let options = Options {
        seq_types: SeqTypes::new().with(KIND, RECORD_ID, Number(1)).with(
            KIND,
            INVOICE,
            Number(1000),
        ),
        ..Options::default()
    };
    let opened = Instant::now();
    let mut seq = Sequencer::open(Arc::clone(&storage), options)?;
    seq.wait_ready(Duration::from_secs(60))?;
    println!(
        "seqd demo: {what}; recovered in {:?}, resuming at offset {}",
        opened.elapsed(),
        seq.next_offset()
    );

    let t0 = Instant::now();
    let mut last = None;
    for i in 0..args.transactions {
        let ws = WsId(i % args.workspaces);
        let mut tx = seq.start_timeout(KIND, ws, Duration::from_secs(60))?;
        let offset = tx.offset();
        let id = tx.next(RECORD_ID)?;
        let invoice = tx.next(INVOICE)?;
        if i < 3 || i + 1 == args.transactions {
            println!(
                "  offset {offset:>9}  workspace {ws:>6}  record id {id:>8}  invoice {invoice:>8}"
            );
        } else if i == 3 {
            println!("  ...");
        }
        storage.log(
            offset,
            &[
                SeqValue {
                    ws,
                    seq: RECORD_ID,
                    number: id,
                },
                SeqValue {
                    ws,
                    seq: INVOICE,
                    number: invoice,
                },
            ],
        )?;
        last = Some(tx.flush());
    }
    let issued = t0.elapsed();
    if let Some(c) = last {
        seq.wait_durable(c, Duration::from_secs(60))?;
    }
    let durable = t0.elapsed();
    let st = seq.stats();
    seq.close()?;
    let per_sec = |d: Duration| args.transactions as f64 / d.as_secs_f64().max(1e-9);
    println!(
        "{} transactions ({} numbers) over {} workspaces: {:.0} tx/s in memory, {:.0} tx/s durable",
        args.transactions,
        2 * args.transactions,
        args.workspaces,
        per_sec(issued),
        per_sec(durable)
    );
    println!(
        "flusher: {} batches, {} values, largest batch {}, mean write {:?}",
        st.flush_batches, st.flushed_values, st.largest_batch, st.mean_flush_latency
    );
    Ok(())
}
