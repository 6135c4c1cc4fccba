//! Rows: messages outside the protocol's expectations.

use grapevine::wire::Message;

use crate::common::*;
use crate::support::*;

/// Row: an unknown message type inside 5000-5099 is ignored and the connection stays usable.
#[tokio::test]
async fn unknown_type_5050_is_ignored() {
    let node = quiet_node("unknown-5050").await;
    let mut w = witness(&node).await;
    let mut hostile = RawPeer::connect_from(addr(&node), HOSTILE_IP).await;
    hostile.activate(CHAIN).await;
    hostile
        .send(Message::Unknown {
            msg_type: 5050,
            data: vec![1, 2, 3],
        })
        .await;
    // Still connected and answered.
    assert!(hostile.time_round_trip(T).await.is_some());
    assert_served(&mut w).await;
    node.shutdown().await;
}
