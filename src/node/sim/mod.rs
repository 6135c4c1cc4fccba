//! A deterministic in-memory network of node cores on a virtual clock.
//!
//! The same sans-IO [`Node`] the runtime drives runs here under a simulated runtime: links carry
//! real encoded messages (every message is encoded on the way and decoded on arrival, so the
//! codec is exercised too), dials reach whichever simulated node listens on the endpoint, and
//! time moves only from one event to the next. A seed fixes everything random: node keys,
//! connection secrets, latencies, losses, and (in [`chaos`]) the whole scenario, so the same seed
//! gives the same run, message for message ([`SimNet::trace_hash`]).
//!
//! # Driving it
//! - [`SimNet::add_node`] starts a node; [`SimNet::kill`] and [`SimNet::restart`] end a node's
//!   process and start it again from what it persisted (its key, the peer database it last
//!   asked to save, its store on its [`SimDisk`]).
//! - [`SimNet::advance`] and [`SimNet::run_until`] move the clock, jumping from one event
//!   (a message arriving, a dial completing, a close being seen) or node deadline
//!   ([`Node::next_deadline`]) to the next; [`SimNet::pump`] runs what is due now.
//! - Code that calls a node's methods directly (`net.nodes[i].add_node(..)`) calls
//!   [`SimNet::touch`] after it, or goes through [`SimNet::with_node`], so the node's commands
//!   run and its new deadline is known. [`SimNet::pump`] and [`SimNet::advance`] touch every
//!   node first, so small tests need not care.
//!
//! Links behave as [`LinkModel`] says (see `links` for the model of latency, bandwidth, loss
//! and resets); [`SimNet::new`] uses instant, perfect links. Partitions
//! ([`SimNet::set_partition`]) break the connections between their sides and make dials across
//! them time out. Hostile nodes ([`Hostility`]) are ordinary cores whose traffic the simulator
//! twists the way a row of the hostile-peer table says.

pub mod chaos;
mod disk;
mod hostile;
mod links;
mod rng;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::app::commits::CommitQueue;
use crate::app::relay_store::RelayStore;
use crate::crypto::NodeKey;
use crate::peer::PeerId;
use crate::store::peer_db::{PeerDatabase, PeerRecord};
use crate::wire::Message;
use crate::wire::types::{Endpoint, NodeId, TimePoint};

use super::{Command, Node, NodeConfig};

pub use disk::{DiskHandle, SimDisk};
pub use hostile::Hostility;
pub use links::{
    CONNECT_TIMEOUT_US, ConnId, LISTEN_PORT, LinkModel, listen_endpoint, node_ip, node_of_ip,
};
pub use rng::SimRng;

use links::{Conn, Payload};

/// The virtual time every simulation starts at (November 2023, µs since the epoch).
pub const SIM_START_US: i64 = 1_700_000_000_000_000;
/// A node whose deadline does not move past the time it was run at is run again this much
/// later, rather than at the same instant forever.
const STUCK_DEADLINE_RETRY_US: i64 = 1_000;
/// How long a simulated store's durable commit takes: the window in which a kill loses what a
/// node accepted but has not advertised.
pub const SIM_COMMIT_US: i64 = 1_000;

/// One message put on a simulated link.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// When it was sent.
    pub at: TimePoint,
    pub from: usize,
    pub to: usize,
    pub message: Message,
}

/// Watches a run from inside: called as messages are delivered and after every event a node
/// handled. The default methods do nothing.
pub trait Observer {
    /// `message` is about to be handed to node `to`.
    fn on_delivery(&mut self, _at: TimePoint, _from: usize, _to: usize, _message: &Message) {}
    /// Node `i` just handled an event or a timeout, and ran the commands it gave.
    fn after_event(&mut self, _at: TimePoint, _i: usize, _node: &Node) {}
    /// Node `i` closes its connection `peer` (the state is the one it closes with).
    fn on_close(&mut self, _at: TimePoint, _i: usize, _peer: &crate::peer::PeerState) {}
}

impl Observer for () {}

