//! The commands a connection answers itself, without the partitions: the connection's own
//! (`PING`, `ECHO`, `AUTH`, `HELLO`, `SELECT`, `CLIENT`), the server's (`COMMAND`, `CONFIG
//! GET`, `TIME`); `INFO` and `DBSIZE` are left for after the partitions answered
//! (`deferred.rs`). Replies and errors are Redis 7's, in the protocol the connection speaks.

use std::time::{SystemTime, UNIX_EPOCH};

use super::{Conn, Deferred};
use crate::daemon::command::{ClientSub, Command, CommandSub, LibAttr, Words, spec};
use crate::daemon::protocol::{self, Proto};
use crate::daemon::{DurabilityMode, constant_time_eq};

/// `HELLO`'s error for a connection that must authenticate first (Redis's wording).
const HELLO_NOAUTH: &str = "NOAUTH HELLO must be called with the client already authenticated, \
     otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the \
     client and select the RESP protocol version at the same time";

impl Conn {
    /// Answers a command that is not a number command.
    pub(super) fn answer_locally(&mut self, cmd: Command<'_>) {
        match cmd {
            Command::Ping(None) => self.local(|o| protocol::write_simple(o, "PONG")),
            Command::Ping(Some(msg)) | Command::Echo(msg) => {
                self.local(|o| protocol::write_bulk(o, msg))
            }
            Command::Quit => {
                self.local(|o| protocol::write_simple(o, "OK"));
                self.close = true;
            }
            Command::Auth { username, password } => match self.authenticate(username, password) {
                Ok(()) => self.local(|o| protocol::write_simple(o, "OK")),
                Err(msg) => self.local_error(msg),
            },
            Command::Hello {
                version,
                auth,
                setname,
            } => self.hello(version, auth, setname),
            Command::Command(sub) => self.command(sub),
            Command::ConfigGet(patterns) => self.config_get(&patterns),
            Command::Select(db) => {
                let digits = !db.is_empty() && db.iter().all(u8::is_ascii_digit);
                if digits && db.iter().all(|&d| d == b'0') {
                    self.local(|o| protocol::write_simple(o, "OK"));
                } else if digits {
                    self.local_error("ERR DB index is out of range");
                } else {
                    self.local_error("ERR value is not an integer or out of range");
                }
            }
            Command::Client(sub) => self.client(sub),
            Command::Info(sections) => self.defer(Deferred::Info(sections, self.proto)),
            Command::DbSize => self.defer(Deferred::DbSize),
            Command::Time => {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default();
                self.local(|o| {
                    protocol::write_array_len(o, 2);
                    protocol::write_bulk(o, now.as_secs().to_string().as_bytes());
                    protocol::write_bulk(o, now.subsec_micros().to_string().as_bytes());
                });
            }
            Command::Multi => self.multi(),
            Command::Exec => self.exec(),
            Command::Discard => self.discard(),
            Command::Watch => self.local_error(
                "ERR WATCH is not supported: seqd's values only go up and NEXT never fails \
                 for a concurrent one, so MULTI/EXEC needs no WATCH",
            ),
            Command::Unwatch => self.local(|o| protocol::write_simple(o, "OK")),
            Command::Version(sub) => self.version(sub),
            Command::Cluster(sub) => self.cluster(sub),
            Command::ClusterFlag => self.local(|o| protocol::write_simple(o, "OK")),
            // Routed by `execute`; never here.
            Command::GetSeq | Command::Current | Command::Next { .. } | Command::Peek { .. } => {
                self.local_error("ERR internal: a number command was not routed")
            }
        }
    }

