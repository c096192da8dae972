//! The model-based test: random operations against a real sequencer on `FaultyStorage`,
//! compared with a plain model, with invariants I1–I9 checked after every step.
//!
//! The application is simulated faithfully: a transaction's event is appended to the PLog
//! before `flush`; a failed append (its offset is taken) means `actualize`. Because every
//! committed transaction is in the PLog, the sequencer's state is predictable exactly: after
//! any actualization, crash or storage fault it equals the `max` over the PLog.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use seqd::storage::{FaultOps, FaultyStorage, SeqStorage, SeqValue, StorageError};
use seqd::{
    Error, FlushNow, Number, Options, PLogOffset, RetryPolicy, SeqId, SeqTypes, Sequencer, WsId,
    WsKind,
};
use seqd_model::{Model, take};

pub const KIND: WsKind = WsKind(7);
/// (sequence, initial value): a plain one, one starting high, one about to run out.
pub const SEQS: [(SeqId, u64); 3] = [(SeqId(1), 1), (SeqId(2), 1000), (SeqId(3), u64::MAX - 20)];
pub const CACHE: usize = 2;
pub const MAX_UNFLUSHED: usize = 8;
const CLOSE_TIMEOUT: Duration = Duration::from_millis(500);

/// Where the sequencer's storage lives and how the "application" logs events.
pub trait Backend {
    type S: SeqStorage + Clone;
    /// The storage as it is now (after any reopen).
    fn storage(&self) -> Self::S;
    /// Appends an event to the PLog (the application's log: it survives crashes).
    fn append(&self, offset: PLogOffset, values: &[SeqValue]) -> Result<(), StorageError>;
    /// Called with no sequencer open: simulate the process dying and starting again.
    fn restart(&mut self);
}

/// The in-memory backend: restarting keeps the storage (it stands for a disk).
pub struct Memory(pub Arc<seqd::storage::MemoryStorage>);

impl Memory {
    pub fn new() -> Self {
        Memory(Arc::new(seqd::storage::MemoryStorage::new()))
    }
}

impl Backend for Memory {
    type S = Arc<seqd::storage::MemoryStorage>;
    fn storage(&self) -> Self::S {
        Arc::clone(&self.0)
    }
    fn append(&self, offset: PLogOffset, values: &[SeqValue]) -> Result<(), StorageError> {
        self.0.append(offset, values)
    }
    fn restart(&mut self) {}
}

#[derive(Clone, Debug)]
pub enum End {
    /// Log the event, then flush.
    Flush,
    /// The PLog write failed: actualize.
    Actualize,
    /// Drop the transaction unfinished.
    Drop,
}

#[derive(Clone, Debug)]
pub enum Faults {
    None,
    WritesForever,
    ReadsForever,
    Rate(u8, u64),
}

#[derive(Clone, Debug)]
pub enum Op {
    Tx {
        ws: u64,
        steps: Vec<(usize, u64)>,
        end: End,
    },
    Evict(u64),
    Faults(Faults),
    /// Let `n` more writes land, then crash (the crash happens later, in the background).
    CrashAfter(u64),
    /// Crash now and reopen on the same storage.
    Reopen,
    /// Another writer's event lands in the PLog at the next free offset.
    Foreign {
        ws: u64,
        seq: usize,
        number: u64,
    },
    /// Without faults: wait until everything is durable and compare storage with the model.
    Sync,
    /// Write the pending batch on this thread (`FlushHandle::flush_now`), as the daemon's
    /// connection threads do.
    FlushNow,
}

pub fn op_strategy() -> impl Strategy<Value = Op> {
    let end = prop_oneof![6 => Just(End::Flush), 1 => Just(End::Actualize), 1 => Just(End::Drop)];
    let tx = (
        0..6u64,
        prop::collection::vec((0..3usize, 1..6u64), 0..4),
        end,
    )
        .prop_map(|(ws, steps, end)| Op::Tx { ws, steps, end });
    let faults = prop_oneof![
        3 => Just(Faults::None),
        1 => Just(Faults::WritesForever),
        1 => Just(Faults::ReadsForever),
        1 => (1..60u8, any::<u64>()).prop_map(|(p, s)| Faults::Rate(p, s)),
    ];
    let number = prop_oneof![0..2000u64, (u64::MAX - 30)..=u64::MAX];
    prop_oneof![
        20 => tx,
        2 => (0..6u64).prop_map(Op::Evict),
        3 => faults.prop_map(Op::Faults),
        1 => (0..4u64).prop_map(Op::CrashAfter),
        2 => Just(Op::Reopen),
        1 => (0..6u64, 0..3usize, number).prop_map(|(ws, seq, number)| Op::Foreign { ws, seq, number }),
        2 => Just(Op::Sync),
        3 => Just(Op::FlushNow),
    ]
}

pub fn options() -> Options {
    let mut types = SeqTypes::new();
    for (seq, initial) in SEQS {
        types = types.with(KIND, seq, Number(initial));
    }
    Options {
        seq_types: types,
        cache_capacity: CACHE,
        max_unflushed: MAX_UNFLUSHED,
        retry: RetryPolicy {
            base: Duration::from_micros(100),
            cap: Duration::from_millis(1),
            max_attempts: 3,
            ..RetryPolicy::default()
        },
        close_timeout: CLOSE_TIMEOUT,
        ..Options::default()
    }
}

