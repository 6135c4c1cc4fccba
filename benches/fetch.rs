//! Fetch scheduling cost against the size of the backlog: the sans-IO node core with 100,000
//! transaction ids pending, against the same operations with 100 pending in the same run. Per
//! operation, so a ratio near 1 shows O(1) / O(log n) work per event.
//!
//! Operations, each on node A with two peers (B, C) that advertised every pending id:
//! - `advertise`: a third peer (D, busy) advertises one new id (one application look-up, one
//!   queue insert, one fetch pass that finds every advertiser busy);
//! - `fetch`: B delivers the item it was asked for; A applies it and asks B for the next;
//! - `not_available`: B says it lacks the item it was asked for; A requeues it (the path a
//!   timed-out or closed peer's requests take) and asks B for its next;
//! - `tick`: the once-a-second timer (inactivity scan, bounded expiry, fetch pass).
//!
//! Node A's application is a hash set in memory, so the figures are the node's own work (the
//! relay store's write per transaction is measured by the hostile-table test instead).
//!
//! `cargo bench --bench fetch` prints criterion's figures for each (group, pending) pair, and
//! before them the timer tick's mean and worst over 130 simulated seconds, which include the
//! two-minute expiry of every advertisement (in batches of `MAX_EXPIRED_PER_TICK`).

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group};
use grapevine::app::{BlockOutcome, ChainHead, Delegate, DelegateError};
use grapevine::node::sim::{SimNet, listen_endpoint, test_node_id};
use grapevine::node::{Command, NodeConfig};
use grapevine::peer::PeerId;
use grapevine::store::peer_db::PeerDatabase;
use grapevine::wire::Message;
use grapevine::wire::message::{
    ItemId, ItemIdsInventoryMessage, ItemNotAvailableMessage, message_hash, msg_type,
};
use grapevine::wire::types::{BlockId, ItemHash, Sha256, TimePoint};

const SIZES: [usize; 2] = [100, 100_000];

/// A valid transaction, distinct per `i`, expiring far in the future.
fn trx(i: u32) -> Vec<u8> {
    static BASE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let base = BASE.get_or_init(|| {
        let v: serde_json::Value =
            serde_json::from_str(include_str!("../tests/vectors/messages.json")).expect("json");
        hex::decode(v["messages"][0]["data_hex"].as_str().expect("hex")).expect("hex")
    });
    let mut data = base.clone();
    data[2..6].copy_from_slice(&i.to_le_bytes());
    data[6..10].copy_from_slice(&4_000_000_000u32.to_le_bytes());
    data
}

/// An application that keeps transaction hashes in a set and nothing else.
struct MemApp {
    chain_id: Sha256,
    trxs: std::collections::HashSet<ItemHash>,
}

impl Delegate for MemApp {
    fn chain_id(&self) -> Sha256 {
        self.chain_id
    }
    fn head(&self) -> ChainHead {
        ChainHead::default()
    }
    fn has_item(&self, item: &ItemId) -> bool {
        item.item_type == msg_type::TRX && self.trxs.contains(&item.item_hash)
    }
    fn get_item(&self, _item: &ItemId) -> Option<Vec<u8>> {
        None
    }
    fn handle_blocks(
        &mut self,
        blocks: &[Vec<u8>],
        _sync_mode: bool,
    ) -> Vec<Result<BlockOutcome, DelegateError>> {
        blocks.iter().map(|_| Ok(BlockOutcome::Duplicate)).collect()
    }
    fn handle_transaction(&mut self, data: &[u8], _now: TimePoint) -> Result<(), DelegateError> {
        self.trxs.insert(message_hash(data));
        Ok(())
    }
    fn block_ids_after(&self, _synopsis: &[BlockId], _limit: usize) -> (Vec<BlockId>, u32) {
        (Vec::new(), 0)
    }
    fn blockchain_synopsis(&self) -> Vec<BlockId> {
        Vec::new()
    }
}

