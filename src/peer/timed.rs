//! A set of keys remembered for a limited time, forgotten oldest first in bounded batches.
//!
//! Inventories (what a peer told us it has, what we told it) and the recently-failed items are
//! remembered for minutes and can hold a hundred thousand entries. A `retain` over such a table
//! on every timer tick costs the whole table each second; here every key also sits in a queue in
//! insertion order, so forgetting costs only what is forgotten, and a caller bounds even that
//! per call.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

use crate::wire::types::TimePoint;

/// Queue entries kept for removed keys before the queue is compacted, beyond one per live key.
const STALE_SLACK: usize = 1024;

/// Keys with the time they were first inserted.
///
/// Contract: `now` never goes backwards between calls (the node's calling contract), so the
/// queue is in time order and its front is always the oldest entry.
#[derive(Clone, Debug)]
pub struct TimedSet<K> {
    at: HashMap<K, TimePoint>,
    /// Insertion order. An entry whose key was removed (or removed and inserted again later)
    /// is stale: it no longer matches `at` and is skipped when reached.
    order: VecDeque<(TimePoint, K)>,
}

impl<K> Default for TimedSet<K> {
    fn default() -> Self {
        Self {
            at: HashMap::new(),
            order: VecDeque::new(),
        }
    }
}

impl<K: Copy + Eq + Hash> TimedSet<K> {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Remembers `key` from `now`; a key already present keeps its first time. Returns
    /// whether the key is new.
    pub fn insert(&mut self, key: K, now: TimePoint) -> bool {
        if self.at.contains_key(&key) {
            return false;
        }
        self.at.insert(key, now);
        self.order.push_back((now, key));
        true
    }

    /// Like [`TimedSet::insert`], but first forgets the oldest keys while `cap` are held.
    pub fn insert_capped(&mut self, key: K, now: TimePoint, cap: usize) -> bool {
        if self.at.contains_key(&key) {
            return false;
        }
        while self.at.len() >= cap.max(1) {
            if self.pop_oldest().is_none() {
                break;
            }
        }
        self.insert(key, now)
    }

    /// Whether `key` is remembered.
    pub fn contains(&self, key: &K) -> bool {
        self.at.contains_key(key)
    }

    /// When `key` was inserted.
    pub fn get(&self, key: &K) -> Option<TimePoint> {
        self.at.get(key).copied()
    }

    /// Forgets `key`; returns whether it was there. Amortised O(1): the queue is compacted
    /// only once stale entries outnumber live ones.
    pub fn remove(&mut self, key: &K) -> bool {
        if self.at.remove(key).is_none() {
            return false;
        }
        if self.order.len() > 2 * self.at.len() + STALE_SLACK {
            let at = &self.at;
            self.order.retain(|(t, k)| at.get(k) == Some(t));
        }
        true
    }

    /// Keys remembered.
    pub fn len(&self) -> usize {
        self.at.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.at.is_empty()
    }

    /// The keys, in no particular order.
    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.at.keys()
    }

    /// Forgets and returns the oldest key.
    pub fn pop_oldest(&mut self) -> Option<K> {
        while let Some((t, k)) = self.order.pop_front() {
            if self.at.get(&k) == Some(&t) {
                self.at.remove(&k);
                return Some(k);
            }
        }
        None
    }

    /// Forgets keys inserted before `cutoff`, oldest first, at most `limit` of them, handing
    /// each to `forgotten`. Returns whether keys older than `cutoff` remain (the caller's
    /// batch ran out).
    pub fn expire(
        &mut self,
        cutoff: TimePoint,
        limit: usize,
        mut forgotten: impl FnMut(K),
    ) -> bool {
        let mut done = 0;
        while let Some(&(t, k)) = self.order.front() {
            if t >= cutoff {
                return false;
            }
            if done == limit {
                return true;
            }
            self.order.pop_front();
            if self.at.get(&k) == Some(&t) {
                self.at.remove(&k);
                forgotten(k);
                done += 1;
            }
        }
        false
    }

    /// Entries in the time queue, live or stale (for memory accounting).
    pub fn queue_len(&self) -> usize {
        self.order.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_first_time_and_expires_oldest_first_in_batches() {
        let mut s = TimedSet::new();
        for k in 0..10u32 {
            assert!(s.insert(k, TimePoint(i64::from(k))));
        }
        assert!(!s.insert(3, TimePoint(100)), "already present");
        assert_eq!(s.get(&3), Some(TimePoint(3)));
        let mut gone = Vec::new();
        assert!(s.expire(TimePoint(8), 5, |k| gone.push(k)), "more remain");
        assert_eq!(gone, [0, 1, 2, 3, 4]);
        assert!(!s.expire(TimePoint(8), 5, |k| gone.push(k)));
        assert_eq!(gone, [0, 1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn removed_then_reinserted_keys_expire_by_their_new_time() {
        let mut s = TimedSet::new();
        s.insert(1u32, TimePoint(0));
        assert!(s.remove(&1));
        s.insert(1, TimePoint(50));
        let mut gone = Vec::new();
        s.expire(TimePoint(10), usize::MAX, |k| gone.push(k));
        assert!(gone.is_empty(), "the stale entry is skipped");
        assert!(s.contains(&1));
        s.expire(TimePoint(51), usize::MAX, |k| gone.push(k));
        assert_eq!(gone, [1]);
    }

    #[test]
    fn stale_entries_are_compacted() {
        let mut s = TimedSet::new();
        for round in 0..10_000i64 {
            s.insert(7u32, TimePoint(round));
            s.remove(&7);
        }
        assert!(s.queue_len() <= STALE_SLACK + 1, "{}", s.queue_len());
    }

    #[test]
    fn capped_insert_forgets_the_oldest() {
        let mut s = TimedSet::new();
        for k in 0..5u32 {
            s.insert_capped(k, TimePoint(i64::from(k)), 3);
        }
        assert_eq!(s.len(), 3);
        assert!(!s.contains(&1) && s.contains(&2) && s.contains(&4));
    }
}
