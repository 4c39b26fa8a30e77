//! The connection registry: at most one connection per pair of nodes, even when both nodes
//! dial each other at the same moment. A sans-IO state machine: it is told what happens to
//! each connection (with the current time), and it answers with verdicts and deadlines.
//!
//! # Why the registry exists
//!
//! A node considers a connection *up* as soon as it has verified the peer's auth line. So once
//! a node has sent its own auth line on a connection, the peer may already treat that
//! connection as up, and dropping it would make the peer report a `transport_error` for no
//! reason. Before a connection sends its auth line it therefore asks the registry for a
//! [`Verdict`]: **commit** (send the auth line) or **close**. The connection acts on a commit
//! verdict on its own and reports the sending afterwards ([`Registry::committed`]); in the
//! tokio runtime it is a task of its own, so the auth line may be out long before the registry
//! hears of it. A commit verdict therefore counts as a sent auth line from the moment it is
//! given, and only rule 1 ever takes it back. The rules below are chosen so that both nodes
//! arrive at the same verdicts:
//!
//! 1. When a connection to the peer is up, every other connection to that peer is closed
//!    ("already connected", the reference implementation's answer too).
//! 2. Otherwise nothing is decided while some other connection might still turn out to lead
//!    to the same peer: a dial of ours to that peer (or to an address whose node is not known
//!    yet) that has not received the peer's greeting, or an accepted connection whose
//!    greeting is still missing. Greetings are sent as soon as TCP is up, so this normally
//!    costs one network latency. The wait is bounded: by [`GRACE`] for connections whose peer
//!    is unknown (a client that never greets cannot stall anything), and by the `limit`
//!    given to [`Registry::open`] for dials to a known node.
//! 3. A connection we told to commit is kept, whether or not its auth line is out yet: the
//!    peer considers it up as soon as it sends its own. Failing that, a connection the peer
//!    committed to (its auth line arrived and verified) is kept, because that is the peer's
//!    choice. If such connections exist in both directions, the direction of rule 4 wins.
//!    Connections already told to close count for nothing here. All other connections to
//!    that peer are closed.
//! 4. Otherwise, among the connections whose greeting arrived, those **dialled by the node
//!    with the smaller node ID** win; if there are none, the other direction wins. The node
//!    that dialled commits only one connection of the winning direction (by rule 3 if it
//!    applies, else the oldest), the accepting node commits all of them (the dialler closes
//!    the extra ones before it ever sends an auth line there). All other connections are
//!    closed.
//!
//! Rules 2 and 4 give both nodes the same choice whenever one of them could have seen both
//! connections: a node only commits a connection without knowing of the other one when, by
//! causality, the other node must know of both. What remains is a race in which one node
//! commits a connection before it learns of the other one, and the peer, before that auth line
//! reaches it, decides for the other connection. Rule 3 then makes each node close what the
//! other one kept: both connections close, neither was up anywhere, so nobody sees a spurious
//! `transport_error`. A dial that lost such a contest is retried after
//! [`Registry::redial_delay`].
//!
//! Rule 3 is also what keeps a committed connection alive. A connection is up at a node only
//! when both nodes sent their auth lines on it, and a node never closes a connection it told
//! to commit unless it already has another one up (rule 1). Since each node commits
//! in one direction only, and the dialler of that direction commits one connection only, two
//! different connections can never be up at the two nodes, and no connection that is up at
//! one node is closed by the other one's decision.
//!
//! The caller should not start a dial to a node for which
//! [`Registry::is_connected_or_connecting`] holds.
//!
//! # Driving it
//!
//! * Every event is reported with the current time: [`Registry::open`],
//!   [`Registry::greeted`], [`Registry::committed`], [`Registry::peer_committed`],
//!   [`Registry::established`], [`Registry::closed`].
//! * Changed verdicts are collected with [`Registry::poll_verdict`] after each call; the
//!   current verdict of a connection is also available from [`Registry::verdict`].
//! * When decisions are held back by rule 2, [`Registry::poll_timeout`] tells when to call
//!   [`Registry::handle_timeout`] at the latest.
//!
//! Nothing here reads a clock, spawns a task or draws a random number.

use crate::value::Str;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

/// The close reason of a connection that lost against a simultaneous one.
pub const SIMULTANEOUS: &str = "simultaneous connect: the other connection is kept";

