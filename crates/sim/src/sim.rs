//! The simulator: nodes, connections, and the agenda that drives them.
//!
//! Each node is a [`PoolMachine`]; each connection is a pair of [`PeerMachine`]s, one per end,
//! whose messages are encoded into frames, carried over a simulated link and decoded by a
//! [`FrameDecoder`] at the other end. The simulator plays the runtime's part exactly as
//! `peerpool-net` does around real sockets:
//!
//! - pool outputs are carried out in order: `Dial` opens a simulated TCP connection,
//!   `Disconnect` is handed to the connection's peer machine, `SendGetAddr` and `SendAddrs`
//!   become `getaddr` and `addr`/`addrv2` messages, events are recorded;
//! - what a connection learns reaches the pool as a separate, later input (as it would through
//!   the connection task's channel): handshakes, addresses, `getaddr`, pings, misbehaviour and
//!   the end of the connection;
//! - after every input the machine's outputs are drained, and its next wake-up is taken from
//!   `poll_timeout`.
//!
//! Every random choice (latencies, losses, churn, machine seeds) comes from one generator
//! seeded at construction, and events due at the same time run in the order they were
//! scheduled, so a seed determines the whole run.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bitcoin::p2p::address::AddrV2Message;
use bitcoin::p2p::message::NetworkMessage;
use bitcoin::p2p::ServiceFlags;
use bytes::BytesMut;
use peerpool_core::addr::NetAddr;
use peerpool_core::peer::{ConnectionAddrs, Nonces, PeerEvent, PeerOutput};
use peerpool_core::pool::addrman::AddrMan;
use peerpool_core::pool::banman::{BanList, BanReason, Subnet};
use peerpool_core::pool::connman::{ConnKind, ConnState, ReqId};
use peerpool_core::pool::machine::Refused;
use peerpool_core::pool::{Output, PoolEvent, PoolMachine};
use peerpool_core::Time;
use peerpool_core::{Direction, DisconnectReason, Misbehaviour, PeerConfig, PeerId, PeerMachine};
use peerpool_wire::frame::{encode_frame, FrameDecoder};
use peerpool_wire::message::{command_of, encode_message};
use peerpool_wire::MessageKind;

use crate::config::SimConfig;
use crate::network::{assign_addresses, link_latency};
use crate::queue::Agenda;
use crate::trace::TraceHasher;

/// Virtual time at which every simulation starts (November 2023): address timestamps must
/// look plausible to the address book, which refuses times near the epoch.
pub const EPOCH: Time = Time::from_secs(1_700_000_000);

/// Violations kept in full; later ones are only counted.
const MAX_VIOLATIONS_KEPT: usize = 100;

/// Identity of a simulated connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

/// The dialing end of a connection is side 0, the accepting end side 1.
type Side = usize;
const DIALER: Side = 0;
const LISTENER: Side = 1;

/// One time a node was online.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// When it came online.
    pub start: Time,
    /// When it went offline, if it did.
    pub end: Option<Time>,
    /// When it first had its full outbound target of automatic connections with completed
    /// handshakes, if it did.
    pub reached_target: Option<Time>,
    /// Whether it started with an empty address book (first start) rather than a saved one.
    pub cold: bool,
}

/// Counters of a run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Events processed.
    pub events: u64,
    /// `Dial` outputs carried out.
    pub dials: u64,
    /// Dials that failed (no answer, target offline, cut off).
    pub dials_failed: u64,
    /// Dials of a node's own address.
    pub self_dials: u64,
    /// Inbound connections whose `version` carried one of our own nonces.
    pub self_connections_caught: u64,
    /// Inbound connections refused by the pool.
    pub inbound_refused: u64,
    /// Of those, refused because the dialer's address is banned.
    pub inbound_refused_banned: u64,
    /// Dials made by misbehaving nodes.
    pub misbehaving_dials: u64,
    /// Handshakes completed (counted once per end).
    pub handshakes: u64,
    /// Messages sent.
    pub messages: u64,
    /// Bytes sent.
    pub bytes: u64,
    /// Messages sent, by command.
    pub messages_by_kind: BTreeMap<&'static str, u64>,
    /// Segments that needed a retransmission.
    pub retransmits: u64,
    /// Misbehaviour reports passed to pools.
    pub misbehaviours: u64,
    /// Bans made by pools.
    pub bans: u64,
    /// Inbound peers evicted.
    pub evictions: u64,
    /// Times a node went offline.
    pub departures: u64,
    /// Connections broken by a link failure.
    pub link_failures: u64,
    /// Times a pool asked to be seeded again (its book had nothing usable left).
    pub reseeds: u64,
}

/// A connection whose two ends are open and have completed the handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Link {
    /// The node that dialed.
    pub dialer: usize,
    /// The node that accepted.
    pub listener: usize,
    /// What the dialer opened it for.
    pub kind: ConnKind,
}

/// A pool input produced by a connection, delivered to the pool as its own event.
#[derive(Debug)]
enum Input {
    Handshake(PeerId, ServiceFlags),
    Addrs(PeerId, Vec<AddrV2Message>),
    GetAddr(PeerId),
    Misbehaved(PeerId, Misbehaviour),
    Ping(PeerId, u64),
    Disconnected(PeerId, DisconnectReason),
}

/// What travels over a link towards one end.
#[derive(Debug)]
enum Segment {
    /// Encoded frames.
    Data(Vec<u8>),
    /// The other end closed.
    Fin,
    /// The other end (or the path) reset the connection.
    Rst,
}

#[derive(Debug)]
enum Event {
    Start(usize),
    Stop(usize),
    PoolWake(usize, u32),
    PeerWake(ConnId, Side),
    Syn(ConnId),
    Connected(ConnId),
    DialFailed(usize, u32, ReqId),
    Segment(ConnId, Side, Segment),
    Input(usize, u32, Input),
    Misbehave(ConnId, Side),
    Cut(ConnId),
    PartitionStart(usize),
    PartitionEnd(usize),
}

