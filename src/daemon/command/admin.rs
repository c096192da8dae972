//! Parsing of every command but the number commands: the connection's own (`PING`, `AUTH`,
//! `HELLO`, `CLIENT`, `SELECT`, `MULTI`, ...) and the server's (`INFO`, `COMMAND`, `CONFIG GET`,
//! `DBSIZE`, `TIME`). Errors use Redis's wording where Redis has one, so clients that match on
//! it behave as they do with Redis.

use super::{
    ClientSub, ClusterSub, Command, CommandError, CommandSub, LibAttr, VersionSub, Words, arity,
    no_args, number, show, spec,
};

/// Parses the command `name` (not a number command) with arguments `rest`.
pub(super) fn parse<'a>(name: &'a [u8], rest: &[&'a [u8]]) -> Result<Command<'a>, CommandError> {
    let is = |s: &str| name.eq_ignore_ascii_case(s.as_bytes());
    if is("PING") {
        match *rest {
            [] => Ok(Command::Ping(None)),
            [message] => Ok(Command::Ping(Some(message))),
            _ => Err(arity("ping")),
        }
    } else if is("ECHO") {
        let [message] = *rest else {
            return Err(arity("echo"));
        };
        Ok(Command::Echo(message))
    } else if is("QUIT") {
        // Any arguments, ignored (Redis's arity -1).
        Ok(Command::Quit)
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
        command(rest)
    } else if is("CONFIG") {
        config(rest)
    } else if is("SELECT") {
        let [db] = *rest else {
            return Err(arity("select"));
        };
        Ok(Command::Select(db))
    } else if is("CLIENT") {
        client(rest)
    } else if is("INFO") {
        Ok(Command::Info(Sections::parse(rest)))
    } else if is("VERSION") {
        version(rest)
    } else if is("CLUSTER") {
        cluster(rest)
    } else if is("READONLY") || is("READWRITE") || is("ASKING") {
        let lower = String::from_utf8_lossy(name).to_ascii_lowercase();
        no_args(rest, &lower, Command::ClusterFlag)
    } else if is("DBSIZE") {
        no_args(rest, "dbsize", Command::DbSize)
    } else if is("TIME") {
        no_args(rest, "time", Command::Time)
    } else if is("MULTI") {
        no_args(rest, "multi", Command::Multi)
    } else if is("EXEC") {
        no_args(rest, "exec", Command::Exec)
    } else if is("DISCARD") {
        no_args(rest, "discard", Command::Discard)
    } else if is("WATCH") {
        match rest {
            [] => Err(arity("watch")),
            _ => Ok(Command::Watch),
        }
    } else if is("UNWATCH") {
        no_args(rest, "unwatch", Command::Unwatch)
    } else {
        Err(CommandError(format!(
            "ERR Unknown command '{}'. Supported: {}",
            show(name),
            spec::supported()
        )))
    }
}

/// The sections `INFO` was asked for (a set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sections(u16);

impl Sections {
    /// `# Server`: version, process, port, uptime.
    pub const SERVER: Sections = Sections(1);
    /// `# Clients`: connections.
    pub const CLIENTS: Sections = Sections(1 << 1);
    /// `# Stats`: counters.
    pub const STATS: Sections = Sections(1 << 2);
    /// `# Persistence`: `loading`, the durability mode.
    pub const PERSISTENCE: Sections = Sections(1 << 3);
    /// `# Replication`: `role:master` (what clients look for).
    pub const REPLICATION: Sections = Sections(1 << 4);
    /// `# Keyspace`: `db0:keys=N`. Counting the stored sequences reads all of storage, so it
    /// is not in the default set.
    pub const KEYSPACE: Sections = Sections(1 << 5);
    /// `# Partitions`: each partition's state.
    pub const PARTITIONS: Sections = Sections(1 << 6);
    /// `# Durability`: flushes and their latency.
    pub const DURABILITY: Sections = Sections(1 << 7);
    /// `# Leases`: lease mode's windows.
    pub const LEASES: Sections = Sections(1 << 8);
    /// `# Versions`: the version authority.
    pub const VERSIONS: Sections = Sections(1 << 9);
    /// `# Cluster`: `cluster_enabled`, and in cluster mode the node's roles, routing and
    /// forwarding counters.
    pub const CLUSTER: Sections = Sections(1 << 10);
    /// No section.
    pub const NONE: Sections = Sections(0);
    /// `INFO all` / `INFO everything`: every section.
    pub const ALL: Sections = Sections(0x7ff);
    /// `INFO` and `INFO default`: every section but the keyspace.
    pub const DEFAULT: Sections = Sections(0x7ff & !(1 << 5));

    /// Each section's name as `INFO` takes it, in the order `INFO` prints them.
    pub const NAMED: [(&'static str, Sections); 11] = [
        ("server", Self::SERVER),
        ("clients", Self::CLIENTS),
        ("stats", Self::STATS),
        ("persistence", Self::PERSISTENCE),
        ("replication", Self::REPLICATION),
        ("partitions", Self::PARTITIONS),
        ("durability", Self::DURABILITY),
        ("leases", Self::LEASES),
        ("versions", Self::VERSIONS),
        ("cluster", Self::CLUSTER),
        ("keyspace", Self::KEYSPACE),
    ];

    /// `INFO [section ...]`: names are case-insensitive; unknown ones add nothing (as in Redis).
    pub fn parse(names: &[&[u8]]) -> Sections {
        if names.is_empty() {
            return Sections::DEFAULT;
        }
        names.iter().fold(Sections::NONE, |all, &name| {
            let named = |s: &str| name.eq_ignore_ascii_case(s.as_bytes());
            let section = if named("all") || named("everything") {
                Sections::ALL
            } else if named("default") {
                Sections::DEFAULT
            } else {
                Sections::NAMED
                    .iter()
                    .find(|(n, _)| named(n))
                    .map_or(Sections::NONE, |&(_, s)| s)
            };
            all.union(section)
        })
    }

    /// Whether `section` (one section) is in the set.
    pub fn contains(self, section: Sections) -> bool {
        section.0 != 0 && self.0 & section.0 == section.0
    }

    /// Both sets.
    pub fn union(self, other: Sections) -> Sections {
        Sections(self.0 | other.0)
    }
}

/// `COMMAND [COUNT | LIST | INFO name... | DOCS name... | GETKEYS command arg...]`.
fn command<'a>(rest: &[&'a [u8]]) -> Result<Command<'a>, CommandError> {
    let Some((&sub, params)) = rest.split_first() else {
        return Ok(Command::Command(CommandSub::All));
    };
    let is = |s: &str| sub.eq_ignore_ascii_case(s.as_bytes());
    let words = || params.iter().copied().collect::<Words<'a>>();
    let bare = |name: &str, sub: CommandSub<'a>| {
        if params.is_empty() {
            Ok(sub)
        } else {
            Err(arity(name))
        }
    };
    let sub = if is("COUNT") {
        bare("command|count", CommandSub::Count)?
    } else if is("LIST") {
        // Redis's FILTERBY is not supported: every name is listed.
        bare("command|list", CommandSub::List)?
    } else if is("INFO") {
        CommandSub::Info(words())
    } else if is("DOCS") {
        CommandSub::Docs(words())
    } else if is("GETKEYS") {
        if params.is_empty() {
            return Err(arity("command|getkeys"));
        }
        CommandSub::GetKeys(words())
    } else {
        return Err(unknown_subcommand(sub, "COMMAND"));
    };
    Ok(Command::Command(sub))
}