    /// `AUTH [username] password`, also `HELLO ... AUTH`: the same check on every connection,
    /// authenticated or not. A failure leaves the connection as it was (as in Redis).
    fn authenticate(
        &mut self,
        username: Option<&[u8]>,
        password: &[u8],
    ) -> Result<(), &'static str> {
        let wrong = "WRONGPASS invalid username-password pair or user is disabled.";
        let user_ok = username.is_none_or(|u| u == b"default");
        let ok = match self.shared.config.auth_token.as_deref() {
            // Without a token the default user needs no password: `AUTH default anything`
            // succeeds, `AUTH password` is refused as Redis refuses it.
            None if username.is_none() => {
                return Err(
                    "ERR AUTH <password> called without any password configured for the \
                     default user. Are you sure your configuration is correct?",
                );
            }
            None => user_ok,
            Some(token) => user_ok && constant_time_eq(password, token.as_bytes()),
        };
        if ok {
            self.authed = true;
            Ok(())
        } else {
            self.counts.auth_failures += 1;
            Err(wrong)
        }
    }

    /// `HELLO [protover [AUTH user pass] [SETNAME name]]`: checks, authenticates, names, then
    /// switches the protocol and answers with the server's description (a map in RESP3).
    fn hello(
        &mut self,
        version: Option<&[u8]>,
        auth: Option<(&[u8], &[u8])>,
        setname: Option<&[u8]>,
    ) {
        let proto = match version {
            None => self.proto,
            Some(b"2") => Proto::Resp2,
            Some(b"3") => Proto::Resp3,
            Some(v) if !v.is_empty() && v.len() < 19 && v.iter().all(u8::is_ascii_digit) => {
                return self.local_error("NOPROTO unsupported protocol version");
            }
            Some(_) => {
                return self.local_error("ERR Protocol version is not an integer or out of range");
            }
        };
        if let Some((user, pass)) = auth
            && let Err(msg) = self.authenticate(Some(user), pass)
        {
            return self.local_error(msg);
        }
        if !self.authed {
            return self.local_error(HELLO_NOAUTH);
        }
        if let Some(name) = setname {
            if !name.iter().all(|b| (b'!'..=b'~').contains(b)) {
                return self.local_error(
                    "ERR Client names cannot contain spaces, newlines or special characters.",
                );
            }
            let name = String::from_utf8_lossy(name).into_owned();
            self.client.update(|v| v.name = name);
        }
        if proto != self.proto {
            self.proto = proto;
            self.client.update(|v| v.resp = proto.version());
        }
        let id = i64::try_from(self.client.id).unwrap_or(i64::MAX);
        let mode = if self.shared.cluster.is_some() {
            "cluster"
        } else {
            "standalone"
        };
        self.local(|o| {
            protocol::write_map_len(o, proto, 7);
            for (k, v) in [("server", "seqd"), ("version", env!("CARGO_PKG_VERSION"))] {
                protocol::write_bulk(o, k.as_bytes());
                protocol::write_bulk(o, v.as_bytes());
            }
            protocol::write_bulk(o, b"proto");
            protocol::write_int(o, proto.version());
            protocol::write_bulk(o, b"id");
            protocol::write_int(o, id);
            for (k, v) in [("mode", mode), ("role", "master")] {
                protocol::write_bulk(o, k.as_bytes());
                protocol::write_bulk(o, v.as_bytes());
            }
            protocol::write_bulk(o, b"modules");
            protocol::write_array_len(o, 0);
        });
    }

    fn client(&mut self, sub: ClientSub<'_>) {
        let proto = self.proto;
        match sub {
            ClientSub::Id => {
                let id = i64::try_from(self.client.id).unwrap_or(i64::MAX);
                self.local(|o| protocol::write_int(o, id));
            }
            ClientSub::SetName(name) => {
                let name = String::from_utf8_lossy(name).into_owned();
                #[cfg(feature = "cluster")]
                {
                    self.peer = name == crate::cluster::forward::PEER_NAME;
                }
                self.client.update(|v| v.name = name);
                self.local(|o| protocol::write_simple(o, "OK"));
            }
            ClientSub::GetName => {
                let name = self.client.name();
                self.local(|o| match name.as_str() {
                    "" => protocol::write_null(o, proto),
                    name => protocol::write_bulk(o, name.as_bytes()),
                });
            }
            ClientSub::SetInfo { attr, value } => {
                let value = String::from_utf8_lossy(value).into_owned();
                self.client.update(|v| match attr {
                    LibAttr::Name => v.lib_name = value,
                    LibAttr::Version => v.lib_ver = value,
                });
                self.local(|o| protocol::write_simple(o, "OK"));
            }
            ClientSub::Info => {
                let text = self.client.info();
                self.local(|o| protocol::write_verbatim(o, proto, text.as_bytes()));
            }
            ClientSub::List => {
                let text = self.shared.clients.list();
                self.local(|o| protocol::write_verbatim(o, proto, text.as_bytes()));
            }
        }
    }

    /// `COMMAND ...`: seqd's command table ([`spec`]).
    fn command(&mut self, sub: CommandSub<'_>) {
        let proto = self.proto;
        let named = |names: &Words<'_>| -> Vec<Option<&'static spec::Spec>> {
            if names.is_empty() {
                spec::COMMANDS.iter().map(Some).collect()
            } else {
                names.iter().map(|n| spec::find(n)).collect()
            }
        };
        match sub {
            CommandSub::All => self.local(|o| {
                protocol::write_array_len(o, spec::COMMANDS.len());
                for s in spec::COMMANDS {
                    spec::write_info(o, proto, s);
                }
            }),
            CommandSub::Count => {
                let n = i64::try_from(spec::COMMANDS.len()).unwrap_or(i64::MAX);
                self.local(|o| protocol::write_int(o, n));
            }
            CommandSub::List => self.local(|o| {
                protocol::write_array_len(o, spec::COMMANDS.len());
                for s in spec::COMMANDS {
                    protocol::write_bulk(o, s.name.as_bytes());
                }
            }),
            CommandSub::Info(names) => {
                let found = named(&names);
                self.local(|o| {
                    protocol::write_array_len(o, found.len());
                    for s in found {
                        match s {
                            Some(s) => spec::write_info(o, proto, s),
                            None => protocol::write_null(o, proto),
                        }
                    }
                });
            }
            CommandSub::Docs(names) => {
                let found: Vec<&spec::Spec> = named(&names).into_iter().flatten().collect();
                self.local(|o| {
                    protocol::write_map_len(o, proto, found.len());
                    for s in found {
                        protocol::write_bulk(o, s.name.as_bytes());
                        spec::write_docs(o, proto, s);
                    }
                });
            }
            CommandSub::GetKeys(argv) => match spec::get_keys(&argv) {
                Ok(keys) => self.local(|o| {
                    protocol::write_array_len(o, keys.len());
                    for k in keys {
                        protocol::write_bulk(o, k);
                    }
                }),
                Err(e) => self.local_error(&e.0),
            },
        }
    }

    /// `CONFIG GET pattern...`: the few parameters clients and tools ask for, answered
    /// truthfully for seqd (glob patterns, as Redis matches them).
    fn config_get(&mut self, patterns: &[&[u8]]) {
        let config = &self.shared.config;
        let appendfsync = match config.durability {
            DurabilityMode::Sync => "always",
            DurabilityMode::Lease => "lease",
        };
        let known = [
            ("save", String::new()),
            ("appendonly", "yes".to_owned()),
            ("appendfsync", appendfsync.to_owned()),
            ("databases", "1".to_owned()),
            ("maxclients", self.shared.max_connections.to_string()),
            ("port", self.shared.port.to_string()),
            ("bind", config.host.clone()),
            ("timeout", "0".to_owned()),
            (
                "cluster-enabled",
                if self.shared.cluster.is_some() {
                    "yes"
                } else {
                    "no"
                }
                .to_owned(),
            ),
        ];
        let matched: Vec<&(&str, String)> = known
            .iter()
            .filter(|(k, _)| patterns.iter().any(|p| glob(p, k.as_bytes())))
            .collect();
        let proto = self.proto;
        self.local(|o| {
            protocol::write_map_len(o, proto, matched.len());
            for (k, v) in matched {
                protocol::write_bulk(o, k.as_bytes());
                protocol::write_bulk(o, v.as_bytes());
            }
        });
    }
}

