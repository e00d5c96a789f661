//! Servers for the discovery tests, all on loopback with ports from the OS: an authoritative
//! DNS server ([`dns`]), a scriptable SOCKS5 server that speaks Tor's extensions and records
//! what it was asked, and a launcher for the real `microsocks` proxy ([`socks`]).
#![allow(dead_code)]

pub mod dns;
pub mod socks;
