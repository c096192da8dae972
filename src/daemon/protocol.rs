//! RESP framing: parse requests ([`parse_request`]) and encode replies ([`reply`], RESP2 and
//! RESP3).
//!
//! [`parse_request`] reads one request from the front of a connection's read buffer. It accepts
//! both forms Redis accepts — RESP multibulk (`*2\r\n$4\r\nPING\r\n$2\r\nhi\r\n`, what client
//! libraries send) and inline commands (`PING hi\r\n`, what a human types into `nc`). Arguments
//! come back as byte ranges into that buffer, without a copy; only an inline line with quotes
//! (`PING "hello world"`, unquoted and unescaped as Redis does, see [`inline`]) is decoded into
//! a copy held by [`Args`].
//!
//! Every limit is checked as soon as the bytes that break it arrive, so a peer can never make the
//! server buffer more than one maximal request while it waits for a line ending.

#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use std::fmt;
use std::ops::Range;

pub mod inline;
pub mod reply;

pub use reply::*;

/// Longest inline command line (bytes, without the line ending).
pub const MAX_INLINE: usize = 64 * 1024;
/// Most arguments in one request (command name included).
pub const MAX_ARGS: usize = 64;
/// Longest bulk string in a request.
pub const MAX_BULK: usize = 64 * 1024;
/// Most digits in a length header (`u64::MAX` has 20): bounds a header line to 24 bytes.
const MAX_DIGITS: usize = 20;

/// A framing error: the stream cannot be resynchronized; the server replies
/// `-ERR Protocol error: {msg}` and closes the connection (as Redis does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError(pub String);

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ProtocolError {}

/// The arguments of one parsed request: byte ranges into the request's bytes or, for an inline
/// request with quotes, into the decoded copy this holds. Reused from request to request, so
/// parsing allocates nothing once warm.
#[derive(Clone, Debug, Default)]
pub struct Args {
    ranges: Vec<Range<usize>>,
    decoded: Vec<u8>,
    is_decoded: bool,
}

impl Args {
    /// No arguments.
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of arguments (0 for the requests Redis skips: `*0`, `*-1`, blank lines).
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The arguments, given the buffer [`parse_request`] parsed them from.
    pub fn iter<'a>(&'a self, buf: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
        let base = if self.is_decoded {
            &self.decoded[..]
        } else {
            buf
        };
        self.ranges.iter().filter_map(move |r| base.get(r.clone()))
    }

    /// The arguments' ranges: into the parsed buffer, or into the decoded copy when
    /// [`is_decoded`](Self::is_decoded).
    pub fn ranges(&self) -> &[Range<usize>] {
        &self.ranges
    }

    /// Whether the arguments were decoded from quotes (and so live in a copy, not the buffer).
    pub fn is_decoded(&self) -> bool {
        self.is_decoded
    }

    fn clear(&mut self) {
        self.ranges.clear();
        self.decoded.clear();
        self.is_decoded = false;
    }

    fn push(&mut self, arg: Range<usize>) -> Result<(), ProtocolError> {
        if self.ranges.len() >= MAX_ARGS {
            return Err(ProtocolError(format!(
                "too many arguments in inline request (more than {MAX_ARGS})"
            )));
        }
        self.ranges.push(arg);
        Ok(())
    }
}

/// Parses one request from the front of `buf`.
///
/// - `Ok(Some(n))`: a complete request occupying `buf[..n]` (`n > 0`); its arguments are written
///   to `args` (cleared first; read them with [`Args::iter`] on `buf`). `args` is empty for the
///   requests Redis skips: `*0\r\n`, `*-1\r\n` and blank inline lines.
/// - `Ok(None)`: incomplete; read more and call again with the longer buffer (the caller keeps
///   the bytes). `args` is left empty. Works whatever byte boundaries the reads split at.
/// - `Err`: malformed or over a limit ([`MAX_ARGS`], [`MAX_BULK`], [`MAX_INLINE`]); reported as
///   soon as the offending bytes arrive, without waiting for the rest of the request.
///
/// Never panics; runs in time linear in the part of `buf` it looks at, which is at most one
/// request: the header lines of a multibulk request (bulk data is skipped, not scanned), or up to
/// `MAX_INLINE + 2` bytes of an inline line.
pub fn parse_request(buf: &[u8], args: &mut Args) -> Result<Option<usize>, ProtocolError> {
    args.clear();
    let result = match buf.first() {
        None => Ok(None),
        Some(b'*') => parse_multibulk(buf, args),
        Some(_) => parse_inline(buf, args),
    };
    if !matches!(result, Ok(Some(_))) {
        args.clear();
    }
    result
}

