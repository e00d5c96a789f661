//! Redial backoff for connections that should be kept up.

use std::time::Duration;

/// Base step of the redial backoff. btcd: `connmgr` retry duration (5 s).
pub const RETRY_STEP: Duration = Duration::from_secs(5);

/// Longest wait between redials. btcd: `maxRetryDuration` (5 minutes).
pub const MAX_RETRY: Duration = Duration::from_secs(5 * 60);

/// Delay before redial number `attempt` (1 for the first retry): the step times the attempt,
/// capped at [`MAX_RETRY`].
pub fn backoff(attempt: u32) -> Duration {
    RETRY_STEP.saturating_mul(attempt.max(1)).min(MAX_RETRY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_linearly_then_caps() {
        assert_eq!(backoff(0), Duration::from_secs(5));
        assert_eq!(backoff(1), Duration::from_secs(5));
        assert_eq!(backoff(3), Duration::from_secs(15));
        assert_eq!(backoff(60), MAX_RETRY);
        assert_eq!(backoff(u32::MAX), MAX_RETRY);
    }
}
