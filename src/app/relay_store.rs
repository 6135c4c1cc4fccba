//! The default application: a relay store on redb in the data directory.
//!
//! It keeps blocks by id (with their number and previous id, both read from the block itself),
//! the main chain by number, an index from inventory hash (ripemd160 of the block message) to
//! block id, and transactions until their expiration. A block is accepted only when the id it
//! carries is the id of its header by graphene's rule and it links to a stored block (or is
//! block 1). A block whose parent is unknown is held in memory, bounded, and applied when the
//! parent arrives: a peer is never blamed for sending blocks out of order.
//!
//! Every batch handed to [`Delegate::handle_blocks`] is one durable redb transaction, so a
//! block the node was told is accepted survives a kill at any instant. Transactions are
//! written without a sync and made durable together by [`Delegate::make_durable`], which the
//! node calls before advertising them: one sync per batch, and nothing advertised is lost.

use std::collections::HashMap;
use std::path::Path;

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use tracing::{debug, warn};

use super::{BlockOutcome, Delegate, DelegateError, synopsis_numbers};
use crate::app::ChainHead;
use crate::wire::message::{ItemId, block_id_of, block_previous_of, message_hash, msg_type};
use crate::wire::protocol::{block_timestamp, compute_block_id, transaction_expiration};
use crate::wire::types::{BlockId, Ripemd160, Sha256, TimePoint, TimePointSec};

/// File name of the store in the data directory.
pub const STORE_FILE: &str = "relay.redb";
/// Blocks held while waiting for their parent.
pub const MAX_HELD_BLOCKS: usize = 4096;
/// Bytes of blocks held while waiting for their parent.
pub const MAX_HELD_BYTES: usize = 64 * 1024 * 1024;

const BLOCKS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("blocks");
const CHAIN: TableDefinition<u32, &[u8]> = TableDefinition::new("chain");
const BLOCK_BY_HASH: TableDefinition<&[u8], &[u8]> =
    TableDefinition::new("block_by_inventory_hash");
const TRXS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("transactions");
const TRX_EXPIRY: TableDefinition<&[u8], ()> = TableDefinition::new("transaction_expiry");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

fn local(e: impl std::fmt::Display) -> DelegateError {
    DelegateError::Local(e.to_string())
}

fn id_from(bytes: &[u8]) -> BlockId {
    let mut id = [0u8; 20];
    let n = bytes.len().min(20);
    id[..n].copy_from_slice(&bytes[..n]);
    Ripemd160(id)
}

/// A block held until its parent arrives.
struct Held {
    data: Vec<u8>,
    order: u64,
}

/// The relay store.
pub struct RelayStore {
    db: Database,
    chain_id: Sha256,
    block_interval_secs: i64,
    head: ChainHead,
    /// Held blocks by the id of the parent they wait for.
    held: HashMap<BlockId, Vec<Held>>,
    held_bytes: usize,
    held_count: usize,
    held_order: u64,
    /// Whether transactions were committed without a sync since the last durable commit.
    trx_not_durable: bool,
}

