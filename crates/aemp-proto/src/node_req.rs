//! Node-port requests (PROTOCOL.md §4): parsing a message sent to the node port (`""`) into a
//! typed request, with every argument checked.
//!
//! A malformed request is refused on its own ([`ReqError`]); it never disturbs anything else
//! (§10.27). Global-protocol requests (`g_*`) are passed through as [`NodeReq::Global`] for
//! the database layer to parse.

use crate::ids::PortId;
use crate::value::{Msg, Str, Value};

/// A parsed node-port request.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeReq {
    /// `""`, `devnull`, or an empty message: nothing to do.
    Noop,
    /// `mon1 portname`: the sender monitors our port.
    Mon1(Str),
    /// `mon0 portname`: the sender stops monitoring our port.
    Mon0(Str),
    /// `kil0 portname reason…`: a port of the sender that we monitor died.
    Kil0(Str, Vec<Value>),
    /// `kil1 portname reason…`: the sender asks us to kill our port.
    Kil1(Str, Vec<Value>),
    /// `snd portid msg…`: relay a message.
    Snd(PortId, Msg),
    /// `can tag replyport extra…`: is `tag` a known request?
    Can {
        /// The tag asked about.
        tag: Str,
        /// Where the answer goes.
        reply: PortId,
        /// Echoed before the answer.
        extra: Vec<Value>,
    },
    /// `time replyport extra…`: our clock.
    Time {
        /// Where the answer goes.
        reply: PortId,
        /// Echoed before the answer.
        extra: Vec<Value>,
    },
    /// `eval code [replyport extra…]`: never executed here.
    Eval {
        /// Where the error answer goes, if anywhere.
        reply: Option<PortId>,
        /// Echoed before the answer.
        extra: Vec<Value>,
    },
    /// `AnyEvent::MP::_spawn portname init args…`.
    Spawn {
        /// Name of the port to create.
        port: Str,
        /// Name of the init function.
        init: Str,
        /// Arguments for it.
        args: Vec<Value>,
    },
    /// `aemp_nodes replyport extra…`: which nodes are we connected to? (An extension of
    /// this implementation, used by `aemp trace`; Perl nodes answer nothing.)
    UpNodes {
        /// Where the answer goes.
        reply: PortId,
        /// Echoed before the answer.
        extra: Vec<Value>,
    },
    /// A global-protocol request (`g_…`): tag and arguments.
    Global(Str, Vec<Value>),
    /// Any other tag: a function call by name.
    Call(Str, Vec<Value>),
}

/// Why a node-port request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed node-port request {tag:?}: {what}")]
pub struct ReqError {
    /// The request tag.
    pub tag: String,
    /// What is wrong.
    pub what: String,
}

/// Tags this implementation serves itself (what `can` answers true for, besides registered
/// functions).
pub const KNOWN_TAGS: &[&str] = &[
    "",
    "devnull",
    "mon1",
    "mon0",
    "kil0",
    "kil1",
    "snd",
    "can",
    "time",
    "eval",
    "g_global",
    "g_slave",
    "g_reply",
    "g_found",
    "g_chg1",
    "g_chg2",
    "g_set",
    "g_upd",
    "g_find",
    "g_db_family",
    "g_db_keys",
    "g_db_values",
    "g_mon1",
    "g_mon0",
];

/// The tag of the [`NodeReq::UpNodes`] request.
pub const UP_NODES: &str = "aemp_nodes";

/// The name used by `spawn` on the wire.
pub const SPAWN_FUNC: &str = "AnyEvent::MP::_spawn";

fn err(tag: &str, what: impl Into<String>) -> ReqError {
    ReqError {
        tag: tag.to_string(),
        what: what.into(),
    }
}

/// Reads a string argument; Perl may send numbers where strings are meant (§3.3).
fn string_arg(tag: &str, v: Option<Value>, what: &str) -> Result<Str, ReqError> {
    match v {
        Some(Value::Str(s)) => Ok(s),
        Some(Value::Int(i)) => Ok(Str::from(i.to_string())),
        Some(Value::UInt(u)) => Ok(Str::from(u.to_string())),
        Some(other) => Err(err(
            tag,
            format!("{what} must be a string, got {}", other.kind()),
        )),
        None => Err(err(tag, format!("{what} is missing"))),
    }
}

fn port_arg(tag: &str, v: Option<Value>, what: &str) -> Result<PortId, ReqError> {
    let s = string_arg(tag, v, what)?;
    PortId::parse(&s).map_err(|e| err(tag, format!("{what}: {e}")))
}

