//! The node's policy, sans IO: connection lists, the handshake rules, the periodic loops and the
//! peer database, as functions of input and `now`.
//!
//! # Calling contract
//! The runtime owns sockets and time and drives a [`Node`] like this:
//! - it reports what happened: [`Node::accept_inbound`] for a new socket,
//!   [`Node::on_established`] once a connection's key exchange is done,
//!   [`Node::on_dial_failed`], [`Node::on_message`], [`Node::on_bytes_received`] (also for
//!   partial frames: a peer slowly sending a large block is active), [`Node::on_sent`],
//!   [`Node::on_protocol_error`] and [`Node::on_closed`];
//! - it calls [`Node::handle_timeout`] whenever `now` reaches [`Node::next_deadline`];
//! - after every call it drains [`Node::poll_command`] and carries the commands out: dial an
//!   endpoint, send a message, close a socket, save the peer database.
//!
//! `now` is microseconds since the Unix epoch and must not go backwards. Nothing here reads a
//! clock, touches a socket or the disk, so every rule is tested by passing times.

pub mod bandwidth;
pub mod config;
mod firewall;
mod handshake;
pub mod invariants;
mod items;
pub mod sim;
mod sync;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::Ipv4Addr;

use tracing::{debug, info, warn};

use crate::app::Delegate;
use crate::crypto::NodeKey;
use crate::peer::{ConnectionList, OurHelloState, PeerId, PeerState, TheirHelloState};
use crate::store::peer_db::{Disposition, PeerDatabase, PeerRecord};
use crate::wire::Message;
use crate::wire::message::*;
use crate::wire::types::{
    BlockId, Direction, Endpoint, FirewalledState, NodeId, RejectionReason, TimePoint,
};

use bandwidth::BandwidthMonitor;
use config::*;
pub use config::{AdvertiseAlgorithm, NodeConfig};
pub use invariants::InvariantViolation;
pub use sync::SyncProgress;

/// What the runtime must do for the node.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Open a TCP connection to `endpoint` for `peer` and run the key exchange.
    Dial { peer: PeerId, endpoint: Endpoint },
    /// Queue `message` on `peer`'s connection.
    Send { peer: PeerId, message: Message },
    /// Close `peer`'s socket now; report [`Node::on_closed`] when it is gone.
    Close { peer: PeerId },
    /// Write the peer database.
    SavePeerDb(Vec<PeerRecord>),
}

/// The node core. See the module docs for the calling contract.
pub struct Node {
    config: NodeConfig,
    key: NodeKey,
    node_id: NodeId,
    listen_endpoint: Option<Endpoint>,
    peers: BTreeMap<PeerId, PeerState>,
    next_peer_id: PeerId,
    db: PeerDatabase,
    add_once: Vec<Endpoint>,
    seeds: Vec<Endpoint>,
    commands: VecDeque<Command>,
    started_at: TimePoint,
    delegate: Box<dyn Delegate>,
    new_inventory: Vec<ItemId>,
    items_to_fetch: HashMap<ItemId, TimePoint>,
    requested_items: HashMap<ItemId, PeerId>,
    recently_failed: HashMap<ItemId, TimePoint>,
    sync_received: BTreeMap<u32, (BlockId, Vec<u8>, PeerId)>,
    sync_received_bytes: usize,
    active_sync_requests: HashMap<BlockId, PeerId>,
    sync_target: u32,
    bodies_received: u64,
    duplicate_bodies: u64,
    blocks_applied_total: u64,
    rate_window_start: TimePoint,
    rate_window_blocks: u64,
    blocks_per_second: f64,
    next_prune: i64,
    next_connect: i64,
    next_terminate: i64,
    next_peer_list_refresh: i64,
    next_seed_retry: i64,
    next_db_save: i64,
    bandwidth: BandwidthMonitor,
    firewalled: FirewalledState,
    public_endpoint: Option<Endpoint>,
    last_firewall_check: i64,
    shutting_down: bool,
}

