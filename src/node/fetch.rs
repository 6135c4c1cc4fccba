//! The items the node wants from its peers in normal operation, indexed so that every event
//! costs O(log n) in the size of the backlog (the reference's `_items_to_fetch` with its
//! priority order, plus the per-peer views its fetch loop computes by scanning).
//!
//! An item is either *queued* (wanted, not yet asked for) or *requested* (asked of one peer).
//! Each item knows which peers advertised it; each peer has its own ordered view of the queued
//! items it advertised, so a fetch pass asks an idle peer for its best item without looking at
//! anything else. Priority is the reference's: blocks before transactions, then first heard
//! first fetched.
//!
//! Nothing here asks the application or sends anything: the node decides (see `items.rs`).

use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::peer::PeerId;
use crate::wire::message::{ItemId, msg_type};
use crate::wire::types::TimePoint;

/// Fetch order: blocks (`false`) before transactions (`true`), then arrival order.
pub type Priority = (bool, u64);

/// Queue entries kept for items no longer wanted, beyond one per wanted item.
const STALE_SLACK: usize = 1024;

#[derive(Clone, Debug)]
struct Wanted {
    priority: Priority,
    /// Peers that advertised the item. Closed peers leave it in bounded batches
    /// ([`FetchQueue::clean_closed`]); until then callers check liveness.
    advertisers: Vec<PeerId>,
    /// The peer the item was asked of, if it was.
    requested_from: Option<PeerId>,
    /// The last time any peer advertised it.
    last_heard: TimePoint,
}

/// Items to fetch and items requested. See the module docs.
#[derive(Debug, Default)]
pub struct FetchQueue {
    items: HashMap<ItemId, Wanted>,
    /// Per peer, the queued items it advertised, best first. Never holds an empty map.
    by_peer: BTreeMap<PeerId, BTreeMap<Priority, ItemId>>,
    /// When items were last heard of, oldest first (stale entries skipped when reached).
    heard: VecDeque<(TimePoint, ItemId)>,
    /// Views of closed peers, waiting to be taken apart in bounded batches.
    closed: VecDeque<(PeerId, BTreeMap<Priority, ItemId>)>,
    queued: usize,
    next_seq: u64,
}

