//! A two-peer harness for scenario tests of the peer machine.
//!
//! Two [`PeerMachine`]s are wired back to back the way two nodes are on a real socket: `A`
//! dialed `B`, so `A` is outbound and `B` inbound. Every message a machine wants sent is
//! encoded into frame bytes, the bytes are cut into frames again by a [`FrameDecoder`] on the
//! other side, and the frame is handed to the other machine. So the tests exercise the same
//! bytes a connection task would move, not a shortcut through `NetworkMessage` values.
//!
//! The harness follows the driving contract of the crate docs after every input: drain
//! `poll_output`, then, if `poll_timeout` is already due, call `handle_timeout`. Messages do not
//! cross by themselves: a test moves them with [`Harness::deliver`] / [`Harness::deliver_all`]
//! (or [`Harness::run_for`], a zero-latency network), so it can hold one back, drop it, or let
//! the clock run in between. [`Harness::inject`] and friends play a misbehaving peer by handing
//! crafted frames to one machine.
//!
//! Invariants checked on every output of every test, so that each scenario also checks them:
//! - before its `HandshakeCompleted` event a machine sends nothing but `version`, `verack`,
//!   `wtxidrelay` and `sendaddrv2`;
//! - after `Disconnect` a machine outputs nothing at all;
//! - after `handle_timeout(now)` the next deadline lies in the future (no busy loop).
//!
//! Each file under `tests/` is its own crate and uses a different part of this module.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bitcoin::consensus::encode::{serialize, VarInt};
use bitcoin::p2p::address::Address;
use bitcoin::p2p::message::NetworkMessage;
use bitcoin::p2p::message_network::VersionMessage;
use bitcoin::p2p::ServiceFlags;
use peerpool_core::misbehaviour::Misbehaviour;
use peerpool_core::peer::{ConnectionAddrs, SendToken};
use peerpool_core::{
    Direction, DisconnectReason, PeerConfig, PeerEvent, PeerId, PeerMachine, PeerOutput, Time,
};
use peerpool_wire::frame::{encode_frame, HEADER_LEN};
use peerpool_wire::message::{encode_message, encode_payload};
use peerpool_wire::{Command, FrameDecoder, Magic, MessageKind, Network};

pub mod pool;

/// When every scenario starts: 2023-11-14T22:13:20Z.
pub const T0: Time = Time::from_secs(1_700_000_000);

/// Where `A` (the dialer) appears to `B`.
pub const A_ADDR: &str = "203.0.113.1:50123";
/// Where `B` (the listener) appears to `A`.
pub const B_ADDR: &str = "203.0.113.2:8333";

/// The network of every scenario. Mainnet, so the minimum protocol version is Core's 31800.
pub fn chain() -> peerpool_wire::ChainParams {
    Network::Mainnet.params()
}

/// The magic both ends frame with.
pub fn magic() -> Magic {
    chain().magic
}

/// A config with Bitcoin Core's defaults for [`chain`].
pub fn config() -> PeerConfig {
    PeerConfig::new(chain())
}

/// One end of the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The outbound machine: it dialed.
    A,
    /// The inbound machine: it accepted.
    B,
}

impl Side {
    /// The other end.
    pub fn peer(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }
}

/// A message a machine handed out for writing, as the runtime saw it.
#[derive(Debug)]
pub struct Sent {
    /// When it was written.
    pub at: Time,
    /// The message.
    pub message: NetworkMessage,
    /// The completion ticket the machine attached.
    pub token: Option<SendToken>,
    /// Its size on the wire, header included.
    pub wire_len: usize,
}

impl Sent {
    /// Its command, as on the wire.
    pub fn command(&self) -> &'static str {
        MessageKind::of(&self.message).as_str()
    }
}

/// One machine and what its runtime has seen of it.
pub struct Node {
    side: Side,
    machine: PeerMachine,
    /// Cuts the bytes this node reads into frames.
    decoder: FrameDecoder,
    /// Bytes read that do not make a whole frame yet.
    unread: Vec<u8>,
    /// Bytes this node wrote that the other end has not read yet.
    outbox: Vec<u8>,
    sent: Vec<Sent>,
    events: Vec<PeerEvent>,
    disconnected: Option<DisconnectReason>,
    handshake_completed: bool,
}

