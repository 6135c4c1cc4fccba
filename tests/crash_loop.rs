//! Crash safety, repeated: a `grapevine run` process that syncs and relays blocks from a serving
//! node, saves its peer database every second and bans a stream of hostile addresses, is killed
//! with SIGKILL at 20 random moments and restarted on the same data directory each time.
//!
//! Every time it must start; never lose a block `/info` reported (the head after a restart is
//! at least the last head seen before the kill, and on the serving node's chain) nor a ban
//! `GET /bans` reported; and never leave a file it cannot read (no `*.unreadable-*` appears,
//! `peers.json`, `bans.json` and `node_key` parse, the key never changes).
//!
//! The kill moments come from a seeded generator; the seed is printed, and
//! `CRASH_LOOP_SEED=N cargo test --test crash_loop` replays a run.

#[path = "support/mod.rs"]
mod support;

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use grapevine::crypto::NodeKey;
use grapevine::store::UNREADABLE_SUFFIX;
use grapevine::wire::Message;
use grapevine::wire::channel::SecureChannel;
use grapevine::wire::types::CompactSignatureBytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use support::process::{Proc, Run, free_port, get, spawn};
use support::{CHAIN, RawPeer, connect_from, random_node_id, temp_dir};

/// Kills (and restarts) of the node under test.
const KILLS: usize = 20;
/// Blocks the serving node holds at start; the node under test syncs them.
const PRELOADED: u32 = 10_000;
/// Blocks the serving node then receives one by one and gossips on.
const LIVE: u32 = 20_000;
/// Longest time the node runs before a kill, after its API first answers: past a second, so
/// about half the runs also write the peer database (saved every second here).
const MAX_RUN: Duration = Duration::from_millis(1500);
/// How long a start may take.
const START_LIMIT: Duration = Duration::from_secs(30);

/// A node of this test: warnings to `log`, the peer database saved every second.
fn start(dir: &Path, p2p: u16, rpc: u16, seed: Option<u16>, log: &Path) -> Proc {
    let run = Run {
        seed,
        stderr: Some(log),
        extra: &["--peer-db-save-seconds", "1"],
        ..Run::default()
    };
    spawn(dir, p2p, rpc, run)
}

/// splitmix64: a tiny seeded generator, so a failing run can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn api(rpc: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], rpc))
}

fn head(rpc: u16) -> Option<(u64, String)> {
    let i = get(rpc, "/info")?;
    Some((
        i["head_block_number"].as_u64()?,
        i["head_block_id"].as_str()?.to_string(),
    ))
}

fn banned(rpc: u16) -> Option<BTreeSet<String>> {
    let v = get(rpc, "/bans")?;
    Some(
        v.as_array()?
            .iter()
            .filter_map(|b| b["ip"].as_str().map(str::to_string))
            .collect(),
    )
}

/// Every file the node reads at start parses, and nothing was moved aside. Returns the key.
fn check_files(dir: &Path) -> Option<String> {
    let p2p = dir.join("p2p");
    for entry in std::fs::read_dir(&p2p).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        assert!(
            !name.contains(UNREADABLE_SUFFIX),
            "{name} was moved aside in {}",
            p2p.display()
        );
    }
    parse_start_files(dir)
}

/// `peers.json`, `bans.json` (where present) and `node_key` parse. Returns the key.
fn parse_start_files(dir: &Path) -> Option<String> {
    let p2p = dir.join("p2p");
    if let Ok(bytes) = std::fs::read(p2p.join("peers.json")) {
        grapevine::store::peer_db::parse(&bytes).expect("peers.json parses");
    }
    if let Ok(bytes) = std::fs::read(p2p.join("bans.json")) {
        grapevine::store::bans::parse(&bytes).expect("bans.json parses");
    }
    let key = std::fs::read_to_string(p2p.join("node_key")).ok()?;
    let raw = hex::decode(key.trim()).expect("node_key is hex");
    assert_eq!(raw.len(), 32, "node_key holds 32 bytes");
    Some(key)
}

/// Connects from a new loopback address each time and sends a hello with a forged signature,
/// which bans the address at once: bans are written all the time.
fn hostile_stream(target: SocketAddr, stop: Arc<AtomicBool>, attempts: Arc<AtomicUsize>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let mut k: u32 = 0;
        while !stop.load(Ordering::Relaxed) {
            k += 1;
            let ip = Ipv4Addr::new(127, 10 + (k / 250) as u8, (k % 250) as u8 + 1, 1);
            attempts.fetch_add(1, Ordering::Relaxed);
            // The node may die under us at any point: a failed attempt is just skipped.
            let attempt = forged_hello(target, ip);
            let _ = tokio::time::timeout(Duration::from_secs(3), attempt).await;
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    });
}

