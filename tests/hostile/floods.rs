//! Rows: floods of advertisements and items, and items nobody asked for.
//!
//! Each flood runs while the honest witness measures its time-request round trips; the node's
//! memory accounting (`/info`'s `memory`) must stay within the named limits. Figures (round
//! trips, rates, CPU) are printed for the record (`--nocapture`), never asserted: the machine
//! is shared.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use grapevine::node::MemoryAccounting;
use grapevine::node::config::*;
use grapevine::runtime::NodeHandle;
use grapevine::wire::Message;
use grapevine::wire::message::{
    BlockchainItemIdsInventoryMessage, ItemId, ItemIdsInventoryMessage, ItemNotAvailableMessage,
    message_hash, msg_type,
};
use grapevine::wire::types::{ItemHash, Ripemd160};

use crate::common::*;
use crate::support::*;

/// Ids per advertisement in the floods (a real node sends at most a few thousand).
const IDS_PER_MESSAGE: usize = 1000;

/// Distinct pseudo-random item hashes: `count` of them from `seed`.
fn hashes(seed: u64, count: usize) -> Vec<ItemHash> {
    let mut x = seed | 1;
    (0..count)
        .map(|_| {
            let mut h = [0u8; 20];
            for chunk in h.chunks_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
            }
            Ripemd160(h)
        })
        .collect()
}

/// A valid transaction, distinct per `i`, expiring far in the future.
fn trx(i: u32) -> Vec<u8> {
    static BASE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let base = BASE.get_or_init(|| {
        let v: serde_json::Value =
            serde_json::from_str(include_str!("../vectors/messages.json")).unwrap();
        hex::decode(v["messages"][0]["data_hex"].as_str().unwrap()).unwrap()
    });
    let mut data = base.clone();
    data[2..6].copy_from_slice(&i.to_le_bytes());
    data[6..10].copy_from_slice(&4_000_000_000u32.to_le_bytes());
    data
}

async fn memory(node: &NodeHandle) -> MemoryAccounting {
    node.info().await.expect("the node answers").memory
}

/// Every table within its named limit.
fn assert_bounded(m: &MemoryAccounting) {
    assert!(
        m.queued_bytes_max_peer <= MAX_QUEUED_BYTES_PER_PEER,
        "{m:?}"
    );
    assert!(
        m.inventory_from_peers_max_peer <= MAX_INVENTORY_PER_PEER,
        "{m:?}"
    );
    assert!(
        m.inventory_to_peers_max_peer <= MAX_INVENTORY_PER_PEER,
        "{m:?}"
    );
    assert!(
        m.items_to_fetch + m.items_requested <= MAX_ITEMS_TO_FETCH,
        "{m:?}"
    );
    assert!(m.serve_queue_max_peer <= MAX_SERVE_QUEUE, "{m:?}");
    assert!(m.recently_failed <= MAX_RECENTLY_FAILED, "{m:?}");
    assert!(
        m.sync_blocks_buffered <= MAX_SYNC_BLOCKS_TO_PREFETCH,
        "{m:?}"
    );
    assert!(m.sync_bytes_buffered <= MAX_SYNC_BYTES_BUFFERED, "{m:?}");
}

/// This process's resident memory in KiB (the node runs in it).
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// CPU time this process has used (user + system), from /proc/self/stat.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at field 3.
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15: indexes 11 and 12 here. Linux reports them in
    // USER_HZ, 100 on every architecture it runs on.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// Measures the witness's round trips until `done` resolves; returns the largest, how many,
