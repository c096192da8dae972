//! Tests of the RESP framing: every form, every error, every split point, garbage.

use super::*;

/// A complete parse: the length consumed and the arguments as byte strings.
type Parsed = (usize, Vec<Vec<u8>>);

/// Parses `buf`, checking that a complete request lies within it and so do its arguments.
fn parse(buf: &[u8]) -> Result<Option<Parsed>, ProtocolError> {
    let mut args = Args::new();
    // Junk from an earlier request: must be cleared.
    assert_eq!(parse_request(b"X \"y\" z\n", &mut args), Ok(Some(8)));
    let res = parse_request(buf, &mut args)?;
    let Some(n) = res else {
        assert!(args.is_empty());
        return Ok(None);
    };
    assert!(n > 0 && n <= buf.len());
    if !args.is_decoded() {
        assert!(args.ranges().iter().all(|r| r.end <= n));
    }
    Ok(Some((
        n,
        args.iter(&buf[..n]).map(<[u8]>::to_vec).collect(),
    )))
}

fn ok(buf: &[u8]) -> Vec<Vec<u8>> {
    let (n, args) = parse(buf).unwrap().unwrap();
    assert_eq!(n, buf.len(), "{:?}", buf.escape_ascii().to_string());
    args
}

fn err(buf: &[u8]) -> String {
    parse(buf).unwrap_err().0
}

fn words(s: &[&str]) -> Vec<Vec<u8>> {
    s.iter().map(|w| w.as_bytes().to_vec()).collect()
}

/// A RESP multibulk request for `args`.
fn resp(args: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    write_array_len(&mut out, args.len());
    for a in args {
        write_bulk(&mut out, a);
    }
    out
}

#[test]
fn resp_requests() {
    assert_eq!(ok(b"*1\r\n$6\r\nGETSEQ\r\n"), words(&["GETSEQ"]));
    assert_eq!(
        ok(b"*3\r\n$4\r\nNEXT\r\n$1\r\n7\r\n$0\r\n\r\n"),
        words(&["NEXT", "7", ""])
    );
    // Binary-safe: CR, LF and NUL inside a bulk string.
    assert_eq!(ok(b"*1\r\n$4\r\n\r\n\0*\r\n"), vec![b"\r\n\0*".to_vec()]);
    // Leading zeros are plain decimal digits.
    assert_eq!(ok(b"*01\r\n$004\r\nPING\r\n"), words(&["PING"]));
    // Empty requests, consumed with no arguments.
    assert_eq!(ok(b"*0\r\n"), Vec::<Vec<u8>>::new());
    assert_eq!(ok(b"*-1\r\n"), Vec::<Vec<u8>>::new());
}

#[test]
fn resp_errors() {
    let invalid_multi = "invalid multibulk length";
    let invalid_bulk = "invalid bulk length";
    for bad in [
        &b"*\r\n"[..],
        b"*abc\r\n",
        b"*-2\r\n",
        b"*-0\r\n",
        b"*--1\r\n",
        b"*-\r\n",
    ] {
        assert_eq!(err(bad), invalid_multi, "{bad:?}");
    }
    assert_eq!(err(b"*+1\r\n"), invalid_multi);
    assert_eq!(err(b"* 1\r\n"), invalid_multi);
    assert_eq!(err(b"*1\rX"), invalid_multi);
    assert_eq!(err(b"*1\n"), invalid_multi);
    assert_eq!(err(b"*1\r\n+PING\r\n"), "expected '$', got '+'");
    assert_eq!(err(b"*1\r\n\r\n"), "expected '$', got '\\r'");
    for bad in [
        &b"*1\r\n$-1\r\n"[..],
        b"*1\r\n$\r\n",
        b"*1\r\n$x\r\n",
        b"*1\r\n$1x",
    ] {
        assert_eq!(err(bad), invalid_bulk, "{bad:?}");
    }
    let no_crlf = "bulk string not followed by CRLF";
    assert_eq!(err(b"*1\r\n$2\r\nabcd"), no_crlf);
    assert_eq!(err(b"*1\r\n$2\r\nab\n"), no_crlf);
    assert_eq!(err(b"*1\r\n$2\r\nab\rX"), no_crlf);
    assert_eq!(err(b"*1\r\n$2\r\nabc"), no_crlf); // seen before the whole trailer arrives
    // Error display is the message only.
    assert_eq!(ProtocolError("x y".into()).to_string(), "x y");
}

