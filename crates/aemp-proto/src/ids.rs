//! Node IDs, port IDs and the generation of port names.
//!
//! * A node ID is a non-empty printable string without `#`, `;` or `,` (`#`
//!   separates node and port, `;` and `,` separate greeting fields and lists).
//! * A port ID is `<nodeid>#<portname>`, split at the **first** `#`; a string without `#` is
//!   the node port of that node (empty port name).
//! * Port names are never reused within a node's lifetime, and a restarted node with the same
//!   node ID must not hand out names of its previous run: [`PortNamer`] prefixes a per-run
//!   string chosen by the caller unless the node ID itself was randomised (then the ID is
//!   fresh anyway).
//!
//! Nothing here reads the host: the host name for `%n` and the per-run prefix come from the
//! caller (the `aemp` crate's `config` module). Only [`random_alnum`] and [`new_runiq`] draw
//! from the thread-local random generator.

use crate::value::{Str, Value};
use rand::Rng;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// Why an ID was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The node ID is empty.
    #[error("node ID is empty")]
    Empty,
    /// The node ID contains a forbidden character.
    #[error("node ID {0:?} contains {1:?}, which is not allowed in node IDs")]
    BadChar(String, char),
}

/// Checks that `id` is usable as a node ID.
pub fn validate_node_id(id: &str) -> Result<(), IdError> {
    if id.is_empty() {
        return Err(IdError::Empty);
    }
    if let Some(c) = id
        .chars()
        .find(|c| matches!(c, '#' | ';' | ',') || c.is_control())
    {
        return Err(IdError::BadChar(id.to_string(), c));
    }
    Ok(())
}

/// A validated node ID.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(Str);

impl NodeId {
    /// Validates and wraps a node ID (no expansion; see [`expand_node_id`]).
    pub fn new(id: impl AsRef<str>) -> Result<NodeId, IdError> {
        let id = id.as_ref();
        validate_node_id(id)?;
        Ok(NodeId(Str::from(id)))
    }

    /// The ID as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The port ID of a port named `name` on this node.
    pub fn port(&self, name: &str) -> PortId {
        PortId::from_parts(self.as_str(), name)
    }

    /// The node port of this node (same string as the node ID).
    pub fn node_port(&self) -> PortId {
        PortId {
            id: self.0.clone(),
            split: self.0.len() as u32,
        }
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({:?})", self.0.as_str())
    }
}

impl AsRef<str> for NodeId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// A port ID: `<nodeid>#<portname>`, or a bare node ID for a node port.
///
/// Invariant: `split` is the byte index of the first `#` in `id`, or `id.len()` when there is
/// none (node port).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortId {
    id: Str,
    split: u32,
}

/// Why a string is not a port ID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid port ID {id:?}: {reason}")]
pub struct PortIdError {
    /// The offending string.
    pub id: String,
    /// What is wrong with it.
    pub reason: IdError,
}

impl PortId {
    /// Parses a port ID (splitting at the first `#`), validating the node part.
    pub fn parse(s: &str) -> Result<PortId, PortIdError> {
        let split = s.find('#').unwrap_or(s.len());
        validate_node_id(&s[..split]).map_err(|reason| PortIdError {
            id: s.to_string(),
            reason,
        })?;
        Ok(PortId {
            id: Str::from(s),
            split: split as u32,
        })
    }

    /// Builds `<node>#<name>` (or the node port when `name` is empty). The node part is
    /// trusted to be valid.
    pub fn from_parts(node: &str, name: &str) -> PortId {
        if name.is_empty() {
            return PortId {
                id: Str::from(node),
                split: node.len() as u32,
            };
        }
        let mut id = Str::with_capacity(node.len() + 1 + name.len());
        id.push_str(node);
        id.push('#');
        id.push_str(name);
        PortId {
            id,
            split: node.len() as u32,
        }
    }

    /// The full ID string.
    pub fn as_str(&self) -> &str {
        &self.id
    }

    /// The node part.
    pub fn node(&self) -> &str {
        &self.id[..self.split as usize]
    }

    /// The port name (empty for a node port).
    pub fn name(&self) -> &str {
        self.parts().1
    }

    /// The node part and the port name at once ([`PortId::node`], [`PortId::name`]): one
    /// look at the string where a sender needs both (`Node::snd` needs each of them more
    /// than once).
    pub fn parts(&self) -> (&str, &str) {
        let (node, rest) = self.id.split_at(self.split as usize);
        (node, rest.get(1..).unwrap_or(""))
    }

    /// True when this names a node port.
    pub fn is_node_port(&self) -> bool {
        self.name().is_empty()
    }

    /// The node part as a [`NodeId`].
    pub fn node_id(&self) -> NodeId {
        NodeId(Str::from(self.node()))
    }
}