/// What the simulator keeps about a node beyond its core: what survives a restart.
struct SimNode {
    config: NodeConfig,
    key: [u8; 32],
    disk: SimDisk,
    alive: bool,
    incarnation: u32,
    hostility: Option<Hostility>,
    /// The running incarnation's store commits (none for a node with another application).
    commits: Option<Arc<CommitQueue>>,
    /// A [`Event::Durable`] is due for this node.
    commit_due: bool,
}

/// Something due at a point of virtual time.
#[derive(Debug)]
enum Event {
    /// A dial reaches the listener.
    Syn(ConnId),
    /// A dial fails at the dialler.
    DialFailed(ConnId, &'static str),
    /// One end finished the key exchange.
    Established(ConnId, usize),
    /// Bytes left one end's socket.
    Sent(ConnId, usize, usize),
    /// A message (or garbage) of a size arrives at one end.
    Arrive(ConnId, usize, Payload, usize),
    /// One end sees the connection closed.
    Gone(ConnId, usize),
    /// A node's store finishes the commit of what it had accepted (incarnation).
    Durable(usize, u32),
}

/// A simulated network.
pub struct SimNet<O: Observer = ()> {
    /// How long a store's durable commit takes ([`SIM_COMMIT_US`] unless set; 0 for
    /// [`SimNet::new`]).
    pub commit_latency_us: i64,
    /// The node cores, by index. A killed node's core stays here, idle, until its restart
    /// replaces it.
    pub nodes: Vec<Node>,
    pub now: TimePoint,
    /// Every message put on a link, in order (when `record_trace`).
    pub trace: Vec<Delivery>,
    /// Keep [`SimNet::trace`] (large networks turn it off; the hash is always kept).
    pub record_trace: bool,
    /// The last peer database each node asked to save.
    pub saved: BTreeMap<usize, Vec<PeerRecord>>,
    /// The last ban list each node asked to save.
    pub saved_bans: BTreeMap<usize, Vec<super::bans::Ban>>,
    /// Nodes whose sockets accept but never answer (to test timeouts).
    pub mute: Vec<usize>,
    /// Nodes that are hung: they receive nothing and run no timers.
    pub frozen: Vec<usize>,
    /// How links behave.
    pub links: LinkModel,
    /// Decode every message on arrival from its encoding (on by default; large runs save the
    /// time, the encoding is still made, measured and hashed).
    pub decode_on_arrival: bool,
    /// Watches the run.
    pub observer: O,
    meta: Vec<SimNode>,
    listening: HashMap<Endpoint, usize>,
    conns: BTreeMap<ConnId, Conn>,
    by_peer: BTreeMap<(usize, PeerId), ConnId>,
    next_conn: ConnId,
    next_port: u16,
    events: BTreeMap<(i64, u64), Event>,
    next_seq: u64,
    /// Each node's deadline as last pushed on `deadlines` (`i64::MAX`: none).
    deadline_of: Vec<i64>,
    deadlines: BinaryHeap<Reverse<(i64, usize)>>,
    rng: SimRng,
    seed: u64,
    /// Each node's side while partitioned.
    partition: Option<Vec<u32>>,
    hasher: Sha256,
    delivered: u64,
    delivered_by_type: BTreeMap<u32, u64>,
}

/// A transaction the relay store accepts: a header whose reference fields carry `nonce` (so
/// each is distinct), expiring at `expiration` (seconds), with no operations.
pub fn make_trx(nonce: u64, expiration: u32) -> Vec<u8> {
    let mut data = Vec::with_capacity(13);
    data.extend_from_slice(&nonce.to_le_bytes()[..6]); // ref_block_num, ref_block_prefix
    data.extend_from_slice(&expiration.to_le_bytes());
    data.extend_from_slice(&[0, 0, 0]); // operations, extensions, signatures
    data
}

/// A node id from a small number, for tests.
pub fn test_node_id(n: u8) -> NodeId {
    let mut id = [n; 33];
    id[0] = 2;
    NodeId(id)
}

impl SimNet<()> {
    /// An empty network with instant links and instant disks (commits complete at the
    /// instant they are queued, after what else is due then), seed 0.
    pub fn new() -> Self {
        let mut net = Self::with_observer(0, LinkModel::instant(), ());
        net.commit_latency_us = 0;
        net
    }

