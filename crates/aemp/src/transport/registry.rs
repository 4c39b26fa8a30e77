//! One connection per pair of nodes, even when both dial each other at once.
//!
//! A connection is *up* at a node once that node has verified the peer's auth line, so a node
//! must never drop a connection on which it already sent its own auth line and which the peer
//! may consider up. The registry therefore decides, for every connection, whether it may
//! **commit** (send its auth line) or must **close**, and both nodes reach the same decision:
//!
//! 1. If a connection to the peer is up, every other one is closed ("already connected",
//!    as the reference does).
//! 2. Otherwise no decision is taken while another connection that might lead to the same
//!    peer is still undetermined: one of our dials to that peer (or to an address whose node
//!    we do not know yet) that has not received the peer's greeting, or an accepted
//!    connection whose greeting has not arrived. The peer sends its greeting as soon as TCP
//!    is up, so this wait is one network latency; it is bounded by [`GRACE`] for connections
//!    whose peer is unknown (a silent client cannot stall us).
//! 3. A connection that is already committed, by us or by the peer (its auth line arrived
//!    and verified), is kept: the other side may consider it up, so dropping it could raise a
//!    spurious `transport_error` there. Newer connections to that peer are closed.
//! 4. Otherwise, of the connections whose greeting arrived, those **dialled by the node with
//!    the smaller node ID** win (if there are any, else the others). The dialling side
//!    commits only its oldest connection of that direction; the accepting side commits all of
//!    them (the dialler closes the extra ones before sending an auth line). Everything else
//!    is closed.
//!
//! Rules 2 and 4 make both nodes choose the same connection whenever either had a chance to
//! see both: a node can only commit a connection without knowing of the other one if the
//! other node, by causality, must know of both. The one remaining race (each node committed
//! a different connection, each without knowing of the other, which needs the peer's
//! greeting to overtake an accept on the other connection) ends with both connections
//! closed, never with a spurious `transport_error`; the dial is then simply retried.
//!
//! A dial to a node we are already connected or connecting to is not started at all.

use aemp_proto::Str;
use rustc_hash::FxHashMap;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The close reason of a connection that lost against a simultaneous one.
pub(crate) const SIMULTANEOUS: &str = "simultaneous connect: the other connection is kept";

/// How long a connection whose peer is unknown may hold back decisions about others.
pub(crate) const GRACE: Duration = Duration::from_millis(500);

/// What a connection may do with its auth line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Pending,
    Commit,
    Close(&'static str),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Outgoing, peer greeting not received yet.
    Dialing,
    /// Incoming, peer greeting not received yet.
    Accepted,
    /// Greeting received, auth line not sent.
    Greeted,
    /// Our auth line was sent.
    Committed,
    /// Authenticated both ways.
    Up,
}

struct Conn {
    outgoing: bool,
    peer: Option<Str>,
    state: State,
    /// Until when this undetermined connection holds back decisions (see rule 2).
    block_until: Instant,
    /// The peer's auth line arrived and verified: the peer committed to this connection.
    peer_committed: bool,
    /// Another connection to the same peer existed while this one was being decided.
    contested: bool,
    verdict: watch::Sender<Verdict>,
}

/// What [`Registry::closed`] reports.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Closed {
    pub was_up: bool,
    pub contested: bool,
}

pub(crate) struct Registry {
    me: Str,
    conns: FxHashMap<u64, Conn>,
}

impl Registry {
    pub(crate) fn new(me: &str) -> Registry {
        Registry {
            me: Str::from(me),
            conns: FxHashMap::default(),
        }
    }

    /// True when a connection to `peer` is up.
    pub(crate) fn is_up(&self, peer: &str) -> bool {
        self.conns
            .values()
            .any(|c| c.state == State::Up && c.peer.as_deref() == Some(peer))
    }

    /// True when a connection to `peer` exists past its greeting (so dialing it again is
    /// pointless).
    pub(crate) fn is_connected_or_connecting(&self, peer: &str) -> bool {
        self.conns.values().any(|c| {
            c.peer.as_deref() == Some(peer)
                && matches!(
                    c.state,
                    State::Dialing | State::Greeted | State::Committed | State::Up
                )
        })
    }

