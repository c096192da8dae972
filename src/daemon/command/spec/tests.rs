//! Tests of the command table and of `COMMAND`'s replies: well-formed in both protocols, and
//! saying what Redis 7 says for the same shape of command.

use super::*;

/// A decoded reply: just enough of RESP2 and RESP3 to check the shapes seqd sends.
#[derive(Debug, PartialEq)]
enum V {
    Simple(String),
    Int(i64),
    Bulk(Vec<u8>),
    Null,
    Array(Vec<V>),
    Set(Vec<V>),
    Map(Vec<(V, V)>),
}

/// Decodes one reply from the front of `b`; returns it and the rest. Panics on bad framing.
fn decode(b: &[u8]) -> (V, &[u8]) {
    let line_end = b.windows(2).position(|w| w == b"\r\n").expect("a line");
    let line = std::str::from_utf8(&b[1..line_end]).unwrap();
    let rest = &b[line_end + 2..];
    let n = || line.parse::<usize>().unwrap();
    match b[0] {
        b'+' => (V::Simple(line.to_owned()), rest),
        b':' => (V::Int(line.parse().unwrap()), rest),
        b'_' => (V::Null, rest),
        b'$' if line == "-1" => (V::Null, rest),
        b'$' | b'=' => {
            let len = n();
            assert_eq!(&rest[len..len + 2], b"\r\n");
            (V::Bulk(rest[..len].to_vec()), &rest[len + 2..])
        }
        b'*' => {
            let (items, rest) = many(n(), rest);
            (V::Array(items), rest)
        }
        b'~' => {
            let (items, rest) = many(n(), rest);
            (V::Set(items), rest)
        }
        b'%' => {
            let (items, rest) = many(2 * n(), rest);
            let mut it = items.into_iter();
            let mut pairs = Vec::new();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                pairs.push((k, v));
            }
            (V::Map(pairs), rest)
        }
        other => panic!("unexpected type byte {:?}", other as char),
    }
}

fn many(count: usize, mut rest: &[u8]) -> (Vec<V>, &[u8]) {
    let mut items = Vec::new();
    for _ in 0..count {
        let (v, r) = decode(rest);
        items.push(v);
        rest = r;
    }
    (items, rest)
}

fn whole(out: &[u8]) -> V {
    let (v, rest) = decode(out);
    assert!(
        rest.is_empty(),
        "bytes after the reply: {:?}",
        rest.escape_ascii()
    );
    v
}

fn info(proto: Proto, name: &str) -> V {
    let mut out = Vec::new();
    write_info(&mut out, proto, find(name.as_bytes()).unwrap());
    whole(&out)
}

fn bulk(s: &str) -> V {
    V::Bulk(s.as_bytes().to_vec())
}

fn simple(s: &str) -> V {
    V::Simple(s.to_owned())
}

#[test]
fn next_is_described_as_redis_describes_a_one_key_write() {
    let V::Array(fields) = info(Proto::Resp3, "NEXT") else {
        panic!()
    };
    assert_eq!(fields.len(), 10);
    assert_eq!(fields[0], bulk("next"));
    assert_eq!(fields[1], V::Int(-3));
    assert_eq!(fields[2], V::Set(vec![simple("write"), simple("fast")]));
    assert_eq!(fields[3..6], [V::Int(1), V::Int(1), V::Int(1)]);
    assert_eq!(fields[6], V::Set(vec![simple("@write"), simple("@fast")]));
    let V::Array(specs) = &fields[8] else {
        panic!()
    };
    let V::Map(spec) = &specs[0] else { panic!() };
    assert_eq!(spec[0].0, bulk("flags"));
    assert_eq!(spec[0].1, V::Set(vec![simple("RW"), simple("update")]));
    assert_eq!(spec[1].0, bulk("begin_search"));
    assert_eq!(
        spec[1].1,
        V::Map(vec![
            (bulk("type"), bulk("index")),
            (bulk("spec"), V::Map(vec![(bulk("index"), V::Int(1))])),
        ])
    );
    // RESP2: the same, sets and maps as arrays.
    let V::Array(fields) = info(Proto::Resp2, "next") else {
        panic!()
    };
    assert_eq!(fields[2], V::Array(vec![simple("write"), simple("fast")]));
    // Keyless commands: positions 0, no key specs.
    let V::Array(fields) = info(Proto::Resp2, "getseq") else {
        panic!()
    };
    assert_eq!(fields[1], V::Int(1));
    assert_eq!(fields[3..6], [V::Int(0), V::Int(0), V::Int(0)]);
    assert_eq!(fields[8], V::Array(vec![]));
}

