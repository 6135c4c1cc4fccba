//! What a chaos run measures while it runs: when each node got each tracked item, how many
//! bodies and announcements of it honest nodes received, and how often honest nodes dropped
//! hostile ones.

use std::collections::HashMap;

use crate::node::Node;
use crate::node::sim::{Observer, node_of_ip};
use crate::peer::{ConnectionList, OurHelloState, PeerId, PeerState, TheirHelloState};
use crate::wire::Message;
use crate::wire::message::{ItemId, message_hash, msg_type};
use crate::wire::types::{ItemHash, TimePoint};

/// Never (an acquisition time not reached).
pub const NEVER: i64 = i64::MAX;

/// Measurements of one chaos run.
#[derive(Debug, Default)]
pub struct ChaosObserver {
    /// Which nodes are hostile.
    pub hostile: Vec<bool>,
    /// Tracked items by inventory hash.
    items: HashMap<ItemHash, usize>,
    /// Each tracked item's id.
    pub ids: Vec<ItemId>,
    /// For blocks: the tracked item with each block number (index 0 unused).
    block_items: Vec<Option<usize>>,
    /// When each node first had each item: `acquired[item][node]`.
    pub acquired: Vec<Vec<i64>>,
    /// When each node first had each item durably, as far as anyone can tell: it advertised
    /// the item (the node makes items durable before advertising them), the item was
    /// broadcast at it, or the item is a block on its chain. `durable[item][node]`.
    pub durable: Vec<Vec<i64>>,
    /// Bodies of each item delivered to honest nodes.
    pub bodies: Vec<u64>,
    /// Announcements (ids in item inventories) of each item delivered to honest nodes.
    pub announcements: Vec<u64>,
    /// Each node's head block number when last seen.
    heads: Vec<u32>,
    /// Trx bodies just handed to a node, checked once it has handled them.
    pending: Vec<(usize, usize)>,
    /// Connections honest nodes closed with hostile nodes, and how many of them had been
    /// active.
    pub hostile_closes: u64,
    pub hostile_active_closes: u64,
    /// (honest node, hostile node) pairs where the honest node dropped the hostile one.
    pub hostile_dropped_by: std::collections::BTreeSet<(usize, usize)>,
    /// Hello rejections honest nodes sent, by reason.
    pub rejections: std::collections::BTreeMap<String, u64>,
    /// Closing messages honest nodes sent, by reason.
    pub closings: std::collections::BTreeMap<String, u64>,
    /// Each node's connections that gossip (see [`gossips`]), as of its last event.
    gossiping: Vec<Vec<PeerId>>,
    /// When each node's connection last stopped gossiping.
    stopped: HashMap<(usize, PeerId), i64>,
    scratch: Vec<PeerId>,
}

/// Whether a node gossips with a peer: the connection is active and the peer is not syncing
/// from the node (inventory is not advertised to a peer that still needs sync blocks).
pub fn gossips(p: &PeerState) -> bool {
    p.list == ConnectionList::Active && !p.sync.peer_needs_sync_items
}

impl ChaosObserver {
    /// An observer for `nodes` nodes, `hostile[i]` telling the hostile ones.
    pub fn new(hostile: Vec<bool>) -> Self {
        let n = hostile.len();
        Self {
            hostile,
            heads: vec![0; n],
            gossiping: vec![Vec::new(); n],
            ..Self::default()
        }
    }

    /// Starts tracking an item; returns its index. Blocks must be tracked with their number.
    pub fn track(&mut self, id: ItemId, block_number: Option<u32>) -> usize {
        let k = self.ids.len();
        self.ids.push(id);
        self.items.insert(id.item_hash, k);
        if let Some(n) = block_number {
            let n = n as usize;
            if self.block_items.len() <= n {
                self.block_items.resize(n + 1, None);
            }
            self.block_items[n] = Some(k);
        }
        self.acquired.push(vec![NEVER; self.hostile.len()]);
        self.durable.push(vec![NEVER; self.hostile.len()]);
        self.bodies.push(0);
        self.announcements.push(0);
        k
    }