/// Redis's glob match for `CONFIG GET`: `*`, `?`, and case-insensitive literals (`[...]`
/// classes are matched literally: no configuration name needs them). Linear backtracking to
/// the last `*`, so no pattern costs more than pattern × name steps.
fn glob(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while let Some(&c) = name.get(n) {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&q) if q == b'?' || q.eq_ignore_ascii_case(&c) => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    p = sp + 1;
                    n = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    pattern
        .get(p..)
        .unwrap_or_default()
        .iter()
        .all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn glob_matches_as_redis() {
        assert!(glob(b"*", b"appendfsync"));
        assert!(glob(b"append*", b"appendfsync"));
        assert!(glob(b"APPENDONLY", b"appendonly"));
        assert!(glob(b"*fsync", b"appendfsync"));
        assert!(glob(b"s?ve", b"save"));
        assert!(glob(b"**", b""));
        assert!(!glob(b"save?", b"save"));
        assert!(!glob(b"max*", b"databases"));
        assert!(!glob(b"", b"save"));
        assert!(glob(b"*a*v*", b"save"));
        // Many stars cost pattern x name steps, not an exponential search.
        let stars = [b'*'; 60_000];
        assert!(!glob(&[&stars[..], b"x"].concat(), b"appendfsync"));
    }
}
