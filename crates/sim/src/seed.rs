//! Where a run's seed comes from, and how to replay one.

use std::hash::BuildHasher;

/// Environment variable that fixes the seed of every simulation a process runs.
pub const SEED_ENV: &str = "PEERPOOL_SIM_SEED";

/// The seed to run with: [`SEED_ENV`] when set (decimal, or hexadecimal with `0x`), otherwise a
/// fresh one, so that every run explores a new schedule. Prints it, with the way to replay it,
/// on standard output (a test harness shows it when the test fails).
///
/// # Panics
/// If [`SEED_ENV`] is set to something that is not a number: a replay must not silently run
/// another seed.
pub fn seed_for(test: &str) -> u64 {
    let seed = match std::env::var(SEED_ENV) {
        Ok(text) => parse(&text).unwrap_or_else(|| panic!("{SEED_ENV}={text:?} is not a u64")),
        Err(_) => fresh(),
    };
    println!("{test}: simulation seed {seed} (replay with {SEED_ENV}={seed})");
    seed
}

/// Parses a decimal or `0x`-prefixed hexadecimal seed.
pub fn parse(text: &str) -> Option<u64> {
    let t = text.trim();
    match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => t.parse().ok(),
    }
}

/// A seed from the standard library's per-process random hash keys (which come from the
/// operating system), so no clock is involved.
fn fresh() -> u64 {
    std::collections::hash_map::RandomState::new().hash_one(0x5eed_u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_notations() {
        assert_eq!(parse("42"), Some(42));
        assert_eq!(parse(" 0x2a "), Some(42));
        assert_eq!(parse("forty-two"), None);
    }
}
