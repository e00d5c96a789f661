//! The helpers that build requests for the owner: address relay (`addr` / `addrv2`),
//! `getblocks` / `getheaders` with duplicate suppression, and BIP61 `reject`.

mod support;

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use bitcoin::hashes::{sha256d, Hash};
use bitcoin::p2p::address::{AddrV2, AddrV2Message};
use bitcoin::p2p::message::NetworkMessage;
use bitcoin::p2p::message_network::RejectReason;
use bitcoin::p2p::ServiceFlags;
use bitcoin::BlockHash;
use peerpool_wire::MessageKind;
use support::*;

use Side::{A, B};

fn ipv4(i: u32) -> AddrV2Message {
    AddrV2Message {
        time: 1_699_990_000 + i,
        services: ServiceFlags::NETWORK | ServiceFlags::WITNESS,
        addr: AddrV2::Ipv4(Ipv4Addr::from(0x0a00_0000 + i)),
        port: 8333,
    }
}

fn ipv6(i: u32) -> AddrV2Message {
    AddrV2Message {
        time: 1_699_990_000 + i,
        services: ServiceFlags::NETWORK,
        addr: AddrV2::Ipv6(Ipv6Addr::new(
            0x2001,
            0xdb8,
            0,
            0,
            0,
            0,
            (i >> 16) as u16,
            i as u16,
        )),
        port: 8333,
    }
}

fn tor(i: u32) -> AddrV2Message {
    let mut key = [0u8; 32];
    key[..4].copy_from_slice(&i.to_le_bytes());
    AddrV2Message {
        time: 1_699_990_000,
        services: ServiceFlags::NETWORK,
        addr: AddrV2::TorV3(key),
        port: 8333,
    }
}

fn i2p(i: u32) -> AddrV2Message {
    let mut key = [0xe2u8; 32];
    key[..4].copy_from_slice(&i.to_le_bytes());
    AddrV2Message {
        time: 1_699_990_000,
        services: ServiceFlags::NETWORK,
        addr: AddrV2::I2p(key),
        port: 0,
    }
}

fn hash(n: u8) -> BlockHash {
    BlockHash::from_byte_array([n; 32])
}

/// A harness whose B does (70016) or does not (70015) send `sendaddrv2`.
fn connected(b_version: u32) -> Harness {
    let mut h = Setup::default()
        .b(|c| c.chain.protocol_version = b_version)
        .start();
    h.connect();
    h
}

#[test]
fn push_addr_sends_a_random_thousand_of_the_given_addresses_as_addrv2() {
    let mut h = connected(70016);
    assert!(h.m(A).stats(h.now()).addrv2, "B asked for addrv2");
    let input: Vec<AddrV2Message> = (0..1_200)
        .map(ipv4)
        .chain((0..150).map(tor))
        .chain((0..150).map(i2p))
        .collect();
    let chosen = h.command(A, |m, _| m.push_addr(&input));

    assert_eq!(chosen.len(), 1_000);
    assert_eq!(h.sent_commands(A), ["addrv2"]);
    let NetworkMessage::AddrV2(sent) = &h.sent(A)[0].message else {
        unreachable!()
    };
    assert_eq!(sent, &chosen);
    let distinct: BTreeSet<String> = sent.iter().map(|a| format!("{:?}", a.addr)).collect();
    assert_eq!(distinct.len(), 1_000, "no address twice");
    assert!(
        sent.iter().all(|a| input.contains(a)),
        "only addresses we were given"
    );
    // A random subset, not the first thousand: some of the tail made it.
    assert!(sent.iter().any(|a| matches!(a.addr, AddrV2::I2p(_))));

    // B reads exactly that.
    h.deliver(A);
    let Some((MessageKind::AddrV2, Some(NetworkMessage::AddrV2(got)))) = h.received(B).last()
    else {
        panic!("B got no addrv2: {:?}", h.received_kinds(B))
    };
    assert_eq!(got, &chosen);
}

#[test]
fn the_subset_is_fixed_by_the_seed() {
    let input: Vec<AddrV2Message> = (0..1_500).map(ipv4).collect();
    let pick = |seed| {
        let mut h = Setup::default().seeds(seed, 2).start();
        h.connect();
        h.command(A, |m, _| m.push_addr(&input))
    };
    assert_eq!(pick(1), pick(1));
    assert_ne!(pick(1), pick(3));
}

#[test]
fn push_addr_sends_legacy_addr_to_a_peer_without_addrv2() {
    let mut h = connected(70015);
    assert!(!h.m(A).stats(h.now()).addrv2);
    let input: Vec<AddrV2Message> = (0..1_500).map(ipv4).collect();
    let chosen = h.command(A, |m, _| m.push_addr(&input));
    assert_eq!(chosen.len(), 1_000);
    assert_eq!(h.sent_commands(A), ["addr"]);
    let NetworkMessage::Addr(sent) = &h.sent(A)[0].message else {
        unreachable!()
    };
    assert_eq!(sent.len(), 1_000);
    for ((time, addr), want) in sent.iter().zip(&chosen) {
        assert_eq!(*time, want.time);
        assert_eq!(addr.services, want.services);
        assert_eq!(addr.socket_addr().unwrap(), want.socket_addr().unwrap());
    }
    h.deliver(A);
    assert_eq!(h.received_kinds(B).last(), Some(&MessageKind::Addr));
}