impl RelayStore {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path, chain_id: Sha256) -> Result<Self, DelegateError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(local)?;
        }
        let db = Database::create(path).map_err(local)?;
        Self::with_database(db, chain_id)
    }

    /// A store in memory (tests, simulations).
    pub fn in_memory(chain_id: Sha256) -> Result<Self, DelegateError> {
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(local)?;
        Self::with_database(db, chain_id)
    }

    /// A store on any redb storage backend (the simulator's crash-safe memory disk).
    pub fn with_backend(
        backend: impl redb::StorageBackend,
        chain_id: Sha256,
    ) -> Result<Self, DelegateError> {
        let db = Database::builder()
            .create_with_backend(backend)
            .map_err(local)?;
        Self::with_database(db, chain_id)
    }

    fn with_database(db: Database, chain_id: Sha256) -> Result<Self, DelegateError> {
        let tx = db.begin_write().map_err(local)?;
        for t in [BLOCKS, BLOCK_BY_HASH, TRXS] {
            tx.open_table(t).map_err(local)?;
        }
        tx.open_table(CHAIN).map_err(local)?;
        tx.open_table(TRX_EXPIRY).map_err(local)?;
        tx.open_table(META).map_err(local)?;
        tx.commit().map_err(local)?;
        let mut store = Self {
            db,
            chain_id,
            block_interval_secs: 5,
            head: ChainHead::default(),
            held: HashMap::new(),
            held_bytes: 0,
            held_count: 0,
            held_order: 0,
            trx_not_durable: false,
        };
        store.head = store.read_head()?;
        Ok(store)
    }

    /// Sets the block interval reported to the node.
    pub fn set_block_interval(&mut self, secs: i64) {
        self.block_interval_secs = secs;
    }

    fn read_head(&self) -> Result<ChainHead, DelegateError> {
        let tx = self.db.begin_read().map_err(local)?;
        let meta = tx.open_table(META).map_err(local)?;
        let Some(id) = meta.get("head").map_err(local)? else {
            return Ok(ChainHead::default());
        };
        let id = id_from(id.value());
        let blocks = tx.open_table(BLOCKS).map_err(local)?;
        let time = blocks
            .get(id.as_bytes().as_slice())
            .map_err(local)?
            .and_then(|d| block_timestamp(d.value()))
            .unwrap_or(0);
        Ok(ChainHead {
            block_id: id,
            number: id.block_number(),
            time: TimePointSec(time),
        })
    }

    /// Number of blocks held for a missing parent.
    pub fn held_blocks(&self) -> usize {
        self.held_count
    }

    fn hold(&mut self, previous: BlockId, data: Vec<u8>) {
        if self
            .held
            .get(&previous)
            .is_some_and(|v| v.iter().any(|h| h.data == data))
        {
            return;
        }
        self.held_bytes += data.len();
        self.held_count += 1;
        self.held_order += 1;
        self.held.entry(previous).or_default().push(Held {
            data,
            order: self.held_order,
        });
        // Bounded: drop the oldest held blocks first.
        while self.held_count > MAX_HELD_BLOCKS || self.held_bytes > MAX_HELD_BYTES {
            let Some((&parent, idx)) = self
                .held
                .iter()
                .flat_map(|(p, v)| v.iter().enumerate().map(move |(i, h)| (p, i, h.order)))
                .min_by_key(|(_, _, o)| *o)
                .map(|(p, i, _)| (p, i))
            else {
                break;
            };
            if let Some(v) = self.held.get_mut(&parent) {
                let dropped = v.remove(idx);
                self.held_bytes -= dropped.data.len();
                self.held_count -= 1;
                if v.is_empty() {
                    self.held.remove(&parent);
                }
            }
        }
    }

    fn take_held_children(&mut self, parent: &BlockId) -> Vec<Vec<u8>> {
        let Some(v) = self.held.remove(parent) else {
            return Vec::new();
        };
        for h in &v {
            self.held_bytes -= h.data.len();
            self.held_count -= 1;
        }
        v.into_iter().map(|h| h.data).collect()
    }
}

/// Checks a block message: its carried id must be its header's id.
fn validate_block(data: &[u8]) -> Result<(BlockId, BlockId), DelegateError> {
    let carried = block_id_of(data).map_err(|e| DelegateError::Invalid(e.to_string()))?;
    let computed = compute_block_id(data)
        .ok_or_else(|| DelegateError::Invalid("block header does not parse".into()))?;
    if carried != computed {
        return Err(DelegateError::Invalid(format!(
            "block id {carried} does not match its header ({computed})"
        )));
    }
    let previous = block_previous_of(data).map_err(|e| DelegateError::Invalid(e.to_string()))?;
    Ok((carried, previous))
}

impl Delegate for RelayStore {
    fn chain_id(&self) -> Sha256 {
        self.chain_id
    }

    fn block_interval_secs(&self) -> i64 {
        self.block_interval_secs
    }

    fn head(&self) -> ChainHead {
        self.head
    }

    fn has_item(&self, item: &ItemId) -> bool {
        let Ok(tx) = self.db.begin_read() else {
            return false;
        };
        let key = item.item_hash.as_bytes().as_slice();
        let found = |t: TableDefinition<&[u8], &[u8]>| {
            tx.open_table(t)
                .ok()
                .and_then(|t| t.get(key).ok().flatten())
                .is_some()
        };
        match item.item_type {
            msg_type::TRX => found(TRXS),
            msg_type::BLOCK => found(BLOCKS) || found(BLOCK_BY_HASH),
            _ => false,
        }
    }

