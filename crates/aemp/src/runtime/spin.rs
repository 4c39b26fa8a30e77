//! When the dispatcher's busy-poll pays off.
//!
//! Busy-polling after a burst of work saves the next message the cost of waking an idle CPU,
//! but only if that message comes while the dispatcher still polls; otherwise the poll is
//! CPU spent for nothing. [`SpinGauge`] watches the idle periods of one dispatcher (from
//! running out of work until work came, whether it polled or slept meanwhile) and allows a
//! poll only while most recent idle periods were short enough for the configured poll time
//! to catch them, for about twice as long as they usually lasted:
//!
//! * dense traffic (a ping-pong, many requests in flight): nearly every idle period is a
//!   few microseconds to tens of microseconds; the dispatcher polls and never sleeps;
//! * sparse traffic (a request every millisecond, a node that only answers): most idle
//!   periods outlast the poll; the dispatcher sleeps at once, as without a poll time;
//! * traffic that becomes dense again is seen in the idle periods the dispatcher slept
//!   through, so polling resumes after about ten short ones.

/// Fixed-point one of [`SpinGauge::short`].
const ONE: u32 = 1024;
/// Polling is allowed while at least this share of recent idle periods was short (3/4).
const ENOUGH: u32 = ONE / 4 * 3;
/// Weight of the newest idle period in both averages: 1/2^SHIFT.
const SHIFT: u32 = 3;

/// Averages of one dispatcher's recent idle periods; see the module documentation.
#[derive(Debug)]
pub(crate) struct SpinGauge {
    /// Share of recent idle periods no longer than the configured poll time, of [`ONE`]
    /// (moving average).
    short: u32,
    /// Typical length of those short idle periods in nanoseconds (moving average).
    gap: u64,
}

impl SpinGauge {
    /// A gauge that allows polling at first (a new node is usually about to get busy).
    pub(crate) fn new() -> SpinGauge {
        SpinGauge { short: ONE, gap: 0 }
    }

    /// How long to poll (nanoseconds) at the next idle period when polls may take up to
    /// `limit`: zero while too few recent idle periods were short, else twice their typical
    /// length, at least a quarter of `limit` and at most `limit`.
    pub(crate) fn window(&self, limit: u64) -> u64 {
        if limit == 0 || self.short < ENOUGH {
            return 0;
        }
        self.gap.saturating_mul(2).clamp(limit / 4, limit)
    }

    /// Records an idle period of `gap` nanoseconds under the poll time `limit`.
    pub(crate) fn record(&mut self, gap: u64, limit: u64) {
        let is_short = gap <= limit;
        self.short = self.short - (self.short >> SHIFT) + if is_short { ONE >> SHIFT } else { 0 };
        if is_short {
            self.gap = self.gap - (self.gap >> SHIFT) + (gap >> SHIFT);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: u64 = 200_000;

    #[test]
    fn dense_traffic_polls_for_twice_the_usual_gap() {
        let mut g = SpinGauge::new();
        for _ in 0..100 {
            g.record(60_000, LIMIT);
        }
        let w = g.window(LIMIT);
        assert!((110_000..=120_000).contains(&w), "window {w}");
        // Tiny gaps still poll for a quarter of the limit.
        for _ in 0..100 {
            g.record(1_000, LIMIT);
        }
        assert_eq!(g.window(LIMIT), LIMIT / 4);
    }

    #[test]
    fn sparse_traffic_stops_polling_and_dense_traffic_resumes_it() {
        let mut g = SpinGauge::new();
        assert_eq!(g.window(LIMIT), LIMIT / 4);
        for _ in 0..3 {
            g.record(1_000_000, LIMIT);
        }
        assert_eq!(g.window(LIMIT), 0);
        let mut n = 0;
        while g.window(LIMIT) == 0 {
            g.record(20_000, LIMIT);
            n += 1;
            assert!(n < 100, "polling never resumed");
        }
        assert!(n <= 12, "resumed after {n} short idle periods");
    }

    #[test]
    fn half_long_idle_periods_do_not_poll() {
        // A request every millisecond: the reply comes soon, the next request does not.
        let mut g = SpinGauge::new();
        for _ in 0..50 {
            g.record(80_000, LIMIT);
            g.record(900_000, LIMIT);
        }
        assert_eq!(g.window(LIMIT), 0);
    }

    #[test]
    fn no_limit_never_polls() {
        let g = SpinGauge::new();
        assert_eq!(g.window(0), 0);
    }
}
