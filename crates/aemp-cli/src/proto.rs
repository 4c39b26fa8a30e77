//! The protocol commands `snd`, `cal`, `mon` and `trace`: a short-lived node (profile
//! `aemp`, node ID `aemp/%n/%u`, no listener unless that profile sets `binds`) that does one
//! thing and exits.
//!
//! How the target is reached: through the seeds of the effective configuration (handled by
//! [`Node::configure`]), or, with `--connect host:port`, by connecting to that address
//! first and waiting until the node there is up (if none comes up within the timeout, the
//! command fails, saying which address and why).

use crate::{failed, json_body, resolve_hostport, Failure, Options};
use aemp::config::{json_to_value, ConfigBuilder, ConfigError, RcDoc};
use aemp::{msg, CalError, Config, Msg, Node, NodeId, PortId};
use std::time::Duration;

/// How often `--connect` dials again while the node there is not up yet.
const REDIAL: Duration = Duration::from_secs(2);

/// A parsed protocol command.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Request {
    /// `snd <port> <arg...>`: send, then confirm delivery through the target's node port.
    Snd {
        /// The target.
        port: PortId,
        /// The message (non-empty).
        msg: Msg,
    },
    /// `cal <port> <arg...>`: send with a reply port appended; print the first reply.
    Cal {
        /// The target.
        port: PortId,
        /// The message without the reply port.
        msg: Msg,
    },
    /// `mon <port>`: wait until the port dies; print the reason.
    Mon {
        /// The port to watch.
        port: PortId,
    },
    /// `trace <node>`: the topology reachable from a node, asked node by node.
    Trace {
        /// The node port of the first node.
        port: PortId,
    },
}

impl Request {
    /// Parses the arguments (already JSON-decoded) of command `name`.
    pub(crate) fn parse(name: &str, args: &[serde_json::Value]) -> Result<Request, Failure> {
        let usage = |m: String| Failure::Usage(format!("{name}: {m}"));
        let port = match args.first() {
            None => return Err(usage("port ID missing".into())),
            Some(serde_json::Value::String(s)) => {
                PortId::parse(s).map_err(|e| usage(e.to_string()))?
            }
            Some(other) => return Err(usage(format!("the port ID must be a string, not {other}"))),
        };
        let msg = Msg(args[1..].iter().map(json_to_value).collect());
        match name {
            "snd" if msg.is_empty() => Err(usage("message missing (snd <port> <arg...>)".into())),
            "snd" => Ok(Request::Snd { port, msg }),
            // An empty message would be only the reply port: no receiver answers that, so
            // the tool would just wait for the timeout.
            "cal" if msg.is_empty() => Err(usage("message missing (cal <port> <arg...>)".into())),
            "cal" => Ok(Request::Cal { port, msg }),
            "mon" if !msg.is_empty() => Err(usage("takes only the port ID".into())),
            "mon" => Ok(Request::Mon { port }),
            "trace" if !msg.is_empty() || !port.is_node_port() => {
                Err(usage("takes only a node ID".into()))
            }
            "trace" => Ok(Request::Trace { port }),
            _ => Err(Failure::Usage(format!("unknown command {name:?}"))),
        }
    }

    fn target(&self) -> &PortId {
        match self {
            Request::Snd { port, .. }
            | Request::Cal { port, .. }
            | Request::Mon { port }
            | Request::Trace { port } => port,
        }
    }
}

/// The profile the short-lived node uses by default.
pub(crate) const TOOL_PROFILE: &str = "aemp";

/// The configuration of the short-lived node: profile `profile` (normally
/// [`TOOL_PROFILE`]), node ID `aemp/%n/%u`.
///
/// Unlike the reference, the node ID wins over an rc file `nodeid` (`force`), so that the
/// tool's node never takes the ID of a configured node (which would make that node refuse
/// the connection as "talk to myself").
///
/// The node listens only when its profile (or a parent of it) sets `binds`: a short-lived
/// client needs no listener (it dials the nodes it talks to, and their answers come back on
/// those connections; listener-less nodes are part of the protocol). The top-level `binds`
/// of the rc file are meant for the nodes run from it, and the default `*` would open a
/// port on every interface for nothing.
pub(crate) fn config(rc: &RcDoc, profile: &str) -> Result<Config, Failure> {
    let conf_err = |e: ConfigError| failed(format!("configuration: {e}"));
    let binds = profile_binds(rc, profile)
        .map_err(conf_err)?
        .unwrap_or_else(|| serde_json::Value::Array(Vec::new()));
    ConfigBuilder::default()
        .profile(profile)
        .nodeid("aemp/%n/%u")
        .set("binds", binds)
        .map_err(conf_err)?
        .force(true)
        .rc_doc(rc.clone())
        .build()
        .map_err(conf_err)
}