    /// An empty network whose randomness comes from `seed`.
    pub fn with_seed(seed: u64, links: LinkModel) -> Self {
        Self::with_observer(seed, links, ())
    }
}

impl Default for SimNet<()> {
    fn default() -> Self {
        Self::new()
    }
}

impl<O: Observer> SimNet<O> {
    /// An empty network watched by `observer`.
    pub fn with_observer(seed: u64, links: LinkModel, observer: O) -> Self {
        Self {
            nodes: Vec::new(),
            now: TimePoint(SIM_START_US),
            trace: Vec::new(),
            record_trace: true,
            saved: BTreeMap::new(),
            saved_bans: BTreeMap::new(),
            mute: Vec::new(),
            frozen: Vec::new(),
            links,
            decode_on_arrival: true,
            observer,
            meta: Vec::new(),
            listening: HashMap::new(),
            conns: BTreeMap::new(),
            by_peer: BTreeMap::new(),
            next_conn: 1,
            next_port: links::FIRST_EPHEMERAL_PORT,
            events: BTreeMap::new(),
            next_seq: 0,
            deadline_of: Vec::new(),
            deadlines: BinaryHeap::new(),
            rng: SimRng::new(seed),
            seed,
            partition: None,
            hasher: Sha256::new(),
            delivered: 0,
            delivered_by_type: BTreeMap::new(),
            commit_latency_us: SIM_COMMIT_US,
        }
    }

    /// The seed of this run.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The network's random source (for scenarios that want their draws in the same stream).
    pub fn rng(&mut self) -> &mut SimRng {
        &mut self.rng
    }

    /// A node id drawn from the run's seed.
    pub fn random_node_id(&mut self) -> NodeId {
        let mut id = self.rng.bytes::<33>();
        id[0] = 2;
        NodeId(id)
    }

    // ----- nodes ------------------------------------------------------------------------------

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
        let i = self.nodes.len();
        let key = loop {
            let bytes = self.rng.bytes::<32>();
            if NodeKey::from_bytes(&bytes).is_ok() {
                break bytes;
            }
        };
        let disk = SimDisk::new();
        let (node, commits) = self.start_node(i, &config, key, &disk, node_id, db);
        self.listening.insert(listen_endpoint(i), i);
        self.nodes.push(node);
        self.meta.push(SimNode {
            config,
            key,
            disk,
            alive: true,
            incarnation: 0,
            hostility: None,
            commits: Some(commits),
            commit_due: false,
        });
        self.deadline_of.push(i64::MAX);
        self.touch(i);
        i
    }

    /// Adds a node with a given application (benchmarks that leave the store out). A restart
    /// of such a node gets a relay store on its simulated disk instead.
    pub fn add_node_with_delegate(
        &mut self,
        config: NodeConfig,
        node_id: NodeId,
        db: PeerDatabase,
        delegate: Box<dyn crate::app::Delegate>,
    ) -> usize {
        let i = self.add_node_with_db(config.clone(), node_id, db);
        let key =
            NodeKey::from_bytes(&self.meta[i].key).unwrap_or_else(|e| panic!("a checked key: {e}"));
        let db = self.nodes[i].peer_db().clone();
        let mut node = Node::new(config, key, node_id, db, delegate, self.now);
        node.set_listen_endpoint(listen_endpoint(i));
        self.nodes[i] = node;
        self.meta[i].commits = None;
        self.touch(i);
        i
    }

    /// In debug builds, panics if any node breaks one of its invariants
    /// ([`Node::check_invariants`]); the network checks after every command it carries out.
    pub fn check_invariants(&self) {
        for i in 0..self.nodes.len() {
            self.check_node(i);
        }
    }

    fn check_node(&self, i: usize) {
        if cfg!(debug_assertions)
            && let Err(violation) = self.nodes[i].check_invariants()
        {
            panic!("simulated node {i} broke an invariant: {violation}");
        }
    }

