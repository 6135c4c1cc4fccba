//! What a chaos run reports: per item, over all items, about hostile nodes and the bounds seen.

use serde::Serialize;

use super::{ChaosObserver, NEVER, World, checks};
use crate::node::sim::{SIM_START_US, SimNet};

/// One item's fate.
#[derive(Clone, Debug, Serialize)]
pub struct ItemReport {
    pub kind: &'static str,
    /// Inventory hash, hex.
    pub hash: String,
    pub source: usize,
    /// Seconds from the start of the run.
    pub broadcast_at_s: f64,
    /// The source took it (a block whose parent it lacked is only held).
    pub accepted: bool,
    /// Honest nodes it had to reach (the source's gossiping component over the window).
    pub expected: usize,
    /// How many of those had it within the window.
    pub reached: usize,
    /// From broadcast until the last expected node had it, ms.
    pub coverage_ms: Option<f64>,
    /// Hops from the source to the farthest expected node, over the links that gossiped for
    /// the whole window: the item's floor is 3 link crossings (announcement, request, body)
    /// per hop.
    pub source_eccentricity_hops: usize,
    /// Bodies honest nodes received, per honest node that got it from a peer.
    pub bodies_per_receiver: Option<f64>,
    /// Announcements honest nodes received, per honest node that got it from a peer.
    pub announcements_per_receiver: Option<f64>,
}

/// Hostile nodes' fate.
#[derive(Clone, Debug, Default, Serialize)]
pub struct HostileReport {
    pub nodes: usize,
    pub kinds: Vec<&'static str>,
    /// Connections honest nodes closed with hostile nodes.
    pub disconnections: u64,
    /// Of those, connections that had been active.
    pub active_disconnections: u64,
    /// The longest an honest node held an active connection to a hostile one (sampled), ms.
    pub longest_active_ms: f64,
    /// Active honest-hostile connections at the end, and the oldest of them, ms.
    pub active_at_end: usize,
    pub oldest_at_end_ms: f64,
    /// (honest node, hostile node) pairs where the honest node, live at the end, bans the
    /// hostile node's address.
    pub bans: Option<usize>,
}

/// The largest values the bounds checks saw.
#[derive(Clone, Debug, Default, Serialize)]
pub struct BoundsReport {
    pub max_active_connections: usize,
    pub max_handshaking_connections: usize,
    pub max_queued_bytes: usize,
    pub max_inventory_to_us: usize,
    pub max_inventory_to_peer: usize,
    pub max_serve_queue: usize,
}

/// What a chaos run found.
#[derive(Clone, Debug, Serialize)]
pub struct ChaosReport {
    pub seed: u64,
    pub nodes: usize,
    pub virtual_seconds: f64,
    pub trace_hash: String,
    pub deliveries: u64,
    /// Deliveries by message name.
    pub deliveries_by_type: std::collections::BTreeMap<String, u64>,
    /// Hellos honest nodes rejected, by reason.
    pub rejections: std::collections::BTreeMap<String, u64>,
    /// Closing messages honest nodes sent, by reason.
    pub closings: std::collections::BTreeMap<String, u64>,
    pub kills: usize,
    pub restarts: usize,
    pub partitioned_nodes: usize,
    pub items: Vec<ItemReport>,
    pub coverage_p50_ms: Option<f64>,
    pub coverage_p99_ms: Option<f64>,
    /// Bodies received per receiving honest node per item, over all items (1.00 is ideal).
    pub duplicates_per_item: Option<f64>,
    /// Announcements received per receiving honest node per item.
    pub announcements_per_node_per_item: Option<f64>,
    /// Sizes of the components of the gossiping graph of live honest nodes at the end.
    pub final_components: Vec<usize>,
    /// Live honest nodes alone in their component at the end (no gossiping edge).
    pub isolated_nodes: Vec<usize>,
    pub live_honest_nodes_at_end: usize,
    pub hostile: HostileReport,
    pub bounds: BoundsReport,
    /// Every property that did not hold; empty for a good run.
    pub violations: Vec<String>,
}

