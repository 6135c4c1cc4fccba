//! What must hold of a [`Node`] between any two calls, checked on the value itself.
//!
//! [`Node::check_invariants`] states INVARIANTS.md's rules about connections, memory bounds and
//! bookkeeping as code. The simulated network (`node::sim`) calls it after every command it
//! carries out in debug builds, and the `node_events` fuzz target after every event, so a rule
//! that some sequence of events breaks is reported by name rather than noticed later as a leak
//! or a wrong count.
//!
//! The checks on the normal-operation fetch scheduling (`items_to_fetch`, `requested_items`,
//! the per-peer inventories and serve queues) are kept apart in
//! [`Node::check_fetch_invariants`], so they can follow that code when it changes.

use std::collections::{HashMap, HashSet};

use super::Node;
use super::config::*;
use crate::peer::{ConnectionList, OurHelloState, PeerId, TheirHelloState};
use crate::store::peer_db::MAX_PEER_RECORDS;
use crate::wire::frame::{MAX_MESSAGE_SIZE, padded_frame_len};
use crate::wire::message::ItemId;
use crate::wire::types::{BlockId, Direction, NodeId};

/// The most bytes that may be queued to a peer that is not closing: a served item is queued
/// while the queue is under half of [`MAX_QUEUED_BYTES_PER_PEER`], and that one item may be a
/// frame of the largest size; any other message that takes the queue past the limit closes
/// the connection.
pub fn queued_bytes_bound() -> usize {
    (MAX_QUEUED_BYTES_PER_PEER / 2 + padded_frame_len(MAX_MESSAGE_SIZE))
        .max(MAX_QUEUED_BYTES_PER_PEER)
}

/// Which invariant a [`Node`] broke, with the values that show it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvariantViolation {
    #[error("peer stored under id {key} says it is {id}")]
    PeerIdMismatch { key: PeerId, id: PeerId },
    #[error("peer id {id} is not below the next id to hand out ({next})")]
    PeerIdReused { id: PeerId, next: PeerId },
    #[error("peer {peer}: list {list:?} but closing_since set = {closing_since}")]
    ClosingMismatch {
        peer: PeerId,
        list: ConnectionList,
        closing_since: bool,
    },
    #[error("peer {peer}: we asked it to close but it is in {list:?}")]
    CloseRequestedButNotClosing { peer: PeerId, list: ConnectionList },
    #[error("peer {peer} is active with hello states ours={ours:?} theirs={theirs:?}")]
    ActiveWithoutHandshake {
        peer: PeerId,
        ours: OurHelloState,
        theirs: TheirHelloState,
    },
    #[error("peer {peer}: hello accepted but no node id or hello recorded")]
    AcceptedWithoutHello { peer: PeerId },
    #[error("peers {first} and {second} are both accepted as node {node_id}")]
    DuplicateAcceptedNodeId {
        first: PeerId,
        second: PeerId,
        node_id: NodeId,
    },
    #[error("peer {peer} was accepted with our own node id")]
    AcceptedOurselves { peer: PeerId },
    #[error("{accepted} accepted hellos, above max_connections {max}")]
    TooManyAccepted { accepted: usize, max: usize },
    #[error("{handshaking} connections handshaking, above the limit {limit}")]
    TooManyHandshaking { handshaking: usize, limit: usize },
    #[error("firewall probe {peer} is {direction:?}, {list:?}, hello {ours:?}")]
    ProbeMisused {
        peer: PeerId,
        direction: Direction,
        list: ConnectionList,
        ours: OurHelloState,
    },
    #[error("{probes} firewall probes open, above {limit}")]
    TooManyProbes { probes: usize, limit: usize },
    #[error("{queued} bytes queued to peer {peer} ({list:?}), above {limit}")]
    QueueOverLimit {
        peer: PeerId,
        list: ConnectionList,
        queued: usize,
        limit: usize,
    },
    #[error("{records} peer database records, above {limit}")]
    PeerDbOverLimit { records: usize, limit: usize },
    #[error("{len} endpoints on the dial-once list, above {limit}")]
    AddOnceOverLimit { len: usize, limit: usize },
    #[error("an endpoint is on the dial-once list twice")]
    AddOnceDuplicate,
    #[error("peer {peer}: sync id queue ({queue}) and its set ({set}) disagree")]
    SyncQueueMismatch {
        peer: PeerId,
        queue: usize,
        set: usize,
    },
    #[error("peer {peer} has sync block {block} requested, recorded for {recorded:?}")]
    SyncRequestUntracked {
        peer: PeerId,
        block: BlockId,
        recorded: Option<PeerId>,
    },
    #[error("sync block {block} is recorded as requested from {peer}, which did not ask it")]
    SyncRequestOrphan { block: BlockId, peer: PeerId },
    #[error("{received} sync blocks buffered and {in_flight} in flight, above {limit}")]
    SyncBufferOverLimit {
        received: usize,
        in_flight: usize,
        limit: usize,
    },
    #[error("sync buffer counts {counted} bytes but holds {actual}")]
    SyncBytesMismatch { counted: usize, actual: usize },
    #[error("sync block {block} is filed under number {number}")]
    SyncBlockMisfiled { number: u32, block: BlockId },
    #[error("peer {peer}: {len} items in its inventory {which}, above {limit}")]
    InventoryOverLimit {
        peer: PeerId,
        which: &'static str,
        len: usize,
        limit: usize,
    },
    #[error("{len} items waiting to be fetched, above {limit}")]
    ItemsToFetchOverLimit { len: usize, limit: usize },
    #[error("peer {peer} has {item:?} requested, recorded for {recorded:?}")]
    RequestedItemUntracked {
        peer: PeerId,
        item: ItemId,
        recorded: Option<PeerId>,
    },
    #[error("peer {peer} ({list:?}) has {len} items to be served, above {limit}")]
    ServeQueueOverLimit {
        peer: PeerId,
        list: ConnectionList,
        len: usize,
        limit: usize,
    },
}

