//! What each command is, as `COMMAND`, `COMMAND INFO`, `COMMAND DOCS` and `COMMAND GETKEYS`
//! report it, in Redis 7's formats: arity, flags, key positions, ACL categories, key specs,
//! docs and arguments. Clients route and validate by these (cluster clients find a request's key
//! with them; `redis-cli` builds its help and hints from the docs), so they describe seqd's own
//! commands truthfully: `NEXT` and `PEEK` have one key, the workspace, at position 1.

use super::CommandError;
use crate::daemon::protocol::{
    Proto, write_array_len, write_bulk, write_int, write_map_len, write_set_len, write_simple,
};

/// One command (or subcommand, named `parent|sub`).
#[derive(Debug)]
pub struct Spec {
    /// Lowercase name.
    pub name: &'static str,
    /// Redis's arity: `n` exactly `n` arguments with the name, `-n` at least `n`.
    pub arity: i64,
    /// Redis's command flags (`write`, `readonly`, `fast`, ...).
    pub flags: &'static [&'static str],
    /// The key's position (first = last, step 1), when the command has one.
    pub key: Option<Key>,
    /// ACL categories, with their `@`.
    pub acl: &'static [&'static str],
    /// One line on what it does.
    pub summary: &'static str,
    /// The seqd version that added it.
    pub since: &'static str,
    /// Its group in `redis-cli`'s help.
    pub group: &'static str,
    /// Time complexity.
    pub complexity: &'static str,
    /// Its arguments, in order.
    pub args: &'static [Arg],
    /// Its subcommands.
    pub subcommands: &'static [Spec],
}

/// A command's one key.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    /// Its position (the command name is 0).
    pub position: i64,
    /// Key spec flags, as Redis spells them: `RW`/`update` for a write, `RO`/`access` for a
    /// read.
    pub flags: &'static [&'static str],
}

/// One argument in `COMMAND DOCS`.
#[derive(Debug)]
pub struct Arg {
    /// Its name.
    pub name: &'static str,
    /// `key`, `integer`, `string`, or `block` (a token followed by its own arguments).
    pub kind: &'static str,
    /// The literal word it starts with (`AUTH`, `SETNAME`), if any.
    pub token: Option<&'static str>,
    /// May be left out.
    pub optional: bool,
    /// May be repeated.
    pub multiple: bool,
    /// A block's arguments.
    pub args: &'static [Arg],
}

mod table;

pub use table::COMMANDS;

/// The top-level command named `name` (case-insensitive), or the subcommand `parent|sub`.
pub fn find(name: &[u8]) -> Option<&'static Spec> {
    let (parent, sub) = match name.iter().position(|&b| b == b'|') {
        Some(bar) => (name.get(..bar)?, name.get(bar + 1..)),
        None => (name, None),
    };
    let spec = COMMANDS
        .iter()
        .find(|s| s.name.as_bytes().eq_ignore_ascii_case(parent))?;
    match sub {
        None => Some(spec),
        Some(sub) => spec.subcommands.iter().find(|s| {
            s.name
                .rsplit('|')
                .next()
                .is_some_and(|n| n.as_bytes().eq_ignore_ascii_case(sub))
        }),
    }
}

/// The names of the commands, upper case, for "Unknown command" errors.
pub fn supported() -> String {
    let names: Vec<String> = COMMANDS.iter().map(|s| s.name.to_uppercase()).collect();
    names.join(", ")
}

/// `COMMAND GETKEYS command arg...`: the keys of that request, as Redis reports them.
pub fn get_keys<'a>(argv: &[&'a [u8]]) -> Result<Vec<&'a [u8]>, CommandError> {
    let err = |m: &str| Err(CommandError(format!("ERR {m}")));
    let Some((&name, _)) = argv.split_first() else {
        return err("Invalid command specified");
    };
    let Some(spec) = find(name).filter(|_| !name.contains(&b'|')) else {
        return err("Invalid command specified");
    };
    let n = argv.len() as i64;
    if (spec.arity > 0 && n != spec.arity) || n < spec.arity.abs() {
        return err("Invalid number of arguments specified for command");
    }
    let Some(key) = spec.key else {
        return err("The command has no key arguments");
    };
    let at = usize::try_from(key.position).ok();
    Ok(at.and_then(|i| argv.get(i)).copied().into_iter().collect())
}

