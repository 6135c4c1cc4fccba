//! grapevine-bench: a load generator that speaks the graphene protocol to any node and prints
//! each figure beside a baseline measured in the same run. See `grapevine::bench`.
//!
//! ```sh
//! cargo build --release --bins
//! target/release/grapevine-bench all
//! target/release/grapevine-bench --target 127.0.0.1:1776 --chain-id HEX handshakes --json
//! ```

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use grapevine::bench::target::{BENCH_CHAIN_ID, NodeOptions, SelfNode, Target};
use grapevine::bench::{
    BenchError, Report, connections, handshakes, propagation, raise_file_limit, stream, sync,
};
use grapevine::node::config::BITSHARES_MAINNET_CHAIN_ID;
use grapevine::wire::types::Sha256;

/// Measure a graphene node: each figure with a baseline from the same run and their ratio.
#[derive(Debug, Parser)]
#[command(name = "grapevine-bench", version)]
struct Args {
    /// The node to measure (IP:PORT). Without it the bench starts a grapevine node of its own
    /// on 127.0.0.1 with a temporary data directory.
    #[arg(long, global = true)]
    target: Option<SocketAddr>,
    /// The chain the target serves (hex); default: BitShares mainnet with --target, a bench
    /// chain for a node the bench starts.
    #[arg(long, global = true, value_parser = parse_chain)]
    chain_id: Option<Sha256>,
    /// Print one JSON object per subcommand instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// Start the bench's own node inside the bench process, even when the `grapevine` binary
    /// is next to this one (then it is started as a child process).
    #[arg(long, global = true)]
    in_process: bool,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// One connection: MB/s with 1 MiB messages and messages/s with 100 B messages, against
    /// AES-256-CBC on one core and plain TCP.
    Stream(stream::Options),
    /// Full connections per second (connect, key exchange, hello, accepted, addresses)
    /// against the crypto of a connection alone.
    Handshakes(handshakes::Options),
    /// Hold N handshaked peers: the target's memory per peer and a time request's round trip
    /// under that load.
    Connections(connections::Options),
    /// The simulated network: time for an item to reach every node against the graph's
    /// diameter × latency.
    Propagation(propagation::Options),
    /// Blocks per second catching up from two serving nodes against the bare store.
    Sync(sync::Options),
    /// Every subcommand in turn with modest sizes (a few minutes in all).
    All,
}

fn parse_chain(s: &str) -> Result<Sha256, String> {
    s.parse::<Sha256>()
        .map_err(|_| format!("not a 64-digit hex chain id: {s:?}"))
}

/// The node to measure: the one given, or one started now (kept running while it is measured).
fn target(args: &Args, max_connections: usize) -> Result<(Option<SelfNode>, Target), BenchError> {
    match args.target {
        Some(addr) => {
            let chain_id = match args.chain_id {
                Some(c) => c,
                None => BITSHARES_MAINNET_CHAIN_ID
                    .parse()
                    .map_err(|_| BenchError::Setup("bad built-in chain id".into()))?,
            };
            Ok((
                None,
                Target {
                    addr,
                    chain_id,
                    pid: None,
                    in_process: false,
                    description: format!("{addr}, given by --target"),
                },
            ))
        }
        None => {
            let opts = NodeOptions {
                chain_id: args.chain_id.unwrap_or(BENCH_CHAIN_ID),
                max_connections,
                in_process: args.in_process,
            };
            let (node, target) = SelfNode::start(&opts)?;
            Ok((Some(node), target))
        }
    }
}

fn with_target(
    args: &Args,
    max_connections: usize,
    f: impl FnOnce(&Target) -> Result<Report, BenchError>,
) -> Result<Report, BenchError> {
    let (node, target) = target(args, max_connections)?;
    let report = f(&target);
    drop(node);
    report
}

fn stream(args: &Args, o: &stream::Options) -> Result<Report, BenchError> {
    with_target(args, 200, |t| stream::run(t, o))
}

fn handshakes(args: &Args, o: &handshakes::Options) -> Result<Report, BenchError> {
    with_target(args, handshakes::max_connections(o), |t| {
        handshakes::run(t, o)
    })
}

fn connections(args: &Args, o: &connections::Options) -> Result<Report, BenchError> {
    // Raised before a node is started, so a child inherits the limit too.
    let in_process = args.target.is_none() && args.in_process;
    raise_file_limit(connections::files_needed(o.count, in_process));
    with_target(args, connections::max_connections(o), |t| {
        connections::run(t, o)
    })
}

fn self_contained(args: &Args, mut report: Report) -> Report {
    if args.target.is_some() {
        report.note("--target does not apply: this measurement starts its own nodes");
    }
    report
}

fn print(args: &Args, result: Result<Report, BenchError>, name: &str) -> bool {
    match result {
        Ok(r) if args.json => {
            println!("{}", r.to_json());
            true
        }
        Ok(r) => {
            println!("{}", r.to_text());
            true
        }
        Err(e) => {
            eprintln!("grapevine-bench {name}: {e}");
            false
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let ok = match &args.command {
        Cmd::Stream(o) => print(&args, stream(&args, o), "stream"),
        Cmd::Handshakes(o) => print(&args, handshakes(&args, o), "handshakes"),
        Cmd::Connections(o) => print(&args, connections(&args, o), "connections"),
        Cmd::Propagation(o) => print(
            &args,
            propagation::run(o).map(|r| self_contained(&args, r)),
            "propagation",
        ),
        Cmd::Sync(o) => print(
            &args,
            sync::run(o).map(|r| self_contained(&args, r)),
            "sync",
        ),
        Cmd::All => {
            let results = [
                print(&args, stream(&args, &stream::Options::modest()), "stream"),
                print(
                    &args,
                    handshakes(&args, &handshakes::Options::modest()),
                    "handshakes",
                ),
                print(
                    &args,
                    connections(&args, &connections::Options::modest()),
                    "connections",
                ),
                print(
                    &args,
                    propagation::run(&propagation::Options::modest())
                        .map(|r| self_contained(&args, r)),
                    "propagation",
                ),
                print(
                    &args,
                    sync::run(&sync::Options::modest()).map(|r| self_contained(&args, r)),
                    "sync",
                ),
            ];
            results.iter().all(|ok| *ok)
        }
    };
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