/// How long a connection whose peer is unknown may hold back decisions about others.
pub const GRACE: Duration = Duration::from_millis(500);

/// How many times a node is re-dialled after lost simultaneous connects before the budget is
/// spent (see [`Registry::redial_delay`]); the budget is restored when a connection to it comes
/// up.
pub const MAX_REDIALS: u8 = 5;

/// Shortest pause before a re-dial, in milliseconds.
const REDIAL_MIN_MS: u64 = 50;
/// Width of the random part of the pause before a re-dial, in milliseconds.
const REDIAL_SPREAD_MS: u64 = 300;

/// Close reason for connections to a node that already has one up (rule 1).
const ALREADY_CONNECTED: &str = "already connected, not connecting again";
/// Close reason for a second dial of ours in the winning direction (rule 4).
const DUPLICATE_DIAL: &str = "a connection to that node is already being set up";

/// What a connection may do with its auth line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not decided yet: hold the auth line back.
    Pending,
    /// Send the auth line.
    Commit,
    /// Close the connection, for the given reason. Final.
    Close(&'static str),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Outgoing, peer greeting not received yet.
    Dialing,
    /// Incoming, peer greeting not received yet.
    Accepted,
    /// Greeting received, our auth line not sent.
    Greeted,
    /// Our auth line was sent.
    Committed,
    /// Authenticated both ways.
    Up,
}

#[derive(Debug)]
struct Conn {
    outgoing: bool,
    /// The peer's node ID: from the greeting, or the dial target until the greeting arrives.
    peer: Option<Str>,
    state: State,
    /// When this undetermined connection stops holding back decisions (rule 2); `None` when
    /// the hold has no deadline (a limit too large to represent).
    block_until: Option<Instant>,
    /// Still holding back decisions: undetermined and its deadline not reached yet.
    holding: bool,
    /// The peer's auth line arrived and verified: the peer committed to this connection.
    peer_committed: bool,
    /// Another connection to the same peer existed while this one was being decided.
    contested: bool,
    verdict: Verdict,
}

/// What [`Registry::closed`] reports about the connection that ended.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Closed {
    /// The connection was up (authenticated both ways).
    pub was_up: bool,
    /// Another connection to the same peer competed with it; a dial that lost such a
    /// contest may be retried (see [`Registry::redial_delay`]).
    pub contested: bool,
}

/// The connection registry of one node (see the module docs).
#[derive(Debug)]
pub struct Registry {
    me: Str,
    conns: BTreeMap<u64, Conn>,
    /// Verdict changes not yet taken by [`Registry::poll_verdict`].
    changes: VecDeque<(u64, Verdict)>,
    /// Re-dials used per peer since its last connection came up.
    redials: BTreeMap<Str, u8>,
    // Indexes, so that no event costs a scan of every connection (a seed node may accept
    // a thousand connections at once).
    /// The connections of each peer (by `Conn::peer`).
    by_peer: BTreeMap<Str, BTreeSet<u64>>,
    /// Connections holding back decisions (`Conn::holding`) that have a deadline, by it.
    expiry: BTreeSet<(Instant, u64)>,
    /// Connections holding back decisions about every peer: accepted ones, and dials to an
    /// unknown node.
    unknown: BTreeSet<u64>,
    /// Greeted connections whose verdict is still pending.
    undecided: BTreeSet<u64>,
}

/// One connection of the peer being evaluated, as far as the rules care.
struct Candidate {
    id: u64,
    outgoing: bool,
    up: bool,
    /// We told it to send its auth line (it may have, even if not reported yet).
    ours: bool,
    /// Committed by us or by the peer (rule 3).
    sticky: bool,
    /// Already told to close.
    closing: bool,
}

/// The direction (true: outgoing) shared by `conns`; `tie` when they have both; `None` when
/// there are none.
fn common_direction<'a>(mut conns: impl Iterator<Item = &'a Candidate>, tie: bool) -> Option<bool> {
    let first = conns.next()?.outgoing;
    Some(if conns.all(|m| m.outgoing == first) {
        first
    } else {
        tie
    })
}

impl Registry {
    /// An empty registry for the node `me`.
    pub fn new(me: &str) -> Registry {
        Registry {
            me: Str::from(me),
            conns: BTreeMap::new(),
            changes: VecDeque::new(),
            redials: BTreeMap::new(),
            by_peer: BTreeMap::new(),
            expiry: BTreeSet::new(),
            unknown: BTreeSet::new(),
            undecided: BTreeSet::new(),
        }
    }

