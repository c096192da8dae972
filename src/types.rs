//! Identifier newtypes and the catalogue of sequences ([`SeqTypes`]).
//!
//! Every identifier is a transparent newtype with a public field, so callers build them with
//! `WsId(42)` and read them with `.0`; the types exist to keep a workspace id from being passed
//! where a number is expected.

use std::fmt;

use rustc_hash::FxHashMap;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident($inner:ty)) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
        pub struct $name(pub $inner);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    };
}

id_type!(
    /// A partition: the unit of single-writer ownership. One [`crate::Sequencer`] per partition.
    PartitionId(u16)
);
id_type!(
    /// A workspace kind: selects which sequences a workspace has and their initial values.
    WsKind(u16)
);
id_type!(
    /// A workspace (tenant). Holds the sequences its kind configures.
    WsId(u64)
);
id_type!(
    /// One counter inside a workspace.
    SeqId(u16)
);
id_type!(
    /// A number handed out by a sequence. The first one is the sequence's initial value (≥ 1), so
    /// `Number(0)` is never issued and storage uses it to mean "never written".
    Number(u64)
);
id_type!(
    /// The position of an event in the partition log (PLog). Offsets are dense; the first is 1.
    PLogOffset(u64)
);

impl PLogOffset {
    /// The offset of the first event of a fresh partition.
    pub const FIRST: PLogOffset = PLogOffset(1);
}

/// Which sequences each workspace kind has, and the first number each one hands out.
///
/// Only configured sequences exist: asking a sequencer for any other is an error
/// ([`crate::Error::UnknownKind`] or [`crate::Error::UnknownSeq`]), never a panic. A kind can
/// also be *open* ([`SeqTypes::with_all`]): every `SeqId` exists in it, loaded one sequence at
/// a time as it is first used — what the daemon needs, where clients pick sequence ids.
///
/// ```
/// use seqd::{SeqTypes, WsKind, SeqId, Number};
/// let types = SeqTypes::new()
///     .with(WsKind(1), SeqId(5), Number(200_001))
///     .with(WsKind(1), SeqId(4), Number(1));
/// assert_eq!(types.initial(WsKind(1), SeqId(5)), Some(Number(200_001)));
/// ```
#[derive(Clone, Debug, Default)]
pub struct SeqTypes {
    kinds: FxHashMap<WsKind, KindSeqs>,
}

/// The sequences of one workspace kind, sorted by id.
#[derive(Clone, Debug, Default)]
pub(crate) struct KindSeqs {
    pub(crate) kind: WsKind,
    pub(crate) seqs: Vec<SeqId>,
    pub(crate) initials: Vec<Number>,
    /// Open kind: every sequence not in `seqs` exists too, starting at this number.
    pub(crate) open: Option<Number>,
}

impl KindSeqs {
    /// Position of `seq` in this kind's list. Kinds have a handful of sequences, so a linear
    /// scan beats hashing.
    #[inline]
    pub(crate) fn index_of(&self, seq: SeqId) -> Option<usize> {
        self.seqs.iter().position(|s| *s == seq)
    }

    pub(crate) fn len(&self) -> usize {
        self.seqs.len()
    }

    /// Whether every `SeqId` exists in this kind.
    #[inline]
    pub(crate) fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// The initial value of `seq`: its own if configured, else the open kind's.
    #[inline]
    pub(crate) fn initial_of(&self, seq: SeqId) -> Option<Number> {
        match self.index_of(seq) {
            Some(i) => Some(self.initials[i]),
            None => self.open,
        }
    }
}

impl SeqTypes {
    /// An empty catalogue. Add sequences with [`SeqTypes::with`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds sequence `seq` to workspace kind `kind`, whose first number will be `initial`.
    /// Configuring the same pair twice keeps the last initial value. `initial` must be ≥ 1;
    /// [`crate::Sequencer::open`] rejects a catalogue that breaks this.
    #[must_use]
    pub fn with(mut self, kind: WsKind, seq: SeqId, initial: Number) -> Self {
        let k = self.kinds.entry(kind).or_insert_with(|| KindSeqs {
            kind,
            ..KindSeqs::default()
        });
        match k.seqs.binary_search(&seq) {
            Ok(i) => k.initials[i] = initial,
            Err(i) => {
                k.seqs.insert(i, seq);
                k.initials.insert(i, initial);
            }
        }
        self
    }

