//! Chaos at scale: one seeded scenario over a [`SimNet`] of many nodes, with kills and restarts,
//! a partition that heals, hostile nodes, lossy links, and items broadcast at live nodes, then
//! the network-level properties checked and the gossip measured.
//!
//! # The scenario (times from the start of the run)
//! - Nodes start over the first [`ChaosConfig::start_spread_us`], each with a couple of seed
//!   nodes from a small pool of honest seeds (as an operator's `--seed-node` flags).
//! - Hostile nodes ([`Hostility`], handed out in turn) attack every connection they have up,
//!   every [`ChaosConfig::hostile_interval_us`].
//! - Between [`ChaosConfig::chaos_start_us`] and [`ChaosConfig::chaos_end_us`], a share of the
//!   non-seed nodes is killed, each restarted later from what it persisted (all are back by the
//!   end of the phase); one partition splits off about a third of the nodes in the first half of
//!   the phase and heals.
//! - Items (transactions and blocks, alternately) are broadcast at random live honest nodes
//!   until [`ChaosConfig::items_end_us`]; the run ends at [`ChaosConfig::end_us`].
//!
//! # What is checked (the `checks` module)
//! - **Coverage.** Call a connection between two live honest nodes *gossiping* while it is
//!   active at both ends and neither end is syncing from the other (the protocol advertises
//!   inventory only over such connections). For an item accepted at time `t` by node `s`, take
//!   the connections that gossiped throughout `[t, t + window]` (the same connection at both
//!   ends of the window, and neither end stopped gossiping on it in between): every node
//!   connected to `s` through them must have had the item by `t + window`.
//! - **Chain agreement.** At the end, the nodes of each component of the gossiping graph have
//!   the same head block (blocks also travel by sync, after healing and restarts).
//! - **Bounds**, sampled every second on every live honest node: active connections ≤
//!   `max_connections`, handshaking ones ≤ `max_connections + EXTRA_HANDSHAKING_CONNECTIONS`,
//!   per peer queued bytes ≤ `MAX_QUEUED_BYTES_PER_PEER`, remembered inventory each way ≤
//!   `MAX_INVENTORY_PER_PEER`, serve queue ≤ `MAX_SERVE_QUEUE`.
//! - **Hostile nodes** are cut off: [`checks::check_hostiles`].

mod checks;
mod observer;
mod report;

use crate::app::relay_store::make_test_chain;
use crate::node::NodeConfig;
use crate::node::config::{MAX_TRX_INVENTORY_PER_PEER, SECOND_US};
use crate::wire::message::{ItemId, message_hash, msg_type};
use crate::wire::types::{Endpoint, Ripemd160, TimePoint};

use super::{Hostility, LinkModel, SIM_START_US, SimNet, SimRng, listen_endpoint, make_trx};

pub use checks::{Edge, Edges, HOSTILE_EXPOSURE_LIMIT_US, check_hostiles, gossip_edges};
pub use observer::{ChaosObserver, NEVER, gossips};
pub use report::{BoundsReport, ChaosReport, HostileReport, ItemReport};

/// Expiration of the scenario's transactions: long after any simulated clock.
const TRX_EXPIRATION: u32 = 2_000_000_000;

