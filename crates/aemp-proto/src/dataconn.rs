//! Data connections (`AnyEvent::MP::DataConn`) as a sans-IO state machine: the set-up of a
//! raw, authenticated byte stream between two nodes (docs/protocol.md §13).
//!
//! Both nodes keep an entry per data connection being set up, under its id
//! `<counter>@<initiator node id>`:
//!
//! * **Initiator** ([`DataConns::open`], in the context of a port `P`): sends
//!   `["", "AnyEvent::MP::DataConn::_expect", id, P, timeout, initfunc, @initdata]` and then
//!   `["", "snd", <echo port>]`, whose empty echo ([`DataConns::echoed`]) proves that the
//!   target has registered the expectation. Then it asks for the target's listen addresses
//!   ([`Effect::Lookup`], answered with [`DataConns::listeners`]): if there are any it dials
//!   them, one every [`DIAL_STEP`] (first at once); if there are none it asks the target to
//!   dial back (`["", "AnyEvent::MP::DataConn::_connect", id, <initiator>]`).
//! * **Target** ([`DataConns::expect`] for `_expect`): keeps the expectation until the
//!   connection arrives or the timeout passes; on `_connect` ([`DataConns::connect_request`])
//!   it looks up the initiator's addresses and dials them the same way.
//!
//! The connection itself is an ordinary AEMP handshake with protocol [`PROTOCOL`] and
//! `dataconn_id=<id>` in the dialler's greeting; once it has authenticated, the caller reports
//! it with [`DataConns::authenticated`], which hands over the entry ([`Handover`]): the target
//! calls the init function with its data and the stream, the initiator gives the stream to
//! its user.
//!
//! Failures never reach the remote side's init function. An initiator's failure is
//! [`Effect::Failed`]: the caller kills `P` with `("AnyEvent::MP::DataConn", <message>)` and
//! reports the [`Failure`]. A target's failure (timeout, refused expectation, no listeners,
//! failed dial-back) is reported the way the reference does it: a `kil1` of `P` with that
//! reason, sent to the initiator.
//!
//! Limits: at most [`Limits::max`] data connections per node, being set up or open (the
//! caller reports closed streams with [`DataConns::stream_closed`]); an expectation beyond
//! it is refused, an [`open`](DataConns::open) beyond it fails at once. The handshake of a
//! data connection must finish within [`Limits::handshake_timeout`] (the transport's
//! business). A connection that does not authenticate never reaches this machine.
//!
//! Deliberate differences from the reference (AnyEvent::MP 2.02, whose module still uses
//! the 1.x address table and cannot work): addresses come from the caller's look-up (peer
//! table, then the global database's `'l` family); ids count `b`, `c`, `d`, ... (the
//! reference skips every other one by incrementing twice); an unknown init function is
//! refused when the expectation arrives (the reference only fails when it calls it, and
//! then kills nothing); `P` must be a port of the node that sent `_expect`, and the
//! connection must come from that node.

use crate::ids::PortId;
use crate::node_req::NodeReq;
use crate::value::{Msg, Str, Value};
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The sub-protocol name of data connections (greeting field 1 of the dialler).
pub const PROTOCOL: &str = "aemp-dataconn";

/// The greeting key carrying the data connection's id.
pub const ID_KEY: &str = "dataconn_id";

/// The node-port function that announces a data connection to its target.
pub const EXPECT: &str = "AnyEvent::MP::DataConn::_expect";

/// The node-port function that asks the target to dial the initiator.
pub const CONNECT: &str = "AnyEvent::MP::DataConn::_connect";

/// First element of the kill reason of a failed data connection.
pub const KILL_TAG: &str = "AnyEvent::MP::DataConn";

/// Pause between two dials of one data connection (hard-coded in the reference too).
pub const DIAL_STEP: Duration = Duration::from_secs(2);

/// Longest timeout an expectation may ask for (longer ones are cut to it).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// Whether `func` is one of the data connection entry points ([`EXPECT`], [`CONNECT`]).
pub fn is_entry(func: &str) -> bool {
    func == EXPECT || func == CONNECT
}

/// Limits of a node's data connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Data connections being set up or open at once (both directions together).
    pub max: usize,
    /// Time a data connection's handshake may take, from the greeting of an accepted
    /// connection (from the TCP connect of a dialled one) to authentication.
    pub handshake_timeout: Duration,
}

