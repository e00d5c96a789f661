//! Properties of the peer machine under arbitrary input.
//!
//! A machine (either end, chosen per case) is fed an arbitrary mix of crafted frames from a
//! set of commands (unknown ones included) with arbitrary payloads, well-formed handshake
//! messages, bad frames, owner commands, passing time, and real traffic from the machine at
//! the other end. Whatever the sequence:
//! - nothing panics;
//! - before its `HandshakeCompleted` event a machine sends nothing but `version`, `verack`,
//!   `wtxidrelay` and `sendaddrv2`, after `Disconnect` it outputs nothing, and a handled
//!   deadline always moves into the future (the harness checks these on every output);
//! - the machine is ready exactly when it has reported the completed handshake, and it has a
//!   deadline exactly while it is connected.

mod support;

use std::time::Duration;

use bitcoin::hashes::Hash;
use bitcoin::p2p::address::{AddrV2, AddrV2Message};
use bitcoin::p2p::message::NetworkMessage;
use bitcoin::p2p::message_blockdata::Inventory;
use bitcoin::p2p::ServiceFlags;
use bitcoin::{BlockHash, Txid};
use peerpool_core::{DisconnectReason, PeerEvent};
use proptest::prelude::*;
use support::*;

const COMMANDS: &[&str] = &[
    "version",
    "verack",
    "wtxidrelay",
    "sendaddrv2",
    "sendheaders",
    "sendcmpct",
    "ping",
    "pong",
    "inv",
    "getdata",
    "notfound",
    "addr",
    "addrv2",
    "headers",
    "getheaders",
    "getblocks",
    "filterload",
    "filteradd",
    "filterclear",
    "mempool",
    "feefilter",
    "tx",
    "block",
    "reject",
    "getaddr",
    "xyzzy",
    "version2",
];

#[derive(Clone, Debug)]
enum Op {
    /// A crafted frame; the payload may start with a (possibly huge) list count.
    Frame {
        command: &'static str,
        count: Option<u64>,
        payload: Vec<u8>,
    },
    /// A well-formed version from the peer, possibly cut short.
    Version {
        version: u32,
        nonce: u64,
        user_agent: usize,
        relay: bool,
        cut: Option<usize>,
    },
    /// A frame whose checksum does not match.
    BadChecksum,
    /// The other machine's traffic reaches this one (and the reverse).
    Deliver,
    /// Only this machine's traffic reaches the other one.
    DeliverOut,
    /// Time passes; messages stay in flight.
    Elapse(u64),
    /// Time passes on a live network.
    RunFor(u64),
    /// The owner queues a message.
    Queue(u8),
    /// The owner queues inventory.
    QueueInventory { block: bool, n: u16 },
    /// The owner relays addresses.
    PushAddr(u16),
    /// The owner asks for headers.
    GetHeaders(u8),
    /// The owner hangs up.
    Disconnect,
}

fn op() -> impl Strategy<Value = Op> {
    let frame = (
        prop::sample::select(COMMANDS),
        prop::option::weighted(0.2, any::<u64>()),
        prop::collection::vec(any::<u8>(), 0..48),
    )
        .prop_map(|(command, count, payload)| Op::Frame {
            command,
            count,
            payload,
        });
    let version = (
        prop::sample::select(vec![
            0u32, 31_799, 31_800, 60_000, 60_001, 70_002, 70_010, 70_011, 70_012, 70_015, 70_016,
            80_000,
        ]),
        any::<u64>(),
        prop::sample::select(vec![0usize, 16, 256, 257, 1_000]),
        any::<bool>(),
        prop::option::weighted(0.2, 0usize..120),
    )
        .prop_map(|(version, nonce, user_agent, relay, cut)| Op::Version {
            version,
            nonce,
            user_agent,
            relay,
            cut,
        });
    prop_oneof![
        8 => frame,
        2 => version,
        1 => Just(Op::BadChecksum),
        3 => Just(Op::Deliver),
        1 => Just(Op::DeliverOut),
        2 => (0u64..2_000_000).prop_map(Op::Elapse),
        1 => (0u64..400_000).prop_map(Op::RunFor),
        1 => any::<u8>().prop_map(Op::Queue),
        1 => (any::<bool>(), any::<u16>()).prop_map(|(block, n)| Op::QueueInventory { block, n }),
        1 => (0u16..1_500).prop_map(Op::PushAddr),
        1 => any::<u8>().prop_map(Op::GetHeaders),
        1 => Just(Op::Disconnect),
    ]
}

