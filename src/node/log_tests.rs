//! What the node core tells the operator: each test captures the log its own thread writes
//! while a scenario runs on the simulated network, and counts the lines.
//!
//! One global subscriber serves every test; it formats an event only on a thread that is
//! capturing, into that thread's buffer. (A scoped `with_default` subscriber per test loses
//! lines now and then: a callsite first reached on another test's thread, with no subscriber,
//! can have its interest cached as "never" while the scoped one is being registered.)

use std::cell::RefCell;
use std::sync::{Arc, Mutex, Once};

use tracing_subscriber::layer::SubscriberExt;

use super::config::*;
use super::sim::{SimNet, listen_endpoint, test_node_id};
use super::*;
use crate::app::relay_store::make_test_chain;
use crate::wire::message::msg_type;

use super::tests::cfg;

/// A log captured at INFO and above, as plain text lines.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

thread_local! {
    /// Where this thread's log goes while a test captures it.
    static CAPTURE: RefCell<Option<Captured>> = const { RefCell::new(None) };
}

/// Writes into the current thread's capture, if any.
struct ThreadCapture;

impl std::io::Write for ThreadCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        CAPTURE.with(|c| {
            if let Some(captured) = c.borrow().as_ref() {
                captured.0.lock().unwrap().extend_from_slice(buf);
            }
        });
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the global subscriber once.
fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let capturing = tracing_subscriber::filter::dynamic_filter_fn(|meta, _| {
            *meta.level() <= tracing::Level::INFO && CAPTURE.with(|c| c.borrow().is_some())
        });
        let layer = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .without_time()
            .with_writer(|| ThreadCapture);
        let subscriber = tracing_subscriber::registry()
            .with(tracing_subscriber::Layer::with_filter(layer, capturing));
        tracing::subscriber::set_global_default(subscriber)
            .expect("no other test sets a global subscriber");
    });
}

impl Captured {
    /// Runs `f` with this buffer as the thread's log.
    fn run<T>(&self, f: impl FnOnce() -> T) -> T {
        install();
        let previous = CAPTURE.with(|c| c.replace(Some(self.clone())));
        let out = f();
        CAPTURE.with(|c| *c.borrow_mut() = previous);
        out
    }

