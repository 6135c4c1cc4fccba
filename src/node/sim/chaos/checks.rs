//! The properties a chaos run checks (see the module docs of `chaos` for their exact
//! definitions), and the graph views they need.

use std::collections::{BTreeMap, BTreeSet};

use crate::node::config::{
    EXTRA_HANDSHAKING_CONNECTIONS, MAX_INVENTORY_PER_PEER, MAX_QUEUED_BYTES_PER_PEER,
    MAX_SERVE_QUEUE, REQUEST_TIMEOUT_US, SECOND_US, TERMINATE_CHECK_INTERVAL_US,
};
use crate::node::sim::{ConnId, SimNet, node_of_ip};
use crate::peer::{ConnectionList, PeerId, PeerState};

use super::observer::gossips;
use super::{ChaosObserver, HostileReport, NEVER, World};

/// One gossiping connection: node `a`'s peer `pa` is node `b`'s peer `pb`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Edge {
    pub a: usize,
    pub pa: PeerId,
    pub b: usize,
    pub pb: PeerId,
}

/// Gossiping edges between live honest nodes, by connection.
pub type Edges = BTreeMap<ConnId, Edge>;

/// The longest an honest node may hold an active connection to a hostile one: the attack comes
/// within a hostile round, a fetch from a silent advertiser times out after the request
/// timeout, and the timeout check runs every second; twice that covers slow links.
pub const HOSTILE_EXPOSURE_LIMIT_US: i64 =
    2 * (2 * SECOND_US + REQUEST_TIMEOUT_US + TERMINATE_CHECK_INTERVAL_US);

/// The gossiping graph now: connections between live honest nodes that gossip at both ends
/// (active, and neither end syncing from the other).
pub fn gossip_edges(net: &SimNet<ChaosObserver>, hostile: &[bool]) -> Edges {
    let mut edges = Edges::new();
    for a in (0..net.nodes.len()).filter(|&a| !hostile[a] && net.is_alive(a)) {
        for p in net.nodes[a].peers().filter(|p| gossips(p)) {
            let Some((c, b, pb)) = net.connection(a, p.id) else {
                continue;
            };
            if hostile.get(b).copied().unwrap_or(true) || !net.is_alive(b) || b < a {
                continue;
            }
            if net.nodes[b].peer(pb).is_some_and(gossips) {
                edges.insert(c, Edge { a, pa: p.id, b, pb });
            }
        }
    }
    edges
}

/// Components of the graph on `nodes` with `edges`, each sorted.
fn components(nodes: &[usize], edges: &Edges) -> Vec<Vec<usize>> {
    let mut adjacent: BTreeMap<usize, Vec<usize>> = nodes.iter().map(|&n| (n, vec![])).collect();
    for e in edges.values() {
        adjacent.entry(e.a).or_default().push(e.b);
        adjacent.entry(e.b).or_default().push(e.a);
    }
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for &start in nodes {
        if !seen.insert(start) {
            continue;
        }
        let mut component = vec![start];
        let mut stack = vec![start];
        while let Some(x) = stack.pop() {
            for &y in adjacent.get(&x).into_iter().flatten() {
                if seen.insert(y) {
                    component.push(y);
                    stack.push(y);
                }
            }
        }
        component.sort_unstable();
        out.push(component);
    }
    out
}

fn live_honest(net: &SimNet<ChaosObserver>, hostile: &[bool]) -> Vec<usize> {
    (0..net.nodes.len())
        .filter(|&i| !hostile[i] && net.is_alive(i))
        .collect()
}

/// Hostile node behind an honest node's connection, if any.
fn hostile_peer(p: &PeerState, hostile: &[bool]) -> bool {
    node_of_ip(p.remote_endpoint.address.to_ipv4())
        .is_some_and(|r| hostile.get(r).copied().unwrap_or(false))
}

