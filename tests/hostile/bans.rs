//! Rows: peers that misbehave past the ban threshold. Their address is banned: its
//! connections are closed, its new sockets are closed at accept (before the key exchange, so a
//! banned address costs no curve arithmetic), the ban outlives a restart and the operator can
//! lift it over HTTP. An honest witness from another address is served throughout.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use grapevine::runtime::NodeHandle;
use grapevine::wire::Message;
use grapevine::wire::types::CompactSignatureBytes;
use tokio::io::AsyncReadExt;

use crate::common::*;
use crate::support::*;

/// How soon a banned address's new socket must be closed.
const CLOSED_AT_ONCE: Duration = Duration::from_secs(1);

/// Bytes that frame correctly but do not decode: a "hello" of three bytes.
fn undecodable() -> Message {
    Message::Unknown {
        msg_type: grapevine::wire::message::msg_type::HELLO,
        data: vec![0xff; 3],
    }
}

/// Waits until the node reports `ip` banned; its ban's reason.
async fn wait_banned(node: &NodeHandle, ip: Ipv4Addr) -> String {
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let report = node.bans().await.expect("node answers");
        if let Some(b) = report.bans.iter().find(|b| b.ip == ip) {
            return b.reason.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{ip} not banned: {report:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether a new socket from `ip` is closed by the node before it says anything (not even its
/// key-exchange key).
async fn closed_at_accept(node: SocketAddr, ip: Ipv4Addr) -> bool {
    let Ok(mut s) = connect_from(node, ip).await else {
        return true;
    };
    let mut buf = [0u8; 64];
    match tokio::time::timeout(CLOSED_AT_ONCE, s.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(_)) | Err(_) => false,
    }
}

/// A hello whose signature covers another secret than this connection's.
async fn send_forged_hello(peer: &mut RawPeer) {
    let mut h = peer.hello(CHAIN, random_node_id());
    h.signed_shared_secret = CompactSignatureBytes(peer.key.sign_compact(&[9; 32]));
    peer.send(Message::Hello(h)).await;
}

/// Row: undecodable messages after the key exchange, from two connections, ban the address;
/// an active connection from the same address is closed with it.
#[tokio::test]
async fn garbage_after_the_key_exchange_gets_the_address_banned() {
    let node = quiet_node("ban-garbage").await;
    let mut w = witness(&node).await;
    let mut bystander = RawPeer::connect_from(addr(&node), HOSTILE_IP).await;
    bystander.activate(CHAIN).await;
    assert!(
        !closed_at_accept(addr(&node), HOSTILE_IP).await,
        "not banned before"
    );
    for round in 0..2 {
        let mut hostile = RawPeer::connect_from(addr(&node), HOSTILE_IP).await;
        hostile.send(undecodable()).await;
        assert!(hostile.closed_within(T).await, "round {round}: dropped");
    }
    assert_eq!(wait_banned(&node, HOSTILE_IP).await, "undecodable");
    assert!(
        bystander.closed_within(T).await,
        "the address's other connection is closed"
    );
    assert!(closed_at_accept(addr(&node), HOSTILE_IP).await);
    assert_served(&mut w).await;
    let report = node.bans().await.unwrap();
    assert_eq!(report.violations["undecodable"], 2);
    assert!(report.refused_connections >= 1);
    let peers = node.peers().await.unwrap();
    assert!(peers.iter().all(|p| p.misbehaviour_score == 0), "{peers:?}");
    node.shutdown().await;
}

/// Row: a forged hello signature bans at once, and the ban survives a restart.
#[tokio::test]
async fn a_forged_hello_is_banned_and_the_ban_survives_a_restart() {
    let dir = temp_dir("ban-restart");
    let mut c = config(dir.clone(), vec![]);
    c.node.connect_to_new_peers = false;
    let node = start(c.clone()).await;
    let mut hostile = RawPeer::connect_from(addr(&node), HOSTILE_IP).await;
    send_forged_hello(&mut hostile).await;
    assert!(hostile.closed_within(T).await);
    assert_eq!(
        wait_banned(&node, HOSTILE_IP).await,
        "invalid_hello_signature"
    );
    node.shutdown().await;

    let node = start(c).await;
    let mut w = witness(&node).await;
    assert_eq!(
        wait_banned(&node, HOSTILE_IP).await,
        "invalid_hello_signature"
    );
    assert!(closed_at_accept(addr(&node), HOSTILE_IP).await);
    assert_served(&mut w).await;
    node.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Row: `DELETE /bans/{ip}` over HTTP lifts a ban; the address connects again.
#[tokio::test]
async fn delete_over_http_lifts_a_ban() {
    let node = quiet_node("ban-delete").await;
    let api = grapevine::api::serve("127.0.0.1:0".parse().unwrap(), node.controller())
        .await
        .unwrap();
    let mut hostile = RawPeer::connect_from(addr(&node), HOSTILE_IP).await;
    send_forged_hello(&mut hostile).await;
    wait_banned(&node, HOSTILE_IP).await;
    let http = move |method: &'static str, path: String| {
        tokio::task::spawn_blocking(move || match method {
            "GET" => grapevine::cli::status::get_json(api, &path),
            _ => grapevine::cli::status::delete_json(api, &path),
        })
    };
    let listed = http("GET", "/bans".into()).await.unwrap().unwrap();
    let bans = listed.as_array().unwrap();
    assert_eq!(bans.len(), 1);
    assert_eq!(bans[0]["ip"], "127.0.0.3");
    assert_eq!(bans[0]["reason"], "invalid_hello_signature");
    assert_eq!(bans[0]["score"], 100);
    assert!(bans[0]["since"].is_string() && bans[0]["until"].is_string());
    let metrics = tokio::task::spawn_blocking(move || metrics_text(api))
        .await
        .unwrap();
    assert!(
        metrics.contains("grapevine_banned_addresses 1"),
        "{metrics}"
    );
    assert!(metrics.contains("grapevine_violations_total{class=\"invalid_hello_signature\"} 1"));

    let answer = http("DELETE", "/bans/127.0.0.3".into()).await.unwrap();
    assert_eq!(answer.unwrap()["status"], "unbanned");
    let again = http("DELETE", "/bans/127.0.0.3".into()).await.unwrap();
    assert!(again.is_err(), "a second DELETE finds no ban");
    let listed = http("GET", "/bans".into()).await.unwrap().unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 0);
    // The address is welcome again.
    let mut back = RawPeer::connect_from(addr(&node), HOSTILE_IP).await;
    back.activate(CHAIN).await;
    assert!(back.time_round_trip(T).await.is_some());
    node.shutdown().await;
}

/// The API's Prometheus text.
fn metrics_text(api: SocketAddr) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(api).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {api}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}
