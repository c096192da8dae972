//! Client connections: read requests, answer them in order, write replies in one go.
//!
//! Each read is parsed into as many requests as it holds (up to [`MAX_PIPELINE`], and until
//! the replies encoded in place pass `MAX_LOCAL`; the rest waits for the next round). Commands
//! the connection can answer itself (PING, AUTH, HELLO, CLIENT, ...: [`local`]) are answered
//! in place; numbers are asked of the partitions, one batch per partition per read, all
//! partitions at once; `INFO` and `DBSIZE`, which need the partitions or storage, are answered
//! after them without blocking the thread. Replies go out in request order in one write. A
//! connection has at most one read's worth of requests in flight, so a client that stops
//! reading its replies stops being read: its memory stays bounded, and after
//! `--write-timeout` it is disconnected. `MULTI`/`EXEC` is in [`txn`].
//!
//! A connection speaks RESP2 until `HELLO 3`; only the replies whose RESP3 type differs
//! (maps, sets, nulls, verbatim text) look at which, never the number commands'.

mod buffer;
mod cluster;
mod deferred;
mod local;
mod txn;

use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{OwnedSemaphorePermit, watch};

use super::Shared;
use super::clients::Registration;
use super::command::{Command, Sections, parse_command};
use super::io::context::IoContext;
use super::lease::Served;
use super::partition::{Batch, Reply, Req};
use super::protocol::{self, Args, Proto, parse_request};
use super::versions::{VersionReply, VersionReq, write_reply as write_version};
use crate::types::{SeqId, WsId};
use crate::util::lock;
use buffer::{hold, recycle};
use txn::Txn;

/// Most requests taken from one read before their replies are written.
pub const MAX_PIPELINE: usize = 1024;
/// Most bytes of replies the connection encodes itself (`CLIENT LIST`, `COMMAND`, ...) for one
/// read before they are written: the rest of the read waits for the next round.
const MAX_LOCAL: usize = 1 << 20;
/// Most bytes buffered for one incomplete request.
pub(crate) const MAX_REQUEST: usize = 1 << 20;
/// A read buffer's usual size; a larger one (after a large request) is shrunk back when empty.
const BUFFER: usize = 16 * 1024;

/// Where the reply to one request comes from.
enum Slot {
    /// Bytes already encoded in `Conn::local`.
    Local(Range<usize>),
    /// Reply `index` of the batch sent to partition `p`.
    Routed { p: usize, index: usize },
    /// Cluster mode: reply `index` of the requests forwarded to partition `p`'s owner.
    Forwarded { p: usize, index: usize },
    /// Answered after the batches: it needs the partitions' statuses or storage.
    Deferred(Deferred),
    /// Reply `index` of this read's `VERSION` requests.
    Version(usize),
}

/// The replies that wait for more than the connection knows.
#[derive(Clone, Copy, Debug)]
enum Deferred {
    /// `INFO`, in the protocol the connection spoke when it asked.
    Info(Sections, Proto),
    /// `DBSIZE`.
    DbSize,
}

struct Conn {
    shared: Arc<Shared>,
    /// This connection thread's context: where commits are marked for writing.
    io: Arc<IoContext>,
    /// Registered in `shared.clients` while the connection lives.
    client: Registration,
    proto: Proto,
    authed: bool,
    close: bool,
    txn: Txn,
    slots: Vec<Slot>,
    /// Whether `slots` holds a [`Slot::Deferred`].
    deferred: bool,
    local: Vec<u8>,
    out: Vec<u8>,
    batches: Vec<Batch>,
    /// Per partition, this thread's relay of its progress signal (`io::relays`).
    progress: Vec<watch::Receiver<u64>>,
    args: Args,
    /// Requests per command kind in this read, added to the shared metrics once per read.
    counts: super::metrics::RequestCounts,
    /// Cluster mode: per partition, this read's requests for a partition served elsewhere,
    /// and their replies.
    forwards: Vec<Vec<Req>>,
    forwarded: Vec<Vec<Reply>>,
    /// Cluster mode, `--routing redirect`: the partitions this read answered `-MOVED` for.
    redirected: Vec<u16>,
    /// This read's `VERSION` requests, answered in order after the batches, and replies.
    versions: Vec<VersionReq>,
    version_replies: Vec<VersionReply>,
    /// Cluster mode: another node forwarding its clients' requests (`CLIENT SETNAME
    /// seqd-peer`): a request for a partition not served here is refused with `-TRYAGAIN`,
    /// never forwarded again.
    pub(super) peer: bool,
    /// Lease mode: a request whose lease lookup waits until the next request is parsed (or
    /// the read ends), so that the lease's cache line, prefetched when it was routed,
    /// arrives meanwhile; answered before any later request takes a slot.
    lease_lookup: Option<(usize, Req)>,
}

