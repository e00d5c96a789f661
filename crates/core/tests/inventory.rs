//! Inventory announcement: the trickle, its batches, the known-inventory filter, blocks going
//! out at once, and the random but seeded trickle delay.

mod support;

use std::sync::Arc;
use std::time::Duration;

use bitcoin::hashes::Hash;
use bitcoin::p2p::message::NetworkMessage;
use bitcoin::p2p::message_blockdata::Inventory;
use bitcoin::{BlockHash, Txid};
use peerpool_core::peer::{ConnectionAddrs, INBOUND_TRICKLE_INTERVAL, OUTBOUND_TRICKLE_INTERVAL};
use peerpool_core::{Direction, PeerId, PeerMachine, Time};
use support::*;

use Side::{A, B};

const US: Duration = Duration::from_micros(1);

fn tx(n: u32) -> Inventory {
    let mut h = [0u8; 32];
    h[..4].copy_from_slice(&n.to_le_bytes());
    h[31] = 0x7a;
    Inventory::Transaction(Txid::from_byte_array(h))
}

fn block(n: u32) -> Inventory {
    let mut h = [0u8; 32];
    h[..4].copy_from_slice(&n.to_le_bytes());
    h[31] = 0xb1;
    Inventory::Block(BlockHash::from_byte_array(h))
}

/// Every `inv` `side` wrote, in order.
fn invs_sent(h: &Harness, side: Side) -> Vec<Vec<Inventory>> {
    h.sent(side)
        .iter()
        .filter_map(|s| match &s.message {
            NetworkMessage::Inv(list) => Some(list.clone()),
            _ => None,
        })
        .collect()
}

/// The trickle deadline `side` is waiting for, given that nothing else is due earlier.
fn trickle_deadline(h: &Harness, side: Side) -> Time {
    h.m(side).poll_timeout().expect("a deadline")
}

#[test]
fn transactions_wait_for_the_trickle_then_go_in_batches_of_at_most_a_thousand() {
    let mut h = Harness::new();
    h.connect();
    let queued: Vec<Inventory> = (0..2_500).map(tx).collect();
    for inv in &queued {
        h.command(A, |m, now| m.queue_inventory(now, *inv));
    }
    assert!(invs_sent(&h, A).is_empty());

    // The trickle comes before the next ping (mean 2 s, capped at 20 s, against 2 minutes).
    let deadline = trickle_deadline(&h, A);
    assert!(
        deadline > T0 && deadline <= T0 + OUTBOUND_TRICKLE_INTERVAL * 10,
        "{deadline:?}"
    );
    h.advance_to(deadline - US);
    assert!(
        invs_sent(&h, A).is_empty(),
        "nothing before the trickle deadline"
    );

    h.advance_to(deadline);
    let batches = invs_sent(&h, A);
    assert_eq!(
        batches.iter().map(Vec::len).collect::<Vec<_>>(),
        [1_000, 1_000, 500]
    );
    assert_eq!(batches.concat(), queued, "queue order is kept");
    assert!(h.sent(A).iter().all(|s| s.at == deadline));

    // They arrive whole, and B now knows A has them.
    h.deliver(A);
    let got: Vec<usize> = h
        .received(B)
        .filter_map(|(_, m)| match m {
            Some(NetworkMessage::Inv(l)) => Some(l.len()),
            _ => None,
        })
        .collect();
    assert_eq!(got, [1_000, 1_000, 500]);
    assert!(h.m(B).knows_inventory(&tx(0)) && h.m(B).knows_inventory(&tx(2_499)));
    // Nothing left: no further trickle is pending.
    assert_eq!(
        h.m(A).poll_timeout(),
        Some(T0 + peerpool_core::peer::PING_INTERVAL)
    );
}

