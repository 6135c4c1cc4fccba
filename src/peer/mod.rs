//! One connection's protocol state, as the node core sees it.
//!
//! A `PeerState` knows where the connection is in the handshake (both directions of it), what
//! the peer told us in its hello, what we expect from it next, its clock offset and round-trip
//! delay, and its traffic. It knows nothing of other peers or sockets: the node core decides
//! what to do with it.

mod timed;

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};

use crate::wire::message::{HelloMessage, ItemId};
use crate::wire::types::{BlockId, Direction, Endpoint, FirewalledState, NodeId, TimePoint};
use crate::wire::variant::VariantObject;

pub use timed::TimedSet;

/// The node's handle for a connection; never reused within a process.
pub type PeerId = u64;

/// Which connection list a peer is in: exactly one at any time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConnectionList {
    Handshaking,
    Active,
    Closing,
}

impl ConnectionList {
    /// The status API's name for it.
    pub fn name(self) -> &'static str {
        match self {
            ConnectionList::Handshaking => "handshaking",
            ConnectionList::Active => "active",
            ConnectionList::Closing => "closing",
        }
    }
}

/// How the peer answered our hello.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OurHelloState {
    /// Key exchange not finished; no hello sent yet.
    NotSent,
    /// Hello sent, no answer yet.
    Sent,
    Accepted,
    Rejected,
}

/// How we answered the peer's hello.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TheirHelloState {
    /// Their hello has not arrived.
    Waiting,
    Accepted,
    Rejected,
}

/// What the peer said about itself in its hello.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerHello {
    pub user_agent: String,
    pub core_protocol_version: u32,
    pub inbound_endpoint: Endpoint,
    pub outbound_port: u16,
    pub node_public_key: NodeId,
    pub user_data: VariantObject,
}

impl From<&HelloMessage> for PeerHello {
    fn from(h: &HelloMessage) -> Self {
        Self {
            user_agent: h.user_agent.clone(),
            core_protocol_version: h.core_protocol_version,
            inbound_endpoint: Endpoint {
                address: h.inbound_address,
                port: h.inbound_port,
            },
            outbound_port: h.outbound_port,
            node_public_key: h.node_public_key,
            user_data: h.user_data.clone(),
        }
    }
}

/// A firewall check this connection is involved in (see the node's firewall module).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FirewallCheck {
    /// The node whose reachability is tested.
    pub expected_node_id: NodeId,
    pub endpoint_to_test: Endpoint,
    /// Helpers already asked.
    pub nodes_already_tested: BTreeSet<NodeId>,
    /// Who asked; `None` for our own self-check.
    pub requesting_peer: Option<NodeId>,
}

/// Blockchain sync with one peer.
#[derive(Clone, Debug, Default)]
pub struct SyncState {
    /// We still need blocks this peer has.
    pub we_need_sync_items: bool,
    /// The peer still needs blocks from us (we do not advertise inventory to it meanwhile).
    pub peer_needs_sync_items: bool,
    /// Block ids the peer offered that we have not fetched, in chain order.
    pub ids_to_get: VecDeque<BlockId>,
    /// The same ids, for fast membership tests.
    pub ids_to_get_set: HashSet<BlockId>,
    /// Sync blocks requested from this peer and when.
    pub requested: HashMap<BlockId, TimePoint>,
    /// The synopsis of our outstanding fetch_blockchain_item_ids, and when we sent it.
    pub ids_request: Option<(Vec<BlockId>, TimePoint)>,
    /// Ids the peer says follow the last one it sent.
    pub remaining: u32,
    /// The last id the peer offered.
    pub last_offered: Option<BlockId>,
    /// When the last sync block arrived from it.
    pub last_item_received: TimePoint,
}

/// One connection.
#[derive(Clone, Debug)]
pub struct PeerState {
    pub id: PeerId,
    pub direction: Direction,
    /// The socket's remote endpoint.
    pub remote_endpoint: Endpoint,
    /// Our side of the socket, once connected.
    pub local_endpoint: Option<Endpoint>,
    pub list: ConnectionList,
    pub our_state: OurHelloState,
    pub their_state: TheirHelloState,
    pub hello: Option<PeerHello>,
    /// The id the peer goes by (from hello's user_data, else its public key).
    pub node_id: Option<NodeId>,
    /// Where the peer can be dialled, as far as we know.
    pub remote_inbound_endpoint: Option<Endpoint>,
    /// Other endpoints proven to reach this same node (dial-back).
    pub additional_inbound_endpoints: BTreeSet<Endpoint>,
    /// Endpoints an inbound peer may listen on, to be dialled back.
    pub potential_inbound_endpoints: Vec<Endpoint>,
    pub firewalled: FirewalledState,
    pub expecting_address_message: bool,
    pub we_requested_close: bool,
    pub they_requested_close: bool,
    /// When the connection started (µs since epoch).
    pub initiated_at: TimePoint,
    pub last_received_at: TimePoint,
    pub last_sent_at: TimePoint,
    pub closing_since: Option<TimePoint>,
    pub last_keepalive_at: TimePoint,
    pub clock_offset_us: i64,
    pub round_trip_delay_us: i64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Bytes handed to the socket writer and not yet written.
    pub queued_bytes: usize,
    /// Set when the handshake timed out, recorded in the peer database on close.
    pub close_error: Option<String>,
    /// Why the connection is ending, as the operator reads it in the "peer left" line: the
    /// first cause noted wins (our goodbye's reason, theirs, a timeout, a protocol error, a ban).
    pub leave_reason: Option<String>,
    /// Whether the peer ever reached the active list (only those get a "peer left" line).
    pub was_active: bool,
    pub firewall_check: Option<FirewallCheck>,
    /// A test connection for someone else's firewall check: no hello, closed after the key
    /// exchange.
    pub probe_for: Option<FirewallCheck>,
    /// Items the peer told us it has, and when (forgotten after 2 minutes).
    pub inventory_advertised_to_us: TimedSet<ItemId>,
    /// Items we told the peer about, and when (forgotten after 2 minutes).
    pub inventory_advertised_to_peer: TimedSet<ItemId>,
    /// Items (normal operation) requested from the peer, and when: at most
    /// `MAX_ITEMS_PER_PEER_PER_PASS`, since only a peer with nothing in flight is asked.
    pub items_requested: HashMap<ItemId, TimePoint>,
    /// Items the peer asked us for, served as its send queue drains.
    pub serve_queue: VecDeque<ItemId>,
    /// Advertised ids not read yet (the node reads a bounded number per turn).
    pub pending_inventory: VecDeque<ItemId>,
    pub sync: SyncState,
    /// When the last whole message arrived (the peer's key counts as its first).
    pub last_message_at: TimePoint,
    /// When the key exchange finished; `None` while it is under way.
    pub established_at: Option<TimePoint>,
    /// Bytes of the message still arriving (0 between messages), as the runtime reports them.
    pub in_flight_bytes: usize,
    /// When the first byte of the message still arriving came.
    pub in_flight_since: TimePoint,
}

