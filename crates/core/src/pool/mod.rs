//! The pool: the policies for many connections, as sans-IO parts.
//!
//! - [`addrman`]: the address book, Bitcoin Core-style "new" and "tried" tables;
//! - [`banman`]: bans of addresses and subnets, with expiry;
//! - [`connman`]: which connections to open, keep, retry and refuse;
//! - [`eviction`]: which inbound peer makes room for a new one;
//! - [`machine`]: the pool machine that composes them, with address relay and bans.
pub mod addrman;
pub mod banman;
pub mod connman;
pub mod eviction;
pub mod link;
pub mod machine;
pub mod relay;
pub mod subnet;
pub mod timers;

pub use machine::{Output, Permission, PoolEvent, PoolMachine, PoolPeer, Useful};