#[test]
fn inventory_the_peer_announced_is_never_announced_back() {
    let mut h = Harness::new();
    h.connect();
    // B announces tx 1 to A, through its own trickle.
    h.command(B, |m, now| m.queue_inventory(now, tx(1)));
    h.advance_to(trickle_deadline(&h, B));
    h.deliver(B);
    assert!(h.m(A).knows_inventory(&tx(1)));

    h.command(A, |m, now| m.queue_inventory(now, tx(1)));
    h.command(A, |m, now| m.queue_inventory(now, tx(2)));
    h.advance_to(trickle_deadline(&h, A));
    assert_eq!(invs_sent(&h, A), [vec![tx(2)]]);
}

#[test]
fn inventory_the_peer_announces_while_ours_waits_is_not_announced_back() {
    // We queue tx 1 for the peer; before our trickle fires, the peer announces tx 1 to us.
    // It has it now, so our announcement would only waste its bandwidth (Bitcoin Core checks
    // its known filter again when it trickles).
    let mut h = Harness::new();
    h.connect();
    h.command(A, |m, now| m.queue_inventory(now, tx(1)));
    h.command(A, |m, now| m.queue_inventory(now, tx(2)));
    h.inject_message(A, &NetworkMessage::Inv(vec![tx(1)]));
    h.advance_to(trickle_deadline(&h, A));
    assert_eq!(invs_sent(&h, A), [vec![tx(2)]]);
}

#[test]
fn inventory_marked_known_by_the_owner_is_never_announced() {
    let mut h = Harness::new();
    h.connect();
    h.command(A, |m, _| m.add_known_inventory(&tx(7)));
    assert!(h.m(A).knows_inventory(&tx(7)));
    h.command(A, |m, now| m.queue_inventory(now, tx(7)));
    // Nothing was queued, so no trickle is even scheduled.
    assert_eq!(
        h.m(A).poll_timeout(),
        Some(T0 + peerpool_core::peer::PING_INTERVAL)
    );
    h.run_for(Duration::from_secs(60));
    assert!(invs_sent(&h, A).is_empty());

    // Marked known after queueing (say the peer sent us the transaction itself): dropped too.
    h.command(A, |m, now| m.queue_inventory(now, tx(8)));
    h.command(A, |m, now| m.queue_inventory(now, tx(9)));
    h.command(A, |m, _| m.add_known_inventory(&tx(8)));
    h.advance_to(trickle_deadline(&h, A));
    assert_eq!(invs_sent(&h, A), [vec![tx(9)]]);
}

#[test]
fn an_entry_queued_twice_or_already_announced_goes_out_once() {
    let mut h = Harness::new();
    h.connect();
    for inv in [tx(1), tx(2), tx(1), tx(2), tx(1)] {
        h.command(A, |m, now| m.queue_inventory(now, inv));
    }
    h.advance_to(trickle_deadline(&h, A));
    assert_eq!(invs_sent(&h, A), [vec![tx(1), tx(2)]]);
    h.clear();
    h.command(A, |m, now| m.queue_inventory(now, tx(1)));
    h.run_for(Duration::from_secs(60));
    assert!(invs_sent(&h, A).is_empty());
}

#[test]
fn blocks_are_announced_at_once_after_the_handshake() {
    let mut h = Harness::new();
    h.connect();
    h.elapse(Duration::from_secs(1));
    h.command(A, |m, now| m.queue_inventory(now, block(1)));
    assert_eq!(invs_sent(&h, A), [vec![block(1)]]);
    assert_eq!(h.sent(A)[0].at, T0 + Duration::from_secs(1));
    // Only once.
    h.command(A, |m, now| m.queue_inventory(now, block(1)));
    assert_eq!(invs_sent(&h, A).len(), 1);
}

