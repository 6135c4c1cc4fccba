//! A deterministic in-memory network of node cores on a virtual clock.
//!
//! Links carry real encoded messages (every message is encoded and decoded on the way, so the
//! codec is exercised too); dials reach whichever simulated node listens on the endpoint; time
//! moves only when the test advances it. Used by the unit tests of the node policy and usable
//! for larger network properties.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use crate::crypto::{KeyExchange, NodeKey};
use crate::peer::PeerId;
use crate::store::peer_db::{PeerDatabase, PeerRecord};
use crate::wire::Message;
use crate::wire::types::{Endpoint, NodeId, TimePoint};

use super::{Command, Node, NodeConfig};

/// One message seen on a simulated link.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub from: usize,
    pub to: usize,
    pub message: Message,
}

/// A simulated network.
pub struct SimNet {
    pub nodes: Vec<Node>,
    pub now: TimePoint,
    listening: BTreeMap<Endpoint, usize>,
    links: BTreeMap<(usize, PeerId), (usize, PeerId)>,
    digests: BTreeMap<(usize, PeerId), [u8; 32]>,
    next_port: u16,
    /// Every message delivered, in order.
    pub trace: Vec<Delivery>,
    /// The last peer database each node asked to save.
    pub saved: BTreeMap<usize, Vec<PeerRecord>>,
    /// The last ban list each node asked to save.
    pub saved_bans: BTreeMap<usize, Vec<super::bans::Ban>>,
    /// Nodes whose sockets accept but never answer (to test timeouts).
    pub mute: Vec<usize>,
    /// Nodes that are hung: they receive nothing and run no timers.
    pub frozen: Vec<usize>,
}

/// The endpoint simulated node `i` listens on.
pub fn listen_endpoint(i: usize) -> Endpoint {
    Endpoint::new(Ipv4Addr::LOCALHOST, 10_000 + i as u16)
}

/// A node id from a small number, for tests.
pub fn test_node_id(n: u8) -> NodeId {
    let mut id = [n; 33];
    id[0] = 2;
    NodeId(id)
}

impl SimNet {
    /// An empty network at a fixed start time.
    pub fn new() -> Self {
        Self {
            nodes: Vec::new(),
            now: TimePoint(1_700_000_000_000_000),
            listening: BTreeMap::new(),
            links: BTreeMap::new(),
            digests: BTreeMap::new(),
            next_port: 40_000,
            trace: Vec::new(),
            saved: BTreeMap::new(),
            saved_bans: BTreeMap::new(),
            mute: Vec::new(),
            frozen: Vec::new(),
        }
    }

    /// Adds a node listening on [`listen_endpoint`]; returns its index.
    pub fn add_node(&mut self, config: NodeConfig, node_id: NodeId) -> usize {
        self.add_node_with_db(config, node_id, PeerDatabase::new())
    }

    /// Adds a node with a given peer database.
    pub fn add_node_with_db(
        &mut self,
        config: NodeConfig,
        node_id: NodeId,
        db: PeerDatabase,
    ) -> usize {
        let store = crate::app::relay_store::RelayStore::in_memory(config.chain_id)
            .expect("an in-memory store opens");
        self.add_node_with_delegate(config, node_id, db, Box::new(store))
    }

    /// Adds a node with a given application (benchmarks that leave the store out).
    pub fn add_node_with_delegate(
        &mut self,
        config: NodeConfig,
        node_id: NodeId,
        db: PeerDatabase,
        delegate: Box<dyn crate::app::Delegate>,
    ) -> usize {
        let i = self.nodes.len();
        let mut node = Node::new(config, NodeKey::generate(), node_id, db, delegate, self.now);
        node.set_listen_endpoint(listen_endpoint(i));
        self.listening.insert(listen_endpoint(i), i);
        self.nodes.push(node);
        i
    }

    /// Carries out commands until every node is quiet.
    pub fn pump(&mut self) {
        self.check_invariants();
        loop {
            let mut progressed = false;
            for i in 0..self.nodes.len() {
                while let Some(cmd) = self.nodes[i].poll_command() {
                    progressed = true;
                    self.execute(i, cmd);
                    self.check_invariants();
                }
            }
            for i in 0..self.nodes.len() {
                if !self.frozen.contains(&i) && !self.nodes[i].backlogged_peers().is_empty() {
                    let now = self.now;
                    self.nodes[i].work_backlog(now);
                    progressed = true;
                }
            }
            if !progressed {
                return;
            }
        }
    }

