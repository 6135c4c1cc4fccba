//! The node's settings and the protocol's named limits and timers.
//!
//! Every value that bounds memory or time is here, with the reference's value where it has one.

use crate::wire::types::{Endpoint, Sha256};

/// Microseconds in a second: the core counts time in µs since the epoch.
pub const SECOND_US: i64 = 1_000_000;

/// Connections the node tries to keep (GRAPHENE_NET_DEFAULT_DESIRED_CONNECTIONS).
pub const DEFAULT_DESIRED_CONNECTIONS: usize = 20;
/// Connections the node never exceeds (GRAPHENE_NET_DEFAULT_MAX_CONNECTIONS).
pub const DEFAULT_MAX_CONNECTIONS: usize = 200;
/// TCP connections still handshaking beyond `max_connections` that are accepted so they can be
/// told "not accepting connections" and handed addresses. Above it a new socket closes the
/// oldest inbound socket still in the key exchange, or, if there is none, is closed at once:
/// protects against a flood of silent sockets.
pub const EXTRA_HANDSHAKING_CONNECTIONS: usize = 64;
/// Base retry delay: a failed peer is retried after (failures + 1) × this.
pub const PEER_CONNECTION_RETRY_US: i64 = 30 * SECOND_US;
/// Failures added for a peer on another chain or that is ourselves (+120 × 30 s = 1 hour).
pub const GREATLY_DELAY_FAILURES: u32 = 120;
/// How often the connect loop runs when nothing wakes it.
pub const CONNECT_LOOP_INTERVAL_US: i64 = 10 * SECOND_US;
/// A handshaking connection with no complete message either way for this long is dropped
/// (the reference's rule). The peer's 33-byte key counts as its first message; bytes of a
/// message still arriving never count, so a peer trickling its key or its hello a byte at a
/// time is dropped as if it were silent.
pub const HANDSHAKE_INACTIVITY_TIMEOUT_US: i64 = 5 * SECOND_US;
/// A connection not active this long after its socket was accepted (or its dial began) is
/// dropped, whatever it sends. Protects handshaking slots against a peer that keeps a
/// handshake alive with a message every few seconds and never finishes it (the reference has
/// no such cap). An honest handshake is three or four round trips; 30 s leaves room for
/// several TCP retransmissions on a lossy link and is still 6 inactivity timeouts.
pub const MAX_HANDSHAKE_DURATION_US: i64 = 30 * SECOND_US;
/// Inbound sockets still in the key exchange (their 33-byte key not yet complete). A new
/// socket beyond it closes the oldest of them instead of being refused, so a flood of silent
/// or trickling sockets costs the node at most this many file descriptors and never locks
/// honest dialers out; an honest key exchange takes one round trip, so it is only evicted if
/// this many sockets arrive within that round trip.
pub const MAX_INBOUND_KEY_EXCHANGES: usize = 128;
/// The slowest a message in flight may arrive and still count as the peer being heard from
/// (and as progress on a request): each this-many bytes of it vouch for one second from its
/// first byte, never past its latest byte. A 2 MiB block at 16 KiB/s (128 kbit/s) takes 128 s
/// and keeps its sender; a trickle below the rate earns nothing, so the peer is dropped one
/// inactivity window after its last complete message. It also bounds how long one message
/// can hold a connection: `MAX_MESSAGE_SIZE` / this rate + the inactivity window.
pub const MIN_IN_FLIGHT_BYTES_PER_SEC: i64 = 16 * 1024;
/// A closing connection the peer has not closed after this long is closed by us.
pub const CLOSING_TIMEOUT_US: i64 = 20 * SECOND_US;
/// Active peers silent for this many block intervals are disconnected (keepalive at half).
pub const INACTIVITY_BLOCK_INTERVALS: i64 = 10;
/// A request unanswered for this long is dropped and rescheduled.
pub const REQUEST_TIMEOUT_US: i64 = 6 * SECOND_US;
/// How often the terminate-inactive-connections check runs.
pub const TERMINATE_CHECK_INTERVAL_US: i64 = SECOND_US;
/// How often every active peer is asked for addresses.
pub const PEER_LIST_REFRESH_US: i64 = 15 * 60 * SECOND_US;
/// A failed seed is retried after (failures + 1) × this…
pub const SEED_RETRY_BASE_US: i64 = 10 * SECOND_US;
/// …but never waits longer than this.
pub const SEED_MAX_RETRY_US: i64 = 60 * SECOND_US;
/// A seed that cannot be reached is reported at WARN on its first failure, then at most once
/// per this interval (with the failures since), not on every retry: a dead seed retried each
/// [`SEED_MAX_RETRY_US`] would otherwise fill the log.
pub const SEED_WARN_INTERVAL_US: i64 = 10 * 60 * SECOND_US;
/// Seeds are put back on the dial list this often while the node has no active peer…
pub const SEED_RETRY_WHEN_ALONE_US: i64 = 5 * 60 * SECOND_US;
/// …and this often otherwise.
pub const SEED_RETRY_US: i64 = 60 * 60 * SECOND_US;
/// At most one firewall self-check every 5 minutes.
pub const FIREWALL_CHECK_INTERVAL_US: i64 = 5 * 60 * SECOND_US;
/// Addresses taken from one address message (MAX_ADDRESSES_TO_HANDLE_AT_ONCE).
pub const MAX_ADDRESSES_TO_HANDLE_AT_ONCE: usize = 200;
/// Bytes queued for one peer before it is dropped (GRAPHENE_NET_MAXIMUM_QUEUED_MESSAGES_IN_BYTES).
pub const MAX_QUEUED_BYTES_PER_PEER: usize = 1024 * 1024;
/// How often a changed peer database is saved, unless configured otherwise.
pub const PEER_DB_SAVE_INTERVAL_US: i64 = 30 * SECOND_US;
/// Block interval assumed until the application says otherwise (GRAPHENE_DEFAULT_BLOCK_INTERVAL).
pub const DEFAULT_BLOCK_INTERVAL_SECS: i64 = 5;
/// Earliest core protocol version that understands firewall checks.
pub const FIREWALL_CHECK_MIN_PROTOCOL: u32 = 106;

