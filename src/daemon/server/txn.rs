//! `MULTI`/`EXEC`/`DISCARD`: a connection's transaction, as Redis runs one.
//!
//! After `MULTI` every command but `EXEC`, `DISCARD`, `MULTI`, `WATCH` and `QUIT` is checked
//! (name, arity, arguments, authentication) and queued, answered `+QUEUED`. `EXEC` runs the
//! queue as if its commands had arrived in one read — one batch per partition, replies in
//! order, in one array — unless a command was refused while queueing: then `EXEC` answers
//! `-EXECABORT` and runs nothing, so no number is taken for a transaction the client was told
//! failed. `DISCARD` drops the queue. As in Redis there is no rollback: a command that fails
//! while running (`-BUSY`) fails alone, in its place in the array.
//!
//! A queue holds at most [`MAX_QUEUED`] commands and [`MAX_QUEUED_BYTES`] bytes of
//! arguments; one more is refused, which aborts the transaction.

use super::Conn;
use crate::daemon::command::Command;
use crate::daemon::protocol;

/// Most commands one transaction may queue.
pub(crate) const MAX_QUEUED: usize = 10_000;
/// Most bytes of arguments one transaction may queue.
pub(crate) const MAX_QUEUED_BYTES: usize = 1 << 20;

/// A connection's transaction state.
#[derive(Debug, Default)]
pub(crate) enum Txn {
    /// No `MULTI`: commands run as they arrive.
    #[default]
    Idle,
    /// After `MULTI`: commands are queued until `EXEC` or `DISCARD`.
    Queueing {
        /// Each queued command's arguments, name first.
        queued: Vec<Vec<Vec<u8>>>,
        /// Bytes of arguments queued.
        bytes: usize,
        /// A command was refused while queueing: `EXEC` will abort.
        aborted: bool,
    },
}

/// What `EXEC` found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Exec {
    /// No `MULTI` came first.
    WithoutMulti,
    /// A command was refused while queueing: nothing runs.
    Aborted,
    /// Run these, in order.
    Run(Vec<Vec<Vec<u8>>>),
}

/// Why a command could not be queued.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum QueueError {
    /// Not in a transaction (a caller bug: it checks [`Txn::is_queueing`] first).
    Idle,
    /// Over [`MAX_QUEUED`] or [`MAX_QUEUED_BYTES`].
    Full,
}

impl Txn {
    /// Whether commands are being queued.
    #[inline]
    pub(crate) fn is_queueing(&self) -> bool {
        matches!(self, Txn::Queueing { .. })
    }

    /// `MULTI`. False if already queueing (Redis: "MULTI calls can not be nested").
    pub(crate) fn begin(&mut self) -> bool {
        if self.is_queueing() {
            return false;
        }
        *self = Txn::Queueing {
            queued: Vec::new(),
            bytes: 0,
            aborted: false,
        };
        true
    }

    /// Queues one command's arguments.
    pub(crate) fn queue(&mut self, argv: &[&[u8]]) -> Result<(), QueueError> {
        let Txn::Queueing {
            queued,
            bytes,
            aborted,
        } = self
        else {
            return Err(QueueError::Idle);
        };
        let size: usize = argv.iter().map(|a| a.len()).sum();
        if queued.len() >= MAX_QUEUED || *bytes + size > MAX_QUEUED_BYTES {
            *aborted = true;
            return Err(QueueError::Full);
        }
        *bytes += size;
        queued.push(argv.iter().map(|a| a.to_vec()).collect());
        Ok(())
    }

    /// A command was refused while queueing: the transaction will abort at `EXEC`.
    pub(crate) fn abort(&mut self) {
        if let Txn::Queueing { aborted, .. } = self {
            *aborted = true;
        }
    }

    /// `EXEC`: ends the transaction.
    pub(crate) fn exec(&mut self) -> Exec {
        match std::mem::take(self) {
            Txn::Idle => Exec::WithoutMulti,
            Txn::Queueing { aborted: true, .. } => Exec::Aborted,
            Txn::Queueing { queued, .. } => Exec::Run(queued),
        }
    }

    /// `DISCARD`: ends the transaction. False without `MULTI`.
    pub(crate) fn discard(&mut self) -> bool {
        std::mem::take(self).is_queueing()
    }

    /// Bytes held by the queue (counted against `--max-pending-bytes`).
    pub(crate) fn bytes(&self) -> usize {
        match self {
            Txn::Idle => 0,
            Txn::Queueing { bytes, queued, .. } => {
                bytes + queued.len() * std::mem::size_of::<Vec<Vec<u8>>>()
            }
        }
    }
}

