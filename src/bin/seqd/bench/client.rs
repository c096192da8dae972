//! One connection's driver: keeps `--pipeline` requests in flight, times each reply, counts
//! errors and records the numbers received for the verifier.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::args::{BenchCommand, Plan, Stop};
use super::keys::{KeyChooser, SplitMix64};
use super::resp::{self, Reply, Requests};
use super::verify::Record;

/// How long a connection waits for a reply (or to connect) before it gives up.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// What all connections share: the request budget, progress, and the latency histograms
/// (one per runtime thread, locked once per read).
pub struct Shared {
    stop: Stop,
    deadline: Instant,
    claimed: AtomicU64,
    /// Replies received so far (for progress).
    pub done: AtomicU64,
    /// Set on Ctrl-C: send nothing more, collect the replies in flight.
    pub interrupted: AtomicBool,
    /// Latency in nanoseconds, from the write of a request to the read of its reply.
    pub latency: Vec<Mutex<Histogram<u64>>>,
}

impl Shared {
    pub fn new(plan: &Plan, start: Instant) -> Result<Shared, String> {
        let deadline = match plan.stop {
            Stop::Duration(d) => start + d,
            Stop::Requests(_) => start,
        };
        let latency = (0..plan.args.threads)
            .map(|_| new_histogram().map(Mutex::new))
            .collect::<Result<_, _>>()?;
        Ok(Shared {
            stop: plan.stop,
            deadline,
            claimed: AtomicU64::new(0),
            done: AtomicU64::new(0),
            interrupted: AtomicBool::new(false),
            latency,
        })
    }

    /// How many of `want` more requests may be sent now.
    fn claim(&self, want: u64) -> u64 {
        if want == 0 || self.interrupted.load(Ordering::Relaxed) {
            return 0;
        }
        match self.stop {
            Stop::Requests(total) => {
                let before = self.claimed.fetch_add(want, Ordering::Relaxed);
                want.min(total.saturating_sub(before))
            }
            Stop::Duration(_) if Instant::now() >= self.deadline => 0,
            Stop::Duration(_) => want,
        }
    }
}

/// A histogram of nanoseconds from 1 ns to 10 minutes, 3 significant digits.
pub fn new_histogram() -> Result<Histogram<u64>, String> {
    Histogram::new_with_bounds(1, 600_000_000_000, 3)
        .map_err(|e| format!("cannot create a latency histogram: {e}"))
}

/// What one connection saw.
#[derive(Debug, Default)]
pub struct ConnResult {
    /// Integer replies.
    pub ok: u64,
    /// Error replies by code word (`BUSY`, `ERR`, ...) and unexpected replies by kind.
    pub errors: Vec<(String, u64)>,
    /// `(key, first number)` of every integer reply, in the order received.
    pub records: Vec<Record>,
    /// Why the connection stopped early, if it did.
    pub failure: Option<String>,
    /// `-MOVED` replies followed (`--cluster`).
    pub redirects: u64,
}

impl ConnResult {
    fn error(&mut self, kind: &[u8]) {
        match self.errors.iter_mut().find(|(k, _)| k.as_bytes() == kind) {
            Some((_, n)) => *n += 1,
            None => self
                .errors
                .push((String::from_utf8_lossy(kind).into_owned(), 1)),
        }
    }
}

/// Opens a connection to `addr` and authenticates it when `--auth` is given.
pub async fn connect_to(plan: &Plan, addr: &str) -> Result<TcpStream, String> {
    let stream = match tokio::time::timeout(REPLY_TIMEOUT, TcpStream::connect(&addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(format!("cannot connect to {addr}: {e}")),
        Err(_) => return Err(format!("cannot connect to {addr}: timed out")),
    };
    stream
        .set_nodelay(true)
        .map_err(|e| format!("cannot set TCP_NODELAY: {e}"))?;
    let mut stream = stream;
    if let Some(token) = &plan.args.auth {
        let request = format!("*2\r\n$4\r\nAUTH\r\n${}\r\n{token}\r\n", token.len());
        let reply = async {
            stream.write_all(request.as_bytes()).await?;
            let mut buf = Vec::with_capacity(256);
            loop {
                if stream.read_buf(&mut buf).await? == 0 {
                    return Ok::<_, std::io::Error>(None);
                }
                if buf.ends_with(b"\r\n") {
                    return Ok(Some(buf));
                }
            }
        };
        match tokio::time::timeout(REPLY_TIMEOUT, reply).await {
            Ok(Ok(Some(line))) if line.starts_with(b"+OK") => {}
            Ok(Ok(Some(line))) => {
                let text = String::from_utf8_lossy(&line);
                return Err(format!("AUTH refused by {addr}: {}", text.trim_end()));
            }
            Ok(Ok(None)) => return Err(format!("{addr} closed the connection after AUTH")),
            Ok(Err(e)) => return Err(format!("AUTH on {addr} failed: {e}")),
            Err(_) => return Err(format!("no reply to AUTH from {addr}")),
        }
    }
    Ok(stream)
}

/// Runs one connection until the budget is spent (or the deadline passed) and every reply
/// it waits for has arrived.
pub async fn drive(
    mut stream: TcpStream,
    index: usize,
    plan: &Plan,
    requests: &Requests,
    shared: &Shared,
    route: Option<Route<'_>>,
) -> ConnResult {
    let mut result = ConnResult::default();
    if !plan.args.no_verify
        && let Stop::Requests(total) = plan.stop
    {
        let share = total / plan.args.connections + 1;
        result.records.reserve(share.min(1 << 20) as usize);
    }
    if let Err(e) = run_loop(
        &mut stream,
        index,
        plan,
        requests,
        shared,
        route,
        &mut result,
    )
    .await
    {
        result.failure = Some(e);
    }
    result
}

/// `--cluster`: which node serves a workspace, and the node this connection talks to.
#[derive(Clone, Copy)]
pub struct Route<'a> {
    pub node_of: &'a (dyn Fn(u64) -> Option<usize> + Sync),
    pub node: usize,
}