/// Serves one client until it quits, breaks the protocol, times out, or the server stops.
pub(crate) async fn serve_connection(
    shared: Arc<Shared>,
    io: Arc<IoContext>,
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
    mut stop: watch::Receiver<bool>,
    progress: Vec<watch::Receiver<u64>>,
) {
    let _ = stream.set_nodelay(true);
    let peer = stream.peer_addr().ok();
    let client = shared.clients.register(peer, stream.local_addr().ok());
    let mut charge = shared.pending.charge();
    let (mut rd, mut wr) = stream.into_split();
    let partitions = shared.partitions.len();
    let mut conn = Conn {
        authed: shared.config.auth_token.is_none(),
        shared,
        io,
        client,
        proto: Proto::Resp2,
        close: false,
        txn: Txn::default(),
        slots: Vec::new(),
        deferred: false,
        local: Vec::new(),
        out: Vec::new(),
        batches: (0..partitions).map(|_| Batch::default()).collect(),
        progress,
        args: Args::new(),
        counts: Default::default(),
        forwards: Vec::new(),
        forwarded: Vec::new(),
        versions: Vec::new(),
        version_replies: Vec::new(),
        redirected: Vec::new(),
        peer: false,
        lease_lookup: None,
    };
    let request_timeout = conn.shared.config.request_timeout();
    let write_timeout = conn.shared.config.write_timeout();
    let mut buf: Vec<u8> = Vec::with_capacity(BUFFER);
    let mut start = 0;
    let mut partial_since: Option<Instant> = None;
    // One wait for the stop signal for the connection's whole life (not one per read: each
    // new wait would register with the signal's shared waiter list).
    let stopping = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    tokio::pin!(stopping);
    let mut stopped = false;
    loop {
        let consumed = conn.process(&buf[start..]).await;
        start += consumed;
        if consumed > 0 {
            partial_since = None;
        }
        if !conn.out.is_empty() && !write_all(&mut wr, &conn.out, write_timeout).await {
            break;
        }
        if conn.close || stopped {
            break;
        }
        if consumed > 0 && start < buf.len() {
            continue; // more complete requests may be buffered
        }
        // Keep only the incomplete tail, then read more.
        buf.drain(..start);
        start = 0;
        if let Some(refusal) = hold(&mut buf, &mut charge, &conn) {
            conn.refuse(refusal, peer);
            let _ = write_all(&mut wr, &conn.out, write_timeout).await;
            break;
        }
        // An idle connection may wait forever; a request must arrive whole within
        // `request_timeout` of its first byte, however slowly its bytes trickle in.
        let read = if buf.is_empty() {
            partial_since = None;
            tokio::select! {
                r = rd.read_buf(&mut buf) => r,
                () = &mut stopping => break,
            }
        } else {
            let since = *partial_since.get_or_insert_with(Instant::now);
            let wait = request_timeout.saturating_sub(since.elapsed());
            tokio::select! {
                r = tokio::time::timeout(wait, rd.read_buf(&mut buf)) => match r {
                    Ok(r) => r,
                    Err(_) => {
                        tracing::debug!(?peer, "closing a connection that left a request unfinished");
                        break;
                    }
                },
                () = &mut stopping => {
                    // Finish what was read, then close.
                    stopped = true;
                    continue;
                }
            }
        };
        match read {
            Ok(0) | Err(_) => break,
            Ok(_) => conn.io.request_read(),
        }
    }
    let _ = wr.shutdown().await;
}

