//! The tokio runtime around the node core: a listener, a dialer, one task per connection,
//! one node task that owns the core, timers, the peer database on disk, and shutdown.
//!
//! The node task is the only place the core lives. Each connection task reports [`Event`]s to
//! it through its own [`fair::Link`], a small bounded queue taken in turn with the others: a
//! flood of input slows that peer's reader down instead of growing memory or delaying other
//! peers. The node task queues the messages to send on the same link. Protocol rules live in
//! [`crate::node`]; nothing here decides anything.

pub mod clock;
pub mod connection;
pub mod fair;
pub mod identity;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;

use tracing::{info, warn};

use crate::app::Delegate;
use crate::node::BanReport;
use crate::node::{Command, Node, NodeConfig, NodeInfo, PeerInfo};
use crate::peer::PeerId;
use crate::store::bans::{self as ban_store, BANS_FILE};
use crate::store::peer_db::{self, PEER_DB_FILE, PeerDatabase, PeerRecord};
use crate::wire::Message;
use crate::wire::types::{Endpoint, NodeId};

use clock::Clock;
use connection::Target;
use fair::{FairEvents, Hub, Link};

/// Events queued from the listener to the node task before it waits (each connection has its
/// own queue, [`fair::CONNECTION_EVENT_QUEUE`]).
pub const EVENT_QUEUE: usize = 1024;
/// How long shutdown waits for closing messages to be written.
pub const SHUTDOWN_FLUSH: Duration = Duration::from_secs(3);
/// Pause after a failed accept (e.g. out of file descriptors) before accepting again.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// How long the node task goes on taking connection events, one turn after another, before
/// it yields its thread to the tasks its turns woke (the writers of its replies, readers
/// waiting for room): bounds how long a flooding peer's turns can keep another peer's reply
/// off that thread. Yielding after every turn instead costs the thread a poll of the I/O
/// driver (an `epoll_wait`) and often a sleep and wake-up per event: 15–20 % of the node's
/// CPU time on loopback handshakes.
pub const NODE_TASK_SLICE: Duration = Duration::from_micros(500);

/// What a connection task reports.
#[derive(Debug)]
pub enum Event {
    Accepted {
        stream: tokio::net::TcpStream,
        remote: SocketAddr,
    },
    /// The key exchange finished; `key_bytes` were read from the socket with the last of the
    /// peer's key (reported here rather than as one more [`Event::Bytes`]: one event less per
    /// connection).
    Established {
        peer: PeerId,
        local: SocketAddr,
        digest: [u8; 32],
        key_bytes: usize,
    },
    DialFailed {
        peer: PeerId,
        error: String,
    },
    /// `bytes` read from the socket during the key exchange; `in_flight` bytes of the peer's
    /// key are in so far (0 once it is complete).
    Bytes {
        peer: PeerId,
        bytes: usize,
        in_flight: usize,
    },
    /// Messages read, in order (at most `connection::MAX_MESSAGES_PER_EVENT` and
    /// `connection::MAX_EVENT_BYTES`). The last event of a read carries the `bytes` read and
    /// the `in_flight` bytes of a message not yet complete that remain buffered after them;
    /// the others carry 0 for both.
    Messages {
        peer: PeerId,
        messages: Vec<Message>,
        bytes: usize,
        in_flight: usize,
    },
    /// Whole messages of `bytes` wire bytes in all were written to the socket.
    Sent {
        peer: PeerId,
        bytes: usize,
    },
    ProtocolError {
        peer: PeerId,
        error: String,
    },
    Closed {
        peer: PeerId,
    },
}

/// Requests from the operator surfaces.
pub enum Control {
    Info(oneshot::Sender<NodeInfo>),
    Peers(oneshot::Sender<Vec<PeerInfo>>),
    PotentialPeers(oneshot::Sender<Vec<PeerRecord>>),
    Connect(Endpoint),
    /// Hand an item (1000 trx or 1001 block message data) to the node; answers its hash and
    /// what became of it.
    Broadcast {
        msg_type: u32,
        data: Vec<u8>,
        reply: oneshot::Sender<crate::node::Broadcast>,
    },
    /// An item by inventory hash or block id: its type and data.
    GetItem {
        hash: crate::wire::types::ItemHash,
        reply: oneshot::Sender<Option<(u32, Vec<u8>)>>,
    },
    /// Bans in force and violation counts.
    Bans(oneshot::Sender<BanReport>),
    /// Lift the ban on an address; answers whether there was one.
    Unban {
        ip: std::net::Ipv4Addr,
        reply: oneshot::Sender<bool>,
    },
    Shutdown(oneshot::Sender<()>),
}

