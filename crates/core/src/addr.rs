//! Network addresses of every kind BIP155 knows, and the groups they fall into.
//!
//! [`NetAddr`] is what the pool keeps about where a peer can be reached: IPv4, IPv6, Tor v3,
//! I2P or CJDNS, plus a port. [`NetAddr::group`] is the network group used to spread
//! connections and address-book buckets across the network (Bitcoin Core's `GetGroup`).
//!
//! ## Network groups
//! | address | group |
//! |---|---|
//! | IPv4 (and IPv4-mapped IPv6) | the /16 |
//! | IPv6 | the /32 |
//! | Tor v3, I2P, CJDNS | the network and the first 4 bits of the address |
//! | loopback (127.0.0.0/8, ::1) | **the whole address** |
//! | other unroutable (private, link-local, ...) | one group for all of them |
//!
//! The loopback rule is peerpool's own. Bitcoin Core puts every local address in one group,
//! which makes a test network of many daemons on 127.x.y.z addresses impossible: each node could
//! make only one outbound connection to the whole group. Here each loopback address counts as a
//! host of its own, as it does on a test machine, while real networks group exactly as Core
//! does.
//!
//! With an asmap, addresses it maps are grouped by their autonomous system instead
//! ([`crate::asmap::NetGroups`]).
//!
//! ## Addresses as people write them
//! [`AddrSpec::parse`] reads what a flag, a config file or an RPC argument holds (`IP`,
//! `IP:PORT`, `[IPv6]:PORT`, `NAME.onion[:PORT]`, `NAME.b32.i2p`, `HOST[:PORT]`), filling in a
//! default port. It does no I/O: a host name stays a name, for the runtime to resolve.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use bitcoin::p2p::address::AddrV2;
use sha3::{Digest, Sha3_256};

/// The network an address belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Network {
    /// IPv4.
    Ipv4,
    /// IPv6.
    Ipv6,
    /// Tor v3 onion services.
    Onion,
    /// I2P.
    I2p,
    /// CJDNS.
    Cjdns,
}

impl Network {
    /// Every network, in BIP155's order (Bitcoin Core lists them so in RPC).
    pub const ALL: [Network; 5] = [
        Network::Ipv4,
        Network::Ipv6,
        Network::Onion,
        Network::I2p,
        Network::Cjdns,
    ];

    /// The name Bitcoin Core uses in RPC (`ipv4`, `ipv6`, `onion`, `i2p`, `cjdns`).
    pub fn as_str(self) -> &'static str {
        match self {
            Network::Ipv4 => "ipv4",
            Network::Ipv6 => "ipv6",
            Network::Onion => "onion",
            Network::I2p => "i2p",
            Network::Cjdns => "cjdns",
        }
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A host on any BIP155 network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Host {
    /// IPv4 address.
    Ipv4(Ipv4Addr),
    /// IPv6 address (never an IPv4-mapped one: those are stored as IPv4).
    Ipv6(Ipv6Addr),
    /// Tor v3: the service's ed25519 public key.
    TorV3([u8; 32]),
    /// I2P: SHA256 of the destination.
    I2p([u8; 32]),
    /// CJDNS address (in fc00::/8).
    Cjdns(Ipv6Addr),
}

/// A host and port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NetAddr {
    /// The host.
    pub host: Host,
    /// The port (0 for I2P, which has none).
    pub port: u16,
}

/// A network group; see the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NetGroup {
    class: u8,
    bytes: [u8; 16],
}

impl NetGroup {
    /// The group of every address an asmap assigns to autonomous system `asn` (see
    /// [`crate::asmap::NetGroups`]).
    pub fn of_as(asn: u32) -> NetGroup {
        let mut bytes = [0u8; 16];
        bytes[..4].copy_from_slice(&asn.to_be_bytes());
        NetGroup { class: 7, bytes }
    }

    /// The group's bytes, for keyed hashing (class first).
    pub fn to_bytes(self) -> [u8; 17] {
        let mut out = [0u8; 17];
        out[0] = self.class;
        out[1..].copy_from_slice(&self.bytes);
        out
    }
}