/// `COMMAND INFO`'s entry for `spec`: the ten fields of Redis 7.
pub fn write_info(out: &mut Vec<u8>, proto: Proto, spec: &Spec) {
    write_array_len(out, 10);
    write_bulk(out, spec.name.as_bytes());
    write_int(out, spec.arity);
    write_statuses(out, proto, spec.flags);
    let position = spec.key.map_or(0, |k| k.position);
    for n in [position, position, i64::from(spec.key.is_some())] {
        write_int(out, n);
    }
    write_statuses(out, proto, spec.acl);
    write_set_len(out, proto, 0); // tips
    match spec.key {
        None => write_array_len(out, 0),
        Some(key) => {
            write_array_len(out, 1);
            write_key_spec(out, proto, key);
        }
    }
    // Redis sends "no subcommands" as an empty set, a list of them as an array.
    if spec.subcommands.is_empty() {
        write_set_len(out, proto, 0);
    } else {
        write_array_len(out, spec.subcommands.len());
        for sub in spec.subcommands {
            write_info(out, proto, sub);
        }
    }
}

fn write_statuses(out: &mut Vec<u8>, proto: Proto, items: &[&str]) {
    write_set_len(out, proto, items.len());
    for item in items {
        write_simple(out, item);
    }
}

/// A Redis 7 key spec: the key at a fixed index, one key.
fn write_key_spec(out: &mut Vec<u8>, proto: Proto, key: Key) {
    write_map_len(out, proto, 3);
    write_bulk(out, b"flags");
    write_statuses(out, proto, key.flags);
    write_bulk(out, b"begin_search");
    write_map_len(out, proto, 2);
    write_bulk(out, b"type");
    write_bulk(out, b"index");
    write_bulk(out, b"spec");
    write_map_len(out, proto, 1);
    write_bulk(out, b"index");
    write_int(out, key.position);
    write_bulk(out, b"find_keys");
    write_map_len(out, proto, 2);
    write_bulk(out, b"type");
    write_bulk(out, b"range");
    write_bulk(out, b"spec");
    write_map_len(out, proto, 3);
    for (name, value) in [("lastkey", 0), ("keystep", 1), ("limit", 0)] {
        write_bulk(out, name.as_bytes());
        write_int(out, value);
    }
}

/// `COMMAND DOCS`'s value for `spec`: summary, since, group, complexity, arguments and
/// subcommands (a map in RESP3, a flat array of pairs in RESP2).
pub fn write_docs(out: &mut Vec<u8>, proto: Proto, spec: &Spec) {
    let fields = 4 + usize::from(!spec.args.is_empty()) + usize::from(!spec.subcommands.is_empty());
    write_map_len(out, proto, fields);
    for (k, v) in [
        ("summary", spec.summary),
        ("since", spec.since),
        ("group", spec.group),
        ("complexity", spec.complexity),
    ] {
        write_bulk(out, k.as_bytes());
        write_bulk(out, v.as_bytes());
    }
    if !spec.args.is_empty() {
        write_bulk(out, b"arguments");
        write_args(out, proto, spec.args);
    }
    if !spec.subcommands.is_empty() {
        write_bulk(out, b"subcommands");
        write_map_len(out, proto, spec.subcommands.len());
        for sub in spec.subcommands {
            write_bulk(out, sub.name.as_bytes());
            write_docs(out, proto, sub);
        }
    }
}

fn write_args(out: &mut Vec<u8>, proto: Proto, args: &[Arg]) {
    write_array_len(out, args.len());
    for arg in args {
        let flags: Vec<&str> = [(arg.optional, "optional"), (arg.multiple, "multiple")]
            .into_iter()
            .filter_map(|(on, name)| on.then_some(name))
            .collect();
        let block = !arg.args.is_empty();
        let key = arg.kind == "key";
        let fields = 3
            + usize::from(key)
            + usize::from(arg.token.is_some())
            + usize::from(!flags.is_empty())
            + usize::from(block);
        write_map_len(out, proto, fields);
        for (k, v) in [
            ("name", arg.name),
            ("type", arg.kind),
            ("display_text", arg.name),
        ] {
            write_bulk(out, k.as_bytes());
            write_bulk(out, v.as_bytes());
        }
        if key {
            write_bulk(out, b"key_spec_index");
            write_int(out, 0);
        }
        if let Some(token) = arg.token {
            write_bulk(out, b"token");
            write_bulk(out, token.as_bytes());
        }
        if !flags.is_empty() {
            write_bulk(out, b"flags");
            write_statuses(out, proto, &flags);
        }
        if block {
            write_bulk(out, b"arguments");
            write_args(out, proto, arg.args);
        }
    }
}

#[cfg(test)]
mod tests;
