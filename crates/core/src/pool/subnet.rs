//! [`Subnet`]: what a ban covers, in Bitcoin Core's notation.
//!
//! An IPv4 or IPv6 CIDR range (a single address is a /32 or /128) or a single Tor v3 or I2P
//! host. Parsed from and displayed as Core's `setban` writes them: `1.2.3.0/24`,
//! `1.2.3.0/255.255.255.0`, `2001:db8::/32`, a bare address, or a `.onion` / `.b32.i2p` name.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::addr::{Host, NetAddr};

/// What a ban covers: an IPv4 or IPv6 range, or a single Tor v3 or I2P host.
///
/// The network address is always stored with its host bits cleared, so two spellings of the
/// same range (`1.2.3.4/24`, `1.2.3.0/255.255.255.0`) are the same `Subnet`. An IPv4-mapped
/// IPv6 address (`::ffff:1.2.3.4`) is an IPv4 address, as for [`Host::from_ip`] and Bitcoin
/// Core: its prefix length or netmask counts IPv4 bits (`::ffff:1.2.3.0/24` is `1.2.3.0/24`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subnet(pub(crate) Repr);

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Repr {
    V4 { network: Ipv4Addr, prefix: u8 },
    V6 { network: Ipv6Addr, prefix: u8 },
    Onion([u8; 32]),
    I2p([u8; 32]),
}

/// Why a subnet was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubnetError {
    /// The string was empty.
    #[error("empty subnet")]
    Empty,
    /// The part before any `/` is not an address of a kind that can be banned.
    #[error(
        "invalid address {0:?}: expected an IPv4 or IPv6 address, NAME.onion or NAME.b32.i2p \
         (no port, no host name)"
    )]
    InvalidAddress(String),
    /// The part after `/` is neither a prefix length nor a netmask.
    #[error("invalid netmask {0:?}: expected a prefix length or a netmask such as 255.255.255.0")]
    InvalidMask(String),
    /// A prefix length longer than the address.
    #[error("prefix length {prefix} is longer than the {bits} bits of the address")]
    PrefixTooLong {
        /// The prefix length given.
        prefix: u16,
        /// Bits in the address (32 or 128).
        bits: u8,
    },
    /// A netmask whose one bits are not all at the front.
    #[error("netmask {0} is not contiguous: a one bit follows a zero bit")]
    NonContiguousMask(IpAddr),
    /// A netmask of the other address family.
    #[error("netmask {mask} does not fit address {addr}: one is IPv4, the other IPv6")]
    MaskFamilyMismatch {
        /// The address.
        addr: IpAddr,
        /// The netmask.
        mask: IpAddr,
    },
    /// A prefix or netmask after a Tor or I2P address, which can only be banned one by one.
    #[error("{0:?}: onion and I2P addresses are single hosts and take no prefix or netmask")]
    MaskOnSingleHost(String),
}

pub(crate) fn mask_v4(ip: Ipv4Addr, prefix: u8) -> Ipv4Addr {
    let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
    Ipv4Addr::from(u32::from(ip) & mask)
}

pub(crate) fn mask_v6(ip: Ipv6Addr, prefix: u8) -> Ipv6Addr {
    let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
    Ipv6Addr::from(u128::from(ip) & mask)
}

impl Subnet {
    /// The range of `prefix` leading bits of `ip`; host bits are cleared. An IPv4-mapped
    /// address is IPv4, so `prefix` then counts IPv4 bits.
    pub fn new(ip: IpAddr, prefix: u8) -> Result<Subnet, SubnetError> {
        let too_long = |bits| SubnetError::PrefixTooLong {
            prefix: u16::from(prefix),
            bits,
        };
        match unmap(ip) {
            IpAddr::V4(v4) => {
                if prefix > 32 {
                    return Err(too_long(32));
                }
                Ok(Subnet(Repr::V4 {
                    network: mask_v4(v4, prefix),
                    prefix,
                }))
            }
            IpAddr::V6(v6) => {
                if prefix > 128 {
                    return Err(too_long(128));
                }
                Ok(Subnet(Repr::V6 {
                    network: mask_v6(v6, prefix),
                    prefix,
                }))
            }
        }
    }