/// The node's public facts, for the status API.
#[derive(Clone, Debug, serde::Serialize)]
pub struct NodeInfo {
    pub node_id: String,
    pub node_public_key: String,
    pub chain_id: String,
    pub p2p_endpoint: Option<String>,
    pub user_agent: String,
    pub connections: ConnectionCounts,
    pub head_block_number: u32,
    pub head_block_id: String,
    pub uptime_seconds: i64,
    pub head_block_time: String,
    pub syncing: bool,
    pub sync_target_block: u32,
    pub blocks_per_second: f64,
    /// Trx and block bodies received from peers.
    pub items_received: u64,
    /// Bodies received for items we already had (gossip waste; should stay 0).
    pub duplicate_items_received: u64,
    pub firewalled: String,
    pub bandwidth: bandwidth::Rates,
}

/// Connections per list.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ConnectionCounts {
    pub handshaking: usize,
    pub active: usize,
    pub closing: usize,
}

/// One connection, for the status API.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PeerInfo {
    pub endpoint: String,
    pub direction: String,
    pub node_id: Option<String>,
    pub user_agent: Option<String>,
    pub state: String,
    pub connected_since: String,
    pub round_trip_delay_us: i64,
    pub clock_offset_us: i64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub firewalled: String,
    pub inbound_endpoint: Option<String>,
}

fn is_public_address(a: Ipv4Addr) -> bool {
    !(a.is_private()
        || a.is_loopback()
        || a.is_link_local()
        || a.is_multicast()
        || a.is_unspecified())
}

/// Size of a message on the wire, for queue accounting.
fn wire_size(message: &Message) -> usize {
    let data = match message {
        Message::Trx(d) | Message::Block(d) | Message::Unknown { data: d, .. } => d.len(),
        other => other.to_data().len(),
    };
    crate::wire::frame::padded_frame_len(data)
}

impl Node {
    /// A node with its identity, settings and saved peer database.
    pub fn new(
        mut config: NodeConfig,
        key: NodeKey,
        node_id: NodeId,
        db: PeerDatabase,
        delegate: Box<dyn Delegate>,
        now: TimePoint,
    ) -> Self {
        let t = now.0;
        // The application decides which chain this node serves and how fast it moves.
        config.chain_id = delegate.chain_id();
        config.block_interval_secs = delegate.block_interval_secs();
        let head = delegate.head().number;
        Self {
            config,
            key,
            node_id,
            listen_endpoint: None,
            peers: BTreeMap::new(),
            next_peer_id: 1,
            db,
            add_once: Vec::new(),
            seeds: Vec::new(),
            commands: VecDeque::new(),
            started_at: now,
            delegate,
            new_inventory: Vec::new(),
            items_to_fetch: HashMap::new(),
            requested_items: HashMap::new(),
            recently_failed: HashMap::new(),
            sync_received: BTreeMap::new(),
            sync_received_bytes: 0,
            active_sync_requests: HashMap::new(),
            sync_target: head,
            bodies_received: 0,
            duplicate_bodies: 0,
            blocks_applied_total: 0,
            rate_window_start: now,
            rate_window_blocks: 0,
            blocks_per_second: 0.0,
            next_prune: t + PRUNE_INTERVAL_US,
            next_connect: t,
            next_terminate: t + TERMINATE_CHECK_INTERVAL_US,
            next_peer_list_refresh: t + PEER_LIST_REFRESH_US,
            next_seed_retry: t + SEED_RETRY_WHEN_ALONE_US,
            next_db_save: t + PEER_DB_SAVE_INTERVAL_US,
            bandwidth: BandwidthMonitor::new(t),
            firewalled: FirewalledState::Unknown,
            public_endpoint: None,
            last_firewall_check: i64::MIN / 2,
            shutting_down: false,
        }
    }

    // ----- accessors -------------------------------------------------------------------------

    /// Our random per-process node id.
    pub fn node_id(&self) -> &NodeId {
        &self.node_id
    }

    /// The settings.
    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// A connection's state.
    pub fn peer(&self, id: PeerId) -> Option<&PeerState> {
        self.peers.get(&id)
    }

    /// All connections.
    pub fn peers(&self) -> impl Iterator<Item = &PeerState> {
        self.peers.values()
    }

    /// The peer database.
    pub fn peer_db(&self) -> &PeerDatabase {
        &self.db
    }

    /// Connections per list.
    pub fn connection_counts(&self) -> ConnectionCounts {
        let mut c = ConnectionCounts::default();
        for p in self.peers.values().filter(|p| p.probe_for.is_none()) {
            match p.list {
                ConnectionList::Handshaking => c.handshaking += 1,
                ConnectionList::Active => c.active += 1,
                ConnectionList::Closing => c.closing += 1,
            }
        }
        c
    }

