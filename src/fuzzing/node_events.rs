//! The `node_events` fuzz target: a [`Node`] core driven by an arbitrary sequence of events
//! from a few fake peers, with [`Node::check_invariants`] checked after every one.
//!
//! The input is a script. Three header bytes choose the configuration (see [`Header`]); then
//! each step is an op byte (modulo [`op::COUNT`]) and its argument bytes (reading past the end
//! gives zeros, and the script ends with the data). Every message type can be sent in any
//! state; hellos are signed by a fixed peer key over the connection's digest, so handshakes
//! complete; the fake peers can answer the node's last sync or item request from a fixed
//! chain ([`super::chain`]), so sync and serving run too. After each step the harness carries
//! out the node's commands as the runtime would (a `Close` is reported closed at once unless
//! the header defers it to a later [`op::CLOSED`] step).
//!
//! Nothing here reads a clock, draws randomness or generates keys per run: keys, digests and
//! signatures are built once per process ([`fixtures`]).

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use super::chain::{
    CHAIN_ID, CHAIN_LEN, FuzzChain, MARK_INVALID, MARK_LOCAL_FAILURE, block, block_id,
};
use crate::crypto::{CompactSignature, NodeKey};
use crate::node::config::{MAX_SERVE_QUEUE, SECOND_US};
use crate::node::sim::test_node_id;
use crate::node::{AdvertiseAlgorithm, Command, Node, NodeConfig};
use crate::peer::PeerId;
use crate::store::peer_db::PeerDatabase;
use crate::wire::Message;
use crate::wire::message::*;
use crate::wire::types::{
    BlockId, CompactSignatureBytes, Direction, Endpoint, FirewallCheckResult, FirewalledState,
    ItemHash, Microseconds, NodeId, RejectionReason, Ripemd160, Sha256, TimePoint, TimePointSec,
};
use crate::wire::variant::{Variant, VariantObject};

/// The op codes of a script step (the op byte modulo [`op::COUNT`]) and their arguments.
pub mod op {
    /// `a`: a socket from [`super::endpoint_of`]`(a)` is accepted.
    pub const ACCEPT: u8 = 0;
    /// `p`: the key exchange of peer `p` finished.
    pub const ESTABLISH: u8 = 1;
    /// `p`: the dial of peer `p` failed.
    pub const DIAL_FAILED: u8 = 2;
    /// `p v w`: a hello (see [`super::hello`]).
    pub const HELLO: u8 = 3;
    /// `p k a`: a small message of kind `k` (see [`super::simple_message`]).
    pub const SIMPLE: u8 = 4;
    /// `p n s`: an address message with `n` addresses (255: 1000) from seed `s`.
    pub const ADDRESS: u8 = 5;
    /// `p k n s`: item_ids_inventory (see [`super::item_hashes`]).
    pub const ITEM_INVENTORY: u8 = 6;
    /// `p k n s`: fetch_items (`n` = 255: one more than the serve queue takes).
    pub const FETCH_ITEMS: u8 = 7;
    /// `p k`: item_not_available, for an item the node asked this peer for (odd `k`) or not.
    pub const NOT_AVAILABLE: u8 = 8;
    /// `p k`: a block (see [`super::block_message`]).
    pub const BLOCK: u8 = 9;
    /// `p k`: a transaction (see [`super::trx_data`]).
    pub const TRX: u8 = 10;
    /// `p k`: fetch_blockchain_item_ids (see [`super::synopsis`]).
    pub const FETCH_IDS: u8 = 11;
    /// `p s n r`: blockchain_item_ids_inventory, unasked (see [`super::ids_inventory`]).
    pub const IDS_INVENTORY: u8 = 12;
    /// `p k`: the peer answers the node's last item request (bit 0 of `k` clear) and its last
    /// sync request (bit 1 clear), from fork 0.
    pub const ANSWER: u8 = 13;
    /// `p n`: `97 n` bytes arrived from `p`.
    pub const BYTES: u8 = 14;
    /// `p n`: `4096 n` bytes (0: everything queued) were written to `p`.
    pub const SENT: u8 = 15;
    /// `p`: `p` sent bytes that do not decode.
    pub const PROTOCOL_ERROR: u8 = 16;
    /// `p`: `p`'s socket is closed.
    pub const CLOSED: u8 = 17;
    /// `t`: time moves on by `(t & 63)` units of 1 ms, 250 ms, 1 s or 30 s (`t >> 6`); due
    /// timers run.
    pub const TIME: u8 = 18;
    /// time jumps to the node's next deadline and its timers run.
    pub const TIMEOUT: u8 = 19;
    /// `k a`: an operator action (see [`super::operator`]).
    pub const OPERATOR: u8 = 20;
    /// `p t n bytes…`: `n` bytes decoded as message type [`super::raw_type`]`(t)`; a decode
    /// error is a protocol error.
    pub const RAW: u8 = 21;
    /// Number of op codes.
    pub const COUNT: u8 = 22;
}

