//! Items and sync between nodes on real sockets (127.0.0.1, port 0).

mod support;

use std::time::Duration;

use grapevine::app::relay_store::make_test_chain;
use grapevine::runtime::NodeHandle;
use grapevine::wire::Message;
use grapevine::wire::message::{
    AddressMessage, AddressRequestMessage, ConnectionAcceptedMessage, ItemIdsInventoryMessage,
    message_hash, msg_type,
};
use grapevine::wire::types::{ItemHash, Ripemd160};
use support::*;

const T: Duration = Duration::from_secs(30);

/// A valid transaction, distinct per `i`, expiring far in the future.
fn trx(i: u32) -> Vec<u8> {
    let v: serde_json::Value = serde_json::from_str(include_str!("vectors/messages.json")).unwrap();
    let mut data = hex::decode(v["messages"][0]["data_hex"].as_str().unwrap()).unwrap();
    data[2..6].copy_from_slice(&i.to_le_bytes());
    data[6..10].copy_from_slice(&4_000_000_000u32.to_le_bytes());
    data
}

async fn wait_until<F, Fut>(limit: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if f().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn has(h: &NodeHandle, hash: ItemHash) -> bool {
    h.get_item(hash).await.is_some()
}

async fn head(h: &NodeHandle) -> u32 {
    h.info().await.map_or(0, |i| i.head_block_number)
}

fn quiet(dir: &str, seeds: Vec<String>) -> grapevine::runtime::RuntimeConfig {
    let mut c = config(temp_dir(dir), seeds);
    c.node.connect_to_new_peers = false;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_crosses_a_line_of_three() {
    let a = start(quiet("line-a", vec![])).await;
    let b = start(quiet("line-b", vec![addr(&a).to_string()])).await;
    let c = start(quiet("line-c", vec![addr(&b).to_string()])).await;
    assert!(wait_for(&b, T, |p| active(p) == 2).await);
    let t = trx(1);
    let id = accepted(a.broadcast(msg_type::TRX, t.clone()).await);
    assert_eq!(id, message_hash(&t));
    assert!(wait_until(T, || has(&c, id)).await, "the far end has it");
    assert_eq!(c.get_item(id).await, Some((msg_type::TRX, t)));
    for h in [c, b, a] {
        h.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_nodes_each_receive_every_body_exactly_once() {
    let n = 10;
    let mut nodes: Vec<NodeHandle> = Vec::new();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    for k in 0..n {
        let mut seeds = Vec::new();
        if k > 0 {
            // Each new node joins one random earlier node, and sometimes a second: a random tree
            // plus chords.
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            seeds.push(addr(&nodes[(rng % k as u64) as usize]).to_string());
            if k > 2 && rng.is_multiple_of(3) {
                seeds.push(addr(&nodes[((rng >> 8) % k as u64) as usize]).to_string());
            }
        }
        nodes.push(start(quiet(&format!("graph-{k}"), seeds)).await);
    }
    for h in &nodes[1..] {
        assert!(wait_for(h, T, |p| active(p) >= 1).await);
    }
    let items: Vec<Vec<u8>> = (0..12).map(trx).collect();
    let mut ids = Vec::new();
    for (i, t) in items.iter().enumerate() {
        ids.push(accepted(
            nodes[(i * 7) % n].broadcast(msg_type::TRX, t.clone()).await,
        ));
    }
    for (k, h) in nodes.iter().enumerate() {
        for id in &ids {
            assert!(wait_until(T, || has(h, *id)).await, "node {k} lacks {id}");
        }
    }
    for (k, h) in nodes.iter().enumerate() {
        let info = h.info().await.unwrap();
        assert_eq!(
            info.duplicate_items_received, 0,
            "node {k} received a body twice"
        );
    }
    let total: u64 = {
        let mut t = 0;
        for h in &nodes {
            t += h.info().await.unwrap().items_received;
        }
        t
    };
    assert_eq!(
        total,
        (items.len() * (n - 1)) as u64,
        "one body per node per item"
    );
    for h in nodes {
        h.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_node_syncs_from_two_peers_then_serves_a_fourth() {
    let blocks = make_test_chain(Ripemd160::default(), 2000, 1_600_000_000);
    let a = start(quiet("sync-a", vec![])).await;
    let b = start(quiet("sync-b", vec![])).await;
    for h in [&a, &b] {
        for blk in &blocks {
            accepted(h.broadcast(msg_type::BLOCK, blk.clone()).await);
        }
        // The head reported is the durable one: the last commits complete behind.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while head(h).await != 2000 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(head(h).await, 2000);
    }
    let c = start(quiet(
        "sync-c",
        vec![addr(&a).to_string(), addr(&b).to_string()],
    ))
    .await;
    assert!(
        wait_until(T, || async { head(&c).await == 2000 }).await,
        "c caught up"
    );
    // Both peers served blocks: each sent far more than handshake traffic.
    let peers = c.peers().await.unwrap();
    assert_eq!(peers.len(), 2);
    for p in &peers {
        assert!(
            p.bytes_received > 20_000,
            "{} served only {} bytes",
            p.endpoint,
            p.bytes_received
        );
    }
    let d = start(quiet("sync-d", vec![addr(&c).to_string()])).await;
    assert!(
        wait_until(T, || async { head(&d).await == 2000 }).await,
        "d synced from c"
    );
    assert_eq!(
        d.info().await.unwrap().head_block_id,
        a.info().await.unwrap().head_block_id
    );
    for h in [d, c, b, a] {
        h.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_advertiser_that_never_answers_is_timed_out() {
    let a = start(quiet("silent-a", vec![])).await;
    // A raw peer that completes the handshake, advertises an item, and then ignores requests.
    let mut raw = RawPeer::connect(addr(&a)).await;
    let h = raw.hello(CHAIN, random_node_id());
    raw.send(Message::Hello(h)).await;
    raw.recv_type(msg_type::HELLO, T).await.unwrap();
    raw.send(Message::ConnectionAccepted(ConnectionAcceptedMessage {}))
        .await;
    raw.recv_type(msg_type::CONNECTION_ACCEPTED, T)
        .await
        .unwrap();
    raw.send(Message::AddressRequest(AddressRequestMessage {}))
        .await;
    raw.recv_type(msg_type::ADDRESS_REQUEST, T).await.unwrap();
    raw.send(Message::Address(AddressMessage { addresses: vec![] }))
        .await;
    assert!(wait_for(&a, T, |p| active(p) == 1).await);
    // It answers the sync request (it has no blocks): a peer is asked for items only when it
    // has nothing else in flight, as in the reference.
    raw.answer_sync().await;
    let t = trx(99);
    let id = message_hash(&t);
    raw.send(Message::ItemIdsInventory(ItemIdsInventoryMessage {
        item_type: msg_type::TRX,
        item_hashes_available: vec![id],
    }))
    .await;
    assert!(
        raw.recv_type(msg_type::FETCH_ITEMS, T).await.is_some(),
        "a asks the raw peer"
    );
    // An honest node with the item joins and advertises it too.
    let b = start(quiet("silent-b", vec![addr(&a).to_string()])).await;
    assert!(wait_for(&b, T, |p| active(p) == 1).await);
    let asked = tokio::time::Instant::now();
    accepted(b.broadcast(msg_type::TRX, t.clone()).await);
    assert!(wait_until(T, || has(&a, id)).await, "a got it from b");
    let took = asked.elapsed();
    assert!(
        took >= Duration::from_secs(4),
        "only after the raw peer timed out ({took:?})"
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_before_its_parent_is_held_then_accepted() {
    let a = start(quiet("held-a", vec![])).await;
    let b = start(quiet("held-b", vec![addr(&a).to_string()])).await;
    assert!(wait_for(&b, T, |p| active(p) == 1).await);
    let blocks = make_test_chain(Ripemd160::default(), 3, 1_600_000_000);
    accepted(a.broadcast(msg_type::BLOCK, blocks[0].clone()).await);
    assert!(wait_until(T, || async { head(&b).await == 1 }).await);
    // Block 3 reaches b before block 2.
    let held = b.broadcast(msg_type::BLOCK, blocks[2].clone()).await;
    assert_eq!(
        held.unwrap().outcome,
        grapevine::node::BroadcastOutcome::Held {
            missing_parent: grapevine::wire::message::block_id_of(&blocks[1]).unwrap()
        }
    );
    assert_eq!(head(&b).await, 1, "held, not applied");
    accepted(a.broadcast(msg_type::BLOCK, blocks[1].clone()).await);
    assert!(
        wait_until(T, || async { head(&b).await == 3 }).await,
        "applied once the parent came"
    );
    assert_eq!(active(&b.peers().await.unwrap()), 1, "nobody blamed");
    a.shutdown().await;
    b.shutdown().await;
}
