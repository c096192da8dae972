//! Inline commands (`PING "hello world"\r\n`): one line split into words as Redis splits it
//! (`sdssplitargs`), so what works typed into `redis-cli`'s raw mode or `nc` against Redis
//! works here.
//!
//! - A word ends at a space, tab or CR; between words, vertical tabs and form feeds are skipped
//!   too (inside a word they are part of it, as in Redis). A NUL byte is an ordinary byte
//!   (Redis, splitting a C string, would stop the line there).
//! - `"..."` is one word, with escapes `\n \r \t \b \a \\ \"` and `\xHH`; any other escaped
//!   byte stands for itself. `'...'` is one word in which only `\'` is an escape.
//! - A quote may open inside a word (`a"b c"` is the word `ab c`); a closing quote must be
//!   followed by whitespace or the end of the line; a quote left open is an error
//!   (`unbalanced quotes in request`), which closes the connection as Redis does.
//! - `""` is an empty word.
//!
//! A line without quotes is split in place (ranges into the line, no copy): that is every
//! request a program sends inline. A line with quotes is decoded into the [`Args`]' own copy.

use super::{Args, ProtocolError};

/// Whitespace skipped between words, as C's `isspace` (without `\n`, which ends the line).
pub fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | 0x0b | 0x0c)
}

/// The bytes that end an unquoted word.
pub fn ends_word(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r')
}

/// Splits `line` (without its line ending) into `args`.
pub(super) fn split(line: &[u8], args: &mut Args) -> Result<(), ProtocolError> {
    if line.iter().any(|&b| b == b'"' || b == b'\'') {
        split_quoted(line, args)
    } else {
        split_plain(line, args)
    }
}

/// Words separated by whitespace, as ranges into `line`.
fn split_plain(line: &[u8], args: &mut Args) -> Result<(), ProtocolError> {
    let mut word_start = None;
    for (i, &b) in line.iter().enumerate() {
        match word_start {
            None if !is_space(b) => word_start = Some(i),
            Some(start) if ends_word(b) => {
                args.push(start..i)?;
                word_start = None;
            }
            _ => {}
        }
    }
    if let Some(start) = word_start {
        args.push(start..line.len())?;
    }
    Ok(())
}

/// Where the splitter is inside a word.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Quote {
    None,
    Double,
    Single,
}

fn unbalanced() -> ProtocolError {
    ProtocolError("unbalanced quotes in request".to_owned())
}

/// Words with quotes and escapes decoded into `args.decoded`.
fn split_quoted(line: &[u8], args: &mut Args) -> Result<(), ProtocolError> {
    args.is_decoded = true;
    let mut i = 0;
    loop {
        while line.get(i).is_some_and(|&b| is_space(b)) {
            i += 1;
        }
        if i >= line.len() {
            return Ok(());
        }
        let start = args.decoded.len();
        let mut quote = Quote::None;
        // One word: ends at whitespace outside quotes, or just after a closing quote.
        loop {
            let b = line.get(i).copied();
            let next = line.get(i + 1).copied();
            match (quote, b) {
                (Quote::None, None) => break,
                (Quote::None, Some(b)) if ends_word(b) => break,
                (Quote::None, Some(b'"')) => quote = Quote::Double,
                (Quote::None, Some(b'\'')) => quote = Quote::Single,
                (Quote::Double | Quote::Single, None) => return Err(unbalanced()),
                (Quote::Double, Some(b'\\')) if next == Some(b'x') => {
                    let hex = line.get(i + 2).copied().and_then(hex_digit);
                    let low = line.get(i + 3).copied().and_then(hex_digit);
                    match (hex, low) {
                        (Some(h), Some(l)) => {
                            args.decoded.push(h << 4 | l);
                            i += 3;
                        }
                        _ => {
                            args.decoded.push(b'x');
                            i += 1;
                        }
                    }
                }
                (Quote::Double, Some(b'\\')) if next.is_some() => {
                    args.decoded.push(match next.unwrap_or(b'\\') {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 0x08,
                        b'a' => 0x07,
                        other => other,
                    });
                    i += 1;
                }
                (Quote::Single, Some(b'\\')) if next == Some(b'\'') => {
                    args.decoded.push(b'\'');
                    i += 1;
                }
                (Quote::Double, Some(b'"')) | (Quote::Single, Some(b'\'')) => {
                    if next.is_some_and(|n| !is_space(n)) {
                        return Err(unbalanced());
                    }
                    i += 1;
                    break;
                }
                (_, Some(b)) => args.decoded.push(b),
            }
            i += 1;
        }
        args.push(start..args.decoded.len())?;
    }
}

fn hex_digit(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Result<Vec<Vec<u8>>, String> {
        let mut args = Args::new();
        split(line.as_bytes(), &mut args).map_err(|e| e.0)?;
        Ok(args.iter(line.as_bytes()).map(<[u8]>::to_vec).collect())
    }

    fn ok(line: &str) -> Vec<String> {
        words(line)
            .unwrap()
            .into_iter()
            .map(|w| String::from_utf8_lossy(&w).into_owned())
            .collect()
    }

    #[test]
    fn quotes_and_escapes_as_redis() {
        assert_eq!(ok(r#"PING "hello world""#), ["PING", "hello world"]);
        assert_eq!(ok(r#"PING 'hello world'"#), ["PING", "hello world"]);
        assert_eq!(ok(r#"ECHO "a\"b" 'c\'d'"#), ["ECHO", "a\"b", "c'd"]);
        assert_eq!(ok(r#"ECHO "\n\r\t\\\q""#), ["ECHO", "\n\r\t\\q"]);
        assert_eq!(
            ok(r#"ECHO "\x41\x7a" "\x4" "\xZZ""#),
            ["ECHO", "Az", "x4", "xZZ"]
        );
        assert_eq!(words(r#"ECHO "\b\a""#).unwrap()[1], vec![8, 7]);
        // Single quotes keep backslashes other than before a quote.
        assert_eq!(ok(r"ECHO 'a\nb'"), ["ECHO", "a\\nb"]);
        // A quote may open inside a word; empty quotes are an empty word.
        assert_eq!(ok(r#"ECHO ab"c d""#), ["ECHO", "abc d"]);
        assert_eq!(ok(r#"ECHO "" ''"#), ["ECHO", "", ""]);
        assert_eq!(ok("  \"a\"\t\x0b'b'  "), ["a", "b"]);
    }

    #[test]
    fn unbalanced_quotes_are_refused() {
        for bad in [
            r#"PING "abc"#,
            r#"PING 'abc"#,
            r#"PING "a"b"#,
            r#"PING 'a'b"#,
            r#"PING "\""#,
            r#"PING "abc\"#,
        ] {
            assert_eq!(
                words(bad),
                Err("unbalanced quotes in request".into()),
                "{bad}"
            );
        }
    }

    #[test]
    fn plain_lines_are_not_copied() {
        let mut args = Args::new();
        split(b"NEXT 1\t2\x0b3 \x0c4", &mut args).unwrap();
        assert!(!args.is_decoded());
        // A vertical tab inside a word is part of it; a form feed between words is skipped.
        assert_eq!(args.ranges(), [0..4, 5..6, 7..10, 12..13]);
    }
}