    /// The subnet of exactly one host: a /32, a /128 (also for CJDNS), or a Tor or I2P host.
    pub fn host(host: Host) -> Subnet {
        Subnet(match host {
            Host::Ipv4(network) => Repr::V4 {
                network,
                prefix: 32,
            },
            Host::Ipv6(v6) => match v6.to_ipv4_mapped() {
                // `Host` never holds these, but its fields are public.
                Some(network) => Repr::V4 {
                    network,
                    prefix: 32,
                },
                None => Repr::V6 {
                    network: v6,
                    prefix: 128,
                },
            },
            Host::Cjdns(network) => Repr::V6 {
                network,
                prefix: 128,
            },
            Host::TorV3(key) => Repr::Onion(key),
            Host::I2p(hash) => Repr::I2p(hash),
        })
    }

    /// Whether `host` falls in this subnet. IPv4 ranges match IPv4 hosts; IPv6 ranges match
    /// IPv6 and CJDNS hosts (see the module docs); Tor and I2P subnets match only their host.
    pub fn contains(&self, host: &Host) -> bool {
        match (self.0, Subnet::host(*host).0) {
            (Repr::V4 { network, prefix }, Repr::V4 { network: ip, .. }) => {
                mask_v4(ip, prefix) == network
            }
            (Repr::V6 { network, prefix }, Repr::V6 { network: ip, .. }) => {
                mask_v6(ip, prefix) == network
            }
            (Repr::Onion(a), Repr::Onion(b)) | (Repr::I2p(a), Repr::I2p(b)) => a == b,
            _ => false,
        }
    }

    /// The prefix length of an IP range; `None` for Tor and I2P hosts.
    pub fn prefix(&self) -> Option<u8> {
        match self.0 {
            Repr::V4 { prefix, .. } | Repr::V6 { prefix, .. } => Some(prefix),
            Repr::Onion(_) | Repr::I2p(_) => None,
        }
    }

    /// The network address of an IP range (host bits cleared); `None` for Tor and I2P hosts.
    pub fn network(&self) -> Option<IpAddr> {
        match self.0 {
            Repr::V4 { network, .. } => Some(IpAddr::V4(network)),
            Repr::V6 { network, .. } => Some(IpAddr::V6(network)),
            Repr::Onion(_) | Repr::I2p(_) => None,
        }
    }

    /// Whether the subnet covers exactly one host.
    pub fn is_single_host(&self) -> bool {
        match self.0 {
            Repr::V4 { prefix, .. } => prefix == 32,
            Repr::V6 { prefix, .. } => prefix == 128,
            Repr::Onion(_) | Repr::I2p(_) => true,
        }
    }
}

impl From<Host> for Subnet {
    fn from(host: Host) -> Subnet {
        Subnet::host(host)
    }
}

