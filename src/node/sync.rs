//! Blockchain sync (node.cpp's fetch_sync_items_loop, on_fetch_blockchain_item_ids_message,
//! on_blockchain_item_ids_inventory_message, process_backlog_of_sync_blocks): our synopsis ->
//! fetch_blockchain_item_ids -> ids -> blocks fetched in parallel from every peer that has them
//! -> handed to the application in order -> repeat until caught up.

use tracing::{debug, info, warn};

use super::Node;
use super::config::*;
use crate::app::BlockOutcome;
use crate::peer::{ConnectionList, OurHelloState, PeerId};
use crate::wire::Message;
use crate::wire::message::{
    BlockchainItemIdsInventoryMessage, FetchBlockchainItemIdsMessage, FetchItemsMessage, ItemId,
    block_id_of, msg_type,
};
use crate::wire::types::{BlockId, Direction, TimePoint};

/// Sync progress, for the status API and the progress bar.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct SyncProgress {
    pub syncing: bool,
    pub sync_target_block: u32,
    pub blocks_per_second: f64,
}

impl Node {
    /// Asks `peer` which blocks follow our synopsis.
    pub(super) fn start_sync(&mut self, peer: PeerId, now: TimePoint) {
        let synopsis = self.delegate.blockchain_synopsis();
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if p.sync.ids_request.is_some() {
            return;
        }
        p.sync.we_need_sync_items = true;
        self.request_ids(peer, synopsis, now);
    }

