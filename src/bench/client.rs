//! A bare protocol peer for load generation: TCP connect (from a chosen loopback address), the
//! key exchange, hello, connection_accepted both ways, the address exchange both ways, and
//! answers to what a node asks of an active peer. It has no policy of its own.
//!
//! It uses the node's own wire code ([`SecureChannel`]) and is meant to be cheap to hold by the
//! thousand: a [`Conn`] is a socket and its channel; reads go through a stack buffer that lives
//! only while bytes are being taken, so an idle held connection keeps no read buffer.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};

use super::{BenchError, BenchResult};
use crate::crypto::NodeKey;
use crate::crypto::identity::verify_compact;
use crate::wire::Message;
use crate::wire::channel::SecureChannel;
use crate::wire::message::*;
use crate::wire::types::{CompactSignatureBytes, IpAddress, NodeId, Sha256, TimePoint};
use crate::wire::variant::{Variant, VariantObject};

/// Bytes taken from the socket per read (on the stack, only while reading).
pub const READ_CHUNK: usize = 4096;
/// How long a whole handshake may take before the bench gives up on it.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);
/// How long one time request may wait for its reply.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(20);
/// Items answered as not available per fetch request (a node asks for few at once).
const MAX_NOT_AVAILABLE_PER_REQUEST: usize = 100;

/// What the bench says in its hello.
pub fn user_agent() -> String {
    format!("grapevine-bench {}", env!("CARGO_PKG_VERSION"))
}

/// Microseconds since the epoch, as the protocol's times count.
pub fn now() -> TimePoint {
    let us = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
    TimePoint(us)
}

/// The source address for the `i`-th connection to `target`: with `spread` > 1 and a loopback
/// target, 127.0.0.1 to 127.0.0.`spread` in turn (so no one source address runs out of ports);
/// otherwise whatever the system picks.
pub fn source_for(i: usize, target: SocketAddr, spread: usize) -> Option<Ipv4Addr> {
    let loopback = match target {
        SocketAddr::V4(a) => a.ip().is_loopback(),
        SocketAddr::V6(_) => false,
    };
    if !loopback || spread <= 1 {
        return None;
    }
    let n = (i % spread.min(250)) as u8;
    Some(Ipv4Addr::new(127, 0, 0, n + 1))
}

/// A TCP connection to `target`, from `source` when given, with Nagle off (as nodes do).
pub async fn connect(target: SocketAddr, source: Option<Ipv4Addr>) -> BenchResult<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    if let Some(ip) = source {
        socket.bind(SocketAddr::from((ip, 0)))?;
    }
    let stream = socket.connect(target).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// A random node id (compressed-key shaped), one per connection so the target never takes two
/// bench connections for one node.
pub fn random_node_id() -> NodeId {
    let mut id = [0u8; 33];
    let _ = getrandom::fill(&mut id);
    id[0] = 2;
    id[1] |= 1; // never all zeros
    NodeId(id)
}

/// One connection after the key exchange.
pub struct Conn {
    pub stream: TcpStream,
    pub channel: SecureChannel,
}

impl Conn {
    /// Connects and runs the key exchange.
    pub async fn open(target: SocketAddr, source: Option<Ipv4Addr>) -> BenchResult<Conn> {
        let stream = connect(target, source).await?;
        Self::key_exchange(stream).await
    }

    /// Sends our ephemeral key and reads the peer's.
    pub async fn key_exchange(mut stream: TcpStream) -> BenchResult<Conn> {
        let channel = SecureChannel::new();
        stream.write_all(channel.our_key()).await?;
        let mut conn = Conn { stream, channel };
        while !conn.channel.is_established() {
            conn.read_some().await?;
        }
        Ok(conn)
    }