    /// In debug builds, panics if any node breaks one of its invariants
    /// ([`Node::check_invariants`]); the network checks after every command it carries out.
    pub fn check_invariants(&self) {
        if cfg!(debug_assertions) {
            for (i, node) in self.nodes.iter().enumerate() {
                if let Err(violation) = node.check_invariants() {
                    panic!("simulated node {i} broke an invariant: {violation}");
                }
            }
        }
    }

    fn execute(&mut self, i: usize, cmd: Command) {
        let now = self.now;
        match cmd {
            Command::Dial { peer, endpoint } => {
                let target = self.listening.get(&endpoint).copied();
                let Some(j) = target else {
                    self.nodes[i].on_dial_failed(peer, "connection refused", now);
                    return;
                };
                let local = Endpoint::new(Ipv4Addr::LOCALHOST, self.next_port);
                self.next_port = self.next_port.wrapping_add(1).max(40_000);
                let Some(pj) = self.nodes[j].accept_inbound(local, now) else {
                    self.nodes[i].on_dial_failed(peer, "connection reset", now);
                    return;
                };
                self.links.insert((i, peer), (j, pj));
                self.links.insert((j, pj), (i, peer));
                if self.mute.contains(&j) {
                    return;
                }
                let (mut a, mut b) = (KeyExchange::new(), KeyExchange::new());
                let a_pub = *a.our_public_key();
                let b_pub = *b.our_public_key();
                let digest = |kx: &mut KeyExchange, key| match kx.feed(key) {
                    Ok(crate::crypto::ExchangeProgress::Done { keys, .. }) => keys.hello_digest(),
                    _ => unreachable!("33 valid bytes complete an exchange"),
                };
                let da = digest(&mut a, &b_pub);
                let db = digest(&mut b, &a_pub);
                self.digests.insert((i, peer), da);
                self.digests.insert((j, pj), db);
                self.nodes[i].on_established(peer, local, da, now);
                self.nodes[j].on_established(pj, endpoint, db, now);
            }
            Command::Send { peer, message } => {
                let Some(&(j, pj)) = self.links.get(&(i, peer)) else {
                    return;
                };
                let data = message.to_data();
                let size = crate::wire::frame::padded_frame_len(data.len());
                self.nodes[i].on_sent(peer, size, now);
                let decoded = Message::decode(message.msg_type(), &data)
                    .unwrap_or_else(|e| panic!("node sent an undecodable message: {e}"));
                self.trace.push(Delivery {
                    from: i,
                    to: j,
                    message: decoded.clone(),
                });
                if self.mute.contains(&j) || self.frozen.contains(&j) {
                    return;
                }
                let digest = self.digests.get(&(j, pj)).copied();
                // As the runtime reports a read: its messages, then its bytes.
                self.nodes[j].on_message(pj, decoded, digest, now);
                self.nodes[j].on_bytes_received(pj, size, 0, now);
            }
            Command::Close { peer } => {
                self.nodes[i].on_closed(peer, now);
                if let Some((j, pj)) = self.links.remove(&(i, peer)) {
                    self.links.remove(&(j, pj));
                    self.nodes[j].on_closed(pj, now);
                }
            }
            Command::SavePeerDb(records) => {
                self.saved.insert(i, records);
            }
            Command::SaveBans(bans) => {
                self.saved_bans.insert(i, bans);
            }
        }
    }

    /// Moves the clock forward by `us`, jumping from one due timer to the next, running every
    /// node's due timers and pumping after each.
    pub fn advance(&mut self, us: i64) {
        let end = self.now.0 + us;
        loop {
            let next = self
                .nodes
                .iter()
                .enumerate()
                .filter(|(i, _)| !self.frozen.contains(i))
                .map(|(_, n)| n.next_deadline().0)
                .min()
                .unwrap_or(end)
                .max(self.now.0);
            if next > end {
                self.now = TimePoint(end);
                return;
            }
            self.now = TimePoint(next);
            for i in 0..self.nodes.len() {
                if !self.frozen.contains(&i) && self.nodes[i].next_deadline() <= self.now {
                    self.nodes[i].handle_timeout(self.now);
                }
            }
            self.pump();
        }
    }

    /// Messages from `from` to `to` of a type.
    pub fn sent(&self, from: usize, to: usize, msg_type: u32) -> Vec<&Message> {
        self.trace
            .iter()
            .filter(|d| d.from == from && d.to == to && d.message.msg_type() == msg_type)
            .map(|d| &d.message)
            .collect()
    }

    /// Sends `message` from `i`'s connection `peer` as if the node had (for tests).
    pub fn inject(&mut self, i: usize, peer: PeerId, message: Message) {
        self.execute(i, Command::Send { peer, message });
        self.pump();
    }
}

impl Default for SimNet {
    fn default() -> Self {
        Self::new()
    }
}