/// The BitShares mainnet chain id, the default.
pub const BITSHARES_MAINNET_CHAIN_ID: &str =
    "4018d7844c78f6a6c41c6a552b898022310fc5dec06da467ee7905a8dad512c8";

/// Which peers we tell others about (`--p2p-advertise-peer-algorithm`).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum AdvertiseAlgorithm {
    /// Every active peer with a known listening endpoint.
    #[default]
    All,
    /// Nobody: address requests get an empty list.
    Nothing,
    /// Only these endpoints.
    List(Vec<Endpoint>),
    /// Everyone except these endpoints.
    ExcludeList(Vec<Endpoint>),
}

impl AdvertiseAlgorithm {
    /// Whether `endpoint` may be advertised.
    pub fn should_advertise(&self, endpoint: &Endpoint) -> bool {
        match self {
            AdvertiseAlgorithm::All => true,
            AdvertiseAlgorithm::Nothing => false,
            AdvertiseAlgorithm::List(l) => l.contains(endpoint),
            AdvertiseAlgorithm::ExcludeList(l) => !l.contains(endpoint),
        }
    }
}

/// What the node core needs to know about its configuration.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// The chain this node serves (`--chain-id`). The runtime builds the default application
    /// from it and refuses to start an application that serves another chain
    /// ([`crate::runtime::StartError::ChainMismatch`]); the node core itself takes the id from
    /// its [`crate::app::Delegate`], so the two never differ in a running node.
    pub chain_id: Sha256,
    pub user_agent: String,
    pub desired_connections: usize,
    pub max_connections: usize,
    pub accept_incoming_connections: bool,
    pub connect_to_new_peers: bool,
    /// The endpoint told to peers in hello as where we accept connections
    /// (`--p2p-inbound-endpoint`); an address of 0.0.0.0 keeps the connection's local address.
    /// `None`: the connection's local address and the listening port.
    pub inbound_endpoint: Option<Endpoint>,
    pub advertise: AdvertiseAlgorithm,
    /// Seconds between blocks on this chain; sets the active inactivity timeout.
    pub block_interval_secs: i64,
    /// How long an address stays banned once its misbehaviour score reaches
    /// [`BAN_THRESHOLD`]; 0 disables bans (scores are still kept and shown).
    pub ban_duration_us: i64,
    /// How often a changed peer database is saved.
    pub peer_db_save_interval_us: i64,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            chain_id: BITSHARES_MAINNET_CHAIN_ID.parse().unwrap_or_default(),
            user_agent: format!("grapevine {}", env!("CARGO_PKG_VERSION")),
            desired_connections: DEFAULT_DESIRED_CONNECTIONS,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            accept_incoming_connections: true,
            connect_to_new_peers: true,
            inbound_endpoint: None,
            advertise: AdvertiseAlgorithm::All,
            block_interval_secs: DEFAULT_BLOCK_INTERVAL_SECS,
            ban_duration_us: DEFAULT_BAN_DURATION_US,
            peer_db_save_interval_us: PEER_DB_SAVE_INTERVAL_US,
        }
    }
}

