//! Rows: floods that must cost bounded work and memory, connection storms, and probes.

use std::net::Ipv4Addr;
use std::time::Duration;

use grapevine::runtime::{Control, NodeHandle};
use grapevine::store::peer_db::MAX_PEER_RECORDS;
use grapevine::wire::Message;
use grapevine::wire::frame::MAX_MESSAGE_SIZE;
use grapevine::wire::message::{
    AddressInfo, AddressMessage, AddressRequestMessage, CheckFirewallMessage,
    ConnectionAcceptedMessage, FetchItemsMessage, msg_type,
};
use grapevine::wire::types::{Direction, Endpoint, FirewalledState, Microseconds, TimePointSec};
use tokio::io::AsyncWriteExt;
use tokio::sync::oneshot;

use crate::common::*;
use crate::support::*;

async fn potential_peers(node: &NodeHandle) -> usize {
    let (tx, rx) = oneshot::channel();
    assert!(node.control(Control::PotentialPeers(tx)).await);
    rx.await.unwrap().len()
}

/// Hello and connection_accepted, then the address exchange answered with `addresses`.
async fn activate_with_addresses(raw: &mut RawPeer, addresses: Vec<AddressInfo>) {
    let hello = raw.hello(CHAIN, random_node_id());
    raw.send(Message::Hello(hello)).await;
    assert!(
        raw.recv_type(msg_type::CONNECTION_ACCEPTED, T)
            .await
            .is_some()
    );
    raw.send(Message::ConnectionAccepted(ConnectionAcceptedMessage {}))
        .await;
    assert!(raw.recv_type(msg_type::ADDRESS_REQUEST, T).await.is_some());
    raw.send(Message::Address(AddressMessage { addresses }))
        .await;
}

/// `n` distinct addresses, all on loopback (nothing outside 127.0.0.0/8 is ever dialled).
fn addresses(n: usize) -> Vec<AddressInfo> {
    (0..n)
        .map(|i| AddressInfo {
            remote_endpoint: Endpoint::new(
                Ipv4Addr::new(127, 1 + (i / 60_000) as u8, (i / 250 % 240) as u8, 1),
                (1000 + i % 60_000) as u16,
            ),
            last_seen_time: TimePointSec(1_700_000_000),
            latency: Microseconds(0),
            node_id: random_node_id(),
            direction: Direction::Outbound,
            firewalled: FirewalledState::Unknown,
        })
        .collect()
}

/// Row: address_message floods. 100,000 entries do not fit in a message (53 bytes each, over
/// the 2 MiB frame limit): refused on the header. The largest that fits is read, only
/// MAX_ADDRESSES_TO_HANDLE_AT_ONCE of it is handled, and the peer database stays within
/// MAX_PEER_RECORDS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn address_message_floods() {
    let _heavy = HEAVY.lock().await;
    let mut c = config(temp_dir("addr-flood"), vec![]);
    // The node must take addresses to be at risk; it dials none of them (all loopback, all
    // closed ports, and desired connections reached by nobody), which is fine.
    c.node.connect_to_new_peers = true;
    c.node.desired_connections = 1;
    let node = start(c).await;
    let mut w = witness(&node).await;

    // 100,000 entries: the header alone is refused (the first encrypted block after the key
    // exchange is the frame header).
    let big = Message::Address(AddressMessage {
        addresses: addresses(100_000),
    })
    .to_data();
    assert!(big.len() > MAX_MESSAGE_SIZE);
    let mut too_many = RawPeer::connect_from(addr(&node), HOSTILE_IP).await;
    let keys = too_many.channel.session_keys().unwrap().clone();
    let mut block = [0u8; 16];
    block[..4].copy_from_slice(&(big.len() as u32).to_le_bytes());
    block[4..8].copy_from_slice(&msg_type::ADDRESS.to_le_bytes());
    block[8..16].copy_from_slice(&big[..8]);
    keys.encryptor().apply(&mut block).unwrap();
    too_many.stream.write_all(&block).await.unwrap();
    assert!(too_many.closed_within(T).await, "refused on the header");

    let fits = (MAX_MESSAGE_SIZE - 8) / 53;
    let mut flood = RawPeer::connect_from(addr(&node), HOSTILE_IP).await;
    let started = std::time::Instant::now();
    activate_with_addresses(&mut flood, addresses(fits)).await;
    assert_served(&mut w).await;
    let records = potential_peers(&node).await;
    assert!(
        records <= MAX_PEER_RECORDS,
        "{records} records after a flood of {fits}"
    );
    assert!(
        records <= 200 + 2,
        "only 200 addresses handled at once: {records}"
    );
    eprintln!(
        "address flood of {fits} entries handled in {:?}; {records} records",
        started.elapsed()
    );
    node.shutdown().await;
}

