//! # peerpool-core
//!
//! The decisions of peerpool, as plain state machines: events and the current time go in,
//! instructions come out. Nothing here touches a socket, a clock, the OS random number
//! generator or a task, so every decision is testable with literal timestamps.
//!
//! There are two machines:
//!
//! - [`peer::PeerMachine`], the machine of one connection: handshake and version negotiation,
//!   keepalive, inventory trickling, known-inventory filter, feature negotiation,
//!   misbehaviour (the one ban score of the connection) and statistics. A library user can
//!   drive one on its own, the way btcd's `peer` package is used.
//! - [`pool::PoolMachine`], the machine of many connections: outbound targets, dialing,
//!   retries and backoff, inbound slots and eviction, the address book (`addrman`), bans
//!   (`banman`) and address relay.
//!
//! They meet in one place, [`pool::link`]: what a peer machine reports ([`PeerEvent`]) goes to
//! [`PoolMachine::handle_peer_event`](pool::PoolMachine::handle_peer_event), and what the pool
//! wants of a peer comes out as a [`PeerCommand`] for
//! [`PeerMachine::handle_command`]. A runtime (the tokio one in `peerpool-net`, the simulator
//! in `peerpool-sim`) only carries the two across. Start reading there.
//!
//! ## The driving contract
//!
//! Every machine is driven the same way:
//! 1. feed it one input (`handle_*`), always with the current [`Time`];
//! 2. drain `poll_output()` until it returns `None`, carrying out each output in order;
//! 3. sleep until `poll_timeout()` (if any), then call `handle_timeout(now)`.
//!
//! Commands (`queue_message`, `disconnect`, ...) answer at once; anything that completes later
//! comes out of `poll_output` as an event.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod addr;
pub mod asmap;
pub mod ban;
pub mod cost;
pub mod gossip;
mod mem;
pub mod misbehaviour;
pub mod peer;
pub mod pool;
pub mod retry;
pub mod seed;
pub mod time;

pub use misbehaviour::Misbehaviour;
pub use peer::{
    Direction, DisconnectReason, PeerCommand, PeerConfig, PeerEvent, PeerId, PeerMachine,
    PeerOutput, StatsSnapshot, UserAgent,
};
pub use time::Time;
