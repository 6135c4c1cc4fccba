//! Upload and download rates over the last minute, 15 minutes and hour.
//!
//! Bytes are counted per second; every second's totals go into a 60-entry ring, every minute's
//! average into a 60-entry ring, and every hour's into a 72-entry ring, as the reference keeps
//! them. Seconds that pass without a tick are filled with zeros.

use std::collections::VecDeque;

use super::config::SECOND_US;

/// Seconds kept at one-second resolution.
const SECONDS_KEPT: usize = 60;
/// Minutes kept at one-minute resolution.
const MINUTES_KEPT: usize = 60;
/// Hours kept at one-hour resolution.
const HOURS_KEPT: usize = 72;
/// Most seconds filled in at once after a long pause (enough to roll an hour over).
const MAX_CATCH_UP_SECONDS: i64 = 3600;

/// Average rates in bytes per second, and the byte counts since start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Rates {
    pub upload_one_minute: u32,
    pub download_one_minute: u32,
    pub upload_fifteen_minutes: u32,
    pub download_fifteen_minutes: u32,
    pub upload_one_hour: u32,
    pub download_one_hour: u32,
    /// Bytes written to every peer since start (the status page's rate chart differences it).
    pub total_bytes_sent: u64,
    /// Bytes read from every peer since start.
    pub total_bytes_received: u64,
}

#[derive(Clone, Debug, Default)]
struct Direction {
    /// Bytes since start.
    total: u64,
    current: u64,
    seconds: VecDeque<u64>,
    minutes: VecDeque<u64>,
    hours: VecDeque<u64>,
}

fn push(ring: &mut VecDeque<u64>, cap: usize, v: u64) {
    if ring.len() == cap {
        ring.pop_front();
    }
    ring.push_back(v);
}

fn average_last(ring: &VecDeque<u64>, n: usize) -> u32 {
    let n = n.min(ring.len());
    if n == 0 {
        return 0;
    }
    let sum: u64 = ring.iter().rev().take(n).sum();
    u32::try_from(sum / n as u64).unwrap_or(u32::MAX)
}

impl Direction {
    fn roll_second(&mut self, seconds_elapsed: u64) {
        push(&mut self.seconds, SECONDS_KEPT, self.current);
        self.current = 0;
        if seconds_elapsed.is_multiple_of(60) {
            let avg = u64::from(average_last(&self.seconds, SECONDS_KEPT));
            push(&mut self.minutes, MINUTES_KEPT, avg);
        }
        if seconds_elapsed.is_multiple_of(3600) {
            let avg = u64::from(average_last(&self.minutes, MINUTES_KEPT));
            push(&mut self.hours, HOURS_KEPT, avg);
        }
    }
}

/// The node's bandwidth bookkeeping.
#[derive(Clone, Debug)]
pub struct BandwidthMonitor {
    up: Direction,
    down: Direction,
    started_second: i64,
    last_second: i64,
}

impl BandwidthMonitor {
    /// A monitor starting at `now_us`.
    pub fn new(now_us: i64) -> Self {
        let s = now_us.div_euclid(SECOND_US);
        Self {
            up: Direction::default(),
            down: Direction::default(),
            started_second: s,
            last_second: s,
        }
    }

    /// Counts bytes sent.
    pub fn sent(&mut self, bytes: u64) {
        self.up.current = self.up.current.saturating_add(bytes);
        self.up.total = self.up.total.saturating_add(bytes);
    }

    /// Counts bytes received.
    pub fn received(&mut self, bytes: u64) {
        self.down.current = self.down.current.saturating_add(bytes);
        self.down.total = self.down.total.saturating_add(bytes);
    }

    /// Closes every whole second up to `now_us`.
    pub fn tick(&mut self, now_us: i64) {
        let now_s = now_us.div_euclid(SECOND_US);
        let behind = (now_s - self.last_second).clamp(0, MAX_CATCH_UP_SECONDS);
        for i in 0..behind {
            let elapsed = (self.last_second + i + 1 - self.started_second) as u64;
            self.up.roll_second(elapsed);
            self.down.roll_second(elapsed);
        }
        if now_s > self.last_second {
            self.last_second = now_s;
        }
    }

    /// The next time a second closes.
    pub fn next_tick(&self) -> i64 {
        (self.last_second + 1) * SECOND_US
    }

    /// Current averages. The one-minute rate is over the last 60 seconds; longer ones use
    /// minute averages once there are any, and the seconds before that.
    pub fn rates(&self) -> Rates {
        let span = |d: &Direction, minutes: usize| {
            if d.minutes.is_empty() {
                average_last(&d.seconds, SECONDS_KEPT)
            } else {
                average_last(&d.minutes, minutes)
            }
        };
        Rates {
            upload_one_minute: average_last(&self.up.seconds, SECONDS_KEPT),
            download_one_minute: average_last(&self.down.seconds, SECONDS_KEPT),
            upload_fifteen_minutes: span(&self.up, 15),
            download_fifteen_minutes: span(&self.down, 15),
            upload_one_hour: span(&self.up, 60),
            download_one_hour: span(&self.down, 60),
            total_bytes_sent: self.up.total,
            total_bytes_received: self.down.total,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_average_over_their_windows() {
        let mut m = BandwidthMonitor::new(0);
        for s in 1..=120 {
            m.sent(1000);
            m.received(if s > 60 { 500 } else { 0 });
            m.tick(s * SECOND_US);
        }
        let r = m.rates();
        assert_eq!(r.upload_one_minute, 1000);
        assert_eq!(r.download_one_minute, 500);
        assert_eq!(r.upload_fifteen_minutes, 1000);
        assert_eq!(r.download_fifteen_minutes, 250);
        assert_eq!(r.total_bytes_sent, 120_000);
        assert_eq!(r.total_bytes_received, 30_000);
        // A long silence is filled with zeros.
        m.tick(2000 * SECOND_US);
        assert_eq!(m.rates().upload_one_minute, 0);
    }
}
