//! [`MeshProbe`]: how a global node finds the entry another global node refuses.
//!
//! A global node sends every global peer the entries of its own slaves (itself included):
//! all of them in one `g_set` on every new connection, and each later change as a `g_upd`.
//! A peer whose decoder refuses one of those frames (a Perl node, or an aemp node with
//! lower limits) closes the connection, and would do so on every reconnection. The search
//! is the slave's ([`super::probe`]), run per peer: after [`super::probe::PROBE_AFTER`]
//! early closes by the peer, `g_set` carries only the confirmed entries (and the internal
//! families `'l` and `'g`), the others follow in batches of `g_upd`s, each confirmed by the
//! answer to a `g_find` of this node's own ID, and a batch of one entry that fails
//! [`super::probe::PROBE_STRIKES`] times is the culprit. Then:
//!
//! * an entry of this node's own database is deleted from it ([`super::Effect::EntryDropped`]):
//!   the node that set it logs the error, and the other global nodes see it deleted;
//! * an entry of one of its slaves is withheld from that peer from then on
//!   ([`super::Effect::EntryWithheld`], logged as an error naming the slave): there is no
//!   message to tell a slave that a global node refused its entry. It stays withheld until
//!   the slave deletes it (or leaves); other values of its key are withheld too.
//!
//! Everything else reaches the peer, and the connection stays up.

use super::probe::{Entry, Probe};
use crate::value::{Msg, Str, Value};
use std::collections::BTreeSet;

/// The search for refused entries towards one global peer, and what it found.
#[derive(Clone, Debug, Default)]
pub struct MeshProbe {
    pub(super) probe: Probe,
    withheld: BTreeSet<Entry>,
}

impl MeshProbe {
    /// Nothing to filter: no search runs and nothing is withheld.
    pub fn is_idle(&self) -> bool {
        !self.probe.is_active() && self.withheld.is_empty()
    }

    /// The entries withheld from this peer.
    pub fn withheld(&self) -> impl Iterator<Item = &Entry> {
        self.withheld.iter()
    }

    /// Withholds an entry from this peer.
    pub fn withhold(&mut self, e: Entry) {
        self.withheld.insert(e);
    }

    /// True when `e` may be sent (not withheld).
    pub fn allows(&self, e: &Entry) -> bool {
        !self.withheld.contains(e)
    }

    /// What of `msg` (a request this node sends the peer) goes out now: withheld entries
    /// are left out of `g_set` and `g_upd`; while the search runs, entries not confirmed
    /// yet are left out too and become suspects (they follow in the search's batches).
    /// `None` when nothing is left to send.
    pub fn outgoing(&mut self, msg: Msg) -> Option<Msg> {
        if self.is_idle() {
            return Some(msg);
        }
        match msg.tag() {
            Some("g_set") => {
                let mut parts = msg.into_vec();
                if let Some(Value::Map(fams)) = parts.get_mut(1) {
                    for (f, m) in fams.iter_mut() {
                        if f.starts_with('\'') {
                            continue;
                        }
                        if let Value::Map(entries) = m {
                            entries.retain(|(k, _)| self.keep(f, k, false));
                        }
                    }
                }
                Some(Msg::from(parts))
            }
            Some("g_upd") => {
                let mut parts = msg.into_vec();
                let Some(family) = parts.get(1).and_then(Value::as_str).map(Str::from) else {
                    return Some(Msg::from(parts));
                };
                if family.starts_with('\'') {
                    return Some(Msg::from(parts));
                }
                if let Some(Value::List(dels)) = parts.get(3) {
                    for k in dels.iter().filter_map(Value::as_str) {
                        let e = (family.clone(), Str::from(k));
                        self.withheld.remove(&e);
                        self.probe.deleted(&e.0, &e.1);
                    }
                }
                let mut empty = true;
                if let Some(Value::Map(set)) = parts.get_mut(2) {
                    set.retain(|(k, _)| self.keep(&family, k, true));
                    empty = set.is_empty();
                }
                let no_dels = parts
                    .get(3)
                    .and_then(Value::as_list)
                    .is_none_or(|l| l.is_empty());
                (!(empty && no_dels)).then(|| Msg::from(parts))
            }
            _ => Some(msg),
        }
    }

    /// Whether an entry of an outgoing `g_set`/`g_upd` goes out now (see
    /// [`MeshProbe::outgoing`]). A `write` (a new value) is a suspect again even if the
    /// entry was confirmed, like a write on a probing slave.
    fn keep(&mut self, family: &str, key: &str, write: bool) -> bool {
        let e = (Str::from(family), Str::from(key));
        if self.withheld.contains(&e) {
            return false;
        }
        if self.probe.is_active() && (write || !self.probe.is_cleared(family, key)) {
            self.probe.written(family, key);
            return false;
        }
        true
    }
}
