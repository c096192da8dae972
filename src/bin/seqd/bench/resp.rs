//! The little RESP the tool needs: requests encoded ahead of the run, and a parser for the
//! replies it expects (integers and errors; anything else is counted as unexpected).

use std::sync::Arc;

use super::args::{BenchCommand, Plan};
use super::keys::KeyChooser;

/// Key spaces up to this size get every request encoded before the run; larger ones
/// encode the digits per request into the connection's write buffer.
const TABLE_KEYS: u64 = 100_000;

/// Encodes the request for a key into a write buffer without allocating (the buffer is
/// reused and only grows).
#[derive(Debug)]
pub struct Requests {
    command: BenchCommand,
    count: u64,
    chooser: KeyChooser,
    /// Every key's request, back to back, when the key space is small.
    table: Option<(Vec<u8>, Vec<usize>)>,
}

impl Requests {
    pub fn new(plan: &Plan) -> Arc<Requests> {
        let mut r = Requests {
            command: plan.args.command,
            count: plan.args.count,
            chooser: KeyChooser::new(plan),
            table: None,
        };
        if plan.keys() <= TABLE_KEYS {
            let mut bytes = Vec::new();
            let mut starts = Vec::with_capacity(plan.keys() as usize + 1);
            for key in 0..plan.keys() {
                starts.push(bytes.len());
                r.format(key, &mut bytes);
            }
            starts.push(bytes.len());
            r.table = Some((bytes, starts));
        }
        Arc::new(r)
    }

    /// Appends the request for `key` (an index `ws * seqs + seq`) to `out`.
    #[inline]
    pub fn encode(&self, key: u64, out: &mut Vec<u8>) {
        match &self.table {
            Some((bytes, starts)) => {
                let k = key as usize;
                out.extend_from_slice(&bytes[starts[k]..starts[k + 1]]);
            }
            None => self.format(key, out),
        }
    }

    fn format(&self, key: u64, out: &mut Vec<u8>) {
        let (ws, seq) = self.chooser.split(key);
        match self.command {
            BenchCommand::Getseq => out.extend_from_slice(b"*1\r\n$6\r\nGETSEQ\r\n"),
            BenchCommand::Next => {
                out.extend_from_slice(b"*4\r\n$4\r\nNEXT\r\n");
                bulk_number(ws, out);
                bulk_number(seq, out);
                bulk_number(self.count, out);
            }
            BenchCommand::Incr => {
                if self.count == 1 {
                    out.extend_from_slice(b"*2\r\n$4\r\nINCR\r\n");
                } else {
                    out.extend_from_slice(b"*3\r\n$6\r\nINCRBY\r\n");
                }
                // `seq:{ws}:{seq}`
                let mut digits = [0u8; 20];
                let ws_digits = decimal(ws, &mut digits).len();
                let mut digits2 = [0u8; 20];
                let seq_digits = decimal(seq, &mut digits2).len();
                out.push(b'$');
                out.extend_from_slice(decimal((5 + ws_digits + seq_digits) as u64, &mut [0; 20]));
                out.extend_from_slice(b"\r\nseq:");
                out.extend_from_slice(decimal(ws, &mut digits));
                out.push(b':');
                out.extend_from_slice(decimal(seq, &mut digits2));
                out.extend_from_slice(b"\r\n");
                if self.count != 1 {
                    bulk_number(self.count, out);
                }
            }
        }
    }

    /// The chooser of the plan these requests were made for.
    pub fn chooser(&self) -> &KeyChooser {
        &self.chooser
    }
}

/// `$len\r\ndigits\r\n`.
fn bulk_number(n: u64, out: &mut Vec<u8>) {
    let mut digits = [0u8; 20];
    let d = decimal(n, &mut digits);
    out.push(b'$');
    out.extend_from_slice(decimal(d.len() as u64, &mut [0; 20]));
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(d);
    out.extend_from_slice(b"\r\n");
}

/// The decimal digits of `n`, written at the end of `buf`.
fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

