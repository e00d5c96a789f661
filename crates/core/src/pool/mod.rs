//! The pool: the policies for many connections, as sans-IO parts.
//!
//! - [`machine`]: the pool machine that composes the parts below;
//! - [`link`]: where the pool machine meets its peers' machines (peer events in, peer
//!   commands out);
//! - [`addrman`]: the address book, Bitcoin Core-style "new" and "tried" tables;
//! - [`banman`]: bans of addresses and subnets ([`subnet`]), and the verdict on a misbehaving
//!   peer;
//! - [`connman`]: which connections to open, keep, retry and refuse;
//! - [`eviction`]: which inbound peer makes room for a new one;
//! - [`relay`]: address relay (rate limits, what travels on, `getaddr`, self-advertisement);
//! - [`timers`]: the table of named deadlines the machine sleeps on.
pub mod addrman;
pub mod banman;
pub mod connman;
pub mod eviction;
pub mod link;
pub mod machine;
pub mod relay;
pub mod subnet;
pub mod timers;

pub use machine::{Output, Permission, PermissionSet, PoolEvent, PoolMachine, PoolPeer, Useful};