/// One connection from `ip` that sends a hello signed over the wrong secret; `None` if the
/// node went away meanwhile.
async fn forged_hello(target: SocketAddr, ip: Ipv4Addr) -> Option<()> {
    let mut stream = connect_from(target, ip).await.ok()?;
    let mut channel = SecureChannel::new();
    stream.write_all(channel.our_key()).await.ok()?;
    let mut buf = [0u8; 64];
    while !channel.is_established() {
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        channel.receive(&buf[..n]).ok()?;
    }
    let mut peer = RawPeer {
        stream,
        channel,
        key: NodeKey::generate(),
    };
    let mut hello = peer.hello(CHAIN, random_node_id());
    hello.signed_shared_secret = CompactSignatureBytes(peer.key.sign_compact(&[9; 32]));
    let mut out = BytesMut::new();
    peer.channel.send(&Message::Hello(hello), &mut out).ok()?;
    peer.stream.write_all(&out).await.ok()?;
    peer.closed_within(Duration::from_secs(2))
        .await
        .then_some(())
}

/// Hands the serving node its live blocks one by one, as a block producer would.
fn feed_blocks(rpc: u16, blocks: Vec<Vec<u8>>, stop: Arc<AtomicBool>, fed: Arc<AtomicUsize>) {
    for b in blocks {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let body = serde_json::json!({ "type": 1001, "data": hex::encode(&b) });
        if grapevine::cli::status::post_json(api(rpc), "/broadcast", &body).is_err() {
            // The serving node is gone (the test failed): the final check will say so.
            return;
        }
        fed.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn twenty_kills_lose_no_block_no_ban_and_no_file() {
    let started = Instant::now();
    let seed = std::env::var("CRASH_LOOP_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            let mut b = [0u8; 8];
            getrandom::fill(&mut b).unwrap();
            u64::from_le_bytes(b)
        });
    println!("crash loop seed {seed} (replay with CRASH_LOOP_SEED={seed})");
    let mut rng = Rng(seed);

    let dir = temp_dir("loop");
    let (a_dir, b_dir) = (dir.join("a"), dir.join("b"));
    let chain = grapevine::app::relay_store::make_test_chain(
        Default::default(),
        PRELOADED + LIVE,
        1_500_000_000,
    );
    {
        let path = a_dir.join(grapevine::app::relay_store::STORE_FILE);
        std::fs::create_dir_all(&a_dir).unwrap();
        let mut store =
            grapevine::app::relay_store::RelayStore::open(&path, CHAIN.parse().unwrap()).unwrap();
        use grapevine::app::Delegate;
        for batch in chain[..PRELOADED as usize].chunks(1000) {
            store.handle_blocks(batch, true);
        }
        // Committed behind the store: wait until it is durable.
        store.make_durable().unwrap();
        assert_eq!(store.head().number, PRELOADED);
    }
    let (p2p_a, rpc_a, p2p_b, rpc_b) = (free_port(), free_port(), free_port(), free_port());
    let _a = start(&a_dir, p2p_a, rpc_a, None, &dir.join("a.log"));
    let deadline = Instant::now() + START_LIMIT;
    while head(rpc_a).map(|h| h.0) != Some(u64::from(PRELOADED)) {
        assert!(Instant::now() < deadline, "the serving node never came up");
        std::thread::sleep(Duration::from_millis(20));
    }

    let stop = Arc::new(AtomicBool::new(false));
    let (fed, attempts) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let feeder = {
        let (stop, fed) = (stop.clone(), fed.clone());
        let live = chain[PRELOADED as usize..].to_vec();
        std::thread::spawn(move || feed_blocks(rpc_a, live, stop, fed))
    };
    let hostile = {
        let (stop, attempts) = (stop.clone(), attempts.clone());
        let target = SocketAddr::from(([127, 0, 0, 1], p2p_b));
        std::thread::spawn(move || hostile_stream(target, stop, attempts))
    };

    // What the node under test has acknowledged so far.
    let mut acknowledged_head = 0u64;
    let mut acknowledged_bans: BTreeSet<String> = BTreeSet::new();
    let mut key: Option<String> = None;
    let (mut killed_behind, mut killed_in_bulk_sync) = (0, 0);
    // Rounds in which the peer database was written.
    let mut peer_db_writes = 0;
    let peers_json = b_dir.join("p2p").join("peers.json");
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    for round in 0..=KILLS {
        let log = dir.join(format!("b-{round}.log"));
        let before = modified(&peers_json);
        let mut b = start(&b_dir, p2p_b, rpc_b, Some(p2p_a), &log);
        // It always starts, with every acknowledged block and ban.
        let deadline = Instant::now() + START_LIMIT;
        let (first, first_id) = loop {
            if let Some(h) = head(rpc_b) {
                break h;
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: no start; see {}",
                log.display()
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        assert!(
            first >= acknowledged_head,
            "round {round}: restarted at {first}, had acknowledged {acknowledged_head}"
        );
        if first > 0 {
            assert!(
                get(rpc_a, &format!("/items/{first_id}")).is_some(),
                "round {round}: head {first} {first_id} is not on the serving node's chain"
            );
        }
        let bans = banned(rpc_b).expect("GET /bans answers");
        let lost: Vec<&String> = acknowledged_bans.difference(&bans).collect();
        assert!(lost.is_empty(), "round {round}: bans lost {lost:?}");
        let now_key = check_files(&b_dir);
        if let (Some(k), Some(n)) = (&key, &now_key) {
            assert_eq!(k, n, "round {round}: the node key changed");
        }
        key = key.or(now_key);
        if round == KILLS {
            // The last start is left running: it catches up with the serving node.
            let deadline = Instant::now() + Duration::from_secs(60);
            stop.store(true, Ordering::Relaxed);
            feeder.join().unwrap();
            let target = u64::from(PRELOADED) + fed.load(Ordering::Relaxed) as u64;
            while head(rpc_b).map(|h| h.0) != Some(target) {
                assert!(
                    Instant::now() < deadline,
                    "the node never caught up with {target}: {:?}",
                    head(rpc_b)
                );
                std::thread::sleep(Duration::from_millis(50));
            }
            assert_eq!(head(rpc_b), head(rpc_a), "same head as the serving node");
            drop(b);
            break;
        }
        // Run for a random time, watching what it acknowledges, then kill it.
        let run_ms = rng.below(MAX_RUN.as_millis() as u64);
        let run_until = Instant::now() + Duration::from_millis(run_ms);
        loop {
            if let Some((h, _)) = head(rpc_b) {
                acknowledged_head = acknowledged_head.max(h);
            }
            if let Some(b) = banned(rpc_b) {
                acknowledged_bans.extend(b);
            }
            if Instant::now() >= run_until {
                break;
            }
        }
        let serving = head(rpc_a).map_or(0, |h| h.0);
        killed_behind += usize::from(acknowledged_head < serving);
        killed_in_bulk_sync += usize::from(acknowledged_head < u64::from(PRELOADED));
        println!(
            "round {round}: started at {first}, killed after {run_ms} ms at {acknowledged_head} \
             (serving node at {serving}), {} bans",
            acknowledged_bans.len()
        );
        b.0.kill().unwrap();
        b.0.wait().unwrap();
        peer_db_writes += usize::from(modified(&peers_json) != before);
        check_files(&b_dir);
    }
    stop.store(true, Ordering::Relaxed);
    hostile.join().unwrap();
    println!(
        "{KILLS} kills ({killed_behind} behind the serving node, {killed_in_bulk_sync} in the \
         first {PRELOADED}-block sync, {peer_db_writes} after writing peers.json), {} blocks fed live, {} hostile \
         attempts, {} bans kept, head {acknowledged_head}, {:.1} s",
        fed.load(Ordering::Relaxed),
        attempts.load(Ordering::Relaxed),
        acknowledged_bans.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(!acknowledged_bans.is_empty(), "bans were being written");
    assert!(killed_behind > 0, "kills landed while the node was behind");
    assert!(
        peer_db_writes > 0,
        "kills landed after peer database writes"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A node whose start files are torn (as by a disk that lied about a write) still starts: each
/// is moved aside under a new name, never overwritten, and the node goes on without it.
#[tokio::test]
async fn torn_start_files_are_moved_aside_and_the_node_starts() {
    let dir = temp_dir("torn");
    let p2p = dir.join("p2p");
    std::fs::create_dir_all(&p2p).unwrap();
    let torn: [(&str, &[u8]); 3] = [
        ("peers.json", b"[{\"endpoint\": \"127.0.0.1:17"),
        ("bans.json", b"[{\"ip\": "),
        ("node_key", b"not hex at all"),
    ];
    for (name, bytes) in torn {
        std::fs::write(p2p.join(name), bytes).unwrap();
    }
    let node = support::start(support::config(dir.clone(), vec![])).await;
    assert!(node.info().await.is_some(), "the node runs");
    node.shutdown().await;
    let names: Vec<String> = std::fs::read_dir(&p2p)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    for (name, bytes) in torn {
        let aside: Vec<&String> = names
            .iter()
            .filter(|n| n.starts_with(&format!("{name}{UNREADABLE_SUFFIX}")))
            .collect();
        assert_eq!(aside.len(), 1, "{name} moved aside once: {names:?}");
        assert_eq!(
            std::fs::read(p2p.join(aside[0])).unwrap(),
            bytes,
            "kept as it was"
        );
    }
    // The node wrote fresh, readable files in their place.
    parse_start_files(&dir).expect("a new node key");
    assert!(p2p.join("peers.json").exists(), "saved at shutdown");
    let _ = std::fs::remove_dir_all(&dir);
}
