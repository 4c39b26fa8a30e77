//! Bind and seed addresses: parsing `host:port` entries, finding the local
//! interface addresses for `*`, resolving names, and formatting addresses the way the
//! reference does (AnyEvent::Socket `format_hostport`).
//!
//! Resolution ([`Endpoint::resolve`], [`HostPort::resolve`], [`local_addresses`]) blocks (DNS
//! and the interface list); from async code, call it inside `tokio::task::spawn_blocking`.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs, UdpSocket};

pub use aemp_proto::addr::format_hostport;

/// Why a bind or seed entry could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddrError {
    /// `[` without a matching `]`, or brackets around something that is not an address.
    #[error("bad bracketed host {0:?}")]
    BadBracket(String),
    /// The host part is empty or contains characters a host name cannot have.
    #[error("bad host {0:?}")]
    BadHost(String),
    /// The port is neither a number up to 65535 nor `*`.
    #[error("bad port {0:?} (must be a number from 0 to 65535 or *)")]
    BadPort(String),
    /// Text follows the port.
    #[error("unexpected text {0:?} after the port")]
    Trailing(String),
    /// A seed without a port cannot be connected to.
    #[error("a seed needs a port")]
    SeedWithoutPort,
}

/// The host part of an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// `*`: every local interface address (see [`local_addresses`]).
    Any,
    /// A literal IPv4 or IPv6 address.
    Ip(IpAddr),
    /// A name to resolve through DNS.
    Name(String),
}

/// One parsed `host:port`. Port 0 means "ephemeral" for binds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    /// The host.
    pub host: Host,
    /// The port (`*` and a missing port are 0).
    pub port: u16,
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Host::Any => write!(f, "*:{}", self.port),
            Host::Ip(ip) => f.write_str(&format_hostport(&SocketAddr::new(*ip, self.port))),
            Host::Name(n) => write!(f, "{n}:{}", self.port),
        }
    }
}

fn parse_port(p: &str) -> Result<u16, AddrError> {
    if p == "*" {
        return Ok(0);
    }
    if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AddrError::BadPort(p.to_string()));
    }
    p.parse().map_err(|_| AddrError::BadPort(p.to_string()))
}

/// Splits what follows the host into the port: `:port`, `#port` or whitespace then port, or
/// nothing (port 0).
fn parse_port_suffix(rest: &str) -> Result<u16, AddrError> {
    let rest = rest.trim_end();
    if rest.is_empty() {
        return Ok(0);
    }
    let port = if let Some(p) = rest.strip_prefix([':', '#']) {
        p
    } else if rest.starts_with(char::is_whitespace) {
        rest.trim_start()
    } else {
        return Err(AddrError::Trailing(rest.to_string()));
    };
    if let Some(i) = port.find(|c: char| c == ':' || c.is_whitespace()) {
        return Err(AddrError::Trailing(port[i..].to_string()));
    }
    parse_port(port)
}

fn name_or_ip(h: &str) -> Result<Host, AddrError> {
    if h == "*" {
        return Ok(Host::Any);
    }
    if let Ok(ip) = h.parse::<Ipv4Addr>() {
        return Ok(Host::Ip(IpAddr::V4(ip)));
    }
    // DNS names are at most 253 characters; anything with brackets, colons or spaces is
    // certainly not one.
    if h.is_empty()
        || h.len() > 253
        || h.chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '[' | ']' | ':' | '#'))
    {
        return Err(AddrError::BadHost(h.to_string()));
    }
    Ok(Host::Name(h.to_string()))
}

