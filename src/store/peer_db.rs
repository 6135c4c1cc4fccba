//! The potential-peer database: every endpoint the node has heard of, how the last connection
//! to it went, and when to try again.
//!
//! Pure data: the node core updates it as connections come and go; the runtime saves it with
//! [`save`] and reads it back with [`load`]. It is bounded by [`MAX_PEER_RECORDS`] at all times
//! (the reference only prunes when it loads the file) and prunes stale and dead entries.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::wire::types::{Endpoint, TimePoint};

/// Most records kept (the reference's MAXIMUM_PEERDB_SIZE).
pub const MAX_PEER_RECORDS: usize = 1000;
/// A record not seen for this long (µs) is stale and pruned, unless it is a seed: 30 days.
pub const STALE_RECORD_AGE_US: i64 = 30 * 24 * 3600 * 1_000_000;
/// A record that never connected and failed this many times in a row is dead and pruned.
pub const DEAD_RECORD_FAILURES: u32 = 20;
/// File name of the database inside the p2p data directory.
pub const PEER_DB_FILE: &str = "peers.json";

/// How the last connection attempt to an endpoint ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Disposition {
    #[default]
    NeverAttemptedToConnect,
    LastConnectionFailed,
    LastConnectionRejected,
    LastConnectionHandshakingFailed,
    LastConnectionSucceeded,
}

impl Disposition {
    /// Whether a retry must wait for the back-off (the reference's "not ok" dispositions).
    pub fn needs_backoff(self) -> bool {
        matches!(
            self,
            Disposition::LastConnectionFailed
                | Disposition::LastConnectionRejected
                | Disposition::LastConnectionHandshakingFailed
        )
    }
}

/// What the node knows about one endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerRecord {
    pub endpoint: Endpoint,
    /// Microseconds since the epoch; 0 for never.
    pub last_seen_time: TimePoint,
    pub last_connection_disposition: Disposition,
    pub last_connection_attempt_time: TimePoint,
    pub number_of_successful_connection_attempts: u32,
    pub number_of_failed_connection_attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Seeds are never pruned and are retried whatever their history.
    #[serde(default)]
    pub seed: bool,
}

impl PeerRecord {
    /// A record for an endpoint never seen before.
    pub fn new(endpoint: Endpoint) -> Self {
        Self {
            endpoint,
            last_seen_time: TimePoint(0),
            last_connection_disposition: Disposition::NeverAttemptedToConnect,
            last_connection_attempt_time: TimePoint(0),
            number_of_successful_connection_attempts: 0,
            number_of_failed_connection_attempts: 0,
            last_error: None,
            seed: false,
        }
    }

    /// The earliest time (µs) a new attempt may start: (failures + 1) × `retry_us` after the
    /// last attempt when the last one went wrong, at once otherwise.
    pub fn next_attempt_time(&self, retry_us: i64) -> i64 {
        if !self.last_connection_disposition.needs_backoff() {
            return i64::MIN;
        }
        let factor = i64::from(self.number_of_failed_connection_attempts) + 1;
        self.last_connection_attempt_time
            .0
            .saturating_add(factor.saturating_mul(retry_us))
    }

    fn is_dead(&self) -> bool {
        !self.seed
            && self.number_of_successful_connection_attempts == 0
            && self.number_of_failed_connection_attempts >= DEAD_RECORD_FAILURES
    }
}

/// The records, by endpoint.
#[derive(Clone, Debug, Default)]
pub struct PeerDatabase {
    records: BTreeMap<Endpoint, PeerRecord>,
    dirty: bool,
}

impl PeerDatabase {
    /// An empty database.
    pub fn new() -> Self {
        Self::default()
    }

