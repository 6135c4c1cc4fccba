//! The status page's history: one sample a second of transfer rates, items and connections,
//! kept for the last [`HISTORY_SAMPLES`] seconds and served as `GET /history`.
//!
//! A task started with the API asks the node for `/info` every [`HISTORY_INTERVAL`] and turns
//! the difference between two answers into rates, so a page opened late still draws the last
//! ten minutes. Nothing here runs when the API is not served.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, oneshot};

use crate::node::{ConnectionCounts, NodeInfo};
use crate::runtime::Control;

/// Samples kept: ten minutes at one a second. Bounds the ring (each sample is under 100
/// bytes in memory, about 200 as JSON) whatever the uptime.
pub const HISTORY_SAMPLES: usize = 600;
/// Time between samples.
pub const HISTORY_INTERVAL: Duration = Duration::from_secs(1);

/// One point of the charts. Rates are over the time since the sample before.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Sample {
    /// Increases by one per sample; `GET /history?after=SEQ` answers the samples after it.
    pub seq: u64,
    /// When it was taken, Unix milliseconds.
    pub time_ms: i64,
    pub upload_bytes_per_second: u64,
    pub download_bytes_per_second: u64,
    /// Trx and block bodies received from peers, per second.
    pub items_per_second: f64,
    /// Bodies received for items already held, per second.
    pub duplicate_items_per_second: f64,
    pub head_block_number: u32,
    pub handshaking: usize,
    pub active: usize,
    pub closing: usize,
}

/// What a sample is made of: the node's counters (differenced into rates between two
/// readings) and its gauges.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reading {
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub items_received: u64,
    pub duplicate_items_received: u64,
    pub head_block_number: u32,
    pub connections: ConnectionCounts,
}

impl Reading {
    /// The reading in an `/info` answer.
    pub fn of(info: &NodeInfo) -> Self {
        Self {
            bytes_sent: info.bandwidth.total_bytes_sent,
            bytes_received: info.bandwidth.total_bytes_received,
            items_received: info.items_received,
            duplicate_items_received: info.duplicate_items_received,
            head_block_number: info.head_block_number,
            connections: info.connections,
        }
    }
}

/// Per-second rate of a counter that went from `before` to `after` in `elapsed` (zero if the
/// counter went backwards or no time passed).
fn per_second(before: u64, after: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0 {
        return 0.0;
    }
    after.saturating_sub(before) as f64 / secs
}

impl Sample {
    /// The sample for reading `now`, taken `elapsed` after reading `before`.
    pub fn between(
        seq: u64,
        time_ms: i64,
        before: Reading,
        now: Reading,
        elapsed: Duration,
    ) -> Self {
        let rate = |b: u64, a: u64| per_second(b, a, elapsed);
        let hundredths = |x: f64| (x * 100.0).round() / 100.0;
        Sample {
            seq,
            time_ms,
            upload_bytes_per_second: rate(before.bytes_sent, now.bytes_sent).round() as u64,
            download_bytes_per_second: rate(before.bytes_received, now.bytes_received).round()
                as u64,
            items_per_second: hundredths(rate(before.items_received, now.items_received)),
            duplicate_items_per_second: hundredths(rate(
                before.duplicate_items_received,
                now.duplicate_items_received,
            )),
            head_block_number: now.head_block_number,
            handshaking: now.connections.handshaking,
            active: now.connections.active,
            closing: now.connections.closing,
        }
    }
}

/// The last [`HISTORY_SAMPLES`] samples, oldest first.
#[derive(Debug, Default)]
pub struct History {
    samples: VecDeque<Sample>,
    next_seq: u64,
}

/// The history shared by the sampler and the API handlers.
pub type SharedHistory = Arc<Mutex<History>>;

impl History {
    /// The sequence number the next sample gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Appends a sample (numbered by [`History::next_seq`]), dropping the oldest beyond
    /// [`HISTORY_SAMPLES`].
    pub fn push(&mut self, sample: Sample) {
        if self.samples.len() == HISTORY_SAMPLES {
            self.samples.pop_front();
        }
        self.samples.push_back(sample);
        self.next_seq = sample.seq + 1;
    }

