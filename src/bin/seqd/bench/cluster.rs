//! `seqd bench --cluster`: routing as a Redis Cluster client does. The slot map comes from
//! `CLUSTER SLOTS` of `--host:--port`; connections are spread over the nodes it names
//! (round robin), and each connection sends only keys whose workspace's slot its node
//! serves, so requests go straight to the node that answers them. A `-MOVED` reply (the
//! layout changed) is followed: the request is sent again to the node it names (and further
//! `-MOVED`s and `-TRYAGAIN`s, a few hops at most). The map is read once, at the start: after
//! a layout change the moved slots' requests keep paying the redirect, which `redirects`
//! counts.

use seqd::WsId;
use seqd::cluster::forward::{PeerReply, parse};
use seqd::cluster::keys::slot;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::args::Plan;
use super::client::{REPLY_TIMEOUT, connect_to};

/// The slot map: `(first, last, node)` ranges and the nodes' addresses.
#[derive(Debug, Clone, Default)]
pub struct Routes {
    ranges: Vec<(u16, u16, usize)>,
    pub nodes: Vec<String>,
}

impl Routes {
    /// Reads `CLUSTER SLOTS` from `--host:--port`.
    pub async fn fetch(plan: &Plan) -> Result<Routes, String> {
        let seed = format!("{}:{}", plan.args.host, plan.args.port);
        let mut stream = connect_to(plan, &seed).await?;
        stream
            .write_all(b"*2\r\n$7\r\nCLUSTER\r\n$5\r\nSLOTS\r\n")
            .await
            .map_err(|e| format!("CLUSTER SLOTS to {seed}: {e}"))?;
        let mut buf = Vec::with_capacity(4096);
        let reply = loop {
            let read = tokio::time::timeout(REPLY_TIMEOUT, stream.read_buf(&mut buf)).await;
            match read {
                Ok(Ok(0)) => return Err(format!("{seed} closed the connection")),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(format!("CLUSTER SLOTS from {seed}: {e}")),
                Err(_) => return Err(format!("no reply to CLUSTER SLOTS from {seed}")),
            }
            match parse(&buf) {
                Ok(Some((reply, _))) => break reply,
                Ok(None) => continue,
                Err(e) => return Err(format!("CLUSTER SLOTS from {seed}: {}", e.0)),
            }
        };
        Routes::from_reply(reply).map_err(|e| format!("CLUSTER SLOTS from {seed}: {e}"))
    }

    fn from_reply(reply: PeerReply) -> Result<Routes, String> {
        let int = |r: &PeerReply| match r {
            PeerReply::Integer(n) => u16::try_from(*n).ok(),
            _ => None,
        };
        let ranges = match reply {
            PeerReply::Array(Some(ranges)) => ranges,
            PeerReply::Error(e) => return Err(e),
            other => return Err(format!("unexpected reply {other:?}")),
        };
        let mut routes = Routes::default();
        for range in ranges {
            let PeerReply::Array(Some(parts)) = range else {
                return Err("a range is not an array".into());
            };
            let (Some(first), Some(last), Some(PeerReply::Array(Some(node)))) = (
                parts.first().and_then(int),
                parts.get(1).and_then(int),
                parts.get(2),
            ) else {
                return Err("a range without its slots and node".into());
            };
            let (Some(PeerReply::Bulk(Some(host))), Some(port)) =
                (node.first(), node.get(1).and_then(int))
            else {
                return Err("a node without host and port".into());
            };
            let address = format!("{}:{port}", String::from_utf8_lossy(host));
            let index = match routes.nodes.iter().position(|n| *n == address) {
                Some(i) => i,
                None => {
                    routes.nodes.push(address);
                    routes.nodes.len() - 1
                }
            };
            routes.ranges.push((first, last, index));
        }
        if routes.nodes.is_empty() {
            return Err("no slot is served (is this a cluster node?)".into());
        }
        Ok(routes)
    }

    /// The node serving workspace `ws`'s slot.
    pub fn node_of(&self, ws: u64) -> Option<usize> {
        let s = slot(WsId(ws));
        self.ranges
            .iter()
            .find(|(a, b, _)| (*a..=*b).contains(&s))
            .map(|r| r.2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_maps_and_moved_lines_are_read() {
        let node = |port: i128| {
            PeerReply::Array(Some(vec![
                PeerReply::Bulk(Some(b"127.0.0.1".to_vec())),
                PeerReply::Integer(port),
                PeerReply::Bulk(Some(b"id".to_vec())),
            ]))
        };
        let reply = PeerReply::Array(Some(vec![
            PeerReply::Array(Some(vec![
                PeerReply::Integer(0),
                PeerReply::Integer(8191),
                node(7000),
            ])),
            PeerReply::Array(Some(vec![
                PeerReply::Integer(8192),
                PeerReply::Integer(16383),
                node(7001),
            ])),
        ]));
        let r = Routes::from_reply(reply).unwrap();
        assert_eq!(r.nodes, vec!["127.0.0.1:7000", "127.0.0.1:7001"]);
        assert_eq!(r.node_of(42), Some(0), "slot 8000");
        assert_eq!(
            super::super::client::moved_to(b"MOVED 8000 127.0.0.1:7001"),
            Some("127.0.0.1:7001".into())
        );
        assert_eq!(super::super::client::moved_to(b"ERR nope"), None);
    }
}