    /// The endpoint we listen on, once bound.
    pub fn set_listen_endpoint(&mut self, endpoint: Endpoint) {
        self.listen_endpoint = Some(endpoint);
    }

    /// The application.
    pub fn delegate(&self) -> &dyn Delegate {
        self.delegate.as_ref()
    }

    /// An item from the application, by inventory hash or (for blocks) block id.
    pub fn get_item(&self, hash: &crate::wire::types::ItemHash) -> Option<(u32, Vec<u8>)> {
        [msg_type::BLOCK, msg_type::TRX].into_iter().find_map(|t| {
            self.delegate
                .get_item(&ItemId {
                    item_type: t,
                    item_hash: *hash,
                })
                .map(|d| (t, d))
        })
    }

    /// The next command for the runtime.
    pub fn poll_command(&mut self) -> Option<Command> {
        self.commands.pop_front()
    }

    // ----- operator actions ------------------------------------------------------------------

    /// Adds a seed node: never pruned, dialled now and retried whatever its history.
    pub fn add_seed(&mut self, endpoint: Endpoint, now: TimePoint) {
        if !self.seeds.contains(&endpoint) {
            self.seeds.push(endpoint);
        }
        self.db.entry(endpoint).seed = true;
        self.add_node(endpoint, now);
    }

    /// Dials `endpoint` once at the next connect-loop pass, whatever the connection counts
    /// (within `max_connections`): the reference's add_node.
    pub fn add_node(&mut self, endpoint: Endpoint, now: TimePoint) {
        let record = self.db.entry(endpoint);
        let retry =
            (i64::from(record.number_of_failed_connection_attempts) + 1) * PEER_CONNECTION_RETRY_US;
        record.last_connection_attempt_time =
            TimePoint(record.last_connection_attempt_time.0.min(now.0 - retry));
        if !self.add_once.contains(&endpoint) && self.add_once.len() < MAX_ADD_ONCE {
            self.add_once.push(endpoint);
        }
        self.trigger_connect_loop(now);
    }

    fn trigger_connect_loop(&mut self, now: TimePoint) {
        self.next_connect = self.next_connect.min(now.0);
    }

    /// Starts closing every connection and asks for a final save of the peer database.
    pub fn shutdown(&mut self, now: TimePoint) {
        self.shutting_down = true;
        let ids: Vec<PeerId> = self.peers.keys().copied().collect();
        for id in ids {
            self.disconnect(id, "Peer is shutting down", false, now);
        }
        self.commands
            .push_back(Command::SavePeerDb(self.db.snapshot()));
    }

    // ----- connection events -----------------------------------------------------------------

    fn new_peer(&mut self, direction: Direction, endpoint: Endpoint, now: TimePoint) -> PeerId {
        let id = self.next_peer_id;
        self.next_peer_id += 1;
        self.peers
            .insert(id, PeerState::new(id, direction, endpoint, now));
        id
    }

    /// A socket was accepted. `None` means too many connections are already handshaking: close
    /// the socket at once.
    pub fn accept_inbound(&mut self, remote: Endpoint, now: TimePoint) -> Option<PeerId> {
        if self.shutting_down || !self.config.accept_incoming_connections {
            return None;
        }
        let handshaking = self.connection_counts().handshaking;
        if handshaking >= self.config.max_connections + EXTRA_HANDSHAKING_CONNECTIONS {
            warn!(%remote, handshaking, "refusing socket: too many handshaking connections");
            return None;
        }
        Some(self.new_peer(Direction::Inbound, remote, now))
    }

