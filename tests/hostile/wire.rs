//! Rows: bytes that are not the protocol (key exchange and framing).

use std::time::Duration;

use grapevine::wire::frame::MAX_MESSAGE_SIZE;
use grapevine::wire::message::msg_type;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;
use crate::support::*;

/// A bad byte stream is a protocol error: the node closes at once, long before any timeout.
const CLOSED_AT_ONCE: Duration = Duration::from_secs(2);

/// Whether the node closed `stream` within `limit` (anything it sends first is read and
/// dropped).
async fn closes(stream: &mut tokio::net::TcpStream, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// Row: 33 bytes that are not a secp256k1 point.
#[tokio::test]
async fn key_that_is_not_a_curve_point() {
    let node = quiet_node("not-a-point").await;
    let mut w = witness(&node).await;
    let mut s = connect_from(addr(&node), HOSTILE_IP).await.unwrap();
    // 0x05 is no compressed-point prefix; x = all ones is not on the curve either way.
    let mut key = [0xffu8; 33];
    key[0] = 0x05;
    s.write_all(&key).await.unwrap();
    assert!(closes(&mut s, CLOSED_AT_ONCE).await, "closed at once");
    assert_served(&mut w).await;
    node.shutdown().await;
}

/// Row: a valid key, then random bytes (they decrypt to a header no node would send).
#[tokio::test]
async fn valid_key_then_random_bytes() {
    let node = quiet_node("random-bytes").await;
    let mut w = witness(&node).await;
    let mut raw = RawPeer::connect_from(addr(&node), HOSTILE_IP).await;
    let mut junk = vec![0u8; 4096];
    getrandom::fill(&mut junk).unwrap();
    // A socket may see the close while it is still writing; that is the node's answer too.
    let _ = raw.stream.write_all(&junk).await;
    assert!(raw.closed_within(CLOSED_AT_ONCE).await, "closed at once");
    assert_served(&mut w).await;
    node.shutdown().await;
}

/// Row: a header declaring MAX_MESSAGE_SIZE + 1 bytes is refused on its 8 bytes, before the
/// node allocates anything for the body.
#[tokio::test]
async fn header_declaring_too_large_a_message() {
    let node = quiet_node("too-large").await;
    let mut w = witness(&node).await;
    let mut raw = RawPeer::connect_from(addr(&node), HOSTILE_IP).await;
    let keys = raw.channel.session_keys().unwrap().clone();
    // The first encrypted block: size = 2 MiB + 1, type = hello, 8 bytes of padding.
    let mut block = [0u8; 16];
    block[..4].copy_from_slice(&(MAX_MESSAGE_SIZE as u32 + 1).to_le_bytes());
    block[4..8].copy_from_slice(&msg_type::HELLO.to_le_bytes());
    keys.encryptor().apply(&mut block).unwrap();
    raw.stream.write_all(&block).await.unwrap();
    assert!(
        raw.closed_within(CLOSED_AT_ONCE).await,
        "closed on the header"
    );
    assert_served(&mut w).await;
    node.shutdown().await;
}

/// Row: a frame whose data does not decode as its type (a hello of three bytes).
#[tokio::test]
async fn frame_that_does_not_decode_as_its_type() {
    let node = quiet_node("bad-data").await;
    let mut w = witness(&node).await;
    let mut raw = RawPeer::connect_from(addr(&node), HOSTILE_IP).await;
    raw.send_raw(msg_type::HELLO, &[0xff, 0xff, 0xff]).await;
    assert!(raw.closed_within(CLOSED_AT_ONCE).await, "closed at once");
    assert_served(&mut w).await;
    node.shutdown().await;
}
