//! Tests of command parsing: every command, every error.

use super::*;

/// Parses a space-separated request ("" = no arguments).
fn p(s: &str) -> Result<Command<'_>, CommandError> {
    let args: Vec<&[u8]> = s.split(' ').map(str::as_bytes).collect();
    parse_command(&args)
}

fn e(s: &str) -> String {
    let err = p(s).unwrap_err();
    assert!(!err.0.contains(['\r', '\n']), "{err:?}");
    err.0
}

fn arity_msg(name: &str) -> String {
    format!("ERR wrong number of arguments for '{name}' command")
}

#[test]
fn simple_commands() {
    assert_eq!(p("GETSEQ"), Ok(Command::GetSeq));
    assert_eq!(p("getseq"), Ok(Command::GetSeq));
    assert_eq!(p("Current"), Ok(Command::Current));
    assert_eq!(p("quit"), Ok(Command::Quit));
    assert_eq!(p("PING"), Ok(Command::Ping(None)));
    assert_eq!(p("ping hi"), Ok(Command::Ping(Some(b"hi"))));
    assert_eq!(p("echo hi"), Ok(Command::Echo(b"hi")));
    assert_eq!(p("SELECT 0"), Ok(Command::Select(b"0")));
    assert_eq!(p("select x"), Ok(Command::Select(b"x")));
    assert_eq!(
        p("CONFIG GET maxclients"),
        Ok(Command::ConfigGet(words(&["maxclients"])))
    );
    assert_eq!(
        p("config get * save"),
        Ok(Command::ConfigGet(words(&["*", "save"])))
    );
    for (req, cmd) in [
        ("DBSIZE", Command::DbSize),
        ("time", Command::Time),
        ("MULTI", Command::Multi),
        ("exec", Command::Exec),
        ("Discard", Command::Discard),
        ("WATCH a b", Command::Watch),
        ("UNWATCH", Command::Unwatch),
    ] {
        assert_eq!(p(req), Ok(cmd), "{req}");
    }
}