/// Writes `out` whole within `timeout`: at once when the socket has room (the usual case,
/// no timer armed), else waiting for the client to read. False when the client is gone or
/// did not read in time.
async fn write_all(wr: &mut OwnedWriteHalf, out: &[u8], timeout: std::time::Duration) -> bool {
    let mut done = 0;
    while done < out.len() {
        match wr.try_write(&out[done..]) {
            Ok(0) => return false,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(_) => return false,
        }
    }
    if done == out.len() {
        return true;
    }
    matches!(
        tokio::time::timeout(timeout, wr.write_all(&out[done..])).await,
        Ok(Ok(()))
    )
}

impl Conn {
    /// Parses and answers every complete request at the front of `buf` (up to
    /// [`MAX_PIPELINE`]); the encoded replies are left in `self.out`. Returns the bytes used.
    async fn process(&mut self, buf: &[u8]) -> usize {
        self.slots.clear();
        for b in [&mut self.local, &mut self.out] {
            b.clear();
            if b.capacity() > 2 * MAX_LOCAL {
                b.shrink_to(BUFFER); // after a large reply: give the memory back
            }
        }
        for b in &mut self.batches {
            b.clear();
        }
        for f in &mut self.forwards {
            f.clear();
        }
        self.versions.clear();
        self.redirected.clear();
        let mut pos = 0;
        let mut args = std::mem::take(&mut self.args);
        let mut spare: Vec<&[u8]> = Vec::new();
        while self.slots.len() < MAX_PIPELINE
            && self.local.len() < MAX_LOCAL
            && pos < buf.len()
            && !self.close
        {
            let rest = &buf[pos..];
            match parse_request(rest, &mut args) {
                Ok(Some(len)) => {
                    let mut argv = recycle(std::mem::take(&mut spare));
                    argv.extend(args.iter(rest));
                    pos += len;
                    if !argv.is_empty() {
                        self.execute(&argv);
                    }
                    spare = recycle(argv);
                }
                Ok(None) => break,
                Err(e) => {
                    self.local_error(&format!("ERR Protocol error: {e}"));
                    self.close = true;
                    pos = buf.len();
                }
            }
        }
        self.args = args;
        self.settle_lease_lookup();
        if !self.slots.is_empty() {
            self.dispatch().await;
            self.resolve_deferred().await;
            self.render();
            self.shared.metrics.add_requests(&self.counts);
            self.counts = Default::default();
        }
        pos
    }

    /// One request: queued when a transaction is open, else run.
    fn execute(&mut self, argv: &[&[u8]]) {
        let parsed = parse_command(argv);
        if self.txn.is_queueing() && !matches!(&parsed, Ok(c) if txn::runs_in_multi(c)) {
            return self.queue(argv, parsed);
        }
        let cmd = match parsed {
            Ok(c) => c,
            Err(e) => {
                self.counts.errors += 1;
                return self.local_error(&e.0);
            }
        };
        if !self.authed
            && !matches!(
                cmd,
                Command::Auth { .. } | Command::Hello { .. } | Command::Quit
            )
        {
            self.counts.errors += 1;
            return self.local_error("NOAUTH Authentication required.");
        }
        #[cfg(feature = "cluster")]
        if let Some(refusal) = self.cluster_check(&cmd, argv) {
            self.counts.errors += 1;
            return self.local_error(&refusal);
        }
        match cmd {
            // Keyless: a cluster client cannot follow a -MOVED for them, so they are always
            // answered (forwarded when need be).
            Command::GetSeq => self.route(
                Req::Next {
                    ws: 0,
                    seq: 0,
                    count: 1,
                },
                false,
            ),
            Command::Current => self.route(Req::Peek { ws: 0, seq: 0 }, false),
            Command::Next { ws, seq, count } => self.route(Req::Next { ws, seq, count }, true),
            Command::Peek { ws, seq } => self.route(Req::Peek { ws, seq }, true),
            other => {
                self.counts.other += 1;
                self.answer_locally(other);
            }
        }
    }