/// Digests of the fake connections (SHA-256 of a shared secret, as the node gets it).
const DIGESTS: usize = 4;
/// Fake node ids the peers can claim (besides ours and the peer key's).
const FAKE_IDS: u8 = 8;
/// Transactions the peers can send.
const TRX_POOL: u8 = 8;
/// Most fake connections tracked; later ones are still driven, just not choosable.
const MAX_TRACKED: usize = 256;
/// Commands carried out after one step before the harness gives up on the node (a loop).
const MAX_COMMANDS_PER_STEP: usize = 1_000_000;
/// The fuzz clock's start: 2023-11-14.
pub const START_US: i64 = 1_700_000_000_000_000;

/// Built once per process.
pub struct Fixtures {
    our_key: NodeKey,
    peer_key: NodeKey,
    digests: [[u8; 32]; DIGESTS],
    /// The peer key's signature of each digest.
    peer_signatures: [CompactSignature; DIGESTS],
    canonical: Vec<Vec<u8>>,
    /// Inventory hashes of `canonical`.
    canonical_hashes: Vec<ItemHash>,
    trxs: Vec<Vec<u8>>,
    /// Inventory hashes of `trxs`.
    trx_hashes: Vec<ItemHash>,
}

/// The keys, digests, signatures and blocks every run uses.
pub fn fixtures() -> &'static Fixtures {
    static FIXTURES: OnceLock<Fixtures> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        let our_key = NodeKey::from_bytes(&[0x11; 32]).expect("a valid fixed key");
        let peer_key = NodeKey::from_bytes(&[0x22; 32]).expect("a valid fixed key");
        let digests: [[u8; 32]; DIGESTS] = std::array::from_fn(|i| [0xD0 + i as u8; 32]);
        let peer_signatures = digests.map(|d| peer_key.sign_compact(&d));
        // Our own hello signatures, so the first run does not pay for them.
        for d in &digests {
            our_key.sign_compact(d);
        }
        let canonical: Vec<Vec<u8>> = (1..=CHAIN_LEN).map(|n| block(n, 0, 0)).collect();
        let trxs: Vec<Vec<u8>> = (0..TRX_POOL)
            .map(|i| vec![i | 1, 0x7A, i, 1, 2, 3, 4, 5, 6, 7])
            .collect();
        Fixtures {
            our_key,
            peer_key,
            digests,
            peer_signatures,
            canonical_hashes: canonical.iter().map(|b| message_hash(b)).collect(),
            canonical,
            trx_hashes: trxs.iter().map(|t| message_hash(t)).collect(),
            trxs,
        }
    })
}

/// The node's own id.
pub fn our_node_id() -> NodeId {
    test_node_id(1)
}

/// Fake node id `k` (modulo [`FAKE_IDS`]).
pub fn fake_node_id(k: u8) -> NodeId {
    test_node_id(2 + k % FAKE_IDS)
}

/// Where the fuzzed node listens.
pub fn listen_endpoint() -> Endpoint {
    Endpoint::new(Ipv4Addr::LOCALHOST, 2000)
}

/// An endpoint from one byte: 0 is our own; otherwise loopback, private or public hosts, with
/// port 0 for `a & 7 == 7`.
pub fn endpoint_of(a: u8) -> Endpoint {
    if a == 0 {
        return listen_endpoint();
    }
    let host = a >> 3;
    let address = match host {
        0..=15 => Ipv4Addr::new(127, 0, 0, 2 + host),
        16..=23 => Ipv4Addr::new(10, 0, 0, host),
        _ => Ipv4Addr::new(8, 8, host, 1),
    };
    let port = if a & 7 == 7 {
        0
    } else {
        3000 + u16::from(a & 7)
    };
    Endpoint::new(address, port)
}

/// The script's first three bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    /// `max_connections` is 1 + bits 0-2; `desired_connections` 1 + bits 3-4; bit 5 refuses
    /// inbound connections, bit 6 stops dialling new peers, bit 7 advertises nobody.
    pub config: u8,
    /// The node's chain holds blocks 1..=(this mod [`CHAIN_LEN`]) of fork 0.
    pub head: u8,
    /// Bit 0: `Close` commands wait for a [`op::CLOSED`] step; bit 1: no listening endpoint;
    /// bit 2: the application's durability is deferred (see [`FuzzChain::deferred`]): what it
    /// accepted becomes durable when a [`op::TIME`] or [`op::TIMEOUT`] step moves the clock.
    pub runtime: u8,
}

impl Header {
    fn config(self) -> NodeConfig {
        let c = self.config;
        NodeConfig {
            chain_id: CHAIN_ID,
            user_agent: "fuzz".into(),
            max_connections: 1 + usize::from(c & 7),
            desired_connections: 1 + usize::from((c >> 3) & 3),
            accept_incoming_connections: c & 0x20 == 0,
            connect_to_new_peers: c & 0x40 == 0,
            advertise: if c & 0x80 == 0 {
                AdvertiseAlgorithm::All
            } else {
                AdvertiseAlgorithm::Nothing
            },
            block_interval_secs: 5,
            ..NodeConfig::default()
        }
    }
}