struct Node {
    addr: NetAddr,
    bootstrap: bool,
    misbehaving: bool,
    secret: [u8; 16],
    /// Bumped every time the node goes offline, so that events of an earlier life are ignored.
    life: u32,
    pool: Option<PoolMachine>,
    /// Address book and bans kept while offline, as the daemon persists them.
    saved: Option<(AddrMan, BanList)>,
    armed: Option<Time>,
    peers: BTreeMap<PeerId, (ConnId, Side)>,
    /// Peers the pool announced as joined (non-feelers), by kind.
    joined: BTreeMap<PeerId, ConnKind>,
    next_peer: u64,
    nonces: Nonces,
    /// Dials issued and not yet answered.
    dials: BTreeMap<ReqId, Time>,
    /// Bans the pool announced, as the simulator recorded them.
    bans: Vec<(Subnet, Time)>,
    sessions: Vec<Session>,
}

impl Node {
    fn online(&self) -> bool {
        self.pool.is_some()
    }

    fn banned(&self, addr: &NetAddr, now: Time) -> bool {
        self.bans
            .iter()
            .any(|(s, until)| now < *until && s.contains(&addr.host))
    }

    fn ready_outbound(&self) -> usize {
        self.joined
            .values()
            .filter(|k| **k == ConnKind::Outbound)
            .count()
    }
}

struct Open {
    peer: PeerId,
    machine: PeerMachine,
    decoder: FrameDecoder,
    buf: BytesMut,
    armed: Option<Time>,
    /// Our `version` nonce while an outbound handshake is under way.
    nonce: Option<u64>,
}

enum EndState {
    /// Not set up yet on this side.
    Waiting,
    Open(Box<Open>),
    Closed,
}

struct End {
    node: usize,
    life: u32,
    state: EndState,
}

struct Conn {
    latency: Duration,
    kind: ConnKind,
    req: ReqId,
    dialed_at: Time,
    /// The address the dialer used.
    target: NetAddr,
    ends: [End; 2],
    /// Latest arrival scheduled towards each side, to keep each direction in order.
    arrival: [Time; 2],
}

struct PartitionState {
    side: Vec<bool>,
    from: Time,
    until: Time,
}

/// A running simulation; see the module docs.
pub struct Sim {
    config: SimConfig,
    peer_config: Arc<PeerConfig>,
    seed: u64,
    rng: fastrand::Rng,
    now: Time,
    agenda: Agenda<Event>,
    nodes: Vec<Node>,
    by_addr: BTreeMap<NetAddr, usize>,
    conns: Conns,
    next_conn: u64,
    latency_salt: u64,
    partitions: Vec<PartitionState>,
    trace: TraceHasher,
    stats: Stats,
    violations: Vec<String>,
    violation_count: u64,
    bad_frame: Vec<u8>,
    /// Longest a dial may legitimately stay unanswered.
    dial_bound: Duration,
}

impl Sim {
    /// Builds the network for `seed` and schedules every node's first start; nothing runs
    /// until [`Sim::run_for`] or [`Sim::run_until`].
    pub fn new(config: SimConfig, seed: u64) -> Sim {
        let mut rng = fastrand::Rng::with_seed(seed);
        let addrs = assign_addresses(&mut rng, config.nodes, config.groups);
        let latency_salt = rng.u64(..);
        let seeds = config.seeds.min(config.nodes);
        let mut candidates: Vec<usize> = (seeds..config.nodes).collect();
        rng.shuffle(&mut candidates);
        let bad: BTreeSet<usize> = candidates.into_iter().take(config.misbehaving).collect();
        let nodes: Vec<Node> = addrs
            .iter()
            .enumerate()
            .map(|(i, &addr)| {
                let mut secret = [0u8; 16];
                secret.iter_mut().for_each(|b| *b = rng.u8(..));
                Node {
                    addr,
                    bootstrap: i < seeds,
                    misbehaving: bad.contains(&i),
                    secret,
                    life: 0,
                    pool: None,
                    saved: None,
                    armed: None,
                    peers: BTreeMap::new(),
                    joined: BTreeMap::new(),
                    next_peer: 0,
                    nonces: Nonces::default(),
                    dials: BTreeMap::new(),
                    bans: Vec::new(),
                    sessions: Vec::new(),
                }
            })
            .collect();
        let by_addr = nodes.iter().enumerate().map(|(i, n)| (n.addr, i)).collect();
        let magic = config.peer.chain.magic;
        // An addr message claiming 1,001 entries: the peer machine judges it by the count alone
        // (oversized, 20 points) before reading any entry.
        let mut bad_frame = Vec::new();
        encode_frame(
            magic,
            command_of(&NetworkMessage::Addr(Vec::new())),
            &[0xfd, 0xe9, 0x03],
            &mut bad_frame,
        );
        let dial_bound = config.connect_timeout + config.max_latency * 2 + Duration::from_secs(1);
        let mut sim = Sim {
            peer_config: Arc::new(config.peer.clone()),
            seed,
            rng,
            now: EPOCH,
            agenda: Agenda::default(),
            nodes,
            by_addr,
            conns: Conns::default(),
            next_conn: 0,
            latency_salt,
            partitions: Vec::new(),
            trace: TraceHasher::default(),
            stats: Stats::default(),
            violations: Vec::new(),
            violation_count: 0,
            bad_frame,
            dial_bound,
            config,
        };
        for i in 0..sim.nodes.len() {
            let at = if sim.nodes[i].bootstrap {
                EPOCH
            } else {
                EPOCH + sim.config.join_window.mul_f64(sim.rng.f64())
            };
            sim.agenda.push(at, Event::Start(i));
        }
        for (i, p) in sim.config.partitions.clone().into_iter().enumerate() {
            let mut side = vec![false; sim.nodes.len()];
            for n in p.side {
                if let Some(s) = side.get_mut(n) {
                    *s = true;
                }
            }
            let (from, until) = (EPOCH + p.from, EPOCH + p.until);
            sim.partitions.push(PartitionState { side, from, until });
            sim.agenda.push(from, Event::PartitionStart(i));
            sim.agenda.push(until, Event::PartitionEnd(i));
        }
        sim
    }

    // ----- driving -------------------------------------------------------------------------

