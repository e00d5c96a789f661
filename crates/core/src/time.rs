//! Time as a value: microseconds since the UNIX epoch.
//!
//! Microseconds rather than milliseconds because ping round trips on a local network are tens
//! of microseconds and Bitcoin Core reports them with that precision. A `u64` of microseconds
//! covers half a million years, and an absolute epoch lets bans and addresses persist.

use std::fmt;
use std::ops::{Add, Sub};
use std::time::Duration;

/// A point in time: microseconds since 1970-01-01T00:00:00Z.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Time(u64);

impl Time {
    /// The epoch itself.
    pub const ZERO: Time = Time(0);

    /// From microseconds since the epoch.
    pub const fn from_micros(us: u64) -> Time {
        Time(us)
    }

    /// From milliseconds since the epoch.
    pub const fn from_millis(ms: u64) -> Time {
        Time(ms.saturating_mul(1_000))
    }

    /// From whole seconds since the epoch.
    pub const fn from_secs(s: u64) -> Time {
        Time(s.saturating_mul(1_000_000))
    }

    /// Microseconds since the epoch.
    pub const fn as_micros(self) -> u64 {
        self.0
    }

    /// Whole seconds since the epoch (as Bitcoin Core reports times in RPC).
    pub const fn as_secs(self) -> u64 {
        self.0 / 1_000_000
    }

    /// Time elapsed since `earlier`; zero if `earlier` is later.
    pub fn since(self, earlier: Time) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Time {
    type Output = Time;
    fn add(self, d: Duration) -> Time {
        Time(
            self.0
                .saturating_add(u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
        )
    }
}

impl Sub<Duration> for Time {
    type Output = Time;
    fn sub(self, d: Duration) -> Time {
        Time(
            self.0
                .saturating_sub(u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
        )
    }
}

impl fmt::Debug for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Time({}.{:06})", self.0 / 1_000_000, self.0 % 1_000_000)
    }
}

/// An exponentially distributed delay with the given mean (the waiting time of a Poisson
/// process, as Bitcoin Core draws its inventory and feeler intervals), capped at ten means so a
/// single unlucky draw cannot stall what it schedules.
pub fn exponential(rng: &mut fastrand::Rng, mean: Duration) -> Duration {
    let u = 1.0 - rng.f64(); // (0, 1]
    mean.mul_f64((-u.ln()).min(10.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        let t = Time::from_secs(10);
        assert_eq!(
            t + Duration::from_millis(1500),
            Time::from_micros(11_500_000)
        );
        assert_eq!(t - Duration::from_secs(20), Time::ZERO);
        assert_eq!(Time::from_secs(5).since(t), Duration::ZERO);
        assert_eq!(t.since(Time::from_secs(4)), Duration::from_secs(6));
        assert_eq!(
            Time::from_micros(u64::MAX) + Duration::from_secs(1),
            Time::from_micros(u64::MAX)
        );
    }
}