/// How to run a node.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    pub node: NodeConfig,
    pub data_dir: PathBuf,
    /// Where to listen for peers.
    pub p2p_endpoint: SocketAddr,
    /// "host:port" strings, resolved at start.
    pub seed_nodes: Vec<String>,
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot use data directory {0}: {1}")]
    DataDir(PathBuf, std::io::Error),
    #[error("cannot listen on {0}: {1}")]
    Listen(SocketAddr, std::io::Error),
    #[error("bad node key file {0}: {1}")]
    NodeKey(PathBuf, String),
    #[error("only IPv4 endpoints are supported by the graphene protocol: {0}")]
    NotIpv4(SocketAddr),
    #[error("cannot open the store {0}: {1}")]
    Store(PathBuf, String),
    #[error("cannot read {0}: {1}")]
    Read(PathBuf, std::io::Error),
    /// The application serves another chain than the configured one.
    #[error("the configured chain id {configured} is not the application's chain id {application}")]
    ChainMismatch {
        configured: crate::wire::types::Sha256,
        application: crate::wire::types::Sha256,
    },
}

/// A running node.
pub struct NodeHandle {
    control: mpsc::Sender<Control>,
    task: JoinHandle<()>,
    /// The endpoint actually bound for peers.
    pub p2p_endpoint: Option<SocketAddr>,
    pub node_id: NodeId,
}

impl NodeHandle {
    /// Sends a control request.
    pub async fn control(&self, c: Control) -> bool {
        self.control.send(c).await.is_ok()
    }

    /// A sender for the API server.
    pub fn controller(&self) -> mpsc::Sender<Control> {
        self.control.clone()
    }

    /// The node's facts.
    pub async fn info(&self) -> Option<NodeInfo> {
        let (tx, rx) = oneshot::channel();
        self.control(Control::Info(tx)).await;
        rx.await.ok()
    }

    /// The node's connections.
    pub async fn peers(&self) -> Option<Vec<PeerInfo>> {
        let (tx, rx) = oneshot::channel();
        self.control(Control::Peers(tx)).await;
        rx.await.ok()
    }

    /// Bans in force and violation counts.
    pub async fn bans(&self) -> Option<BanReport> {
        let (tx, rx) = oneshot::channel();
        self.control(Control::Bans(tx)).await;
        rx.await.ok()
    }

    /// Hands an item to the node as if it came from the operator; answers its hash and what
    /// became of it (an error only when the node has stopped).
    pub async fn broadcast(
        &self,
        msg_type: u32,
        data: Vec<u8>,
    ) -> Result<crate::node::Broadcast, String> {
        let (reply, rx) = oneshot::channel();
        self.control(Control::Broadcast {
            msg_type,
            data,
            reply,
        })
        .await;
        rx.await.map_err(|_| "node stopped".to_string())
    }

    /// An item by inventory hash or block id.
    pub async fn get_item(&self, hash: crate::wire::types::ItemHash) -> Option<(u32, Vec<u8>)> {
        let (reply, rx) = oneshot::channel();
        self.control(Control::GetItem { hash, reply }).await;
        rx.await.ok().flatten()
    }

    /// Resolves when the node task has ended: after [`NodeHandle::shutdown`], or by itself
    /// (a failure).
    pub async fn stopped(&self) {
        self.control.closed().await
    }

    /// Closes every connection politely, saves the peer database, and waits for the node task.
    pub async fn shutdown(self) {
        let (tx, rx) = oneshot::channel();
        if self.control.send(Control::Shutdown(tx)).await.is_ok() {
            let _ = rx.await;
        }
        let _ = self.task.await;
    }
}

fn to_endpoint(addr: SocketAddr) -> Option<Endpoint> {
    match addr {
        SocketAddr::V4(a) => Some(Endpoint::from(a)),
        SocketAddr::V6(a) => a
            .ip()
            .to_ipv4_mapped()
            .map(|ip| Endpoint::new(ip, a.port())),
    }
}

/// The p2p directory inside the data directory.
pub fn p2p_dir(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join("p2p")
}