impl PeerState {
    /// A new connection, handshaking.
    pub fn new(
        id: PeerId,
        direction: Direction,
        remote_endpoint: Endpoint,
        now: TimePoint,
    ) -> Self {
        Self {
            id,
            direction,
            remote_endpoint,
            local_endpoint: None,
            list: ConnectionList::Handshaking,
            our_state: OurHelloState::NotSent,
            their_state: TheirHelloState::Waiting,
            hello: None,
            node_id: None,
            remote_inbound_endpoint: None,
            additional_inbound_endpoints: BTreeSet::new(),
            potential_inbound_endpoints: Vec::new(),
            firewalled: FirewalledState::Unknown,
            expecting_address_message: false,
            we_requested_close: false,
            they_requested_close: false,
            initiated_at: now,
            last_received_at: TimePoint(0),
            last_sent_at: TimePoint(0),
            closing_since: None,
            last_keepalive_at: TimePoint(0),
            clock_offset_us: 0,
            round_trip_delay_us: 0,
            bytes_sent: 0,
            bytes_received: 0,
            queued_bytes: 0,
            close_error: None,
            leave_reason: None,
            was_active: false,
            firewall_check: None,
            probe_for: None,
            inventory_advertised_to_us: TimedSet::new(),
            inventory_advertised_to_peer: TimedSet::new(),
            items_requested: HashMap::new(),
            serve_queue: VecDeque::new(),
            pending_inventory: VecDeque::new(),
            sync: SyncState {
                we_need_sync_items: true,
                peer_needs_sync_items: true,
                ..SyncState::default()
            },
            last_message_at: TimePoint(0),
            established_at: None,
            in_flight_bytes: 0,
            in_flight_since: TimePoint(0),
        }
    }

    /// The last sign of life in the handshake: the start of the connection, or the last
    /// complete message either way (the peer's key counts as one). Bytes alone are not.
    pub fn handshake_activity(&self) -> TimePoint {
        self.initiated_at
            .max(self.last_message_at)
            .max(self.last_sent_at)
    }

    /// Whether the key exchange is still under way.
    pub fn key_exchanging(&self) -> bool {
        self.established_at.is_none()
    }

    /// How far the message still arriving vouches for the peer: every `min_rate` bytes of it
    /// count for one second from its first byte, never past its latest byte. A trickle below
    /// `min_rate` earns (almost) nothing. `TimePoint(0)` when no message is in flight.
    pub fn in_flight_progress(&self, min_rate: i64) -> TimePoint {
        if self.in_flight_bytes == 0 {
            return TimePoint(0);
        }
        let bytes = i64::try_from(self.in_flight_bytes).unwrap_or(i64::MAX);
        let earned = bytes.saturating_mul(1_000_000) / min_rate.max(1);
        TimePoint(
            self.in_flight_since
                .0
                .saturating_add(earned)
                .min(self.last_received_at.0),
        )
    }

    /// The most recent time we heard from the peer: its last complete message, or how far a
    /// message still arriving at `min_rate` bytes a second or faster vouches for it; the start
    /// of the connection at the earliest.
    pub fn last_heard(&self, min_rate: i64) -> TimePoint {
        self.initiated_at
            .max(self.last_message_at)
            .max(self.in_flight_progress(min_rate))
    }

    /// Whether this connection reaches `endpoint` (the reference's get_connection_for_endpoint).
    pub fn reaches(&self, endpoint: &Endpoint) -> bool {
        // An active inbound peer's claimed endpoint is not proof that it listens there: only a
        // successful dial-back (additional_inbound_endpoints) is, as in the reference.
        let by_socket = match self.list {
            ConnectionList::Active => self.direction == Direction::Outbound,
            _ => true,
        };
        (by_socket && self.remote_endpoint == *endpoint)
            || self.additional_inbound_endpoints.contains(endpoint)
    }

    /// The start of the current silence for a request sent at `sent`: a message still arriving
    /// at `min_rate` bytes a second or faster counts as an answer in progress; a slower
    /// trickle does not.
    pub fn request_clock(&self, sent: TimePoint, min_rate: i64) -> TimePoint {
        sent.max(self.in_flight_progress(min_rate))
    }

    /// The peer's protocol version, 0 before its hello.
    pub fn protocol_version(&self) -> u32 {
        self.hello.as_ref().map_or(0, |h| h.core_protocol_version)
    }
}
