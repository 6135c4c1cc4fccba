//! grapevine-sim: runs a seeded chaos scenario over many simulated nodes (the same node core as
//! `grapevine run`, on a virtual clock) and prints how items spread and what became of hostile
//! nodes. See `grapevine::node::sim::chaos` for the scenario and the properties checked.
//!
//! ```sh
//! cargo run --release --bin grapevine-sim -- --nodes 1000 --seed 7
//! ```

use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use grapevine::node::sim::LinkModel;
use grapevine::node::sim::chaos::{ChaosConfig, ChaosObserver, ChaosReport, run_keeping_network};
use grapevine::node::sim::{Hostility, SIM_START_US, SimNet};

/// Simulate a grapevine network under chaos.
#[derive(Debug, Parser)]
#[command(name = "grapevine-sim", version)]
struct Args {
    /// Nodes in the network.
    #[arg(long, default_value_t = 1000)]
    nodes: usize,
    /// Seed of the run: the same seed gives the same run and the same trace hash.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Share of hostile nodes, percent.
    #[arg(long, default_value_t = 5.0)]
    hostile_percent: f64,
    /// Only hostile nodes of these kinds, in turn (repeatable): unrequested_items,
    /// bad_hello_signature, garbage_frames, inventory_flood, advertise_never_serve.
    #[arg(long, value_parser = parse_kind)]
    hostile_kind: Vec<Hostility>,
    /// Share of nodes killed and restarted, percent.
    #[arg(long, default_value_t = 20.0)]
    kill_percent: f64,
    /// Items broadcast (alternately transactions and blocks).
    #[arg(long, default_value_t = 50)]
    items: usize,
    /// No partition.
    #[arg(long)]
    no_partition: bool,
    /// Connections each node keeps.
    #[arg(long, default_value_t = 8)]
    desired_connections: usize,
    /// Connections each node never exceeds.
    #[arg(long, default_value_t = 32)]
    max_connections: usize,
    /// Smallest one-way latency, ms.
    #[arg(long, default_value_t = 5.0)]
    latency_min_ms: f64,
    /// Largest one-way latency, ms.
    #[arg(long, default_value_t = 80.0)]
    latency_max_ms: f64,
    /// Bytes a second per connection direction (0: unlimited).
    #[arg(long, default_value_t = 1_000_000)]
    bandwidth: u64,
    /// Chance a message needs a retransmission.
    #[arg(long, default_value_t = 0.001)]
    loss: f64,
    /// Chance per message that its connection is reset.
    #[arg(long, default_value_t = 0.00002)]
    reset: f64,
    /// Ids an inventory flood sends per hostile round and connection. From 60,000 on a flood
    /// fills the per-peer inventory cap and is banned, but every honest node it reaches reads
    /// 120,000 ids first, which makes a 1,000-node run about ten times slower; the default
    /// stays below the cap (such a flooder is dropped for not serving, never banned).
    #[arg(long, default_value_t = 200)]
    flood_size: usize,
    /// Virtual seconds the run lasts (the other phases scale with it).
    #[arg(long, default_value_t = 360)]
    seconds: i64,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// No progress on stderr.
    #[arg(long)]
    quiet: bool,
    /// After the run, print this node's connections and sync state (to look into a failure).
    #[arg(long)]
    inspect: Vec<usize>,
    /// After the run, print every message this node sent or received.
    #[arg(long)]
    trace: Vec<usize>,
}

fn parse_kind(s: &str) -> Result<Hostility, String> {
    Hostility::from_name(s).ok_or_else(|| format!("unknown hostile kind {s:?}"))
}

fn config(a: &Args) -> ChaosConfig {
    let mut c = ChaosConfig::new(a.seed, a.nodes);
    c.hostile_percent = a.hostile_percent;
    c.hostile_kinds = a.hostile_kind.clone();
    c.kill_percent = a.kill_percent;
    c.items = a.items;
    c.partition = !a.no_partition;
    c.desired_connections = a.desired_connections;
    c.max_connections = a.max_connections;
    c.links = LinkModel {
        latency_min_us: (a.latency_min_ms * 1000.0) as i64,
        latency_max_us: (a.latency_max_ms * 1000.0) as i64,
        bandwidth_bytes_per_sec: a.bandwidth,
        loss: a.loss,
        reset: a.reset,
        ..LinkModel::wan()
    };
    c.flood_size = a.flood_size;
    c.scale_to(a.seconds * 1_000_000);
    c.record_trace = !a.trace.is_empty();
    c
}

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".into(), |v| format!("{v:.0} ms"))
}

fn ratio(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".into(), |v| format!("{v:.2}"))
}

