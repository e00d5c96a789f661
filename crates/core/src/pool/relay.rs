//! Address relay: what the pool does with the addresses peers send, asks for and hear of us.
//!
//! - **intake**: addresses a peer sends go into the book with that peer as source, rate limited
//!   per peer as Bitcoin Core does (a token bucket that starts at one token,
//!   refills at [`ADDR_RATE_PER_SECOND`] up to [`ADDR_TOKEN_BUCKET`], with a bucketful extra
//!   after we ask with `getaddr`); when the tokens do not cover a message, which entries they
//!   cover is random, so the sender cannot choose by their order. Addresses of networks we do
//!   not reach, unusable or banned ones are dropped. Self-announcements go in as they are;
//!   hearsay is aged by [`ADDR_TIME_PENALTY`].
//! - **relay**: small fresh announcements (at most [`MAX_RELAYED_ANNOUNCEMENT`] entries, seen
//!   within [`RELAY_FRESHNESS`]) are passed on to [`RELAY_FANOUT`] other peers, each address
//!   at most once per [`RELAY_FRESHNESS`], so an announcement spreads once
//!   through the network instead of bouncing between nodes until it goes stale (Bitcoin Core
//!   gets the same effect from its per-peer known-address filters). The answer to our own
//!   `getaddr` is never relayed.
//! - **getaddr**: answered once per inbound peer with a random sample of the book (at most
//!   [`MAX_ADDR_TO_SEND`] entries, [`MAX_PCT_ADDR_TO_SEND`] %), banned addresses left out; an
//!   outbound peer asking could be fingerprinting us and gets nothing.
//! - **self-advertisement**: our listening addresses ([`Config::advertise`]) are announced to
//!   each peer after its handshake and then again on a per-peer timer with exponentially
//!   distributed gaps of mean [`Config::local_addr_interval`] (Core's AdvertiseLocal and
//!   `AVG_LOCAL_ADDRESS_BROADCAST_INTERVAL`).
//!
//! [`Config::advertise`]: super::machine::Config::advertise
//! [`Config::local_addr_interval`]: super::machine::Config::local_addr_interval

use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;

use bitcoin::p2p::ServiceFlags;

use super::machine::{PoolMachine, Timer};
use crate::addr::NetAddr;
use crate::gossip::{Announced, MAX_ADDR_TO_SEND};
use crate::peer::{Direction, PeerCommand, PeerId};
use crate::pool::addrman::AddrRecord;
use crate::pool::connman::ConnKind;
use crate::pool::machine::Permission;
use crate::time::{exponential, Time};

/// Share of the book answered to one `getaddr`, percent. Bitcoin Core: `MAX_PCT_ADDR_TO_SEND`.
pub const MAX_PCT_ADDR_TO_SEND: usize = 23;
/// Address tokens refilled per second. Bitcoin Core: `MAX_ADDR_RATE_PER_SECOND`.
pub const ADDR_RATE_PER_SECOND: f64 = 0.1;
/// Address tokens a peer can save up. Bitcoin Core: `MAX_ADDR_PROCESSING_TOKEN_BUCKET`.
pub const ADDR_TOKEN_BUCKET: f64 = 1_000.0;
/// Address tokens a peer starts with: one, for its self-announcement. Bitcoin Core starts
/// `m_addr_token_bucket` at 1 for the same reason; a new connection cannot flood the book.
pub const ADDR_TOKEN_START: f64 = 1.0;
/// Announcements larger than this are not relayed (they answer a getaddr). Bitcoin Core: 10.
pub const MAX_RELAYED_ANNOUNCEMENT: usize = 10;
/// Only addresses seen this recently are relayed. Bitcoin Core: 10 minutes.
pub const RELAY_FRESHNESS: Duration = Duration::from_secs(600);
/// Peers an announcement is relayed to. Bitcoin Core: 2 for reachable networks.
pub const RELAY_FANOUT: usize = 2;
/// Most addresses remembered as recently relayed; past it the oldest are forgotten (and could
/// be relayed once more). Bitcoin Core's per-peer known-address filter holds 5,000.
pub const MAX_RECENTLY_RELAYED: usize = 10_000;
/// Penalty on the last-seen time of addresses heard from a third party. Bitcoin Core: 2 hours.
pub const ADDR_TIME_PENALTY: Duration = Duration::from_secs(2 * 3600);
/// Mean gap between two announcements of our own address to one peer. Bitcoin Core:
/// `AVG_LOCAL_ADDRESS_BROADCAST_INTERVAL` (24 hours).
pub const LOCAL_ADDR_INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// One peer's side of address relay: its token bucket and where our `getaddr` exchange with
/// it stands.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AddrIntake {
    tokens: f64,
    tokens_at: Time,
    /// We answered its `getaddr` (once per connection).
    answered_getaddr: bool,
    /// Our `getaddr` is outstanding: the next large `addr` message is its answer.
    awaiting_answer: bool,
    /// Addresses taken from its messages past the rate limit (Bitcoin Core's
    /// `m_addr_processed`), and dropped by it (`m_addr_rate_limited`); saturating.
    pub(crate) processed: u32,
    pub(crate) rate_limited: u32,
}

