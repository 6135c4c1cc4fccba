//! `propagation`: the simulated network ([`crate::node::sim`], the node core on a virtual
//! clock): by default 1,000 honest nodes keeping 8 to 20 peers each over 50 ms links, with no
//! kills, partitions or hostile nodes. Items (transactions and blocks in turn) are broadcast
//! at random nodes once the network has formed; the figure is the time until an item has
//! reached every node (p50 and p99 over the items), and the bodies and announcements each node
//! received per item.
//!
//! Baseline: the gossip graph's diameter (by breadth-first search from every node) × the link
//! latency, the time a message needs to cross the network once. An item crosses each hop as
//! an announcement, a request and the body, so 3 × that is the bound for a p99.

use std::collections::VecDeque;
use std::time::Instant;

use super::{BenchResult, Figure, Report};
use crate::node::sim::LinkModel;
use crate::node::sim::chaos::{ChaosConfig, gossip_edges, run_keeping_network};

/// What to run.
#[derive(clap::Args, Clone, Debug)]
pub struct Options {
    /// Nodes in the network.
    #[arg(long, default_value_t = 1000)]
    pub nodes: usize,
    /// Items broadcast (alternately transactions and blocks).
    #[arg(long, default_value_t = 20)]
    pub items: usize,
    /// One-way latency of every link, ms.
    #[arg(long, default_value_t = 50.0)]
    pub latency_ms: f64,
    /// Bytes a second per link direction (0: unlimited).
    #[arg(long, default_value_t = 1_000_000)]
    pub bandwidth: u64,
    /// How long a node's durable commit (fsync) takes, ms: nothing is advertised before it.
    #[arg(long, default_value_t = crate::node::sim::SIM_COMMIT_US as f64 / 1000.0)]
    pub commit_ms: f64,
    /// Connections each node keeps.
    #[arg(long, default_value_t = 8)]
    pub desired_connections: usize,
    /// Connections each node never exceeds.
    #[arg(long, default_value_t = 20)]
    pub max_connections: usize,
    /// Virtual seconds before the first item, for the network to form.
    #[arg(long, default_value_t = 60)]
    pub settle_seconds: i64,
    /// Virtual seconds the run lasts.
    #[arg(long, default_value_t = 150)]
    pub seconds: i64,
    /// Seed of the run (the same seed gives the same run).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

impl Options {
    /// The defaults of `grapevine-bench all`.
    pub fn modest() -> Self {
        Self {
            nodes: 1000,
            items: 10,
            latency_ms: 50.0,
            bandwidth: 1_000_000,
            commit_ms: crate::node::sim::SIM_COMMIT_US as f64 / 1000.0,
            desired_connections: 8,
            max_connections: 20,
            settle_seconds: 60,
            seconds: 120,
            seed: 1,
        }
    }
}

/// Undirected adjacency lists of the graph on nodes `0..n` (edges naming other nodes are
/// skipped).
fn adjacency(n: usize, edges: &[(usize, usize)]) -> Vec<Vec<usize>> {
    let mut adjacent = vec![Vec::new(); n];
    for &(a, b) in edges {
        if a < n && b < n {
            adjacent[a].push(b);
            adjacent[b].push(a);
        }
    }
    adjacent
}

/// Breadth-first search from `start`: how many nodes it reaches (itself included) and the
/// farthest one's distance in hops (its eccentricity within its component). `dist` and
/// `queue` are scratch space reused between calls.
fn eccentricity(
    adjacent: &[Vec<usize>],
    start: usize,
    dist: &mut [usize],
    queue: &mut VecDeque<usize>,
) -> (usize, usize) {
    dist.iter_mut().for_each(|d| *d = usize::MAX);
    queue.clear();
    dist[start] = 0;
    queue.push_back(start);
    let (mut reached, mut far) = (0, 0);
    while let Some(v) = queue.pop_front() {
        reached += 1;
        far = far.max(dist[v]);
        for &w in &adjacent[v] {
            if dist[w] == usize::MAX {
                dist[w] = dist[v] + 1;
                queue.push_back(w);
            }
        }
    }
    (reached, far)
}

/// The diameter of the graph on nodes `0..n` with undirected `edges` (over its largest
/// component), and the component's size.
pub fn diameter(n: usize, edges: &[(usize, usize)]) -> (usize, usize) {
    let adjacent = adjacency(n, edges);
    let mut best = (0, 0);
    let mut dist = vec![usize::MAX; n];
    let mut queue = VecDeque::new();
    for start in 0..n {
        let (reached, far) = eccentricity(&adjacent, start, &mut dist, &mut queue);
        // The largest component wins; within it, the longest shortest path.
        if (reached, far) > (best.1, best.0) {
            best = (far, reached);
        }
    }
    best
}

/// Runs the simulation.
pub fn run(opts: &Options) -> BenchResult<Report> {
    const S: i64 = 1_000_000;
    let latency_us = (opts.latency_ms * 1000.0) as i64;
    let mut config = ChaosConfig::new(opts.seed, opts.nodes);
    config.hostile_percent = 0.0;
    config.kill_percent = 0.0;
    config.partition = false;
    config.items = opts.items;
    config.desired_connections = opts.desired_connections;
    config.commit_latency_us = (opts.commit_ms * 1000.0) as i64;
    config.max_connections = opts.max_connections;
    config.links = LinkModel {
        latency_min_us: latency_us,
        latency_max_us: latency_us,
        bandwidth_bytes_per_sec: opts.bandwidth,
        loss: 0.0,
        reset: 0.0,
        ..LinkModel::wan()
    };
    let end = opts.seconds.max(opts.settle_seconds + 40) * S;
    config.end_us = end;
    config.chaos_start_us = opts.settle_seconds * S;
    config.chaos_end_us = config.chaos_start_us;
    config.items_end_us = end - config.window_us;
    let wall = Instant::now();
    let (net, chaos) = run_keeping_network(&config, &mut |_| {});
    let wall = wall.elapsed().as_secs_f64();

    let honest = vec![false; opts.nodes];
    let edges: Vec<(usize, usize)> = gossip_edges(&net, &honest)
        .values()
        .map(|e| (e.a, e.b))
        .collect();
    let (diam, component) = diameter(opts.nodes, &edges);
    let mut degree = vec![0usize; opts.nodes];
    for &(a, b) in &edges {
        degree[a] += 1;
        degree[b] += 1;
    }
    let bound_ms = diam as f64 * opts.latency_ms;

    let mut report = Report::new(
        "propagation",
        format!(
            "{} simulated grapevine nodes (the node core on a virtual clock)",
            opts.nodes
        ),
    );
    let baseline = "gossip graph diameter × link latency";
    if let Some(p50) = chaos.coverage_p50_ms {
        report.figures.push(Figure::new(
            "time to reach every node, p50",
            p50,
            "ms",
            baseline,
            bound_ms,
        ));
    }
    if let Some(p99) = chaos.coverage_p99_ms {
        report.figures.push(Figure::new(
            "time to reach every node, p99",
            p99,
            "ms",
            baseline,
            bound_ms,
        ));
    }
    if let Some(d) = chaos.duplicates_per_item {
        report.figures.push(Figure::new(
            "bodies received per node per item",
            d,
            "bodies",
            "one body each",
            1.0,
        ));
    }
    if let Some(a) = chaos.announcements_per_node_per_item {
        report.figures.push(Figure::alone(
            "announcements received per node per item",
            a,
            "announcements",
        ));
    }
    // Each item's own floor: hops from its source to the farthest node (over the links that
    // stayed up while it spread) × 3 link crossings per hop (an announcement, a request, the
    // body). Whatever an item took beyond that is the nodes' own delay (batching, queueing
    // behind other messages, bandwidth): the part the node controls.
    let mut above_floor: Vec<(f64, f64)> = Vec::new();
    let mut worst: Option<(f64, usize, &'static str)> = None;
    for item in &chaos.items {
        let Some(ms) = item.coverage_ms else {
            continue;
        };
        let ecc = item.source_eccentricity_hops;
        let floor = 3.0 * ecc as f64 * opts.latency_ms;
        if ecc > 0 {
            above_floor.push((ms - floor, (ms - floor) / ecc as f64));
        }
        if worst.is_none_or(|(w, _, _)| ms > w) {
            worst = Some((ms, ecc, item.kind));
        }
    }
    if let Some((ms, ecc, kind)) = worst {
        report.detail("slowest_item_ms", ms);
        report.detail("slowest_item_kind", kind);
        report.detail("slowest_item_source_eccentricity_hops", ecc as u64);
    }
    if !above_floor.is_empty() {
        let max_above = above_floor.iter().map(|a| a.0).fold(f64::MIN, f64::max);
        let mean_per_hop = above_floor.iter().map(|a| a.1).sum::<f64>() / above_floor.len() as f64;
        report.detail("max_ms_above_item_floor", max_above);
        report.detail("mean_ms_above_item_floor_per_hop", mean_per_hop);
    }
    let accepted = chaos.items.iter().filter(|i| i.accepted).count();
    let complete = chaos
        .items
        .iter()
        .filter(|i| i.accepted && i.reached == i.expected)
        .count();
    report.detail("nodes", opts.nodes as u64);
    report.detail("items", chaos.items.len() as u64);
    report.detail("items_accepted", accepted as u64);
    report.detail("items_reaching_every_expected_node", complete as u64);
    report.detail("diameter_hops", diam as u64);
    report.detail("largest_component", component as u64);
    report.detail("link_latency_ms", opts.latency_ms);
    report.detail("link_bandwidth_bytes_per_s", opts.bandwidth);
    report.detail("commit_ms", opts.commit_ms);
    report.detail("p99_bound_ms", 3.0 * bound_ms);
    report.detail(
        "peers_min",
        degree.iter().copied().min().unwrap_or(0) as u64,
    );
    report.detail(
        "peers_mean",
        degree.iter().sum::<usize>() as f64 / opts.nodes.max(1) as f64,
    );
    report.detail(
        "peers_max",
        degree.iter().copied().max().unwrap_or(0) as u64,
    );
    report.detail("virtual_seconds", chaos.virtual_seconds);
    report.detail("wall_seconds", wall);
    report.detail("messages", chaos.deliveries);
    report.detail("violations", chaos.violations.len() as u64);
    for v in chaos.violations.iter().take(5) {
        report.note(format!("violation: {v}"));
    }
    report.note(format!(
        "ratio of the p99 to the baseline: the issue's bound is 3 (an announcement, a request and \
         the body per hop); {} items, seed {}",
        chaos.items.len(),
        opts.seed
    ));
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diameter_of_a_line_and_a_ring() {
        let line: Vec<(usize, usize)> = (0..4).map(|i| (i, i + 1)).collect();
        assert_eq!(diameter(5, &line), (4, 5));
        let mut ring = line.clone();
        ring.push((4, 0));
        assert_eq!(diameter(5, &ring), (2, 5));
        // The largest component counts, not an isolated pair.
        let mut two = line;
        two.push((6, 7));
        assert_eq!(diameter(8, &two), (4, 5));
    }

    #[test]
    fn a_small_network_reports_its_figures() {
        let opts = Options {
            nodes: 30,
            items: 4,
            seconds: 70,
            settle_seconds: 25,
            ..Options::modest()
        };
        let r = run(&opts).unwrap();
        let d = &r.details;
        assert_eq!(d["items"], 4);
        assert!(d["diameter_hops"].as_u64().unwrap() >= 1);
        assert_eq!(d["largest_component"], 30);
        assert_eq!(d["violations"], 0, "{:?}", r.notes);
        assert!(r.figures.iter().any(|f| f.name.contains("p99")));
    }
}
