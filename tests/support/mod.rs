//! The bcoin interop test's own helpers (`tests/interop_bcoin.rs`): a bcoin node, and a
//! recorder of what peerpool's side reports. What all runtime tests share (raw peers, pools,
//! daemons, RPC clients) is in `peerpool-testkit`.
//!
//! Include with `mod support;` at the top of a test file. A test binary may use only part of
//! it, hence the `dead_code` allowance.
#![allow(dead_code)]

pub mod bcoin;
pub mod recorder;