impl HostPort {
    /// Parses one entry as the reference does (AnyEvent::Socket `parse_hostport` with default
    /// port 0, after the node's own rewrite of digits-only entries):
    ///
    /// * only digits (`"4040"`) means `<nodename>:4040`, empty means `<nodename>`;
    /// * `[v6addr]:port`, a bare IPv6 address (optionally followed by ` port` or `#port`),
    ///   `host:port`, `host port`, `host#port`, `host`;
    /// * port `*` or missing is 0; host `*` is [`Host::Any`].
    ///
    /// Service names as ports are not supported (a clear error instead).
    pub fn parse(text: &str, nodename: &str) -> Result<HostPort, AddrError> {
        if text.bytes().all(|b| b.is_ascii_digit()) {
            let port = if text.is_empty() {
                0
            } else {
                parse_port(text)?
            };
            return Ok(HostPort {
                host: name_or_ip(nodename)?,
                port,
            });
        }
        let t = text.trim_start();
        if let Some(inner) = t.strip_prefix('[') {
            let end = inner
                .find(']')
                .ok_or_else(|| AddrError::BadBracket(t.to_string()))?;
            let h = &inner[..end];
            let host = match h.parse::<Ipv6Addr>() {
                Ok(ip) => Host::Ip(IpAddr::V6(ip)),
                Err(_) if !h.contains(':') && !h.contains('[') => {
                    name_or_ip(h).map_err(|_| AddrError::BadBracket(t.to_string()))?
                }
                Err(_) => return Err(AddrError::BadBracket(t.to_string())),
            };
            return Ok(HostPort {
                host,
                port: parse_port_suffix(&inner[end + 1..])?,
            });
        }
        // A bare IPv6 address runs up to whitespace or `#` (a `:port` would be read as part
        // of the address, exactly as AnyEvent does, which is why `[v6]:port` exists).
        let head_end = t
            .find(|c: char| c.is_whitespace() || c == '#')
            .unwrap_or(t.len());
        let head = &t[..head_end];
        // Anything else (including a failed IPv6 parse) is `host[:port]`.
        if head.matches(':').count() >= 2 {
            if let Ok(ip) = head.parse::<Ipv6Addr>() {
                return Ok(HostPort {
                    host: Host::Ip(IpAddr::V6(ip)),
                    port: parse_port_suffix(&t[head_end..])?,
                });
            }
        }
        let host_end = t
            .find(|c: char| c.is_whitespace() || c == ':' || c == '#')
            .unwrap_or(t.len());
        Ok(HostPort {
            host: name_or_ip(&t[..host_end])?,
            port: parse_port_suffix(&t[host_end..])?,
        })
    }

    /// The socket addresses this entry stands for: every local interface address for `*`,
    /// the literal address, or every address DNS returns for a name (in DNS order). Blocks.
    pub fn resolve(&self) -> io::Result<Vec<SocketAddr>> {
        match &self.host {
            Host::Any => Ok(local_addresses()?
                .into_iter()
                .map(|ip| SocketAddr::new(ip, self.port))
                .collect()),
            Host::Ip(ip) => Ok(vec![SocketAddr::new(*ip, self.port)]),
            Host::Name(n) => Ok((n.as_str(), self.port).to_socket_addrs()?.collect()),
        }
    }
}

/// One configured bind or seed string. Like the reference resolver, an entry may list
/// several endpoints separated by `,`; they are used in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The entry as configured (used as the seed's identity).
    pub text: String,
    /// Its endpoints, at least one.
    pub parts: Vec<HostPort>,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Endpoint {
    /// Parses an entry (see [`HostPort::parse`] for each comma-separated part). An empty
    /// entry is the node name; trailing empty parts are ignored, as Perl's `split` does.
    pub fn parse(text: &str, nodename: &str) -> Result<Endpoint, AddrError> {
        let mut pieces: Vec<&str> = text.split(',').collect();
        while pieces.len() > 1 && pieces.last().is_some_and(|p| p.is_empty()) {
            pieces.pop();
        }
        let parts = pieces
            .into_iter()
            .map(|p| HostPort::parse(p, nodename))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Endpoint {
            text: text.to_string(),
            parts,
        })
    }

    /// Parses a seed entry: like [`Endpoint::parse`], but every part needs a non-zero port,
    /// since a seed is something to connect to.
    pub fn parse_seed(text: &str, nodename: &str) -> Result<Endpoint, AddrError> {
        let ep = Endpoint::parse(text, nodename)?;
        if ep.parts.iter().any(|p| p.port == 0) {
            return Err(AddrError::SeedWithoutPort);
        }
        Ok(ep)
    }

    /// All socket addresses of all parts, in order, without duplicates. Blocks (DNS, the
    /// interface list).
    pub fn resolve(&self) -> io::Result<Vec<SocketAddr>> {
        let mut out: Vec<SocketAddr> = Vec::new();
        for p in &self.parts {
            for a in p.resolve()? {
                if !out.contains(&a) {
                    out.push(a);
                }
            }
        }
        Ok(out)
    }
}

/// Resolves every entry (see [`Endpoint::resolve`]) into one list without duplicates, in
/// order; e.g. all bind addresses, one listener each. Blocks (DNS, the interface list).
pub fn resolve_all(entries: &[Endpoint]) -> Result<Vec<SocketAddr>, super::ConfigError> {
    let mut out: Vec<SocketAddr> = Vec::new();
    for e in entries {
        let addrs = e.resolve().map_err(|source| super::ConfigError::Resolve {
            entry: e.text.clone(),
            source,
        })?;
        for a in addrs {
            if !out.contains(&a) {
                out.push(a);
            }
        }
    }
    Ok(out)
}

/// True for the IPv6 addresses `*` includes: global unicast (`2000::/3`) and unique local
/// (`fc00::/7`), the same first-byte test the reference makes.
pub fn is_wanted_v6(ip: &Ipv6Addr) -> bool {
    let first = ip.octets()[0];
    (0x20..=0x3f).contains(&first) || first == 0xfc || first == 0xfd
}