    /// Runs every event due up to `EPOCH + elapsed`.
    pub fn run_until(&mut self, elapsed: Duration) {
        let until = EPOCH + elapsed;
        while self.agenda.peek_time().is_some_and(|t| t <= until) {
            let Some((at, event)) = self.agenda.pop() else {
                break;
            };
            self.now = at;
            self.stats.events += 1;
            self.process(event);
        }
        self.now = self.now.max(until);
    }

    /// Runs for `d` more virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let elapsed = self.elapsed() + d;
        self.run_until(elapsed);
    }

    // ----- queries -------------------------------------------------------------------------

    /// The seed the run was built from.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The settings.
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// Current virtual time.
    pub fn now(&self) -> Time {
        self.now
    }

    /// Virtual time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now.since(EPOCH)
    }

    /// Nodes in all.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// A node's address.
    pub fn addr(&self, node: usize) -> NetAddr {
        self.nodes[node].addr
    }

    /// The node at an address.
    pub fn node_at(&self, addr: &NetAddr) -> Option<usize> {
        self.by_addr.get(addr).copied()
    }

    /// Whether a node is online.
    pub fn is_online(&self, node: usize) -> bool {
        self.nodes[node].online()
    }

    /// Whether a node is one of the bootstrap nodes.
    pub fn is_bootstrap(&self, node: usize) -> bool {
        self.nodes[node].bootstrap
    }

    /// Whether a node misbehaves.
    pub fn is_misbehaving(&self, node: usize) -> bool {
        self.nodes[node].misbehaving
    }

    /// A node's pool machine, while it is online.
    pub fn pool(&self, node: usize) -> Option<&PoolMachine> {
        self.nodes[node].pool.as_ref()
    }

    /// Automatic outbound peers of a node that completed their handshake.
    pub fn ready_outbound(&self, node: usize) -> usize {
        self.nodes[node].ready_outbound()
    }

    /// The times a node was online.
    pub fn sessions(&self, node: usize) -> &[Session] {
        &self.nodes[node].sessions
    }

    /// Bans a node's pool announced (subnet, until), across its restarts.
    pub fn bans(&self, node: usize) -> &[(Subnet, Time)] {
        &self.nodes[node].bans
    }

    /// Connections whose two ends are open and past the handshake.
    pub fn links(&self) -> Vec<Link> {
        let ready = |e: &End| matches!(&e.state, EndState::Open(o) if o.machine.is_ready());
        self.conns
            .values()
            .filter(|c| ready(&c.ends[DIALER]) && ready(&c.ends[LISTENER]))
            .map(|c| Link {
                dialer: c.ends[DIALER].node,
                listener: c.ends[LISTENER].node,
                kind: c.kind,
            })
            .collect()
    }

    /// The connected components of the online nodes under [`Sim::links`], largest first.
    pub fn components(&self) -> Vec<Vec<usize>> {
        let n = self.nodes.len();
        let mut parent: Vec<usize> = (0..n).collect();
        fn root(parent: &mut [usize], mut x: usize) -> usize {
            while parent[x] != x {
                parent[x] = parent[parent[x]];
                x = parent[x];
            }
            x
        }
        for l in self.links() {
            let (a, b) = (root(&mut parent, l.dialer), root(&mut parent, l.listener));
            if a != b {
                parent[a] = b;
            }
        }
        let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for i in (0..n).filter(|&i| self.nodes[i].online()) {
            let r = root(&mut parent, i);
            groups.entry(r).or_default().push(i);
        }
        let mut out: Vec<Vec<usize>> = groups.into_values().collect();
        out.sort_by_key(|g| std::cmp::Reverse(g.len()));
        out
    }

    /// Counters so far.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Invariant violations seen so far (the first hundred in full).
    pub fn violations(&self) -> &[String] {
        &self.violations
    }

    /// Number of invariant violations seen so far.
    pub fn violation_count(&self) -> u64 {
        self.violation_count
    }

    /// A hash of every event processed and every pool output carried out so far.
    pub fn trace_hash(&self) -> u64 {
        self.trace.finish()
    }

    // ----- events --------------------------------------------------------------------------

    fn process(&mut self, event: Event) {
        self.now.hash(&mut self.trace);
        match event {
            Event::Start(n) => {
                (0u8, n).hash(&mut self.trace);
                self.start_node(n);
            }
            Event::Stop(n) => {
                (1u8, n).hash(&mut self.trace);
                self.stop_node(n);
            }
            Event::PoolWake(n, life) => {
                (2u8, n).hash(&mut self.trace);
                self.pool_wake(n, life);
            }
            Event::PeerWake(c, side) => {
                (3u8, c, side).hash(&mut self.trace);
                self.peer_wake(c, side);
            }
            Event::Syn(c) => {
                (4u8, c).hash(&mut self.trace);
                self.syn(c);
            }
            Event::Connected(c) => {
                (5u8, c).hash(&mut self.trace);
                self.connected(c);
            }
            Event::DialFailed(n, life, req) => {
                (6u8, n, req).hash(&mut self.trace);
                if self.current(n, life) {
                    self.stats.dials_failed += 1;
                    self.nodes[n].dials.remove(&req);
                    if let Some(p) = self.nodes[n].pool.as_mut() {
                        p.handle_dial_failed(self.now, req);
                    }
                    self.after_pool(n);
                }
            }
            Event::Segment(c, to, segment) => {
                (7u8, c, to).hash(&mut self.trace);
                match segment {
                    Segment::Data(bytes) => {
                        // The frame header holds the payload's checksum: enough to tell
                        // two payloads apart without hashing every byte.
                        bytes[..bytes.len().min(24)].hash(&mut self.trace);
                        self.data(c, to, &bytes);
                    }
                    Segment::Fin => self.remote_closed(c, to, DisconnectReason::RemoteClosed),
                    Segment::Rst => self.remote_closed(
                        c,
                        to,
                        DisconnectReason::Io("connection reset by peer".into()),
                    ),
                }
            }
            Event::Input(n, life, input) => {
                (8u8, n).hash(&mut self.trace);
                self.input(n, life, input);
            }
            Event::Misbehave(c, side) => {
                (9u8, c, side).hash(&mut self.trace);
                if self.open(c, side).is_some() {
                    let bytes = self.bad_frame.clone();
                    self.transmit(c, 1 - side, Segment::Data(bytes));
                    let next = self.now + self.config.misbehave_interval;
                    self.agenda.push(next, Event::Misbehave(c, side));
                }
            }
            Event::Cut(c) => {
                (10u8, c).hash(&mut self.trace);
                let mut cut = false;
                for side in [DIALER, LISTENER] {
                    if self.open(c, side).is_some() {
                        cut = true;
                        let reason = DisconnectReason::Io("connection timed out".into());
                        self.close_end(c, side, reason, false);
                    }
                }
                self.stats.link_failures += u64::from(cut);
            }
            Event::PartitionStart(i) | Event::PartitionEnd(i) => {
                (11u8, i).hash(&mut self.trace);
            }
        }
    }

    fn current(&self, n: usize, life: u32) -> bool {
        let node = &self.nodes[n];
        node.online() && node.life == life
    }

    fn violation(&mut self, what: String) {
        self.violation_count += 1;
        if self.violations.len() < MAX_VIOLATIONS_KEPT {
            let at = self.elapsed().as_secs_f64();
            self.violations.push(format!("t={at:.3}s: {what}"));
        }
    }

    fn exponential(&mut self, mean: Duration) -> Duration {
        let u = 1.0 - self.rng.f64();
        mean.mul_f64(-u.ln())
    }

    // ----- nodes ---------------------------------------------------------------------------

    fn start_node(&mut self, n: usize) {
        if self.nodes[n].online() {
            return;
        }
        let now = self.now;
        let mut config = self.config.pool.clone();
        config.advertise = vec![self.nodes[n].addr];
        let seed = self.rng.u64(..);
        let node = &mut self.nodes[n];
        let cold = node.saved.is_none();
        let mut pool = match node.saved.take() {
            Some((book, bans)) => PoolMachine::with_state(config, book, bans, seed, now),
            None => PoolMachine::new(config, node.secret, seed, now),
        };
        if cold {
            for s in self.dns_seed_answer(n) {
                let a = self.nodes[s].addr;
                pool.add_addresses(now, &[(a, ServiceFlags::NETWORK, now)], a);
            }
        }
        let node = &mut self.nodes[n];
        node.pool = Some(pool);
        node.sessions.push(Session {
            start: now,
            end: None,
            reached_target: None,
            cold,
        });
        if let Some(churn) = self.config.churn.clone() {
            if !self.nodes[n].bootstrap {
                let up = self.exponential(churn.mean_up);
                self.agenda.push(now + up, Event::Stop(n));
            }
        }
        self.after_pool(n);
    }

    /// A DNS seed's answer to node `n`: one bootstrap node, or the other bootstrap nodes for
    /// one of them.
    fn dns_seed_answer(&mut self, n: usize) -> Vec<usize> {
        let seeds = self.config.seeds.min(self.nodes.len());
        if n < seeds {
            (0..seeds).filter(|&s| s != n).collect()
        } else if seeds > 0 {
            vec![self.rng.usize(..seeds)]
        } else {
            Vec::new()
        }
    }

    fn stop_node(&mut self, n: usize) {
        if !self.nodes[n].online() {
            return;
        }
        let Some(churn) = self.config.churn.clone() else {
            return;
        };
        self.stats.departures += 1;
        let crash = self.rng.f64() < churn.crash_share;
        let ends: Vec<(ConnId, Side)> = self.nodes[n].peers.values().copied().collect();
        for (c, side) in ends {
            if let Some(conn) = self.conns.get_mut(&c) {
                conn.ends[side].state = EndState::Closed;
            }
            if !crash {
                self.transmit(c, 1 - side, Segment::Fin);
            }
            self.collect(c);
        }
        let now = self.now;
        let node = &mut self.nodes[n];
        if let Some(pool) = node.pool.take() {
            node.saved = Some((pool.addrman().clone(), pool.banman().bans().clone()));
        }
        node.life += 1;
        node.armed = None;
        node.peers.clear();
        node.joined.clear();
        node.nonces = Nonces::default();
        node.dials.clear();
        if let Some(s) = node.sessions.last_mut() {
            s.end = Some(now);
        }
        let down = self.exponential(churn.mean_down);
        self.agenda.push(now + down, Event::Start(n));
    }

    // ----- the pool ------------------------------------------------------------------------

    fn pool_wake(&mut self, n: usize, life: u32) {
        if !self.current(n, life) {
            return;
        }
        let now = self.now;
        let node = &mut self.nodes[n];
        if node.armed.is_some_and(|t| t <= now) {
            node.armed = None;
        }
        let Some(pool) = node.pool.as_mut() else {
            return;
        };
        let mut floor = now;
        if pool.poll_timeout().is_some_and(|t| t <= now) {
            pool.handle_timeout(now);
            if pool.poll_timeout().is_some_and(|t| t <= now) {
                self.violation(format!(
                    "node {n}: pool timer still due right after handle_timeout"
                ));
                // Step over it rather than spin at this instant.
                floor = now + Duration::from_millis(1);
            }
        }
        self.drain_pool(n);
        self.arm_pool(n, floor);
        self.check_node(n);
    }

    /// The drain contract: carry out every output, then arm the next wake-up.
    fn after_pool(&mut self, n: usize) {
        self.drain_pool(n);
        self.arm_pool(n, self.now);
        self.check_node(n);
    }

    fn drain_pool(&mut self, n: usize) {
        while let Some(out) = self.nodes[n].pool.as_mut().and_then(|p| p.poll_output()) {
            self.carry_out(n, out);
        }
    }

    /// Schedules a wake-up at the pool's next deadline (not before `floor`), unless an earlier
    /// one is already scheduled.
    fn arm_pool(&mut self, n: usize, floor: Time) {
        let node = &mut self.nodes[n];
        let Some(t) = node.pool.as_ref().and_then(|p| p.poll_timeout()) else {
            return;
        };
        let at = t.max(floor);
        if node.armed.map_or(true, |a| at < a) {
            node.armed = Some(at);
            let life = node.life;
            self.agenda.push(at, Event::PoolWake(n, life));
        }
    }

    fn carry_out(&mut self, n: usize, out: Output) {
        let now = self.now;
        match out {
            Output::Dial { req, addr, kind } => {
                (20u8, n, req, addr).hash(&mut self.trace);
                self.dial(n, req, addr, kind);
            }
            Output::Disconnect { peer, reason } => {
                (21u8, n, peer, reason.to_string()).hash(&mut self.trace);
                if let Some(&(c, side)) = self.nodes[n].peers.get(&peer) {
                    if let Some(o) = self.open_mut(c, side) {
                        o.machine.disconnect(now, reason);
                    }
                    self.drain_peer(c, side);
                }
            }
            Output::SendGetAddr { peer } => {
                (22u8, n, peer).hash(&mut self.trace);
                if let Some(&(c, side)) = self.nodes[n].peers.get(&peer) {
                    if let Some(o) = self.open_mut(c, side) {
                        let _ = o.machine.queue_message(NetworkMessage::GetAddr, false);
                    }
                    self.drain_peer(c, side);
                }
            }
            Output::SendAddrs { peer, addrs } => {
                (23u8, n, peer, addrs.len()).hash(&mut self.trace);
                if let Some(&(c, side)) = self.nodes[n].peers.get(&peer) {
                    if let Some(o) = self.open_mut(c, side) {
                        o.machine.push_addr(&addrs);
                    }
                    self.drain_peer(c, side);
                }
            }
            Output::Event(e) => {
                (24u8, n, format!("{e:?}")).hash(&mut self.trace);
                self.pool_event(n, e);
            }
            Output::Reseed => {
                (25u8, n).hash(&mut self.trace);
                self.stats.reseeds += 1;
                let addrs: Vec<NetAddr> = self
                    .dns_seed_answer(n)
                    .into_iter()
                    .map(|s| self.nodes[s].addr)
                    .collect();
                if let Some(pool) = self.nodes[n].pool.as_mut() {
                    for a in addrs {
                        pool.add_addresses(now, &[(a, ServiceFlags::NETWORK, now)], a);
                    }
                }
            }
        }
    }

    fn pool_event(&mut self, n: usize, e: PoolEvent) {
        let now = self.now;
        let target = self.config.target_outbound();
        match e {
            PoolEvent::PeerJoined {
                peer, kind, addr, ..
            } => {
                if self.nodes[n].banned(&addr, now) {
                    let made: Vec<String> = self.nodes[n]
                        .bans
                        .iter()
                        .filter(|(s, _)| s.contains(&addr.host))
                        .map(|(_, until)| {
                            let at = *until - self.config.pool.banman.ban_duration;
                            format!("t={:.3}s", at.since(EPOCH).as_secs_f64())
                        })
                        .collect();
                    let how = match self.nodes[n].peers.get(&peer) {
                        Some(&(c, DIALER)) => {
                            let at = self.conns.get(&c).map_or(now, |x| x.dialed_at);
                            format!("dialed at t={:.3}s", at.since(EPOCH).as_secs_f64())
                        }
                        Some(_) => "inbound".to_string(),
                        None => "already gone".to_string(),
                    };
                    self.violation(format!(
                        "node {n}: peer {peer} at banned {addr} joined ({how}; banned at {made:?})"
                    ));
                }
                let node = &mut self.nodes[n];
                node.joined.insert(peer, kind);
                let ready = node.ready_outbound();
                if ready >= target {
                    if let Some(s) = node.sessions.last_mut() {
                        s.reached_target.get_or_insert(now);
                    }
                }
                if ready > target {
                    self.violation(format!(
                        "node {n}: {ready} automatic outbound peers, above the target {target}"
                    ));
                }
            }
            PoolEvent::PeerLeft { peer, .. } => {
                self.nodes[n].joined.remove(&peer);
            }
            PoolEvent::Banned {
                subnet,
                until,
                reason,
            } => {
                self.stats.bans += 1;
                self.nodes[n].bans.push((subnet, until));
                if reason == BanReason::Misbehaviour {
                    let honest: Vec<usize> = (0..self.nodes.len())
                        .filter(|&i| !self.nodes[i].misbehaving)
                        .filter(|&i| subnet.contains(&self.nodes[i].addr.host))
                        .collect();
                    if !honest.is_empty() {
                        self.violation(format!("node {n} banned honest node(s) {honest:?}"));
                    }
                }
            }
            PoolEvent::Evicted { .. } => self.stats.evictions += 1,
        }
    }

    fn input(&mut self, n: usize, life: u32, input: Input) {
        if !self.current(n, life) {
            return;
        }
        let now = self.now;
        let Some(pool) = self.nodes[n].pool.as_mut() else {
            return;
        };
        match input {
            Input::Handshake(peer, services) => pool.handle_handshake(now, peer, services),
            Input::Addrs(peer, addrs) => pool.handle_addrs(now, peer, &addrs),
            Input::GetAddr(peer) => pool.handle_getaddr(now, peer),
            Input::Misbehaved(peer, what) => {
                self.stats.misbehaviours += 1;
                pool.handle_misbehaviour(now, peer, what);
            }
            Input::Ping(peer, rtt) => pool.handle_ping(peer, rtt),
            Input::Disconnected(peer, reason) => pool.handle_disconnected(now, peer, reason),
        }
        self.after_pool(n);
    }

    /// Invariants of one node, checked after each of its drains.
    fn check_node(&mut self, n: usize) {
        let now = self.now;
        let target = self.config.target_outbound();
        let Some(pool) = self.nodes[n].pool.as_ref() else {
            return;
        };
        let count = pool.connman().outbound_count();
        let stale: Vec<ReqId> = pool
            .connman()
            .requests()
            .filter(|r| matches!(r.state, ConnState::Pending { since } if since + self.dial_bound < now))
            .map(|r| r.id)
            .collect();
        if count > target {
            self.violation(format!(
                "node {n}: {count} automatic outbound requests live, above the target {target}"
            ));
        }
        if !stale.is_empty() {
            self.violation(format!(
                "node {n}: dials {stale:?} pending in connman for too long"
            ));
        }
        let unanswered: Vec<ReqId> = self.nodes[n]
            .dials
            .iter()
            .filter(|(_, at)| **at + self.dial_bound < now)
            .map(|(r, _)| *r)
            .collect();
        if !unanswered.is_empty() {
            self.violation(format!("node {n}: dials {unanswered:?} never answered"));
        }
    }

    // ----- dialing -------------------------------------------------------------------------

    fn dial(&mut self, n: usize, req: ReqId, addr: NetAddr, kind: ConnKind) {
        let now = self.now;
        self.stats.dials += 1;
        if self.nodes[n].misbehaving {
            self.stats.misbehaving_dials += 1;
        }
        let life = self.nodes[n].life;
        if self.nodes[n].dials.insert(req, now).is_some() {
            self.violation(format!("node {n}: request {req} dialed twice"));
        }
        if self.nodes[n].banned(&addr, now) {
            self.violation(format!("node {n} dialed {addr}, which it banned"));
        }
        let target = self.by_addr.get(&addr).copied();
        if target == Some(n) {
            self.stats.self_dials += 1;
        }
        let lost = self.rng.f64() < self.config.dial_loss;
        let reachable = target
            .filter(|&t| self.nodes[t].online() && self.blocked(n, t, now).is_none() && !lost);
        let Some(t) = reachable else {
            let at = now + self.config.connect_timeout;
            self.agenda.push(at, Event::DialFailed(n, life, req));
            return;
        };
        self.next_conn += 1;
        let id = ConnId(self.next_conn);
        let latency = link_latency(
            self.latency_salt,
            n,
            t,
            self.config.min_latency,
            self.config.max_latency,
        );
        let end = |node| End {
            node,
            life: 0,
            state: EndState::Waiting,
        };
        self.conns.insert(
            id,
            Conn {
                latency,
                kind,
                req,
                dialed_at: now,
                target: addr,
                ends: [End { life, ..end(n) }, end(t)],
                arrival: [now; 2],
            },
        );
        self.agenda.push(now + latency, Event::Syn(id));
    }

    /// The dial reaches the listener, which accepts or refuses it.
    fn syn(&mut self, c: ConnId) {
        let now = self.now;
        let Some(conn) = self.conns.get(&c) else {
            return;
        };
        let (d, t) = (conn.ends[DIALER].node, conn.ends[LISTENER].node);
        let (d_life, req, dialed_at, latency) = (
            conn.ends[DIALER].life,
            conn.req,
            conn.dialed_at,
            conn.latency,
        );
        if !self.nodes[t].online() || self.blocked(d, t, now).is_some() {
            self.conns.remove(&c);
            let at = (dialed_at + self.config.connect_timeout).max(now);
            self.agenda.push(at, Event::DialFailed(d, d_life, req));
            return;
        }
        let peer = self.next_peer(t);
        let from = NetAddr {
            host: self.nodes[d].addr.host,
            port: 49_152 + self.rng.u16(..16_384),
        };
        let Some(pool) = self.nodes[t].pool.as_mut() else {
            return;
        };
        let verdict = pool.handle_inbound(now, peer, from);
        (30u8, t, peer, from, verdict.is_ok()).hash(&mut self.trace);
        if verdict.is_ok() && self.nodes[t].banned(&from, now) {
            self.violation(format!(
                "node {t} accepted an inbound connection from banned {from}"
            ));
        }
        let life = self.nodes[t].life;
        let accepted = verdict.is_ok();
        if accepted {
            let machine = PeerMachine::new(
                Arc::clone(&self.peer_config),
                peer,
                Direction::Inbound,
                addrs(from, self.nodes[t].addr),
                now,
                0,
                self.rng.u64(..),
            );
            let open = self.fresh_open(peer, machine, None);
            if let Some(conn) = self.conns.get_mut(&c) {
                conn.ends[LISTENER].life = life;
                conn.ends[LISTENER].state = EndState::Open(open);
            }
            self.nodes[t].peers.insert(peer, (c, LISTENER));
        } else {
            self.stats.inbound_refused += 1;
            if matches!(verdict, Err(Refused::Banned)) {
                self.stats.inbound_refused_banned += 1;
            }
            if let Some(conn) = self.conns.get_mut(&c) {
                conn.ends[LISTENER].state = EndState::Closed;
            }
        }
        self.after_pool(t);
        // The handshake segment back: not subject to loss or partitions, which the dial
        // outcome already accounts for.
        if let Some(conn) = self.conns.get_mut(&c) {
            let at = (now + latency).max(conn.arrival[DIALER]);
            conn.arrival[DIALER] = at;
            self.agenda.push(at, Event::Connected(c));
        }
        if accepted {
            self.drain_peer(c, LISTENER);
        } else {
            // Accepted by the kernel, closed at once by the node.
            self.transmit(c, DIALER, Segment::Fin);
        }
    }

    /// The dialer learns its dial succeeded.
    fn connected(&mut self, c: ConnId) {
        let now = self.now;
        let Some(conn) = self.conns.get(&c) else {
            return;
        };
        let (d, life, req, target) = (
            conn.ends[DIALER].node,
            conn.ends[DIALER].life,
            conn.req,
            conn.target,
        );
        if !self.current(d, life) {
            // The dialer went away meanwhile; its kernel answers with a reset.
            if let Some(conn) = self.conns.get_mut(&c) {
                conn.ends[DIALER].state = EndState::Closed;
            }
            self.transmit(c, LISTENER, Segment::Rst);
            self.collect(c);
            return;
        }
        self.nodes[d].dials.remove(&req);
        let peer = self.next_peer(d);
        if let Some(pool) = self.nodes[d].pool.as_mut() {
            pool.handle_dial_succeeded(now, req, peer);
        }
        let machine = PeerMachine::new(
            Arc::clone(&self.peer_config),
            peer,
            Direction::Outbound,
            addrs(target, self.nodes[d].addr),
            now,
            0,
            self.rng.u64(..),
        );
        let nonce = machine.nonce();
        self.nodes[d].nonces.insert(nonce);
        let open = self.fresh_open(peer, machine, Some(nonce));
        if let Some(conn) = self.conns.get_mut(&c) {
            conn.ends[DIALER].state = EndState::Open(open);
        }
        self.nodes[d].peers.insert(peer, (c, DIALER));
        self.after_pool(d);
        self.drain_peer(c, DIALER);
        if let Some(mean) = self.config.link_failure_mean {
            let lasts = self.exponential(mean);
            self.agenda.push(now + lasts, Event::Cut(c));
        }
    }

    // ----- connections ---------------------------------------------------------------------

    fn next_peer(&mut self, n: usize) -> PeerId {
        let node = &mut self.nodes[n];
        node.next_peer += 1;
        PeerId(node.next_peer)
    }

    fn fresh_open(&self, peer: PeerId, machine: PeerMachine, nonce: Option<u64>) -> Box<Open> {
        Box::new(Open {
            peer,
            machine,
            decoder: FrameDecoder::new(self.config.peer.chain.magic),
            buf: BytesMut::new(),
            armed: None,
            nonce,
        })
    }

    fn open(&self, c: ConnId, side: Side) -> Option<&Open> {
        match &self.conns.get(&c)?.ends[side].state {
            EndState::Open(o) => Some(o),
            _ => None,
        }
    }

    fn open_mut(&mut self, c: ConnId, side: Side) -> Option<&mut Open> {
        match &mut self.conns.get_mut(&c)?.ends[side].state {
            EndState::Open(o) => Some(o),
            _ => None,
        }
    }

    /// When the partition between `a` and `b` heals, if one is in force at `t`.
    fn blocked(&self, a: usize, b: usize, t: Time) -> Option<Time> {
        self.partitions
            .iter()
            .filter(|p| p.from <= t && t < p.until && p.side[a] != p.side[b])
            .map(|p| p.until)
            .max()
    }

    /// Sends a segment towards `to`: one latency later, plus a retransmission delay if it is
    /// lost, held while a partition separates the ends, never overtaking earlier segments.
    fn transmit(&mut self, c: ConnId, to: Side, segment: Segment) {
        let now = self.now;
        let lost = self.rng.f64() < self.config.loss;
        let Some(conn) = self.conns.get(&c) else {
            return;
        };
        let (a, b, latency) = (conn.ends[0].node, conn.ends[1].node, conn.latency);
        let mut at = now + latency;
        if lost {
            self.stats.retransmits += 1;
            at = at + self.config.retransmit;
        }
        if let Some(heal) = self.blocked(a, b, now) {
            at = at.max(heal + latency);
        }
        let Some(conn) = self.conns.get_mut(&c) else {
            return;
        };
        at = at.max(conn.arrival[to]);
        conn.arrival[to] = at;
        self.agenda.push(at, Event::Segment(c, to, segment));
    }

    fn data(&mut self, c: ConnId, to: Side, bytes: &[u8]) {
        let now = self.now;
        let Some(conn) = self.conns.get(&c) else {
            return;
        };
        let node = conn.ends[to].node;
        let other_open = matches!(conn.ends[1 - to].state, EndState::Open(_));
        let Some(o) = self.open_mut(c, to) else {
            // Nobody home. A running host answers with a reset; a crashed one stays silent.
            if self.nodes[node].online() && other_open {
                self.transmit(c, 1 - to, Segment::Rst);
            }
            return;
        };
        o.buf.extend_from_slice(bytes);
        loop {
            let before = o.buf.len();
            match o.decoder.decode(&mut o.buf) {
                Ok(None) => break,
                Ok(Some(frame)) => {
                    let kind = MessageKind::from_command(frame.command.as_str());
                    let decode = matches!(
                        kind,
                        MessageKind::Addr | MessageKind::AddrV2 | MessageKind::GetAddr
                    );
                    o.machine.handle_frame(
                        now,
                        frame.command,
                        &frame.payload,
                        frame.wire_len(),
                        decode,
                    );
                }
                Err(e) => {
                    let fatal = e.is_fatal();
                    let consumed = before.saturating_sub(o.buf.len());
                    o.machine.handle_bad_frame(now, e, consumed);
                    if fatal {
                        o.buf.clear();
                        break;
                    }
                }
            }
        }
        self.drain_peer(c, to);
    }

    fn remote_closed(&mut self, c: ConnId, to: Side, reason: DisconnectReason) {
        if self.open(c, to).is_some() {
            self.close_end(c, to, reason, false);
        }
    }

    fn peer_wake(&mut self, c: ConnId, side: Side) {
        let now = self.now;
        let Some(o) = self.open_mut(c, side) else {
            return;
        };
        if o.armed.is_some_and(|t| t <= now) {
            o.armed = None;
        }
        let mut floor = now;
        if o.machine.poll_timeout().is_some_and(|t| t <= now) {
            o.machine.handle_timeout(now);
            if o.machine.poll_timeout().is_some_and(|t| t <= now) {
                floor = now + Duration::from_millis(1);
                let n = self.conns.get(&c).map_or(usize::MAX, |x| x.ends[side].node);
                self.violation(format!(
                    "node {n}, {c:?}: peer timer still due right after handle_timeout"
                ));
            }
        }
        self.drain_peer_from(c, side, floor);
    }

    /// Carries out a peer machine's outputs, then arms its next wake-up.
    fn drain_peer(&mut self, c: ConnId, side: Side) {
        self.drain_peer_from(c, side, self.now);
    }

    /// [`Sim::drain_peer`], arming the next wake-up no earlier than `floor`.
    fn drain_peer_from(&mut self, c: ConnId, side: Side, floor: Time) {
        let now = self.now;
        let magic = self.config.peer.chain.magic;
        loop {
            let Some(o) = self.open_mut(c, side) else {
                return;
            };
            let Some(out) = o.machine.poll_output() else {
                break;
            };
            match out {
                PeerOutput::Send { message, .. } => {
                    let mut bytes = Vec::new();
                    let len = encode_message(magic, &message, &mut bytes);
                    o.machine.handle_sent(now, MessageKind::of(&message), len);
                    self.stats.messages += 1;
                    *self
                        .stats
                        .messages_by_kind
                        .entry(MessageKind::of(&message).as_str())
                        .or_default() += 1;
                    self.stats.bytes += len as u64;
                    self.transmit(c, 1 - side, Segment::Data(bytes));
                }
                PeerOutput::Event(e) => self.peer_event(c, side, e),
                PeerOutput::Disconnect(reason) => {
                    self.close_end(c, side, reason, true);
                    return;
                }
            }
        }
        self.arm_peer(c, side, floor);
    }

    /// Schedules a wake-up at the peer machine's next deadline (not before `floor`), unless an
    /// earlier one is already scheduled.
    fn arm_peer(&mut self, c: ConnId, side: Side, floor: Time) {
        let Some(o) = self.open_mut(c, side) else {
            return;
        };
        let Some(t) = o.machine.poll_timeout() else {
            return;
        };
        let at = t.max(floor);
        if o.armed.map_or(true, |a| at < a) {
            o.armed = Some(at);
            self.agenda.push(at, Event::PeerWake(c, side));
        }
    }

    fn peer_event(&mut self, c: ConnId, side: Side, e: PeerEvent) {
        let now = self.now;
        let Some(conn) = self.conns.get(&c) else {
            return;
        };
        let n = conn.ends[side].node;
        let life = conn.ends[side].life;
        let self_conn = conn.ends[DIALER].node == conn.ends[LISTENER].node;
        let Some(peer) = self.open(c, side).map(|o| o.peer) else {
            return;
        };
        let input = match e {
            PeerEvent::VersionReceived { nonce } => {
                if side == LISTENER && self.nodes[n].nonces.contains(nonce) {
                    self.stats.self_connections_caught += 1;
                    if let Some(o) = self.open_mut(c, side) {
                        o.machine.disconnect(now, DisconnectReason::SelfConnection);
                    }
                }
                return;
            }
            PeerEvent::HandshakeCompleted { version, .. } => {
                if let Some(nonce) = self.open_mut(c, side).and_then(|o| o.nonce.take()) {
                    self.nodes[n].nonces.remove(nonce);
                }
                self.stats.handshakes += 1;
                if self_conn {
                    self.violation(format!("node {n} completed a handshake with itself"));
                }
                if self.nodes[n].misbehaving {
                    let at = now + self.config.misbehave_interval;
                    self.agenda.push(at, Event::Misbehave(c, side));
                }
                Input::Handshake(peer, version.services)
            }
            PeerEvent::MessageReceived { kind, message } => match (kind, message) {
                (MessageKind::GetAddr, _) => Input::GetAddr(peer),
                (_, Some(NetworkMessage::AddrV2(list))) => Input::Addrs(peer, list),
                (_, Some(NetworkMessage::Addr(list))) => {
                    let converted = list
                        .into_iter()
                        .filter_map(|(time, a)| {
                            let sa = a.socket_addr().ok()?;
                            let na = NetAddr::from_socket(sa);
                            Some(AddrV2Message {
                                time,
                                services: a.services,
                                addr: na.to_addrv2(),
                                port: na.port,
                            })
                        })
                        .collect();
                    Input::Addrs(peer, converted)
                }
                _ => return,
            },
            PeerEvent::PingCompleted { rtt_micros } => Input::Ping(peer, rtt_micros),
            PeerEvent::Misbehaved { what, .. } => Input::Misbehaved(peer, what),
        };
        self.agenda.push(now, Event::Input(n, life, input));
    }

    /// Ends one side of a connection and tells its pool; `notify` sends a FIN to the other
    /// side (not when the other side is the one that closed).
    fn close_end(&mut self, c: ConnId, side: Side, reason: DisconnectReason, notify: bool) {
        let now = self.now;
        let Some(conn) = self.conns.get_mut(&c) else {
            return;
        };
        let (n, life) = (conn.ends[side].node, conn.ends[side].life);
        let EndState::Open(o) = std::mem::replace(&mut conn.ends[side].state, EndState::Closed)
        else {
            return;
        };
        let node = &mut self.nodes[n];
        if let Some(nonce) = o.nonce {
            node.nonces.remove(nonce);
        }
        node.peers.remove(&o.peer);
        if notify {
            self.transmit(c, 1 - side, Segment::Fin);
        }
        self.agenda.push(
            now,
            Event::Input(n, life, Input::Disconnected(o.peer, reason)),
        );
        self.collect(c);
    }

    /// Forgets a connection once neither end can act any more.
    fn collect(&mut self, c: ConnId) {
        let done = self.conns.get(&c).is_some_and(|conn| {
            conn.ends
                .iter()
                .all(|e| matches!(e.state, EndState::Closed))
        });
        if done {
            self.conns.remove(&c);
        }
    }
}

