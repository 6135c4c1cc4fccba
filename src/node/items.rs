//! Inventory gossip, item fetching and serving in normal operation (node.cpp's
//! advertise_inventory_loop, fetch_items_loop, on_item_ids_inventory_message,
//! on_fetch_items_message), plus broadcasts from the operator.

use std::collections::{BTreeSet, VecDeque};

use tracing::{debug, info, warn};

use super::Node;
use super::config::*;
use crate::app::{BlockOutcome, DelegateError};
use crate::peer::{ConnectionList, PeerId};
use crate::wire::Message;
use crate::wire::message::{
    FetchItemsMessage, ItemId, ItemIdsInventoryMessage, ItemNotAvailableMessage, message_hash,
    msg_type,
};
use crate::wire::types::{ItemHash, TimePoint};

impl Node {
    /// An item the node now has and should tell peers about.
    /// It is advertised once the application has made it durable (its ticket is the
    /// application's latest, taken when it accepted the item).
    pub(super) fn announce(&mut self, item: ItemId) {
        if self.new_inventory_set.insert(item) {
            let ticket = self.delegate.accepted_ticket();
            self.new_inventory.push_back((item, ticket));
        }
    }

    /// Durability moved on (the application's writer finished a commit): what waited for it
    /// is advertised, and sync blocks and fetches held back while the application was
    /// saturated go on.
    pub fn on_durable(&mut self, now: TimePoint) {
        let durable = self.delegate.poll_durable();
        if self
            .new_inventory
            .front()
            .is_some_and(|(_, t)| *t <= durable)
        {
            // At once when an advertisement was due and only waited for this commit; else
            // (fetched transactions within the batch window of the last advertisement) at the
            // window's end.
            let due = self
                .last_advertise
                .saturating_add(ADVERTISE_BATCH_US)
                .max(now.0);
            if self.advertise_waits_for_durable || due <= now.0 {
                self.advertise_inventory(now);
            } else {
                self.next_advertise = self.next_advertise.min(due);
            }
        }
        if !self.delegate.saturated() {
            if !self.sync_received.is_empty() {
                self.process_sync_backlog(now);
            }
            self.fetch_sync_items(now);
            self.fetch_items(now);
        }
    }

    /// advertise_inventory: tell every active peer that is not syncing from us about new
    /// items it has not told us about and we have not told it about. Costs O(peers × new
    /// items), each check O(1).
    pub(super) fn advertise_inventory(&mut self, now: TimePoint) {
        self.next_advertise = i64::MAX;
        if self.new_inventory.is_empty() {
            return;
        }
        // Nothing is advertised that a crash could take back: only items whose ticket is
        // durable; the rest wait for [`Node::on_durable`].
        let durable = self.delegate.poll_durable();
        let ready = self
            .new_inventory
            .iter()
            .take_while(|(_, t)| *t <= durable)
            .count();
        self.advertise_waits_for_durable = ready < self.new_inventory.len();
        if ready == 0 {
            return;
        }
        let items: Vec<ItemId> = self
            .new_inventory
            .drain(..ready)
            .map(|(item, _)| item)
            .collect();
        for item in &items {
            self.new_inventory_set.remove(item);
        }
        self.last_advertise = now.0;
        let ids: Vec<PeerId> = self
            .peers
            .values()
            .filter(|p| p.list == ConnectionList::Active && !p.sync.peer_needs_sync_items)
            .map(|p| p.id)
            .collect();
        for id in ids {
            let mut by_type: Vec<(u32, Vec<ItemHash>)> = Vec::new();
            if let Some(p) = self.peers.get_mut(&id) {
                for item in &items {
                    if p.inventory_advertised_to_us.contains(item)
                        || p.inventory_advertised_to_peer.len() >= MAX_INVENTORY_PER_PEER
                        || !p.inventory_advertised_to_peer.insert(*item, now)
                    {
                        continue;
                    }
                    match by_type.iter_mut().find(|(t, _)| *t == item.item_type) {
                        Some((_, v)) => v.push(item.item_hash),
                        None => by_type.push((item.item_type, vec![item.item_hash])),
                    }
                }
            }
            for (item_type, item_hashes_available) in by_type {
                self.send(
                    id,
                    Message::ItemIdsInventory(ItemIdsInventoryMessage {
                        item_type,
                        item_hashes_available,
                    }),
                    now,
                );
            }
        }
    }