/// Starts a node with the default application, the relay store in the data directory.
///
/// The listener is bound before anything is created on disk, so a start that fails because
/// the port is taken leaves no data directory behind.
pub async fn start(config: RuntimeConfig) -> Result<NodeHandle, StartError> {
    let listener = bind_listener(&config).await?;
    let path = config.data_dir.join(crate::app::relay_store::STORE_FILE);
    let store = crate::app::relay_store::RelayStore::open(&path, config.node.chain_id)
        .map_err(|e| StartError::Store(path.clone(), e.to_string()))?;
    start_listening(config, Box::new(store), listener).await
}

/// Starts a node for a given application: listener, identity, peer database, seeds, and the
/// node task.
pub async fn start_with_delegate(
    config: RuntimeConfig,
    delegate: Box<dyn Delegate>,
) -> Result<NodeHandle, StartError> {
    let listener = bind_listener(&config).await?;
    start_listening(config, delegate, listener).await
}

/// The peer listener, when the node accepts connections.
async fn bind_listener(config: &RuntimeConfig) -> Result<Option<TcpListener>, StartError> {
    if !config.node.accept_incoming_connections {
        return Ok(None);
    }
    if !config.p2p_endpoint.is_ipv4() {
        return Err(StartError::NotIpv4(config.p2p_endpoint));
    }
    TcpListener::bind(config.p2p_endpoint)
        .await
        .map(Some)
        .map_err(|e| StartError::Listen(config.p2p_endpoint, e))
}

async fn start_listening(
    config: RuntimeConfig,
    delegate: Box<dyn Delegate>,
    listener: Option<TcpListener>,
) -> Result<NodeHandle, StartError> {
    // One chain: the configured id builds the default application, and an application given by
    // the caller must serve that same chain (the node core takes the id from the application).
    if delegate.chain_id() != config.node.chain_id {
        return Err(StartError::ChainMismatch {
            configured: config.node.chain_id,
            application: delegate.chain_id(),
        });
    }
    let dir = p2p_dir(&config.data_dir);
    std::fs::create_dir_all(&dir).map_err(|e| StartError::DataDir(dir.clone(), e))?;
    let clock = Clock::new();
    let now = clock.now();
    let key = identity::load_or_create_node_key(&dir, now)?;
    let node_id = identity::random_node_id();
    // Unreadable files are moved aside, never overwritten (store::read_or_move_aside).
    let db_path = dir.join(PEER_DB_FILE);
    let records = peer_db::load_or_move_aside(&db_path, now)
        .map_err(|e| StartError::Read(db_path.clone(), e))?;
    let db = PeerDatabase::from_records(records);
    info!(records = db.len(), "peer database loaded");
    let bans_path = dir.join(BANS_FILE);
    let bans =
        ban_store::load(&bans_path, now).map_err(|e| StartError::Read(bans_path.clone(), e))?;
    let mut node = Node::new(config.node.clone(), key, node_id, db, delegate, now);
    node.restore_bans(bans, now);

    let p2p_endpoint = listener.as_ref().and_then(|l| l.local_addr().ok());
    if let Some(ep) = p2p_endpoint.and_then(to_endpoint) {
        node.set_listen_endpoint(ep);
    }
    for seed in &config.seed_nodes {
        match tokio::net::lookup_host(seed.as_str()).await {
            Ok(addrs) => {
                for a in addrs.filter_map(to_endpoint) {
                    node.add_seed(a, now);
                }
            }
            Err(e) => warn!(seed, error = %e, "cannot resolve seed node"),
        }
    }
    // On a terminal the progress bar shows sync; elsewhere the log does.
    let progress_bar = std::io::stderr().is_terminal();
    node.set_log_sync_progress(!progress_bar);
    let info = node.info(now);
    info!(
        version = env!("CARGO_PKG_VERSION"),
        chain_id = %info.chain_id,
        node_id = %info.node_id,
        p2p_endpoint = info.p2p_endpoint.as_deref().unwrap_or("none (not listening)"),
        data_dir = %config.data_dir.display(),
        head = info.head_block_number,
        head_id = %info.head_block_id,
        "grapevine started"
    );

    // The application's writer says when more is durable; the node task then advertises it.
    let durable = Arc::new(Notify::new());
    let wake = durable.clone();
    node.set_durable_waker(Box::new(move || wake.notify_one()));
    let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
    let connection_events = FairEvents::new();
    let (control_tx, control_rx) = mpsc::channel(64);
    let stop_accepting = Arc::new(Notify::new());
    if let Some(l) = listener {
        tokio::spawn(accept_loop(l, events_tx.clone(), stop_accepting.clone()));
    }
    let task = tokio::spawn(
        NodeTask {
            progress: None,
            progress_bar,
            node,
            clock,
            hub: connection_events.hub(),
            held: BTreeMap::new(),
            held_cursor: 0,
            connections: HashMap::new(),
            writers: Vec::new(),
            db_path,
            bans_path,
            stop_accepting,
            durable,
        }
        .run(events_rx, connection_events, control_rx),
    );
    Ok(NodeHandle {
        control: control_tx,
        task,
        p2p_endpoint,
        node_id,
    })
}