    fn has_items(&self, items: &[ItemId]) -> Vec<bool> {
        let Ok(tx) = self.db.begin_read() else {
            return vec![false; items.len()];
        };
        let open = |t| tx.open_table(t).ok();
        let (trxs, blocks, by_hash) = (open(TRXS), open(BLOCKS), open(BLOCK_BY_HASH));
        let found = |t: &Option<redb::ReadOnlyTable<&[u8], &[u8]>>, key: &[u8]| {
            t.as_ref()
                .is_some_and(|t| t.get(key).ok().flatten().is_some())
        };
        items
            .iter()
            .map(|item| {
                let key = item.item_hash.as_bytes().as_slice();
                match item.item_type {
                    msg_type::TRX => found(&trxs, key),
                    msg_type::BLOCK => found(&blocks, key) || found(&by_hash, key),
                    _ => false,
                }
            })
            .collect()
    }

    fn get_item(&self, item: &ItemId) -> Option<Vec<u8>> {
        let tx = self.db.begin_read().ok()?;
        let key = item.item_hash.as_bytes().as_slice();
        match item.item_type {
            msg_type::TRX => {
                let t = tx.open_table(TRXS).ok()?;
                let v = t.get(key).ok()??;
                Some(v.value().to_vec())
            }
            msg_type::BLOCK => {
                let blocks = tx.open_table(BLOCKS).ok()?;
                if let Some(v) = blocks.get(key).ok()? {
                    return Some(v.value().to_vec());
                }
                let by_hash = tx.open_table(BLOCK_BY_HASH).ok()?;
                let id = by_hash.get(key).ok()??.value().to_vec();
                let v = blocks.get(id.as_slice()).ok()??;
                Some(v.value().to_vec())
            }
            _ => None,
        }
    }

    fn handle_blocks(
        &mut self,
        blocks: &[Vec<u8>],
        _sync_mode: bool,
    ) -> Vec<Result<BlockOutcome, DelegateError>> {
        let mut results = Vec::with_capacity(blocks.len());
        let tx = match self.db.begin_write() {
            Ok(tx) => tx,
            Err(e) => return blocks.iter().map(|_| Err(local(&e))).collect(),
        };
        let mut head = self.head;
        let mut to_hold = Vec::new();
        {
            let opened = (|| -> Result<_, DelegateError> {
                Ok((
                    tx.open_table(BLOCKS).map_err(local)?,
                    tx.open_table(CHAIN).map_err(local)?,
                    tx.open_table(BLOCK_BY_HASH).map_err(local)?,
                    tx.open_table(META).map_err(local)?,
                ))
            })();
            let (mut bt, mut chain, mut by_hash, mut meta) = match opened {
                Ok(t) => t,
                Err(e) => return blocks.iter().map(|_| Err(e.clone())).collect(),
            };
            for data in blocks {
                let outcome = (|| -> Result<BlockOutcome, DelegateError> {
                    let (id, previous) = validate_block(data)?;
                    if bt.get(id.as_bytes().as_slice()).map_err(local)?.is_some() {
                        return Ok(BlockOutcome::Duplicate);
                    }
                    let links = id.block_number() == 1
                        || bt
                            .get(previous.as_bytes().as_slice())
                            .map_err(local)?
                            .is_some();
                    if !links {
                        to_hold.push((previous, data.clone()));
                        return Ok(BlockOutcome::Held {
                            missing_parent: previous,
                        });
                    }
                    // Apply it, then any held descendants that now link, breadth first.
                    let mut linked = Vec::new();
                    let mut queue = vec![data.clone()];
                    while let Some(block) = queue.pop() {
                        let (bid, prev) = match validate_block(&block) {
                            Ok(v) => v,
                            Err(_) => continue,
                        };
                        if bt.get(bid.as_bytes().as_slice()).map_err(local)?.is_some() {
                            continue;
                        }
                        bt.insert(bid.as_bytes().as_slice(), block.as_slice())
                            .map_err(local)?;
                        by_hash
                            .insert(
                                message_hash(&block).as_bytes().as_slice(),
                                bid.as_bytes().as_slice(),
                            )
                            .map_err(local)?;
                        let n = bid.block_number();
                        if n > head.number {
                            // A longer chain: rewrite the numbers back to the fork point.
                            let mut cur = bid;
                            let mut cur_prev = prev;
                            let mut k = n;
                            loop {
                                chain.insert(k, cur.as_bytes().as_slice()).map_err(local)?;
                                if k <= 1 {
                                    break;
                                }
                                let on_chain =
                                    chain.get(k - 1).map_err(local)?.map(|v| id_from(v.value()));
                                if on_chain == Some(cur_prev) {
                                    break;
                                }
                                let Some(parent) = bt
                                    .get(cur_prev.as_bytes().as_slice())
                                    .map_err(local)?
                                    .map(|v| v.value().to_vec())
                                else {
                                    break;
                                };
                                cur = cur_prev;
                                cur_prev = block_previous_of(&parent).unwrap_or_default();
                                k -= 1;
                            }
                            head = ChainHead {
                                block_id: bid,
                                number: n,
                                time: TimePointSec(block_timestamp(&block).unwrap_or(0)),
                            };
                            meta.insert("head", bid.as_bytes().as_slice())
                                .map_err(local)?;
                        }
                        linked.push(bid);
                        queue.extend(self.take_held_children(&bid));
                    }
                    Ok(BlockOutcome::Accepted { linked })
                })();
                results.push(outcome);
            }
        }
        if let Err(e) = tx.commit() {
            warn!(error = %e, "cannot commit blocks");
            return blocks.iter().map(|_| Err(local(&e))).collect();
        }
        // That commit was durable, and so is every transaction written before it.
        self.trx_not_durable = false;
        self.head = head;
        for (previous, data) in to_hold {
            debug!(%previous, "holding a block until its parent arrives");
            self.hold(previous, data);
        }
        results
    }