/// How to set up the two machines; [`Setup::start`] builds the harness.
pub struct Setup {
    /// `A`'s config.
    pub a: PeerConfig,
    /// `B`'s config.
    pub b: PeerConfig,
    /// Seeds of the machines' random numbers.
    pub seeds: (u64, u64),
    /// Best heights the machines announce.
    pub heights: (i32, i32),
    /// Passed as `decode` to `handle_frame`: whether to decode every payload for the events.
    pub decode: bool,
    /// When the connection is established.
    pub start: Time,
}

impl Default for Setup {
    fn default() -> Setup {
        Setup {
            a: config(),
            b: config(),
            seeds: (0xA11CE, 0xB0B),
            heights: (800_000, 810_000),
            decode: true,
            start: T0,
        }
    }
}

impl Setup {
    /// Changes `A`'s config.
    pub fn a(mut self, f: impl FnOnce(&mut PeerConfig)) -> Setup {
        f(&mut self.a);
        self
    }

    /// Changes `B`'s config.
    pub fn b(mut self, f: impl FnOnce(&mut PeerConfig)) -> Setup {
        f(&mut self.b);
        self
    }

    /// Changes both configs.
    pub fn both(self, f: impl Fn(&mut PeerConfig)) -> Setup {
        self.a(&f).b(&f)
    }

    /// Seeds `A` and `B`.
    pub fn seeds(mut self, a: u64, b: u64) -> Setup {
        self.seeds = (a, b);
        self
    }

    /// Whether payloads are decoded for listeners.
    pub fn decode(mut self, decode: bool) -> Setup {
        self.decode = decode;
        self
    }

    /// Builds both machines at [`Setup::start`]; `A` has already queued (and written) its
    /// `version`.
    pub fn start(self) -> Harness {
        let a_addr: SocketAddr = A_ADDR.parse().expect("valid address");
        let b_addr: SocketAddr = B_ADDR.parse().expect("valid address");
        let node = |side, config, direction, remote, local, height, seed| Node {
            side,
            machine: PeerMachine::new(
                Arc::new(config),
                PeerId(if side == Side::A { 1 } else { 2 }),
                direction,
                ConnectionAddrs {
                    remote,
                    local: Some(local),
                },
                self.start,
                height,
                seed,
            ),
            decoder: FrameDecoder::new(magic()),
            unread: Vec::new(),
            outbox: Vec::new(),
            sent: Vec::new(),
            events: Vec::new(),
            disconnected: None,
            handshake_completed: false,
        };
        let a = node(
            Side::A,
            self.a,
            Direction::Outbound,
            b_addr,
            a_addr,
            self.heights.0,
            self.seeds.0,
        );
        let b = node(
            Side::B,
            self.b,
            Direction::Inbound,
            a_addr,
            b_addr,
            self.heights.1,
            self.seeds.1,
        );
        let mut h = Harness {
            now: self.start,
            decode: self.decode,
            a,
            b,
        };
        h.pump(Side::A);
        h.pump(Side::B);
        h
    }
}

/// Two machines on one simulated connection; see the module docs.
pub struct Harness {
    now: Time,
    decode: bool,
    a: Node,
    b: Node,
}

impl Harness {
    /// Default configs on both sides; see [`Setup`] for anything else.
    pub fn new() -> Harness {
        Setup::default().start()
    }

    /// Completes the handshake over a perfect network (the first pings are answered too),
    /// checks both ends are ready, then forgets what was sent and seen so far so the story can
    /// start from a connected pair.
    pub fn connect(&mut self) {
        self.handshake();
        self.clear();
    }

    /// [`Harness::connect`] without forgetting anything.
    pub fn handshake(&mut self) {
        self.deliver_all();
        self.expect_ready(Side::A);
        self.expect_ready(Side::B);
    }

    // ----- time ---------------------------------------------------------------------------

    /// The harness clock.
    pub fn now(&self) -> Time {
        self.now
    }

    /// Lets `d` pass. Each machine's timers fire at their own deadlines, in order, as a runtime
    /// sleeping on `poll_timeout` would see them. Messages in flight stay in flight.
    pub fn elapse(&mut self, d: Duration) {
        self.advance(self.now + d, false);
    }

    /// Lets the clock run to `t` (not backwards); see [`Harness::elapse`].
    pub fn advance_to(&mut self, t: Time) {
        assert!(
            t >= self.now,
            "time runs forwards: {t:?} is before {:?}",
            self.now
        );
        self.advance(t, false);
    }

    /// Lets `d` pass on a zero-latency network: whenever a timer fires, whatever it sent is
    /// delivered (and answered) at once.
    pub fn run_for(&mut self, d: Duration) {
        self.advance(self.now + d, true);
    }

