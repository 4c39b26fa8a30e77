//! Statistics of a node's connections, locally ([`Node::stats`]) and from another node
//! ([`Node::stats_of`]) through a node-port request ([`STATS_FUNCTION`]).

use super::{Node, PeerStats};
use crate::error::CalError;
use aemp_proto::{msg, Msg, NodeId, PortId, Str, Value};
use std::time::Duration;

/// The node-port function that answers with the node's statistics: an aemp extension.
///
/// A message `["aemp::stats", <reply port>]` to a node's node port is answered with
/// `[<stats>]` sent to the reply port, where `<stats>` is a map
/// ([`NodeStats::to_value`]):
///
/// ```text
/// { "node": "<node id>", "handshakes_refused": n, "protocol_errors": n,
///   "peers": [ { "node": "<peer>", "msgs_in": n, "bytes_in": n, "msgs_out": n,
///                "bytes_out": n, "queued_bytes": n, "reconnects": n }, ... ] }
/// ```
///
/// This is not part of the AnyEvent::MP protocol: a Perl node does not know the function,
/// logs that it cannot resolve it and sends no answer (the request times out). The name is
/// a function every aemp node registers at start (see [`Node::register`]), so a node in
/// `secure` mode refuses it from other nodes, like every remote function call.
pub const STATS_FUNCTION: &str = "aemp::stats";

/// A node's connection statistics (see [`Node::stats`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeStats {
    /// The node.
    pub node: NodeId,
    /// Incoming connections whose handshake this node refused (authentication failed, an
    /// unusable greeting, a TLS failure), since it started.
    pub handshakes_refused: u64,
    /// Connections this node closed because a peer sent what it could not decode.
    pub protocol_errors: u64,
    /// Every live connection, by peer.
    pub peers: Vec<PeerStats>,
}

/// Why [`Node::stats_of`] has no statistics.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StatsError {
    /// The request got no answer (a Perl node does not answer it: it times out).
    #[error("{0}")]
    Cal(#[from] CalError),
    /// The answer is not a statistics map (an error text, if the node sent one).
    #[error("not aemp statistics: {0}")]
    BadAnswer(String),
}

fn count(v: u64) -> Value {
    Value::from(v)
}

impl NodeStats {
    /// The statistics as the `aemp::stats` answer carries them.
    pub fn to_value(&self) -> Value {
        let peers = self
            .peers
            .iter()
            .map(|p| {
                Value::Map(vec![
                    (Str::from("node"), Value::from(p.node.as_str())),
                    (Str::from("msgs_in"), count(p.msgs_in)),
                    (Str::from("bytes_in"), count(p.bytes_in)),
                    (Str::from("msgs_out"), count(p.msgs_out)),
                    (Str::from("bytes_out"), count(p.bytes_out)),
                    (Str::from("queued_bytes"), count(p.queued_bytes as u64)),
                    (Str::from("reconnects"), count(p.reconnects)),
                ])
            })
            .collect();
        Value::Map(vec![
            (Str::from("node"), Value::from(self.node.as_str())),
            (
                Str::from("handshakes_refused"),
                count(self.handshakes_refused),
            ),
            (Str::from("protocol_errors"), count(self.protocol_errors)),
            (Str::from("peers"), Value::List(peers)),
        ])
    }

    /// Reads an `aemp::stats` answer; `None` if it is not one.
    pub fn from_value(v: &Value) -> Option<NodeStats> {
        let num = |m: &Value, k: &str| m.get(k).and_then(Value::as_u64);
        let id = |m: &Value| NodeId::new(m.get("node")?.as_str()?).ok();
        let peers = v
            .get("peers")?
            .as_list()?
            .iter()
            .map(|p| {
                Some(PeerStats {
                    node: id(p)?,
                    msgs_in: num(p, "msgs_in")?,
                    bytes_in: num(p, "bytes_in")?,
                    msgs_out: num(p, "msgs_out")?,
                    bytes_out: num(p, "bytes_out")?,
                    queued_bytes: usize::try_from(num(p, "queued_bytes")?).ok()?,
                    reconnects: num(p, "reconnects")?,
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(NodeStats {
            node: id(v)?,
            handshakes_refused: num(v, "handshakes_refused")?,
            protocol_errors: num(v, "protocol_errors")?,
            peers,
        })
    }
}

impl Node {
    /// This node's connection statistics: per live connection (see [`Node::peer_stats`]) and
    /// node-wide counts.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), aemp::Error> {
    /// let cfg = aemp::Config::builder()
    ///     .norc(true)
    ///     .nodeid("stats-doc")
    ///     .binds(["127.0.0.1:0"])
    ///     .secret("s")
    ///     .build()?;
    /// let node = aemp::Node::configure(cfg).await?;
    /// let stats = node.stats();
    /// assert_eq!(stats.handshakes_refused, 0);
    /// assert!(stats.peers.is_empty(), "nobody connected yet");
    /// # Ok(())
    /// # }
    /// ```
    pub fn stats(&self) -> NodeStats {
        let c = self.counters();
        let get = |f: fn(&crate::transport::Counters) -> u64| c.map_or(0, f);
        NodeStats {
            node: self.id().clone(),
            handshakes_refused: get(|c| {
                c.handshakes_refused
                    .load(std::sync::atomic::Ordering::Relaxed)
            }),
            protocol_errors: get(|c| c.protocol_errors.load(std::sync::atomic::Ordering::Relaxed)),
            peers: self.peer_stats(),
        }
    }

    /// The statistics of `node` (possibly this one), asked for with the `aemp::stats`
    /// node-port request ([`STATS_FUNCTION`]); gives up after `timeout`.
    ///
    /// ```
    /// # use aemp::{msg, Config, Node, NodeEvent};
    /// # use std::time::Duration;
    /// # async fn net(name: &str) -> Result<Node, aemp::Error> {
    /// #     let cfg = Config::builder().norc(true).nodeid(format!("{name}/%u"))
    /// #         .binds(["127.0.0.1:0"]).secret("doc").build()?;
    /// #     Node::configure(cfg).await
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let (a, b) = (net("a").await?, net("b").await?);
    /// a.connect(b.listen_addrs()[0])?;
    /// a.wait_up(b.id(), Duration::from_secs(10)).await;
    /// let stats = a.stats_of(b.id(), Duration::from_secs(10)).await?;
    /// for p in &stats.peers {
    ///     println!("{}: {} messages in, {} out", p.node, p.msgs_in, p.msgs_out);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn stats_of(
        &self,
        node: &NodeId,
        timeout: Duration,
    ) -> Result<NodeStats, StatsError> {
        let answer = self
            .cal(&node.node_port(), msg![STATS_FUNCTION])
            .timeout(timeout)
            .await?;
        match answer.get(0).and_then(NodeStats::from_value) {
            Some(s) => Ok(s),
            None => Err(StatsError::BadAnswer(
                answer
                    .as_slice()
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(" "),
            )),
        }
    }

    /// Installs the `aemp::stats` function (at node start).
    pub(crate) fn register_stats(&self) {
        self.register(STATS_FUNCTION, |cx, args| {
            // `cal` puts the reply port last.
            let reply = args
                .last()
                .and_then(Value::as_str)
                .and_then(|s| s.parse::<PortId>().ok());
            let Some(reply) = reply else {
                return Err(format!("{STATS_FUNCTION}: no reply port").into());
            };
            let stats = cx.node().stats();
            cx.snd(&reply, Msg::from(vec![stats.to_value()]));
            Ok(())
        });
    }
}