    fn handle_transaction(&mut self, data: &[u8], now: TimePoint) -> Result<(), DelegateError> {
        let expiration = transaction_expiration(data)
            .ok_or_else(|| DelegateError::Invalid("transaction header does not parse".into()))?;
        if i64::from(expiration) * 1_000_000 < now.0 {
            return Err(DelegateError::Unusable("transaction expired".into()));
        }
        let hash = message_hash(data);
        let mut tx = self.db.begin_write().map_err(local)?;
        tx.set_durability(Durability::None).map_err(local)?;
        {
            let mut trxs = tx.open_table(TRXS).map_err(local)?;
            trxs.insert(hash.as_bytes().as_slice(), data)
                .map_err(local)?;
            let mut exp = tx.open_table(TRX_EXPIRY).map_err(local)?;
            let mut key = expiration.to_be_bytes().to_vec();
            key.extend_from_slice(hash.as_bytes());
            exp.insert(key.as_slice(), ()).map_err(local)?;
        }
        tx.commit().map_err(local)?;
        self.trx_not_durable = true;
        Ok(())
    }

    fn make_durable(&mut self) -> Result<(), DelegateError> {
        if !self.trx_not_durable {
            return Ok(());
        }
        // A durable commit makes every earlier non-durable one durable with it.
        let tx = self.db.begin_write().map_err(local)?;
        tx.commit().map_err(local)?;
        self.trx_not_durable = false;
        Ok(())
    }

    fn block_ids_after(&self, synopsis: &[BlockId], limit: usize) -> (Vec<BlockId>, u32) {
        let Ok(tx) = self.db.begin_read() else {
            return (Vec::new(), 0);
        };
        let Ok(chain) = tx.open_table(CHAIN) else {
            return (Vec::new(), 0);
        };
        let on_chain = |id: &BlockId| -> bool {
            chain
                .get(id.block_number())
                .ok()
                .flatten()
                .is_some_and(|v| id_from(v.value()) == *id)
        };
        let start = if synopsis.is_empty() {
            1
        } else {
            match synopsis.iter().rev().find(|id| on_chain(id)) {
                Some(id) => id.block_number(),
                // On a fork we cannot reach: nothing in common.
                None => return (Vec::new(), 0),
            }
        };
        let head = self.head.number;
        if start == 0 || start > head {
            return (Vec::new(), 0);
        }
        let end = head.min(start.saturating_add(limit.saturating_sub(1) as u32));
        let mut ids = Vec::with_capacity((end - start + 1) as usize);
        if let Ok(range) = chain.range(start..=end) {
            for (_, v) in range.flatten() {
                ids.push(id_from(v.value()));
            }
        }
        (ids, head - end)
    }