/// Node A (index 0) with active peers B, C, D as A sees them, and `pending` items advertised
/// by B and C; B has been asked for one, C and D for nothing (C and D are kept busy by one
/// outstanding sync request each, so only B is asked for items).
struct Bench {
    net: SimNet,
    b: PeerId,
    d: PeerId,
    /// Data by hash, for B to serve.
    data: std::collections::HashMap<ItemHash, Vec<u8>>,
    /// What A last asked B for.
    asked: Option<ItemHash>,
    next_new: u32,
    ops: usize,
}

impl Bench {
    fn build(pending: usize) -> Bench {
        let mut net = SimNet::new();
        let mut c = NodeConfig {
            chain_id: "75a0c028695a5df52f2b1045f5c50fd26169241d099f548b5628cbe3a38a2db0"
                .parse()
                .expect("chain id"),
            ..NodeConfig::default()
        };
        c.connect_to_new_peers = false;
        let app = MemApp {
            chain_id: c.chain_id,
            trxs: Default::default(),
        };
        let a = net.add_node_with_delegate(
            c.clone(),
            test_node_id(1),
            PeerDatabase::new(),
            Box::new(app),
        );
        for k in 0..3 {
            let p = net.add_node(c.clone(), test_node_id(2 + k));
            let now = net.now;
            net.nodes[p].add_node(listen_endpoint(a), now);
            net.advance(1);
        }
        let ids: Vec<PeerId> = net.nodes[a].peers().map(|p| p.id).collect();
        assert_eq!(ids.len(), 3, "three active peers");
        let (b, c_peer, d) = (ids[0], ids[1], ids[2]);
        // From here A's commands are drained by hand: nothing reaches the other nodes.
        let mut bench = Bench {
            net,
            b,
            d,
            data: Default::default(),
            asked: None,
            next_new: 1_000_000,
            ops: 0,
        };
        bench.drain();
        bench.make_busy(&[c_peer, d]);
        let all: Vec<(ItemHash, Vec<u8>)> = (0..pending as u32)
            .map(|i| {
                let t = trx(i);
                (message_hash(&t), t)
            })
            .collect();
        for chunk in all.chunks(1000) {
            let hashes: Vec<ItemHash> = chunk.iter().map(|(h, _)| *h).collect();
            for p in [c_peer, b] {
                bench.deliver(
                    p,
                    Message::ItemIdsInventory(ItemIdsInventoryMessage {
                        item_type: msg_type::TRX,
                        item_hashes_available: hashes.clone(),
                    }),
                );
            }
        }
        bench.data = all.into_iter().collect();
        assert!(bench.asked.is_some(), "B was asked for an item");
        bench
    }

    /// Keeps `peers` from being asked for items: each gets an outstanding ids request, as A
    /// would send when syncing with it.
    fn make_busy(&mut self, peers: &[PeerId]) {
        let now = self.net.now;
        for &p in peers {
            // A peer whose own synopsis ends in a block A lacks makes A sync with it.
            self.net.nodes[0].on_message(
                p,
                Message::FetchBlockchainItemIds(
                    grapevine::wire::message::FetchBlockchainItemIdsMessage {
                        item_type: msg_type::BLOCK,
                        blockchain_synopsis: vec![ItemHash::default()],
                    },
                ),
                None,
                now,
            );
        }
        self.drain();
    }

    /// Hands A a message from `peer` and drains A's commands.
    fn deliver(&mut self, peer: PeerId, m: Message) {
        let now = self.net.now;
        self.net.nodes[0].on_message(peer, m, None, now);
        while !self.net.nodes[0].backlogged_peers().is_empty() {
            self.net.nodes[0].work_backlog(now);
        }
        self.drain();
    }

    /// Carries out A's commands: sends count as written at once; what B is asked is noted.
    fn drain(&mut self) {
        let now = self.net.now;
        while let Some(cmd) = self.net.nodes[0].poll_command() {
            match cmd {
                Command::Send { peer, message } => {
                    let size = grapevine::wire::frame::padded_frame_len(message.to_data().len());
                    if let Message::FetchItems(f) = &message
                        && peer == self.b
                    {
                        self.asked = f.items_to_fetch.first().copied();
                    }
                    self.net.nodes[0].on_sent(peer, size, now);
                }
                Command::Close { peer } => self.net.nodes[0].on_closed(peer, now),
                _ => {}
            }
        }
    }