    /// `redirectable`: the request has a key (`--routing redirect` may answer `-MOVED`).
    fn route(&mut self, req: Req, redirectable: bool) {
        match req {
            Req::Next { .. } => self.counts.next += 1,
            Req::Peek { .. } => self.counts.peek += 1,
        }
        let p = self.shared.partitions.of(req.ws());
        let leases = self.shared.partitions.leases(p);
        let leased = leases.is_some();
        if let (Some(table), Req::Next { ws, seq, .. }) = (leases, req) {
            lock(table).prefetch((WsId(ws), SeqId(seq)));
        }
        self.settle_lease_lookup();
        #[cfg(feature = "cluster")]
        if redirectable && let Some(redirect) = self.redirect(p, req.ws()) {
            return self.local_error(&redirect);
        }
        #[cfg(not(feature = "cluster"))]
        let _ = redirectable;
        if self.shared.cluster.is_some() && self.batches[p].reqs.is_empty() {
            // Cluster mode: a partition served elsewhere. Once one request of this read is
            // forwarded, the partition's later ones follow it (request order).
            let forwarding = self.forwards.get(p).is_some_and(|f| !f.is_empty());
            if forwarding || !self.shared.partitions.serving(p) {
                if self.peer {
                    let id = crate::types::PartitionId(u16::try_from(p).unwrap_or(u16::MAX));
                    return self.local_error(&super::partition::moved(id));
                }
                return self.forward(p, req);
            }
        }
        if leased && self.batches[p].reqs.is_empty() {
            self.lease_lookup = Some((p, req));
            return;
        }
        self.join_batch(p, req);
    }

    /// Answers the request [`Conn::route`] left for its lease lookup, if any: from the lease,
    /// or through the partition's batch. Called before anything else takes a slot.
    fn settle_lease_lookup(&mut self) {
        let Some((p, req)) = self.lease_lookup.take() else {
            return;
        };
        // Once a request of this read joined the partition's batch, its later ones follow
        // it there, so a connection sees a sequence's numbers in request order.
        if self.batches[p].reqs.is_empty()
            && let Some(n) = self.answer_from_lease(p, req)
        {
            return self.local(|o| protocol::write_uint(o, n));
        }
        self.join_batch(p, req);
    }

    /// Queues `req` in partition `p`'s batch of this read.
    fn join_batch(&mut self, p: usize, req: Req) {
        self.settle_lease_lookup();
        let index = self.batches[p].reqs.len();
        self.batches[p].reqs.push(req);
        self.slots.push(Slot::Routed { p, index });
    }

    /// Every reply's place in order: a request waiting for its lease lookup goes first.
    fn push_slot(&mut self, slot: Slot) {
        self.settle_lease_lookup();
        self.slots.push(slot);
    }

    /// `VERSION ...`: answered with this read's other version requests, in order.
    fn version(&mut self, req: VersionReq) {
        self.counts.other += 1;
        self.push_slot(Slot::Version(self.versions.len()));
        self.versions.push(req);
    }

    /// Cluster mode: queues `req` for partition `p`'s owner.
    fn forward(&mut self, p: usize, req: Req) {
        let n = self.shared.partitions.len();
        if self.forwards.len() < n {
            self.forwards.resize_with(n, Vec::new);
            self.forwarded.resize_with(n, Vec::new);
        }
        let index = self.forwards[p].len();
        self.forwards[p].push(req);
        self.push_slot(Slot::Forwarded { p, index });
    }

