//! Timers with literal times: the handshake timeout, keepalive pings and their pongs, the
//! ping timeout and the inactivity timeout.

mod support;

use std::time::Duration;

use bitcoin::p2p::message::NetworkMessage;
use peerpool_core::peer::{HANDSHAKE_TIMEOUT, PING_INTERVAL, TIMEOUT_INTERVAL};
use peerpool_core::{DisconnectReason, PeerEvent, Time};
use peerpool_wire::MessageKind;
use support::*;

use Side::{A, B};

const MS: Duration = Duration::from_millis(1);
const US: Duration = Duration::from_micros(1);

/// Nonce of the ping `side` has outstanding, read off the wire.
fn last_ping_nonce(h: &Harness, side: Side) -> u64 {
    h.sent(side)
        .iter()
        .rev()
        .find_map(|s| match s.message {
            NetworkMessage::Ping(n) => Some(n),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{side:?} sent no ping"))
}

fn ping_times(h: &Harness, side: Side) -> Vec<u64> {
    h.sent(side)
        .iter()
        .filter(|s| matches!(s.message, NetworkMessage::Ping(_)))
        .map(|s| s.at.since(T0).as_secs())
        .collect()
}

fn ping_completions(h: &Harness, side: Side) -> Vec<u64> {
    h.events(side)
        .iter()
        .filter_map(|e| match e {
            PeerEvent::PingCompleted { rtt_micros } => Some(*rtt_micros),
            _ => None,
        })
        .collect()
}

/// The handshake up to the point where A has pinged (at `T0`) and B has answered, with the
/// pong still in flight.
fn pong_in_flight() -> Harness {
    let mut h = Harness::new();
    h.deliver(A);
    h.deliver(B); // A is ready and pings
    h.deliver(A); // B is ready and answers
    assert_eq!(h.sent_commands(B).last(), Some(&"pong"));
    h
}

// ----- the handshake timeout ---------------------------------------------------------------

#[test]
fn handshake_times_out_exactly_sixty_seconds_after_connecting() {
    let mut h = Harness::new();
    assert_eq!(h.m(A).poll_timeout(), Some(T0 + HANDSHAKE_TIMEOUT));
    assert_eq!(h.m(B).poll_timeout(), Some(T0 + HANDSHAKE_TIMEOUT));
    assert_eq!(T0 + HANDSHAKE_TIMEOUT, Time::from_secs(1_700_000_060));

    h.advance_to(Time::from_millis(1_700_000_059_999));
    h.expect_connected(A);
    h.expect_connected(B);
    h.advance_to(Time::from_secs(1_700_000_060) - US);
    h.expect_connected(A);

    h.advance_to(Time::from_secs(1_700_000_060));
    h.expect_disconnect(A, DisconnectReason::HandshakeTimeout);
    h.expect_disconnect(B, DisconnectReason::HandshakeTimeout);
    assert!(DisconnectReason::HandshakeTimeout.is_transient());
}

#[test]
fn the_handshake_deadline_counts_from_the_connection_not_from_the_version() {
    // B gets A's version late, and its own replies are lost: the deadline does not move.
    let mut h = Harness::new();
    h.elapse(Duration::from_secs(50));
    h.deliver(A);
    h.drop_in_flight(B);
    assert!(matches!(
        h.m(B).state(),
        peerpool_core::peer::HandshakeState::AwaitingVerack { .. }
    ));
    assert_eq!(h.m(B).poll_timeout(), Some(T0 + HANDSHAKE_TIMEOUT));
    h.elapse(Duration::from_secs(10) - US);
    h.expect_connected(B);
    h.elapse(US);
    h.expect_disconnect(B, DisconnectReason::HandshakeTimeout);
    h.expect_disconnect(A, DisconnectReason::HandshakeTimeout);
}

#[test]
fn a_completed_handshake_cancels_the_handshake_timeout() {
    let mut h = Harness::new();
    h.elapse(Duration::from_secs(59));
    h.connect();
    assert_eq!(
        h.m(A).poll_timeout(),
        Some(T0 + Duration::from_secs(59) + PING_INTERVAL)
    );
    h.elapse(Duration::from_secs(30));
    h.expect_ready(A);
    h.expect_ready(B);
}

// ----- pings --------------------------------------------------------------------------------

#[test]
fn ping_at_once_after_the_handshake_then_every_interval_from_the_last_one() {
    let mut h = Harness::new();
    h.deliver(A);
    h.deliver(B);
    // A pinged the moment its handshake completed.
    let ping = h.sent(A).last().unwrap();
    assert!(matches!(ping.message, NetworkMessage::Ping(n) if n != 0));
    assert_eq!(ping.at, T0);
    // Outstanding: the deadline is the ping timeout (also the inactivity deadline here).
    assert_eq!(h.m(A).poll_timeout(), Some(T0 + TIMEOUT_INTERVAL));

    // The pong comes back 80 ms later; the next ping is due one interval after the first was
    // sent, not after the pong arrived.
    h.elapse(80 * MS);
    h.deliver_all();
    assert_eq!(h.m(A).poll_timeout(), Some(T0 + PING_INTERVAL));
    h.clear();

    h.advance_to(T0 + PING_INTERVAL - US);
    assert!(h.sent(A).is_empty());
    h.advance_to(T0 + PING_INTERVAL);
    assert_eq!(h.sent_commands(A), ["ping"]);
    assert_eq!(h.sent(A)[0].at, T0 + PING_INTERVAL);

    // On a live network pings keep coming every two minutes, answered each time.
    h.deliver_all();
    h.clear();
    h.run_for(Duration::from_secs(10 * 60));
    assert_eq!(ping_times(&h, A), [240, 360, 480, 600, 720]);
    assert_eq!(ping_completions(&h, A), [0; 5]);
    h.expect_ready(A);
}

#[test]
fn a_ping_asked_for_goes_out_at_once_unless_one_is_outstanding() {
    let mut h = Harness::new();
    // Before the handshake there is nothing to ping.
    assert!(!h.command(A, |m, now| m.ping_now(now)));
    h.deliver(A);
    h.deliver(B);
    // A's first ping is outstanding: asking again sends nothing.
    assert!(!h.command(A, |m, now| m.ping_now(now)));
    h.elapse(30 * MS);
    h.deliver_all();
    assert_eq!(ping_completions(&h, A), [30_000]);
    h.clear();

    // Between scheduled pings, one asked for goes out now and its round trip is recorded.
    h.elapse(Duration::from_secs(50));
    assert!(h.command(A, |m, now| m.ping_now(now)));
    assert_eq!(h.sent_commands(A), ["ping"]);
    let asked_at = h.now();
    h.elapse(7 * MS);
    h.deliver_all();
    assert_eq!(ping_completions(&h, A), [7_000]);
    assert_eq!(h.m(A).stats(h.now()).ping.last_rtt_micros, Some(7_000));
    // The schedule restarts from that ping.
    assert_eq!(h.m(A).poll_timeout(), Some(asked_at + PING_INTERVAL));
}

#[test]
fn a_pong_with_the_right_nonce_records_the_round_trip() {
    let mut h = pong_in_flight();
    let nonce = last_ping_nonce(&h, A);
    let s = h.m(A).stats(h.now()).ping;
    assert_eq!(s.last_nonce, Some(nonce));
    assert_eq!(s.last_sent, Some(T0));
    assert_eq!(s.last_rtt_micros, None);

    h.elapse(Duration::from_micros(250_123));
    h.deliver(B);
    assert_eq!(ping_completions(&h, A), [250_123]);
    let s = h.m(A).stats(h.now()).ping;
    assert_eq!(s.last_rtt_micros, Some(250_123));
    assert_eq!(s.min_rtt_micros, Some(250_123));
    assert_eq!(s.wait_micros, None);

    // A faster round trip lowers the minimum; a slower one only the last.
    for (rtt_ms, min_ms) in [(40, 40), (90, 40)] {
        h.advance_to(h.m(A).poll_timeout().unwrap()); // next ping
        let nonce = last_ping_nonce(&h, A);
        h.elapse(Duration::from_millis(rtt_ms));
        h.inject_message(A, &NetworkMessage::Pong(nonce));
        let s = h.m(A).stats(h.now()).ping;
        assert_eq!(s.last_rtt_micros, Some(rtt_ms * 1_000));
        assert_eq!(s.min_rtt_micros, Some(min_ms * 1_000));
    }
}

#[test]
fn a_pong_with_the_wrong_nonce_is_ignored_and_the_ping_stays_outstanding() {
    let mut h = pong_in_flight();
    h.drop_in_flight(B);
    let nonce = last_ping_nonce(&h, A);
    h.elapse(10 * MS);
    h.inject_message(A, &NetworkMessage::Pong(nonce ^ 1));
    assert!(ping_completions(&h, A).is_empty());
    assert_eq!(h.m(A).stats(h.now()).ping.wait_micros, Some(10_000));
    assert_eq!(h.m(A).poll_timeout(), Some(T0 + TIMEOUT_INTERVAL));
    // The owner still hears of it.
    assert_eq!(h.received_kinds(A).last(), Some(&MessageKind::Pong));

    // The right one still completes it.
    h.elapse(10 * MS);
    h.inject_message(A, &NetworkMessage::Pong(nonce));
    assert_eq!(ping_completions(&h, A), [20_000]);
}

#[test]
fn a_zero_nonce_or_a_short_pong_cancels_the_ping() {
    for (what, payload) in [
        ("zero nonce", 0u64.to_le_bytes().to_vec()),
        ("short", vec![1, 2, 3, 4]),
    ] {
        let mut h = pong_in_flight();
        h.drop_in_flight(B);
        h.elapse(30 * MS);
        h.inject(A, "pong", &payload);
        assert!(ping_completions(&h, A).is_empty(), "{what}");
        let s = h.m(A).stats(h.now()).ping;
        assert_eq!(s.wait_micros, None, "{what}: no ping outstanding any more");
        assert_eq!(s.last_rtt_micros, None, "{what}: nothing measured");
        // Not a protocol error: no misbehaviour, and the next ping keeps its schedule.
        assert!(h.misbehaviours(A).is_empty(), "{what}");
        assert_eq!(h.m(A).poll_timeout(), Some(T0 + PING_INTERVAL), "{what}");
    }
}

#[test]
fn an_unsolicited_pong_changes_nothing() {
    let mut h = Harness::new();
    h.connect();
    let before = h.m(A).stats(h.now()).ping;
    assert_eq!(before.wait_micros, None);
    h.elapse(Duration::from_secs(5));
    h.inject_message(A, &NetworkMessage::Pong(before.last_nonce.unwrap()));
    assert!(ping_completions(&h, A).is_empty());
    assert_eq!(h.m(A).stats(h.now()).ping, before);
    assert_eq!(h.m(A).poll_timeout(), Some(T0 + PING_INTERVAL));
}

#[test]
fn a_ping_is_answered_with_a_pong_carrying_its_nonce() {
    let mut h = Harness::new();
    h.connect();
    h.inject_message(A, &NetworkMessage::Ping(0xfeed_beef_0000_0001));
    assert_eq!(h.sent_commands(A), ["pong"]);
    assert!(matches!(
        h.sent(A)[0].message,
        NetworkMessage::Pong(0xfeed_beef_0000_0001)
    ));
    assert!(matches!(
        h.received(A).last(),
        Some((
            MessageKind::Ping,
            Some(NetworkMessage::Ping(0xfeed_beef_0000_0001))
        ))
    ));
}

// ----- timeouts after the handshake -------------------------------------------------------

#[test]
fn the_first_ping_unanswered_times_out_after_the_timeout_interval() {
    let mut h = pong_in_flight();
    h.drop_in_flight(B);
    assert_eq!(h.m(A).poll_timeout(), Some(T0 + TIMEOUT_INTERVAL));
    h.advance_to(T0 + TIMEOUT_INTERVAL - US);
    h.expect_connected(A);
    assert_eq!(
        h.m(A).stats(h.now()).ping.wait_micros,
        Some((TIMEOUT_INTERVAL - US).as_micros() as u64)
    );
    // The peer has been silent just as long, but the unanswered ping is the better reason.
    h.advance_to(T0 + TIMEOUT_INTERVAL);
    h.expect_disconnect(A, DisconnectReason::PingTimeout);
}

#[test]
fn a_peer_that_talks_but_never_answers_pings_times_out() {
    let mut h = Harness::new();
    h.connect();
    // The next ping goes out at T0 + 2 min; from now on B's pongs are lost, while the peer
    // keeps sending other traffic every minute.
    for minute in 1..=30 {
        h.advance_to(T0 + Duration::from_secs(60 * minute));
        h.drop_in_flight(B);
        h.drop_in_flight(A);
        h.inject_message(A, &NetworkMessage::FeeFilter(1_000 + minute as i64));
        if h.disconnected(A).is_some() {
            break;
        }
    }
    // Disconnected at the 22nd minute, by the ping deadline (the peer was not silent).
    h.expect_disconnect(A, DisconnectReason::PingTimeout);
    let at = match h.m(A).state() {
        peerpool_core::peer::HandshakeState::Disconnected { since, .. } => *since,
        s => panic!("{s:?}"),
    };
    assert_eq!(at, T0 + PING_INTERVAL + TIMEOUT_INTERVAL);
}

#[test]
fn a_silent_peer_is_dropped_for_inactivity() {
    let mut h = Harness::new();
    h.connect();
    // Nothing crosses any more: A's ping at T0 + 2 min is never even read.
    h.advance_to(T0 + TIMEOUT_INTERVAL - US);
    h.expect_connected(A);
    assert_eq!(h.sent_commands(A), ["ping"]);
    assert_eq!(h.m(A).poll_timeout(), Some(T0 + TIMEOUT_INTERVAL));
    h.advance_to(T0 + TIMEOUT_INTERVAL);
    h.expect_disconnect(A, DisconnectReason::Inactivity);
    h.expect_disconnect(B, DisconnectReason::Inactivity);
}

#[test]
fn any_message_from_the_peer_resets_the_inactivity_deadline() {
    let mut h = Harness::new();
    h.connect();
    h.advance_to(T0 + Duration::from_secs(60));
    h.inject_message(A, &NetworkMessage::GetAddr);
    h.drop_in_flight(A);
    h.advance_to(T0 + PING_INTERVAL);
    let ping_deadline = T0 + PING_INTERVAL + TIMEOUT_INTERVAL;
    let quiet_deadline = T0 + Duration::from_secs(60) + TIMEOUT_INTERVAL;
    assert_eq!(
        h.m(A).poll_timeout(),
        Some(ping_deadline.min(quiet_deadline))
    );
    h.advance_to(quiet_deadline - US);
    h.expect_connected(A);
    h.advance_to(quiet_deadline);
    h.expect_disconnect(A, DisconnectReason::Inactivity);
}

#[test]
fn a_live_connection_stays_up_for_hours() {
    let mut h = Harness::new();
    h.connect();
    h.run_for(Duration::from_secs(3 * 3600));
    h.expect_ready(A);
    h.expect_ready(B);
    assert_eq!(ping_completions(&h, A).len(), 90);
    assert_eq!(ping_completions(&h, B).len(), 90);
}

#[test]
fn a_peer_from_before_bip31_is_not_expected_to_answer_pings() {
    // Below 60001 a peer has no pong; Core stops waiting for one. Such a peer must not be
    // dropped for a ping timeout while it keeps talking.
    let mut h = Setup::default()
        .b(|c| c.chain.protocol_version = 60_000)
        .start();
    h.connect();
    h.run_for(Duration::from_secs(3600));
    h.expect_ready(A);
    h.expect_ready(B);
    assert!(h
        .sent(A)
        .iter()
        .all(|s| !matches!(s.message, NetworkMessage::Pong(_))));
    // Pings still go out on schedule (they keep the peer's inactivity timer happy).
    assert_eq!(ping_times(&h, A).len(), 30);
    assert_eq!(h.m(A).stats(h.now()).ping.wait_micros, None);
}
