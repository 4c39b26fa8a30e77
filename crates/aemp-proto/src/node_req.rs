//! Node-port requests: parsing a message sent to the node port (`""`) into a
//! typed request, with every argument checked, and building the message for a request.
//!
//! A malformed request is refused on its own ([`ReqError`]); it never disturbs anything else
//! (docs/protocol.md §11). Global-protocol requests (`g_*`) are passed through as [`NodeReq::Global`] for
//! the database layer to parse.
//!
//! [`NodeReq::to_msg`] is the inverse of [`parse`]: `parse(req.clone().to_msg()) == Ok(req)`
//! for every request `parse` can return. (A request `parse` would refuse, such as a
//! [`NodeReq::Mon1`] with an empty port name, encodes to a message `parse` refuses; a
//! [`NodeReq::Call`] named like a fixed tag encodes to that request.)

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
    /// `eval code [replyport extra…]`: never executed here. The code is not kept, so
    /// [`NodeReq::to_msg`] writes `null` in its place.
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

impl NodeReq {
    /// The message for this request (what follows the node port `""` on the wire), the
    /// inverse of [`parse`]: [`NodeReq::Noop`] becomes `["devnull"]`; [`NodeReq::Eval`]
    /// becomes `["eval", null]`, followed by the reply port (or `null`) and the extra values
    /// when there are any.
    pub fn to_msg(self) -> Msg {
        fn build(head: impl IntoIterator<Item = Value>, rest: Vec<Value>) -> Msg {
            head.into_iter().chain(rest).collect()
        }
        match self {
            NodeReq::Noop => build([Value::from("devnull")], Vec::new()),
            NodeReq::Mon1(name) => build(["mon1".into(), name.into()], Vec::new()),
            NodeReq::Mon0(name) => build(["mon0".into(), name.into()], Vec::new()),
            NodeReq::Kil0(name, reason) => build(["kil0".into(), name.into()], reason),
            NodeReq::Kil1(name, reason) => build(["kil1".into(), name.into()], reason),
            NodeReq::Snd(port, msg) => build(["snd".into(), port.into()], msg.into_vec()),
            NodeReq::Can { tag, reply, extra } => {
                build(["can".into(), tag.into(), reply.into()], extra)
            }
            NodeReq::Time { reply, extra } => build(["time".into(), reply.into()], extra),
            NodeReq::Eval { reply, extra } => {
                let mut m = build(["eval".into(), Value::Null], Vec::new());
                if reply.is_some() || !extra.is_empty() {
                    m.push(reply.map_or(Value::Null, Value::from));
                    m.0.extend(extra);
                }
                m
            }
            NodeReq::Spawn { port, init, args } => {
                build([SPAWN_FUNC.into(), port.into(), init.into()], args)
            }
            NodeReq::UpNodes { reply, extra } => build([UP_NODES.into(), reply.into()], extra),
            NodeReq::Global(tag, args) | NodeReq::Call(tag, args) => build([tag.into()], args),
        }
    }

    /// `mon1 name`: ask the port's node to tell us (`kil0`) when port `name` dies.
    pub fn mon1(name: impl Into<Str>) -> NodeReq {
        NodeReq::Mon1(name.into())
    }

    /// `mon0 name`: we no longer monitor port `name`.
    pub fn mon0(name: impl Into<Str>) -> NodeReq {
        NodeReq::Mon0(name.into())
    }

    /// `kil0 name reason…`: our port `name`, which the receiver monitors, died.
    pub fn kil0(name: impl Into<Str>, reason: Vec<Value>) -> NodeReq {
        NodeReq::Kil0(name.into(), reason)
    }

    /// `kil1 name reason…`: ask the receiver to kill its port `name`.
    pub fn kil1(name: impl Into<Str>, reason: Vec<Value>) -> NodeReq {
        NodeReq::Kil1(name.into(), reason)
    }

    /// `snd port msg…`: ask the receiver to relay `msg` to `port`.
    pub fn snd(port: PortId, msg: impl Into<Msg>) -> NodeReq {
        NodeReq::Snd(port, msg.into())
    }

