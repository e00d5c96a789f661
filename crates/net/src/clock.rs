//! The one place that reads the wall clock.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use peerpool_core::Time;

/// The current time as the machines see it.
pub fn now() -> Time {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    Time::from_micros(since.as_micros() as u64)
}

/// A machine deadline as a tokio instant.
pub fn instant_of(deadline: Time) -> tokio::time::Instant {
    let now = now();
    let wait = deadline.since(now);
    tokio::time::Instant::now() + wait
}