    fn start_node(
        &self,
        i: usize,
        config: &NodeConfig,
        key: [u8; 32],
        disk: &SimDisk,
        node_id: NodeId,
        db: PeerDatabase,
    ) -> (Node, Arc<CommitQueue>) {
        // Commits run as timed events (`commit_latency_us` after the store accepted the work),
        // so a kill can fall between acceptance and durability.
        let store = RelayStore::with_backend_deferred(disk.attach(), config.chain_id)
            .unwrap_or_else(|e| panic!("a simulated node's store opens: {e}"));
        let commits = store.commit_queue();
        let key = NodeKey::from_bytes(&key).unwrap_or_else(|e| panic!("a checked key: {e}"));
        let mut node = Node::new(config.clone(), key, node_id, db, Box::new(store), self.now);
        node.set_listen_endpoint(listen_endpoint(i));
        (node, commits)
    }

    /// Node `i`'s store finished a commit: what it accepted is on the disk, and the node hears.
    fn on_durable(&mut self, i: usize, incarnation: u32) {
        let Some(m) = self.meta.get_mut(i) else {
            return;
        };
        if !m.alive || m.incarnation != incarnation {
            return;
        }
        m.commit_due = false;
        if let Some(c) = &m.commits
            && let Err(e) = c.run()
        {
            panic!("simulated node {i} cannot commit: {e}");
        }
        // Even a frozen node hears: its hang is in the network and timers, not its disk.
        let now = self.now;
        self.nodes[i].on_durable(now);
        self.touch(i);
    }

    /// Kills node `i`'s process: its connections reset, the writes it would still make are lost,
    /// and it does nothing until [`SimNet::restart`].
    pub fn kill(&mut self, i: usize) {
        if !self.is_alive(i) {
            return;
        }
        self.meta[i].alive = false;
        self.meta[i].disk.crash();
        self.drop_connections_of(i);
        self.deadline_of[i] = i64::MAX;
    }

    /// Starts node `i` again from what it persisted: its key, the peer database it last asked to
    /// save, its store. `node_id` is the new process's id (the reference draws one per start).
    pub fn restart(&mut self, i: usize, node_id: NodeId) {
        if self.meta.get(i).is_none_or(|m| m.alive) {
            return;
        }
        let records = self.saved.get(&i).cloned().unwrap_or_default();
        let db = PeerDatabase::from_records(records);
        let m = &self.meta[i];
        let (node, commits) = self.start_node(i, &m.config, m.key, &m.disk, node_id, db);
        self.nodes[i] = node;
        self.meta[i].commits = Some(commits);
        self.meta[i].commit_due = false;
        let bans = self.saved_bans.get(&i).cloned().unwrap_or_default();
        let now = self.now;
        self.nodes[i].restore_bans(bans, now);
        let m = &mut self.meta[i];
        m.alive = true;
        m.incarnation += 1;
        self.touch(i);
    }

    /// Whether node `i`'s process is running.
    pub fn is_alive(&self, i: usize) -> bool {
        self.meta.get(i).is_some_and(|m| m.alive)
    }

    /// How many times node `i` was restarted.
    pub fn incarnation(&self, i: usize) -> u32 {
        self.meta.get(i).map_or(0, |m| m.incarnation)
    }

    /// Node `i`'s disk.
    pub fn disk(&self, i: usize) -> &SimDisk {
        &self.meta[i].disk
    }

    /// Runs `f` on node `i` at the current time, then the commands it gave.
    pub fn with_node<R>(&mut self, i: usize, f: impl FnOnce(&mut Node, TimePoint) -> R) -> R {
        let now = self.now;
        let r = f(&mut self.nodes[i], now);
        self.touch(i);
        r
    }

    // ----- partitions -------------------------------------------------------------------------

    /// Splits the network: `side[i]` is node `i`'s side (nodes beyond the list are on side 0).
    /// Connections across break now; dials across time out until [`SimNet::heal`].
    pub fn set_partition(&mut self, side: Vec<u32>) {
        self.partition = Some(side);
        self.break_partitioned();
    }