/// and `done`'s output. Each round trip runs to its reply, so none is left unread.
async fn round_trips_until<F: std::future::Future>(
    w: &mut Witness,
    done: F,
) -> (Duration, usize, F::Output) {
    tokio::pin!(done);
    let mut worst = Duration::ZERO;
    let mut count = 0;
    loop {
        // A zero timeout polls `done` once.
        if let Ok(out) = tokio::time::timeout(Duration::ZERO, &mut done).await {
            return (worst, count, out);
        }
        let rtt = w.round_trip(T).await;
        let rtt = rtt.expect("the witness's time request is answered");
        if rtt > Duration::from_millis(50) {
            eprintln!(
                "slow round trip {rtt:?} at {:?}",
                std::time::SystemTime::now()
            );
        }
        worst = worst.max(rtt);
        count += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Messages in the inventory flood: 120 fill the per-peer limit for transactions, and each of
/// the 9 past it scores the address 10 (`WEIGHT_INVENTORY_FLOOD`), staying under the ban
/// threshold so the flooder is still there when the limit is checked. (With 10 or more past
/// it, the ban may land before the test looks: the runtime hands the node up to
/// `MAX_MESSAGES_PER_EVENT` messages in one turn.)
const INVENTORY_FLOOD_MESSAGES: usize = 129;

/// Row: a peer sends 129 item_ids_inventory messages of 1,000 new transaction ids each, as
/// fast as it can. The node remembers at most its inventory limit of them, keeps every table
/// bounded, and the witness's time requests are answered in under 200 ms throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inventory_flood_is_bounded_and_the_witness_stays_served() {
    let _heavy = HEAVY.lock().await;
    let node = quiet_node("inventory-flood").await;
    let mut w = witness(&node).await;
    let mut hostile = RawPeer::connect_from(addr(&node), HOSTILE_IP).await;
    hostile.activate(CHAIN).await;
    let rss_before = rss_kib();
    let ids = hashes(0x5eed, INVENTORY_FLOOD_MESSAGES * IDS_PER_MESSAGE);
    let flood = tokio::spawn(async move {
        let started = Instant::now();
        for chunk in ids.chunks(IDS_PER_MESSAGE) {
            hostile
                .send(Message::ItemIdsInventory(ItemIdsInventoryMessage {
                    item_type: msg_type::TRX,
                    item_hashes_available: chunk.to_vec(),
                }))
                .await;
        }
        (hostile, started.elapsed())
    });
    let (worst, count, flood) = round_trips_until(&mut w, flood).await;
    let (_hostile, sent_in) = flood.unwrap();
    // The node read it all: the inventory stops at the limit for transactions.
    let deadline = Instant::now() + T;
    let m = loop {
        let m = memory(&node).await;
        assert_bounded(&m);
        if m.inventory_from_peers_max_peer >= MAX_TRX_INVENTORY_PER_PEER {
            break m;
        }
        assert!(Instant::now() < deadline, "the flood was not read: {m:?}");
        assert_served(&mut w).await;
    };
    let rss_after = rss_kib();
    println!(
        "inventory flood: {INVENTORY_FLOOD_MESSAGES} x {IDS_PER_MESSAGE} ids sent in \
         {sent_in:?}; witness round \
         trips {count}, worst {worst:?}; rss +{} KiB; {m:?}",
        rss_after.saturating_sub(rss_before)
    );
    assert!(count > 0, "the witness measured during the flood");
    assert!(worst < SERVED_WITHIN, "worst round trip {worst:?}");
    assert_eq!(m.inventory_from_peers_max_peer, MAX_TRX_INVENTORY_PER_PEER);
    assert_eq!(
        m.connections.active, 2,
        "9 messages past the limit do not ban"
    );
    assert_eq!(
        m.items_to_fetch + m.items_requested,
        MAX_TRX_INVENTORY_PER_PEER,
        "every remembered id is wanted once"
    );
    assert_served(&mut w).await;
    node.shutdown().await;
}

/// Row: a peer floods the node with 300,000 small messages of a type it ignores (5050, 100
/// bytes each), written in 64 KiB pieces as fast as it can. The node reads them all (up to
/// `MAX_MESSAGES_PER_EVENT` per turn, one turn per connection in turn), the witness's time
/// requests are answered in under 200 ms throughout, and the flooder is still served after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_small_messages_leaves_the_witness_served() {
    const COUNT: usize = 300_000;
    let _heavy = HEAVY.lock().await;
    let node = quiet_node("small-flood").await;
    let mut w = witness(&node).await;
    let mut hostile = RawPeer::connect_from(addr(&node), HOSTILE_IP).await;
    hostile.activate(CHAIN).await;
    hostile.answer_sync().await;
    let flood = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let started = Instant::now();
        let message = Message::Unknown {
            msg_type: 5050,
            data: vec![0x42; 100],
        };
        let mut sent = 0;
        while sent < COUNT {
            let mut piece = bytes::BytesMut::new();
            while piece.len() < 64 * 1024 && sent < COUNT {
                hostile.channel.send(&message, &mut piece).unwrap();
                sent += 1;
            }
            hostile.stream.write_all(&piece).await.unwrap();
        }
        (hostile, started.elapsed())
    });
    let (worst, count, flood) = round_trips_until(&mut w, flood).await;
    let (mut hostile, sent_in) = flood.unwrap();
    // Everything before it read: its own time request is answered after the flood.
    let rtt = hostile.time_round_trip(T).await;
    println!(
        "small-message flood: {COUNT} x 100 B sent in {sent_in:?}; witness round trips \
         {count}, worst {worst:?}; the flooder's round trip after it {rtt:?}"
    );
    assert!(
        rtt.is_some(),
        "the flood was read and the flooder is still served"
    );
    assert!(count > 0, "the witness measured during the flood");
    assert!(worst < SERVED_WITHIN, "worst round trip {worst:?}");
    assert_served(&mut w).await;
    let m = memory(&node).await;
    assert_bounded(&m);
    assert_eq!(m.connections.active, 2, "{m:?}");
    node.shutdown().await;
}

