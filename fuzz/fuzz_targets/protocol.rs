//! The daemon's request parser (`protocol::parse_request`, then `command::parse_command`) on
//! arbitrary bytes, split at arbitrary points across reads.
//!
//! Input: `control`, then `(control & 7) + 1` chunk lengths (bytes; 0 counts as 1), then the
//! payload the peer sends. The payload is delivered in reads of those lengths, cycling, into a
//! growing buffer handled exactly as `src/daemon/server.rs` does (append a read; parse as many
//! complete requests as possible, at most `((control >> 3) & 3) + 1` per pass, standing in for
//! `MAX_PIPELINE`; consume them; keep the incomplete tail).
//!
//! Properties, beyond "no panic":
//! * split reads and one read of the whole payload yield the same requests, commands and
//!   framing error, and leave the same unconsumed tail;
//! * a parsed request lies inside the buffer, its arguments inside the request, in order,
//!   within `MAX_ARGS` / `MAX_BULK` / `MAX_INLINE`; parsing it alone gives the same answer and
//!   its prefix one byte short is incomplete, not an error;
//! * an incomplete request never holds more than one maximal request's bytes;
//! * `parse_command` errors are one `ERR ...` line; `NEXT` / `PEEK` accept exactly the plain
//!   decimal numbers in range (checked against `str::parse`); command names are
//!   case-insensitive;
//! * any argument list encoded as a RESP array with the `write_*` reply encoders (and as an
//!   inline line, when it can be one: plain, or quoted and escaped as `redis-cli` would) parses
//!   back to itself;
//! * RESP3 mode: every reply type whose encoding depends on the protocol (maps, sets, nulls,
//!   verbatim text), with payloads from the input, and `COMMAND INFO`/`DOCS` of every command,
//!   decode as exactly one well-formed reply in both RESP2 and RESP3, the RESP2 shape being the
//!   RESP3 one flattened; `COMMAND GETKEYS` of the parsed request never panics and, for a valid
//!   `NEXT`/`PEEK`, names the workspace.

#![no_main]

use libfuzzer_sys::fuzz_target;
use seqd::daemon::command::{Command, MAX_COUNT, parse_command, spec};
use seqd::daemon::protocol::{
    self, Args, MAX_ARGS, MAX_BULK, MAX_INLINE, Proto, inline, parse_request,
};

/// The most bytes an incomplete multibulk request can hold: a `*` header of at most 20 digits
/// (or `-1`), then `MAX_ARGS` × (`$`, 20 digits, CRLF, `MAX_BULK` bytes, CRLF).
const MAX_MULTIBULK: usize = 1 + 1 + 20 + 2 + MAX_ARGS * (1 + 20 + 2 + MAX_BULK + 2);

/// What a connection saw, in order.
#[derive(Debug, PartialEq)]
enum Event {
    /// A complete request with at least one argument: its arguments, and what
    /// `parse_command` made of them (`Debug`, since a `Command` borrows the buffer).
    Request { args: Vec<Vec<u8>>, command: String },
    /// A complete request without arguments (`*0`, `*-1`, a blank line): skipped.
    Empty,
    /// A framing error: the server replies with it and closes the connection.
    Error(String),
}

#[derive(Debug, PartialEq)]
struct Outcome {
    events: Vec<Event>,
    /// The bytes left unconsumed when the input ended (empty after an error).
    tail: Vec<u8>,
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let n_lens = usize::from(control & 7) + 1;
    let pipeline = usize::from((control >> 3) & 3) + 1;
    let (lens, payload) = rest.split_at(n_lens.min(rest.len()));
    let lens: Vec<usize> = lens.iter().map(|&b| usize::from(b).max(1)).collect();

    let whole = serve(payload, &[payload.len().max(1)], usize::MAX);
    let split = serve(payload, &lens, pipeline);
    assert_eq!(
        whole, split,
        "one read vs reads of {lens:?} (pipeline {pipeline})"
    );

    round_trip(payload, &lens);
    resp3_replies(payload);
});

