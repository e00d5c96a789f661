//! # peerpool
//!
//! Peer-to-peer connections for Bitcoin-family networks: a library and a daemon.
//!
//! This crate gathers the library's layers under one name:
//!
//! - [`wire`]: framing, messages (over the `bitcoin` crate's `p2p` types), chain parameters;
//! - [`core`]: the sans-IO state machines (start with [`core::peer::PeerMachine`]);
//! - [`net`]: the tokio runtime around them (start with [`net::Peer`]).
//!
//! A single connection, as with btcd's `peer` package: make the TCP connection yourself, hand it
//! to a [`net::Peer`], react to messages through [`net::Listeners`]. See `examples/` in the
//! repository for complete programs.
#![forbid(unsafe_code)]

pub use peerpool_core as core;
pub use peerpool_net as net;
pub use peerpool_wire as wire;

/// The README's Rust examples, compiled by `cargo test` so that they keep working.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeExamples;