    /// Registers a new connection; `target` is the node an outgoing dial is meant for, if
    /// known. `limit` bounds how long an outgoing dial to a known target holds back others.
    pub(crate) fn open(
        &mut self,
        id: u64,
        outgoing: bool,
        target: Option<Str>,
        limit: Duration,
    ) -> watch::Receiver<Verdict> {
        let (tx, rx) = watch::channel(Verdict::Pending);
        let hold = if target.is_some() { limit } else { GRACE };
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
                block_until: Instant::now() + hold,
                peer_committed: false,
                contested: false,
                verdict: tx,
            },
        );
        rx
    }

    /// The peer's greeting arrived on connection `id`.
    pub(crate) fn greeted(&mut self, id: u64, peer: &str) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        let was_unknown = c.peer.is_none();
        c.peer = Some(Str::from(peer));
        c.state = State::Greeted;
        if was_unknown {
            self.evaluate_all();
        } else {
            self.evaluate(peer);
        }
    }

    /// Our auth line was sent on `id`.
    pub(crate) fn committed(&mut self, id: u64) {
        if let Some(c) = self.conns.get_mut(&id) {
            c.state = State::Committed;
        }
    }

    /// The peer's auth line arrived and verified on `id` (ours may still be held back).
    pub(crate) fn peer_committed(&mut self, id: u64) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        c.peer_committed = true;
        if let Some(p) = c.peer.clone() {
            self.evaluate(&p);
        }
    }

    /// Connection `id` authenticated both ways. Fails when it must close instead.
    pub(crate) fn established(&mut self, id: u64) -> Result<(), &'static str> {
        let Some(c) = self.conns.get_mut(&id) else {
            return Err("connection unknown");
        };
        if let Verdict::Close(why) = *c.verdict.borrow() {
            return Err(why);
        }
        c.state = State::Up;
        let peer = c.peer.clone();
        if let Some(p) = peer {
            self.evaluate(&p);
        }
        Ok(())
    }

    /// Connection `id` ended; tells whether it was up, and whether it had competed with
    /// another connection to the same peer.
    pub(crate) fn closed(&mut self, id: u64) -> Closed {
        let Some(c) = self.conns.remove(&id) else {
            return Closed::default();
        };
        match &c.peer {
            Some(p) if c.state != State::Dialing => self.evaluate(&p.clone()),
            _ => self.evaluate_all(),
        }
        Closed {
            was_up: c.state == State::Up,
            contested: c.contested,
        }
    }

    /// Decides every peer that has connections waiting (after time passed, see rule 2).
    pub(crate) fn evaluate_all(&mut self) {
        let mut peers: Vec<Str> = self
            .conns
            .values()
            .filter(|c| c.state == State::Greeted)
            .filter_map(|c| c.peer.clone())
            .collect();
        peers.sort();
        peers.dedup();
        for p in peers {
            self.evaluate(&p);
        }
    }

    /// Applies the rules of the module docs to the connections of `peer`.
    pub(crate) fn evaluate(&mut self, peer: &str) {
        let now = Instant::now();
        let mine: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                c.peer.as_deref() == Some(peer)
                    && matches!(c.state, State::Greeted | State::Committed | State::Up)
            })
            .map(|(id, _)| *id)
            .collect();
        if mine.is_empty() {
            return;
        }
        if mine.len() > 1 {
            for id in &mine {
                if let Some(c) = self.conns.get_mut(id) {
                    c.contested = true;
                }
            }
        }
        if let Some(&up) = mine.iter().find(|id| self.conns[id].state == State::Up) {
            for id in &mine {
                if *id != up {
                    self.decide(
                        *id,
                        Verdict::Close("already connected, not connecting again"),
                    );
                }
            }
            return;
        }
        let win_outgoing = self.me.as_str() < peer;
        let sticky: Vec<u64> = mine
            .iter()
            .copied()
            .filter(|id| {
                let c = &self.conns[id];
                c.state == State::Committed || c.peer_committed
            })
            .collect();
        let dir = if !sticky.is_empty() {
            // Rule 3 (and rule 4 between committed connections of both directions).
            let first = self.conns[&sticky[0]].outgoing;
            if sticky.iter().all(|id| self.conns[id].outgoing == first) {
                first
            } else {
                win_outgoing
            }
        } else {
            let blocked = self.conns.values().any(|c| {
                now < c.block_until
                    && match c.state {
                        State::Dialing => c.peer.is_none() || c.peer.as_deref() == Some(peer),
                        State::Accepted => true,
                        _ => false,
                    }
            });
            if blocked {
                return;
            }
            // Rule 4: the direction dialled by the smaller node ID wins, if present.
            if mine
                .iter()
                .any(|id| self.conns[id].outgoing == win_outgoing)
            {
                win_outgoing
            } else {
                !win_outgoing
            }
        };
        let own_keep = sticky
            .iter()
            .copied()
            .filter(|id| self.conns[id].outgoing)
            .min()
            .or_else(|| {
                mine.iter()
                    .copied()
                    .filter(|id| self.conns[id].outgoing)
                    .min()
            });
        for id in mine {
            let c = &self.conns[&id];
            let v = if c.outgoing != dir {
                Verdict::Close(SIMULTANEOUS)
            } else if c.outgoing && Some(id) != own_keep {
                Verdict::Close("a connection to that node is already being set up")
            } else {
                Verdict::Commit
            };
            self.decide(id, v);
        }
    }

    fn decide(&mut self, id: u64, v: Verdict) {
        if let Some(c) = self.conns.get(&id) {
            c.verdict.send_if_modified(|cur| {
                if *cur == v || matches!(*cur, Verdict::Close(_)) {
                    false
                } else {
                    *cur = v;
                    true
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(rx: &watch::Receiver<Verdict>) -> Verdict {
        *rx.borrow()
    }

    const L: Duration = Duration::from_secs(2);

    #[test]
    fn lone_connection_commits() {
        let mut r = Registry::new("a");
        let v = r.open(1, false, None, L);
        r.greeted(1, "b");
        assert_eq!(verdict(&v), Verdict::Commit);
        assert!(r.established(1).is_ok());
        assert!(r.is_up("b"));
        let v2 = r.open(2, false, None, L);
        r.greeted(2, "b");
        assert!(matches!(verdict(&v2), Verdict::Close(_)));
    }

    /// Both orders of greeting arrival, on both nodes, keep the connection dialled by "a".
    #[test]
    fn both_sides_keep_the_smaller_dialer() {
        for first_outgoing in [true, false] {
            // Node "a": conn 1 = a->b (outgoing), conn 2 = b->a (incoming).
            let mut a = Registry::new("a");
            let v1 = a.open(1, true, Some("b".into()), L);
            let v2 = a.open(2, false, None, L);
            // Node "b": conn 1 = a->b (incoming), conn 2 = b->a (outgoing).
            let mut b = Registry::new("b");
            let w2 = b.open(2, true, Some("a".into()), L);
            let w1 = b.open(1, false, None, L);
            if first_outgoing {
                a.greeted(1, "b");
                b.greeted(2, "a");
                assert_eq!(
                    verdict(&v1),
                    Verdict::Pending,
                    "a waits for the accepted conn"
                );
                a.greeted(2, "b");
                b.greeted(1, "a");
            } else {
                a.greeted(2, "b");
                b.greeted(1, "a");
                a.greeted(1, "b");
                b.greeted(2, "a");
            }
            assert_eq!(verdict(&v1), Verdict::Commit);
            assert!(matches!(verdict(&v2), Verdict::Close(_)));
            assert_eq!(verdict(&w1), Verdict::Commit);
            assert!(matches!(verdict(&w2), Verdict::Close(_)));
        }
    }

    #[test]
    fn committed_connection_is_kept_against_newcomers() {
        // b committed its own dial before it knew of a's dial: it stays, a's dial is closed.
        let mut b = Registry::new("b");
        let w2 = b.open(2, true, Some("a".into()), L);
        b.greeted(2, "a");
        assert_eq!(verdict(&w2), Verdict::Commit);
        b.committed(2);
        let w1 = b.open(1, false, None, L);
        b.greeted(1, "a");
        assert_eq!(verdict(&w2), Verdict::Commit);
        assert!(matches!(verdict(&w1), Verdict::Close(_)));
    }

    #[test]
    fn peer_commitment_is_kept_too() {
        // a (smaller) holds its auth line on b's dial, but b already sent its own: keep it.
        let mut a = Registry::new("a");
        let v1 = a.open(1, true, Some("b".into()), L);
        let v2 = a.open(2, false, None, L);
        a.greeted(2, "b");
        a.peer_committed(2);
        a.greeted(1, "b");
        assert_eq!(verdict(&v2), Verdict::Commit);
        assert!(matches!(verdict(&v1), Verdict::Close(_)));
    }

    #[test]
    fn closing_a_blocker_releases_the_decision() {
        let mut a = Registry::new("a");
        let v1 = a.open(1, true, Some("b".into()), L);
        let v2 = a.open(2, false, None, L);
        a.greeted(2, "b");
        assert_eq!(verdict(&v2), Verdict::Pending);
        assert!(!a.closed(1).was_up);
        assert_eq!(verdict(&v2), Verdict::Commit);
        let _ = v1;
    }

    #[test]
    fn unknown_peer_blocks_only_for_the_grace_period() {
        let mut a = Registry::new("a");
        let silent = a.open(1, false, None, L);
        let v = a.open(2, false, None, L);
        a.greeted(2, "b");
        assert_eq!(verdict(&v), Verdict::Pending);
        a.conns.get_mut(&1).unwrap().block_until = Instant::now();
        a.evaluate_all();
        assert_eq!(verdict(&v), Verdict::Commit);
        let _ = silent;
    }

    #[test]
    fn dialer_commits_only_its_oldest_duplicate() {
        let mut a = Registry::new("a");
        let v1 = a.open(1, true, Some("b".into()), L);
        let v2 = a.open(2, true, Some("b".into()), L);
        a.greeted(2, "b");
        assert_eq!(verdict(&v2), Verdict::Pending);
        a.greeted(1, "b");
        assert_eq!(verdict(&v1), Verdict::Commit);
        assert!(matches!(verdict(&v2), Verdict::Close(_)));
    }
}
