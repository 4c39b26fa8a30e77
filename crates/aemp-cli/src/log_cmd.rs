//! `aemp log [<node>] [--level L]`: the log records of every node of the network (or of one
//! node), live, until Ctrl-C.
//!
//! A short-lived node (the same setup as `snd`/`cal`: profile `aemp`, `--connect`,
//! `--timeout`) catches the logs as `AnyEvent::MP::LogCatcher::catch` does (see
//! [`aemp::log_catcher`]): Perl nodes that loaded `AnyEvent::MP::LogCatcher` and every aemp
//! node not in `secure` mode send their records. One line per record on stdout:
//! `<time> <node> <level> <target>: <message>`.

use crate::{failed, proto, Failure, Options};
use aemp::log_catcher::{self, parse_level};
use aemp::{Config, NodeId};
use std::io::Write;

/// What `log` was asked for.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LogArgs {
    /// Only this node (else all).
    pub node: Option<NodeId>,
    /// The highest level shown (AnyEvent::Log's 1..9).
    pub level: u8,
}

/// The level shown when `--level` is not given.
pub(crate) const DEFAULT_LEVEL: u8 = log_catcher::INFO;

/// Parses `[<node>] [--level L]` (in any order; also `--level=L`).
pub(crate) fn parse(args: &[serde_json::Value]) -> Result<LogArgs, Failure> {
    let usage = |m: String| Failure::Usage(format!("log: {m}"));
    let mut node = None;
    let mut level = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let serde_json::Value::String(a) = a else {
            return Err(usage(format!("unexpected argument {a}")));
        };
        let value = if a == "--level" {
            match it.next() {
                Some(serde_json::Value::String(v)) => Some(v.clone()),
                Some(other) => Some(other.to_string()),
                None => return Err(usage("--level needs a level".into())),
            }
        } else {
            a.strip_prefix("--level=").map(str::to_string)
        };
        if let Some(v) = value {
            if level.is_some() {
                return Err(usage("--level given twice".into()));
            }
            level = Some(parse_level(&v).map_err(|e| usage(e.to_string()))?);
        } else if a.starts_with("--") {
            return Err(usage(format!("unknown option {a}")));
        } else if node.is_some() {
            return Err(usage("takes at most one node ID".into()));
        } else {
            node = Some(NodeId::new(a).map_err(|e| usage(e.to_string()))?);
        }
    }
    Ok(LogArgs {
        node,
        level: level.unwrap_or(DEFAULT_LEVEL),
    })
}

/// Catches and prints until Ctrl-C (exit 0) or until the node stops.
pub(crate) async fn run(
    cfg: Config,
    opts: &Options,
    args: &[serde_json::Value],
) -> Result<(), Failure> {
    let args = parse(args)?;
    // Ctrl-C is taken over before anything else, so that it always ends the command cleanly.
    #[cfg(unix)]
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(|e| failed(format!("cannot watch for Ctrl-C: {e}")))?;
    #[cfg(unix)]
    let ctrl_c = async move { sigint.recv().await.map(|_| ()) };
    #[cfg(not(unix))]
    let ctrl_c = async { tokio::signal::ctrl_c().await.ok() };
    tokio::pin!(ctrl_c);
    let node = proto::start(cfg, opts).await?;
    let catch = match &args.node {
        Some(n) => node.catch_logs_from(n, args.level),
        None => node.catch_logs(args.level),
    };
    let mut catch = match catch {
        Ok(c) => c,
        Err(e) => {
            node.shutdown().await;
            return Err(failed(format!("cannot catch logs: {e}")));
        }
    };
    tracing::info!(
        level = log_catcher::level_name(args.level),
        "catching logs until Ctrl-C"
    );
    let result = loop {
        tokio::select! {
            r = &mut ctrl_c => break r.ok_or_else(|| failed("cannot watch for Ctrl-C")),
            rec = catch.next() => match rec {
                Some(rec) => {
                    let mut out = std::io::stdout().lock();
                    if writeln!(out, "{rec}").and_then(|()| out.flush()).is_err() {
                        // stdout is gone (a closed pipe): nobody reads any more.
                        break Ok(());
                    }
                }
                None => break Err(failed("the node stopped")),
            },
        }
    };
    drop(catch);
    node.shutdown().await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn arguments() {
        let p = |a: serde_json::Value| parse(a.as_array().unwrap());
        assert_eq!(
            p(json!([])).unwrap(),
            LogArgs {
                node: None,
                level: DEFAULT_LEVEL
            }
        );
        let a = p(json!(["n1", "--level", "debug"])).unwrap();
        assert_eq!((a.node.unwrap().as_str(), a.level), ("n1", 8));
        let a = p(json!(["--level=3", "n1"])).unwrap();
        assert_eq!((a.node.unwrap().as_str(), a.level), ("n1", 3));
        assert_eq!(p(json!(["--level", 9])).unwrap().level, 9);
        assert_eq!(p(json!(["--level", "note"])).unwrap().level, 6);
        for bad in [
            json!(["--level"]),
            json!(["--level", "loud"]),
            json!(["--level", "10"]),
            json!(["a", "b"]),
            json!(["--lvl", "3"]),
            json!(["--level", "3", "--level", "4"]),
            json!([["n"]]),
        ] {
            assert!(matches!(p(bad.clone()), Err(Failure::Usage(_))), "{bad}");
        }
    }
}
