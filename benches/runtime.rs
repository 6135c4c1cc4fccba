//! The connection runtime: resident memory per idle handshaked peer, and throughput over one
//! connection (1 MiB and 100 B messages), each against a same-run baseline.
//!
//! The node under test is a `grapevine run` child process on 127.0.0.1 (so its memory is its
//! own, read from /proc/PID/status); this process plays the peers, each driven by the node's
//! own connection code (`runtime::connection::run`), answering the node as an idle node with
//! an empty chain would.
//!
//! ```text
//! cargo bench --bench runtime                       # both parts, 2,000 peers
//! cargo bench --bench runtime -- connections        # memory only
//! cargo bench --bench runtime -- stream             # throughput only (stream-1MiB, stream-100B)
//! GRAPEVINE_BENCH_PEERS=10000 cargo bench --bench runtime -- connections
//! ```
//!
//! - **connections**: the node's VmRSS before the first peer and after N peers are active
//!   and idle; the difference per peer. This process's own growth per peer is printed too:
//!   it holds the same connection runtime without the node core's state, so the two figures
//!   split the node's cost into runtime and core.
//! - **stream**: messages of type 5050 (ignored by the node) sent as fast as the connection
//!   takes them, then a time request; the node's reply marks the moment it has read
//!   everything before it. Baseline: AES-256-CBC encryption of the same frames, one long
//!   stream on one core (CBC encryption is serial: the bound of one connection).
//!
//! Figures are printed, never asserted.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aes::Aes256;
use cbc::cipher::{Array, BlockModeEncrypt, KeyIvInit};
use grapevine::crypto::NodeKey;
use grapevine::peer::PeerId;
use grapevine::runtime::Event;
use grapevine::runtime::clock::Clock;
use grapevine::runtime::connection::{self, Target};
use grapevine::runtime::fair::{FairEvents, Link};
use grapevine::wire::Message;
use grapevine::wire::frame::padded_frame_len;
use grapevine::wire::message::{
    AddressMessage, BlockchainItemIdsInventoryMessage, CORE_PROTOCOL_VERSION,
    ConnectionAcceptedMessage, CurrentTimeReplyMessage, CurrentTimeRequestMessage, HelloMessage,
};
use grapevine::wire::types::{CompactSignatureBytes, IpAddress, NodeId, Sha256, TimePoint};
use grapevine::wire::variant::{Variant, VariantObject};
use std::collections::BTreeSet;
use std::sync::Arc;

const CHAIN: &str = "75a0c028695a5df52f2b1045f5c50fd26169241d099f548b5628cbe3a38a2db0";
/// Peers held open by default (`GRAPEVINE_BENCH_PEERS` overrides).
const DEFAULT_PEERS: usize = 2_000;
/// Key exchanges and hellos under way at once while connecting (the node closes the oldest
/// key exchange beyond 128).
const DIALS_AT_ONCE: usize = 64;
/// Runs per stream figure; the median and the range are printed.
const RUNS: usize = 5;
/// 1 MiB messages per stream run.
const LARGE_COUNT: usize = 128;
const LARGE_SIZE: usize = 1024 * 1024;
/// 100 B messages per stream run.
const SMALL_COUNT: usize = 200_000;
const SMALL_SIZE: usize = 100;
/// A message type the node ignores (5000-5099 without a meaning yet).
const IGNORED_TYPE: u32 = 5050;
const T: Duration = Duration::from_secs(60);

fn main() {
    // `cargo test --benches` runs bench binaries without --bench: keep that quick.
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        return;
    }
    let wanted = |name: &str| {
        let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
        filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()))
    };
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .try_init();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .on_thread_start(note_thread)
        .enable_all()
        .build()
        .expect("runtime");
    sizes();
    if wanted("connections") {
        let peers = std::env::var("GRAPEVINE_BENCH_PEERS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_PEERS);
        rt.block_on(connections(peers));
    }
    let sizes: Vec<(&str, usize, usize)> = [
        ("stream-1MiB", LARGE_COUNT, LARGE_SIZE),
        ("stream-100B", SMALL_COUNT, SMALL_SIZE),
    ]
    .into_iter()
    .filter(|(name, ..)| wanted(name))
    .collect();
    if !sizes.is_empty() {
        rt.block_on(stream(&sizes));
    }
}

