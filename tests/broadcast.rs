//! `POST /broadcast` and `grapevine broadcast` say what the node did with an item, on real
//! sockets: accepted and advertised (200, exit 0), held with the missing parent (202), a
//! duplicate (409), rejected by the application (422); the command exits 1 for all but
//! accepted and 2 for usage errors.

mod support;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use grapevine::app::relay_store::make_test_chain;
use grapevine::node::BroadcastOutcome;
use grapevine::runtime::NodeHandle;
use grapevine::wire::Message;
use grapevine::wire::message::{
    BlockchainItemIdsInventoryMessage, block_id_of, message_hash, msg_type,
};
use grapevine::wire::types::{ItemHash, Ripemd160};
use serde_json::{Value, json};
use support::*;

const T: Duration = Duration::from_secs(10);

/// A valid transaction, distinct per `i`, expiring at `expiration` (unix seconds).
fn trx(i: u32, expiration: u32) -> Vec<u8> {
    let v: Value = serde_json::from_str(include_str!("vectors/messages.json")).unwrap();
    let mut data = hex::decode(v["messages"][0]["data_hex"].as_str().unwrap()).unwrap();
    data[2..6].copy_from_slice(&i.to_le_bytes());
    data[6..10].copy_from_slice(&expiration.to_le_bytes());
    data
}

async fn node_with_api(name: &str) -> (NodeHandle, SocketAddr) {
    let mut c = config(temp_dir(name), vec![]);
    c.node.connect_to_new_peers = false;
    let node = start(c).await;
    let api = grapevine::api::serve("127.0.0.1:0".parse().unwrap(), node.controller())
        .await
        .unwrap();
    (node, api)
}

/// POST /broadcast over HTTP: the status and the JSON answer.
async fn post(api: SocketAddr, msg_type: u32, data: &[u8]) -> (u16, Value) {
    let body = json!({ "type": msg_type, "data": hex::encode(data) });
    tokio::task::spawn_blocking(move || {
        grapevine::cli::status::post_json_any_status(api, "/broadcast", &body)
    })
    .await
    .unwrap()
    .unwrap()
}

/// GET /items/{hash} over HTTP: whether the node serves the item.
async fn served(api: SocketAddr, hash: ItemHash) -> bool {
    tokio::task::spawn_blocking(move || {
        match grapevine::cli::status::get_json(api, &format!("/items/{hash}")) {
            Ok(_) => true,
            Err(e) if e.to_string().contains("answered 404") => false,
            Err(e) => panic!("{e}"),
        }
    })
    .await
    .unwrap()
}

/// A raw peer the node advertises to: active, and caught up (it asked for the blocks after
/// an empty synopsis while the node had none, so the node does not take it for a syncing
/// peer, whom it would not advertise to).
async fn listener(node: &NodeHandle) -> RawPeer {
    let mut raw = RawPeer::connect(addr(node)).await;
    raw.activate(CHAIN).await;
    raw.catch_up().await;
    raw
}

/// The item hashes in the next inventory message the raw peer receives. The node's own sync
/// request is answered as a peer with an empty chain answers it.
async fn next_inventory(raw: &mut RawPeer) -> Vec<ItemHash> {
    loop {
        match raw.recv(T).await {
            Some(Message::ItemIdsInventory(m)) => return m.item_hashes_available,
            Some(Message::FetchBlockchainItemIds(f)) => {
                raw.send(Message::BlockchainItemIdsInventory(
                    BlockchainItemIdsInventoryMessage {
                        total_remaining_item_count: 0,
                        item_type: f.item_type,
                        item_hashes_available: vec![],
                    },
                ))
                .await
            }
            Some(_) => {}
            None => panic!("no inventory"),
        }
    }
}

fn answer(id: ItemHash, outcome: &str, missing_parent: Option<String>) -> Value {
    json!({ "id": id.to_string(), "outcome": outcome, "missing_parent": missing_parent })
}

