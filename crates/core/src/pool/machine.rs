//! The pool machine: the connection manager, the address book and the ban list together.
//!
//! [`PoolMachine`] sees peers only through what their connections report (handshake done,
//! misbehaviour, addresses received, disconnection) and answers with instructions: dial this,
//! disconnect that, send these addresses, tell subscribers about this event. It adds to the
//! parts it composes:
//!
//! - **address relay**: addresses a peer sends go into the book with that peer as source, rate
//!   limited per peer as Bitcoin Core does (a bucket that starts at one token, refills at 0.1
//!   per second up to 1,000, with 1,000 extra after we ask with `getaddr`); addresses in a
//!   banned subnet are dropped; small fresh announcements (at most
//!   10 entries, seen within 10 minutes) are relayed on to two other peers, each address at
//!   most once per 10 minutes, so that an announcement spreads once through the network
//!   instead of bouncing between nodes until it goes stale (Bitcoin Core gets the same effect
//!   from its per-peer known-address filters);
//! - **getaddr**: asked of every outbound peer after its handshake; answered once per inbound
//!   peer with a random sample of the book (at most 1,000 entries, 23 %);
//! - **self-advertisement**: our listening addresses ([`Config::advertise`]) are announced to
//!   each peer after its handshake and then again on a per-peer timer with exponentially
//!   distributed gaps of mean [`Config::local_addr_interval`] (Core's AdvertiseLocal and
//!   `AVG_LOCAL_ADDRESS_BROADCAST_INTERVAL`), so a network can find a node from any one seed
//!   and keeps hearing about it after the first gossip has aged out;
//! - **asking for addresses**: we ask with `getaddr` once per outbound peer, right after its
//!   handshake, and never otherwise (as Core: asking again would let a peer fill our book on
//!   demand). When outbound slots are empty and no round of the connection manager has found
//!   a usable address for [`RESEED_DELAY`], the machine emits [`Output::Reseed`]: the runtime
//!   adds its configured seed addresses again and queries the DNS seeds (Core's 11 s DNS-seed
//!   rule, applied whenever the book runs dry, not only at start). It does so at most once
//!   per [`RESEED_INTERVAL`], to spare the seeds;
//! - **test-before-evict**: an address that would take an occupied slot of the book's tried
//!   table waits in the collision set while the feeler timer tests the occupant first (a
//!   feeler to it, before any new-table address); an occupant that answers keeps its slot,
//!   one that fails (or is not tested within the book's test window) gives way. The set is
//!   settled ([`AddrMan::resolve_collisions`]) on every pass of the connection-opening path
//!   and at least every [`COLLISION_CHECK_INTERVAL`] while it is not empty;
//! - **bans**: a banned address is neither dialed nor accepted; misbehaviour reported by a
//!   connection goes to the ban manager, whose verdict is carried out;
//! - **whitelist**: peers from whitelisted subnets get the permissions listed (`noban`: never
//!   banned, never evicted, exempt from the per-group inbound limit).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use bitcoin::p2p::address::AddrV2Message;
use bitcoin::p2p::ServiceFlags;

use crate::addr::{Host, NetAddr, Network};
use crate::misbehaviour::Misbehaviour;
use crate::peer::{Direction, DisconnectReason, PeerId};
use crate::pool::addrman::{self, AddrMan, AddrRecord};
use crate::pool::banman::{self, BanList, BanMan, BanReason, Subnet, Verdict};
use crate::pool::connman::{self, ConnKind, ConnMan, InboundVerdict, Pick, RefuseReason, ReqId};
use crate::time::{exponential, Time};

/// Addresses answered to one `getaddr`. Bitcoin Core: `MAX_ADDR_TO_SEND`.
pub const MAX_ADDR_TO_SEND: usize = 1_000;
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
/// How long outbound slots stay empty with nothing usable in the book before we ask the
/// runtime to seed again. Bitcoin Core: the 11 s `ThreadDNSAddressSeed` waits before it
/// queries the DNS seeds when the book is not empty.
pub const RESEED_DELAY: Duration = Duration::from_secs(11);
/// Least time between two reseeds. Core seeds once per start; peerpool repeats while the book
/// stays dry, at this pace so that a node cut off from the network does not hammer the seeds.
pub const RESEED_INTERVAL: Duration = Duration::from_secs(10 * 60);
/// While tried-table collisions wait, they are settled at least this often. Core settles them
/// every 500 ms loop; a minute matches the book's `FEELER_GRACE`, the finest step its verdicts
/// take.
pub const COLLISION_CHECK_INTERVAL: Duration = Duration::from_secs(60);

