//! Finding peers and reaching them through proxies.
//!
//! - [`dns`]: DNS seeding, the addresses a node starts from when its address book is empty.
//!   [`SeedResolver`] queries a chain's seeds through the system's resolver, a given
//!   nameserver, or a Tor proxy.
//! - [`socks`]: connections through a SOCKS5 proxy ([`connect_via_proxy`]), `.onion` targets
//!   by name, Tor stream isolation ([`ProxyCredentials::random`]) and name lookups through Tor
//!   ([`resolve_via_tor`]).
//! - [`resolve()`]: an address as a person writes it (`HOST:PORT`, `[IPv6]`, `NAME.onion`, ...)
//!   made into a peer address, a host name looked up through the proxy when there is one.
//!
//! A node configured with a proxy should use it everywhere: [`SeedResolver::via_tor`] for the
//! seeds, [`resolve()`] with the proxy for the names it is given and [`connect_via_proxy`] for
//! every connection, so that neither a DNS query nor a TCP connection leaves except through
//! the proxy.
//!
//! Either way the result is a [`tokio::net::TcpStream`] to hand to
//! [`Peer::associate_connection`](crate::Peer::associate_connection).

pub mod dns;
mod resolve;
pub mod socks;

pub use dns::{SeedError, SeedReport, SeedResolver, DEFAULT_LOOKUP_TIMEOUT, MAX_ADDRS_PER_SEED};
pub use resolve::{resolve, ResolveError};
pub use socks::{connect_via_proxy, resolve_via_tor, ProxyCredentials, ProxyError, ProxyTarget};
