//! Partitions and healing between nodes that run as hosts in their own network namespaces
//! (Linux only, needs root / CAP_NET_ADMIN; the tests skip with a message otherwise).
//!
//! Each node is this test binary re-executed in a namespace (see `netns_common`); links are
//! cut by setting a veth down, so the TCP connections are not closed: the nodes notice the
//! loss only through TCP itself. aemp, like Perl AnyEvent::MP 2.02, sends no keepalives of
//! its own after the handshake and relies on `SO_KEEPALIVE`; the tests
//! that expect a timely detection therefore shorten the kernel's keepalive settings inside
//! the hosts' own namespaces.

mod netns_common;
use netns_common::{contents, Lab};
use std::time::Duration;

/// Bound of every single wait: generous, the machine is small and shared.
const WAIT: Duration = Duration::from_secs(60);

/// Not a test of its own: the node run in a namespace by the tests below. Does nothing unless
/// the child environment variable is set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "helper: runs only as a child process of the netns tests"]
async fn node_in_netns() {
    netns_common::run_child().await;
}

/// How the slave partition scenario is run.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Short keepalive settings in the hosts' namespaces; nothing is sent during the cut.
    Keepalive,
    /// The kernel's default keepalive settings (first probe after 2 h idle).
    DefaultKeepalive,
    /// Short keepalive settings, but A watches the family and B changes it during the cut,
    /// so G has data in flight to A.
    InFlight,
}

/// A global seed G and two slaves A and B in three namespaces. A's entries reach B; when A's
/// link goes down they disappear at G and B once the dead connection is detected; when it
/// comes back A reconnects to its seed and the database converges again.
fn slave_partition_and_heal(subnet: u8, mode: Mode) {
    let Some(mut lab) = Lab::new(&format!("s{subnet}"), subnet) else {
        return;
    };
    let fast = mode != Mode::DefaultKeepalive;
    let hg = lab.add_host(1, fast);
    let ha = lab.add_host(2, fast);
    let hb = lab.add_host(3, fast);
    let seed = vec![format!("{}:4040", hg.ip)];
    let mut g = lab.spawn(&hg, "g", 4040, &seed);
    let mut a = lab.spawn(&ha, "a", 4040, &seed);
    let mut b = lab.spawn(&hb, "b", 4040, &seed);

    b.mon("svc");
    if mode == Mode::InFlight {
        a.mon("svc");
    }
    a.cmd("set svc a1 one");
    a.cmd("set svc a2 two");
    b.cmd("set svc b1 bee");
    g.cmd("set svc g1 gee");
    let mut all = contents(&[("a1", "one"), ("a2", "two"), ("b1", "bee"), ("g1", "gee")]);
    let mut without_a = contents(&[("b1", "bee"), ("g1", "gee")]);
    b.wait_mon("svc", &all, WAIT);
    g.wait_family("svc", &all, WAIT);
    a.wait_family("svc", &all, WAIT);
    // Let the last replies be acknowledged: a cut with data in flight is another case
    // (Mode::InFlight).
    lab.wait_tcp_idle(WAIT);

    // Partition: A alone. Only TCP itself can notice.
    lab.host_link(&ha, false);
    if mode == Mode::InFlight {
        // G forwards this change to its watcher A, over the dead link.
        b.cmd("set svc b2 bee2");
        for m in [&mut all, &mut without_a] {
            m.insert("b2".into(), "bee2".into());
        }
    }
    b.wait_mon("svc", &without_a, WAIT);
    g.wait_family("svc", &without_a, WAIT);
    g.wait_down("a", WAIT);
    // A must notice too, or it would never send its entries again after the healing.
    a.wait_down("g", WAIT);

    // Heal: A's seed connector retries (back-off up to monitor_timeout, 5 s here).
    lab.host_link(&ha, true);
    b.wait_mon("svc", &all, WAIT);
    g.wait_family("svc", &all, WAIT);
    a.wait_family("svc", &all, WAIT);
    if mode == Mode::InFlight {
        a.wait_mon("svc", &all, WAIT);
    }
    assert_eq!(b.family("svc").as_ref(), Some(&all), "db_family at B");
    assert_eq!(b.mon_contents("svc"), Some(&all), "db_mon at B");
}

