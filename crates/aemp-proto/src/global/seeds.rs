//! [`Seeds`]: when to dial which seed address.

use crate::value::Str;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The shortest pause between two rounds of seed dials (also the reference's shortest first
/// retry).
pub const SEED_RETRY_MIN: Duration = Duration::from_millis(1200);

/// The longest pause between two rounds of seed dials (the reference's longest first retry):
/// a seed that comes back is dialled by every node that misses it within this long.
pub const SEED_RETRY_MAX: Duration = Duration::from_millis(2400);

/// After a seed node is lost, the first round comes within this random delay, so that the
/// nodes that lost it at the same moment do not all dial it in the same millisecond.
pub const SEED_LOSS_SPREAD: Duration = Duration::from_secs(1);

/// The seed connector of a node: it keeps dialling every seed whose node is not up.
///
/// Timing: the first round is due at once. While a seed's node is not up, every later round
/// comes a random 1.2–2.4 s after the one before (`SEED_RETRY_MIN`–`SEED_RETRY_MAX`,
/// drawn afresh each time; never more than `monitor_timeout`). When a seed node goes down,
/// a round is due after a random delay under `SEED_LOSS_SPREAD` (or sooner if one was due
/// anyway). When every seed's node is up, no round is due (as in the reference).
/// Randomness comes in as a number in `[0, 1)`.
///
/// Why not the reference's rule (a base of (1 + rand) · 0.6 s doubled before every wait, up
/// to `monitor_timeout`, and a round at once when a seed node goes down): a seed that is
/// down for a while is then dialled only every `monitor_timeout` (30 s), so a seed that
/// comes back waits up to that long for its nodes, whatever the size of the network; and
/// every node that loses a seed at once (the seed died) dials it in the same millisecond.
/// Here the first retry is the reference's (1.2–2.4 s after the first round), a returning
/// seed is dialled by each node within 2.4 s, the dials of many nodes are spread (each
/// node's rounds drift apart by the random pauses), and a seed that stays down costs each
/// node 25–50 failed dials a minute. Nothing of this shows on the wire.
///
/// A seed whose node is held by the reconnect back-off ([`crate::peers::PeerTable::hold`]:
/// its connections keep ending soon after they come up) is skipped until the hold ends,
/// also in the round that follows its loss; a round is due when the earliest such hold
/// ends, if that comes before the next regular round. (A failed dial is no strike: a seed
/// that is down holds nothing.)
///
/// A seed connection is a plain dial of the address; its greeting tells which node is
/// behind it ([`Seeds::greeted`]), or that the address is this node ([`Seeds::is_self`]).
#[derive(Clone, Debug)]
pub struct Seeds {
    /// Seed addresses in configuration order, with the node ID learned for each.
    seeds: Vec<(SocketAddr, Option<Str>)>,
    monitor_timeout: Duration,
    /// When the next round is due (`None`: no seeds, or every seed's node is up).
    next: Option<Instant>,
}

/// `rand01` clamped to `[0, 1]` (0 if it is not a number).
fn unit(rand01: f64) -> f64 {
    if rand01.is_finite() {
        rand01.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

/// The pause after a round: [`SEED_RETRY_MIN`] + `rand01` · ([`SEED_RETRY_MAX`] −
/// [`SEED_RETRY_MIN`]), at most `monitor_timeout`.
fn retry_wait(rand01: f64, monitor_timeout: Duration) -> Duration {
    (SEED_RETRY_MIN + (SEED_RETRY_MAX - SEED_RETRY_MIN).mul_f64(unit(rand01))).min(monitor_timeout)
}

impl Seeds {
    /// Seeds to stay connected to (duplicates are dropped); the first round is due at
    /// `now`. No round is ever due without seeds.
    pub fn new(seeds: Vec<SocketAddr>, monitor_timeout: Duration, now: Instant) -> Seeds {
        let mut list: Vec<(SocketAddr, Option<Str>)> = Vec::with_capacity(seeds.len());
        for a in seeds {
            if !list.iter().any(|(b, _)| *b == a) {
                list.push((a, None));
            }
        }
        let next = (!list.is_empty()).then_some(now);
        Seeds {
            seeds: list,
            monitor_timeout,
            next,
        }
    }

    /// When [`Seeds::handle_timeout`] is due next (`None` without seeds).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.seeds.is_empty() {
            None
        } else {
            self.next
        }
    }

    /// Runs a round if one is due at `now`: returns the seed addresses to dial, those whose
    /// node is unknown, or neither up (`is_up`) nor held (`held` returns the end of a hold
    /// later than `now`), and schedules the next round after a pause that `rand01` picks in
    /// 1.2–2.4 s (at most `monitor_timeout`), or when the earliest hold ends if that is
    /// sooner. When every seed's node is up, no further round is due until one goes down
    /// ([`Seeds::node_down`]). Returns nothing when no round is due.
    pub fn handle_timeout(
        &mut self,
        now: Instant,
        is_up: impl Fn(&str) -> bool,
        held: impl Fn(&str) -> Option<Instant>,
        rand01: f64,
    ) -> Vec<SocketAddr> {
        match self.poll_timeout() {
            Some(due) if due <= now => {}
            _ => return Vec::new(),
        }
        let mut todo = Vec::new();
        let mut hold_ends: Option<Instant> = None;
        for (addr, node) in &self.seeds {
            match node {
                Some(n) if is_up(n) => {}
                Some(n) => match held(n).filter(|h| *h > now) {
                    Some(h) => hold_ends = Some(hold_ends.map_or(h, |e| e.min(h))),
                    None => todo.push(*addr),
                },
                None => todo.push(*addr),
            }
        }
        if todo.is_empty() && hold_ends.is_none() {
            // Every seed's node is up: nothing to do until one goes down.
            self.next = None;
            return todo;
        }
        self.next = now.checked_add(retry_wait(rand01, self.monitor_timeout));
        if let Some(h) = hold_ends {
            self.next = Some(self.next.map_or(h, |n| n.min(h)));
        }
        todo
    }

    /// A dial of `addr` greeted us as `node`. True if `addr` is a seed (its node is then
    /// recorded; the caller tells the global service, [`super::GlobalService::seed_greeting`]).
    pub fn greeted(&mut self, addr: SocketAddr, node: &str) -> bool {
        match self.seeds.iter_mut().find(|(a, _)| *a == addr) {
            Some((_, slot)) => {
                *slot = Some(Str::from(node));
                true
            }
            None => false,
        }
    }

    /// A dial of `addr` reached this node itself: the seed is dropped. True if it was a seed
    /// (the caller then makes the node global, [`super::GlobalService::become_global`]).
    pub fn is_self(&mut self, addr: SocketAddr) -> bool {
        let before = self.seeds.len();
        self.seeds.retain(|(a, _)| *a != addr);
        self.seeds.len() != before
    }

    /// A node went down. If it is a seed node, a round is due `rand01` · `SEED_LOSS_SPREAD`
    /// after `now`, unless one is due before. True if it was a seed node.
    pub fn node_down(&mut self, node: &str, now: Instant, rand01: f64) -> bool {
        let is_seed = self.seeds.iter().any(|(_, n)| n.as_deref() == Some(node));
        if is_seed {
            let at = now
                .checked_add(SEED_LOSS_SPREAD.mul_f64(unit(rand01)))
                .unwrap_or(now);
            self.next = Some(self.next.map_or(at, |n| n.min(at)));
        }
        is_seed
    }

    /// The node ID learned for seed `addr`, if any.
    pub fn node_of(&self, addr: SocketAddr) -> Option<&str> {
        self.seeds
            .iter()
            .find(|(a, _)| *a == addr)
            .and_then(|(_, n)| n.as_deref())
    }

    /// The seed addresses, in configuration order.
    pub fn addrs(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.seeds.iter().map(|(a, _)| *a)
    }
}
