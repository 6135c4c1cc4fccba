//! The node's policy, sans IO: connection lists, the handshake rules, the periodic loops and the
//! peer database, as functions of input and `now`.
//!
//! # Calling contract
//! The runtime owns sockets and time and drives a [`Node`] like this:
//! - it reports what happened: [`Node::accept_inbound`] for a new socket,
//!   [`Node::on_established`] once a connection's key exchange is done,
//!   [`Node::on_dial_failed`], [`Node::on_message`], [`Node::on_bytes_received`] (after the
//!   messages a read completed, with the bytes of the message still arriving: it keeps a peer
//!   alive only while it advances at [`config::MIN_IN_FLIGHT_BYTES_PER_SEC`]),
//!   [`Node::on_sent`], [`Node::on_protocol_error`] and [`Node::on_closed`];
//! - it calls [`Node::handle_timeout`] whenever `now` reaches [`Node::next_deadline`];
//! - after every call it drains [`Node::poll_command`] and carries the commands out: dial an
//!   endpoint, send a message, close a socket, save the peer database.
//!
//! `now` is microseconds since the Unix epoch and must not go backwards. Nothing here reads a
//! clock, touches a socket or the disk, so every rule is tested by passing times.

pub mod bandwidth;
pub mod bans;
mod broadcast;
pub mod config;
mod fetch;
mod firewall;
mod handshake;
pub mod invariants;
mod items;
pub mod sim;
mod sync;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::net::Ipv4Addr;

use tracing::{debug, info, warn};

use crate::app::Delegate;
use crate::crypto::NodeKey;
use crate::peer::{ConnectionList, OurHelloState, PeerId, PeerState, TheirHelloState, TimedSet};
use crate::store::peer_db::{Disposition, PeerDatabase, PeerRecord};
use crate::wire::Message;
use crate::wire::message::*;
use crate::wire::types::{
    BlockId, Direction, Endpoint, FirewalledState, NodeId, RejectionReason, TimePoint,
};

use bandwidth::BandwidthMonitor;
use bans::{Ban, BanTable, Violation};
pub use broadcast::{Broadcast, BroadcastOutcome};
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
    /// Write the ban list (every ban in force).
    SaveBans(Vec<Ban>),
}

/// The node core. See the module docs for the calling contract.
pub struct Node {
    config: NodeConfig,
    key: NodeKey,
    node_id: NodeId,
    listen_endpoint: Option<Endpoint>,
    peers: BTreeMap<PeerId, PeerState>,
    /// Inbound handshaking peers still in the key exchange, oldest first (ids grow with time).
    key_exchanges: BTreeSet<PeerId>,
    next_peer_id: PeerId,
    db: PeerDatabase,
    add_once: Vec<Endpoint>,
    seeds: Vec<Endpoint>,
    commands: VecDeque<Command>,
    started_at: TimePoint,
    delegate: Box<dyn Delegate>,
    /// Items to advertise, each with the application's ticket when it accepted it, in ticket
    /// order.
    new_inventory: VecDeque<(ItemId, u64)>,
    new_inventory_set: HashSet<ItemId>,
    /// When waiting transactions are advertised (`i64::MAX`: none waiting).
    next_advertise: i64,
    /// When items were last advertised (`i64::MIN`: never): the batching window of fetched
    /// transactions runs from there.
    last_advertise: i64,
    /// An advertisement was due but some of its items were not durable yet: they go out as
    /// soon as their commit completes ([`Node::on_durable`]).
    advertise_waits_for_durable: bool,
    fetch: fetch::FetchQueue,
    /// When a fetch pass that ran out of budget goes on (`i64::MAX`: none pending).
    next_fetch: i64,
    /// When the timed tables' housekeeping runs next (at once while a batch left work).
    next_expire: i64,
    recently_failed: TimedSet<ItemId>,
    /// Peers with advertised ids still to read (see `Node::work_backlog`).
    inventory_backlog: std::collections::BTreeSet<PeerId>,
    backlog_cursor: PeerId,
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
    /// The earliest a handshaking connection can be due to be dropped (may be early: the check
    /// then finds nothing and recomputes it).
    next_handshake_check: i64,
    next_peer_list_refresh: i64,
    next_seed_retry: i64,
    next_db_save: i64,
    bandwidth: BandwidthMonitor,
    firewalled: FirewalledState,
    public_endpoint: Option<Endpoint>,
    last_firewall_check: i64,
    shutting_down: bool,
    bans: BanTable,
    /// Violations seen, per class in [`Violation::ALL`] order.
    violations: [u64; Violation::ALL.len()],
    /// Sockets closed at accept because their address is banned.
    refused_banned: u64,
    /// Connections that just got their address banned, closed once the commands already
    /// queued (the rejection the protocol sends them) are out: see [`Node::poll_command`].
    close_after_commands: Vec<(PeerId, TimePoint)>,
    /// Seeds whose failure was last reported at WARN, and when: one warning per
    /// [`SEED_WARN_INTERVAL_US`] however often the dial is retried.
    seed_warned_at: HashMap<Endpoint, TimePoint>,
    /// A sync is under way that has not yet been reported finished ("synced to block N").
    sync_running: bool,
    /// Whether sync progress goes to the log every second ("syncing" lines); off while the
    /// runtime draws a progress bar on a terminal instead.
    log_sync_progress: bool,
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
    /// What the node's tables hold now.
    pub memory: MemoryAccounting,
}

