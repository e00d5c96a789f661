//! What a simulation is made of: how many nodes, what the network between them does.

use std::time::Duration;

use bitcoin::p2p::ServiceFlags;
use peerpool_core::pool::machine::Config as PoolConfig;
use peerpool_core::PeerConfig;
use peerpool_wire::Network;

/// Nodes going offline and coming back.
#[derive(Clone, Debug)]
pub struct Churn {
    /// Mean time a node stays online (exponentially distributed).
    pub mean_up: Duration,
    /// Mean time a node stays offline (exponentially distributed).
    pub mean_down: Duration,
    /// Share of departures that are crashes (no FIN: peers notice only through their
    /// timeouts); the rest are orderly shutdowns whose FINs reach the peers.
    pub crash_share: f64,
}

/// A set of nodes cut off from the rest for a while.
#[derive(Clone, Debug)]
pub struct Partition {
    /// Indices of the nodes on one side; everyone else is on the other.
    pub side: Vec<usize>,
    /// When the cut begins, counted from the start of the simulation.
    pub from: Duration,
    /// When it heals, counted from the start of the simulation.
    pub until: Duration,
}

/// Parameters of a simulation. [`SimConfig::new`] gives a realistic starting point.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Nodes in all, bootstrap nodes included.
    pub nodes: usize,
    /// Bootstrap nodes (the first `seeds` indices): always online, never misbehaving, known to
    /// each other. Every other node starts knowing one of them, as if from a DNS seed.
    pub seeds: usize,
    /// Distinct IPv4 /16 groups the nodes are spread over.
    pub groups: usize,
    /// Least one-way latency of a link.
    pub min_latency: Duration,
    /// Greatest one-way latency of a link; each pair of nodes draws one value in between.
    pub max_latency: Duration,
    /// Probability that a segment is lost. TCP hides the loss but not its cost: the segment,
    /// and everything behind it on that connection, arrives [`SimConfig::retransmit`] later.
    pub loss: f64,
    /// Delay a lost segment costs (Linux's minimum retransmission timeout is 200 ms).
    pub retransmit: Duration,
    /// Probability that a connection attempt gets no answer at all.
    pub dial_loss: f64,
    /// How long a dial waits for an answer. Bitcoin Core: `DEFAULT_CONNECT_TIMEOUT` (5 s).
    pub connect_timeout: Duration,
    /// Mean lifetime of a connection before the path breaks and both ends see a reset;
    /// `None`: connections last until someone closes them.
    pub link_failure_mean: Option<Duration>,
    /// Nodes first come online at a uniformly random moment within this window.
    pub join_window: Duration,
    /// Nodes going offline and back; never the bootstrap nodes.
    pub churn: Option<Churn>,
    /// Network partitions.
    pub partitions: Vec<Partition>,
    /// Nodes (chosen at random among the non-bootstrap ones) that send an oversized `addr`
    /// every [`SimConfig::misbehave_interval`] on each of their connections.
    pub misbehaving: usize,
    /// See [`SimConfig::misbehaving`].
    pub misbehave_interval: Duration,
    /// The pool settings of every node; `advertise` is filled in with each node's address.
    pub pool: PoolConfig,
    /// The peer settings of every connection.
    pub peer: PeerConfig,
}

impl SimConfig {
    /// `nodes` nodes with Bitcoin Core's pool and peer defaults (mainnet framing) on a network
    /// with 10-200 ms links, 1 % segment loss and 2 % unanswered dials, no churn, no
    /// partition and no misbehaving node.
    pub fn new(nodes: usize) -> SimConfig {
        let mut peer = PeerConfig::new(Network::Mainnet.params());
        peer.services = ServiceFlags::NETWORK | ServiceFlags::WITNESS;
        // Peers run as a pool's peers do, in the simulator as in the daemon.
        peerpool_core::pool::PoolMachine::adapt_peer_config(&mut peer);
        SimConfig {
            nodes,
            seeds: 4.min(nodes),
            groups: (nodes / 2).max(16),
            min_latency: Duration::from_millis(10),
            max_latency: Duration::from_millis(200),
            loss: 0.01,
            retransmit: Duration::from_millis(200),
            dial_loss: 0.02,
            connect_timeout: Duration::from_secs(5),
            link_failure_mean: None,
            join_window: Duration::from_secs(60),
            churn: None,
            partitions: Vec::new(),
            misbehaving: 0,
            misbehave_interval: Duration::from_secs(5),
            pool: PoolConfig::default(),
            peer,
        }
    }

    /// The automatic outbound target of every node.
    pub fn target_outbound(&self) -> usize {
        self.pool.connman.target_outbound
    }
}