    fn advertise_new(&mut self) {
        let t = trx(self.next_new);
        self.next_new += 1;
        let d = self.d;
        self.deliver(
            d,
            Message::ItemIdsInventory(ItemIdsInventoryMessage {
                item_type: msg_type::TRX,
                item_hashes_available: vec![message_hash(&t)],
            }),
        );
    }

    fn fetch_one(&mut self) {
        let h = self.asked.take().expect("B has a request");
        let data = self.data.get(&h).cloned().expect("a pending item");
        let b = self.b;
        self.deliver(b, Message::Trx(data));
    }

    fn not_available(&mut self) {
        let h = self.asked.take().expect("B has a request");
        let b = self.b;
        self.deliver(
            b,
            Message::ItemNotAvailable(ItemNotAvailableMessage {
                requested_item: ItemId {
                    item_type: msg_type::TRX,
                    item_hash: h,
                },
            }),
        );
    }

    fn tick(&mut self) {
        // One second on: no request is overdue (6 s), nothing expires (2 min).
        self.net.now = TimePoint(self.net.now.0 + 1_000_000);
        let now = self.net.now;
        self.net.nodes[0].handle_timeout(now);
        self.drain();
        // Keep every peer alive and its request fresh.
        for p in self.net.nodes[0].peers().map(|p| p.id).collect::<Vec<_>>() {
            self.net.nodes[0].on_bytes_received(p, 1, 0, now);
        }
    }
}

/// One measured operation.
type Op = fn(&mut Bench);

/// Times `op` on a bench with `pending` items, rebuilding the bench (untimed) before the
/// backlog drifts by more than a tenth (and at least every 50 operations).
fn run(pending: usize, iters: u64, state: &mut Option<Bench>, op: Op) -> Duration {
    let budget = (pending / 10).clamp(50, 10_000);
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        if state.as_ref().is_none_or(|s| s.ops >= budget) {
            *state = Some(Bench::build(pending));
        }
        let Some(s) = state.as_mut() else {
            continue;
        };
        let t = Instant::now();
        op(s);
        total += t.elapsed();
        s.ops += 1;
    }
    total
}

fn scheduling(c: &mut Criterion) {
    let ops: [(&str, Op); 3] = [
        ("advertise", Bench::advertise_new),
        ("fetch", Bench::fetch_one),
        ("not_available", Bench::not_available),
    ];
    for (name, op) in ops {
        let mut group = c.benchmark_group(format!("fetch/{name}"));
        group.sample_size(10);
        for pending in SIZES {
            let mut state = None;
            group.bench_with_input(BenchmarkId::from_parameter(pending), &pending, |b, &n| {
                b.iter_custom(|iters| run(n, iters, &mut state, op));
            });
        }
        group.finish();
    }
}

/// The once-a-second timer with `pending` items, over 130 simulated seconds: the first 119
/// ticks (nothing expires) and the ticks that expire every advertisement. Mean and worst.
fn tick_figures() {
    for pending in SIZES {
        let mut bench = Bench::build(pending);
        let mut steady = Vec::new();
        let mut expiring = Vec::new();
        for second in 0..130 {
            let t = Instant::now();
            bench.tick();
            let took = t.elapsed();
            if second < 118 {
                steady.push(took);
            } else {
                expiring.push(took);
            }
        }
        let mean = |v: &[Duration]| v.iter().sum::<Duration>() / v.len().max(1) as u32;
        let worst = |v: &[Duration]| v.iter().max().copied().unwrap_or_default();
        let left = bench.net.nodes[0].accounting();
        println!(
            "fetch/tick/{pending}: steady mean {:?} worst {:?}; while expiring mean {:?} worst \
             {:?}; after: inventory {} items_to_fetch {}",
            mean(&steady),
            worst(&steady),
            mean(&expiring),
            worst(&expiring),
            left.inventory_from_peers_total,
            left.items_to_fetch
        );
    }
}

criterion_group!(fetch, scheduling);

fn main() {
    // `cargo test --benches` runs bench binaries without --bench: keep that quick.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    tick_figures();
    fetch();
    Criterion::default().configure_from_args().final_summary();
}