    fn advance(&mut self, until: Time, deliver: bool) {
        loop {
            let next = [Side::A, Side::B]
                .into_iter()
                .filter_map(|s| self.node(s).machine.poll_timeout())
                .min();
            match next {
                Some(t) if t <= until => {
                    self.now = self.now.max(t);
                    self.pump(Side::A);
                    self.pump(Side::B);
                    if deliver {
                        self.deliver_all();
                    }
                }
                _ => break,
            }
        }
        self.now = until;
    }

    // ----- the network --------------------------------------------------------------------

    /// Everything `from` has written so far reaches the other end now. Returns how many
    /// frames (good or bad) the other end read. Bytes sent to a closed end are lost.
    pub fn deliver(&mut self, from: Side) -> usize {
        let wire = std::mem::take(&mut self.node_mut(from).outbox);
        if wire.is_empty() || self.node(from.peer()).disconnected.is_some() {
            return 0;
        }
        self.read(from.peer(), &wire)
    }

    /// Delivers in both directions until neither end has anything more to say. An end whose
    /// peer closed the connection then notices it (`RemoteClosed`), as its runtime would.
    pub fn deliver_all(&mut self) {
        while self.deliver(Side::A) + self.deliver(Side::B) > 0 {}
        for side in [Side::A, Side::B] {
            if self.node(side).disconnected.is_some()
                && self.node(side.peer()).disconnected.is_none()
            {
                self.command(side.peer(), |m, now| {
                    m.disconnect(now, DisconnectReason::RemoteClosed)
                });
            }
        }
    }

    /// Throws away whatever `from` has written and the other end has not read yet.
    pub fn drop_in_flight(&mut self, from: Side) {
        self.node_mut(from).outbox.clear();
    }

    /// Whether `from` has written bytes the other end has not read.
    pub fn in_flight(&self, from: Side) -> bool {
        !self.node(from).outbox.is_empty()
    }

    /// `side` reads one crafted frame, as if its peer had sent it.
    pub fn inject(&mut self, side: Side, command: &str, payload: &[u8]) {
        self.inject_wire(side, &frame(command, payload));
    }

    /// `side` reads a message its peer did not really send.
    pub fn inject_message(&mut self, side: Side, msg: &NetworkMessage) {
        let mut wire = Vec::new();
        encode_message(magic(), msg, &mut wire);
        self.inject_wire(side, &wire);
    }

    /// `side` reads raw bytes: whole frames, bad frames, or pieces of frames.
    pub fn inject_wire(&mut self, side: Side, bytes: &[u8]) {
        self.read(side, bytes);
    }

    /// Hands `bytes` to `side` the way its connection task would: frame by frame through the
    /// decoder; a good frame goes to `handle_frame`, a refused one to `handle_bad_frame`, and a
    /// fatal error (or the machine disconnecting) stops reading.
    fn read(&mut self, side: Side, bytes: &[u8]) -> usize {
        let (now, decode) = (self.now, self.decode);
        let mut frames = 0;
        let node = self.node_mut(side);
        let mut wire = std::mem::take(&mut node.unread);
        wire.extend_from_slice(bytes);
        // `FrameDecoder::decode` takes a `bytes::BytesMut`. Decoding the still empty buffer
        // (which can only say "need more") fixes that type for the compiler, so this test
        // crate does not need a dependency of its own on `bytes`.
        let mut buf = Default::default();
        assert!(matches!(node.decoder.decode(&mut buf), Ok(None)));
        buf.extend_from_slice(&wire);
        loop {
            let node = self.node_mut(side);
            if node.disconnected.is_some() {
                return frames;
            }
            let before = buf.len();
            match node.decoder.decode(&mut buf) {
                Ok(None) => {
                    node.unread = buf.to_vec();
                    return frames;
                }
                Ok(Some(f)) => {
                    frames += 1;
                    node.machine.handle_frame(now, &f, |_| decode);
                }
                Err(e) => {
                    frames += 1;
                    let fatal = e.is_fatal();
                    // A fatal header is judged from its 24 bytes alone; a dropped frame was
                    // read whole.
                    let len = if fatal {
                        HEADER_LEN
                    } else {
                        before - buf.len()
                    };
                    node.machine.handle_bad_frame(now, e, len);
                    if fatal {
                        self.pump(side);
                        return frames;
                    }
                }
            }
            self.pump(side);
        }
    }

    // ----- driving a machine --------------------------------------------------------------