/// Feeds `payload` in reads of `lens` (cycling) through the server's buffer handling.
fn serve(payload: &[u8], lens: &[usize], pipeline: usize) -> Outcome {
    let mut events = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    let mut start = 0;
    let mut sent = 0;
    let mut lens = lens.iter().cycle();
    loop {
        let (consumed, closed) = process(&buf[start..], pipeline, &mut events);
        assert!(consumed <= buf.len() - start, "consumed past the buffer");
        start += consumed;
        if closed {
            return Outcome {
                events,
                tail: Vec::new(),
            };
        }
        if consumed > 0 && start < buf.len() {
            continue; // more complete requests may be buffered
        }
        buf.drain(..start);
        start = 0;
        if sent == payload.len() {
            return Outcome { events, tail: buf };
        }
        let len = lens.next().copied().unwrap_or(1);
        let end = (sent + len).min(payload.len());
        buf.extend_from_slice(&payload[sent..end]);
        sent = end;
    }
}

/// `Conn::process`: parses up to `pipeline` requests from the front of `buf`. Returns the bytes
/// consumed and whether the connection closes (a framing error).
fn process(buf: &[u8], pipeline: usize, events: &mut Vec<Event>) -> (usize, bool) {
    let mut pos = 0;
    let mut taken = 0;
    while taken < pipeline && pos < buf.len() {
        let rest = &buf[pos..];
        match checked_parse(rest) {
            Ok(Some((len, argv))) => {
                taken += 1;
                pos += len;
                let argv: Vec<&[u8]> = argv.iter().map(Vec::as_slice).collect();
                if argv.is_empty() {
                    events.push(Event::Empty);
                } else {
                    events.push(Event::Request {
                        args: argv.iter().map(|a| a.to_vec()).collect(),
                        command: checked_command(&argv),
                    });
                }
            }
            Ok(None) => break,
            Err(e) => {
                events.push(Event::Error(e));
                return (buf.len(), true);
            }
        }
    }
    (pos, false)
}

/// A complete request: its length and its arguments.
type Parsed = (usize, Vec<Vec<u8>>);

/// `parse_request`, with every property of one call checked.
fn checked_parse(buf: &[u8]) -> Result<Option<Parsed>, String> {
    let mut args = Args::new();
    // Junk from an earlier request: parse_request must clear it.
    let _ = parse_request(b"X 'y' z\n", &mut args);
    match parse_request(buf, &mut args) {
        Ok(Some(n)) => {
            assert!(n > 0 && n <= buf.len(), "consumed {n} of {}", buf.len());
            let req = &buf[..n];
            assert!(args.len() <= MAX_ARGS, "{} arguments", args.len());
            let multibulk = buf[0] == b'*';
            let max = if multibulk { MAX_BULK } else { MAX_INLINE };
            let argv: Vec<Vec<u8>> = args.iter(req).map(<[u8]>::to_vec).collect();
            assert_eq!(
                argv.len(),
                args.len(),
                "an argument's range is out of bounds"
            );
            if args.is_decoded() {
                assert!(!multibulk, "a multibulk request decoded");
                assert!(
                    req.iter().any(|&b| b == b'"' || b == b'\''),
                    "decoded without quotes"
                );
            } else {
                let mut prev_end = 0;
                for r in args.ranges() {
                    assert!(
                        prev_end <= r.start && r.start <= r.end && r.end <= n,
                        "argument {r:?} of a request of {n} bytes (previous ended at {prev_end})"
                    );
                    prev_end = r.end;
                }
            }
            for arg in &argv {
                assert!(arg.len() <= max, "argument of {} bytes", arg.len());
                if !multibulk && !args.is_decoded() {
                    assert!(!arg.is_empty(), "empty inline argument");
                    assert!(
                        !arg.iter().any(|&b| b == b'\n' || inline::ends_word(b))
                            && !arg.first().copied().is_some_and(inline::is_space),
                        "inline argument {arg:?} holds a separator"
                    );
                }
            }
            if multibulk {
                assert!(req.ends_with(b"\r\n"), "multibulk request without CRLF");
            } else {
                assert!(req.ends_with(b"\n"), "inline request without a newline");
            }
            // The request alone parses the same: the parser never looked past its end.
            let mut again = Args::new();
            assert_eq!(parse_request(req, &mut again), Ok(Some(n)));
            let again_argv: Vec<Vec<u8>> = again.iter(req).map(<[u8]>::to_vec).collect();
            assert_eq!(again_argv, argv, "arguments of the request alone");
            // One byte short it is incomplete, whatever the request was.
            assert_eq!(
                parse_request(&req[..n - 1], &mut again),
                Ok(None),
                "a request one byte short of {req:?}"
            );
            assert!(again.is_empty());
            Ok(Some((n, argv)))
        }
        Ok(None) => {
            assert!(args.is_empty(), "arguments left after an incomplete parse");
            let bound = if buf.first() == Some(&b'*') {
                MAX_MULTIBULK
            } else {
                MAX_INLINE + 1
            };
            assert!(
                buf.len() <= bound,
                "{} bytes buffered for one incomplete request",
                buf.len()
            );
            Ok(None)
        }
        Err(e) => {
            assert!(args.is_empty(), "arguments left after an error");
            assert!(!e.0.is_empty(), "empty protocol error");
            Err(e.0)
        }
    }
}