/// Redis's wording for a subcommand it does not know.
fn unknown_subcommand(sub: &[u8], command: &str) -> CommandError {
    CommandError(format!(
        "ERR unknown subcommand '{}'. Try {command} HELP.",
        show(sub)
    ))
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

/// `CONFIG GET pattern [pattern ...]`; other subcommands are refused (seqd is configured by its
/// command line).
fn config<'a>(rest: &[&'a [u8]]) -> Result<Command<'a>, CommandError> {
    let Some((&sub, params)) = rest.split_first() else {
        return Err(arity("config"));
    };
    if !sub.eq_ignore_ascii_case(b"GET") {
        return Err(CommandError(format!(
            "ERR CONFIG subcommand '{}' is not supported; only CONFIG GET (seqd is configured \
             by its flags: seqd serve --help)",
            show(sub)
        )));
    }
    if params.is_empty() {
        return Err(arity("config|get"));
    }
    Ok(Command::ConfigGet(params.iter().copied().collect()))
}

/// Whether `value` may be a client name or library attribute: printable ASCII, no spaces.
fn printable(value: &[u8]) -> bool {
    value.iter().all(|b| (b'!'..=b'~').contains(b))
}

/// `CLIENT ID | SETNAME name | GETNAME | SETINFO attr value | INFO | LIST`.
fn client<'a>(rest: &[&'a [u8]]) -> Result<Command<'a>, CommandError> {
    let Some((&sub, params)) = rest.split_first() else {
        return Err(arity("client"));
    };
    let is = |s: &str| sub.eq_ignore_ascii_case(s.as_bytes());
    let bare = |name: &str, sub: ClientSub<'a>| {
        if params.is_empty() {
            Ok(sub)
        } else {
            Err(arity(name))
        }
    };
    let sub = if is("ID") {
        bare("client|id", ClientSub::Id)?
    } else if is("GETNAME") {
        bare("client|getname", ClientSub::GetName)?
    } else if is("INFO") {
        bare("client|info", ClientSub::Info)?
    } else if is("LIST") {
        // Redis's filters (TYPE, ID) are not supported: every connection is listed.
        bare("client|list", ClientSub::List)?
    } else if is("SETNAME") {
        let [name] = *params else {
            return Err(arity("client|setname"));
        };
        if !printable(name) {
            return Err(CommandError(
                "ERR Client names cannot contain spaces, newlines or special characters.".into(),
            ));
        }
        ClientSub::SetName(name)
    } else if is("SETINFO") {
        let [attr, value] = *params else {
            return Err(arity("client|setinfo"));
        };
        let (attr, which) = if attr.eq_ignore_ascii_case(b"LIB-NAME") {
            (LibAttr::Name, "lib-name")
        } else if attr.eq_ignore_ascii_case(b"LIB-VER") {
            (LibAttr::Version, "lib-ver")
        } else {
            return Err(CommandError(format!(
                "ERR Unrecognized option '{}'",
                show(attr)
            )));
        };
        if !printable(value) {
            return Err(CommandError(format!(
                "ERR {which} cannot contain spaces, newlines or special characters."
            )));
        }
        ClientSub::SetInfo { attr, value }
    } else {
        return Err(unknown_subcommand(sub, "CLIENT"));
    };
    Ok(Command::Client(sub))
}

