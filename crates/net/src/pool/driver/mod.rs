//! The driver task: the only owner of the pool machine.
//!
//! It carries what happens (peer reports, finished dials and seedings, accepted connections,
//! requests from handles, deadlines) to the machine, and the machine's outputs to where they
//! are carried out (dials, peers' machines, the bus, storage). It decides nothing itself: the
//! seam between the pool and its peers is [`peerpool_core::pool::link`], and this task only
//! moves events and commands across it.
//!
//! - this module: the task, its inputs and the machine's outputs;
//! - [`commands`]: requests that change the pool;
//! - [`views`]: the read-only view of the pool that queries are answered from.

mod commands;
mod views;

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bitcoin::p2p::ServiceFlags;
use peerpool_core::addr::NetAddr;
use peerpool_core::cost::group_shares;
use peerpool_core::pool::addrman::AddrMan;
use peerpool_core::pool::connman::ReqId;
use peerpool_core::pool::machine::{Output, PoolEvent as CoreEvent, Refused};
use peerpool_core::pool::PoolMachine;
use peerpool_core::seed::{self, Stream};
use peerpool_core::{Direction, PeerCommand, PeerEvent, Time};
use peerpool_wire::ChainParams;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};

pub use views::{ConnectionCounts, PoolView};

use super::handle::{NetTotals, Request};
use super::io::{Accepted, Dialer};
use super::link::{self, PoolLink, Report, Reported};
use super::store::{Snapshot, Store};
use super::{peer_info, Config, SHUTDOWN_GRACE};
use crate::bus::{EventBus, PoolEvent};
use crate::discovery::{SeedReport, SeedResolver};
use crate::{clock, DisconnectReason, Peer, PeerId};

/// What the driver's helper tasks report: one per dial, one per seeding. Never lost (an
/// unanswered dial would hold its slot forever).
pub(crate) enum TaskDone {
    Dialed {
        req: ReqId,
        result: io::Result<TcpStream>,
    },
    Seeded(SeedReport),
}

/// The receiving ends the pool was started with.
pub(crate) struct Inputs {
    pub(crate) requests: mpsc::Receiver<Request>,
    pub(crate) inbound: mpsc::Receiver<Accepted>,
}

pub(crate) struct Driver {
    machine: PoolMachine,
    chain: ChainParams,
    peer_config: Arc<crate::Config>,
    /// What the pool's peers report through.
    link: Arc<PoolLink>,
    dialer: Dialer,
    bus: EventBus,
    /// Every connection the machine accounts for, by id.
    members: BTreeMap<PeerId, Peer>,
    reports: mpsc::UnboundedReceiver<Report>,
    tasks_tx: mpsc::UnboundedSender<TaskDone>,
    tasks_rx: mpsc::UnboundedReceiver<TaskDone>,
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
        let (reports_tx, reports) = mpsc::unbounded_channel();
        let (tasks_tx, tasks_rx) = mpsc::unbounded_channel();
        let mut base = base;
        let mut peer = (*base.peer).clone();
        PoolMachine::adapt_peer_config(&mut peer);
        let chain = peer.chain.clone();
        base.peer = Arc::new(peer);
        let peer_config = Arc::new(base);
        let link = Arc::new(PoolLink::new(
            reports_tx,
            bus.clone(),
            config.report_capacity,
        ));

        let now = clock::now();
        let seed = random_u64();
        let store = config.data_dir.as_deref().map(Store::new);
        let (book, bans) = match &store {
            Some(store) => {
                let store = store.clone();
                let addrman_config = config.machine.addrman.clone();
                let rng = seed::rng(seed, Stream::AddrMan);
                tokio::task::spawn_blocking(move || store.load(&addrman_config, rng))
                    .await
                    .unwrap_or((None, None))
            }
            None => (None, None),
        };
        let book = book.unwrap_or_else(|| {
            AddrMan::new(
                config.machine.addrman.clone(),
                random_key(),
                seed::rng(seed, Stream::AddrMan),
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
        let connect_only = config.machine.connman.connect_only;
        let driver = Driver {
            machine,
            chain,
            peer_config,
            link,
            dialer,
            bus,
            members: BTreeMap::new(),
            reports,
            tasks_tx,
            tasks_rx,
            inputs,
            tracker,
            shutdown,
            store,
            saving: None,
            save_interval: config.save_interval,
            stopping: false,
            seeds: config.seeds.clone(),
            dns_reseed: (config.dns_seed && !connect_only)
                .then(|| (config.seed_resolver.clone(), config.proxy)),
            log_new: false,
            closed_traffic: NetTotals::default(),
        };
        if config.dns_seed && !connect_only && driver.machine.addrman().is_empty() {
            driver.seed_from_dns(config.seed_resolver, config.proxy);
        }
        driver
    }

    pub(crate) async fn run(mut self) {
        let far = || clock::now() + Duration::from_secs(86_400);
        let sleep = tokio::time::sleep_until(clock::instant_of(far()));
        tokio::pin!(sleep);
        let mut armed: Option<Time> = None;
        let period = self
            .save_interval
            .clamp(Duration::from_millis(1), super::MAX_SAVE_INTERVAL);
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
                Some(r) = self.reports.recv() => self.on_report(r),
                Some(t) = self.tasks_rx.recv() => self.on_task_done(t),
                Some(r) = self.inputs.requests.recv() => self.on_request(r),
                () = &mut sleep, if armed.is_some() => {
                    armed = None;
                    self.machine.handle_timeout(clock::now());
                }
                Some(a) = self.inputs.inbound.recv() => self.on_inbound(a),
                _ = save_tick.tick() => self.save(None),
                _ = cost_tick.tick() => self.share_group_costs(),
            }
        }
        self.shut_down().await;
    }