    /// Runs a command on `side`'s machine at the harness time, then drains its outputs.
    pub fn command<R>(&mut self, side: Side, f: impl FnOnce(&mut PeerMachine, Time) -> R) -> R {
        let now = self.now;
        let r = f(&mut self.node_mut(side).machine, now);
        self.pump(side);
        r
    }

    /// `queue_message` on `side`; the token, if one was asked for.
    pub fn queue(&mut self, side: Side, msg: NetworkMessage, notify: bool) -> Option<SendToken> {
        self.command(side, |m, _| m.queue_message(msg, notify))
            .expect("message accepted")
    }

    /// The machine of `side`, for queries.
    pub fn m(&self, side: Side) -> &PeerMachine {
        &self.node(side).machine
    }

    /// The machine of `side`, to be driven by hand: nothing is drained until [`Harness::pump`].
    pub fn m_mut(&mut self, side: Side) -> &mut PeerMachine {
        &mut self.node_mut(side).machine
    }

    /// `side`'s frames read without draining its outputs; the test plays the owner with
    /// `m_mut(side).poll_output()`.
    pub fn deliver_undrained(&mut self, from: Side) {
        let to = from.peer();
        let wire = std::mem::take(&mut self.node_mut(from).outbox);
        let decode = self.decode;
        let now = self.now;
        let node = self.node_mut(to);
        let mut buf = Default::default();
        assert!(matches!(node.decoder.decode(&mut buf), Ok(None)));
        buf.extend_from_slice(&wire);
        while let Some(f) = node.decoder.decode(&mut buf).expect("good frames") {
            node.machine.handle_frame(now, &f, |_| decode);
        }
    }

    /// The runtime's loop for `side`: write every `Send` (encode it, report it with
    /// `handle_sent`), record events and the disconnect, and fire a deadline that is due.
    pub fn pump(&mut self, side: Side) {
        let now = self.now;
        let node = self.node_mut(side);
        loop {
            while let Some(out) = node.machine.poll_output() {
                node.record(now, out);
            }
            match node.machine.poll_timeout() {
                Some(t) if t <= now => {
                    node.machine.handle_timeout(now);
                    if let Some(next) = node.machine.poll_timeout() {
                        assert!(
                            next > now,
                            "{side:?}: handle_timeout({now:?}) left the deadline at {next:?}"
                        );
                    }
                }
                _ => break,
            }
        }
    }

    // ----- what happened ------------------------------------------------------------------

    /// Messages `side` wrote since the last [`Harness::clear`] / take.
    pub fn sent(&self, side: Side) -> &[Sent] {
        &self.node(side).sent
    }

    /// Their commands, in order.
    pub fn sent_commands(&self, side: Side) -> Vec<&'static str> {
        self.sent(side).iter().map(Sent::command).collect()
    }

    /// Takes the messages `side` wrote.
    pub fn take_sent(&mut self, side: Side) -> Vec<Sent> {
        std::mem::take(&mut self.node_mut(side).sent)
    }

    /// Events `side` reported since the last [`Harness::clear`] / take.
    pub fn events(&self, side: Side) -> &[PeerEvent] {
        &self.node(side).events
    }

    /// Takes the events of `side`.
    pub fn take_events(&mut self, side: Side) -> Vec<PeerEvent> {
        std::mem::take(&mut self.node_mut(side).events)
    }

    /// Kinds of the messages `side` passed on to its owner (`MessageReceived`).
    pub fn received_kinds(&self, side: Side) -> Vec<MessageKind> {
        self.received(side).map(|(k, _)| k).collect()
    }

    /// The messages `side` passed on to its owner, with their decoded form.
    pub fn received(
        &self,
        side: Side,
    ) -> impl Iterator<Item = (MessageKind, Option<&NetworkMessage>)> + '_ {
        self.events(side).iter().filter_map(|e| match e {
            PeerEvent::MessageReceived { kind, message } => Some((*kind, message.as_ref())),
            _ => None,
        })
    }

    /// The misbehaviours `side` reported, with the score after each.
    pub fn misbehaviours(&self, side: Side) -> Vec<(Misbehaviour, u32)> {
        self.events(side)
            .iter()
            .filter_map(|e| match e {
                PeerEvent::Misbehaved { what, score } => Some((*what, *score)),
                _ => None,
            })
            .collect()
    }

    /// Forgets what both ends sent and reported so far.
    pub fn clear(&mut self) {
        for side in [Side::A, Side::B] {
            let n = self.node_mut(side);
            n.sent.clear();
            n.events.clear();
        }
    }

    /// Why `side` disconnected, if it did.
    pub fn disconnected(&self, side: Side) -> Option<&DisconnectReason> {
        self.node(side).disconnected.as_ref()
    }

    /// `side` has output `Disconnect(reason)` and its state agrees.
    pub fn expect_disconnect(&self, side: Side, reason: DisconnectReason) {
        assert_eq!(
            self.disconnected(side),
            Some(&reason),
            "{side:?} disconnect"
        );
        assert_eq!(self.m(side).disconnect_reason(), Some(&reason));
        assert_eq!(
            self.m(side).poll_timeout(),
            None,
            "a closed connection has no timers"
        );
    }

    /// `side` is still connected.
    pub fn expect_connected(&self, side: Side) {
        assert_eq!(
            self.disconnected(side),
            None,
            "{side:?} should still be connected"
        );
        assert!(!self.m(side).is_disconnected());
    }

    /// `side` completed its handshake and is still connected.
    pub fn expect_ready(&self, side: Side) {
        self.expect_connected(side);
        assert!(
            self.m(side).is_ready(),
            "{side:?} not ready: {:?}",
            self.m(side).state()
        );
        assert!(
            self.node(side).handshake_completed,
            "{side:?} reported no HandshakeCompleted"
        );
    }

    fn node(&self, side: Side) -> &Node {
        match side {
            Side::A => &self.a,
            Side::B => &self.b,
        }
    }

    fn node_mut(&mut self, side: Side) -> &mut Node {
        match side {
            Side::A => &mut self.a,
            Side::B => &mut self.b,
        }
    }
}