fn percentile(sorted: &[f64], p: usize) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (sorted.len() * p).div_ceil(100).max(1) - 1;
    sorted.get(rank.min(sorted.len() - 1)).copied()
}

pub(super) fn report(
    net: &SimNet<ChaosObserver>,
    mut world: World,
    kinds: Vec<&'static str>,
    kills: usize,
    restarts: usize,
) -> ChaosReport {
    checks::final_checks(net, &mut world);
    let obs = &net.observer;
    let mut items = Vec::new();
    let mut coverage = Vec::new();
    let (mut bodies, mut announcements, mut receivers) = (0u64, 0u64, 0u64);
    for (k, item) in world.items.iter().enumerate() {
        let deadline = item.at + world.config.window_us;
        let times: Vec<i64> = item
            .expected
            .iter()
            .map(|&i| obs.acquired[k][i] - SIM_START_US)
            .collect();
        let reached = times.iter().filter(|&&t| t <= deadline).count();
        let coverage_ms = (item.accepted && reached == times.len() && !times.is_empty())
            .then(|| times.iter().max().map(|&t| (t - item.at) as f64 / 1000.0))
            .flatten();
        if let Some(c) = coverage_ms {
            coverage.push(c);
        }
        // Honest nodes that got it from a peer: every honest holder but the source.
        let got = (0..world.hostile.len())
            .filter(|&i| !world.hostile[i] && i != item.source && obs.acquired[k][i] != NEVER)
            .count() as u64;
        if item.accepted {
            bodies += obs.bodies[k];
            announcements += obs.announcements[k];
            receivers += got;
        }
        let per = |x: u64| (got > 0).then(|| x as f64 / got as f64);
        items.push(ItemReport {
            kind: if item.block_number.is_some() {
                "block"
            } else {
                "trx"
            },
            hash: item.id.item_hash.to_string(),
            source: item.source,
            broadcast_at_s: item.at as f64 / 1e6,
            accepted: item.accepted,
            expected: item.expected.len(),
            reached,
            coverage_ms,
            source_eccentricity_hops: item.source_eccentricity,
            bodies_per_receiver: per(obs.bodies[k]),
            announcements_per_receiver: per(obs.announcements[k]),
        });
    }
    coverage.sort_by(f64::total_cmp);
    let all = checks::final_components(net, &world.hostile);
    let components: Vec<usize> = all.iter().map(Vec::len).collect();
    let isolated_nodes = all.iter().filter(|c| c.len() == 1).map(|c| c[0]).collect();
    let live = components.iter().sum();
    let hostile = checks::hostile_report(net, &world, kinds);
    let ratio = |x: u64| (receivers > 0).then(|| x as f64 / receivers as f64);
    ChaosReport {
        seed: world.config.seed,
        nodes: world.config.nodes,
        virtual_seconds: world.config.end_us as f64 / 1e6,
        trace_hash: hex::encode(net.trace_hash()),
        deliveries: net.deliveries(),
        deliveries_by_type: net
            .deliveries_by_type()
            .iter()
            .map(|(t, n)| {
                let name = if *t == 0 {
                    "garbage"
                } else {
                    crate::wire::message::type_name(*t)
                };
                (name.to_string(), *n)
            })
            .collect(),
        rejections: net.observer.rejections.clone(),
        closings: net.observer.closings.clone(),
        kills,
        restarts,
        partitioned_nodes: if world.config.partition {
            world.partition_side.iter().filter(|&&s| s == 1).count()
        } else {
            0
        },
        items,
        coverage_p50_ms: percentile(&coverage, 50),
        coverage_p99_ms: percentile(&coverage, 99),
        duplicates_per_item: ratio(bodies),
        announcements_per_node_per_item: ratio(announcements),
        final_components: components,
        isolated_nodes,
        live_honest_nodes_at_end: live,
        hostile,
        bounds: world.bounds,
        violations: world.violations,
    }
}
