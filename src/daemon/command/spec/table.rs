//! The command table: every command seqd answers, with what `COMMAND` reports of it.

use super::{Arg, Key, Spec};

const SINCE: &str = "0.1.0";

/// Flags Redis gives the commands a connection may send before it authenticates.
const NO_AUTH: &[&str] = &[
    "noscript",
    "loading",
    "stale",
    "fast",
    "no_auth",
    "allow_busy",
];
const CONNECTION_FAST: &[&str] = &["@fast", "@connection"];
const CONNECTION_SLOW: &[&str] = &["@slow", "@connection"];
const TRANSACTION: &[&str] = &["noscript", "loading", "stale", "fast", "allow_busy"];

const BASE: Spec = Spec {
    name: "",
    arity: 1,
    flags: &[],
    key: None,
    acl: &[],
    summary: "",
    since: SINCE,
    group: "connection",
    complexity: "O(1)",
    args: &[],
    subcommands: &[],
};

const fn arg(name: &'static str, kind: &'static str) -> Arg {
    Arg {
        name,
        kind,
        token: None,
        optional: false,
        multiple: false,
        args: &[],
    }
}

const fn optional(a: Arg) -> Arg {
    Arg {
        optional: true,
        ..a
    }
}

const WORKSPACE: Arg = arg("workspace", "key");
const SEQUENCE: Arg = arg("sequence", "integer");
const WRITE_KEY: Key = Key {
    position: 1,
    flags: &["RW", "update"],
};
const READ_KEY: Key = Key {
    position: 1,
    flags: &["RO", "access"],
};

/// A subcommand of `VERSION`: keyless (the authority is one per server or cluster, so
/// cluster clients may send it to any node).
const VERSION_SUB: Spec = Spec {
    flags: &["write", "fast"],
    acl: &["@write", "@fast"],
    group: "version",
    ..BASE
};

const DOMAIN: Arg = arg("domain", "integer");

/// A subcommand of `CLUSTER`.
const CLUSTER_SUB: Spec = Spec {
    flags: &["loading", "stale"],
    acl: &["@slow"],
    group: "cluster",
    ..BASE
};

/// A subcommand of `CLIENT`.
const CLIENT_SUB: Spec = Spec {
    flags: &["noscript", "loading", "stale"],
    acl: CONNECTION_SLOW,
    ..BASE
};

/// A subcommand of `COMMAND`.
const COMMAND_SUB: Spec = Spec {
    flags: &["loading", "stale"],
    acl: CONNECTION_SLOW,
    group: "server",
    ..BASE
};