    /// `AnyEvent::MP::_spawn port init args…`: create port `port` on the receiver, running
    /// the init function `init` with `args`.
    pub fn spawn(port: impl Into<Str>, init: impl Into<Str>, args: Vec<Value>) -> NodeReq {
        NodeReq::Spawn {
            port: port.into(),
            init: init.into(),
            args,
        }
    }

    /// `g_slave`: we join the receiver, a global node, as a slave.
    pub fn g_slave() -> NodeReq {
        NodeReq::Global("g_slave".into(), Vec::new())
    }

    /// `g_find node`: ask the receiver, a global node, for the addresses of `node`.
    pub fn g_find(node: impl Into<Str>) -> NodeReq {
        NodeReq::Global("g_find".into(), vec![Value::Str(node.into())])
    }
}

impl From<NodeReq> for Msg {
    fn from(req: NodeReq) -> Msg {
        req.to_msg()
    }
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

/// Reads a string argument; Perl may send numbers where strings are meant (docs/protocol.md §3).
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
        // The reference would act on its own node port here (docs/protocol.md §11): refuse instead.
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

    #[test]
    fn encodes_what_the_node_sends() {
        let p = PortId::parse("n#p").unwrap();
        assert_eq!(NodeReq::Noop.to_msg(), msg!["devnull"]);
        assert_eq!(NodeReq::mon1("p").to_msg(), msg!["mon1", "p"]);
        assert_eq!(NodeReq::mon0("p").to_msg(), msg!["mon0", "p"]);
        assert_eq!(
            NodeReq::kil0("p", vec!["die".into(), 1.into()]).to_msg(),
            msg!["kil0", "p", "die", 1]
        );
        assert_eq!(NodeReq::kil1("p", vec![]).to_msg(), msg!["kil1", "p"]);
        assert_eq!(
            NodeReq::snd(p.clone(), msg!["a", 2]).to_msg(),
            msg!["snd", "n#p", "a", 2]
        );
        assert_eq!(
            NodeReq::spawn("pn", "Pkg::init", vec![1.into()]).to_msg(),
            msg![SPAWN_FUNC, "pn", "Pkg::init", 1]
        );
        assert_eq!(NodeReq::g_slave().to_msg(), msg!["g_slave"]);
        assert_eq!(NodeReq::g_find("x").to_msg(), msg!["g_find", "x"]);
        assert_eq!(
            NodeReq::Call("My::func".into(), vec![1.into()]).to_msg(),
            msg!["My::func", 1]
        );
        assert_eq!(
            NodeReq::Eval {
                reply: None,
                extra: vec![]
            }
            .to_msg(),
            msg!["eval", Value::Null]
        );
        assert_eq!(
            NodeReq::Eval {
                reply: None,
                extra: vec![7.into()]
            }
            .to_msg(),
            msg!["eval", Value::Null, Value::Null, 7]
        );
        assert_eq!(
            Msg::from(NodeReq::Time {
                reply: p.clone(),
                extra: vec![]
            }),
            msg!["time", "n#p"]
        );
        assert_eq!(
            NodeReq::UpNodes {
                reply: p.clone(),
                extra: vec!["x".into()]
            }
            .to_msg(),
            msg![UP_NODES, "n#p", "x"]
        );
        assert_eq!(
            NodeReq::Can {
                tag: "mon1".into(),
                reply: p,
                extra: vec![]
            }
            .to_msg(),
            msg!["can", "mon1", "n#p"]
        );
    }