    /// A database from saved records, pruned to the limits.
    pub fn from_records(records: Vec<PeerRecord>, now: TimePoint) -> Self {
        let mut db = Self::new();
        for r in records {
            db.records.insert(r.endpoint, r);
        }
        db.prune(now);
        db.dirty = false;
        db
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The record for `endpoint`, if any.
    pub fn get(&self, endpoint: &Endpoint) -> Option<&PeerRecord> {
        self.records.get(endpoint)
    }

    /// The record for `endpoint`, created if missing. Marks the database changed. A new record
    /// in a full database takes the place of the least recently seen one that is not a seed.
    pub fn entry(&mut self, endpoint: Endpoint) -> &mut PeerRecord {
        self.dirty = true;
        if !self.records.contains_key(&endpoint)
            && self.records.len() >= MAX_PEER_RECORDS
            && let Some((_, victim)) = self.eviction_candidate()
        {
            self.records.remove(&victim);
        }
        self.records
            .entry(endpoint)
            .or_insert_with(|| PeerRecord::new(endpoint))
    }

    /// The least recently seen record that is not a seed: the first to go when full.
    fn eviction_candidate(&self) -> Option<(TimePoint, Endpoint)> {
        self.records
            .values()
            .filter(|r| !r.seed)
            .map(|r| (r.last_seen_time, r.endpoint))
            .min()
    }

    /// Applies `f` to the record of `endpoint` if it exists.
    pub fn update(&mut self, endpoint: &Endpoint, f: impl FnOnce(&mut PeerRecord)) {
        if let Some(r) = self.records.get_mut(endpoint) {
            f(r);
            self.dirty = true;
        }
    }

    /// Marks an endpoint seen now, creating its record; true when something changed.
    pub fn saw(&mut self, endpoint: Endpoint, now: TimePoint) -> bool {
        match self.records.get_mut(&endpoint) {
            Some(r) if r.last_seen_time >= now => false,
            Some(r) => {
                r.last_seen_time = now;
                self.dirty = true;
                true
            }
            None => {
                if self.records.len() >= MAX_PEER_RECORDS {
                    // Full: the new record replaces the least recently seen one, unless it
                    // would itself be that one.
                    match self.eviction_candidate() {
                        Some(victim) if victim < (now, endpoint) => {
                            self.records.remove(&victim.1);
                        }
                        _ => return false,
                    }
                }
                let mut r = PeerRecord::new(endpoint);
                r.last_seen_time = now;
                self.records.insert(endpoint, r);
                self.dirty = true;
                true
            }
        }
    }

    /// Records, most recently seen first (the order the connect loop tries them in).
    pub fn by_last_seen(&self) -> Vec<&PeerRecord> {
        let mut v: Vec<&PeerRecord> = self.records.values().collect();
        v.sort_by(|a, b| {
            b.last_seen_time
                .cmp(&a.last_seen_time)
                .then(a.endpoint.cmp(&b.endpoint))
        });
        v
    }

    /// All records in endpoint order.
    pub fn records(&self) -> impl Iterator<Item = &PeerRecord> {
        self.records.values()
    }

    /// Drops stale and dead records, then the least recently seen non-seeds above the limit.
    pub fn prune(&mut self, now: TimePoint) {
        let before = self.records.len();
        self.records.retain(|_, r| {
            let fresh = r.last_seen_time.0 == 0
                || now.0.saturating_sub(r.last_seen_time.0) < STALE_RECORD_AGE_US;
            r.seed || (!r.is_dead() && fresh)
        });
        if self.records.len() > MAX_PEER_RECORDS {
            let mut victims: Vec<(TimePoint, Endpoint)> = self
                .records
                .values()
                .filter(|r| !r.seed)
                .map(|r| (r.last_seen_time, r.endpoint))
                .collect();
            victims.sort();
            let excess = self.records.len() - MAX_PEER_RECORDS;
            for (_, ep) in victims.into_iter().take(excess) {
                self.records.remove(&ep);
            }
        }
        if self.records.len() != before {
            self.dirty = true;
        }
    }

    /// Whether anything changed since the last [`PeerDatabase::take_snapshot_if_dirty`].
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// The records to save, if anything changed; clears the changed flag.
    pub fn take_snapshot_if_dirty(&mut self) -> Option<Vec<PeerRecord>> {
        if !self.dirty {
            return None;
        }
        self.dirty = false;
        Some(self.records.values().cloned().collect())
    }

    /// All records, for a final save.
    pub fn snapshot(&self) -> Vec<PeerRecord> {
        self.records.values().cloned().collect()
    }
}

/// Saves records as JSON, atomically.
pub fn save(path: &Path, records: &[PeerRecord]) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(records).map_err(std::io::Error::other)?;
    super::write_atomically(path, &bytes)
}