/// The fuzzer's bytes, read from the front; zeros past the end.
struct Input<'a> {
    data: &'a [u8],
}

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    fn bytes(&mut self, n: usize) -> &[u8] {
        let (head, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        head
    }
}

/// A connection as the harness sees it.
#[derive(Debug)]
struct Fake {
    id: PeerId,
    established: bool,
    /// The node asked for a close; waiting for an [`op::CLOSED`] step.
    close_pending: bool,
    /// The node's last fetch_items to this peer.
    last_fetch: Option<FetchItemsMessage>,
    /// The node's last fetch_blockchain_item_ids to this peer.
    last_ids_request: Option<Vec<BlockId>>,
}

/// How deep a run went, for the replay tests and for judging the seeds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Depth {
    /// Steps run.
    pub steps: usize,
    /// The most active connections at once.
    pub max_active: usize,
    /// Blocks the node's chain grew by.
    pub blocks_applied: u32,
    /// Blocks and transactions the node sent to peers.
    pub items_sent: usize,
    /// Commands the node issued.
    pub commands: usize,
}

struct Harness {
    node: Node,
    now: TimePoint,
    fakes: Vec<Fake>,
    defer_close: bool,
    /// Set when the application's durability is deferred and time moved (see [`Header`]).
    commit: Option<Arc<AtomicBool>>,
    depth: Depth,
    start_head: u32,
}

/// `node_events`: runs the script in `data` (see the module docs) and returns how deep it
/// went. Panics only if the node breaks an invariant or its command stream does not end.
pub fn node_events(data: &[u8]) -> Depth {
    let fx = fixtures();
    let mut input = Input { data };
    let header = Header {
        config: input.byte(),
        head: input.byte(),
        runtime: input.byte(),
    };
    let head = u32::from(header.head) % CHAIN_LEN;
    let now = TimePoint(START_US);
    let commit = Arc::new(AtomicBool::new(false));
    let mut node = Node::new(
        header.config(),
        fx.our_key.clone(),
        our_node_id(),
        PeerDatabase::new(),
        {
            let chain = FuzzChain::new(head);
            Box::new(if header.runtime & 4 == 4 {
                chain.deferred(commit.clone())
            } else {
                chain
            })
        },
        now,
    );
    if header.runtime & 2 == 0 {
        node.set_listen_endpoint(listen_endpoint());
    }
    let mut h = Harness {
        node,
        now,
        fakes: Vec::new(),
        defer_close: header.runtime & 1 == 1,
        commit: (header.runtime & 4 == 4).then_some(commit),
        depth: Depth::default(),
        start_head: head,
    };
    h.node.assert_invariants();
    while !input.data.is_empty() {
        h.step(&mut input);
        h.drain();
        h.node.assert_invariants();
        h.depth.steps += 1;
        h.depth.max_active = h.depth.max_active.max(h.node.connection_counts().active);
    }
    h.depth.blocks_applied = h.node.delegate().head().number - h.start_head;
    h.depth
}

impl Harness {
    /// With deferred durability, a clock that moved past `before` lets the application's
    /// writer finish: everything accepted so far is durable and the node hears of it.
    fn commit_if_time_moved(&mut self, before: TimePoint) {
        if let Some(commit) = &self.commit
            && self.now > before
        {
            commit.store(true, Ordering::Relaxed);
            self.node.on_durable(self.now);
        }
    }

    /// The peer a byte names: one of the tracked connections, or (0xFF) one that never
    /// existed.
    fn peer(&self, p: u8) -> PeerId {
        if p == 0xFF || self.fakes.is_empty() {
            return 1_000_000 + PeerId::from(p);
        }
        self.fakes[usize::from(p) % self.fakes.len()].id
    }

    fn fake(&mut self, peer: PeerId) -> Option<&mut Fake> {
        self.fakes.iter_mut().find(|f| f.id == peer)
    }

    fn track(&mut self, id: PeerId) {
        if self.fakes.len() < MAX_TRACKED {
            self.fakes.push(Fake {
                id,
                established: false,
                close_pending: false,
                last_fetch: None,
                last_ids_request: None,
            });
        }
    }

    fn forget(&mut self, peer: PeerId) {
        self.fakes.retain(|f| f.id != peer);
    }

    fn digest(peer: PeerId) -> [u8; 32] {
        fixtures().digests[(peer % DIGESTS as u64) as usize]
    }

    /// The digest the runtime passes with a message: the connection's, once established.
    fn digest_of(&self, peer: PeerId) -> Option<[u8; 32]> {
        self.fakes
            .iter()
            .find(|f| f.id == peer && f.established)
            .map(|f| Self::digest(f.id))
    }

