//! A custom application on grapevine: a tiny "notice board" chain-less relay.
//!
//! Each node keeps notices (carried as trx messages, 1000) in memory; a notice is any message
//! data of at most 256 bytes that starts with b"NOTE". Two nodes start on 127.0.0.1, the first
//! posts its own notices, and the second receives them through the ordinary graphene gossip
//! (item_ids_inventory -> fetch_items -> trx). Run it with:
//!
//! ```sh
//! cargo run --example custom_delegate
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use grapevine::app::ChainHead;
use grapevine::app::{BlockOutcome, Delegate, DelegateError};
use grapevine::node::{BroadcastOutcome, NodeConfig};
use grapevine::runtime::{self, RuntimeConfig};
use grapevine::wire::message::{ItemId, message_hash, msg_type};
use grapevine::wire::types::{BlockId, Sha256, TimePoint};

/// The board: notices by their inventory hash, shared so `main` can look inside.
#[derive(Clone, Default)]
struct Board {
    notices: Arc<Mutex<HashMap<[u8; 20], Vec<u8>>>>,
}

impl Board {
    fn len(&self) -> usize {
        self.notices.lock().map(|n| n.len()).unwrap_or(0)
    }
}

/// This application's chain id: a network of notice boards is its own chain.
fn board_chain() -> Sha256 {
    Sha256([0x4e; 32])
}

impl Delegate for Board {
    fn chain_id(&self) -> Sha256 {
        board_chain()
    }

    fn head(&self) -> ChainHead {
        // No blocks on this network.
        ChainHead::default()
    }

    fn has_item(&self, item: &ItemId) -> bool {
        item.item_type == msg_type::TRX
            && self
                .notices
                .lock()
                .is_ok_and(|n| n.contains_key(item.item_hash.as_bytes()))
    }

    fn get_item(&self, item: &ItemId) -> Option<Vec<u8>> {
        if item.item_type != msg_type::TRX {
            return None;
        }
        self.notices
            .lock()
            .ok()?
            .get(item.item_hash.as_bytes())
            .cloned()
    }

    fn handle_blocks(
        &mut self,
        blocks: &[Vec<u8>],
        _sync_mode: bool,
    ) -> Vec<Result<BlockOutcome, DelegateError>> {
        // A peer offering blocks on a block-less network is misbehaving.
        blocks
            .iter()
            .map(|_| {
                Err(DelegateError::Invalid(
                    "this network carries no blocks".into(),
                ))
            })
            .collect()
    }

    fn handle_transaction(&mut self, data: &[u8], _now: TimePoint) -> Result<(), DelegateError> {
        if data.len() > 256 || !data.starts_with(b"NOTE") {
            return Err(DelegateError::Invalid("not a notice".into()));
        }
        let mut notices = self
            .notices
            .lock()
            .map_err(|_| DelegateError::Local("board lock poisoned".into()))?;
        notices.insert(*message_hash(data).as_bytes(), data.to_vec());
        println!("board got: {}", String::from_utf8_lossy(data));
        Ok(())
    }

    fn block_ids_after(&self, _synopsis: &[BlockId], _limit: usize) -> (Vec<BlockId>, u32) {
        (Vec::new(), 0)
    }

    fn blockchain_synopsis(&self) -> Vec<BlockId> {
        Vec::new()
    }
}

fn config(dir: &std::path::Path, seeds: Vec<String>) -> RuntimeConfig {
    RuntimeConfig {
        node: NodeConfig {
            chain_id: board_chain(),
            ..NodeConfig::default()
        },
        data_dir: dir.to_path_buf(),
        p2p_endpoint: "127.0.0.1:0".parse().expect("an endpoint"),
        seed_nodes: seeds,
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let base = std::env::temp_dir().join(format!("grapevine-example-{}", std::process::id()));
    let (alice_board, bob_board) = (Board::default(), Board::default());
    let alice = runtime::start_with_delegate(
        config(&base.join("alice"), vec![]),
        Box::new(alice_board.clone()),
    )
    .await?;
    let seed = alice
        .p2p_endpoint
        .ok_or("alice is not listening")?
        .to_string();
    let bob = runtime::start_with_delegate(
        config(&base.join("bob"), vec![seed]),
        Box::new(bob_board.clone()),
    )
    .await?;

    // Wait for the handshake, then post three notices on alice's board.
    for _ in 0..200 {
        if bob.info().await.is_some_and(|i| i.connections.active == 1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    for text in [
        "NOTE: grapevine relays custom items",
        "NOTE: second notice",
        "NOTE: third",
    ] {
        let posted = alice
            .broadcast(msg_type::TRX, text.as_bytes().to_vec())
            .await?;
        println!("alice posted {} ({})", posted.id, posted.outcome.name());
    }
    // A bad item is refused by the application and never relayed.
    let spam = alice.broadcast(msg_type::TRX, b"spam".to_vec()).await?;
    assert!(matches!(spam.outcome, BroadcastOutcome::Rejected(_)));

    for _ in 0..200 {
        if bob_board.len() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    println!(
        "bob's board holds {} notices (alice's: {})",
        bob_board.len(),
        alice_board.len()
    );
    let ok = bob_board.len() == 3;
    bob.shutdown().await;
    alice.shutdown().await;
    let _ = std::fs::remove_dir_all(&base);
    if ok {
        Ok(())
    } else {
        Err("bob did not receive every notice".into())
    }
}