impl Default for Limits {
    /// 64 connections, 10 s handshakes.
    fn default() -> Limits {
        Limits {
            max: 64,
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// Why a data connection could not be set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// Not authenticated within the timeout.
    Timeout,
    /// This node has [`Limits::max`] data connections already.
    TooMany,
    /// A handshake failed (authentication, TLS, an unusable greeting).
    Handshake,
    /// No address of the node could be dialled.
    Unreachable,
    /// The node has no listen addresses, and the other side cannot dial either.
    NoListeners,
    /// This node has no network.
    NoNetwork,
}

/// A failed data connection: the kind and the message of its kill reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// What went wrong.
    pub kind: FailureKind,
    /// The text that follows [`KILL_TAG`] in the kill reason.
    pub message: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Which end of a data connection this node is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// We asked for it (`connect_to`): the user gets the stream.
    Initiator,
    /// The other node asked for it: the init function gets the stream.
    Target,
}

/// An authenticated data connection, handed over by [`DataConns::authenticated`].
#[derive(Clone, Debug, PartialEq)]
pub struct Handover {
    /// Its id.
    pub id: Str,
    /// Which end we are.
    pub side: Side,
    /// The other node.
    pub peer: Str,
    /// The initiator's port `P`.
    pub port: PortId,
    /// The init function (the target calls it).
    pub init: Str,
    /// Its data (the target's only; empty on the initiator).
    pub args: Vec<Value>,
}

/// Something the caller has to carry out.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// Send the node-port request `msg` to node `node` (`["", msg...]`).
    Send {
        /// The node.
        node: Str,
        /// The request, starting with its tag.
        msg: Msg,
    },
    /// Find the listen addresses of `node` and give them to [`DataConns::listeners`].
    Lookup {
        /// The data connection.
        id: Str,
        /// Whose addresses.
        node: Str,
    },
    /// Dial `addr` with protocol [`PROTOCOL`] and `dataconn_id=<id>`; report the outcome
    /// with [`DataConns::authenticated`] or [`DataConns::dial_failed`].
    Dial {
        /// The data connection.
        id: Str,
        /// Where to.
        addr: SocketAddr,
    },
    /// An initiated data connection failed: kill `port` with
    /// `(KILL_TAG, failure.message)` and report the failure to the user.
    Failed {
        /// The data connection.
        id: Str,
        /// The initiator's port `P`.
        port: PortId,
        /// What went wrong.
        failure: Failure,
    },
    /// A request was ignored (logged at WARN): malformed, from the wrong node, or for an
    /// unknown data connection.
    Ignored(String),
}

#[derive(Debug)]
enum Stage {
    /// Initiator: waiting for the echo of the target's node port.
    Echo,
    /// Waiting for the addresses of the other node.
    Lookup,
    /// Dialling the other node's addresses.
    Dialing {
        plan: Vec<SocketAddr>,
        next: usize,
        next_at: Instant,
        in_flight: usize,
    },
    /// Initiator: the target was asked to dial back.
    DialBack,
    /// Target: waiting for the connection (or for `_connect`).
    Expecting,
}

#[derive(Debug)]
struct Entry {
    side: Side,
    peer: Str,
    port: PortId,
    init: Str,
    args: Vec<Value>,
    timeout: Duration,
    deadline: Instant,
    stage: Stage,
    /// The cause of the last dial that failed.
    last_error: Option<String>,
}

/// The data connections of one node (see the [module documentation](self)).
#[derive(Debug)]
pub struct DataConns {
    me: Str,
    counter: String,
    limits: Limits,
    entries: HashMap<Str, Entry>,
    /// Streams handed over and not closed yet.
    open: usize,
    effects: VecDeque<Effect>,
}

/// Perl's string increment on lowercase letters: `a` → `b`, `z` → `aa`, `az` → `ba`.
fn increment(s: &mut String) {
    let mut bytes = std::mem::take(s).into_bytes();
    let mut i = bytes.len();
    loop {
        if i == 0 {
            bytes.insert(0, b'a');
            break;
        }
        i -= 1;
        if bytes[i] == b'z' {
            bytes[i] = b'a';
        } else {
            bytes[i] += 1;
            break;
        }
    }
    *s = String::from_utf8(bytes).unwrap_or_else(|_| "a".to_owned());
}

