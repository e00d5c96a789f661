//! Per-connection statistics and their snapshot.

use std::net::SocketAddr;
use std::time::Duration;

use bitcoin::p2p::ServiceFlags;
use peerpool_wire::MessageKind;

use super::{Direction, HandshakeState, PeerId};
use crate::time::Time;

/// Bytes per message kind, kept as a short list: a peer exchanges only a handful of kinds, and
/// a table of every kind would cost every idle connection hundreds of bytes. Each entry is one
/// `u64`: the kind in the top byte, the bytes in the other 56 bits (64 PiB, more than any
/// connection carries).
#[derive(Clone, Debug, Default)]
pub(crate) struct PerKind(Vec<u64>);

/// Bits of an entry that count bytes.
const BYTES_BITS: u32 = 56;
const BYTES_MASK: u64 = (1 << BYTES_BITS) - 1;

impl PerKind {
    pub(crate) fn add(&mut self, kind: MessageKind, bytes: u64) {
        let tag = (kind as u64) << BYTES_BITS;
        match self.0.iter_mut().find(|e| **e & !BYTES_MASK == tag) {
            Some(e) => *e = tag | ((*e & BYTES_MASK).saturating_add(bytes).min(BYTES_MASK)),
            None => self.0.push(tag | bytes.min(BYTES_MASK)),
        }
    }

    pub(crate) fn to_sorted(&self) -> Vec<(MessageKind, u64)> {
        let mut v: Vec<(MessageKind, u64)> = self
            .0
            .iter()
            .filter_map(|e| {
                let kind = MessageKind::ALL.get((e >> BYTES_BITS) as usize)?;
                Some((*kind, e & BYTES_MASK))
            })
            .collect();
        v.sort_by_key(|(k, _)| k.as_str());
        v
    }

    /// Gives back spare capacity.
    pub(crate) fn shrink(&mut self) {
        self.0.shrink_to_fit();
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
    /// The BIP434 feature identifiers the peer offered before its `verack`, in the order
    /// received (non-printable bytes as `\xNN`).
    pub features: Vec<String>,
    /// The peer's current ban score.
    pub ban_score: u32,
    /// Transactions queued to be announced to the peer at its next trickle (Bitcoin Core's
    /// `inv_to_send`).
    pub inv_to_send: usize,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_keeps_its_own_count() {
        let mut p = PerKind::default();
        for (i, kind) in MessageKind::ALL.iter().enumerate() {
            p.add(*kind, i as u64 + 1);
            p.add(*kind, 1_000);
        }
        let got = p.to_sorted();
        assert_eq!(got.len(), MessageKind::ALL.len());
        for (i, kind) in MessageKind::ALL.iter().enumerate() {
            assert!(got.contains(&(*kind, i as u64 + 1_001)), "{kind}");
        }
    }

    #[test]
    fn counts_saturate_instead_of_spilling_into_the_kind() {
        let mut p = PerKind::default();
        p.add(MessageKind::Tx, BYTES_MASK - 1);
        p.add(MessageKind::Tx, 10);
        p.add(MessageKind::Block, 5);
        assert_eq!(
            p.to_sorted(),
            [(MessageKind::Block, 5), (MessageKind::Tx, BYTES_MASK)]
        );
    }
}