    fn blockchain_synopsis(&self) -> Vec<BlockId> {
        let Ok(tx) = self.db.begin_read() else {
            return Vec::new();
        };
        let Ok(chain) = tx.open_table(CHAIN) else {
            return Vec::new();
        };
        synopsis_numbers(self.head.number)
            .into_iter()
            .filter_map(|n| chain.get(n).ok().flatten().map(|v| id_from(v.value())))
            .collect()
    }

    fn prune(&mut self, now: TimePoint) {
        let cutoff = u32::try_from(now.0.div_euclid(1_000_000)).unwrap_or(u32::MAX);
        let result = (|| -> Result<usize, DelegateError> {
            let tx = self.db.begin_write().map_err(local)?;
            let mut removed = 0;
            {
                let mut exp = tx.open_table(TRX_EXPIRY).map_err(local)?;
                let mut trxs = tx.open_table(TRXS).map_err(local)?;
                let expired: Vec<Vec<u8>> = exp
                    .range(..cutoff.to_be_bytes().as_slice())
                    .map_err(local)?
                    .flatten()
                    .map(|(k, _)| k.value().to_vec())
                    .collect();
                for key in expired {
                    exp.remove(key.as_slice()).map_err(local)?;
                    trxs.remove(&key[4..]).map_err(local)?;
                    removed += 1;
                }
            }
            tx.commit().map_err(local)?;
            Ok(removed)
        })();
        match result {
            Ok(0) => {}
            Ok(n) => debug!(removed = n, "expired transactions pruned"),
            Err(e) => warn!(error = %e, "cannot prune transactions"),
        }
    }
}