/// The answer without its `error` text, which is checked apart.
fn shape(v: &Value) -> Value {
    json!({ "id": v["id"], "outcome": v["outcome"], "missing_parent": v["missing_parent"] })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_outcome_has_its_status_and_only_accepted_items_are_heard_of() {
    let (node, api) = node_with_api("broadcast-http").await;
    let mut raw = listener(&node).await;
    let blocks = make_test_chain(Ripemd160::default(), 3, 1_600_000_000);
    let inv: Vec<ItemHash> = blocks.iter().map(|b| message_hash(b)).collect();

    // Block 1: accepted, advertised, served.
    let (status, a) = post(api, msg_type::BLOCK, &blocks[0]).await;
    assert_eq!((status, shape(&a)), (200, answer(inv[0], "accepted", None)));
    assert_eq!(a["error"], Value::Null);
    assert_eq!(next_inventory(&mut raw).await, vec![inv[0]]);
    assert!(served(api, inv[0]).await);

    // Block 3 before block 2: held, naming block 2; not served, not advertised.
    let parent = block_id_of(&blocks[1]).unwrap().to_string();
    let (status, a) = post(api, msg_type::BLOCK, &blocks[2]).await;
    assert_eq!(
        (status, shape(&a)),
        (202, answer(inv[2], "held", Some(parent.clone())))
    );
    assert!(a["error"].as_str().unwrap().contains(&parent), "{a}");
    assert!(!served(api, inv[2]).await);
    // Handed over again it is still held, and still waits for block 2.
    let (status, again) = post(api, msg_type::BLOCK, &blocks[2]).await;
    assert_eq!((status, shape(&again)), (202, shape(&a)));

    // A transaction is accepted; the raw peer hears of it next, and never heard of block 3.
    let t = trx(1, 4_000_000_000);
    let (status, a) = post(api, msg_type::TRX, &t).await;
    assert_eq!(
        (status, shape(&a)),
        (200, answer(message_hash(&t), "accepted", None))
    );
    assert_eq!(next_inventory(&mut raw).await, vec![message_hash(&t)]);

    // Duplicates: 409, for blocks and transactions alike.
    let (status, a) = post(api, msg_type::BLOCK, &blocks[0]).await;
    assert_eq!(
        (status, shape(&a)),
        (409, answer(inv[0], "duplicate", None))
    );
    let (status, a) = post(api, msg_type::TRX, &t).await;
    assert_eq!(
        (status, shape(&a)),
        (409, answer(message_hash(&t), "duplicate", None))
    );

    // Block 2 links block 3: both accepted, advertised and served.
    let (status, a) = post(api, msg_type::BLOCK, &blocks[1]).await;
    assert_eq!((status, shape(&a)), (200, answer(inv[1], "accepted", None)));
    let mut heard = next_inventory(&mut raw).await;
    heard.sort();
    let mut linked = vec![inv[1], inv[2]];
    linked.sort();
    assert_eq!(heard, linked);
    assert!(served(api, inv[2]).await);

    // Rejected by the application: 422 with its reason.
    let expired = trx(2, 1_000);
    let (status, a) = post(api, msg_type::TRX, &expired).await;
    assert_eq!(
        (status, shape(&a)),
        (422, answer(message_hash(&expired), "rejected", None))
    );
    assert_eq!(a["error"], "item not usable: transaction expired");
    let mut forged = make_test_chain(block_id_of(&blocks[2]).unwrap(), 1, 1_600_000_015).remove(0);
    let n = forged.len();
    forged[n - 1] ^= 1;
    let (status, a) = post(api, msg_type::BLOCK, &forged).await;
    assert_eq!(
        (status, shape(&a)),
        (422, answer(message_hash(&forged), "rejected", None))
    );
    assert!(
        a["error"].as_str().unwrap().starts_with("invalid item"),
        "{a}"
    );
    let (status, a) = post(api, msg_type::TRX, &[1, 2, 3]).await;
    assert_eq!((status, a["outcome"].clone()), (422, json!("rejected")));

    // Not an item type: refused before the node sees it.
    let (status, a) = post(api, msg_type::HELLO, &[0]).await;
    assert_eq!(status, 400);
    assert!(a["error"].as_str().unwrap().contains("1000 or 1001"), "{a}");

    // The node-level answer says the same (NodeHandle::broadcast).
    let direct = node.broadcast(msg_type::BLOCK, blocks[2].clone()).await;
    assert_eq!(direct.unwrap().outcome, BroadcastOutcome::Duplicate);
    node.shutdown().await;
}

#[test]
fn outcomes_the_relay_store_cannot_produce_on_demand_have_their_status_too() {
    use grapevine::api::broadcast_status;
    use grapevine::app::DelegateError;
    let local = BroadcastOutcome::Rejected(DelegateError::Local("disk full".into()));
    assert_eq!(broadcast_status(&local).as_u16(), 500);
    assert_eq!(local.name(), "failed");
    let unusable = BroadcastOutcome::Rejected(DelegateError::Unusable("later".into()));
    assert_eq!(broadcast_status(&unusable).as_u16(), 422);
    assert_eq!(
        broadcast_status(&BroadcastOutcome::NotAnItem(5006)).as_u16(),
        400
    );
}

fn grapevine(args: &[String]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_grapevine"))
        .args(args)
        .output()
        .expect("binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

async fn broadcast_cli(api: SocketAddr, msg_type: u32, data: &[u8]) -> (i32, String, String) {
    let args = vec![
        "broadcast".to_string(),
        "--type".into(),
        msg_type.to_string(),
        "--rpc-endpoint".into(),
        api.to_string(),
        hex::encode(data),
    ];
    tokio::task::spawn_blocking(move || grapevine(&args))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_prints_the_answer_and_exits_0_only_when_accepted() {
    let (node, api) = node_with_api("broadcast-cli").await;
    let blocks = make_test_chain(Ripemd160::default(), 3, 1_600_000_000);

    let (code, out, err) = broadcast_cli(api, 1001, &blocks[0]).await;
    assert_eq!(code, 0, "{err}");
    let a: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        shape(&a),
        answer(message_hash(&blocks[0]), "accepted", None)
    );
    assert!(err.is_empty(), "{err}");

    let (code, out, err) = broadcast_cli(api, 1001, &blocks[2]).await;
    assert_eq!(code, 1, "held is not accepted: {out} {err}");
    let a: Value = serde_json::from_str(out.trim()).unwrap();
    let parent = block_id_of(&blocks[1]).unwrap().to_string();
    assert_eq!(
        shape(&a),
        answer(message_hash(&blocks[2]), "held", Some(parent.clone()))
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.starts_with("grapevine: held: ") && err.contains(&parent),
        "{err}"
    );

    let (code, out, _) = broadcast_cli(api, 1001, &blocks[0]).await;
    assert_eq!(code, 1);
    assert!(out.contains("\"duplicate\""), "{out}");

    let (code, out, err) = broadcast_cli(api, 1000, &trx(3, 1_000)).await;
    assert_eq!(code, 1);
    assert!(out.contains("\"rejected\""), "{out}");
    assert!(err.contains("transaction expired"), "{err}");

    // Usage errors stay 2 and print nothing on stdout.
    for (t, data) in [(5006, "00".to_string()), (1000, "zz".to_string())] {
        let args: Vec<String> = ["broadcast", "--type", &t.to_string(), "--rpc-endpoint"]
            .iter()
            .map(|s| s.to_string())
            .chain([api.to_string(), data])
            .collect();
        let (code, out, err) = tokio::task::spawn_blocking(move || grapevine(&args))
            .await
            .unwrap();
        assert_eq!(code, 2, "{out} {err}");
        assert!(out.is_empty());
    }
    node.shutdown().await;
}