/// The node's own memory figures: how much each of its tables holds, each bounded by a named
/// limit in [`config`] (see INVARIANTS.md). Counts are entries unless they say bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct MemoryAccounting {
    /// Bytes handed to connection writers and not yet written, in all.
    pub queued_bytes_total: usize,
    /// …and for the peer with the most ([`MAX_QUEUED_BYTES_PER_PEER`]).
    pub queued_bytes_max_peer: usize,
    /// Items peers advertised to us, remembered, in all…
    pub inventory_from_peers_total: usize,
    /// …and for the peer with the most ([`MAX_INVENTORY_PER_PEER`]).
    pub inventory_from_peers_max_peer: usize,
    /// Items we advertised to peers, remembered, in all…
    pub inventory_to_peers_total: usize,
    /// …and for the peer with the most ([`MAX_INVENTORY_PER_PEER`]).
    pub inventory_to_peers_max_peer: usize,
    /// Items wanted and not yet requested.
    pub items_to_fetch: usize,
    /// Items requested and not yet received (with `items_to_fetch`, at most
    /// [`MAX_ITEMS_TO_FETCH`]).
    pub items_requested: usize,
    /// Entries of the fetch queue's indexes (per-peer views, closed peers' views, times).
    pub fetch_index_entries: usize,
    /// Items that failed recently ([`MAX_RECENTLY_FAILED`]).
    pub recently_failed: usize,
    /// Items waiting to be advertised.
    pub new_inventory: usize,
    /// Advertised ids received and not read yet, in all ([`MAX_INVENTORY_PER_PEER`] per peer).
    pub pending_inventory_total: usize,
    /// Items peers asked us for, waiting to be served, in all…
    pub serve_queue_total: usize,
    /// …and for the peer with the most ([`MAX_SERVE_QUEUE`]).
    pub serve_queue_max_peer: usize,
    /// Block ids offered by peers for sync and not yet requested, in all.
    pub sync_ids_queued: usize,
    /// Sync blocks requested and not yet received.
    pub sync_requests_in_flight: usize,
    /// Sync blocks received and not yet applied ([`MAX_SYNC_BLOCKS_TO_PREFETCH`])…
    pub sync_blocks_buffered: usize,
    /// …and their bytes ([`MAX_SYNC_BYTES_BUFFERED`]).
    pub sync_bytes_buffered: usize,
    /// Bytes of accepted items the application keeps in memory until its writer has made
    /// them durable (the relay store's overlay; past
    /// [`crate::app::relay_store::MAX_NOT_DURABLE_BYTES`] sync and fetching pause).
    pub not_durable_bytes: usize,
    /// Peer database records ([`crate::store::peer_db::MAX_PEER_RECORDS`]).
    pub peer_db_records: usize,
    /// Connections the node keeps state for, firewall probes included.
    pub peer_states: usize,
    /// Connections per list.
    pub connections: ConnectionCounts,
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
    /// The misbehaviour score of the peer's IP address (see [`bans`]).
    pub misbehaviour_score: u32,
}