impl NodeConfig {
    /// Silence after which an active peer is disconnected.
    pub fn active_inactivity_timeout_us(&self) -> i64 {
        INACTIVITY_BLOCK_INTERVALS * self.block_interval_secs.max(1) * SECOND_US
    }

    /// Silence after which an active peer gets a keepalive.
    pub fn keepalive_after_us(&self) -> i64 {
        self.active_inactivity_timeout_us() / 2
    }
}

/// Items remembered per peer, each way (the reference's inventory limit, 120 180): bounds the
/// memory one peer's advertisements take.
pub const MAX_INVENTORY_PER_PEER: usize = 120_180;
/// A peer's advertisements stop being read for transactions at this many entries, leaving
/// room for blocks (the reference's 2 minutes × 1000 transactions a second).
pub const MAX_TRX_INVENTORY_PER_PEER: usize = 120_000;
/// Transactions fetched from peers are advertised in batches: at once when the node last
/// advertised at least this long (µs) ago, else when this long has passed since then, so an
/// idle node adds no latency and a busy one starts at most one advertisement per window. An
/// item still waiting for the application to make it durable
/// ([`crate::app::Delegate::poll_durable`]) is advertised when its commit completes
/// ([`crate::node::Node::on_durable`]). Blocks, broadcasts and our own timers advertise at
/// once (with whatever transactions are waiting), each item only once it is durable.
pub const ADVERTISE_BATCH_US: i64 = 5_000;

/// How long an advertisement is remembered (GRAPHENE_NET_MAX_INVENTORY_SIZE_IN_MINUTES).
pub const INVENTORY_MEMORY_US: i64 = 2 * 60 * SECOND_US;
/// Items asked of one peer per fetch pass in normal operation
/// (GRAPHENE_NET_MAX_ITEMS_PER_PEER_DURING_NORMAL_OPERATION). As in the reference, only a peer
/// with nothing in flight (no items, no sync blocks, no block ids) is asked, so this is also
/// the most items ever requested from one peer at once.
pub const MAX_ITEMS_PER_PEER_PER_PASS: usize = 1;
/// Times the application is asked whether it already has a queued item, in one fetch pass:
/// bounds the pass when many queued items arrived meanwhile by other ways (the rest are
/// checked in the next pass, scheduled at once).
pub const MAX_FETCH_CHECKS_PER_PASS: usize = 64;
/// Entries forgotten per turn by the timed tables (inventories, recently failed items,
/// unheard items to fetch, closed peers' fetch views), in all: when a flood's advertisements
/// all expire together, the work goes on turn after turn, between other peers' messages,
/// instead of holding the node for one long tick.
pub const MAX_EXPIRED_PER_TURN: usize = 500;
/// Items failed recently and remembered so they are not fetched again
/// ([`RECENTLY_FAILED_US`]); the oldest are forgotten beyond this.
pub const MAX_RECENTLY_FAILED: usize = 100_000;
/// Advertised ids the node reads from one peer in one turn. The rest of a larger
/// item_ids_inventory (one message may carry 100,000) waits for the peer's next turn, and the
/// runtime reads nothing more from that peer meanwhile: bounds how long one peer's message
/// holds up everyone else's.
pub const MAX_INVENTORY_IDS_PER_TURN: usize = 250;
/// Items served to one peer per event (a fetch request or a write finished): one peer's
/// request for thousands of small items is served as its queue drains, never in one turn.
pub const MAX_ITEMS_SERVED_PER_TURN: usize = 32;
/// Items waiting to be fetched or requested, in all (bounds memory against inventory floods
/// from many peers; one peer is bounded by its inventory).
pub const MAX_ITEMS_TO_FETCH: usize = 200_000;
/// A failed item is not fetched again for this long.
pub const RECENTLY_FAILED_US: i64 = 15 * 60 * SECOND_US;
/// Items a peer may have waiting to be served before it is dropped.
pub const MAX_SERVE_QUEUE: usize = 10_000;
/// Block ids per blockchain_item_ids_inventory (the delegate's get_block_ids limit).
pub const SYNC_ID_BATCH: usize = 2000;
/// Keep asking a peer for ids until this many are queued (GRAPHENE_NET_MIN_BLOCK_IDS_TO_PREFETCH).
pub const MIN_BLOCK_IDS_TO_PREFETCH: usize = 10_000;
/// Sync blocks in flight per peer (GRAPHENE_NET_MAX_BLOCKS_PER_PEER_DURING_SYNCING).
pub const MAX_SYNC_BLOCKS_PER_PEER: usize = 200;
/// Sync blocks received and waiting to be applied before fetching pauses
/// (MAX_SYNC_BLOCKS_TO_PREFETCH).
pub const MAX_SYNC_BLOCKS_TO_PREFETCH: usize = 2000;
/// Bytes of sync blocks received and waiting to be applied before fetching pauses: with
/// 2 MiB blocks the count limit alone would allow gigabytes.
pub const MAX_SYNC_BYTES_BUFFERED: usize = 128 * 1024 * 1024;
/// Endpoints waiting on the dial-once list (dial-backs and operator requests).
pub const MAX_ADD_ONCE: usize = 1000;
/// Sync blocks handed to the application in one batch (MAX_BLOCKS_TO_HANDLE_AT_ONCE).
pub const MAX_BLOCKS_TO_HANDLE_AT_ONCE: usize = 200;
/// How far past now an offered sync range may reach (GRAPHENE_NET_FUTURE_SYNC_BLOCKS_GRACE_PERIOD_SEC).
pub const FUTURE_SYNC_GRACE_US: i64 = 3600 * SECOND_US;
/// Firewall probe connections open at once, in all, and one per requesting peer.
pub const MAX_FIREWALL_PROBES: usize = 8;
/// How often expired transactions are pruned from the application.
pub const PRUNE_INTERVAL_US: i64 = 60 * SECOND_US;