/// The periodic sample: bounds on every live honest node, and hostile exposure.
pub(super) fn sample(net: &SimNet<ChaosObserver>, world: &mut World) {
    let now = net.now.0;
    let max = world.config.max_connections;
    let b = &mut world.bounds;
    for i in live_honest(net, &world.hostile) {
        let node = &net.nodes[i];
        let c = node.connection_counts();
        b.max_active_connections = b.max_active_connections.max(c.active);
        b.max_handshaking_connections = b.max_handshaking_connections.max(c.handshaking);
        if c.active > max {
            world
                .violations
                .push(format!("node {i}: {} active connections > {max}", c.active));
        }
        if c.handshaking > max + EXTRA_HANDSHAKING_CONNECTIONS {
            world.violations.push(format!(
                "node {i}: {} handshaking connections",
                c.handshaking
            ));
        }
        for p in node.peers() {
            b.max_queued_bytes = b.max_queued_bytes.max(p.queued_bytes);
            b.max_inventory_to_us = b
                .max_inventory_to_us
                .max(p.inventory_advertised_to_us.len());
            b.max_inventory_to_peer = b
                .max_inventory_to_peer
                .max(p.inventory_advertised_to_peer.len());
            b.max_serve_queue = b.max_serve_queue.max(p.serve_queue.len());
            if p.queued_bytes > MAX_QUEUED_BYTES_PER_PEER
                || p.inventory_advertised_to_us.len() > MAX_INVENTORY_PER_PEER
                || p.inventory_advertised_to_peer.len() > MAX_INVENTORY_PER_PEER
                || p.serve_queue.len() > MAX_SERVE_QUEUE
            {
                world.violations.push(format!(
                    "node {i} peer {}: over a memory bound (queued {}, inventory {}/{}, serve {})",
                    p.remote_endpoint,
                    p.queued_bytes,
                    p.inventory_advertised_to_us.len(),
                    p.inventory_advertised_to_peer.len(),
                    p.serve_queue.len()
                ));
            }
            if p.list == ConnectionList::Active && hostile_peer(p, &world.hostile) {
                world.longest_hostile_us = world.longest_hostile_us.max(now - p.initiated_at.0);
            }
        }
    }
}

/// Item `k`'s window closes: it must have reached every node connected to its source over
/// edges that gossiped throughout the window.
pub(super) fn window_end(net: &SimNet<ChaosObserver>, world: &mut World, k: usize) {
    let item = &world.items[k];
    if !item.accepted {
        return;
    }
    let now_edges = gossip_edges(net, &world.hostile);
    let obs = &net.observer;
    let start = crate::node::sim::SIM_START_US + item.at;
    let unbroken = |i, p| obs.stopped_gossiping(i, p).is_none_or(|t| t < start);
    let stable: Edges = item
        .edges_at_start
        .iter()
        .filter(|(c, e)| now_edges.get(c) == Some(e) && unbroken(e.a, e.pa) && unbroken(e.b, e.pb))
        .map(|(c, e)| (*c, *e))
        .collect();
    let nodes = live_honest(net, &world.hostile);
    let source = item.source;
    let expected = components(&nodes, &stable)
        .into_iter()
        .find(|c| c.contains(&source))
        .unwrap_or_default();
    world.items[k].source_eccentricity = eccentricity(source, &stable);
    world.items[k].expected = expected;
}

/// Hops from `source` to the farthest node it reaches over `edges`.
fn eccentricity(source: usize, edges: &Edges) -> usize {
    let mut adjacent: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for e in edges.values() {
        adjacent.entry(e.a).or_default().push(e.b);
        adjacent.entry(e.b).or_default().push(e.a);
    }
    let mut dist = BTreeMap::from([(source, 0usize)]);
    let mut queue = std::collections::VecDeque::from([source]);
    let mut far = 0;
    while let Some(x) = queue.pop_front() {
        let d = dist[&x];
        far = far.max(d);
        for &y in adjacent.get(&x).into_iter().flatten() {
            if let std::collections::btree_map::Entry::Vacant(v) = dist.entry(y) {
                v.insert(d + 1);
                queue.push_back(y);
            }
        }
    }
    far
}