/// Row: a peer asks for 10,000 items and never reads its socket. The node materialises items
/// only while the peer's send queue is under half its bound, so what it holds for the peer
/// stays bounded whatever was asked. The peer is dropped by whichever comes first: its
/// unanswered sync request (REQUEST_TIMEOUT, 6 s: a peer that reads nothing answers nothing)
/// or the writer giving up on a socket that accepts nothing (WRITE_TIMEOUT).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_items_from_a_peer_that_never_reads() {
    let _heavy = HEAVY.lock().await;
    let node = quiet_node("never-reads").await;
    let mut w = witness(&node).await;
    // A 16 KiB transaction: the relay store checks the header only.
    let mut trx = vector_trx();
    trx[6..10].copy_from_slice(&4_000_000_000u32.to_le_bytes());
    trx.resize(16 * 1024, 0);
    let hash = accepted(node.broadcast(msg_type::TRX, trx).await);

    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket
        .bind(std::net::SocketAddr::from((HOSTILE_IP, 0)))
        .unwrap();
    let stream = socket.connect(addr(&node)).await.unwrap();
    let mut raw = RawPeer::handshake(stream).await;
    raw.activate(CHAIN).await;
    raw.send(Message::FetchItems(FetchItemsMessage {
        item_type: msg_type::TRX,
        items_to_fetch: vec![hash; 10_000],
    }))
    .await;
    // 10,000 × 16 KiB = 160 MiB asked for; the node holds at most its queue bound for it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(45);
    let mut dropped = false;
    while tokio::time::Instant::now() < deadline {
        let peers = node.peers().await.unwrap();
        let hostile = peers
            .iter()
            .find(|p| p.endpoint.starts_with(&HOSTILE_IP.to_string()));
        match hostile {
            None => {
                dropped = true;
                break;
            }
            Some(p) => assert!(
                p.bytes_sent < 160 * 1024 * 1024 / 10,
                "the node kept writing to a peer that reads nothing: {} bytes",
                p.bytes_sent
            ),
        }
        assert_served(&mut w).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(dropped, "the peer that never reads is dropped");
    assert_served(&mut w).await;
    node.shutdown().await;
}

/// A trx from the vectors (only its 10-byte header matters to the relay store).
fn vector_trx() -> Vec<u8> {
    let v: serde_json::Value =
        serde_json::from_str(include_str!("../vectors/messages.json")).unwrap();
    hex::decode(v["messages"][0]["data_hex"].as_str().unwrap()).unwrap()
}

/// Row: a message type outside 5000-5099 that nobody requested: the node disconnects, as the
/// reference does for an unrequested ordinary message.
#[tokio::test]
async fn type_outside_the_core_range() {
    let node = quiet_node("type-7000").await;
    let mut w = witness(&node).await;
    let mut raw = RawPeer::connect_from(addr(&node), HOSTILE_IP).await;
    raw.activate(CHAIN).await;
    raw.send_raw(7000, &[1, 2, 3]).await;
    let closing = raw.recv_type(msg_type::CLOSING_CONNECTION, T).await;
    assert!(closing.is_some(), "the node says goodbye");
    assert_served(&mut w).await;
    node.shutdown().await;
}