fn port_name_arg(tag: &str, v: Option<Value>) -> Result<Str, ReqError> {
    let name = string_arg(tag, v, "port name")?;
    if name.is_empty() {
        // The reference would act on its own node port here (§10.27): refuse instead.
        return Err(err(tag, "empty port name (the node port) is not allowed"));
    }
    Ok(name)
}

/// Parses a message that arrived for the node port (`msg` is everything after the `""`).
pub fn parse(msg: Msg) -> Result<NodeReq, ReqError> {
    let mut it = msg.0.into_iter();
    let tag = match it.next() {
        None | Some(Value::Null) => return Ok(NodeReq::Noop),
        Some(Value::Str(s)) => s,
        Some(other) => {
            return Err(err(
                "?",
                format!("tag must be a string, got {}", other.kind()),
            ))
        }
    };
    let t = tag.as_str();
    Ok(match t {
        "" | "devnull" => NodeReq::Noop,
        "mon1" => NodeReq::Mon1(port_name_arg(t, it.next())?),
        "mon0" => NodeReq::Mon0(port_name_arg(t, it.next())?),
        "kil0" => {
            let name = port_name_arg(t, it.next())?;
            NodeReq::Kil0(name, it.collect())
        }
        "kil1" => {
            let name = port_name_arg(t, it.next())?;
            NodeReq::Kil1(name, it.collect())
        }
        "snd" => {
            let port = port_arg(t, it.next(), "port")?;
            let rest: Vec<Value> = it.collect();
            NodeReq::Snd(port, Msg::from(rest))
        }
        "can" => {
            let tag = string_arg(t, it.next(), "tag")?;
            let reply = port_arg(t, it.next(), "reply port")?;
            NodeReq::Can {
                tag,
                reply,
                extra: it.collect(),
            }
        }
        "time" => {
            let reply = port_arg(t, it.next(), "reply port")?;
            NodeReq::Time {
                reply,
                extra: it.collect(),
            }
        }
        "eval" => {
            let _code = it.next();
            let reply = match it.next() {
                None | Some(Value::Null) => None,
                v => Some(port_arg(t, v, "reply port")?),
            };
            NodeReq::Eval {
                reply,
                extra: it.collect(),
            }
        }
        UP_NODES => {
            let reply = port_arg(t, it.next(), "reply port")?;
            NodeReq::UpNodes {
                reply,
                extra: it.collect(),
            }
        }
        SPAWN_FUNC => {
            let port = port_name_arg(t, it.next())?;
            let init = string_arg(t, it.next(), "init function")?;
            NodeReq::Spawn {
                port,
                init,
                args: it.collect(),
            }
        }
        _ if t.starts_with("g_") => NodeReq::Global(tag, it.collect()),
        _ => NodeReq::Call(tag, it.collect()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg;

    #[test]
    fn parses_every_fixed_request() {
        assert_eq!(parse(msg![]).unwrap(), NodeReq::Noop);
        assert_eq!(parse(msg!["devnull", 1]).unwrap(), NodeReq::Noop);
        assert_eq!(parse(msg!["mon1", "p"]).unwrap(), NodeReq::Mon1("p".into()));
        assert_eq!(
            parse(msg!["kil1", "p", "die", "x"]).unwrap(),
            NodeReq::Kil1("p".into(), vec!["die".into(), "x".into()])
        );
        assert_eq!(
            parse(msg!["time", "n#r", 7]).unwrap(),
            NodeReq::Time {
                reply: PortId::parse("n#r").unwrap(),
                extra: vec![7.into()]
            }
        );
        assert!(matches!(
            parse(msg!["snd", "n#p", "a"]).unwrap(),
            NodeReq::Snd(_, _)
        ));
        assert!(matches!(
            parse(msg![SPAWN_FUNC, "pn", "Pkg::init", 1]).unwrap(),
            NodeReq::Spawn { .. }
        ));
        assert!(matches!(
            parse(msg!["g_find", "x"]).unwrap(),
            NodeReq::Global(_, _)
        ));
        assert!(matches!(
            parse(msg!["My::func", 1]).unwrap(),
            NodeReq::Call(_, _)
        ));
        assert!(matches!(
            parse(msg!["eval", "1+1"]).unwrap(),
            NodeReq::Eval { reply: None, .. }
        ));
    }

    #[test]
    fn refuses_malformed_requests() {
        assert!(parse(msg!["kil1"]).is_err());
        assert!(
            parse(msg!["kil1", ""]).is_err(),
            "empty port name must be refused"
        );
        assert!(parse(msg!["mon1", Value::List(vec![])]).is_err());
        assert!(parse(msg!["time"]).is_err());
        assert!(parse(msg!["time", ""]).is_err());
        assert!(parse(msg!["can", "x"]).is_err());
        assert!(parse(msg![5]).is_err());
    }
}