#[test]
fn resp_limits() {
    // Exactly at the limits: fine.
    let max_args: Vec<&[u8]> = vec![b"x"; MAX_ARGS];
    assert_eq!(ok(&resp(&max_args)).len(), MAX_ARGS);
    let big = vec![b'z'; MAX_BULK];
    assert_eq!(ok(&resp(&[b"PING", &big]))[1], big);
    // One over: refused on seeing the header, before any data (and even before its CRLF).
    let too_many = format!("invalid multibulk length: more than {MAX_ARGS} arguments");
    assert_eq!(err(format!("*{}\r\n", MAX_ARGS + 1).as_bytes()), too_many);
    assert_eq!(err(format!("*{}", MAX_ARGS + 1).as_bytes()), too_many);
    assert_eq!(err(b"*99999999999999999999999999"), too_many);
    let too_long = format!("invalid bulk length: more than {MAX_BULK} bytes");
    assert_eq!(
        err(format!("*1\r\n${}\r\n", MAX_BULK + 1).as_bytes()),
        too_long
    );
    assert_eq!(
        err(format!("*2\r\n$4\r\nPING\r\n${}", MAX_BULK + 1).as_bytes()),
        too_long
    );
    // A header line that never ends is refused once longer than any valid header.
    let zeros = [b'0'; 40];
    for len in 0..zeros.len() {
        let star = [b"*", &zeros[..len]].concat();
        let dollar = [b"*1\r\n$", &zeros[..len]].concat();
        if len <= 20 {
            assert_eq!(parse(&star), Ok(None));
            assert_eq!(parse(&dollar), Ok(None));
        } else {
            assert_eq!(err(&star), "invalid multibulk length");
            assert_eq!(err(&dollar), "invalid bulk length");
        }
    }
}

#[test]
fn inline_requests() {
    assert_eq!(ok(b"PING\r\n"), words(&["PING"]));
    assert_eq!(ok(b"PING\n"), words(&["PING"]));
    assert_eq!(ok(b"  next\t1   2 \t\n"), words(&["next", "1", "2"]));
    assert_eq!(ok(b"a\rb\r\r\n"), words(&["a", "b"]));
    // Quotes group words, as in Redis (protocol/inline.rs has the details).
    assert_eq!(ok(b"PING \"a b\"\n"), words(&["PING", "a b"]));
    assert_eq!(ok(b"ECHO 'x\\'y' \"\"\r\n"), words(&["ECHO", "x'y", ""]));
    assert_eq!(err(b"PING \"a b\n"), "unbalanced quotes in request");
    assert_eq!(parse(b"PING \"a b"), Ok(None));
    for blank in [&b"\n"[..], b"\r\n", b"   \t \r\n", b" \n"] {
        assert_eq!(ok(blank), Vec::<Vec<u8>>::new());
    }
    // `$` and other bytes start an inline command too (the command parser rejects them).
    assert_eq!(ok(b"$3\r\n"), words(&["$3"]));
    assert_eq!(parse(b""), Ok(None));
    assert_eq!(parse(b"PING"), Ok(None));
    assert_eq!(parse(b"PING\r"), Ok(None));
}

#[test]
fn inline_limits() {
    let too_big = "too big inline request";
    let line = vec![b'a'; MAX_INLINE];
    assert_eq!(ok(&[&line[..], b"\r\n"].concat()), vec![line.clone()]);
    assert_eq!(ok(&[&line[..], b"\n"].concat()), vec![line.clone()]);
    assert_eq!(parse(&line), Ok(None));
    assert_eq!(parse(&[&line[..], b"\r"].concat()), Ok(None));
    let long = vec![b'a'; MAX_INLINE + 1];
    assert_eq!(err(&long), too_big);
    assert_eq!(err(&[&long[..], b"\n"].concat()), too_big);
    assert_eq!(err(&[&long[..], b"\r\n"].concat()), too_big);
    assert_eq!(err(&[&line[..], b"\r\r"].concat()), too_big);
    assert_eq!(err(&vec![b' '; 10 * MAX_INLINE]), too_big);
    let max = "x ".repeat(MAX_ARGS) + "\n";
    assert_eq!(ok(max.as_bytes()).len(), MAX_ARGS);
    let over = "x ".repeat(MAX_ARGS + 1) + "\n";
    assert_eq!(
        err(over.as_bytes()),
        "too many arguments in inline request (more than 64)"
    );
}

/// Every prefix of a request is incomplete; the whole parses to `expected`.
fn check_splits(request: &[u8], expected: &[Vec<u8>]) {
    for i in 0..request.len() {
        assert_eq!(parse(&request[..i]), Ok(None), "{request:?} cut at {i}");
    }
    assert_eq!(ok(request), expected);
}

#[test]
fn split_at_every_byte() {
    check_splits(b"*2\r\n$4\r\nPING\r\n$2\r\nhi\r\n", &words(&["PING", "hi"]));
    check_splits(
        b"*3\r\n$4\r\nNEXT\r\n$2\r\n\r\n\r\n$0\r\n\r\n",
        &words(&["NEXT", "\r\n", ""]),
    );
    check_splits(b"*0\r\n", &[]);
    check_splits(b"*-1\r\n", &[]);
    check_splits(b"NEXT 1 2 3\r\n", &words(&["NEXT", "1", "2", "3"]));
    check_splits(b"ECHO \"a b\" 'c'\r\n", &words(&["ECHO", "a b", "c"]));
    check_splits(b"PEEK 1 2\n", &words(&["PEEK", "1", "2"]));
    check_splits(b"\r\n", &[]);
    let many: Vec<&[u8]> = vec![b"abc"; MAX_ARGS];
    check_splits(&resp(&many), &vec![b"abc".to_vec(); MAX_ARGS]);
}

