//! The open connections, as `CLIENT LIST`, `CLIENT INFO` and `INFO clients` report them.
//!
//! Each connection registers when it starts and is removed when its [`Registration`] drops,
//! however the connection ends. The registry is touched only on connect, disconnect and the
//! rare commands that change what it shows (`CLIENT SETNAME`, `CLIENT SETINFO`, `HELLO`), never
//! on the number commands.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::util::lock;

/// What `CLIENT LIST` shows of one connection.
#[derive(Clone, Debug)]
pub(crate) struct ClientView {
    addr: Option<SocketAddr>,
    laddr: Option<SocketAddr>,
    since: Instant,
    /// `CLIENT SETNAME` / `HELLO ... SETNAME`.
    pub(crate) name: String,
    /// `CLIENT SETINFO LIB-NAME`.
    pub(crate) lib_name: String,
    /// `CLIENT SETINFO LIB-VER`.
    pub(crate) lib_ver: String,
    /// 2 or 3.
    pub(crate) resp: i64,
}

/// Every open connection, by id.
#[derive(Debug, Default)]
pub(crate) struct Clients {
    next_id: AtomicU64,
    open: Mutex<BTreeMap<u64, ClientView>>,
}

/// A connection's place in [`Clients`]; removes it when dropped.
#[derive(Debug)]
pub(crate) struct Registration {
    clients: Arc<Clients>,
    /// The connection's id (`CLIENT ID`, `HELLO`'s `id`): unique for the server's life.
    pub(crate) id: u64,
}

impl Clients {
    /// Registers a new connection.
    pub(crate) fn register(
        self: &Arc<Self>,
        addr: Option<SocketAddr>,
        laddr: Option<SocketAddr>,
    ) -> Registration {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let view = ClientView {
            addr,
            laddr,
            since: Instant::now(),
            name: String::new(),
            lib_name: String::new(),
            lib_ver: String::new(),
            resp: 2,
        };
        lock(&self.open).insert(id, view);
        Registration {
            clients: Arc::clone(self),
            id,
        }
    }

    /// Open connections.
    pub(crate) fn len(&self) -> usize {
        lock(&self.open).len()
    }

    /// `CLIENT LIST`: one line per connection, oldest first.
    pub(crate) fn list(&self) -> String {
        let open = lock(&self.open).clone();
        let mut out = String::new();
        for (id, view) in &open {
            line(&mut out, *id, view);
        }
        out
    }
}

impl Registration {
    /// Changes what `CLIENT LIST` shows of this connection.
    pub(crate) fn update(&self, f: impl FnOnce(&mut ClientView)) {
        if let Some(view) = lock(&self.clients.open).get_mut(&self.id) {
            f(view);
        }
    }

    /// This connection's name (`CLIENT GETNAME`).
    pub(crate) fn name(&self) -> String {
        lock(&self.clients.open)
            .get(&self.id)
            .map(|v| v.name.clone())
            .unwrap_or_default()
    }

    /// `CLIENT INFO`: this connection's line of `CLIENT LIST`.
    pub(crate) fn info(&self) -> String {
        let view = lock(&self.clients.open).get(&self.id).cloned();
        let mut out = String::new();
        if let Some(view) = view {
            line(&mut out, self.id, &view);
        }
        out
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        lock(&self.clients.open).remove(&self.id);
    }
}

/// One line of `CLIENT LIST`, in Redis's `key=value` format (the fields seqd knows).
fn line(out: &mut String, id: u64, v: &ClientView) {
    let addr = |a: Option<SocketAddr>| a.map(|a| a.to_string()).unwrap_or_default();
    let _ = writeln!(
        out,
        "id={id} addr={} laddr={} name={} age={} flags=N db=0 user=default resp={} \
         lib-name={} lib-ver={}",
        addr(v.addr),
        addr(v.laddr),
        v.name,
        v.since.elapsed().as_secs(),
        v.resp,
        v.lib_name,
        v.lib_ver,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registrations_come_and_go() {
        let clients = Arc::new(Clients::default());
        let addr: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let a = clients.register(Some(addr), None);
        let b = clients.register(None, None);
        assert!(b.id > a.id);
        assert_eq!(clients.len(), 2);
        a.update(|v| {
            v.name = "me".into();
            v.lib_name = "redis-py".into();
            v.resp = 3;
        });
        assert_eq!(a.name(), "me");
        let info = a.info();
        assert!(
            info.starts_with(&format!(
                "id={} addr=127.0.0.1:5000 laddr= name=me age=",
                a.id
            )),
            "{info}"
        );
        assert!(
            info.ends_with("resp=3 lib-name=redis-py lib-ver=\n"),
            "{info}"
        );
        assert_eq!(clients.list().lines().count(), 2);
        drop(a);
        assert_eq!(clients.len(), 1);
        assert!(clients.list().starts_with(&format!("id={} ", b.id)));
    }
}