    /// An advertisement: its ids join the peer's pending ids, and the first
    /// [`MAX_INVENTORY_IDS_PER_TURN`] are read now (see [`Node::work_backlog`] for the rest).
    pub(super) fn on_item_ids_inventory(
        &mut self,
        peer: PeerId,
        m: ItemIdsInventoryMessage,
        now: TimePoint,
    ) {
        if m.item_type != msg_type::TRX && m.item_type != msg_type::BLOCK {
            // Nothing else can be fetched: there is no message to carry it.
            return;
        }
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        // Ids beyond what the inventory can still take would be dropped when read anyway.
        let room = MAX_INVENTORY_PER_PEER
            .saturating_sub(p.inventory_advertised_to_us.len() + p.pending_inventory.len());
        p.pending_inventory
            .extend(
                m.item_hashes_available
                    .into_iter()
                    .take(room)
                    .map(|item_hash| ItemId {
                        item_type: m.item_type,
                        item_hash,
                    }),
            );
        self.read_inventory(peer, now);
    }

    /// Reads up to [`MAX_INVENTORY_IDS_PER_TURN`] of `peer`'s pending ids: each costs O(1)
    /// (one application look-up for an id nobody offered before), then one bounded fetch
    /// pass. The peer is in the backlog while ids remain.
    fn read_inventory(&mut self, peer: PeerId, now: TimePoint) {
        let mut wanted = false;
        // Ids new to the node, to ask the application about in one call.
        let mut unknown: Vec<ItemId> = Vec::new();
        for _ in 0..MAX_INVENTORY_IDS_PER_TURN {
            let Some(p) = self.peers.get_mut(&peer) else {
                break;
            };
            let Some(item) = p.pending_inventory.pop_front() else {
                break;
            };
            let cap = if item.item_type == msg_type::TRX {
                MAX_TRX_INVENTORY_PER_PEER
            } else {
                MAX_INVENTORY_PER_PEER
            };
            if p.inventory_advertised_to_us.len() >= cap {
                // The reference stops reading the message here, without blame; we count it.
                p.pending_inventory
                    .retain(|i| i.item_type != item.item_type);
                self.misbehaved(peer, super::bans::Violation::InventoryFlood, now);
                continue;
            }
            if !p.inventory_advertised_to_us.insert(item, now) {
                // Told before: nothing new.
                continue;
            }
            if p.inventory_advertised_to_peer.contains(&item) {
                continue;
            }
            if self.fetch.heard_again(item, peer, now) {
                // A new source, perhaps idle where the others are busy.
                wanted = true;
                continue;
            }
            if self.recently_failed.contains(&item) {
                continue;
            }
            unknown.push(item);
        }
        if !unknown.is_empty() {
            let known = self.delegate.has_items(&unknown);
            for (item, known) in unknown.into_iter().zip(known) {
                if known || self.fetch.len() >= MAX_ITEMS_TO_FETCH {
                    continue;
                }
                self.fetch.add(item, peer, now);
                wanted = true;
            }
        }
        let more = self
            .peers
            .get(&peer)
            .is_some_and(|p| p.list == ConnectionList::Active && !p.pending_inventory.is_empty());
        if more {
            self.inventory_backlog.insert(peer);
        } else {
            self.inventory_backlog.remove(&peer);
            if let Some(p) = self.peers.get_mut(&peer) {
                p.pending_inventory = VecDeque::new();
            }
        }
        if wanted {
            self.fetch_items(now);
        }
    }

    /// Peers with advertised ids not read yet. The runtime reads no more messages from them
    /// until they leave this set, and calls [`Node::work_backlog`] while it is not empty.
    pub fn backlogged_peers(&self) -> &BTreeSet<PeerId> {
        &self.inventory_backlog
    }

    /// One turn of backlog work: reads the next bounded batch of pending ids of the next
    /// backlogged peer, in turn.
    pub fn work_backlog(&mut self, now: TimePoint) {
        let next = self
            .inventory_backlog
            .range(self.backlog_cursor.saturating_add(1)..)
            .next()
            .or_else(|| self.inventory_backlog.first())
            .copied();
        if let Some(peer) = next {
            self.backlog_cursor = peer;
            self.read_inventory(peer, now);
        }
    }

    /// Whether `peer` may be asked for items: active and with nothing in flight (the
    /// reference's idle peer).
    fn can_fetch_from(&self, peer: PeerId) -> bool {
        self.peers.get(&peer).is_some_and(|p| {
            p.list == ConnectionList::Active
                && p.items_requested.is_empty()
                && p.sync.requested.is_empty()
                && p.sync.ids_request.is_none()
        })
    }

