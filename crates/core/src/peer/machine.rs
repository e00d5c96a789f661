//! The peer machine; see the [module docs](super).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bitcoin::p2p::address::Address;
use bitcoin::p2p::message::NetworkMessage;
use bitcoin::p2p::message_blockdata::Inventory;
use bitcoin::p2p::message_network::VersionMessage;
use bitcoin::p2p::ServiceFlags;
use bitcoin::BlockHash;
use peerpool_wire::MessageKind;
use tracing::debug;

use super::config::{PeerConfig, MAX_INV_PER_MESSAGE, MAX_PENDING_BEFORE_HANDSHAKE};
use super::inventory::{is_block, InventoryState};
use super::stats::{PerKind, PingStats, StatsSnapshot};
use super::{
    ConnectionAddrs, Direction, DisconnectReason, HandshakeState, PeerEvent, PeerId, PeerOutput,
    SendToken,
};
use crate::ban::BanScore;
use crate::misbehaviour::Misbehaviour;
use crate::seed::{self, Stream};
use crate::time::{exponential, Time};

mod commands;
mod receive;

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
    /// BIP434 features the peer offered, as display text, at most [`MAX_FEATURES_KEPT`].
    features: Vec<Box<str>>,
}

/// How many BIP434 feature identifiers are kept per peer; further ones are ignored.
pub const MAX_FEATURES_KEPT: usize = 16;

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
    ping_stats: PingRecord,
    inventory: Option<Box<InventoryState>>,
    /// Secret key of the known-inventory digests, drawn from the seed apart from `rng` so
    /// that creating the filter does not shift the machine's other random draws.
    inventory_seed: u64,
    next_trickle: Option<Time>,
    /// Messages queued before the handshake completed.
    held: Held,
    outputs: VecDeque<Queued>,
    next_token: u64,
    ban: BanScore,
    last_block: i32,
    /// The last `getblocks` and `getheaders` sent, once either was.
    last_requests: Option<Box<LastRequests>>,
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
            ping_stats: PingRecord::default(),
            inventory: None,
            inventory_seed: seed,
            next_trickle: None,
            held: Held::default(),
            outputs: VecDeque::new(),
            next_token: 0,
            ban: BanScore::default(),
            last_block: 0,
            last_requests: None,
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
        let record = self.ping_stats;
        let ping = PingStats {
            last_nonce: record.last_nonce,
            last_sent: record.last_sent,
            last_rtt_micros: record.last_rtt_micros,
            min_rtt_micros: record.min_rtt_micros,
            wait_micros: match self.ping {
                Ping::Waiting { since, .. } => Some(now.since(since).as_micros() as u64),
                _ => None,
            },
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
            features: r.map_or_else(Vec::new, |r| {
                r.features.iter().map(|f| f.to_string()).collect()
            }),
            ban_score: self.ban.value(now),
            inv_to_send: self
                .inventory
                .as_ref()
                .map_or(0, |s| s.pending.iter().filter(|i| !is_block(i)).count()),
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
        self.held.shrink();
        self.sent_per_kind.shrink();
        self.recv_per_kind.shrink();
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
        // Announced before the bytes leave, so an owner that checks inbound versions against
        // its own nonces knows this one before any peer can echo it back.
        self.emit(PeerOutput::Event(PeerEvent::VersionSent {
            nonce: self.nonce,
        }));
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
        // Drawn from the machine's seed apart from `rng`, so that creating the filter does
        // not shift the machine's other random draws.
        let mut key_rng = seed::rng(self.inventory_seed, Stream::InventoryKey);
        let key = [key_rng.u64(..), key_rng.u64(..)];
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

/// Ping figures kept between snapshots (the wait of an outstanding ping is computed when a
/// snapshot is taken).
#[derive(Clone, Copy, Debug, Default)]
struct PingRecord {
    last_nonce: Option<u64>,
    last_sent: Option<Time>,
    last_rtt_micros: Option<u64>,
    min_rtt_micros: Option<u64>,
}

/// Messages queued before the handshake completed, sent right after it; nothing allocated on
/// a connection that queues none.
// Boxed on purpose: the field costs every connection 8 bytes instead of an empty queue's 32,
// and only a connection that queues before its handshake pays for the second allocation.
#[allow(clippy::box_collection)]
#[derive(Debug, Default)]
struct Held(Option<Box<VecDeque<HeldMessage>>>);

/// A message held for the handshake, with its completion ticket.
type HeldMessage = (NetworkMessage, Option<SendToken>);

impl Held {
    fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |q| q.len())
    }

    fn push(&mut self, msg: NetworkMessage, token: Option<SendToken>) {
        self.0
            .get_or_insert_with(Box::default)
            .push_back((msg, token));
    }

    fn pop(&mut self) -> Option<HeldMessage> {
        self.0.as_mut()?.pop_front()
    }

    fn clear(&mut self) {
        self.0 = None;
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Gives the memory back once the queue is empty.
    fn shrink(&mut self) {
        if self.is_empty() {
            self.0 = None;
        }
    }
}

/// The last locator requests sent (see `push_getblocks`, `push_getheaders`).
#[derive(Debug, Default)]
struct LastRequests {
    blocks: Option<(Vec<BlockHash>, BlockHash)>,
    headers: Option<(Vec<BlockHash>, BlockHash)>,
}

/// Which locator request.
#[derive(Clone, Copy, Debug)]
enum Locator {
    Blocks,
    Headers,
}

impl Locator {
    fn command(self) -> &'static str {
        match self {
            Locator::Blocks => "getblocks",
            Locator::Headers => "getheaders",
        }
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