/// What a chaos run does. [`ChaosConfig::new`] gives the defaults the tests use.
#[derive(Clone, Debug)]
pub struct ChaosConfig {
    pub seed: u64,
    pub nodes: usize,
    /// Share of nodes that are hostile, percent.
    pub hostile_percent: f64,
    /// The kinds hostile nodes are, handed out in turn (empty: every kind).
    pub hostile_kinds: Vec<Hostility>,
    /// Share of nodes killed (and restarted), percent.
    pub kill_percent: f64,
    /// Items broadcast, alternately transactions and blocks.
    pub items: usize,
    /// Whether one partition splits the network and heals.
    pub partition: bool,
    pub desired_connections: usize,
    pub max_connections: usize,
    /// Honest nodes every node may take its seeds from.
    pub seed_pool: usize,
    /// Seeds each node starts with.
    pub seeds_per_node: usize,
    /// Random nodes in the peer database each node starts with.
    pub known_peers: usize,
    pub links: LinkModel,
    /// Ids an inventory flood sends each hostile round on each connection, in messages of
    /// 1,000. Below half of [`MAX_TRX_INVENTORY_PER_PEER`] a flood never fills a connection's
    /// inventory before the flooder is dropped for not serving (within a request timeout),
    /// so it is no violation and is not banned; from there on it is, and it is.
    pub flood_size: usize,
    pub hostile_interval_us: i64,
    pub sample_interval_us: i64,
    pub start_spread_us: i64,
    pub chaos_start_us: i64,
    pub chaos_end_us: i64,
    pub downtime_min_us: i64,
    pub downtime_max_us: i64,
    pub partition_min_us: i64,
    pub partition_max_us: i64,
    pub items_end_us: i64,
    /// How long after its broadcast an item must have reached its component.
    pub window_us: i64,
    /// How long each store's durable commit takes (µs of virtual time).
    pub commit_latency_us: i64,
    pub end_us: i64,
    /// Keep every message sent in [`SimNet::trace`] (memory grows with the run).
    pub record_trace: bool,
    /// Decode every message on arrival ([`SimNet::decode_on_arrival`]).
    pub decode_on_arrival: bool,
}

impl ChaosConfig {
    /// Whether honest nodes are expected to ban hostile nodes of `kind` in this scenario.
    pub fn bans_expected(&self, kind: Hostility) -> bool {
        match kind {
            Hostility::InventoryFlood => self.flood_size * 2 >= MAX_TRX_INVENTORY_PER_PEER,
            other => other.is_bannable(),
        }
    }

    /// The default scenario for `nodes` nodes: 5 % hostile, 20 % killed, 40 items, one
    /// partition, WAN links, 8 desired and 32 maximum connections, six virtual minutes.
    pub fn new(seed: u64, nodes: usize) -> Self {
        Self {
            seed,
            nodes,
            hostile_percent: 5.0,
            hostile_kinds: Vec::new(),
            kill_percent: 20.0,
            items: 40,
            partition: true,
            desired_connections: 8,
            max_connections: 32,
            seed_pool: 5,
            seeds_per_node: 2,
            known_peers: 8,
            links: LinkModel::wan(),
            flood_size: 200,
            hostile_interval_us: 2 * SECOND_US,
            sample_interval_us: SECOND_US,
            start_spread_us: 20 * SECOND_US,
            chaos_start_us: 60 * SECOND_US,
            chaos_end_us: 240 * SECOND_US,
            downtime_min_us: 5 * SECOND_US,
            downtime_max_us: 60 * SECOND_US,
            partition_min_us: 30 * SECOND_US,
            partition_max_us: 60 * SECOND_US,
            items_end_us: 300 * SECOND_US,
            window_us: 30 * SECOND_US,
            commit_latency_us: crate::node::sim::SIM_COMMIT_US,
            end_us: 360 * SECOND_US,
            record_trace: false,
            decode_on_arrival: true,
        }
    }

    /// Stretches or shrinks the scenario's phases to a run of `end_us`, keeping their shares
    /// of the default six minutes (the start spread, the shortest downtime and partition, and
    /// the coverage window stay as they are).
    pub fn scale_to(&mut self, end_us: i64) {
        let base = 360 * SECOND_US;
        let scale = |t: i64| (i128::from(t) * i128::from(end_us) / i128::from(base)) as i64;
        self.chaos_start_us = scale(60 * SECOND_US).max(self.start_spread_us);
        self.chaos_end_us = scale(240 * SECOND_US);
        self.downtime_max_us = scale(60 * SECOND_US).max(self.downtime_min_us);
        self.partition_max_us = scale(60 * SECOND_US).max(self.partition_min_us);
        // Every item's window closes before the end.
        self.items_end_us = scale(300 * SECOND_US).min(end_us - self.window_us);
        self.end_us = end_us;
    }
}
/// Scenario steps, in time order.
#[derive(Clone, Copy, Debug)]
enum Action {
    Start(usize),
    HostileRound,
    Sample,
    Kill(usize),
    Restart(usize),
    Partition,
    Heal,
    Broadcast(usize),
    WindowEnd(usize),
}

