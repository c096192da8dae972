//! The client side of RESP2 for forwarding: encoding commands, parsing replies.

/// One reply of a peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerReply {
    /// `:N` (wide enough for every `u64` number seqd hands out)
    Integer(i128),
    /// `+text`
    Simple(String),
    /// `-text` (without the dash)
    Error(String),
    /// `$N` bytes, or `$-1` (`None`).
    Bulk(Option<Vec<u8>>),
    /// `*N` replies, or `*-1` (`None`).
    Array(Option<Vec<PeerReply>>),
}

/// A reply that is not RESP2, or over the limits below.
#[derive(Debug, PartialEq, Eq)]
pub struct Malformed(pub String);

/// Longest header line and bulk string accepted from a peer, and the deepest nesting.
const MAX_LINE: usize = 64 * 1024;
const MAX_BULK: usize = 64 * 1024 * 1024;
const MAX_DEPTH: usize = 8;
const MAX_ITEMS: usize = 1 << 20;

/// Appends `args` as a RESP array of bulk strings.
pub fn encode(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.push(b'*');
    out.extend_from_slice(args.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    for a in args {
        out.push(b'$');
        out.extend_from_slice(a.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// Parses one reply at the start of `buf`: `Ok(Some((reply, bytes used)))`, `Ok(None)` when
/// `buf` holds only part of it.
pub fn parse(buf: &[u8]) -> Result<Option<(PeerReply, usize)>, Malformed> {
    parse_at(buf, 0, 0)
}

fn parse_at(buf: &[u8], at: usize, depth: usize) -> Result<Option<(PeerReply, usize)>, Malformed> {
    if depth > MAX_DEPTH {
        return Err(Malformed("reply nested too deep".into()));
    }
    let Some((line, next)) = line(buf, at)? else {
        return Ok(None);
    };
    let Some((&kind, rest)) = line.split_first() else {
        return Err(Malformed("empty reply line".into()));
    };
    let text = || String::from_utf8_lossy(rest).into_owned();
    match kind {
        b':' => Ok(Some((PeerReply::Integer(wide(rest)?), next))),
        b'+' => Ok(Some((PeerReply::Simple(text()), next))),
        b'-' => Ok(Some((PeerReply::Error(text()), next))),
        b'$' => {
            let n = number(rest)?;
            if n < 0 {
                return Ok(Some((PeerReply::Bulk(None), next)));
            }
            let n = usize::try_from(n).map_err(|_| Malformed("bulk length".into()))?;
            if n > MAX_BULK {
                return Err(Malformed(format!("bulk of {n} bytes")));
            }
            let end = next + n;
            if buf.len() < end + 2 {
                return Ok(None);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err(Malformed("bulk not followed by CRLF".into()));
            }
            Ok(Some((
                PeerReply::Bulk(Some(buf[next..end].to_vec())),
                end + 2,
            )))
        }
        b'*' => {
            let n = number(rest)?;
            if n < 0 {
                return Ok(Some((PeerReply::Array(None), next)));
            }
            let n = usize::try_from(n).map_err(|_| Malformed("array length".into()))?;
            if n > MAX_ITEMS {
                return Err(Malformed(format!("array of {n} items")));
            }
            let mut items = Vec::with_capacity(n.min(1024));
            let mut at = next;
            for _ in 0..n {
                match parse_at(buf, at, depth + 1)? {
                    Some((item, after)) => {
                        items.push(item);
                        at = after;
                    }
                    None => return Ok(None),
                }
            }
            Ok(Some((PeerReply::Array(Some(items)), at)))
        }
        other => Err(Malformed(format!(
            "unexpected reply type {:?}",
            char::from(other)
        ))),
    }
}

/// The line starting at `at` (without CRLF) and the offset after it.
fn line(buf: &[u8], at: usize) -> Result<Option<(&[u8], usize)>, Malformed> {
    let window = &buf[at.min(buf.len())..];
    match window.windows(2).position(|w| w == b"\r\n") {
        Some(i) => Ok(Some((&window[..i], at + i + 2))),
        None if window.len() > MAX_LINE => Err(Malformed("reply line too long".into())),
        None => Ok(None),
    }
}

fn wide(digits: &[u8]) -> Result<i128, Malformed> {
    std::str::from_utf8(digits)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Malformed(format!("bad number {:?}", String::from_utf8_lossy(digits))))
}

fn number(digits: &[u8]) -> Result<i64, Malformed> {
    std::str::from_utf8(digits)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Malformed(format!("bad number {:?}", String::from_utf8_lossy(digits))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_kind_and_waits_for_the_rest() {
        let buf = b":42\r\n:18446744073709551615\r\n+OK\r\n-MOVED 3 h:1\r\n$3\r\nabc\r\n$-1\r\n*2\r\n:1\r\n$1\r\nx\r\n";
        let mut at = 0;
        let mut got = Vec::new();
        while let Some((r, used)) = parse(&buf[at..]).unwrap() {
            got.push(r);
            at += used;
        }
        assert_eq!(at, buf.len());
        assert_eq!(
            got,
            vec![
                PeerReply::Integer(42),
                PeerReply::Integer(i128::from(u64::MAX)),
                PeerReply::Simple("OK".into()),
                PeerReply::Error("MOVED 3 h:1".into()),
                PeerReply::Bulk(Some(b"abc".to_vec())),
                PeerReply::Bulk(None),
                PeerReply::Array(Some(vec![
                    PeerReply::Integer(1),
                    PeerReply::Bulk(Some(b"x".to_vec()))
                ])),
            ]
        );
        for cut in 1..buf.len() {
            // A prefix parses to complete replies and then waits; never an error.
            let mut at = 0;
            while let Ok(Some((_, used))) = parse(&buf[at..cut]) {
                at += used;
            }
            assert!(parse(&buf[at..cut]).is_ok());
        }
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse(b"?\r\n").is_err());
        assert!(parse(b":x\r\n").is_err());
        assert!(parse(b"$3\r\nabcd\r\n").is_err());
        assert!(parse(&vec![b'+'; MAX_LINE + 2]).is_err());
        let deep = "*1\r\n".repeat(MAX_DEPTH + 2);
        assert!(parse(deep.as_bytes()).is_err());
    }

    #[test]
    fn encodes_commands() {
        let mut out = Vec::new();
        encode(&mut out, &[b"NEXT", b"42", b"7"]);
        assert_eq!(out, b"*3\r\n$4\r\nNEXT\r\n$2\r\n42\r\n$1\r\n7\r\n");
    }
}