/// This process's runtime threads in the order they started: the two workers (started with
/// the runtime), then blocking-pool threads (where a connection encrypts large frames).
static RUNTIME_THREADS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

fn note_thread() {
    if let Ok(path) = std::fs::read_link("/proc/thread-self")
        && let Some(tid) = path.file_name()
        && let Ok(mut threads) = RUNTIME_THREADS.lock()
    {
        threads.push(tid.to_string_lossy().into_owned());
    }
}

/// The blocking-pool threads of this process so far.
fn blocking_threads() -> Vec<String> {
    RUNTIME_THREADS
        .lock()
        .map(|t| t.iter().skip(2).cloned().collect())
        .unwrap_or_default()
}

/// Sizes of the per-peer structures, for the breakdown.
fn sizes() {
    use grapevine::peer::PeerState;
    use grapevine::wire::channel::SecureChannel;
    use grapevine::wire::frame::SecureCodec;
    let fair = FairEvents::new();
    let link = fair.hub().link(1);
    let addr: SocketAddr = "127.0.0.1:1".parse().expect("addr");
    let task = connection::run(1, Target::Dial(addr), link, Clock::new());
    println!(
        "sizes: PeerState {} B, Message {} B, Event {} B, Link {} B, SecureChannel {} B, \
         SecureCodec {} B, connection task future {} B",
        std::mem::size_of::<PeerState>(),
        std::mem::size_of::<Message>(),
        std::mem::size_of::<Event>(),
        std::mem::size_of::<Link>(),
        std::mem::size_of::<SecureChannel>(),
        std::mem::size_of::<SecureCodec>(),
        std::mem::size_of_val(&task),
    );
}

// ----- the node under test --------------------------------------------------------------------