impl NetAddr {
    /// An address from an IP socket address (IPv4-mapped IPv6 becomes IPv4).
    pub fn from_socket(sa: SocketAddr) -> NetAddr {
        NetAddr {
            host: Host::from_ip(sa.ip()),
            port: sa.port(),
        }
    }

    /// The socket address, for IPv4 and IPv6 hosts.
    pub fn to_socket(self) -> Option<SocketAddr> {
        match self.host {
            Host::Ipv4(ip) => Some(SocketAddr::new(IpAddr::V4(ip), self.port)),
            Host::Ipv6(ip) => Some(SocketAddr::new(IpAddr::V6(ip), self.port)),
            _ => None,
        }
    }

    /// From an addrv2 entry; `None` for networks we do not handle (Tor v2, unknown ids).
    pub fn from_addrv2(addr: &AddrV2, port: u16) -> Option<NetAddr> {
        let host = match addr {
            AddrV2::Ipv4(ip) => Host::Ipv4(*ip),
            AddrV2::Ipv6(ip) => Host::from_ip(IpAddr::V6(*ip)),
            AddrV2::TorV3(k) => Host::TorV3(*k),
            AddrV2::I2p(k) => Host::I2p(*k),
            AddrV2::Cjdns(ip) if ip.octets()[0] == 0xfc => Host::Cjdns(*ip),
            _ => return None,
        };
        Some(NetAddr { host, port })
    }

    /// As an addrv2 entry.
    pub fn to_addrv2(self) -> AddrV2 {
        match self.host {
            Host::Ipv4(ip) => AddrV2::Ipv4(ip),
            Host::Ipv6(ip) => AddrV2::Ipv6(ip),
            Host::TorV3(k) => AddrV2::TorV3(k),
            Host::I2p(k) => AddrV2::I2p(k),
            Host::Cjdns(ip) => AddrV2::Cjdns(ip),
        }
    }

    /// The address's network.
    pub fn network(&self) -> Network {
        match self.host {
            Host::Ipv4(_) => Network::Ipv4,
            Host::Ipv6(_) => Network::Ipv6,
            Host::TorV3(_) => Network::Onion,
            Host::I2p(_) => Network::I2p,
            Host::Cjdns(_) => Network::Cjdns,
        }
    }

    /// A loopback address (127.0.0.0/8 or ::1).
    pub fn is_loopback(&self) -> bool {
        match self.host {
            Host::Ipv4(ip) => ip.is_loopback(),
            Host::Ipv6(ip) => ip.is_loopback(),
            _ => false,
        }
    }

    /// Whether the address can be reached across the Internet (Core's `IsRoutable`): not
    /// private, loopback, link-local, documentation, multicast or otherwise reserved.
    pub fn is_routable(&self) -> bool {
        match self.host {
            Host::Ipv4(ip) => {
                let o = ip.octets();
                !(ip.is_private()
                    || ip.is_loopback()
                    || ip.is_link_local()
                    || ip.is_unspecified()
                    || ip.is_broadcast()
                    || ip.is_multicast()
                    || ip.is_documentation()
                    || o[0] == 0
                    || (o[0] == 100 && (o[1] & 0xc0) == 64) // RFC6598 shared space
                    || (o[0] == 198 && (o[1] & 0xfe) == 18) // RFC2544 benchmarking
                    || o[0] >= 240)
            }
            Host::Ipv6(ip) => {
                let s = ip.segments();
                !(ip.is_loopback()
                    || ip.is_unspecified()
                    || ip.is_multicast()
                    || (s[0] & 0xfe00) == 0xfc00 // unique local (RFC4193)
                    || (s[0] & 0xffc0) == 0xfe80 // link local
                    || (s[0] == 0x2001 && s[1] == 0x0db8)) // documentation
            }
            Host::TorV3(_) | Host::I2p(_) | Host::Cjdns(_) => true,
        }
    }

