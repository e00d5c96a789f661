//! The peer machine; see the [module docs](super).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bitcoin::consensus::encode::{Decodable, VarInt};
use bitcoin::hashes::{sha256d, Hash};
use bitcoin::p2p::address::{AddrV2, AddrV2Message, Address};
use bitcoin::p2p::message::NetworkMessage;
use bitcoin::p2p::message_blockdata::{GetBlocksMessage, GetHeadersMessage, Inventory};
use bitcoin::p2p::message_network::{Reject, RejectReason, VersionMessage};
use bitcoin::p2p::ServiceFlags;
use bitcoin::BlockHash;
use peerpool_wire::frame::{Command, FrameError};
use peerpool_wire::message::{decode_payload, DecodeError};
use peerpool_wire::MessageKind;
use tracing::debug;

use super::config::{PeerConfig, MAX_INV_PER_MESSAGE, MAX_PENDING_BEFORE_HANDSHAKE};
use super::inventory::{is_block, InventoryState, MAX_PENDING};
use super::stats::{PerKind, PingStats, StatsSnapshot};
use super::{
    ConnectionAddrs, Direction, DisconnectReason, HandshakeState, PeerEvent, PeerId, PeerOutput,
    SendToken,
};
use crate::ban::BanScore;
use crate::misbehaviour::Misbehaviour;
use crate::time::{exponential, Time};

/// Bitcoin Core: `BIP0031_VERSION`. Peers above it answer pings with pongs.
const BIP0031_VERSION: u32 = 60_000;
/// Bitcoin Core: `NO_BLOOM_VERSION`. From it on, bloom messages without `NODE_BLOOM` disconnect.
const NO_BLOOM_VERSION: u32 = 70_011;
/// Bitcoin Core: `SENDHEADERS_VERSION` (BIP130).
const SENDHEADERS_VERSION: u32 = 70_012;
/// Bitcoin Core: `WTXID_RELAY_VERSION` (BIP339); also the threshold for `sendaddrv2`.
const WTXID_RELAY_VERSION: u32 = 70_016;
/// btcd: `RejectVersion` (BIP61). Below it `reject` is not understood.
const REJECT_VERSION: u32 = 70_002;
/// Bitcoin Core: `MAX_INV_SZ`.
const MAX_INV_SZ: u64 = 50_000;
/// Bitcoin Core: `MAX_ADDR_TO_SEND`.
pub const MAX_ADDR_TO_SEND: usize = 1_000;
/// Bitcoin Core: `MAX_HEADERS_RESULTS`.
const MAX_HEADERS_RESULTS: u64 = 2_000;

/// What we learned from the peer's `version` and feature messages.
#[derive(Debug)]
struct Remote {
    version: VersionMessage,
    negotiated: u32,
    time_offset: i64,
    wants_headers: bool,
    fee_filter: Option<i64>,
    wtxid_relay: bool,
    addrv2: bool,
}

/// Keepalive state once the handshake is done.
#[derive(Clone, Copy, Debug)]
enum Ping {
    /// Handshake not done: no pings yet.
    NotStarted,
    /// No ping outstanding; the next one is due at `next`.
    Idle { next: Time },
    /// A ping with `nonce` went out at `since`.
    Waiting { nonce: u64, since: Time },
}

/// Why [`PeerMachine::queue_message`] refused a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    /// The peer is disconnected.
    #[error("peer is disconnected")]
    Disconnected,
    /// Too many messages are waiting for the handshake to complete.
    #[error("{MAX_PENDING_BEFORE_HANDSHAKE} messages already wait for the handshake")]
    HandshakePending,
}