    /// Ends the hold of connection `id` (greeted, or its deadline passed).
    fn stop_holding(&mut self, id: u64) {
        if let Some(c) = self.conns.get_mut(&id) {
            if c.holding {
                c.holding = false;
                if let Some(t) = c.block_until {
                    self.expiry.remove(&(t, id));
                }
                self.unknown.remove(&id);
            }
        }
    }

    /// Forgets connection `id`, which was just removed from `conns`, in every index.
    fn unindex(&mut self, id: u64, c: &Conn) {
        self.index_remove(c.peer.as_ref(), id);
        if let Some(t) = c.block_until {
            self.expiry.remove(&(t, id));
        }
        self.unknown.remove(&id);
        self.undecided.remove(&id);
    }

    /// Checks the indexes against the connections (tests).
    #[cfg(test)]
    pub(crate) fn check_indexes(&self) {
        for (id, c) in &self.conns {
            if let Some(p) = &c.peer {
                assert!(self.by_peer[p].contains(id), "by_peer {id}");
            }
            let expiring = c.holding && c.block_until.is_some();
            assert_eq!(
                c.block_until
                    .is_some_and(|t| self.expiry.contains(&(t, *id))),
                expiring,
                "expiry {id}"
            );
            let unknown = c.holding
                && match c.state {
                    State::Accepted => true,
                    State::Dialing => c.peer.is_none(),
                    _ => false,
                };
            assert_eq!(self.unknown.contains(id), unknown, "unknown {id}");
            let undecided = c.state == State::Greeted && c.verdict == Verdict::Pending;
            assert_eq!(self.undecided.contains(id), undecided, "undecided {id}");
        }
        let n: usize = self.by_peer.values().map(|s| s.len()).sum();
        assert!(self.by_peer.values().all(|s| !s.is_empty()));
        assert_eq!(
            n,
            self.conns.values().filter(|c| c.peer.is_some()).count(),
            "by_peer size"
        );
        assert!(self.expiry.len() <= self.conns.len());
        assert!(self.unknown.len() <= self.conns.len());
        assert!(self.undecided.len() <= self.conns.len());
    }

    /// Records `id` among the connections of `peer`.
    fn index_add(&mut self, peer: Option<&Str>, id: u64) {
        if let Some(p) = peer {
            self.by_peer.entry(p.clone()).or_default().insert(id);
        }
    }

    /// Forgets `id` among the connections of `peer`.
    fn index_remove(&mut self, peer: Option<&Str>, id: u64) {
        if let Some(p) = peer {
            if let Some(ids) = self.by_peer.get_mut(p) {
                ids.remove(&id);
                if ids.is_empty() {
                    self.by_peer.remove(p);
                }
            }
        }
    }