/// Row: block-id inventories nobody asked for (200 of 1,000 ids, then one of 100,000 ids,
/// near the 2 MiB message limit). The reference logs and ignores them ("received a list of
/// sync items available from peer, but I didn't ask for any"); so does the node: the sender
/// stays connected, nothing is queued for sync, and the witness is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unrequested_block_id_inventories_are_ignored() {
    let _heavy = HEAVY.lock().await;
    let node = quiet_node("block-ids-flood").await;
    let mut w = witness(&node).await;
    let mut hostile = RawPeer::connect_from(addr(&node), HOSTILE_IP).await;
    hostile.activate(CHAIN).await;
    // Its one sync request answered, anything more is unrequested.
    hostile.answer_sync().await;
    let flood = tokio::spawn(async move {
        let mut batches: Vec<Vec<ItemHash>> = hashes(0xb10c, 200 * IDS_PER_MESSAGE)
            .chunks(IDS_PER_MESSAGE)
            .map(<[ItemHash]>::to_vec)
            .collect();
        batches.push(hashes(0x1d5, 100_000));
        for ids in batches {
            hostile
                .send(Message::BlockchainItemIdsInventory(
                    BlockchainItemIdsInventoryMessage {
                        total_remaining_item_count: 1_000_000,
                        item_type: msg_type::BLOCK,
                        item_hashes_available: ids,
                    },
                ))
                .await;
        }
        hostile
    });
    let (worst, count, hostile) = round_trips_until(&mut w, flood).await;
    let mut hostile = hostile.unwrap();
    println!("block-id inventory flood: witness round trips {count}, worst {worst:?}");
    assert!(worst < SERVED_WITHIN, "worst round trip {worst:?}");
    // Still connected and answered: the flood was read and ignored.
    assert!(hostile.time_round_trip(T).await.is_some());
    let m = memory(&node).await;
    assert_bounded(&m);
    assert_eq!(m.sync_ids_queued, 0, "{m:?}");
    assert_eq!(m.connections.active, 2, "{m:?}");
    assert_served(&mut w).await;
    node.shutdown().await;
}