    /// Ends the partition.
    pub fn heal(&mut self) {
        self.partition = None;
    }

    // ----- the clock --------------------------------------------------------------------------

    fn schedule(&mut self, at: i64, event: Event) {
        let at = at.max(self.now.0);
        self.events.insert((at, self.next_seq), event);
        self.next_seq += 1;
    }

    fn runnable(&self, i: usize) -> bool {
        self.meta[i].alive && !self.frozen.contains(&i)
    }

    /// Runs node `i`'s commands, then notes its next deadline. Call it after calling a node's
    /// methods directly.
    pub fn touch(&mut self, i: usize) {
        loop {
            while let Some(cmd) = self.nodes[i].poll_command() {
                self.execute(i, cmd);
                self.check_node(i);
            }
            // A long advertisement is read in bounded turns, as the runtime gives them.
            if self.runnable(i) && !self.nodes[i].backlogged_peers().is_empty() {
                let now = self.now;
                self.nodes[i].work_backlog(now);
                continue;
            }
            break;
        }
        // Work the store accepted is committed a moment later.
        let m = &mut self.meta[i];
        if m.alive && !m.commit_due && m.commits.as_ref().is_some_and(|c| c.has_pending()) {
            m.commit_due = true;
            let (at, incarnation) = (self.now.0 + self.commit_latency_us, m.incarnation);
            self.schedule(at, Event::Durable(i, incarnation));
        }
        let d = if self.runnable(i) {
            self.nodes[i].next_deadline().0
        } else {
            i64::MAX
        };
        if d != self.deadline_of[i] {
            self.deadline_of[i] = d;
            if d != i64::MAX {
                self.deadlines.push(Reverse((d, i)));
            }
        }
        let now = self.now;
        self.observer.after_event(now, i, &self.nodes[i]);
    }

    fn touch_all(&mut self) {
        for i in 0..self.nodes.len() {
            self.touch(i);
        }
    }

    /// The earliest valid node deadline, dropping stale heap entries.
    fn peek_deadline(&mut self) -> Option<(i64, usize)> {
        while let Some(&Reverse((t, i))) = self.deadlines.peek() {
            if self.deadline_of[i] == t && self.runnable(i) {
                return Some((t, i));
            }
            self.deadlines.pop();
        }
        None
    }

