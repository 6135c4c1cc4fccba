//! Nodes on real sockets (127.0.0.1, port 0): handshakes, rejections, address exchange,
//! timeouts, closing, restarts and connection limits.

mod support;

use std::time::Duration;

use grapevine::wire::Message;
use grapevine::wire::message::{AddressRequestMessage, msg_type};
use grapevine::wire::types::RejectionReason;
use support::*;

const T: Duration = Duration::from_secs(15);

fn rejection(m: Option<Message>) -> RejectionReason {
    match m {
        Some(Message::ConnectionRejected(r)) => r.reason_code,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[tokio::test]
async fn handshake_both_ways() {
    let a = start(config(temp_dir("hs-a"), vec![])).await;
    let b = start(config(temp_dir("hs-b"), vec![addr(&a).to_string()])).await;
    assert!(wait_for(&a, T, |p| active(p) == 1).await);
    assert!(wait_for(&b, T, |p| active(p) == 1).await);
    let pa = a.peers().await.unwrap();
    assert_eq!(pa[0].direction, "inbound");
    assert_eq!(
        pa[0].node_id.as_deref(),
        Some(b.node_id.to_string().as_str())
    );
    let pb = b.peers().await.unwrap();
    assert_eq!(pb[0].direction, "outbound");
    assert_eq!(pb[0].endpoint, addr(&a).to_string());
    b.shutdown().await;
    a.shutdown().await;
}

#[tokio::test]
async fn different_chain_is_rejected() {
    let a = start(config(temp_dir("chain"), vec![])).await;
    let mut raw = RawPeer::connect(addr(&a)).await;
    let hello = raw.hello(&"11".repeat(32), random_node_id());
    raw.send(Message::Hello(hello)).await;
    let m = raw.recv_type(msg_type::CONNECTION_REJECTED, T).await;
    assert_eq!(rejection(m), RejectionReason::DifferentChain);
    // Then the node says goodbye.
    assert!(
        raw.recv_type(msg_type::CLOSING_CONNECTION, T)
            .await
            .is_some()
    );
    a.shutdown().await;
}

#[tokio::test]
async fn self_connection_is_rejected() {
    let a = start(config(temp_dir("self"), vec![])).await;
    let mut raw = RawPeer::connect(addr(&a)).await;
    let hello = raw.hello(CHAIN, a.node_id);
    raw.send(Message::Hello(hello)).await;
    let m = raw.recv_type(msg_type::CONNECTION_REJECTED, T).await;
    assert_eq!(rejection(m), RejectionReason::ConnectedToSelf);
    a.shutdown().await;
}

#[tokio::test]
async fn duplicate_node_id_is_rejected() {
    let a = start(config(temp_dir("dup"), vec![])).await;
    let id = random_node_id();
    let mut first = RawPeer::connect(addr(&a)).await;
    let h = first.hello(CHAIN, id);
    first.send(Message::Hello(h)).await;
    assert!(matches!(
        first.recv_type(msg_type::CONNECTION_ACCEPTED, T).await,
        Some(Message::ConnectionAccepted(_))
    ));
    let mut second = RawPeer::connect(addr(&a)).await;
    let h = second.hello(CHAIN, id);
    second.send(Message::Hello(h)).await;
    let m = second.recv_type(msg_type::CONNECTION_REJECTED, T).await;
    assert_eq!(rejection(m), RejectionReason::AlreadyConnected);
    a.shutdown().await;
}

#[tokio::test]
async fn invalid_signature_is_rejected() {
    let a = start(config(temp_dir("sig"), vec![])).await;
    let mut raw = RawPeer::connect(addr(&a)).await;
    let mut hello = raw.hello(CHAIN, random_node_id());
    hello.signed_shared_secret.0[10] ^= 1;
    raw.send(Message::Hello(hello)).await;
    let m = raw.recv_type(msg_type::CONNECTION_REJECTED, T).await;
    assert_eq!(rejection(m), RejectionReason::InvalidHelloMessage);
    a.shutdown().await;
}

#[tokio::test]
async fn third_node_learns_the_first_through_address_exchange() {
    let a = start(config(temp_dir("addr-a"), vec![])).await;
    let b = start(config(temp_dir("addr-b"), vec![addr(&a).to_string()])).await;
    assert!(wait_for(&b, T, |p| active(p) == 1).await);
    let c = start(config(temp_dir("addr-c"), vec![addr(&b).to_string()])).await;
    let a_ep = addr(&a).to_string();
    assert!(
        wait_for(&c, T, |p| p
            .iter()
            .any(|x| x.state == "active" && x.endpoint == a_ep))
        .await,
        "c connects to a, which it only heard of from b"
    );
    for h in [c, b, a] {
        h.shutdown().await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_stops_mid_handshake_is_dropped_after_five_seconds() {
    let a = start(config(temp_dir("stall"), vec![])).await;
    let mut raw = RawPeer::connect(addr(&a)).await;
    // Key exchange done, no hello: the node must give up after 5 s of silence.
    let started = tokio::time::Instant::now();
    let got = raw.recv(Duration::from_secs(60)).await;
    let waited = started.elapsed();
    // The node's own hello arrives first; after that, silence until the socket closes.
    assert!(matches!(got, Some(Message::Hello(_))), "{got:?}");
    let end = raw.recv(Duration::from_secs(60)).await;
    let waited_total = started.elapsed();
    assert!(end.is_none(), "socket closed, got {end:?}");
    assert!(waited < Duration::from_secs(1));
    assert!(
        waited_total >= Duration::from_secs(5) && waited_total < Duration::from_secs(8),
        "dropped after {waited_total:?}"
    );
    a.shutdown().await;
}

#[tokio::test]
async fn closing_handshake_both_ways() {
    // b closes: a sees the closing message and drops the connection at once.
    let a = start(config(temp_dir("close-a"), vec![])).await;
    let b = start(config(temp_dir("close-b"), vec![addr(&a).to_string()])).await;
    assert!(wait_for(&a, T, |p| active(p) == 1).await);
    b.shutdown().await;
    assert!(
        wait_for(&a, Duration::from_secs(3), |p| p.is_empty()).await,
        "a closed its side well before the 20 s timeout"
    );
    // And a raw peer that says goodbye is closed on at once.
    let mut raw = RawPeer::connect(addr(&a)).await;
    let h = raw.hello(CHAIN, random_node_id());
    raw.send(Message::Hello(h)).await;
    raw.recv_type(msg_type::CONNECTION_ACCEPTED, T)
        .await
        .unwrap();
    raw.send(Message::ClosingConnection(
        grapevine::wire::message::ClosingConnectionMessage {
            reason_for_closing: "bye".into(),
            closing_due_to_error: false,
            error: None,
        },
    ))
    .await;
    // Drain until the node closes the socket.
    while raw.recv(Duration::from_secs(3)).await.is_some() {}
    assert!(wait_for(&a, Duration::from_secs(3), |p| p.is_empty()).await);
    a.shutdown().await;
}

#[tokio::test]
async fn restart_with_the_same_data_directory_reconnects_without_seeds() {
    let a = start(config(temp_dir("restart-a"), vec![])).await;
    let dir_b = temp_dir("restart-b");
    let b = start(config(dir_b.clone(), vec![addr(&a).to_string()])).await;
    assert!(wait_for(&b, T, |p| active(p) == 1).await);
    b.shutdown().await;
    assert!(wait_for(&a, T, |p| p.is_empty()).await);
    let b = start(config(dir_b, vec![])).await;
    assert!(
        wait_for(&b, T, |p| active(p) == 1).await,
        "reconnected from the saved peer database"
    );
    b.shutdown().await;
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_holds_and_rejected_dialers_get_addresses() {
    let mut cfg = config(temp_dir("max"), vec![]);
    cfg.node.max_connections = 8;
    cfg.node.desired_connections = 8;
    let a = start(cfg).await;
    let target = addr(&a);
    let mut tasks = Vec::new();
    for _ in 0..30 {
        tasks.push(tokio::spawn(async move {
            let mut raw = RawPeer::connect(target).await;
            let h = raw.hello(CHAIN, random_node_id());
            raw.send(Message::Hello(h)).await;
            // Whatever the answer, ask for addresses, as a real node does.
            let answer = loop {
                match raw.recv(T).await {
                    Some(m @ (Message::ConnectionAccepted(_) | Message::ConnectionRejected(_))) => {
                        break m;
                    }
                    Some(_) => continue,
                    None => panic!("closed before answering the hello"),
                }
            };
            raw.send(Message::AddressRequest(AddressRequestMessage {}))
                .await;
            let addresses = raw.recv_type(msg_type::ADDRESS, T).await;
            assert!(
                addresses.is_some(),
                "every dialer receives an address_message"
            );
            (matches!(answer, Message::ConnectionAccepted(_)), raw)
        }));
    }
    // While they connect, the node never has more than 8 active connections.
    let watcher = {
        let mut max_seen = 0;
        for _ in 0..20 {
            if let Some(info) = a.info().await {
                max_seen = max_seen.max(info.connections.active);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        max_seen
    };
    let mut accepted = 0;
    let mut keep = Vec::new();
    for t in tasks {
        let (ok, raw) = t.await.unwrap();
        accepted += usize::from(ok);
        keep.push(raw);
    }
    assert!(watcher <= 8);
    assert_eq!(accepted, 8, "exactly max_connections hellos accepted");
    let info = a.info().await.unwrap();
    assert!(info.connections.active <= 8);
    a.shutdown().await;
}

/// The chain id has one source: an application serving another chain than the configured one
/// is refused at start, before anything listens.
#[tokio::test]
async fn an_application_for_another_chain_is_refused_at_start() {
    use grapevine::app::relay_store::RelayStore;
    use grapevine::runtime::{StartError, start_with_delegate};
    use grapevine::wire::types::Sha256;

    let other = Sha256([9; 32]);
    let store = RelayStore::in_memory(other).unwrap();
    let c = config(temp_dir("chain-mismatch"), vec![]);
    match start_with_delegate(c, Box::new(store)).await {
        Err(StartError::ChainMismatch {
            configured,
            application,
        }) => {
            assert_eq!(configured, CHAIN.parse().unwrap());
            assert_eq!(application, other);
        }
        Err(e) => panic!("expected a chain mismatch, got {e}"),
        Ok(_) => panic!("a node for another chain started"),
    }
    // The same application on the configured chain starts.
    let store = RelayStore::in_memory(CHAIN.parse().unwrap()).unwrap();
    let c = config(temp_dir("chain-match"), vec![]);
    let h = start_with_delegate(c, Box::new(store))
        .await
        .expect("starts");
    h.shutdown().await;
}