impl AddrIntake {
    pub(crate) fn new(now: Time) -> AddrIntake {
        AddrIntake {
            tokens: ADDR_TOKEN_START,
            tokens_at: now,
            answered_getaddr: false,
            awaiting_answer: false,
            processed: 0,
            rate_limited: 0,
        }
    }

    /// Refills the bucket for the time passed since the last refill.
    fn refill(&mut self, now: Time) {
        let elapsed = now.since(self.tokens_at).as_secs_f64();
        self.tokens_at = now;
        // Tokens granted for our own getaddr may exceed the cap, as in Core.
        let cap = self.tokens.max(ADDR_TOKEN_BUCKET);
        self.tokens = (self.tokens + elapsed * ADDR_RATE_PER_SECOND).min(cap);
    }

    /// Takes one token; `false` when none is left.
    fn take(&mut self) -> bool {
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }
}

/// Addresses relayed within [`RELAY_FRESHNESS`], oldest first, and the same as a set.
#[derive(Clone, Debug, Default)]
pub(crate) struct Relayed {
    order: VecDeque<(Time, NetAddr)>,
    set: BTreeSet<NetAddr>,
}

impl Relayed {
    fn contains(&self, addr: &NetAddr) -> bool {
        self.set.contains(addr)
    }

    fn insert(&mut self, now: Time, addr: NetAddr) {
        if self.set.insert(addr) {
            self.order.push_back((now, addr));
        }
    }

    /// Forgets relays older than [`RELAY_FRESHNESS`] and the oldest beyond
    /// [`MAX_RECENTLY_RELAYED`].
    fn forget_old(&mut self, now: Time) {
        while let Some((at, addr)) = self.order.front().copied() {
            if at + RELAY_FRESHNESS > now && self.order.len() < MAX_RECENTLY_RELAYED {
                break;
            }
            self.order.pop_front();
            self.set.remove(&addr);
        }
    }
}