#[test]
fn inventory_queued_before_the_handshake_waits_for_it() {
    let mut h = Harness::new();
    h.command(A, |m, now| m.queue_inventory(now, tx(1)));
    h.command(B, |m, now| m.queue_inventory(now, tx(2)));
    // Let both trickle deadlines pass with the handshake still pending.
    h.elapse(Duration::from_secs(55));
    assert!(invs_sent(&h, A).is_empty() && invs_sent(&h, B).is_empty());

    h.handshake();
    let done = h.now();
    assert!(
        invs_sent(&h, A).is_empty(),
        "transactions still wait for a trickle"
    );
    // A fresh trickle delay counts from the handshake.
    let deadline = trickle_deadline(&h, A);
    assert!(deadline > done);
    h.advance_to(deadline);
    assert_eq!(invs_sent(&h, A), [vec![tx(1)]]);
    h.advance_to(trickle_deadline(&h, B));
    assert_eq!(invs_sent(&h, B), [vec![tx(2)]]);
}

#[test]
fn a_block_queued_before_the_handshake_goes_out_as_it_completes() {
    let mut h = Harness::new();
    h.command(A, |m, now| m.queue_inventory(now, block(1)));
    h.elapse(Duration::from_secs(3));
    assert!(invs_sent(&h, A).is_empty());
    h.deliver(A);
    h.deliver(B); // A completes its handshake here
    let commands = h.sent_commands(A);
    let inv = commands
        .iter()
        .position(|c| *c == "inv")
        .expect("the block went out");
    assert!(commands[..inv].contains(&"verack"));
    assert_eq!(h.sent(A)[inv].at, T0 + Duration::from_secs(3));
    assert_eq!(invs_sent(&h, A), [vec![block(1)]]);
}

/// An inbound machine alone, with one transaction queued at `T0`: its only deadline before
/// the 60 s handshake timeout is the trickle, at most ten means away.
fn first_trickle_delay(seed: u64, direction: Direction) -> Duration {
    let mut m = PeerMachine::new(
        Arc::new(config()),
        PeerId(seed),
        direction,
        ConnectionAddrs {
            remote: A_ADDR.parse().unwrap(),
            local: None,
        },
        T0,
        0,
        seed,
    );
    m.queue_inventory(T0, tx(1));
    m.poll_timeout().expect("trickle scheduled").since(T0)
}

#[test]
fn the_trickle_delay_is_random_but_fixed_by_the_seed() {
    for seed in [0, 1, 42, u64::MAX] {
        assert_eq!(
            first_trickle_delay(seed, Direction::Inbound),
            first_trickle_delay(seed, Direction::Inbound)
        );
    }
    let delays: std::collections::BTreeSet<Duration> = (0..50)
        .map(|s| first_trickle_delay(s, Direction::Inbound))
        .collect();
    assert!(
        delays.len() >= 45,
        "different seeds, different delays: {delays:?}"
    );
}

#[test]
fn the_mean_trickle_delay_is_the_configured_interval() {
    // Exponential delays: the standard error of a mean of 2,000 draws is mean / 45, so a 15%
    // tolerance is over six standard errors; the seeds are fixed, so this cannot flake.
    const N: u64 = 2_000;
    for (direction, mean) in [
        (Direction::Inbound, INBOUND_TRICKLE_INTERVAL),
        (Direction::Outbound, OUTBOUND_TRICKLE_INTERVAL),
    ] {
        let delays: Vec<f64> = (0..N)
            .map(|s| first_trickle_delay(s, direction).as_secs_f64())
            .collect();
        let avg = delays.iter().sum::<f64>() / N as f64;
        let want = mean.as_secs_f64();
        assert!(
            (avg - want).abs() < want * 0.15,
            "{direction}: mean {avg:.3}s, want {want}s"
        );
        // Capped at ten means, so one unlucky draw cannot stall announcements.
        let max = delays.iter().cloned().fold(0.0, f64::max);
        assert!(max <= want * 10.0 + 1e-9, "{direction}: {max}");
        // And exponential-looking: about 63% of draws below the mean.
        let below = delays.iter().filter(|d| **d < want).count() as f64 / N as f64;
        assert!((0.55..0.71).contains(&below), "{direction}: {below}");
    }
}
