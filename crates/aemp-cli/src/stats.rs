//! `aemp stats <node>`: the connection statistics of a node, as a table.
//!
//! A short-lived node (the same setup as `snd`/`cal`: profile `aemp`, `--connect`,
//! `--timeout`) sends the node the `aemp::stats` request (an aemp extension, see
//! [`aemp::STATS_FUNCTION`]) and prints its answer.

use crate::{failed, proto, Failure, Options};
use aemp::{Config, NodeId, NodeStats, StatsError};

/// Parses `stats <node>`, asks the node and prints the table.
pub(crate) async fn run(
    cfg: Config,
    opts: &Options,
    args: &[serde_json::Value],
) -> Result<(), Failure> {
    let target = parse(args)?;
    let node = proto::start(cfg, opts).await?;
    let answer = node.stats_of(&target, opts.timeout()).await;
    node.shutdown().await;
    match answer {
        Ok(stats) => {
            print!("{}", table(&stats));
            Ok(())
        }
        Err(StatsError::Cal(aemp::CalError::Timeout)) => Err(failed(format!(
            "no statistics from node {target} within {} s (is it reachable? a Perl node does \
             not answer this aemp request)",
            opts.timeout().as_secs_f64()
        ))),
        Err(e) => Err(failed(format!("no statistics from node {target}: {e}"))),
    }
}

fn parse(args: &[serde_json::Value]) -> Result<NodeId, Failure> {
    let usage = |m: &str| Failure::Usage(format!("stats: {m}"));
    match args {
        [serde_json::Value::String(s)] => {
            NodeId::new(s.as_str()).map_err(|e| usage(&e.to_string()))
        }
        [] => Err(usage("node ID missing (stats <node>)")),
        _ => Err(usage("takes exactly one node ID")),
    }
}

/// The statistics as text: a summary line, then one row per peer.
pub(crate) fn table(s: &NodeStats) -> String {
    let mut out = format!(
        "node {}: {} refused handshakes, {} protocol errors, {} connected peers\n",
        s.node,
        s.handshakes_refused,
        s.protocol_errors,
        s.peers.len()
    );
    let head = [
        "peer",
        "msgs in",
        "bytes in",
        "msgs out",
        "bytes out",
        "queued bytes",
        "reconnects",
    ];
    let rows: Vec<[String; 7]> = s
        .peers
        .iter()
        .map(|p| {
            [
                p.node.to_string(),
                p.msgs_in.to_string(),
                p.bytes_in.to_string(),
                p.msgs_out.to_string(),
                p.bytes_out.to_string(),
                p.queued_bytes.to_string(),
                p.reconnects.to_string(),
            ]
        })
        .collect();
    let mut width = head.map(str::len);
    for r in &rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let line = |cells: &[&str]| {
        let mut l = format!("{:<w$}", cells[0], w = width[0]);
        for (c, w) in cells[1..].iter().zip(&width[1..]) {
            l.push_str(&format!("  {c:>w$}"));
        }
        l.push('\n');
        l
    };
    out.push_str(&line(&head));
    for r in &rows {
        out.push_str(&line(&r.each_ref().map(String::as_str)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use aemp::PeerStats;

    #[test]
    fn the_table_lines_up() {
        let s = NodeStats {
            node: NodeId::new("b").unwrap(),
            handshakes_refused: 2,
            protocol_errors: 0,
            peers: vec![PeerStats {
                node: NodeId::new("a-long-name").unwrap(),
                msgs_in: 12,
                bytes_in: 3456,
                msgs_out: 7,
                bytes_out: 890,
                queued_bytes: 0,
                reconnects: 1,
            }],
        };
        assert_eq!(
            table(&s),
            "node b: 2 refused handshakes, 0 protocol errors, 1 connected peers\n\
             peer         msgs in  bytes in  msgs out  bytes out  queued bytes  reconnects\n\
             a-long-name       12      3456         7        890             0           1\n"
        );
    }

    #[test]
    fn stats_takes_one_node_id() {
        assert!(parse(&[]).is_err());
        assert!(parse(&[serde_json::json!("a"), serde_json::json!("b")]).is_err());
        assert_eq!(parse(&[serde_json::json!("a")]).unwrap().as_str(), "a");
    }
}
