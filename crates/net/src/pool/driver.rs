//! The driver task: the only owner of the pool machine.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bitcoin::p2p::address::{AddrV2, AddrV2Message, Address};
use bitcoin::p2p::message::NetworkMessage;
use bitcoin::p2p::ServiceFlags;
use peerpool_core::addr::NetAddr;
use peerpool_core::cost::{group_label, group_shares};
use peerpool_core::pool::addrman::{AddrMan, AddrRecord, GoodOutcome, Placement};
use peerpool_core::pool::connman::{ConnError, ReqId};
use peerpool_core::pool::machine::{Output, PoolEvent as CoreEvent, Refused};
use peerpool_core::pool::PoolMachine;
use peerpool_core::{Misbehaviour, Time};
use peerpool_wire::{ChainParams, MessageKind};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};

use super::handle::{
    AddTried, AddrManInfo, Command, KnownAddress, NetTotals, PeerDetails, SessionInfo,
};
use super::io::{Accepted, Dialer};
use super::store::{Snapshot, Store};
use super::{bare_info, peer_info, Config, PeerConfigRef, SHUTDOWN_GRACE};
use crate::bus::{EventBus, PeerMessage, PoolEvent};
use crate::discovery::{SeedReport, SeedResolver};
use crate::{clock, DisconnectReason, Listeners, Peer, PeerId};

/// What peers and helper tasks report that must never be lost: at most two per connection,
/// one per dial, one per seeding.
pub(crate) enum Lifecycle {
    Joined {
        peer: PeerId,
        services: ServiceFlags,
    },
    Closed {
        peer: PeerId,
        reason: DisconnectReason,
    },
    Dialed {
        req: ReqId,
        result: io::Result<TcpStream>,
    },
    Seeded(SeedReport),
}

/// What peers report that may be dropped (or, for misbehaviour, turned into a disconnect)
/// when the driver falls behind.
pub(crate) enum Chatter {
    Addrs {
        peer: PeerId,
        addrs: Vec<AddrV2Message>,
    },
    GetAddr {
        peer: PeerId,
    },
    Ping {
        peer: PeerId,
        rtt_micros: u64,
    },
    Misbehaved {
        peer: PeerId,
        what: Misbehaviour,
    },
}

/// The receiving ends the pool was started with.
pub(crate) struct Inputs {
    pub(crate) commands: mpsc::Receiver<Command>,
    pub(crate) inbound: mpsc::Receiver<Accepted>,
}

/// A connection the pool holds.
struct Entry {
    peer: Peer,
    addr: NetAddr,
    joined: bool,
}

pub(crate) struct Driver {
    machine: PoolMachine,
    chain: ChainParams,
    peer_config: PeerConfigRef,
    dialer: Dialer,
    bus: EventBus,
    peers: BTreeMap<PeerId, Entry>,
    lifecycle_tx: mpsc::UnboundedSender<Lifecycle>,
    lifecycle_rx: mpsc::UnboundedReceiver<Lifecycle>,
    chatter_rx: mpsc::Receiver<Chatter>,
    inputs: Inputs,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    store: Option<Store>,
    /// The save in progress, which the next one waits for so files are written in order.
    saving: Option<JoinHandle<()>>,
    save_interval: Duration,
    stopping: bool,
    /// Seed addresses added again when the machine asks ([`Output::Reseed`]).
    seeds: Vec<NetAddr>,
    /// Resolver and proxy for DNS seeding on [`Output::Reseed`]; `None` when DNS seeding is
    /// off (or connect-only).
    dns_reseed: Option<(Option<SeedResolver>, Option<SocketAddr>)>,
    /// New sessions start with message logging on (the admin `log new`).
    log_new: bool,
    /// Traffic of connections already closed, for [`NetTotals`].
    closed_traffic: NetTotals,
}

