//! `Sequencer` over `FaultyStorage<MemoryStorage>`, driven by an operation sequence decoded from
//! the input and compared after every step with the reference model (`seqd-model`, which the
//! proptest harness in `tests/common/model.rs` uses too). Beyond that harness's operations: an
//! open workspace kind, `peek`, operator `actualize`, more fault kinds and out-of-range
//! arguments.
//!
//! The application is simulated faithfully: a transaction's event is appended to the PLog
//! before `flush`; a failed append (its offset is taken) means `actualize`. So after any
//! actualization, crash or fault the sequencer's numbers equal the `max` over the PLog, and
//! the model predicts every number exactly. Checked: I1/I2 (numbers strictly increase per
//! (ws, seq) and are never reissued across actualize, drop, crash and reopen), I3 (a
//! discarded transaction's numbers and offset come back), I4 (floor), I5 (offsets), I6
//! (the checkpoint never covers a value storage lacks), I7 (cache and unflushed bounds), I8
//! (dropping on crashed storage is bounded), I9 (`Exhausted`, never a wrap), durability after
//! `Sync`, and a final reopen that must rebuild exactly the model's numbers.
//!
//! Input: byte 0 picks the clock (bit 0: `ManualClock`, so retry backoff takes no time) and
//! the flush interval (bit 1: zero, else 50 µs); then operations, one tag byte each
//! (`tag % 32`) followed by its arguments (see `decode`); a missing byte reads as 0. At most
//! `MAX_OPS` operations run. No real time passes per operation except short waits for a
//! sequencer that may legitimately be busy while faults are on (`BUSY_WAIT`).
//!
//! `SEQD_FUZZ_TRACE=1` prints the decoded operations (to read a crash artifact).

#![no_main]

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use seqd_model::{Model, take};
use seqd::storage::{FaultOps, FaultyStorage, MemoryStorage, SeqStorage, SeqValue};
use seqd::{
    BusyReason, Clock, Error, ManualClock, Number, Options, PLogOffset, RetryPolicy, SeqId,
    SeqTypes, Sequencer, SystemClock, WsId, WsKind,
};

/// A kind with three configured sequences: a plain one, one starting high, one about to run
/// out. Sequence 9 does not exist in it.
const CLOSED: WsKind = WsKind(7);
const CLOSED_SEQS: [(u16, u64); 3] = [(1, 1), (2, 1000), (3, u64::MAX - 20)];
const UNKNOWN_SEQ: u16 = 9;
/// An open kind (every `SeqId` exists, from `OPEN_INITIAL`), where sequence 7 has its own
/// initial value. The ids the operations use:
const OPEN: WsKind = WsKind(8);
const OPEN_SEQS: [u16; 4] = [0, 7, 9, 65535];
const OPEN_INITIAL: u64 = 10;
const OPEN_SEQ7_INITIAL: u64 = 1000;
/// Workspaces: the first four of the closed kind, the rest of the open one.
const WORKSPACES: [u64; 6] = [0, 1, 2, 3, 100, 101];

const CACHE: usize = 2;
const MAX_UNFLUSHED: usize = 8;
const MAX_STEPS: usize = 4;
const MAX_OPS: usize = 64;
const CLOSE_TIMEOUT: Duration = Duration::from_millis(500);
/// How long a start may wait while faults are on (`Busy` is then a fine answer).
const BUSY_WAIT: Duration = Duration::from_millis(1);
/// How long to wait for what must happen without faults: a bound for hangs, not a timing.
const MUST: Duration = Duration::from_secs(10);

fuzz_target!(|data: &[u8]| {
    let mut input = Bytes(data);
    let flags = input.byte();
    let trace = std::env::var_os("SEQD_FUZZ_TRACE").is_some();
    if trace {
        eprintln!(
            "manual clock: {}, flush at once: {}",
            flags & 1 != 0,
            flags & 2 != 0
        );
    }
    let mut h = Harness::new(flags & 1 != 0, flags & 2 != 0);
    for _ in 0..MAX_OPS {
        if input.0.is_empty() {
            break;
        }
        let op = decode(&mut input);
        if trace {
            eprintln!("{op:?}");
        }
        h.apply(&op);
    }
    h.finish();
});

/// The input, read front to back; past the end every byte reads as 0.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum How {
    Next,
    NextN(u64),
    Peek,
}

#[derive(Clone, Copy, Debug)]
struct Step {
    /// Index into the kind's sequences; for the closed kind, 3 is the unknown sequence.
    seq: usize,
    how: How,
}