/// The checks made once the run is over.
pub(super) fn final_checks(net: &SimNet<ChaosObserver>, world: &mut World) {
    let obs = &net.observer;
    for (k, item) in world.items.iter().enumerate() {
        let deadline = crate::node::sim::SIM_START_US + item.at + world.config.window_us;
        let missing: Vec<usize> = item
            .expected
            .iter()
            .copied()
            .filter(|&i| obs.acquired[k][i] > deadline)
            .collect();
        if !missing.is_empty() {
            world.violations.push(format!(
                "item {k} ({:?} from node {} at {:.1} s) did not reach {} of {} nodes within the window: {:?}",
                item.id.item_type,
                item.source,
                item.at as f64 / 1e6,
                missing.len(),
                item.expected.len(),
                &missing[..missing.len().min(10)]
            ));
        }
        for &i in &item.expected {
            if obs.durable[k][i] != NEVER && !net.nodes[i].delegate().has_item(&item.id) {
                world.violations.push(format!(
                    "node {i} lost item {k} it had advertised or on its chain (restart?)"
                ));
            }
        }
    }
    // Chain agreement within each component of the gossiping graph.
    let nodes = live_honest(net, &world.hostile);
    let edges = gossip_edges(net, &world.hostile);
    for c in components(&nodes, &edges) {
        let mut by_head: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        for &i in &c {
            by_head
                .entry(net.nodes[i].delegate().head().number)
                .or_default()
                .push(i);
        }
        if by_head.len() > 1 {
            let heads: Vec<String> = by_head
                .iter()
                .map(|(h, nodes)| {
                    format!(
                        "head {h}: {} nodes {:?}",
                        nodes.len(),
                        &nodes[..nodes.len().min(8)]
                    )
                })
                .collect();
            world.violations.push(format!(
                "a component of {} connected honest nodes disagrees on the head: {}",
                c.len(),
                heads.join("; ")
            ));
        }
    }
    check_hostiles(net, &world.hostile, &mut world.violations);
    check_bans(net, world);
    if world.longest_hostile_us > HOSTILE_EXPOSURE_LIMIT_US {
        world.violations.push(format!(
            "an honest node kept a hostile peer active for {:.1} s",
            world.longest_hostile_us as f64 / 1e6
        ));
    }
}

/// For each hostile node: the live honest nodes that dropped it, and those of them that ban its
/// address at the end.
pub(super) fn bans_of_hostiles(net: &SimNet<ChaosObserver>, world: &World) -> Vec<HostileBans> {
    let now = net.now;
    (0..world.hostile.len())
        .filter_map(|h| {
            let kind = world.hostility[h]?;
            let ip = crate::node::sim::node_ip(h);
            let dropped_by: Vec<usize> = net
                .observer
                .hostile_dropped_by
                .iter()
                .filter(|&&(i, r)| r == h && net.is_alive(i))
                .map(|&(i, _)| i)
                .collect();
            let banned_by = dropped_by
                .iter()
                .copied()
                .filter(|&i| net.nodes[i].is_banned(ip, now))
                .collect();
            Some(HostileBans {
                node: h,
                kind,
                dropped_by,
                banned_by,
            })
        })
        .collect()
}

/// What became of one hostile node.
pub(super) struct HostileBans {
    pub node: usize,
    pub kind: crate::node::sim::Hostility,
    pub dropped_by: Vec<usize>,
    pub banned_by: Vec<usize>,
}

/// Hostile nodes whose misbehaviour is scored end up banned: each one that was dropped is banned
/// by at least one live honest node, and one whose single offence reaches the ban threshold
/// (a bad hello signature) by every live honest node that dropped it. (Lighter classes need
/// several offences at the same node, so a node that dropped one once need not ban it.)
/// Hostile nodes that only look unlucky (never serving what they advertise, or advertising below
/// the per-peer cap) are dropped but never banned.
fn check_bans(net: &SimNet<ChaosObserver>, world: &mut World) {
    for b in bans_of_hostiles(net, world) {
        let (dropped, banned) = (b.dropped_by.len(), b.banned_by.len());
        let name = b.kind.name();
        if !world.config.bans_expected(b.kind) {
            if banned > 0 {
                world.violations.push(format!(
                    "hostile node {} ({name}) only looks unlucky, yet {banned} honest nodes \
                     banned it: {:?}",
                    b.node,
                    &b.banned_by[..banned.min(10)]
                ));
            }
            continue;
        }
        if dropped > 0 && banned == 0 {
            world.violations.push(format!(
                "hostile node {} ({name}) was dropped by {dropped} honest nodes, banned by none",
                b.node
            ));
        }
        if b.kind == crate::node::sim::Hostility::BadHelloSignature && banned < dropped {
            world.violations.push(format!(
                "hostile node {} ({name}): one offence bans, yet only {banned} of the {dropped} \
                 honest nodes that dropped it ban it",
                b.node
            ));
        }
    }
}

