//! Where the two cores meet: peer events in, peer commands out.
//!
//! A pool owns many connections, each driven by its own [`PeerMachine`](crate::PeerMachine)
//! (in its own task, in the runtime). This module is the whole of what passes between them,
//! so that neither the tokio driver nor the simulator has glue of its own:
//!
//! - **peer → pool**: whatever a peer machine reports ([`PeerEvent`]) is handed to
//!   [`PoolMachine::handle_peer_event`] as it is, in the order the machine produced it, and
//!   the end of the connection to [`PoolMachine::handle_disconnected`]. A runtime asks
//!   [`PoolMachine::wants_decoded`] which message kinds the pool needs decoded, so the peer
//!   machine produces events for those and no others.
//! - **pool → peer**: [`Output::Peer`] carries a [`PeerCommand`] for one peer, which the
//!   runtime hands to [`PeerMachine::handle_command`](crate::PeerMachine::handle_command).
//! - **peer settings**: [`PoolMachine::adapt_peer_config`] turns the user's peer settings
//!   into the ones a pool's peers run with.
//!
//! | event | what the pool does |
//! |---|---|
//! | `VersionSent` | an outbound peer's nonce is remembered until its handshake ends |
//! | `VersionReceived` | an inbound peer whose nonce is one of ours is us: both ends are closed ([`DisconnectReason::SelfConnection`]) |
//! | `HandshakeCompleted` | the peer joins: book updated, `getaddr` to outbound peers, our address announced, feelers closed |
//! | `MessageReceived` | `addr`/`addrv2` go to address relay, `getaddr` is answered (see [`super::relay`]) |
//! | `PingCompleted` | the round trip feeds eviction protection |
//! | `Misbehaved` | [`verdict`] of the ban manager, carried out |
//!
//! A peer the pool has decided to close is *closing*: its handshake no longer makes it join,
//! and its messages are ignored, but its misbehaviour is still judged (a peer disconnected
//! for one offence whose next reports cross the ban threshold is banned), and its departure
//! is still accounted for.

use bitcoin::p2p::message::NetworkMessage;
use bitcoin::p2p::ServiceFlags;
use peerpool_wire::MessageKind;

use super::machine::{Output, Permission, PoolEvent, PoolMachine};
use crate::gossip::Announced;
use crate::misbehaviour::Misbehaviour;
use crate::peer::{Direction, DisconnectReason, PeerCommand, PeerConfig, PeerEvent, PeerId};
use crate::pool::banman::{verdict, BanReason, Subnet, Verdict};
use crate::pool::connman::ConnKind;
use crate::time::Time;

impl PoolMachine {
    /// Message kinds the pool needs decoded and reported: `addr` and `addrv2` (address relay)
    /// and `getaddr` (answered from the book). Everything else a peer sends is its own
    /// machine's business or the user's.
    pub fn wants_decoded(kind: MessageKind) -> bool {
        matches!(
            kind,
            MessageKind::Addr | MessageKind::AddrV2 | MessageKind::GetAddr
        )
    }

    /// The settings a pool's peers run with, from the user's: the pool judges misbehaviour
    /// itself (a peer machine left to its own threshold would disconnect without the pool
    /// banning), so the peers report their scores and decide nothing.
    pub fn adapt_peer_config(config: &mut PeerConfig) {
        config.ban_threshold = None;
    }

    /// What a peer's machine reported; see the module docs for what each event does.
    pub fn handle_peer_event(&mut self, now: Time, peer: PeerId, event: &PeerEvent) {
        let Some(state) = self.peers.get(&peer) else {
            tracing::debug!(%peer, "event of an unknown peer ignored");
            return;
        };
        let (direction, closing) = (state.kind.direction(), state.closing);
        match event {
            PeerEvent::VersionSent { nonce } => {
                if direction == Direction::Outbound {
                    self.nonces.insert(*nonce, peer);
                }
            }
            PeerEvent::VersionReceived { nonce } => {
                if direction == Direction::Inbound {
                    self.check_self_connection(peer, *nonce);
                }
            }
            PeerEvent::HandshakeCompleted { version, .. } => {
                self.forget_nonce(peer);
                if closing {
                    tracing::debug!(%peer, "handshake of a closing peer ignored");
                } else {
                    self.peer_ready(now, peer, version.services);
                }
            }
            PeerEvent::MessageReceived { kind, message } if !closing => {
                self.message_received(now, peer, *kind, message.as_ref());
            }
            PeerEvent::MessageReceived { kind, .. } => {
                tracing::debug!(%peer, "{kind} of a closing peer ignored");
            }
            PeerEvent::PingCompleted { rtt_micros } => {
                self.connman.record_ping(peer, *rtt_micros);
            }
            PeerEvent::Misbehaved { what, score } => self.misbehaved(now, peer, *what, *score),
        }
        self.sync_timers(now);
    }