/// The `binds` that profile `name` or one of its parents sets, nearest first; `None` when
/// none does (top-level `binds` do not count). A parent chain that loops ends the search
/// (the configuration merge reports it).
fn profile_binds(rc: &RcDoc, name: &str) -> Result<Option<serde_json::Value>, ConfigError> {
    let mut seen: Vec<String> = Vec::new();
    let mut cur = Some(name.to_string());
    while let Some(n) = cur.take() {
        if seen.contains(&n) {
            break;
        }
        let Some(p) = rc.profile(&n)? else { break };
        if let Some(b) = p.get("binds").filter(|b| !b.is_null()) {
            return Ok(Some(b.clone()));
        }
        cur = p
            .get("parent")
            .and_then(serde_json::Value::as_str)
            .map(str::to_string);
        seen.push(n);
    }
    Ok(None)
}

/// Runs `req` on a fresh node from `cfg`.
pub(crate) async fn run(cfg: Config, opts: &Options, req: Request) -> Result<(), Failure> {
    let node = start(cfg, opts).await?;
    let result = async {
        let target = req.target().node().to_string();
        if !opts.connect.is_empty() && !node.up_nodes().await.iter().any(|n| n.as_str() == target) {
            tracing::warn!(
                node = %target,
                "the target's node is not the one given with --connect; it can only be reached \
                 if its address is known (seeds)"
            );
        }
        exec(&node, opts, req).await
    }
    .await;
    node.shutdown().await;
    result
}

/// Starts the short-lived node from `cfg` and connects it to every `--connect` address
/// (waiting until each is up). On failure the node is shut down again.
pub(crate) async fn start(mut cfg: Config, opts: &Options) -> Result<Node, Failure> {
    // A short-lived client node starts no services (the library refuses names without a
    // registered function); the built-in global service still makes it global.
    cfg.services
        .retain(aemp::config::Service::is_global_service);
    let node = Node::configure(cfg)
        .await
        .map_err(|e| failed(format!("cannot start the aemp node: {e}")))?;
    tracing::debug!(node = %node.id(), listen = ?node.listen_addrs(), "started");
    for hp in &opts.connect {
        if let Err(e) = connect(&node, hp, opts.timeout()).await {
            node.shutdown().await;
            return Err(e);
        }
    }
    Ok(node)
}

/// Executes one request on a running node (`run` and the shell share this).
pub(crate) async fn exec(node: &Node, opts: &Options, req: Request) -> Result<(), Failure> {
    match req {
        Request::Snd { port, msg } => snd(node, &port, msg, opts.timeout()).await,
        Request::Cal { port, msg } => cal(node, &port, msg, opts.timeout()).await,
        Request::Mon { port } => mon(node, &port).await,
        Request::Trace { port } => trace(node, &port, opts.timeout()).await,
    }
}

/// How long the diagnosis of a failed `--connect` waits for a TCP connection.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Connects to `hp` (`--connect`) and waits (at most `timeout`) until the node there is up,
/// dialling again every [`REDIAL`] meanwhile. If it does not come up, the error says why
/// (see [`diagnose`]).
pub(crate) async fn connect(node: &Node, hp: &str, timeout: Duration) -> Result<NodeId, Failure> {
    let addrs = resolve_hostport(hp).await?;
    // Subscribed before dialling, so the Up event cannot be missed.
    let mut events = node.node_events();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        for a in &addrs {
            node.connect(*a).map_err(failed)?;
        }
        let next = (tokio::time::Instant::now() + REDIAL).min(deadline);
        let up = tokio::time::timeout_at(next, aemp::next_up(&mut events)).await;
        match up {
            Ok(Some(id)) => {
                tracing::info!(node = %id, addr = hp, "connected (--connect)");
                return Ok(id);
            }
            Ok(None) => return Err(failed("the node's network stopped")),
            Err(_) if next >= deadline => {
                return Err(failed(format!(
                    "could not connect to {hp} within {} s: {}",
                    secs(timeout),
                    diagnose(&addrs).await
                )))
            }
            Err(_) => tracing::debug!(addr = hp, "not connected yet, dialling again"),
        }
    }
}

