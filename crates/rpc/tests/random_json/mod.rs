//! Seeded random JSON-RPC parameters for the bad-input tests of both listeners.
#![allow(dead_code)]

use serde_json::{json, Map, Value};

/// Strings the methods of both listeners give meaning to, so random calls reach past argument checking. Every
/// address is a loopback one or unroutable by construction: a call that dials must stay on
/// this machine.
const WORDS: &[&str] = &[
    "",
    "add",
    "remove",
    "onetry",
    "127.0.0.1",
    "127.0.0.1:1",
    "127.0.0.5:18444",
    "127.0.0.0/8",
    "127.0.0.0/255.0.0.0",
    "127.1.2.3/33",
    "::1",
    "[::1]:1",
    "::1/128",
    "2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid.onion",
    "ipv4",
    "ipv6",
    "onion",
    "i2p",
    "cjdns",
    "garbage",
    "300.1.1.1",
    "-1",
    "1e400",
    "true",
    "\u{0}\u{fffd}\u{1F600}",
    "getpeerinfo",
    "all",
    "none",
    "new",
    "1",
    "ping",
    "peer_joined",
];

/// Argument names the methods take (named calls use these, and some others).
const NAMES: &[&str] = &[
    "node",
    "command",
    "v2transport",
    "address",
    "nodeid",
    "subnet",
    "bantime",
    "absolute",
    "count",
    "network",
    "port",
    "tried",
    "state",
    "dummy",
    "unknown",
    "session_ids",
    "addr",
    "events",
    "commands",
    "peers",
];

/// A value of any JSON type, nested at most a little past `depth` 1.
pub fn random_value(rng: &mut fastrand::Rng, depth: u32) -> Value {
    match rng.u8(..if depth > 1 { 7 } else { 9 }) {
        0 => Value::Null,
        1 => Value::Bool(rng.bool()),
        2 => json!(rng.i64(-5..100)),
        3 => [
            json!(i64::MIN),
            json!(u64::MAX),
            json!(-0.5),
            json!(1e300),
            json!(4_294_967_296u64),
            json!(65_536),
        ][rng.usize(..6)]
        .clone(),
        4 | 5 => Value::String(WORDS[rng.usize(..WORDS.len())].to_owned()),
        6 => Value::String("x".repeat(rng.usize(..5_000))),
        7 => Value::Array(
            (0..rng.usize(..4))
                .map(|_| random_value(rng, depth + 1))
                .collect(),
        ),
        _ => Value::Object(random_named(rng, depth + 1)),
    }
}

/// Up to three members named as method arguments are.
pub fn random_named(rng: &mut fastrand::Rng, depth: u32) -> Map<String, Value> {
    (0..rng.usize(..4))
        .map(|_| {
            (
                NAMES[rng.usize(..NAMES.len())].to_owned(),
                random_value(rng, depth),
            )
        })
        .collect()
}

/// `params` of a request: mostly arrays and objects, sometimes absent or another type.
pub fn random_params(rng: &mut fastrand::Rng) -> Value {
    match rng.u8(..10) {
        0 => Value::Null,
        1 => random_value(rng, 2),
        2..=4 => Value::Object(random_named(rng, 1)),
        _ => Value::Array((0..rng.usize(..5)).map(|_| random_value(rng, 1)).collect()),
    }
}

/// The seed of this run: `PEERPOOL_TEST_SEED` to replay one, else a random one.
pub fn seed() -> u64 {
    std::env::var("PEERPOOL_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..))
}