    fn deliver(&mut self, peer: PeerId, message: Message) {
        let digest = self.digest_of(peer);
        self.node.on_message(peer, message, digest, self.now);
    }

    /// Carries out the node's commands as the runtime does.
    fn drain(&mut self) {
        let mut carried = 0;
        while let Some(cmd) = self.node.poll_command() {
            carried += 1;
            assert!(
                carried <= MAX_COMMANDS_PER_STEP,
                "the node's commands do not end"
            );
            match cmd {
                Command::Dial { peer, .. } => self.track(peer),
                Command::Send { peer, message } => {
                    if matches!(message, Message::Block(_) | Message::Trx(_)) {
                        self.depth.items_sent += 1;
                    }
                    if let Some(f) = self.fake(peer) {
                        match message {
                            Message::FetchItems(m) => f.last_fetch = Some(m),
                            Message::FetchBlockchainItemIds(m) => {
                                f.last_ids_request = Some(m.blockchain_synopsis)
                            }
                            _ => {}
                        }
                    }
                }
                Command::Close { peer } => {
                    if self.defer_close {
                        if let Some(f) = self.fake(peer) {
                            f.close_pending = true;
                        }
                    } else {
                        self.node.on_closed(peer, self.now);
                        self.forget(peer);
                    }
                }
                Command::SavePeerDb(_) | Command::SaveBans(_) => {}
            }
        }
        self.depth.commands += carried;
    }

    fn step(&mut self, input: &mut Input) {
        let now = self.now;
        match input.byte() % op::COUNT {
            op::ACCEPT => {
                let remote = endpoint_of(input.byte());
                if let Some(id) = self.node.accept_inbound(remote, now) {
                    self.track(id);
                }
            }
            op::ESTABLISH => {
                let peer = self.peer(input.byte());
                if let Some(f) = self.fake(peer) {
                    f.established = true;
                }
                let local = Endpoint::new(Ipv4Addr::LOCALHOST, 40_000 + (peer % 1000) as u16);
                self.node
                    .on_established(peer, local, Self::digest(peer), now);
            }
            op::DIAL_FAILED => {
                let peer = self.peer(input.byte());
                self.node.on_dial_failed(peer, "connection refused", now);
                if self.node.peer(peer).is_none() {
                    self.forget(peer);
                }
            }
            op::HELLO => {
                let peer = self.peer(input.byte());
                let (v, w) = (input.byte(), input.byte());
                self.deliver(peer, Message::Hello(hello(peer, v, w)));
            }
            op::SIMPLE => {
                let peer = self.peer(input.byte());
                let (k, a) = (input.byte(), input.byte());
                self.deliver(peer, simple_message(k, a, now));
            }
            op::ADDRESS => {
                let peer = self.peer(input.byte());
                let (n, s) = (input.byte(), input.byte());
                self.deliver(peer, Message::Address(addresses(n, s)));
            }
            op::ITEM_INVENTORY => {
                let peer = self.peer(input.byte());
                let (k, n, s) = (input.byte(), input.byte(), input.byte());
                let (item_type, item_hashes_available) = item_hashes(k, n, s);
                self.deliver(
                    peer,
                    Message::ItemIdsInventory(ItemIdsInventoryMessage {
                        item_type,
                        item_hashes_available,
                    }),
                );
            }
            op::FETCH_ITEMS => {
                let peer = self.peer(input.byte());
                let (k, n, s) = (input.byte(), input.byte(), input.byte());
                let (item_type, items_to_fetch) = if n == 0xFF {
                    let (t, mut v) = item_hashes(k, 1, s);
                    v.resize(MAX_SERVE_QUEUE + 1, Ripemd160([s; 20]));
                    (t, v)
                } else {
                    item_hashes(k, n, s)
                };
                self.deliver(
                    peer,
                    Message::FetchItems(FetchItemsMessage {
                        item_type,
                        items_to_fetch,
                    }),
                );
            }
            op::NOT_AVAILABLE => {
                let peer = self.peer(input.byte());
                let k = input.byte();
                let asked = self
                    .fakes
                    .iter()
                    .find(|f| f.id == peer)
                    .and_then(|f| f.last_fetch.as_ref())
                    .and_then(|m| {
                        let i = usize::from(k >> 1) % m.items_to_fetch.len().max(1);
                        m.items_to_fetch.get(i).map(|h| (m.item_type, *h))
                    });
                let requested_item = match asked {
                    Some((item_type, item_hash)) if k & 1 == 1 => ItemId {
                        item_type,
                        item_hash,
                    },
                    _ => {
                        let (item_type, hashes) = item_hashes(k, 1, k >> 2);
                        ItemId {
                            item_type,
                            item_hash: hashes.first().copied().unwrap_or_default(),
                        }
                    }
                };
                self.deliver(
                    peer,
                    Message::ItemNotAvailable(ItemNotAvailableMessage { requested_item }),
                );
            }
            op::BLOCK => {
                let peer = self.peer(input.byte());
                let k = input.byte();
                self.deliver(peer, Message::Block(block_message(k)));
            }
            op::TRX => {
                let peer = self.peer(input.byte());
                let k = input.byte();
                self.deliver(peer, Message::Trx(trx_data(k)));
            }
            op::FETCH_IDS => {
                let peer = self.peer(input.byte());
                let k = input.byte();
                let ours = self.node.delegate().blockchain_synopsis();
                self.deliver(
                    peer,
                    Message::FetchBlockchainItemIds(FetchBlockchainItemIdsMessage {
                        item_type: if k & 0x80 == 0 {
                            msg_type::BLOCK
                        } else {
                            msg_type::TRX
                        },
                        blockchain_synopsis: synopsis(k, ours),
                    }),
                );
            }
            op::IDS_INVENTORY => {
                let peer = self.peer(input.byte());
                let (s, n, r) = (input.byte(), input.byte(), input.byte());
                self.deliver(
                    peer,
                    Message::BlockchainItemIdsInventory(ids_inventory(s, n, r)),
                );
            }
            op::ANSWER => {
                let peer = self.peer(input.byte());
                let k = input.byte();
                self.answer(peer, k);
            }
            op::BYTES => {
                let peer = self.peer(input.byte());
                let n = usize::from(input.byte()) * 97;
                self.node.on_bytes_received(peer, n, 0, now);
            }
            op::SENT => {
                let peer = self.peer(input.byte());
                let n = match input.byte() {
                    0 => self.node.peer(peer).map_or(0, |p| p.queued_bytes),
                    n => usize::from(n) * 4096,
                };
                self.node.on_sent(peer, n, now);
            }
            op::PROTOCOL_ERROR => {
                let peer = self.peer(input.byte());
                self.node.on_protocol_error(peer, "undecodable frame", now);
            }
            op::CLOSED => {
                let peer = self.peer(input.byte());
                self.node.on_closed(peer, now);
                self.forget(peer);
            }
            op::TIME => {
                let t = input.byte();
                let unit = [1_000, 250_000, SECOND_US, 30 * SECOND_US][usize::from(t >> 6)];
                self.now = TimePoint(now.0 + i64::from(t & 63) * unit);
                self.commit_if_time_moved(now);
                if self.node.next_deadline() <= self.now {
                    self.node.handle_timeout(self.now);
                }
            }
            op::TIMEOUT => {
                self.now = self.now.max(self.node.next_deadline());
                self.commit_if_time_moved(now);
                self.node.handle_timeout(self.now);
            }
            op::OPERATOR => {
                let (k, a) = (input.byte(), input.byte());
                self.operator(k, a);
            }
            _ => {
                // op::RAW
                let peer = self.peer(input.byte());
                let msg_type = raw_type(input.byte());
                let n = usize::from(input.byte());
                let data = input.bytes(n);
                match Message::decode(msg_type, data) {
                    Ok(message) => self.deliver(peer, message),
                    Err(_) => self.node.on_protocol_error(peer, "malformed", now),
                }
            }
        }
    }

