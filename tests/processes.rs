//! `grapevine run` as separate processes: a line of five becomes a mesh; SIGINT exits 0 with
//! the peer database flushed.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::process::{Proc, Run, free_port, get, spawn};
use support::{CHAIN, temp_dir};

/// A node of this test: warnings only, discarded.
fn start(dir: &Path, p2p: u16, rpc: u16, seed: Option<u16>) -> Proc {
    spawn(
        dir,
        p2p,
        rpc,
        Run {
            seed,
            ..Run::default()
        },
    )
}

/// The body of a plain HTTP GET.
fn http_get_text(rpc: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", rpc)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn five_nodes_in_a_line_become_a_mesh() {
    let n = 5;
    let p2p: Vec<u16> = (0..n).map(|_| free_port()).collect();
    let rpc: Vec<u16> = (0..n).map(|_| free_port()).collect();
    let base = temp_dir("mesh");
    let _procs: Vec<Proc> = (0..n)
        .map(|i| {
            let seed = if i == 0 { None } else { Some(p2p[i - 1]) };
            start(&base.join(format!("n{i}")), p2p[i], rpc[i], seed)
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    let last = loop {
        let current = (0..n)
            .map(|i| {
                get(rpc[i], "/peers")
                    .and_then(|v| v.as_array().cloned())
                    .map(|peers| {
                        peers
                            .iter()
                            .filter(|p| p["state"] == "active")
                            .filter_map(|p| p["node_id"].as_str().map(str::to_string))
                            .collect::<std::collections::BTreeSet<_>>()
                    })
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>();
        if current.iter().all(|s| s.len() == n - 1) {
            break current;
        }
        assert!(
            Instant::now() < deadline,
            "no mesh within 60 s: {current:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    // Every node's peers are the four others, by node id.
    let ids: Vec<String> = (0..n)
        .map(|i| {
            get(rpc[i], "/info").unwrap()["node_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    for (i, peers) in last.iter().enumerate() {
        for (j, id) in ids.iter().enumerate() {
            if i != j {
                assert!(peers.contains(id), "node {i} lacks node {j}");
            }
        }
    }
}

#[test]
fn sigint_exits_zero_with_the_peer_database_flushed() {
    let dir = temp_dir("sigint");
    let (p2p_a, rpc_a, p2p_b, rpc_b) = (free_port(), free_port(), free_port(), free_port());
    let _a = start(&dir.join("a"), p2p_a, rpc_a, None);
    let mut b = start(&dir.join("b"), p2p_b, rpc_b, Some(p2p_a));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let info = get(rpc_b, "/info");
        if info.is_some_and(|i| i["connections"]["active"] == 1) {
            break;
        }
        assert!(Instant::now() < deadline, "b never connected");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The memory accounting is in /info and /metrics.
    let info = get(rpc_b, "/info").unwrap();
    assert_eq!(info["memory"]["connections"]["active"], 1);
    assert!(info["memory"]["peer_db_records"].as_u64() >= Some(1));
    assert!(info["memory"]["not_durable_bytes"].is_u64());
    assert!(info["memory"]["items_to_fetch"].is_u64());
    let metrics = http_get_text(rpc_b, "/metrics");
    assert!(
        metrics.contains("grapevine_memory{figure=\"queued_bytes_total\"}"),
        "{metrics}"
    );
    let pid = b.0.id().to_string();
    let status = Command::new("kill").args(["-INT", &pid]).status().unwrap();
    assert!(status.success());
    let code = b.0.wait().unwrap();
    assert_eq!(code.code(), Some(0));
    let saved: Value = serde_json::from_slice(
        &std::fs::read(dir.join("b/p2p/peers.json")).expect("peer database written"),
    )
    .unwrap();
    let a_ep = format!("127.0.0.1:{p2p_a}");
    assert!(
        saved
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["endpoint"] == a_ep),
        "{saved}"
    );
}

/// Fills a data directory's relay store with `n` blocks, as a node holding a chain would have.
fn preload(dir: &Path, n: u32) -> String {
    let chain: grapevine::wire::types::Sha256 = CHAIN.parse().unwrap();
    let path = dir.join(grapevine::app::relay_store::STORE_FILE);
    let mut store = grapevine::app::relay_store::RelayStore::open(&path, chain).unwrap();
    let blocks = grapevine::app::relay_store::make_test_chain(Default::default(), n, 1_600_000_000);
    use grapevine::app::Delegate;
    for batch in blocks.chunks(1000) {
        store.handle_blocks(batch, true);
    }
    // Committed behind the store: wait until it is durable.
    store.make_durable().unwrap();
    assert_eq!(store.head().number, n);
    store.head().block_id.to_string()
}

fn head_of(rpc: u16) -> Option<u64> {
    get(rpc, "/info").and_then(|i| i["head_block_number"].as_u64())
}

#[test]
fn kill_during_sync_then_restart_keeps_every_acknowledged_block() {
    let dir = temp_dir("kill9");
    let total = 10_000u32;
    let head_id = preload(&dir.join("a"), total);
    let (p2p_a, rpc_a, p2p_b, rpc_b) = (free_port(), free_port(), free_port(), free_port());
    let _a = start(&dir.join("a"), p2p_a, rpc_a, None);
    let deadline = Instant::now() + Duration::from_secs(30);
    while head_of(rpc_a) != Some(u64::from(total)) {
        assert!(Instant::now() < deadline, "a never came up");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut b = start(&dir.join("b"), p2p_b, rpc_b, Some(p2p_a));
    // Watch b's head and kill it mid-sync.
    let deadline = Instant::now() + Duration::from_secs(60);
    let acknowledged = loop {
        if let Some(h) = head_of(rpc_b)
            && h >= 1000
        {
            break h;
        }
        assert!(Instant::now() < deadline, "b never started syncing");
        std::thread::sleep(Duration::from_millis(5));
    };
    assert!(
        acknowledged < u64::from(total),
        "killed before the sync finished"
    );
    // SIGKILL: no chance to flush anything.
    b.0.kill().unwrap();
    b.0.wait().unwrap();
    // Restarted with the same data directory: every block /info reported is still there.
    let _b = start(&dir.join("b"), p2p_b, rpc_b, Some(p2p_a));
    let deadline = Instant::now() + Duration::from_secs(30);
    let first = loop {
        if let Some(h) = head_of(rpc_b) {
            break h;
        }
        assert!(Instant::now() < deadline, "b did not restart");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        first >= acknowledged,
        "restarted at {first}, had acknowledged {acknowledged}"
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    while head_of(rpc_b) != Some(u64::from(total)) {
        assert!(
            Instant::now() < deadline,
            "b did not finish syncing: {:?}",
            head_of(rpc_b)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let info = get(rpc_b, "/info").unwrap();
    assert_eq!(info["head_block_id"], head_id.as_str());
}