    fn message_received(
        &mut self,
        now: Time,
        peer: PeerId,
        kind: MessageKind,
        message: Option<&NetworkMessage>,
    ) {
        match message {
            Some(NetworkMessage::Addr(list)) => {
                let addrs: Vec<Announced> = list
                    .iter()
                    .filter_map(|(time, a)| Announced::from_legacy(*time, a))
                    .collect();
                self.received_addrs(now, peer, &addrs, list.len());
            }
            Some(NetworkMessage::AddrV2(list)) => {
                let addrs: Vec<Announced> = list.iter().filter_map(Announced::from_v2).collect();
                self.received_addrs(now, peer, &addrs, list.len());
            }
            _ if kind == MessageKind::GetAddr => self.answer_getaddr(now, peer),
            // Kinds the pool did not ask for (a runtime may report more than
            // `wants_decoded` names): nothing to do.
            _ => tracing::trace!(%peer, "{kind} not for the pool"),
        }
    }

    /// An inbound peer's `version` carries `nonce`: if one of our outbound peers sent it, the
    /// two are the ends of one connection to ourselves. Bitcoin Core closes the inbound end;
    /// the pool closes both, so that the outbound end never joins.
    fn check_self_connection(&mut self, inbound: PeerId, nonce: u64) {
        let Some(outbound) = self.nonces.get(&nonce).copied() else {
            return;
        };
        tracing::debug!(%inbound, %outbound, "version nonce is ours: connected to self");
        self.disconnect(inbound, DisconnectReason::SelfConnection);
        self.disconnect(outbound, DisconnectReason::SelfConnection);
    }

    /// Forgets the nonce of an outbound peer whose handshake ended one way or another.
    pub(crate) fn forget_nonce(&mut self, peer: PeerId) {
        self.nonces.retain(|_, p| *p != peer);
    }

    /// A connection completed its handshake; `services` are what the peer announced.
    fn peer_ready(&mut self, now: Time, peer: PeerId, services: ServiceFlags) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        p.ready = true;
        let (addr, direction, kind) = (p.addr, p.kind.direction(), p.kind);
        self.connman.handle_handshake(peer);
        if direction == Direction::Outbound {
            self.addrman.good(&addr, now);
            self.addrman.set_services(&addr, services);
            // A feeler that tested a collision's incumbent settles it now; a new address
            // that collided starts waiting.
            self.addrman.resolve_collisions(now);
            self.arm_collisions(now);
        }
        if kind == ConnKind::Feeler {
            // The address answered: that is all a feeler wanted to know.
            self.disconnect(peer, DisconnectReason::Requested);
            return;
        }
        self.outputs.push_back(Output::Event(PoolEvent::PeerJoined {
            peer,
            addr,
            direction,
            kind,
        }));
        if direction == Direction::Outbound {
            self.ask_for_addrs(peer);
        }
        self.advertise_to(now, peer);
    }

    /// Judges a misbehaviour reported with the peer's score afterwards, and carries the
    /// verdict out. Peers with the noban permission and connections the operator asked for
    /// are never banned (Bitcoin Core: "not punishing manually connected peer").
    fn misbehaved(&mut self, now: Time, peer: PeerId, what: Misbehaviour, score: u32) {
        let Some(p) = self.peers.get(&peer) else {
            return;
        };
        if p.banned {
            // Reports that were on their way when the ban was made.
            return;
        }
        let addr = p.addr;
        let exempt = p.permissions.contains(Permission::NoBan)
            || matches!(p.kind, ConnKind::Manual | ConnKind::OneTry);
        match verdict(self.banman.config(), what, score, exempt) {
            Verdict::None => {}
            Verdict::Warn => tracing::warn!(%peer, %addr, score, "misbehaving: {what}"),
            Verdict::Disconnect => self.disconnect(peer, DisconnectReason::Misbehaviour(what)),
            Verdict::Ban => match self.banman.ban_misbehaving(&addr, now) {
                Some(until) => {
                    if let Some(p) = self.peers.get_mut(&peer) {
                        p.banned = true;
                    }
                    let event = PoolEvent::Banned {
                        subnet: Subnet::from(addr.host),
                        until,
                        reason: BanReason::Misbehaviour,
                    };
                    self.outputs.push_back(Output::Event(event));
                    self.disconnect_banned(now);
                }
                // A loopback peer that is not to be banned is only let go.
                None => self.disconnect(peer, DisconnectReason::Misbehaviour(what)),
            },
        }
    }

    /// Tells a peer's machine to close, and marks the peer closing.
    pub(crate) fn disconnect(&mut self, peer: PeerId, reason: DisconnectReason) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.closing = true;
        }
        self.command(peer, PeerCommand::Disconnect(reason));
    }

    /// Queues a command for a peer's machine.
    pub(crate) fn command(&mut self, peer: PeerId, command: PeerCommand) {
        self.outputs.push_back(Output::Peer { peer, command });
    }
}
