//! Inventory gossip, item fetching and serving in normal operation (node.cpp's
//! advertise_inventory_loop, fetch_items_loop, on_item_ids_inventory_message,
//! on_fetch_items_message), plus broadcasts from the operator.

use std::collections::HashSet;

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
    pub(super) fn announce(&mut self, item: ItemId) {
        if !self.new_inventory.contains(&item) {
            self.new_inventory.push(item);
        }
    }

    /// advertise_inventory: tell every active peer that is not syncing from us about new
    /// items it has not told us about and we have not told it about.
    pub(super) fn advertise_inventory(&mut self, now: TimePoint) {
        if self.new_inventory.is_empty() {
            return;
        }
        let items = std::mem::take(&mut self.new_inventory);
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
                    if p.inventory_advertised_to_us.contains_key(item)
                        || p.inventory_advertised_to_peer.contains_key(item)
                        || p.inventory_advertised_to_peer.len() >= MAX_INVENTORY_PER_PEER
                    {
                        continue;
                    }
                    p.inventory_advertised_to_peer.insert(*item, now);
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

    pub(super) fn on_item_ids_inventory(
        &mut self,
        peer: PeerId,
        m: ItemIdsInventoryMessage,
        now: TimePoint,
    ) {
        let mut wanted = false;
        for hash in m.item_hashes_available {
            let item = ItemId {
                item_type: m.item_type,
                item_hash: hash,
            };
            let Some(p) = self.peers.get_mut(&peer) else {
                return;
            };
            if p.inventory_advertised_to_us.len() >= MAX_INVENTORY_PER_PEER {
                // The reference stops reading the message here, without blame; we count it.
                self.misbehaved(peer, super::bans::Violation::InventoryFlood, now);
                break;
            }
            p.inventory_advertised_to_us.insert(item, now);
            if self.requested_items.contains_key(&item)
                || self.items_to_fetch.contains_key(&item)
                || self
                    .recently_failed
                    .get(&item)
                    .is_some_and(|t| now.0 - t.0 < RECENTLY_FAILED_US)
                || self.items_to_fetch.len() >= MAX_ITEMS_TO_FETCH
                || self.delegate.has_item(&item)
            {
                continue;
            }
            self.items_to_fetch.insert(item, now);
            wanted = true;
        }
        if wanted {
            self.fetch_items(now);
        }
    }

    /// fetch_items: give each wanted item to one peer that advertised it, at most
    /// [`MAX_ITEMS_PER_PEER_PER_PASS`] per peer per pass, blocks first.
    pub(super) fn fetch_items(&mut self, now: TimePoint) {
        if self.items_to_fetch.is_empty() {
            return;
        }
        let mut order: Vec<(ItemId, TimePoint)> =
            self.items_to_fetch.iter().map(|(i, t)| (*i, *t)).collect();
        // Blocks before transactions, then oldest first.
        order.sort_by_key(|(i, t)| (i.item_type != msg_type::BLOCK, *t, i.item_hash));
        let mut given: Vec<(PeerId, usize)> = Vec::new();
        for (item, _) in order {
            if self.delegate.has_item(&item) {
                self.items_to_fetch.remove(&item);
                continue;
            }
            let candidate = self
                .peers
                .values()
                .filter(|p| p.list == ConnectionList::Active)
                .filter(|p| p.inventory_advertised_to_us.contains_key(&item))
                .filter(|p| {
                    given
                        .iter()
                        .find(|(id, _)| *id == p.id)
                        .map_or(0, |(_, n)| *n)
                        < MAX_ITEMS_PER_PEER_PER_PASS
                })
                .min_by_key(|p| (p.items_requested.len(), p.id))
                .map(|p| p.id);
            let Some(peer) = candidate else {
                continue;
            };
            match given.iter_mut().find(|(id, _)| *id == peer) {
                Some((_, n)) => *n += 1,
                None => given.push((peer, 1)),
            }
            self.items_to_fetch.remove(&item);
            self.requested_items.insert(item, peer);
            if let Some(p) = self.peers.get_mut(&peer) {
                p.items_requested.insert(item, now);
            }
            self.send(
                peer,
                Message::FetchItems(FetchItemsMessage {
                    item_type: item.item_type,
                    items_to_fetch: vec![item.item_hash],
                }),
                now,
            );
        }
    }

    /// Puts `item` back in the fetch queue if an active peer other than `except` has it.
    pub(super) fn requeue_item(&mut self, item: ItemId, except: PeerId, now: TimePoint) {
        self.requested_items.remove(&item);
        let someone = self.peers.values().any(|p| {
            p.id != except
                && p.list == ConnectionList::Active
                && p.inventory_advertised_to_us.contains_key(&item)
        });
        if someone && !self.delegate.has_item(&item) {
            self.items_to_fetch.insert(item, now);
        }
    }

    pub(super) fn on_fetch_items(&mut self, peer: PeerId, m: FetchItemsMessage, now: TimePoint) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        for hash in m.items_to_fetch {
            p.serve_queue.push_back(ItemId {
                item_type: m.item_type,
                item_hash: hash,
            });
        }
        if p.serve_queue.len() > MAX_SERVE_QUEUE {
            let endpoint = p.remote_endpoint;
            warn!(%endpoint, "peer asked for more items than we serve at once");
            self.misbehaved(peer, super::bans::Violation::FetchFlood, now);
            self.disconnect(peer, "You requested too many items at once", true, now);
            return;
        }
        self.serve_items(peer, now);
    }

    /// Sends queued items while the peer's send queue has room: like the reference's lazily
    /// built item messages, a request for many large blocks never sits in memory at once.
    pub(super) fn serve_items(&mut self, peer: PeerId, now: TimePoint) {
        loop {
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
        self.requested_items.remove(&item);
        self.bodies_received += 1;
        if self.delegate.has_item(&item) {
            self.duplicate_bodies += 1;
            return;
        }
        if item_type == msg_type::TRX {
            match self.delegate.handle_transaction(&data, now) {
                Ok(()) => self.announce(item),
                Err(e) => {
                    debug!(error = %e, "transaction refused");
                    self.recently_failed.insert(item, now);
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
                    self.recently_failed.insert(item, now);
                    self.disconnect(
                        peer,
                        "You offered me a block that I have deemed to be invalid",
                        true,
                        now,
                    );
                }
                Some(Err(e)) => warn!(error = %e, "could not apply a block"),
            }
        }
        self.advertise_inventory(now);
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
        p.inventory_advertised_to_us.remove(&item);
        if p.items_requested.remove(&item).is_some() {
            self.requeue_item(item, peer, now);
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

    /// Forgets advertisements older than the inventory memory and re-queues timed-out requests.
    pub(super) fn expire_inventory(&mut self, now: TimePoint) {
        for p in self.peers.values_mut() {
            p.inventory_advertised_to_us
                .retain(|_, t| now.0 - t.0 < INVENTORY_MEMORY_US);
            p.inventory_advertised_to_peer
                .retain(|_, t| now.0 - t.0 < INVENTORY_MEMORY_US);
        }
        self.recently_failed
            .retain(|_, t| now.0 - t.0 < RECENTLY_FAILED_US);
        let live: HashSet<ItemId> = self
            .peers
            .values()
            .flat_map(|p| p.inventory_advertised_to_us.keys().copied())
            .collect();
        self.items_to_fetch.retain(|i, _| live.contains(i));
    }
}
