//! A real cluster for a test: one etcd ([`EtcdServer`]) and `seqd serve --etcd` processes
//! ([`Daemon`]) on loopback, each stopped when the test ends.

use std::time::{Duration, Instant};

use seqd::WsId;
use seqd::cluster::keys::partition_of;

use super::etcd::EtcdServer;
use super::process::Daemon;

pub struct Cluster {
    pub etcd: EtcdServer,
    pub name: String,
    pub mode: &'static str,
    pub partitions: u16,
    /// By index; `None` once stopped.
    pub nodes: Vec<Option<Daemon>>,
    pub ids: Vec<String>,
}

impl Cluster {
    /// etcd and `n` nodes (`n0`, `n1`, ...) in durability `mode`, lease TTL 1 s; `None` when
    /// etcd is not installed (the test is skipped).
    pub fn start(n: usize, mode: &'static str, partitions: u16) -> Option<Cluster> {
        let etcd = EtcdServer::start()?;
        let mut c = Cluster {
            etcd,
            name: format!("test-{}", std::process::id()),
            mode,
            partitions,
            nodes: Vec::new(),
            ids: Vec::new(),
        };
        for i in 0..n {
            c.add(&format!("n{i}"));
        }
        Some(c)
    }

    /// The flags of node `id`.
    pub fn args(&self, id: &str) -> Vec<String> {
        vec![
            "--etcd".into(),
            self.etcd.url.clone(),
            "--cluster".into(),
            self.name.clone(),
            "--node-id".into(),
            id.into(),
            "--partitions".into(),
            self.partitions.to_string(),
            "--lease-ttl".into(),
            "1".into(),
            "--durability".into(),
            self.mode.into(),
        ]
    }

    /// Starts node `id`; returns its index.
    pub fn add(&mut self, id: &str) -> usize {
        self.add_with(id, &[])
    }

    /// Starts node `id` with `extra` flags (`--roles`, `--routing`, ...); returns its index.
    pub fn add_with(&mut self, id: &str, extra: &[&str]) -> usize {
        let mut args = self.args(id);
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.nodes.push(Some(Daemon::serve(&args)));
        self.ids.push(id.into());
        self.nodes.len() - 1
    }

    pub fn node(&self, i: usize) -> &Daemon {
        self.nodes[i].as_ref().expect("a running node")
    }

    /// The index of node `id` (its latest start: an id may be restarted).
    pub fn index(&self, id: &str) -> usize {
        self.ids
            .iter()
            .rposition(|x| x == id)
            .expect("a known node")
    }

    /// Indexes of the running nodes.
    pub fn running(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|i| self.nodes[*i].is_some())
            .collect()
    }

    /// `GET /v1/cluster` of node `i`.
    pub fn view(&self, i: usize) -> serde_json::Value {
        let url = format!("http://{}/v1/cluster", self.node(i).admin);
        let body = reqwest::blocking::get(&url)
            .and_then(|r| r.text())
            .expect("GET /v1/cluster");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
    }

    /// The owner of partition `p` in node `i`'s view.
    pub fn owner(&self, i: usize, p: u16) -> Option<String> {
        self.view(i)["partitions"][usize::from(p)]["owner"]
            .as_str()
            .map(String::from)
    }

    /// Waits until every running node sees every partition owned by a running node, the
    /// layout balanced over the running nodes (counts differ by at most one: the Director's
    /// rebalancing is done) and `check` holding of the owners, and answers `/readyz` 200.
    pub fn wait_placed(&self, within: Duration, check: impl Fn(&[String]) -> bool) {
        let deadline = Instant::now() + within;
        let http = reqwest::blocking::Client::new();
        loop {
            let ok = self.running().iter().all(|&i| {
                let ready = http
                    .get(format!("http://{}/readyz", self.node(i).admin))
                    .send()
                    .is_ok_and(|r| r.status().is_success());
                let owners: Vec<String> = (0..self.partitions)
                    .filter_map(|p| self.owner(i, p))
                    .collect();
                let counts: Vec<usize> = self
                    .running()
                    .iter()
                    .map(|&r| owners.iter().filter(|o| **o == self.ids[r]).count())
                    .collect();
                let (most, least) = (
                    counts.iter().max().copied().unwrap_or(0),
                    counts.iter().min().copied().unwrap_or(0),
                );
                ready
                    && owners.len() == usize::from(self.partitions)
                    && owners.iter().all(|o| self.nodes[self.index(o)].is_some())
                    && most - least <= 1
                    && check(&owners)
            });
            if ok {
                return;
            }
            if Instant::now() >= deadline {
                let states: Vec<String> = self
                    .running()
                    .iter()
                    .map(|&i| {
                        let ready = http
                            .get(format!("http://{}/readyz", self.node(i).admin))
                            .send()
                            .and_then(|r| r.text())
                            .unwrap_or_else(|e| e.to_string());
                        format!("{}: readyz {ready}; view {}", self.ids[i], self.view(i))
                    })
                    .collect();
                panic!(
                    "the cluster was not placed within {within:?}:\n{}",
                    states.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The partition of workspace `ws`.
    pub fn partition(&self, ws: u64) -> u16 {
        partition_of(WsId(ws), self.partitions).0
    }

    /// A `redis` connection to node `i`.
    pub fn client(&self, i: usize) -> redis::Connection {
        let url = format!("redis://{}/", self.node(i).addr);
        let client = redis::Client::open(url).expect("client");
        let c = client.get_connection().expect("connect");
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c
    }

    /// Stops node `i` with SIGTERM and waits for it to exit cleanly.
    pub fn stop(&mut self, i: usize) {
        if let Some(d) = self.nodes[i].take() {
            d.terminate();
        }
    }

    /// Kills node `i` (SIGKILL).
    pub fn kill(&mut self, i: usize) {
        if let Some(d) = self.nodes[i].take() {
            d.kill9();
        }
    }
}

/// `NEXT ws seq` on `c`: the number, or the error's text.
pub fn next(c: &mut redis::Connection, ws: u64, seq: u16) -> Result<u64, String> {
    redis::cmd("NEXT")
        .arg(ws)
        .arg(seq)
        .query::<u64>(c)
        .map_err(|e| e.to_string())
}