impl FetchQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the item is queued or requested.
    #[cfg(test)]
    pub fn contains(&self, item: &ItemId) -> bool {
        self.items.contains_key(item)
    }

    /// Items wanted and not yet asked for.
    pub fn queued(&self) -> usize {
        self.queued
    }

    /// Items asked of a peer and not yet received.
    pub fn requested(&self) -> usize {
        self.items.len() - self.queued
    }

    /// Queued and requested items.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// The peer an item was asked of.
    pub fn requested_from(&self, item: &ItemId) -> Option<PeerId> {
        self.items.get(item).and_then(|w| w.requested_from)
    }

    /// Peers with queued items they advertised, in id order.
    pub fn peers_with_queued(&self) -> impl Iterator<Item = PeerId> + '_ {
        self.by_peer.keys().copied()
    }

    /// The best queued item `peer` advertised.
    pub fn best_for(&self, peer: PeerId) -> Option<ItemId> {
        self.by_peer
            .get(&peer)
            .and_then(|m| m.first_key_value())
            .map(|(_, i)| *i)
    }

    /// Queued items advertised by closed peers, still to be taken apart.
    pub fn closed_backlog(&self) -> usize {
        self.closed.iter().map(|(_, m)| m.len()).sum()
    }

    fn priority(&mut self, item: &ItemId) -> Priority {
        self.next_seq += 1;
        (item.item_type != msg_type::BLOCK, self.next_seq)
    }

    fn push_heard(&mut self, item: ItemId, now: TimePoint) {
        self.heard.push_back((now, item));
        if self.heard.len() > 2 * self.items.len() + STALE_SLACK {
            let items = &self.items;
            self.heard
                .retain(|(t, i)| items.get(i).is_some_and(|w| w.last_heard == *t));
        }
    }

    /// `peer` advertised an item already wanted: it becomes one more source, and the item
    /// counts as heard of `now`. Returns false (and does nothing) if the item is not wanted.
    pub fn heard_again(&mut self, item: ItemId, peer: PeerId, now: TimePoint) -> bool {
        let Some(w) = self.items.get_mut(&item) else {
            return false;
        };
        if !w.advertisers.contains(&peer) {
            w.advertisers.push(peer);
            if w.requested_from.is_none() {
                self.by_peer
                    .entry(peer)
                    .or_default()
                    .insert(w.priority, item);
            }
        }
        let fresh = w.last_heard != now;
        w.last_heard = now;
        if fresh {
            self.push_heard(item, now);
        }
        true
    }

    /// Queues a newly wanted item that `peer` advertised. The caller has checked that it is
    /// not already wanted (see [`FetchQueue::heard_again`]).
    pub fn add(&mut self, item: ItemId, peer: PeerId, now: TimePoint) {
        if self.items.contains_key(&item) {
            self.heard_again(item, peer, now);
            return;
        }
        let priority = self.priority(&item);
        self.items.insert(
            item,
            Wanted {
                priority,
                advertisers: vec![peer],
                requested_from: None,
                last_heard: now,
            },
        );
        self.by_peer.entry(peer).or_default().insert(priority, item);
        self.queued += 1;
        self.push_heard(item, now);
    }

    /// Takes a queued item out of every advertiser's view.
    fn unqueue(&mut self, w: &Wanted) {
        for a in &w.advertisers {
            if let Some(m) = self.by_peer.get_mut(a) {
                m.remove(&w.priority);
                if m.is_empty() {
                    self.by_peer.remove(a);
                }
            }
        }
        self.queued -= 1;
    }

    /// Forgets an item entirely: it arrived, the application has it, or nobody has it.
    pub fn remove(&mut self, item: &ItemId) {
        let Some(w) = self.items.remove(item) else {
            return;
        };
        if w.requested_from.is_none() {
            self.unqueue(&w);
        }
    }

    /// Marks a queued item as asked of `peer`.
    pub fn mark_requested(&mut self, item: ItemId, peer: PeerId) {
        let Some(w) = self.items.remove(&item) else {
            return;
        };
        let mut w = w;
        if w.requested_from.is_none() {
            self.unqueue(&w);
        }
        w.requested_from = Some(peer);
        self.items.insert(item, w);
    }

    /// `peer` did not deliver an item asked of it (it said it lacks it, timed out or closed).
    /// The item goes back in the queue, behind the others of its kind as in the reference, if
    /// another advertiser for which `live` holds remains; otherwise it is forgotten. Returns
    /// whether it was queued again.
    pub fn request_failed(
        &mut self,
        item: ItemId,
        peer: PeerId,
        live: impl Fn(PeerId) -> bool,
    ) -> bool {
        let Some(mut w) = self.items.remove(&item) else {
            return false;
        };
        if w.requested_from != Some(peer) {
            self.items.insert(item, w);
            return false;
        }
        w.advertisers.retain(|a| *a != peer && live(*a));
        if w.advertisers.is_empty() {
            return false;
        }
        w.requested_from = None;
        w.priority = self.priority(&item);
        for a in &w.advertisers {
            self.by_peer.entry(*a).or_default().insert(w.priority, item);
        }
        self.queued += 1;
        self.items.insert(item, w);
        true
    }

    /// `peer` no longer advertises `item` (its inventory entry expired or it said it lacks it).
    /// A queued item nobody else advertises is forgotten; a requested one stays requested.
    pub fn forget_advertiser(&mut self, item: &ItemId, peer: PeerId) {
        let Some(w) = self.items.get_mut(item) else {
            return;
        };
        let Some(pos) = w.advertisers.iter().position(|a| *a == peer) else {
            return;
        };
        w.advertisers.swap_remove(pos);
        if w.requested_from.is_some() {
            return;
        }
        let priority = w.priority;
        let orphan = w.advertisers.is_empty();
        if let Some(m) = self.by_peer.get_mut(&peer) {
            m.remove(&priority);
            if m.is_empty() {
                self.by_peer.remove(&peer);
            }
        }
        if orphan {
            self.items.remove(item);
            self.queued -= 1;
        }
    }

    /// `peer` closed: it is asked for nothing more at once; its view is taken apart later by
    /// [`FetchQueue::clean_closed`], in bounded batches.
    pub fn peer_closed(&mut self, peer: PeerId) {
        if let Some(m) = self.by_peer.remove(&peer) {
            self.closed.push_back((peer, m));
        }
    }

    /// Takes apart at most `limit` entries of closed peers' views: each item loses that
    /// advertiser, and a queued item nobody else advertises is forgotten. Returns whether
    /// work remains.
    pub fn clean_closed(&mut self, limit: usize) -> bool {
        let mut done = 0;
        while done < limit {
            let Some((peer, view)) = self.closed.front_mut() else {
                return false;
            };
            let peer = *peer;
            let Some((_, item)) = view.pop_first() else {
                self.closed.pop_front();
                continue;
            };
            done += 1;
            if let Some(w) = self.items.get_mut(&item) {
                w.advertisers.retain(|a| *a != peer);
                if w.requested_from.is_none() && w.advertisers.is_empty() {
                    self.items.remove(&item);
                    self.queued -= 1;
                }
            }
        }
        !self.closed.is_empty()
    }

    /// Forgets queued items nobody advertised since `cutoff`, oldest first, at most `limit`
    /// of them. Returns whether more may remain.
    pub fn expire(&mut self, cutoff: TimePoint, limit: usize) -> bool {
        let mut done = 0;
        while let Some(&(t, item)) = self.heard.front() {
            if t >= cutoff {
                return false;
            }
            if done == limit {
                return true;
            }
            self.heard.pop_front();
            let current = self
                .items
                .get(&item)
                .is_some_and(|w| w.last_heard == t && w.requested_from.is_none());
            if current {
                self.remove(&item);
                done += 1;
            }
        }
        false
    }

    /// Entries in the internal queues (views, closed views, heard times), for accounting.
    pub fn index_entries(&self) -> usize {
        self.by_peer.values().map(BTreeMap::len).sum::<usize>()
            + self.closed_backlog()
            + self.heard.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::types::Ripemd160;

    fn item(t: u32, n: u8) -> ItemId {
        ItemId {
            item_type: t,
            item_hash: Ripemd160([n; 20]),
        }
    }

    #[test]
    fn blocks_come_before_transactions_then_arrival_order() {
        let mut q = FetchQueue::new();
        let now = TimePoint(0);
        q.add(item(msg_type::TRX, 1), 7, now);
        q.add(item(msg_type::TRX, 2), 7, now);
        q.add(item(msg_type::BLOCK, 3), 7, now);
        assert_eq!(q.best_for(7), Some(item(msg_type::BLOCK, 3)));
        q.mark_requested(item(msg_type::BLOCK, 3), 7);
        assert_eq!(q.best_for(7), Some(item(msg_type::TRX, 1)));
        assert_eq!((q.queued(), q.requested()), (2, 1));
    }

    #[test]
    fn a_requested_item_leaves_every_view_and_returns_behind_when_the_request_fails() {
        let mut q = FetchQueue::new();
        let now = TimePoint(0);
        let (a, b) = (item(msg_type::TRX, 1), item(msg_type::TRX, 2));
        q.add(a, 1, now);
        assert!(q.heard_again(a, 2, now));
        q.add(b, 2, now);
        q.mark_requested(a, 1);
        assert_eq!(q.best_for(1), None);
        assert_eq!(q.best_for(2), Some(b));
        // Peer 1 lacks it after all: back in the queue for peer 2, behind b.
        assert!(q.request_failed(a, 1, |_| true));
        assert_eq!(q.best_for(1), None);
        assert_eq!(q.best_for(2), Some(b));
        q.mark_requested(b, 2);
        assert_eq!(q.best_for(2), Some(a));
        // A failure reported by the wrong peer changes nothing.
        q.mark_requested(a, 2);
        assert!(!q.request_failed(a, 1, |_| true));
        assert_eq!(q.requested_from(&a), Some(2));
        // Nobody else has it: forgotten.
        assert!(!q.request_failed(a, 2, |_| true));
        assert!(!q.contains(&a));
    }

    #[test]
    fn items_of_closed_peers_are_forgotten_in_batches() {
        let mut q = FetchQueue::new();
        let now = TimePoint(0);
        for n in 0..10 {
            q.add(item(msg_type::TRX, n), 1, now);
        }
        q.heard_again(item(msg_type::TRX, 0), 2, now);
        q.peer_closed(1);
        assert_eq!(q.best_for(1), None);
        assert!(q.clean_closed(4));
        assert!(!q.clean_closed(100));
        assert_eq!(q.len(), 1, "only the item peer 2 also advertised is left");
        assert_eq!(q.best_for(2), Some(item(msg_type::TRX, 0)));
        assert_eq!(q.queued(), 1);
    }

    #[test]
    fn unheard_items_expire_and_hearing_again_renews_them() {
        let mut q = FetchQueue::new();
        q.add(item(msg_type::TRX, 1), 1, TimePoint(0));
        q.add(item(msg_type::TRX, 2), 1, TimePoint(1));
        q.heard_again(item(msg_type::TRX, 1), 2, TimePoint(5));
        assert!(!q.expire(TimePoint(3), 10));
        assert!(q.contains(&item(msg_type::TRX, 1)));
        assert!(!q.contains(&item(msg_type::TRX, 2)));
        assert_eq!(q.best_for(1), Some(item(msg_type::TRX, 1)));
    }

    #[test]
    fn forgetting_the_last_advertiser_forgets_a_queued_item() {
        let mut q = FetchQueue::new();
        let a = item(msg_type::TRX, 1);
        q.add(a, 1, TimePoint(0));
        q.heard_again(a, 2, TimePoint(0));
        q.forget_advertiser(&a, 1);
        assert!(q.contains(&a));
        q.forget_advertiser(&a, 2);
        assert!(!q.contains(&a));
        assert_eq!((q.queued(), q.len(), q.best_for(2)), (0, 0, None));
    }
}