/// Seconds as the reference's timers take them: an integer when whole.
fn seconds(d: Duration) -> Value {
    if d.subsec_nanos() == 0 {
        Value::from(d.as_secs())
    } else {
        Value::Float(d.as_secs_f64())
    }
}

/// `d` as text: `5`, `0.25`.
fn seconds_text(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        d.as_secs().to_string()
    } else {
        format!("{}", d.as_secs_f64())
    }
}

/// A timeout from the wire: a positive number of seconds (or a string holding one, as Perl
/// may send), cut to [`MAX_TIMEOUT`].
fn parse_timeout(v: &Value) -> Option<Duration> {
    let secs = match v {
        Value::Str(s) => s.trim().parse::<f64>().ok()?,
        v => v.as_f64()?,
    };
    (secs.is_finite() && secs > 0.0)
        .then(|| Duration::from_secs_f64(secs.min(MAX_TIMEOUT.as_secs_f64())))
}

/// The listen addresses of `node` in a `'l` family map (node ID → list of `host:port`);
/// unparsable entries are skipped, an absent or `null` entry gives none.
pub fn listeners_of(family: &Value, node: &str) -> Vec<SocketAddr> {
    crate::global::parse_addrs(family.get(node))
}

impl DataConns {
    /// The data connections of node `me`.
    pub fn new(me: &str, limits: Limits) -> DataConns {
        DataConns {
            me: Str::from(me),
            counter: "a".to_owned(),
            limits,
            entries: HashMap::new(),
            open: 0,
            effects: VecDeque::new(),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Data connections being set up or open.
    pub fn count(&self) -> usize {
        self.entries.len() + self.open
    }

    /// Data connections being set up.
    pub fn pending(&self) -> usize {
        self.entries.len()
    }

    /// The next effect, oldest first.
    pub fn poll_effect(&mut self) -> Option<Effect> {
        self.effects.pop_front()
    }

    /// Whether `id` is being set up.
    pub fn is_pending(&self, id: &str) -> bool {
        self.entries.contains_key(id)
    }

    /// When [`DataConns::handle_timeout`] has something to do next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.entries
            .values()
            .flat_map(|e| {
                let dial = match &e.stage {
                    Stage::Dialing {
                        plan,
                        next,
                        next_at,
                        ..
                    } if *next < plan.len() => Some(*next_at),
                    _ => None,
                };
                [Some(e.deadline), dial]
            })
            .flatten()
            .min()
    }

    fn next_id(&mut self) -> Str {
        increment(&mut self.counter);
        Str::from(format!("{}@{}", self.counter, self.me))
    }

    /// Opens a data connection to `target` in the context of port `port` (a port of this
    /// node): returns its id. `echo_port` is a fresh local port whose first (empty) message
    /// the caller reports with [`DataConns::echoed`]; it is only used when `target` is
    /// another node.
    ///
    /// With `target` this very node there is nothing to set up: the caller connects the two
    /// ends itself and reports it with [`DataConns::local_pair`] (its `Ok(true)` answer).
    /// `Ok(false)`: the request went out. `Err`: too many data connections already; the
    /// [`Effect::Failed`] is queued too, and the id was not used.
    #[allow(clippy::too_many_arguments)]
    pub fn open(
        &mut self,
        target: &str,
        port: PortId,
        init: &str,
        args: Vec<Value>,
        timeout: Duration,
        echo_port: &PortId,
        now: Instant,
    ) -> (Str, Result<bool, Failure>) {
        let id = self.next_id();
        let timeout = timeout.min(MAX_TIMEOUT);
        if self.count() >= self.limits.max {
            let failure = Failure {
                kind: FailureKind::TooMany,
                message: format!(
                    "{}: too many data connections (at most {})",
                    self.me, self.limits.max
                ),
            };
            self.effects.push_back(Effect::Failed {
                id: id.clone(),
                port,
                failure: failure.clone(),
            });
            return (id, Err(failure));
        }
        if target == self.me.as_str() {
            return (id, Ok(true));
        }
        let mut expect = Msg::with_capacity(5 + args.len());
        expect.push(EXPECT);
        expect.push(id.clone());
        expect.push(port.clone());
        expect.push(seconds(timeout));
        expect.push(init);
        expect.0.extend(args);
        let target = Str::from(target);
        self.effects.push_back(Effect::Send {
            node: target.clone(),
            msg: expect,
        });
        self.effects.push_back(Effect::Send {
            node: target.clone(),
            msg: NodeReq::snd(echo_port.clone(), Msg::new()).to_msg(),
        });
        self.entries.insert(
            id.clone(),
            Entry {
                side: Side::Initiator,
                peer: target,
                port,
                init: Str::from(init),
                args: Vec::new(),
                timeout,
                deadline: later(now, timeout),
                stage: Stage::Echo,
                last_error: None,
            },
        );
        (id, Ok(false))
    }

    /// The two ends of a data connection to this very node were handed out (after
    /// [`DataConns::open`] said so): they count as two open streams.
    pub fn local_pair(&mut self) {
        self.open += 2;
    }

    /// The echo of the target's node port arrived for `id`: the target knows the
    /// expectation. Asks for the target's addresses.
    pub fn echoed(&mut self, id: &str) {
        let Some(e) = self.entries.get_mut(id) else {
            return;
        };
        if let (Side::Initiator, Stage::Echo) = (e.side, &e.stage) {
            e.stage = Stage::Lookup;
            self.effects.push_back(Effect::Lookup {
                id: Str::from(id),
                node: e.peer.clone(),
            });
        }
    }

    /// The listen addresses of the other node of `id` (empty: it has none). They are dialled,
    /// one every [`DIAL_STEP`], the first at once; with none, an initiator asks the target to
    /// dial back and a target fails (`no listeners found`).
    pub fn listeners(&mut self, id: &str, addrs: Vec<SocketAddr>, now: Instant) {
        let Some(e) = self.entries.get_mut(id) else {
            return;
        };
        if !matches!(e.stage, Stage::Lookup) {
            return;
        }
        let mut plan = addrs;
        let mut seen = std::collections::HashSet::new();
        plan.retain(|a| seen.insert(*a));
        if !plan.is_empty() {
            e.stage = Stage::Dialing {
                plan,
                next: 0,
                next_at: now,
                in_flight: 0,
            };
            self.dial_due(now);
            return;
        }
        match e.side {
            Side::Initiator => {
                e.stage = Stage::DialBack;
                let msg: Msg = vec![
                    Value::from(CONNECT),
                    Value::from(id),
                    Value::from(self.me.clone()),
                ]
                .into();
                self.effects.push_back(Effect::Send {
                    node: e.peer.clone(),
                    msg,
                });
            }
            Side::Target => {
                let message = format!("{}: no listeners found", e.peer);
                self.fail(id, FailureKind::NoListeners, message);
            }
        }
    }

    /// `_expect` from node `from`: `[id, port, timeout, initfunc, @initdata]`.
    /// `init_known` tells whether an init function of that name is registered here.
    ///
    /// Refused (with a `kil1` of the port, if it is a port of `from`): a malformed request,
    /// an id that is not `<counter>@<from>` or already expected, too many data connections,
    /// an unknown init function.
    pub fn expect(
        &mut self,
        from: &str,
        args: Vec<Value>,
        init_known: impl FnOnce(&str) -> bool,
        now: Instant,
    ) {
        let mut it = args.into_iter();
        let (id, port, timeout, init) = (it.next(), it.next(), it.next(), it.next());
        let port = port
            .as_ref()
            .and_then(Value::as_str)
            .and_then(|p| PortId::parse(p).ok());
        let Some(port) = port.filter(|p| p.node() == from && !p.is_node_port()) else {
            self.effects.push_back(Effect::Ignored(format!(
                "{EXPECT} from {from}: the port is not a port of {from}"
            )));
            return;
        };
        let refuse = |s: &mut DataConns, why: String| {
            s.effects.push_back(Effect::Ignored(format!(
                "{EXPECT} from {from} refused: {why}"
            )));
            s.kill_remote(from, &port, format!("{}: {why}", s.me));
        };
        let id = id.as_ref().and_then(Value::as_str).map(Str::from);
        let Some(id) = id.filter(|id| {
            id.strip_suffix(from)
                .and_then(|c| c.strip_suffix('@'))
                .is_some_and(|c| !c.is_empty())
        }) else {
            return refuse(
                self,
                format!("malformed data connection id (not <n>@{from})"),
            );
        };
        let Some(timeout) = timeout.as_ref().and_then(parse_timeout) else {
            return refuse(self, "malformed timeout".to_owned());
        };
        let Some(init) = init.as_ref().and_then(Value::as_str).map(Str::from) else {
            return refuse(self, "malformed init function name".to_owned());
        };
        if self.entries.contains_key(&id) {
            return refuse(self, format!("data connection {id} is already expected"));
        }
        if self.count() >= self.limits.max {
            return refuse(
                self,
                format!("too many data connections (at most {})", self.limits.max),
            );
        }
        if !init_known(&init) {
            return refuse(self, format!("unable to resolve function '{init}'"));
        }
        self.entries.insert(
            id,
            Entry {
                side: Side::Target,
                peer: Str::from(from),
                port,
                init,
                args: it.collect(),
                timeout,
                deadline: later(now, timeout),
                stage: Stage::Expecting,
                last_error: None,
            },
        );
    }

    /// `_connect` from node `from`: `[id, node]`, the initiator asks us (its target) to dial
    /// it. Ignored unless `id` is expected from `from` and `node` is `from`.
    pub fn connect_request(&mut self, from: &str, args: &[Value]) {
        let id = args.first().and_then(Value::as_str);
        let node = args.get(1).and_then(Value::as_str);
        let (Some(id), Some(node)) = (id, node) else {
            self.effects
                .push_back(Effect::Ignored(format!("{CONNECT} from {from}: malformed")));
            return;
        };
        let ok = self.entries.get(id).is_some_and(|e| {
            e.side == Side::Target
                && e.peer.as_str() == from
                && node == from
                && matches!(e.stage, Stage::Expecting)
        });
        if !ok {
            self.effects.push_back(Effect::Ignored(format!(
                "{CONNECT} from {from}: no data connection {id} expected from it"
            )));
            return;
        }
        if let Some(e) = self.entries.get_mut(id) {
            e.stage = Stage::Lookup;
            self.effects.push_back(Effect::Lookup {
                id: Str::from(id),
                node: Str::from(node),
            });
        }
    }

    /// A connection for `id` authenticated; `peer` is the node at its other end. Hands the
    /// data connection over (it now counts as open until [`DataConns::stream_closed`]), or
    /// says why not (unknown id, another node): the caller closes that connection.
    pub fn authenticated(&mut self, id: &str, peer: &str) -> Result<Handover, String> {
        match self.entries.get(id) {
            None => return Err(format!("no data connection {id} is being set up")),
            Some(e) if e.peer.as_str() != peer => {
                return Err(format!(
                    "data connection {id} is with {}, not with {peer}",
                    e.peer
                ))
            }
            Some(_) => {}
        }
        let Some(e) = self.entries.remove(id) else {
            return Err(format!("no data connection {id} is being set up"));
        };
        self.open += 1;
        Ok(Handover {
            id: Str::from(id),
            side: e.side,
            peer: e.peer,
            port: e.port,
            init: e.init,
            args: e.args,
        })
    }

    /// A dial of `id` failed with `cause`; `auth` when it reached the peer but the handshake
    /// failed (authentication, TLS): that ends the data connection at once. Otherwise it ends
    /// when every address has been dialled and failed (or at the timeout).
    pub fn dial_failed(&mut self, id: &str, cause: &str, auth: bool) {
        let Some(e) = self.entries.get_mut(id) else {
            return;
        };
        let Stage::Dialing {
            plan,
            next,
            in_flight,
            ..
        } = &mut e.stage
        else {
            return;
        };
        *in_flight = in_flight.saturating_sub(1);
        let exhausted = *next >= plan.len() && *in_flight == 0;
        e.last_error = Some(cause.to_owned());
        let peer = e.peer.clone();
        if auth {
            self.fail(id, FailureKind::Handshake, format!("{peer}: {cause}"));
        } else if exhausted {
            self.fail(id, FailureKind::Unreachable, format!("{peer}: {cause}"));
        }
    }

    /// The other node of `id`, while it is being set up.
    pub fn peer_of(&self, id: &str) -> Option<&str> {
        self.entries.get(id).map(|e| e.peer.as_str())
    }

    /// The initiator lost the target's node (`cause`) before its echo came: the requests
    /// are lost, so the data connection fails at once (unreachable). Later it changes
    /// nothing: the data connection does not need the node connection.
    pub fn peer_lost(&mut self, id: &str, cause: &str) {
        let Some(e) = self.entries.get(id) else {
            return;
        };
        if let (Side::Initiator, Stage::Echo) = (e.side, &e.stage) {
            let message = format!("{}: {cause}", e.peer);
            self.fail(id, FailureKind::Unreachable, message);
        }
    }

    /// The initiator's port of `id` died: the data connection is abandoned (nothing is
    /// reported). Returns whether it was being set up.
    pub fn port_died(&mut self, id: &str) -> bool {
        self.entries.remove(id).is_some()
    }

    /// A stream handed over earlier was closed.
    pub fn stream_closed(&mut self) {
        self.open = self.open.saturating_sub(1);
    }

    /// The clock reached `now`: due dials, and timeouts.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.dial_due(now);
        let mut expired: Vec<Str> = self
            .entries
            .iter()
            .filter(|(_, e)| e.deadline <= now)
            .map(|(id, _)| id.clone())
            .collect();
        expired.sort();
        for id in expired {
            let Some(e) = self.entries.get(&id) else {
                continue;
            };
            let message = match e.side {
                Side::Initiator => format!(
                    "{}: unable to establish connection within {} seconds",
                    e.peer,
                    seconds_text(e.timeout)
                ),
                Side::Target => format!(
                    "{}: no data connection arrived within {} seconds",
                    self.me,
                    seconds_text(e.timeout)
                ),
            };
            let message = match &e.last_error {
                Some(cause) => format!("{message} ({cause})"),
                None => message,
            };
            self.fail(&id, FailureKind::Timeout, message);
        }
    }

