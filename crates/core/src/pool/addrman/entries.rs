//! The whole book as an operator reads it (the admin interface's `peers` command).
//!
//! [`AddrMan::entries`] walks the book in storage order, which changes as entries come and go;
//! an operator comparing two listings wants a stable order with the most useful entries first.

use std::cmp::Reverse;

use super::{AddrInfo, AddrMan, Placement};

impl AddrMan {
    /// Every entry of the book in a stable order: tried entries first, then new ones; within
    /// each table the most recent success first, then the most recent attempt, then by address.
    pub fn listing(&self) -> Vec<AddrInfo> {
        let mut all: Vec<AddrInfo> = self.entries().collect();
        all.sort_by_key(|e| {
            (
                !matches!(e.placement, Placement::Tried),
                Reverse(e.last_success),
                Reverse(e.last_try),
                e.addr,
            )
        });
        all
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::time::Duration;

    use bitcoin::p2p::ServiceFlags;
    use fastrand::Rng;

    use super::super::Config;
    use super::*;
    use crate::addr::{Host, NetAddr};
    use crate::time::Time;

    const NOW: Time = Time::from_secs(1_700_000_000);

    fn v4(a: u8, b: u8, c: u8, d: u8) -> NetAddr {
        NetAddr {
            host: Host::Ipv4(Ipv4Addr::new(a, b, c, d)),
            port: 8333,
        }
    }

    #[test]
    fn empty_book_lists_nothing() {
        let book = AddrMan::new(Config::default(), [7; 16], Rng::with_seed(1));
        assert!(book.listing().is_empty());
    }

    #[test]
    fn tried_first_then_by_recency_then_address() {
        let mut book = AddrMan::new(Config::default(), [7; 16], Rng::with_seed(1));
        let source = v4(9, 9, 9, 9);
        let addrs = [
            v4(1, 2, 3, 4),
            v4(5, 6, 7, 8),
            v4(11, 11, 12, 13),
            v4(20, 1, 1, 1),
        ];
        let hour_ago = NOW - Duration::from_secs(3600);
        for a in addrs {
            assert_eq!(
                book.add(
                    &[(a, ServiceFlags::NETWORK, hour_ago)],
                    source,
                    Duration::ZERO,
                    NOW
                ),
                1
            );
        }
        // 20.1.1.1 succeeded earlier than 5.6.7.8: both tried, the later success first.
        book.good(&addrs[3], NOW - Duration::from_secs(60));
        book.good(&addrs[1], NOW);
        // 11.11.12.13 was tried (and failed) once: listed before the untouched 1.2.3.4.
        book.attempt(&addrs[2], true, NOW);

        let listed: Vec<NetAddr> = book.listing().iter().map(|e| e.addr).collect();
        assert_eq!(listed, vec![addrs[1], addrs[3], addrs[2], addrs[0]]);
        let first = &book.listing()[0];
        assert_eq!(first.placement, Placement::Tried);
        assert_eq!(first.last_success, Some(NOW));
        assert_eq!(first.source, source);
        assert_eq!(book.listing().len(), book.size());
    }
}