/// Test and benchmark helper: a chain of valid empty blocks, each linked to the one before,
/// starting after `previous` (all zeros for a chain from block 1). Returns block message data.
pub fn make_test_chain(previous: BlockId, count: u32, first_timestamp: u32) -> Vec<Vec<u8>> {
    let mut out = Vec::with_capacity(count as usize);
    let mut prev = previous;
    for i in 0..count {
        let mut data = Vec::with_capacity(140);
        data.extend_from_slice(prev.as_bytes());
        data.extend_from_slice(&(first_timestamp + 3 * i).to_le_bytes());
        data.push(i as u8 & 0x7f); // witness instance (varint < 128)
        data.extend_from_slice(&[0u8; 20]); // transaction_merkle_root
        data.push(0); // extensions
        let mut sig = [0u8; 65];
        sig[0] = 0x1f;
        sig[1..5].copy_from_slice(&i.to_le_bytes());
        data.extend_from_slice(&sig);
        data.push(0); // no transactions
        let id = compute_block_id(&data).unwrap_or_default();
        data.extend_from_slice(id.as_bytes());
        prev = id;
        out.push(data);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain_id() -> Sha256 {
        Sha256([7; 32])
    }

    #[test]
    fn accepts_a_chain_and_answers_sync_queries() {
        let mut s = RelayStore::in_memory(chain_id()).unwrap();
        let blocks = make_test_chain(Ripemd160::default(), 50, 1_700_000_000);
        let r = s.handle_blocks(&blocks, true);
        assert!(
            r.iter()
                .all(|o| matches!(o, Ok(BlockOutcome::Accepted { .. })))
        );
        assert_eq!(s.head().number, 50);
        let ids: Vec<BlockId> = blocks.iter().map(|b| block_id_of(b).unwrap()).collect();
        assert_eq!(s.head().block_id, ids[49]);
        // From block 1 with an empty synopsis.
        let (got, remaining) = s.block_ids_after(&[], 10);
        assert_eq!(got, ids[..10]);
        assert_eq!(remaining, 40);
        // Starting with the last common block.
        let (got, remaining) = s.block_ids_after(&[ids[0], ids[19]], 2000);
        assert_eq!(got, ids[19..]);
        assert_eq!(remaining, 0);
        let syn = s.blockchain_synopsis();
        assert_eq!(syn.first(), Some(&ids[0]));
        assert_eq!(syn.last(), Some(&ids[49]));
        // Look-up by block id and by inventory hash.
        let by_id = ItemId {
            item_type: msg_type::BLOCK,
            item_hash: ids[5],
        };
        let by_hash = ItemId {
            item_type: msg_type::BLOCK,
            item_hash: message_hash(&blocks[5]),
        };
        assert_eq!(s.get_item(&by_id).as_deref(), Some(blocks[5].as_slice()));
        assert_eq!(s.get_item(&by_hash).as_deref(), Some(blocks[5].as_slice()));
        assert!(s.has_item(&by_hash));
    }

    #[test]
    fn out_of_order_blocks_are_held_then_linked() {
        let mut s = RelayStore::in_memory(chain_id()).unwrap();
        let blocks = make_test_chain(Ripemd160::default(), 3, 1_700_000_000);
        assert_eq!(
            s.handle_blocks(&blocks[..1], false),
            vec![Ok(BlockOutcome::Accepted {
                linked: vec![block_id_of(&blocks[0]).unwrap()]
            })]
        );
        let held = vec![Ok(BlockOutcome::Held {
            missing_parent: block_id_of(&blocks[1]).unwrap(),
        })];
        assert_eq!(s.handle_blocks(&blocks[2..3], false), held);
        assert_eq!(s.held_blocks(), 1);
        // Handed over again, it is still held (once), waiting for the same parent.
        assert_eq!(s.handle_blocks(&blocks[2..3], false), held);
        assert_eq!(s.held_blocks(), 1);
        let r = s.handle_blocks(&blocks[1..2], false);
        let Ok(BlockOutcome::Accepted { linked }) = &r[0] else {
            panic!("{r:?}")
        };
        assert_eq!(linked.len(), 2);
        assert_eq!(s.head().number, 3);
        assert_eq!(s.held_blocks(), 0);
    }

    #[test]
    fn a_forged_id_is_invalid() {
        let mut s = RelayStore::in_memory(chain_id()).unwrap();
        let mut blocks = make_test_chain(Ripemd160::default(), 1, 1_700_000_000);
        let n = blocks[0].len();
        blocks[0][n - 1] ^= 1;
        let r = s.handle_blocks(&blocks, false);
        assert!(matches!(&r[0], Err(e) if e.blames_peer()));
    }

    #[test]
    fn blocks_survive_reopening() {
        let dir = std::env::temp_dir().join(format!("grapevine-store-{}", std::process::id()));
        let path = dir.join(STORE_FILE);
        let blocks = make_test_chain(Ripemd160::default(), 20, 1_700_000_000);
        {
            let mut s = RelayStore::open(&path, chain_id()).unwrap();
            s.handle_blocks(&blocks, true);
        }
        let s = RelayStore::open(&path, chain_id()).unwrap();
        assert_eq!(s.head().number, 20);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn transactions_expire() {
        let mut s = RelayStore::in_memory(chain_id()).unwrap();
        let v: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/vectors/messages.json")).unwrap();
        let trx = hex::decode(v["messages"][0]["data_hex"].as_str().unwrap()).unwrap();
        let exp = transaction_expiration(&trx).unwrap();
        let before = TimePoint(i64::from(exp - 10) * 1_000_000);
        s.handle_transaction(&trx, before).unwrap();
        let item = ItemId {
            item_type: msg_type::TRX,
            item_hash: message_hash(&trx),
        };
        assert!(s.has_item(&item));
        s.prune(TimePoint(i64::from(exp + 1) * 1_000_000));
        assert!(!s.has_item(&item));
        assert!(matches!(
            s.handle_transaction(&trx, TimePoint(i64::from(exp + 1) * 1_000_000)),
            Err(DelegateError::Unusable(_))
        ));
    }
}