    /// Fails every data connection being set up (the node has no network, or shuts down).
    pub fn fail_all(&mut self, kind: FailureKind, message: &str) {
        let mut ids: Vec<Str> = self.entries.keys().cloned().collect();
        ids.sort();
        for id in ids {
            self.fail(&id, kind, message.to_owned());
        }
    }

    fn dial_due(&mut self, now: Instant) {
        let mut ids: Vec<&Str> = self.entries.keys().collect();
        ids.sort();
        for id in ids {
            let e = &self.entries[id];
            let Stage::Dialing {
                plan,
                next,
                next_at,
                ..
            } = &e.stage
            else {
                continue;
            };
            if *next >= plan.len() || *next_at > now {
                continue;
            }
            let addr = plan[*next];
            self.effects.push_back(Effect::Dial {
                id: id.clone(),
                addr,
            });
        }
        // Advance the plans whose dial went out (a second pass: the first borrowed them).
        for e in self.entries.values_mut() {
            if let Stage::Dialing {
                plan,
                next,
                next_at,
                in_flight,
            } = &mut e.stage
            {
                if *next < plan.len() && *next_at <= now {
                    *next += 1;
                    *in_flight += 1;
                    *next_at = later(now, DIAL_STEP);
                }
            }
        }
    }

    fn kill_remote(&mut self, node: &str, port: &PortId, message: String) {
        let reason = vec![Value::from(KILL_TAG), Value::from(message)];
        self.effects.push_back(Effect::Send {
            node: Str::from(node),
            msg: NodeReq::kil1(port.name(), reason).to_msg(),
        });
    }

    fn fail(&mut self, id: &str, kind: FailureKind, message: String) {
        let Some(e) = self.entries.remove(id) else {
            return;
        };
        match e.side {
            Side::Initiator => self.effects.push_back(Effect::Failed {
                id: Str::from(id),
                port: e.port,
                failure: Failure { kind, message },
            }),
            Side::Target => self.kill_remote(&e.peer.clone(), &e.port, message),
        }
    }
}

/// `now + d`, saturating at `now` should the clock's range end.
fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d).unwrap_or(now)
}

#[cfg(test)]
mod tests;