fn queued(n: u8) -> NetworkMessage {
    match n % 5 {
        0 => NetworkMessage::GetAddr,
        1 => NetworkMessage::FeeFilter(i64::from(n) * 1_000),
        2 => NetworkMessage::Ping(u64::from(n)),
        3 => NetworkMessage::Inv(vec![Inventory::Transaction(Txid::from_byte_array([n; 32]))]),
        _ => NetworkMessage::SendHeaders,
    }
}

fn apply(h: &mut Harness, side: Side, op: Op) {
    match op {
        Op::Frame {
            command,
            count,
            payload,
        } => {
            let mut bytes = count.map(count_prefix).unwrap_or_default();
            bytes.extend_from_slice(&payload);
            h.inject(side, command, &bytes);
        }
        Op::Version {
            version,
            nonce,
            user_agent,
            relay,
            cut,
        } => {
            let mut v = version_message(version, nonce, h.now());
            v.user_agent = "a".repeat(user_agent);
            v.relay = relay;
            let mut bytes = payload(&NetworkMessage::Version(v));
            if let Some(cut) = cut {
                bytes.truncate(cut);
            }
            h.inject(side, "version", &bytes);
        }
        Op::BadChecksum => {
            let mut wire = frame("ping", &[1; 8]);
            *wire.last_mut().unwrap() ^= 1;
            h.inject_wire(side, &wire);
        }
        Op::Deliver => h.deliver_all(),
        Op::DeliverOut => {
            h.deliver(side);
        }
        Op::Elapse(ms) => h.elapse(Duration::from_millis(ms)),
        Op::RunFor(ms) => h.run_for(Duration::from_millis(ms)),
        Op::Queue(n) => {
            let _ = h.command(side, |m, _| m.queue_message(queued(n), n % 2 == 0));
        }
        Op::QueueInventory { block, n } => {
            let inv = if block {
                Inventory::Block(BlockHash::from_byte_array([n as u8; 32]))
            } else {
                Inventory::Transaction(Txid::from_byte_array([(n >> 8) as u8; 32]))
            };
            h.command(side, |m, now| m.queue_inventory(now, inv));
        }
        Op::PushAddr(n) => {
            let addrs: Vec<AddrV2Message> = (0..u32::from(n))
                .map(|i| AddrV2Message {
                    time: i,
                    services: ServiceFlags::NETWORK,
                    addr: if i % 3 == 0 {
                        AddrV2::TorV3([i as u8; 32])
                    } else {
                        AddrV2::Ipv4(i.into())
                    },
                    port: 8333,
                })
                .collect();
            h.command(side, |m, _| m.push_addr(&addrs));
        }
        Op::GetHeaders(n) => {
            h.command(side, |m, _| {
                m.push_getheaders(
                    vec![BlockHash::from_byte_array([n; 32])],
                    BlockHash::all_zeros(),
                )
            });
        }
        Op::Disconnect => h.command(side, |m, now| {
            m.disconnect(now, DisconnectReason::Requested)
        }),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_input_never_breaks_the_machine(
        inbound in any::<bool>(),
        seed in any::<u64>(),
        ops in prop::collection::vec(op(), 1..40),
    ) {
        let side = if inbound { Side::B } else { Side::A };
        let mut h = Setup::default().seeds(seed, seed.rotate_left(17)).start();
        for op in ops {
            apply(&mut h, side, op);
            for s in [Side::A, Side::B] {
                let m = h.m(s);
                let completed = h
                    .events(s)
                    .iter()
                    .any(|e| matches!(e, PeerEvent::HandshakeCompleted { .. }));
                prop_assert!(!m.is_ready() || completed, "{s:?} ready without the event");
                prop_assert_eq!(m.is_disconnected(), h.disconnected(s).is_some());
                prop_assert_eq!(m.poll_timeout().is_none(), m.is_disconnected());
            }
        }
    }
}