    /// The network group; see the module docs.
    pub fn group(&self) -> NetGroup {
        let mut bytes = [0u8; 16];
        let class = match self.host {
            Host::Ipv4(ip) if ip.is_loopback() => {
                bytes[..4].copy_from_slice(&ip.octets());
                0
            }
            Host::Ipv6(ip) if ip.is_loopback() => {
                bytes.copy_from_slice(&ip.octets());
                0
            }
            _ if !self.is_routable() => 6,
            Host::Ipv4(ip) => {
                bytes[..2].copy_from_slice(&ip.octets()[..2]);
                1
            }
            Host::Ipv6(ip) => {
                bytes[..4].copy_from_slice(&ip.octets()[..4]);
                2
            }
            Host::TorV3(k) => {
                bytes[0] = k[0] & 0xf0;
                3
            }
            Host::I2p(k) => {
                bytes[0] = k[0] & 0xf0;
                4
            }
            Host::Cjdns(ip) => {
                // CJDNS addresses all start with 0xfc; the next 4 bits spread them.
                bytes[0] = ip.octets()[1] & 0xf0;
                5
            }
        };
        NetGroup { class, bytes }
    }
}

impl Host {
    /// From an IP address; IPv4-mapped IPv6 becomes IPv4.
    pub fn from_ip(ip: IpAddr) -> Host {
        match ip {
            IpAddr::V4(v4) => Host::Ipv4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Host::Ipv4(v4),
                None => Host::Ipv6(v6),
            },
        }
    }
}

/// Lower-case RFC4648 base32 without padding, as onion and I2P names use.
fn base32(data: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut out = String::with_capacity(data.len() * 8 / 5 + 1);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in data {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((acc >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((acc << (5 - bits)) & 31) as usize] as char);
    }
    out
}

fn unbase32(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 5 / 8);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = match c {
            b'a'..=b'z' => c - b'a',
            b'A'..=b'Z' => c - b'A',
            b'2'..=b'7' => c - b'2' + 26,
            _ => return None,
        };
        acc = (acc << 5) | u32::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// Tor v3 name checksum: `SHA3-256(".onion checksum" || pubkey || version)[..2]`.
fn onion_checksum(key: &[u8; 32]) -> [u8; 2] {
    let mut h = Sha3_256::new();
    h.update(b".onion checksum");
    h.update(key);
    h.update([3u8]);
    let d = h.finalize();
    [d[0], d[1]]
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ipv4(ip) => write!(f, "{ip}"),
            Host::Ipv6(ip) | Host::Cjdns(ip) => write!(f, "[{ip}]"),
            Host::TorV3(k) => {
                let mut raw = Vec::with_capacity(35);
                raw.extend_from_slice(k);
                raw.extend_from_slice(&onion_checksum(k));
                raw.push(3);
                write!(f, "{}.onion", base32(&raw))
            }
            Host::I2p(k) => write!(f, "{}.b32.i2p", base32(k)),
        }
    }
}

impl fmt::Display for NetAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// Why an address string was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid address {0:?}: expected IP:PORT, [IPv6]:PORT, NAME.onion:PORT or NAME.b32.i2p")]
pub struct AddrParseError(pub String);

impl FromStr for NetAddr {
    type Err = AddrParseError;

    /// Parses `IP:PORT`, `[IPv6]:PORT`, `<56 chars>.onion:PORT` and `<52 chars>.b32.i2p[:PORT]`.
    fn from_str(s: &str) -> Result<NetAddr, AddrParseError> {
        let err = || AddrParseError(s.to_owned());
        if let Ok(sa) = s.parse::<SocketAddr>() {
            return Ok(NetAddr::from_socket(sa));
        }
        let (name, port) = match s.rsplit_once(':') {
            Some((n, p)) => (n, p.parse::<u16>().map_err(|_| err())?),
            None => (s, 0),
        };
        overlay_host(name)
            .map(|host| NetAddr { host, port })
            .ok_or_else(err)
    }
}

