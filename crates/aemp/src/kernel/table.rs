//! The table of a node's live ports: a slab of slots plus a name index.
//!
//! Delivery looks a port up once by name and then works with its slot index, so the handler
//! can be taken out and put back without a second lookup. A one-entry cache of the last name
//! looked up skips hashing for streams of messages to one port (the common case).
//!
//! Invariants:
//! * `index[name] == i` exactly when `slots[i]` is `Some` and holds the port named `name`
//!   (the name is kept only in the index);
//! * `last`, if set, names a port that was at that slot with that uid; it is trusted only
//!   after checking the slot's uid, so a stale entry is harmless;
//! * every `None` slot is in `free`, and no index is in `free` twice;
//! * `uid`s are never reused, so a slot index plus uid names one port forever.

use super::port::Port;
use aemp_proto::Str;
use rustc_hash::FxHashMap;

pub(crate) struct Slot {
    pub uid: u64,
    pub port: Port,
}

#[derive(Default)]
pub(crate) struct PortTable {
    slots: Vec<Option<Slot>>,
    free: Vec<u32>,
    index: FxHashMap<Str, u32>,
    next_uid: u64,
    /// Name, slot index and uid of the last successful lookup.
    last: Option<(Str, u32, u64)>,
}

impl PortTable {
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// Slot index and uid of the port named `name`.
    #[inline]
    pub fn lookup(&mut self, name: &str) -> Option<(u32, u64)> {
        if let Some((last, i, uid)) = &self.last {
            if super::port::short_eq(last, name) {
                if let Some(Some(s)) = self.slots.get(*i as usize) {
                    if s.uid == *uid {
                        return Some((*i, *uid));
                    }
                }
            }
        }
        let (key, &i) = self.index.get_key_value(name)?;
        let uid = self.slots[i as usize].as_ref()?.uid;
        self.last = Some((key.clone(), i, uid));
        Some((i, uid))
    }

    /// The port in slot `i` if it is still the one with `uid`.
    #[inline]
    pub fn slot_mut(&mut self, i: u32, uid: u64) -> Option<&mut Slot> {
        match self.slots.get_mut(i as usize) {
            Some(Some(s)) if s.uid == uid => Some(s),
            _ => None,
        }
    }

    pub fn get_mut(&mut self, name: &str) -> Option<&mut Port> {
        let i = *self.index.get(name)?;
        self.slots[i as usize].as_mut().map(|s| &mut s.port)
    }

    /// Adds a port (replacing a port of the same name, which cannot happen with fresh names).
    pub fn insert(&mut self, name: Str, port: Port) {
        if let Some(&i) = self.index.get(&name) {
            if let Some(s) = self.slots[i as usize].as_mut() {
                s.port = port;
                return;
            }
        }
        self.next_uid += 1;
        let slot = Slot {
            uid: self.next_uid,
            port,
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = Some(slot);
                i
            }
            None => {
                self.slots.push(Some(slot));
                (self.slots.len() - 1) as u32
            }
        };
        self.index.insert(name, i);
    }

    pub fn remove(&mut self, name: &str) -> Option<Port> {
        let i = self.index.remove(name)?;
        let slot = self.slots[i as usize].take()?;
        self.free.push(i);
        Some(slot.port)
    }

    pub fn ports_mut(&mut self) -> impl Iterator<Item = &mut Port> {
        self.slots.iter_mut().flatten().map(|s| &mut s.port)
    }

    pub fn clear(&mut self) {
        self.slots.clear();
        self.free.clear();
        self.index.clear();
        self.last = None;
    }
}
