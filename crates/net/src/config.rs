//! Runtime configuration of peers.

use std::sync::{Arc, Mutex};

use bitcoin::BlockHash;
use peerpool_core::cost::Limits;
use peerpool_core::peer::{Nonces, PeerConfig};
use peerpool_wire::chain::ChainParams;

use crate::listeners::Listeners;

/// Callback giving our best block (hash and height), announced in `version`.
pub type NewestBlock = Arc<dyn Fn() -> (BlockHash, i32) + Send + Sync>;

/// Default bound on bytes queued for one peer and not yet written: two messages of the
/// largest size. Past it the peer is disconnected rather than buffered without limit.
pub const DEFAULT_MAX_SEND_BUFFER: usize = 2 * peerpool_wire::frame::MAX_PAYLOAD_LEN as usize;

/// Everything a [`crate::Peer`] is configured with. Shared by all peers of a process.
pub struct Config {
    /// Protocol settings: chain, user agent, services, timeouts (see [`PeerConfig`]).
    pub peer: Arc<PeerConfig>,
    /// Message callbacks.
    pub listeners: Listeners,
    /// Our best block, for the start height in `version`; height 0 when absent.
    pub newest_block: Option<NewestBlock>,
    /// Most bytes waiting to be written to one peer before it is disconnected.
    pub max_send_buffer: usize,
    /// Thresholds of the session cost model: past the soft limit a peer's messages are
    /// delayed, at the hard limit it is disconnected
    /// ([`DisconnectReason::ExcessiveCost`](crate::DisconnectReason::ExcessiveCost)). The
    /// default follows ElectrumX (soft 1,000, hard 10,000, a unit per 5,000 bytes received);
    /// [`Limits::unlimited`] only measures.
    pub cost: Limits,
    /// Nonces of our outbound handshakes, for self-connection detection. Peers sharing one
    /// `Config` share it.
    pub nonces: Arc<Mutex<Nonces>>,
}

impl Config {
    /// A configuration for `chain` with default protocol settings and no listeners.
    pub fn new(chain: ChainParams) -> Config {
        Config::from_peer_config(PeerConfig::new(chain))
    }

    /// A configuration around explicit protocol settings.
    pub fn from_peer_config(peer: PeerConfig) -> Config {
        Config {
            peer: Arc::new(peer),
            listeners: Listeners::new(),
            newest_block: None,
            max_send_buffer: DEFAULT_MAX_SEND_BUFFER,
            cost: Limits::default(),
            nonces: Arc::new(Mutex::new(Nonces::default())),
        }
    }

    /// Replaces the listeners.
    pub fn with_listeners(mut self, listeners: Listeners) -> Config {
        self.listeners = listeners;
        self
    }

    /// Sets the thresholds of the cost model.
    pub fn with_cost_limits(mut self, limits: Limits) -> Config {
        self.cost = limits;
        self
    }

    /// Sets the newest-block callback.
    pub fn with_newest_block(
        mut self,
        f: impl Fn() -> (BlockHash, i32) + Send + Sync + 'static,
    ) -> Config {
        self.newest_block = Some(Arc::new(f));
        self
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("peer", &self.peer)
            .field("max_send_buffer", &self.max_send_buffer)
            .field("cost", &self.cost)
            .finish_non_exhaustive()
    }
}