/// Connections by id. Ids are handed out in sequence, so a vector indexed by id finds one in
/// constant time; a finished connection leaves an empty slot behind.
#[derive(Default)]
struct Conns(Vec<Option<Box<Conn>>>);

impl Conns {
    fn get(&self, c: &ConnId) -> Option<&Conn> {
        self.0.get(c.0 as usize)?.as_deref()
    }

    fn get_mut(&mut self, c: &ConnId) -> Option<&mut Conn> {
        self.0.get_mut(c.0 as usize)?.as_deref_mut()
    }

    fn insert(&mut self, c: ConnId, conn: Conn) {
        let i = c.0 as usize;
        if self.0.len() <= i {
            self.0.resize_with(i + 1, || None);
        }
        self.0[i] = Some(Box::new(conn));
    }

    fn remove(&mut self, c: &ConnId) {
        if let Some(slot) = self.0.get_mut(c.0 as usize) {
            *slot = None;
        }
    }

    fn values(&self) -> impl Iterator<Item = &Conn> + '_ {
        self.0.iter().flatten().map(|c| &**c)
    }
}

fn addrs(remote: NetAddr, local: NetAddr) -> ConnectionAddrs {
    let fallback = SocketAddr::from(([0, 0, 0, 0], 0));
    ConnectionAddrs {
        remote: remote.to_socket().unwrap_or(fallback),
        local: local.to_socket(),
    }
}