    /// Waits for bytes and hands them to the channel. The buffer is on the stack and only
    /// while the bytes are taken: a connection waiting for input holds none.
    async fn read_some(&mut self) -> BenchResult<()> {
        loop {
            self.stream.readable().await?;
            let mut buf = [0u8; READ_CHUNK];
            match self.stream.try_read(&mut buf) {
                Ok(0) => return Err(BenchError::Closed("end of stream".into())),
                Ok(n) => {
                    self.channel.receive(&buf[..n])?;
                    return Ok(());
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Sends one message.
    pub async fn send(&mut self, message: &Message) -> BenchResult<()> {
        let mut out = BytesMut::new();
        self.channel.send(message, &mut out)?;
        self.stream.write_all(&out).await?;
        Ok(())
    }

    /// The next message.
    pub async fn recv(&mut self) -> BenchResult<Message> {
        loop {
            if let Some(frame) = self.channel.next_frame()? {
                return Ok(frame.message()?);
            }
            self.read_some().await?;
        }
    }

    /// Answers what a node asks of an active peer: time requests, sync requests (we have no
    /// blocks), address requests (we know nobody), item requests (we have nothing). A goodbye
    /// is an error; anything else is ignored.
    pub async fn answer(&mut self, message: Message) -> BenchResult<()> {
        let reply = match message {
            Message::CurrentTimeRequest(m) => {
                let t = now();
                Message::CurrentTimeReply(CurrentTimeReplyMessage {
                    request_sent_time: m.request_sent_time,
                    request_received_time: t,
                    reply_transmitted_time: t,
                })
            }
            Message::FetchBlockchainItemIds(m) => {
                Message::BlockchainItemIdsInventory(BlockchainItemIdsInventoryMessage {
                    total_remaining_item_count: 0,
                    item_type: m.item_type,
                    item_hashes_available: Vec::new(),
                })
            }
            Message::AddressRequest(_) => Message::Address(AddressMessage {
                addresses: Vec::new(),
            }),
            Message::FetchItems(m) => {
                for hash in m.items_to_fetch.iter().take(MAX_NOT_AVAILABLE_PER_REQUEST) {
                    let missing = Message::ItemNotAvailable(ItemNotAvailableMessage {
                        requested_item: ItemId {
                            item_type: m.item_type,
                            item_hash: *hash,
                        },
                    });
                    self.send(&missing).await?;
                }
                return Ok(());
            }
            Message::ClosingConnection(m) => {
                return Err(BenchError::Closed(m.reason_for_closing));
            }
            Message::ConnectionRejected(m) => {
                return Err(BenchError::Rejected(format!(
                    "{}: {}",
                    m.reason_code, m.reason_string
                )));
            }
            _ => return Ok(()),
        };
        self.send(&reply).await
    }

    /// Our hello, signed with `identity` over this connection's shared secret.
    pub fn hello(&self, chain_id: Sha256, identity: &NodeKey) -> BenchResult<HelloMessage> {
        let keys = self
            .channel
            .session_keys()
            .ok_or_else(|| BenchError::Protocol("hello before the key exchange".into()))?;
        let mut user_data = VariantObject::new();
        user_data.set("node_id", Variant::String(random_node_id().to_string()));
        Ok(HelloMessage {
            user_agent: user_agent(),
            core_protocol_version: CORE_PROTOCOL_VERSION,
            // Port 0: we accept no connections, so the target never dials us back.
            inbound_address: IpAddress(0),
            inbound_port: 0,
            outbound_port: 0,
            node_public_key: NodeId(*identity.public_key()),
            signed_shared_secret: CompactSignatureBytes(
                identity.sign_compact(&keys.hello_digest()),
            ),
            chain_id,
            user_data,
        })
    }

    /// The whole handshake of a dialling node: hello; the target's hello checked (chain,
    /// signature) and accepted; the target's connection_accepted answered with an address
    /// request; its address request answered; its address list received; and then the
    /// first message the target sends a peer it has just made active (a time request or a
    /// sync request, both answered). When this returns, the target holds us as an active peer.
    pub async fn handshake(&mut self, chain_id: Sha256, identity: &NodeKey) -> BenchResult<()> {
        let hello = self.hello(chain_id, identity)?;
        self.send(&Message::Hello(hello)).await?;
        let digest = self
            .channel
            .session_keys()
            .map(|k| k.hello_digest())
            .ok_or_else(|| BenchError::Protocol("no session keys".into()))?;
        let (mut their_hello, mut accepted, mut sent_addresses, mut got_addresses) =
            (false, false, false, false);
        loop {
            match self.recv().await? {
                Message::Hello(h) => {
                    if h.chain_id != chain_id {
                        return Err(BenchError::Protocol(format!(
                            "the target serves chain {}, not {chain_id}",
                            h.chain_id
                        )));
                    }
                    if !verify_compact(&h.signed_shared_secret.0, &digest, &h.node_public_key.0) {
                        return Err(BenchError::Protocol("bad hello signature".into()));
                    }
                    their_hello = true;
                    self.send(&Message::ConnectionAccepted(ConnectionAcceptedMessage {}))
                        .await?;
                }
                Message::ConnectionAccepted(_) => {
                    accepted = true;
                    self.send(&Message::AddressRequest(AddressRequestMessage {}))
                        .await?;
                }
                Message::AddressRequest(_) => {
                    self.send(&Message::Address(AddressMessage {
                        addresses: Vec::new(),
                    }))
                    .await?;
                    sent_addresses = true;
                }
                Message::Address(_) => got_addresses = true,
                m @ (Message::CurrentTimeRequest(_) | Message::FetchBlockchainItemIds(_)) => {
                    // A node sends these to a peer as it makes it active.
                    self.answer(m).await?;
                    if their_hello && accepted && sent_addresses && got_addresses {
                        return Ok(());
                    }
                }
                other => self.answer(other).await?,
            }
        }
    }

    /// Sends a time request and waits for its reply, answering anything else meanwhile; the
    /// round trip.
    pub async fn time_round_trip(&mut self) -> BenchResult<Duration> {
        let started = Instant::now();
        let request = Message::CurrentTimeRequest(CurrentTimeRequestMessage {
            request_sent_time: now(),
        });
        self.send(&request).await?;
        let wait = async {
            loop {
                match self.recv().await? {
                    Message::CurrentTimeReply(_) => return Ok(started.elapsed()),
                    other => self.answer(other).await?,
                }
            }
        };
        tokio::time::timeout(REPLY_TIMEOUT, wait)
            .await
            .map_err(|_| BenchError::Timeout("a current_time_reply"))?
    }

    /// Keeps the connection up, answering the target, until the target closes it (the error
    /// says how). Cancel the future to let go of the connection.
    pub async fn hold(mut self) -> BenchError {
        loop {
            // Nothing buffered between messages: give the buffer back while idle.
            self.channel.release_idle_buffer();
            let step = async {
                let m = self.recv().await?;
                self.answer(m).await
            };
            if let Err(e) = step.await {
                return e;
            }
        }
    }
}

/// Connects, runs the key exchange and the handshake, within [`HANDSHAKE_TIMEOUT`].
pub async fn open_active(
    target: SocketAddr,
    source: Option<Ipv4Addr>,
    chain_id: Sha256,
    identity: &NodeKey,
) -> BenchResult<Conn> {
    let steps = async {
        let mut conn = Conn::open(target, source).await?;
        conn.handshake(chain_id, identity).await?;
        Ok(conn)
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, steps)
        .await
        .map_err(|_| BenchError::Timeout("the handshake"))?
}

/// A short name for an error, to count failures by kind.
pub fn error_kind(e: &BenchError) -> String {
    match e {
        BenchError::Io(io) => format!("io: {:?}", io.kind()),
        BenchError::Channel(_) => "channel".into(),
        BenchError::Decode(_) => "decode".into(),
        BenchError::Timeout(what) => format!("timeout: {what}"),
        BenchError::Rejected(why) => format!("rejected: {why}"),
        BenchError::Closed(why) => format!("closed: {why}"),
        BenchError::Protocol(why) => format!("protocol: {why}"),
        BenchError::Setup(why) => format!("setup: {why}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_spread_only_over_loopback_targets() {
        let local: SocketAddr = "127.0.0.1:1776".parse().unwrap();
        let remote: SocketAddr = "192.0.2.1:1776".parse().unwrap();
        assert_eq!(source_for(0, local, 4), Some(Ipv4Addr::new(127, 0, 0, 1)));
        assert_eq!(source_for(5, local, 4), Some(Ipv4Addr::new(127, 0, 0, 2)));
        assert_eq!(source_for(5, local, 1), None);
        assert_eq!(source_for(5, remote, 4), None);
    }

    #[test]
    fn node_ids_differ_and_are_not_null() {
        let (a, b) = (random_node_id(), random_node_id());
        assert_ne!(a, b);
        assert_ne!(a, NodeId::default());
    }
}
