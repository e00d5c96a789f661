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
        let lower = name.to_ascii_lowercase();
        if let Some(b) = lower.strip_suffix(".onion") {
            let raw = unbase32(b)
                .filter(|r| b.len() == 56 && r.len() == 35)
                .ok_or_else(err)?;
            let mut key = [0u8; 32];
            key.copy_from_slice(&raw[..32]);
            if raw[34] != 3 || raw[32..34] != onion_checksum(&key) {
                return Err(err());
            }
            return Ok(NetAddr {
                host: Host::TorV3(key),
                port,
            });
        }
        if let Some(b) = lower.strip_suffix(".b32.i2p") {
            let raw = unbase32(b)
                .filter(|r| b.len() == 52 && r.len() == 32)
                .ok_or_else(err)?;
            let mut key = [0u8; 32];
            key.copy_from_slice(&raw);
            return Ok(NetAddr {
                host: Host::I2p(key),
                port,
            });
        }
        Err(err())
    }
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
}
