//! [`Seeds`]: when to dial which seed address.

use crate::value::Str;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The seed connector of a node: it keeps dialling every seed whose node is not up.
///
/// Timing: the first round is due at once. A base wait of (1 + rand) · 0.6 s is doubled
/// before every wait, capped at `monitor_timeout` (so the second round comes 1.2–2.4 s after
/// the first). When a seed node goes down the back-off starts over: a round is due at once
/// and a fresh base is drawn. Randomness comes in as a number in `[0, 1)`.
///
/// A seed whose node is held by the reconnect back-off ([`crate::peers::PeerTable::hold`]:
/// its connections keep ending soon after they come up) is skipped until the hold ends,
/// also in the round that starts over at once when it went down; a round is due when the
/// earliest such hold ends, if that comes before the next regular round.
///
/// A seed connection is a plain dial of the address; its greeting tells which node is
/// behind it ([`Seeds::greeted`]), or that the address is this node ([`Seeds::is_self`]).
#[derive(Clone, Debug)]
pub struct Seeds {
    /// Seed addresses in configuration order, with the node ID learned for each.
    seeds: Vec<(SocketAddr, Option<Str>)>,
    monitor_timeout: Duration,
    /// The wait before the round after the next one is doubled from this.
    wait: Duration,
    /// When the next round is due (`None`: never, nothing to dial).
    next: Option<Instant>,
}

/// The base wait (1 + rand) · 0.6 s; `rand01` is clamped to `[0, 1]`.
fn base(rand01: f64) -> Duration {
    let r = if rand01.is_finite() {
        rand01.clamp(0.0, 1.0)
    } else {
        0.0
    };
    Duration::from_secs_f64((1.0 + r) * 0.6)
}

impl Seeds {
    /// Seeds to stay connected to (duplicates are dropped); the first round is due at
    /// `now`. No round is ever due without seeds.
    pub fn new(
        seeds: Vec<SocketAddr>,
        monitor_timeout: Duration,
        now: Instant,
        rand01: f64,
    ) -> Seeds {
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
            wait: base(rand01),
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
    /// later than `now`), and schedules the next round after the doubled wait (at most
    /// `monitor_timeout`), or when the earliest hold ends if that is sooner. Returns
    /// nothing when no round is due.
    pub fn handle_timeout(
        &mut self,
        now: Instant,
        is_up: impl Fn(&str) -> bool,
        held: impl Fn(&str) -> Option<Instant>,
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
        self.wait = self.wait.saturating_mul(2).min(self.monitor_timeout);
        self.next = now.checked_add(self.wait);
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

    /// A node went down. If it is a seed node the back-off starts over: a round is due at
    /// `now`, with a fresh base wait. True if it was a seed node.
    pub fn node_down(&mut self, node: &str, now: Instant, rand01: f64) -> bool {
        let is_seed = self.seeds.iter().any(|(_, n)| n.as_deref() == Some(node));
        if is_seed {
            self.wait = base(rand01);
            self.next = Some(now);
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
