//! [`Probe`]: how a slave finds the entry of its database that its master refuses.
//!
//! A master whose decoder refuses a frame (nested too deep, too large for its limits: a
//! Perl node, or an aemp node configured differently) closes the connection; frames before
//! the bad one were handled, nothing after it is, and nothing tells the sender which frame
//! it was. A slave sends its whole database in one `g_slave` on every new master
//! connection, so one refused entry would cost it the connection again and again, and its
//! other entries would never arrive.
//!
//! The probe works out the culprit with requests every master understands (no new message,
//! so Perl masters take part):
//!
//! * It starts after [`PROBE_AFTER`] connections to the master in a row that ended soon
//!   after coming up, closed by the master (the reconnect back-off's notion of "soon", see
//!   [`crate::peers`]).
//! * While it runs, `g_slave` carries only the entries the master confirmed ("cleared"),
//!   and the others ("suspects") follow in batches: one `g_upd` per entry, then
//!   `["g_find", <own node ID>]` as a marker. The master handles a connection's frames in
//!   order, so its `g_found` answer confirms every entry of the batch; only then is the
//!   next batch sent. Batches start with one entry and double up to [`PROBE_BATCH_MAX`].
//! * When the master closes the connection while a batch is unconfirmed, the culprit is in
//!   that batch: it is sent again in halves over the next connections. A batch of one entry
//!   that fails [`PROBE_STRIKES`] times is dropped from the database (the node logs an
//!   error); it was never accepted, so nothing is sent about it.
//! * A close by this node itself (its own decoder refused something the master sent, e.g.
//!   a `db_mon` snapshot) blames nobody: the batch is sent again as it was.
//! * When no suspect is left the probe ends; from then on `g_slave` carries the whole
//!   database again. Entries written meanwhile join the suspects instead of going out at
//!   once.
//!
//! A master that dies for an unrelated reason while a single-entry batch is in flight costs
//! that entry a strike; it takes [`PROBE_STRIKES`] such coincidences in a row to lose it.

use crate::db::names::LISTENERS;
use crate::db::{db_value, Db, LocalDb};
use crate::msg;
use crate::value::{Msg, Str};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Early losses of the master connection in a row that start a probe.
pub const PROBE_AFTER: u32 = 2;

/// The largest batch of suspects sent before a marker.
pub const PROBE_BATCH_MAX: usize = 64;

/// Failures of an entry sent alone before it is dropped.
pub const PROBE_STRIKES: u32 = 2;

/// A database entry: (family, key).
pub type Entry = (Str, Str);

/// The probe of one slave (see the [module docs](self)).
#[derive(Clone, Debug, Default)]
pub struct Probe {
    /// Early losses of the master in a row, closed by the master.
    early: u32,
    active: bool,
    /// Entries to be sent, in order.
    suspects: VecDeque<Entry>,
    /// Entries the master confirmed.
    cleared: BTreeSet<Entry>,
    /// The unconfirmed batch.
    inflight: Vec<Entry>,
    /// A marker is on its way (for `inflight`, or for the `g_slave` when it is empty).
    marker: bool,
    batch: usize,
    strikes: BTreeMap<Entry, u32>,
}

impl Probe {
    /// True while the probe runs.
    pub fn is_active(&self) -> bool {
        self.active
    }

    /// The entries not confirmed yet (suspects and the batch in flight).
    pub fn unconfirmed(&self) -> usize {
        self.suspects.len() + self.inflight.len()
    }

    /// The connection to the master ended. `early`: soon after it came up; `by_us`: this
    /// node closed it because it refused a frame of the master. Returns the entry to drop,
    /// if one has now failed [`PROBE_STRIKES`] times on its own.
    pub fn master_lost(&mut self, early: bool, by_us: bool, local: &LocalDb) -> Option<Entry> {
        self.lost(early, by_us, || own_entries(local))
    }

    /// [`Probe::master_lost`] for any peer: `entries` lists the suspects when a probe starts
    /// (every entry this node sends the peer that may be refused).
    pub fn lost(
        &mut self,
        early: bool,
        by_us: bool,
        entries: impl FnOnce() -> VecDeque<Entry>,
    ) -> Option<Entry> {
        let mut dropped = None;
        if self.active && self.marker {
            let batch = std::mem::take(&mut self.inflight);
            if !by_us {
                if batch.len() > 1 {
                    self.batch = (batch.len() / 2).max(1);
                } else if let Some(e) = batch.first() {
                    self.batch = 1;
                    let n = self.strikes.entry(e.clone()).or_default();
                    *n += 1;
                    if *n >= PROBE_STRIKES {
                        self.strikes.remove(e);
                        dropped = Some(e.clone());
                    }
                }
            }
            for e in batch.into_iter().rev() {
                if Some(&e) != dropped.as_ref() {
                    self.suspects.push_front(e);
                }
            }
        }
        self.marker = false;
        if by_us {
            return dropped;
        }
        if !early {
            self.early = 0;
        } else if !self.active {
            self.early += 1;
            if self.early >= PROBE_AFTER {
                self.start(entries());
            }
        }
        dropped
    }

