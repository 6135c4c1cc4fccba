//! Test helpers: nodes started in-process on 127.0.0.1 port 0, and a raw protocol client.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::BytesMut;
use grapevine::crypto::NodeKey;
use grapevine::node::NodeConfig;
use grapevine::runtime::{self, NodeHandle, RuntimeConfig};
use grapevine::wire::Message;
use grapevine::wire::channel::SecureChannel;
use grapevine::wire::message::{CORE_PROTOCOL_VERSION, HelloMessage};
use grapevine::wire::types::{CompactSignatureBytes, IpAddress, NodeId, Sha256};
use grapevine::wire::variant::{Variant, VariantObject};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub mod process;

pub const CHAIN: &str = "75a0c028695a5df52f2b1045f5c50fd26169241d099f548b5628cbe3a38a2db0";

/// A fresh temporary directory `grapevine-test-{name}-{random}` in the system temp dir,
/// removed when the calling thread ends (see [`temp_path`]).
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = temp_path(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A fresh, not yet created path `grapevine-test-{name}-{random}` in the system temp dir.
///
/// Whatever is at the path when the calling thread ends is removed. libtest runs each test on
/// its own thread and `#[tokio::test]` drops its runtime (and with it every node the test
/// started) before the test function returns, so the directory outlives every node and
/// process that uses it, including restarts on the same directory within one test, and is
/// gone before the next test binary runs.
pub fn temp_path(name: &str) -> PathBuf {
    let mut id = [0u8; 8];
    getrandom::fill(&mut id).unwrap();
    let path = std::env::temp_dir().join(format!("grapevine-test-{name}-{}", hex::encode(id)));
    CREATED.with(|c| c.borrow_mut().0.push(path.clone()));
    path
}

/// The paths [`temp_path`] handed out on this thread; removing them is its destructor's job.
struct Created(Vec<PathBuf>);

impl Drop for Created {
    fn drop(&mut self) {
        for path in self.0.drain(..) {
            let _ = std::fs::remove_dir_all(&path);
            let _ = std::fs::remove_file(&path);
        }
    }
}

thread_local! {
    static CREATED: std::cell::RefCell<Created> = const { std::cell::RefCell::new(Created(Vec::new())) };
}

pub fn config(data_dir: PathBuf, seeds: Vec<String>) -> RuntimeConfig {
    RuntimeConfig {
        node: NodeConfig {
            chain_id: CHAIN.parse().unwrap(),
            ..NodeConfig::default()
        },
        data_dir,
        p2p_endpoint: "127.0.0.1:0".parse().unwrap(),
        seed_nodes: seeds,
    }
}

pub async fn start(config: RuntimeConfig) -> NodeHandle {
    runtime::start(config).await.expect("node starts")
}

pub fn addr(h: &NodeHandle) -> SocketAddr {
    h.p2p_endpoint.expect("listening")
}

/// Waits (up to `limit` of tokio time) until `f` holds for the node's peers.
pub async fn wait_for<F>(h: &NodeHandle, limit: Duration, mut f: F) -> bool
where
    F: FnMut(&[grapevine::node::PeerInfo]) -> bool,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(peers) = h.peers().await
            && f(&peers)
        {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn active(peers: &[grapevine::node::PeerInfo]) -> usize {
    peers.iter().filter(|p| p.state == "active").count()
}

/// A bare protocol client: key exchange, then messages, with no policy of its own.
pub struct RawPeer {
    pub stream: TcpStream,
    pub channel: SecureChannel,
    pub key: NodeKey,
}

impl RawPeer {
    pub async fn connect(addr: SocketAddr) -> RawPeer {
        Self::handshake(TcpStream::connect(addr).await.unwrap()).await
    }

    /// Connects from a chosen loopback address (127.0.0.N), so that tests can give hostile
    /// and honest peers different IPs (bans are per IP).
    pub async fn connect_from(addr: SocketAddr, local: std::net::Ipv4Addr) -> RawPeer {
        Self::handshake(connect_from(addr, local).await.unwrap()).await
    }

    /// Runs the key exchange on a connected socket.
    pub async fn handshake(mut stream: TcpStream) -> RawPeer {
        let mut channel = SecureChannel::new();
        stream.write_all(channel.our_key()).await.unwrap();
        let mut buf = [0u8; 64];
        while !channel.is_established() {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed during key exchange");
            channel.receive(&buf[..n]).unwrap();
        }
        RawPeer {
            stream,
            channel,
            key: NodeKey::generate(),
        }
    }

    pub fn hello(&self, chain_id: &str, node_id: NodeId) -> HelloMessage {
        let digest = self.channel.session_keys().unwrap().hello_digest();
        let mut user_data = VariantObject::new();
        user_data.set("node_id", Variant::String(node_id.to_string()));
        HelloMessage {
            user_agent: "raw test peer".into(),
            core_protocol_version: CORE_PROTOCOL_VERSION,
            inbound_address: IpAddress(0),
            inbound_port: 0,
            outbound_port: 0,
            node_public_key: NodeId(*self.key.public_key()),
            signed_shared_secret: CompactSignatureBytes(self.key.sign_compact(&digest)),
            chain_id: chain_id.parse::<Sha256>().unwrap(),
            user_data,
        }
    }

    pub async fn send(&mut self, m: Message) {
        let mut out = BytesMut::new();
        self.channel.send(&m, &mut out).unwrap();
        self.stream.write_all(&out).await.unwrap();
    }

    /// Sends a frame of `msg_type` whose data is `data`, whatever the type says it should be.
    pub async fn send_raw(&mut self, msg_type: u32, data: &[u8]) {
        let mut out = BytesMut::new();
        self.channel.send_raw(msg_type, data, &mut out).unwrap();
        self.stream.write_all(&out).await.unwrap();
    }

    /// The next message, or None when the socket closes or `limit` passes.
    pub async fn recv(&mut self, limit: Duration) -> Option<Message> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut buf = [0u8; 4096];
        loop {
            if let Some(f) = self.channel.next_frame().unwrap() {
                return Some(f.message().unwrap());
            }
            let n = tokio::time::timeout_at(deadline, self.stream.read(&mut buf))
                .await
                .ok()?
                .ok()?;
            if n == 0 {
                return None;
            }
            self.channel.receive(&buf[..n]).unwrap();
        }
    }

    /// Reads until a message of `msg_type` (returned) or the socket closes.
    pub async fn recv_type(&mut self, msg_type: u32, limit: Duration) -> Option<Message> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let m = self.recv(left).await?;
            if m.msg_type() == msg_type {
                return Some(m);
            }
        }
    }
}