/// One connection's protocol state; see the [module docs](super).
#[derive(Debug)]
pub struct PeerMachine {
    config: Arc<PeerConfig>,
    id: PeerId,
    direction: Direction,
    addrs: ConnectionAddrs,
    rng: fastrand::Rng,
    nonce: u64,
    start_height: i32,
    state: HandshakeState,
    remote: Option<Box<Remote>>,
    conn_time: Time,
    /// When the handshake completed, if it did; kept after disconnection.
    ready_at: Option<Time>,
    last_send: Option<Time>,
    last_recv: Option<Time>,
    bytes_sent: u64,
    bytes_recv: u64,
    msgs_sent: u64,
    msgs_recv: u64,
    sent_per_kind: PerKind,
    recv_per_kind: PerKind,
    ping: Ping,
    ping_stats: PingStats,
    inventory: Option<Box<InventoryState>>,
    /// Secret key of the known-inventory digests, drawn from the seed apart from `rng` so
    /// that creating the filter does not shift the machine's other random draws.
    inventory_key: [u64; 2],
    next_trickle: Option<Time>,
    /// Messages queued before the handshake completed.
    held: VecDeque<(NetworkMessage, Option<SendToken>)>,
    outputs: VecDeque<Queued>,
    next_token: u64,
    ban: BanScore,
    last_block: i32,
    last_getblocks: Option<Box<(Vec<BlockHash>, BlockHash)>>,
    last_getheaders: Option<Box<(Vec<BlockHash>, BlockHash)>>,
}

impl PeerMachine {
    /// A machine for a connection that has just been established.
    ///
    /// An outbound machine queues its `version` at once; an inbound one waits for the peer's.
    /// `start_height` is our best height, announced in our `version`; `seed` seeds the machine's
    /// random numbers (ping nonces, trickle intervals, address sampling).
    pub fn new(
        config: Arc<PeerConfig>,
        id: PeerId,
        direction: Direction,
        addrs: ConnectionAddrs,
        now: Time,
        start_height: i32,
        seed: u64,
    ) -> PeerMachine {
        let mut rng = fastrand::Rng::with_seed(seed);
        let nonce = rng.u64(1..);
        let mut key_rng = fastrand::Rng::with_seed(seed ^ INVENTORY_KEY_TWEAK);
        let inventory_key = [key_rng.u64(..), key_rng.u64(..)];
        let mut m = PeerMachine {
            config,
            id,
            direction,
            addrs,
            rng,
            nonce,
            start_height,
            state: HandshakeState::AwaitingVersion { since: now },
            remote: None,
            conn_time: now,
            ready_at: None,
            last_send: None,
            last_recv: None,
            bytes_sent: 0,
            bytes_recv: 0,
            msgs_sent: 0,
            msgs_recv: 0,
            sent_per_kind: PerKind::default(),
            recv_per_kind: PerKind::default(),
            ping: Ping::NotStarted,
            ping_stats: PingStats::default(),
            inventory: None,
            inventory_key,
            next_trickle: None,
            held: VecDeque::new(),
            outputs: VecDeque::new(),
            next_token: 0,
            ban: BanScore::default(),
            last_block: 0,
            last_getblocks: None,
            last_getheaders: None,
        };
        if direction == Direction::Outbound {
            m.send_version(now);
        }
        m
    }

    // ----- queries -------------------------------------------------------------------------

    /// The peer's id.
    pub fn id(&self) -> PeerId {
        self.id
    }

    /// Inbound or outbound.
    pub fn direction(&self) -> Direction {
        self.direction
    }

    /// The connection's addresses.
    pub fn addrs(&self) -> ConnectionAddrs {
        self.addrs
    }

    /// The nonce of our `version`; an outbound owner records it for self-connection checks.
    pub fn nonce(&self) -> u64 {
        self.nonce
    }

    /// The shared configuration.
    pub fn config(&self) -> &Arc<PeerConfig> {
        &self.config
    }

    /// Handshake progress.
    pub fn state(&self) -> &HandshakeState {
        &self.state
    }

    /// Whether the handshake is complete and the connection open.
    pub fn is_ready(&self) -> bool {
        matches!(self.state, HandshakeState::Ready { .. })
    }

    /// Whether the connection is over.
    pub fn is_disconnected(&self) -> bool {
        matches!(self.state, HandshakeState::Disconnected { .. })
    }

    /// Why the connection ended, once it has.
    pub fn disconnect_reason(&self) -> Option<&DisconnectReason> {
        match &self.state {
            HandshakeState::Disconnected { reason, .. } => Some(reason),
            _ => None,
        }
    }