/// `parse_command`, checked against a reference for `NEXT` and `PEEK`.
fn checked_command(argv: &[&[u8]]) -> String {
    let result = parse_command(argv);
    let shown = format!("{result:?}");
    match &result {
        Err(e) => {
            assert!(e.0.starts_with("ERR "), "error without a code: {e:?}");
            assert!(
                !e.0.contains(['\r', '\n']),
                "error text breaks the reply line: {e:?}"
            );
            assert!(e.0.len() < 1024, "error text of {} bytes", e.0.len());
        }
        Ok(Command::Next { count, .. }) => assert!((1..=MAX_COUNT).contains(count)),
        Ok(_) => {}
    }

    let name = argv[0];
    let reference = if name.eq_ignore_ascii_case(b"NEXT") {
        match argv[1..] {
            [ws, seq] => Some(numbers(ws, seq).map(|(ws, seq)| (ws, seq, 1))),
            [ws, seq, count] => Some(
                numbers(ws, seq)
                    .zip(decimal(count, MAX_COUNT).filter(|&c| c >= 1))
                    .map(|((ws, seq), c)| (ws, seq, c)),
            ),
            _ => Some(None),
        }
    } else if name.eq_ignore_ascii_case(b"PEEK") {
        match argv[1..] {
            [ws, seq] => Some(numbers(ws, seq).map(|(ws, seq)| (ws, seq, 0))),
            _ => Some(None),
        }
    } else {
        None
    };
    if let Some(want) = reference {
        let got = match result {
            Ok(Command::Next { ws, seq, count }) => Some((ws, seq, count)),
            Ok(Command::Peek { ws, seq }) => Some((ws, seq, 0)),
            Ok(other) => panic!("{argv:?} parsed as {other:?}"),
            Err(_) => None,
        };
        assert_eq!(got, want, "{argv:?}");
    }

    // COMMAND GETKEYS of the same request: never a panic; a valid NEXT/PEEK's key is its
    // workspace, as cluster clients route by it.
    let keys = spec::get_keys(argv);
    if let Ok(Command::Next { .. } | Command::Peek { .. }) = &result {
        assert_eq!(keys, Ok(vec![argv[1]]), "{argv:?}");
    }

    // Names are case-insensitive: the same request in upper case means the same command.
    let upper = name.to_ascii_uppercase();
    let mut argv_upper = argv.to_vec();
    argv_upper[0] = &upper;
    match (parse_command(argv), parse_command(&argv_upper)) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Err(_), Err(_)) => {}
        (a, b) => panic!("{argv:?}: {a:?}, but in upper case {b:?}"),
    }
    shown
}

/// A workspace and a sequence id, as `NEXT` and `PEEK` take them.
fn numbers(ws: &[u8], seq: &[u8]) -> Option<(u64, u16)> {
    let ws = decimal(ws, u64::MAX)?;
    let seq = u16::try_from(decimal(seq, u16::MAX.into())?).ok()?;
    Some((ws, seq))
}

/// The reference number syntax: ASCII digits only (no sign, no spaces), at most `max`.
fn decimal(b: &[u8], max: u64) -> Option<u64> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(b)
        .ok()?
        .parse::<u64>()
        .ok()
        .filter(|&n| n <= max)
}

