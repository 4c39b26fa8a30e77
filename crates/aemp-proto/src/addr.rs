//! Socket addresses as the reference writes them.
//!
//! Node addresses travel as strings (the `addr` list of a node in the global database, the
//! peer address a handshake reports), so every place that turns a [`SocketAddr`] into such a
//! string must use the one format of AnyEvent::Socket, given here.

use std::net::SocketAddr;

/// Formats a socket address like AnyEvent's `format_hostport`: `1.2.3.4:5`, `[::1]:5`; an
/// IPv4-mapped IPv6 address is shown as IPv4 (as `format_address` does). Scope IDs are not
/// shown (AnyEvent has none).
pub fn format_hostport(addr: &SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => format!("{}:{}", a.ip(), a.port()),
        SocketAddr::V6(a) => match a.ip().to_ipv4_mapped() {
            Some(v4) => format!("{v4}:{}", a.port()),
            None => format!("[{}]:{}", a.ip(), a.port()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::format_hostport;

    #[test]
    fn formats_like_anyevent() {
        let f = |s: &str| format_hostport(&s.parse().unwrap());
        assert_eq!(f("1.2.3.4:5"), "1.2.3.4:5");
        assert_eq!(f("[::1]:5"), "[::1]:5");
        assert_eq!(f("[2001:DB8:0:0::1]:4040"), "[2001:db8::1]:4040");
        assert_eq!(f("[::ffff:10.0.0.1]:1"), "10.0.0.1:1");
        assert_eq!(f("[fe80::1%2]:7"), "[fe80::1]:7");
    }
}