// ----- misbehaviour and bans (see `node::bans`) ------------------------------------------------
//
// Each violation a peer commits adds its weight to the score of the peer's IP address; a score
// that reaches [`BAN_THRESHOLD`] bans the address for the configured ban time. Only things an
// honest node running the reference code never does carry a weight: timeouts, missing items,
// another chain, full nodes, closing and slow readers cost nothing. Scores decay, so rare
// accidents never add up to a ban.

/// Score at which an IP address is banned: protects the node against a peer that keeps
/// reconnecting to send what it is disconnected for.
pub const BAN_THRESHOLD: u32 = 100;
/// How long a ban lasts unless the operator says otherwise (`--ban-seconds`): 24 hours.
pub const DEFAULT_BAN_DURATION_US: i64 = 24 * 3600 * SECOND_US;
/// One point of misbehaviour score is forgiven per this much time (10 points an hour), so an
/// honest peer's rare mishap (a decoder disagreement, a race) never accumulates into a ban
/// while a peer repeating a violation is banned within a few connections.
pub const SCORE_DECAY_US_PER_POINT: i64 = 6 * 60 * SECOND_US;
/// Weight of bytes that are not a valid frame or message after the key exchange. Half the
/// threshold: one could be a decoder disagreement with a newer peer; a second is a pattern.
pub const WEIGHT_UNDECODABLE: u32 = 50;
/// Weight of a key exchange whose public key is not a valid secp256k1 point: no implementation
/// of the protocol sends one.
pub const WEIGHT_INVALID_KEY_EXCHANGE: u32 = 100;
/// Weight of a hello whose signature over the shared secret does not verify: forged or
/// replayed identity.
pub const WEIGHT_INVALID_HELLO_SIGNATURE: u32 = 100;
/// Weight of a second hello on one connection.
pub const WEIGHT_DUPLICATE_HELLO: u32 = 50;
/// Weight of a message that needs an accepted hello (item inventory, fetch requests) before it.
pub const WEIGHT_MESSAGE_BEFORE_HELLO: u32 = 50;
/// Weight of a trx or block body we never asked for. A quarter of the threshold: a request we
/// dropped (a timeout, a released sync request) can race with its answer.
pub const WEIGHT_UNREQUESTED_ITEM: u32 = 25;
/// Weight of each item inventory message that arrives after the peer's advertisements already
/// fill [`MAX_INVENTORY_PER_PEER`]. Small, because an honest peer's window can differ from ours
/// by a little; a flood sends many such messages and is banned quickly.
pub const WEIGHT_INVENTORY_FLOOD: u32 = 10;
/// Weight of fetch_items requests that push the peer's serve queue above [`MAX_SERVE_QUEUE`]:
/// the reference never has that many requests outstanding to one peer.
pub const WEIGHT_FETCH_FLOOD: u32 = 50;
/// Weight of a block the application rejects as invalid in a way that blames the sender (not
/// a block whose parent is missing, which is never blamed).
pub const WEIGHT_INVALID_BLOCK: u32 = 50;
/// Addresses whose score is remembered; beyond it the least recently scored is forgotten.
/// Bounds memory against violations from many addresses.
pub const MAX_SCORED_ADDRESSES: usize = 10_000;
/// Bans kept; beyond it the ban that would expire first is lifted. Bounds memory and the
/// size of `bans.json` against an attacker with many addresses.
pub const MAX_BANS: usize = 10_000;
/// Expired bans and fully decayed scores dropped per timer pass (work bounded per event).
pub const BAN_EXPIRY_BATCH: usize = 100;