impl Driver {
    pub(crate) async fn new(
        config: Config,
        base: crate::Config,
        bus: EventBus,
        inputs: Inputs,
        tracker: TaskTracker,
        shutdown: CancellationToken,
    ) -> Driver {
        let (lifecycle_tx, lifecycle_rx) = mpsc::unbounded_channel();
        let (chatter_tx, chatter_rx) = mpsc::channel(config.notification_capacity.max(1));
        let mut base = base;
        let mut peer = (*base.peer).clone();
        // Bans are the pool's decision (its ban manager), not each connection's.
        peer.ban_threshold = None;
        let chain = peer.chain.clone();
        base.peer = Arc::new(peer);
        base.listeners = pool_listeners(
            base.listeners.clone(),
            lifecycle_tx.clone(),
            chatter_tx,
            bus.clone(),
        );
        let peer_config = Arc::new(base);

        let now = clock::now();
        let seed = random_u64();
        let store = config.data_dir.as_deref().map(Store::new);
        let (book, bans) = match &store {
            Some(store) => {
                let store = store.clone();
                let addrman_config = config.machine.addrman.clone();
                tokio::task::spawn_blocking(move || store.load(&addrman_config, seed ^ 3))
                    .await
                    .unwrap_or((None, None))
            }
            None => (None, None),
        };
        let book = book.unwrap_or_else(|| {
            AddrMan::new(
                config.machine.addrman.clone(),
                random_key(),
                fastrand::Rng::with_seed(seed ^ 1),
            )
        });
        let mut machine_config = config.machine.clone();
        if let Some(cap) = config.max_inbound {
            let lower = machine_config
                .connman
                .inbound_cap
                .map_or(cap, |c| c.min(cap));
            machine_config.connman.inbound_cap = Some(lower);
        }
        let mut machine =
            PoolMachine::with_state(machine_config, book, bans.unwrap_or_default(), seed, now);
        for addr in &config.add_nodes {
            if let Err(e) = machine.add_node(now, *addr) {
                warn!("addnode {addr}: {e}");
            }
        }
        if machine.addrman().is_empty() && !config.seeds.is_empty() {
            let added: usize = config
                .seeds
                .iter()
                .map(|a| machine.add_addresses(now, &[(*a, ServiceFlags::NONE, now)], *a))
                .sum();
            info!("address book empty: added {added} seed addresses");
        }
        let dialer = Dialer {
            proxy: config.proxy,
            proxy_randomize: config.proxy_randomize,
            bind: config.outbound_bind,
            timeout: config.connect_timeout,
        };
        let driver = Driver {
            machine,
            chain,
            peer_config,
            dialer,
            bus,
            peers: BTreeMap::new(),
            lifecycle_tx,
            lifecycle_rx,
            chatter_rx,
            inputs,
            tracker,
            shutdown,
            store,
            saving: None,
            save_interval: config.save_interval,
            stopping: false,
            seeds: config.seeds.clone(),
            dns_reseed: (config.dns_seed && !config.machine.connman.connect_only)
                .then(|| (config.seed_resolver.clone(), config.proxy)),
            log_new: false,
            closed_traffic: NetTotals::default(),
        };
        let connect_only = config.machine.connman.connect_only;
        if config.dns_seed && !connect_only && driver.machine.addrman().is_empty() {
            driver.seed_from_dns(config.seed_resolver, config.proxy);
        }
        driver
    }