impl From<IpAddr> for Subnet {
    fn from(ip: IpAddr) -> Subnet {
        Subnet::host(Host::from_ip(ip))
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// Prefix length of a netmask, if its one bits are contiguous from the top.
fn contiguous_prefix(mask: IpAddr) -> Option<u8> {
    let (ones, zeros, bits) = match mask {
        IpAddr::V4(m) => {
            let m = u32::from(m);
            (m.leading_ones(), m.trailing_zeros(), 32)
        }
        IpAddr::V6(m) => {
            let m = u128::from(m);
            (m.leading_ones(), m.trailing_zeros(), 128)
        }
    };
    // Both counts are at most 128, so the cast is exact.
    (ones + zeros == bits).then_some(ones as u8)
}

impl FromStr for Subnet {
    type Err = SubnetError;

    /// Parses what Bitcoin Core's `setban` accepts: an address (`1.2.3.4`, `2001:db8::1`,
    /// `NAME.onion`, `NAME.b32.i2p`), optionally followed for IP addresses by `/PREFIX`
    /// (`1.2.3.0/24`) or `/NETMASK` (`1.2.3.0/255.255.255.0`, contiguous only). IPv6
    /// addresses may be in brackets (`[2001:db8::]/32`). IPv4-mapped addresses are IPv4 (see
    /// [`Subnet`]). Host names are not resolved.
    fn from_str(s: &str) -> Result<Subnet, SubnetError> {
        if s.is_empty() {
            return Err(SubnetError::Empty);
        }
        let (addr_part, mask_part) = match s.split_once('/') {
            Some((a, m)) => (a, Some(m)),
            None => (s, None),
        };
        let bare = addr_part
            .strip_prefix('[')
            .and_then(|a| a.strip_suffix(']'))
            .unwrap_or(addr_part);
        let Ok(ip) = bare.parse::<IpAddr>() else {
            let host = parse_named_host(addr_part)
                .ok_or_else(|| SubnetError::InvalidAddress(addr_part.to_owned()))?;
            if mask_part.is_some() {
                return Err(SubnetError::MaskOnSingleHost(s.to_owned()));
            }
            return Ok(Subnet::host(host));
        };
        // Brackets belong around IPv6 only.
        if bare.len() != addr_part.len() && ip.is_ipv4() {
            return Err(SubnetError::InvalidAddress(addr_part.to_owned()));
        }
        let ip = unmap(ip);
        let Some(mask) = mask_part else {
            return Ok(Subnet::from(ip));
        };
        let bad_mask = || SubnetError::InvalidMask(mask.to_owned());
        let prefix =
            if !mask.is_empty() && mask.len() <= 3 && mask.bytes().all(|b| b.is_ascii_digit()) {
                let prefix: u16 = mask.parse().map_err(|_| bad_mask())?;
                let bits = if ip.is_ipv4() { 32 } else { 128 };
                if prefix > u16::from(bits) {
                    return Err(SubnetError::PrefixTooLong { prefix, bits });
                }
                prefix as u8
            } else {
                let mask_ip = unmap(mask.parse().map_err(|_| bad_mask())?);
                if mask_ip.is_ipv4() != ip.is_ipv4() {
                    return Err(SubnetError::MaskFamilyMismatch {
                        addr: ip,
                        mask: mask_ip,
                    });
                }
                contiguous_prefix(mask_ip).ok_or(SubnetError::NonContiguousMask(mask_ip))?
            };
        Subnet::new(ip, prefix)
    }
}

/// A Tor v3 or I2P name, without a port.
fn parse_named_host(s: &str) -> Option<Host> {
    let lower = s.to_ascii_lowercase();
    if s.contains(':') || !(lower.ends_with(".onion") || lower.ends_with(".b32.i2p")) {
        return None;
    }
    s.parse::<NetAddr>().ok().map(|a| a.host)
}

impl fmt::Display for Subnet {
    /// Bitcoin Core's form: `1.2.3.0/24`, `1.2.3.4/32`, `2001:db8::/32`, `NAME.onion`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Repr::V4 { network, prefix } => write!(f, "{network}/{prefix}"),
            Repr::V6 { network, prefix } => write!(f, "{network}/{prefix}"),
            Repr::Onion(key) => Host::TorV3(key).fmt(f),
            Repr::I2p(hash) => Host::I2p(hash).fmt(f),
        }
    }
}

impl fmt::Debug for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Subnet({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_at_the_edges() {
        let ip: Ipv4Addr = "255.255.255.255".parse().unwrap();
        assert_eq!(mask_v4(ip, 0), Ipv4Addr::UNSPECIFIED);
        assert_eq!(mask_v4(ip, 32), ip);
        assert_eq!(mask_v4(ip, 1), Ipv4Addr::new(128, 0, 0, 0));
        let ip6 = Ipv6Addr::from(u128::MAX);
        assert_eq!(mask_v6(ip6, 0), Ipv6Addr::UNSPECIFIED);
        assert_eq!(mask_v6(ip6, 128), ip6);
        assert_eq!(mask_v6(ip6, 127), Ipv6Addr::from(u128::MAX - 1));
    }

    #[test]
    fn contiguity() {
        let p = |s: &str| contiguous_prefix(s.parse().unwrap());
        assert_eq!(p("0.0.0.0"), Some(0));
        assert_eq!(p("255.255.255.255"), Some(32));
        assert_eq!(p("255.255.254.0"), Some(23));
        assert_eq!(p("255.0.255.0"), None);
        assert_eq!(p("ffff:ff00::"), Some(24));
        assert_eq!(p("::1"), None);
    }
}
