//! `sync`: blocks per second while a fresh grapevine node catches up with a chain of small
//! blocks from two serving grapevine nodes, over real sockets on 127.0.0.1 (all three inside
//! the bench process, each store on disk). The servers' stores are written directly before
//! they start; writing the first one is the baseline: the same blocks applied to a
//! [`RelayStore`] in batches of [`MAX_BLOCKS_TO_HANDLE_AT_ONCE`], with no network, timed until
//! all are durable. The sync is timed until the syncing node reports the last block as its
//! (durable) head.
//!
//! A probe peer connected to the syncing node sends a time request every
//! [`PROBE_INTERVAL`] while it syncs: its round trips show whether the node keeps serving its
//! peers while it applies blocks.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::client::open_active;
use super::target::TempDir;
use super::{BenchError, BenchResult, Figure, Report, p50_p99};
use crate::app::Delegate;
use crate::app::relay_store::{RelayStore, STORE_FILE, make_test_chain};
use crate::crypto::NodeKey;
use crate::node::NodeConfig;
use crate::node::config::MAX_BLOCKS_TO_HANDLE_AT_ONCE;
use crate::runtime::{self, NodeHandle, RuntimeConfig};
use crate::wire::types::Sha256;

/// The chain synced.
pub const SYNC_CHAIN_ID: Sha256 = Sha256([0x5b; 32]);
/// Timestamp of block 1 (the chain must lie in the past: nodes refuse blocks from the future).
pub const FIRST_BLOCK_TIME: u32 = 1_600_000_000;
/// Time between the probe's time requests.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(20);
/// How often the syncing node's head is polled.
const POLL_INTERVAL: Duration = Duration::from_millis(5);

/// What to run.
#[derive(clap::Args, Clone, Debug)]
pub struct Options {
    /// Blocks in the chain to catch up with.
    #[arg(long, default_value_t = 100_000)]
    pub blocks: u32,
    /// Seconds the sync may take before the bench gives up.
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
}

impl Options {
    /// The defaults of `grapevine-bench all`.
    pub fn modest() -> Self {
        Self {
            blocks: 20_000,
            timeout: 600,
        }
    }
}

fn config(dir: &TempDir, seeds: Vec<String>) -> RuntimeConfig {
    RuntimeConfig {
        node: NodeConfig {
            chain_id: SYNC_CHAIN_ID,
            connect_to_new_peers: false,
            ..NodeConfig::default()
        },
        data_dir: dir.path().to_path_buf(),
        p2p_endpoint: SocketAddr::from(([127, 0, 0, 1], 0)),
        seed_nodes: seeds,
    }
}

fn store_error(e: impl std::fmt::Display) -> BenchError {
    BenchError::Setup(format!("relay store: {e}"))
}

/// What the sync run measured.
struct Synced {
    seconds: f64,
    bytes_from: Vec<u64>,
    probe_ms: Vec<f64>,
    probe_error: Option<String>,
}

