//! The peer machine: one connection speaking the Bitcoin P2P protocol.
//!
//! [`PeerMachine`] owns everything about one connection that is a decision rather than I/O:
//!
//! - **handshake**: `version` out (at once when outbound, after theirs when inbound), `verack`
//!   after their `version`; the negotiated version is min(ours, theirs); a peer below the
//!   chain's minimum is disconnected; the handshake must finish within the timeout;
//! - **feature negotiation**: `wtxidrelay` (BIP339) and `sendaddrv2` (BIP155) between version
//!   and verack, `sendheaders` (BIP130) and `feefilter` (BIP133) after it; recorded per peer;
//!   BIP434 `feature` messages between version and verack are checked and their identifiers
//!   noted (peerpool negotiates no feature that way), after verack ignored;
//! - **keepalive**: a ping with a random nonce every interval, the pong matched by nonce, and a
//!   peer that leaves a ping unanswered or stays silent for the timeout is dropped;
//! - **inventory**: transactions queued for announcement are trickled at random intervals in
//!   batches; nothing the peer is known to have is announced;
//! - **misbehaviour**: reported as data ([`crate::Misbehaviour`]), scored by one table;
//! - **statistics**: bytes and messages per type, ping times, clock offset.
//!
//! Before the handshake completes nothing but `version`, `verack` and the two pre-verack
//! feature messages leaves this machine; messages queued earlier wait for it.

mod config;
mod inventory;
mod machine;
mod nonce;
mod stats;

use std::fmt;
use std::net::SocketAddr;

pub use crate::gossip::MAX_ADDR_TO_SEND;
pub use config::*;
pub use machine::{sanitize_user_agent, PeerMachine, QueueError};
pub use nonce::Nonces;
pub use stats::{PingStats, StatsSnapshot};

use bitcoin::p2p::message::NetworkMessage;
use bitcoin::p2p::message_network::VersionMessage;
use peerpool_wire::frame::FrameError;
use peerpool_wire::MessageKind;

use crate::misbehaviour::Misbehaviour;

/// Identity of a peer within a process: a counter, never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerId(pub u64);

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Who opened the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// They connected to us.
    Inbound,
    /// We connected to them.
    Outbound,
}

impl Direction {
    /// `true` for [`Direction::Inbound`].
    pub fn is_inbound(self) -> bool {
        self == Direction::Inbound
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        })
    }
}

/// Ticket for a queued message whose delivery the caller wants to hear about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SendToken(pub u64);

/// What the runtime must do next for this peer.
#[derive(Debug)]
pub enum PeerOutput {
    /// Write this message. `token` is set when the caller asked to be told once it is written.
    Send {
        /// The message.
        message: NetworkMessage,
        /// Completion ticket, if any.
        token: Option<SendToken>,
    },
    /// Something happened that the owner of the peer may care about.
    Event(PeerEvent),
    /// Close the connection. Nothing is sent after this.
    Disconnect(DisconnectReason),
}

/// What the owner of a peer (a pool) asks of its machine; carried out by
/// [`PeerMachine::handle_command`]. The commands a library user issues directly
/// (`queue_message`, `push_addr`, ...) remain methods of their own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerCommand {
    /// Send a message; before the handshake completes it waits for it.
    Send(NetworkMessage),
    /// Announce addresses: `addrv2` to a peer that asked for it (BIP155), else `addr` with
    /// the IPv4 and IPv6 entries; at most [`MAX_ADDR_TO_SEND`], a random subset of more.
    SendAddrs(Vec<crate::gossip::Announced>),
    /// End the connection.
    Disconnect(DisconnectReason),
}

/// Things that happened on a connection.
#[derive(Clone, Debug, PartialEq)]
pub enum PeerEvent {
    /// Our `version` is about to go out with this nonce (an outbound machine emits it first
    /// thing, an inbound one after the peer's `version`). An owner that detects connections
    /// to itself records the nonces of its outbound peers from it.
    VersionSent {
        /// Our version nonce.
        nonce: u64,
    },
    /// The peer's `version` arrived. Inbound owners check `nonce` against the nonces of their
    /// own outbound connections and disconnect with [`DisconnectReason::SelfConnection`] on a
    /// match; see [`Nonces`].
    VersionReceived {
        /// The peer's version nonce.
        nonce: u64,
    },
    /// The handshake completed: both versions and both veracks exchanged.
    HandshakeCompleted {
        /// The peer's version message.
        version: Box<VersionMessage>,
        /// min(ours, theirs).
        negotiated_version: u32,
    },
    /// A message was accepted (after the handshake, or a handshake message) and the owner
    /// asked for it (`decode` in [`PeerMachine::handle_frame`]); `message` is its decoded form
    /// (`None` only for a pong shorter than its nonce). Messages nobody asked for produce no
    /// event, so unwatched traffic costs no queueing.
    MessageReceived {
        /// The message's kind.
        kind: MessageKind,
        /// The decoded message, if decoded.
        message: Option<NetworkMessage>,
    },
    /// A ping we sent was answered.
    PingCompleted {
        /// Round trip time in microseconds.
        rtt_micros: u64,
    },
    /// The peer misbehaved; `score` is its ban score afterwards.
    Misbehaved {
        /// What it did.
        what: Misbehaviour,
        /// Ban score after this increment.
        score: u32,
    },
}

