//! Addresses as they travel between nodes in `addr` and `addrv2` messages.
//!
//! An [`Announced`] is one entry of such a message in the form the pool keeps: where a node
//! can be reached ([`NetAddr`]), the services it was announced with, and when it was last seen.
//! Both message formats are converted to it once, where a message is read, and back once,
//! where one is written; nothing between the two ever handles the wire types.

use std::net::IpAddr;

use bitcoin::p2p::address::{AddrV2Message, Address};
use bitcoin::p2p::ServiceFlags;

use crate::addr::NetAddr;
use crate::time::Time;

/// Most addresses one `addr`/`addrv2` message may carry, and most entries answered to one
/// `getaddr`. Bitcoin Core: `MAX_ADDR_TO_SEND`.
pub const MAX_ADDR_TO_SEND: usize = 1_000;

/// One address announcement; see the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Announced {
    /// Where the node can be reached.
    pub addr: NetAddr,
    /// The services it was announced with.
    pub services: ServiceFlags,
    /// When it was last seen, as the announcement says (whole seconds on the wire).
    pub seen: Time,
}

impl Announced {
    /// An entry of a legacy `addr` message; `None` for an address that is not an IP socket
    /// address. An IPv4-mapped IPv6 address is an IPv4 one, as everywhere in peerpool.
    pub fn from_legacy(time: u32, address: &Address) -> Option<Announced> {
        let socket = address.socket_addr().ok()?;
        let ip = match socket.ip() {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        Some(Announced {
            addr: NetAddr::from_socket((ip, socket.port()).into()),
            services: address.services,
            seen: Time::from_secs(u64::from(time)),
        })
    }

    /// An entry of an `addrv2` message; `None` for networks peerpool does not handle.
    pub fn from_v2(entry: &AddrV2Message) -> Option<Announced> {
        Some(Announced {
            addr: NetAddr::from_addrv2(&entry.addr, entry.port)?,
            services: entry.services,
            seen: Time::from_secs(u64::from(entry.time)),
        })
    }

    /// The time field of both message formats: whole seconds, saturating at the format's
    /// 32-bit limit.
    pub fn wire_time(&self) -> u32 {
        u32::try_from(self.seen.as_secs()).unwrap_or(u32::MAX)
    }

    /// As an `addrv2` entry.
    pub fn to_v2(&self) -> AddrV2Message {
        AddrV2Message {
            time: self.wire_time(),
            services: self.services,
            addr: self.addr.to_addrv2(),
            port: self.addr.port,
        }
    }

    /// As a legacy `addr` entry; `None` unless the address is IPv4 or IPv6.
    pub fn to_legacy(&self) -> Option<(u32, Address)> {
        let socket = self.addr.to_socket()?;
        Some((self.wire_time(), Address::new(&socket, self.services)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_formats_meet_in_one_form_and_go_back_unchanged() {
        let a: NetAddr = "1.2.3.4:8333".parse().unwrap();
        let mapped: std::net::SocketAddr = "[::ffff:1.2.3.4]:8333".parse().unwrap();
        let legacy = Address::new(&mapped, ServiceFlags::NETWORK);
        let from_legacy = Announced::from_legacy(1_700_000_000, &legacy).unwrap();
        assert_eq!(from_legacy.addr, a, "IPv4-mapped becomes IPv4");
        let v2 = from_legacy.to_v2();
        assert_eq!(Announced::from_v2(&v2), Some(from_legacy));
        let (time, back) = from_legacy.to_legacy().unwrap();
        assert_eq!(time, 1_700_000_000);
        assert_eq!(back.socket_addr().unwrap(), "1.2.3.4:8333".parse().unwrap());
    }

    #[test]
    fn onion_addresses_have_no_legacy_form() {
        let onion = Announced {
            addr: NetAddr {
                host: crate::addr::Host::TorV3([7; 32]),
                port: 8333,
            },
            services: ServiceFlags::NONE,
            seen: Time::from_secs(5),
        };
        assert!(onion.to_legacy().is_none());
        assert_eq!(Announced::from_v2(&onion.to_v2()), Some(onion));
    }

    #[test]
    fn times_past_the_format_saturate() {
        let far = Announced {
            addr: "1.2.3.4:1".parse().unwrap(),
            services: ServiceFlags::NONE,
            seen: Time::from_secs(u64::from(u32::MAX) + 10),
        };
        assert_eq!(far.wire_time(), u32::MAX);
    }
}