#[test]
fn pipelined_requests() {
    let buf = [
        &b"*1\r\n$4\r\nPING\r\n"[..],
        b"NEXT 1 2\r\n",
        b"*0\r\n",
        b"\n",
        b"*2\r\n$4\r\nPEEK\r\n$1\r\n9\r\n",
        b"*-1\r\n",
        b"CURRENT\n",
        b"*1\r\n$4\r\nPI", // incomplete tail
    ]
    .concat();
    let mut got = Vec::new();
    let mut args = Args::new();
    let mut pos = 0;
    while let Some(n) = parse_request(&buf[pos..], &mut args).unwrap() {
        got.push(
            args.iter(&buf[pos..])
                .map(<[u8]>::to_vec)
                .collect::<Vec<_>>(),
        );
        pos += n;
    }
    let expected = vec![
        words(&["PING"]),
        words(&["NEXT", "1", "2"]),
        vec![],
        vec![],
        words(&["PEEK", "9"]),
        vec![],
        words(&["CURRENT"]),
    ];
    assert_eq!(got, expected);
    assert_eq!(&buf[pos..], b"*1\r\n$4\r\nPI");
}

/// xorshift64: a tiny deterministic generator for the garbage tests.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// `parse` (which checks 0 < n <= len and ranges within `buf[..n]`) must never panic, and
/// a complete parse must be stable under appending more bytes.
fn check_garbage(buf: &[u8]) {
    if let Ok(Some((n, args))) = parse(buf) {
        let mut longer = buf.to_vec();
        longer.extend_from_slice(b"*1\r\n");
        assert_eq!(parse(&longer), Ok(Some((n, args))));
    }
}

#[test]
fn garbage_never_panics() {
    const ALPHABET: &[u8] = b"*$-+0123456789\r\n \tPINGabc\0\xff";
    let mut rng = XorShift(0x2545_F491_4F6C_DD1D);
    for round in 0..4000 {
        let len = rng.below(48);
        let buf: Vec<u8> = (0..len)
            .map(|_| match round % 2 {
                0 => ALPHABET[rng.below(ALPHABET.len())],
                _ => rng.next() as u8,
            })
            .collect();
        check_garbage(&buf);
    }
    // Mutations of valid requests: one byte replaced, then every prefix.
    let valid = b"*3\r\n$4\r\nNEXT\r\n$2\r\n17\r\n$3\r\n100\r\n";
    for _ in 0..2000 {
        let mut buf = valid.to_vec();
        let at = rng.below(buf.len());
        buf[at] = ALPHABET[rng.below(ALPHABET.len())];
        for i in 0..=buf.len() {
            check_garbage(&buf[..i]);
        }
    }
}

#[test]
fn encoders_exact_bytes() {
    let mut out = Vec::new();
    write_int(&mut out, 0);
    write_int(&mut out, 123);
    write_int(&mut out, -7);
    write_int(&mut out, i64::MIN);
    write_int(&mut out, i64::MAX);
    write_uint(&mut out, 0);
    write_uint(&mut out, u64::MAX);
    write_simple(&mut out, "OK");
    write_simple(&mut out, "a\r\nb");
    write_error(&mut out, "ERR bad\nthing");
    write_bulk(&mut out, b"abc");
    write_bulk(&mut out, b"");
    write_bulk(&mut out, b"\r\n");
    write_null(&mut out, Proto::Resp2);
    write_array_len(&mut out, 2);
    write_array_len(&mut out, 0);
    let expected = concat!(
        ":0\r\n:123\r\n:-7\r\n:-9223372036854775808\r\n:9223372036854775807\r\n",
        ":0\r\n:18446744073709551615\r\n",
        "+OK\r\n+a  b\r\n-ERR bad thing\r\n",
        "$3\r\nabc\r\n$0\r\n\r\n$2\r\n\r\n\r\n$-1\r\n*2\r\n*0\r\n",
    );
    assert_eq!(
        out.escape_ascii().to_string(),
        expected.as_bytes().escape_ascii().to_string()
    );
    // Encoded requests round-trip through the parser.
    let big = vec![7u8; 1000];
    let req = resp(&[b"PING", b"", &big, b"\r\n"]);
    assert_eq!(
        ok(&req),
        vec![b"PING".to_vec(), vec![], big, b"\r\n".to_vec()]
    );
}
