//! Helpers shared by the root integration tests (`tests/*.rs`).
//!
//! Include with `mod support;` at the top of a test file. Each test binary compiles its own
//! copy and uses only part of it, hence the `dead_code` allowance.
#![allow(dead_code)]

pub mod bcoin;
pub mod recorder;