    // ----- inputs ------------------------------------------------------------------------

    /// What a peer's machine reported, handed to the pool machine as it is.
    fn on_report(&mut self, report: Report) {
        let now = clock::now();
        match report.what {
            Reported::Event(event) => {
                if let PeerEvent::PingCompleted { rtt_micros } = &event {
                    if let Some(p) = self.machine.peer(report.peer) {
                        let rtt_ms = *rtt_micros as f64 / 1000.0;
                        info!(peer = %report.peer, addr = %p.addr, rtt_ms, "ping");
                    }
                }
                self.machine.handle_peer_event(now, report.peer, &event);
                if let Some(peer) = self.members.get(&report.peer) {
                    let backlog = &peer.inner.session.pool_backlog;
                    if link::handled(backlog, self.link.capacity) {
                        peer.inner.wake.notify_one();
                    }
                }
            }
            Reported::Closed(reason) => self.closed(now, report.peer, reason),
        }
    }

    fn on_task_done(&mut self, done: TaskDone) {
        let now = clock::now();
        match done {
            TaskDone::Dialed { req, result } => self.dialed(now, req, result),
            TaskDone::Seeded(report) => {
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
        if let Some(p) = self.members.remove(&peer) {
            if let Some(s) = p.stats() {
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
        let peer = Peer::for_pool(
            Arc::clone(&self.peer_config),
            Direction::Outbound,
            Some(self.dialer.socket_of(&addr)),
            Arc::clone(&self.link),
        );
        let id = peer.id();
        self.machine.handle_dial_succeeded(now, req, id);
        if self.machine.peer(id).is_none() {
            // The request was no longer wanted: nothing holds a place for this connection.
            return;
        }
        self.start_peer(peer, addr, stream);
    }

    fn on_inbound(&mut self, accepted: Accepted) {
        let now = clock::now();
        let addr = NetAddr::from_socket(accepted.addr);
        let peer = Peer::for_pool(
            Arc::clone(&self.peer_config),
            Direction::Inbound,
            None,
            Arc::clone(&self.link),
        );
        match self.machine.handle_inbound(now, peer.id(), addr) {
            Ok(()) => self.start_peer(peer, addr, accepted.stream),
            Err(Refused::Banned) => debug!(%addr, "inbound refused: banned"),
            Err(Refused::Full(why)) => debug!(%addr, "inbound refused: {why:?}"),
            Err(Refused::NetworkInactive) => {
                debug!(%addr, "inbound refused: network activity is off");
            }
        }
    }

    /// Hands a connection the machine has accounted for to its peer. A socket that fails
    /// before its task starts reports its end like any other.
    fn start_peer(&mut self, peer: Peer, addr: NetAddr, stream: TcpStream) {
        if self.log_new {
            peer.set_message_logging(true);
            info!(id = %peer.id(), %addr, "message logging on for a new session");
        }
        self.members.insert(peer.id(), peer.clone());
        peer.associate_connection(stream);
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
                    let _ = self.tasks_tx.send(TaskDone::Dialed {
                        req,
                        result: Err(io::Error::other("network activity is off")),
                    });
                    return;
                }
                debug!(%req, %addr, kind = kind.as_str(), "dialing");
                let dialer = self.dialer.clone();
                let tx = self.tasks_tx.clone();
                let shutdown = self.shutdown.clone();
                self.tracker.spawn(async move {
                    tokio::select! {
                        () = shutdown.cancelled() => {}
                        result = dialer.connect(addr) => {
                            let _ = tx.send(TaskDone::Dialed { req, result });
                        }
                    }
                });
            }
            Output::Peer { peer, command } => {
                if let Some(p) = self.members.get(&peer) {
                    if let PeerCommand::Disconnect(reason) = &command {
                        debug!(%peer, %reason, "disconnecting");
                    }
                    p.handle_command(command);
                }
            }
            Output::Event(event) => self.publish(event),
            Output::Reseed => self.reseed(),
            Output::SaveBans => self.save_bans(),
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
                let Some(p) = self.members.get(&peer) else {
                    return;
                };
                let Some(stats) = p.stats() else {
                    return;
                };
                let info = peer_info(&stats);
                info!(
                    %peer,
                    %addr,
                    %direction,
                    kind = kind.as_str(),
                    user_agent = %info.user_agent,
                    version = info.version,
                    height = stats.starting_height,
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
                // Misbehaviour is the peer's doing: as many lines as it likes, within a budget.
                crate::log_limited!(
                    tracing::Level::INFO,
                    "banned subnet={subnet} for_secs={secs} reason={reason}"
                );
                PoolEvent::Banned {
                    subnet,
                    until,
                    reason,
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

    /// Queries the chain's DNS seeds in a task of its own; the answer comes back as a
    /// finished task.
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
        let tx = self.tasks_tx.clone();
        let shutdown = self.shutdown.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                () = shutdown.cancelled() => {}
                report = resolver.resolve_chain(&chain) => {
                    let _ = tx.send(TaskDone::Seeded(report));
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

    // ----- persistence and shutdown --------------------------------------------------------

    /// Writes the address book and the ban list in the background, after any earlier save;
    /// `reply` hears the outcome.
    fn save(&mut self, reply: Option<tokio::sync::oneshot::Sender<io::Result<()>>>) {
        let snapshot = Snapshot {
            peers: Some(self.machine.addrman().serialize()),
            bans: Some(self.machine.banman().bans().encode()),
        };
        self.write(snapshot, reply);
    }

    /// Writes the ban list alone: it changed ([`Output::SaveBans`]).
    fn save_bans(&mut self) {
        let snapshot = Snapshot {
            peers: None,
            bans: Some(self.machine.banman().bans().encode()),
        };
        self.write(snapshot, None);
    }

    fn write(
        &mut self,
        snapshot: Snapshot,
        reply: Option<tokio::sync::oneshot::Sender<io::Result<()>>>,
    ) {
        let Some(store) = self.store.clone() else {
            if let Some(r) = reply {
                let _ = r.send(Ok(()));
            }
            return;
        };
        let previous = self.saving.take();
        self.saving = Some(tokio::spawn(async move {
            if let Some(p) = previous {
                let _ = p.await;
            }
            let what = snapshot.what();
            let result = tokio::task::spawn_blocking(move || store.save(&snapshot))
                .await
                .unwrap_or_else(|e| Err(io::Error::other(e.to_string())));
            match &result {
                Ok(()) => debug!("{what} saved"),
                Err(e) => error!("{e}"),
            }
            if let Some(r) = reply {
                let _ = r.send(result);
            }
        }));
    }

    async fn shut_down(mut self) {
        self.stopping = true;
        info!("pool stopping: disconnecting {} peers", self.members.len());
        for p in self.members.values() {
            p.disconnect_with(DisconnectReason::Shutdown);
        }
        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        while !self.members.is_empty() {
            let next = tokio::select! {
                r = self.reports.recv() => r.map(Ok),
                t = self.tasks_rx.recv() => t.map(Err),
                () = tokio::time::sleep_until(deadline) => None,
            };
            match next {
                // Events still arriving are handled so that paused peers go on to close.
                Some(Ok(report)) => self.on_report(report),
                Some(Err(TaskDone::Dialed { req, .. })) => {
                    self.machine.handle_dial_failed(clock::now(), req);
                }
                Some(Err(TaskDone::Seeded(_))) => {}
                None => {
                    warn!(
                        "{} peers still open after {SHUTDOWN_GRACE:?}",
                        self.members.len()
                    );
                    break;
                }
            }
            self.drain();
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

    /// Charges each session its share of its network group's cost.
    fn share_group_costs(&self) {
        let costs: Vec<_> = self
            .machine
            .peers()
            .filter_map(|(id, p)| {
                let peer = self.members.get(&id)?;
                Some((id, p.addr.group(), peer.cost()))
            })
            .collect();
        let shares = group_shares(&costs, self.peer_config.cost.group_share);
        for (id, share) in shares {
            if let Some(p) = self.members.get(&id) {
                p.set_group_cost(share);
            }
        }
    }
}

/// How often the driver recomputes the group share of every session's cost. Sessions read
/// their share from an atomic, so the hot path never waits for the driver.
const GROUP_COST_INTERVAL: Duration = Duration::from_secs(1);

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