#[test]
fn every_entry_is_well_formed_in_both_protocols() {
    for proto in [Proto::Resp2, Proto::Resp3] {
        for spec in COMMANDS {
            let mut out = Vec::new();
            write_info(&mut out, proto, spec);
            whole(&out);
            out.clear();
            write_docs(&mut out, proto, spec);
            whole(&out);
            assert!(!spec.summary.is_empty(), "{}", spec.name);
            assert!(spec.arity != 0, "{}", spec.name);
            for sub in spec.subcommands {
                assert!(sub.name.starts_with(&format!("{}|", spec.name)));
                assert!(!sub.summary.is_empty(), "{}", sub.name);
            }
        }
    }
}

#[test]
fn docs_name_the_arguments() {
    let mut out = Vec::new();
    write_docs(&mut out, Proto::Resp3, find(b"next").unwrap());
    let V::Map(doc) = whole(&out) else { panic!() };
    let keys: Vec<&V> = doc.iter().map(|(k, _)| k).collect();
    assert_eq!(
        keys,
        [
            &bulk("summary"),
            &bulk("since"),
            &bulk("group"),
            &bulk("complexity"),
            &bulk("arguments")
        ]
    );
    let V::Array(args) = &doc[4].1 else { panic!() };
    assert_eq!(args.len(), 3);
    let V::Map(count) = &args[2] else { panic!() };
    assert!(count.contains(&(bulk("name"), bulk("count"))));
    assert!(count.contains(&(bulk("flags"), V::Set(vec![simple("optional")]))));
    let V::Map(ws) = &args[0] else { panic!() };
    assert!(ws.contains(&(bulk("type"), bulk("key"))));
    assert!(ws.contains(&(bulk("key_spec_index"), V::Int(0))));
}

#[test]
fn lookups_and_getkeys() {
    assert_eq!(find(b"NEXT").unwrap().name, "next");
    assert_eq!(find(b"client|setinfo").unwrap().name, "client|setinfo");
    assert_eq!(find(b"CLIENT|ID").unwrap().name, "client|id");
    assert!(find(b"client|kill").is_none());
    assert!(find(b"set").is_none());
    assert!(find(b"").is_none());

    let keys = |argv: &[&str]| {
        let argv: Vec<&[u8]> = argv.iter().map(|a| a.as_bytes()).collect();
        get_keys(&argv)
            .map(|k| {
                k.iter()
                    .map(|k| String::from_utf8_lossy(k).into_owned())
                    .collect::<Vec<_>>()
            })
            .map_err(|e| e.0)
    };
    assert_eq!(keys(&["NEXT", "42", "5"]), Ok(vec!["42".to_owned()]));
    assert_eq!(keys(&["next", "7", "1", "100"]), Ok(vec!["7".to_owned()]));
    assert_eq!(keys(&["PEEK", "9", "0"]), Ok(vec!["9".to_owned()]));
    assert_eq!(
        keys(&["GETSEQ"]),
        Err("ERR The command has no key arguments".into())
    );
    assert_eq!(
        keys(&["NEXT", "42"]),
        Err("ERR Invalid number of arguments specified for command".into())
    );
    assert_eq!(
        keys(&["PEEK", "1", "2", "3"]),
        Err("ERR Invalid number of arguments specified for command".into())
    );
    assert_eq!(
        keys(&["SET", "k"]),
        Err("ERR Invalid command specified".into())
    );
    assert!(supported().starts_with("GETSEQ, CURRENT, NEXT, PEEK, VERSION, CLUSTER"));
}
