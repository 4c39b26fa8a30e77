//! Serving requests to the node port, local or remote.
//!
//! The kernel serves every request that concerns ports and functions; global-protocol
//! requests (`g_*`) go to the host's global service.

use super::{Host, Kernel};
use aemp_proto::node_req::{self, NodeReq, KNOWN_TAGS};
use aemp_proto::{Msg, NodeId, Value};
use std::sync::atomic::Ordering;

/// Text of the refusal sent for `eval` (never executed by this implementation).
pub(crate) const EVAL_REFUSED: &str = "eval is not supported: this node runs no Perl code\n";

impl Kernel {
    /// Handles one message for the node port. `src` is the sending node (None = us).
    pub(crate) fn node_request(&mut self, msg: Msg, src: Option<&NodeId>, host: &mut dyn Host) {
        let from = src.cloned().unwrap_or_else(|| self.id.clone());
        let req = match node_req::parse(msg) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(src = %from, error = %e, "error processing node message");
                return;
            }
        };
        let secure = self.shared.secure.load(Ordering::Relaxed);
        match req {
            NodeReq::Noop => {}
            NodeReq::Mon1(name) => self.add_remote_monitor(&from, &name, host),
            NodeReq::Mon0(name) => self.remove_remote_monitor(from.as_str(), &name),
            NodeReq::Kil0(name, reason) => {
                self.remote_port_died(from.as_str(), &name, reason.into(), host)
            }
            NodeReq::Kil1(name, reason) => self.kill_local(&name, reason.into(), host),
            // Relayed as is, even empty: the reference echoes an empty message to confirm
            // delivery (`aemp snd`); only a default handler can take it.
            NodeReq::Snd(port, msg) => self.snd_checked(&port, msg, host),
            NodeReq::Can {
                tag,
                reply,
                mut extra,
            } => {
                let known = KNOWN_TAGS.contains(&tag.as_str())
                    || tag == node_req::SPAWN_FUNC
                    || aemp_proto::dataconn::is_entry(&tag)
                    || self.shared.registry.read().get(&tag).is_some();
                extra.push(Value::Bool(known));
                self.snd_checked(&reply, Msg::from(extra), host);
            }
            NodeReq::Time { reply, mut extra } => {
                extra.push(Value::Float(unix_now()));
                self.snd_checked(&reply, Msg::from(extra), host);
            }
            NodeReq::UpNodes { reply, mut extra } => {
                let nodes = host.up_nodes().into_iter().map(Value::from).collect();
                extra.push(Value::List(nodes));
                self.snd_checked(&reply, Msg::from(extra), host);
            }
            NodeReq::Eval {
                reply, mut extra, ..
            } => {
                tracing::warn!(src = %from, "refused eval request");
                if let Some(reply) = reply {
                    extra.push(EVAL_REFUSED.into());
                    self.snd_checked(&reply, Msg::from(extra), host);
                }
            }
            NodeReq::Spawn { port, init, args } => {
                if secure && src.is_some() {
                    tracing::warn!(src = %from, init = %init, "remote execution not allowed (secure mode)");
                    return;
                }
                self.run_named(&port, &init, args, src, host);
            }
            NodeReq::Global(tag, args) => host.global_request(&from, tag, args),
            // Data connections decide for themselves: they only ever run init functions the
            // user registered for them, so secure mode lets them through (docs/protocol.md §13).
            NodeReq::Call(func, args) if aemp_proto::dataconn::is_entry(&func) => {
                host.data_conn_request(&from, &func, args)
            }
            NodeReq::Call(func, args) => {
                if secure && src.is_some() {
                    tracing::warn!(src = %from, function = %func, "remote execution not allowed (secure mode)");
                    return;
                }
                let known = self.shared.registry.read().get(&func).is_some();
                if !known {
                    tracing::warn!(src = %from, function = %func, "unable to resolve function");
                    // A reply port, if any, is by convention the last argument (`cal`).
                    if let Some(reply) = args
                        .last()
                        .and_then(Value::as_str)
                        .filter(|s| s.contains('#'))
                        .and_then(|s| aemp_proto::PortId::parse(s).ok())
                    {
                        let text = format!("unable to resolve function '{func}'");
                        self.snd_checked(&reply, aemp_proto::msg!["error", text], host);
                    }
                    return;
                }
                self.run_named(&aemp_proto::Str::default(), &func, args, src, host);
            }
        }
    }
}

/// Seconds since the Unix epoch, as Perl's `AE::now`.
pub(crate) fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