    fn lines(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Lines at `level` (`"WARN"`, `"INFO"`) containing `text`.
    fn count(&self, level: &str, text: &str) -> usize {
        self.lines()
            .iter()
            .filter(|l| l.trim_start().starts_with(level) && l.contains(text))
            .count()
    }
}

#[test]
fn a_dead_seed_warns_once_per_interval_not_on_every_retry() {
    let log = Captured::default();
    let mut net = SimNet::new();
    let a = net.add_node(cfg(), test_node_id(1));
    let seed = listen_endpoint(7);
    log.run(|| {
        net.nodes[a].add_seed(seed, net.now);
        // Well within the warning interval: many retries, one warning.
        net.advance(SEED_WARN_INTERVAL_US / 2);
    });
    let failures = net.nodes[a]
        .peer_db()
        .get(&seed)
        .unwrap()
        .number_of_failed_connection_attempts;
    assert!(failures >= 3, "retried {failures} times");
    assert_eq!(
        log.count("WARN", "cannot reach seed node"),
        1,
        "{:?}",
        log.lines()
    );
    let first = log
        .lines()
        .into_iter()
        .find(|l| l.contains("cannot reach seed node"))
        .unwrap();
    assert!(first.contains(&format!("endpoint={seed}")), "{first}");
    assert!(first.contains("error="), "{first}");
    // Still down after the interval: reminded once more.
    log.run(|| net.advance(SEED_WARN_INTERVAL_US / 2 + SEED_MAX_RETRY_US));
    assert_eq!(
        log.count("WARN", "cannot reach seed node"),
        2,
        "{:?}",
        log.lines()
    );
}

#[test]
fn a_seed_that_comes_back_is_announced_once() {
    let log = Captured::default();
    let mut net = SimNet::new();
    let a = net.add_node(cfg(), test_node_id(1));
    let seed = listen_endpoint(1);
    log.run(|| {
        net.nodes[a].add_seed(seed, net.now);
        net.advance(1);
        let s = net.add_node(cfg(), test_node_id(2));
        assert_eq!(listen_endpoint(s), seed);
        net.advance(SEED_MAX_RETRY_US + CONNECT_LOOP_INTERVAL_US);
    });
    assert_eq!(net.nodes[a].connection_counts().active, 1);
    assert_eq!(log.count("WARN", "cannot reach seed node"), 1);
    assert_eq!(log.count("INFO", "seed node reachable again"), 1);
}

#[test]
fn sync_ends_with_one_synced_line() {
    let log = Captured::default();
    let mut net = SimNet::new();
    let mut c = cfg();
    c.connect_to_new_peers = false;
    let a = net.add_node(c.clone(), test_node_id(1));
    let blocks = make_test_chain(Default::default(), 300, 1_600_000_000);
    let now = net.now;
    for blk in &blocks {
        let b = net.nodes[a].broadcast(msg_type::BLOCK, blk.clone(), now);
        assert_eq!(b.outcome, BroadcastOutcome::Accepted);
    }
    let late = net.add_node(c, test_node_id(3));
    log.run(|| {
        let now = net.now;
        net.nodes[late].add_node(listen_endpoint(a), now);
        net.advance(10 * SECOND_US);
    });
    assert_eq!(net.nodes[late].delegate().head().number, 300);
    assert_eq!(
        log.count("INFO", "synced to block 300"),
        1,
        "{:?}",
        log.lines()
    );
    assert_eq!(log.count("INFO", "synced to block"), 1, "{:?}", log.lines());
}

#[test]
fn no_syncing_lines_while_a_progress_bar_shows_sync() {
    let log = Captured::default();
    let mut net = SimNet::new();
    let a = net.add_node(cfg(), test_node_id(1));
    net.nodes[a].set_log_sync_progress(false);
    // Blocks applied over several seconds, with a target ahead of them.
    net.nodes[a].sync_target = 1000;
    net.nodes[a].sync_running = true;
    log.run(|| {
        for s in 1..5 {
            net.nodes[a].blocks_applied(1, TimePoint(net.now.0 + s * 2 * SECOND_US));
        }
    });
    assert_eq!(log.count("INFO", "syncing"), 0, "{:?}", log.lines());
    net.nodes[a].set_log_sync_progress(true);
    log.run(|| {
        net.nodes[a].blocks_applied(1, TimePoint(net.now.0 + 20 * SECOND_US));
    });
    assert_eq!(log.count("INFO", "syncing"), 1, "{:?}", log.lines());
}

#[test]
fn a_peer_arriving_and_leaving_gives_one_info_line_each_with_the_reason() {
    let log = Captured::default();
    let mut net = SimNet::new();
    let a = net.add_node(cfg(), test_node_id(1));
    let b = net.add_node(cfg(), test_node_id(2));
    log.run(|| {
        let now = net.now;
        net.nodes[a].add_node(listen_endpoint(b), now);
        net.advance(SECOND_US);
    });
    assert_eq!(net.nodes[a].connection_counts().active, 1);
    // One "peer active" line on each side, with the direction.
    assert_eq!(log.count("INFO", "peer active"), 2, "{:?}", log.lines());
    assert_eq!(
        log.count("INFO", "direction=outbound"),
        1,
        "{:?}",
        log.lines()
    );
    let before = log.lines().len();
    log.run(|| {
        let now = net.now;
        // b may also hold a connection of its own to a in the handshake (its connect loop
        // dialling back); the one that leaves is the active one.
        let at_b = net.nodes[b]
            .peers
            .values()
            .find(|p| p.list == crate::peer::ConnectionList::Active)
            .map(|p| p.id)
            .expect("b has a as an active peer");
        net.nodes[b].disconnect(at_b, "Testing the log", false, now);
        net.advance(SECOND_US);
    });
    // a dials b again at once (as the reference does for a peer whose last connection
    // succeeded), so the lines, not the counts, tell that both sides saw the peer leave.
    let left: Vec<String> = log.lines()[before..]
        .iter()
        .filter(|l| l.contains("peer left"))
        .cloned()
        .collect();
    assert_eq!(left.len(), 2, "{left:?}");
    let at_a = left
        .iter()
        .find(|l| l.contains("closed by the peer"))
        .expect("a hears b's reason");
    assert!(at_a.contains("Testing the log"), "{at_a}");
    assert!(
        at_a.contains(&format!("endpoint={}", listen_endpoint(b))),
        "{at_a}"
    );
    // Both are alone now: each says so once.
    assert_eq!(
        log.count("INFO", "no active peers left"),
        2,
        "{:?}",
        log.lines()
    );
    // The goodbye itself is not a second INFO line.
    assert_eq!(log.count("INFO", "disconnecting"), 0);
    assert_eq!(log.count("INFO", "peer is closing"), 0);
}