    /// The fake peer answers the node's last requests from fork 0.
    fn answer(&mut self, peer: PeerId, k: u8) {
        let Some(f) = self.fake(peer) else {
            return;
        };
        let fetch = if k & 1 == 0 {
            f.last_fetch.take()
        } else {
            None
        };
        let ids = if k & 2 == 0 {
            f.last_ids_request.take()
        } else {
            None
        };
        if let Some(m) = fetch {
            let fx = fixtures();
            for hash in m.items_to_fetch.iter().take(CHAIN_LEN as usize * 2) {
                let n = hash.block_number();
                let found = match m.item_type {
                    msg_type::BLOCK => (1..=CHAIN_LEN)
                        .contains(&n)
                        .then(|| block_id(n, 0))
                        .filter(|id| id == hash)
                        .map(|_| (n - 1) as usize)
                        .or_else(|| fx.canonical_hashes.iter().position(|h| h == hash))
                        .map(|i| Message::Block(fx.canonical[i].clone())),
                    msg_type::TRX => fx
                        .trx_hashes
                        .iter()
                        .position(|h| h == hash)
                        .map(|i| Message::Trx(fx.trxs[i].clone())),
                    _ => None,
                };
                let message = found.unwrap_or(Message::ItemNotAvailable(ItemNotAvailableMessage {
                    requested_item: ItemId {
                        item_type: m.item_type,
                        item_hash: *hash,
                    },
                }));
                self.deliver(peer, message);
            }
        }
        if let Some(synopsis) = ids {
            // Fork 0 after the last id of the synopsis we share, as a real peer answers.
            let start = synopsis
                .iter()
                .rev()
                .find(|id| **id == block_id(id.block_number(), 0) && id.block_number() <= CHAIN_LEN)
                .map_or(1, |id| id.block_number().max(1));
            let end = CHAIN_LEN.min(start + 15);
            let item_hashes_available = (start..=end).map(|n| block_id(n, 0)).collect();
            self.deliver(
                peer,
                Message::BlockchainItemIdsInventory(BlockchainItemIdsInventoryMessage {
                    total_remaining_item_count: CHAIN_LEN - end,
                    item_type: msg_type::BLOCK,
                    item_hashes_available,
                }),
            );
        }
    }

