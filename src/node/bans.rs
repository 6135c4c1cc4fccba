//! Misbehaviour scores and bans, per IP address, sans IO.
//!
//! Every [`Violation`] adds its weight (named constants in [`super::config`]) to the score of
//! the offending peer's IP address. A score that reaches [`BAN_THRESHOLD`] bans the address for
//! the configured time: the node then closes its connections, closes its new sockets at accept
//! and never dials it. Scores decay linearly (one point per [`SCORE_DECAY_US_PER_POINT`]) and
//! are kept in memory only; bans are saved (`<data-dir>/p2p/bans.json`) and outlive restarts.
//!
//! Everything here takes `now` as an argument; the table never reads a clock. Memory is bounded
//! by [`MAX_SCORED_ADDRESSES`] and [`MAX_BANS`]; every operation costs O(log n).

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;

use super::config::*;
pub use crate::store::bans::Ban;
use crate::wire::types::TimePoint;

/// What a peer did wrong. Only things an honest peer never does are here: a timeout, a missing
/// item, another chain, a full node, a close or a slow reader are not violations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Violation {
    /// Bytes after the key exchange that are not a valid frame or message.
    Undecodable,
    /// A key exchange whose public key is not a curve point.
    InvalidKeyExchange,
    /// A hello whose signature over the shared secret does not verify.
    InvalidHelloSignature,
    /// A second hello on one connection.
    DuplicateHello,
    /// Item inventory or fetch requests before we accepted the peer's hello.
    MessageBeforeHello,
    /// A trx or block body we never asked for.
    UnrequestedItem,
    /// Item inventory beyond what we remember per peer.
    InventoryFlood,
    /// Requests beyond the serve queue's limit.
    FetchFlood,
    /// A block the application rejects, blaming its sender.
    InvalidBlock,
}

impl Violation {
    /// Every class, in a fixed order (for counters and metrics).
    pub const ALL: [Violation; 9] = [
        Violation::Undecodable,
        Violation::InvalidKeyExchange,
        Violation::InvalidHelloSignature,
        Violation::DuplicateHello,
        Violation::MessageBeforeHello,
        Violation::UnrequestedItem,
        Violation::InventoryFlood,
        Violation::FetchFlood,
        Violation::InvalidBlock,
    ];

    /// The name used in logs, `bans.json` and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Violation::Undecodable => "undecodable",
            Violation::InvalidKeyExchange => "invalid_key_exchange",
            Violation::InvalidHelloSignature => "invalid_hello_signature",
            Violation::DuplicateHello => "duplicate_hello",
            Violation::MessageBeforeHello => "message_before_hello",
            Violation::UnrequestedItem => "unrequested_item",
            Violation::InventoryFlood => "inventory_flood",
            Violation::FetchFlood => "fetch_flood",
            Violation::InvalidBlock => "invalid_block",
        }
    }

    /// Points added to the address's score.
    pub fn weight(self) -> u32 {
        match self {
            Violation::Undecodable => WEIGHT_UNDECODABLE,
            Violation::InvalidKeyExchange => WEIGHT_INVALID_KEY_EXCHANGE,
            Violation::InvalidHelloSignature => WEIGHT_INVALID_HELLO_SIGNATURE,
            Violation::DuplicateHello => WEIGHT_DUPLICATE_HELLO,
            Violation::MessageBeforeHello => WEIGHT_MESSAGE_BEFORE_HELLO,
            Violation::UnrequestedItem => WEIGHT_UNREQUESTED_ITEM,
            Violation::InventoryFlood => WEIGHT_INVENTORY_FLOOD,
            Violation::FetchFlood => WEIGHT_FETCH_FLOOD,
            Violation::InvalidBlock => WEIGHT_INVALID_BLOCK,
        }
    }

    /// Its position in [`Violation::ALL`].
    pub fn index(self) -> usize {
        Violation::ALL.iter().position(|v| *v == self).unwrap_or(0)
    }
}

#[derive(Clone, Copy, Debug)]
struct Score {
    points: u32,
    /// Decay is counted from here.
    since: i64,
}

