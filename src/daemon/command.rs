//! Protocol commands: from a parsed frame to a typed [`Command`].
//!
//! [`parse_command`] checks names (case-insensitive), arity and numbers, and says exactly what is
//! wrong when something is: the error text is sent to the client as is. Parsing `GETSEQ`, `NEXT`
//! and `PEEK` never allocates; errors do. The other commands are parsed in [`admin`]; what each
//! command is (arity, flags, keys, docs, as `COMMAND` reports it) is in [`spec`].

#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use std::fmt;

use smallvec::SmallVec;

mod admin;
pub mod spec;

pub use admin::Sections;

/// Most numbers one NEXT may take.
pub const MAX_COUNT: u64 = 1_000_000;

/// Longest part of a client-sent value quoted back in an error message.
const SHOW_MAX: usize = 32;

/// Up to a few borrowed arguments inline (more spill to the heap): names given to `COMMAND INFO`,
/// patterns given to `CONFIG GET`, ...
pub type Words<'a> = SmallVec<[&'a [u8]; 4]>;

/// One request, typed. Borrowed arguments point into the connection's read buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command<'a> {
    /// `GETSEQ`: the next number of the default sequence — `NEXT 0 0`.
    GetSeq,
    /// `CURRENT`: the number the next `GETSEQ` would return, without taking it — `PEEK 0 0`.
    Current,
    /// `NEXT ws seq [count]`: take `count` (default 1, 1..=[`MAX_COUNT`]) numbers.
    Next {
        /// Workspace id.
        ws: u64,
        /// Sequence id.
        seq: u16,
        /// How many numbers.
        count: u64,
    },
    /// `PEEK ws seq`: the number the next `NEXT ws seq` would return, without taking it.
    Peek {
        /// Workspace id.
        ws: u64,
        /// Sequence id.
        seq: u16,
    },
    /// `PING [message]`.
    Ping(Option<&'a [u8]>),
    /// `ECHO message`.
    Echo(&'a [u8]),
    /// `QUIT`.
    Quit,
    /// `AUTH password` or `AUTH username password`.
    Auth {
        /// The user name, if given.
        username: Option<&'a [u8]>,
        /// The password.
        password: &'a [u8],
    },
    /// `HELLO [protover [AUTH username password] [SETNAME clientname]]`.
    Hello {
        /// The protocol version, raw (the caller accepts "2" and "3").
        version: Option<&'a [u8]>,
        /// `AUTH username password`, if given.
        auth: Option<(&'a [u8], &'a [u8])>,
        /// `SETNAME clientname`, if given.
        setname: Option<&'a [u8]>,
    },
    /// `COMMAND [subcommand ...]`.
    Command(CommandSub<'a>),
    /// `CONFIG GET pattern [pattern ...]`.
    ConfigGet(Words<'a>),
    /// `SELECT db`, raw (the caller accepts 0 only).
    Select(&'a [u8]),
    /// `CLIENT subcommand ...`.
    Client(ClientSub<'a>),
    /// `INFO [section ...]`.
    Info(Sections),
    /// `DBSIZE`: how many sequences have been used.
    DbSize,
    /// `TIME`: the server's clock.
    Time,
    /// `MULTI`: start queueing a transaction.
    Multi,
    /// `EXEC`: run the queued transaction.
    Exec,
    /// `DISCARD`: drop the queued transaction.
    Discard,
    /// `WATCH key ...`: refused (see `design/daemon.md`).
    Watch,
    /// `UNWATCH`: nothing is ever watched, so `+OK`.
    Unwatch,
    /// `VERSION COMMIT|READ|REPORT|STATUS ...`: the version authority.
    Version(VersionSub),
    /// `CLUSTER subcommand ...`: the Redis Cluster protocol (cluster mode).
    Cluster(ClusterSub<'a>),
    /// `READONLY`, `READWRITE`, `ASKING`: Redis Cluster client handshakes, `+OK`.
    ClusterFlag,
}

/// The subcommands of `CLUSTER` (SPEC §5, "Routing").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterSub<'a> {
    /// `CLUSTER SLOTS`: slot ranges and their nodes.
    Slots,
    /// `CLUSTER SHARDS`: the same, Redis 7's shape.
    Shards,
    /// `CLUSTER NODES`: one line per node.
    Nodes,
    /// `CLUSTER INFO`: the cluster's state.
    Info,
    /// `CLUSTER KEYSLOT key`: the key's hash slot.
    KeySlot(&'a [u8]),
    /// `CLUSTER MYID`: this node's id.
    MyId,
    /// `CLUSTER HELP`.
    Help,
}

/// The subcommands of `VERSION` (SPEC §6); a domain is any `u64`, 0 when left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionSub {
    /// `VERSION COMMIT [domain]`: a new commit version.
    Commit(u64),
    /// `VERSION READ [domain]`: the read version.
    Read(u64),
    /// `VERSION REPORT domain version`: that commit succeeded.
    Report(u64, u64),
    /// `VERSION STATUS [domain]`: the domain's state.
    Status(u64),
}

/// The subcommands of `COMMAND`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandSub<'a> {
    /// `COMMAND`: every command's description.
    All,
    /// `COMMAND COUNT`.
    Count,
    /// `COMMAND LIST`: every command's name.
    List,
    /// `COMMAND INFO [name ...]`.
    Info(Words<'a>),
    /// `COMMAND DOCS [name ...]`.
    Docs(Words<'a>),
    /// `COMMAND GETKEYS command [arg ...]`: the keys of that request.
    GetKeys(Words<'a>),
}

/// The subcommands of `CLIENT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientSub<'a> {
    /// `CLIENT ID`.
    Id,
    /// `CLIENT SETNAME name`.
    SetName(&'a [u8]),
    /// `CLIENT GETNAME`.
    GetName,
    /// `CLIENT SETINFO LIB-NAME|LIB-VER value`.
    SetInfo {
        /// Which attribute.
        attr: LibAttr,
        /// Its value.
        value: &'a [u8],
    },
    /// `CLIENT INFO`: this connection, in `CLIENT LIST`'s format.
    Info,
    /// `CLIENT LIST`: every connection.
    List,
}

/// What `CLIENT SETINFO` sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LibAttr {
    /// `LIB-NAME`: the client library's name.
    Name,
    /// `LIB-VER`: its version.
    Version,
}

/// An error reply for a request that is well-framed but wrong; the connection stays open.
///
/// Holds the full reply text without the leading `-`, e.g.
/// `ERR wrong number of arguments for 'next' command`. Never contains `\r` or `\n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandError(pub String);

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CommandError {}

/// Turns a request's arguments (command name first) into a [`Command`].
pub fn parse_command<'a>(args: &[&'a [u8]]) -> Result<Command<'a>, CommandError> {
    let Some((&name, rest)) = args.split_first() else {
        return Err(CommandError("ERR empty command".to_owned()));
    };
    let is = |s: &str| name.eq_ignore_ascii_case(s.as_bytes());
    // The number commands first: they are nearly every request.
    if is("NEXT") {
        let (ws, seq, count) = match *rest {
            [ws, seq] => (ws, seq, None),
            [ws, seq, count] => (ws, seq, Some(count)),
            _ => return Err(arity("next")),
        };
        // Checked left to right: the first bad argument is the one reported.
        let (ws, seq) = (workspace(ws)?, sequence(seq)?);
        let count = match count {
            None => 1,
            Some(c) => number(c, "count", 1, MAX_COUNT)?,
        };
        Ok(Command::Next { ws, seq, count })
    } else if is("PEEK") {
        let [ws, seq] = *rest else {
            return Err(arity("peek"));
        };
        Ok(Command::Peek {
            ws: workspace(ws)?,
            seq: sequence(seq)?,
        })
    } else if is("GETSEQ") {
        no_args(rest, "getseq", Command::GetSeq)
    } else if is("CURRENT") {
        no_args(rest, "current", Command::Current)
    } else {
        admin::parse(name, rest)
    }
}

fn no_args<'a>(
    rest: &[&'a [u8]],
    name: &str,
    command: Command<'a>,
) -> Result<Command<'a>, CommandError> {
    if rest.is_empty() {
        Ok(command)
    } else {
        Err(arity(name))
    }
}

/// Redis's wording; `name` is lowercase.
fn arity(name: &str) -> CommandError {
    CommandError(format!(
        "ERR wrong number of arguments for '{name}' command"
    ))
}

fn workspace(b: &[u8]) -> Result<u64, CommandError> {
    number(b, "workspace", 0, u64::MAX)
}

fn sequence(b: &[u8]) -> Result<u16, CommandError> {
    let n = number(b, "sequence", 0, u16::MAX.into())?;
    // Cannot fail: `n <= u16::MAX`.
    u16::try_from(n).map_err(|_| out_of_range(b, "sequence", 0, u16::MAX.into()))
}

/// An ASCII decimal number in `min..=max`: digits only (no sign, no spaces), not empty.
fn number(b: &[u8], what: &str, min: u64, max: u64) -> Result<u64, CommandError> {
    let mut n: u64 = 0;
    for &d in b {
        if !d.is_ascii_digit() {
            return Err(out_of_range(b, what, min, max));
        }
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(d - b'0')))
            .ok_or_else(|| out_of_range(b, what, min, max))?;
    }
    if b.is_empty() || n < min || n > max {
        return Err(out_of_range(b, what, min, max));
    }
    Ok(n)
}

fn out_of_range(b: &[u8], what: &str, min: u64, max: u64) -> CommandError {
    CommandError(format!(
        "ERR {what} must be an integer in {min}..={max}, got '{}'",
        show(b)
    ))
}

/// A client-sent value for an error message: at most [`SHOW_MAX`] bytes (then `...`), invalid
/// UTF-8 replaced, control characters escaped — never a `\r` or `\n`.
fn show(b: &[u8]) -> String {
    let cut = b.get(..SHOW_MAX).unwrap_or(b);
    let mut s = String::with_capacity(cut.len() + 3);
    for c in String::from_utf8_lossy(cut).chars() {
        if c.is_control() {
            s.extend(c.escape_default());
        } else {
            s.push(c);
        }
    }
    if cut.len() < b.len() {
        s.push_str("...");
    }
    s
}

#[cfg(test)]
mod tests;
