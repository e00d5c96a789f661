//! Log lines that an outsider can cause, rate-limited per call site.
//!
//! A line written each time a client fails to authenticate, or a peer misbehaves, is a line an
//! attacker can make the daemon write as fast as it can connect. Each such call site gets a
//! budget of [`BYTES_PER_WINDOW`] bytes per [`WINDOW`] (Bitcoin Core 30's rate limit on log
//! lines from one source location: 1 MiB an hour). The line that exhausts the budget is
//! replaced by one saying that the site is suppressed; the first line of the next window says
//! how many were dropped. Use [`log_limited!`](crate::log_limited) where a plain
//! `tracing::warn!` would be.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The budget's period. Bitcoin Core 30: one hour.
pub const WINDOW: Duration = Duration::from_secs(3600);

/// Bytes one call site may log per [`WINDOW`]. Bitcoin Core 30: 1 MiB.
pub const BYTES_PER_WINDOW: u64 = 1 << 20;

/// What a log line costs besides its message: time stamp, level, target, fields.
pub const LINE_OVERHEAD: usize = 80;

/// The budget of one call site. Lock-free: a few atomic operations per line.
#[derive(Debug)]
pub struct LogBudget {
    /// Start of the current window, seconds since the UNIX epoch.
    window: AtomicU64,
    /// Bytes logged in the current window.
    used: AtomicU64,
    /// Lines dropped in the current window.
    dropped: AtomicU64,
}

/// What to do with one line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    /// Write it; `dropped` lines were suppressed in the window that just ended (say so first
    /// when it is not zero).
    Write {
        /// Lines suppressed in the previous window.
        dropped: u64,
    },
    /// This line exhausted the budget: say the site is suppressed, instead of the line.
    Exhausted,
    /// Suppressed.
    Drop,
}

impl LogBudget {
    /// A full budget.
    #[allow(clippy::new_without_default)]
    pub const fn new() -> LogBudget {
        LogBudget {
            window: AtomicU64::new(0),
            used: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    /// Charges a line of `len` bytes at `now_secs` (seconds since the UNIX epoch).
    pub fn admit(&self, now_secs: u64, len: usize) -> Admit {
        let start = self.window.load(Ordering::Relaxed);
        let mut dropped = 0;
        if now_secs >= start.saturating_add(WINDOW.as_secs()) {
            // One caller rolls the window over; the others charge the new one.
            if self
                .window
                .compare_exchange(start, now_secs, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                self.used.store(0, Ordering::Relaxed);
                dropped = self.dropped.swap(0, Ordering::Relaxed);
            }
        }
        let before = self.used.fetch_add(len as u64, Ordering::Relaxed);
        if before + len as u64 <= BYTES_PER_WINDOW {
            Admit::Write { dropped }
        } else if before <= BYTES_PER_WINDOW {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            Admit::Exhausted
        } else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            Admit::Drop
        }
    }
}

/// Seconds since the UNIX epoch, for [`LogBudget::admit`].
pub fn now_secs() -> u64 {
    crate::clock::now().as_secs()
}

/// A `tracing` event at `$level` (a `tracing::Level` constant) with a formatted message,
/// rate-limited for its call site (see [`crate::ratelog`]).
///
/// ```
/// peerpool_net::log_limited!(tracing::Level::WARN, "RPC request with wrong credentials from {}", "127.0.0.1");
/// ```
#[macro_export]
macro_rules! log_limited {
    ($level:expr, $($arg:tt)+) => {{
        static BUDGET: $crate::ratelog::LogBudget = $crate::ratelog::LogBudget::new();
        if $crate::__tracing::enabled!($level) {
        let line = ::std::format!($($arg)+);
        match BUDGET.admit(
            $crate::ratelog::now_secs(),
            line.len() + $crate::ratelog::LINE_OVERHEAD,
        ) {
            $crate::ratelog::Admit::Write { dropped } => {
                if dropped > 0 {
                    $crate::__tracing::event!(
                        $level,
                        "{dropped} log lines from {}:{} were suppressed in the last hour",
                        ::std::file!(),
                        ::std::line!()
                    );
                }
                $crate::__tracing::event!($level, "{line}");
            }
            $crate::ratelog::Admit::Exhausted => {
                $crate::__tracing::event!(
                    $level,
                    "log lines from {}:{} passed {} bytes this hour: suppressed until the hour is over",
                    ::std::file!(),
                    ::std::line!(),
                    $crate::ratelog::BYTES_PER_WINDOW
                );
            }
            $crate::ratelog::Admit::Drop => {}
        }
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_site_writes_its_budget_then_one_notice_then_nothing_until_the_next_window() {
        let b = LogBudget::new();
        let t0 = 10_000_000;
        let line = 1000;
        let fits = BYTES_PER_WINDOW as usize / line;
        for _ in 0..fits {
            assert_eq!(b.admit(t0, line), Admit::Write { dropped: 0 });
        }
        assert_eq!(b.admit(t0 + 1, line), Admit::Exhausted);
        for _ in 0..9 {
            assert_eq!(b.admit(t0 + 2, line), Admit::Drop);
        }
        assert_eq!(
            b.admit(t0 + WINDOW.as_secs(), line),
            Admit::Write { dropped: 10 }
        );
        assert_eq!(
            b.admit(t0 + WINDOW.as_secs(), line),
            Admit::Write { dropped: 0 }
        );
    }
}
