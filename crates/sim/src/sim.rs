//! The simulator: nodes, connections, and the agenda that drives them.
//!
//! Each node is a [`PoolMachine`]; each connection is a pair of [`PeerMachine`]s, one per end,
//! whose messages are encoded into frames, carried over a simulated link and decoded by a
//! [`FrameDecoder`] at the other end. The simulator plays the runtime's part exactly as
//! `peerpool-net` does around real sockets:
//!
//! - pool outputs are carried out in order: `Dial` opens a simulated TCP connection, a peer
//!   command is handed to the connection's peer machine (`handle_command`), events are
//!   recorded;
//! - whatever a peer machine reports reaches its pool as a separate, later input (as it would
//!   through the connection task's channel), through `handle_peer_event` as it is, and so
//!   does the end of the connection; the peer machines decode exactly the kinds the pool asks
//!   for (`wants_decoded`). The simulator adds no glue of its own between the two machines
//!   (see `peerpool_core::pool::link`);
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

use bitcoin::p2p::message::NetworkMessage;
use bytes::BytesMut;
use peerpool_core::addr::NetAddr;
use peerpool_core::peer::{ConnectionAddrs, PeerEvent};
use peerpool_core::pool::addrman::AddrMan;
use peerpool_core::pool::banman::{BanList, Subnet};
use peerpool_core::pool::connman::{ConnKind, ReqId};
use peerpool_core::pool::PoolMachine;
use peerpool_core::Time;
use peerpool_core::{DisconnectReason, PeerConfig, PeerId, PeerMachine};
use peerpool_wire::frame::{encode_frame, FrameDecoder};
use peerpool_wire::message::command_of;

use crate::config::SimConfig;
use crate::network::assign_addresses;
use crate::queue::Agenda;
use crate::trace::TraceHasher;

mod nodes;
mod wires;

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
    /// Whatever the peer's machine reported.
    Peer(PeerId, PeerEvent),
    /// The connection ended.
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