/// Why a connection ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DisconnectReason {
    /// We asked for it (`disconnect()`).
    Requested,
    /// The process is shutting down.
    Shutdown,
    /// The remote closed the connection.
    RemoteClosed,
    /// A socket error.
    Io(String),
    /// No complete handshake within the handshake timeout.
    HandshakeTimeout,
    /// A ping stayed unanswered for the timeout interval.
    PingTimeout,
    /// Nothing was received (or could be sent) for the timeout interval.
    Inactivity,
    /// The peer's protocol version is below our minimum.
    ProtocolVersionTooLow {
        /// Their version.
        theirs: u32,
        /// Our minimum.
        minimum: u32,
    },
    /// The peer's version nonce is one of ours: we connected to ourselves.
    SelfConnection,
    /// A frame that leaves the stream out of sync (wrong magic, oversized length).
    BadFrame(FrameError),
    /// The peer broke a protocol rule, or its ban score crossed the threshold.
    Misbehaviour(Misbehaviour),
    /// Evicted to make room for a new inbound peer.
    Evicted,
    /// The address is banned.
    Banned,
    /// The peer does not read what we send and our send queue for it is full.
    SendQueueFull {
        /// Bytes waiting to be written.
        queued: usize,
    },
    /// The session's cost (bandwidth and misbehaviour, decayed over time) reached the hard
    /// limit; see [`crate::cost`].
    ExcessiveCost {
        /// The cost, in units.
        cost: u64,
        /// The hard limit.
        limit: u64,
    },
}

impl DisconnectReason {
    /// Whether the cause may well go away by itself, so that redialing (with backoff) makes
    /// sense: network failures and timeouts, not protocol violations or policy.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            DisconnectReason::RemoteClosed
                | DisconnectReason::Io(_)
                | DisconnectReason::HandshakeTimeout
                | DisconnectReason::PingTimeout
                | DisconnectReason::Inactivity
                | DisconnectReason::SendQueueFull { .. }
        )
    }

    /// Whether the peer did something wrong.
    pub fn is_misbehaviour(&self) -> bool {
        matches!(
            self,
            DisconnectReason::Misbehaviour(_)
                | DisconnectReason::BadFrame(_)
                | DisconnectReason::ProtocolVersionTooLow { .. }
        )
    }
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DisconnectReason::Requested => f.write_str("disconnect requested"),
            DisconnectReason::Shutdown => f.write_str("shutting down"),
            DisconnectReason::RemoteClosed => f.write_str("connection closed by peer"),
            DisconnectReason::Io(e) => write!(f, "socket error: {e}"),
            DisconnectReason::HandshakeTimeout => f.write_str("version handshake timeout"),
            DisconnectReason::PingTimeout => f.write_str("ping timeout"),
            DisconnectReason::Inactivity => f.write_str("inactivity timeout"),
            DisconnectReason::ProtocolVersionTooLow { theirs, minimum } => {
                write!(f, "protocol version {theirs} below minimum {minimum}")
            }
            DisconnectReason::SelfConnection => f.write_str("connected to self"),
            DisconnectReason::BadFrame(e) => write!(f, "bad frame: {e}"),
            DisconnectReason::Misbehaviour(m) => write!(f, "misbehaviour: {m}"),
            DisconnectReason::Evicted => f.write_str("evicted for a new inbound peer"),
            DisconnectReason::Banned => f.write_str("address banned"),
            DisconnectReason::SendQueueFull { queued } => {
                write!(f, "peer not reading: {queued} bytes queued")
            }
            DisconnectReason::ExcessiveCost { cost, limit } => {
                write!(f, "excessive cost: {cost} units, limit {limit}")
            }
        }
    }
}

/// Where a peer stands in the handshake; each state records when it was entered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HandshakeState {
    /// Connected; no version received yet.
    AwaitingVersion {
        /// Connection time.
        since: crate::Time,
    },
    /// Their version is in; waiting for their verack.
    AwaitingVerack {
        /// When their version arrived.
        since: crate::Time,
    },
    /// Both sides have exchanged version and verack.
    Ready {
        /// When the handshake completed.
        since: crate::Time,
    },
    /// The connection is over.
    Disconnected {
        /// When it ended.
        since: crate::Time,
        /// Why.
        reason: DisconnectReason,
    },
}

/// Addresses of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionAddrs {
    /// The peer's address.
    pub remote: SocketAddr,
    /// Our end, when known.
    pub local: Option<SocketAddr>,
}