    /// Node `i` has item `k` since `at` (if not earlier).
    pub fn acquire(&mut self, k: usize, i: usize, at: TimePoint) {
        let slot = &mut self.acquired[k][i];
        *slot = (*slot).min(at.0);
    }

    /// Node `i` has item `k` durably since `at` (if not earlier).
    pub fn hold_durably(&mut self, k: usize, i: usize, at: TimePoint) {
        let slot = &mut self.durable[k][i];
        *slot = (*slot).min(at.0);
    }

    /// When node `i`'s connection `peer` last stopped gossiping, if it ever did.
    pub fn stopped_gossiping(&self, i: usize, peer: PeerId) -> Option<i64> {
        self.stopped.get(&(i, peer)).copied()
    }

    fn honest(&self, i: usize) -> bool {
        !self.hostile.get(i).copied().unwrap_or(false)
    }
}

impl Observer for ChaosObserver {
    fn on_delivery(&mut self, at: TimePoint, from: usize, to: usize, message: &Message) {
        if let Message::ItemIdsInventory(m) = message
            && self.honest(from)
        {
            for h in &m.item_hashes_available {
                if let Some(&k) = self.items.get(h) {
                    self.hold_durably(k, from, at);
                }
            }
        }
        if let Message::ConnectionRejected(r) = message
            && self.honest(from)
        {
            *self.rejections.entry(r.reason_code.name()).or_default() += 1;
        }
        if let Message::ClosingConnection(c) = message
            && self.honest(from)
        {
            *self
                .closings
                .entry(c.reason_for_closing.clone())
                .or_default() += 1;
        }
        if !self.honest(to) {
            return;
        }
        match message {
            Message::Trx(data) | Message::Block(data) => {
                if let Some(&k) = self.items.get(&message_hash(data)) {
                    self.bodies[k] += 1;
                    if message.msg_type() == msg_type::TRX {
                        self.pending.push((to, k));
                    }
                }
            }
            Message::ItemIdsInventory(m) => {
                for h in &m.item_hashes_available {
                    if let Some(&k) = self.items.get(h) {
                        self.announcements[k] += 1;
                    }
                }
            }
            _ => {}
        }
    }

    fn after_event(&mut self, at: TimePoint, i: usize, node: &Node) {
        if let Some(before) = self.gossiping.get_mut(i) {
            // Peers come in id order; `scratch` is reused so no event allocates.
            self.scratch.clear();
            self.scratch
                .extend(node.peers().filter(|p| gossips(p)).map(|p| p.id));
            if *before != self.scratch {
                for &p in before.iter() {
                    if self.scratch.binary_search(&p).is_err() {
                        self.stopped.insert((i, p), at.0);
                    }
                }
                std::mem::swap(before, &mut self.scratch);
            }
        }
        if !self.pending.is_empty() {
            for (n, k) in std::mem::take(&mut self.pending) {
                if n == i && node.delegate().has_item(&self.ids[k]) {
                    self.acquire(k, i, at);
                } else if n != i {
                    self.pending.push((n, k));
                }
            }
        }
        let head = node.delegate().head().number;
        if let Some(seen) = self.heads.get_mut(i)
            && head > *seen
        {
            let from = *seen as usize + 1;
            *seen = head;
            for n in from..=head as usize {
                if let Some(&Some(k)) = self.block_items.get(n) {
                    self.acquire(k, i, at);
                    self.hold_durably(k, i, at);
                }
            }
        }
    }

    fn on_close(&mut self, _at: TimePoint, i: usize, peer: &PeerState) {
        let remote = node_of_ip(peer.remote_endpoint.address.to_ipv4());
        if let Some(r) = remote.filter(|&r| self.honest(i) && !self.honest(r)) {
            self.hostile_closes += 1;
            self.hostile_dropped_by.insert((i, r));
            if peer.our_state == OurHelloState::Accepted
                && peer.their_state == TheirHelloState::Accepted
            {
                self.hostile_active_closes += 1;
            }
        }
    }
}