impl Score {
    /// Points left at `now` and the time decay counts from after taking them.
    fn decayed(self, now: i64) -> (u32, i64) {
        let elapsed = now.saturating_sub(self.since).max(0);
        let forgiven = elapsed / SCORE_DECAY_US_PER_POINT;
        if forgiven >= i64::from(self.points) {
            (0, now)
        } else {
            (
                self.points - forgiven as u32,
                self.since + forgiven * SCORE_DECAY_US_PER_POINT,
            )
        }
    }
}

/// Scores and bans by IP address.
#[derive(Debug)]
pub struct BanTable {
    ban_us: i64,
    bans: HashMap<Ipv4Addr, Ban>,
    /// (until, ip) of every ban, to expire and evict in order.
    bans_by_expiry: BTreeSet<(i64, Ipv4Addr)>,
    scores: HashMap<Ipv4Addr, Score>,
    /// (last violation time, ip) of every score, to forget the stalest first.
    scores_by_time: BTreeSet<(i64, Ipv4Addr)>,
    dirty: bool,
}

impl BanTable {
    /// An empty table; bans last `ban_us` (0 or less: never ban).
    pub fn new(ban_us: i64) -> Self {
        Self {
            ban_us,
            bans: HashMap::new(),
            bans_by_expiry: BTreeSet::new(),
            scores: HashMap::new(),
            scores_by_time: BTreeSet::new(),
            dirty: false,
        }
    }

    /// Puts back saved bans, dropping expired ones; at most [`MAX_BANS`] (the latest expiring).
    pub fn restore(&mut self, saved: Vec<Ban>, now: TimePoint) {
        for ban in saved {
            if ban.until > now {
                self.insert_ban(ban);
            }
        }
        self.dirty = false;
    }

    fn insert_ban(&mut self, ban: Ban) {
        if let Some(old) = self.bans.remove(&ban.ip) {
            self.bans_by_expiry.remove(&(old.until.0, old.ip));
        }
        while self.bans.len() >= MAX_BANS {
            let Some((until, ip)) = self.bans_by_expiry.pop_first() else {
                break;
            };
            if until > ban.until.0 {
                // Every kept ban outlasts this one: keep them instead.
                self.bans_by_expiry.insert((until, ip));
                return;
            }
            self.bans.remove(&ip);
        }
        self.bans_by_expiry.insert((ban.until.0, ban.ip));
        self.bans.insert(ban.ip, ban);
        self.dirty = true;
    }

    /// Whether `ip` is banned at `now`.
    pub fn is_banned(&self, ip: Ipv4Addr, now: TimePoint) -> bool {
        self.bans.get(&ip).is_some_and(|b| b.until > now)
    }

    /// The misbehaviour score of `ip` at `now` (the score that banned it, while banned).
    pub fn score(&self, ip: Ipv4Addr, now: TimePoint) -> u32 {
        if let Some(b) = self.bans.get(&ip).filter(|b| b.until > now) {
            return b.score;
        }
        self.scores.get(&ip).map_or(0, |s| s.decayed(now.0).0)
    }

    /// Adds `violation`'s weight to `ip`'s score. Returns the new ban when this reached the
    /// threshold of an address not banned yet.
    pub fn record(&mut self, ip: Ipv4Addr, violation: Violation, now: TimePoint) -> Option<Ban> {
        if self.is_banned(ip, now) {
            return None;
        }
        let (points, since) = match self.scores.remove(&ip) {
            Some(s) => {
                self.scores_by_time.remove(&(s.since, ip));
                s.decayed(now.0)
            }
            None => (0, now.0),
        };
        let points = points.saturating_add(violation.weight());
        if points >= BAN_THRESHOLD && self.ban_us > 0 {
            let ban = Ban {
                ip,
                since: now,
                until: TimePoint(now.0.saturating_add(self.ban_us)),
                reason: violation.name().to_string(),
                score: points,
            };
            self.insert_ban(ban.clone());
            return Some(ban);
        }
        while self.scores.len() >= MAX_SCORED_ADDRESSES {
            let Some((_, stale)) = self.scores_by_time.pop_first() else {
                break;
            };
            self.scores.remove(&stale);
        }
        self.scores.insert(ip, Score { points, since });
        self.scores_by_time.insert((since, ip));
        None
    }

    /// Lifts the ban on `ip` and forgets its score; false if it was not banned.
    pub fn unban(&mut self, ip: Ipv4Addr) -> bool {
        if let Some(s) = self.scores.remove(&ip) {
            self.scores_by_time.remove(&(s.since, ip));
        }
        match self.bans.remove(&ip) {
            Some(b) => {
                self.bans_by_expiry.remove(&(b.until.0, ip));
                self.dirty = true;
                true
            }
            None => false,
        }
    }

