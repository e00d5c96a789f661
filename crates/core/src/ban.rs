//! A dynamic ban score: a persistent part plus a transient part that decays.
//!
//! The transient part halves every [`HALF_LIFE`] and is forgotten entirely once it is older than
//! [`LIFETIME`], so a peer that slips up now and then is forgiven while one that misbehaves in
//! a burst crosses the threshold. Values follow btcd's `connmgr` (half-life 60 s, lifetime
//! 1800 s) and the threshold Bitcoin Core used while it scored peers (100).

use std::time::Duration;

use crate::time::Time;

/// Time for the transient part to decay to half. btcd: `Halflife` (60 s).
pub const HALF_LIFE: Duration = Duration::from_secs(60);

/// Age after which the transient part counts as zero. btcd: `Lifetime` (1800 s).
pub const LIFETIME: Duration = Duration::from_secs(1800);

/// Score at which a peer is banned. Bitcoin Core (before 0.21): `-banscore` default 100.
pub const DEFAULT_THRESHOLD: u32 = 100;

/// Score at which a warning is logged: half the threshold.
pub const DEFAULT_WARNING: u32 = 50;

/// A ban score; see the module docs.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BanScore {
    persistent: u32,
    transient: f64,
    /// When `transient` was last brought up to date.
    updated: Time,
}

impl BanScore {
    /// Adds to both parts and returns the new total.
    pub fn increase(&mut self, now: Time, persistent: u32, transient: u32) -> u32 {
        self.persistent = self.persistent.saturating_add(persistent);
        if transient > 0 {
            self.transient = self.decayed(now) + f64::from(transient);
            self.updated = now;
        }
        self.value(now)
    }

    /// The current total: persistent plus decayed transient, rounded down.
    pub fn value(&self, now: Time) -> u32 {
        let total = f64::from(self.persistent) + self.decayed(now);
        if total >= f64::from(u32::MAX) {
            u32::MAX
        } else {
            total as u32
        }
    }

    /// Forgets everything.
    pub fn reset(&mut self) {
        *self = BanScore::default();
    }

    fn decayed(&self, now: Time) -> f64 {
        let age = now.since(self.updated);
        if self.transient == 0.0 || age > LIFETIME {
            return 0.0;
        }
        // Whole seconds of the clock, as btcd decays: a score read in the same second it was
        // raised is exactly what was added (ten increments of 10 make 100, not 99), and
        // frequent increments still decay as seconds tick over.
        let secs = now.as_secs().saturating_sub(self.updated.as_secs()) as f64;
        self.transient * 0.5f64.powf(secs / HALF_LIFE.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_part_halves_every_half_life_and_expires() {
        let t0 = Time::from_secs(1_000);
        let mut s = BanScore::default();
        assert_eq!(s.increase(t0, 0, 80), 80);
        assert_eq!(s.value(t0 + HALF_LIFE), 40);
        assert_eq!(s.value(t0 + HALF_LIFE * 2), 20);
        assert_eq!(s.value(t0 + LIFETIME + Duration::from_secs(1)), 0);
    }

    #[test]
    fn increments_within_a_second_add_up_exactly() {
        let t0 = Time::from_secs(1_000);
        let mut s = BanScore::default();
        for i in 0..10 {
            s.increase(t0 + Duration::from_millis(50 * i), 0, 10);
        }
        assert_eq!(s.value(t0 + Duration::from_millis(900)), 100);
        let mut one = BanScore::default();
        one.increase(t0, 0, 1);
        assert_eq!(one.value(t0 + Duration::from_millis(999)), 1);
    }

    #[test]
    fn persistent_part_never_decays() {
        let t0 = Time::from_secs(1_000);
        let mut s = BanScore::default();
        s.increase(t0, 30, 0);
        assert_eq!(s.value(t0 + Duration::from_secs(86_400)), 30);
    }

    #[test]
    fn bursts_cross_the_threshold_spread_out_does_not() {
        let t0 = Time::from_secs(1_000);
        let mut burst = BanScore::default();
        for i in 0..5 {
            burst.increase(t0 + Duration::from_secs(i), 0, 25);
        }
        assert!(burst.value(t0 + Duration::from_secs(5)) >= DEFAULT_THRESHOLD);

        let mut spread = BanScore::default();
        for i in 0..5 {
            spread.increase(t0 + HALF_LIFE * 4 * i, 0, 25);
        }
        assert!(spread.value(t0 + HALF_LIFE * 16) < DEFAULT_WARNING);
    }
}