fn words(s: &[&'static str]) -> Words<'static> {
    s.iter().map(|w| w.as_bytes()).collect()
}

#[test]
fn command_subcommands() {
    let cmd = |sub| Ok(Command::Command(sub));
    assert_eq!(p("COMMAND"), cmd(CommandSub::All));
    assert_eq!(p("command count"), cmd(CommandSub::Count));
    assert_eq!(p("COMMAND LIST"), cmd(CommandSub::List));
    assert_eq!(p("command info"), cmd(CommandSub::Info(words(&[]))));
    assert_eq!(
        p("command docs GET next"),
        cmd(CommandSub::Docs(words(&["GET", "next"])))
    );
    assert_eq!(
        p("COMMAND GETKEYS NEXT 42 5"),
        cmd(CommandSub::GetKeys(words(&["NEXT", "42", "5"])))
    );
    assert_eq!(
        e("COMMAND FOO"),
        "ERR unknown subcommand 'FOO'. Try COMMAND HELP."
    );
}

#[test]
fn client_subcommands() {
    let client = |sub| Ok(Command::Client(sub));
    assert_eq!(p("CLIENT ID"), client(ClientSub::Id));
    assert_eq!(p("client getname"), client(ClientSub::GetName));
    assert_eq!(p("CLIENT INFO"), client(ClientSub::Info));
    assert_eq!(p("client list"), client(ClientSub::List));
    assert_eq!(p("CLIENT SETNAME me"), client(ClientSub::SetName(b"me")));
    assert_eq!(
        p("client setinfo lib-name redis-rs"),
        client(ClientSub::SetInfo {
            attr: LibAttr::Name,
            value: b"redis-rs"
        })
    );
    assert_eq!(
        p("CLIENT SETINFO LIB-VER 1.2"),
        client(ClientSub::SetInfo {
            attr: LibAttr::Version,
            value: b"1.2"
        })
    );
    let args: [&[u8]; 3] = [b"CLIENT", b"SETNAME", b"a b"];
    assert_eq!(
        parse_command(&args).unwrap_err().0,
        "ERR Client names cannot contain spaces, newlines or special characters."
    );
    let args: [&[u8]; 4] = [b"CLIENT", b"SETINFO", b"LIB-NAME", b"a\nb"];
    assert_eq!(
        parse_command(&args).unwrap_err().0,
        "ERR lib-name cannot contain spaces, newlines or special characters."
    );
    assert_eq!(e("CLIENT SETINFO FOO x"), "ERR Unrecognized option 'FOO'");
    assert_eq!(
        e("CLIENT KILL x"),
        "ERR unknown subcommand 'KILL'. Try CLIENT HELP."
    );
}

#[test]
fn info_sections() {
    let info = |s: &str| match p(s) {
        Ok(Command::Info(sections)) => sections,
        other => panic!("{s}: {other:?}"),
    };
    assert_eq!(info("INFO"), Sections::DEFAULT);
    assert_eq!(info("info default"), Sections::DEFAULT);
    assert_eq!(info("INFO all"), Sections::ALL);
    assert_eq!(info("INFO everything"), Sections::ALL);
    assert!(!Sections::DEFAULT.contains(Sections::KEYSPACE));
    let some = info("INFO Server persistence NOSUCH");
    assert!(some.contains(Sections::SERVER) && some.contains(Sections::PERSISTENCE));
    assert!(!some.contains(Sections::CLIENTS));
    assert_eq!(info("INFO nosuch"), Sections::NONE);
    assert!(!Sections::NONE.contains(Sections::NONE));
}

#[test]
fn arity_errors() {
    for (req, name) in [
        ("GETSEQ x", "getseq"),
        ("current x", "current"),
        ("PING a b", "ping"),
        ("NEXT", "next"),
        ("NEXT 1", "next"),
        ("next 1 2 3 4", "next"),
        ("PEEK 1", "peek"),
        ("PEEK 1 2 3", "peek"),
        ("AUTH", "auth"),
        ("AUTH a b c", "auth"),
        ("CONFIG", "config"),
        ("CONFIG GET", "config|get"),
        ("ECHO", "echo"),
        ("ECHO a b", "echo"),
        ("DBSIZE x", "dbsize"),
        ("TIME x", "time"),
        ("MULTI x", "multi"),
        ("EXEC x", "exec"),
        ("DISCARD x", "discard"),
        ("WATCH", "watch"),
        ("UNWATCH x", "unwatch"),
        ("CLIENT ID x", "client|id"),
        ("CLIENT LIST x", "client|list"),
        ("COMMAND COUNT x", "command|count"),
        ("COMMAND GETKEYS", "command|getkeys"),
        ("SELECT", "select"),
        ("SELECT 0 1", "select"),
        ("CLIENT", "client"),
        ("CLIENT SETNAME", "client|setname"),
        ("CLIENT SETNAME a b", "client|setname"),
        ("CLIENT SETINFO a", "client|setinfo"),
    ] {
        assert_eq!(e(req), arity_msg(name), "{req}");
    }
}

#[test]
fn next_and_peek() {
    assert_eq!(
        p("NEXT 1 2"),
        Ok(Command::Next {
            ws: 1,
            seq: 2,
            count: 1
        })
    );
    assert_eq!(
        p("next 0 0 1"),
        Ok(Command::Next {
            ws: 0,
            seq: 0,
            count: 1
        })
    );
    assert_eq!(
        p("NeXt 18446744073709551615 65535 1000000"),
        Ok(Command::Next {
            ws: u64::MAX,
            seq: u16::MAX,
            count: MAX_COUNT
        })
    );
    assert_eq!(
        p("NEXT 007 08 09"),
        Ok(Command::Next {
            ws: 7,
            seq: 8,
            count: 9
        })
    );
    assert_eq!(p("PEEK 42 5"), Ok(Command::Peek { ws: 42, seq: 5 }));
    assert_eq!(
        p("peek 18446744073709551615 65535"),
        Ok(Command::Peek {
            ws: u64::MAX,
            seq: u16::MAX
        })
    );
}

#[test]
fn number_errors() {
    let ws = |v: &str| {
        format!("ERR workspace must be an integer in 0..=18446744073709551615, got '{v}'")
    };
    let seq = |v: &str| format!("ERR sequence must be an integer in 0..=65535, got '{v}'");
    let count = |v: &str| format!("ERR count must be an integer in 1..=1000000, got '{v}'");
    for bad in [
        "abc",
        "",
        "-1",
        "+1",
        " 1",
        "1 ",
        "1.0",
        "0x10",
        "18446744073709551616",
        "99999999999999999999999",
    ] {
        let args: [&[u8]; 3] = [b"NEXT", bad.as_bytes(), b"1"];
        assert_eq!(parse_command(&args).unwrap_err().0, ws(bad), "{bad:?}");
        let args: [&[u8]; 3] = [b"PEEK", b"1", bad.as_bytes()];
        assert_eq!(parse_command(&args).unwrap_err().0, seq(bad), "{bad:?}");
        let args: [&[u8]; 4] = [b"NEXT", b"1", b"1", bad.as_bytes()];
        assert_eq!(parse_command(&args).unwrap_err().0, count(bad), "{bad:?}");
    }
    assert_eq!(e("NEXT 1 65536"), seq("65536"));
    assert_eq!(e("PEEK 1 70000"), seq("70000"));
    assert_eq!(e("NEXT 1 1 0"), count("0"));
    assert_eq!(e("NEXT 1 1 1000001"), count("1000001"));
    // The first bad argument is reported.
    assert_eq!(e("NEXT x y 0"), ws("x"));
    assert_eq!(e("NEXT 1 y 0"), seq("y"));
    assert_eq!(e("NEXT x y"), ws("x"));
}

#[test]
fn shown_values_are_sanitized() {
    let args: [&[u8]; 3] = [b"NEXT", b"1\r\n2\t\0", b"1"];
    let msg = parse_command(&args).unwrap_err().0;
    assert!(msg.ends_with(r"got '1\r\n2\t\u{0}'"), "{msg}");
    let long = "9".repeat(100);
    assert!(e(&format!("PEEK {long} 1")).ends_with(&format!("got '{}...'", &long[..32])));
    let args: [&[u8]; 3] = [b"PEEK", b"\xff\xfe", b"1"];
    assert!(
        parse_command(&args)
            .unwrap_err()
            .0
            .ends_with("got '\u{fffd}\u{fffd}'")
    );
    // A multi-byte character cut at 32 bytes becomes a replacement character.
    let cut = format!("{}é", "a".repeat(31));
    let args: [&[u8]; 3] = [b"PEEK", cut.as_bytes(), b"1"];
    let msg = parse_command(&args).unwrap_err().0;
    assert!(
        msg.ends_with(&format!("got '{}\u{fffd}...'", "a".repeat(31))),
        "{msg}"
    );
}

#[test]
fn auth() {
    assert_eq!(
        p("AUTH pw"),
        Ok(Command::Auth {
            username: None,
            password: b"pw"
        })
    );
    assert_eq!(
        p("auth user pw"),
        Ok(Command::Auth {
            username: Some(b"user"),
            password: b"pw"
        })
    );
}

#[test]
fn hello() {
    let hello = |version, auth, setname| {
        Ok(Command::Hello {
            version,
            auth,
            setname,
        })
    };
    assert_eq!(p("HELLO"), hello(None, None, None));
    assert_eq!(p("hello 3"), hello(Some(b"3"), None, None));
    assert_eq!(p("HELLO x"), hello(Some(b"x"), None, None));
    assert_eq!(
        p("HELLO 2 AUTH u p"),
        hello(Some(b"2"), Some((b"u", b"p")), None)
    );
    assert_eq!(p("HELLO 3 setname c"), hello(Some(b"3"), None, Some(b"c")));
    assert_eq!(
        p("HELLO 3 SETNAME c auth u p"),
        hello(Some(b"3"), Some((b"u", b"p")), Some(b"c"))
    );
    assert_eq!(
        p("HELLO 3 AUTH u p SETNAME c SETNAME d"),
        hello(Some(b"3"), Some((b"u", b"p")), Some(b"d"))
    );
    let syntax = |o: &str| format!("ERR Syntax error in HELLO option '{o}'");
    assert_eq!(e("HELLO 3 AUTH u"), syntax("AUTH"));
    assert_eq!(e("HELLO 3 AUTH"), syntax("AUTH"));
    assert_eq!(e("HELLO 3 SETNAME"), syntax("SETNAME"));
    assert_eq!(e("HELLO 3 SETNAME c x"), syntax("x"));
    assert_eq!(e("HELLO 3 FOO"), syntax("FOO"));
}

#[test]
fn unsupported() {
    let unknown = |n: &str| {
        format!(
            "ERR Unknown command '{n}'. Supported: GETSEQ, CURRENT, NEXT, PEEK, VERSION, \
             CLUSTER, READONLY, READWRITE, ASKING, PING, ECHO, QUIT, AUTH, HELLO, SELECT, \
             CLIENT, INFO, CONFIG, COMMAND, DBSIZE, TIME, MULTI, EXEC, DISCARD, UNWATCH"
        )
    };
    assert_eq!(e("SET k v"), unknown("SET"));
    assert_eq!(e(""), unknown(""));
    assert_eq!(e("NEXTX 1 2"), unknown("NEXTX"));
    let args: [&[u8]; 1] = [b"GET\r\nSET"];
    assert_eq!(parse_command(&args).unwrap_err().0, unknown(r"GET\r\nSET"));
    assert_eq!(
        e("CONFIG SET a b"),
        "ERR CONFIG subcommand 'SET' is not supported; only CONFIG GET (seqd is configured by \
         its flags: seqd serve --help)"
    );
    assert_eq!(
        parse_command(&[]),
        Err(CommandError("ERR empty command".into()))
    );
    assert_eq!(CommandError("ERR x".into()).to_string(), "ERR x");
}