impl fmt::Display for PortId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id)
    }
}

impl fmt::Debug for PortId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PortId({:?})", self.id.as_str())
    }
}

impl std::str::FromStr for PortId {
    type Err = PortIdError;
    fn from_str(s: &str) -> Result<PortId, PortIdError> {
        PortId::parse(s)
    }
}

impl From<PortId> for Value {
    fn from(p: PortId) -> Value {
        Value::Str(p.id)
    }
}

impl From<&PortId> for Value {
    fn from(p: &PortId) -> Value {
        Value::Str(p.id.clone())
    }
}

impl From<NodeId> for Value {
    fn from(n: NodeId) -> Value {
        Value::Str(n.0)
    }
}

impl From<&NodeId> for Value {
    fn from(n: &NodeId) -> Value {
        Value::Str(n.0.clone())
    }
}

/// The characters of generated names (`$RUNIQ`, random node ID parts, port-name prefixes):
/// `[0-9A-Za-z]`, 62 of them.
pub const ALNUM: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// `n` random characters from `[0-9A-Za-z]`.
pub fn random_alnum(n: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..n)
        .map(|_| ALNUM[rng.gen_range(0..ALNUM.len())] as char)
        .collect()
}

/// A fresh `$RUNIQ`: 10 characters from `[0-9A-Za-z]`, the last one upper-case (as the
/// reference makes it, so that it never collides with a counter suffix).
pub fn new_runiq() -> String {
    let mut s = random_alnum(10);
    let last = s.pop().unwrap_or('A').to_ascii_uppercase();
    s.push(last);
    s
}

/// Result of [`expand_node_id`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpandedNodeId {
    /// The node ID after expansion.
    pub id: NodeId,
    /// Whether a random part was inserted (`%u` or a trailing `/`): then local port names
    /// need no per-run prefix.
    pub randomised: bool,
}

/// Expands a configured node ID: `%n` becomes `nodename`, `%u` and an empty
/// position after a trailing `/` become `runiq`.
pub fn expand_node_id(
    pattern: &str,
    nodename: &str,
    runiq: &str,
) -> Result<ExpandedNodeId, IdError> {
    let mut out = pattern.replace("%n", nodename);
    let mut randomised = false;
    if out.contains("%u") {
        out = out.replace("%u", runiq);
        randomised = true;
    }
    if out.ends_with('/') {
        out.push_str(runiq);
        randomised = true;
    }
    Ok(ExpandedNodeId {
        id: NodeId::new(&out)?,
        randomised,
    })
}

/// Hands out port names that are unique for the lifetime of a node and across restarts of a
/// node with the same ID.
///
/// Names are `<prefix><counter>`, where the counter is written in lowercase letters starting
/// at `b` (the reference's magic increment from `a`). The caller picks the prefix: empty for
/// a randomised node ID, otherwise a string that differs from run to run, so that a restart
/// yields different names (the `aemp` crate makes 9 characters from the pid, the clock and
/// randomness, as the reference does). Spawned ports use [`PortNamer::next_spawn`], prefixed
/// with the node's `$RUNIQ` (10 characters, last upper-case) so they never collide with
/// local names.
#[derive(Debug)]
pub struct PortNamer {
    prefix: Str,
    runiq: Str,
    counter: AtomicU64,
}

impl PortNamer {
    /// A namer for a node whose local port names start with `prefix` (empty when the node
    /// ID was randomised, see [`ExpandedNodeId::randomised`]) and whose spawned port names
    /// start with `runiq`.
    pub fn new(prefix: &str, runiq: &str) -> PortNamer {
        PortNamer {
            prefix: Str::from(prefix),
            runiq: Str::from(runiq),
            counter: AtomicU64::new(0),
        }
    }

    fn next_with(&self, prefix: &str) -> Str {
        // The counter starts at 1 == "b" ("a" pre-incremented, as in Perl).
        let n = self.counter.fetch_add(1, Ordering::Relaxed) + 1;
        let mut s = Str::from(prefix);
        push_letters(&mut s, n);
        s
    }

    /// A fresh local port name.
    pub fn next_local(&self) -> Str {
        self.next_with(&self.prefix.clone())
    }

    /// A fresh name for a port spawned on another node.
    pub fn next_spawn(&self) -> Str {
        self.next_with(&self.runiq.clone())
    }
}

