//! Blockchain sync throughput: a fresh node catches up with one holding 10,000 blocks over
//! real sockets on 127.0.0.1, against a same-run baseline of the relay store applying the same
//! blocks directly (what sync would cost with no network at all).
//!
//! `cargo bench --bench sync` prints blocks per second for both and their ratio.

use std::time::{Duration, Instant};

use grapevine::app::Delegate;
use grapevine::app::relay_store::{RelayStore, STORE_FILE, make_test_chain};
use grapevine::node::NodeConfig;
use grapevine::runtime::{self, RuntimeConfig};
use grapevine::wire::types::Sha256;

const BLOCKS: u32 = 10_000;
const RUNS: usize = 3;

fn temp_dir(name: &str) -> std::path::PathBuf {
    let mut id = [0u8; 8];
    getrandom::fill(&mut id).expect("random");
    let d = std::env::temp_dir().join(format!("grapevine-bench-{name}-{}", hex::encode(id)));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

fn config(dir: std::path::PathBuf, chain: Sha256, seeds: Vec<String>) -> RuntimeConfig {
    RuntimeConfig {
        node: NodeConfig {
            chain_id: chain,
            connect_to_new_peers: false,
            ..NodeConfig::default()
        },
        data_dir: dir,
        p2p_endpoint: "127.0.0.1:0".parse().expect("endpoint"),
        seed_nodes: seeds,
    }
}

fn main() {
    // `cargo test --benches` runs bench binaries with --bench absent: keep that quick.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let chain = Sha256([3; 32]);
    let blocks = make_test_chain(Default::default(), BLOCKS, 1_600_000_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut baseline = Vec::new();
    let mut synced = Vec::new();
    for run in 0..RUNS {
        // Baseline: the store alone, in batches of 200 as sync hands them over.
        let dir = temp_dir("direct");
        let mut store = RelayStore::open(&dir.join(STORE_FILE), chain).expect("store");
        let t = Instant::now();
        for batch in blocks.chunks(200) {
            store.handle_blocks(batch, true);
        }
        // Committed behind the store: timed until durable.
        store.make_durable().expect("durable");
        let direct = t.elapsed();
        assert_eq!(store.head().number, BLOCKS);
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);

        // Sync: node b catches up with node a over TCP.
        let dir_a = temp_dir("a");
        {
            let mut s = RelayStore::open(&dir_a.join(STORE_FILE), chain).expect("store");
            for batch in blocks.chunks(1000) {
                s.handle_blocks(batch, true);
            }
        }
        let took = rt.block_on(async {
            let a = runtime::start(config(dir_a.clone(), chain, vec![]))
                .await
                .expect("a");
            let seed = a.p2p_endpoint.expect("listening").to_string();
            let dir_b = temp_dir("b");
            let t = Instant::now();
            let b = runtime::start(config(dir_b.clone(), chain, vec![seed]))
                .await
                .expect("b");
            loop {
                if b.info()
                    .await
                    .is_some_and(|i| i.head_block_number == BLOCKS)
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let took = t.elapsed();
            b.shutdown().await;
            a.shutdown().await;
            let _ = std::fs::remove_dir_all(&dir_b);
            took
        });
        let _ = std::fs::remove_dir_all(&dir_a);
        let rate = |d: Duration| f64::from(BLOCKS) / d.as_secs_f64();
        println!(
            "run {run}: direct store {:.0} blocks/s, sync over TCP {:.0} blocks/s",
            rate(direct),
            rate(took)
        );
        baseline.push(rate(direct));
        synced.push(rate(took));
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (b, s) = (median(&mut baseline), median(&mut synced));
    println!(
        "median of {RUNS}: direct {b:.0} blocks/s, sync {s:.0} blocks/s, sync/direct = {:.2}",
        s / b
    );
}