    /// `parse` reads back exactly what `to_msg` wrote, for many generated requests of every
    /// kind.
    #[test]
    fn to_msg_is_the_inverse_of_parse() {
        use rand::rngs::StdRng;
        use rand::{Rng, SeedableRng};

        fn text(rng: &mut StdRng, min: usize) -> Str {
            const CHARS: &[char] = &[
                'a',
                'Z',
                '0',
                '9',
                '#',
                ':',
                ' ',
                '_',
                'é',
                '€',
                '\u{1F600}',
            ];
            let n = rng.gen_range(min..min + 8);
            (0..n)
                .map(|_| CHARS[rng.gen_range(0..CHARS.len())])
                .collect()
        }
        fn value(rng: &mut StdRng, depth: u32) -> Value {
            match rng.gen_range(0..if depth == 0 { 7 } else { 9 }) {
                0 => Value::Null,
                1 => Value::Bool(rng.gen()),
                2 => Value::Int(rng.gen()),
                3 => Value::UInt(rng.gen_range(i64::MAX as u64 + 1..=u64::MAX)),
                4 => Value::Float(rng.gen_range(-1e9..1e9)),
                5 => Value::Str(text(rng, 0)),
                6 => Value::Bytes((0..rng.gen_range(0..6)).map(|_| rng.gen()).collect()),
                7 => Value::List(values(rng, depth - 1)),
                _ => Value::Map(
                    (0..rng.gen_range(0..4))
                        .map(|_| (text(rng, 0), value(rng, depth - 1)))
                        .collect(),
                ),
            }
        }
        fn values(rng: &mut StdRng, depth: u32) -> Vec<Value> {
            (0..rng.gen_range(0..4))
                .map(|_| value(rng, depth))
                .collect()
        }
        fn port(rng: &mut StdRng) -> PortId {
            let node: String = text(rng, 1).replace('#', "n");
            let name = if rng.gen_bool(0.2) {
                Str::default()
            } else {
                text(rng, 0)
            };
            PortId::from_parts(&node, &name)
        }
        fn request(rng: &mut StdRng) -> NodeReq {
            match rng.gen_range(0..13) {
                0 => NodeReq::Noop,
                1 => NodeReq::Mon1(text(rng, 1)),
                2 => NodeReq::Mon0(text(rng, 1)),
                3 => NodeReq::Kil0(text(rng, 1), values(rng, 2)),
                4 => NodeReq::Kil1(text(rng, 1), values(rng, 2)),
                5 => NodeReq::Snd(port(rng), Msg::from(values(rng, 2))),
                6 => NodeReq::Can {
                    tag: text(rng, 0),
                    reply: port(rng),
                    extra: values(rng, 2),
                },
                7 => NodeReq::Time {
                    reply: port(rng),
                    extra: values(rng, 2),
                },
                8 => NodeReq::Eval {
                    reply: rng.gen_bool(0.5).then(|| port(rng)),
                    extra: values(rng, 2),
                },
                9 => NodeReq::Spawn {
                    port: text(rng, 1),
                    init: text(rng, 0),
                    args: values(rng, 2),
                },
                10 => NodeReq::UpNodes {
                    reply: port(rng),
                    extra: values(rng, 2),
                },
                11 => NodeReq::Global(format!("g_{}", text(rng, 0)).into(), values(rng, 2)),
                _ => loop {
                    let name = text(rng, 1);
                    let fixed = KNOWN_TAGS.contains(&name.as_str())
                        || name == UP_NODES
                        || name == SPAWN_FUNC
                        || name.starts_with("g_");
                    if !fixed {
                        break NodeReq::Call(name, values(rng, 2));
                    }
                },
            }
        }

        let mut rng = StdRng::seed_from_u64(0x6e6f_6465);
        let mut seen = [0usize; 13];
        for _ in 0..20_000 {
            let req = request(&mut rng);
            let kind = match &req {
                NodeReq::Noop => 0,
                NodeReq::Mon1(_) => 1,
                NodeReq::Mon0(_) => 2,
                NodeReq::Kil0(..) => 3,
                NodeReq::Kil1(..) => 4,
                NodeReq::Snd(..) => 5,
                NodeReq::Can { .. } => 6,
                NodeReq::Time { .. } => 7,
                NodeReq::Eval { .. } => 8,
                NodeReq::Spawn { .. } => 9,
                NodeReq::UpNodes { .. } => 10,
                NodeReq::Global(..) => 11,
                NodeReq::Call(..) => 12,
            };
            seen[kind] += 1;
            let m = req.clone().to_msg();
            assert_eq!(parse(m.clone()), Ok(req), "via {m}");
        }
        assert!(seen.iter().all(|&n| n > 1000), "{seen:?}");
    }
}