/// Loads saved records. A missing file is an empty database; an unreadable one is an error the
/// caller logs before starting empty (as the reference does).
pub fn load(path: &Path) -> std::io::Result<Vec<PeerRecord>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(std::io::Error::other),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(port: u16) -> Endpoint {
        Endpoint::new(std::net::Ipv4Addr::LOCALHOST, port)
    }

    #[test]
    fn bounded_and_prunes_oldest_non_seeds() {
        let now = TimePoint(1_000_000_000_000_000);
        let mut db = PeerDatabase::new();
        db.entry(ep(1)).seed = true;
        for p in 2..(MAX_PEER_RECORDS as u16 + 50) {
            db.saw(ep(p), TimePoint(now.0 - i64::from(p)));
        }
        db.prune(now);
        assert_eq!(db.len(), MAX_PEER_RECORDS);
        assert!(db.get(&ep(1)).is_some(), "seed kept");
        assert!(db.get(&ep(2)).is_some(), "newest kept");
        assert!(
            db.get(&ep(MAX_PEER_RECORDS as u16 + 49)).is_none(),
            "oldest dropped"
        );
    }

    #[test]
    fn new_records_never_take_a_full_database_over_its_limit() {
        let now = TimePoint(1_000_000_000_000_000);
        let mut db = PeerDatabase::new();
        db.entry(ep(1)).seed = true;
        for p in 2..=MAX_PEER_RECORDS as u16 {
            db.saw(ep(p), TimePoint(now.0 + i64::from(p)));
        }
        assert_eq!(db.len(), MAX_PEER_RECORDS);
        // A record made for a dial (never seen) replaces the least recently seen non-seed.
        db.entry(ep(5000)).number_of_failed_connection_attempts = 1;
        assert_eq!(db.len(), MAX_PEER_RECORDS);
        assert!(db.get(&ep(1)).is_some(), "seed kept");
        assert!(db.get(&ep(2)).is_none(), "least recently seen dropped");
        assert!(db.get(&ep(5000)).is_some());
        // An address seen now replaces the record that was never seen…
        assert!(db.saw(ep(5001), TimePoint(now.0 + 100_000)));
        assert!(db.get(&ep(5000)).is_none());
        assert_eq!(db.len(), MAX_PEER_RECORDS);
        // …but one seen longer ago than every record is not taken.
        assert!(!db.saw(ep(5002), TimePoint(1)));
        assert!(db.get(&ep(5002)).is_none());
        assert_eq!(db.len(), MAX_PEER_RECORDS);
    }

    #[test]
    fn stale_and_dead_are_pruned() {
        let now = TimePoint(STALE_RECORD_AGE_US * 3);
        let mut db = PeerDatabase::new();
        db.saw(ep(1), TimePoint(now.0 - STALE_RECORD_AGE_US - 1));
        db.saw(ep(2), now);
        db.entry(ep(2)).number_of_failed_connection_attempts = DEAD_RECORD_FAILURES;
        db.saw(ep(3), now);
        db.prune(now);
        assert!(db.get(&ep(1)).is_none());
        assert!(db.get(&ep(2)).is_none());
        assert!(db.get(&ep(3)).is_some());
    }

    #[test]
    fn backoff_grows_with_failures() {
        let mut r = PeerRecord::new(ep(1));
        assert_eq!(r.next_attempt_time(30), i64::MIN);
        r.last_connection_disposition = Disposition::LastConnectionFailed;
        r.last_connection_attempt_time = TimePoint(100);
        r.number_of_failed_connection_attempts = 2;
        assert_eq!(r.next_attempt_time(30), 190);
    }

    #[test]
    fn save_and_load_round_trip() {
        let dir = std::env::temp_dir().join(format!("grapevine-peerdb-{}", std::process::id()));
        let path = dir.join(PEER_DB_FILE);
        let mut db = PeerDatabase::new();
        db.saw(ep(7), TimePoint(5_000_000));
        db.entry(ep(7)).last_error = Some("refused".into());
        save(&path, &db.snapshot()).unwrap();
        let back = load(&path).unwrap();
        assert_eq!(back, db.snapshot());
        std::fs::write(&path, b"{ torn").unwrap();
        assert!(load(&path).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