impl PoolMachine {
    /// Addresses received from `peer` in one message of `total` entries (of which `addrs`
    /// are the ones in a form we handle).
    pub(crate) fn received_addrs(
        &mut self,
        now: Time,
        peer: PeerId,
        addrs: &[Announced],
        total: usize,
    ) {
        let reachable = self.reachable();
        self.relayed.forget_old(now);
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if !p.ready {
            return;
        }
        let unlimited = p.permissions.contains(Permission::Addr);
        p.intake.refill(now);
        let answer = p.intake.awaiting_answer && total > MAX_RELAYED_ANNOUNCEMENT;
        if answer {
            p.intake.awaiting_answer = false;
        }
        let source = p.addr;
        let mut accepted: Vec<AddrRecord> = Vec::new();
        let mut relay: Vec<Announced> = Vec::new();
        let mut limited = 0;
        let mut order: Vec<&Announced> = addrs.iter().collect();
        if !unlimited && addrs.len() as f64 > p.intake.tokens {
            self.rng.shuffle(&mut order);
        }
        for a in order {
            if !unlimited && !p.intake.take() {
                limited += 1;
                continue;
            }
            p.intake.processed = p.intake.processed.saturating_add(1);
            let na = a.addr;
            // Bitcoin Core drops banned addresses and relays only routable ones: a banned
            // host stays out of the book, and nothing unusable is passed on.
            if !reachable.contains(&na.network())
                || !self.addrman.acceptable(&na)
                || self.banman.is_banned(&na, now)
            {
                continue;
            }
            accepted.push((na, a.services, a.seen));
            let fresh = a.seen + RELAY_FRESHNESS >= now && a.seen <= now + RELAY_FRESHNESS;
            if !answer && total <= MAX_RELAYED_ANNOUNCEMENT && fresh && !self.relayed.contains(&na)
            {
                relay.push(*a);
            }
        }
        if limited > 0 {
            p.intake.rate_limited = p.intake.rate_limited.saturating_add(limited);
            tracing::debug!(peer = %peer, limited, "addresses over the rate limit ignored");
        }
        // Self-announcements carry no penalty; hearsay is aged by two hours, as Core does.
        let (own, other): (Vec<AddrRecord>, Vec<AddrRecord>) = accepted
            .into_iter()
            .partition(|(a, _, _)| a.host == source.host);
        self.addrman.add(&own, source, Duration::ZERO, now);
        self.addrman.add(&other, source, ADDR_TIME_PENALTY, now);
        if relay.is_empty() {
            return;
        }
        for a in &relay {
            self.relayed.insert(now, a.addr);
        }
        let mut others: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(id, s)| **id != peer && s.ready && s.kind != ConnKind::Feeler)
            .map(|(id, _)| *id)
            .collect();
        let mut chosen = Vec::new();
        while chosen.len() < RELAY_FANOUT && !others.is_empty() {
            let i = self.rng.usize(..others.len());
            chosen.push(others.swap_remove(i));
        }
        for to in chosen {
            self.command(to, PeerCommand::SendAddrs(relay.clone()));
        }
    }

    /// A peer asked for addresses: answered once per inbound peer, as Bitcoin Core does (an
    /// outbound peer asking could be fingerprinting us).
    pub(crate) fn answer_getaddr(&mut self, now: Time, peer: PeerId) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if p.kind.direction() != Direction::Inbound || p.intake.answered_getaddr || !p.ready {
            return;
        }
        p.intake.answered_getaddr = true;
        let sample = self.addrman.get_addr(
            MAX_ADDR_TO_SEND,
            MAX_PCT_ADDR_TO_SEND,
            None,
            &mut self.rng,
            now,
        );
        // Addresses we banned are not handed out (Bitcoin Core filters its answer the same way).
        let banman = &self.banman;
        let addrs: Vec<Announced> = sample
            .into_iter()
            .filter(|(a, _, _)| !banman.is_banned(a, now))
            .map(|(addr, services, seen)| Announced {
                addr,
                services,
                seen,
            })
            .collect();
        if !addrs.is_empty() {
            self.command(peer, PeerCommand::SendAddrs(addrs));
        }
    }

    /// After an outbound handshake: ask for addresses, and grant the tokens for the answer.
    pub(crate) fn ask_for_addrs(&mut self, peer: PeerId) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.intake.awaiting_answer = true;
            p.intake.tokens += ADDR_TOKEN_BUCKET;
        }
        self.command(
            peer,
            PeerCommand::Send(bitcoin::p2p::message::NetworkMessage::GetAddr),
        );
    }

    /// Announces our addresses to `peer` and schedules the next announcement.
    pub(crate) fn advertise_to(&mut self, now: Time, peer: PeerId) {
        if self.config.advertise.is_empty() {
            return;
        }
        let addrs = self
            .config
            .advertise
            .iter()
            .map(|&addr| Announced {
                addr,
                services: ServiceFlags::NONE,
                seen: Time::from_secs(now.as_secs()),
            })
            .collect();
        self.command(peer, PeerCommand::SendAddrs(addrs));
        let gap = exponential(&mut self.rng, self.config.local_addr_interval);
        // At least a second apart, so that a zero interval cannot spin.
        let next = now + gap.max(Duration::from_secs(1));
        self.timers.set(Timer::LocalAddr(peer), next);
    }

    /// [`Timer::LocalAddr`]: re-announces our addresses to a peer that is still with us.
    pub(crate) fn local_addr_due(&mut self, now: Time, peer: PeerId) {
        if self.peers.get(&peer).is_some_and(|p| p.ready) {
            self.advertise_to(now, peer);
        }
    }
}