    fn operator(&mut self, k: u8, a: u8) {
        let now = self.now;
        match k % 6 {
            0 => {
                let _ = self.node.broadcast(msg_type::TRX, trx_data(a), now);
            }
            1 => {
                let _ = self.node.broadcast(msg_type::BLOCK, block_message(a), now);
            }
            2 => {
                let _ = self.node.broadcast(u32::from(a), vec![a], now);
            }
            3 => self.node.add_node(endpoint_of(a), now),
            4 => self.node.add_seed(endpoint_of(a), now),
            _ => {
                if a == 0xFF {
                    self.node.shutdown(now);
                } else {
                    // Read-only views must not disturb anything.
                    let _ = self.node.info(now);
                    let _ = self.node.peer_infos(now);
                    let _ = self.node.address_list(now);
                    let _ = self.node.sync_progress();
                }
            }
        }
    }
}

/// A hello from `peer`, signed by the fixed peer key. `v`: bits 0-2 the fake node id claimed
/// in user_data; bits 3-4 the signature (0, 1: valid for the connection; 2: over another
/// digest; 3: junk); bit 5 another chain; bit 6 no node id in user_data (the key is the id,
/// the same for every peer); bit 7 claims our own node id. `w`: bit 0 port 0 (firewalled),
/// bits 1-3 the claimed inbound address ([`endpoint_of`]), bit 7 protocol version 105.
pub fn hello(peer: PeerId, v: u8, w: u8) -> HelloMessage {
    let fx = fixtures();
    let d = (peer % DIGESTS as u64) as usize;
    let signature = match (v >> 3) & 3 {
        0 | 1 => fx.peer_signatures[d],
        2 => fx.peer_signatures[(d + 1) % DIGESTS],
        _ => [0x1F; 65],
    };
    let mut user_data = VariantObject::new();
    user_data.set("platform", Variant::String("fuzz".into()));
    if v & 0x40 == 0 {
        let id = if v & 0x80 != 0 {
            our_node_id()
        } else {
            fake_node_id(v)
        };
        user_data.set("node_id", Variant::String(id.to_string()));
    }
    let inbound = endpoint_of(w & 0x0E);
    HelloMessage {
        user_agent: "fuzz peer".into(),
        core_protocol_version: if w & 0x80 == 0 { 106 } else { 105 },
        inbound_address: inbound.address,
        inbound_port: if w & 1 == 1 { 0 } else { inbound.port.max(1) },
        outbound_port: 4000 + u16::from(w >> 4),
        node_public_key: NodeId(*fx.peer_key.public_key()),
        signed_shared_secret: CompactSignatureBytes(signature),
        chain_id: if v & 0x20 == 0 {
            CHAIN_ID
        } else {
            Sha256([0x43; 32])
        },
        user_data,
    }
}

/// A message without much content, by kind `k` (modulo 12), with `a` filling it in.
pub fn simple_message(k: u8, a: u8, now: TimePoint) -> Message {
    let ago = |ms: u8| TimePoint(now.0 - i64::from(ms) * 1_000);
    match k % 12 {
        0 => Message::ConnectionAccepted(ConnectionAcceptedMessage {}),
        1 => Message::ConnectionRejected(ConnectionRejectedMessage {
            user_agent: "fuzz peer".into(),
            core_protocol_version: 106,
            remote_endpoint: endpoint_of(a),
            reason_code: RejectionReason::from_byte(a % 8),
            reason_string: "no".into(),
        }),
        2 => Message::AddressRequest(AddressRequestMessage {}),
        3 => Message::ClosingConnection(ClosingConnectionMessage {
            reason_for_closing: "bye".into(),
            closing_due_to_error: a & 1 == 1,
            error: None,
        }),
        4 => Message::CurrentTimeRequest(CurrentTimeRequestMessage {
            request_sent_time: ago(a),
        }),
        5 => Message::CurrentTimeReply(CurrentTimeReplyMessage {
            request_sent_time: ago(a),
            request_received_time: if a & 1 == 0 {
                ago(a / 2)
            } else {
                TimePoint(i64::MIN)
            },
            reply_transmitted_time: if a & 2 == 0 {
                ago(a / 3)
            } else {
                TimePoint(i64::MAX)
            },
        }),
        6 => Message::CheckFirewall(CheckFirewallMessage {
            node_id: NodeId::default(),
            endpoint_to_check: Endpoint::default(),
        }),
        7 => Message::CheckFirewall(CheckFirewallMessage {
            node_id: if a & 0x80 == 0 {
                fake_node_id(a)
            } else {
                our_node_id()
            },
            endpoint_to_check: endpoint_of(a & 0x7F),
        }),
        8 => Message::CheckFirewallReply(CheckFirewallReplyMessage {
            node_id: if a & 0x80 == 0 {
                NodeId::default()
            } else {
                fake_node_id(a)
            },
            endpoint_checked: if a & 0x40 == 0 {
                listen_endpoint()
            } else {
                endpoint_of(a)
            },
            result: FirewallCheckResult::from_byte(a % 4),
        }),
        9 => Message::GetCurrentConnectionsRequest(GetCurrentConnectionsRequestMessage {}),
        10 => Message::GetCurrentConnectionsReply(GetCurrentConnectionsReplyMessage {
            upload_rate_one_minute: u32::from(a),
            download_rate_one_minute: 0,
            upload_rate_fifteen_minutes: 0,
            download_rate_fifteen_minutes: 0,
            upload_rate_one_hour: 0,
            download_rate_one_hour: 0,
            current_connections: Vec::new(),
        }),
        _ => Message::Unknown {
            msg_type: if a & 1 == 0 {
                5018 + u32::from(a)
            } else {
                2000 + u32::from(a)
            },
            data: vec![a; usize::from(a & 15)],
        },
    }
}