/// The `host:port` of a `-MOVED slot host:port` error line.
pub fn moved_to(line: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(line).ok()?;
    let mut words = text.strip_prefix("MOVED ")?.split_whitespace();
    let _slot = words.next()?;
    words.next().map(str::to_owned)
}

/// Draws keys until one whose workspace this connection's node serves (at most 64 draws: a
/// node that serves almost none gets the last one anyway, and `-MOVED` sends it on).
fn choose(chooser: &KeyChooser, rng: &mut SplitMix64, route: Option<Route<'_>>) -> u64 {
    let mut key = chooser.next(rng);
    if let Some(r) = route {
        for _ in 0..64 {
            if (r.node_of)(chooser.split(key).0) == Some(r.node) {
                break;
            }
            key = chooser.next(rng);
        }
    }
    key
}

/// Sends `key`'s request to `addr` (after a `-MOVED`) on a connection kept per address, and
/// waits for its reply; follows further `-MOVED`s and waits out `-TRYAGAIN`s (at most
/// [`FOLLOWS`] hops). A connection that failed is dropped, so a late reply can never be taken
/// for another request's.
async fn follow(
    plan: &Plan,
    requests: &Requests,
    side: &mut std::collections::HashMap<String, TcpStream>,
    mut addr: String,
    key: u64,
) -> Result<i64, String> {
    let mut out = Vec::with_capacity(64);
    requests.encode(key, &mut out);
    for _ in 0..FOLLOWS {
        let reply = ask(plan, side, &addr, &out).await;
        if reply.is_err() {
            side.remove(&addr);
        }
        match reply? {
            Followed::Number(n) => return Ok(n),
            Followed::Moved(to) => addr = to,
            Followed::TryAgain => tokio::time::sleep(Duration::from_millis(20)).await,
            Followed::Error(kind) => return Err(kind),
        }
    }
    Err(format!("still redirected after {FOLLOWS} hops"))
}

/// Most hops [`follow`] takes for one request.
const FOLLOWS: usize = 5;

/// A followed request's reply.
enum Followed {
    Number(i64),
    Moved(String),
    TryAgain,
    Error(String),
}