/// Encodes the payload, cut into arguments at the chunk lengths, as a request and parses it
/// back; and checks the reply encoders keep every reply on one line.
fn round_trip(payload: &[u8], lens: &[usize]) {
    let mut args: Vec<&[u8]> = Vec::new();
    let mut rest = payload;
    for &len in lens.iter().cycle() {
        if rest.is_empty() || args.len() == MAX_ARGS {
            break;
        }
        let (arg, after) = rest.split_at(len.min(rest.len()));
        args.push(arg);
        rest = after;
    }

    // As RESP: what client libraries send. Followed by the start of another request, which
    // must not be consumed.
    let mut out = Vec::new();
    protocol::write_array_len(&mut out, args.len());
    for a in &args {
        protocol::write_bulk(&mut out, a);
    }
    let len = out.len();
    out.extend_from_slice(b"*1\r\n$4\r\nPI");
    let mut parsed_args = Args::new();
    assert_eq!(parse_request(&out, &mut parsed_args), Ok(Some(len)));
    let parsed: Vec<&[u8]> = parsed_args.iter(&out).collect();
    assert_eq!(parsed, args, "RESP round trip");

    // Inline, when the arguments can be written as one line.
    let plain = |a: &[u8]| {
        !a.is_empty()
            && !a
                .iter()
                .any(|&b| b == b'\n' || b == b'"' || b == b'\'' || inline::is_space(b))
    };
    let starts_inline = !args.is_empty() && args[0].first() != Some(&b'*');
    if starts_inline && args.iter().all(|a| plain(a)) {
        let mut line = args.join(&b' ');
        if line.len() <= MAX_INLINE {
            line.extend_from_slice(b"\r\n");
            assert_eq!(parse_request(&line, &mut parsed_args), Ok(Some(line.len())));
            let parsed: Vec<&[u8]> = parsed_args.iter(&line).collect();
            assert_eq!(parsed, args, "inline round trip");
        }
    }
    // Quoted as redis-cli quotes: every argument in double quotes, with escapes.
    if !args.is_empty() {
        let mut line = Vec::new();
        for (i, a) in args.iter().enumerate() {
            if i > 0 {
                line.push(b' ');
            }
            line.push(b'"');
            for &b in *a {
                match b {
                    b'"' | b'\\' => line.extend_from_slice(&[b'\\', b]),
                    b'\n' => line.extend_from_slice(b"\\n"),
                    b'\r' => line.extend_from_slice(b"\\r"),
                    b if b.is_ascii_graphic() || b == b' ' => line.push(b),
                    b => line.extend_from_slice(format!("\\x{b:02x}").as_bytes()),
                }
            }
            line.push(b'"');
        }
        if line.len() <= MAX_INLINE {
            line.extend_from_slice(b"\r\n");
            assert_eq!(parse_request(&line, &mut parsed_args), Ok(Some(line.len())));
            let parsed: Vec<&[u8]> = parsed_args.iter(&line).collect();
            assert_eq!(parsed, args, "quoted inline round trip of {line:?}");
        }
    }

    // Replies: one line each, whatever the text.
    let text = String::from_utf8_lossy(payload);
    for (first, write) in [
        (b'+', protocol::write_simple as fn(&mut Vec<u8>, &str)),
        (b'-', protocol::write_error),
    ] {
        let mut out = Vec::new();
        write(&mut out, &text);
        assert_eq!(out.first(), Some(&first));
        assert!(out.ends_with(b"\r\n"));
        let body = &out[1..out.len() - 2];
        assert!(!body.iter().any(|b| b"\r\n".contains(b)), "{out:?}");
    }
    let n = payload
        .iter()
        .take(8)
        .fold(0u64, |n, &b| (n << 8) | u64::from(b));
    let mut out = Vec::new();
    protocol::write_uint(&mut out, n);
    assert_eq!(out, format!(":{n}\r\n").into_bytes());
    out.clear();
    let signed = n as i64;
    protocol::write_int(&mut out, signed);
    assert_eq!(out, format!(":{signed}\r\n").into_bytes());
}

/// A decoded reply, RESP2 or RESP3.
#[derive(Debug, PartialEq)]
enum Value {
    Simple(Vec<u8>),
    Int(i64),
    Bulk(Vec<u8>),
    Verbatim(Vec<u8>),
    Null,
    Array(Vec<Value>),
    Set(Vec<Value>),
    Map(Vec<Value>),
}

