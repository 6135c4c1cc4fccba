//! Durability off the node task, on real sockets: while the relay store's commit is stuck in
//! its sync, the node keeps serving its peers, reports nothing that is not durable, and
//! advertises the item once the sync completes.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use grapevine::app::relay_store::{RelayStore, make_test_chain};
use grapevine::wire::Message;
use grapevine::wire::message::{CurrentTimeRequestMessage, message_hash, msg_type};
use grapevine::wire::types::{Ripemd160, TimePoint};
use redb::backends::InMemoryBackend;
use support::*;

/// Whether a disk's syncs wait, and how many are waiting.
#[derive(Debug, Default)]
struct Gate {
    closed: Mutex<bool>,
    opened: Condvar,
    waiting: AtomicUsize,
}

impl Gate {
    fn set(&self, closed: bool) {
        *self.closed.lock().unwrap() = closed;
        self.opened.notify_all();
    }
}

/// Opens the gate when dropped, so that a failing test does not leave the store's writer (and
/// the runtime's shutdown, which waits for it) stuck.
struct Opens(Arc<Gate>);

impl Drop for Opens {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

/// A disk in memory whose sync blocks while its gate is closed: a commit stuck in fsync.
#[derive(Debug)]
struct GatedDisk {
    inner: InMemoryBackend,
    gate: Arc<Gate>,
}

impl redb::StorageBackend for GatedDisk {
    fn len(&self) -> std::io::Result<u64> {
        self.inner.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
        self.inner.read(offset, out)
    }

    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.inner.set_len(len)
    }

    fn sync_data(&self) -> std::io::Result<()> {
        let mut closed = self.gate.closed.lock().unwrap();
        if *closed {
            self.gate.waiting.fetch_add(1, Ordering::SeqCst);
            while *closed {
                closed = self.gate.opened.wait(closed).unwrap();
            }
            self.gate.waiting.fetch_sub(1, Ordering::SeqCst);
        }
        self.inner.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.inner.write(offset, data)
    }
}

/// Polls `f` every 10 ms until it holds or `limit` passes.
async fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    f()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_are_served_while_a_commit_is_stuck_and_nothing_is_advertised_before_it_is_durable() {
    let gate = Arc::new(Gate::default());
    let disk = GatedDisk {
        inner: InMemoryBackend::new(),
        gate: gate.clone(),
    };
    let store = RelayStore::with_backend(disk, CHAIN.parse().unwrap()).unwrap();
    let mut c = config(temp_dir("durable-gate"), vec![]);
    c.node.connect_to_new_peers = false;
    let node = grapevine::runtime::start_with_delegate(c, Box::new(store))
        .await
        .expect("node starts");
    let mut peer = RawPeer::connect(addr(&node)).await;
    peer.activate(CHAIN).await;
    // In sync with the node (an empty chain), so that it advertises new items to the peer.
    peer.catch_up().await;

    gate.set(true);
    let _opens = Opens(gate.clone());
    let block = make_test_chain(Ripemd160::default(), 1, 1_600_000_000).remove(0);
    let hash = message_hash(&block);
    // Accepted at once: the commit goes on behind, and gets stuck in its sync.
    let broadcast = node.broadcast(msg_type::BLOCK, block.clone());
    let answer = tokio::time::timeout(Duration::from_secs(10), broadcast).await;
    assert_eq!(accepted(answer.expect("the node answers")), hash);
    assert!(
        eventually(Duration::from_secs(10), || gate
            .waiting
            .load(Ordering::SeqCst)
            > 0)
        .await,
        "the commit reaches its sync"
    );

    // Meanwhile the node serves its peer: every time request is answered, and nothing is
    // advertised.
    for _ in 0..10 {
        peer.send(Message::CurrentTimeRequest(CurrentTimeRequestMessage {
            request_sent_time: TimePoint(0),
        }))
        .await;
        loop {
            let m = peer
                .recv(Duration::from_secs(2))
                .await
                .expect("a time reply while the commit is stuck");
            assert_ne!(
                m.msg_type(),
                msg_type::ITEM_IDS_INVENTORY,
                "advertised before durable: {m:?}"
            );
            if m.msg_type() == msg_type::CURRENT_TIME_REPLY {
                break;
            }
        }
    }
    assert_eq!(gate.waiting.load(Ordering::SeqCst), 1, "still stuck");
    // The node has the block (reads see what it accepted) but reports the durable head.
    let block_len = block.len();
    assert_eq!(node.get_item(hash).await.map(|(_, d)| d), Some(block));
    let info = node.info().await.unwrap();
    assert_eq!(info.head_block_number, 0);
    // The memory accounting shows the block held until it is durable.
    assert!(
        info.memory.not_durable_bytes >= block_len,
        "{:?}",
        info.memory
    );

    // The sync completes: the block is advertised, and is the head.
    gate.set(false);
    let m = peer
        .recv_type(msg_type::ITEM_IDS_INVENTORY, Duration::from_secs(10))
        .await
        .expect("advertised once durable");
    let Message::ItemIdsInventory(m) = m else {
        unreachable!()
    };
    assert_eq!(m.item_hashes_available, vec![hash]);
    let info = node.info().await.unwrap();
    assert_eq!(info.head_block_number, 1);
    assert_eq!(info.memory.not_durable_bytes, 0);
    node.shutdown().await;
}
