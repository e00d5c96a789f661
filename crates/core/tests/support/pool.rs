//! A harness for scenario tests of the pool machine that reads like the story it tells:
//!
//! ```ignore
//! let mut h = PoolHarness::new(config);
//! let p = h.connect_inbound("203.0.113.9:40000");
//! h.handshake(p);
//! h.misbehave(p, Misbehaviour::OversizedAddr { count: 1001 });
//! h.elapse_secs(60);
//! h.expect_disconnect(p, DisconnectReason::Banned);
//! ```
//!
//! It plays the runtime around one [`PoolMachine`], with literal times: every input is
//! followed by the drain contract (outputs collected with the time they came out), and
//! [`PoolHarness::elapse`] runs each deadline on the way at its own time. Peers report what
//! their machines would, through [`PoolMachine::handle_peer_event`] only: the harness keeps
//! each peer's one ban score as a peer machine does, so a misbehaviour reaches the pool with
//! the score it raised.

use std::collections::BTreeMap;
use std::time::Duration;

use bitcoin::p2p::address::{AddrV2Message, Address};
use bitcoin::p2p::message::NetworkMessage;
use bitcoin::p2p::message_network::VersionMessage;
use bitcoin::p2p::ServiceFlags;
use peerpool_core::addr::NetAddr;
use peerpool_core::ban::BanScore;
use peerpool_core::misbehaviour::Misbehaviour;
use peerpool_core::pool::addrman::AddrMan;
use peerpool_core::pool::banman::BanList;
use peerpool_core::pool::connman::{ConnKind, ReqId};
use peerpool_core::pool::machine::{Config, Refused};
use peerpool_core::pool::{Output, PoolEvent, PoolMachine};
use peerpool_core::{DisconnectReason, PeerCommand, PeerEvent, PeerId, Time};
use peerpool_wire::MessageKind;

/// When every pool scenario starts: 2023-11-14T22:13:20Z.
pub const START: Time = Time::from_secs(1_700_000_000);
/// The secret of the harness's address books.
pub const SECRET: [u8; 16] = [9; 16];
/// The seed of the harness's machines.
pub const SEED: u64 = 5;