/// Why no node came up at `addrs`: each address is tried once more with a plain TCP
/// connection (the node's own attempts report no reason). Either the TCP connection fails
/// (e.g. connection refused: nothing listens there), or it works and the aemp handshake is
/// what failed.
async fn diagnose(addrs: &[std::net::SocketAddr]) -> String {
    let mut tcp_ok = Vec::new();
    let mut reasons = Vec::new();
    for a in addrs {
        match tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(a)).await {
            Ok(Ok(_)) => tcp_ok.push(a.to_string()),
            Ok(Err(e)) => reasons.push(format!("{a}: {}", lower_first(&e.to_string()))),
            Err(_) => reasons.push(format!("{a}: no answer within {} s", secs(PROBE_TIMEOUT))),
        }
    }
    if tcp_ok.is_empty() {
        return format!("{} (is a node listening there?)", reasons.join("; "));
    }
    format!(
        "{} accepts TCP connections, but no aemp node came up on them (is it an aemp node, \
         and do both sides share the secret or certificate? RUST_LOG=debug shows the \
         handshake)",
        tcp_ok.join(", ")
    )
}

/// `text` with its first letter in lower case (OS error texts start upper case).
fn lower_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Sends `msg`, then asks the target's node to relay a confirmation back: messages between
/// two nodes stay in order, so the confirmation arrives after the message was delivered.
async fn snd(node: &Node, port: &PortId, msg: Msg, timeout: Duration) -> Result<(), Failure> {
    let target_node = PortId::from_parts(port.node(), "");
    let mut confirm = node.inbox(4);
    let lost = node.monitor(&target_node);
    node.snd(port, msg).map_err(failed)?;
    node.snd(
        &target_node,
        msg!["snd", confirm.port().as_str(), "delivered"],
    )
    .map_err(failed)?;
    tokio::select! {
        m = confirm.recv() => match m {
            Some(_) => Ok(()),
            None => Err(failed("the confirmation port died")),
        },
        reason = lost => Err(failed(format!(
            "message to {port} not confirmed, node {} lost: {}",
            port.node(),
            reason_text(&reason)
        ))),
        _ = tokio::time::sleep(timeout) => Err(failed(format!(
            "no delivery confirmation from node {} within {} s",
            port.node(),
            secs(timeout)
        ))),
    }
}

/// Sends `msg` with a reply port and prints the reply as JSON without the outer brackets.
async fn cal(node: &Node, port: &PortId, msg: Msg, timeout: Duration) -> Result<(), Failure> {
    // Without a cal timeout the target is monitored, so an unreachable node or a dead port
    // fails at once instead of after the timeout.
    match tokio::time::timeout(timeout, node.cal(port, msg)).await {
        Ok(Ok(reply)) => {
            println!("{}", json_body(reply.as_slice()));
            Ok(())
        }
        Ok(Err(CalError::TargetDied(reason))) => Err(failed(format!(
            "no reply: {port} died: {}",
            reason_text(&reason)
        ))),
        Ok(Err(e)) => Err(failed(e)),
        Err(_) => Err(failed(format!(
            "no reply from {port} within {} s",
            secs(timeout)
        ))),
    }
}

