//! Forwarding to other nodes: [`Peers`] keeps a small pool of pipelined connections per peer
//! address ([`PeerOptions::pool`]) and sends each batch of commands over one of them, in
//! turn; a batch's replies come back in order. (A client has one read's batch in flight at a
//! time, so its batches stay in order whichever connection carries them.)
//!
//! A connection is a task that owns its socket. Batches queue on a bounded channel; the task
//! writes every batch it has at once (one `write` for many requests, as a pipelining client
//! does) and completes them in order as their replies arrive. When the connection breaks, the
//! batches already written fail with [`ForwardError::Lost`] — the peer may have served them,
//! so they are never retried (a `NEXT` sent twice would skip numbers) — and the ones not yet
//! written with [`ForwardError::Unreachable`]; the next batch opens a new connection.

mod resp;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

pub use resp::{Malformed, PeerReply, encode, parse};

use crate::util::lock;

/// Batches queued per peer connection before senders wait.
const QUEUE: usize = 1024;
/// Commands written and not yet answered per connection; beyond it the task stops taking
/// batches until replies come.
const MAX_IN_FLIGHT: usize = 16 * 1024;

/// Why a forwarded batch got no replies.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ForwardError {
    /// Not sent: the peer could not be reached (or the queue was closed). Safe to retry.
    Unreachable(String),
    /// Sent, and the connection broke before the replies came: the peer may have served it.
    Lost(String),
}

impl std::fmt::Display for ForwardError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ForwardError::Unreachable(why) => write!(f, "peer unreachable: {why}"),
            ForwardError::Lost(why) => write!(f, "connection to the peer lost: {why}"),
        }
    }
}

/// How [`Peers`] connects.
#[derive(Clone, Debug)]
pub struct PeerOptions {
    /// `AUTH` token sent first on every connection (`--auth-token`; the cluster's nodes share it).
    pub auth_token: Option<String>,
    /// Longest wait for a connection, and for the next reply while some are due.
    pub timeout: Duration,
    /// `CLIENT SETNAME` sent on every connection: a seqd node names its forwarding
    /// connections [`PEER_NAME`] so that the receiving node never forwards their requests
    /// again.
    pub name: Option<String>,
    /// Connections per peer, used in turn. Default 2; at least 1.
    pub pool: usize,
}

/// The client name of a forwarding connection between nodes.
pub const PEER_NAME: &str = "seqd-peer";

impl Default for PeerOptions {
    fn default() -> Self {
        PeerOptions {
            auth_token: None,
            timeout: Duration::from_secs(5),
            name: None,
            pool: 2,
        }
    }
}

/// A batch on its way.
struct Job {
    bytes: Vec<u8>,
    count: usize,
    reply: oneshot::Sender<Result<Vec<PeerReply>, ForwardError>>,
}

/// One connection per peer address.
pub struct Peers {
    runtime: tokio::runtime::Handle,
    options: PeerOptions,
    /// Per address, its pool's connections (fewer while they are being opened).
    conns: Mutex<HashMap<String, Vec<mpsc::Sender<Job>>>>,
    /// Picks the next connection of a pool.
    turn: std::sync::atomic::AtomicUsize,
}

