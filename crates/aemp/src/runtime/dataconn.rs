//! The node task's side of data connections: feeds `aemp_proto::dataconn::DataConns` with
//! the user's requests, node-port requests, echoes, look-ups and connection events, and
//! carries out its effects (sends, look-ups, dials, kills, hand-overs).

use super::host::NodeHost;
use super::{Cmd, Core};
use crate::error::DataConnError;
use crate::kernel::monitor::{Monitor, Reason};
use crate::kernel::{Host, MonRequest, Task};
use crate::transport::dataconn::{DataConn, DataEvent, DataInitFn};
use aemp_proto::dataconn::{self, DataConns, Effect, Side, KILL_TAG};
use aemp_proto::db::names::Family;
use aemp_proto::global::QueryKind;
use aemp_proto::{NodeId, PortId, Str, Value};
use rustc_hash::FxHashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::oneshot;

/// Where the result of an opened data connection goes.
type Reply = oneshot::Sender<Result<DataConn, DataConnError>>;

/// A data connection to open: what [`DcCmd::Open`] carries to the node task.
pub(crate) struct OpenRequest {
    pub target: NodeId,
    /// The port context; `None`: a fresh port.
    pub port: Option<PortId>,
    pub init: Str,
    pub args: Vec<Value>,
    pub timeout: Duration,
    pub reply: Reply,
}

/// Data connection work for the node task.
pub(crate) enum DcCmd {
    /// Open a data connection (from a node handle or a handler).
    Open(OpenRequest),
    /// Register an init function.
    Register { name: Str, f: DataInitFn },
    /// The echo of the target's node port arrived.
    Echoed(Str),
    /// The initiating port died.
    PortDied(Str, Reason),
    /// The target's node was lost before the echo came.
    PeerLost(Str, Reason),
    /// The answer to the look-up of a node's addresses: the `'l` family.
    Listeners(Str, Value),
    /// A stream handed out was dropped.
    StreamClosed,
}

/// An opened data connection, as the node task follows it.
struct Waiter {
    reply: Reply,
    port: PortId,
    /// The port was made for this request (killed when it ends).
    own_port: bool,
    /// The echo port's name.
    echo: Str,
    /// The monitor of the port, and of the target's node.
    mon: u64,
    node_mon: u64,
}

/// The node task's data connection state.
pub(super) struct DcState {
    machine: DataConns,
    waiters: FxHashMap<Str, Waiter>,
    inits: FxHashMap<Str, DataInitFn>,
}

impl DcState {
    pub(super) fn new(me: &str, limits: dataconn::Limits) -> DcState {
        DcState {
            machine: DataConns::new(me, limits),
            waiters: FxHashMap::default(),
            inits: FxHashMap::default(),
        }
    }

    pub(super) fn poll_timeout(&self) -> Option<std::time::Instant> {
        self.machine.poll_timeout()
    }
}

/// Queues `cmd` on the node, if it still exists.
fn push(core: &Weak<Core>, cmd: DcCmd) {
    if let Some(core) = core.upgrade() {
        core.push(Cmd::DataConn(Box::new(cmd)));
    }
}

impl NodeHost {
    /// A data connection command.
    pub(super) fn data_conn(&mut self, cmd: DcCmd) {
        self.refresh_now();
        match cmd {
            DcCmd::Open(req) => self.dc_open(req),
            DcCmd::Register { name, f } => {
                self.dc.inits.insert(name, f);
            }
            DcCmd::Echoed(id) => self.dc.machine.echoed(&id),
            DcCmd::PortDied(id, reason) => {
                if self.dc.machine.port_died(&id) {
                    let err = match reason.as_slice() {
                        [tag, msg, ..] if tag.as_str() == Some(KILL_TAG) => {
                            DataConnError::Refused(msg.as_str().unwrap_or_default().to_owned())
                        }
                        [tag] if tag.as_str() == Some(KILL_TAG) => {
                            DataConnError::Refused(String::new())
                        }
                        _ => DataConnError::PortDied(reason),
                    };
                    self.dc_finish(&id, Err(err), None);
                }
            }
            DcCmd::PeerLost(id, reason) => {
                // `("transport_error", node, text)`: the text says it all.
                let text = match reason.as_slice() {
                    [tag, _, text, ..] if tag.as_str() == Some("transport_error") => text
                        .as_str()
                        .map_or_else(|| text.to_string(), str::to_owned),
                    _ => reason.to_string(),
                };
                self.dc.machine.peer_lost(&id, &text);
            }
            DcCmd::Listeners(id, family) => {
                let node = self.dc_lookup_node(&id);
                let addrs = node.map_or_else(Vec::new, |n| dataconn::listeners_of(&family, &n));
                let now = self.now();
                self.dc.machine.listeners(&id, addrs, now);
            }
            DcCmd::StreamClosed => self.dc.machine.stream_closed(),
        }
        self.dc_drain();
    }

