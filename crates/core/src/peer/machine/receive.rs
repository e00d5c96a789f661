//! The receiving side of the peer machine: frames in, transitions and events out.

use bitcoin::consensus::encode::{Decodable, VarInt};
use bitcoin::p2p::message::NetworkMessage;
use bitcoin::p2p::message_network::VersionMessage;
use bitcoin::p2p::ServiceFlags;
use peerpool_wire::feature::Feature;
use peerpool_wire::frame::{Frame, FrameError};
use peerpool_wire::message::{decode_payload, DecodeError};
use peerpool_wire::MessageKind;
use tracing::debug;

use super::{
    sanitize_user_agent, PeerMachine, Ping, Remote, BIP0031_VERSION, MAX_FEATURES_KEPT,
    MAX_HEADERS_RESULTS, MAX_INV_SZ, NO_BLOOM_VERSION, SENDHEADERS_VERSION, WTXID_RELAY_VERSION,
};
use crate::gossip::MAX_ADDR_TO_SEND;
use crate::misbehaviour::Misbehaviour;
use crate::peer::inventory::is_block;
use crate::peer::{Direction, DisconnectReason, HandshakeState, PeerEvent, PeerOutput};
use crate::time::Time;

impl PeerMachine {
    /// A complete, checksummed frame arrived: the one entry point for everything a peer
    /// sends.
    ///
    /// The machine classifies the frame's command once and asks `decode` whether the owner
    /// wants messages of that kind (a listener, a pool); those it decodes even when it needs
    /// nothing from them itself, and hands back in [`PeerEvent::MessageReceived`]. Kinds
    /// nobody wants produce no event, so unwatched traffic costs no decoding or queueing.
    pub fn handle_frame(
        &mut self,
        now: Time,
        frame: &Frame,
        decode: impl FnOnce(MessageKind) -> bool,
    ) {
        let kind = MessageKind::from_command(frame.command.as_str());
        let (command, payload, wire_len) = (frame.command, &frame.payload[..], frame.wire_len());
        let decode = decode(kind);
        if self.is_disconnected() {
            return;
        }
        self.last_recv = Some(now);
        self.bytes_recv += wire_len as u64;
        self.msgs_recv += 1;
        self.recv_per_kind.add(kind, wire_len as u64);

        if !self.admitted(now, kind) {
            return;
        }
        if let Some(m) = oversized(kind, payload) {
            debug!(peer = %self.id, "{m}; message ignored");
            self.misbehaving(now, m);
            return;
        }
        if kind == MessageKind::Pong {
            // Decoded by hand: Bitcoin Core reads the first eight bytes and treats a shorter
            // payload as a cancelled ping rather than an error.
            self.received_pong(now, payload);
            if decode && payload.len() >= 8 {
                let mut b = [0u8; 8];
                b.copy_from_slice(&payload[..8]);
                self.deliver(kind, Some(NetworkMessage::Pong(u64::from_le_bytes(b))));
            }
            return;
        }
        if is_bloom_kind(kind) && !self.config.services.has(ServiceFlags::BLOOM) {
            if self.negotiated_version().unwrap_or(0) >= NO_BLOOM_VERSION {
                self.misbehaving(
                    now,
                    Misbehaviour::BloomNotOffered {
                        command: kind.as_str(),
                    },
                );
            } else {
                debug!(peer = %self.id, "{kind} from a pre-BIP111 peer ignored");
            }
            return;
        }
        if kind == MessageKind::Feature {
            self.received_feature(payload);
            if decode {
                let message = decode_payload(command, payload).ok();
                if message.is_some() {
                    self.deliver(kind, message);
                }
            }
            return;
        }
        if kind == MessageKind::Ping && payload.len() < 8 {
            // Peers before BIP31 ping without a nonce; there is nothing to answer.
            debug!(peer = %self.id, "ping without nonce ignored");
            return;
        }
        let needed = matches!(
            kind,
            MessageKind::Version | MessageKind::Ping | MessageKind::Inv | MessageKind::FeeFilter
        );
        let message = if needed || decode {
            match decode_payload(command, payload) {
                Ok(m) => Some(m),
                Err(DecodeError::UserAgentTooLong(_)) => {
                    self.misbehaving(now, Misbehaviour::UserAgentTooLong);
                    return;
                }
                Err(e) => {
                    debug!(peer = %self.id, "{e}; message ignored");
                    self.misbehaving(
                        now,
                        Misbehaviour::MalformedMessage {
                            command: kind.as_str(),
                        },
                    );
                    return;
                }
            }
        } else {
            None
        };
        match (&message, kind) {
            (Some(NetworkMessage::Version(v)), _) => {
                self.received_version(now, v.clone());
                if self.is_disconnected() {
                    return;
                }
            }
            (_, MessageKind::Verack) => self.received_verack(now),
            (_, MessageKind::WtxidRelay) => {
                if let Some(r) = self.remote.as_mut() {
                    r.wtxid_relay = r.negotiated >= WTXID_RELAY_VERSION;
                }
            }
            (_, MessageKind::SendAddrV2) => {
                if let Some(r) = self.remote.as_mut() {
                    r.addrv2 = true;
                }
            }
            (_, MessageKind::SendHeaders) => {
                if let Some(r) = self.remote.as_mut() {
                    r.wants_headers = true;
                }
            }
            (Some(NetworkMessage::FeeFilter(rate)), _) => {
                if let Some(r) = self.remote.as_mut() {
                    r.fee_filter = Some(*rate);
                }
            }
            (Some(NetworkMessage::Ping(nonce)), _)
                if self.negotiated_version().unwrap_or(0) > BIP0031_VERSION =>
            {
                self.push_send(NetworkMessage::Pong(*nonce), None);
            }
            (Some(NetworkMessage::Inv(list)), _) => {
                let state = self.inventory_state();
                state.peer_has(list);
            }
            _ => {}
        }
        if decode {
            self.deliver(kind, message);
        }
    }

