//! Per-connection statistics and their snapshot.

use std::net::SocketAddr;
use std::time::Duration;

use bitcoin::p2p::ServiceFlags;
use peerpool_wire::MessageKind;

use super::{Direction, HandshakeState, PeerId};
use crate::time::Time;

/// Bytes per message kind, kept as a short list: a peer exchanges only a handful of kinds, and
/// a table of every kind would cost every idle connection hundreds of bytes.
#[derive(Clone, Debug, Default)]
pub(crate) struct PerKind(Vec<(MessageKind, u64)>);

impl PerKind {
    pub(crate) fn add(&mut self, kind: MessageKind, bytes: u64) {
        match self.0.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, b)) => *b += bytes,
            None => self.0.push((kind, bytes)),
        }
    }

    pub(crate) fn to_sorted(&self) -> Vec<(MessageKind, u64)> {
        let mut v = self.0.clone();
        v.sort_by_key(|(k, _)| k.as_str());
        v
    }
}

/// Ping measurements.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PingStats {
    /// Nonce of the last ping we sent.
    pub last_nonce: Option<u64>,
    /// When the last ping was sent.
    pub last_sent: Option<Time>,
    /// Round trip of the last answered ping, in microseconds.
    pub last_rtt_micros: Option<u64>,
    /// Smallest round trip seen, in microseconds.
    pub min_rtt_micros: Option<u64>,
    /// Time the outstanding ping has been waiting, in microseconds (Core's `pingwait`).
    pub wait_micros: Option<u64>,
}

/// A snapshot of one connection, taken at one moment.
#[derive(Clone, Debug)]
pub struct StatsSnapshot {
    /// The peer's id.
    pub id: PeerId,
    /// The peer's address.
    pub addr: SocketAddr,
    /// Our end of the connection.
    pub local_addr: Option<SocketAddr>,
    /// Our address as the peer sees it: the receiver address of its `version`, when it gave
    /// one (Bitcoin Core's `addrlocal`).
    pub addr_local_reported: Option<SocketAddr>,
    /// Inbound or outbound.
    pub direction: Direction,
    /// Services the peer announced.
    pub services: ServiceFlags,
    /// The peer's user agent.
    pub user_agent: String,
    /// The peer's announced protocol version.
    pub their_version: u32,
    /// The negotiated protocol version: min(ours, theirs); 0 before their version arrived.
    pub version: u32,
    /// The relay flag the peer announced.
    pub relay: bool,
    /// Height the peer announced in its version.
    pub starting_height: i32,
    /// Last block height known for the peer (updated by the owner).
    pub last_block: i32,
    /// When the connection was established.
    pub conn_time: Time,
    /// When the handshake completed; stays set after the connection ends.
    pub handshake_completed: Option<Time>,
    /// Peer clock minus ours, in seconds, from its version timestamp.
    pub time_offset: i64,
    /// Last time bytes were written.
    pub last_send: Option<Time>,
    /// Last time bytes were received.
    pub last_recv: Option<Time>,
    /// Total bytes sent, headers included.
    pub bytes_sent: u64,
    /// Total bytes received, headers included.
    pub bytes_recv: u64,
    /// Messages sent.
    pub msgs_sent: u64,
    /// Messages received.
    pub msgs_recv: u64,
    /// Bytes sent per message kind.
    pub bytes_sent_per_msg: Vec<(MessageKind, u64)>,
    /// Bytes received per message kind.
    pub bytes_recv_per_msg: Vec<(MessageKind, u64)>,
    /// Ping measurements.
    pub ping: PingStats,
    /// Handshake progress.
    pub handshake: HandshakeState,
    /// The peer asked for headers announcements (BIP130).
    pub wants_headers: bool,
    /// The peer's fee filter in sat/kvB (BIP133), if it sent one.
    pub fee_filter: Option<i64>,
    /// The peer announces transactions by wtxid (BIP339).
    pub wtxid_relay: bool,
    /// The peer takes addrv2 messages (BIP155).
    pub addrv2: bool,
    /// The peer's current ban score.
    pub ban_score: u32,
}

impl StatsSnapshot {
    /// Time connected as of `now`.
    pub fn connected_for(&self, now: Time) -> Duration {
        now.since(self.conn_time)
    }

    /// Whether the handshake is complete.
    pub fn is_ready(&self) -> bool {
        matches!(self.handshake, HandshakeState::Ready { .. })
    }
}