/// A permission granted by the whitelist (Bitcoin Core's `-whitelist` permission names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    /// Never banned, never evicted, exempt from per-group limits.
    NoBan,
    /// Transactions relayed even without relay.
    Relay,
    /// Allowed to request the mempool.
    Mempool,
    /// Allowed to download blocks when we limit uploads.
    Download,
    /// Addresses from it are not rate limited.
    Addr,
    /// Allowed to use bloom filters.
    BloomFilter,
    /// Relayed transactions even if rejected.
    ForceRelay,
}

impl Permission {
    /// Bitcoin Core's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::NoBan => "noban",
            Permission::Relay => "relay",
            Permission::Mempool => "mempool",
            Permission::Download => "download",
            Permission::Addr => "addr",
            Permission::BloomFilter => "bloomfilter",
            Permission::ForceRelay => "forcerelay",
        }
    }

    /// Parses one of Core's names.
    pub fn parse(s: &str) -> Option<Permission> {
        Some(match s {
            "noban" => Permission::NoBan,
            "relay" => Permission::Relay,
            "mempool" => Permission::Mempool,
            "download" => Permission::Download,
            "addr" => Permission::Addr,
            "bloomfilter" => Permission::BloomFilter,
            "forcerelay" => Permission::ForceRelay,
            _ => return None,
        })
    }

    /// What a whitelist entry without explicit permissions grants (Bitcoin Core's implicit set).
    pub const DEFAULT: &'static [Permission] = &[
        Permission::NoBan,
        Permission::Relay,
        Permission::Mempool,
        Permission::Download,
    ];
}

/// A whitelisted subnet and its permissions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WhitelistEntry {
    /// The subnet.
    pub subnet: Subnet,
    /// What its peers may do.
    pub permissions: Vec<Permission>,
}

/// Settings of the pool.
#[derive(Clone, Debug)]
pub struct Config {
    /// Connection slots.
    pub connman: connman::Config,
    /// The address book.
    pub addrman: addrman::Config,
    /// Ban scores and durations.
    pub banman: banman::Config,
    /// Our listening addresses, announced to peers.
    pub advertise: Vec<NetAddr>,
    /// Whitelisted subnets.
    pub whitelist: Vec<WhitelistEntry>,
    /// Networks we can reach (dial); empty means IPv4 and IPv6.
    pub reachable: Vec<Network>,
    /// Mean gap between two announcements of [`Config::advertise`] to one peer (exponentially
    /// distributed, per peer). Default [`LOCAL_ADDR_INTERVAL`] (Core's 24 h); tests and
    /// simulations of small networks shorten it.
    pub local_addr_interval: Duration,
}

impl Default for Config {
    /// Bitcoin Core's settings for every part; nothing advertised, nobody whitelisted.
    fn default() -> Config {
        Config {
            connman: connman::Config::default(),
            addrman: addrman::Config::default(),
            banman: banman::Config::default(),
            advertise: Vec::new(),
            whitelist: Vec::new(),
            reachable: Vec::new(),
            local_addr_interval: LOCAL_ADDR_INTERVAL,
        }
    }
}

/// What a peer gave us that we did not have (for eviction protection: Bitcoin Core keeps the
/// inbound peers that most recently sent novel blocks and transactions).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Useful {
    /// A block we did not have.
    Block,
    /// A transaction we did not have.
    Tx,
}

/// The pool machine's own named deadlines (the connection and ban managers keep theirs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Timer {
    /// Settle the book's tried-table collisions.
    ResolveCollisions,
    /// Announce our addresses to this peer again.
    LocalAddr(PeerId),
    /// Outbound slots are starving: ask the runtime for seeds.
    Reseed,
}

/// What the pool reports to the outside.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PoolEvent {
    /// A peer completed its handshake.
    PeerJoined {
        /// The peer.
        peer: PeerId,
        /// Its address.
        addr: NetAddr,
        /// Who dialed.
        direction: Direction,
        /// What the connection is for.
        kind: ConnKind,
    },
    /// A peer that had joined left.
    PeerLeft {
        /// The peer.
        peer: PeerId,
        /// Its address.
        addr: NetAddr,
        /// Why.
        reason: DisconnectReason,
    },
    /// A subnet was banned (misbehaviour or command).
    Banned {
        /// The subnet.
        subnet: Subnet,
        /// Until when.
        until: Time,
        /// Why.
        reason: BanReason,
    },
    /// An inbound peer was evicted to make room.
    Evicted {
        /// The peer.
        peer: PeerId,
        /// Its address.
        addr: NetAddr,
    },
}