    /// The node whose addresses a data connection looks up (its peer).
    fn dc_lookup_node(&self, id: &str) -> Option<Str> {
        self.dc.machine.peer_of(id).map(Str::from)
    }

    /// A data connection event of the transport.
    pub(super) fn data_event(&mut self, ev: DataEvent) {
        self.refresh_now();
        match ev {
            DataEvent::Up {
                id,
                peer,
                addr,
                outgoing,
                stream,
            } => self.dc_up(id, peer, addr, outgoing, stream),
            DataEvent::Failed {
                id,
                cause,
                handshake,
            } => self.dc.machine.dial_failed(&id, &cause, handshake),
        }
        self.dc_drain();
    }

    /// `_expect` or `_connect` from node `from`.
    pub(super) fn data_conn_request(&mut self, from: &NodeId, func: &str, args: Vec<Value>) {
        self.refresh_now();
        let now = self.now();
        if func == dataconn::EXPECT {
            let inits = &self.dc.inits;
            self.dc
                .machine
                .expect(from.as_str(), args, |f| inits.contains_key(f), now);
        } else {
            self.dc.machine.connect_request(from.as_str(), &args);
        }
        self.dc_drain();
    }

    /// The clock passed a deadline.
    pub(super) fn dc_tick(&mut self) {
        let now = self.now();
        self.dc.machine.handle_timeout(now);
        self.dc_drain();
    }

    fn dc_open(&mut self, req: OpenRequest) {
        let OpenRequest {
            target,
            port,
            init,
            args,
            timeout,
            reply,
        } = req;
        let shared = self.core.shared.clone();
        let me = shared.id.clone();
        let (port, own_port) = match port {
            Some(p) => (p, false),
            None => {
                let name = shared.namer.next_local();
                self.postpone(Task::CreatePort {
                    name: name.clone(),
                    default: None,
                    tags: Vec::new(),
                });
                (me.port(&name), true)
            }
        };
        if self.transport().is_none() && target != me {
            self.postpone(Task::Kill {
                port: Str::from(port.name()),
                reason: Reason::from(vec![
                    Value::from(KILL_TAG),
                    Value::from(DataConnError::NoNetwork.message()),
                ]),
            });
            let _ = reply.send(Err(DataConnError::NoNetwork));
            return;
        }
        let echo = shared.namer.next_local();
        let now = self.now();
        let (id, opened) = self.dc.machine.open(
            target.as_str(),
            port.clone(),
            &init,
            args.clone(),
            timeout,
            &me.port(&echo),
            now,
        );
        let core = Arc::downgrade(&self.core);
        match opened {
            Err(_) => {
                // The machine queued the failure: the waiter takes it.
                self.dc.waiters.insert(
                    id,
                    Waiter {
                        reply,
                        port,
                        own_port,
                        echo,
                        mon: 0,
                        node_mon: 0,
                    },
                );
            }
            Ok(true) => self.dc_local(&me, &id, port, own_port, &init, args, reply),
            Ok(false) => {
                let c = core.clone();
                let eid = id.clone();
                self.postpone(Task::CreatePort {
                    name: echo.clone(),
                    default: Some(Box::new(move |cx, _m| {
                        push(&c, DcCmd::Echoed(eid.clone()));
                        cx.kil_self(Reason::normal());
                        Ok(())
                    })),
                    tags: Vec::new(),
                });
                let mon = shared.next_guard();
                let (c, pid) = (core.clone(), id.clone());
                self.postpone(Task::Mon(Box::new(MonRequest {
                    port: port.clone(),
                    id: mon,
                    action: Monitor::callback(move |r| push(&c, DcCmd::PortDied(pid, r))),
                })));
                let node_mon = shared.next_guard();
                let (c, pid) = (core, id.clone());
                self.postpone(Task::Mon(Box::new(MonRequest {
                    port: target.node_port(),
                    id: node_mon,
                    action: Monitor::callback(move |r| push(&c, DcCmd::PeerLost(pid, r))),
                })));
                self.dc.waiters.insert(
                    id,
                    Waiter {
                        reply,
                        port,
                        own_port,
                        echo,
                        mon,
                        node_mon,
                    },
                );
            }
        }
    }