    fn start(&mut self, suspects: VecDeque<Entry>) {
        self.active = true;
        self.batch = 1;
        self.suspects = suspects;
        self.cleared.clear();
        self.inflight.clear();
        self.strikes.clear();
    }

    /// The `g_slave` for a new master: the cleared part of the database while the probe
    /// runs (and our own `'l` entry), the whole database otherwise.
    pub fn slave_msg(&self, local: &LocalDb) -> Msg {
        if !self.active {
            return local.slave_msg();
        }
        let mut db = Db::new();
        for (f, m) in local.db() {
            for (k, v) in m {
                if is_own_listeners(local, f, k) || self.cleared.contains(&(f.clone(), k.clone())) {
                    db.entry(f.clone())
                        .or_default()
                        .insert(k.clone(), v.clone());
                }
            }
        }
        msg!["g_slave", db_value(&db)]
    }

    /// What to send the master now (after a `g_slave`, a confirmation, a new suspect): a
    /// marker for the `g_slave` when `after_slave`, else the next batch and its marker;
    /// nothing while a marker is on its way or when the probe does not run.
    pub fn next(&mut self, me: &str, local: &LocalDb, after_slave: bool) -> Vec<Msg> {
        self.next_from(me, |f, k| local.get(f, k), after_slave)
    }

    /// [`Probe::next`] with the entries' current values from `get` (an entry without a
    /// value is skipped: it was deleted meanwhile).
    pub fn next_from<'a>(
        &mut self,
        me: &str,
        get: impl Fn(&str, &str) -> Option<&'a crate::value::Value>,
        after_slave: bool,
    ) -> Vec<Msg> {
        let mut out = Vec::new();
        if !self.active || self.marker {
            return out;
        }
        if !after_slave {
            while self.inflight.len() < self.batch {
                let Some(e) = self.suspects.pop_front() else {
                    break;
                };
                let Some(v) = get(&e.0, &e.1) else {
                    continue;
                };
                out.push(msg![
                    "g_upd",
                    e.0.clone(),
                    crate::value::Value::Map(vec![(e.1.clone(), v.clone())])
                ]);
                self.inflight.push(e);
            }
            if self.inflight.is_empty() {
                self.finish_if_done();
                return out;
            }
        }
        out.push(msg!["g_find", me]);
        self.marker = true;
        out
    }

    /// The master answered the marker: what it covered is confirmed. True if the probe is
    /// still running (the caller asks for [`Probe::next`]).
    pub fn confirmed(&mut self) -> bool {
        if !self.marker {
            return self.active;
        }
        self.marker = false;
        self.early = 0;
        if !self.inflight.is_empty() {
            for e in self.inflight.drain(..) {
                self.strikes.remove(&e);
                self.cleared.insert(e);
            }
            self.batch = (self.batch * 2).min(PROBE_BATCH_MAX);
        }
        self.finish_if_done();
        self.active
    }

    fn finish_if_done(&mut self) {
        if self.active && self.suspects.is_empty() && self.inflight.is_empty() && !self.marker {
            *self = Probe::default();
        }
    }

    /// True when a marker is on its way.
    pub fn awaits_marker(&self) -> bool {
        self.marker
    }

    /// True when the master (or peer) confirmed this entry during the current probe.
    pub fn is_cleared(&self, family: &str, key: &str) -> bool {
        self.cleared.contains(&(Str::from(family), Str::from(key)))
    }

    /// An entry was written while the probe runs: it becomes a suspect (it goes out in a
    /// batch, not at once).
    pub fn written(&mut self, family: &str, key: &str) {
        let e = (Str::from(family), Str::from(key));
        self.cleared.remove(&e);
        if !self.inflight.contains(&e) && !self.suspects.contains(&e) {
            self.suspects.push_back(e);
        }
    }

    /// An entry was deleted: it is no longer a suspect.
    pub fn deleted(&mut self, family: &str, key: &str) {
        let e = (Str::from(family), Str::from(key));
        self.cleared.remove(&e);
        self.suspects.retain(|x| *x != e);
        self.strikes.remove(&e);
    }
}

/// The entries of this node's own database that may be refused (all but its own `'l`).
fn own_entries(local: &LocalDb) -> VecDeque<Entry> {
    local
        .db()
        .iter()
        .flat_map(|(f, m)| m.keys().map(move |k| (f.clone(), k.clone())))
        .filter(|(f, k)| !is_own_listeners(local, f, k))
        .collect()
}

/// True for this node's own `'l` entry (always sent, never a suspect).
fn is_own_listeners(local: &LocalDb, family: &str, key: &str) -> bool {
    family == LISTENERS && key == local.node_id()
}