    /// A frame was refused by the decoder. Fatal errors end the connection; others cost the
    /// peer a little ban score and the message is dropped.
    pub fn handle_bad_frame(&mut self, now: Time, error: FrameError, wire_len: usize) {
        if self.is_disconnected() {
            return;
        }
        self.last_recv = Some(now);
        self.bytes_recv += wire_len as u64;
        if error.is_fatal() {
            debug!(peer = %self.id, "{error}");
            self.disconnect(now, DisconnectReason::BadFrame(error));
            return;
        }
        debug!(peer = %self.id, "{error}; message dropped");
        let what = match error {
            FrameError::BadChecksum { .. } => Misbehaviour::BadChecksum,
            _ => Misbehaviour::BadCommand,
        };
        self.misbehaving(now, what);
    }

    /// The runtime wrote (or is about to write) a message of `kind` taking `wire_len` bytes.
    pub fn handle_sent(&mut self, now: Time, kind: MessageKind, wire_len: usize) {
        self.last_send = Some(now);
        self.bytes_sent += wire_len as u64;
        self.msgs_sent += 1;
        self.sent_per_kind.add(kind, wire_len as u64);
    }

    /// Whether a message of `kind` is acceptable in the current handshake state. Messages out
    /// of place are ignored as Bitcoin Core ignores them (its p2p_leak test), with one
    /// exception: feature negotiation after verack breaks BIP339/BIP155 and disconnects.
    fn admitted(&mut self, now: Time, kind: MessageKind) -> bool {
        match (&self.state, kind) {
            (HandshakeState::AwaitingVersion { .. }, MessageKind::Version) => true,
            (HandshakeState::AwaitingVersion { .. }, _) => {
                debug!(peer = %self.id, "{kind} before version ignored");
                false
            }
            // Bitcoin Core also takes the announcement preferences between version and verack.
            (
                HandshakeState::AwaitingVerack { .. },
                MessageKind::Verack
                | MessageKind::WtxidRelay
                | MessageKind::SendAddrV2
                | MessageKind::SendHeaders
                | MessageKind::SendCmpct
                | MessageKind::Feature,
            ) => true,
            (HandshakeState::AwaitingVerack { .. }, _) => {
                debug!(peer = %self.id, "{kind} before verack ignored");
                false
            }
            // BIP434 lets a node ignore features offered after verack.
            (
                HandshakeState::Ready { .. },
                MessageKind::Version | MessageKind::Verack | MessageKind::Feature,
            ) => {
                debug!(peer = %self.id, "redundant {kind} ignored");
                false
            }
            (HandshakeState::Ready { .. }, MessageKind::WtxidRelay | MessageKind::SendAddrV2) => {
                self.misbehaving(
                    now,
                    Misbehaviour::FeatureAfterVerack {
                        command: kind.as_str(),
                    },
                );
                false
            }
            (HandshakeState::Ready { .. }, _) => true,
            (HandshakeState::Disconnected { .. }, _) => false,
        }
    }

    /// A BIP434 `feature` between version and verack: its identifier is noted and nothing
    /// else done, since peerpool implements no feature negotiated this way. A payload that
    /// breaks the BIP's bounds is ignored (the BIP allows a disconnect; ignoring is gentler
    /// on peers written to drafts of it).
    fn received_feature(&mut self, payload: &[u8]) {
        let feature = match Feature::parse(payload) {
            Ok(f) => f,
            Err(e) => {
                debug!(peer = %self.id, "malformed feature payload ignored: {e}");
                return;
            }
        };
        let id = feature.id_text();
        debug!(peer = %self.id, "peer offers feature {id}");
        let Some(r) = self.remote.as_mut() else {
            return;
        };
        if r.features.len() < MAX_FEATURES_KEPT && !r.features.iter().any(|f| **f == *id) {
            r.features.push(id.into_boxed_str());
        }
    }