/// A Tor v3 or I2P host from its name (`<56 chars>.onion`, `<52 chars>.b32.i2p`, any case);
/// `None` for any other text, or a name whose length or checksum is wrong.
fn overlay_host(name: &str) -> Option<Host> {
    let lower = name.to_ascii_lowercase();
    if let Some(b) = lower.strip_suffix(".onion") {
        let raw = unbase32(b).filter(|r| b.len() == 56 && r.len() == 35)?;
        let mut key = [0u8; 32];
        key.copy_from_slice(&raw[..32]);
        if raw[34] != 3 || raw[32..34] != onion_checksum(&key) {
            return None;
        }
        return Some(Host::TorV3(key));
    }
    if let Some(b) = lower.strip_suffix(".b32.i2p") {
        let raw = unbase32(b).filter(|r| b.len() == 52 && r.len() == 32)?;
        let mut key = [0u8; 32];
        key.copy_from_slice(&raw);
        return Some(Host::I2p(key));
    }
    None
}

/// An address as a person writes it in a flag, a config file or an RPC argument: either an
/// address of any network, or a host name still to be resolved.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum AddrSpec {
    /// An IP, Tor or I2P address, with the port written or the default one.
    Addr(NetAddr),
    /// A host name for a resolver (the system's, or a proxy's), and the port.
    Name {
        /// The name as written (a trailing dot kept).
        host: String,
        /// The port written, or the default one.
        port: u16,
    },
}

/// Why [`AddrSpec::parse`] refused a text.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AddrSpecError {
    /// Nothing was written.
    #[error("empty address")]
    Empty,
    /// The host is fine, the port after it is not a number from 0 to 65535.
    #[error("invalid port in address {0:?}")]
    Port(String),
    /// Neither an address nor a host name.
    #[error(
        "invalid address {0:?}: expected IP, IP:PORT, [IPv6]:PORT, NAME.onion[:PORT], \
         NAME.b32.i2p or HOST[:PORT]"
    )]
    Invalid(String),
}

impl AddrSpec {
    /// Reads `IP`, `IP:PORT`, `[IPv6]` or `[IPv6]:PORT`, `NAME.onion[:PORT]`,
    /// `NAME.b32.i2p[:PORT]` or `HOST[:PORT]`. Where no port is written, IP, Tor and host name
    /// addresses get `default_port` and I2P ones 0 (I2P has no ports). Never does I/O.
    pub fn parse(s: &str, default_port: u16) -> Result<AddrSpec, AddrSpecError> {
        if s.is_empty() {
            return Err(AddrSpecError::Empty);
        }
        if let Ok(sa) = s.parse::<SocketAddr>() {
            return Ok(AddrSpec::Addr(NetAddr::from_socket(sa)));
        }
        if let Ok(ip) = unbracket(s).parse::<IpAddr>() {
            return Ok(AddrSpec::Addr(NetAddr::from_socket(SocketAddr::new(
                ip,
                default_port,
            ))));
        }
        let (host_text, port_text) = match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        };
        // Judge the host before the port, so that garbage is called garbage even when what
        // follows its last colon is not a number either.
        enum Kind {
            Ip(IpAddr),
            Overlay(Host),
            Name,
        }
        let kind = if let Ok(ip) = unbracket(host_text).parse::<IpAddr>() {
            Kind::Ip(ip)
        } else if let Some(host) = overlay_host(host_text) {
            Kind::Overlay(host)
        } else if is_host_name(host_text) && !is_overlay_name(host_text) {
            Kind::Name
        } else {
            return Err(AddrSpecError::Invalid(s.to_owned()));
        };
        let port = match port_text {
            None => None,
            Some(p) => Some(
                p.parse::<u16>()
                    .map_err(|_| AddrSpecError::Port(s.to_owned()))?,
            ),
        };
        Ok(match kind {
            Kind::Ip(ip) => AddrSpec::Addr(NetAddr::from_socket(SocketAddr::new(
                ip,
                port.unwrap_or(default_port),
            ))),
            Kind::Overlay(host @ Host::I2p(_)) => AddrSpec::Addr(NetAddr {
                host,
                port: port.unwrap_or(0),
            }),
            Kind::Overlay(host) => AddrSpec::Addr(NetAddr {
                host,
                port: port.unwrap_or(default_port),
            }),
            Kind::Name => AddrSpec::Name {
                host: host_text.to_owned(),
                port: port.unwrap_or(default_port),
            },
        })
    }

    /// The address, when no resolver is needed for it.
    pub fn addr(&self) -> Option<NetAddr> {
        match self {
            AddrSpec::Addr(a) => Some(*a),
            AddrSpec::Name { .. } => None,
        }
    }
}