    /// Drops up to `max` expired bans and fully decayed scores (a timer's bounded batch).
    /// Returns how many bans lapsed.
    pub fn expire(&mut self, now: TimePoint, max: usize) -> usize {
        let mut lapsed = 0;
        while lapsed < max {
            match self.bans_by_expiry.first() {
                Some(&(until, ip)) if until <= now.0 => {
                    self.bans_by_expiry.pop_first();
                    self.bans.remove(&ip);
                    lapsed += 1;
                }
                _ => break,
            }
        }
        if lapsed > 0 {
            self.dirty = true;
        }
        // Oldest first; one still holding points stops the pass (the bound on memory is
        // MAX_SCORED_ADDRESSES, this only frees it early).
        for _ in 0..max {
            match self.scores_by_time.first() {
                Some(&(_, ip)) if self.scores.get(&ip).is_none_or(|s| s.decayed(now.0).0 == 0) => {
                    self.scores_by_time.pop_first();
                    self.scores.remove(&ip);
                }
                _ => break,
            }
        }
        lapsed
    }

    /// Bans in force at `now`, by address.
    pub fn list(&self, now: TimePoint) -> Vec<Ban> {
        let mut v: Vec<Ban> = self
            .bans
            .values()
            .filter(|b| b.until > now)
            .cloned()
            .collect();
        v.sort_by_key(|b| b.ip);
        v
    }

    /// Number of bans held (some may have lapsed since the last [`BanTable::expire`]).
    pub fn len(&self) -> usize {
        self.bans.len()
    }

    /// Whether no ban is held.
    pub fn is_empty(&self) -> bool {
        self.bans.is_empty()
    }