    /// Runs every event and deadline up to `end` (timers only when `timers`).
    fn run(&mut self, end: i64, timers: bool) {
        loop {
            let event_at = self.events.first_key_value().map(|(k, _)| k.0);
            let deadline = if timers { self.peek_deadline() } else { None };
            let next = match (event_at, deadline) {
                (Some(e), Some((d, _))) => e.min(d),
                (Some(e), None) => e,
                (None, Some((d, _))) => d,
                (None, None) => break,
            };
            if next > end {
                break;
            }
            self.now = TimePoint(next.max(self.now.0));
            // Messages arriving at an instant are handled before the timers of that instant.
            if event_at == Some(next) {
                if let Some((_, event)) = self.events.pop_first() {
                    self.handle(event);
                }
            } else if let Some((_, i)) = deadline {
                self.deadlines.pop();
                self.deadline_of[i] = i64::MAX;
                let now = self.now;
                self.nodes[i].handle_timeout(now);
                self.touch(i);
                if self.deadline_of[i] <= now.0 {
                    self.deadline_of[i] = now.0 + STUCK_DEADLINE_RETRY_US;
                    self.deadlines.push(Reverse((self.deadline_of[i], i)));
                }
            }
        }
        self.now = TimePoint(self.now.0.max(end));
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Syn(c) => self.on_syn(c),
            Event::DialFailed(c, error) => self.on_dial_failed(c, error),
            Event::Established(c, side) => self.on_established(c, side),
            Event::Sent(c, side, bytes) => self.on_sent(c, side, bytes),
            Event::Arrive(c, side, payload, size) => self.on_arrive(c, side, payload, size),
            Event::Gone(c, side) => self.on_gone(c, side),
            Event::Durable(i, incarnation) => self.on_durable(i, incarnation),
        }
    }

    /// Carries out every node's commands and everything due now, without running timers.
    pub fn pump(&mut self) {
        self.touch_all();
        self.run(self.now.0, false);
    }

    /// Moves the clock forward by `us`, handling every event and due timer on the way.
    pub fn advance(&mut self, us: i64) {
        self.touch_all();
        self.run(self.now.0 + us, true);
    }

    /// Runs until `end`. Nodes changed directly since the last call must have been touched.
    pub fn run_until(&mut self, end: TimePoint) {
        self.run(end.0, true);
    }

    // ----- commands ---------------------------------------------------------------------------

    fn execute(&mut self, i: usize, cmd: Command) {
        match cmd {
            Command::Dial { peer, endpoint } => self.dial(i, peer, endpoint),
            Command::Send { peer, message } => self.send(i, peer, message),
            Command::Close { peer } => self.close(i, peer),
            Command::SavePeerDb(records) => {
                self.saved.insert(i, records);
            }
            Command::SaveBans(bans) => {
                self.saved_bans.insert(i, bans);
            }
        }
    }

    fn send(&mut self, i: usize, peer: PeerId, message: Message) {
        let Some((c, to, _)) = self.connection(i, peer) else {
            return;
        };
        let message = match self.meta[i].hostility {
            Some(h) => match h.outgoing(message) {
                Some(m) => m,
                None => return,
            },
            None => message,
        };
        self.put_on_link(c, i, to, message, true);
    }

    /// Encodes `message` and sends it on `c` from node `from`'s end.
    fn put_on_link(&mut self, c: ConnId, from: usize, to: usize, message: Message, report: bool) {
        let Some(conn) = self.conns.get(&c) else {
            return;
        };
        let side = usize::from(conn.ends[0].node != from);
        let data = message.to_data();
        let size = crate::wire::frame::padded_frame_len(data.len());
        let msg_type = message.msg_type();
        let keep = !self.decode_on_arrival;
        let message = match (self.record_trace, keep) {
            (true, true) => {
                self.trace.push(Delivery {
                    at: self.now,
                    from,
                    to,
                    message: message.clone(),
                });
                Some(Box::new(message))
            }
            (true, false) => {
                self.trace.push(Delivery {
                    at: self.now,
                    from,
                    to,
                    message,
                });
                None
            }
            (false, keep) => keep.then(|| Box::new(message)),
        };
        let payload = Payload::Frame {
            msg_type,
            data,
            message,
        };
        self.transmit(c, side, payload, size, report);
    }

    fn record_delivery(&mut self, from: usize, to: usize, msg_type: u32, data: &[u8]) {
        self.delivered += 1;
        *self.delivered_by_type.entry(msg_type).or_default() += 1;
        let h = &mut self.hasher;
        h.update(self.now.0.to_le_bytes());
        h.update((from as u64).to_le_bytes());
        h.update((to as u64).to_le_bytes());
        h.update(msg_type.to_le_bytes());
        h.update((data.len() as u64).to_le_bytes());
        h.update(data);
    }

    // ----- views ------------------------------------------------------------------------------

    /// SHA-256 over every delivery so far: (time, from, to, message type, data), in order.
    /// Equal for two runs exactly when they delivered the same messages at the same times.
    pub fn trace_hash(&self) -> [u8; 32] {
        self.hasher.clone().finalize().into()
    }

    /// Messages delivered so far.
    pub fn deliveries(&self) -> u64 {
        self.delivered
    }

    /// Messages delivered so far, by type (0: garbage frames).
    pub fn deliveries_by_type(&self) -> &BTreeMap<u32, u64> {
        &self.delivered_by_type
    }

    /// Events waiting (messages in flight, dials under way, closes not yet seen).
    pub fn pending_events(&self) -> usize {
        self.events.len()
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
        if let Some((c, to, _)) = self.connection(i, peer) {
            self.put_on_link(c, i, to, message, true);
        }
        self.pump();
    }
}
