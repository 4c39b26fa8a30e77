//! A rate limit for log lines about things peers can cause at will (refused handshakes),
//! so that a flood of them cannot fill a disk.
//!
//! [`LogLimit`] lets at most `max` lines through per window; what comes after that in the
//! same window is counted instead of logged, and the next line that is let through carries
//! the count, so the caller can say how many lines it left out. Like everything in this
//! crate it never reads a clock: each call takes `now`.
//!
//! ```
//! use aemp_proto::log_limit::{LogLimit, Verdict};
//! use std::time::{Duration, Instant};
//!
//! let t0 = Instant::now();
//! let mut limit = LogLimit::new(2, Duration::from_secs(60));
//! assert_eq!(limit.check(t0), Verdict::Log { suppressed: 0 });
//! assert_eq!(limit.check(t0), Verdict::Log { suppressed: 0 });
//! assert_eq!(limit.check(t0), Verdict::Suppress);
//! assert_eq!(limit.check(t0), Verdict::Suppress);
//! // A new window: the line goes out, with the news that two were left out.
//! let later = t0 + Duration::from_secs(60);
//! assert_eq!(limit.check(later), Verdict::Log { suppressed: 2 });
//! ```

use std::time::{Duration, Instant};

/// What to do with one line (see [`LogLimit::check`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Write the line. `suppressed` lines were left out since the last one written: when
    /// it is not zero, say so (one extra line).
    Log {
        /// Lines left out before this one.
        suppressed: u64,
    },
    /// Leave the line out (it is counted).
    Suppress,
}

/// At most `max` lines per window (see the [module documentation](self)).
#[derive(Clone, Debug)]
pub struct LogLimit {
    max: u32,
    window: Duration,
    /// Start of the current window, if a line came yet.
    start: Option<Instant>,
    /// Lines let through in the current window.
    logged: u32,
    /// Lines left out since the last one let through.
    suppressed: u64,
}

impl LogLimit {
    /// A limit of `max` lines per `window`.
    pub fn new(max: u32, window: Duration) -> LogLimit {
        LogLimit {
            max,
            window,
            start: None,
            logged: 0,
            suppressed: 0,
        }
    }

    /// A line is due at `now`: log it or leave it out. A window starts with the first line
    /// after the previous window ended.
    pub fn check(&mut self, now: Instant) -> Verdict {
        let expired = self
            .start
            .is_none_or(|s| now.saturating_duration_since(s) >= self.window);
        if expired {
            self.start = Some(now);
            self.logged = 0;
        }
        if self.logged < self.max {
            self.logged += 1;
            Verdict::Log {
                suppressed: std::mem::take(&mut self.suppressed),
            }
        } else {
            self.suppressed = self.suppressed.saturating_add(1);
            Verdict::Suppress
        }
    }

    /// Lines left out since the last one let through.
    pub fn suppressed(&self) -> u64 {
        self.suppressed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn a_flood_logs_max_lines_per_window_and_counts_the_rest() {
        let t0 = Instant::now();
        let mut l = LogLimit::new(3, s(10));
        let mut logged = 0;
        // 1000 lines in the first 5 s: three go out.
        for i in 0..1000u64 {
            if let Verdict::Log { suppressed } = l.check(t0 + Duration::from_millis(i * 5)) {
                assert_eq!(suppressed, 0);
                logged += 1;
            }
        }
        assert_eq!((logged, l.suppressed()), (3, 997));
        // Still within the window (it started at t0): left out.
        assert_eq!(l.check(t0 + s(9)), Verdict::Suppress);
        // The next window: the first line reports the 998 left out, then the count is new.
        assert_eq!(l.check(t0 + s(12)), Verdict::Log { suppressed: 998 });
        assert_eq!(l.check(t0 + s(12)), Verdict::Log { suppressed: 0 });
        assert_eq!(l.check(t0 + s(13)), Verdict::Log { suppressed: 0 });
        assert_eq!(l.check(t0 + s(21)), Verdict::Suppress);
        // The window runs from its first line (12 s): 22 s starts the next one.
        assert_eq!(l.check(t0 + s(22)), Verdict::Log { suppressed: 1 });
    }

    #[test]
    fn a_trickle_is_always_logged() {
        let t0 = Instant::now();
        let mut l = LogLimit::new(1, s(1));
        for i in 0..100 {
            assert_eq!(l.check(t0 + s(i)), Verdict::Log { suppressed: 0 });
        }
    }

    #[test]
    fn a_clock_going_backwards_does_not_open_a_window() {
        let t0 = Instant::now() + s(100);
        let mut l = LogLimit::new(1, s(10));
        assert_eq!(l.check(t0), Verdict::Log { suppressed: 0 });
        assert_eq!(l.check(t0 - s(50)), Verdict::Suppress);
    }
}