    /// Queries the chain's DNS seeds in a task of its own; the answer comes back as a
    /// lifecycle notification.
    fn seed_from_dns(&self, resolver: Option<SeedResolver>, proxy: Option<SocketAddr>) {
        if self.chain.dns_seeds.is_empty() {
            return;
        }
        let resolver = match (resolver, proxy) {
            (Some(r), _) => r,
            (None, Some(proxy)) => SeedResolver::via_tor(proxy),
            (None, None) => match SeedResolver::system() {
                Ok(r) => r,
                Err(e) => {
                    warn!("DNS seeds not queried: {e}");
                    return;
                }
            },
        };
        info!(
            "address book empty: querying {} DNS seeds",
            self.chain.dns_seeds.len()
        );
        let chain = self.chain.clone();
        let tx = self.lifecycle_tx.clone();
        let shutdown = self.shutdown.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                () = shutdown.cancelled() => {}
                report = resolver.resolve_chain(&chain) => {
                    let _ = tx.send(Lifecycle::Seeded(report));
                }
            }
        });
    }

    /// The book has nothing usable left: seed it again, as at start.
    fn reseed(&mut self) {
        let now = clock::now();
        for a in &self.seeds {
            self.machine
                .add_addresses(now, &[(*a, ServiceFlags::NONE, now)], *a);
        }
        if let Some((resolver, proxy)) = self.dns_reseed.clone() {
            self.seed_from_dns(resolver, proxy);
        }
    }

    pub(crate) async fn run(mut self) {
        let far = || clock::now() + Duration::from_secs(86_400);
        let sleep = tokio::time::sleep_until(clock::instant_of(far()));
        tokio::pin!(sleep);
        let mut armed: Option<Time> = None;
        let period = self.save_interval.max(Duration::from_millis(1));
        let mut save_tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        save_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut cost_tick = tokio::time::interval(GROUP_COST_INTERVAL);
        cost_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            self.drain();
            let deadline = self.machine.poll_timeout();
            if deadline != armed {
                armed = deadline;
                sleep
                    .as_mut()
                    .reset(clock::instant_of(deadline.unwrap_or_else(far)));
            }
            tokio::select! {
                biased;
                () = self.shutdown.cancelled() => break,
                Some(n) = self.lifecycle_rx.recv() => self.on_lifecycle(n),
                Some(c) = self.inputs.commands.recv() => self.on_command(c),
                () = &mut sleep, if armed.is_some() => {
                    armed = None;
                    self.machine.handle_timeout(clock::now());
                }
                Some(a) = self.inputs.inbound.recv() => self.on_inbound(a),
                Some(n) = self.chatter_rx.recv() => self.on_chatter(n),
                _ = save_tick.tick() => self.save(None),
                _ = cost_tick.tick() => self.share_group_costs(),
            }
        }
        self.shut_down().await;
    }

    // ----- inputs ------------------------------------------------------------------------

    fn on_lifecycle(&mut self, note: Lifecycle) {
        let now = clock::now();
        match note {
            Lifecycle::Joined { peer, services } => {
                if let Some(e) = self.peers.get_mut(&peer) {
                    e.joined = true;
                }
                self.machine.handle_handshake(now, peer, services);
            }
            Lifecycle::Closed { peer, reason } => self.closed(now, peer, reason),
            Lifecycle::Dialed { req, result } => self.dialed(now, req, result),
            Lifecycle::Seeded(report) => {
                info!(
                    "DNS seeds: {} addresses from {} of {} seeds",
                    report.addrs.len(),
                    report.seeds_answered(),
                    report.per_seed.len()
                );
                for (seed, r) in &report.per_seed {
                    if let Err(e) = r {
                        debug!(%seed, "seed gave no addresses: {e}");
                    }
                }
                // Seeds list nodes they found working: assume full nodes, as Core does.
                let services = ServiceFlags::NETWORK | ServiceFlags::WITNESS;
                for a in &report.addrs {
                    self.machine.add_addresses(now, &[(*a, services, now)], *a);
                }
            }
        }
    }

    fn closed(&mut self, now: Time, peer: PeerId, reason: DisconnectReason) {
        if let Some(e) = self.peers.remove(&peer) {
            if let Some(s) = e.peer.stats() {
                self.closed_traffic.bytes_sent += s.bytes_sent;
                self.closed_traffic.bytes_recv += s.bytes_recv;
            }
            debug!(%peer, %reason, "connection closed");
            self.machine.handle_disconnected(now, peer, reason);
        }
    }

    fn dialed(&mut self, now: Time, req: ReqId, result: io::Result<TcpStream>) {
        let addr = self
            .machine
            .connman()
            .requests()
            .find(|r| r.id == req)
            .map(|r| r.addr);
        let (addr, stream) = match (addr, result) {
            (Some(addr), Ok(stream)) if !self.stopping => (addr, stream),
            (_, Err(e)) => {
                debug!(%req, "dial failed: {e}");
                self.machine.handle_dial_failed(now, req);
                return;
            }
            _ => {
                self.machine.handle_dial_failed(now, req);
                return;
            }
        };
        let peer = Peer::new_outbound(Arc::clone(&self.peer_config), self.dialer.socket_of(&addr));
        let id = peer.id();
        self.machine.handle_dial_succeeded(now, req, id);
        if self.machine.connman().connection(id).is_none() {
            // The request was no longer wanted: nothing holds a place for this connection.
            return;
        }
        self.start_peer(now, peer, addr, stream);
    }

    fn on_inbound(&mut self, accepted: Accepted) {
        let now = clock::now();
        let addr = NetAddr::from_socket(accepted.addr);
        let peer = Peer::new_inbound(Arc::clone(&self.peer_config));
        match self.machine.handle_inbound(now, peer.id(), addr) {
            Ok(()) => self.start_peer(now, peer, addr, accepted.stream),
            Err(Refused::Banned) => debug!(%addr, "inbound refused: banned"),
            Err(Refused::Full(why)) => debug!(%addr, "inbound refused: {why:?}"),
            Err(Refused::NetworkInactive) => {
                debug!(%addr, "inbound refused: network activity is off");
            }
        }
    }

    /// Hands a connection the machine has accounted for to its peer.
    fn start_peer(&mut self, now: Time, peer: Peer, addr: NetAddr, stream: TcpStream) {
        let id = peer.id();
        if self.log_new {
            peer.set_message_logging(true);
            info!(%id, %addr, "message logging on for a new session");
        }
        self.peers.insert(
            id,
            Entry {
                peer: peer.clone(),
                addr,
                joined: false,
            },
        );
        peer.associate_connection(stream);
        // A socket that failed before its task started reports nothing through the listeners.
        if let Some(reason) = peer.disconnect_reason() {
            self.closed(now, id, reason);
        }
    }

    fn on_chatter(&mut self, note: Chatter) {
        let now = clock::now();
        match note {
            Chatter::Addrs { peer, addrs } => self.machine.handle_addrs(now, peer, &addrs),
            Chatter::GetAddr { peer } => self.machine.handle_getaddr(now, peer),
            Chatter::Ping { peer, rtt_micros } => {
                if let Some(e) = self.peers.get(&peer) {
                    info!(%peer, addr = %e.addr, rtt_ms = rtt_micros as f64 / 1000.0, "ping");
                }
                self.machine.handle_ping(peer, rtt_micros);
            }
            Chatter::Misbehaved { peer, what } => self.machine.handle_misbehaviour(now, peer, what),
        }
    }

    fn on_command(&mut self, command: Command) {
        let now = clock::now();
        // A requester that went away does not care for the answer.
        match command {
            Command::Connect(addr, reply) => {
                info!(%addr, "connecting (one try)");
                self.machine.one_try(now, addr);
                let _ = reply.send(());
            }
            Command::AddNode(addr, reply) => {
                let _ = reply.send(self.machine.add_node(now, addr));
            }
            Command::RemoveNode(addr, reply) => {
                let _ = reply.send(self.machine.remove_node(addr));
            }
            Command::DisconnectPeer(peer, reply) => {
                let _ = reply.send(self.machine.disconnect_peer(peer));
            }
            Command::DisconnectAddr(addr, reply) => {
                let _ = reply.send(self.machine.disconnect_addr(addr));
            }
            Command::Ban(subnet, duration, reply) => {
                let _ = reply.send(self.machine.ban(now, subnet, now + duration));
            }
            Command::Unban(subnet, reply) => {
                let lifted = self.machine.unban(&subnet);
                if lifted {
                    info!(%subnet, "unbanned");
                }
                let _ = reply.send(lifted);
            }
            Command::ListBans(reply) => {
                let bans = self
                    .machine
                    .banman()
                    .bans()
                    .iter()
                    .filter(|b| b.is_active(now))
                    .copied()
                    .collect();
                let _ = reply.send(bans);
            }
            Command::ClearBans(reply) => {
                self.machine.clear_bans();
                info!("all bans lifted");
                let _ = reply.send(());
            }
            Command::PeerCount(reply) => {
                let _ = reply.send(self.peers.values().filter(|e| e.joined).count());
            }
            Command::ConnectedPeers(reply) => {
                let peers = self
                    .peers
                    .iter()
                    .filter(|(_, e)| e.joined)
                    .map(|(id, e)| self.info_of(*id, e))
                    .collect();
                let _ = reply.send(peers);
            }
            Command::PeerDetails(reply) => {
                let details = self
                    .peers
                    .iter()
                    .map(|(id, e)| PeerDetails {
                        id: *id,
                        addr: e.addr,
                        direction: e.peer.direction(),
                        kind: self
                            .machine
                            .connman()
                            .connection(*id)
                            .map_or(super::ConnKind::Inbound, |c| c.kind),
                        permissions: self.machine.permissions(*id).to_vec(),
                        joined: e.joined,
                        stats: e.peer.stats(),
                    })
                    .collect();
                let _ = reply.send(details);
            }
            Command::MarkUseful(peer, what, reply) => {
                self.machine.handle_useful(clock::now(), peer, what);
                let _ = reply.send(());
            }
            Command::AddedNodes(reply) => {
                let _ = reply.send(self.machine.connman().manual_peers().to_vec());
            }
            Command::AddrManInfo(reply) => {
                let book = self.machine.addrman();
                let _ = reply.send(AddrManInfo {
                    networks: book.counts_by_network().collect(),
                    total: book.counts(),
                });
            }
            Command::AddAddresses(addrs, reply) => {
                let records: Vec<AddrRecord> = addrs
                    .iter()
                    .map(|a| (*a, ServiceFlags::NETWORK | ServiceFlags::WITNESS, now))
                    .collect();
                let added = records
                    .iter()
                    .map(|r| self.machine.add_addresses(now, &[*r], r.0))
                    .sum();
                let _ = reply.send(added);
            }
            Command::AddTried(addr, reply) => {
                let record = (addr, ServiceFlags::NETWORK | ServiceFlags::WITNESS, now);
                // As Core: an address the book already knows fails to be added, tried or not.
                let outcome = if self.machine.add_addresses(now, &[record], addr) == 0 {
                    AddTried::NotAdded
                } else if matches!(
                    self.machine.mark_tried(now, &addr),
                    GoodOutcome::MovedToTried | GoodOutcome::AlreadyTried
                ) {
                    AddTried::Tried
                } else {
                    AddTried::NotTried
                };
                let _ = reply.send(outcome);
            }
            Command::Save(reply) => self.save(Some(reply)),
            Command::NodeAddresses(count, network, reply) => {
                let mut all: Vec<_> = self
                    .machine
                    .addrman()
                    .entries()
                    .filter(|e| network.map_or(true, |n| e.addr.network() == n))
                    .filter(|e| !e.is_terrible(now))
                    // Addresses we banned are not handed out (Bitcoin Core filters the same).
                    .filter(|e| !self.machine.banman().is_banned(&e.addr, now))
                    .collect();
                fastrand::shuffle(&mut all);
                if count != 0 {
                    all.truncate(count);
                }
                let _ = reply.send(all);
            }
            Command::NetTotals(reply) => {
                let mut totals = self.closed_traffic;
                for s in self.peers.values().filter_map(|e| e.peer.stats()) {
                    totals.bytes_sent += s.bytes_sent;
                    totals.bytes_recv += s.bytes_recv;
                }
                let _ = reply.send(totals);
            }
            Command::SetNetworkActive(active, reply) => {
                if active != self.machine.network_active() {
                    info!(active, "network activity set");
                }
                self.machine.set_network_active(active);
                let _ = reply.send(());
            }
            Command::NetworkActive(reply) => {
                let _ = reply.send(self.machine.network_active());
            }
            Command::Sessions(reply) => {
                let _ = reply.send(self.sessions());
            }
            Command::ToggleLog(peer, reply) => {
                let _ = reply.send(self.toggle_log(peer));
            }
            Command::LogNew(on, reply) => {
                self.log_new = on.unwrap_or(!self.log_new);
                info!(on = self.log_new, "message logging of new sessions set");
                let _ = reply.send(self.log_new);
            }
            Command::KnownAddresses(reply) => {
                let _ = reply.send(self.known_addresses(now));
            }
            Command::SendMessage(peer, msg, reply) => {
                let _ = reply.send(self.send_message(peer, *msg));
            }
            Command::PingAll(reply) => {
                let mut sent = 0;
                for e in self.peers.values().filter(|e| e.joined) {
                    if e.peer.ping_now() {
                        sent += 1;
                    }
                }
                let _ = reply.send(sent);
            }
        }
    }

    // ----- outputs -----------------------------------------------------------------------

    /// The drain contract: every output of the last input, in order.
    fn drain(&mut self) {
        while let Some(output) = self.machine.poll_output() {
            self.carry_out(output);
        }
    }

    fn carry_out(&mut self, output: Output) {
        match output {
            Output::Dial { req, addr, kind } => {
                if self.stopping {
                    return;
                }
                if !self.machine.network_active() {
                    // Only `addnode onetry` asks while paused; answered at once, as a failed
                    // dial, so no slot waits on it.
                    let _ = self.lifecycle_tx.send(Lifecycle::Dialed {
                        req,
                        result: Err(io::Error::other("network activity is off")),
                    });
                    return;
                }
                debug!(%req, %addr, kind = kind.as_str(), "dialing");
                let dialer = self.dialer.clone();
                let tx = self.lifecycle_tx.clone();
                let shutdown = self.shutdown.clone();
                self.tracker.spawn(async move {
                    tokio::select! {
                        () = shutdown.cancelled() => {}
                        result = dialer.connect(addr) => {
                            let _ = tx.send(Lifecycle::Dialed { req, result });
                        }
                    }
                });
            }
            Output::Disconnect { peer, reason } => {
                if let Some(e) = self.peers.get(&peer) {
                    debug!(%peer, %reason, "disconnecting");
                    e.peer.disconnect_with(reason);
                }
            }
            Output::SendGetAddr { peer } => {
                if let Some(e) = self.peers.get(&peer) {
                    e.peer.queue_message(NetworkMessage::GetAddr, None);
                }
            }
            Output::SendAddrs { peer, addrs } => {
                if let Some(e) = self.peers.get(&peer) {
                    e.peer.push_addr(&addrs);
                }
            }
            Output::Event(event) => self.publish(event),
            Output::Reseed => self.reseed(),
        }
    }

    fn publish(&mut self, event: CoreEvent) {
        let event = match event {
            CoreEvent::PeerJoined {
                peer,
                addr,
                direction,
                kind,
            } => {
                let Some(e) = self.peers.get(&peer) else {
                    return;
                };
                let info = self.info_of(peer, e);
                let height = e.peer.stats().map_or(0, |s| s.starting_height);
                info!(
                    %peer,
                    %addr,
                    %direction,
                    kind = kind.as_str(),
                    user_agent = %info.user_agent,
                    version = info.version,
                    height,
                    "peer joined"
                );
                PoolEvent::PeerJoined(info)
            }
            CoreEvent::PeerLeft { peer, addr, reason } => {
                info!(%peer, %addr, %reason, "peer left");
                PoolEvent::PeerLeft {
                    id: peer,
                    addr: self.dialer.socket_of(&addr),
                    reason,
                }
            }
            CoreEvent::Banned {
                subnet,
                until,
                reason,
            } => {
                let secs = until.since(clock::now()).as_secs();
                info!(%subnet, for_secs = secs, %reason, "banned");
                PoolEvent::Banned {
                    subnet: subnet.to_string(),
                    until: until.as_secs(),
                    reason: reason.to_string(),
                }
            }
            CoreEvent::Evicted { peer, addr } => {
                info!(%peer, %addr, "evicted to make room for an inbound peer");
                PoolEvent::Evicted {
                    id: peer,
                    addr: self.dialer.socket_of(&addr),
                }
            }
        };
        self.bus.publish(event);
    }

    fn info_of(&self, id: PeerId, e: &Entry) -> crate::bus::PeerInfo {
        match e.peer.stats() {
            Some(s) => peer_info(&s),
            None => bare_info(id, self.dialer.socket_of(&e.addr), e.peer.direction()),
        }
    }

    // ----- persistence and shutdown --------------------------------------------------------

    /// Writes the state in the background, after any earlier save; `reply` hears the outcome.
    fn save(&mut self, reply: Option<tokio::sync::oneshot::Sender<io::Result<()>>>) {
        let Some(store) = self.store.clone() else {
            if let Some(r) = reply {
                let _ = r.send(Ok(()));
            }
            return;
        };
        let snapshot = Snapshot {
            peers: self.machine.addrman().serialize(),
            bans: self.machine.banman().bans().encode(),
        };
        let previous = self.saving.take();
        self.saving = Some(tokio::spawn(async move {
            if let Some(p) = previous {
                let _ = p.await;
            }
            let result = tokio::task::spawn_blocking(move || store.save(&snapshot))
                .await
                .unwrap_or_else(|e| Err(io::Error::other(e.to_string())));
            match &result {
                Ok(()) => debug!("address book and bans saved"),
                Err(e) => error!("{e}"),
            }
            if let Some(r) = reply {
                let _ = r.send(result);
            }
        }));
    }

    async fn shut_down(mut self) {
        self.stopping = true;
        info!("pool stopping: disconnecting {} peers", self.peers.len());
        for e in self.peers.values() {
            e.peer.disconnect_with(DisconnectReason::Shutdown);
        }
        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        while !self.peers.is_empty() {
            match tokio::time::timeout_at(deadline, self.lifecycle_rx.recv()).await {
                Ok(Some(Lifecycle::Closed { peer, reason })) => {
                    self.closed(clock::now(), peer, reason);
                    self.drain();
                }
                Ok(Some(Lifecycle::Dialed { req, .. })) => {
                    self.machine.handle_dial_failed(clock::now(), req);
                    self.drain();
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => {
                    warn!(
                        "{} peers still open after {SHUTDOWN_GRACE:?}",
                        self.peers.len()
                    );
                    break;
                }
            }
        }
        self.tracker.close();
        self.tracker.wait().await;
        self.save(None);
        if let Some(saving) = self.saving.take() {
            let _ = saving.await;
        }
        if let Some(store) = &self.store {
            info!(
                "pool stopped; {} addresses and {} bans kept in {}",
                self.machine.addrman().size(),
                self.machine.banman().bans().len(),
                store.dir().display()
            );
        } else {
            info!("pool stopped");
        }
    }
}