    /// Makes `kind` open: every `SeqId` (0..=65535) exists in it and starts at `initial`,
    /// except those given their own initial value with [`with`](Self::with). Workspaces of an
    /// open kind load each sequence from storage when it is first used, not all at once.
    #[must_use]
    pub fn with_all(mut self, kind: WsKind, initial: Number) -> Self {
        self.kinds
            .entry(kind)
            .or_insert_with(|| KindSeqs {
                kind,
                ..KindSeqs::default()
            })
            .open = Some(initial);
        self
    }

    /// The initial value of `seq` in `kind`, if that sequence exists.
    pub fn initial(&self, kind: WsKind, seq: SeqId) -> Option<Number> {
        self.kinds.get(&kind)?.initial_of(seq)
    }

    /// The sequences configured one by one for `kind`, in ascending id order (an open kind
    /// has all the others too).
    pub fn seqs(&self, kind: WsKind) -> impl Iterator<Item = (SeqId, Number)> + '_ {
        self.kinds
            .get(&kind)
            .into_iter()
            .flat_map(|k| k.seqs.iter().copied().zip(k.initials.iter().copied()))
    }

    /// Whether no sequence is configured.
    pub fn is_empty(&self) -> bool {
        self.kinds.is_empty()
    }

    /// The catalogue as a dense table for the hot path: kind → index, and the sequences of
    /// each kind at that index.
    pub(crate) fn compile(&self) -> (FxHashMap<WsKind, usize>, Vec<KindSeqs>) {
        let mut index = FxHashMap::default();
        let mut table = Vec::with_capacity(self.kinds.len());
        for (kind, seqs) in &self.kinds {
            index.insert(*kind, table.len());
            table.push(seqs.clone());
        }
        (index, table)
    }

    /// Checks the rules `open` enforces; returns a message naming the offending entry.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.kinds.is_empty() {
            return Err("seq_types is empty: configure at least one sequence with \
                        SeqTypes::new().with(kind, seq, initial)"
                .into());
        }
        for (kind, k) in &self.kinds {
            if k.open == Some(Number(0)) {
                return Err(format!(
                    "workspace kind {kind} is open with initial value 0; \
                     initial values must be >= 1"
                ));
            }
            for (seq, initial) in k.seqs.iter().zip(&k.initials) {
                if initial.0 == 0 {
                    return Err(format!(
                        "sequence {seq} of workspace kind {kind} has initial value 0; \
                         initial values must be >= 1"
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_keeps_sorted_and_last_wins() {
        let t = SeqTypes::new()
            .with(WsKind(1), SeqId(5), Number(10))
            .with(WsKind(1), SeqId(2), Number(3))
            .with(WsKind(1), SeqId(5), Number(7));
        let seqs: Vec<_> = t.seqs(WsKind(1)).collect();
        assert_eq!(seqs, vec![(SeqId(2), Number(3)), (SeqId(5), Number(7))]);
        assert_eq!(t.initial(WsKind(2), SeqId(5)), None);
        assert_eq!(t.initial(WsKind(1), SeqId(4)), None);
    }

    #[test]
    fn open_kinds_have_every_sequence() {
        let t =
            SeqTypes::new()
                .with_all(WsKind(0), Number(100))
                .with(WsKind(0), SeqId(7), Number(5));
        assert_eq!(t.initial(WsKind(0), SeqId(65535)), Some(Number(100)));
        assert_eq!(t.initial(WsKind(0), SeqId(7)), Some(Number(5)));
        assert_eq!(t.initial(WsKind(1), SeqId(0)), None);
        assert!(t.validate().is_ok());
        let err = SeqTypes::new()
            .with_all(WsKind(0), Number(0))
            .validate()
            .unwrap_err();
        assert!(err.contains("open with initial value 0"), "{err}");
    }

    #[test]
    fn validate_rejects_empty_and_zero_initial() {
        assert!(SeqTypes::new().validate().is_err());
        let err = SeqTypes::new()
            .with(WsKind(1), SeqId(1), Number(0))
            .validate()
            .unwrap_err();
        assert!(err.contains("initial value 0"), "{err}");
        assert!(
            SeqTypes::new()
                .with(WsKind(1), SeqId(1), Number(1))
                .validate()
                .is_ok()
        );
    }
}