    /// Lease mode: answers from the partition's durable leases, without the worker.
    fn answer_from_lease(&self, p: usize, req: Req) -> Option<u64> {
        let table = self.shared.partitions.leases(p)?;
        match req {
            Req::Next { ws, seq, count } => {
                let key = (WsId(ws), SeqId(seq));
                let durability = || self.shared.partitions.durability(p);
                let served = lock(table).serve_next(key, count, durability);
                match served {
                    Served::Number { first, prefetch } => {
                        if prefetch {
                            self.shared.partitions.prefetch(p, key);
                        }
                        Some(first)
                    }
                    Served::Route => None,
                }
            }
            Req::Peek { ws, seq } => lock(table).serve_peek((WsId(ws), SeqId(seq))),
        }
    }

    /// A reply encoded now, into `self.local`.
    fn local(&mut self, encode: impl FnOnce(&mut Vec<u8>)) {
        self.settle_lease_lookup();
        let start = self.local.len();
        encode(&mut self.local);
        self.slots.push(Slot::Local(start..self.local.len()));
    }

    fn local_error(&mut self, msg: &str) {
        self.local(|o| protocol::write_error(o, msg));
    }

    /// Answers every non-empty batch on its partition, then waits until all of them may be
    /// acknowledged.
    async fn dispatch(&mut self) {
        for (p, batch) in self.batches.iter_mut().enumerate() {
            if !batch.reqs.is_empty() {
                self.shared.partitions.answer_async(p, batch).await;
                // Whatever it committed, a reply waits for it or not (a lease top-up made
                // while answering): this thread writes it before it sleeps.
                self.io.committed(p);
            }
        }
        for ((p, batch), durable) in self.batches.iter_mut().enumerate().zip(&mut self.progress) {
            if !batch.reqs.is_empty() {
                self.shared.partitions.settle(p, batch, durable).await;
            }
        }
        if !self.versions.is_empty() {
            super::versions::answer_anywhere(
                &self.shared,
                &self.versions,
                &mut self.version_replies,
                self.peer,
            )
            .await;
        }
        #[cfg(feature = "cluster")]
        if let Some(node) = &self.shared.cluster
            && self.forwards.iter().any(|f| !f.is_empty())
        {
            node.forward_all(&self.shared, &self.forwards, &mut self.forwarded)
                .await;
        }
    }

    /// Encodes every reply, in request order, into `out`.
    fn render(&mut self) {
        for slot in &self.slots {
            match slot {
                Slot::Local(r) => self.out.extend_from_slice(&self.local[r.clone()]),
                Slot::Routed { p, index } => {
                    let reply = self.batches[*p].replies.get(*index);
                    write_reply(&mut self.out, &mut self.counts, reply);
                }
                Slot::Forwarded { p, index } => {
                    let reply = self.forwarded.get(*p).and_then(|r| r.get(*index));
                    write_reply(&mut self.out, &mut self.counts, reply);
                }
                Slot::Deferred(_) => {
                    protocol::write_error(&mut self.out, "ERR internal: reply not resolved")
                }
                Slot::Version(index) => match self.version_replies.get(*index) {
                    Some(reply) => {
                        if matches!(reply, VersionReply::Error(m) if m.starts_with("BUSY")) {
                            self.counts.busy += 1;
                        }
                        write_version(&mut self.out, self.proto, reply);
                    }
                    None => protocol::write_error(&mut self.out, "ERR internal: reply missing"),
                },
            }
        }
    }
}

/// Encodes a partition's reply (`None`: it is missing, an internal error).
fn write_reply(
    out: &mut Vec<u8>,
    counts: &mut super::metrics::RequestCounts,
    reply: Option<&Reply>,
) {
    match reply {
        Some(Reply::Number(n)) => protocol::write_uint(out, *n),
        Some(Reply::Busy(msg)) => {
            counts.busy += 1;
            protocol::write_error(out, msg)
        }
        Some(Reply::Error(msg)) => protocol::write_error(out, msg),
        None => protocol::write_error(out, "ERR internal: reply missing"),
    }
}