/// What the runtime must do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Dial an address; report with `handle_dial_succeeded` / `handle_dial_failed`.
    Dial {
        /// The request.
        req: ReqId,
        /// Where.
        addr: NetAddr,
        /// What for.
        kind: ConnKind,
    },
    /// Close a connection.
    Disconnect {
        /// The peer.
        peer: PeerId,
        /// Why.
        reason: DisconnectReason,
    },
    /// Ask the peer for addresses.
    SendGetAddr {
        /// The peer.
        peer: PeerId,
    },
    /// Send addresses to the peer (its connection picks addr or addrv2).
    SendAddrs {
        /// The peer.
        peer: PeerId,
        /// The addresses.
        addrs: Vec<AddrV2Message>,
    },
    /// Tell subscribers.
    Event(PoolEvent),
    /// The book has nothing usable to fill the outbound slots: add the configured seed
    /// addresses again and query the DNS seeds (see the module docs).
    Reseed,
}

/// Why an inbound connection was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// Its address is banned.
    Banned,
    /// No room (see the connection manager).
    Full(RefuseReason),
    /// Network activity is off ([`PoolMachine::set_network_active`]).
    NetworkInactive,
}

#[derive(Debug)]
struct PeerState {
    addr: NetAddr,
    direction: Direction,
    kind: ConnKind,
    ready: bool,
    permissions: Vec<Permission>,
    addr_tokens: f64,
    tokens_at: Time,
    answered_getaddr: bool,
    /// Our getaddr is outstanding: the next large addr message is its answer.
    awaiting_addr: bool,
}

/// The pool machine; see the module docs.
#[derive(Debug)]
pub struct PoolMachine {
    config: Config,
    rng: fastrand::Rng,
    connman: ConnMan,
    addrman: AddrMan,
    banman: BanMan<PeerId>,
    peers: BTreeMap<PeerId, PeerState>,
    /// Outbound requests waiting for their dial, with the address.
    dialing: BTreeMap<ReqId, NetAddr>,
    /// Addresses relayed within [`RELAY_FRESHNESS`], oldest first, and the same as a set.
    relayed: VecDeque<(Time, NetAddr)>,
    relayed_set: BTreeSet<NetAddr>,
    timers: BTreeMap<Timer, Time>,
    last_reseed: Option<Time>,
    /// Keys the network groups that inbound eviction protects: fixed for the machine's life,
    /// as Bitcoin Core's per-process netgroup randomizer, so that reconnecting cannot reshuffle
    /// which groups are protected.
    netgroup_key: u64,
    /// P2P activity is on (`setnetworkactive`): while off nothing is dialed, no inbound
    /// connection is taken and the connection manager's timers wait.
    network_active: bool,
    outputs: VecDeque<Output>,
}

impl PoolMachine {
    /// A pool with an empty book and no bans. `secret` keys the book's buckets.
    pub fn new(config: Config, secret: [u8; 16], seed: u64, now: Time) -> PoolMachine {
        let book = AddrMan::new(
            config.addrman.clone(),
            secret,
            fastrand::Rng::with_seed(seed ^ 1),
        );
        PoolMachine::with_state(config, book, BanList::new(), seed, now)
    }

    /// A pool resuming from a saved book and ban list.
    pub fn with_state(
        config: Config,
        addrman: AddrMan,
        bans: BanList,
        seed: u64,
        now: Time,
    ) -> PoolMachine {
        PoolMachine {
            connman: ConnMan::new(config.connman.clone(), seed ^ 2, now),
            banman: BanMan::with_bans(config.banman.clone(), bans),
            addrman,
            rng: fastrand::Rng::with_seed(seed),
            config,
            peers: BTreeMap::new(),
            dialing: BTreeMap::new(),
            relayed: VecDeque::new(),
            relayed_set: BTreeSet::new(),
            timers: BTreeMap::new(),
            last_reseed: None,
            netgroup_key: fastrand::Rng::with_seed(seed ^ 3).u64(..) | 1,
            network_active: true,
            outputs: VecDeque::new(),
        }
    }

    // ----- queries -------------------------------------------------------------------------

    /// The connection manager (slots, manual peers, requests).
    pub fn connman(&self) -> &ConnMan {
        &self.connman
    }

    /// The address book.
    pub fn addrman(&self) -> &AddrMan {
        &self.addrman
    }

    /// The ban manager.
    pub fn banman(&self) -> &BanMan<PeerId> {
        &self.banman
    }

    /// Permissions of a connected peer.
    pub fn permissions(&self, peer: PeerId) -> &[Permission] {
        self.peers.get(&peer).map_or(&[], |p| &p.permissions[..])
    }