/// An address from its text form.
pub fn addr(s: &str) -> NetAddr {
    s.parse().unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

/// The `version` a peer's machine reports with its handshake.
pub fn version_of(services: ServiceFlags) -> Box<VersionMessage> {
    let nowhere = Address {
        services: ServiceFlags::NONE,
        address: [0; 8],
        port: 0,
    };
    Box::new(VersionMessage {
        version: 70016,
        services,
        timestamp: START.as_secs() as i64,
        receiver: nowhere.clone(),
        sender: nowhere,
        nonce: 1,
        user_agent: "/test:1.0/".into(),
        start_height: 0,
        relay: true,
    })
}

/// One pool, its clock and what it said; see the module docs.
pub struct PoolHarness {
    /// The machine under test.
    pub pool: PoolMachine,
    /// The harness's clock.
    pub now: Time,
    outputs: Vec<(Time, Output)>,
    scores: BTreeMap<PeerId, BanScore>,
    next_peer: u64,
}

impl PoolHarness {
    /// A pool with an empty book at [`START`].
    pub fn new(config: Config) -> PoolHarness {
        let book = AddrMan::new(config.addrman.clone(), SECRET, fastrand::Rng::with_seed(1));
        PoolHarness::with_book(config, book)
    }

    /// A pool starting from `book`.
    pub fn with_book(config: Config, book: AddrMan) -> PoolHarness {
        let pool = PoolMachine::with_state(config, book, BanList::new(), SEED, START);
        let mut h = PoolHarness {
            pool,
            now: START,
            outputs: Vec::new(),
            scores: BTreeMap::new(),
            next_peer: 1_000,
        };
        h.drain();
        h
    }

    /// The drain contract: every output of the last input, with the time it came out.
    pub fn drain(&mut self) {
        while let Some(o) = self.pool.poll_output() {
            self.outputs.push((self.now, o));
        }
    }

    /// Lets `d` pass, handling every deadline on the way at its own time.
    pub fn elapse(&mut self, d: Duration) {
        let end = self.now + d;
        while let Some(t) = self.pool.poll_timeout().filter(|t| *t <= end) {
            self.now = self.now.max(t);
            self.pool.handle_timeout(self.now);
            self.drain();
        }
        self.now = end;
    }

    /// Lets `secs` seconds pass.
    pub fn elapse_secs(&mut self, secs: u64) {
        self.elapse(Duration::from_secs(secs));
    }

    /// A fresh peer id, above any a test picks by hand.
    pub fn new_peer(&mut self) -> PeerId {
        self.next_peer += 1;
        PeerId(self.next_peer)
    }

    /// A peer connects to us from `from`; the pool must take it.
    pub fn connect_inbound(&mut self, from: &str) -> PeerId {
        self.try_inbound(from)
            .unwrap_or_else(|r| panic!("inbound from {from} refused: {r:?}"))
    }

    /// A peer connects to us from `from`; the pool's answer.
    pub fn try_inbound(&mut self, from: &str) -> Result<PeerId, Refused> {
        let peer = self.new_peer();
        let result = self.pool.handle_inbound(self.now, peer, addr(from));
        self.drain();
        result.map(|()| peer)
    }

    /// A peer connects from `from` and completes its handshake.
    pub fn join_inbound(&mut self, from: &str) -> PeerId {
        let peer = self.connect_inbound(from);
        self.handshake(peer);
        peer
    }

    /// Runs until the first dial of `kind` (within `limit`), taking it out of the outputs.
    pub fn next_dial(&mut self, kind: ConnKind, limit: Duration) -> Option<(ReqId, NetAddr)> {
        let end = self.now + limit;
        loop {
            let found = self
                .outputs
                .iter()
                .position(|(_, o)| matches!(o, Output::Dial { kind: k, .. } if *k == kind));
            if let Some(i) = found {
                let (_, Output::Dial { req, addr, .. }) = self.outputs.remove(i) else {
                    unreachable!()
                };
                return Some((req, addr));
            }
            let t = self.pool.poll_timeout().filter(|t| *t <= end)?;
            self.now = self.now.max(t);
            self.pool.handle_timeout(self.now);
            self.drain();
        }
    }

    /// The dial `req` connected; the connection is a new peer.
    pub fn dial_succeeds(&mut self, req: ReqId) -> PeerId {
        let peer = self.new_peer();
        self.pool.handle_dial_succeeded(self.now, req, peer);
        self.drain();
        peer
    }

    /// The dial `req` failed.
    pub fn dial_fails(&mut self, req: ReqId) {
        self.pool.handle_dial_failed(self.now, req);
        self.drain();
    }

    /// `addnode`s `to`, dials it and completes the handshake.
    pub fn join_manual(&mut self, to: &str) -> PeerId {
        self.pool.add_node(self.now, addr(to)).unwrap();
        self.drain();
        let (req, _) = self
            .next_dial(ConnKind::Manual, Duration::from_secs(1))
            .expect("the manual dial");
        let peer = self.dial_succeeds(req);
        self.handshake(peer);
        peer
    }

    /// The peer's machine reports `event`.
    pub fn report(&mut self, peer: PeerId, event: PeerEvent) {
        self.pool.handle_peer_event(self.now, peer, &event);
        self.drain();
    }

    /// The peer's handshake completes.
    pub fn handshake(&mut self, peer: PeerId) {
        self.report(
            peer,
            PeerEvent::HandshakeCompleted {
                version: version_of(ServiceFlags::NETWORK),
                negotiated_version: 70016,
            },
        );
    }

    /// The peer sends `message`, reported as its machine does for a kind the pool asked for.
    pub fn receive(&mut self, peer: PeerId, message: NetworkMessage) {
        let kind = MessageKind::of(&message);
        self.report(
            peer,
            PeerEvent::MessageReceived {
                kind,
                message: Some(message),
            },
        );
    }

    /// The peer announces `addrs` in one `addrv2` message.
    pub fn receive_addrs(&mut self, peer: PeerId, addrs: &[AddrV2Message]) {
        self.receive(peer, NetworkMessage::AddrV2(addrs.to_vec()));
    }

    /// The peer misbehaves: its score (kept here as its machine keeps it) rises, and the
    /// misbehaviour is reported with it.
    pub fn misbehave(&mut self, peer: PeerId, what: Misbehaviour) {
        let now = self.now;
        let score = self
            .scores
            .entry(peer)
            .or_default()
            .increase(now, 0, what.score());
        self.report(peer, PeerEvent::Misbehaved { what, score });
    }

    /// The peer's socket closed.
    pub fn disconnected(&mut self, peer: PeerId, reason: DisconnectReason) {
        self.scores.remove(&peer);
        self.pool.handle_disconnected(self.now, peer, reason);
        self.drain();
    }

    /// Takes every output so far.
    pub fn take(&mut self) -> Vec<(Time, Output)> {
        std::mem::take(&mut self.outputs)
    }

    /// The outputs so far, without taking them.
    pub fn outputs(&self) -> impl Iterator<Item = &Output> + '_ {
        self.outputs.iter().map(|(_, o)| o)
    }

    /// Commands the pool gave `peer`'s machine so far.
    pub fn commands_to(&self, peer: PeerId) -> Vec<PeerCommand> {
        self.outputs()
            .filter_map(|o| match o {
                Output::Peer { peer: p, command } if *p == peer => Some(command.clone()),
                _ => None,
            })
            .collect()
    }

    /// Events the pool reported so far.
    pub fn events(&self) -> Vec<PoolEvent> {
        self.outputs()
            .filter_map(|o| match o {
                Output::Event(e) => Some(e.clone()),
                _ => None,
            })
            .collect()
    }

    /// The pool told `peer` to disconnect for `reason`.
    pub fn expect_disconnect(&self, peer: PeerId, reason: DisconnectReason) {
        let commands = self.commands_to(peer);
        assert!(
            commands.contains(&PeerCommand::Disconnect(reason.clone())),
            "{peer} not disconnected for {reason}: {commands:?}"
        );
    }

    /// The pool did not tell `peer` to disconnect.
    pub fn expect_connected(&self, peer: PeerId) {
        let commands = self.commands_to(peer);
        assert!(
            !commands
                .iter()
                .any(|c| matches!(c, PeerCommand::Disconnect(_))),
            "{peer} disconnected: {commands:?}"
        );
    }
}
