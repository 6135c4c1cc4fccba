//! The potential-peer database: every endpoint the node has heard of, how the last connection
//! to it went, and when to try again.
//!
//! Pure data: the node core updates it as connections come and go; the runtime saves it with
//! [`save`] and reads it back with [`load`]. It is bounded by [`MAX_PEER_RECORDS`] at all times
//! (the reference only trims it when it loads the file); above the bound, dead entries go first,
//! then the least recently seen. Below it nothing is dropped, so an imported file keeps every peer it holds.
//!
//! # The file is bitshares-core's
//! `p2p/peers.json` has the shape bitshares-core's peer_database reads and writes, so a data
//! directory moves between the two in both directions: a JSON array of potential_peer_record
//! objects with the keys `endpoint` ("ip:port"), `last_seen_time` and
//! `last_connection_attempt_time` (time_point_sec, "YYYY-MM-DDTHH:MM:SS" UTC),
//! `last_connection_disposition` (the enum's name, e.g. "last_connection_failed"; a number is
//! read too), `number_of_successful_connection_attempts`, `number_of_failed_connection_attempts`
//! and `last_error`: an fc exception object ([`FcException`]), left out when there is none.
//! Reading follows fc's from_variant: unknown keys are ignored, a missing key keeps its default
//! (only `endpoint` is required here), a duplicate endpoint keeps the first record, and stray
//! commas are skipped as fc's parser skips them (see [`super::fc_json`]).
//!
//! Grapevine adds one key, `"seed": true`, on seed records only; fc ignores keys it does not
//! know, so bitshares-core reads the file and drops the mark when it next writes it. Files of
//! earlier grapevine versions (`last_error` a string) are read too.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::path::Path;

use serde::{Serialize, Serializer};
use serde_json::{Map, Value};
use tracing::info;

use super::fc_json::{self, FcException};
use crate::wire::types::{Endpoint, TimePoint};

/// Most records kept (the reference's MAXIMUM_PEERDB_SIZE).
pub const MAX_PEER_RECORDS: usize = 1000;
/// A record that never connected and failed this many times in a row is dead: the first to go
/// when the database is over [`MAX_PEER_RECORDS`].
pub const DEAD_RECORD_FAILURES: u32 = 20;
/// File name of the database inside the p2p data directory.
pub const PEER_DB_FILE: &str = "peers.json";

/// How the last connection attempt to an endpoint ended (the reference's
/// potential_peer_last_connection_disposition; JSON names and numbers are the reference's).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Default)]
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
    /// In the reference's enum order: the value is the index.
    const ALL: [(Disposition, &'static str); 5] = [
        (
            Disposition::NeverAttemptedToConnect,
            "never_attempted_to_connect",
        ),
        (Disposition::LastConnectionFailed, "last_connection_failed"),
        (
            Disposition::LastConnectionRejected,
            "last_connection_rejected",
        ),
        (
            Disposition::LastConnectionHandshakingFailed,
            "last_connection_handshaking_failed",
        ),
        (
            Disposition::LastConnectionSucceeded,
            "last_connection_succeeded",
        ),
    ];

    /// The name fc writes for it.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(d, _)| *d == self)
            .map_or("never_attempted_to_connect", |(_, n)| n)
    }

    /// As fc reads a reflected enum: its name, or its number (as a number or a numeric string).
    fn from_variant(v: &Value) -> Result<Self, String> {
        if let Value::String(s) = v
            && let Some((d, _)) = Self::ALL.iter().find(|(_, n)| n == s)
        {
            return Ok(*d);
        }
        fc_json::as_i64(v)
            .ok()
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| Self::ALL.get(i))
            .map(|(d, _)| *d)
            .ok_or_else(|| format!("{v} is not a last_connection_disposition"))
    }

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

/// What the node knows about one endpoint. Its serde form is the status API's
/// (`GET /potential-peers`: `last_error` as one line of text); the file's form is
/// [`PeerRecord::to_variant`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PeerRecord {
    pub endpoint: Endpoint,
    /// Microseconds since the epoch; 0 for never. Saved to the second.
    pub last_seen_time: TimePoint,
    pub last_connection_disposition: Disposition,
    pub last_connection_attempt_time: TimePoint,
    pub number_of_successful_connection_attempts: u32,
    pub number_of_failed_connection_attempts: u32,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "error_as_text"
    )]
    pub last_error: Option<FcException>,
    /// Seeds are never pruned and are retried whatever their history.
    pub seed: bool,
}

