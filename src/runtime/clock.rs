//! The runtime's clock: wall time for the protocol, read through tokio's monotonic clock so
//! tests can pause and advance it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use crate::wire::types::TimePoint;

/// Microseconds since the epoch, anchored once to the system clock and then advanced by tokio's
/// clock (which `tokio::time::pause` controls in tests).
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    base_wall_us: i64,
    base: Instant,
}

impl Clock {
    /// A clock anchored now.
    pub fn new() -> Self {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
        Self {
            base_wall_us: wall,
            base: Instant::now(),
        }
    }

    /// The current time.
    pub fn now(&self) -> TimePoint {
        let elapsed = i64::try_from(self.base.elapsed().as_micros()).unwrap_or(i64::MAX);
        TimePoint(self.base_wall_us.saturating_add(elapsed))
    }

    /// The tokio instant at which the clock reads `t`.
    pub fn instant_at(&self, t: TimePoint) -> Instant {
        let offset = t.0.saturating_sub(self.base_wall_us).max(0);
        // Far-future deadlines are capped so the addition cannot overflow.
        let offset = offset.min(10 * 365 * 24 * 3600 * 1_000_000);
        self.base + Duration::from_micros(offset as u64)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}
