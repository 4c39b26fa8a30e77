//! Monitors: what happens when a watched port dies, and the guards that cancel them.
//!
//! Invariant (exactly once): a monitor lives in exactly one list (a local port's `monitors`,
//! a remote port's list in `RemoteMonitors`, or a node's list) plus the kernel's
//! `mon_index`; firing or cancelling removes it from both, so it can neither fire twice nor
//! fire after cancellation.

pub use crate::error::Reason;
use aemp_proto::{Msg, PortId, Str};
use rustc_hash::FxHashMap;
use std::collections::BTreeMap;

/// What a monitor does when its port dies.
pub enum Monitor {
    /// Call a closure with the reason.
    Callback(Box<dyn FnOnce(Reason) + Send + 'static>),
    /// Kill this local port with the same reason, but only on an abnormal (non-empty) reason.
    Kill(PortId),
    /// Send this message, with the reason appended, to this port.
    Send(PortId, Msg),
}

impl Monitor {
    /// A callback monitor.
    pub fn callback(f: impl FnOnce(Reason) + Send + 'static) -> Monitor {
        Monitor::Callback(Box::new(f))
    }

    /// Kill `port` too when the watched port dies abnormally.
    pub fn kill(port: &PortId) -> Monitor {
        Monitor::Kill(port.clone())
    }

    /// Send `msg` + reason to `port` when the watched port dies.
    pub fn send(port: &PortId, msg: Msg) -> Monitor {
        Monitor::Send(port.clone(), msg)
    }
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Monitor::Callback(_) => f.write_str("Monitor::Callback"),
            Monitor::Kill(p) => write!(f, "Monitor::Kill({p})"),
            Monitor::Send(p, m) => write!(f, "Monitor::Send({p}, {m})"),
        }
    }
}

pub(crate) type MonAction = Monitor;

/// Where a registered monitor lives, so that a guard can find it again.
#[derive(Debug)]
pub(crate) enum MonTarget {
    /// A local port, by name.
    Local(Str),
    /// A port on another node (`name` empty = the node itself).
    Remote(Str, Str),
    /// A local port that did not exist: the `no_such_port` firing (with this reason) is
    /// queued.
    Pending(Reason),
}

/// Monitors on ports of other nodes, per node and port name (empty name = node monitor).
/// Per port they are kept by ID, which is their order of creation: a port can carry very
/// many (every `cal` without a timeout monitors its target until the reply), and removing
/// one must not cost time in proportion to how many there are.
#[derive(Default)]
pub(crate) struct RemoteMonitors {
    pub by_node: FxHashMap<Str, FxHashMap<Str, BTreeMap<u64, MonAction>>>,
}

impl RemoteMonitors {
    /// Adds a monitor; returns true when it is the first one on that port (then `mon1` must
    /// be sent, unless it is a node monitor).
    pub fn add(&mut self, node: &str, port: &str, id: u64, action: MonAction) -> bool {
        let ports = self.by_node.entry(Str::from(node)).or_default();
        let list = ports.entry(Str::from(port)).or_default();
        list.insert(id, action);
        list.len() == 1
    }

    /// Removes one monitor; returns true when it was the last one on that port (then `mon0`
    /// must be sent).
    pub fn remove(&mut self, node: &str, port: &str, id: u64) -> Option<(MonAction, bool)> {
        let ports = self.by_node.get_mut(node)?;
        let list = ports.get_mut(port)?;
        let action = list.remove(&id)?;
        let last = list.is_empty();
        if last {
            ports.remove(port);
            if ports.is_empty() {
                self.by_node.remove(node);
            }
        }
        Some((action, last))
    }

    /// Takes every monitor of one remote port (on `kil0`).
    pub fn take_port(&mut self, node: &str, port: &str) -> Vec<(u64, MonAction)> {
        let Some(ports) = self.by_node.get_mut(node) else {
            return Vec::new();
        };
        let list = ports.remove(port).unwrap_or_default();
        if ports.is_empty() {
            self.by_node.remove(node);
        }
        list.into_iter().collect()
    }

    /// Takes every monitor of every port of a node (on connection loss).
    pub fn take_node(&mut self, node: &str) -> Vec<(u64, MonAction)> {
        self.by_node
            .remove(node)
            .map(|ports| ports.into_values().flatten().collect())
            .unwrap_or_default()
    }
}

/// Where a cancelled monitor guard sends its cancellation (the node's command queue).
pub(crate) trait Canceller: Send + Sync {
    /// Cancels monitor `id` (it may have fired already; then this does nothing).
    fn cancel_monitor(&self, id: u64);
}

/// Cancels a monitor when dropped.
#[must_use = "dropping a MonGuard cancels the monitor at once; call .keep() to keep it"]
pub struct MonGuard {
    canceller: Option<std::sync::Weak<dyn Canceller>>,
    id: u64,
}

impl MonGuard {
    pub(crate) fn new(canceller: std::sync::Weak<dyn Canceller>, id: u64) -> MonGuard {
        MonGuard {
            canceller: Some(canceller),
            id,
        }
    }

    /// Keeps the monitor for as long as it has not fired (forgets the guard).
    pub fn keep(mut self) {
        self.canceller = None;
    }
}

impl Drop for MonGuard {
    fn drop(&mut self) {
        if let Some(c) = self.canceller.take().and_then(|w| w.upgrade()) {
            c.cancel_monitor(self.id);
        }
    }
}

impl std::fmt::Debug for MonGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MonGuard({})", self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(list: &[(u64, MonAction)]) -> Vec<u64> {
        list.iter().map(|(i, _)| *i).collect()
    }

    #[test]
    fn remote_monitors_count_per_port_and_keep_creation_order() {
        let mut m = RemoteMonitors::default();
        assert!(m.add("n", "p", 1, Monitor::callback(|_| {})));
        assert!(!m.add("n", "p", 2, Monitor::callback(|_| {})));
        assert!(!m.add("n", "p", 3, Monitor::callback(|_| {})));
        assert!(m.add("n", "q", 4, Monitor::callback(|_| {})));
        assert!(matches!(m.remove("n", "p", 2), Some((_, false))));
        assert!(m.remove("n", "p", 2).is_none());
        assert_eq!(ids(&m.take_port("n", "p")), vec![1, 3]);
        assert!(matches!(m.remove("n", "q", 4), Some((_, true))));
        assert!(m.by_node.is_empty());
    }

    #[test]
    fn many_monitors_on_one_port_are_removed_one_by_one() {
        let mut m = RemoteMonitors::default();
        let n = 10_000;
        for id in 0..n {
            m.add("n", "echo", id, Monitor::callback(|_| {}));
        }
        for id in 0..n - 1 {
            assert!(matches!(m.remove("n", "echo", id), Some((_, false))));
        }
        assert!(matches!(m.remove("n", "echo", n - 1), Some((_, true))));
        assert!(m.take_node("n").is_empty());
    }
}