/// The addresses host `*` stands for: every local IPv4 address except `127.0.0.0/8`, then
/// every global-unicast or ULA IPv6 address that can be bound, each once,
/// in the order the system lists them. Blocks briefly.
///
/// The addresses come from the interface list (`getifaddrs`, through the `if-addrs` crate),
/// so they are those of the network namespace the process runs in. An IPv6 address still in
/// duplicate address detection, or that failed it, cannot be bound; the interface list does
/// not tell, so every IPv6 candidate is tried with a bind to an ephemeral UDP port, and skipped
/// when that fails. Fails only when the interface list cannot be read.
pub fn local_addresses() -> io::Result<Vec<IpAddr>> {
    let found = if_addrs::get_if_addrs()?.into_iter().map(|i| i.ip());
    let out = select_local(found, |ip| {
        UdpSocket::bind(SocketAddr::new(IpAddr::V6(*ip), 0)).is_ok()
    });
    if out.is_empty() {
        tracing::warn!("bind host * found no usable local address (loopback is excluded)");
    }
    Ok(out)
}

/// The rules of [`local_addresses`] applied to a list of interface addresses: IPv4 ones
/// outside `127.0.0.0/8` (and not `0.0.0.0`) first, then the IPv6 ones that
/// [`is_wanted_v6`] accepts and `bindable` confirms, each family in input order, without
/// duplicates.
fn select_local(
    found: impl IntoIterator<Item = IpAddr>,
    bindable: impl Fn(&Ipv6Addr) -> bool,
) -> Vec<IpAddr> {
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for ip in found {
        match ip {
            IpAddr::V4(a) if !a.is_loopback() && !a.is_unspecified() && !v4.contains(&ip) => {
                v4.push(ip);
            }
            IpAddr::V6(a) if is_wanted_v6(&a) && !v6.contains(&ip) && bindable(&a) => {
                v6.push(ip);
            }
            _ => {}
        }
    }
    v4.extend(v6);
    v4
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hp(t: &str) -> Result<HostPort, AddrError> {
        HostPort::parse(t, "myhost")
    }

    fn name(n: &str, port: u16) -> HostPort {
        HostPort {
            host: Host::Name(n.into()),
            port,
        }
    }

    fn ip(a: &str, port: u16) -> HostPort {
        HostPort {
            host: Host::Ip(a.parse().unwrap()),
            port,
        }
    }

    #[test]
    fn parses_the_special_forms() {
        assert_eq!(hp("4040").unwrap(), name("myhost", 4040));
        assert_eq!(hp("").unwrap(), name("myhost", 0));
        assert_eq!(
            hp("*").unwrap(),
            HostPort {
                host: Host::Any,
                port: 0
            }
        );
        assert_eq!(
            hp("*:4040").unwrap(),
            HostPort {
                host: Host::Any,
                port: 4040
            }
        );
        assert_eq!(
            hp("*:*").unwrap(),
            HostPort {
                host: Host::Any,
                port: 0
            }
        );
        assert_eq!(hp("host.example").unwrap(), name("host.example", 0));
        assert_eq!(hp("host.example:80").unwrap(), name("host.example", 80));
        assert_eq!(hp("host.example 80").unwrap(), name("host.example", 80));
        assert_eq!(hp("host.example#80").unwrap(), name("host.example", 80));
        assert_eq!(hp("10.0.0.1:4040").unwrap(), ip("10.0.0.1", 4040));
        assert_eq!(hp("  10.0.0.1:4040  ").unwrap(), ip("10.0.0.1", 4040));
    }

    #[test]
    fn parses_ipv6() {
        assert_eq!(hp("[::1]:4040").unwrap(), ip("::1", 4040));
        assert_eq!(hp("[fd00::2]").unwrap(), ip("fd00::2", 0));
        assert_eq!(hp("[2001:db8::1]:*").unwrap(), ip("2001:db8::1", 0));
        assert_eq!(hp("::1").unwrap(), ip("::1", 0));
        assert_eq!(hp("::1 4040").unwrap(), ip("::1", 4040));
        assert_eq!(hp("fd00::2#4040").unwrap(), ip("fd00::2", 4040));
        // As in AnyEvent, a bare address swallows a trailing ":4040".
        assert_eq!(hp("::1:4040").unwrap(), ip("::1:4040", 0));
    }

    #[test]
    fn rejects_garbage() {
        assert!(matches!(hp("host:http"), Err(AddrError::BadPort(_))));
        assert!(matches!(hp("host:70000"), Err(AddrError::BadPort(_))));
        assert!(matches!(hp("host:"), Err(AddrError::BadPort(_))));
        assert!(matches!(hp("99999"), Err(AddrError::BadPort(_))));
        assert!(matches!(hp("[::1"), Err(AddrError::BadBracket(_))));
        assert!(matches!(hp("[not:v6]:1"), Err(AddrError::BadBracket(_))));
        assert!(matches!(hp("a:1:2"), Err(AddrError::Trailing(_))));
        assert!(matches!(hp("host:1 2"), Err(AddrError::Trailing(_))));
        assert!(matches!(hp("[::1]x"), Err(AddrError::Trailing(_))));
        assert!(matches!(hp("::g:1"), Err(AddrError::BadHost(_))));
        assert!(matches!(hp(":80"), Err(AddrError::BadHost(_))));
    }

    #[test]
    fn endpoints_and_seeds() {
        let e = Endpoint::parse("a:1,[::1]:2,", "h").unwrap();
        assert_eq!(e.parts, vec![name("a", 1), ip("::1", 2)]);
        assert_eq!(Endpoint::parse("", "h").unwrap().parts, vec![name("h", 0)]);
        assert_eq!(
            Endpoint::parse_seed("a", "h"),
            Err(AddrError::SeedWithoutPort)
        );
        assert!(Endpoint::parse_seed("a:1,b", "h").is_err());
        assert!(Endpoint::parse_seed("127.0.0.1:4040", "h").is_ok());
    }

    #[test]
    fn resolves_literals_and_localhost() {
        let e = Endpoint::parse("127.0.0.1:5,[::1]:6,127.0.0.1:5", "h").unwrap();
        let got = e.resolve().unwrap();
        assert_eq!(
            got,
            vec![
                "127.0.0.1:5".parse::<SocketAddr>().unwrap(),
                "[::1]:6".parse().unwrap()
            ]
        );
        let l = HostPort::parse("localhost:7", "h")
            .unwrap()
            .resolve()
            .unwrap();
        assert!(!l.is_empty());
        assert!(l.iter().all(|a| a.ip().is_loopback() && a.port() == 7));
    }

    #[test]
    fn resolve_all_merges_in_order() {
        let eps = [
            Endpoint::parse("127.0.0.1:1", "h").unwrap(),
            Endpoint::parse("127.0.0.1:1,[::1]:2", "h").unwrap(),
        ];
        assert_eq!(
            resolve_all(&eps).unwrap(),
            vec![
                "127.0.0.1:1".parse::<SocketAddr>().unwrap(),
                "[::1]:2".parse().unwrap()
            ]
        );
    }

    #[test]
    fn any_excludes_loopback() {
        let got = HostPort {
            host: Host::Any,
            port: 9,
        }
        .resolve()
        .unwrap();
        assert!(got.iter().all(|a| !a.ip().is_loopback() && a.port() == 9));
    }

    #[test]
    fn displays_like_anyevent() {
        assert_eq!(ip("fd00::1", 3).to_string(), "[fd00::1]:3");
        assert_eq!(ip("::ffff:10.0.0.1", 3).to_string(), "10.0.0.1:3");
        assert_eq!(name("h", 3).to_string(), "h:3");
    }

    #[test]
    fn wanted_v6_is_global_unicast_or_ula() {
        let yes = [
            "2000::",
            "2001:db8::1",
            "3fff:ffff::1",
            "fc00::1",
            "fd12:3456::1",
        ];
        let no = [
            "::",
            "::1",
            "4000::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "::ffff:10.0.0.1",
            "fbff::1",
        ];
        for a in yes {
            assert!(is_wanted_v6(&a.parse().unwrap()), "{a} must be included");
        }
        for a in no {
            assert!(!is_wanted_v6(&a.parse().unwrap()), "{a} must be excluded");
        }
    }

    #[test]
    fn local_selection_rules() {
        let found: Vec<IpAddr> = [
            "127.0.0.1",
            "::1",
            "fe80::fc00:ff:fe00:1",
            "fd00::2",
            "192.0.2.2",
            "127.1.2.3",
            "2001:db8::5",
            "0.0.0.0",
            "10.1.2.3",
            "169.254.0.7",
            "192.0.2.2",
            "2001:db8::7",
            "fd00::2",
            "ff02::1",
        ]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
        // 2001:db8::5 plays an address still in duplicate address detection.
        let tentative: Ipv6Addr = "2001:db8::5".parse().unwrap();
        let got = select_local(found, |ip| *ip != tentative);
        let want: Vec<IpAddr> = [
            "192.0.2.2",
            "10.1.2.3",
            "169.254.0.7",
            "fd00::2",
            "2001:db8::7",
        ]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn local_addresses_follow_the_rules() {
        let got = local_addresses().unwrap();
        let v4_count = got.iter().filter(|a| a.is_ipv4()).count();
        assert!(
            got[..v4_count].iter().all(IpAddr::is_ipv4),
            "IPv4 first: {got:?}"
        );
        assert_eq!(select_local(got.clone(), |_| true), got, "{got:?}");
    }
}