/// `s` without one pair of enclosing brackets, as IPv6 addresses are written before a port.
fn unbracket(s: &str) -> &str {
    s.strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(s)
}

/// Whether `name` is in a Tor or I2P domain. A malformed one is refused rather than handed
/// to a DNS resolver, which could not answer and would learn the name.
fn is_overlay_name(name: &str) -> bool {
    let lower = name.trim_end_matches('.').to_ascii_lowercase();
    lower.ends_with(".onion") || lower.ends_with(".i2p")
}

/// Whether `s` is a DNS host name: dot-separated labels of letters, digits, `-` and `_`,
/// none empty or longer than 63 bytes, 253 bytes in all, a trailing dot allowed. A last label
/// of digits alone is refused (RFC 3696, section 2), so that `300.1.1.1` is an invalid IP
/// rather than a name to look up.
fn is_host_name(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    if s.is_empty() || s.len() > 253 {
        return false;
    }
    let labels_ok = s.split('.').all(|l| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    let numeric_top = s
        .rsplit('.')
        .next()
        .is_some_and(|top| top.bytes().all(|b| b.is_ascii_digit()));
    labels_ok && !numeric_top
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> NetAddr {
        s.parse().unwrap()
    }

    #[test]
    fn groups_follow_core_except_loopback() {
        assert_eq!(a("1.2.3.4:8333").group(), a("1.2.200.9:1").group());
        assert_ne!(a("1.2.3.4:8333").group(), a("1.3.3.4:8333").group());
        assert_eq!(
            a("[2001:470:1:2::1]:8333").group(),
            a("[2001:470:ffff::9]:1").group()
        );
        assert_ne!(
            a("[2001:470::1]:8333").group(),
            a("[2001:471::1]:8333").group()
        );
        // Private ranges share one group.
        assert_eq!(a("10.0.0.1:1").group(), a("192.168.7.7:1").group());
        // Each loopback address is its own group; the port does not matter.
        assert_ne!(a("127.0.0.1:1").group(), a("127.0.0.2:1").group());
        assert_eq!(a("127.0.0.2:1").group(), a("127.0.0.2:2").group());
        // IPv4-mapped IPv6 is IPv4.
        assert_eq!(a("[::ffff:1.2.3.4]:1").group(), a("1.2.9.9:1").group());
    }

    #[test]
    fn onion_and_i2p_names_round_trip() {
        // The Tor Project's onion service address, a published v3 name.
        let tor = "2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid.onion:9050";
        let parsed = a(tor);
        assert_eq!(parsed.network(), Network::Onion);
        assert_eq!(parsed.to_string(), tor);
        let mut bad = tor.to_owned();
        bad.replace_range(0..1, "3");
        assert!(bad.parse::<NetAddr>().is_err(), "checksum must be verified");
        let i2p = NetAddr {
            host: Host::I2p([7; 32]),
            port: 0,
        };
        assert_eq!(
            i2p.to_string()
                .trim_end_matches(":0")
                .parse::<NetAddr>()
                .unwrap(),
            i2p
        );
    }

    #[test]
    fn routability() {
        for s in [
            "10.1.1.1:1",
            "127.0.0.1:1",
            "169.254.1.1:1",
            "[fe80::1]:1",
            "[fc00::1]:1",
        ] {
            assert!(!a(s).is_routable(), "{s}");
        }
        for s in ["8.8.8.8:1", "[2a01::1]:1"] {
            assert!(a(s).is_routable(), "{s}");
        }
    }

    #[test]
    fn addrv2_conversions() {
        let x = a("[2a01::1]:8333");
        assert_eq!(NetAddr::from_addrv2(&x.to_addrv2(), 8333), Some(x));
        assert_eq!(NetAddr::from_addrv2(&AddrV2::TorV2([0; 10]), 1), None);
        assert_eq!(
            NetAddr::from_addrv2(&AddrV2::Cjdns("2001::1".parse().unwrap()), 1),
            None
        );
    }

    const TOR: &str = "2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid.onion";

    fn spec(s: &str) -> Result<AddrSpec, AddrSpecError> {
        AddrSpec::parse(s, 8333)
    }

    fn spec_addr(s: &str) -> String {
        match spec(s) {
            Ok(AddrSpec::Addr(a)) => a.to_string(),
            other => panic!("{s:?}: {other:?}"),
        }
    }

    #[test]
    fn specs_of_ip_addresses_take_the_default_port_when_none_is_written() {
        assert_eq!(spec_addr("1.2.3.4"), "1.2.3.4:8333");
        assert_eq!(spec_addr("1.2.3.4:18444"), "1.2.3.4:18444");
        assert_eq!(spec_addr("1.2.3.4:0"), "1.2.3.4:0");
        assert_eq!(spec_addr("[2001:db8::1]:9"), "[2001:db8::1]:9");
        assert_eq!(spec_addr("[2001:db8::1]"), "[2001:db8::1]:8333");
        assert_eq!(spec_addr("2001:db8::1"), "[2001:db8::1]:8333");
        assert_eq!(spec_addr("[::ffff:1.2.3.4]:5"), "1.2.3.4:5");
    }

    #[test]
    fn specs_with_a_bad_port_say_so() {
        for s in [
            "1.2.3.4:x",
            "1.2.3.4:65536",
            "[::1]:99999",
            "[::1]:",
            "seed.example:-1",
        ] {
            assert_eq!(spec(s), Err(AddrSpecError::Port(s.into())), "{s}");
        }
    }

    #[test]
    fn specs_of_onion_and_i2p_names() {
        assert_eq!(spec_addr(TOR), format!("{TOR}:8333"));
        assert_eq!(spec_addr(&format!("{TOR}:9")), format!("{TOR}:9"));
        assert_eq!(
            spec_addr(&TOR.to_ascii_uppercase()),
            format!("{TOR}:8333"),
            "names are read in any case"
        );
        let i2p = NetAddr {
            host: Host::I2p([7; 32]),
            port: 0,
        };
        let name = i2p.host.to_string();
        assert_eq!(spec(&name).unwrap().addr(), Some(i2p), "I2P has no port");
        // A name that ends like an onion but is not one is not looked up as a host.
        let bad = format!("3{}", &TOR[1..]);
        assert_eq!(spec(&bad), Err(AddrSpecError::Invalid(bad.clone())));
    }

    #[test]
    fn host_names_stay_names() {
        let name = |s: &str| match spec(s) {
            Ok(AddrSpec::Name { host, port }) => (host, port),
            other => panic!("{s:?}: {other:?}"),
        };
        assert_eq!(name("localhost"), ("localhost".into(), 8333));
        assert_eq!(
            name("seed.example.org:18333"),
            ("seed.example.org".into(), 18333)
        );
        assert_eq!(
            name("dns_seed.example."),
            ("dns_seed.example.".into(), 8333)
        );
        assert_eq!(spec("localhost").unwrap().addr(), None);
    }

    #[test]
    fn empty_and_garbage_specs_are_refused() {
        assert_eq!(spec(""), Err(AddrSpecError::Empty));
        for s in [
            "not an address",
            "300.1.1.1:5",
            "1.2.3.4.5",
            "[::1",
            "[seed.example]:1",
            "a:b:c",
            "-bad.example",
            "a..b",
            ":8333",
            "host/path",
        ] {
            assert_eq!(spec(s), Err(AddrSpecError::Invalid(s.into())), "{s}");
        }
        let long = format!("{}.example", "a".repeat(64));
        assert!(spec(&long).is_err());
    }
}