    /// Samples numbered above `after` (all of them for `None`), oldest first.
    pub fn after(&self, after: Option<u64>) -> Vec<Sample> {
        match after {
            None => self.samples.iter().copied().collect(),
            Some(seq) => {
                let start = self.samples.partition_point(|s| s.seq <= seq);
                self.samples.range(start..).copied().collect()
            }
        }
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Samples the node every [`HISTORY_INTERVAL`] until it stops.
pub async fn run_sampler(ctl: mpsc::Sender<Control>, history: SharedHistory) {
    let mut tick = tokio::time::interval(HISTORY_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut before: Option<(tokio::time::Instant, Reading)> = None;
    loop {
        tick.tick().await;
        let (tx, rx) = oneshot::channel();
        if ctl.send(Control::Info(tx)).await.is_err() {
            return;
        }
        let Ok(info) = rx.await else { return };
        let at = tokio::time::Instant::now();
        let now = Reading::of(&info);
        if let Some((then, earlier)) = before {
            let Ok(mut h) = history.lock() else { return };
            let seq = h.next_seq();
            let elapsed = at.duration_since(then);
            h.push(Sample::between(seq, unix_ms(), earlier, now, elapsed));
        }
        before = Some((at, now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(seq: u64) -> Sample {
        Sample {
            seq,
            time_ms: seq as i64 * 1000,
            upload_bytes_per_second: 0,
            download_bytes_per_second: 0,
            items_per_second: 0.0,
            duplicate_items_per_second: 0.0,
            head_block_number: 0,
            handshaking: 0,
            active: 0,
            closing: 0,
        }
    }

    #[test]
    fn the_ring_keeps_the_last_samples_in_order() {
        let mut h = History::default();
        for _ in 0..HISTORY_SAMPLES + 75 {
            let seq = h.next_seq();
            h.push(sample(seq));
        }
        assert_eq!(h.len(), HISTORY_SAMPLES);
        let all = h.after(None);
        assert_eq!(all.first().map(|s| s.seq), Some(75));
        assert_eq!(all.last().map(|s| s.seq), Some(HISTORY_SAMPLES as u64 + 74));
        assert!(all.windows(2).all(|w| w[1].seq == w[0].seq + 1));
        // Polling after a sequence number answers only the newer samples.
        let last = HISTORY_SAMPLES as u64 + 74;
        assert_eq!(h.after(Some(last - 2)).len(), 2);
        assert!(h.after(Some(last)).is_empty());
        // A poller that fell behind the ring gets what is left.
        assert_eq!(h.after(Some(3)).len(), HISTORY_SAMPLES);
    }

    #[test]
    fn samples_are_rates_over_the_elapsed_time() {
        let before = Reading {
            bytes_sent: 1_000,
            bytes_received: 2_000,
            items_received: 10,
            duplicate_items_received: 0,
            head_block_number: 40,
            connections: ConnectionCounts::default(),
        };
        let now = Reading {
            bytes_sent: 5_000,
            bytes_received: 1_000, // went backwards: no negative rate
            items_received: 30,
            duplicate_items_received: 1,
            head_block_number: 42,
            connections: ConnectionCounts {
                handshaking: 1,
                active: 2,
                closing: 3,
            },
        };
        let s = Sample::between(7, 123, before, now, Duration::from_secs(2));
        assert_eq!(s.seq, 7);
        assert_eq!(s.upload_bytes_per_second, 2_000);
        assert_eq!(s.download_bytes_per_second, 0);
        assert_eq!(s.items_per_second, 10.0);
        assert_eq!(s.duplicate_items_per_second, 0.5);
        assert_eq!((s.handshaking, s.active, s.closing), (1, 2, 3));
        assert_eq!(s.head_block_number, 42);
        let none = Sample::between(8, 124, before, now, Duration::ZERO);
        assert_eq!(none.upload_bytes_per_second, 0);
    }
}