/// An item of the run.
struct ItemRun {
    id: ItemId,
    data: Vec<u8>,
    block_number: Option<u32>,
    at: i64,
    source: usize,
    accepted: bool,
    edges_at_start: checks::Edges,
    expected: Vec<usize>,
    /// Hops from the source to the farthest expected node over the edges that gossiped for
    /// the whole window (see [`checks`]'s window end).
    source_eccentricity: usize,
}

/// The run's state beside the network.
struct World {
    config: ChaosConfig,
    node_config: NodeConfig,
    hostility: Vec<Option<Hostility>>,
    /// The peer database each node starts with.
    known: Vec<Vec<Endpoint>>,
    hostile: Vec<bool>,
    seeds: Vec<Vec<Endpoint>>,
    items: Vec<ItemRun>,
    partition_side: Vec<u32>,
    bounds: BoundsReport,
    longest_hostile_us: i64,
    violations: Vec<String>,
}

/// Runs a chaos scenario and reports what it found.
pub fn run(config: &ChaosConfig) -> ChaosReport {
    run_with_progress(config, &mut |_| {})
}

/// [`run`], calling `progress` with the virtual seconds elapsed as the run goes.
pub fn run_with_progress(config: &ChaosConfig, progress: &mut dyn FnMut(f64)) -> ChaosReport {
    run_keeping_network(config, progress).1
}