pub struct Harness<B: Backend> {
    backend: B,
    /// `None` only while restarting, so the old storage handle is gone before the new opens.
    faulty: Option<Arc<FaultyStorage<B::S>>>,
    seq: Option<Sequencer>,
    faults: Faults,
    crash_armed: bool,
    model: Model<Key>,
    pub committed: u64,
}

/// A key of the model: (workspace, index into `SEQS`).
type Key = (u64, usize);

impl<B: Backend> Harness<B> {
    pub fn new(backend: B) -> Self {
        let faulty = Arc::new(FaultyStorage::new(backend.storage()));
        let mut seq = Sequencer::open(Arc::clone(&faulty), options()).expect("open");
        // Recovery must finish before the first operation, or it races the model.
        seq.wait_ready(Duration::from_secs(10))
            .expect("recovery without faults");
        Self {
            backend,
            faulty: Some(faulty),
            seq: Some(seq),
            faults: Faults::None,
            crash_armed: false,
            model: Model::new(),
            committed: 0,
        }
    }

    fn faulty(&self) -> &Arc<FaultyStorage<B::S>> {
        self.faulty
            .as_ref()
            .expect("storage is open between operations")
    }

    fn faults_on(&self) -> bool {
        !matches!(self.faults, Faults::None) || self.crash_armed || self.faulty().is_crashed()
    }

    fn seq(&mut self) -> &mut Sequencer {
        self.seq
            .as_mut()
            .expect("a sequencer is open between operations")
    }

    pub fn apply(&mut self, op: &Op) {
        match op {
            Op::Tx { ws, steps, end } => self.tx(*ws, steps, end),
            Op::Evict(ws) => {
                self.seq().evict(WsId(*ws));
            }
            Op::Faults(f) => self.set_faults(f.clone()),
            Op::CrashAfter(n) => {
                self.faulty().crash_after_writes(*n);
                self.crash_armed = true;
            }
            Op::Reopen => self.reopen(),
            Op::Foreign { ws, seq, number } => {
                let offset = self.model.plog_last() + 1;
                let v = SeqValue {
                    ws: WsId(*ws),
                    seq: SEQS[*seq].0,
                    number: Number(*number),
                };
                self.backend
                    .append(PLogOffset(offset), &[v])
                    .expect("foreign append");
                self.model.foreign(vec![((*ws, *seq), *number)]);
            }
            Op::Sync => self.sync(),
            Op::FlushNow => self.flush_now(),
        }
        self.check_invariants();
    }

    fn flush_now(&mut self) {
        let seq = self.seq();
        let before = seq.next_offset();
        let outcome = seq.flush_handle().flush_now();
        if outcome == FlushNow::Written {
            // This thread is the only one committing: the batch held every commit so far.
            assert!(
                self.seq().flushed_offset().0 + 1 >= before.0,
                "a caller's write left commits before it unflushed: {:?} < {:?}",
                self.seq().flushed_offset(),
                before
            );
        }
        if !self.faults_on() {
            assert_ne!(outcome, FlushNow::Failed, "a write failed without faults");
        }
    }

    fn set_faults(&mut self, f: Faults) {
        self.faulty().heal();
        if self.crash_armed {
            // heal() cleared an armed crash too.
            self.crash_armed = false;
        }
        match &f {
            Faults::None => {}
            Faults::WritesForever => {
                self.faulty().limit_to(FaultOps::WRITES);
                self.faulty().fail_forever(true, true);
            }
            Faults::ReadsForever => {
                self.faulty().limit_to(FaultOps::READS);
                self.faulty().fail_forever(true, true);
            }
            Faults::Rate(p, seed) => self.faulty().fail_rate(f64::from(*p) / 100.0, *seed),
        }
        self.faults = f;
    }

