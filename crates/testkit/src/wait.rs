//! Bounded waits: a test that waits too long fails with the name of what it waited for,
//! instead of hanging until the harness gives up.

use std::future::Future;
use std::time::{Duration, Instant};

/// Longest any single wait may take before the test fails. Generous: what tests wait for
/// arrives in milliseconds, this only turns a hang into a failure, and a loaded machine can
/// stall a task (or a daemon) for seconds.
pub const WAIT: Duration = Duration::from_secs(30);

/// How often [`eventually`] asks again.
const POLL_EVERY: Duration = Duration::from_millis(100);

/// Awaits `f`, failing the test if it takes longer than [`WAIT`]; `what` names it in the
/// failure.
pub async fn within<F: Future>(what: &str, f: F) -> F::Output {
    match tokio::time::timeout(WAIT, f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {WAIT:?} waiting for {what}"),
    }
}

/// Calls `f` until it returns `Some`, failing the test after [`WAIT`]: for tests without a
/// runtime that watch a daemon from outside, where nothing can be awaited.
pub fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {WAIT:?} waiting for {what}"
        );
        std::thread::sleep(POLL_EVERY);
    }
}