    /// The peer's `version`, once received.
    pub fn remote_version(&self) -> Option<&VersionMessage> {
        self.remote.as_ref().map(|r| &r.version)
    }

    /// The negotiated protocol version, once the peer's `version` is in.
    pub fn negotiated_version(&self) -> Option<u32> {
        self.remote.as_ref().map(|r| r.negotiated)
    }

    /// Services the peer announced (none before its `version`).
    pub fn services(&self) -> ServiceFlags {
        self.remote
            .as_ref()
            .map_or(ServiceFlags::NONE, |r| r.version.services)
    }

    /// Whether the peer asked for block announcements by headers (BIP130).
    pub fn wants_headers(&self) -> bool {
        self.remote.as_ref().is_some_and(|r| r.wants_headers)
    }

    /// Whether the peer announced segwit support (`NODE_WITNESS`).
    pub fn is_witness_enabled(&self) -> bool {
        self.services().has(ServiceFlags::WITNESS)
    }

    /// Current ban score.
    pub fn ban_score(&self, now: Time) -> u32 {
        self.ban.value(now)
    }

    /// Whether the peer is already known to have this inventory.
    pub fn knows_inventory(&self, inv: &Inventory) -> bool {
        self.inventory.as_ref().is_some_and(|s| s.is_known(inv))
    }

    /// A snapshot of the connection's statistics.
    pub fn stats(&self, now: Time) -> StatsSnapshot {
        let r = self.remote.as_deref();
        let mut ping = self.ping_stats;
        ping.wait_micros = match self.ping {
            Ping::Waiting { since, .. } => Some(now.since(since).as_micros() as u64),
            _ => None,
        };
        StatsSnapshot {
            id: self.id,
            addr: self.addrs.remote,
            local_addr: self.addrs.local,
            addr_local_reported: r
                .and_then(|r| r.version.receiver.socket_addr().ok())
                .filter(|a| !a.ip().is_unspecified() && a.port() != 0),
            direction: self.direction,
            services: self.services(),
            user_agent: r.map(|r| r.version.user_agent.clone()).unwrap_or_default(),
            their_version: r.map_or(0, |r| r.version.version),
            version: r.map_or(0, |r| r.negotiated),
            relay: r.is_some_and(|r| r.version.relay),
            starting_height: r.map_or(0, |r| r.version.start_height),
            last_block: self.last_block.max(r.map_or(0, |r| r.version.start_height)),
            conn_time: self.conn_time,
            handshake_completed: self.ready_at,
            time_offset: r.map_or(0, |r| r.time_offset),
            last_send: self.last_send,
            last_recv: self.last_recv,
            bytes_sent: self.bytes_sent,
            bytes_recv: self.bytes_recv,
            msgs_sent: self.msgs_sent,
            msgs_recv: self.msgs_recv,
            bytes_sent_per_msg: self.sent_per_kind.to_sorted(),
            bytes_recv_per_msg: self.recv_per_kind.to_sorted(),
            ping,
            handshake: self.state.clone(),
            wants_headers: r.is_some_and(|r| r.wants_headers),
            fee_filter: r.and_then(|r| r.fee_filter),
            wtxid_relay: r.is_some_and(|r| r.wtxid_relay),
            addrv2: r.is_some_and(|r| r.addrv2),
            ban_score: self.ban.value(now),
        }
    }

    // ----- outputs -------------------------------------------------------------------------

    /// The next instruction for the runtime, if any.
    pub fn poll_output(&mut self) -> Option<PeerOutput> {
        self.outputs.pop_front().map(|q| match q {
            Queued::Output(o) => o,
            Queued::BlockInv(inv) => PeerOutput::Send {
                message: NetworkMessage::Inv(vec![inv]),
                token: None,
            },
        })
    }

    /// Releases the memory of queues that are empty. A runtime calls it once the connection
    /// has been idle for a while (not at every pause: a busy connection would grow its queues
    /// again from empty in every burst), so that tens of thousands of idle connections hold no
    /// spare capacity.
    pub fn shrink_idle(&mut self) {
        if self.outputs.is_empty() && self.outputs.capacity() > 0 {
            self.outputs = VecDeque::new();
        }
        if self.held.is_empty() && self.held.capacity() > 0 {
            self.held = VecDeque::new();
        }
    }