/// `VERSION COMMIT [domain]`, `READ [domain]`, `REPORT domain version`, `STATUS [domain]`.
fn version<'a>(rest: &[&'a [u8]]) -> Result<Command<'a>, CommandError> {
    let Some((&sub, args)) = rest.split_first() else {
        return Err(arity("version"));
    };
    let is = |s: &str| sub.eq_ignore_ascii_case(s.as_bytes());
    let domain = |b: &[u8]| number(b, "domain", 0, u64::MAX);
    let optional_domain = |name: &str| match *args {
        [] => Ok(0),
        [d] => domain(d),
        _ => Err(arity(name)),
    };
    let sub = if is("COMMIT") {
        VersionSub::Commit(optional_domain("version|commit")?)
    } else if is("READ") {
        VersionSub::Read(optional_domain("version|read")?)
    } else if is("STATUS") {
        VersionSub::Status(optional_domain("version|status")?)
    } else if is("REPORT") {
        let [d, v] = *args else {
            return Err(arity("version|report"));
        };
        VersionSub::Report(domain(d)?, number(v, "version", 0, u64::MAX)?)
    } else {
        return Err(CommandError(format!(
            "ERR unknown subcommand '{}'. Try VERSION COMMIT|READ|REPORT|STATUS.",
            show(sub)
        )));
    };
    Ok(Command::Version(sub))
}

/// `CLUSTER SLOTS|SHARDS|NODES|INFO|MYID|HELP`, `CLUSTER KEYSLOT key`.
fn cluster<'a>(rest: &[&'a [u8]]) -> Result<Command<'a>, CommandError> {
    let Some((&sub, args)) = rest.split_first() else {
        return Err(arity("cluster"));
    };
    let is = |s: &str| sub.eq_ignore_ascii_case(s.as_bytes());
    let bare = |name: &str, c: ClusterSub<'a>| {
        if args.is_empty() {
            Ok(Command::Cluster(c))
        } else {
            Err(arity(name))
        }
    };
    if is("SLOTS") {
        bare("cluster|slots", ClusterSub::Slots)
    } else if is("SHARDS") {
        bare("cluster|shards", ClusterSub::Shards)
    } else if is("NODES") {
        bare("cluster|nodes", ClusterSub::Nodes)
    } else if is("INFO") {
        bare("cluster|info", ClusterSub::Info)
    } else if is("MYID") {
        bare("cluster|myid", ClusterSub::MyId)
    } else if is("HELP") {
        bare("cluster|help", ClusterSub::Help)
    } else if is("KEYSLOT") {
        let [key] = *args else {
            return Err(arity("cluster|keyslot"));
        };
        Ok(Command::Cluster(ClusterSub::KeySlot(key)))
    } else {
        Err(CommandError(format!(
            "ERR unknown subcommand '{}'. Try CLUSTER HELP.",
            show(sub)
        )))
    }
}
