//! What a node takes from the host and the process it runs in: the host name (for `%n` and
//! as the default profile name) and the per-run prefix of its local port names.
//!
//! These read the operating system (a `/proc` file, the environment, the clock, the process
//! ID), which is why they live here and not in the sans-IO `aemp-proto`.

use aemp_proto::ids::{random_alnum, ALNUM};
use std::time::{SystemTime, UNIX_EPOCH};

/// The host name as `uname -n` gives it (used for `%n` and as the default profile name):
/// the kernel's host name, else `$HOSTNAME`, else `localhost`.
pub fn nodename() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_string())
}

/// The prefix of local port names for this run, for
/// [`PortNamer::new`](aemp_proto::ids::PortNamer::new): empty for a randomised node ID
/// (`randomised` as in [`ExpandedNodeId`](aemp_proto::ids::ExpandedNodeId), the ID itself is
/// fresh then), otherwise 9 characters from `[0-9A-Za-z]`: 5 from the process ID mixed with
/// the clock, then 4 random ones. A node restarted with the same ID therefore does not hand
/// out the port names of its previous run.
pub fn port_prefix(randomised: bool) -> String {
    if randomised {
        return String::new();
    }
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut seed = u64::from(std::process::id()) ^ t.rotate_left(17);
    let mut s = String::with_capacity(9);
    for _ in 0..5 {
        s.push(char::from(ALNUM[(seed % ALNUM.len() as u64) as usize]));
        seed /= ALNUM.len() as u64;
    }
    s.push_str(&random_alnum(4));
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use aemp_proto::ids::PortNamer;

    #[test]
    fn nodename_is_a_usable_name() {
        let n = nodename();
        assert!(!n.is_empty());
        assert_eq!(n, n.trim());
    }

    #[test]
    fn port_prefix_differs_across_runs() {
        assert_eq!(port_prefix(true), "");
        let a = port_prefix(false);
        let b = port_prefix(false);
        assert_eq!(a.len(), 9);
        assert!(a.bytes().all(|c| ALNUM.contains(&c)), "{a:?}");
        assert_ne!(a, b, "two runs of one node ID must not share port names");
        let (na, nb) = (
            PortNamer::new(&a, "x").next_local(),
            PortNamer::new(&b, "x").next_local(),
        );
        assert_ne!(na, nb);
    }
}