/// Active connections honest nodes hold to hostile ones now: (honest node, age µs).
fn hostile_connections(net: &SimNet<ChaosObserver>, hostile: &[bool]) -> Vec<(usize, i64)> {
    let now = net.now.0;
    let mut out = Vec::new();
    for i in live_honest(net, hostile) {
        for p in net.nodes[i].peers() {
            if p.list == ConnectionList::Active && hostile_peer(p, hostile) {
                out.push((i, now - p.initiated_at.0));
            }
        }
    }
    out
}

/// What must hold of hostile nodes at the end of a run.
///
/// Today: no honest node holds an active connection to a hostile node that is older than
/// [`HOSTILE_EXPOSURE_LIMIT_US`]. Without a ban table a hostile node keeps redialling and
/// is dropped again within seconds of each attack, so "disconnected" can only mean "never for
/// long".
///
/// Extend here once honest nodes ban misbehaving addresses: every hostile node that attacked an
/// honest node is banned by it (`net.observer.hostile_dropped_by` lists the pairs where an
/// honest node dropped a hostile one; each node has its own address, [`node_ip`]), and no
/// honest node has any connection to a hostile node at the end. Mind restarts: a node killed
/// and restarted keeps only what it persisted.
///
/// [`node_ip`]: crate::node::sim::node_ip
pub fn check_hostiles(net: &SimNet<ChaosObserver>, hostile: &[bool], violations: &mut Vec<String>) {
    for (i, age) in hostile_connections(net, hostile) {
        if age > HOSTILE_EXPOSURE_LIMIT_US {
            violations.push(format!(
                "node {i} still holds a hostile peer active after {:.1} s",
                age as f64 / 1e6
            ));
        }
    }
}

/// The components of the final gossiping graph, largest first.
pub(super) fn final_components(net: &SimNet<ChaosObserver>, hostile: &[bool]) -> Vec<Vec<usize>> {
    let nodes = live_honest(net, hostile);
    let edges = gossip_edges(net, hostile);
    let mut all = components(&nodes, &edges);
    all.sort_by_key(|c| std::cmp::Reverse(c.len()));
    all
}

pub(super) fn hostile_report(
    net: &SimNet<ChaosObserver>,
    world: &World,
    kinds: Vec<&'static str>,
) -> HostileReport {
    let at_end = hostile_connections(net, &world.hostile);
    HostileReport {
        nodes: kinds.len(),
        kinds,
        disconnections: net.observer.hostile_closes,
        active_disconnections: net.observer.hostile_active_closes,
        longest_active_ms: world.longest_hostile_us as f64 / 1000.0,
        active_at_end: at_end.len(),
        oldest_at_end_ms: at_end.iter().map(|&(_, a)| a).max().unwrap_or(0) as f64 / 1000.0,
        bans: Some(
            bans_of_hostiles(net, world)
                .iter()
                .map(|b| b.banned_by.len())
                .sum(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_follow_edges() {
        let edge = |a, b| Edge { a, pa: 1, b, pb: 1 };
        let mut e = Edges::new();
        e.insert(1, edge(0, 1));
        e.insert(2, edge(1, 2));
        e.insert(3, edge(4, 5));
        let c = components(&[0, 1, 2, 3, 4, 5], &e);
        assert_eq!(c, vec![vec![0, 1, 2], vec![3], vec![4, 5]]);
    }
}