/// One reply.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply<'a> {
    /// `:n`
    Integer(i64),
    /// `-CODE message`: the whole line after `-`.
    Error(&'a [u8]),
    /// Anything else (`+OK`, a bulk string, an array): not what the tool asked for.
    Other(&'static str),
}

/// The stream cannot be read as RESP.
#[derive(Debug, PartialEq, Eq)]
pub struct ProtocolError(pub String);

/// Parses one reply at the start of `buf`: `Ok(None)` when it is not complete yet,
/// else the reply and the bytes it took.
pub fn parse(buf: &[u8]) -> Result<Option<(Reply<'_>, usize)>, ProtocolError> {
    let Some((&kind, rest)) = buf.split_first() else {
        return Ok(None);
    };
    let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
        if rest.len() > 64 * 1024 {
            return Err(ProtocolError("a reply line longer than 64 KiB".into()));
        }
        return Ok(None);
    };
    let line = &rest[..eol];
    let used = 1 + eol + 2;
    match kind {
        b':' => Ok(Some((Reply::Integer(integer(line)?), used))),
        b'-' => Ok(Some((Reply::Error(line), used))),
        b'+' => Ok(Some((Reply::Other("a status reply"), used))),
        b'$' => {
            let len = integer(line)?;
            if len < 0 {
                return Ok(Some((Reply::Other("a nil reply"), used)));
            }
            let total = used + len as usize + 2;
            Ok((buf.len() >= total).then_some((Reply::Other("a bulk string"), total)))
        }
        b'*' => {
            let n = integer(line)?;
            let mut at = used;
            for _ in 0..n.max(0) {
                match parse(&buf[at..])? {
                    Some((_, len)) => at += len,
                    None => return Ok(None),
                }
            }
            Ok(Some((Reply::Other("an array"), at)))
        }
        other => Err(ProtocolError(format!(
            "a reply starting with byte {other:#04x} ({:?})",
            String::from_utf8_lossy(&buf[..buf.len().min(40)])
        ))),
    }
}

fn integer(line: &[u8]) -> Result<i64, ProtocolError> {
    std::str::from_utf8(line)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            ProtocolError(format!(
                "'{}' is not an integer",
                String::from_utf8_lossy(line)
            ))
        })
}

/// The code word of an error reply: `BUSY` of `BUSY partition is recovering`.
pub fn error_kind(line: &[u8]) -> &[u8] {
    let end = line.iter().position(|&b| b == b' ').unwrap_or(line.len());
    &line[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::args::test_plan;

    fn requests(argv: &[&str]) -> Arc<Requests> {
        Requests::new(&test_plan(argv))
    }

    fn encoded(r: &Requests, key: u64) -> String {
        let mut out = Vec::new();
        r.encode(key, &mut out);
        String::from_utf8(out).expect("ascii")
    }

    #[test]
    fn encodes_each_command() {
        let r = requests(&["--workspaces", "20", "--seqs", "3", "--count", "10"]);
        assert_eq!(
            encoded(&r, 31),
            "*4\r\n$4\r\nNEXT\r\n$2\r\n10\r\n$1\r\n1\r\n$2\r\n10\r\n"
        );
        let r = requests(&["--command", "getseq"]);
        assert_eq!(encoded(&r, 0), "*1\r\n$6\r\nGETSEQ\r\n");
        let r = requests(&["--command", "incr", "--workspaces", "200000", "--seqs", "2"]);
        assert_eq!(
            encoded(&r, 200_001),
            "*2\r\n$4\r\nINCR\r\n$12\r\nseq:100000:1\r\n"
        );
        let r = requests(&["--command", "incr", "--count", "5"]);
        assert_eq!(
            encoded(&r, 0),
            "*3\r\n$6\r\nINCRBY\r\n$7\r\nseq:0:0\r\n$1\r\n5\r\n"
        );
    }

    #[test]
    fn parses_replies() {
        assert_eq!(parse(b":12\r\n:3"), Ok(Some((Reply::Integer(12), 5))));
        assert_eq!(parse(b":12\r"), Ok(None));
        assert_eq!(
            parse(b"-BUSY retry\r\n"),
            Ok(Some((Reply::Error(b"BUSY retry"), 13)))
        );
        assert_eq!(parse(b"$3\r\nab"), Ok(None));
        assert_eq!(
            parse(b"$2\r\nab\r\n"),
            Ok(Some((Reply::Other("a bulk string"), 8)))
        );
        assert_eq!(parse(b"*2\r\n:1\r\n"), Ok(None));
        assert_eq!(
            parse(b"*2\r\n:1\r\n+OK\r\n"),
            Ok(Some((Reply::Other("an array"), 13)))
        );
        assert!(parse(b":x\r\n").is_err());
        assert!(parse(b"hello\r\n").is_err());
        assert_eq!(error_kind(b"BUSY retry"), b"BUSY");
        assert_eq!(error_kind(b"NOAUTH"), b"NOAUTH");
    }
}