/// Whether `cmd` runs at once inside a transaction instead of being queued (as in Redis).
pub(super) fn runs_in_multi(cmd: &Command<'_>) -> bool {
    matches!(
        cmd,
        Command::Multi | Command::Exec | Command::Discard | Command::Watch | Command::Quit
    )
}

impl Conn {
    /// `MULTI`.
    pub(super) fn multi(&mut self) {
        if self.txn.begin() {
            self.local(|o| protocol::write_simple(o, "OK"));
        } else {
            self.local_error("ERR MULTI calls can not be nested");
        }
    }

    /// A command after `MULTI`: queued if it is `valid` (it parsed) and the connection may run
    /// it, else refused — and then the transaction aborts at `EXEC`.
    pub(super) fn queue(&mut self, argv: &[&[u8]], valid: bool) {
        if !valid {
            // Parse it again for the error text: a refusal is rare, parsing cheap.
            let msg = match crate::daemon::command::parse_command(argv) {
                Err(e) => e.0,
                Ok(_) => "ERR internal: command refused".to_owned(),
            };
            self.txn.abort();
            self.counts.errors += 1;
            return self.local_error(&msg);
        }
        match self.txn.queue(argv) {
            Ok(()) => self.local(|o| protocol::write_simple(o, "QUEUED")),
            Err(QueueError::Full) => {
                self.counts.errors += 1;
                self.local_error(&format!(
                    "ERR the transaction is too large (at most {MAX_QUEUED} commands and \
                     {MAX_QUEUED_BYTES} bytes); EXEC will abort: DISCARD and send smaller ones"
                ));
            }
            Err(QueueError::Idle) => self.local_error("ERR internal: no transaction to queue to"),
        }
    }

    /// `EXEC`: the queued commands run as one read's requests would, their replies in one
    /// array (the header goes first, then each command's reply in its own slot).
    pub(super) fn exec(&mut self) {
        match self.txn.exec() {
            Exec::WithoutMulti => self.local_error("ERR EXEC without MULTI"),
            Exec::Aborted => {
                self.counts.errors += 1;
                self.local_error("EXECABORT Transaction discarded because of previous errors.");
            }
            Exec::Run(queued) => {
                self.local(|o| protocol::write_array_len(o, queued.len()));
                let mut argv: Vec<&[u8]> = Vec::new();
                for command in &queued {
                    argv.clear();
                    argv.extend(command.iter().map(Vec::as_slice));
                    self.execute(&argv);
                }
            }
        }
    }

    /// `DISCARD`.
    pub(super) fn discard(&mut self) {
        if self.txn.discard() {
            self.local(|o| protocol::write_simple(o, "OK"));
        } else {
            self.local_error("ERR DISCARD without MULTI");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions() {
        let mut t = Txn::default();
        assert!(!t.is_queueing());
        assert_eq!(t.queue(&[b"NEXT"]), Err(QueueError::Idle));
        assert_eq!(t.exec(), Exec::WithoutMulti);
        assert!(!t.discard());
        assert!(t.begin());
        assert!(!t.begin(), "nested MULTI");
        t.queue(&[b"NEXT", b"1", b"2"]).unwrap();
        t.queue(&[b"GETSEQ"]).unwrap();
        assert!(t.bytes() >= 11);
        assert_eq!(
            t.exec(),
            Exec::Run(vec![
                vec![b"NEXT".to_vec(), b"1".to_vec(), b"2".to_vec()],
                vec![b"GETSEQ".to_vec()]
            ])
        );
        assert!(!t.is_queueing());
        assert_eq!(t.bytes(), 0);

        assert!(t.begin());
        t.queue(&[b"GETSEQ"]).unwrap();
        t.abort();
        assert_eq!(t.exec(), Exec::Aborted);
        assert!(!t.is_queueing());

        assert!(t.begin());
        assert!(t.discard());
        assert!(!t.is_queueing());
    }

    #[test]
    fn the_queue_is_bounded() {
        let mut t = Txn::default();
        t.begin();
        for _ in 0..MAX_QUEUED {
            t.queue(&[b"GETSEQ"]).unwrap();
        }
        assert_eq!(t.queue(&[b"GETSEQ"]), Err(QueueError::Full));
        assert_eq!(t.exec(), Exec::Aborted);

        t.begin();
        let big = vec![b'x'; MAX_QUEUED_BYTES];
        assert_eq!(t.queue(&[b"ECHO", &big]), Err(QueueError::Full));
        assert_eq!(t.exec(), Exec::Aborted);
    }
}