/// One request on the kept connection to `addr`.
async fn ask(
    plan: &Plan,
    side: &mut std::collections::HashMap<String, TcpStream>,
    addr: &str,
    request: &[u8],
) -> Result<Followed, String> {
    if !side.contains_key(addr) {
        let s = connect_to(plan, addr).await?;
        side.insert(addr.to_owned(), s);
    }
    let Some(stream) = side.get_mut(addr) else {
        return Err(format!("no connection to {addr}"));
    };
    stream
        .write_all(request)
        .await
        .map_err(|e| format!("write to {addr} (after -MOVED) failed: {e}"))?;
    let mut buf = Vec::with_capacity(256);
    loop {
        match tokio::time::timeout(REPLY_TIMEOUT, stream.read_buf(&mut buf)).await {
            Ok(Ok(0)) => return Err(format!("{addr} closed the connection")),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(format!("read from {addr} failed: {e}")),
            Err(_) => return Err(format!("no reply from {addr}")),
        }
        match resp::parse(&buf).map_err(|e| format!("unreadable reply from {addr}: {}", e.0))? {
            Some((Reply::Integer(n), _)) => return Ok(Followed::Number(n)),
            Some((Reply::Error(line), _)) => {
                return Ok(match moved_to(line) {
                    Some(to) => Followed::Moved(to),
                    None if line.starts_with(b"TRYAGAIN") => Followed::TryAgain,
                    None => Followed::Error(
                        String::from_utf8_lossy(resp::error_kind(line)).into_owned(),
                    ),
                });
            }
            Some((Reply::Other(what), _)) => {
                return Ok(Followed::Error(format!("unexpected reply ({what})")));
            }
            None => {}
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_loop(
    stream: &mut TcpStream,
    index: usize,
    plan: &Plan,
    requests: &Requests,
    shared: &Shared,
    route: Option<Route<'_>>,
    result: &mut ConnResult,
) -> Result<(), String> {
    let mut side = std::collections::HashMap::new();
    let pipeline = plan.args.pipeline as usize;
    let chooser: &KeyChooser = requests.chooser();
    let mut rng =
        SplitMix64::new(plan.args.seed ^ (index as u64).wrapping_mul(0xA076_1D64_78BD_642F));
    let histogram = &shared.latency[index % shared.latency.len()];
    let (count, incr) = (plan.args.count, plan.args.command == BenchCommand::Incr);
    let verify = !plan.args.no_verify;

    let mut in_flight: VecDeque<(u64, Instant)> = VecDeque::with_capacity(pipeline);
    let mut out: Vec<u8> = Vec::with_capacity(pipeline * 64);
    let mut latencies: Vec<u64> = Vec::with_capacity(pipeline);
    let mut buf = vec![0u8; 64 * 1024];
    let (mut start, mut end) = (0usize, 0usize);
    loop {
        let more = shared.claim((pipeline - in_flight.len()) as u64);
        if more > 0 {
            let now = Instant::now();
            for _ in 0..more {
                let key = choose(chooser, &mut rng, route);
                requests.encode(key, &mut out);
                in_flight.push_back((key, now));
            }
            stream
                .write_all(&out)
                .await
                .map_err(|e| format!("connection {index}: write failed: {e}"))?;
            out.clear();
        }
        if in_flight.is_empty() {
            return Ok(());
        }

        if start == end {
            (start, end) = (0, 0);
        } else if buf.len() - end < 4096 {
            buf.copy_within(start..end, 0);
            (start, end) = (0, end - start);
            if buf.len() - end < 4096 {
                buf.resize(buf.len() * 2, 0);
            }
        }
        let read = match tokio::time::timeout(REPLY_TIMEOUT, stream.read(&mut buf[end..])).await {
            Ok(Ok(0)) => {
                return Err(format!(
                    "connection {index}: the server closed the connection with {} requests \
                     in flight",
                    in_flight.len()
                ));
            }
            Ok(Ok(n)) => n,
            Ok(Err(e)) => return Err(format!("connection {index}: read failed: {e}")),
            Err(_) => {
                return Err(format!(
                    "connection {index}: no reply for {} s with {} requests in flight",
                    REPLY_TIMEOUT.as_secs(),
                    in_flight.len()
                ));
            }
        };
        end += read;
        let now = Instant::now();
        let mut replies = 0;
        while let Some((reply, used)) = resp::parse(&buf[start..end])
            .map_err(|e| format!("connection {index}: unreadable reply: {}", e.0))?
        {
            start += used;
            let Some((key, sent)) = in_flight.pop_front() else {
                return Err(format!(
                    "connection {index}: a reply arrived for no request (the server sent \
                     more replies than requests)"
                ));
            };
            replies += 1;
            // A `-MOVED` under `--cluster`: the request goes to the node named, and its
            // reply stands for this one (the latency includes both round trips).
            let mut answered = now;
            let reply = match reply {
                Reply::Error(line) if route.is_some() && line.starts_with(b"MOVED ") => {
                    answered = Instant::now();
                    let addr = moved_to(line).unwrap_or_default();
                    result.redirects += 1;
                    let followed = follow(plan, requests, &mut side, addr, key).await;
                    answered = answered.max(Instant::now());
                    match followed {
                        Ok(n) => Reply::Integer(n),
                        Err(kind) => {
                            result.error(kind.as_bytes());
                            continue;
                        }
                    }
                }
                other => other,
            };
            latencies.push(answered.saturating_duration_since(sent).as_nanos() as u64);
            match reply {
                Reply::Integer(n) => {
                    // INCR answers the last number of the range, NEXT the first.
                    let first = if incr { n - (count as i64 - 1) } else { n };
                    if first < 0 {
                        result.error(b"unexpected reply (a negative number)");
                        continue;
                    }
                    result.ok += 1;
                    if verify {
                        result.records.push(Record {
                            key,
                            first: first as u64,
                        });
                    }
                }
                Reply::Error(line) => result.error(resp::error_kind(line)),
                Reply::Other(what) => result.error(format!("unexpected reply ({what})").as_bytes()),
            }
        }
        if replies > 0 {
            if let Ok(mut h) = histogram.lock() {
                for &l in &latencies {
                    h.saturating_record(l.max(1));
                }
            }
            latencies.clear();
            shared.done.fetch_add(replies, Ordering::Relaxed);
        }
    }
}
