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
//! A queue holds at most [`MAX_QUEUED`] commands in [`MAX_QUEUED_BYTES`] of memory, and the
//! replies its commands may produce at most [`MAX_QUEUED_REPLIES`] bytes (`EXEC` sends them in
//! one array); one more is refused, which aborts the transaction.

use super::Conn;
use crate::daemon::command::{ClientSub, Command, CommandError, CommandSub};
use crate::daemon::protocol;

/// Most commands one transaction may queue.
pub(crate) const MAX_QUEUED: usize = 10_000;
/// Most memory one transaction's queue may take: its arguments and the vectors holding them.
pub(crate) const MAX_QUEUED_BYTES: usize = 4 << 20;
/// Most bytes the replies of one transaction's commands may take, by `Conn::reply_bound`.
pub(crate) const MAX_QUEUED_REPLIES: usize = 16 << 20;
/// An upper bound of `COMMAND`'s and `COMMAND DOCS`' whole replies (a test checks it).
pub(crate) const COMMAND_REPLY_BOUND: usize = 64 << 10;

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
        /// Memory the queue takes.
        bytes: usize,
        /// An upper bound of the bytes of the queued commands' replies.
        replies: usize,
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
            replies: 0,
            aborted: false,
        };
        true
    }

    /// Queues one command's arguments; its reply takes at most `reply_bound` bytes.
    pub(crate) fn queue(&mut self, argv: &[&[u8]], reply_bound: usize) -> Result<(), QueueError> {
        let Txn::Queueing {
            queued,
            bytes,
            replies,
            aborted,
        } = self
        else {
            return Err(QueueError::Idle);
        };
        let header = std::mem::size_of::<Vec<u8>>();
        let size = header + argv.iter().map(|a| a.len() + header).sum::<usize>();
        if queued.len() >= MAX_QUEUED
            || *bytes + size > MAX_QUEUED_BYTES
            || *replies + reply_bound > MAX_QUEUED_REPLIES
        {
            *aborted = true;
            return Err(QueueError::Full);
        }
        *bytes += size;
        *replies += reply_bound;
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

    /// Memory held by the queue (counted against `--max-pending-bytes`).
    pub(crate) fn bytes(&self) -> usize {
        match self {
            Txn::Idle => 0,
            Txn::Queueing { bytes, .. } => *bytes,
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

    /// A command after `MULTI`: queued if it parsed, else refused — and then the transaction
    /// aborts at `EXEC`.
    pub(super) fn queue(&mut self, argv: &[&[u8]], parsed: Result<Command<'_>, CommandError>) {
        let cmd = match parsed {
            Ok(cmd) => cmd,
            Err(e) => {
                self.txn.abort();
                self.counts.errors += 1;
                return self.local_error(&e.0);
            }
        };
        // Cluster mode refuses at queue time what it would refuse when run (as Redis does
        // with -MOVED): the transaction then aborts whole instead of running in part.
        #[cfg(feature = "cluster")]
        if let Some(refusal) = self.queue_refusal(&cmd, argv) {
            self.txn.abort();
            self.counts.errors += 1;
            return self.local_error(&refusal);
        }
        match self.txn.queue(argv, self.reply_bound(&cmd)) {
            Ok(()) => self.local(|o| protocol::write_simple(o, "QUEUED")),
            Err(QueueError::Full) => {
                self.counts.errors += 1;
                self.local_error(&format!(
                    "ERR the transaction is too large (at most {MAX_QUEUED} commands, \
                     {MAX_QUEUED_BYTES} bytes queued, {MAX_QUEUED_REPLIES} bytes of replies); \
                     EXEC will abort: DISCARD and send smaller ones"
                ));
            }
            Err(QueueError::Idle) => self.local_error("ERR internal: no transaction to queue to"),
        }
    }

    /// An upper bound of the bytes of `cmd`'s reply: only the commands whose replies grow
    /// with the server count for much against [`MAX_QUEUED_REPLIES`].
    fn reply_bound(&self, cmd: &Command<'_>) -> usize {
        match cmd {
            Command::Client(ClientSub::List) => 200 * self.shared.max_connections.max(1),
            Command::Command(CommandSub::All | CommandSub::Info(_) | CommandSub::Docs(_)) => {
                COMMAND_REPLY_BOUND
            }
            Command::Info(_) => 4096 + 512 * self.shared.partitions.len(),
            Command::Ping(Some(m)) | Command::Echo(m) => m.len() + 32,
            _ => 1024,
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
        assert_eq!(t.queue(&[b"NEXT"], 64), Err(QueueError::Idle));
        assert_eq!(t.exec(), Exec::WithoutMulti);
        assert!(!t.discard());
        assert!(t.begin());
        assert!(!t.begin(), "nested MULTI");
        t.queue(&[b"NEXT", b"1", b"2"], 64).unwrap();
        t.queue(&[b"GETSEQ"], 64).unwrap();
        // Arguments and the vectors holding them.
        assert!(t.bytes() >= 11 + 6 * std::mem::size_of::<Vec<u8>>());
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
        t.queue(&[b"GETSEQ"], 64).unwrap();
        t.abort();
        assert_eq!(t.exec(), Exec::Aborted);
        assert!(!t.is_queueing());

        assert!(t.begin());
        assert!(t.discard());
        assert!(!t.is_queueing());
    }

    #[test]
    fn command_replies_fit_their_bound() {
        use crate::daemon::command::spec;
        use crate::daemon::protocol::Proto;
        for proto in [Proto::Resp2, Proto::Resp3] {
            let (mut info, mut docs) = (Vec::new(), Vec::new());
            for s in spec::COMMANDS {
                spec::write_info(&mut info, proto, s);
                spec::write_docs(&mut docs, proto, s);
            }
            assert!(
                info.len() < COMMAND_REPLY_BOUND,
                "COMMAND: {} bytes",
                info.len()
            );
            assert!(
                docs.len() < COMMAND_REPLY_BOUND,
                "COMMAND DOCS: {} bytes",
                docs.len()
            );
        }
    }

    #[test]
    fn the_queue_is_bounded() {
        let mut t = Txn::default();
        t.begin();
        for _ in 0..MAX_QUEUED {
            t.queue(&[b"GETSEQ"], 64).unwrap();
        }
        assert_eq!(t.queue(&[b"GETSEQ"], 64), Err(QueueError::Full));
        assert_eq!(t.exec(), Exec::Aborted);

        t.begin();
        let big = vec![b'x'; MAX_QUEUED_BYTES];
        assert_eq!(t.queue(&[b"ECHO", &big], 64), Err(QueueError::Full));
        assert_eq!(t.exec(), Exec::Aborted);

        // Replies: a few large ones fit, one more does not.
        t.begin();
        t.queue(&[b"CLIENT", b"LIST"], MAX_QUEUED_REPLIES / 2)
            .unwrap();
        t.queue(&[b"CLIENT", b"LIST"], MAX_QUEUED_REPLIES / 2)
            .unwrap();
        assert_eq!(t.queue(&[b"PING"], 64), Err(QueueError::Full));
        assert_eq!(t.exec(), Exec::Aborted);
    }
}