impl Node {
    /// Checks every invariant that can be seen on the node's state; the first broken one is
    /// returned. Cost: linear in the peers and the items tracked.
    pub fn check_invariants(&self) -> Result<(), InvariantViolation> {
        self.check_connection_invariants()?;
        self.check_bound_invariants()?;
        self.check_sync_invariants()?;
        self.check_fetch_invariants()
    }

    /// Panics with the broken invariant; for tests and the fuzz targets.
    pub fn assert_invariants(&self) {
        if let Err(violation) = self.check_invariants() {
            panic!("node invariant broken: {violation}");
        }
    }

    /// Connection lists, the hello states and the connection limits.
    fn check_connection_invariants(&self) -> Result<(), InvariantViolation> {
        let mut accepted: HashMap<NodeId, PeerId> = HashMap::new();
        let (mut handshaking, mut accepted_count, mut probes) = (0, 0, 0);
        for (&key, p) in &self.peers {
            if p.id != key {
                return Err(InvariantViolation::PeerIdMismatch { key, id: p.id });
            }
            if key >= self.next_peer_id {
                return Err(InvariantViolation::PeerIdReused {
                    id: key,
                    next: self.next_peer_id,
                });
            }
            let closing = p.list == ConnectionList::Closing;
            if closing != p.closing_since.is_some() {
                return Err(InvariantViolation::ClosingMismatch {
                    peer: key,
                    list: p.list,
                    closing_since: p.closing_since.is_some(),
                });
            }
            if p.we_requested_close && !closing {
                return Err(InvariantViolation::CloseRequestedButNotClosing {
                    peer: key,
                    list: p.list,
                });
            }
            if p.probe_for.is_some() {
                probes += 1;
                if p.direction != Direction::Outbound
                    || p.list == ConnectionList::Active
                    || p.our_state != OurHelloState::NotSent
                {
                    return Err(InvariantViolation::ProbeMisused {
                        peer: key,
                        direction: p.direction,
                        list: p.list,
                        ours: p.our_state,
                    });
                }
                continue;
            }
            if p.list == ConnectionList::Active
                && (p.our_state != OurHelloState::Accepted
                    || p.their_state != TheirHelloState::Accepted)
            {
                return Err(InvariantViolation::ActiveWithoutHandshake {
                    peer: key,
                    ours: p.our_state,
                    theirs: p.their_state,
                });
            }
            if p.list == ConnectionList::Handshaking {
                handshaking += 1;
            }
            if p.their_state != TheirHelloState::Accepted {
                continue;
            }
            let (Some(node_id), Some(_)) = (p.node_id, &p.hello) else {
                return Err(InvariantViolation::AcceptedWithoutHello { peer: key });
            };
            if node_id == self.node_id {
                return Err(InvariantViolation::AcceptedOurselves { peer: key });
            }
            if closing {
                continue;
            }
            accepted_count += 1;
            if let Some(&first) = accepted.get(&node_id) {
                return Err(InvariantViolation::DuplicateAcceptedNodeId {
                    first,
                    second: key,
                    node_id,
                });
            }
            accepted.insert(node_id, key);
        }
        if accepted_count > self.config.max_connections {
            return Err(InvariantViolation::TooManyAccepted {
                accepted: accepted_count,
                max: self.config.max_connections,
            });
        }
        let limit = self.config.max_connections + EXTRA_HANDSHAKING_CONNECTIONS;
        if handshaking > limit {
            return Err(InvariantViolation::TooManyHandshaking { handshaking, limit });
        }
        if probes > MAX_FIREWALL_PROBES {
            return Err(InvariantViolation::TooManyProbes {
                probes,
                limit: MAX_FIREWALL_PROBES,
            });
        }
        Ok(())
    }