    /// A data connection to this very node: a connected pair, no network.
    #[allow(clippy::too_many_arguments)]
    fn dc_local(
        &mut self,
        me: &NodeId,
        id: &str,
        port: PortId,
        own_port: bool,
        init: &str,
        args: Vec<Value>,
        reply: Reply,
    ) {
        let Some(f) = self.dc.inits.get(init).cloned() else {
            let message = format!("{me}: unable to resolve function '{init}'");
            self.postpone(Task::Kill {
                port: Str::from(port.name()),
                reason: Reason::from(vec![Value::from(KILL_TAG), Value::from(message.clone())]),
            });
            let _ = reply.send(Err(DataConnError::Refused(message)));
            return;
        };
        let (mut mine, mut theirs) = DataConn::local_pair(me, id);
        self.dc.machine.local_pair();
        for end in [&mut mine, &mut theirs] {
            let core = Arc::downgrade(&self.core);
            end.set_on_drop(move || push(&core, DcCmd::StreamClosed));
        }
        if own_port {
            self.postpone(Task::Kill {
                port: Str::from(port.name()),
                reason: Reason::normal(),
            });
        }
        call_init(init, &f, theirs, args);
        let _ = reply.send(Ok(mine));
    }

    fn dc_up(
        &mut self,
        id: Str,
        peer: NodeId,
        addr: std::net::SocketAddr,
        outgoing: bool,
        mut stream: DataConn,
    ) {
        match self.dc.machine.authenticated(&id, peer.as_str()) {
            Err(why) => {
                // An authenticated peer with an id nobody expects (or a stray dial that came
                // after its data connection was done): the connection is closed.
                if outgoing {
                    tracing::debug!(%peer, %id, "data connection not used: {why}");
                } else if let Some(t) = self.transport() {
                    t.refused_handshake(addr, Some(&peer), &format!("data connection: {why}"));
                }
            }
            Ok(h) => {
                let core = Arc::downgrade(&self.core);
                stream.set_on_drop(move || push(&core, DcCmd::StreamClosed));
                match h.side {
                    Side::Initiator => self.dc_finish(&id, Ok(stream), None),
                    Side::Target => match self.dc.inits.get(&h.init).cloned() {
                        Some(f) => call_init(&h.init, &f, stream, h.args),
                        None => {
                            tracing::warn!(init = %h.init, "data connection init function vanished")
                        }
                    },
                }
            }
        }
    }

    /// An opened data connection ended (`kill`: the reason for its port, if it failed).
    fn dc_finish(
        &mut self,
        id: &str,
        result: Result<DataConn, DataConnError>,
        kill: Option<Reason>,
    ) {
        let Some(w) = self.dc.waiters.remove(id) else {
            return;
        };
        for mon in [w.mon, w.node_mon] {
            if mon != 0 {
                self.postpone(Task::Unmon(mon));
            }
        }
        self.postpone(Task::Kill {
            port: w.echo,
            reason: Reason::normal(),
        });
        match kill {
            Some(reason) => self.postpone(Task::Kill {
                port: Str::from(w.port.name()),
                reason,
            }),
            None if w.own_port => self.postpone(Task::Kill {
                port: Str::from(w.port.name()),
                reason: Reason::normal(),
            }),
            None => {}
        }
        // A dropped receiver drops the stream (which reports itself closed).
        let _ = w.reply.send(result);
    }

    /// Carries out the machine's effects.
    fn dc_drain(&mut self) {
        self.timers_dirty = true;
        while let Some(e) = self.dc.machine.poll_effect() {
            match e {
                // Through the kernel's queue: behind the echo port and the monitors
                // queued for the same data connection.
                Effect::Send { node, msg } => self.postpone(Task::Send {
                    port: PortId::from_parts(&node, ""),
                    msg,
                }),
                Effect::Lookup { id, node } => {
                    let known = self.known_addresses(&node);
                    if known.is_empty() {
                        let core = Arc::downgrade(&self.core);
                        self.db_query_raw(QueryKind::Family, &Family::listeners(), move |v| {
                            push(&core, DcCmd::Listeners(id, v))
                        });
                    } else {
                        let now = self.now();
                        self.dc.machine.listeners(&id, known, now);
                    }
                }
                Effect::Dial { id, addr } => match self.transport() {
                    Some(t) => t.dial_data(addr, id),
                    None => self.dc.machine.dial_failed(&id, "no network", false),
                },
                Effect::Failed { id, port, failure } => {
                    let reason = Reason::from(vec![
                        Value::from(KILL_TAG),
                        Value::from(failure.message.clone()),
                    ]);
                    if self.dc.waiters.contains_key(&id) {
                        let err = DataConnError::from_failure(failure);
                        self.dc_finish(&id, Err(err), Some(reason));
                    } else {
                        self.postpone(Task::Kill {
                            port: Str::from(port.name()),
                            reason,
                        });
                    }
                }
                Effect::Ignored(text) => tracing::warn!("{text}"),
            }
        }
    }
}

/// Runs an init function (a panic is logged; the stream it got is dropped with it).
fn call_init(name: &str, f: &DataInitFn, stream: DataConn, args: Vec<Value>) {
    if catch_unwind(AssertUnwindSafe(|| f(stream, args))).is_err() {
        tracing::warn!(init = %name, "data connection init function panicked");
    }
}