#[test]
fn legacy_addr_skips_what_it_cannot_carry() {
    let mut h = connected(70015);
    let input: Vec<AddrV2Message> = (0..300)
        .map(ipv4)
        .chain((0..300).map(ipv6))
        .chain((0..300).map(tor))
        .chain((0..300).map(i2p))
        .collect();
    let chosen = h.command(A, |m, _| m.push_addr(&input));
    // A thousand were picked; the Tor and I2P ones among them were left out.
    assert!(
        chosen.len() < 1_000 && chosen.len() > 300,
        "{}",
        chosen.len()
    );
    assert!(chosen
        .iter()
        .all(|a| matches!(a.addr, AddrV2::Ipv4(_) | AddrV2::Ipv6(_))));
    let NetworkMessage::Addr(sent) = &h.sent(A)[0].message else {
        unreachable!()
    };
    assert_eq!(sent.len(), chosen.len());
    let sent: BTreeSet<SocketAddr> = sent.iter().map(|(_, a)| a.socket_addr().unwrap()).collect();
    let chosen: BTreeSet<SocketAddr> = chosen.iter().map(|a| a.socket_addr().unwrap()).collect();
    assert_eq!(sent, chosen);

    // Only onion addresses: nothing to send at all.
    h.clear();
    let onions: Vec<AddrV2Message> = (0..10).map(tor).collect();
    assert!(h.command(A, |m, _| m.push_addr(&onions)).is_empty());
    assert!(h.sent(A).is_empty());
}

#[test]
fn push_addr_below_the_limit_sends_everything() {
    let mut h = connected(70016);
    let input: Vec<AddrV2Message> = (0..10).map(ipv4).collect();
    assert_eq!(h.command(A, |m, _| m.push_addr(&input)), input);
    assert!(h.command(A, |m, _| m.push_addr(&[])).is_empty());
    assert_eq!(h.sent_commands(A), ["addrv2"]);
}

#[test]
fn getblocks_and_getheaders_skip_an_identical_repeat() {
    let mut h = Harness::new();
    h.connect();
    let locator = vec![hash(3), hash(2), hash(1)];

    assert!(h.command(A, |m, _| m.push_getblocks(locator.clone(), hash(0))));
    assert!(!h.command(A, |m, _| m.push_getblocks(locator.clone(), hash(0))));
    assert!(
        h.command(A, |m, _| m.push_getblocks(locator.clone(), hash(9))),
        "other stop"
    );
    assert!(
        h.command(A, |m, _| m.push_getblocks(vec![hash(4)], hash(9))),
        "other locator"
    );
    // Only the last request counts: going back to the first is new again.
    assert!(h.command(A, |m, _| m.push_getblocks(locator.clone(), hash(0))));

    assert!(h.command(A, |m, _| m.push_getheaders(locator.clone(), hash(0))));
    assert!(!h.command(A, |m, _| m.push_getheaders(locator.clone(), hash(0))));
    assert!(h.command(A, |m, _| m.push_getheaders(vec![hash(5)], hash(0))));

    assert_eq!(
        h.sent_commands(A),
        [
            "getblocks",
            "getblocks",
            "getblocks",
            "getblocks",
            "getheaders",
            "getheaders"
        ]
    );
    h.deliver(A);
    let Some((_, Some(NetworkMessage::GetBlocks(first)))) =
        h.received(B).find(|(k, _)| *k == MessageKind::GetBlocks)
    else {
        panic!("no getblocks")
    };
    assert_eq!(first.locator_hashes, locator);
    assert_eq!(first.stop_hash, hash(0));
    assert_eq!(first.version, 70016, "the negotiated version");
}

#[test]
fn requests_carry_the_negotiated_version() {
    let mut h = Setup::default()
        .b(|c| c.chain.protocol_version = 70012)
        .start();
    h.connect();
    h.command(A, |m, _| m.push_getheaders(vec![hash(1)], hash(0)));
    let NetworkMessage::GetHeaders(g) = &h.sent(A)[0].message else {
        unreachable!()
    };
    assert_eq!(g.version, 70012);
}

#[test]
fn reject_is_sent_to_peers_that_understand_it() {
    let mut h = Harness::new();
    h.connect();
    let txid = sha256d::Hash::from_byte_array([7; 32]);
    let token = h.command(A, |m, _| {
        m.push_reject(
            "tx",
            RejectReason::Duplicate,
            "txn-already-known",
            Some(txid),
            true,
        )
    });
    assert!(token.is_some());
    assert_eq!(h.sent_commands(A), ["reject"]);
    assert_eq!(h.sent(A)[0].token, token);
    h.deliver(A);
    let Some((_, Some(NetworkMessage::Reject(r)))) = h.received(B).last() else {
        panic!("no reject")
    };
    assert_eq!(r.message.as_ref(), "tx");
    assert_eq!(r.ccode, RejectReason::Duplicate);
    assert_eq!(r.reason.as_ref(), "txn-already-known");
    assert_eq!(r.hash, txid);

    // Without a hash the field is zero; without notify, no token.
    h.clear();
    let token = h.command(A, |m, _| {
        m.push_reject("block", RejectReason::Invalid, "bad", None, false)
    });
    assert_eq!(token, None);
    let NetworkMessage::Reject(r) = &h.sent(A)[0].message else {
        unreachable!()
    };
    assert_eq!(r.hash, sha256d::Hash::all_zeros());
}

#[test]
fn reject_is_not_sent_below_70002() {
    for (version, sent) in [(70_001, false), (70_002, true)] {
        let mut h = Setup::default()
            .b(|c| c.chain.protocol_version = version)
            .start();
        h.connect();
        let token = h.command(A, |m, _| {
            m.push_reject("tx", RejectReason::Invalid, "bad", None, true)
        });
        assert_eq!(token.is_some(), sent, "{version}");
        assert_eq!(!h.sent(A).is_empty(), sent, "{version}");
    }
    // Nor before the peer's version says which it speaks.
    let mut h = Harness::new();
    assert_eq!(
        h.command(A, |m, _| m.push_reject(
            "tx",
            RejectReason::Invalid,
            "x",
            None,
            true
        )),
        None
    );
}
