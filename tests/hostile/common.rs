//! What every row of the hostile-peer table shares: a node, an honest witness peer from its
//! own loopback address, and the check that the witness is still served.

use std::net::Ipv4Addr;
use std::time::Duration;

use grapevine::runtime::NodeHandle;

use crate::support::*;

/// A connected peer's time request must be answered within this while the node is attacked.
pub const SERVED_WITHIN: Duration = Duration::from_millis(200);
/// How long a test waits for something that should happen at once.
pub const T: Duration = Duration::from_secs(15);

/// The honest witness connects from here; hostile peers from [`HOSTILE_IP`].
pub const HONEST_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
/// Where hostile peers connect from.
pub const HOSTILE_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);

/// A node on 127.0.0.1 that dials nobody.
pub async fn quiet_node(name: &str) -> NodeHandle {
    let mut c = config(temp_dir(name), vec![]);
    c.node.connect_to_new_peers = false;
    start(c).await
}

/// An honest peer, active on `node`, connected from [`HONEST_IP`].
pub async fn witness(node: &NodeHandle) -> RawPeer {
    let mut w = RawPeer::connect_from(addr(node), HONEST_IP).await;
    w.activate(CHAIN).await;
    w
}

/// Asserts that `witness` is still served: its time request answered within
/// [`SERVED_WITHIN`].
pub async fn assert_served(witness: &mut RawPeer) {
    let rtt = witness.time_round_trip(T).await;
    let rtt = rtt.expect("the witness's time request is answered");
    assert!(
        rtt < SERVED_WITHIN,
        "the witness waited {rtt:?} for its time reply"
    );
}