/// How often the driver recomputes the group share of every session's cost. Sessions read
/// their share from an atomic, so the hot path never waits for the driver.
const GROUP_COST_INTERVAL: Duration = Duration::from_secs(1);

/// The admin interface's queries and the per-group cost.
impl Driver {
    fn details_of(&self, id: PeerId, e: &Entry) -> PeerDetails {
        PeerDetails {
            id,
            addr: e.addr,
            direction: e.peer.direction(),
            kind: self
                .machine
                .connman()
                .connection(id)
                .map_or(super::ConnKind::Inbound, |c| c.kind),
            permissions: self.machine.permissions(id).to_vec(),
            joined: e.joined,
            stats: e.peer.stats(),
        }
    }

    fn sessions(&self) -> Vec<SessionInfo> {
        let limits = &self.peer_config.cost;
        self.peers
            .iter()
            .map(|(id, e)| {
                let cost = e.peer.cost();
                let group_cost = e.peer.group_cost();
                SessionInfo {
                    details: self.details_of(*id, e),
                    netgroup: group_label(&e.addr),
                    cost,
                    group_cost,
                    priority: limits.priority(cost + group_cost),
                    logged: e.peer.message_logging(),
                    closing: e.peer.is_closing(),
                    errors: e.peer.misbehaviour_reports(),
                }
            })
            .collect()
    }