/// [`run_with_progress`], also handing back the network as the run left it (to look into a
/// failing seed).
pub fn run_keeping_network(
    config: &ChaosConfig,
    progress: &mut dyn FnMut(f64),
) -> (SimNet<ChaosObserver>, ChaosReport) {
    let mut rng = SimRng::new(config.seed ^ 0x0C4A_05C4_A05C_4A05);
    let n = config.nodes;
    let mut order: Vec<usize> = (0..n).collect();
    rng.shuffle(&mut order);
    let pool: Vec<usize> = order
        .iter()
        .copied()
        .take(config.seed_pool.min(n))
        .collect();
    let others: Vec<usize> = order.iter().copied().skip(pool.len()).collect();
    let hostile_count =
        ((n as f64 * config.hostile_percent / 100.0).round() as usize).min(others.len());
    let mut hostile = vec![false; n];
    for &h in &others[..hostile_count] {
        hostile[h] = true;
    }
    let mut net = SimNet::with_observer(
        config.seed,
        config.links.clone(),
        ChaosObserver::new(hostile.clone()),
    );
    net.record_trace = config.record_trace;
    net.commit_latency_us = config.commit_latency_us;
    net.decode_on_arrival = config.decode_on_arrival;
    let node_config = NodeConfig {
        chain_id: crate::wire::types::Sha256([0x5c; 32]),
        desired_connections: config.desired_connections,
        max_connections: config.max_connections,
        ..NodeConfig::default()
    };
    let mut kinds = Vec::new();
    let mut hostility = vec![None; n];
    for (k, &h) in others[..hostile_count].iter().enumerate() {
        let kinds_in_turn = if config.hostile_kinds.is_empty() {
            &Hostility::ALL[..]
        } else {
            &config.hostile_kinds[..]
        };
        let kind = kinds_in_turn[k % kinds_in_turn.len()];
        hostility[h] = Some(kind);
        kinds.push(kind.name());
    }
    // What each node knows when it starts: a peer database of a few random nodes, as a node
    // of a running network has, and its operator's seeds.
    let known: Vec<Vec<Endpoint>> = (0..n)
        .map(|i| {
            (0..config.known_peers)
                .map(|_| rng.below(n as u64) as usize)
                .filter(|&j| j != i)
                .map(listen_endpoint)
                .collect()
        })
        .collect();
    let seeds: Vec<Vec<Endpoint>> = (0..n)
        .map(|i| {
            let mut choice: Vec<usize> = pool.iter().copied().filter(|&p| p != i).collect();
            rng.shuffle(&mut choice);
            choice
                .into_iter()
                .take(config.seeds_per_node)
                .map(listen_endpoint)
                .collect()
        })
        .collect();

    // The plan.
    let mut plan: Vec<(i64, Action)> = Vec::new();
    // Nodes start in index order (a node's index is where it listens) over the spread.
    let mut starts: Vec<i64> = (0..n)
        .map(|_| rng.between(0, config.start_spread_us))
        .collect();
    starts.sort_unstable();
    for (i, at) in starts.into_iter().enumerate() {
        plan.push((at, Action::Start(i)));
    }
    let kill_count = ((n as f64 * config.kill_percent / 100.0).round() as usize).min(others.len());
    let mut victims = others.clone();
    rng.shuffle(&mut victims);
    // Every victim is back, and the partition healed, by the end of the chaos phase.
    let last_kill = (config.chaos_end_us - config.downtime_max_us).max(config.chaos_start_us);
    for &v in &victims[..kill_count] {
        let at = rng.between(config.chaos_start_us, last_kill);
        let back = at + rng.between(config.downtime_min_us, config.downtime_max_us);
        plan.push((at, Action::Kill(v)));
        plan.push((back, Action::Restart(v)));
    }
    let mut partition_side = vec![0u32; n];
    if config.partition {
        // In the first half of the chaos phase, so kills and restarts go on after it heals.
        let middle = (config.chaos_start_us + config.chaos_end_us) / 2;
        let at = rng.between(
            config.chaos_start_us,
            (middle - config.partition_max_us).max(config.chaos_start_us),
        );
        let heal = at + rng.between(config.partition_min_us, config.partition_max_us);
        plan.push((at, Action::Partition));
        plan.push((heal, Action::Heal));
        for side in partition_side.iter_mut() {
            *side = u32::from(rng.below(3) == 0);
        }
    }
    let mut t = config.hostile_interval_us;
    while t < config.end_us {
        plan.push((t, Action::HostileRound));
        t += config.hostile_interval_us;
    }
    let mut t = config.sample_interval_us;
    while t < config.end_us {
        plan.push((t, Action::Sample));
        t += config.sample_interval_us;
    }
    let blocks_wanted = config.items / 2;
    let first_block_time = (SIM_START_US / SECOND_US) as u32 - 3 * blocks_wanted as u32 - 3600;
    let blocks = make_test_chain(Ripemd160::default(), blocks_wanted as u32, first_block_time);
    let mut item_times: Vec<i64> = (0..config.items)
        .map(|_| rng.between(config.chaos_start_us, config.items_end_us))
        .collect();
    item_times.sort_unstable();
    let mut items = Vec::new();
    for (k, &at) in item_times.iter().enumerate() {
        let (data, block_number) = if k % 2 == 1 && k / 2 < blocks.len() {
            (blocks[k / 2].clone(), Some(k as u32 / 2 + 1))
        } else {
            (make_trx(rng.next_u64(), TRX_EXPIRATION), None)
        };
        let item_type = if block_number.is_some() {
            msg_type::BLOCK
        } else {
            msg_type::TRX
        };
        let id = ItemId {
            item_type,
            item_hash: message_hash(&data),
        };
        net.observer.track(id, block_number);
        items.push(ItemRun {
            id,
            data,
            block_number,
            at,
            source: usize::MAX,
            accepted: false,
            edges_at_start: Default::default(),
            expected: Vec::new(),
            source_eccentricity: 0,
        });
        plan.push((at, Action::Broadcast(k)));
        plan.push((at + config.window_us, Action::WindowEnd(k)));
    }
    // A stable sort keeps same-instant steps in the order they were planned.
    plan.retain(|(at, _)| *at <= config.end_us);
    plan.sort_by_key(|(at, _)| *at);

    let mut world = World {
        config: config.clone(),
        node_config,
        hostility,
        known,
        hostile,
        seeds,
        items,
        partition_side,
        bounds: BoundsReport::default(),
        longest_hostile_us: 0,
        violations: Vec::new(),
    };
    let (mut kills, mut restarts) = (0, 0);
    for (at, action) in plan {
        net.run_until(TimePoint(SIM_START_US + at));
        match action {
            Action::Start(i) => {
                let now = net.now;
                let records = world.known[i].iter().map(|&ep| {
                    let mut r = crate::store::peer_db::PeerRecord::new(ep);
                    r.last_seen_time = now;
                    r
                });
                let db = crate::store::peer_db::PeerDatabase::from_records(records.collect());
                let id = net.random_node_id();
                let added = net.add_node_with_db(world.node_config.clone(), id, db);
                debug_assert_eq!(added, i);
                net.set_hostility(i, world.hostility[i]);
                start(&mut net, &world, i);
            }
            Action::HostileRound => {
                for h in (0..n).filter(|&h| world.hostile[h]) {
                    net.hostile_tick(h, config.flood_size);
                }
            }
            Action::Sample => {
                checks::sample(&net, &mut world);
                progress(at as f64 / 1e6);
            }
            Action::Kill(i) => {
                if net.is_alive(i) {
                    net.kill(i);
                    kills += 1;
                }
            }
            Action::Restart(i) => {
                if i < net.nodes.len() && !net.is_alive(i) {
                    let id = net.random_node_id();
                    net.restart(i, id);
                    start(&mut net, &world, i);
                    restarts += 1;
                }
            }
            Action::Partition => net.set_partition(world.partition_side.clone()),
            Action::Heal => net.heal(),
            Action::Broadcast(k) => broadcast(&mut net, &mut world, &mut rng, k),
            Action::WindowEnd(k) => checks::window_end(&net, &mut world, k),
        }
    }
    net.run_until(TimePoint(SIM_START_US + config.end_us));
    let report = report::report(&net, world, kinds, kills, restarts);
    (net, report)
}