    /// Asks `peer` for the ids after the last one it offered.
    fn request_more_ids(&mut self, peer: PeerId, now: TimePoint) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if p.sync.ids_request.is_some() {
            return;
        }
        let Some(last) = p.sync.last_offered else {
            return;
        };
        // Our own synopsis then the last id offered: the peer continues after `last`, or, if
        // it has since switched away from it, from the last of our blocks it still has.
        let mut synopsis = self.delegate.blockchain_synopsis();
        synopsis.push(last);
        self.request_ids(peer, synopsis, now);
    }

    /// Sends `peer` a fetch_blockchain_item_ids for the blocks after `synopsis`, remembering
    /// the synopsis so the answer can be checked against it and no second request overlaps.
    fn request_ids(&mut self, peer: PeerId, synopsis: Vec<BlockId>, now: TimePoint) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        p.sync.ids_request = Some((synopsis.clone(), now));
        self.send(
            peer,
            Message::FetchBlockchainItemIds(FetchBlockchainItemIdsMessage {
                item_type: msg_type::BLOCK,
                blockchain_synopsis: synopsis,
            }),
            now,
        );
    }

    /// A peer's sync request: the ids after the last block we share, starting with it.
    pub(super) fn on_fetch_blockchain_item_ids(
        &mut self,
        peer: PeerId,
        m: FetchBlockchainItemIdsMessage,
        now: TimePoint,
    ) {
        let (ids, remaining) = self
            .delegate
            .block_ids_after(&m.blockchain_synopsis, SYNC_ID_BATCH);
        let caught_up =
            ids.is_empty() || (ids.len() == 1 && m.blockchain_synopsis.contains(&ids[0]));
        if let Some(p) = self.peers.get_mut(&peer) {
            p.sync.peer_needs_sync_items = !caught_up;
        }
        self.send(
            peer,
            Message::BlockchainItemIdsInventory(BlockchainItemIdsInventoryMessage {
                total_remaining_item_count: remaining,
                item_type: msg_type::BLOCK,
                item_hashes_available: ids,
            }),
            now,
        );
        if let Some(p) = self.peers.get(&peer)
            && p.direction == Direction::Inbound
            && p.our_state == OurHelloState::Accepted
        {
            self.activate(peer, now);
        }
        // The peer's synopsis ends with a block we lack: it is ahead of us, sync with it.
        let behind = m.blockchain_synopsis.last().is_some_and(|last| {
            !self.delegate.has_item(&ItemId {
                item_type: msg_type::BLOCK,
                item_hash: *last,
            })
        });
        if behind
            && self
                .peers
                .get(&peer)
                .is_some_and(|p| p.list == ConnectionList::Active && !p.sync.we_need_sync_items)
        {
            self.start_sync(peer, now);
        }
    }

    /// The answer to our sync request.
    pub(super) fn on_blockchain_item_ids_inventory(
        &mut self,
        peer: PeerId,
        m: BlockchainItemIdsInventoryMessage,
        now: TimePoint,
    ) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        let Some((synopsis, _)) = p.sync.ids_request.take() else {
            debug!(endpoint = %p.remote_endpoint, "ignoring unrequested block ids");
            return;
        };
        let ids = m.item_hashes_available;
        let sequential = ids
            .windows(2)
            .all(|w| w[1].block_number() == w[0].block_number().wrapping_add(1));
        let anchored = match ids.first() {
            None => true,
            Some(first) if synopsis.is_empty() => first.block_number() == 1,
            Some(first) => synopsis.contains(first) || first.block_number() == 1,
        };
        let remaining = m.total_remaining_item_count;
        // The reference's plausibility check: blocks cannot come faster than one a second, so
        // more than that from our head to an hour from now is a lie (and an empty list with
        // more to come is not an answer at all).
        let head = self.delegate.accepted_head();
        let unfetched = ids.last().map_or(0, |l| {
            i64::from(l.block_number().saturating_sub(head.number))
        }) + i64::from(remaining);
        let plausible = (i64::from(head.time.0) + unfetched) * SECOND_US
            <= now.0 + FUTURE_SYNC_GRACE_US
            && !(ids.is_empty() && remaining > 0);
        if !sequential || !anchored || !plausible {
            let reason = if plausible {
                "You gave an invalid response to my request for sync blocks"
            } else {
                "You offered me a list of more sync blocks than could possibly exist"
            };
            self.disconnect(peer, reason, true, now);
            return;
        }
        // In sync with this peer only when it offers nothing, or just a block we have.
        let caught_up = ids.is_empty()
            || (ids.len() == 1
                && self.delegate.has_item(&ItemId {
                    item_type: msg_type::BLOCK,
                    item_hash: ids[0],
                }));
        if caught_up {
            p.sync.we_need_sync_items = false;
            p.sync.remaining = 0;
            debug!(endpoint = %p.remote_endpoint, peer, "in sync with peer");
            return;
        }
        p.sync.remaining = remaining;
        if let Some(last) = ids.last() {
            p.sync.last_offered = Some(*last);
            self.sync_target = self
                .sync_target
                .max(last.block_number().saturating_add(remaining));
            if self.sync_target > self.delegate.accepted_head().number {
                self.sync_running = true;
            }
        }
        let fresh: Vec<BlockId> = ids
            .into_iter()
            .filter(|id| {
                !self.delegate.has_item(&ItemId {
                    item_type: msg_type::BLOCK,
                    item_hash: *id,
                })
            })
            .collect();
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        let mut added = 0;
        for id in fresh {
            if p.sync.ids_to_get_set.insert(id) {
                p.sync.ids_to_get.push_back(id);
                added += 1;
            }
        }
        let queued = p.sync.ids_to_get.len();
        if remaining > 0 && queued < MIN_BLOCK_IDS_TO_PREFETCH {
            self.request_more_ids(peer, now);
        } else if queued == 0 && p.sync.requested.is_empty() {
            // Everything offered is known: ask once more with our synopsis, whose answer tells
            // both sides we are in sync (the peer only then advertises inventory to us).
            self.request_ids(peer, self.delegate.blockchain_synopsis(), now);
        }
        if added > 0 {
            self.fetch_sync_items(now);
        }
    }

    /// Whether a block from `peer` answers one of our sync requests.
    pub(super) fn is_sync_block(&self, peer: PeerId, data: &[u8]) -> bool {
        let Ok(id) = block_id_of(data) else {
            return false;
        };
        self.peers
            .get(&peer)
            .is_some_and(|p| p.sync.requested.contains_key(&id))
    }

    /// fetch_sync_items: ask every peer with queued ids for up to
    /// [`MAX_SYNC_BLOCKS_PER_PEER`] blocks in flight, none asked twice, while the backlog of
    /// received blocks is below [`MAX_SYNC_BLOCKS_TO_PREFETCH`].
    pub(super) fn fetch_sync_items(&mut self, now: TimePoint) {
        let peers: Vec<PeerId> = self
            .peers
            .values()
            .filter(|p| p.list == ConnectionList::Active && !p.sync.ids_to_get.is_empty())
            .map(|p| p.id)
            .collect();
        let head = self.delegate.accepted_head().number;
        for peer in peers {
            let mut batch = Vec::new();
            {
                let Some(p) = self.peers.get_mut(&peer) else {
                    continue;
                };
                let room = MAX_SYNC_BLOCKS_PER_PEER.saturating_sub(p.sync.requested.len());
                let mut budget = MAX_SYNC_BLOCKS_TO_PREFETCH
                    .saturating_sub(self.sync_received.len() + self.active_sync_requests.len());
                if self.sync_received_bytes >= MAX_SYNC_BYTES_BUFFERED {
                    budget = 0;
                }
                let mut keep = std::collections::VecDeque::new();
                while let Some(id) = p.sync.ids_to_get.pop_front() {
                    if id.block_number() <= head
                        || self.sync_received.contains_key(&id.block_number())
                    {
                        p.sync.ids_to_get_set.remove(&id);
                        continue;
                    }
                    if batch.len() < room
                        && budget > 0
                        && !self.active_sync_requests.contains_key(&id)
                    {
                        p.sync.ids_to_get_set.remove(&id);
                        batch.push(id);
                        budget -= 1;
                    } else {
                        keep.push_back(id);
                        if batch.len() >= room || budget == 0 {
                            break;
                        }
                    }
                }
                // Put back what was skipped, ahead of the rest, in order.
                while let Some(id) = keep.pop_back() {
                    p.sync.ids_to_get.push_front(id);
                }
                for id in &batch {
                    p.sync.requested.insert(*id, now);
                }
                if !batch.is_empty() {
                    // The request timeout counts from the newest request, as the reference's.
                    p.sync.last_item_received = now;
                }
            }
            if batch.is_empty() {
                continue;
            }
            for id in &batch {
                self.active_sync_requests.insert(*id, peer);
            }
            self.send(
                peer,
                Message::FetchItems(FetchItemsMessage {
                    item_type: msg_type::BLOCK,
                    items_to_fetch: batch,
                }),
                now,
            );
        }
    }

    pub(super) fn on_sync_block(&mut self, peer: PeerId, data: Vec<u8>, now: TimePoint) {
        let Ok(id) = block_id_of(&data) else {
            return;
        };
        if let Some(p) = self.peers.get_mut(&peer) {
            p.sync.requested.remove(&id);
            p.sync.last_item_received = now;
        }
        self.active_sync_requests.remove(&id);
        self.bodies_received += 1;
        self.sync_received_bytes += data.len();
        if let Some((_, old, _)) = self
            .sync_received
            .insert(id.block_number(), (id, data, peer))
        {
            self.sync_received_bytes -= old.len();
        }
        // Apply in batches (committed behind, grouped): when a full batch is contiguous, or when
        // this peer has nothing more in flight.
        let head = self.delegate.accepted_head().number;
        let batch_end = head.saturating_add(MAX_BLOCKS_TO_HANDLE_AT_ONCE as u32);
        let batch_ready = self
            .sync_received
            .range(head.saturating_add(1)..=batch_end)
            .count()
            == MAX_BLOCKS_TO_HANDLE_AT_ONCE;
        let peer_idle = self
            .peers
            .get(&peer)
            .is_none_or(|p| p.sync.requested.is_empty());
        if batch_ready || peer_idle {
            self.process_sync_backlog(now);
        }
        // Keep the pipeline full, and ask for more ids when a peer's queue runs dry.
        let dry: Vec<PeerId> = self
            .peers
            .values()
            .filter(|p| {
                p.list == ConnectionList::Active
                    && p.sync.ids_to_get.len() < MIN_BLOCK_IDS_TO_PREFETCH / 2
                    && p.sync.remaining > 0
                    && p.sync.ids_request.is_none()
            })
            .map(|p| p.id)
            .collect();
        for p in dry {
            self.request_more_ids(p, now);
        }
        let drained: Vec<PeerId> = self
            .peers
            .values()
            .filter(|p| {
                p.list == ConnectionList::Active
                    && p.sync.we_need_sync_items
                    && p.sync.ids_to_get.is_empty()
                    && p.sync.requested.is_empty()
                    && p.sync.remaining == 0
                    && p.sync.ids_request.is_none()
            })
            .map(|p| p.id)
            .collect();
        for p in drained {
            let synopsis = self.delegate.blockchain_synopsis();
            self.request_ids(p, synopsis, now);
        }
        self.fetch_sync_items(now);
    }

    /// Hands received sync blocks to the application in chain order, in batches.
    /// Stops while the application is saturated (too much accepted is not durable yet); the
    /// blocks wait, and fetching stops with them once [`MAX_SYNC_BLOCKS_TO_PREFETCH`] are
    /// received. [`Node::on_durable`] goes on.
    pub(super) fn process_sync_backlog(&mut self, now: TimePoint) {
        loop {
            if self.delegate.saturated() {
                return;
            }
            let head = self.delegate.accepted_head().number;
            // Blocks at or below the head are stale (we got them another way).
            while let Some((&n, _)) = self.sync_received.first_key_value() {
                if n > head {
                    break;
                }
                if let Some((_, (_, data, _))) = self.sync_received.pop_first() {
                    self.sync_received_bytes -= data.len();
                }
            }
            let mut batch = Vec::new();
            let mut senders = Vec::new();
            let mut next = head + 1;
            while batch.len() < MAX_BLOCKS_TO_HANDLE_AT_ONCE {
                let Some((_, data, sender)) = self.sync_received.remove(&next) else {
                    break;
                };
                self.sync_received_bytes -= data.len();
                batch.push(data);
                senders.push(sender);
                next += 1;
            }
            if batch.is_empty() {
                return;
            }
            let outcomes = self.delegate.handle_blocks(&batch, true);
            let mut applied = 0;
            for (outcome, sender) in outcomes.into_iter().zip(senders) {
                match outcome {
                    Ok(BlockOutcome::Accepted { linked }) => applied += linked.len(),
                    Ok(BlockOutcome::Duplicate | BlockOutcome::Held { .. }) => {}
                    Err(e) if e.blames_peer() => {
                        warn!(error = %e, "invalid sync block");
                        self.misbehaved(sender, super::bans::Violation::InvalidBlock, now);
                        self.disconnect(
                            sender,
                            "You offered us a block that we reject as invalid",
                            true,
                            now,
                        );
                    }
                    Err(e) => {
                        warn!(error = %e, "could not apply sync blocks");
                        return;
                    }
                }
            }
            self.blocks_applied(applied, now);
            if applied == 0 {
                return;
            }
            self.resync_in_sync_peers(now);
        }
    }

    /// Sync blocks joined our chain, and nobody hears of them by gossip: ask every peer that is
    /// in sync with us both ways for ids after our new head (the reference restarts
    /// synchronization with them). A peer that lacks our head learns from the request that we
    /// are ahead and syncs from us; without this, a node that caught up while it bridged a part
    /// of the network that is behind would never tell that part.
    fn resync_in_sync_peers(&mut self, now: TimePoint) {
        let in_sync: Vec<PeerId> = self
            .peers
            .values()
            .filter(|p| {
                p.list == ConnectionList::Active
                    && !p.sync.peer_needs_sync_items
                    && !p.sync.we_need_sync_items
                    && p.sync.ids_to_get.is_empty()
                    && p.sync.requested.is_empty()
            })
            .map(|p| p.id)
            .collect();
        for peer in in_sync {
            self.start_sync(peer, now);
        }
    }

    /// Counts applied blocks for the blocks-per-second figure and logs progress.
    pub(super) fn blocks_applied(&mut self, n: usize, now: TimePoint) {
        if n == 0 {
            return;
        }
        self.blocks_applied_total += n as u64;
        let head = self.delegate.accepted_head().number;
        self.sync_target = self.sync_target.max(head);
        // Blocks per second over windows of at least one second.
        let window = now.0 - self.rate_window_start.0;
        self.rate_window_blocks += n as u64;
        if window >= SECOND_US {
            self.blocks_per_second =
                self.rate_window_blocks as f64 * SECOND_US as f64 / window as f64;
            self.rate_window_start = now;
            self.rate_window_blocks = 0;
            if self.sync_target > head && self.log_sync_progress {
                info!(
                    head,
                    target = self.sync_target,
                    blocks_per_second = format!("{:.0}", self.blocks_per_second),
                    "syncing"
                );
            }
        }
        if self.sync_target > head {
            self.sync_running = true;
        } else if self.sync_running {
            self.sync_running = false;
            info!(head, "synced to block {head}");
        }
    }

    /// Whether sync progress is logged every second while syncing ("syncing" lines): on by
    /// default, off when the runtime draws a progress bar instead.
    pub fn set_log_sync_progress(&mut self, on: bool) {
        self.log_sync_progress = on;
    }

    /// Where sync stands.
    pub fn sync_progress(&self) -> SyncProgress {
        let head = self.delegate.accepted_head().number;
        SyncProgress {
            syncing: self.sync_target > head,
            sync_target_block: self.sync_target.max(head),
            blocks_per_second: self.blocks_per_second,
        }
    }

    /// Puts a closed peer's sync requests back for others.
    pub(super) fn release_sync_requests(
        &mut self,
        ids: impl IntoIterator<Item = BlockId>,
        now: TimePoint,
    ) {
        let mut any = false;
        for id in ids {
            self.active_sync_requests.remove(&id);
            any = true;
        }
        if any {
            self.fetch_sync_items(now);
        }
    }
}