    /// Send queues, the peer database and the dial-once list.
    fn check_bound_invariants(&self) -> Result<(), InvariantViolation> {
        let limit = queued_bytes_bound();
        for p in self.peers.values() {
            // A closing peer's queue is the runtime's to drop with its socket.
            if p.list != ConnectionList::Closing && p.queued_bytes > limit {
                return Err(InvariantViolation::QueueOverLimit {
                    peer: p.id,
                    list: p.list,
                    queued: p.queued_bytes,
                    limit,
                });
            }
        }
        // Seeds are never pruned; only an operator naming more than the limit exceeds it.
        let seeds = self.db.records().filter(|r| r.seed).count();
        let limit = MAX_PEER_RECORDS.max(seeds);
        if self.db.len() > limit {
            return Err(InvariantViolation::PeerDbOverLimit {
                records: self.db.len(),
                limit,
            });
        }
        // Seeds go back on the list whatever its length (the operator chose them).
        let limit = MAX_ADD_ONCE + self.seeds.len();
        if self.add_once.len() > limit {
            return Err(InvariantViolation::AddOnceOverLimit {
                len: self.add_once.len(),
                limit,
            });
        }
        let distinct: HashSet<_> = self.add_once.iter().collect();
        if distinct.len() != self.add_once.len() {
            return Err(InvariantViolation::AddOnceDuplicate);
        }
        Ok(())
    }

    /// Blockchain sync: per-peer id queues, requests in flight, and the received-block buffer.
    fn check_sync_invariants(&self) -> Result<(), InvariantViolation> {
        for p in self.peers.values() {
            let queue = p.sync.ids_to_get.len();
            let set = p.sync.ids_to_get_set.len();
            if queue != set
                || !p
                    .sync
                    .ids_to_get
                    .iter()
                    .all(|id| p.sync.ids_to_get_set.contains(id))
            {
                return Err(InvariantViolation::SyncQueueMismatch {
                    peer: p.id,
                    queue,
                    set,
                });
            }
            for block in p.sync.requested.keys() {
                let recorded = self.active_sync_requests.get(block).copied();
                if recorded != Some(p.id) {
                    return Err(InvariantViolation::SyncRequestUntracked {
                        peer: p.id,
                        block: *block,
                        recorded,
                    });
                }
            }
        }
        for (block, peer) in &self.active_sync_requests {
            let asked = self
                .peers
                .get(peer)
                .is_some_and(|p| p.sync.requested.contains_key(block));
            if !asked {
                return Err(InvariantViolation::SyncRequestOrphan {
                    block: *block,
                    peer: *peer,
                });
            }
        }
        let (received, in_flight) = (self.sync_received.len(), self.active_sync_requests.len());
        if received + in_flight > MAX_SYNC_BLOCKS_TO_PREFETCH {
            return Err(InvariantViolation::SyncBufferOverLimit {
                received,
                in_flight,
                limit: MAX_SYNC_BLOCKS_TO_PREFETCH,
            });
        }
        let mut actual = 0;
        for (&number, (id, data, _)) in &self.sync_received {
            if id.block_number() != number {
                return Err(InvariantViolation::SyncBlockMisfiled { number, block: *id });
            }
            actual += data.len();
        }
        if actual != self.sync_received_bytes {
            return Err(InvariantViolation::SyncBytesMismatch {
                counted: self.sync_received_bytes,
                actual,
            });
        }
        Ok(())
    }