async fn accept_loop(listener: TcpListener, events: mpsc::Sender<Event>, stop: Arc<Notify>) {
    loop {
        tokio::select! {
            _ = stop.notified() => return,
            r = listener.accept() => match r {
                Ok((stream, remote)) => {
                    if events.send(Event::Accepted { stream, remote }).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            }
        }
    }
}

struct ConnectionHandle {
    link: Arc<Link>,
    digest: Option<[u8; 32]>,
    /// `None` once handed to [`ConnectionHandle::close`]'s caller.
    task: Option<JoinHandle<()>>,
}

impl ConnectionHandle {
    /// Stops reading, lets the connection flush what is queued and close; returns the task.
    fn close(mut self) -> Option<JoinHandle<()>> {
        self.link.stop();
        self.task.take()
    }
}

impl Drop for ConnectionHandle {
    /// A connection the node forgets is stopped (it flushes for at most `CLOSE_FLUSH`).
    fn drop(&mut self) {
        self.link.stop();
    }
}

/// The rest of an event's messages, waiting while the node works through the peer's backlog.
struct Held {
    messages: std::vec::IntoIter<Message>,
    bytes: usize,
    in_flight: usize,
}

struct NodeTask {
    progress: Option<indicatif::ProgressBar>,
    /// Whether sync shows as a progress bar (stderr is a terminal); otherwise the node logs
    /// "syncing" lines, never both.
    progress_bar: bool,
    node: Node,
    clock: Clock,
    /// Where new connections' links report.
    hub: Arc<Hub>,
    /// Peers whose last event's messages are not all read: the node entered a backlog for
    /// the peer in the middle of them (see [`NodeTask::deliver`]).
    held: BTreeMap<PeerId, Held>,
    /// The held peer served last, for taking them in turn.
    held_cursor: PeerId,
    connections: HashMap<PeerId, ConnectionHandle>,
    writers: Vec<JoinHandle<()>>,
    db_path: PathBuf,
    bans_path: PathBuf,
    stop_accepting: Arc<Notify>,
    /// Notified by the application's writer when more work is durable.
    durable: Arc<Notify>,
}

impl NodeTask {
    async fn run(
        mut self,
        mut events: mpsc::Receiver<Event>,
        mut connection_events: FairEvents,
        mut control: mpsc::Receiver<Control>,
    ) {
        let mut shutdown_reply: Option<oneshot::Sender<()>> = None;
        // When the node task last yielded its thread (see `NODE_TASK_SLICE`).
        let mut slice_start = std::time::Instant::now();
        loop {
            self.execute_commands();
            let deadline = self.clock.instant_at(self.node.next_deadline());
            // Usually empty: peers whose last message the node is still reading, and those
            // with messages of their last event still to read.
            let mut paused = self.node.backlogged_peers().clone();
            paused.extend(self.held.keys().copied());
            tokio::select! {
                Some(ev) = events.recv() => self.on_event(ev),
                () = std::future::ready(()), if !paused.is_empty() => {
                    let now = self.clock.now();
                    self.node.work_backlog(now);
                    self.resume_held();
                    tokio::task::yield_now().await;
                }
                ev = connection_events.next(&paused) => {
                    self.on_event(ev);
                    // Once the slice is used up, let the tasks the turns woke (writers,
                    // readers) run before the next. Without this the node task keeps its
                    // thread for a whole coop budget (128 events) while a peer floods it, and
                    // the writer of another peer's reply, woken onto this same thread, waits
                    // for all of them. (When no event is waiting the task waits, and they run
                    // at once.)
                    if slice_start.elapsed() >= NODE_TASK_SLICE {
                        tokio::task::yield_now().await;
                        slice_start = std::time::Instant::now();
                    }
                }
                () = self.durable.notified() => {
                    let now = self.clock.now();
                    self.node.on_durable(now);
                }
                () = tokio::time::sleep_until(deadline) => {
                    let now = self.clock.now();
                    self.node.handle_timeout(now);
                    self.show_progress();
                }
                c = control.recv() => match c {
                    Some(Control::Shutdown(reply)) => {
                        shutdown_reply = Some(reply);
                        break;
                    }
                    Some(c) => self.on_control(c),
                    None => break,
                }
            }
        }
        // Shutdown: say goodbye, save, stop.
        self.stop_accepting.notify_one();
        let now = self.clock.now();
        self.node.shutdown(now);
        self.execute_commands();
        for (_, c) in self.connections.drain() {
            self.writers.extend(c.close());
        }
        let writers = std::mem::take(&mut self.writers);
        let _ = tokio::time::timeout(SHUTDOWN_FLUSH, futures_join_all(writers)).await;
        info!("node stopped");
        if let Some(r) = shutdown_reply {
            let _ = r.send(());
        }
    }

    /// A progress bar on a terminal while syncing.
    fn show_progress(&mut self) {
        let p = self.node.sync_progress();
        let head = u64::from(self.node.delegate().head().number);
        match (&self.progress, p.syncing) {
            (None, true) if self.progress_bar => {
                let bar = indicatif::ProgressBar::new(u64::from(p.sync_target_block));
                if let Ok(style) = indicatif::ProgressStyle::with_template(
                    "syncing {bar:40} {pos}/{len} blocks ({msg})",
                ) {
                    bar.set_style(style);
                }
                self.progress = Some(bar);
            }
            (Some(bar), true) => {
                bar.set_length(u64::from(p.sync_target_block));
                bar.set_position(head);
                bar.set_message(format!("{:.0} blocks/s", p.blocks_per_second));
            }
            (Some(_), false) => {
                if let Some(bar) = self.progress.take() {
                    bar.finish_and_clear();
                }
            }
            _ => {}
        }
    }

    fn spawn_connection(&mut self, peer: PeerId, target: Target) {
        let link = self.hub.link(peer);
        let task = tokio::spawn(connection::run(peer, target, link.clone(), self.clock));
        self.connections.insert(
            peer,
            ConnectionHandle {
                link,
                digest: None,
                task: Some(task),
            },
        );
    }

    /// Hands an event's messages to the node in order, carrying out what each one commands
    /// before the next, as if each had come alone. If the node closes the connection the rest
    /// are not read; if it enters a backlog for the peer (a long advertisement to work
    /// through), the rest wait in `held` until it leaves it. The bytes read go last.
    fn deliver(
        &mut self,
        peer: PeerId,
        mut messages: std::vec::IntoIter<Message>,
        bytes: usize,
        in_flight: usize,
    ) {
        let digest = self.connections.get(&peer).and_then(|c| c.digest);
        // One reading of the clock for the event: its messages arrived together.
        let now = self.clock.now();
        while let Some(message) = messages.next() {
            self.node.on_message(peer, message, digest, now);
            if messages.len() == 0 {
                break;
            }
            self.execute_commands();
            if !self.connections.contains_key(&peer) {
                return;
            }
            if self.node.backlogged_peers().contains(&peer) {
                let held = Held {
                    messages,
                    bytes,
                    in_flight,
                };
                self.held.insert(peer, held);
                return;
            }
        }
        if bytes > 0 {
            self.node.on_bytes_received(peer, bytes, in_flight, now);
        }
    }

    /// Goes on with the held messages of the next peer (in turn) whose backlog is done.
    fn resume_held(&mut self) {
        if self.held.is_empty() {
            return;
        }
        let backlogged: &BTreeSet<PeerId> = self.node.backlogged_peers();
        let next = self
            .held
            .range(self.held_cursor.saturating_add(1)..)
            .chain(self.held.range(..=self.held_cursor))
            .map(|(p, _)| *p)
            .find(|p| !backlogged.contains(p));
        if let Some(peer) = next
            && let Some(h) = self.held.remove(&peer)
        {
            self.held_cursor = peer;
            self.deliver(peer, h.messages, h.bytes, h.in_flight);
        }
    }

    /// The node forgets the connection's link and anything held for it.
    fn forget(&mut self, peer: PeerId) {
        self.held.remove(&peer);
        self.connections.remove(&peer);
    }

    fn on_event(&mut self, ev: Event) {
        let now = self.clock.now();
        match ev {
            Event::Accepted { stream, remote } => {
                let Some(remote_ep) = to_endpoint(remote) else {
                    return;
                };
                match self.node.accept_inbound(remote_ep, now) {
                    Some(peer) => self.spawn_connection(peer, Target::Accepted(stream)),
                    None => drop(stream),
                }
            }
            Event::Established {
                peer,
                local,
                digest,
                key_bytes,
            } => {
                if let Some(c) = self.connections.get_mut(&peer) {
                    c.digest = Some(digest);
                }
                // As a last `Event::Bytes` would have: the key is complete, nothing in flight.
                if key_bytes > 0 {
                    self.node.on_bytes_received(peer, key_bytes, 0, now);
                }
                let local = to_endpoint(local).unwrap_or_default();
                self.node.on_established(peer, local, digest, now);
            }
            Event::DialFailed { peer, error } => {
                self.forget(peer);
                let was_dial = self
                    .node
                    .peer(peer)
                    .is_some_and(|p| p.direction == crate::wire::types::Direction::Outbound);
                if was_dial {
                    self.node.on_dial_failed(peer, &error, now);
                } else {
                    self.node.on_closed(peer, now);
                }
            }
            Event::Bytes {
                peer,
                bytes,
                in_flight,
            } => self.node.on_bytes_received(peer, bytes, in_flight, now),
            Event::Messages {
                peer,
                messages,
                bytes,
                in_flight,
            } => self.deliver(peer, messages.into_iter(), bytes, in_flight),
            Event::Sent { peer, bytes } => self.node.on_sent(peer, bytes, now),
            Event::ProtocolError { peer, error } => self.node.on_protocol_error(peer, &error, now),
            Event::Closed { peer } => {
                self.forget(peer);
                self.node.on_closed(peer, now);
            }
        }
    }

    fn on_control(&mut self, c: Control) {
        let now = self.clock.now();
        match c {
            Control::Info(reply) => {
                let _ = reply.send(self.node.info(now));
            }
            Control::Peers(reply) => {
                let _ = reply.send(self.node.peer_infos(now));
            }
            Control::PotentialPeers(reply) => {
                let _ = reply.send(
                    self.node
                        .peer_db()
                        .by_last_seen()
                        .into_iter()
                        .cloned()
                        .collect(),
                );
            }
            Control::Connect(ep) => self.node.add_node(ep, now),
            Control::Broadcast {
                msg_type,
                data,
                reply,
            } => {
                let _ = reply.send(self.node.broadcast(msg_type, data, now));
            }
            Control::GetItem { hash, reply } => {
                let _ = reply.send(self.node.get_item(&hash));
            }
            Control::Bans(reply) => {
                let _ = reply.send(self.node.ban_report(now));
            }
            Control::Unban { ip, reply } => {
                let _ = reply.send(self.node.unban(ip, now));
            }
            Control::Shutdown(_) => {}
        }
    }

    fn execute_commands(&mut self) {
        while let Some(cmd) = self.node.poll_command() {
            match cmd {
                Command::Dial { peer, endpoint } => {
                    let addr = SocketAddr::V4(endpoint.to_socket_addr());
                    self.spawn_connection(peer, Target::Dial(addr));
                }
                Command::Send { peer, message } => {
                    if let Some(c) = self.connections.get(&peer) {
                        c.link.send(message);
                    }
                }
                Command::Close { peer } => {
                    self.held.remove(&peer);
                    if let Some(c) = self.connections.remove(&peer) {
                        self.writers.retain(|w| !w.is_finished());
                        self.writers.extend(c.close());
                    }
                    let now = self.clock.now();
                    self.node.on_closed(peer, now);
                }
                Command::SavePeerDb(records) => {
                    let path = self.db_path.clone();
                    // Small file, written atomically; do it inline so shutdown ordering holds.
                    if let Err(e) = peer_db::save(&path, &records) {
                        warn!(path = %path.display(), error = %e, "cannot save peer database");
                    }
                }
                Command::SaveBans(bans) => {
                    // Written at once: a ban acknowledged by the API is on disk.
                    if let Err(e) = ban_store::save(&self.bans_path, &bans) {
                        let path = self.bans_path.display();
                        warn!(path = %path, error = %e, "cannot save the ban list");
                    }
                }
            }
        }
    }
}

async fn futures_join_all(handles: Vec<JoinHandle<()>>) {
    for h in handles {
        let _ = h.await;
    }
}