    /// The key exchange with `peer` finished; `hello_digest` is SHA-256 of the shared secret.
    pub fn on_established(
        &mut self,
        peer: PeerId,
        local: Endpoint,
        hello_digest: [u8; 32],
        now: TimePoint,
    ) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if p.local_endpoint.is_some() || p.list == ConnectionList::Closing {
            // Reported twice, or we gave up on the connection: nothing more to say on it.
            debug!(endpoint = %p.remote_endpoint, "ignoring a repeated or late key exchange");
            return;
        }
        p.local_endpoint = Some(local);
        p.last_received_at = now;
        if p.probe_for.is_some() {
            self.finish_probe(peer, FirewallCheckResultKind::Success, now);
            return;
        }
        if p.direction == Direction::Outbound {
            p.firewalled = FirewalledState::NotFirewalled;
            p.remote_inbound_endpoint = Some(p.remote_endpoint);
            let ep = p.remote_endpoint;
            let r = self.db.entry(ep);
            r.last_connection_disposition = Disposition::LastConnectionHandshakingFailed;
            r.number_of_successful_connection_attempts += 1;
            r.last_seen_time = now;
        }
        let hello = self.build_hello(peer, hello_digest);
        if let Some(p) = self.peers.get_mut(&peer) {
            p.our_state = OurHelloState::Sent;
        }
        self.send(peer, Message::Hello(hello), now);
    }

    /// A dial failed before the key exchange finished.
    pub fn on_dial_failed(&mut self, peer: PeerId, error: &str, now: TimePoint) {
        let Some(p) = self.peers.get(&peer) else {
            return;
        };
        if p.direction != Direction::Outbound || p.local_endpoint.is_some() {
            // Not a dial in progress: the socket is gone, and everything it held is released
            // as for any closed connection.
            self.on_closed(peer, now);
            return;
        }
        if p.probe_for.is_some() {
            self.finish_probe(peer, FirewallCheckResultKind::Unreachable, now);
            self.peers.remove(&peer);
            return;
        }
        let ep = p.remote_endpoint;
        debug!(%ep, error, "connection attempt failed");
        let r = self.db.entry(ep);
        r.last_connection_disposition = Disposition::LastConnectionFailed;
        r.number_of_failed_connection_attempts =
            r.number_of_failed_connection_attempts.saturating_add(1);
        r.last_error = Some(error.to_string());
        self.peers.remove(&peer);
        self.trigger_connect_loop(now);
    }

    /// Bytes arrived from `peer` (whole messages or not): the connection is alive.
    pub fn on_bytes_received(&mut self, peer: PeerId, bytes: usize, now: TimePoint) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.last_received_at = now;
            p.bytes_received += bytes as u64;
        }
        self.bandwidth.received(bytes as u64);
    }

    /// Bytes queued for `peer` were written to its socket.
    pub fn on_sent(&mut self, peer: PeerId, bytes: usize, now: TimePoint) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.last_sent_at = now;
            p.bytes_sent += bytes as u64;
            p.queued_bytes = p.queued_bytes.saturating_sub(bytes);
        }
        self.bandwidth.sent(bytes as u64);
        self.serve_items(peer, now);
    }

    /// The peer sent bytes that are not a valid frame or message: the reference drops such a
    /// connection without a closing message.
    pub fn on_protocol_error(&mut self, peer: PeerId, error: &str, now: TimePoint) {
        if let Some(p) = self.peers.get(&peer) {
            warn!(endpoint = %p.remote_endpoint, error, "dropping peer: invalid data");
        }
        self.close_now(peer, now);
    }

    /// The socket of `peer` is closed.
    pub fn on_closed(&mut self, peer: PeerId, now: TimePoint) {
        let Some(p) = self.peers.remove(&peer) else {
            return;
        };
        debug!(endpoint = %p.remote_endpoint, list = p.list.name(), "connection closed");
        if let Some(ep) = p.remote_inbound_endpoint.filter(|e| e.port != 0) {
            if p.list == ConnectionList::Active {
                self.db.update(&ep, |r| r.last_seen_time = now);
            }
            if let Some(err) = &p.close_error {
                self.db.update(&ep, |r| r.last_error = Some(err.clone()));
            }
        }
        for item in p.items_requested.keys() {
            self.requeue_item(*item, peer, now);
        }
        self.release_sync_requests(p.sync.requested.keys().copied(), now);
        if !p.items_requested.is_empty() {
            self.fetch_items(now);
        }
        if let Some(check) = p.firewall_check
            && check.requesting_peer.is_some()
        {
            self.forward_firewall_check(check, now);
        }
        if p.probe_for.is_none() {
            self.trigger_connect_loop(now);
        }
    }

    // ----- sending and closing ---------------------------------------------------------------

    /// Queues a message without the queue-size check: for items served from the serve queue,
    /// which only grows the queue while it is below half the limit.
    fn send_unchecked(&mut self, peer: PeerId, message: Message, _now: TimePoint) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.queued_bytes += wire_size(&message);
            self.commands.push_back(Command::Send { peer, message });
        }
    }

    fn send(&mut self, peer: PeerId, message: Message, now: TimePoint) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        p.queued_bytes += wire_size(&message);
        let over = p.queued_bytes > MAX_QUEUED_BYTES_PER_PEER;
        let endpoint = p.remote_endpoint;
        self.commands.push_back(Command::Send { peer, message });
        if over {
            warn!(%endpoint, "send queue exceeded its limit; closing the connection");
            self.close_now(peer, now);
        }
    }

    /// Closes the socket without a goodbye (the reference's forcible close).
    fn close_now(&mut self, peer: PeerId, now: TimePoint) {
        if let Some(p) = self.peers.get_mut(&peer) {
            if p.closing_since.is_none() {
                p.closing_since = Some(now);
            }
            p.list = ConnectionList::Closing;
            self.commands.push_back(Command::Close { peer });
        }
    }

    /// The reference's disconnect_from_peer: move to closing, say why once, and wait for the
    /// peer to close (or for the closing timeout).
    pub fn disconnect(&mut self, peer: PeerId, reason: &str, due_to_error: bool, now: TimePoint) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        p.list = ConnectionList::Closing;
        if p.they_requested_close {
            self.close_now(peer, now);
            return;
        }
        if p.we_requested_close {
            return;
        }
        p.we_requested_close = true;
        p.closing_since = Some(now);
        let endpoint = p.remote_endpoint;
        let established = p.our_state != OurHelloState::NotSent;
        if let Some(ep) = p.remote_inbound_endpoint.filter(|e| e.port != 0) {
            self.db.update(&ep, |r| {
                r.last_seen_time = now;
                r.last_error = Some(reason.to_string());
            });
        }
        info!(%endpoint, reason, "disconnecting");
        if established {
            self.send(
                peer,
                Message::ClosingConnection(ClosingConnectionMessage {
                    reason_for_closing: reason.to_string(),
                    closing_due_to_error: due_to_error,
                    error: None,
                }),
                now,
            );
        } else {
            // Nothing can be said before the key exchange finished.
            self.close_now(peer, now);
        }
    }

    fn reject(&mut self, peer: PeerId, reason: RejectionReason, text: &str, now: TimePoint) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        p.their_state = TheirHelloState::Rejected;
        let remote_endpoint = p.remote_endpoint;
        let message = Message::ConnectionRejected(ConnectionRejectedMessage {
            user_agent: self.config.user_agent.clone(),
            core_protocol_version: CORE_PROTOCOL_VERSION,
            remote_endpoint,
            reason_code: reason,
            reason_string: text.to_string(),
        });
        self.send(peer, message, now);
    }

    // ----- messages --------------------------------------------------------------------------

    /// A message from `peer`. `hello_digest` is the connection's SHA-256(shared secret), needed
    /// to check a hello's signature.
    pub fn on_message(
        &mut self,
        peer: PeerId,
        message: Message,
        hello_digest: Option<[u8; 32]>,
        now: TimePoint,
    ) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        p.last_received_at = now;
        p.last_message_at = now;
        if p.we_requested_close
            && !matches!(message, Message::Hello(_) | Message::ClosingConnection(_))
        {
            debug!(endpoint = %p.remote_endpoint, msg = message.name(), "closing: message dropped");
            return;
        }
        let accepted = p.their_state == TheirHelloState::Accepted;
        match message {
            Message::Hello(h) => self.on_hello(peer, h, hello_digest, now),
            Message::ConnectionAccepted(_) => self.on_connection_accepted(peer, now),
            Message::ConnectionRejected(m) => self.on_connection_rejected(peer, m, now),
            Message::AddressRequest(_) => self.on_address_request(peer, now),
            Message::Address(m) => self.on_address(peer, m, now),
            Message::ClosingConnection(m) => self.on_closing_connection(peer, m, now),
            Message::CurrentTimeRequest(m) => {
                let reply = CurrentTimeReplyMessage {
                    request_sent_time: m.request_sent_time,
                    request_received_time: now,
                    reply_transmitted_time: now,
                };
                self.send(peer, Message::CurrentTimeReply(reply), now);
            }
            Message::CurrentTimeReply(m) => {
                let (t0, t1, t2, t3) = (
                    m.request_sent_time.0,
                    m.request_received_time.0,
                    m.reply_transmitted_time.0,
                    now.0,
                );
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.clock_offset_us =
                        (t1.saturating_sub(t0) / 2).saturating_add(t2.saturating_sub(t3) / 2);
                    p.round_trip_delay_us =
                        t3.saturating_sub(t0).saturating_sub(t2.saturating_sub(t1));
                }
            }
            Message::CheckFirewall(m) => self.on_check_firewall(peer, m, now),
            Message::CheckFirewallReply(m) => self.on_check_firewall_reply(peer, m, now),
            Message::GetCurrentConnectionsRequest(_) => self.on_get_current_connections(peer, now),
            Message::GetCurrentConnectionsReply(_) => {}
            Message::FetchBlockchainItemIds(m) => {
                if !accepted {
                    self.disconnect(
                        peer,
                        "Received an unexpected fetch_blockchain_item_ids_message",
                        false,
                        now,
                    );
                    return;
                }
                self.on_fetch_blockchain_item_ids(peer, m, now);
            }
            Message::FetchItems(m) => {
                if !accepted {
                    self.disconnect(
                        peer,
                        "Received an unexpected fetch_items_message",
                        false,
                        now,
                    );
                    return;
                }
                self.on_fetch_items(peer, m, now);
            }
            Message::ItemIdsInventory(m) => {
                if !accepted {
                    self.disconnect(
                        peer,
                        "Received an unexpected item_ids_inventory_message",
                        false,
                        now,
                    );
                    return;
                }
                self.on_item_ids_inventory(peer, m, now);
            }
            Message::BlockchainItemIdsInventory(m) => {
                self.on_blockchain_item_ids_inventory(peer, m, now)
            }
            Message::ItemNotAvailable(m) => self.on_item_not_available(peer, m.requested_item, now),
            m @ (Message::Block(_) | Message::Trx(_)) => self.on_item(peer, m, now),
            m @ Message::Unknown { .. } => {
                if !m.is_ignorable_unknown() {
                    self.disconnect(
                        peer,
                        "You sent me a message that I didn't request",
                        true,
                        now,
                    );
                }
            }
        }
    }

    fn on_closing_connection(&mut self, peer: PeerId, m: ClosingConnectionMessage, now: TimePoint) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        p.they_requested_close = true;
        info!(
            endpoint = %p.remote_endpoint,
            reason = %m.reason_for_closing,
            error = m.closing_due_to_error,
            "peer is closing the connection"
        );
        self.close_now(peer, now);
    }

    // ----- loops -----------------------------------------------------------------------------

    /// The earliest time [`Node::handle_timeout`] has something to do.
    pub fn next_deadline(&self) -> TimePoint {
        TimePoint(
            [
                self.next_connect,
                self.next_terminate,
                self.next_peer_list_refresh,
                self.next_seed_retry,
                self.next_db_save,
                self.next_prune,
                self.bandwidth.next_tick(),
            ]
            .into_iter()
            .min()
            .unwrap_or(i64::MAX),
        )
    }

    /// Runs every loop that is due at `now`.
    pub fn handle_timeout(&mut self, now: TimePoint) {
        let t = now.0;
        self.bandwidth.tick(t);
        if self.shutting_down {
            if t >= self.next_terminate {
                self.terminate_inactive_connections(now);
                self.next_terminate = t + TERMINATE_CHECK_INTERVAL_US;
            }
            return;
        }
        if t >= self.next_terminate {
            self.terminate_inactive_connections(now);
            self.expire_inventory(now);
            self.fetch_items(now);
            self.process_sync_backlog(now);
            self.fetch_sync_items(now);
            self.next_terminate = t + TERMINATE_CHECK_INTERVAL_US;
        }
        if t >= self.next_prune {
            self.delegate.prune(now);
            self.next_prune = t + PRUNE_INTERVAL_US;
        }
        self.advertise_inventory(now);
        if t >= self.next_seed_retry {
            let alone = self.connection_counts().active == 0;
            for s in self.seeds.clone() {
                if !self.add_once.contains(&s) {
                    self.add_once.push(s);
                }
            }
            self.next_seed_retry = t + if alone {
                SEED_RETRY_WHEN_ALONE_US
            } else {
                SEED_RETRY_US
            };
            self.next_connect = self.next_connect.min(t);
        }
        if t >= self.next_connect {
            self.connect_loop(now);
            self.next_connect = t + CONNECT_LOOP_INTERVAL_US;
        }
        if t >= self.next_peer_list_refresh {
            self.refresh_peer_lists(now);
            self.next_peer_list_refresh = t + PEER_LIST_REFRESH_US;
        }
        if t >= self.next_db_save {
            if let Some(records) = self.db.take_snapshot_if_dirty() {
                self.commands.push_back(Command::SavePeerDb(records));
            }
            self.next_db_save = t + PEER_DB_SAVE_INTERVAL_US;
        }
    }

    fn outbound_slots(&self) -> usize {
        let c = self.connection_counts();
        self.config
            .max_connections
            .saturating_sub(c.handshaking + c.active)
    }

    fn is_connected_to(&self, endpoint: &Endpoint) -> bool {
        self.peers
            .values()
            .any(|p| p.list != ConnectionList::Closing && p.reaches(endpoint))
    }

    fn is_own_endpoint(&self, endpoint: &Endpoint) -> bool {
        self.listen_endpoint.is_some_and(|l| {
            l.port == endpoint.port
                && (l.address == endpoint.address
                    || l.address.0 == 0 && endpoint.address.to_ipv4().is_loopback())
        })
    }

    fn dial(&mut self, endpoint: Endpoint, now: TimePoint) -> PeerId {
        let peer = self.new_peer(Direction::Outbound, endpoint, now);
        let r = self.db.entry(endpoint);
        r.last_connection_disposition = Disposition::LastConnectionFailed;
        r.last_connection_attempt_time = now;
        self.commands.push_back(Command::Dial { peer, endpoint });
        peer
    }

    /// The connect loop: dial the add-once list, then the most recently seen peers until we have
    /// `desired_connections`, never above `max_connections`.
    pub fn connect_loop(&mut self, now: TimePoint) {
        for ep in std::mem::take(&mut self.add_once) {
            if self.outbound_slots() == 0 {
                // Keep it for later rather than exceed the limit.
                self.add_once.push(ep);
                continue;
            }
            if !self.is_connected_to(&ep) && !self.is_own_endpoint(&ep) {
                self.dial(ep, now);
            }
        }
        loop {
            let c = self.connection_counts();
            if c.handshaking + c.active >= self.config.desired_connections
                || self.outbound_slots() == 0
            {
                break;
            }
            let candidate = self
                .db
                .by_last_seen()
                .into_iter()
                .find(|r| {
                    now.0 >= seed_aware_next_attempt(r)
                        && !self.is_connected_to(&r.endpoint)
                        && !self.is_own_endpoint(&r.endpoint)
                })
                .map(|r| r.endpoint);
            match candidate {
                Some(ep) => {
                    self.dial(ep, now);
                }
                None => break,
            }
        }
    }

    /// terminate_inactive_connections: drop silent handshakes, keep active peers alive or
    /// disconnect them, and close connections stuck in closing.
    pub fn terminate_inactive_connections(&mut self, now: TimePoint) {
        let t = now.0;
        let inactivity = self.config.active_inactivity_timeout_us();
        let keepalive = self.config.keepalive_after_us();
        let mut forcible = Vec::new();
        let mut gentle = Vec::new();
        let mut keepalives = Vec::new();
        for p in self.peers.values() {
            match p.list {
                ConnectionList::Handshaking => {
                    if t - p.last_activity().0 >= HANDSHAKE_INACTIVITY_TIMEOUT_US {
                        forcible.push(p.id);
                    }
                }
                ConnectionList::Active => {
                    let silent = t - p.last_heard().0;
                    let overdue =
                        |sent: TimePoint| t - p.request_clock(sent).0 >= REQUEST_TIMEOUT_US;
                    let stalled = p.items_requested.values().any(|s| overdue(*s))
                        || p.sync
                            .ids_request
                            .as_ref()
                            .is_some_and(|(_, s)| overdue(*s))
                        || (!p.sync.requested.is_empty() && overdue(p.sync.last_item_received));
                    if stalled {
                        info!(endpoint = %p.remote_endpoint, "request timed out; dropping the peer");
                        forcible.push(p.id);
                    } else if silent >= inactivity {
                        gentle.push(p.id);
                    } else if silent >= keepalive && t - p.last_keepalive_at.0 >= keepalive {
                        keepalives.push(p.id);
                    }
                }
                ConnectionList::Closing => {
                    if p.closing_since
                        .is_some_and(|c| t - c.0 >= CLOSING_TIMEOUT_US)
                    {
                        forcible.push(p.id);
                    }
                }
            }
        }
        for id in forcible {
            if let Some(p) = self.peers.get_mut(&id)
                && p.list == ConnectionList::Handshaking
            {
                let text = format!(
                    "Terminating handshaking connection due to inactivity of {} seconds",
                    HANDSHAKE_INACTIVITY_TIMEOUT_US / SECOND_US
                );
                info!(endpoint = %p.remote_endpoint, "{text}");
                p.close_error = Some(text);
            }
            self.close_now(id, now);
        }
        for id in gentle {
            self.disconnect(id, "Disconnecting due to inactivity", false, now);
        }
        for id in keepalives {
            if let Some(p) = self.peers.get_mut(&id) {
                p.last_keepalive_at = now;
            }
            self.send_time_request(id, now);
        }
    }

    fn refresh_peer_lists(&mut self, now: TimePoint) {
        let active: Vec<PeerId> = self
            .peers
            .values()
            .filter(|p| p.list == ConnectionList::Active)
            .map(|p| p.id)
            .collect();
        for id in active {
            if let Some(p) = self.peers.get_mut(&id) {
                p.expecting_address_message = true;
            }
            self.send(id, Message::AddressRequest(AddressRequestMessage {}), now);
        }
    }

    // ----- views ------------------------------------------------------------------------------

    /// The status API's /info.
    pub fn info(&self, now: TimePoint) -> NodeInfo {
        NodeInfo {
            node_id: self.node_id.to_string(),
            node_public_key: hex::encode(self.key.public_key()),
            chain_id: self.config.chain_id.to_string(),
            p2p_endpoint: self.listen_endpoint.map(|e| e.to_string()),
            user_agent: self.config.user_agent.clone(),
            connections: self.connection_counts(),
            head_block_number: self.delegate.head().number,
            head_block_id: self.delegate.head().block_id.to_string(),
            uptime_seconds: (now.0 - self.started_at.0) / SECOND_US,
            head_block_time: self.delegate.head().time.to_string(),
            syncing: self.sync_progress().syncing,
            sync_target_block: self.sync_progress().sync_target_block,
            blocks_per_second: self.blocks_per_second,
            items_received: self.bodies_received,
            duplicate_items_received: self.duplicate_bodies,
            firewalled: self.firewalled.name(),
            bandwidth: self.bandwidth.rates(),
        }
    }

    /// The status API's /peers.
    pub fn peer_infos(&self) -> Vec<PeerInfo> {
        self.peers
            .values()
            .filter(|p| p.probe_for.is_none())
            .map(|p| PeerInfo {
                endpoint: p.remote_endpoint.to_string(),
                direction: p.direction.name(),
                node_id: p.node_id.map(|n| n.to_string()),
                user_agent: p.hello.as_ref().map(|h| h.user_agent.clone()),
                state: p.list.name().to_string(),
                connected_since: p.initiated_at.to_string(),
                round_trip_delay_us: p.round_trip_delay_us,
                clock_offset_us: p.clock_offset_us,
                bytes_sent: p.bytes_sent,
                bytes_received: p.bytes_received,
                firewalled: p.firewalled.name(),
                inbound_endpoint: p.remote_inbound_endpoint.map(|e| e.to_string()),
            })
            .collect()
    }

    /// The bandwidth figures.
    pub fn rates(&self) -> bandwidth::Rates {
        self.bandwidth.rates()
    }
}

/// When a record may be dialled again. Seeds back off gently and never beyond
/// [`SEED_MAX_RETRY_US`]: a seed that was down when we started (or that restarts) is found again
/// within a minute, whatever its history.
fn seed_aware_next_attempt(r: &PeerRecord) -> i64 {
    if r.seed && r.last_connection_disposition.needs_backoff() {
        let factor = i64::from(r.number_of_failed_connection_attempts.min(5)) + 1;
        r.last_connection_attempt_time.0 + (factor * SEED_RETRY_BASE_US).min(SEED_MAX_RETRY_US)
    } else {
        r.next_attempt_time(PEER_CONNECTION_RETRY_US)
    }
}

/// Outcome of a firewall probe connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FirewallCheckResultKind {
    Success,
    Unreachable,
}

#[cfg(test)]
mod tests;