/// `n` addresses (255: 1000) made from seed `s`: distinct private endpoints, every 17th with
/// port 0, the first our own listening endpoint when `s` is odd.
pub fn addresses(n: u8, s: u8) -> AddressMessage {
    let count = if n == 0xFF { 1000 } else { usize::from(n) };
    let addresses = (0..count)
        .map(|i| {
            let remote_endpoint = if i == 0 && s & 1 == 1 {
                listen_endpoint()
            } else {
                Endpoint::new(
                    Ipv4Addr::new(10, s, (i >> 8) as u8, i as u8),
                    if i % 17 == 16 {
                        0
                    } else {
                        5000 + (i % 7) as u16
                    },
                )
            };
            AddressInfo {
                remote_endpoint,
                last_seen_time: TimePointSec(1_700_000_000 - i as u32),
                latency: Microseconds(i as i64),
                node_id: fake_node_id(i as u8),
                direction: Direction::from_byte(i as u8 % 3),
                firewalled: FirewalledState::from_byte(i as u8 % 4),
            }
        })
        .collect();
    AddressMessage { addresses }
}

/// An item type and `n` hashes, by kind `k` (modulo 5) starting at `s`: 0 fork 0's block
/// inventory hashes, 1 its block ids, 2 the pool's transactions, 3 made-up transaction hashes,
/// 4 made-up hashes of an item type that does not exist.
pub fn item_hashes(k: u8, n: u8, s: u8) -> (u32, Vec<ItemHash>) {
    let fx = fixtures();
    let n = usize::from(n);
    let s = usize::from(s);
    match k % 5 {
        0 => (
            msg_type::BLOCK,
            (0..n)
                .map(|i| fx.canonical_hashes[(s + i) % fx.canonical_hashes.len()])
                .collect(),
        ),
        1 => (
            msg_type::BLOCK,
            (0..n)
                .map(|i| block_id(1 + ((s + i) % CHAIN_LEN as usize) as u32, 0))
                .collect(),
        ),
        2 => (
            msg_type::TRX,
            (0..n)
                .map(|i| fx.trx_hashes[(s + i) % fx.trx_hashes.len()])
                .collect(),
        ),
        3 => (
            msg_type::TRX,
            (0..n)
                .map(|i| {
                    let mut h = [0xA5; 20];
                    h[..8].copy_from_slice(&((s << 8) + i).to_le_bytes());
                    Ripemd160(h)
                })
                .collect(),
        ),
        _ => (
            2000 + k as u32,
            (0..n).map(|i| Ripemd160([(s + i) as u8; 20])).collect(),
        ),
    }
}

/// Block message data by `k`: below 0x80 fork 0's block `1 + k mod CHAIN_LEN`; below 0xA0 the
/// same number on fork 1 or 2; below 0xC0 refused as invalid; below 0xD0 failing locally;
/// otherwise `k - 0xD0` bytes of junk (too short for a block id below 20).
pub fn block_message(k: u8) -> Vec<u8> {
    let n = 1 + u32::from(k) % CHAIN_LEN;
    match k {
        0..0x80 => fixtures().canonical[(n - 1) as usize].clone(),
        0x80..0xA0 => block(n, 1 + (k & 1), 0),
        0xA0..0xC0 => block(n, 0, MARK_INVALID),
        0xC0..0xD0 => block(n, 0, MARK_LOCAL_FAILURE),
        _ => vec![k; usize::from(k - 0xD0)],
    }
}