/// Asks every node reachable from `start` for its connected nodes (the native `aemp_nodes`
/// request; the reference does this with `eval`, which only Perl nodes serve) and prints one
/// line per node: `node -> peer, peer, …`. Nodes that do not answer (Perl nodes, unreachable
/// ones) are listed as such.
async fn trace(node: &Node, start: &PortId, timeout: Duration) -> Result<(), Failure> {
    let me = node.id().as_str().to_string();
    let mut seen = std::collections::BTreeSet::new();
    let mut todo = std::collections::VecDeque::from([start.node().to_string()]);
    seen.insert(start.node().to_string());
    let mut answered = 0;
    while let Some(n) = todo.pop_front() {
        let Ok(id) = NodeId::new(&n) else { continue };
        let reply = node
            .cal(&id.node_port(), aemp::msg![aemp_proto::node_req::UP_NODES])
            .timeout(timeout)
            .await;
        match reply {
            Ok(m) => {
                answered += 1;
                let peers: Vec<String> = m
                    .get(0)
                    .and_then(|v| v.as_list())
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .filter(|p| *p != me)
                    .collect();
                println!("{n} -> {}", peers.join(", "));
                for p in peers {
                    if seen.insert(p.clone()) {
                        todo.push_back(p);
                    }
                }
            }
            Err(e) => println!("{n} -> (no answer: {e})"),
        }
    }
    if answered == 0 {
        return Err(failed(format!(
            "no node answered the trace request from {start}"
        )));
    }
    Ok(())
}

/// Waits until `port` dies and prints the kill reason as a JSON array (`[]`: a normal kill).
async fn mon(node: &Node, port: &PortId) -> Result<(), Failure> {
    let reason = node.monitor(port).await;
    println!("[{}]", json_body(&reason));
    Ok(())
}

/// A duration in seconds for messages (`10`, `0.5`).
fn secs(d: Duration) -> String {
    format!("{}", d.as_secs_f64())
}

/// A kill reason for messages: the JSON array.
fn reason_text(reason: &[aemp::Value]) -> String {
    format!("[{}]", json_body(reason))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_tool_node_listens_only_when_its_profile_says_so() {
        let rc = RcDoc::from_text(
            r#"{"binds": ["127.0.0.1:4040"], "profile": {
                "aemp": {"parent": "base"}, "base": {"binds": ["127.0.0.1:0"]},
                "other": {"seeds": ["127.0.0.1:1"]}, "loop": {"parent": "loop"}}}"#,
        )
        .unwrap();
        assert_eq!(
            profile_binds(&rc, "aemp").unwrap(),
            Some(json!(["127.0.0.1:0"]))
        );
        assert_eq!(profile_binds(&rc, "other").unwrap(), None);
        assert_eq!(profile_binds(&rc, "loop").unwrap(), None);
        assert_eq!(profile_binds(&rc, "missing").unwrap(), None);
        let cfg = config(&rc, "aemp").unwrap();
        assert_eq!(cfg.binds.len(), 1);
        // Neither the top-level binds nor the default "*" apply to the tool's node.
        let cfg = config(&rc, "other").unwrap();
        assert!(cfg.binds.is_empty(), "{:?}", cfg.binds);
        let cfg = config(&RcDoc::new(), TOOL_PROFILE).unwrap();
        assert!(cfg.binds.is_empty(), "{:?}", cfg.binds);
    }

    #[test]
    fn parses_requests() {
        let r =
            Request::parse("cal", &[json!("n#p"), json!("ping"), json!([1, {"a": 2}])]).unwrap();
        let Request::Cal { port, msg } = r else {
            panic!("not a cal: {r:?}")
        };
        assert_eq!(port.as_str(), "n#p");
        assert_eq!(json_body(msg.as_slice()), r#""ping",[1,{"a":2}]"#);
        assert!(matches!(
            Request::parse("cal", &[json!("node"), json!("time")]).unwrap(),
            Request::Cal { .. }
        ));
        assert!(matches!(
            Request::parse("mon", &[json!("n#p")]).unwrap(),
            Request::Mon { .. }
        ));
        for bad in [
            ("snd", vec![json!("n#p")]),
            ("snd", vec![]),
            ("cal", vec![json!("n#p")]),
            ("cal", vec![]),
            ("cal", vec![json!(5)]),
            ("cal", vec![json!("#p")]),
            ("mon", vec![json!("n#p"), json!("x")]),
        ] {
            assert!(
                matches!(Request::parse(bad.0, &bad.1), Err(Failure::Usage(_))),
                "{bad:?}"
            );
        }
    }
}