    /// Connected peers that completed their handshake.
    pub fn ready_peers(&self) -> impl Iterator<Item = (PeerId, NetAddr)> + '_ {
        self.peers
            .iter()
            .filter(|(_, p)| p.ready)
            .map(|(id, p)| (*id, p.addr))
    }

    // ----- outputs -------------------------------------------------------------------------

    /// The next instruction, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.pull();
        self.outputs.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) next has work. While network activity
    /// is off the connection manager's deadlines (dials, feelers, manual redials) do not
    /// count: they are carried out once it is back on.
    pub fn poll_timeout(&self) -> Option<Time> {
        let connman = self.connman.poll_timeout().filter(|_| self.network_active);
        [connman, self.banman.poll_timeout()]
            .into_iter()
            .flatten()
            .chain(self.timers.values().copied())
            .min()
    }

    /// Whether P2P activity is on (see [`set_network_active`](Self::set_network_active)).
    pub fn network_active(&self) -> bool {
        self.network_active
    }

    /// The deadline of one of the machine's own named timers, if armed.
    pub fn timer(&self, timer: Timer) -> Option<Time> {
        self.timers.get(&timer).copied()
    }

    // ----- inputs --------------------------------------------------------------------------

    /// Does what is due: settling tried collisions, one paced dial to fill slots, manual
    /// redials, feelers (a collision's incumbent first), ban expiry, announcements of our
    /// addresses, and [`Output::Reseed`] when the book has run dry.
    pub fn handle_timeout(&mut self, now: Time) {
        for entry in self.banman.handle_timeout(now) {
            tracing::debug!("ban on {} expired", entry.subnet);
        }
        // The connection-opening path settles waiting tried collisions first (Core's
        // `ResolveCollisions` at the top of each `ThreadOpenConnections` loop).
        self.addrman.resolve_collisions(now);
        if !self.network_active {
            // Paused: no dial is due, nothing starves, only bookkeeping runs.
            self.due_local_addrs(now);
            self.arm_collisions(now);
            return;
        }
        let reachable = self.reachable();
        // Hosts we dialed (connected or pending): a collision's incumbent among them is known
        // to work and needs no feeler.
        let connected: BTreeSet<Host> = self
            .peers
            .values()
            .filter(|p| p.direction == Direction::Outbound)
            .map(|p| p.addr.host)
            .chain(self.dialing.values().map(|a| a.host))
            .collect();
        let (addrman, banman, rng) = (&mut self.addrman, &self.banman, &mut self.rng);
        let ours = &self.config.advertise;
        let mut pick = |what: Pick| {
            // Our own address comes back through gossip; dialing it only finds ourselves.
            let usable = |addr: &NetAddr| !banman.is_banned(addr, now) && !ours.contains(addr);
            if what == Pick::Feeler {
                // Test-before-evict: a feeler tests a collision's incumbent before anything new.
                if let Some((old, last_try)) = addrman.select_tried_collision(rng) {
                    if connected.contains(&old.host) {
                        // Connected, so working (Core marks it good rather than dial it twice).
                        addrman.good(&old, now);
                    } else if usable(&old) {
                        return Some((old, last_try));
                    }
                }
            }
            for _ in 0..4 {
                let (addr, last_try) =
                    addrman.select(what == Pick::Feeler, &reachable, rng, now)?;
                if usable(&addr) {
                    return Some((addr, last_try));
                }
            }
            None
        };
        self.connman.handle_timeout(now, &mut pick);
        self.pull();
        self.due_local_addrs(now);
        self.check_starving(now);
        self.arm_collisions(now);
    }

    /// A dial succeeded.
    pub fn handle_dial_succeeded(&mut self, now: Time, req: ReqId, peer: PeerId) {
        let Some(addr) = self.dialing.remove(&req) else {
            return;
        };
        self.connman.handle_dial_succeeded(now, req, peer);
        let kind = self
            .connman
            .connection(peer)
            .map_or(ConnKind::Outbound, |c| c.kind);
        self.addrman.attempt(&addr, false, now);
        let permissions = self.whitelisted(&addr);
        // Automatic dials never go to a banned address, but a ban made while this one was
        // under way found no connection to close (`disconnect_banned` sees live peers only).
        let banned = matches!(kind, ConnKind::Outbound | ConnKind::Feeler)
            && !permissions.contains(&Permission::NoBan)
            && self.banman.is_banned(&addr, now);
        self.peers.insert(
            peer,
            PeerState::new(addr, Direction::Outbound, kind, permissions, now),
        );
        if banned {
            self.outputs.push_back(Output::Disconnect {
                peer,
                reason: DisconnectReason::Banned,
            });
        } else if !self.network_active {
            // Dialed before activity was turned off: it goes the way of the others.
            self.outputs.push_back(Output::Disconnect {
                peer,
                reason: DisconnectReason::Requested,
            });
        }
    }

    /// A dial failed. Only automatic dials (outbound, feelers) count as a failed attempt in
    /// the book, as Bitcoin Core's `fCountFailure`: an address the operator asked for says
    /// nothing about the book's view of it.
    pub fn handle_dial_failed(&mut self, now: Time, req: ReqId) {
        if let Some(addr) = self.dialing.remove(&req) {
            let automatic = self
                .connman
                .requests()
                .any(|r| r.id == req && matches!(r.kind, ConnKind::Outbound | ConnKind::Feeler));
            self.addrman.attempt(&addr, automatic, now);
        }
        self.connman.handle_dial_failed(now, req);
        self.arm_collisions(now);
    }

    /// A new inbound connection; `Err` means close it at once.
    pub fn handle_inbound(
        &mut self,
        now: Time,
        peer: PeerId,
        addr: NetAddr,
    ) -> Result<(), Refused> {
        if !self.network_active {
            return Err(Refused::NetworkInactive);
        }
        let permissions = self.whitelisted(&addr);
        let noban = permissions.contains(&Permission::NoBan);
        if !noban && self.banman.is_banned(&addr, now) {
            return Err(Refused::Banned);
        }
        let secret = self.netgroup_key;
        let key = move |g: crate::addr::NetGroup| {
            g.to_bytes().iter().fold(secret, |h, b| {
                (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
            })
        };
        match self.connman.handle_inbound(now, peer, addr, noban, &key) {
            InboundVerdict::Refuse(r) => return Err(Refused::Full(r)),
            InboundVerdict::AcceptEvicting(victim) => {
                if let Some(v) = self.peers.get(&victim) {
                    let event = PoolEvent::Evicted {
                        peer: victim,
                        addr: v.addr,
                    };
                    self.outputs.push_back(Output::Event(event));
                }
            }
            InboundVerdict::Accept => {}
        }
        self.peers.insert(
            peer,
            PeerState::new(
                addr,
                Direction::Inbound,
                ConnKind::Inbound,
                permissions,
                now,
            ),
        );
        Ok(())
    }

    /// A connection completed its handshake; `services` are what the peer announced.
    pub fn handle_handshake(&mut self, now: Time, peer: PeerId, services: ServiceFlags) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        p.ready = true;
        let (addr, direction, kind) = (p.addr, p.direction, p.kind);
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
            self.outputs.push_back(Output::Disconnect {
                peer,
                reason: DisconnectReason::Requested,
            });
            return;
        }
        self.outputs.push_back(Output::Event(PoolEvent::PeerJoined {
            peer,
            addr,
            direction,
            kind,
        }));
        if direction == Direction::Outbound {
            if let Some(p) = self.peers.get_mut(&peer) {
                p.awaiting_addr = true;
                p.addr_tokens += ADDR_TOKEN_BUCKET;
            }
            self.outputs.push_back(Output::SendGetAddr { peer });
        }
        self.advertise_to(now, peer);
    }

    /// Addresses received from a peer (`addr` or `addrv2`, converted).
    pub fn handle_addrs(&mut self, now: Time, peer: PeerId, addrs: &[AddrV2Message]) {
        let reachable = self.reachable();
        self.forget_relayed(now);
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if !p.ready {
            return;
        }
        let unlimited = p.permissions.contains(&Permission::Addr);
        let elapsed = now.since(p.tokens_at).as_secs_f64();
        p.tokens_at = now;
        p.addr_tokens = (p.addr_tokens + elapsed * ADDR_RATE_PER_SECOND).min(
            // Tokens granted for our own getaddr may exceed the cap, as in Core.
            p.addr_tokens.max(ADDR_TOKEN_BUCKET),
        );
        let answer = p.awaiting_addr && addrs.len() > MAX_RELAYED_ANNOUNCEMENT;
        if answer {
            p.awaiting_addr = false;
        }
        let source = p.addr;
        let mut accepted: Vec<AddrRecord> = Vec::new();
        let mut relay: Vec<AddrV2Message> = Vec::new();
        let mut limited = 0;
        // When the tokens do not cover the message, which addresses they cover is random (Core
        // shuffles first): the sender cannot pick, by their order, which ones get in.
        let mut order: Vec<&AddrV2Message> = addrs.iter().collect();
        if !unlimited && addrs.len() as f64 > p.addr_tokens {
            self.rng.shuffle(&mut order);
        }
        for a in order {
            if !unlimited {
                if p.addr_tokens < 1.0 {
                    limited += 1;
                    continue;
                }
                p.addr_tokens -= 1.0;
            }
            let Some(na) = NetAddr::from_addrv2(&a.addr, a.port) else {
                continue;
            };
            // Bitcoin Core drops banned addresses and relays only routable ones: a banned
            // host stays out of the book, and nothing unusable is passed on.
            if !reachable.contains(&na.network())
                || !self.addrman.acceptable(&na)
                || self.banman.is_banned(&na, now)
            {
                continue;
            }
            let seen = Time::from_secs(u64::from(a.time));
            accepted.push((na, a.services, seen));
            let fresh = seen + RELAY_FRESHNESS >= now && seen <= now + RELAY_FRESHNESS;
            if !answer
                && addrs.len() <= MAX_RELAYED_ANNOUNCEMENT
                && fresh
                && !self.relayed_set.contains(&na)
            {
                relay.push(a.clone());
            }
        }
        if limited > 0 {
            tracing::debug!(peer = %peer, limited, "addresses over the rate limit ignored");
        }
        // Self-announcements carry no penalty; hearsay is aged by two hours, as Core does.
        let (own, other): (Vec<AddrRecord>, Vec<AddrRecord>) = accepted
            .into_iter()
            .partition(|(a, _, _)| a.host == source.host);
        self.addrman.add(&own, source, Duration::ZERO, now);
        self.addrman.add(&other, source, ADDR_TIME_PENALTY, now);
        for a in &relay {
            if let Some(na) = NetAddr::from_addrv2(&a.addr, a.port) {
                if self.relayed_set.insert(na) {
                    self.relayed.push_back((now, na));
                }
            }
        }
        if !relay.is_empty() {
            let others: Vec<PeerId> = self
                .peers
                .iter()
                .filter(|(id, s)| **id != peer && s.ready && s.kind != ConnKind::Feeler)
                .map(|(id, _)| *id)
                .collect();
            let mut chosen = Vec::new();
            let mut pool = others;
            while chosen.len() < RELAY_FANOUT && !pool.is_empty() {
                let i = self.rng.usize(..pool.len());
                chosen.push(pool.swap_remove(i));
            }
            for to in chosen {
                self.outputs.push_back(Output::SendAddrs {
                    peer: to,
                    addrs: relay.clone(),
                });
            }
        }
    }

    /// A peer asked for addresses: answered once per inbound peer, as Bitcoin Core does (an
    /// outbound peer asking could be fingerprinting us).
    pub fn handle_getaddr(&mut self, now: Time, peer: PeerId) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if p.direction != Direction::Inbound || p.answered_getaddr || !p.ready {
            return;
        }
        p.answered_getaddr = true;
        let sample = self.addrman.get_addr(
            MAX_ADDR_TO_SEND,
            MAX_PCT_ADDR_TO_SEND,
            None,
            &mut self.rng,
            now,
        );
        // Addresses we banned are not handed out (Bitcoin Core filters its answer the same way).
        let banman = &self.banman;
        let addrs: Vec<AddrV2Message> = sample
            .into_iter()
            .filter(|(a, _, _)| !banman.is_banned(a, now))
            .map(|(a, services, seen)| AddrV2Message {
                time: seen.as_secs() as u32,
                services,
                addr: a.to_addrv2(),
                port: a.port,
            })
            .collect();
        if !addrs.is_empty() {
            self.outputs.push_back(Output::SendAddrs { peer, addrs });
        }
    }

    /// A peer misbehaved: the ban manager decides.
    pub fn handle_misbehaviour(&mut self, now: Time, peer: PeerId, what: Misbehaviour) {
        let Some(p) = self.peers.get(&peer) else {
            return;
        };
        let addr = p.addr;
        // Peers we chose by hand are not punished either (Bitcoin Core: "not punishing manually
        // connected peer"): the operator vouched for them.
        let noban = p.permissions.contains(&Permission::NoBan)
            || matches!(p.kind, ConnKind::Manual | ConnKind::OneTry);
        match self.banman.misbehaving(peer, &addr, what, noban, now) {
            Verdict::None => {}
            Verdict::Warn => tracing::warn!(peer = %peer, %addr, "misbehaving: {what}"),
            Verdict::Disconnect => {
                let reason = DisconnectReason::Misbehaviour(what);
                self.outputs.push_back(Output::Disconnect { peer, reason });
            }
            Verdict::Ban(until) => {
                let subnet = Subnet::from(addr.host);
                let event = PoolEvent::Banned {
                    subnet,
                    until,
                    reason: BanReason::Misbehaviour,
                };
                self.outputs.push_back(Output::Event(event));
                self.disconnect_banned(now);
            }
        }
    }

    /// A ping round trip, for eviction protection.
    pub fn handle_ping(&mut self, peer: PeerId, rtt_micros: u64) {
        self.connman.record_ping(peer, rtt_micros);
    }

    /// The peer sent us a block or transaction we did not have. Feeds eviction: an inbound
    /// peer that recently did is protected (Bitcoin Core's `m_last_block_time` and
    /// `m_last_tx_time`). The runtime calls it when the peer's block or transaction turned
    /// out to be new to the node's owner.
    pub fn handle_useful(&mut self, now: Time, peer: PeerId, what: Useful) {
        self.connman.record_useful(now, peer, what == Useful::Block);
    }

    /// A connection ended.
    pub fn handle_disconnected(&mut self, now: Time, peer: PeerId, reason: DisconnectReason) {
        let Some(p) = self.peers.remove(&peer) else {
            self.connman.handle_disconnected(now, peer, false);
            return;
        };
        self.connman.handle_disconnected(now, peer, p.ready);
        self.banman.scores_mut().forget(&peer);
        self.timers.remove(&Timer::LocalAddr(peer));
        if p.ready {
            if p.direction == Direction::Outbound {
                self.addrman.connected(&p.addr, now);
            }
            if p.kind != ConnKind::Feeler {
                let event = PoolEvent::PeerLeft {
                    peer,
                    addr: p.addr,
                    reason,
                };
                self.outputs.push_back(Output::Event(event));
            }
        }
    }

    // ----- commands ------------------------------------------------------------------------

    /// Adds addresses from outside (DNS seeds, `addpeeraddress`) with `source` as their origin.
    pub fn add_addresses(&mut self, now: Time, addrs: &[AddrRecord], source: NetAddr) -> usize {
        self.addrman.add(addrs, source, Duration::ZERO, now)
    }

    /// Marks a known address as successfully connected, moving it to the tried table
    /// (`addpeeraddress ... tried`, as Bitcoin Core's `AddrMan::Good`).
    pub fn mark_tried(&mut self, now: Time, addr: &NetAddr) -> addrman::GoodOutcome {
        self.addrman.good(addr, now)
    }

    /// `addnode add`.
    pub fn add_node(&mut self, now: Time, addr: NetAddr) -> Result<(), connman::ConnError> {
        self.connman.add_manual(now, addr)
    }

    /// `addnode remove`.
    pub fn remove_node(&mut self, addr: NetAddr) -> Result<(), connman::ConnError> {
        self.connman.remove_manual(addr)
    }

    /// Turns P2P activity off or on, as Bitcoin Core's `setnetworkactive`. Off: every peer
    /// is disconnected ([`DisconnectReason::Requested`]), inbound connections are refused
    /// ([`Refused::NetworkInactive`]), and automatic dials, feelers, manual redials and
    /// reseeds wait without counting as failed attempts. On: what waited is due at once.
    pub fn set_network_active(&mut self, active: bool) {
        if self.network_active == active {
            return;
        }
        self.network_active = active;
        if active {
            // The connection manager's deadlines passed while paused count again, so
            // `poll_timeout` reports them due at once.
            return;
        }
        self.timers.remove(&Timer::Reseed);
        for &peer in self.peers.keys() {
            self.outputs.push_back(Output::Disconnect {
                peer,
                reason: DisconnectReason::Requested,
            });
        }
    }

    /// `addnode onetry`.
    pub fn one_try(&mut self, now: Time, addr: NetAddr) -> ReqId {
        let req = self.connman.one_try(now, addr);
        self.pull();
        req
    }

    /// Disconnects a peer by id.
    pub fn disconnect_peer(&mut self, peer: PeerId) -> Result<(), connman::ConnError> {
        self.connman.disconnect_peer(peer)
    }

    /// Disconnects every peer at an address.
    pub fn disconnect_addr(&mut self, addr: NetAddr) -> Result<(), connman::ConnError> {
        self.connman.disconnect_addr(addr)
    }

    /// Bans a subnet until `until`, disconnecting the peers in it.
    pub fn ban(&mut self, now: Time, subnet: Subnet, until: Time) -> bool {
        let added = self
            .banman
            .bans_mut()
            .ban(subnet, until, BanReason::Manual, now);
        if added {
            let event = PoolEvent::Banned {
                subnet,
                until,
                reason: BanReason::Manual,
            };
            self.outputs.push_back(Output::Event(event));
            self.disconnect_banned(now);
        }
        added
    }

    /// Lifts a ban; whether there was one.
    pub fn unban(&mut self, subnet: &Subnet) -> bool {
        self.banman.bans_mut().unban(subnet)
    }

    /// Lifts every ban.
    pub fn clear_bans(&mut self) {
        self.banman.bans_mut().clear();
    }

    // ----- internals -----------------------------------------------------------------------

    fn reachable(&self) -> Vec<Network> {
        if self.config.reachable.is_empty() {
            vec![Network::Ipv4, Network::Ipv6]
        } else {
            self.config.reachable.clone()
        }
    }

    fn whitelisted(&self, addr: &NetAddr) -> Vec<Permission> {
        let mut perms: Vec<Permission> = self
            .config
            .whitelist
            .iter()
            .filter(|w| w.subnet.contains(&addr.host))
            .flat_map(|w| w.permissions.iter().copied())
            .collect();
        perms.sort();
        perms.dedup();
        perms
    }

    /// Forgets relays older than [`RELAY_FRESHNESS`] and the oldest beyond
    /// [`MAX_RECENTLY_RELAYED`].
    fn forget_relayed(&mut self, now: Time) {
        while let Some((at, addr)) = self.relayed.front().copied() {
            if at + RELAY_FRESHNESS > now && self.relayed.len() < MAX_RECENTLY_RELAYED {
                break;
            }
            self.relayed.pop_front();
            self.relayed_set.remove(&addr);
        }
    }

    /// Announces our addresses to `peer` and schedules the next announcement.
    fn advertise_to(&mut self, now: Time, peer: PeerId) {
        if self.config.advertise.is_empty() {
            return;
        }
        let t = now.as_secs() as u32;
        let addrs = self
            .config
            .advertise
            .iter()
            .map(|a| AddrV2Message {
                time: t,
                services: ServiceFlags::NONE,
                addr: a.to_addrv2(),
                port: a.port,
            })
            .collect();
        self.outputs.push_back(Output::SendAddrs { peer, addrs });
        let gap = exponential(&mut self.rng, self.config.local_addr_interval);
        // At least a second apart, so that a zero interval cannot spin.
        let next = now + gap.max(Duration::from_secs(1));
        self.timers.insert(Timer::LocalAddr(peer), next);
    }

    /// Re-announces our addresses to the peers whose timer expired.
    fn due_local_addrs(&mut self, now: Time) {
        let due: Vec<PeerId> = self
            .timers
            .iter()
            .filter_map(|(t, at)| match t {
                Timer::LocalAddr(peer) if *at <= now => Some(*peer),
                _ => None,
            })
            .collect();
        for peer in due {
            self.timers.remove(&Timer::LocalAddr(peer));
            if self.peers.get(&peer).is_some_and(|p| p.ready) {
                self.advertise_to(now, peer);
            }
        }
    }

    /// Emits [`Output::Reseed`] when outbound slots have starved for [`RESEED_DELAY`] (at most
    /// once per [`RESEED_INTERVAL`]), or arms the timer for when they will have.
    fn check_starving(&mut self, now: Time) {
        let Some(since) = self.connman.starved_since() else {
            self.timers.remove(&Timer::Reseed);
            return;
        };
        let mut due = since + RESEED_DELAY;
        if let Some(last) = self.last_reseed {
            due = due.max(last + RESEED_INTERVAL);
        }
        if due <= now {
            tracing::info!("no usable address to fill the outbound slots: reseeding");
            self.outputs.push_back(Output::Reseed);
            self.last_reseed = Some(now);
            self.timers.remove(&Timer::Reseed);
        } else {
            self.timers.insert(Timer::Reseed, due);
        }
    }

    /// Keeps [`Timer::ResolveCollisions`] armed exactly while collisions wait.
    fn arm_collisions(&mut self, now: Time) {
        if self.addrman.tried_collisions().next().is_none() {
            self.timers.remove(&Timer::ResolveCollisions);
        } else if self
            .timers
            .get(&Timer::ResolveCollisions)
            .map_or(true, |t| *t <= now)
        {
            self.timers
                .insert(Timer::ResolveCollisions, now + COLLISION_CHECK_INTERVAL);
        }
    }

    fn disconnect_banned(&mut self, now: Time) {
        let banned: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, p)| !p.permissions.contains(&Permission::NoBan))
            .filter(|(_, p)| self.banman.is_banned(&p.addr, now))
            .map(|(id, _)| *id)
            .collect();
        for peer in banned {
            self.outputs.push_back(Output::Disconnect {
                peer,
                reason: DisconnectReason::Banned,
            });
        }
    }

    /// Moves the connection manager's instructions into ours.
    fn pull(&mut self) {
        while let Some(o) = self.connman.poll_output() {
            match o {
                connman::Output::Dial { req, addr, kind } => {
                    self.dialing.insert(req, addr);
                    self.outputs.push_back(Output::Dial { req, addr, kind });
                }
                connman::Output::Disconnect { peer, reason } => {
                    self.outputs.push_back(Output::Disconnect { peer, reason });
                }
            }
        }
    }
}

impl PeerState {
    fn new(
        addr: NetAddr,
        direction: Direction,
        kind: ConnKind,
        permissions: Vec<Permission>,
        now: Time,
    ) -> PeerState {
        PeerState {
            addr,
            direction,
            kind,
            ready: false,
            permissions,
            addr_tokens: ADDR_TOKEN_START,
            tokens_at: now,
            answered_getaddr: false,
            awaiting_addr: false,
        }
    }
}

#[cfg(test)]
mod tests;