    fn toggle_log(&self, peer: PeerId) -> Option<bool> {
        let e = self.peers.get(&peer)?;
        let logged = e.peer.toggle_message_logging();
        info!(%peer, addr = %e.addr, logged, "message logging toggled");
        Some(logged)
    }

    fn known_addresses(&self, now: Time) -> Vec<KnownAddress> {
        let connected: BTreeSet<NetAddr> = self.peers.values().map(|e| e.addr).collect();
        self.machine
            .addrman()
            .listing()
            .into_iter()
            .map(|i| KnownAddress {
                addr: i.addr,
                source: i.source,
                tried: matches!(i.placement, Placement::Tried),
                attempts: i.attempts,
                last_try: i.last_try,
                last_success: i.last_success,
                services: i.services,
                connected: connected.contains(&i.addr),
                banned: self.machine.banman().is_banned(&i.addr, now),
            })
            .collect()
    }

    fn send_message(&self, peer: PeerId, msg: NetworkMessage) -> Result<(), ConnError> {
        let e = self.peers.get(&peer).ok_or(ConnError::NotConnected)?;
        if e.peer.disconnect_reason().is_some() {
            return Err(ConnError::NotConnected);
        }
        e.peer.queue_message(msg, None);
        Ok(())
    }

    /// Charges each session its share of its network group's cost.
    fn share_group_costs(&self) {
        let costs: Vec<_> = self
            .peers
            .iter()
            .map(|(id, e)| (*id, e.addr.group(), e.peer.cost()))
            .collect();
        let shares = group_shares(&costs, self.peer_config.cost.group_share);
        for (id, share) in shares {
            if let Some(e) = self.peers.get(&id) {
                e.peer.set_group_cost(share);
            }
        }
    }
}