/// Transaction data by `k`: the pool's below 0xF0, then invalid, unusable and empty ones and
/// made-up ones.
pub fn trx_data(k: u8) -> Vec<u8> {
    match k {
        0..0xF0 => fixtures().trxs[usize::from(k % TRX_POOL)].clone(),
        0xF0..0xF4 => vec![MARK_INVALID, k],
        0xF4..0xF8 => vec![MARK_LOCAL_FAILURE, k],
        0xF8 => Vec::new(),
        _ => vec![k; usize::from(k)],
    }
}

/// A synopsis by `k` (bits 0-1 choose, the rest picks a block): empty; ours; fork 0 up to a
/// block; fork 1 (nothing in common).
pub fn synopsis(k: u8, ours: Vec<BlockId>) -> Vec<BlockId> {
    let n = 1 + u32::from(k >> 2) % CHAIN_LEN;
    match k & 3 {
        0 => Vec::new(),
        1 => ours,
        2 => crate::app::synopsis_numbers(n)
            .into_iter()
            .map(|i| block_id(i, 0))
            .collect(),
        _ => vec![block_id(n, 1)],
    }
}

/// An unasked-for blockchain_item_ids_inventory: `n mod 64` ids of fork `s >> 7` starting at
/// block `s mod CHAIN_LEN` (skipping one when `n` ≥ 128), with `r` remaining (255: u32::MAX).
pub fn ids_inventory(s: u8, n: u8, r: u8) -> BlockchainItemIdsInventoryMessage {
    let fork = s >> 7;
    let start = u32::from(s) % CHAIN_LEN;
    let gap = u32::from(n >= 128);
    BlockchainItemIdsInventoryMessage {
        total_remaining_item_count: if r == 0xFF { u32::MAX } else { u32::from(r) },
        item_type: msg_type::BLOCK,
        item_hashes_available: (0..u32::from(n % 64))
            .map(|i| block_id(start + i + gap * u32::from(i > 0), fork))
            .collect(),
    }
}

/// The message type a raw step decodes as: one of the core types, a block or a trx.
pub fn raw_type(t: u8) -> u32 {
    match t % 20 {
        18 => msg_type::TRX,
        19 => msg_type::BLOCK,
        c => msg_type::ITEM_IDS_INVENTORY + u32::from(c % 17),
    }
}

/// Builds `node_events` scripts (for the seed corpus and the tests).
#[derive(Clone, Debug, Default)]
pub struct Script(pub Vec<u8>);

impl Script {
    /// A script with this header.
    pub fn new(header: Header) -> Self {
        Self(vec![header.config, header.head, header.runtime])
    }

    /// Appends a step: an op code and its argument bytes.
    pub fn step(mut self, op: u8, args: &[u8]) -> Self {
        self.0.push(op);
        self.0.extend_from_slice(args);
        self
    }

    /// An inbound connection from `endpoint_of(a)`, which becomes tracked peer `p` (the
    /// caller counts), completing the whole handshake: key exchange, hellos both ways,
    /// connection_accepted, address request and reply. `v` is the hello's node id choice.
    pub fn inbound_handshake(self, a: u8, p: u8, v: u8) -> Self {
        self.step(op::ACCEPT, &[a])
            .step(op::ESTABLISH, &[p])
            .step(op::HELLO, &[p, v & 7, 0])
            .step(op::SIMPLE, &[p, 0, 0])
            .step(op::SIMPLE, &[p, 2, 0])
            .step(op::ADDRESS, &[p, 3, v])
    }

    /// Tracked peer `p` answers the node's requests `rounds` times (sync ids and blocks).
    pub fn answer(mut self, p: u8, rounds: usize) -> Self {
        for _ in 0..rounds {
            self = self.step(op::ANSWER, &[p, 0]);
        }
        self
    }

    /// The bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sync from one inbound peer that answers `rounds` times, with time moving between
    /// rounds or not.
    fn sync(runtime: u8, rounds: usize, time_moves: bool) -> Depth {
        let mut script = Script::new(Header {
            config: 3,
            head: 0,
            runtime,
        })
        .inbound_handshake(9, 0, 0);
        for _ in 0..rounds {
            script = script.answer(0, 1);
            if time_moves {
                script = script.step(op::TIME, &[1]);
            }
        }
        node_events(&script.into_bytes())
    }

    #[test]
    fn deferred_durability_holds_sync_back_until_time_moves() {
        // Durable at once: the whole chain in 18 rounds.
        assert_eq!(sync(0, 18, false).blocks_applied, CHAIN_LEN);
        // Deferred and no commit ever finishes: the application saturates and sync stops.
        let stuck = sync(4, 18, false).blocks_applied;
        assert!(stuck < CHAIN_LEN, "{stuck}");
        // Deferred, with commits finishing as time moves: the whole chain again.
        assert_eq!(sync(4, 18, true).blocks_applied, CHAIN_LEN);
    }
}