    /// FETCH SCHEDULING (normal operation, `node::items`): the fields another change may
    /// restructure are checked here and only here.
    ///
    /// - every inventory, each way, holds at most [`MAX_INVENTORY_PER_PEER`] items;
    /// - at most [`MAX_ITEMS_TO_FETCH`] items wait to be fetched;
    /// - `requested_items` and the peers' `items_requested` are the same relation: an item is
    ///   requested from one peer, which has it in its own map, and the other way round;
    /// - an item is never both waiting to be fetched and requested;
    /// - a peer that is not closing has at most [`MAX_SERVE_QUEUE`] items waiting to be
    ///   served (the request that takes it over the limit disconnects the peer).
    pub(super) fn check_fetch_invariants(&self) -> Result<(), InvariantViolation> {
        for p in self.peers.values() {
            for (which, len) in [
                ("advertised to us", p.inventory_advertised_to_us.len()),
                (
                    "advertised to the peer",
                    p.inventory_advertised_to_peer.len(),
                ),
            ] {
                if len > MAX_INVENTORY_PER_PEER {
                    return Err(InvariantViolation::InventoryOverLimit {
                        peer: p.id,
                        which,
                        len,
                        limit: MAX_INVENTORY_PER_PEER,
                    });
                }
            }
            for item in p.items_requested.keys() {
                let recorded = self.fetch.requested_from(item);
                if recorded != Some(p.id) {
                    return Err(InvariantViolation::RequestedItemUntracked {
                        peer: p.id,
                        item: *item,
                        recorded,
                    });
                }
            }
            if p.list != ConnectionList::Closing && p.serve_queue.len() > MAX_SERVE_QUEUE {
                return Err(InvariantViolation::ServeQueueOverLimit {
                    peer: p.id,
                    list: p.list,
                    len: p.serve_queue.len(),
                    limit: MAX_SERVE_QUEUE,
                });
            }
        }
        // The fetch queue counts queued and requested items together against its bound.
        if self.fetch.len() > MAX_ITEMS_TO_FETCH + self.fetch.requested() {
            return Err(InvariantViolation::ItemsToFetchOverLimit {
                len: self.fetch.len(),
                limit: MAX_ITEMS_TO_FETCH,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::sim::{SimNet, listen_endpoint, test_node_id};
    use crate::node::{Node, NodeConfig};
    use crate::wire::message::msg_type;
    use crate::wire::types::{Endpoint, Ripemd160, TimePoint};
    use std::net::Ipv4Addr;

    fn cfg() -> NodeConfig {
        NodeConfig {
            max_connections: 4,
            desired_connections: 2,
            ..NodeConfig::default()
        }
    }

    /// Two nodes with an active connection between them (the simulated network has checked
    /// the invariants after every command on the way).
    fn connected() -> (SimNet, usize, PeerId) {
        let mut net = SimNet::new();
        let a = net.add_node(cfg(), test_node_id(1));
        let b = net.add_node(cfg(), test_node_id(2));
        net.nodes[a].add_node(listen_endpoint(b), net.now);
        net.advance(1);
        let peer = net.nodes[a]
            .peers()
            .find(|p| p.list == ConnectionList::Active)
            .map(|p| p.id)
            .expect("a is connected to b");
        (net, a, peer)
    }

    fn item(n: u8) -> ItemId {
        ItemId {
            item_type: msg_type::TRX,
            item_hash: Ripemd160([n; 20]),
        }
    }

    fn broken(node: &Node) -> InvariantViolation {
        node.check_invariants()
            .expect_err("the corrupted node must fail its check")
    }

    #[test]
    fn a_working_node_holds_its_invariants() {
        let (net, a, _) = connected();
        for n in &net.nodes {
            assert_eq!(n.check_invariants(), Ok(()));
        }
        assert_eq!(net.nodes[a].connection_counts().active, 1);
    }

    #[test]
    fn connection_rules_are_checked() {
        let (mut net, a, peer) = connected();
        let node = &mut net.nodes[a];
        let p = node.peers.get_mut(&peer).unwrap();
        p.closing_since = Some(TimePoint(1));
        assert!(matches!(
            broken(node),
            InvariantViolation::ClosingMismatch { .. }
        ));
        let p = node.peers.get_mut(&peer).unwrap();
        p.closing_since = None;
        p.their_state = TheirHelloState::Rejected;
        assert!(matches!(
            broken(node),
            InvariantViolation::ActiveWithoutHandshake { .. }
        ));
        let p = node.peers.get_mut(&peer).unwrap();
        p.their_state = TheirHelloState::Accepted;
        let mut twin = p.clone();
        let twin_id = node.next_peer_id;
        twin.id = twin_id;
        twin.list = ConnectionList::Handshaking;
        node.next_peer_id += 1;
        node.peers.insert(twin_id, twin);
        assert!(matches!(
            broken(node),
            InvariantViolation::DuplicateAcceptedNodeId { .. }
        ));
        // Accepted hellos beyond max_connections (each with its own node id).
        for k in 0..node.config.max_connections as u8 {
            let mut extra = node.peers[&peer].clone();
            extra.id = node.next_peer_id;
            extra.node_id = Some(test_node_id(100 + k));
            node.next_peer_id += 1;
            node.peers.insert(extra.id, extra);
        }
        node.peers.remove(&twin_id);
        assert!(matches!(
            broken(node),
            InvariantViolation::TooManyAccepted {
                accepted: 5,
                max: 4
            }
        ));
    }

    #[test]
    fn bounds_are_checked() {
        let (mut net, a, peer) = connected();
        let node = &mut net.nodes[a];
        node.peers.get_mut(&peer).unwrap().queued_bytes = queued_bytes_bound() + 1;
        assert!(matches!(
            broken(node),
            InvariantViolation::QueueOverLimit { .. }
        ));
        // The same queue on a closing peer is the runtime's to drop.
        let p = node.peers.get_mut(&peer).unwrap();
        p.list = ConnectionList::Closing;
        p.closing_since = Some(TimePoint(1));
        assert_eq!(node.check_invariants(), Ok(()));
        node.add_once = (0..=MAX_ADD_ONCE as u16)
            .map(|port| Endpoint::new(Ipv4Addr::new(127, 0, 10, 1), port))
            .collect();
        assert!(matches!(
            broken(node),
            InvariantViolation::AddOnceOverLimit { .. }
        ));
        node.add_once = vec![listen_endpoint(7); 2];
        assert_eq!(broken(node), InvariantViolation::AddOnceDuplicate);
        node.add_once.clear();
        // The peer database cannot be pushed over its limit from outside any more (its own
        // tests show it); filling it leaves the node sound.
        for port in 0..=MAX_PEER_RECORDS as u16 {
            node.db
                .entry(Endpoint::new(Ipv4Addr::new(127, 0, 10, 2), port));
        }
        assert_eq!(node.db.len(), MAX_PEER_RECORDS);
        assert_eq!(node.check_invariants(), Ok(()));
    }

    #[test]
    fn sync_bookkeeping_is_checked() {
        let (mut net, a, peer) = connected();
        let node = &mut net.nodes[a];
        let block = Ripemd160([0, 0, 0, 9, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]);
        node.active_sync_requests.insert(block, peer);
        assert!(matches!(
            broken(node),
            InvariantViolation::SyncRequestOrphan { .. }
        ));
        node.peers
            .get_mut(&peer)
            .unwrap()
            .sync
            .requested
            .insert(block, TimePoint(0));
        assert_eq!(node.check_invariants(), Ok(()));
        node.active_sync_requests.clear();
        assert!(matches!(
            broken(node),
            InvariantViolation::SyncRequestUntracked { .. }
        ));
        node.peers.get_mut(&peer).unwrap().sync.requested.clear();
        node.sync_received.insert(9, (block, vec![1, 2, 3], peer));
        assert!(matches!(
            broken(node),
            InvariantViolation::SyncBytesMismatch {
                counted: 0,
                actual: 3
            }
        ));
        node.sync_received_bytes = 3;
        assert_eq!(node.check_invariants(), Ok(()));
        node.sync_received.insert(8, (block, Vec::new(), peer));
        assert!(matches!(
            broken(node),
            InvariantViolation::SyncBlockMisfiled { number: 8, .. }
        ));
        node.sync_received.remove(&8);
        node.peers
            .get_mut(&peer)
            .unwrap()
            .sync
            .ids_to_get
            .push_back(block);
        assert!(matches!(
            broken(node),
            InvariantViolation::SyncQueueMismatch { .. }
        ));
    }

    #[test]
    fn fetch_scheduling_is_checked() {
        let (mut net, a, peer) = connected();
        let node = &mut net.nodes[a];
        // A request the peer records and the fetch queue does not.
        node.peers
            .get_mut(&peer)
            .unwrap()
            .items_requested
            .insert(item(1), TimePoint(0));
        assert!(matches!(
            broken(node),
            InvariantViolation::RequestedItemUntracked { .. }
        ));
        node.peers.get_mut(&peer).unwrap().items_requested.clear();
        let p = node.peers.get_mut(&peer).unwrap();
        p.serve_queue = std::iter::repeat_n(item(2), MAX_SERVE_QUEUE + 1).collect();
        assert!(matches!(
            broken(node),
            InvariantViolation::ServeQueueOverLimit { .. }
        ));
        node.peers.get_mut(&peer).unwrap().serve_queue.clear();
        assert_eq!(node.check_invariants(), Ok(()));
    }
}