/// The pool's own listeners, added to the caller's.
fn pool_listeners(
    base: Listeners,
    lifecycle: mpsc::UnboundedSender<Lifecycle>,
    chatter: mpsc::Sender<Chatter>,
    bus: EventBus,
) -> Listeners {
    let closed = lifecycle.clone();
    let (c1, c2, c3, c4, c5) = (
        chatter.clone(),
        chatter.clone(),
        chatter.clone(),
        chatter.clone(),
        chatter,
    );
    let wanted = bus.clone();
    base.on_handshake(move |p, v| {
        let _ = lifecycle.send(Lifecycle::Joined {
            peer: p.id(),
            services: v.services,
        });
    })
    .on_disconnect(move |p, reason| {
        let _ = closed.send(Lifecycle::Closed {
            peer: p.id(),
            reason: reason.clone(),
        });
    })
    .on_misbehaviour(move |p, what, _score| {
        let note = Chatter::Misbehaved {
            peer: p.id(),
            what: *what,
        };
        if c1.try_send(note).is_err() {
            // The pool cannot weigh it now; a peer that misbehaves under load is let go.
            p.disconnect_with(DisconnectReason::Misbehaviour(*what));
        }
    })
    .on_ping_rtt(move |p, rtt_micros| {
        let _ = c2.try_send(Chatter::Ping {
            peer: p.id(),
            rtt_micros,
        });
    })
    .on_addr(move |p, list| {
        let addrs = list
            .iter()
            .filter_map(|(time, a)| legacy_to_v2(*time, a))
            .collect();
        forward_addrs(&c3, p, addrs);
    })
    .on_addrv2(move |p, list| forward_addrs(&c4, p, list.clone()))
    .on(MessageKind::GetAddr, move |p, _| {
        let _ = c5.try_send(Chatter::GetAddr { peer: p.id() });
    })
    .on_message_when(
        move |kind| wanted.wants(kind),
        move |p, m| {
            bus.publish_message(PeerMessage {
                peer: p.id(),
                addr: p
                    .addr()
                    .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0))),
                kind: MessageKind::of(m),
                message: Arc::new(m.clone()),
            });
        },
    )
}