/// Every command, in the order `COMMAND` lists them.
pub static COMMANDS: &[Spec] = &[
    Spec {
        name: "getseq",
        flags: &["write", "fast"],
        acl: &["@write", "@fast"],
        summary: "Takes the next number of the default sequence (workspace 0, sequence 0).",
        group: "sequence",
        ..BASE
    },
    Spec {
        name: "current",
        flags: &["readonly", "fast"],
        acl: &["@read", "@fast"],
        summary: "Returns the number the next GETSEQ returns, without taking it.",
        group: "sequence",
        ..BASE
    },
    Spec {
        name: "next",
        arity: -3,
        flags: &["write", "fast"],
        key: Some(WRITE_KEY),
        acl: &["@write", "@fast"],
        summary: "Takes COUNT (default 1) consecutive numbers of a sequence; returns the first.",
        group: "sequence",
        args: &[WORKSPACE, SEQUENCE, optional(arg("count", "integer"))],
        ..BASE
    },
    Spec {
        name: "peek",
        arity: 3,
        flags: &["readonly", "fast"],
        key: Some(READ_KEY),
        acl: &["@read", "@fast"],
        summary: "Returns the number the next NEXT of a sequence returns, without taking it.",
        group: "sequence",
        args: &[WORKSPACE, SEQUENCE],
        ..BASE
    },
    Spec {
        name: "version",
        arity: -2,
        acl: &["@slow"],
        summary: "A container for the version authority's commands (commit and read versions).",
        group: "version",
        complexity: "Depends on subcommand.",
        subcommands: &[
            Spec {
                name: "version|commit",
                arity: -2,
                args: &[optional(DOMAIN)],
                summary: "Takes a new commit version of a domain; returns [last commit version, \
                          commit version, epoch].",
                ..VERSION_SUB
            },
            Spec {
                name: "version|read",
                arity: -2,
                flags: &["readonly", "fast"],
                acl: &["@read", "@fast"],
                args: &[optional(DOMAIN)],
                summary: "Returns a domain's read version: at least every reported commit version.",
                ..VERSION_SUB
            },
            Spec {
                name: "version|report",
                arity: 4,
                args: &[DOMAIN, arg("version", "integer")],
                summary: "Records that the commit at a version succeeded.",
                ..VERSION_SUB
            },
            Spec {
                name: "version|status",
                arity: -2,
                flags: &["readonly", "fast"],
                acl: &["@read", "@fast"],
                args: &[optional(DOMAIN)],
                summary: "Returns a domain's epoch, baseline, last commit, read version and \
                          durable bound.",
                ..VERSION_SUB
            },
        ],
        ..BASE
    },
    Spec {
        name: "cluster",
        arity: -2,
        acl: &["@slow"],
        summary: "A container for the Redis Cluster commands (cluster mode).",
        group: "cluster",
        complexity: "Depends on subcommand.",
        subcommands: &[
            Spec {
                name: "cluster|info",
                arity: 2,
                summary: "Returns information about the state of the cluster.",
                ..CLUSTER_SUB
            },
            Spec {
                name: "cluster|keyslot",
                arity: 3,
                args: &[arg("key", "string")],
                summary: "Returns the hash slot of a key (a workspace: its decimal form).",
                ..CLUSTER_SUB
            },
            Spec {
                name: "cluster|myid",
                arity: 2,
                summary: "Returns the node's id.",
                ..CLUSTER_SUB
            },
            Spec {
                name: "cluster|nodes",
                arity: 2,
                summary: "Returns the cluster configuration for a node.",
                ..CLUSTER_SUB
            },
            Spec {
                name: "cluster|shards",
                arity: 2,
                summary: "Returns the mapping of cluster slots to shards.",
                ..CLUSTER_SUB
            },
            Spec {
                name: "cluster|slots",
                arity: 2,
                summary: "Returns the mapping of cluster slots to nodes.",
                ..CLUSTER_SUB
            },
            Spec {
                name: "cluster|help",
                arity: 2,
                summary: "Returns helpful text about the different subcommands.",
                ..CLUSTER_SUB
            },
        ],
        ..BASE
    },
    Spec {
        name: "readonly",
        flags: &["loading", "stale", "fast"],
        acl: CONNECTION_FAST,
        summary: "Enables read-only queries for a connection to a Redis Cluster replica node.",
        group: "cluster",
        ..BASE
    },
    Spec {
        name: "readwrite",
        flags: &["loading", "stale", "fast"],
        acl: CONNECTION_FAST,
        summary: "Enables read-write queries for a connection to a Redis Cluster replica node.",
        group: "cluster",
        ..BASE
    },
    Spec {
        name: "asking",
        flags: &["fast"],
        acl: CONNECTION_FAST,
        summary: "Signals that a cluster client is following an -ASK redirect.",
        group: "cluster",
        ..BASE
    },
    Spec {
        name: "ping",
        arity: -1,
        flags: &["fast"],
        acl: CONNECTION_FAST,
        summary: "Returns PONG, or the message given.",
        args: &[optional(arg("message", "string"))],
        ..BASE
    },
    Spec {
        name: "echo",
        arity: 2,
        flags: &["fast"],
        acl: CONNECTION_FAST,
        summary: "Returns the message given.",
        args: &[arg("message", "string")],
        ..BASE
    },
    Spec {
        name: "quit",
        arity: -1,
        flags: NO_AUTH,
        acl: CONNECTION_FAST,
        summary: "Closes the connection.",
        ..BASE
    },
    Spec {
        name: "auth",
        arity: -2,
        flags: NO_AUTH,
        acl: CONNECTION_FAST,
        summary: "Authenticates the connection with the server's --auth-token.",
        args: &[
            optional(arg("username", "string")),
            arg("password", "string"),
        ],
        ..BASE
    },
    Spec {
        name: "hello",
        arity: -1,
        flags: NO_AUTH,
        acl: CONNECTION_FAST,
        summary: "Chooses the protocol (RESP2 or RESP3), authenticates, names the connection.",
        args: &[Arg {
            optional: true,
            args: &[
                arg("protover", "integer"),
                Arg {
                    token: Some("AUTH"),
                    optional: true,
                    args: &[arg("username", "string"), arg("password", "string")],
                    ..arg("auth", "block")
                },
                Arg {
                    token: Some("SETNAME"),
                    ..optional(arg("clientname", "string"))
                },
            ],
            ..arg("arguments", "block")
        }],
        ..BASE
    },
    Spec {
        name: "select",
        arity: 2,
        flags: &["loading", "stale", "fast"],
        acl: &["@keyspace", "@fast"],
        summary: "Selects database 0, the only one.",
        args: &[arg("index", "integer")],
        ..BASE
    },
    Spec {
        name: "client",
        arity: -2,
        acl: &["@slow"],
        summary: "A container for client connection commands.",
        complexity: "Depends on subcommand.",
        subcommands: &[
            Spec {
                name: "client|id",
                arity: 2,
                summary: "Returns the connection's unique id.",
                ..CLIENT_SUB
            },
            Spec {
                name: "client|setname",
                arity: 3,
                summary: "Names the connection.",
                args: &[arg("connection-name", "string")],
                ..CLIENT_SUB
            },
            Spec {
                name: "client|getname",
                arity: 2,
                summary: "Returns the connection's name.",
                ..CLIENT_SUB
            },
            Spec {
                name: "client|setinfo",
                arity: 4,
                summary: "Records the client library's name (LIB-NAME) or version (LIB-VER).",
                args: &[arg("attr", "string"), arg("value", "string")],
                ..CLIENT_SUB
            },
            Spec {
                name: "client|info",
                arity: 2,
                summary: "Returns information about the connection.",
                ..CLIENT_SUB
            },
            Spec {
                name: "client|list",
                arity: 2,
                summary: "Lists the open connections.",
                complexity: "O(N) where N is the number of connections",
                ..CLIENT_SUB
            },
        ],
        ..BASE
    },
    Spec {
        name: "info",
        arity: -1,
        flags: &["loading", "stale"],
        acl: &["@slow", "@dangerous"],
        summary: "Returns information about the server in Redis's INFO format.",
        group: "server",
        args: &[Arg {
            multiple: true,
            ..optional(arg("section", "string"))
        }],
        ..BASE
    },
    Spec {
        name: "config",
        arity: -2,
        acl: &["@slow"],
        summary: "A container for server configuration commands (GET only).",
        group: "server",
        complexity: "Depends on subcommand.",
        subcommands: &[Spec {
            name: "config|get",
            arity: -3,
            flags: &["admin", "noscript", "loading", "stale"],
            acl: &["@admin", "@slow", "@dangerous"],
            summary: "Returns the values of configuration parameters.",
            group: "server",
            complexity: "O(N) when N is the number of configuration parameters provided",
            args: &[Arg {
                multiple: true,
                ..arg("parameter", "string")
            }],
            ..BASE
        }],
        ..BASE
    },
    Spec {
        name: "command",
        arity: -1,
        flags: &["loading", "stale"],
        acl: CONNECTION_SLOW,
        summary: "Returns detailed information about all commands.",
        group: "server",
        complexity: "O(N) where N is the total number of commands",
        subcommands: &[
            Spec {
                name: "command|count",
                arity: 2,
                summary: "Returns a count of commands.",
                ..COMMAND_SUB
            },
            Spec {
                name: "command|list",
                arity: 2,
                summary: "Returns a list of command names.",
                ..COMMAND_SUB
            },
            Spec {
                name: "command|info",
                arity: -2,
                summary: "Returns information about one, multiple or all commands.",
                args: &[Arg {
                    multiple: true,
                    ..optional(arg("command-name", "string"))
                }],
                ..COMMAND_SUB
            },
            Spec {
                name: "command|docs",
                arity: -2,
                summary: "Returns documentary information about one, multiple or all commands.",
                args: &[Arg {
                    multiple: true,
                    ..optional(arg("command-name", "string"))
                }],
                ..COMMAND_SUB
            },
            Spec {
                name: "command|getkeys",
                arity: -3,
                summary: "Extracts the key names from an arbitrary command.",
                args: &[
                    arg("command", "string"),
                    Arg {
                        multiple: true,
                        ..optional(arg("arg", "string"))
                    },
                ],
                ..COMMAND_SUB
            },
        ],
        ..BASE
    },
    Spec {
        name: "dbsize",
        flags: &["readonly"],
        acl: &["@keyspace", "@read", "@slow"],
        summary: "Returns the number of sequences that have been used (read from storage).",
        group: "server",
        complexity: "O(N) where N is the number of sequences stored",
        ..BASE
    },
    Spec {
        name: "time",
        flags: &["loading", "stale", "fast"],
        acl: &["@fast"],
        summary: "Returns the server time: seconds and microseconds since the Unix epoch.",
        group: "server",
        ..BASE
    },
    Spec {
        name: "multi",
        flags: TRANSACTION,
        acl: &["@fast", "@transaction"],
        summary: "Starts a transaction: commands are queued until EXEC.",
        group: "transactions",
        ..BASE
    },
    Spec {
        name: "exec",
        flags: &["noscript", "loading", "stale", "skip_slowlog"],
        acl: &["@slow", "@transaction"],
        summary: "Runs the queued commands together; replies with their replies.",
        group: "transactions",
        complexity: "Depends on commands in the transaction",
        ..BASE
    },
    Spec {
        name: "discard",
        flags: TRANSACTION,
        acl: &["@fast", "@transaction"],
        summary: "Drops the queued commands.",
        group: "transactions",
        complexity: "O(N), when N is the number of queued commands",
        ..BASE
    },
    Spec {
        name: "unwatch",
        flags: TRANSACTION,
        acl: &["@fast", "@transaction"],
        summary: "Forgets watched keys (seqd never watches any: WATCH is refused).",
        group: "transactions",
        ..BASE
    },
];