/// Row: a peer advertises 25,000 transactions and serves them. The node fetches every one
/// (one at a time from that peer, as the reference does), the witness stays served, and the
/// rate and CPU per fetched id are printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn advertised_ids_are_all_fetched_while_the_witness_is_served() {
    let _heavy = HEAVY.lock().await;
    const COUNT: u32 = 25_000;
    let node = quiet_node("fetch-25000").await;
    let mut w = witness(&node).await;
    let mut server = RawPeer::connect_from(addr(&node), HOSTILE_IP).await;
    server.activate(CHAIN).await;
    server.answer_sync().await;
    let items: HashMap<ItemHash, Vec<u8>> =
        (0..COUNT).map(trx).map(|t| (message_hash(&t), t)).collect();
    let ids: Vec<ItemHash> = items.keys().copied().collect();
    let cpu_before = cpu_time();
    let started = Instant::now();
    let serving = tokio::spawn(async move {
        for chunk in ids.chunks(IDS_PER_MESSAGE) {
            server
                .send(Message::ItemIdsInventory(ItemIdsInventoryMessage {
                    item_type: msg_type::TRX,
                    item_hashes_available: chunk.to_vec(),
                }))
                .await;
        }
        let mut served = 0usize;
        let mut most_in_one_request = 0usize;
        while let Some(m) = server.recv(T).await {
            match m {
                Message::FetchItems(f) => {
                    most_in_one_request = most_in_one_request.max(f.items_to_fetch.len());
                    for h in f.items_to_fetch {
                        let reply = match items.get(&h) {
                            Some(t) => Message::Trx(t.clone()),
                            None => Message::ItemNotAvailable(ItemNotAvailableMessage {
                                requested_item: ItemId {
                                    item_type: f.item_type,
                                    item_hash: h,
                                },
                            }),
                        };
                        server.send(reply).await;
                        served += 1;
                    }
                    if served == items.len() {
                        break;
                    }
                }
                Message::CurrentTimeRequest(_) => {
                    server
                        .send(Message::CurrentTimeReply(
                            grapevine::wire::message::CurrentTimeReplyMessage {
                                request_sent_time: grapevine::wire::types::TimePoint(0),
                                request_received_time: grapevine::wire::types::TimePoint(0),
                                reply_transmitted_time: grapevine::wire::types::TimePoint(0),
                            },
                        ))
                        .await;
                }
                _ => {}
            }
        }
        (server, served, most_in_one_request)
    });
    let all_fetched = async {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let info = node.info().await.expect("the node answers");
            assert_bounded(&info.memory);
            if info.items_received >= u64::from(COUNT)
                && info.memory.items_to_fetch + info.memory.items_requested == 0
            {
                return info;
            }
            assert!(
                Instant::now() < deadline,
                "not all fetched: {} of {COUNT}; {:?}",
                info.items_received,
                info.memory
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let (worst, count, info) = round_trips_until(&mut w, all_fetched).await;
    let took = started.elapsed();
    let cpu = cpu_time().saturating_sub(cpu_before);
    let (_server, served, most) = serving.await.unwrap();
    println!(
        "fetch {COUNT}: {:.0} ids/s ({took:?}); process CPU {cpu:?} = {:.3} ms per id \
         (node and the serving test peer together); witness round trips {count}, worst \
         {worst:?}; largest fetch_items {most}",
        f64::from(COUNT) / took.as_secs_f64(),
        cpu.as_secs_f64() * 1000.0 / f64::from(COUNT),
    );
    assert_eq!(served, COUNT as usize, "each id asked for once");
    assert_eq!(info.items_received, u64::from(COUNT));
    assert_eq!(info.duplicate_items_received, 0);
    assert!(
        most <= MAX_ITEMS_PER_PEER_PER_PASS,
        "at most {most} at once"
    );
    assert!(worst < SERVED_WITHIN, "worst round trip {worst:?}");
    for t in [0, COUNT / 2, COUNT - 1] {
        assert!(node.get_item(message_hash(&trx(t))).await.is_some());
    }
    node.shutdown().await;
}

/// Row: a transaction or a block nobody asked for. The reference disconnects the sender
/// ("You sent me a message that I didn't request" / "…a block that I didn't ask for"); so
/// does the node. The witness is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unrequested_items_disconnect_the_sender() {
    let node = quiet_node("unrequested-items").await;
    let mut w = witness(&node).await;
    let block =
        grapevine::app::relay_store::make_test_chain(Ripemd160::default(), 1, 1_600_000_000)
            .remove(0);
    for (item, reason) in [
        (
            Message::Trx(trx(1)),
            "You sent me a message that I didn't request",
        ),
        (
            Message::Block(block),
            "You sent me a block that I didn't ask for",
        ),
    ] {
        let mut hostile = RawPeer::connect_from(addr(&node), HOSTILE_IP).await;
        hostile.activate(CHAIN).await;
        hostile.answer_sync().await;
        hostile.send(item).await;
        let closing = hostile.recv_type(msg_type::CLOSING_CONNECTION, T).await;
        let Some(Message::ClosingConnection(c)) = closing else {
            panic!("the sender is disconnected ({reason})");
        };
        assert_eq!(c.reason_for_closing, reason);
        assert!(c.closing_due_to_error);
        // Nothing more is read from it: its time request goes unanswered.
        assert!(
            hostile
                .time_round_trip(Duration::from_millis(500))
                .await
                .is_none()
        );
        assert_served(&mut w).await;
    }
    // Neither was taken.
    assert!(node.get_item(message_hash(&trx(1))).await.is_none());
    assert_eq!(node.info().await.unwrap().head_block_number, 0);
    node.shutdown().await;
}

/// Row: item_not_available for items never requested. The reference logs it as harmless
/// ("we weren't looking for it") and carries on; so does the node, and it still fetches an
/// item the same peer advertised and serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item_not_available_for_unrequested_items_is_ignored() {
    let node = quiet_node("not-available").await;
    let mut w = witness(&node).await;
    let mut hostile = RawPeer::connect_from(addr(&node), HOSTILE_IP).await;
    hostile.activate(CHAIN).await;
    hostile.answer_sync().await;
    for h in hashes(0xa7, 1000) {
        hostile
            .send(Message::ItemNotAvailable(ItemNotAvailableMessage {
                requested_item: ItemId {
                    item_type: msg_type::TRX,
                    item_hash: h,
                },
            }))
            .await;
    }
    assert!(
        hostile.time_round_trip(T).await.is_some(),
        "still connected"
    );
    assert_served(&mut w).await;
    // The same peer advertises a real item: it is asked for it as usual.
    let t = trx(5);
    hostile
        .send(Message::ItemIdsInventory(ItemIdsInventoryMessage {
            item_type: msg_type::TRX,
            item_hashes_available: vec![message_hash(&t)],
        }))
        .await;
    let Some(Message::FetchItems(f)) = hostile.recv_type(msg_type::FETCH_ITEMS, T).await else {
        panic!("the node asks for the advertised item");
    };
    assert_eq!(f.items_to_fetch, vec![message_hash(&t)]);
    hostile.send(Message::Trx(t.clone())).await;
    let deadline = Instant::now() + T;
    while node.get_item(message_hash(&t)).await.is_none() {
        assert!(Instant::now() < deadline, "the item was taken");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let m = memory(&node).await;
    assert_eq!((m.items_to_fetch, m.items_requested), (0, 0), "{m:?}");
    node.shutdown().await;
}