/// Writes `n` in bijective base 26 with digits `a`..`z`, offset so that 1 is `b`
/// (Perl's magic increment of the string `"a"`: b, c, …, z, aa, ab, …).
fn push_letters(out: &mut Str, n: u64) {
    let mut buf = [0u8; 16];
    let mut i = buf.len();
    // Perl's sequence from "a": index 0 = "a", 25 = "z", 26 = "aa". Bijective base 26.
    let mut k = n + 1; // 1-based bijective value for index n
    while k > 0 {
        k -= 1;
        i -= 1;
        buf[i] = b'a' + (k % 26) as u8;
        k /= 26;
    }
    // SAFETY-free: only ASCII letters were written.
    out.push_str(std::str::from_utf8(&buf[i..]).unwrap_or("a"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_id_rules() {
        assert!(NodeId::new("aemp/host/x").is_ok());
        assert_eq!(NodeId::new(""), Err(IdError::Empty));
        assert!(NodeId::new("a#b").is_err());
        assert!(NodeId::new("a;b").is_err());
        assert!(NodeId::new("a,b").is_err());
    }

    #[test]
    fn port_id_split_at_first_hash() {
        let p = PortId::parse("node#a#b").unwrap();
        assert_eq!(p.node(), "node");
        assert_eq!(p.name(), "a#b");
        assert_eq!(p.parts(), ("node", "a#b"));
        let n = PortId::parse("node").unwrap();
        assert!(n.is_node_port());
        assert_eq!(n.name(), "");
        assert_eq!(n.parts(), ("node", ""));
        assert_eq!(PortId::parse("node#").unwrap().parts(), ("node", ""));
        assert!(PortId::parse("#x").is_err());
        assert_eq!(PortId::from_parts("n", "p").as_str(), "n#p");
        assert_eq!(PortId::from_parts("n", "").as_str(), "n");
    }

    #[test]
    fn expansion() {
        let e = expand_node_id("aemp/%n/%u", "host", "RUNIQxyz0A").unwrap();
        assert_eq!(e.id.as_str(), "aemp/host/RUNIQxyz0A");
        assert!(e.randomised);
        let e = expand_node_id("host/", "h", "R").unwrap();
        assert_eq!(e.id.as_str(), "host/R");
        assert!(e.randomised);
        let e = expand_node_id("%n", "myhost", "R").unwrap();
        assert_eq!(e.id.as_str(), "myhost");
        assert!(!e.randomised);
        assert!(expand_node_id("", "h", "R").is_err());
    }

    #[test]
    fn magic_increment_sequence() {
        let namer = PortNamer::new("", "RRRRRRRRRR");
        let names: Vec<Str> = (0..27).map(|_| namer.next_local()).collect();
        assert_eq!(names[0], "b");
        assert_eq!(names[24], "z");
        assert_eq!(names[25], "aa");
        assert_eq!(names[26], "ab");
        assert_eq!(namer.next_spawn(), "RRRRRRRRRRac");
    }

    #[test]
    fn names_carry_the_prefix_and_are_unique() {
        let a = PortNamer::new("pre0", "x");
        assert_eq!(a.next_local(), "pre0b");
        assert_eq!(a.next_spawn(), "xc");
        let mut seen = std::collections::HashSet::new();
        for _ in 0..100_000 {
            let n = a.next_local();
            assert!(n.starts_with("pre0"));
            assert!(seen.insert(n));
        }
    }

    #[test]
    fn runiq_shape() {
        let r = new_runiq();
        assert_eq!(r.len(), 10);
        assert!(
            r.chars().last().unwrap().is_ascii_uppercase()
                || r.chars().last().unwrap().is_ascii_digit()
        );
    }
}

/// Port and node IDs travel as plain strings, so typed messages can carry them directly.
mod serde_impls {
    use super::{NodeId, PortId};
    use serde::{de::Error, Deserialize, Deserializer, Serialize, Serializer};

    impl Serialize for PortId {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_str(self.as_str())
        }
    }

    impl<'de> Deserialize<'de> for PortId {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<PortId, D::Error> {
            let s = String::deserialize(d)?;
            PortId::parse(&s).map_err(D::Error::custom)
        }
    }

    impl Serialize for NodeId {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_str(self.as_str())
        }
    }

    impl<'de> Deserialize<'de> for NodeId {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<NodeId, D::Error> {
            let s = String::deserialize(d)?;
            NodeId::new(&s).map_err(D::Error::custom)
        }
    }

    #[cfg(test)]
    mod tests {
        use crate::typed::{from_msg, to_msg};
        use crate::{msg, PortId};

        #[test]
        fn port_ids_in_typed_messages() {
            let p = PortId::parse("n#p").unwrap();
            let m = to_msg(&("reply", p.clone())).unwrap();
            assert_eq!(m, msg!["reply", "n#p"]);
            let (tag, back): (String, PortId) = from_msg(m).unwrap();
            assert_eq!((tag.as_str(), back), ("reply", p));
            assert!(from_msg::<(String, PortId)>(msg!["x", "#bad"]).is_err());
        }
    }
}