/// A parsed length header (`*<n>\r\n` or `$<len>\r\n`).
enum Header {
    /// The line has not fully arrived (and is valid so far).
    Incomplete,
    /// `-1`: the null multibulk.
    Null { next: usize },
    /// A length, and where the bytes after the line's CRLF start.
    Len { len: usize, next: usize },
}

/// Parses the decimal length that starts at `buf[start]` (just after the `*` or `$`) and ends with
/// CRLF. `what` names the header in errors; lengths above `max` are refused as soon as seen.
fn parse_header(
    buf: &[u8],
    start: usize,
    max: usize,
    null_ok: bool,
    what: &str,
    unit: &str,
) -> Result<Header, ProtocolError> {
    let invalid = || ProtocolError(format!("invalid {what} length"));
    let mut i = start;
    let null = null_ok && buf.get(i) == Some(&b'-');
    if null {
        i += 1;
    }
    let digits = i;
    let mut value: usize = 0;
    loop {
        match buf.get(i) {
            None => return Ok(Header::Incomplete),
            Some(&b) if b.is_ascii_digit() => {
                if i - digits >= MAX_DIGITS || (null && value > 0) {
                    return Err(invalid());
                }
                // No overflow: `value <= max` held before this digit, and `max` is small.
                value = value * 10 + usize::from(b - b'0');
                if value > max {
                    return Err(ProtocolError(format!(
                        "invalid {what} length: more than {max} {unit}"
                    )));
                }
                i += 1;
            }
            Some(b'\r') => break,
            Some(_) => return Err(invalid()),
        }
    }
    if i == digits || (null && value != 1) {
        return Err(invalid());
    }
    match buf.get(i + 1) {
        None => Ok(Header::Incomplete),
        Some(b'\n') if null => Ok(Header::Null { next: i + 2 }),
        Some(b'\n') => Ok(Header::Len {
            len: value,
            next: i + 2,
        }),
        Some(_) => Err(invalid()),
    }
}

/// `*<n>\r\n` then n × `$<len>\r\n<len bytes>\r\n`.
fn parse_multibulk(buf: &[u8], args: &mut Args) -> Result<Option<usize>, ProtocolError> {
    let (n, mut pos) = match parse_header(buf, 1, MAX_ARGS, true, "multibulk", "arguments")? {
        Header::Incomplete => return Ok(None),
        Header::Null { next } => return Ok(Some(next)),
        Header::Len { len, next } => (len, next),
    };
    for _ in 0..n {
        match buf.get(pos) {
            None => return Ok(None),
            Some(b'$') => {}
            Some(&b) => {
                return Err(ProtocolError(format!(
                    "expected '$', got '{}'",
                    b.escape_ascii()
                )));
            }
        }
        let (len, start) = match parse_header(buf, pos + 1, MAX_BULK, false, "bulk", "bytes")? {
            Header::Len { len, next } => (len, next),
            Header::Incomplete | Header::Null { .. } => return Ok(None),
        };
        // No overflow: `start <= buf.len()` and `len <= MAX_BULK`.
        let end = start + len;
        match buf.get(end..end + 2) {
            Some(b"\r\n") => {}
            Some(_) => return Err(no_crlf()),
            None if buf.get(end).is_some_and(|&b| b != b'\r') => return Err(no_crlf()),
            None => return Ok(None),
        }
        args.ranges.push(start..end);
        pos = end + 2;
    }
    Ok(Some(pos))
}

fn no_crlf() -> ProtocolError {
    ProtocolError("bulk string not followed by CRLF".to_owned())
}

/// One line ending in `\n` (a `\r` before it is stripped), split into words as Redis does
/// ([`inline::split`]).
fn parse_inline(buf: &[u8], args: &mut Args) -> Result<Option<usize>, ProtocolError> {
    let too_big = || ProtocolError("too big inline request".to_owned());
    // A line of MAX_INLINE bytes plus "\r\n" fits in this window; a longer one never does.
    let window = buf.get(..MAX_INLINE + 2).unwrap_or(buf);
    let Some(newline) = window.iter().position(|&b| b == b'\n') else {
        let line = window.strip_suffix(b"\r").unwrap_or(window);
        return if line.len() > MAX_INLINE {
            Err(too_big())
        } else {
            Ok(None)
        };
    };
    let line = window.get(..newline).unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.len() > MAX_INLINE {
        return Err(too_big());
    }
    inline::split(line, args)?;
    Ok(Some(newline + 1))
}

#[cfg(test)]
mod tests;