impl Default for Harness {
    fn default() -> Harness {
        Harness::new()
    }
}

impl Node {
    /// Carries out one output the way the runtime does, checking the harness invariants.
    fn record(&mut self, now: Time, out: PeerOutput) {
        let side = self.side;
        assert!(
            self.disconnected.is_none(),
            "{side:?} output {out:?} after Disconnect({:?})",
            self.disconnected
        );
        match out {
            PeerOutput::Send { message, token } => {
                let kind = MessageKind::of(&message);
                assert!(
                    self.handshake_completed
                        || matches!(
                            kind,
                            MessageKind::Version
                                | MessageKind::Verack
                                | MessageKind::WtxidRelay
                                | MessageKind::SendAddrV2
                        ),
                    "{side:?} sent {kind} before completing the handshake"
                );
                let wire_len = encode_message(magic(), &message, &mut self.outbox);
                self.machine.handle_sent(now, kind, wire_len);
                self.sent.push(Sent {
                    at: now,
                    message,
                    token,
                    wire_len,
                });
            }
            PeerOutput::Event(e) => {
                if matches!(e, PeerEvent::HandshakeCompleted { .. }) {
                    assert!(
                        !self.handshake_completed,
                        "{side:?} completed the handshake twice"
                    );
                    self.handshake_completed = true;
                }
                self.events.push(e);
            }
            PeerOutput::Disconnect(reason) => self.disconnected = Some(reason),
        }
    }
}

// ----- crafting bytes ---------------------------------------------------------------------

/// A well-formed frame (right magic, right checksum) around any payload.
pub fn frame(command: &str, payload: &[u8]) -> Vec<u8> {
    let mut wire = Vec::new();
    encode_frame(
        magic(),
        Command::new(command).expect("valid command"),
        payload,
        &mut wire,
    );
    wire
}

/// The payload of `msg`.
pub fn payload(msg: &NetworkMessage) -> Vec<u8> {
    encode_payload(msg)
}

/// Just the entry-count prefix of a list message: enough for the size check, which judges
/// the count before anything is decoded.
pub fn count_prefix(n: u64) -> Vec<u8> {
    serialize(&VarInt(n))
}

/// A `version` as a peer at protocol `version` would send it at `now`.
pub fn version_message(version: u32, nonce: u64, now: Time) -> VersionMessage {
    let b: SocketAddr = B_ADDR.parse().expect("valid address");
    VersionMessage {
        version,
        services: ServiceFlags::NETWORK | ServiceFlags::WITNESS,
        timestamp: now.as_secs() as i64,
        receiver: Address::new(&b, ServiceFlags::NONE),
        sender: Address {
            services: ServiceFlags::NONE,
            address: [0; 8],
            port: 0,
        },
        nonce,
        user_agent: "/Satoshi:27.0.0/".to_owned(),
        start_height: 840_000,
        relay: true,
    }
}