/// Node `i` (re)starts: its seeds, as its operator configured them.
fn start(net: &mut SimNet<ChaosObserver>, world: &World, i: usize) {
    let seeds = world.seeds[i].clone();
    net.with_node(i, |node, now| {
        for s in seeds {
            node.add_seed(s, now);
        }
    });
}

/// Broadcasts item `k` at a live honest node (for a block, one that has its parent if any
/// does), and notes the gossiping edges of that moment.
fn broadcast(net: &mut SimNet<ChaosObserver>, world: &mut World, rng: &mut SimRng, k: usize) {
    let live: Vec<usize> = (0..world.hostile.len())
        .filter(|&i| !world.hostile[i] && net.is_alive(i))
        .collect();
    let want_parent = world.items[k].block_number.map(|b| b - 1);
    let ready: Vec<usize> = match want_parent {
        Some(parent) => live
            .iter()
            .copied()
            .filter(|&i| net.nodes[i].delegate().head().number == parent)
            .collect(),
        None => Vec::new(),
    };
    let from = if ready.is_empty() { &live } else { &ready };
    if from.is_empty() {
        return;
    }
    let s = from[rng.below(from.len() as u64) as usize];
    let item = &world.items[k];
    let (item_type, data, id) = (item.id.item_type, item.data.clone(), item.id);
    let ok = net.with_node(s, |node, now| {
        !matches!(
            node.broadcast(item_type, data, now).outcome,
            crate::node::BroadcastOutcome::Rejected(_)
                | crate::node::BroadcastOutcome::NotAnItem(_)
        )
    });
    let accepted = ok && net.nodes[s].delegate().has_item(&id);
    if accepted {
        net.observer.acquire(k, s, net.now);
        net.observer.hold_durably(k, s, net.now);
    }
    let edges = gossip_edges(net, &world.hostile);
    let item = &mut world.items[k];
    item.source = s;
    item.accepted = accepted;
    item.edges_at_start = edges;
}