    /// fetch_items: every idle peer is asked for up to [`MAX_ITEMS_PER_PEER_PER_PASS`] of the
    /// best queued items it advertised (blocks first, then first heard), in one
    /// fetch_items message per item type. Costs O(peers + items requested × log n); the
    /// application is asked whether it already has an item just before it is requested, at
    /// most [`MAX_FETCH_CHECKS_PER_PASS`] times per pass.
    pub(super) fn fetch_items(&mut self, now: TimePoint) {
        self.next_fetch = i64::MAX;
        // A saturated application takes nothing more until commits catch up
        // ([`Node::on_durable`] fetches again).
        if self.fetch.queued() == 0 || self.delegate.saturated() {
            return;
        }
        let mut checks = 0;
        let candidates: Vec<PeerId> = self.fetch.peers_with_queued().collect();
        'peers: for peer in candidates {
            if !self.can_fetch_from(peer) {
                continue;
            }
            let mut batch: Vec<ItemId> = Vec::new();
            while batch.len() < MAX_ITEMS_PER_PEER_PER_PASS {
                let Some(item) = self.fetch.best_for(peer) else {
                    break;
                };
                if checks == MAX_FETCH_CHECKS_PER_PASS {
                    // Go on at once, after other events had their turn.
                    self.next_fetch = now.0;
                    self.request_batch(peer, batch, now);
                    break 'peers;
                }
                checks += 1;
                if self.delegate.has_item(&item) {
                    self.fetch.remove(&item);
                    continue;
                }
                self.fetch.mark_requested(item, peer);
                batch.push(item);
            }
            self.request_batch(peer, batch, now);
        }
    }

    /// Sends `peer` one fetch_items per item type for `batch` and records the requests.
    fn request_batch(&mut self, peer: PeerId, batch: Vec<ItemId>, now: TimePoint) {
        if batch.is_empty() {
            return;
        }
        let mut by_type: Vec<(u32, Vec<ItemHash>)> = Vec::new();
        if let Some(p) = self.peers.get_mut(&peer) {
            for item in &batch {
                p.items_requested.insert(*item, now);
                match by_type.iter_mut().find(|(t, _)| *t == item.item_type) {
                    Some((_, v)) => v.push(item.item_hash),
                    None => by_type.push((item.item_type, vec![item.item_hash])),
                }
            }
        }
        // Blocks first.
        by_type.sort_by_key(|(t, _)| *t != msg_type::BLOCK);
        for (item_type, items_to_fetch) in by_type {
            self.send(
                peer,
                Message::FetchItems(FetchItemsMessage {
                    item_type,
                    items_to_fetch,
                }),
                now,
            );
        }
    }

    /// `except` will not deliver `item` (it lacks it, or closed): the item goes back in the
    /// queue if another active peer still advertises it. O(advertisers).
    pub(super) fn requeue_item(&mut self, item: ItemId, except: PeerId) {
        let peers = &self.peers;
        self.fetch.request_failed(item, except, |a| {
            peers.get(&a).is_some_and(|p| {
                p.list == ConnectionList::Active && p.inventory_advertised_to_us.contains(&item)
            })
        });
    }

    pub(super) fn on_fetch_items(&mut self, peer: PeerId, m: FetchItemsMessage, now: TimePoint) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if p.serve_queue.len() + m.items_to_fetch.len() > MAX_SERVE_QUEUE {
            let endpoint = p.remote_endpoint;
            warn!(%endpoint, "peer asked for more items than we serve at once");
            self.misbehaved(peer, super::bans::Violation::FetchFlood, now);
            self.disconnect(peer, "You requested too many items at once", true, now);
            return;
        }
        for hash in m.items_to_fetch {
            p.serve_queue.push_back(ItemId {
                item_type: m.item_type,
                item_hash: hash,
            });
        }
        self.serve_items(peer, now);
    }

    /// Sends queued items while the peer's send queue has room: like the reference's lazily
    /// built item messages, a request for many large blocks never sits in memory at once. At
    /// most [`MAX_ITEMS_SERVED_PER_TURN`] per call; each item written calls again.
    pub(super) fn serve_items(&mut self, peer: PeerId, now: TimePoint) {
        for _ in 0..MAX_ITEMS_SERVED_PER_TURN {
            let Some(p) = self.peers.get_mut(&peer) else {
                return;
            };
            if p.queued_bytes >= MAX_QUEUED_BYTES_PER_PEER / 2 {
                return;
            }
            let Some(item) = p.serve_queue.pop_front() else {
                return;
            };
            let message = match self.delegate.get_item(&item) {
                Some(data) if item.item_type == msg_type::BLOCK => Message::Block(data),
                Some(data) if item.item_type == msg_type::TRX => Message::Trx(data),
                _ => Message::ItemNotAvailable(ItemNotAvailableMessage {
                    requested_item: item,
                }),
            };
            self.send_unchecked(peer, message, now);
        }
    }

    /// A requested trx or block arrived (normal operation or sync).
    pub(super) fn on_item(&mut self, peer: PeerId, message: Message, now: TimePoint) {
        let (item_type, data) = match message {
            Message::Trx(d) => (msg_type::TRX, d),
            Message::Block(d) => (msg_type::BLOCK, d),
            _ => return,
        };
        if item_type == msg_type::BLOCK && self.is_sync_block(peer, &data) {
            self.on_sync_block(peer, data, now);
            // The last sync block in flight leaves the peer idle for items.
            self.fetch_items(now);
            return;
        }
        let item = ItemId {
            item_type,
            item_hash: message_hash(&data),
        };
        let requested = self
            .peers
            .get_mut(&peer)
            .and_then(|p| p.items_requested.remove(&item))
            .is_some();
        if !requested {
            let reason = if item_type == msg_type::BLOCK {
                "You sent me a block that I didn't ask for"
            } else {
                "You sent me a message that I didn't request"
            };
            self.misbehaved(peer, super::bans::Violation::UnrequestedItem, now);
            self.disconnect(peer, reason, true, now);
            return;
        }
        self.fetch.remove(&item);
        self.bodies_received += 1;
        if self.delegate.has_item(&item) {
            self.duplicate_bodies += 1;
            return;
        }
        if item_type == msg_type::TRX {
            match self.delegate.handle_transaction(&data, now) {
                Ok(()) => {
                    self.announce(item);
                    // At once when the last advertisement is a batch window old (no added
                    // latency when the node is idle), else when that window ends: at most one
                    // durable commit per window under load.
                    let due = self
                        .last_advertise
                        .saturating_add(ADVERTISE_BATCH_US)
                        .max(now.0);
                    self.next_advertise = self.next_advertise.min(due);
                }
                Err(e) => {
                    debug!(error = %e, "transaction refused");
                    self.recently_failed
                        .insert_capped(item, now, MAX_RECENTLY_FAILED);
                }
            }
        } else {
            match self.apply_live_block(data, now) {
                Some(Ok(BlockOutcome::Held { .. })) => {
                    // We are behind this peer: sync with it (the reference restarts sync on
                    // an unlinkable block) and never blame it.
                    self.start_sync(peer, now);
                }
                // Accepted blocks are already announced and counted.
                Some(Ok(BlockOutcome::Accepted { .. } | BlockOutcome::Duplicate)) | None => {}
                Some(Err(e)) if e.blames_peer() => {
                    info!(error = %e, "invalid block");
                    self.misbehaved(peer, super::bans::Violation::InvalidBlock, now);
                    self.recently_failed
                        .insert_capped(item, now, MAX_RECENTLY_FAILED);
                    self.disconnect(
                        peer,
                        "You offered me a block that I have deemed to be invalid",
                        true,
                        now,
                    );
                }
                Some(Err(e)) => warn!(error = %e, "could not apply a block"),
            }
            // Advertised with any waiting transactions as soon as they are durable.
            self.advertise_inventory(now);
        }
        self.fetch_items(now);
    }

    /// Hands one block from outside a sync (gossip or a broadcast) to the application. When it
    /// joins the chain, it and any held blocks it linked are announced and counted here, so
    /// callers only decide what a held or refused block means for them. Returns the
    /// application's answer; `None` if it gave none.
    fn apply_live_block(
        &mut self,
        data: Vec<u8>,
        now: TimePoint,
    ) -> Option<Result<BlockOutcome, DelegateError>> {
        let outcome = self
            .delegate
            .handle_blocks(std::slice::from_ref(&data), false)
            .into_iter()
            .next();
        if let Some(Ok(BlockOutcome::Accepted { linked })) = &outcome {
            self.announce_blocks(linked);
            self.blocks_applied(linked.len(), now);
        }
        outcome
    }

    /// Advertises blocks that joined the chain, by their inventory hash.
    pub(super) fn announce_blocks(&mut self, ids: &[crate::wire::types::BlockId]) {
        for id in ids {
            let by_id = ItemId {
                item_type: msg_type::BLOCK,
                item_hash: *id,
            };
            if let Some(data) = self.delegate.get_item(&by_id) {
                self.announce(ItemId {
                    item_type: msg_type::BLOCK,
                    item_hash: message_hash(&data),
                });
            }
        }
    }

    pub(super) fn on_item_not_available(&mut self, peer: PeerId, item: ItemId, now: TimePoint) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if p.items_requested.remove(&item).is_some() {
            // As the reference: it no longer counts as having it; someone else is asked.
            p.inventory_advertised_to_us.remove(&item);
            self.requeue_item(item, peer);
            self.fetch_items(now);
            return;
        }
        if item.item_type == msg_type::BLOCK && p.sync.requested.remove(&item.item_hash).is_some() {
            // The peer lacks a block it offered: stop syncing from it, and make sure someone
            // else is asked for the block.
            p.sync.ids_to_get.clear();
            p.sync.ids_to_get_set.clear();
            p.sync.we_need_sync_items = false;
            let peer_needs_us = p.sync.peer_needs_sync_items;
            self.active_sync_requests.remove(&item.item_hash);
            let queued_elsewhere = self
                .peers
                .values()
                .any(|q| q.id != peer && q.sync.ids_to_get_set.contains(&item.item_hash));
            if !queued_elsewhere {
                let others: Vec<PeerId> = self
                    .peers
                    .values()
                    .filter(|q| q.id != peer && q.list == ConnectionList::Active)
                    .map(|q| q.id)
                    .collect();
                for q in others {
                    self.start_sync(q, now);
                }
            }
            if !peer_needs_us {
                self.disconnect(
                    peer,
                    "You are missing a sync item you claim to have, your database is probably corrupted.",
                    true,
                    now,
                );
            }
            self.fetch_sync_items(now);
        }
    }

    /// An operator broadcast: the application takes the item, then peers hear of it. Answers
    /// the item hash (ripemd160 of the data) and what became of the item: a block whose parent
    /// is unknown is only held (and says which parent it waits for), never reported accepted.
    pub fn broadcast(&mut self, item_type: u32, data: Vec<u8>, now: TimePoint) -> super::Broadcast {
        use super::BroadcastOutcome as Outcome;
        let id = message_hash(&data);
        let item = ItemId {
            item_type,
            item_hash: id,
        };
        let outcome = match item_type {
            msg_type::TRX if self.delegate.has_item(&item) => {
                // Told again to peers that have not heard of it from us.
                self.announce(item);
                Outcome::Duplicate
            }
            msg_type::TRX => match self.delegate.handle_transaction(&data, now) {
                Ok(()) => {
                    self.announce(item);
                    Outcome::Accepted
                }
                Err(e) => Outcome::Rejected(e),
            },
            msg_type::BLOCK => match self.apply_live_block(data, now) {
                // Announced and counted by apply_live_block.
                Some(Ok(BlockOutcome::Accepted { .. })) => Outcome::Accepted,
                Some(Ok(BlockOutcome::Held { missing_parent })) => Outcome::Held { missing_parent },
                Some(Ok(BlockOutcome::Duplicate)) => Outcome::Duplicate,
                Some(Err(e)) => Outcome::Rejected(e),
                None => Outcome::Rejected(DelegateError::Local(
                    "the application gave no answer for the block".into(),
                )),
            },
            other => Outcome::NotAnItem(other),
        };
        self.advertise_inventory(now);
        super::Broadcast { id, outcome }
    }

    /// The timed tables' housekeeping: forgets advertisements older than the inventory
    /// memory, items nobody advertised for as long, failures older than
    /// [`RECENTLY_FAILED_US`], and closed peers' fetch views; at most
    /// [`MAX_EXPIRED_PER_TURN`] entries in all. Returns whether work remains (the caller runs
    /// it again at once, in a later turn).
    pub(super) fn expire_inventory(&mut self, now: TimePoint) -> bool {
        let cutoff = TimePoint(now.0 - INVENTORY_MEMORY_US);
        let mut budget = MAX_EXPIRED_PER_TURN;
        let mut more = false;
        let ids: Vec<PeerId> = self.peers.keys().copied().collect();
        let mut forgotten = Vec::new();
        for id in ids {
            if budget == 0 {
                break;
            }
            let Some(p) = self.peers.get_mut(&id) else {
                continue;
            };
            more |= p
                .inventory_advertised_to_us
                .expire(cutoff, budget, |item| forgotten.push(item));
            budget -= forgotten.len();
            for item in forgotten.drain(..) {
                self.fetch.forget_advertiser(&item, id);
            }
            let mut n = 0;
            more |= p
                .inventory_advertised_to_peer
                .expire(cutoff, budget, |_| n += 1);
            budget -= n;
        }
        let mut n = 0;
        more |= self
            .recently_failed
            .expire(TimePoint(now.0 - RECENTLY_FAILED_US), budget, |_| n += 1);
        budget -= n;
        let before = self.fetch.len();
        more |= self.fetch.expire(cutoff, budget);
        budget -= before - self.fetch.len();
        more |= self.fetch.clean_closed(budget);
        more || budget == 0
    }
}