impl Peers {
    /// Peers whose connection tasks run on `runtime`.
    pub fn new(runtime: tokio::runtime::Handle, options: PeerOptions) -> Arc<Peers> {
        Arc::new(Peers {
            runtime,
            options,
            conns: Mutex::new(HashMap::new()),
            turn: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// Sends `commands` to the node at `addr` (`host:port`) and returns their replies, in
    /// order. An error reply of the peer is a [`PeerReply::Error`], not an `Err`.
    pub async fn send(
        &self,
        addr: &str,
        commands: &[Vec<&[u8]>],
    ) -> Result<Vec<PeerReply>, ForwardError> {
        if commands.is_empty() {
            return Ok(Vec::new());
        }
        let mut bytes = Vec::new();
        for c in commands {
            encode(&mut bytes, c);
        }
        let (reply, rx) = oneshot::channel();
        let job = Job {
            bytes,
            count: commands.len(),
            reply,
        };
        let tx = self.connection(addr);
        if let Err(mpsc::error::SendError(job)) = tx.send(job).await {
            // The connection ended between lookup and send: one new connection, once.
            self.forget(addr, &tx);
            let tx = self.connection(addr);
            if tx.send(job).await.is_err() {
                return Err(ForwardError::Unreachable(format!(
                    "{addr}: connection closed"
                )));
            }
        }
        rx.await
            .unwrap_or_else(|_| Err(ForwardError::Lost(format!("{addr}: connection task ended"))))
    }

    fn connection(&self, addr: &str) -> mpsc::Sender<Job> {
        let pool = self.options.pool.max(1);
        let turn = self.turn.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut conns = lock(&self.conns);
        let senders = conns.entry(addr.to_owned()).or_default();
        senders.retain(|tx| !tx.is_closed());
        if senders.len() >= pool
            && let Some(tx) = senders.get(turn % senders.len())
        {
            return tx.clone();
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        self.runtime
            .spawn(connection(addr.to_owned(), self.options.clone(), rx));
        senders.push(tx.clone());
        tx
    }

    fn forget(&self, addr: &str, dead: &mpsc::Sender<Job>) {
        let mut conns = lock(&self.conns);
        if let Some(senders) = conns.get_mut(addr) {
            senders.retain(|tx| !tx.same_channel(dead));
        }
    }
}

/// Runs one connection until its queue closes or it breaks.
async fn connection(addr: String, options: PeerOptions, mut jobs: mpsc::Receiver<Job>) {
    let mut stream = match open(&addr, &options).await {
        Ok(s) => s,
        Err(why) => {
            jobs.close();
            while let Some(job) = jobs.recv().await {
                let _ = job
                    .reply
                    .send(Err(ForwardError::Unreachable(format!("{addr}: {why}"))));
            }
            return;
        }
    };
    let mut waiting: VecDeque<(usize, Vec<PeerReply>, oneshot::Sender<_>)> = VecDeque::new();
    let mut in_flight = 0usize;
    // When the oldest reply still owed must have come by: reset by every reply, so a peer
    // that answers nothing for `timeout` fails the connection however busy it is.
    let mut due = tokio::time::Instant::now() + options.timeout;
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut out: Vec<u8> = Vec::with_capacity(16 * 1024);
    let why = loop {
        let room = in_flight < MAX_IN_FLIGHT;
        tokio::select! {
            job = jobs.recv(), if room => {
                let Some(job) = job else { break None };
                if waiting.is_empty() {
                    due = tokio::time::Instant::now() + options.timeout;
                }
                out.clear();
                let mut next = Some(job);
                while let Some(job) = next.take() {
                    out.extend_from_slice(&job.bytes);
                    in_flight += job.count;
                    waiting.push_back((job.count, Vec::with_capacity(job.count), job.reply));
                    if in_flight < MAX_IN_FLIGHT {
                        next = jobs.try_recv().ok();
                    }
                }
                match tokio::time::timeout(options.timeout, stream.write_all(&out)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => break Some(format!("write: {e}")),
                    Err(_) => break Some(format!("the peer read nothing for {:?}", options.timeout)),
                }
            }
            () = tokio::time::sleep_until(due), if !waiting.is_empty() => {
                break Some(format!("no reply within {:?}", options.timeout));
            }
            read = stream.read_buf(&mut buf), if !waiting.is_empty() => {
                match read {
                    Err(e) => break Some(format!("read: {e}")),
                    Ok(0) => break Some("closed by the peer".into()),
                    Ok(_) => {}
                }
                let mut at = 0;
                loop {
                    match parse(&buf[at..]) {
                        Ok(Some((reply, used))) => {
                            at += used;
                            in_flight = in_flight.saturating_sub(1);
                            due = tokio::time::Instant::now() + options.timeout;
                            let done = match waiting.front_mut() {
                                Some((count, replies, _)) => {
                                    replies.push(reply);
                                    replies.len() == *count
                                }
                                None => false,
                            };
                            if done && let Some((_, replies, tx)) = waiting.pop_front() {
                                let _ = tx.send(Ok(replies));
                            }
                        }
                        Ok(None) => break,
                        Err(Malformed(why)) => {
                            at = buf.len();
                            waiting.drain(..).for_each(|(_, _, tx)| {
                                let _ = tx.send(Err(ForwardError::Lost(format!("{addr}: malformed reply: {why}"))));
                            });
                            break;
                        }
                    }
                }
                buf.drain(..at);
                if waiting.is_empty() && in_flight > 0 {
                    break Some("the peer answered out of step".into());
                }
            }
        }
    };
    jobs.close();
    let why = why.unwrap_or_else(|| "stopped".into());
    for (_, _, tx) in waiting {
        let _ = tx.send(Err(ForwardError::Lost(format!("{addr}: {why}"))));
    }
    while let Ok(job) = jobs.try_recv() {
        let _ = job
            .reply
            .send(Err(ForwardError::Unreachable(format!("{addr}: {why}"))));
    }
}

/// Connects and authenticates.
async fn open(addr: &str, options: &PeerOptions) -> Result<TcpStream, String> {
    let mut stream = tokio::time::timeout(options.timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| format!("no connection within {:?}", options.timeout))?
        .map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    if let Some(token) = &options.auth_token {
        handshake(
            &mut stream,
            &[b"AUTH", token.as_bytes()],
            "AUTH",
            options.timeout,
        )
        .await?;
    }
    if let Some(name) = &options.name {
        let args: [&[u8]; 3] = [b"CLIENT", b"SETNAME", name.as_bytes()];
        handshake(&mut stream, &args, "CLIENT SETNAME", options.timeout).await?;
    }
    Ok(stream)
}

/// Sends one command and reads its reply; an error reply fails the connection.
async fn handshake(
    stream: &mut TcpStream,
    args: &[&[u8]],
    what: &str,
    timeout: Duration,
) -> Result<(), String> {
    let mut out = Vec::new();
    encode(&mut out, args);
    stream
        .write_all(&out)
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::new();
    let reply = loop {
        let n = tokio::time::timeout(timeout, stream.read_buf(&mut buf))
            .await
            .map_err(|_| format!("no answer to {what}"))?
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err(format!("closed during {what}"));
        }
        if let Some((reply, _)) = parse(&buf).map_err(|m| m.0)? {
            break reply;
        }
    };
    match reply {
        PeerReply::Error(e) => Err(format!("{what} refused: {e}")),
        _ => Ok(()),
    }
}