    /// The connections whose peer is `peer`.
    fn of_peer<'a>(&'a self, peer: &str) -> impl Iterator<Item = (u64, &'a Conn)> + 'a {
        self.by_peer
            .get(peer)
            .into_iter()
            .flatten()
            .filter_map(|id| self.conns.get(id).map(|c| (*id, c)))
    }

    /// True when a connection to `peer` is up.
    pub fn is_up(&self, peer: &str) -> bool {
        self.of_peer(peer).any(|(_, c)| c.state == State::Up)
    }

    /// True when a connection to `peer` is being dialled or exists past its greeting (so
    /// dialling it again is pointless).
    pub fn is_connected_or_connecting(&self, peer: &str) -> bool {
        self.of_peer(peer).any(|(_, c)| {
            matches!(
                c.state,
                State::Dialing | State::Greeted | State::Committed | State::Up
            )
        })
    }

    /// The current verdict of connection `id` (also when the change has not been polled
    /// yet); `None` for an unknown connection.
    pub fn verdict(&self, id: u64) -> Option<Verdict> {
        self.conns.get(&id).map(|c| c.verdict)
    }

    /// The peer of connection `id`: from its greeting, or the dial target before that.
    pub fn peer_of(&self, id: u64) -> Option<&str> {
        self.conns.get(&id).and_then(|c| c.peer.as_deref())
    }

    /// Takes the next verdict change, oldest first. Every change is reported once; a
    /// [`Verdict::Close`] is never followed by another verdict for the same connection, and
    /// changes still queued for a connection are dropped when it is [`closed`](Self::closed).
    pub fn poll_verdict(&mut self) -> Option<(u64, Verdict)> {
        self.changes.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called at the latest: the
    /// earliest deadline among the connections that still hold back a pending decision
    /// (rule 2). `None` when no decision waits for a deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.undecided.is_empty() {
            return None;
        }
        let waiting = |p: &str| self.of_peer(p).any(|(id, _)| self.undecided.contains(&id));
        // Holding connections are accepted or dialling (greeted ones stopped holding).
        self.expiry
            .iter()
            .find(|(_, id)| {
                self.conns.get(id).is_some_and(|c| match c.state {
                    State::Accepted => true,
                    State::Dialing => c.peer.as_deref().is_none_or(waiting),
                    _ => false,
                })
            })
            .map(|(t, _)| *t)
    }

    /// Time passed: connections whose hold expired by `now` stop holding back decisions, and
    /// everything waiting is decided again.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.expire(now);
        self.evaluate_all();
    }

    /// Registers a new connection. `target` is the node an outgoing dial is meant for, if
    /// known; `limit` bounds how long such a dial holds back decisions about other
    /// connections (connections with no known target hold them back for [`GRACE`]).
    /// Connection ids must be unique; re-using the id of a connection that is still
    /// registered replaces it.
    pub fn open(
        &mut self,
        id: u64,
        outgoing: bool,
        target: Option<Str>,
        limit: Duration,
        now: Instant,
    ) {
        let expired = self.expire(now);
        let hold = if target.is_some() { limit } else { GRACE };
        if let Some(old) = self.conns.remove(&id) {
            self.unindex(id, &old);
            self.changes.retain(|(i, _)| *i != id);
        }
        self.index_add(target.as_ref(), id);
        let block_until = now.checked_add(hold);
        if let Some(t) = block_until {
            self.expiry.insert((t, id));
        }
        if !outgoing || target.is_none() {
            self.unknown.insert(id);
        }
        self.conns.insert(
            id,
            Conn {
                outgoing,
                peer: target,
                state: if outgoing {
                    State::Dialing
                } else {
                    State::Accepted
                },
                block_until,
                holding: true,
                peer_committed: false,
                contested: false,
                verdict: Verdict::Pending,
            },
        );
        if expired {
            self.evaluate_all();
        }
    }

    /// The peer's greeting arrived on connection `id`: its node ID is `peer`. Ignored for an
    /// unknown connection or one that was already greeted.
    pub fn greeted(&mut self, id: u64, peer: &str, now: Instant) {
        let expired = self.expire(now);
        let target = match self.conns.get_mut(&id) {
            Some(c) if matches!(c.state, State::Dialing | State::Accepted) => {
                c.state = State::Greeted;
                let target = c.peer.replace(Str::from(peer));
                if c.verdict == Verdict::Pending {
                    self.undecided.insert(id);
                }
                self.stop_holding(id);
                if target.as_deref() != Some(peer) {
                    self.index_remove(target.as_ref(), id);
                    self.index_add(Some(&Str::from(peer)), id);
                }
                target
            }
            _ => {
                if expired {
                    self.evaluate_all();
                }
                return;
            }
        };
        // Decisions this connection held back: for its peer if it was a dial to that peer,
        // for any peer otherwise.
        let all = expired || target.as_deref() != Some(peer);
        self.reevaluate(Some(peer), all);
    }

    /// Our auth line was sent on `id` (or is about to be). Succeeds only while the verdict is
    /// [`Verdict::Commit`]; `Err` gives the close reason, or why it is not allowed yet. A
    /// caller that checks before sending must not send on `Err`. A caller that sends on the
    /// verdict it was given and reports afterwards (a connection task) may find it `Err` only
    /// when rule 1 closed the connection meanwhile: a commit verdict is never taken back
    /// otherwise (see the module docs).
    pub fn committed(&mut self, id: u64) -> Result<(), &'static str> {
        let Some(c) = self.conns.get_mut(&id) else {
            return Err("connection unknown");
        };
        match c.verdict {
            Verdict::Commit => {
                c.state = State::Committed;
                // Rule 3 may now decide another connection to this peer that waits.
                if let Some(p) = c.peer.clone() {
                    let unknown = self.unknown_holding();
                    self.evaluate(&p, unknown);
                }
                Ok(())
            }
            Verdict::Close(why) => Err(why),
            Verdict::Pending => Err("not decided yet"),
        }
    }

    /// The peer's auth line arrived and verified on `id` (ours may still be held back).
    pub fn peer_committed(&mut self, id: u64, now: Instant) {
        let expired = self.expire(now);
        let peer = match self.conns.get_mut(&id) {
            Some(c) => {
                c.peer_committed = true;
                c.peer.clone()
            }
            None => None,
        };
        self.reevaluate(peer.as_deref(), expired);
    }

    /// Connection `id` is authenticated both ways. Fails, with the reason, when it must close
    /// instead. On success the re-dial budget of its peer is restored and every other
    /// connection to that peer is closed.
    pub fn established(&mut self, id: u64, now: Instant) -> Result<(), &'static str> {
        let expired = self.expire(now);
        let result = match self.conns.get_mut(&id) {
            None => Err("connection unknown"),
            Some(c) => match c.verdict {
                Verdict::Close(why) => Err(why),
                _ => {
                    c.state = State::Up;
                    Ok(c.peer.clone())
                }
            },
        };
        match result {
            Ok(peer) => {
                if let Some(p) = &peer {
                    self.redials.remove(p);
                }
                self.reevaluate(peer.as_deref(), expired);
                Ok(())
            }
            Err(why) => {
                if expired {
                    self.evaluate_all();
                }
                Err(why)
            }
        }
    }

    /// Connection `id` ended: tells whether it was up, and whether it competed with another
    /// connection to the same peer. Verdict changes for it that were not polled yet are
    /// dropped. Unknown ids report `Closed::default()`.
    pub fn closed(&mut self, id: u64, now: Instant) -> Closed {
        let expired = self.expire(now);
        let Some(c) = self.conns.remove(&id) else {
            if expired {
                self.evaluate_all();
            }
            return Closed::default();
        };
        self.changes.retain(|(i, _)| *i != id);
        self.unindex(id, &c);
        match &c.peer {
            // A greeted connection only concerned its own peer.
            Some(p) if c.state != State::Dialing => self.reevaluate(Some(p), expired),
            // An undetermined one may have held back anybody.
            _ => self.evaluate_all(),
        }
        Closed {
            was_up: c.state == State::Up,
            contested: c.contested,
        }
    }

    /// A dial of ours to `peer` lost a contest ([`Closed::contested`]) and no connection to
    /// `peer` came up: how long to wait before dialling again, or `None` when the
    /// [`MAX_REDIALS`] budget for `peer` is spent. `rand` is any random number; the pause is
    /// 50 ms plus `rand % 300` ms, so that the two nodes do not collide again.
    pub fn redial_delay(&mut self, peer: &str, rand: u64) -> Option<Duration> {
        let used = self.redials.entry(Str::from(peer)).or_insert(0);
        if *used >= MAX_REDIALS {
            return None;
        }
        *used += 1;
        Some(Duration::from_millis(
            REDIAL_MIN_MS + rand % REDIAL_SPREAD_MS,
        ))
    }

    /// Ends the hold of undetermined connections whose deadline is reached at `now`; true if
    /// any ended (then waiting decisions must be looked at again).
    fn expire(&mut self, now: Instant) -> bool {
        let mut any = false;
        while let Some(&(t, id)) = self.expiry.first() {
            if t > now {
                break;
            }
            self.expiry.pop_first();
            self.stop_holding(id);
            any = true;
        }
        any
    }

    /// Evaluates `peer` (if any), and every waiting peer when `all` is set.
    fn reevaluate(&mut self, peer: Option<&str>, all: bool) {
        if let Some(p) = peer {
            let unknown = self.unknown_holding();
            self.evaluate(p, unknown);
        }
        if all {
            self.evaluate_all();
        }
    }

    /// Decides every peer that has connections waiting for a verdict.
    ///
    /// Nothing to do while a connection with an unknown peer holds back every decision:
    /// rules 1 and 3 depend only on a peer's own connections, and every change to those
    /// re-decides that peer at once, so only rule 4 could have anything new to say.
    fn evaluate_all(&mut self) {
        let unknown = self.unknown_holding();
        if unknown {
            return;
        }
        let peers: Vec<Str> = self
            .by_peer
            .iter()
            .filter(|(_, ids)| {
                ids.iter().any(|id| {
                    self.conns
                        .get(id)
                        .is_some_and(|c| c.state == State::Greeted)
                })
            })
            .map(|(p, _)| p.clone())
            .collect();
        for p in peers {
            self.evaluate(&p, unknown);
        }
    }

    /// True when an undetermined connection whose peer is unknown holds back decisions
    /// about every peer (rule 2).
    fn unknown_holding(&self) -> bool {
        !self.unknown.is_empty()
    }

    /// True when an undetermined connection might still lead to `peer` (rule 2);
    /// `unknown` is [`Registry::unknown_holding`].
    fn blocked(&self, peer: &str, unknown: bool) -> bool {
        unknown
            || self
                .of_peer(peer)
                .any(|(_, c)| c.holding && c.state == State::Dialing)
    }

    /// Applies the rules of the module docs to the connections of `peer`; `unknown` is
    /// [`Registry::unknown_holding`].
    fn evaluate(&mut self, peer: &str, unknown: bool) {
        let mine: Vec<Candidate> = self
            .of_peer(peer)
            .filter(|(_, c)| matches!(c.state, State::Greeted | State::Committed | State::Up))
            .map(|(id, c)| Candidate {
                id,
                outgoing: c.outgoing,
                up: c.state == State::Up,
                // A commit verdict may already have sent the auth line (module docs).
                ours: c.state == State::Committed || c.verdict == Verdict::Commit,
                sticky: c.state == State::Committed
                    || c.verdict == Verdict::Commit
                    || c.peer_committed,
                closing: matches!(c.verdict, Verdict::Close(_)),
            })
            .collect();
        if mine.is_empty() {
            return;
        }
        if mine.len() > 1 {
            for m in &mine {
                if let Some(c) = self.conns.get_mut(&m.id) {
                    c.contested = true;
                }
            }
        }
        // Rule 1.
        if let Some(up) = mine.iter().find(|m| m.up).map(|m| m.id) {
            for m in mine.iter().filter(|m| m.id != up) {
                self.decide(m.id, Verdict::Close(ALREADY_CONNECTED));
            }
            return;
        }
        let win_outgoing = self.me.as_str() < peer;
        // Rule 3: what we committed to comes first, then what the peer committed to; a
        // connection already told to close counts for nothing.
        let ours = mine.iter().filter(|m| m.ours && !m.closing);
        let theirs = mine.iter().filter(|m| m.sticky && !m.closing);
        let dir = match common_direction(ours, win_outgoing)
            .or_else(|| common_direction(theirs, win_outgoing))
        {
            Some(dir) => dir,
            None => {
                // Rule 2.
                if self.blocked(peer, unknown) {
                    return;
                }
                // Rule 4: the direction dialled by the smaller node ID wins, if present.
                if mine.iter().any(|m| m.outgoing == win_outgoing) {
                    win_outgoing
                } else {
                    !win_outgoing
                }
            }
        };
        // Of our own dials in that direction we keep one: the one we sent our auth line on,
        // else one the peer committed to, else the oldest; never one already closed.
        let own_keep = mine
            .iter()
            .filter(|m| m.outgoing && !m.closing)
            .min_by_key(|m| (!m.ours, !m.sticky, m.id))
            .map(|m| m.id);
        for m in &mine {
            let v = if m.outgoing != dir {
                Verdict::Close(SIMULTANEOUS)
            } else if m.outgoing && Some(m.id) != own_keep {
                Verdict::Close(DUPLICATE_DIAL)
            } else {
                Verdict::Commit
            };
            self.decide(m.id, v);
        }
    }

    /// Sets the verdict of `id`, recording the change; a close is never revised, and a commit
    /// only by rule 1.
    fn decide(&mut self, id: u64, v: Verdict) {
        if let Some(c) = self.conns.get_mut(&id) {
            if c.verdict == v || matches!(c.verdict, Verdict::Close(_)) {
                return;
            }
            debug_assert!(
                c.verdict != Verdict::Commit || v == Verdict::Close(ALREADY_CONNECTED),
                "a commit verdict taken back: {id} {v:?}"
            );
            c.verdict = v;
            self.undecided.remove(&id);
            self.changes.push_back((id, v));
        }
    }
}

#[cfg(test)]
mod tests;
