//! What every row of the hostile-peer table shares: a node, an honest witness peer from its
//! own loopback address, and the check that the witness is still served.

use std::net::Ipv4Addr;
use std::time::Duration;

use grapevine::runtime::NodeHandle;
use grapevine::wire::Message;
use grapevine::wire::message::{
    AddressMessage, BlockchainItemIdsInventoryMessage, CurrentTimeReplyMessage,
    CurrentTimeRequestMessage,
};
use grapevine::wire::types::TimePoint;
use tokio::sync::{mpsc, oneshot};

use crate::support::*;

/// A connected peer's time request must be answered within this while the node is attacked.
pub const SERVED_WITHIN: Duration = Duration::from_millis(200);
/// How long a test waits for something that should happen at once.
pub const T: Duration = Duration::from_secs(15);

/// The honest witness connects from here; hostile peers from [`HOSTILE_IP`].
pub const HONEST_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
/// Where hostile peers connect from.
pub const HOSTILE_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);

/// Rows that load the machine (floods) hold this, so that on a 2-core machine one row's flood
/// is not measured as another row's stalled witness.
pub static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A node on 127.0.0.1 that dials nobody.
pub async fn quiet_node(name: &str) -> NodeHandle {
    let mut c = config(temp_dir(name), vec![]);
    c.node.connect_to_new_peers = false;
    start(c).await
}

/// An honest peer beside the attack: active on the node from [`HONEST_IP`], answering the
/// node's requests as a node with an empty chain would (time requests, sync requests,
/// address requests) from a task of its own, so it stays connected however long a row lasts.
pub struct Witness {
    pings: mpsc::Sender<oneshot::Sender<Duration>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Witness {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Witness {
    /// The round trip of one time request, or None if the node dropped the witness or did
    /// not answer within `limit`.
    pub async fn round_trip(&self, limit: Duration) -> Option<Duration> {
        let (tx, rx) = oneshot::channel();
        self.pings.send(tx).await.ok()?;
        tokio::time::timeout(limit, rx).await.ok()?.ok()
    }
}

/// Starts a [`Witness`] on `node`.
pub async fn witness(node: &NodeHandle) -> Witness {
    let mut raw = RawPeer::connect_from(addr(node), HONEST_IP).await;
    raw.activate(CHAIN).await;
    let (pings, mut rx) = mpsc::channel::<oneshot::Sender<Duration>>(1);
    let task = tokio::spawn(async move {
        let mut waiting: Option<(std::time::Instant, oneshot::Sender<Duration>)> = None;
        loop {
            tokio::select! {
                ping = rx.recv(), if waiting.is_none() => {
                    let Some(reply) = ping else { return };
                    raw.send(Message::CurrentTimeRequest(CurrentTimeRequestMessage {
                        request_sent_time: TimePoint(0),
                    }))
                    .await;
                    waiting = Some((std::time::Instant::now(), reply));
                }
                m = raw.recv(Duration::from_secs(3600)) => {
                    let Some(m) = m else { return };
                    match m {
                        Message::CurrentTimeReply(_) => {
                            if let Some((at, reply)) = waiting.take() {
                                let _ = reply.send(at.elapsed());
                            }
                        }
                        Message::CurrentTimeRequest(r) => {
                            let now = TimePoint(0);
                            raw.send(Message::CurrentTimeReply(CurrentTimeReplyMessage {
                                request_sent_time: r.request_sent_time,
                                request_received_time: now,
                                reply_transmitted_time: now,
                            }))
                            .await;
                        }
                        Message::FetchBlockchainItemIds(f) => {
                            raw.send(Message::BlockchainItemIdsInventory(
                                BlockchainItemIdsInventoryMessage {
                                    total_remaining_item_count: 0,
                                    item_type: f.item_type,
                                    item_hashes_available: vec![],
                                },
                            ))
                            .await;
                        }
                        Message::AddressRequest(_) => {
                            raw.send(Message::Address(AddressMessage { addresses: vec![] }))
                                .await;
                        }
                        _ => {}
                    }
                }
            }
        }
    });
    Witness { pings, task }
}

/// Asserts that the witness is still served: its time request answered within
/// [`SERVED_WITHIN`].
pub async fn assert_served(witness: &mut Witness) {
    let rtt = witness.round_trip(T).await;
    let rtt = rtt.expect("the witness's time request is answered");
    assert!(
        rtt < SERVED_WITHIN,
        "the witness waited {rtt:?} for its time reply"
    );
}