fn forward_addrs(chatter: &mpsc::Sender<Chatter>, p: &Peer, addrs: Vec<AddrV2Message>) {
    if chatter
        .try_send(Chatter::Addrs {
            peer: p.id(),
            addrs,
        })
        .is_err()
    {
        debug!(peer = %p.id(), "pool busy: addresses dropped");
    }
}

/// A legacy `addr` entry as an `addrv2` one; IPv4-mapped IPv6 becomes IPv4.
fn legacy_to_v2(time: u32, a: &Address) -> Option<AddrV2Message> {
    let sa = a.socket_addr().ok()?;
    let addr = match sa.ip() {
        IpAddr::V4(ip) => AddrV2::Ipv4(ip),
        IpAddr::V6(ip) => match ip.to_ipv4_mapped() {
            Some(v4) => AddrV2::Ipv4(v4),
            None => AddrV2::Ipv6(ip),
        },
    };
    Some(AddrV2Message {
        time,
        services: a.services,
        addr,
        port: sa.port(),
    })
}

/// The secret of a new address book, from the OS's generator.
fn random_key() -> [u8; 16] {
    let mut key = [0u8; 16];
    if getrandom::fill(&mut key).is_err() {
        // No OS generator: the book still works, only its bucket placement is guessable.
        warn!("no OS random generator; address book key from a weaker source");
        for b in &mut key {
            *b = fastrand::u8(..);
        }
    }
    key
}

fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    match getrandom::fill(&mut b) {
        Ok(()) => u64::from_le_bytes(b),
        Err(_) => fastrand::u64(..),
    }
}