    /// The earliest time at which [`handle_timeout`](Self::handle_timeout) has work to do.
    pub fn poll_timeout(&self) -> Option<Time> {
        let c = &self.config;
        let deadline = match self.state {
            HandshakeState::Disconnected { .. } => return None,
            HandshakeState::AwaitingVersion { .. } | HandshakeState::AwaitingVerack { .. } => {
                self.conn_time + c.handshake_timeout
            }
            HandshakeState::Ready { since } => {
                let ping = match self.ping {
                    Ping::NotStarted => None,
                    Ping::Idle { next } => Some(next),
                    Ping::Waiting { since, .. } => Some(since + c.timeout_interval),
                };
                let quiet = self.last_recv.unwrap_or(since).max(since) + c.timeout_interval;
                ping.map_or(quiet, |p| p.min(quiet))
            }
        };
        Some(self.next_trickle.map_or(deadline, |t| t.min(deadline)))
    }

    // ----- inputs --------------------------------------------------------------------------

    /// Acts on every timer that has expired by `now`.
    pub fn handle_timeout(&mut self, now: Time) {
        let c = Arc::clone(&self.config);
        match self.state {
            HandshakeState::Disconnected { .. } => return,
            HandshakeState::AwaitingVersion { .. } | HandshakeState::AwaitingVerack { .. } => {
                if now >= self.conn_time + c.handshake_timeout {
                    debug!(peer = %self.id, "version handshake timeout");
                    self.disconnect(now, DisconnectReason::HandshakeTimeout);
                    return;
                }
            }
            HandshakeState::Ready { since } => {
                let quiet_since = self.last_recv.unwrap_or(since).max(since);
                match self.ping {
                    Ping::Waiting { since, .. } if now >= since + c.timeout_interval => {
                        debug!(peer = %self.id, "ping timeout");
                        self.disconnect(now, DisconnectReason::PingTimeout);
                        return;
                    }
                    Ping::Idle { next } if now >= next => self.send_ping(now),
                    _ => {}
                }
                if now >= quiet_since + c.timeout_interval {
                    debug!(peer = %self.id, "receive inactivity timeout");
                    self.disconnect(now, DisconnectReason::Inactivity);
                    return;
                }
            }
        }
        if self.next_trickle.is_some_and(|t| now >= t) {
            self.trickle();
        }
    }

    /// A complete, checksummed frame arrived.
    ///
    /// `wire_len` is its size on the wire (header included). `decode` asks for the payload to
    /// be decoded even when this machine does not need it (because a listener wants the
    /// message); decoded messages come back in [`PeerEvent::MessageReceived`].
    pub fn handle_frame(
        &mut self,
        now: Time,
        command: Command,
        payload: &[u8],
        wire_len: usize,
        decode: bool,
    ) {
        let kind = MessageKind::from_command(command.as_str());
        self.handle_frame_of_kind(now, kind, command, payload, wire_len, decode);
    }