    fn received_version(&mut self, now: Time, v: VersionMessage) {
        let minimum = self.config.chain.min_protocol_version;
        if v.version < minimum {
            debug!(peer = %self.id, version = v.version, "protocol version below minimum");
            self.disconnect(
                now,
                DisconnectReason::ProtocolVersionTooLow {
                    theirs: v.version,
                    minimum,
                },
            );
            return;
        }
        let negotiated = v.version.min(self.our_version());
        let time_offset = v.timestamp.saturating_sub(now.as_secs() as i64);
        let nonce = v.nonce;
        let mut v = v;
        v.user_agent = sanitize_user_agent(&v.user_agent);
        self.remote = Some(Box::new(Remote {
            version: v,
            negotiated,
            time_offset,
            wants_headers: false,
            fee_filter: None,
            wtxid_relay: false,
            addrv2: false,
            features: Vec::new(),
        }));
        self.emit(PeerOutput::Event(PeerEvent::VersionReceived { nonce }));
        if self.direction == Direction::Inbound {
            self.send_version(now);
        }
        if negotiated >= WTXID_RELAY_VERSION {
            self.push_send(NetworkMessage::WtxidRelay, None);
            self.push_send(NetworkMessage::SendAddrV2, None);
        }
        self.push_send(NetworkMessage::Verack, None);
        self.state = HandshakeState::AwaitingVerack { since: now };
    }

    fn received_verack(&mut self, now: Time) {
        let Some(remote) = self.remote.as_ref() else {
            return;
        };
        let negotiated = remote.negotiated;
        let version = Box::new(remote.version.clone());
        self.state = HandshakeState::Ready { since: now };
        self.ready_at = Some(now);
        // The event goes before any post-handshake message, so an owner draining outputs in
        // order sees nothing but version, verack and the feature messages before it.
        self.emit(PeerOutput::Event(PeerEvent::HandshakeCompleted {
            version,
            negotiated_version: negotiated,
        }));
        if negotiated >= SENDHEADERS_VERSION {
            self.push_send(NetworkMessage::SendHeaders, None);
        }
        while let Some((msg, token)) = self.held.pop() {
            self.push_send(msg, token);
        }
        // Ping at once: the first round trip time is known right after the handshake.
        self.send_ping(now);
        let (any_block, any) = self.inventory.as_ref().map_or((false, false), |s| {
            (s.pending.iter().any(is_block), !s.pending.is_empty())
        });
        if any_block {
            // Blocks are never trickled; those queued during the handshake go out now.
            self.next_trickle = Some(now);
        } else if any && self.next_trickle.is_none() {
            self.next_trickle = Some(now + self.trickle_delay());
        }
    }

    fn received_pong(&mut self, now: Time, payload: &[u8]) {
        let Ping::Waiting {
            nonce: expected,
            since,
        } = self.ping
        else {
            debug!(peer = %self.id, "unsolicited pong ignored");
            return;
        };
        let finished = if payload.len() < 8 {
            debug!(peer = %self.id, "pong with short payload: ping cancelled");
            true
        } else {
            let mut b = [0u8; 8];
            b.copy_from_slice(&payload[..8]);
            let nonce = u64::from_le_bytes(b);
            if nonce == expected {
                let rtt = now.since(since).as_micros() as u64;
                self.ping_stats.last_rtt_micros = Some(rtt);
                self.ping_stats.min_rtt_micros =
                    Some(self.ping_stats.min_rtt_micros.map_or(rtt, |m| m.min(rtt)));
                self.emit(PeerOutput::Event(PeerEvent::PingCompleted {
                    rtt_micros: rtt,
                }));
                true
            } else if nonce == 0 {
                debug!(peer = %self.id, "pong with zero nonce: ping cancelled");
                true
            } else {
                debug!(peer = %self.id, "pong nonce mismatch ignored");
                false
            }
        };
        if finished {
            self.ping = Ping::Idle {
                next: since + self.config.ping_interval,
            };
        }
    }
}

/// Bloom-filter related commands (BIP37/BIP111), refused unless we offer `NODE_BLOOM`.
pub(super) fn is_bloom_kind(kind: MessageKind) -> bool {
    matches!(
        kind,
        MessageKind::FilterLoad
            | MessageKind::FilterAdd
            | MessageKind::FilterClear
            | MessageKind::MemPool
    )
}

/// Judges list messages by their entry count alone, before anything is decoded or allocated.
pub(super) fn oversized(kind: MessageKind, payload: &[u8]) -> Option<Misbehaviour> {
    let limit = match kind {
        MessageKind::Inv | MessageKind::GetData | MessageKind::NotFound => MAX_INV_SZ,
        MessageKind::Addr | MessageKind::AddrV2 => MAX_ADDR_TO_SEND as u64,
        MessageKind::Headers => MAX_HEADERS_RESULTS,
        _ => return None,
    };
    let count = VarInt::consensus_decode(&mut &payload[..]).ok()?.0;
    if count <= limit {
        return None;
    }
    Some(match kind {
        MessageKind::Addr | MessageKind::AddrV2 => Misbehaviour::OversizedAddr { count },
        MessageKind::Headers => Misbehaviour::OversizedHeaders { count },
        _ => Misbehaviour::OversizedInventory {
            command: kind.as_str(),
            count,
        },
    })
}