impl Value {
    /// The RESP2 shape of a RESP3 value: maps and sets as arrays, nulls as the null bulk
    /// string, verbatim strings as bulk strings without their format prefix.
    fn flattened(self) -> Value {
        let flat = |items: Vec<Value>| items.into_iter().map(Value::flattened).collect();
        match self {
            Value::Array(items) | Value::Set(items) | Value::Map(items) => {
                Value::Array(flat(items))
            }
            Value::Verbatim(text) => Value::Bulk(text[4..].to_vec()),
            other => other,
        }
    }
}

/// Decodes exactly one reply from the front of `b`, checking its framing; the rest.
fn decode(b: &[u8]) -> (Value, &[u8]) {
    let end = b
        .windows(2)
        .position(|w| w == b"\r\n")
        .expect("reply line without CRLF");
    let line = &b[1..end];
    assert!(!line.contains(&b'\r') && !line.contains(&b'\n'), "{line:?}");
    let rest = &b[end + 2..];
    let number = || -> i64 { std::str::from_utf8(line).unwrap().parse().unwrap() };
    let len = || usize::try_from(number()).expect("a negative length");
    match b[0] {
        b'+' => (Value::Simple(line.to_vec()), rest),
        b':' => (Value::Int(number()), rest),
        b'_' => {
            assert!(line.is_empty());
            (Value::Null, rest)
        }
        b'$' if line == b"-1" => (Value::Null, rest),
        b'$' | b'=' => {
            let n = len();
            assert_eq!(&rest[n..n + 2], b"\r\n", "bulk without its CRLF");
            let body = rest[..n].to_vec();
            if b[0] == b'=' {
                assert!(
                    body.len() >= 4 && body[3] == b':',
                    "verbatim without a format"
                );
                (Value::Verbatim(body), &rest[n + 2..])
            } else {
                (Value::Bulk(body), &rest[n + 2..])
            }
        }
        b'*' => {
            let (v, rest) = items(len(), rest);
            (Value::Array(v), rest)
        }
        b'~' => {
            let (v, rest) = items(len(), rest);
            (Value::Set(v), rest)
        }
        b'%' => {
            let (v, rest) = items(2 * len(), rest);
            (Value::Map(v), rest)
        }
        other => panic!("unknown reply type {:?}", other as char),
    }
}

/// Decodes `n` replies from the front of `rest`.
fn items(n: usize, mut rest: &[u8]) -> (Vec<Value>, &[u8]) {
    let mut v = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        let (item, r) = decode(rest);
        v.push(item);
        rest = r;
    }
    (v, rest)
}

/// Encodes a reply in both protocols with `write`; both decode whole, and the RESP2 one is the
/// RESP3 one flattened.
fn both(write: impl Fn(&mut Vec<u8>, Proto)) {
    let mut v3 = Vec::new();
    write(&mut v3, Proto::Resp3);
    let mut v2 = Vec::new();
    write(&mut v2, Proto::Resp2);
    let (r3, rest) = decode(&v3);
    assert!(rest.is_empty(), "bytes after a RESP3 reply");
    let (r2, rest) = decode(&v2);
    assert!(rest.is_empty(), "bytes after a RESP2 reply");
    assert_eq!(r3.flattened(), r2);
}

/// The replies whose encoding depends on the protocol, with the input as their payload.
fn resp3_replies(payload: &[u8]) {
    let words: Vec<&[u8]> = payload.split(|&b| b == b' ').take(MAX_ARGS).collect();
    both(|o, proto| {
        protocol::write_map_len(o, proto, words.len());
        for w in &words {
            protocol::write_bulk(o, w);
            protocol::write_null(o, proto);
        }
    });
    both(|o, proto| {
        protocol::write_set_len(o, proto, words.len());
        for w in &words {
            protocol::write_simple(o, &String::from_utf8_lossy(w));
        }
    });
    both(|o, proto| protocol::write_verbatim(o, proto, payload));
    // COMMAND INFO and DOCS of the commands the input names (all of them for an empty one).
    for spec in spec::COMMANDS
        .iter()
        .filter(|s| {
            words
                .iter()
                .any(|w| w.eq_ignore_ascii_case(s.name.as_bytes()))
        })
        .chain(
            spec::COMMANDS
                .iter()
                .take(usize::from(payload.is_empty()) * 100),
        )
    {
        both(|o, proto| spec::write_info(o, proto, spec));
        both(|o, proto| spec::write_docs(o, proto, spec));
    }
}