struct NodeProcess {
    child: Child,
    p2p: SocketAddr,
    rpc: SocketAddr,
    dir: std::path::PathBuf,
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        // SIGINT first: the node stops cleanly (and a wrapping tool writes its report).
        let _ = Command::new("kill").args(["-INT", &self.pid()]).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl NodeProcess {
    /// The node's process id: the child itself, or the `grapevine` process a wrapping tool
    /// (`GRAPEVINE_BENCH_NODE_WRAPPER`) started.
    fn pid(&self) -> String {
        let child = self.child.id();
        let children = std::fs::read_to_string(format!("/proc/{child}/task/{child}/children"))
            .unwrap_or_default();
        children
            .split_whitespace()
            .find(|c| {
                std::fs::read_to_string(format!("/proc/{c}/comm"))
                    .is_ok_and(|comm| comm.trim() == "grapevine")
            })
            .map_or_else(|| child.to_string(), str::to_string)
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A `grapevine run` that dials nobody and takes `max_connections` peers.
fn spawn_node(max_connections: usize) -> NodeProcess {
    let mut id = [0u8; 8];
    getrandom::fill(&mut id).expect("random");
    let dir = std::env::temp_dir().join(format!("grapevine-bench-runtime-{}", hex::encode(id)));
    let p2p: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let rpc: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    // GRAPEVINE_BENCH_NODE_WRAPPER runs the node under a tool (e.g. "heaptrack -o /tmp/node").
    let wrapper = std::env::var("GRAPEVINE_BENCH_NODE_WRAPPER").unwrap_or_default();
    let mut words = wrapper.split_whitespace();
    let mut command = match words.next() {
        Some(tool) => {
            let mut c = Command::new(tool);
            c.args(words).arg(env!("CARGO_BIN_EXE_grapevine"));
            c
        }
        None => Command::new(env!("CARGO_BIN_EXE_grapevine")),
    };
    let child = command
        .arg("run")
        .arg("--data-dir")
        .arg(&dir)
        .args(["--p2p-endpoint", &p2p.to_string()])
        .args(["--rpc-endpoint", &rpc.to_string()])
        .args(["--chain-id", CHAIN])
        .args(["--max-connections", &max_connections.to_string()])
        .args(["--desired-connections", &max_connections.to_string()])
        .args(["--p2p-connect-to-new-peers", "false"])
        .args(["--log-level", "warn"])
        .env_remove("RUST_LOG")
        .envs(std::env::var("GRAPEVINE_BENCH_NODE_LOG").map(|l| ("RUST_LOG", l)))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("grapevine runs");
    let node = NodeProcess {
        child,
        p2p,
        rpc,
        dir,
    };
    let deadline = Instant::now() + T;
    while grapevine::cli::status::get_json(node.rpc, "/info").is_err() {
        assert!(Instant::now() < deadline, "the node did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    node
}

/// VmRSS of a process, KiB.
fn rss_kib(pid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

async fn active_on_node(rpc: SocketAddr) -> usize {
    tokio::task::spawn_blocking(move || {
        grapevine::cli::status::get_json(rpc, "/info")
            .ok()
            .and_then(|v| v["connections"]["active"].as_u64())
            .unwrap_or(0) as usize
    })
    .await
    .unwrap_or(0)
}

// ----- the peers ------------------------------------------------------------------------------

/// What happened on a connection, as far as the benchmark cares.
enum Happened {
    /// The node accepted our hello and asked for addresses: active once it reads the answer.
    Active(PeerId),
    TimeReply(PeerId),
    Sent,
    Gone(PeerId),
    Nothing,
}

struct Conn {
    link: Arc<Link>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.link.stop();
    }
}

/// Many connections run by `runtime::connection::run`, answering the node like an idle node
/// with an empty chain.
struct Peers {
    events: FairEvents,
    conns: HashMap<PeerId, Conn>,
    next_id: PeerId,
    key: NodeKey,
    clock: Clock,
}

impl Peers {
    fn new() -> Self {
        Self {
            events: FairEvents::new(),
            conns: HashMap::new(),
            next_id: 1,
            key: NodeKey::generate(),
            clock: Clock::new(),
        }
    }

    fn dial(&mut self, addr: SocketAddr) -> PeerId {
        let peer = self.next_id;
        self.next_id += 1;
        let link = self.events.hub().link(peer);
        tokio::spawn(connection::run(
            peer,
            Target::Dial(addr),
            link.clone(),
            self.clock,
        ));
        self.conns.insert(peer, Conn { link });
        peer
    }

    fn send(&self, peer: PeerId, message: Message) {
        if let Some(c) = self.conns.get(&peer) {
            c.link.send(message);
        }
    }

    fn hello(&self, digest: &[u8; 32]) -> HelloMessage {
        let mut node_id = [0u8; 33];
        getrandom::fill(&mut node_id).expect("random");
        node_id[0] = 2;
        let mut user_data = VariantObject::new();
        user_data.set("node_id", Variant::String(NodeId(node_id).to_string()));
        HelloMessage {
            user_agent: "grapevine runtime bench".into(),
            core_protocol_version: CORE_PROTOCOL_VERSION,
            inbound_address: IpAddress(0),
            inbound_port: 0,
            outbound_port: 0,
            node_public_key: NodeId(*self.key.public_key()),
            signed_shared_secret: CompactSignatureBytes(self.key.sign_compact(digest)),
            chain_id: CHAIN.parse::<Sha256>().expect("chain id"),
            user_data,
        }
    }

    /// Takes one event and answers it; what happened.
    async fn step(&mut self) -> Happened {
        let ev = self.events.next(&BTreeSet::new()).await;
        match ev {
            Event::Established { peer, digest, .. } => {
                let hello = self.hello(&digest);
                self.send(peer, Message::Hello(hello));
                Happened::Nothing
            }
            Event::Messages { peer, messages, .. } => {
                let mut happened = Happened::Nothing;
                for m in messages {
                    match self.answer(peer, m) {
                        Happened::Nothing => {}
                        h => happened = h,
                    }
                }
                happened
            }
            Event::Sent { .. } => Happened::Sent,
            Event::DialFailed { peer, .. }
            | Event::ProtocolError { peer, .. }
            | Event::Closed { peer } => {
                self.conns.remove(&peer);
                Happened::Gone(peer)
            }
            _ => Happened::Nothing,
        }
    }

    fn answer(&mut self, peer: PeerId, message: Message) -> Happened {
        match message {
            Message::Hello(_) => {
                self.send(
                    peer,
                    Message::ConnectionAccepted(ConnectionAcceptedMessage {}),
                );
            }
            Message::AddressRequest(_) => {
                self.send(peer, Message::Address(AddressMessage { addresses: vec![] }));
                return Happened::Active(peer);
            }
            Message::CurrentTimeRequest(r) => {
                let now = self.clock.now();
                self.send(
                    peer,
                    Message::CurrentTimeReply(CurrentTimeReplyMessage {
                        request_sent_time: r.request_sent_time,
                        request_received_time: now,
                        reply_transmitted_time: now,
                    }),
                );
            }
            Message::CurrentTimeReply(_) => return Happened::TimeReply(peer),
            Message::FetchBlockchainItemIds(f) => {
                self.send(
                    peer,
                    Message::BlockchainItemIdsInventory(BlockchainItemIdsInventoryMessage {
                        total_remaining_item_count: 0,
                        item_type: f.item_type,
                        item_hashes_available: vec![],
                    }),
                );
            }
            _ => {}
        }
        Happened::Nothing
    }

    /// Dials `count` peers, at most [`DIALS_AT_ONCE`] under way at once, until each is active
    /// from our side; the peers that made it.
    async fn connect(&mut self, addr: SocketAddr, count: usize) -> Vec<PeerId> {
        let mut active = Vec::new();
        let mut under_way = 0usize;
        let mut dialed = 0usize;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
        while active.len() < count && tokio::time::Instant::now() < deadline {
            while under_way < DIALS_AT_ONCE
                && active.len() + under_way < count
                && dialed < count + count / 10 + 10
            {
                self.dial(addr);
                dialed += 1;
                under_way += 1;
            }
            match self.step().await {
                Happened::Active(p) => {
                    active.push(p);
                    under_way -= 1;
                }
                Happened::Gone(p) => {
                    if let Some(i) = active.iter().position(|a| *a == p) {
                        active.swap_remove(i);
                    } else {
                        under_way = under_way.saturating_sub(1);
                    }
                }
                _ => {}
            }
            if dialed >= count + count / 10 + 10 && under_way == 0 {
                break;
            }
        }
        active
    }

    /// Answers the node until `f` says stop (given what happened).
    async fn run_until(&mut self, mut f: impl FnMut(&Happened) -> bool) {
        loop {
            let h = self.step().await;
            if f(&h) {
                return;
            }
        }
    }
}

// ----- connections ----------------------------------------------------------------------------

async fn connections(count: usize) {
    let node = spawn_node(count + 16);
    let pid = node.pid();
    let own = std::process::id().to_string();
    // Let the node settle (its first timers, the status API) before the baseline.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let node_before = rss_kib(&pid);
    let own_before = rss_kib(&own);
    let started = Instant::now();
    let mut peers = Peers::new();
    let ids = peers.connect(node.p2p, count).await;
    let connected_in = started.elapsed();
    // Answer the node (its time and sync requests) until it counts every peer active.
    let deadline = Instant::now() + T;
    let rpc = node.rpc;
    loop {
        let polled = tokio::time::timeout(Duration::from_millis(200), peers.step()).await;
        if polled.is_err() && active_on_node(rpc).await >= ids.len() {
            break;
        }
        if Instant::now() > deadline {
            println!("not all peers became active on the node");
            break;
        }
    }
    // Idle: keep answering (keepalives) for a few seconds, then read the memory.
    let settle = tokio::time::Instant::now() + Duration::from_secs(3);
    let _ = tokio::time::timeout_at(settle, peers.run_until(|_| false)).await;
    let active = active_on_node(rpc).await;
    let node_after = rss_kib(&pid);
    let own_after = rss_kib(&own);
    let per = |before: u64, after: u64| after.saturating_sub(before) as f64 / active.max(1) as f64;
    println!(
        "connections: {active} active peers on the node ({} dialled active in {connected_in:?}, \
         {:.0} per second)",
        ids.len(),
        ids.len() as f64 / connected_in.as_secs_f64()
    );
    println!(
        "connections: node RSS {node_before} KiB -> {node_after} KiB: {:.1} KiB per peer",
        per(node_before, node_after)
    );
    println!(
        "connections: this process (the peers' connection runtime, no node core) \
         {own_before} KiB -> {own_after} KiB: {:.1} KiB per peer",
        per(own_before, own_after)
    );
    drop(peers);
    drop(node);
}

// ----- stream ---------------------------------------------------------------------------------

/// CPU time each thread of process `pid` has run so far, in nanoseconds, by thread id
/// (/proc/PID/task/*/schedstat).
fn cpu_by_thread(pid: &str) -> HashMap<String, u64> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return HashMap::new();
    };
    tasks
        .flatten()
        .filter_map(|t| {
            let s = std::fs::read_to_string(t.path().join("schedstat")).ok()?;
            let ns = s.split_whitespace().next()?.parse::<u64>().ok()?;
            Some((t.file_name().to_string_lossy().into_owned(), ns))
        })
        .collect()
}

/// Seconds of CPU the threads of `pid` ran since `before`: those named in `apart`, and the
/// others (threads that ended meanwhile are not counted; none does while a connection
/// streams).
fn cpu_since(pid: &str, before: &HashMap<String, u64>, apart: &[String]) -> (f64, f64) {
    let (mut inside, mut outside) = (0u64, 0u64);
    for (tid, now) in cpu_by_thread(pid) {
        let ns = now.saturating_sub(before.get(&tid).copied().unwrap_or(0));
        if apart.contains(&tid) {
            inside += ns;
        } else {
            outside += ns;
        }
    }
    (inside as f64 / 1e9, outside as f64 / 1e9)
}

/// CPU time of the calling thread, in seconds.
fn thread_cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0.0, |ns| ns as f64 / 1e9)
}

/// One measurement: wall time and the CPU time each side used.
#[derive(Clone, Copy)]
struct Run {
    wall: f64,
    /// The sending peer's blocking-pool threads (large frames' encryption)...
    cpu_cipher: f64,
    /// ...and its other threads (everything else: writing, smaller frames, events).
    cpu_peer: f64,
    cpu_node: f64,
}

/// Encrypts `frames` frames of `data_len` bytes of data as one CBC stream, in place, on this
/// thread.
fn plain_cbc(frames: usize, data_len: usize) -> Run {
    let mut buf = vec![0x5a_u8; frames * padded_frame_len(data_len)];
    let mut e = cbc::Encryptor::<Aes256>::new(&[7u8; 32].into(), &[9u8; 16].into());
    let cpu = thread_cpu_seconds();
    let t = Instant::now();
    let (blocks, rest) = Array::slice_as_chunks_mut(&mut buf);
    assert!(rest.is_empty());
    e.encrypt_blocks(blocks);
    let wall = t.elapsed().as_secs_f64();
    let cpu = thread_cpu_seconds() - cpu;
    std::hint::black_box(&buf);
    Run {
        wall,
        cpu_cipher: cpu,
        cpu_peer: 0.0,
        cpu_node: 0.0,
    }
}

/// The median and the range of `v`.
fn spread(v: impl IntoIterator<Item = f64>) -> (f64, f64, f64) {
    let mut v: Vec<f64> = v.into_iter().collect();
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn show((median, lo, hi): (f64, f64, f64), digits: usize) -> String {
    format!("{median:.digits$} ({lo:.digits$}-{hi:.digits$})")
}

/// Sends `count` messages of `size` bytes and a time request; wall and CPU time until the
/// reply.
async fn send_batch(peers: &mut Peers, peer: PeerId, node: &str, count: usize, size: usize) -> Run {
    let messages: Vec<Message> = (0..count)
        .map(|i| Message::Unknown {
            msg_type: IGNORED_TYPE,
            data: vec![i as u8; size],
        })
        .collect();
    let own = std::process::id().to_string();
    let (cpu_peer, cpu_node) = (cpu_by_thread(&own), cpu_by_thread(node));
    let t = Instant::now();
    for m in messages {
        peers.send(peer, m);
    }
    peers.send(
        peer,
        Message::CurrentTimeRequest(CurrentTimeRequestMessage {
            request_sent_time: TimePoint(0),
        }),
    );
    let done = tokio::time::timeout(
        T,
        peers.run_until(|h| matches!(h, Happened::TimeReply(p) if *p == peer)),
    );
    assert!(done.await.is_ok(), "the node answered");
    let wall = t.elapsed().as_secs_f64();
    let (cpu_cipher, cpu_peer) = cpu_since(&own, &cpu_peer, &blocking_threads());
    Run {
        wall,
        cpu_cipher,
        cpu_peer,
        cpu_node: cpu_since(node, &cpu_node, &[]).1,
    }
}

async fn stream(sizes: &[(&str, usize, usize)]) {
    let node = spawn_node(16);
    let pid = node.pid();
    let mut peers = Peers::new();
    let ids = peers.connect(node.p2p, 1).await;
    let peer = *ids.first().expect("one peer active");
    // Its sync request answered and the first time request done: the connection is quiet.
    let _ = tokio::time::timeout(Duration::from_secs(1), peers.run_until(|_| false)).await;
    for &(label, count, size) in sizes {
        let bytes = (count * padded_frame_len(size)) as f64;
        let mib = bytes / (1024.0 * 1024.0);
        let mut runs = Vec::new();
        let mut cbc = Vec::new();
        for _ in 0..RUNS {
            cbc.push(plain_cbc(count, size));
            runs.push(send_batch(&mut peers, peer, &pid, count, size).await);
        }
        let rate = spread(runs.iter().map(|r| mib / r.wall));
        let msgs = spread(runs.iter().map(|r| count as f64 / r.wall));
        let cbc_rate = spread(cbc.iter().map(|c| mib / c.wall));
        let ratio = spread(runs.iter().zip(&cbc).map(|(r, c)| c.wall / r.wall));
        // CPU per MiB of each stage of the pipeline: the sender's large-frame encryption
        // (blocking pool), the rest of the sender, the node. They overlap (one message is
        // encrypted while the last one is written and read), so with a core for each the
        // busiest stage bounds the connection.
        let ms = |v: f64| v / mib * 1000.0;
        let cipher_cpu = spread(runs.iter().map(|r| ms(r.cpu_cipher)));
        let peer_cpu = spread(runs.iter().map(|r| ms(r.cpu_peer)));
        let node_cpu = spread(runs.iter().map(|r| ms(r.cpu_node)));
        let cbc_cpu = spread(cbc.iter().map(|c| ms(c.cpu_cipher)));
        let bound = spread(
            runs.iter()
                .zip(&cbc)
                .map(|(r, c)| c.cpu_cipher / r.cpu_cipher.max(r.cpu_peer).max(r.cpu_node)),
        );
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        println!("{label} x {count} (median (min-max) of {RUNS}):");
        println!(
            "  connection {} MiB/s, {} msgs/s; plain CBC {} MiB/s; ratio {}",
            show(rate, 0),
            show(msgs, 0),
            show(cbc_rate, 0),
            show(ratio, 2)
        );
        println!(
            "  CPU ms per MiB: sender's large-frame encryption {}, rest of the sender {}, \
             node {}; plain CBC {}",
            show(cipher_cpu, 3),
            show(peer_cpu, 3),
            show(node_cpu, 3),
            show(cbc_cpu, 3),
        );
        println!(
            "  with a core per stage (plain CBC / busiest stage): {}; load average after: {}",
            show(bound, 2),
            load.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" "),
        );
    }
    drop(peers);
    drop(node);
}