fn error_as_text<S: Serializer>(e: &Option<FcException>, s: S) -> Result<S::Ok, S::Error> {
    match e {
        Some(e) => s.collect_str(e),
        None => s.serialize_none(),
    }
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

    /// Records an error of our own, made at `now`.
    pub fn set_error(&mut self, text: &str, now: TimePoint) {
        self.last_error = Some(FcException::from_text(text, now));
    }

    /// The record as bitshares-core's potential_peer_record variant: its keys in the
    /// reference's order, `last_error` only when there is one, and `seed` only on seeds.
    pub fn to_variant(&self) -> Value {
        let mut o = Map::new();
        o.insert("endpoint".into(), self.endpoint.to_string().into());
        o.insert(
            "last_seen_time".into(),
            fc_json::time_sec_variant(self.last_seen_time),
        );
        o.insert(
            "last_connection_disposition".into(),
            self.last_connection_disposition.name().into(),
        );
        o.insert(
            "last_connection_attempt_time".into(),
            fc_json::time_sec_variant(self.last_connection_attempt_time),
        );
        o.insert(
            "number_of_successful_connection_attempts".into(),
            self.number_of_successful_connection_attempts.into(),
        );
        o.insert(
            "number_of_failed_connection_attempts".into(),
            self.number_of_failed_connection_attempts.into(),
        );
        if let Some(e) = &self.last_error {
            o.insert("last_error".into(), e.to_variant());
        }
        if self.seed {
            o.insert("seed".into(), true.into());
        }
        Value::Object(o)
    }

    /// Reads a record as fc's from_variant does (see the module docs). `last_error` may also be
    /// a string, as earlier grapevine versions wrote it.
    pub fn from_variant(v: &Value) -> Result<Self, String> {
        let o = v
            .as_object()
            .ok_or_else(|| format!("a peer record must be an object, not {v}"))?;
        let endpoint_text = o
            .get("endpoint")
            .ok_or("a peer record has no \"endpoint\"")
            .and_then(|e| {
                e.as_str()
                    .ok_or("a peer record's endpoint must be a string")
            })?;
        let mut r = PeerRecord::new(endpoint_text.parse()?);
        let field = |key: &str, e: String| format!("{endpoint_text}: {key}: {e}");
        if let Some(t) = o.get("last_seen_time") {
            r.last_seen_time =
                fc_json::parse_time_sec(t).map_err(|e| field("last_seen_time", e))?;
        }
        if let Some(d) = o.get("last_connection_disposition") {
            r.last_connection_disposition = Disposition::from_variant(d)
                .map_err(|e| field("last_connection_disposition", e))?;
        }
        if let Some(t) = o.get("last_connection_attempt_time") {
            r.last_connection_attempt_time =
                fc_json::parse_time_sec(t).map_err(|e| field("last_connection_attempt_time", e))?;
        }
        if let Some(n) = o.get("number_of_successful_connection_attempts") {
            r.number_of_successful_connection_attempts = fc_json::as_u32(n)
                .map_err(|e| field("number_of_successful_connection_attempts", e))?;
        }
        if let Some(n) = o.get("number_of_failed_connection_attempts") {
            r.number_of_failed_connection_attempts =
                fc_json::as_u32(n).map_err(|e| field("number_of_failed_connection_attempts", e))?;
        }
        r.last_error = match o.get("last_error") {
            None | Some(Value::Null) => None,
            Some(Value::String(text)) => {
                Some(FcException::from_text(text, r.last_connection_attempt_time))
            }
            Some(e) => Some(FcException::from_variant(e).map_err(|e| field("last_error", e))?),
        };
        r.seed = o.get("seed").and_then(Value::as_bool).unwrap_or(false);
        Ok(r)
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
    pub fn from_records(records: Vec<PeerRecord>) -> Self {
        let mut db = Self::new();
        for r in records {
            // The reference's set is unique by endpoint: the first record wins.
            if let Entry::Vacant(slot) = db.records.entry(r.endpoint) {
                slot.insert(r);
            }
        }
        db.prune();
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
            && let Some((_, _, victim)) = self.eviction_candidate()
        {
            self.records.remove(&victim);
        }
        self.records
            .entry(endpoint)
            .or_insert_with(|| PeerRecord::new(endpoint))
    }

    /// The first record to go when full: a dead one, else the least recently seen; never a
    /// seed. (Whether it is dead, when it was seen, its endpoint.)
    fn eviction_candidate(&self) -> Option<(bool, TimePoint, Endpoint)> {
        self.records
            .values()
            .filter(|r| !r.seed)
            .map(|r| (!r.is_dead(), r.last_seen_time, r.endpoint))
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
                        Some((alive, seen, victim))
                            if !alive || (seen, victim) < (now, endpoint) =>
                        {
                            self.records.remove(&victim);
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

    /// Keeps the database within [`MAX_PEER_RECORDS`]. Below the limit nothing is dropped (as in
    /// the reference, which only trims to its maximum size: a file imported from a node that
    /// was down for months keeps every peer it knew). Above it, non-seed records go in this
    /// order: dead ones, then the least recently seen (stale ones first among those).
    pub fn prune(&mut self) {
        if self.records.len() <= MAX_PEER_RECORDS {
            return;
        }
        let mut victims: Vec<(bool, TimePoint, Endpoint)> = self
            .records
            .values()
            .filter(|r| !r.seed)
            .map(|r| (!r.is_dead(), r.last_seen_time, r.endpoint))
            .collect();
        victims.sort();
        let excess = self.records.len() - MAX_PEER_RECORDS;
        for (_, _, ep) in victims.into_iter().take(excess) {
            self.records.remove(&ep);
        }
        self.dirty = true;
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

/// The file's bytes for `records`: a pretty-printed JSON array in bitshares-core's shape, as
/// fc's save_to_file writes it (see the module docs).
pub fn to_file_bytes(records: &[PeerRecord]) -> std::io::Result<Vec<u8>> {
    let doc = Value::Array(records.iter().map(PeerRecord::to_variant).collect());
    let mut bytes = serde_json::to_vec_pretty(&doc).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// Saves records, atomically, in bitshares-core's shape.
pub fn save(path: &Path, records: &[PeerRecord]) -> std::io::Result<()> {
    super::write_atomically(path, &to_file_bytes(records)?)
}

/// Parses a saved database, written by grapevine or by bitshares-core (see the module docs).
pub fn parse(bytes: &[u8]) -> Result<Vec<PeerRecord>, String> {
    let (doc, relaxed) = fc_json::parse_lenient(bytes)?;
    let Value::Array(items) = doc else {
        return Err("the peer database must be a JSON array of records".into());
    };
    let records = items
        .iter()
        .enumerate()
        .map(|(i, v)| PeerRecord::from_variant(v).map_err(|e| format!("record {i}: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    if relaxed {
        info!("peer database has stray commas; read it as bitshares-core does");
    }
    Ok(records)
}

/// Loads saved records at start: a missing file is an empty database; an unreadable one is
/// moved aside (see [`super::read_or_move_aside`]) and the database starts empty, so the next
/// save never overwrites what it held.
pub fn load_or_move_aside(path: &Path, now: TimePoint) -> std::io::Result<Vec<PeerRecord>> {
    Ok(super::read_or_move_aside(path, "peer database", parse, now)?.unwrap_or_default())
}

/// Loads saved records. A missing file is an empty database; an unreadable one is an error.
pub fn load(path: &Path) -> std::io::Result<Vec<PeerRecord>> {
    match std::fs::read(path) {
        Ok(bytes) => parse(&bytes).map_err(std::io::Error::other),
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
        db.prune();
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
    fn old_and_dead_records_are_kept_below_the_limit_and_go_first_above_it() {
        let day = 24 * 3600 * 1_000_000;
        let now = TimePoint(1000 * day);
        let record = |i: u16, seen: i64, failures: u32| {
            let mut r = PeerRecord::new(ep(i));
            r.last_seen_time = TimePoint(seen);
            r.number_of_failed_connection_attempts = failures;
            r
        };
        // A file from a node that was down for a year, one peer dead.
        let old = vec![
            record(1, now.0 - 365 * day, 0),
            record(2, now.0, DEAD_RECORD_FAILURES),
            record(3, now.0, 0),
        ];
        let db = PeerDatabase::from_records(old.clone());
        assert_eq!(db.len(), 3, "nothing goes below the limit");
        assert!(!db.is_dirty());
        // Over the limit: the dead one goes first, then the least recently seen.
        let mut many = old;
        many.extend((10..(10 + MAX_PEER_RECORDS as u16 - 1)).map(|i| record(i, now.0 - day, 0)));
        assert_eq!(many.len(), MAX_PEER_RECORDS + 2);
        let db = PeerDatabase::from_records(many);
        assert_eq!(db.len(), MAX_PEER_RECORDS);
        assert!(db.get(&ep(2)).is_none(), "the dead one went first");
        assert!(db.get(&ep(1)).is_none(), "then the least recently seen");
        assert!(db.get(&ep(3)).is_some());
        assert!(db.get(&ep(10)).is_some());
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
        db.entry(ep(7)).set_error("refused", TimePoint(5_000_000));
        save(&path, &db.snapshot()).unwrap();
        let back = load(&path).unwrap();
        assert_eq!(back, db.snapshot());
        std::fs::write(&path, b"{ torn").unwrap();
        assert!(load(&path).is_err());
        // At start, the torn file is moved aside and the database starts empty.
        let now = TimePoint(1_700_000_000_000_000);
        assert!(load_or_move_aside(&path, now).unwrap().is_empty());
        assert!(!path.exists());
        assert_eq!(
            std::fs::read(dir.join("peers.json.unreadable-1700000000")).unwrap(),
            b"{ torn"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
