//! Reply encoders: each `write_*` appends one reply (or an aggregate's header) to an output
//! buffer, without intermediate strings.
//!
//! A connection speaks RESP2 until `HELLO 3` switches it to RESP3 ([`Proto`]). Most replies are
//! the same bytes in both: integers (every `NEXT`'s reply: the hot path does not look at the
//! protocol), simple strings, errors, bulk strings and arrays. The types RESP3 adds are encoded
//! by the functions that take a [`Proto`], each falling back to the RESP2 shape Redis uses for
//! it: a map is an array of key, value, key, value, ...; a set an array; null the null bulk
//! string; a verbatim string a bulk string.

/// The protocol a connection speaks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Proto {
    /// RESP2: what every connection starts with.
    #[default]
    Resp2,
    /// RESP3, after `HELLO 3`.
    Resp3,
}

impl Proto {
    /// The version number `HELLO` takes and reports.
    pub fn version(self) -> i64 {
        match self {
            Proto::Resp2 => 2,
            Proto::Resp3 => 3,
        }
    }
}

/// Appends the decimal digits of `n`.
fn push_digits(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut len = 0;
    for slot in digits.iter_mut().rev() {
        *slot = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(digits.get(digits.len() - len..).unwrap_or_default());
}

/// Appends `s` with every `\r` and `\n` replaced by a space, so it stays on one reply line.
fn push_line(out: &mut Vec<u8>, s: &[u8]) {
    let start = out.len();
    out.extend_from_slice(s);
    for b in out.iter_mut().skip(start) {
        if matches!(*b, b'\r' | b'\n') {
            *b = b' ';
        }
    }
}

/// A type byte, a length, CRLF.
fn header(out: &mut Vec<u8>, kind: u8, n: usize) {
    out.push(kind);
    push_digits(out, n as u64);
    out.extend_from_slice(b"\r\n");
}

/// Appends an integer reply: `:123\r\n`.
pub fn write_int(out: &mut Vec<u8>, n: i64) {
    out.push(b':');
    if n < 0 {
        out.push(b'-');
    }
    push_digits(out, n.unsigned_abs());
    out.extend_from_slice(b"\r\n");
}

/// Appends an integer reply for an unsigned number: `:123\r\n` (RESP allows numbers above
/// `i64::MAX` in the text; clients that cannot hold them report an error).
#[inline]
pub fn write_uint(out: &mut Vec<u8>, n: u64) {
    out.push(b':');
    push_digits(out, n);
    out.extend_from_slice(b"\r\n");
}

/// Appends a simple string reply: `+OK\r\n`. Any `\r` or `\n` in `s` becomes a space.
pub fn write_simple(out: &mut Vec<u8>, s: &str) {
    out.push(b'+');
    push_line(out, s.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends an error reply: `-ERR bad\r\n`. `msg` starts with the error code word (`ERR`, `BUSY`,
/// `NOAUTH`, ...); any `\r` or `\n` in it becomes a space. The same in both protocols (RESP3's
/// blob errors are for multi-line messages, which seqd never sends).
pub fn write_error(out: &mut Vec<u8>, msg: &str) {
    out.push(b'-');
    push_line(out, msg.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends a bulk string reply: `$3\r\nabc\r\n`. Binary-safe.
pub fn write_bulk(out: &mut Vec<u8>, b: &[u8]) {
    header(out, b'$', b.len());
    out.extend_from_slice(b);
    out.extend_from_slice(b"\r\n");
}

/// Appends null: `_\r\n` in RESP3, the null bulk string `$-1\r\n` in RESP2.
pub fn write_null(out: &mut Vec<u8>, proto: Proto) {
    out.extend_from_slice(match proto {
        Proto::Resp2 => b"$-1\r\n",
        Proto::Resp3 => b"_\r\n",
    });
}

/// Appends an array header: `*2\r\n`; the caller then appends that many replies.
pub fn write_array_len(out: &mut Vec<u8>, n: usize) {
    header(out, b'*', n);
}

/// Appends a map header for `n` pairs: `%n` in RESP3, an array of `2n` in RESP2; the caller then
/// appends key, value, key, value, ...
pub fn write_map_len(out: &mut Vec<u8>, proto: Proto, n: usize) {
    match proto {
        Proto::Resp2 => header(out, b'*', 2 * n),
        Proto::Resp3 => header(out, b'%', n),
    }
}

/// Appends a set header: `~n` in RESP3, an array in RESP2.
pub fn write_set_len(out: &mut Vec<u8>, proto: Proto, n: usize) {
    match proto {
        Proto::Resp2 => header(out, b'*', n),
        Proto::Resp3 => header(out, b'~', n),
    }
}

/// Appends a verbatim string of plain text (`INFO`, `CLIENT INFO`): `=len\r\ntxt:...` in RESP3,
/// a bulk string in RESP2.
pub fn write_verbatim(out: &mut Vec<u8>, proto: Proto, text: &[u8]) {
    match proto {
        Proto::Resp2 => write_bulk(out, text),
        Proto::Resp3 => {
            header(out, b'=', text.len() + 4);
            out.extend_from_slice(b"txt:");
            out.extend_from_slice(text);
            out.extend_from_slice(b"\r\n");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        f(&mut out);
        out.escape_ascii().to_string()
    }

    #[test]
    fn resp3_types_and_their_resp2_shapes() {
        use Proto::{Resp2, Resp3};
        assert_eq!(bytes(|o| write_null(o, Resp2)), "$-1\\r\\n");
        assert_eq!(bytes(|o| write_null(o, Resp3)), "_\\r\\n");
        assert_eq!(bytes(|o| write_map_len(o, Resp2, 3)), "*6\\r\\n");
        assert_eq!(bytes(|o| write_map_len(o, Resp3, 3)), "%3\\r\\n");
        assert_eq!(bytes(|o| write_map_len(o, Resp3, 0)), "%0\\r\\n");
        assert_eq!(bytes(|o| write_set_len(o, Resp2, 2)), "*2\\r\\n");
        assert_eq!(bytes(|o| write_set_len(o, Resp3, 2)), "~2\\r\\n");
        assert_eq!(
            bytes(|o| write_verbatim(o, Resp2, b"a:1\r\n")),
            "$5\\r\\na:1\\r\\n\\r\\n"
        );
        assert_eq!(
            bytes(|o| write_verbatim(o, Resp3, b"a:1\r\n")),
            "=9\\r\\ntxt:a:1\\r\\n\\r\\n"
        );
        assert_eq!(
            bytes(|o| write_verbatim(o, Resp3, b"")),
            "=4\\r\\ntxt:\\r\\n"
        );
        assert_eq!((Resp2.version(), Resp3.version()), (2, 3));
        assert_eq!(Proto::default(), Resp2);
    }
}