    /// Every ban held, to save, if anything changed since the last call.
    pub fn take_snapshot_if_dirty(&mut self) -> Option<Vec<Ban>> {
        if !std::mem::take(&mut self.dirty) {
            return None;
        }
        let mut v: Vec<Ban> = self.bans.values().cloned().collect();
        v.sort_by_key(|b| b.ip);
        Some(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_700_000_000_000_000;
    const HOUR: i64 = 3600 * SECOND_US;

    fn ip(n: u8) -> Ipv4Addr {
        Ipv4Addr::new(127, 0, 10, n)
    }

    fn at(us: i64) -> TimePoint {
        TimePoint(T0 + us)
    }

    #[test]
    fn weights_add_up_to_a_ban_at_the_threshold() {
        let mut t = BanTable::new(DEFAULT_BAN_DURATION_US);
        assert!(t.record(ip(1), Violation::Undecodable, at(0)).is_none());
        assert_eq!(t.score(ip(1), at(0)), WEIGHT_UNDECODABLE);
        assert!(!t.is_banned(ip(1), at(0)));
        let ban = t.record(ip(1), Violation::Undecodable, at(1)).unwrap();
        assert_eq!(ban.reason, "undecodable");
        assert_eq!(ban.score, 2 * WEIGHT_UNDECODABLE);
        assert_eq!(ban.until, at(1 + DEFAULT_BAN_DURATION_US));
        assert!(t.is_banned(ip(1), at(1)));
        assert!(!t.is_banned(ip(2), at(1)), "per address");
        // Further violations while banned place no second ban.
        assert!(t.record(ip(1), Violation::InvalidBlock, at(2)).is_none());
        assert_eq!(t.take_snapshot_if_dirty().unwrap(), vec![ban]);
        assert!(t.take_snapshot_if_dirty().is_none());
    }

    #[test]
    fn a_forged_hello_bans_at_once() {
        let mut t = BanTable::new(DEFAULT_BAN_DURATION_US);
        assert!(
            t.record(ip(1), Violation::InvalidHelloSignature, at(0))
                .is_some()
        );
        assert!(
            t.record(ip(2), Violation::InvalidKeyExchange, at(0))
                .is_some()
        );
    }

    #[test]
    fn scores_decay_linearly_so_rare_mishaps_never_ban() {
        let mut t = BanTable::new(DEFAULT_BAN_DURATION_US);
        t.record(ip(1), Violation::Undecodable, at(0));
        assert_eq!(t.score(ip(1), at(HOUR)), WEIGHT_UNDECODABLE - 10);
        assert_eq!(t.score(ip(1), at(5 * HOUR)), 0);
        // One undecodable message every five hours, for days: never banned.
        for k in 1..50 {
            assert!(
                t.record(ip(1), Violation::Undecodable, at(k * 5 * HOUR))
                    .is_none()
            );
        }
        // Two within an hour: banned.
        let now = 50 * 5 * HOUR;
        t.record(ip(2), Violation::Undecodable, at(now));
        assert!(
            t.record(ip(2), Violation::Undecodable, at(now + HOUR))
                .is_none()
        );
        assert!(
            t.record(ip(2), Violation::UnrequestedItem, at(now + HOUR))
                .is_some(),
            "40 + 50 + 25 reach the threshold"
        );
    }

    #[test]
    fn a_ban_lapses_after_its_time() {
        let mut t = BanTable::new(60 * SECOND_US);
        t.record(ip(1), Violation::InvalidKeyExchange, at(0));
        assert!(t.is_banned(ip(1), at(60 * SECOND_US - 1)));
        assert!(!t.is_banned(ip(1), at(60 * SECOND_US)));
        assert!(t.list(at(60 * SECOND_US)).is_empty());
        assert_eq!(t.len(), 1, "until expired by the timer");
        assert_eq!(t.expire(at(60 * SECOND_US), BAN_EXPIRY_BATCH), 1);
        assert!(t.is_empty());
        assert_eq!(t.take_snapshot_if_dirty(), Some(vec![]));
        // It starts from a clean score.
        assert_eq!(t.score(ip(1), at(60 * SECOND_US)), 0);
    }

    #[test]
    fn zero_ban_time_never_bans_but_still_scores() {
        let mut t = BanTable::new(0);
        assert!(
            t.record(ip(1), Violation::InvalidKeyExchange, at(0))
                .is_none()
        );
        assert!(!t.is_banned(ip(1), at(0)));
        assert_eq!(t.score(ip(1), at(0)), WEIGHT_INVALID_KEY_EXCHANGE);
    }

    #[test]
    fn unban_lifts_and_forgets() {
        let mut t = BanTable::new(DEFAULT_BAN_DURATION_US);
        t.record(ip(1), Violation::InvalidKeyExchange, at(0));
        t.take_snapshot_if_dirty();
        assert!(t.unban(ip(1)));
        assert!(!t.unban(ip(1)));
        assert!(!t.is_banned(ip(1), at(1)));
        assert_eq!(t.score(ip(1), at(1)), 0);
        assert_eq!(t.take_snapshot_if_dirty(), Some(vec![]));
    }

    #[test]
    fn restore_drops_lapsed_bans() {
        let mut t = BanTable::new(DEFAULT_BAN_DURATION_US);
        let ban = |n, until| Ban {
            ip: ip(n),
            since: at(0),
            until: at(until),
            reason: "undecodable".into(),
            score: 100,
        };
        t.restore(vec![ban(1, 10), ban(2, 20)], at(15));
        assert!(!t.is_banned(ip(1), at(15)));
        assert!(t.is_banned(ip(2), at(15)));
        assert!(t.take_snapshot_if_dirty().is_none(), "nothing new to save");
    }

    #[test]
    fn tables_are_bounded() {
        let mut t = BanTable::new(DEFAULT_BAN_DURATION_US);
        let addr = |k: usize| Ipv4Addr::from(0x0a00_0000 + k as u32);
        for k in 0..MAX_SCORED_ADDRESSES + 10 {
            t.record(addr(k), Violation::UnrequestedItem, at(k as i64));
        }
        assert_eq!(t.scores.len(), MAX_SCORED_ADDRESSES);
        assert_eq!(t.scores_by_time.len(), MAX_SCORED_ADDRESSES);
        assert_eq!(t.score(addr(0), at(100_000)), 0, "stalest forgotten");
        for k in 0..MAX_BANS + 10 {
            t.record(addr(k), Violation::InvalidKeyExchange, at(k as i64));
        }
        assert_eq!(t.len(), MAX_BANS);
        assert!(
            !t.is_banned(addr(0), at(100_000)),
            "earliest to lapse lifted"
        );
        assert!(t.is_banned(addr(MAX_BANS + 9), at(100_000)));
    }
}
