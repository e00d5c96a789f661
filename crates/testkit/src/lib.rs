//! # peerpool-testkit
//!
//! What peerpool's runtime tests share: the tests of `peerpool-net` and `peerpool-rpc` and the
//! root package's tests of the `peerpool` daemon. Everything here runs on real loopback sockets
//! with ports from the OS, and every wait is bounded so that a hang fails with the name of what
//! was awaited.
//!
//! Where to start, by what a test drives:
//! - one connection: [`peer`] for a peerpool [`Peer`](peerpool_net::Peer) served on loopback,
//!   and [`raw::RawPeer`] for the other end, a socket driven by hand that speaks the protocol
//!   byte by byte (or [`raw::BlockingRawPeer`] from a test without a runtime);
//! - pools: [`pool`] starts them on 127.0.x.y addresses ([`loopback::ip`]) and waits on their
//!   event bus;
//! - the RPC listeners in process: [`rpc::node`] (a pool behind the node JSON-RPC server) and
//!   [`rpc::admin`] (the admin line listener);
//! - the daemon: [`daemon`] runs the `peerpool` binary, reads its log lines and finds the
//!   addresses it listens on; [`python`] and [`npm`] provide the Python and JavaScript
//!   clients some tests point at it.
//!
//! Every wait goes through [`within`] (async) or [`eventually`] (blocking); directories come
//! from [`tempdir!`], logs from [`init_logs`].
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod daemon;
pub mod dirs;
pub mod logs;
pub mod loopback;
pub mod npm;
pub mod peer;
pub mod pool;
pub mod python;
pub mod raw;
pub mod rpc;
pub mod wait;

pub use logs::init_logs;
pub use wait::{eventually, within, WAIT};