/// Bans and violation counts, for the status API's `/bans` and `/metrics`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BanReport {
    /// Bans in force, by address.
    pub bans: Vec<Ban>,
    /// Violations seen since start, per class name.
    pub violations: BTreeMap<&'static str, u64>,
    /// Sockets closed at accept because their address is banned.
    pub refused_connections: u64,
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
            key,
            node_id,
            listen_endpoint: None,
            peers: BTreeMap::new(),
            key_exchanges: BTreeSet::new(),
            next_peer_id: 1,
            db,
            add_once: Vec::new(),
            seeds: Vec::new(),
            commands: VecDeque::new(),
            started_at: now,
            delegate,
            new_inventory: VecDeque::new(),
            new_inventory_set: HashSet::new(),
            next_advertise: i64::MAX,
            last_advertise: i64::MIN,
            advertise_waits_for_durable: false,
            fetch: fetch::FetchQueue::new(),
            next_fetch: i64::MAX,
            next_expire: i64::MAX,
            recently_failed: TimedSet::new(),
            inventory_backlog: std::collections::BTreeSet::new(),
            backlog_cursor: 0,
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
            next_handshake_check: i64::MAX,
            next_peer_list_refresh: t + PEER_LIST_REFRESH_US,
            next_seed_retry: t + SEED_RETRY_WHEN_ALONE_US,
            next_db_save: t + config.peer_db_save_interval_us,
            bandwidth: BandwidthMonitor::new(t),
            firewalled: FirewalledState::Unknown,
            public_endpoint: None,
            last_firewall_check: i64::MIN / 2,
            shutting_down: false,
            bans: BanTable::new(config.ban_duration_us),
            violations: [0; Violation::ALL.len()],
            refused_banned: 0,
            close_after_commands: Vec::new(),
            seed_warned_at: HashMap::new(),
            sync_running: false,
            log_sync_progress: true,
            config,
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

    /// Gives the application what to call when more of its work became durable: the runtime
    /// answers it with [`Node::on_durable`].
    pub fn set_durable_waker(&mut self, wake: Box<dyn Fn() + Send + Sync>) {
        self.delegate.set_durable_waker(wake);
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
        if self.commands.is_empty() {
            for (peer, now) in std::mem::take(&mut self.close_after_commands) {
                self.close_now(peer, now);
            }
        }
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
        self.save_bans();
    }

    // ----- connection events -----------------------------------------------------------------

    fn new_peer(&mut self, direction: Direction, endpoint: Endpoint, now: TimePoint) -> PeerId {
        let id = self.next_peer_id;
        self.next_peer_id += 1;
        self.peers
            .insert(id, PeerState::new(id, direction, endpoint, now));
        self.next_handshake_check = self
            .next_handshake_check
            .min(now.0.saturating_add(HANDSHAKE_INACTIVITY_TIMEOUT_US));
        id
    }

    /// A socket was accepted. `None` means too many connections are already handshaking, none
    /// of them still in the key exchange: close the socket at once.
    ///
    /// Sockets still in the key exchange never lock a new one out: when there are
    /// [`MAX_INBOUND_KEY_EXCHANGES`] of them, or the handshaking list is full, the oldest is
    /// closed ([`Command::Close`]) to make room.
    pub fn accept_inbound(&mut self, remote: Endpoint, now: TimePoint) -> Option<PeerId> {
        if self.shutting_down || !self.config.accept_incoming_connections {
            return None;
        }
        if self.bans.is_banned(remote.address.to_ipv4(), now) {
            // Closed before the key exchange: a banned address costs us no curve arithmetic.
            debug!(endpoint = %remote, "refusing socket: address banned");
            self.refused_banned += 1;
            return None;
        }
        let handshaking = self.connection_counts().handshaking;
        let full = handshaking >= self.config.max_connections + EXTRA_HANDSHAKING_CONNECTIONS;
        if full || self.key_exchanges.len() >= MAX_INBOUND_KEY_EXCHANGES {
            let Some(oldest) = self.key_exchanges.first().copied() else {
                warn!(endpoint = %remote, handshaking, "refusing socket: too many handshaking connections");
                return None;
            };
            if let Some(p) = self.peers.get_mut(&oldest) {
                debug!(endpoint = %p.remote_endpoint, "closing the oldest key exchange for a new socket");
                p.close_error = Some("Closed for a newer socket: key exchange unfinished".into());
            }
            self.close_now(oldest, now);
        }
        let peer = self.new_peer(Direction::Inbound, remote, now);
        self.key_exchanges.insert(peer);
        Some(peer)
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
        // The peer's key is its first message.
        p.last_message_at = now;
        p.established_at = Some(now);
        p.in_flight_bytes = 0;
        self.key_exchanges.remove(&peer);
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
        self.key_exchanges.remove(&peer);
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
        let endpoint = p.remote_endpoint;
        debug!(%endpoint, error, "connection attempt failed");
        let r = self.db.entry(endpoint);
        r.last_connection_disposition = Disposition::LastConnectionFailed;
        r.number_of_failed_connection_attempts =
            r.number_of_failed_connection_attempts.saturating_add(1);
        r.set_error(error, now);
        let failures = r.number_of_failed_connection_attempts;
        let retry_in_s = (seed_aware_next_attempt(r) - now.0).max(0) / SECOND_US;
        if self.seeds.contains(&endpoint) {
            self.warn_seed_unreachable(endpoint, error, failures, retry_in_s, now);
        }
        self.peers.remove(&peer);
        self.trigger_connect_loop(now);
    }

    /// Records why `peer`'s connection is ending, unless a cause is already known.
    fn note_leave(&mut self, peer: PeerId, reason: &str) {
        if let Some(p) = self.peers.get_mut(&peer)
            && p.leave_reason.is_none()
        {
            p.leave_reason = Some(reason.to_string());
        }
    }

    /// A seed could not be reached: WARN on the first failure, then at most once per
    /// [`SEED_WARN_INTERVAL_US`], whatever the retry schedule.
    fn warn_seed_unreachable(
        &mut self,
        endpoint: Endpoint,
        error: &str,
        failures: u32,
        retry_in_s: i64,
        now: TimePoint,
    ) {
        let due = self
            .seed_warned_at
            .get(&endpoint)
            .is_none_or(|at| now.0 - at.0 >= SEED_WARN_INTERVAL_US);
        if due {
            warn!(%endpoint, error, failures, retry_in_s, "cannot reach seed node");
            self.seed_warned_at.insert(endpoint, now);
        } else {
            debug!(%endpoint, error, failures, retry_in_s, "cannot reach seed node");
        }
    }

    /// `bytes` were read from `peer`'s socket, after which `in_flight` bytes of a message not
    /// yet complete are buffered (0 when the read ended on a message boundary). Report the
    /// messages the same read completed first ([`Node::on_message`]).
    ///
    /// Bytes are not activity in themselves: during the handshake they never count, and once
    /// active a message in flight keeps the peer alive only while it arrives at
    /// [`MIN_IN_FLIGHT_BYTES_PER_SEC`] or faster ([`PeerState::last_heard`]).
    pub fn on_bytes_received(
        &mut self,
        peer: PeerId,
        bytes: usize,
        in_flight: usize,
        now: TimePoint,
    ) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.last_received_at = now;
            p.bytes_received += bytes as u64;
            if in_flight > 0 && p.in_flight_bytes == 0 {
                p.in_flight_since = now;
            }
            p.in_flight_bytes = in_flight;
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
    /// Reported during the key exchange, it means the peer's key is not a curve point.
    pub fn on_protocol_error(&mut self, peer: PeerId, error: &str, now: TimePoint) {
        let Some(p) = self.peers.get(&peer) else {
            return;
        };
        warn!(endpoint = %p.remote_endpoint, error, "dropping peer: invalid data");
        self.note_leave(peer, &format!("protocol error: {error}"));
        let Some(p) = self.peers.get(&peer) else {
            return;
        };
        let exchanged = p.our_state != OurHelloState::NotSent;
        if !exchanged && p.direction == Direction::Outbound {
            if p.probe_for.is_some() {
                self.finish_probe(peer, FirewallCheckResultKind::Unreachable, now);
            } else {
                let ep = p.remote_endpoint;
                let r = self.db.entry(ep);
                r.number_of_failed_connection_attempts =
                    r.number_of_failed_connection_attempts.saturating_add(1);
                r.set_error(error, now);
            }
        }
        let violation = if exchanged {
            Violation::Undecodable
        } else {
            Violation::InvalidKeyExchange
        };
        self.misbehaved(peer, violation, now);
        self.close_now(peer, now);
    }

    /// `peer` did something an honest node never does: add the violation's weight to its
    /// address's score and, when that reaches the threshold, ban the address, close all its
    /// connections and save the ban list. The caller still handles the connection as the
    /// protocol says (reject, disconnect), which does nothing more once it is closed.
    pub fn misbehaved(&mut self, peer: PeerId, violation: Violation, now: TimePoint) {
        let Some(p) = self.peers.get(&peer) else {
            return;
        };
        let endpoint = p.remote_endpoint;
        let ip = endpoint.address.to_ipv4();
        self.violations[violation.index()] += 1;
        let Some(ban) = self.bans.record(ip, violation, now) else {
            let score = self.bans.score(ip, now);
            info!(%endpoint, violation = violation.name(), score, "peer misbehaved");
            return;
        };
        warn!(
            %endpoint,
            violation = violation.name(),
            score = ban.score,
            until = %ban.until,
            "banning the address"
        );
        self.note_leave(peer, &format!("banned: {}", violation.name()));
        let others: Vec<PeerId> = self
            .peers
            .values()
            .filter(|q| q.id != peer && q.remote_endpoint.address == endpoint.address)
            .map(|q| q.id)
            .collect();
        for id in others {
            self.close_now(id, now);
        }
        // The offender hears why first (the caller queues the protocol's rejection or
        // goodbye), then its socket is closed without waiting for it to close.
        self.close_after_commands.push((peer, now));
        self.save_bans();
    }

    fn save_bans(&mut self) {
        if let Some(bans) = self.bans.take_snapshot_if_dirty() {
            self.commands.push_back(Command::SaveBans(bans));
        }
    }

    /// Puts back the bans saved by a previous run (lapsed ones are dropped).
    pub fn restore_bans(&mut self, saved: Vec<Ban>, now: TimePoint) {
        self.bans.restore(saved, now);
    }

    /// Whether `ip` is banned at `now`.
    pub fn is_banned(&self, ip: Ipv4Addr, now: TimePoint) -> bool {
        self.bans.is_banned(ip, now)
    }

    /// Lifts the ban on `ip` (the operator's `DELETE /bans/{ip}`); false if there was none.
    pub fn unban(&mut self, ip: Ipv4Addr, now: TimePoint) -> bool {
        let lifted = self.bans.is_banned(ip, now) && self.bans.unban(ip);
        if lifted {
            info!(%ip, "ban lifted by the operator");
            self.save_bans();
            self.trigger_connect_loop(now);
        }
        lifted
    }

    /// Bans in force and violation counts.
    pub fn ban_report(&self, now: TimePoint) -> BanReport {
        BanReport {
            bans: self.bans.list(now),
            violations: Violation::ALL
                .iter()
                .map(|v| (v.name(), self.violations[v.index()]))
                .collect(),
            refused_connections: self.refused_banned,
        }
    }

    /// The socket of `peer` is closed.
    pub fn on_closed(&mut self, peer: PeerId, now: TimePoint) {
        self.key_exchanges.remove(&peer);
        let Some(p) = self.peers.remove(&peer) else {
            return;
        };
        debug!(endpoint = %p.remote_endpoint, list = p.list.name(), "connection closed");
        if p.was_active {
            let reason = p
                .leave_reason
                .as_deref()
                .unwrap_or("connection closed by the peer");
            info!(
                endpoint = %p.remote_endpoint,
                direction = %p.direction,
                peer,
                reason,
                "peer left"
            );
            if self.connection_counts().active == 0 && !self.shutting_down {
                info!("no active peers left");
            }
        }
        if let Some(ep) = p.remote_inbound_endpoint.filter(|e| e.port != 0) {
            if p.list == ConnectionList::Active {
                self.db.update(&ep, |r| r.last_seen_time = now);
            }
            if let Some(err) = &p.close_error {
                self.db.update(&ep, |r| r.set_error(err, now));
            }
        }
        // Its few requests (see MAX_ITEMS_PER_PEER_PER_PASS) go to others; its view of the
        // fetch queue is taken apart later, in bounded batches.
        for item in p.items_requested.keys() {
            self.requeue_item(*item, peer);
        }
        self.fetch.peer_closed(peer);
        self.inventory_backlog.remove(&peer);
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
            // A slow reader is not misbehaving (it may be on a slow link): closed, never scored.
            warn!(%endpoint, "send queue exceeded its limit; closing the connection");
            self.note_leave(peer, "send queue exceeded its limit");
            self.close_now(peer, now);
        }
    }

    /// Closes the socket without a goodbye (the reference's forcible close).
    fn close_now(&mut self, peer: PeerId, now: TimePoint) {
        self.key_exchanges.remove(&peer);
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
                r.set_error(reason, now);
            });
        }
        debug!(%endpoint, reason, "disconnecting");
        if p.leave_reason.is_none() {
            p.leave_reason = Some(reason.to_string());
        }
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
        // The message in flight, if any, is this one.
        p.in_flight_bytes = 0;
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
                    self.misbehaved(peer, Violation::MessageBeforeHello, now);
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
                    self.misbehaved(peer, Violation::MessageBeforeHello, now);
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
                    self.misbehaved(peer, Violation::MessageBeforeHello, now);
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
                self.on_blockchain_item_ids_inventory(peer, m, now);
                // The answer may leave the peer idle: it can be asked for items now.
                self.fetch_items(now);
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
        debug!(
            endpoint = %p.remote_endpoint,
            reason = %m.reason_for_closing,
            due_to_error = m.closing_due_to_error,
            "peer is closing the connection"
        );
        if p.leave_reason.is_none() {
            p.leave_reason = Some(format!("closed by the peer: {}", m.reason_for_closing));
        }
        self.close_now(peer, now);
    }

    // ----- loops -----------------------------------------------------------------------------

    /// The earliest time [`Node::handle_timeout`] has something to do.
    pub fn next_deadline(&self) -> TimePoint {
        TimePoint(
            [
                self.next_connect,
                self.next_terminate,
                self.next_handshake_check,
                self.next_peer_list_refresh,
                self.next_seed_retry,
                self.next_db_save,
                self.next_prune,
                self.next_fetch,
                self.next_expire,
                self.next_advertise,
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
        if t >= self.next_handshake_check {
            self.terminate_handshakes(now);
        }
        if self.shutting_down {
            // Only the goodbyes' timers run on: every other loop is over, so none of them may
            // keep the next deadline in the past.
            for next in [
                &mut self.next_fetch,
                &mut self.next_expire,
                &mut self.next_connect,
                &mut self.next_peer_list_refresh,
                &mut self.next_seed_retry,
                &mut self.next_db_save,
                &mut self.next_prune,
                &mut self.next_advertise,
            ] {
                *next = i64::MAX;
            }
            if t >= self.next_terminate {
                self.terminate_inactive_connections(now);
                self.next_terminate = t + TERMINATE_CHECK_INTERVAL_US;
            }
            return;
        }
        if t >= self.next_terminate {
            self.terminate_inactive_connections(now);
            self.next_expire = self.next_expire.min(t);
            self.fetch_items(now);
            self.process_sync_backlog(now);
            self.fetch_sync_items(now);
            if self.bans.expire(now, BAN_EXPIRY_BATCH) > 0 {
                self.save_bans();
            }
            self.next_terminate = t + TERMINATE_CHECK_INTERVAL_US;
        }
        if t >= self.next_expire {
            let more = self.expire_inventory(now);
            self.next_expire = if more { t } else { i64::MAX };
        }
        if t >= self.next_fetch {
            self.fetch_items(now);
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
            self.next_db_save = t + self.config.peer_db_save_interval_us;
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

    fn banned(&self, endpoint: &Endpoint, now: TimePoint) -> bool {
        self.bans.is_banned(endpoint.address.to_ipv4(), now)
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
            if !self.is_connected_to(&ep) && !self.is_own_endpoint(&ep) && !self.banned(&ep, now) {
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
                        && !self.banned(&r.endpoint, now)
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

    /// Drops handshaking connections that are due: no complete message either way for
    /// [`HANDSHAKE_INACTIVITY_TIMEOUT_US`] (bytes never count), or not active
    /// [`MAX_HANDSHAKE_DURATION_US`] after they began. Runs exactly when the first is due (see
    /// `next_handshake_check`), so a silent socket goes at 5 s, not up to a second later.
    fn terminate_handshakes(&mut self, now: TimePoint) {
        let t = now.0;
        let mut due = Vec::new();
        let mut next = i64::MAX;
        for p in self.peers.values() {
            if p.list != ConnectionList::Handshaking {
                continue;
            }
            let silent_at = p
                .handshake_activity()
                .0
                .saturating_add(HANDSHAKE_INACTIVITY_TIMEOUT_US);
            let capped_at = p.initiated_at.0.saturating_add(MAX_HANDSHAKE_DURATION_US);
            if t >= silent_at {
                due.push((
                    p.id,
                    format!(
                        "Terminating handshaking connection due to inactivity of {} seconds",
                        HANDSHAKE_INACTIVITY_TIMEOUT_US / SECOND_US
                    ),
                ));
            } else if t >= capped_at {
                due.push((
                    p.id,
                    format!(
                        "Terminating handshaking connection: not active after {} seconds",
                        MAX_HANDSHAKE_DURATION_US / SECOND_US
                    ),
                ));
            } else {
                next = next.min(silent_at.min(capped_at));
            }
        }
        self.next_handshake_check = next;
        for (id, text) in due {
            if let Some(p) = self.peers.get_mut(&id) {
                info!(
                    endpoint = %p.remote_endpoint,
                    key_exchange_done = !p.key_exchanging(),
                    bytes_received = p.bytes_received,
                    "{text}"
                );
                p.close_error = Some(text);
            }
            self.close_now(id, now);
        }
    }

    /// terminate_inactive_connections: drop handshakes that are due, keep active peers alive
    /// or disconnect them, and close connections stuck in closing.
    ///
    /// An active peer is heard from by its complete messages, and by a message still arriving
    /// only while it advances at [`MIN_IN_FLIGHT_BYTES_PER_SEC`]; silent for the inactivity
    /// window it is disconnected (forcibly when it is stuck mid-message: it could not answer
    /// our goodbye before finishing the message anyway). Request timeouts use the same clock.
    pub fn terminate_inactive_connections(&mut self, now: TimePoint) {
        self.terminate_handshakes(now);
        let t = now.0;
        let inactivity = self.config.active_inactivity_timeout_us();
        let keepalive = self.config.keepalive_after_us();
        let rate = MIN_IN_FLIGHT_BYTES_PER_SEC;
        let mut forcible = Vec::new();
        let mut gentle = Vec::new();
        let mut keepalives = Vec::new();
        for p in self.peers.values() {
            match p.list {
                // Handled by terminate_handshakes.
                ConnectionList::Handshaking => {}
                ConnectionList::Active => {
                    let silent = t - p.last_heard(rate).0;
                    let overdue =
                        |sent: TimePoint| t - p.request_clock(sent, rate).0 >= REQUEST_TIMEOUT_US;
                    let stalled = p.items_requested.values().any(|s| overdue(*s))
                        || p.sync
                            .ids_request
                            .as_ref()
                            .is_some_and(|(_, s)| overdue(*s))
                        || (!p.sync.requested.is_empty() && overdue(p.sync.last_item_received));
                    if stalled {
                        debug!(endpoint = %p.remote_endpoint, "request timed out; dropping the peer");
                        forcible.push((p.id, "request timed out".to_string()));
                    } else if silent >= inactivity && p.in_flight_bytes > 0 {
                        debug!(
                            endpoint = %p.remote_endpoint,
                            in_flight = p.in_flight_bytes,
                            "message in flight slower than {rate} bytes/s; dropping the peer"
                        );
                        forcible.push((
                            p.id,
                            format!("message in flight slower than {rate} bytes/s"),
                        ));
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
                        forcible.push((p.id, "closing timed out".to_string()));
                    }
                }
            }
        }
        for (id, reason) in forcible {
            self.note_leave(id, &reason);
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
            memory: self.accounting(),
        }
    }

    /// The node's memory figures. O(connections).
    pub fn accounting(&self) -> MemoryAccounting {
        let mut m = MemoryAccounting {
            items_to_fetch: self.fetch.queued(),
            items_requested: self.fetch.requested(),
            fetch_index_entries: self.fetch.index_entries(),
            recently_failed: self.recently_failed.len(),
            new_inventory: self.new_inventory.len(),
            sync_requests_in_flight: self.active_sync_requests.len(),
            sync_blocks_buffered: self.sync_received.len(),
            sync_bytes_buffered: self.sync_received_bytes,
            not_durable_bytes: self.delegate.not_durable_bytes(),
            peer_db_records: self.db.len(),
            peer_states: self.peers.len(),
            connections: self.connection_counts(),
            ..MemoryAccounting::default()
        };
        for p in self.peers.values() {
            m.queued_bytes_total += p.queued_bytes;
            m.queued_bytes_max_peer = m.queued_bytes_max_peer.max(p.queued_bytes);
            let to_us = p.inventory_advertised_to_us.len();
            m.inventory_from_peers_total += to_us;
            m.inventory_from_peers_max_peer = m.inventory_from_peers_max_peer.max(to_us);
            let to_peer = p.inventory_advertised_to_peer.len();
            m.inventory_to_peers_total += to_peer;
            m.inventory_to_peers_max_peer = m.inventory_to_peers_max_peer.max(to_peer);
            m.pending_inventory_total += p.pending_inventory.len();
            m.serve_queue_total += p.serve_queue.len();
            m.serve_queue_max_peer = m.serve_queue_max_peer.max(p.serve_queue.len());
            m.sync_ids_queued += p.sync.ids_to_get.len();
        }
        m
    }

    /// The status API's /peers.
    pub fn peer_infos(&self, now: TimePoint) -> Vec<PeerInfo> {
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
                misbehaviour_score: self.bans.score(p.remote_endpoint.address.to_ipv4(), now),
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

#[cfg(test)]
mod log_tests;
