//! Loopback addresses for tests. Each test takes a third octet of its own in 127.0.x.y, so
//! that the network groups, bans and address books of one test never touch another's.

use std::net::Ipv4Addr;

/// 127.0.`net`.`host`.
pub fn ip(net: u8, host: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, net, host)
}
