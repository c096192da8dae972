//! Protocol commands: from a parsed frame to a typed [`Command`].
//!
//! [`parse_command`] checks names (case-insensitive), arity and numbers, and says exactly what is
//! wrong when something is: the error text is sent to the client as is. Parsing `GETSEQ`, `NEXT`
//! and `PEEK` never allocates; errors do.

#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use std::fmt;

/// Most numbers one NEXT may take.
pub const MAX_COUNT: u64 = 1_000_000;

/// Longest part of a client-sent value quoted back in an error message.
const SHOW_MAX: usize = 32;

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
    /// `COMMAND [subcommand ...]`: the subcommand name, raw (the caller compares it
    /// case-insensitively); further arguments are ignored.
    CommandInfo(Option<&'a [u8]>),
    /// `CONFIG GET pattern`.
    ConfigGet(&'a [u8]),
    /// `SELECT db`, raw (the caller accepts 0 only).
    Select(&'a [u8]),
    /// `CLIENT SETNAME name` or `CLIENT SETINFO attr value`: accepted and ignored.
    ClientSetInfo,
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
    } else if is("PING") {
        match *rest {
            [] => Ok(Command::Ping(None)),
            [message] => Ok(Command::Ping(Some(message))),
            _ => Err(arity("ping")),
        }
    } else if is("QUIT") {
        no_args(rest, "quit", Command::Quit)
    } else if is("AUTH") {
        match *rest {
            [password] => Ok(Command::Auth {
                username: None,
                password,
            }),
            [username, password] => Ok(Command::Auth {
                username: Some(username),
                password,
            }),
            _ => Err(arity("auth")),
        }
    } else if is("HELLO") {
        hello(rest)
    } else if is("COMMAND") {
        Ok(Command::CommandInfo(rest.first().copied()))
    } else if is("CONFIG") {
        config(rest)
    } else if is("SELECT") {
        let [db] = *rest else {
            return Err(arity("select"));
        };
        Ok(Command::Select(db))
    } else if is("CLIENT") {
        client(rest)
    } else {
        Err(CommandError(format!(
            "ERR Unknown command '{}'. Supported: GETSEQ, CURRENT, NEXT, PEEK, PING, QUIT, AUTH, \
             HELLO, COMMAND, CONFIG GET",
            show(name)
        )))
    }
}

/// `HELLO [protover [AUTH username password] [SETNAME clientname]]`; options in any order, the
/// last of a repeated option wins (as in Redis).
fn hello<'a>(rest: &[&'a [u8]]) -> Result<Command<'a>, CommandError> {
    let Some((&version, mut options)) = rest.split_first() else {
        return Ok(Command::Hello {
            version: None,
            auth: None,
            setname: None,
        });
    };
    let (mut auth, mut setname) = (None, None);
    while let Some((&option, after)) = options.split_first() {
        options = match *after {
            [user, pass, ref more @ ..] if option.eq_ignore_ascii_case(b"AUTH") => {
                auth = Some((user, pass));
                more
            }
            [name, ref more @ ..] if option.eq_ignore_ascii_case(b"SETNAME") => {
                setname = Some(name);
                more
            }
            _ => {
                return Err(CommandError(format!(
                    "ERR Syntax error in HELLO option '{}'",
                    show(option)
                )));
            }
        };
    }
    Ok(Command::Hello {
        version: Some(version),
        auth,
        setname,
    })
}

/// `CONFIG GET pattern`; other subcommands are refused.
fn config<'a>(rest: &[&'a [u8]]) -> Result<Command<'a>, CommandError> {
    let Some((&sub, params)) = rest.split_first() else {
        return Err(arity("config"));
    };
    if !sub.eq_ignore_ascii_case(b"GET") {
        return Err(CommandError(format!(
            "ERR CONFIG subcommand '{}' is not supported; only CONFIG GET",
            show(sub)
        )));
    }
    match *params {
        [pattern] => Ok(Command::ConfigGet(pattern)),
        _ => Err(arity("config|get")),
    }
}

/// `CLIENT SETNAME name` and `CLIENT SETINFO attr value` (sent by client libraries on connect);
/// other subcommands are refused.
fn client<'a>(rest: &[&'a [u8]]) -> Result<Command<'a>, CommandError> {
    let Some((&sub, params)) = rest.split_first() else {
        return Err(arity("client"));
    };
    if sub.eq_ignore_ascii_case(b"SETNAME") {
        match params.len() {
            1 => Ok(Command::ClientSetInfo),
            _ => Err(arity("client|setname")),
        }
    } else if sub.eq_ignore_ascii_case(b"SETINFO") {
        match params.len() {
            2 => Ok(Command::ClientSetInfo),
            _ => Err(arity("client|setinfo")),
        }
    } else {
        Err(CommandError(format!(
            "ERR CLIENT subcommand '{}' is not supported; only CLIENT SETNAME and CLIENT SETINFO",
            show(sub)
        )))
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