/// A TCP connection to `addr` from the loopback address `local` (any 127.0.0.N works on Linux).
pub async fn connect_from(
    addr: SocketAddr,
    local: std::net::Ipv4Addr,
) -> std::io::Result<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((local, 0)))?;
    socket.connect(addr).await
}

impl RawPeer {
    /// Hello, connection_accepted both ways and the address exchange: the peer is active on
    /// the node when this returns.
    pub async fn activate(&mut self, chain_id: &str) {
        let hello = self.hello(chain_id, random_node_id());
        self.send(Message::Hello(hello)).await;
        let limit = Duration::from_secs(10);
        let answer = self.recv_type(
            grapevine::wire::message::msg_type::CONNECTION_ACCEPTED,
            limit,
        );
        assert!(answer.await.is_some(), "hello accepted");
        self.send(Message::ConnectionAccepted(
            grapevine::wire::message::ConnectionAcceptedMessage {},
        ))
        .await;
        let asked = self.recv_type(grapevine::wire::message::msg_type::ADDRESS_REQUEST, limit);
        assert!(asked.await.is_some(), "node asks for addresses");
        self.send(Message::Address(grapevine::wire::message::AddressMessage {
            addresses: vec![],
        }))
        .await;
    }

    /// Answers the node's sync request (sent at activation) with "no blocks", so a raw peer
    /// that lives longer than the request timeout is not dropped for ignoring it; it is then in
    /// sync and idle.
    pub async fn answer_sync(&mut self) {
        use grapevine::wire::message::{BlockchainItemIdsInventoryMessage, msg_type};
        let asked = self
            .recv_type(msg_type::FETCH_BLOCKCHAIN_ITEM_IDS, Duration::from_secs(10))
            .await;
        assert!(asked.is_some(), "the node asks for block ids");
        self.send(Message::BlockchainItemIdsInventory(
            BlockchainItemIdsInventoryMessage {
                total_remaining_item_count: 0,
                item_type: msg_type::BLOCK,
                item_hashes_available: vec![],
            },
        ))
        .await;
    }

    /// Asks the node for block ids after an empty synopsis and waits for its answer: a peer
    /// with no blocks that is caught up with a node that has none, so the node does not take
    /// it for a syncing peer (whom it would not advertise to).
    pub async fn catch_up(&mut self) {
        use grapevine::wire::message::{FetchBlockchainItemIdsMessage, msg_type};
        self.send(Message::FetchBlockchainItemIds(
            FetchBlockchainItemIdsMessage {
                item_type: msg_type::BLOCK,
                blockchain_synopsis: vec![],
            },
        ))
        .await;
        let answered = self
            .recv_type(
                msg_type::BLOCKCHAIN_ITEM_IDS_INVENTORY,
                Duration::from_secs(10),
            )
            .await;
        assert!(answered.is_some(), "the node answers the sync request");
    }

    /// Sends a current_time_request and waits for its reply, skipping anything else; the
    /// round trip, or None if no reply came within `limit`.
    pub async fn time_round_trip(&mut self, limit: Duration) -> Option<Duration> {
        let started = std::time::Instant::now();
        self.send(Message::CurrentTimeRequest(
            grapevine::wire::message::CurrentTimeRequestMessage {
                request_sent_time: grapevine::wire::types::TimePoint(0),
            },
        ))
        .await;
        let reply = grapevine::wire::message::msg_type::CURRENT_TIME_REPLY;
        self.recv_type(reply, limit).await?;
        Some(started.elapsed())
    }

    /// Whether the node closed the socket within `limit` (messages before the close are read
    /// and dropped).
    pub async fn closed_within(&mut self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        let mut buf = [0u8; 4096];
        loop {
            match tokio::time::timeout_at(deadline, self.stream.read(&mut buf)).await {
                Err(_) => return false,
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(n)) => {
                    if self.channel.receive(&buf[..n]).is_err() {
                        return true;
                    }
                    while let Ok(Some(_)) = self.channel.next_frame() {}
                }
            }
        }
    }
}

/// The id of an item the node must have accepted from the operator (held, duplicate and
/// rejected items fail the test).
#[track_caller]
pub fn accepted(
    answer: Result<grapevine::node::Broadcast, String>,
) -> grapevine::wire::types::ItemHash {
    let b = answer.expect("the node is running");
    assert_eq!(
        b.outcome,
        grapevine::node::BroadcastOutcome::Accepted,
        "{}",
        b.id
    );
    b.id
}

pub fn random_node_id() -> NodeId {
    let mut id = [0u8; 33];
    getrandom::fill(&mut id).unwrap();
    id[0] = 2;
    NodeId(id)
}