    /// [`handle_frame`](Self::handle_frame) for a caller that has already classified the
    /// command (`kind` must be `MessageKind::from_command(command.as_str())`).
    pub fn handle_frame_of_kind(
        &mut self,
        now: Time,
        kind: MessageKind,
        command: Command,
        payload: &[u8],
        wire_len: usize,
        decode: bool,
    ) {
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

    // ----- commands ------------------------------------------------------------------------

    /// Queues a message for the peer. With `notify`, the returned token comes back in
    /// [`PeerOutput::Send`] so the runtime can report when the bytes are written.
    ///
    /// Before the handshake completes the message is held back and sent right after it.
    pub fn queue_message(
        &mut self,
        msg: NetworkMessage,
        notify: bool,
    ) -> Result<Option<SendToken>, QueueError> {
        if self.is_disconnected() {
            return Err(QueueError::Disconnected);
        }
        let token = notify.then(|| {
            self.next_token += 1;
            SendToken(self.next_token)
        });
        if self.is_ready() {
            self.push_send(msg, token);
        } else if self.held.len() >= MAX_PENDING_BEFORE_HANDSHAKE {
            return Err(QueueError::HandshakePending);
        } else {
            self.held.push_back((msg, token));
        }
        Ok(token)
    }

    /// Queues an inventory entry for announcement: blocks go out at once, transactions with
    /// the next trickle. Entries the peer is known to have are skipped.
    pub fn queue_inventory(&mut self, now: Time, inv: Inventory) {
        if self.is_disconnected() {
            return;
        }
        let ready = self.is_ready();
        if !self.inventory_state().mark_known(&inv) {
            return;
        }
        if is_block(&inv) && ready {
            self.outputs.push_back(Queued::BlockInv(inv));
            return;
        }
        let id = self.id;
        let state = self.inventory_state();
        if state.pending.len() >= MAX_PENDING {
            debug!(peer = %id, "inventory queue full; entry dropped");
            return;
        }
        state.pending.push(inv);
        if self.next_trickle.is_none() {
            self.next_trickle = Some(now + self.trickle_delay());
        }
    }

    /// Records that the peer has this inventory, so it is never announced to it.
    pub fn add_known_inventory(&mut self, inv: &Inventory) {
        let state = self.inventory_state();
        state.peer_has([inv]);
    }

    /// Sends up to [`MAX_ADDR_TO_SEND`] addresses, a random subset when given more; `addrv2`
    /// to peers that asked for it (BIP155), else `addr` with the IPv4/IPv6 entries only.
    /// Returns what was sent.
    pub fn push_addr(&mut self, addrs: &[AddrV2Message]) -> Vec<AddrV2Message> {
        if addrs.is_empty() || self.is_disconnected() {
            return Vec::new();
        }
        let mut chosen: Vec<AddrV2Message> = addrs.to_vec();
        if chosen.len() > MAX_ADDR_TO_SEND {
            // Partial Fisher-Yates: a uniform random subset in the first MAX_ADDR_TO_SEND slots.
            for i in 0..MAX_ADDR_TO_SEND {
                let j = self.rng.usize(i..chosen.len());
                chosen.swap(i, j);
            }
            chosen.truncate(MAX_ADDR_TO_SEND);
        }
        if self.remote.as_ref().is_some_and(|r| r.addrv2) {
            let _ = self.queue_message(NetworkMessage::AddrV2(chosen.clone()), false);
            return chosen;
        }
        chosen.retain(|a| matches!(a.addr, AddrV2::Ipv4(_) | AddrV2::Ipv6(_)));
        if chosen.is_empty() {
            return chosen;
        }
        let legacy = chosen
            .iter()
            .filter_map(|a| {
                a.socket_addr()
                    .ok()
                    .map(|sa| (a.time, Address::new(&sa, a.services)))
            })
            .collect();
        let _ = self.queue_message(NetworkMessage::Addr(legacy), false);
        chosen
    }

    /// Sends `getblocks`, unless it repeats the previous request exactly. Returns whether it
    /// was queued.
    pub fn push_getblocks(&mut self, locator: Vec<BlockHash>, stop: BlockHash) -> bool {
        let request = (locator, stop);
        if self.last_getblocks.as_deref() == Some(&request) {
            debug!(peer = %self.id, "duplicate getblocks ignored");
            return false;
        }
        let msg = GetBlocksMessage {
            version: self.our_version(),
            locator_hashes: request.0.clone(),
            stop_hash: request.1,
        };
        let queued = self
            .queue_message(NetworkMessage::GetBlocks(msg), false)
            .is_ok();
        self.last_getblocks = Some(Box::new(request));
        queued
    }

    /// Sends `getheaders`, unless it repeats the previous request exactly. Returns whether it
    /// was queued.
    pub fn push_getheaders(&mut self, locator: Vec<BlockHash>, stop: BlockHash) -> bool {
        let request = (locator, stop);
        if self.last_getheaders.as_deref() == Some(&request) {
            debug!(peer = %self.id, "duplicate getheaders ignored");
            return false;
        }
        let msg = GetHeadersMessage {
            version: self.our_version(),
            locator_hashes: request.0.clone(),
            stop_hash: request.1,
        };
        let queued = self
            .queue_message(NetworkMessage::GetHeaders(msg), false)
            .is_ok();
        self.last_getheaders = Some(Box::new(request));
        queued
    }

    /// Sends a BIP61 `reject` (to peers that understand it). The hash is meaningful only for
    /// `tx` and `block`. With `notify`, returns a token resolved once it is written.
    pub fn push_reject(
        &mut self,
        command: &str,
        code: RejectReason,
        reason: &str,
        hash: Option<sha256d::Hash>,
        notify: bool,
    ) -> Option<SendToken> {
        if self.negotiated_version().unwrap_or(0) < REJECT_VERSION {
            debug!(peer = %self.id, "peer predates BIP61; reject not sent");
            return None;
        }
        let msg = Reject {
            message: command.to_owned().into(),
            ccode: code,
            reason: reason.to_owned().into(),
            hash: hash.unwrap_or_else(sha256d::Hash::all_zeros),
        };
        self.queue_message(NetworkMessage::Reject(msg), notify)
            .ok()
            .flatten()
    }

    /// Pings the peer now, as Bitcoin Core's `ping` RPC asks of every peer, so that its round
    /// trip shows in the statistics soon. Nothing happens before the handshake completes or
    /// while a ping is already awaiting its pong (that one's round trip is measured instead).
    /// Returns whether a ping was sent. The regular schedule restarts from this ping.
    pub fn ping_now(&mut self, now: Time) -> bool {
        if !matches!(self.ping, Ping::Idle { .. }) {
            return false;
        }
        self.send_ping(now);
        true
    }

    /// Records the peer's latest known block height (for statistics).
    pub fn update_last_block(&mut self, height: i32) {
        self.last_block = self.last_block.max(height);
    }

    /// Ends the connection. Queued messages that were not handed out are dropped; nothing is
    /// sent after this. Does nothing if already disconnected.
    pub fn disconnect(&mut self, now: Time, reason: DisconnectReason) {
        if self.is_disconnected() {
            return;
        }
        self.outputs
            .retain(|o| matches!(o, Queued::Output(PeerOutput::Event(_))));
        self.held.clear();
        self.next_trickle = None;
        self.emit(PeerOutput::Disconnect(reason.clone()));
        self.state = HandshakeState::Disconnected { since: now, reason };
    }

    // ----- transitions ---------------------------------------------------------------------

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
                | MessageKind::SendCmpct,
            ) => true,
            (HandshakeState::AwaitingVerack { .. }, _) => {
                debug!(peer = %self.id, "{kind} before verack ignored");
                false
            }
            (HandshakeState::Ready { .. }, MessageKind::Version | MessageKind::Verack) => {
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
        while let Some((msg, token)) = self.held.pop_front() {
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

    fn misbehaving(&mut self, now: Time, what: Misbehaviour) {
        let score = self.ban.increase(now, 0, what.score());
        self.emit(PeerOutput::Event(PeerEvent::Misbehaved { what, score }));
        let over = self.config.ban_threshold.is_some_and(|t| score >= t);
        if what.disconnects() || over {
            debug!(peer = %self.id, score, "{what}: disconnecting");
            self.disconnect(now, DisconnectReason::Misbehaviour(what));
        }
    }

    fn deliver(&mut self, kind: MessageKind, message: Option<NetworkMessage>) {
        self.emit(PeerOutput::Event(PeerEvent::MessageReceived {
            kind,
            message,
        }));
    }

    fn send_version(&mut self, now: Time) {
        let c = &self.config;
        let receiver = Address::new(&self.addrs.remote, ServiceFlags::NONE);
        // Like Bitcoin Core, we do not reveal our own address in `version`.
        let sender = Address {
            services: c.services,
            address: [0; 8],
            port: 0,
        };
        let v = VersionMessage {
            version: c.chain.protocol_version,
            services: c.services,
            timestamp: now.as_secs() as i64,
            receiver,
            sender,
            nonce: self.nonce,
            user_agent: c.user_agent.as_str().to_owned(),
            start_height: self.start_height,
            relay: c.relay,
        };
        self.push_send(NetworkMessage::Version(v), None);
    }

    fn send_ping(&mut self, now: Time) {
        let nonce = self.rng.u64(1..);
        self.ping_stats.last_sent = Some(now);
        self.push_send(NetworkMessage::Ping(nonce), None);
        if self.negotiated_version().unwrap_or(0) > BIP0031_VERSION {
            self.ping = Ping::Waiting { nonce, since: now };
            self.ping_stats.last_nonce = Some(nonce);
        } else {
            // A peer from before BIP31 has no pong: waiting for one would drop it for a ping
            // timeout. Like Bitcoin Core, the ping only keeps the connection busy; silence is
            // still caught by the inactivity timeout.
            self.ping = Ping::Idle {
                next: now + self.config.ping_interval,
            };
        }
    }

    fn trickle(&mut self) {
        self.next_trickle = None;
        if !self.is_ready() {
            // Held until the handshake completes; `received_verack` re-arms the trickle.
            return;
        }
        let Some(state) = self.inventory.as_mut() else {
            return;
        };
        let pending = std::mem::take(&mut state.pending);
        for chunk in pending.chunks(MAX_INV_PER_MESSAGE) {
            self.push_send(NetworkMessage::Inv(chunk.to_vec()), None);
        }
    }

    fn trickle_delay(&mut self) -> Duration {
        let mean = match self.direction {
            Direction::Inbound => self.config.trickle_interval_inbound,
            Direction::Outbound => self.config.trickle_interval_outbound,
        };
        exponential(&mut self.rng, mean)
    }

    /// The inventory state, created on first use.
    fn inventory_state(&mut self) -> &mut InventoryState {
        let cap = self.config.known_inventory_capacity;
        let key = self.inventory_key;
        self.inventory
            .get_or_insert_with(|| Box::new(InventoryState::new(cap, key)))
    }

    fn push_send(&mut self, message: NetworkMessage, token: Option<SendToken>) {
        self.emit(PeerOutput::Send { message, token });
    }

    fn emit(&mut self, output: PeerOutput) {
        self.outputs.push_back(Queued::Output(output));
    }

    fn our_version(&self) -> u32 {
        self.negotiated_version()
            .unwrap_or(self.config.chain.protocol_version)
    }
}

/// An output as queued. A block announced alone is kept as its entry and becomes an `inv`
/// message only when polled: the message's `Vec` is then allocated by the thread that encodes
/// and frees it (the connection task's), not by whichever thread relays the block to many
/// peers, which keeps the allocator on its fast per-thread path.
#[derive(Debug)]
enum Queued {
    Output(PeerOutput),
    BlockInv(Inventory),
}

/// Mixed into the seed for the known-inventory key, so that key and `rng` differ.
const INVENTORY_KEY_TWEAK: u64 = 0x6b6e_6f77_6e5f_696e;

/// Bloom-filter related commands (BIP37/BIP111), refused unless we offer `NODE_BLOOM`.
fn is_bloom_kind(kind: MessageKind) -> bool {
    matches!(
        kind,
        MessageKind::FilterLoad
            | MessageKind::FilterAdd
            | MessageKind::FilterClear
            | MessageKind::MemPool
    )
}

/// Judges list messages by their entry count alone, before anything is decoded or allocated.
fn oversized(kind: MessageKind, payload: &[u8]) -> Option<Misbehaviour> {
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

/// A peer's user agent as stats, logs and RPC show it: only the characters Bitcoin Core keeps
/// (`SanitizeString` with `SAFE_CHARS_DEFAULT`: letters, digits and ` .,;-_/:?@()`), so that a
/// peer cannot put line breaks or terminal escapes into an operator's output.
pub fn sanitize_user_agent(raw: &str) -> String {
    raw.chars()
        .filter(|c| c.is_ascii_alphanumeric() || " .,;-_/:?@()".contains(*c))
        .collect()
}

#[cfg(test)]
mod tests;
