//! Rows: hellos that break the rules, and messages before hello.

use grapevine::wire::Message;
use grapevine::wire::message::{
    FetchItemsMessage, ItemIdsInventoryMessage, message_hash, msg_type,
};
use grapevine::wire::types::{CompactSignatureBytes, RejectionReason};

use crate::common::*;
use crate::support::*;

fn rejection(m: Option<Message>) -> RejectionReason {
    match m {
        Some(Message::ConnectionRejected(r)) => r.reason_code,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

/// The node disconnects the reference's way: a closing_connection message, after which it
/// waits for the peer to close (or for the closing timeout).
async fn assert_says_goodbye(raw: &mut RawPeer) {
    let closing = raw.recv_type(msg_type::CLOSING_CONNECTION, T).await;
    assert!(closing.is_some(), "the node says goodbye");
}

/// Sends `hello` from a hostile peer and returns the node's answer to it.
async fn answer_to(
    raw: &mut RawPeer,
    hello: grapevine::wire::message::HelloMessage,
) -> RejectionReason {
    raw.send(Message::Hello(hello)).await;
    rejection(raw.recv_type(msg_type::CONNECTION_REJECTED, T).await)
}

/// Row: a hello whose signature is not over this connection's shared secret.
#[tokio::test]
async fn hello_with_a_bad_signature() {
    let node = quiet_node("bad-sig").await;
    let mut w = witness(&node).await;
    let mut raw = RawPeer::connect_from(addr(&node), HOSTILE_IP).await;
    let mut hello = raw.hello(CHAIN, random_node_id());
    hello.signed_shared_secret = CompactSignatureBytes(raw.key.sign_compact(&[7u8; 32]));
    assert_eq!(
        answer_to(&mut raw, hello).await,
        RejectionReason::InvalidHelloMessage
    );
    assert_says_goodbye(&mut raw).await;
    assert_served(&mut w).await;
    node.shutdown().await;
}

/// Row: a hello for another chain.
#[tokio::test]
async fn hello_for_another_chain() {
    let node = quiet_node("other-chain").await;
    let mut w = witness(&node).await;
    let mut raw = RawPeer::connect_from(addr(&node), HOSTILE_IP).await;
    let hello = raw.hello(&"11".repeat(32), random_node_id());
    assert_eq!(
        answer_to(&mut raw, hello).await,
        RejectionReason::DifferentChain
    );
    assert_says_goodbye(&mut raw).await;
    assert_served(&mut w).await;
    node.shutdown().await;
}

/// Row: a hello that claims the node's own node id.
#[tokio::test]
async fn hello_with_our_node_id() {
    let node = quiet_node("our-id").await;
    let mut w = witness(&node).await;
    let mut raw = RawPeer::connect_from(addr(&node), HOSTILE_IP).await;
    let hello = raw.hello(CHAIN, node.node_id);
    assert_eq!(
        answer_to(&mut raw, hello).await,
        RejectionReason::ConnectedToSelf
    );
    assert_says_goodbye(&mut raw).await;
    assert_served(&mut w).await;
    node.shutdown().await;
}

/// Row: a hello with the node id of a peer that is already connected.
#[tokio::test]
async fn hello_with_a_connected_node_id() {
    let node = quiet_node("dup-id").await;
    let mut w = witness(&node).await;
    let mut first = RawPeer::connect_from(addr(&node), HOSTILE_IP).await;
    let id = random_node_id();
    let hello = first.hello(CHAIN, id);
    first.send(Message::Hello(hello)).await;
    let accepted = first.recv_type(msg_type::CONNECTION_ACCEPTED, T).await;
    assert!(accepted.is_some());
    let mut second = RawPeer::connect_from(addr(&node), HOSTILE_IP).await;
    let hello = second.hello(CHAIN, id);
    assert_eq!(
        answer_to(&mut second, hello).await,
        RejectionReason::AlreadyConnected
    );
    assert_says_goodbye(&mut second).await;
    // The first connection is unaffected.
    assert!(first.time_round_trip(T).await.is_some());
    assert_served(&mut w).await;
    node.shutdown().await;
}

/// Row: two hellos on one connection: the second is a protocol violation and the node
/// disconnects.
#[tokio::test]
async fn two_hellos_on_one_connection() {
    let node = quiet_node("two-hellos").await;
    let mut w = witness(&node).await;
    let mut raw = RawPeer::connect_from(addr(&node), HOSTILE_IP).await;
    let hello = raw.hello(CHAIN, random_node_id());
    raw.send(Message::Hello(hello.clone())).await;
    assert!(
        raw.recv_type(msg_type::CONNECTION_ACCEPTED, T)
            .await
            .is_some()
    );
    raw.send(Message::Hello(hello)).await;
    assert_says_goodbye(&mut raw).await;
    assert_served(&mut w).await;
    node.shutdown().await;
}

/// Row: messages that need an accepted hello, sent before any hello: the node disconnects
/// (the reference's "Received an unexpected ..." closing messages), and serves nothing.
#[tokio::test]
async fn messages_before_hello() {
    let node = quiet_node("before-hello").await;
    let mut w = witness(&node).await;
    let early = [
        Message::FetchItems(FetchItemsMessage {
            item_type: msg_type::TRX,
            items_to_fetch: vec![message_hash(b"x")],
        }),
        Message::ItemIdsInventory(ItemIdsInventoryMessage {
            item_type: msg_type::TRX,
            item_hashes_available: vec![message_hash(b"y")],
        }),
        Message::AddressRequest(grapevine::wire::message::AddressRequestMessage {}),
    ];
    // Each from its own address: two such violations add up to a ban (tests/hostile/bans.rs).
    for (i, m) in early.into_iter().enumerate() {
        let name = m.name();
        let from = std::net::Ipv4Addr::new(127, 0, 3, 1 + i as u8);
        let mut raw = RawPeer::connect_from(addr(&node), from).await;
        raw.send(m).await;
        let closing = raw.recv_type(msg_type::CLOSING_CONNECTION, T).await;
        match closing {
            Some(Message::ClosingConnection(c)) => {
                assert!(c.reason_for_closing.contains("unexpected"), "{name}: {c:?}")
            }
            other => panic!("{name}: expected closing_connection, got {other:?}"),
        }
    }
    assert_served(&mut w).await;
    node.shutdown().await;
}