fn print_text(r: &ChaosReport, wall: f64) {
    let accepted = r.items.iter().filter(|i| i.accepted).count();
    let blocks = r.items.iter().filter(|i| i.kind == "block").count();
    println!(
        "grapevine-sim: {} nodes, seed {}, {:.0} virtual s in {wall:.1} s wall, {} messages",
        r.nodes, r.seed, r.virtual_seconds, r.deliveries
    );
    println!(
        "chaos: {} kills, {} restarts, {} nodes partitioned off then healed",
        r.kills, r.restarts, r.partitioned_nodes
    );
    println!(
        "items: {} ({} trx, {blocks} blocks), {accepted} accepted",
        r.items.len(),
        r.items.len() - blocks
    );
    println!(
        "coverage (broadcast until every live connected honest node has it): p50 {}, p99 {}",
        ms(r.coverage_p50_ms),
        ms(r.coverage_p99_ms)
    );
    println!(
        "duplicates per item: {} bodies per receiving node",
        ratio(r.duplicates_per_item)
    );
    println!(
        "announcements per node per item: {}",
        ratio(r.announcements_per_node_per_item)
    );
    for (k, i) in r.items.iter().enumerate() {
        println!(
            "  item {k:>3} {:<5} from node {:>4} at {:>6.1} s: reached {:>4} of {:>4} expected, \
             coverage {:>8}, bodies/receiver {}, announcements/receiver {}",
            i.kind,
            i.source,
            i.broadcast_at_s,
            i.reached,
            i.expected,
            ms(i.coverage_ms),
            ratio(i.bodies_per_receiver),
            ratio(i.announcements_per_receiver)
        );
    }
    let h = &r.hostile;
    let mut kinds: Vec<(&str, usize)> = Vec::new();
    for k in &h.kinds {
        match kinds.iter_mut().find(|(n, _)| n == k) {
            Some((_, c)) => *c += 1,
            None => kinds.push((k, 1)),
        }
    }
    let kinds: Vec<String> = kinds.iter().map(|(k, c)| format!("{c} {k}")).collect();
    println!(
        "hostile nodes: {} ({}); honest nodes dropped them {} times ({} active), longest active {:.1} s; \
         {} active at the end (oldest {:.1} s); bans: {}",
        h.nodes,
        kinds.join(", "),
        h.disconnections,
        h.active_disconnections,
        h.longest_active_ms / 1000.0,
        h.active_at_end,
        h.oldest_at_end_ms / 1000.0,
        h.bans.map_or_else(|| "n/a".into(), |b| b.to_string())
    );
    let b = &r.bounds;
    println!(
        "bounds seen: {} active / {} handshaking connections, {} B queued to a peer, \
         inventory {} to us / {} to a peer, serve queue {}",
        b.max_active_connections,
        b.max_handshaking_connections,
        b.max_queued_bytes,
        b.max_inventory_to_us,
        b.max_inventory_to_peer,
        b.max_serve_queue
    );
    println!(
        "end: {} live honest nodes in {} gossiping component(s) of sizes {:?}",
        r.live_honest_nodes_at_end,
        r.final_components.len(),
        r.final_components
    );
    println!("trace hash: {}", r.trace_hash);
    if r.violations.is_empty() {
        println!("violations: none");
    } else {
        println!("violations: {}", r.violations.len());
        for v in &r.violations {
            println!("  {v}");
        }
    }
}

/// Prints node `i`'s state at the end of the run.
fn inspect(net: &SimNet<ChaosObserver>, i: usize) {
    let Some(node) = net.nodes.get(i) else {
        eprintln!("no node {i}");
        return;
    };
    let secs = |t: i64| (t - SIM_START_US) as f64 / 1e6;
    let head = node.delegate().head().number;
    eprintln!(
        "node {i}: alive {}, restarts {}, hostile {:?}, head {head}",
        net.is_alive(i),
        net.incarnation(i),
        net.hostility(i)
    );
    eprintln!(
        "  next deadline {:.1} s; peer database:",
        secs(node.next_deadline().0)
    );
    for r in node.peer_db().by_last_seen() {
        eprintln!(
            "    {} seed {} {:?} attempts ok {} failed {} last attempt {:.1} s seen {:.1} s {:?}",
            r.endpoint,
            r.seed,
            r.last_connection_disposition,
            r.number_of_successful_connection_attempts,
            r.number_of_failed_connection_attempts,
            secs(r.last_connection_attempt_time.0),
            secs(r.last_seen_time.0),
            r.last_error
        );
    }
    for (k, id) in net.observer.ids.iter().enumerate() {
        let at = net.observer.acquired[k][i];
        if at != i64::MAX {
            eprintln!("  item {k} (type {}) since {:.1} s", id.item_type, secs(at));
        }
    }
    for p in node.peers() {
        let other = net.connection(i, p.id).map(|(_, v, pv)| {
            let q = net.nodes[v].peer(pv);
            (
                v,
                net.nodes[v].delegate().head().number,
                q.map(|q| {
                    (
                        q.list,
                        q.sync.peer_needs_sync_items,
                        q.sync.we_need_sync_items,
                    )
                }),
            )
        });
        eprintln!(
            "  peer {} {} {:?} since {:.1} s: they need sync {}, we need sync {}, ids request {:?}, \
             ids to get {}, blocks requested {}; other end (node, head, (list, needs, we need)) {:?}",
            p.id,
            p.remote_endpoint,
            p.list,
            secs(p.initiated_at.0),
            p.sync.peer_needs_sync_items,
            p.sync.we_need_sync_items,
            p.sync.ids_request.as_ref().map(|r| secs(r.1.0)),
            p.sync.ids_to_get.len(),
            p.sync.requested.len(),
            other
        );
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = config(&args);
    let started = Instant::now();
    let quiet = args.quiet;
    let mut last = 0.0;
    let (net, report) = run_keeping_network(&config, &mut |virtual_s| {
        if !quiet && virtual_s - last >= 30.0 {
            last = virtual_s;
            eprintln!(
                "  {virtual_s:.0} virtual s, {:.1} s wall",
                started.elapsed().as_secs_f64()
            );
        }
    });
    let wall = started.elapsed().as_secs_f64();
    for &i in &args.inspect {
        inspect(&net, i);
    }
    for d in net
        .trace
        .iter()
        .filter(|d| args.trace.contains(&d.from) || args.trace.contains(&d.to))
    {
        let fields = d
            .message
            .fields_json()
            .map(|f| f.to_string())
            .unwrap_or_default();
        let fields: String = fields.chars().take(160).collect();
        eprintln!(
            "{:>10.6} {:>4} -> {:<4} {} {fields}",
            (d.at.0 - SIM_START_US) as f64 / 1e6,
            d.from,
            d.to,
            d.message.name()
        );
    }
    if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("grapevine-sim: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        print_text(&report, wall);
    }
    if report.violations.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