/// Runs the measurement.
pub fn run(opts: &Options) -> BenchResult<Report> {
    let n = opts.blocks.max(1);
    let blocks = make_test_chain(Default::default(), n, FIRST_BLOCK_TIME);

    // Baseline: the first server's store written directly.
    let dir_a = TempDir::new("sync-a")?;
    let store_seconds = {
        let mut store =
            RelayStore::open(&dir_a.path().join(STORE_FILE), SYNC_CHAIN_ID).map_err(store_error)?;
        let started = Instant::now();
        for batch in blocks.chunks(MAX_BLOCKS_TO_HANDLE_AT_ONCE) {
            store.handle_blocks(batch, true);
        }
        // Accepted batches are committed behind: the time counts until all are durable.
        store.make_durable().map_err(store_error)?;
        let took = started.elapsed().as_secs_f64();
        if store.head().number != n {
            return Err(store_error(format!(
                "head {} after applying {n} blocks",
                store.head().number
            )));
        }
        took
    };
    drop(blocks);
    let dir_b = TempDir::new("sync-b")?;
    std::fs::copy(dir_a.path().join(STORE_FILE), dir_b.path().join(STORE_FILE))?;
    let dir_c = TempDir::new("sync-c")?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let synced = rt.block_on(async {
        let start = |dir: &TempDir, seeds| runtime::start(config(dir, seeds));
        let a = start(&dir_a, vec![])
            .await
            .map_err(|e| BenchError::Setup(e.to_string()))?;
        let b = start(&dir_b, vec![])
            .await
            .map_err(|e| BenchError::Setup(e.to_string()))?;
        let servers: Vec<SocketAddr> = [&a, &b].iter().filter_map(|h| h.p2p_endpoint).collect();
        let seeds = servers.iter().map(ToString::to_string).collect();
        let started = Instant::now();
        let c = start(&dir_c, seeds)
            .await
            .map_err(|e| BenchError::Setup(e.to_string()))?;
        let result = catch_up(&c, n, started, opts.timeout, &servers).await;
        c.shutdown().await;
        a.shutdown().await;
        b.shutdown().await;
        result
    })?;
    rt.shutdown_timeout(Duration::from_secs(5));

    let mut report = Report::new(
        "sync",
        "three grapevine nodes inside the bench process on 127.0.0.1 (two serving, one syncing)",
    );
    let rate = f64::from(n) / synced.seconds;
    report.figures.push(Figure::new(
        "blocks per second from two serving peers",
        rate,
        "blocks/s",
        "the same blocks applied to a relay store directly, no network",
        f64::from(n) / store_seconds,
    ));
    report.detail("blocks", u64::from(n));
    report.detail("sync_seconds", synced.seconds);
    report.detail("store_seconds", store_seconds);
    report.detail(
        "bytes_from_each_server",
        serde_json::to_value(&synced.bytes_from).unwrap_or_default(),
    );
    let mut probe = synced.probe_ms;
    let samples = probe.len();
    let max = probe.iter().copied().fold(0.0, f64::max);
    let (p50, p99) = p50_p99(&mut probe);
    report.detail("probe_round_trips", samples as u64);
    if let (Some(p50), Some(p99)) = (p50, p99) {
        report.detail("probe_rtt_p50_ms", p50);
        report.detail("probe_rtt_p99_ms", p99);
        report.detail("probe_rtt_max_ms", max);
    }
    if let Some(e) = synced.probe_error {
        report.note(format!("the probe peer stopped: {e}"));
    }
    report.note(
        "blocks of 132 bytes without transactions: this measures per-block protocol and commit \
         work, not bandwidth",
    );
    Ok(report)
}

/// Waits until `c` has all `n` blocks, probing it with time requests meanwhile.
async fn catch_up(
    c: &NodeHandle,
    n: u32,
    started: Instant,
    timeout: u64,
    servers: &[SocketAddr],
) -> BenchResult<Synced> {
    let addr = c
        .p2p_endpoint
        .ok_or_else(|| BenchError::Setup("the syncing node does not listen".into()))?;
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let probe = tokio::spawn(async move {
        let identity = NodeKey::generate();
        let mut rtts = Vec::new();
        let mut conn = match open_active(addr, None, SYNC_CHAIN_ID, &identity).await {
            Ok(c) => c,
            Err(e) => return (rtts, Some(e.to_string())),
        };
        loop {
            tokio::select! {
                _ = &mut stop_rx => return (rtts, None),
                r = conn.time_round_trip() => match r {
                    Ok(d) => rtts.push(d.as_secs_f64() * 1000.0),
                    Err(e) => return (rtts, Some(e.to_string())),
                },
            }
            tokio::time::sleep(PROBE_INTERVAL).await;
        }
    });
    let deadline = started + Duration::from_secs(timeout);
    let seconds = loop {
        if c.info().await.is_some_and(|i| i.head_block_number >= n) {
            break started.elapsed().as_secs_f64();
        }
        if Instant::now() >= deadline {
            return Err(BenchError::Timeout("the sync to finish"));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    };
    let _ = stop_tx.send(());
    let (probe_ms, probe_error) = probe.await.unwrap_or_default();
    let peers = c.peers().await.unwrap_or_default();
    let bytes_from = servers
        .iter()
        .map(|s| {
            let s = s.to_string();
            peers
                .iter()
                .filter(|p| p.endpoint == s)
                .map(|p| p.bytes_received)
                .sum()
        })
        .collect();
    Ok(Synced {
        seconds,
        bytes_from,
        probe_ms,
        probe_error,
    })
}