#[derive(Clone, Copy, Debug)]
enum End {
    /// Log the event, then flush.
    Flush,
    /// The PLog write failed: actualize.
    Actualize,
    /// Drop the transaction unfinished.
    Drop,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Faults {
    None,
    Forever { ops: Ops, retryable: bool },
    Rate(u8, u64),
    FailNext(u64, bool),
    Ambiguous(u64),
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Ops {
    Writes,
    Reads,
    All,
}

#[derive(Clone, Debug)]
enum Op {
    Tx {
        ws: usize,
        steps: Vec<Step>,
        end: End,
    },
    /// `Sequencer::peek`, outside a transaction.
    Peek {
        ws: usize,
        seq: usize,
    },
    Evict(usize),
    Faults(Faults),
    /// Let `n` more writes land, then crash (in the background).
    CrashAfter(u64),
    /// Crash now and reopen on the same storage.
    Reopen,
    /// Another writer's event lands in the PLog at the next free offset.
    Foreign {
        ws: usize,
        seq: usize,
        number: u64,
    },
    /// Without faults: wait until everything is durable and compare storage with the model.
    Sync,
    /// `Sequencer::actualize`, as an operator would.
    Actualize,
}

/// One operation: a tag byte (`% 32`, weighted towards transactions), then its arguments.
fn decode(input: &mut Bytes<'_>) -> Op {
    let ws = |b: u8| usize::from(b) % WORKSPACES.len();
    match input.byte() % 32 {
        0..=15 => {
            let ws = ws(input.byte());
            let n = usize::from(input.byte()) % (MAX_STEPS + 1);
            let steps = (0..n)
                .map(|_| {
                    let seq = usize::from(input.byte() % 4);
                    let how = match input.byte() % 4 {
                        0 => How::Next,
                        1 => How::Peek,
                        _ => How::NextN(count(input.byte())),
                    };
                    Step { seq, how }
                })
                .collect();
            let end = match input.byte() % 8 {
                0..=5 => End::Flush,
                6 => End::Actualize,
                _ => End::Drop,
            };
            Op::Tx { ws, steps, end }
        }
        16 | 17 => Op::Peek {
            ws: ws(input.byte()),
            seq: usize::from(input.byte() % 4),
        },
        18 | 19 => Op::Evict(ws(input.byte())),
        20..=22 => {
            let (kind, p, seed) = (input.byte(), input.byte(), input.byte());
            let retryable = p & 1 == 0;
            Op::Faults(match kind % 8 {
                0 | 1 => Faults::None,
                2 => Faults::Forever {
                    ops: Ops::Writes,
                    retryable,
                },
                3 => Faults::Forever {
                    ops: Ops::Reads,
                    retryable,
                },
                4 => Faults::Forever {
                    ops: Ops::All,
                    retryable,
                },
                5 => Faults::Rate(1 + p % 60, u64::from(seed)),
                6 => Faults::FailNext(1 + u64::from(p % 4), retryable),
                _ => Faults::Ambiguous(1 + u64::from(p % 3)),
            })
        }
        23 => Op::CrashAfter(u64::from(input.byte() % 4)),
        24 | 25 => Op::Reopen,
        26 => {
            let (ws, seq) = (ws(input.byte()), usize::from(input.byte() % 4));
            let n = u16::from_be_bytes([input.byte(), input.byte()]);
            let number = if n & 0x8000 != 0 {
                u64::MAX - u64::from(n & 31)
            } else {
                u64::from(n % 2000)
            };
            Op::Foreign { ws, seq, number }
        }
        27..=29 => Op::Sync,
        _ => Op::Actualize,
    }
}

/// A `next_n` count: mostly 1..=5; sometimes 0 (refused) or huge (exhausts the sequence).
fn count(b: u8) -> u64 {
    match b {
        0 => 0,
        250 => u64::MAX,
        251 => u64::MAX / 2,
        252 => 1 << 32,
        _ => 1 + u64::from(b % 5),
    }
}

/// The kind of workspace `WORKSPACES[i]`.
fn kind_of(ws: usize) -> WsKind {
    if ws < 4 { CLOSED } else { OPEN }
}

/// Sequence `i` of workspace `WORKSPACES[ws]`'s kind, and its initial value (`None`: no such
/// sequence).
fn seq_of(ws: usize, i: usize) -> (SeqId, Option<u64>) {
    if kind_of(ws) == CLOSED {
        match CLOSED_SEQS.get(i) {
            Some(&(s, initial)) => (SeqId(s), Some(initial)),
            None => (SeqId(UNKNOWN_SEQ), None),
        }
    } else {
        let s = OPEN_SEQS[i % OPEN_SEQS.len()];
        let initial = if s == 7 {
            OPEN_SEQ7_INITIAL
        } else {
            OPEN_INITIAL
        };
        (SeqId(s), Some(initial))
    }
}

/// A key of the model: (workspace, sequence).
type Key = (u64, u16);

struct Harness {
    /// The "disk" and the application's PLog: survives crashes.
    mem: Arc<MemoryStorage>,
    faulty: Arc<FaultyStorage<Arc<MemoryStorage>>>,
    seq: Option<Sequencer>,
    faults: Faults,
    crash_armed: bool,
    model: Model<Key>,
    manual_clock: bool,
    flush_now: bool,
}

impl Harness {
    fn new(manual_clock: bool, flush_now: bool) -> Self {
        let mem = Arc::new(MemoryStorage::new());
        let faulty = Arc::new(FaultyStorage::new(Arc::clone(&mem)));
        let mut h = Self {
            mem,
            faulty,
            seq: None,
            faults: Faults::None,
            crash_armed: false,
            model: Model::new(),
            manual_clock,
            flush_now,
        };
        h.open();
        h
    }

    fn options(&self) -> Options {
        let mut types = SeqTypes::new();
        for (seq, initial) in CLOSED_SEQS {
            types = types.with(CLOSED, SeqId(seq), Number(initial));
        }
        let types = types.with_all(OPEN, Number(OPEN_INITIAL)).with(
            OPEN,
            SeqId(7),
            Number(OPEN_SEQ7_INITIAL),
        );
        let clock: Arc<dyn Clock> = if self.manual_clock {
            Arc::new(ManualClock::new())
        } else {
            Arc::new(SystemClock)
        };
        Options {
            seq_types: types,
            cache_capacity: CACHE,
            max_unflushed: MAX_UNFLUSHED,
            flush_interval: if self.flush_now {
                Duration::ZERO
            } else {
                Duration::from_micros(50)
            },
            retry: RetryPolicy {
                base: Duration::from_micros(100),
                cap: Duration::from_millis(1),
                max_attempts: 3,
                ..RetryPolicy::default()
            },
            close_timeout: CLOSE_TIMEOUT,
            clock,
            ..Options::default()
        }
    }

    /// Opens a sequencer on the current storage and waits for recovery, which must succeed
    /// without faults (it also races the model otherwise).
    fn open(&mut self) {
        let mut seq = Sequencer::open(Arc::clone(&self.faulty), self.options()).expect("open");
        seq.wait_ready(MUST).expect("recovery without faults");
        self.seq = Some(seq);
    }

    fn seq(&mut self) -> &mut Sequencer {
        self.seq
            .as_mut()
            .expect("a sequencer is open between operations")
    }

    fn faults_on(&self) -> bool {
        self.faults != Faults::None || self.crash_armed || self.faulty.is_crashed()
    }

    fn apply(&mut self, op: &Op) {
        match op {
            Op::Tx { ws, steps, end } => self.tx(*ws, steps, *end),
            Op::Peek { ws, seq } => self.peek(*ws, *seq),
            Op::Evict(ws) => {
                self.seq().evict(WsId(WORKSPACES[*ws]));
            }
            Op::Faults(f) => self.set_faults(*f),
            Op::CrashAfter(n) => {
                self.faulty.crash_after_writes(*n);
                self.crash_armed = true;
            }
            Op::Reopen => self.reopen(),
            Op::Foreign { ws, seq, number } => {
                let (seq_id, _) = seq_of(*ws, *seq);
                let ws = WORKSPACES[*ws];
                let offset = self.model.plog_last() + 1;
                let v = SeqValue {
                    ws: WsId(ws),
                    seq: seq_id,
                    number: Number(*number),
                };
                self.mem
                    .append(PLogOffset(offset), &[v])
                    .expect("foreign append");
                self.model.foreign(vec![((ws, seq_id.0), *number)]);
            }
            Op::Sync => self.sync(),
            Op::Actualize => {
                // Also while an actualization runs (fuzz/regressions/README.md, issue 1).
                self.seq().actualize();
                self.model.actualized();
            }
        }
        self.check_invariants();
    }

    fn set_faults(&mut self, f: Faults) {
        // heal() clears an armed or happened crash too.
        self.faulty.heal();
        self.crash_armed = false;
        match f {
            Faults::None => {}
            Faults::Forever { ops, retryable } => {
                self.faulty.limit_to(match ops {
                    Ops::Writes => FaultOps::WRITES,
                    Ops::Reads => FaultOps::READS,
                    Ops::All => FaultOps::ALL,
                });
                self.faulty.fail_forever(true, retryable);
            }
            Faults::Rate(p, seed) => self.faulty.fail_rate(f64::from(p) / 100.0, seed),
            Faults::FailNext(n, retryable) => self.faulty.fail_next(n, retryable),
            Faults::Ambiguous(n) => self.faulty.ambiguous_writes(n),
        }
        self.faults = f;
    }

    fn tx(&mut self, wsi: usize, steps: &[Step], end: End) {
        let faults_on = self.faults_on();
        let wait = if faults_on { BUSY_WAIT } else { MUST };
        let ws = WORKSPACES[wsi];
        let seq = self.seq.as_mut().expect("open");
        // Without faults a transaction must start within `MUST`, also when an actualization
        // (a flusher giving up on a write that failed just before the faults were healed)
        // begins between start_timeout's wait and its handshake (fuzz/regressions/README.md).
        let mut tx = match seq.start_timeout(kind_of(wsi), WsId(ws), wait) {
            Ok(tx) => tx,
            Err(Error::Busy { .. }) if faults_on => return,
            Err(e) => panic!("start failed without faults: {e}"),
        };
        let offset = tx.offset().0;
        self.model.resync(offset);
        assert_eq!(offset, self.model.expected_offset(), "I5: offset");
        let mut mine: BTreeMap<Key, u64> = BTreeMap::new();
        for step in steps {
            let (seq_id, initial) = seq_of(wsi, step.seq);
            let key = (ws, seq_id.0);
            let last = mine
                .get(&key)
                .copied()
                .unwrap_or_else(|| self.model.last(&key));
            let (result, n) = match step.how {
                How::Next => (tx.next(seq_id), 1),
                How::NextN(n) => (tx.next_n(seq_id, n), n),
                How::Peek => (tx.peek(seq_id), 1),
            };
            let what = format!("{:?}({seq_id}) on ws {ws}", step.how);
            match (result, initial) {
                (Err(Error::InvalidArgument(_)), _) if n == 0 => {}
                (got, _) if n == 0 => panic!("{what}: count 0, got {got:?}"),
                (Err(Error::UnknownSeq { .. }), None) => {}
                (got, None) => panic!("{what}: unknown sequence, got {got:?}"),
                (Err(Error::Storage(_)), _) if faults_on => {
                    tx.actualize();
                    self.model.actualized();
                    return;
                }
                (got, Some(initial)) => match (got, take(last, initial, n)) {
                    (Ok(first), Some((f, l))) => {
                        assert_eq!(first.0, f, "{what}: I1/I3/I4");
                        if !matches!(step.how, How::Peek) {
                            mine.insert(key, l);
                        }
                    }
                    (Err(Error::Exhausted { .. }), None) => {}
                    (got, want) => panic!("{what}: got {got:?}, model {want:?}"),
                },
            }
        }
        match end {
            End::Flush => {
                let values: Vec<SeqValue> = mine
                    .iter()
                    .map(|(&(ws, s), &l)| SeqValue {
                        ws: WsId(ws),
                        seq: SeqId(s),
                        number: Number(l),
                    })
                    .collect();
                if self.mem.append(tx.offset(), &values).is_err() {
                    // The offset is taken (a foreign event): the application actualizes.
                    assert!(
                        self.model.foreign_pending(),
                        "append at {offset} failed without a foreign event"
                    );
                    tx.actualize();
                    self.model.actualized();
                    return;
                }
                let _committed = tx.flush();
                self.model
                    .committed(offset, mine.iter().map(|(&k, &l)| (k, l)).collect());
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

    fn peek(&mut self, wsi: usize, i: usize) {
        let faults_on = self.faults_on();
        let ws = WORKSPACES[wsi];
        let (seq_id, initial) = seq_of(wsi, i);
        let got = self.seq().peek(kind_of(wsi), WsId(ws), seq_id);
        let what = format!("peek({seq_id}) on ws {ws}");
        match (got, initial) {
            // An actualization may still be running, faults or not.
            (
                Err(Error::Busy {
                    reason: BusyReason::Actualizing,
                }),
                _,
            ) => {}
            (Err(Error::UnknownSeq { .. }), None) => {}
            (got, None) => panic!("{what}: unknown sequence, got {got:?}"),
            (Err(Error::Storage(_)), _) if faults_on => {}
            // The flusher may have given up and picked up foreign events on its own: the
            // model cannot tell which (`tx` learns it from the offset).
            (_, _) if self.model.foreign_pending() => {}
            (got, Some(initial)) => {
                let last = self.model.last(&(ws, seq_id.0));
                match (got, take(last, initial, 1)) {
                    (Ok(n), Some((f, _))) => assert_eq!(n.0, f, "{what}"),
                    (Err(Error::Exhausted { .. }), None) => {}
                    (got, want) => panic!("{what}: got {got:?}, model {want:?}"),
                }
            }
        }
    }

    fn reopen(&mut self) {
        self.faulty.crash();
        let t0 = Instant::now();
        drop(self.seq.take());
        assert!(
            t0.elapsed() < CLOSE_TIMEOUT + Duration::from_secs(2),
            "I8: dropping a sequencer on crashed storage took {:?}",
            t0.elapsed()
        );
        self.faulty = Arc::new(FaultyStorage::new(Arc::clone(&self.mem)));
        self.faults = Faults::None;
        self.crash_armed = false;
        self.open();
        self.model.actualized();
    }

    fn sync(&mut self) {
        if self.faults_on() {
            return;
        }
        let expected = self.model.expected_offset();
        let seq = self.seq();
        seq.wait_ready(MUST).expect("ready without faults");
        if let Err(e) = seq.wait_flushed(PLogOffset(expected - 1), MUST) {
            panic!("not durable without faults: {e}: {:?}", seq.stats());
        }
        if self.model.foreign_pending() {
            return;
        }
        for (&(ws, s), &n) in self.model.view() {
            let stored = self.mem.read_numbers(WsId(ws), &[SeqId(s)]).expect("read")[0];
            assert_eq!(stored.0, n, "durable number of ws {ws} seq {s}");
        }
    }

    /// Invariants that hold after every operation, faults or not.
    fn check_invariants(&mut self) {
        let stats = self.seq().stats();
        assert!(stats.resident_workspaces <= CACHE, "I7: {stats:?}");
        assert!(stats.unflushed < MAX_UNFLUSHED + MAX_STEPS, "I7: {stats:?}");
        // I6: the checkpoint never runs ahead of the values it covers.
        let checkpoint = self.mem.read_next_offset().expect("read checkpoint");
        assert!(
            checkpoint.0 <= self.model.plog_last() + 1,
            "checkpoint {checkpoint} beyond the PLog"
        );
        let mut covered: HashMap<(WsId, SeqId), u64> = HashMap::new();
        self.mem
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
            let stored = self.mem.read_numbers(ws, &[seq]).expect("read")[0].0;
            assert!(
                stored >= n,
                "I6: checkpoint {checkpoint} covers {ws}/{seq}={n} but storage has {stored}"
            );
        }
    }

    /// Heals, lets everything settle, checks it is durable and closes cleanly; then a fresh
    /// sequencer on the same storage must know exactly the PLog's numbers (I2 across restarts).
    fn finish(mut self) {
        self.set_faults(Faults::None);
        self.sync();
        self.check_invariants();
        let seq = self.seq.take().expect("open");
        seq.close().expect("clean close without faults");

        self.faulty = Arc::new(FaultyStorage::new(Arc::clone(&self.mem)));
        self.open();
        let seq = self.seq.as_mut().expect("open");
        for (wsi, &ws) in WORKSPACES.iter().enumerate() {
            for i in 0..4 {
                let (seq_id, Some(initial)) = seq_of(wsi, i) else {
                    continue;
                };
                let last = self.model.logged_max(&(ws, seq_id.0));
                match (
                    seq.peek(kind_of(wsi), WsId(ws), seq_id),
                    take(last, initial, 1),
                ) {
                    (Ok(n), Some((f, _))) => {
                        assert_eq!(n.0, f, "after reopen: ws {ws} seq {seq_id}")
                    }
                    (Err(Error::Exhausted { .. }), None) => {}
                    (got, want) => {
                        panic!("after reopen: ws {ws} seq {seq_id}: got {got:?}, model {want:?}")
                    }
                }
            }
        }
        let next = seq.next_offset().0;
        assert_eq!(next, self.model.plog_last() + 1, "I5: offset after reopen");
        self.seq.take().expect("open").close().expect("clean close");
    }
}