#[test]
fn slave_partition_is_detected_and_heals() {
    slave_partition_and_heal(1, Mode::Keepalive);
}

/// The same with the kernel's default keepalive settings in the namespaces: the node sets
/// its own per-socket keepalive timing (from `monitor_timeout`), so the dead idle connection
/// is still noticed.
#[test]
fn slave_partition_with_default_keepalive() {
    slave_partition_and_heal(3, Mode::DefaultKeepalive);
}

/// The same with data in flight from G to A when the link dies: keepalive does not run on a
/// connection with unacknowledged data; the node's `TCP_USER_TIMEOUT` ends it.
#[test]
fn slave_partition_with_data_in_flight() {
    slave_partition_and_heal(4, Mode::InFlight);
}

/// Two global seeds G1 and G2, each listing both, with a slave each in its own namespace
/// (S1 with G1 on host 1, S2 with G2 on host 2). Cutting host 1 off separates the two
/// global nodes (each slave keeps its seed): each side's database loses the other side's
/// entries; after healing both global nodes and both slaves hold the same contents.
#[test]
fn global_partition_heals_and_converges() {
    let Some(mut lab) = Lab::new("g", 2) else {
        return;
    };
    let h1 = lab.add_host(1, true);
    let h2 = lab.add_host(2, true);
    let seeds = vec![format!("{}:4040", h1.ip), format!("{}:4040", h2.ip)];
    let mut g1 = lab.spawn(&h1, "g1", 4040, &seeds);
    let mut g2 = lab.spawn(&h2, "g2", 4040, &seeds);
    let mut s1 = lab.spawn(&h1, "s1", 4041, &seeds[..1]);
    let mut s2 = lab.spawn(&h2, "s2", 4041, &seeds[1..]);

    s1.mon("svc");
    s2.mon("svc");
    g1.cmd("set svc g1 x1");
    g2.cmd("set svc g2 x2");
    s1.cmd("set svc s1 y1");
    s2.cmd("set svc s2 y2");
    let all = contents(&[("g1", "x1"), ("g2", "x2"), ("s1", "y1"), ("s2", "y2")]);
    let side1 = contents(&[("g1", "x1"), ("s1", "y1")]);
    let side2 = contents(&[("g2", "x2"), ("s2", "y2")]);
    g1.wait_family("svc", &all, WAIT);
    g2.wait_family("svc", &all, WAIT);
    s1.wait_mon("svc", &all, WAIT);
    s2.wait_mon("svc", &all, WAIT);
    lab.wait_tcp_idle(WAIT);

    // Partition: the hub's end of host 1's veth goes down; inside host 1 (and host 2) the
    // nodes still reach each other.
    lab.hub_link(&h1, false);
    g1.wait_down("g2", WAIT);
    g2.wait_down("g1", WAIT);
    g1.wait_family("svc", &side1, WAIT);
    g2.wait_family("svc", &side2, WAIT);
    s1.wait_mon("svc", &side1, WAIT);
    s2.wait_mon("svc", &side2, WAIT);

    // Heal: each global node keeps dialling the other, its seed.
    lab.hub_link(&h1, true);
    g1.wait_family("svc", &all, WAIT);
    g2.wait_family("svc", &all, WAIT);
    s1.wait_mon("svc", &all, WAIT);
    s2.wait_mon("svc", &all, WAIT);
    assert_eq!(s1.family("svc").as_ref(), Some(&all), "db_family at S1");
    assert_eq!(s2.family("svc").as_ref(), Some(&all), "db_family at S2");
}