/// Row: 3 × max_connections dialers complete their handshakes at once: exactly
/// max_connections hellos are accepted in all, every excess dialer is rejected and still
/// handed addresses, and the peer already connected is unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_times_max_connections_dialers() {
    const MAX: usize = 8;
    let mut c = config(temp_dir("storm"), vec![]);
    c.node.max_connections = MAX;
    c.node.desired_connections = MAX;
    c.node.connect_to_new_peers = false;
    let node = start(c).await;
    let mut w = witness(&node).await;
    let target = addr(&node);
    let mut tasks = Vec::new();
    for i in 0..3 * MAX {
        let from = Ipv4Addr::new(127, 0, 1, 1 + i as u8);
        tasks.push(tokio::spawn(async move {
            let mut raw = RawPeer::connect_from(target, from).await;
            let h = raw.hello(CHAIN, random_node_id());
            raw.send(Message::Hello(h)).await;
            let accepted = loop {
                match raw.recv(T).await {
                    Some(Message::ConnectionAccepted(_)) => break true,
                    Some(Message::ConnectionRejected(_)) => break false,
                    Some(_) => continue,
                    None => panic!("closed before answering the hello"),
                }
            };
            raw.send(Message::AddressRequest(AddressRequestMessage {}))
                .await;
            let addresses = raw.recv_type(msg_type::ADDRESS, T).await;
            assert!(addresses.is_some(), "every dialer receives addresses");
            (accepted, raw)
        }));
    }
    let mut accepted = 0;
    let mut keep = Vec::new();
    for t in tasks {
        let (ok, raw) = t.await.unwrap();
        accepted += usize::from(ok);
        keep.push(raw);
    }
    // The witness holds one of the MAX slots.
    assert_eq!(
        accepted,
        MAX - 1,
        "accepted hellos never exceed max_connections"
    );
    assert_served(&mut w).await;
    let info = node.info().await.unwrap();
    assert!(info.connections.active <= MAX);
    node.shutdown().await;
}

/// Row: check_firewall naming a third party's endpoint makes the node dial it: bounded to
/// one probe per requesting peer and MAX_FIREWALL_PROBES in all; the rest are answered
/// "unable to check" without a dial.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_firewall_probes_are_bounded() {
    let mut c = config(temp_dir("firewall"), vec![]);
    c.node.connect_to_new_peers = true;
    c.node.desired_connections = 1;
    let node = start(c).await;
    let mut w = witness(&node).await;
    // The "third party": a listener that counts the node's probe dials.
    let victim = tokio::net::TcpListener::bind("127.0.0.4:0").await.unwrap();
    let victim_ep = match victim.local_addr().unwrap() {
        std::net::SocketAddr::V4(a) => Endpoint::from(a),
        _ => unreachable!(),
    };
    let counter = tokio::spawn(async move {
        let mut n = 0usize;
        let mut held = Vec::new();
        while let Ok(Ok((s, _))) =
            tokio::time::timeout(Duration::from_secs(3), victim.accept()).await
        {
            n += 1;
            held.push(s);
        }
        n
    });
    let mut askers = Vec::new();
    for i in 0..12u8 {
        let mut raw = RawPeer::connect_from(addr(&node), Ipv4Addr::new(127, 0, 2, 1 + i)).await;
        raw.activate(CHAIN).await;
        for _ in 0..3 {
            raw.send(Message::CheckFirewall(CheckFirewallMessage {
                node_id: random_node_id(),
                endpoint_to_check: victim_ep,
            }))
            .await;
        }
        askers.push(raw);
    }
    let dials = counter.await.unwrap();
    assert!(dials >= 1, "a probe is made");
    assert!(
        dials <= grapevine::node::config::MAX_FIREWALL_PROBES,
        "{dials} probe dials for 36 requests"
    );
    // Every asker hears back about at least its extra requests.
    let mut replies = 0;
    for raw in &mut askers {
        while let Some(Message::CheckFirewallReply(_)) = raw
            .recv_type(msg_type::CHECK_FIREWALL_REPLY, Duration::from_millis(300))
            .await
        {
            replies += 1;
        }
    }
    assert!(replies >= 36 - dials, "{replies} replies");
    assert_served(&mut w).await;
    node.shutdown().await;
}