    fn tx(&mut self, ws: u64, steps: &[(usize, u64)], end: &End) {
        let faults_on = self.faults_on();
        let wait = if faults_on {
            Duration::from_millis(2)
        } else {
            Duration::from_secs(10)
        };
        let seq = self.seq.as_mut().expect("open");
        let mut tx = match seq.start_timeout(KIND, WsId(ws), wait) {
            Ok(tx) => tx,
            Err(Error::Busy { .. }) if faults_on => return,
            Err(e) => panic!("start failed without faults: {e}"),
        };
        // The flusher may have given up on a failing write and actualized on its own, picking
        // up foreign events up to the offset: only then does its view differ from ours.
        self.model.resync(tx.offset().0);
        assert_eq!(tx.offset().0, self.model.expected_offset(), "I5: offset");
        let mut mine: BTreeMap<usize, u64> = BTreeMap::new();
        for &(s, n) in steps {
            let (seq_id, initial) = SEQS[s];
            let last = mine
                .get(&s)
                .copied()
                .unwrap_or_else(|| self.model.last(&(ws, s)));
            match (tx.next_n(seq_id, n), take(last, initial, n)) {
                (Ok(first), Some((f, l))) => {
                    assert_eq!(first.0, f, "next_n({seq_id}, {n}) on ws {ws}");
                    mine.insert(s, l);
                }
                (Err(Error::Exhausted { .. }), None) => {}
                (Err(Error::Storage(_)), _) if faults_on => {
                    tx.actualize();
                    self.model.actualized();
                    return;
                }
                (got, want) => {
                    panic!("next_n({seq_id}, {n}) on ws {ws}: got {got:?}, model {want:?}")
                }
            }
        }
        match end {
            End::Flush => {
                let values: Vec<SeqValue> = mine
                    .iter()
                    .map(|(&s, &l)| SeqValue {
                        ws: WsId(ws),
                        seq: SEQS[s].0,
                        number: Number(l),
                    })
                    .collect();
                if self.backend.append(tx.offset(), &values).is_err() {
                    // The offset is taken (a foreign event): the application actualizes.
                    assert!(
                        self.model.foreign_pending(),
                        "append failed without a foreign event"
                    );
                    tx.actualize();
                    self.model.actualized();
                    return;
                }
                let offset = tx.offset().0;
                tx.flush();
                self.committed += 1;
                self.model
                    .committed(offset, mine.iter().map(|(&s, &l)| ((ws, s), l)).collect());
            }
            End::Actualize => {
                tx.actualize();
                self.model.actualized();
            }
            End::Drop => {
                drop(tx);
                self.model.actualized();
            }
        }
    }

    fn reopen(&mut self) {
        self.faulty().crash();
        let t0 = Instant::now();
        drop(self.seq.take());
        assert!(
            t0.elapsed() < CLOSE_TIMEOUT + Duration::from_secs(2),
            "I8: dropping a sequencer on crashed storage took {:?}",
            t0.elapsed()
        );
        self.faulty = None;
        self.backend.restart();
        self.faulty = Some(Arc::new(FaultyStorage::new(self.backend.storage())));
        self.faults = Faults::None;
        self.crash_armed = false;
        let mut seq = Sequencer::open(Arc::clone(self.faulty()), options()).expect("reopen");
        seq.wait_ready(Duration::from_secs(10))
            .expect("recovery without faults");
        self.seq = Some(seq);
        self.model.actualized();
    }

    fn sync(&mut self) {
        if self.faults_on() {
            return;
        }
        let expected = self.model.expected_offset();
        let seq = self.seq.as_mut().expect("open");
        seq.wait_ready(Duration::from_secs(10))
            .expect("ready without faults");
        let deadline = Instant::now() + Duration::from_secs(10);
        while seq.flushed_offset().0 + 1 < expected {
            assert!(
                Instant::now() < deadline,
                "not durable without faults: {:?}",
                seq.stats()
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        if self.model.foreign_pending() {
            return;
        }
        let storage = self.backend.storage();
        for (&(ws, s), &n) in self.model.view() {
            let stored = storage.read_numbers(WsId(ws), &[SEQS[s].0]).expect("read")[0];
            assert_eq!(stored.0, n, "durable number of ws {ws} seq {s}");
        }
    }

    /// Invariants that hold after every operation, faults or not.
    pub fn check_invariants(&mut self) {
        let stats = self.seq().stats();
        assert!(stats.resident_workspaces <= CACHE, "I7: {stats:?}");
        assert!(
            stats.unflushed <= MAX_UNFLUSHED + SEQS.len(),
            "I7: {stats:?}"
        );
        // I6: the checkpoint never runs ahead of the values it covers.
        let storage = self.backend.storage();
        let checkpoint = storage.read_next_offset().expect("read checkpoint");
        assert!(
            checkpoint.0 <= self.model.plog_last() + 1,
            "checkpoint {checkpoint} beyond the PLog"
        );
        let mut covered: HashMap<(WsId, SeqId), u64> = HashMap::new();
        storage
            .replay(PLogOffset(1), &mut |o, values| {
                if o < checkpoint {
                    for v in values {
                        let m = covered.entry((v.ws, v.seq)).or_insert(0);
                        *m = (*m).max(v.number.0);
                    }
                }
                Ok(())
            })
            .expect("replay");
        for ((ws, seq), n) in covered {
            let stored = storage.read_numbers(ws, &[seq]).expect("read")[0].0;
            assert!(
                stored >= n,
                "I6: checkpoint {checkpoint} covers {ws}/{seq}={n} but storage has {stored}"
            );
        }
    }

    /// Applies `ops` to a fresh harness over `backend`, then [`finish`](Self::finish)es.
    pub fn run(backend: B, ops: &[Op]) {
        let mut h = Harness::new(backend);
        for op in ops {
            h.apply(op);
        }
        h.finish();
    }

    /// Ends the run: heal, let it settle, check everything is durable, close cleanly.
    pub fn finish(mut self) {
        self.set_faults(Faults::None);
        if self.faulty().is_crashed() {
            self.reopen();
        }
        self.sync();
        self.check_invariants();
        let seq = self.seq.take().expect("open");
        seq.close().expect("clean close without faults");
    }
}

/// Proptest cases: `PROPTEST_CASES` if set, else `default`.
pub fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
