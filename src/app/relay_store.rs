//! The default application: a relay store on redb in the data directory.
//!
//! It keeps blocks by id (with their number and previous id, both read from the block itself),
//! the main chain by number, an index from inventory hash (ripemd160 of the block message) to
//! block id, and transactions until their expiration. A block is accepted only when the id it
//! carries is the id of its header by graphene's rule and it links to a stored block (or is
//! block 1). A block whose parent is unknown is held in memory, bounded, and applied when the
//! parent arrives: a peer is never blamed for sending blocks out of order.
//!
//! # Durability off the node task
//!
//! Accepting a batch ([`Delegate::handle_blocks`], [`Delegate::handle_transaction`]) validates
//! it and puts its writes in an in-memory overlay, tagged with the next ticket; the writes go
//! to a [`CommitQueue`] whose writer (a dedicated thread, or the simulator's timed events)
//! commits everything queued in one durable redb transaction, and publishes the last ticket it
//! made durable. The node task never waits on a sync. Reads see the overlay first, then the
//! database, so everything accepted is visible at once ([`Delegate::has_item`],
//! [`Delegate::get_item`], [`Delegate::blockchain_synopsis`], [`Delegate::accepted_head`]);
//! what the store tells others is only what is durable: [`Delegate::head`] is the durable head
//! and [`Delegate::block_ids_after`] answers from the database alone. The node advertises an
//! item only once [`Delegate::poll_durable`] reaches its ticket; a kill loses only what nobody
//! has heard of from this node. [`Delegate::poll_durable`] also drops the overlay's durable
//! entries. The overlay is bounded: beyond [`MAX_NOT_DURABLE_BYTES`] or
//! [`MAX_NOT_DURABLE_BATCHES`] the store is [`Delegate::saturated`] and the node hands it no
//! more sync blocks and fetches nothing until commits catch up.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadOnlyTable, ReadableDatabase, ReadableTable};
use tracing::{debug, warn};

use super::commits::{
    BLOCK_BY_HASH, BLOCKS, CHAIN, CommitQueue, META, Mode, Op, TRX_EXPIRY, TRXS, Work,
};
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
/// Bytes of accepted items not yet durable (the overlay) beyond which the store is saturated:
/// memory held while the disk is slow or stuck. The node stops handing over sync blocks and
/// fetching items, so it is passed by at most one batch and the items already in flight.
pub const MAX_NOT_DURABLE_BYTES: usize = 64 * 1024 * 1024;
/// Accepted batches not yet durable beyond which the store is saturated: bounds the overlay's
/// bookkeeping under a flood of small items (each transaction is a batch).
pub const MAX_NOT_DURABLE_BATCHES: u64 = 4096;
/// Bytes counted for each overlay entry besides its data (keys and map overhead).
const OVERLAY_ENTRY_BYTES: usize = 96;

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

/// An overlay key, to drop once its batch is durable.
enum Key {
    Block(BlockId),
    Hash(Ripemd160),
    Chain(u32),
    Trx(Ripemd160),
}

/// One accepted batch not yet known to be durable.
struct Batch {
    ticket: u64,
    keys: Vec<Key>,
    /// The accepted head once this batch was accepted: the durable head once it is durable.
    accepted: ChainHead,
    bytes: usize,
}

/// Accepted writes not yet known to be durable, each with the ticket that wrote it last.
#[derive(Default)]
struct Overlay {
    blocks: HashMap<BlockId, (u64, Arc<[u8]>)>,
    by_hash: HashMap<Ripemd160, (u64, BlockId)>,
    chain: HashMap<u32, (u64, BlockId)>,
    trxs: HashMap<Ripemd160, (u64, Arc<[u8]>)>,
    journal: VecDeque<Batch>,
    bytes: usize,
}

/// Removes `key` from an overlay map when the entry's ticket is durable (a later batch that
/// wrote it again keeps it).
fn forget_if_durable<K: std::hash::Hash + Eq, V>(
    map: &mut HashMap<K, (u64, V)>,
    key: &K,
    durable: u64,
) {
    if map.get(key).is_some_and(|(t, _)| *t <= durable) {
        map.remove(key);
    }
}

/// A batch being accepted.
struct Pending {
    ticket: u64,
    ops: Vec<Op>,
    keys: Vec<Key>,
    bytes: usize,
}

/// One read transaction's tables (a table that cannot be opened reads as empty).
struct Reader {
    blocks: Option<ReadOnlyTable<&'static [u8], &'static [u8]>>,
    by_hash: Option<ReadOnlyTable<&'static [u8], &'static [u8]>>,
    chain: Option<ReadOnlyTable<u32, &'static [u8]>>,
    trxs: Option<ReadOnlyTable<&'static [u8], &'static [u8]>>,
}

impl Reader {
    fn block(&self, id: &BlockId) -> Option<Vec<u8>> {
        let t = self.blocks.as_ref()?;
        Some(t.get(id.as_bytes().as_slice()).ok()??.value().to_vec())
    }

    fn has_block(&self, id: &BlockId) -> bool {
        self.blocks
            .as_ref()
            .is_some_and(|t| t.get(id.as_bytes().as_slice()).ok().flatten().is_some())
    }

    fn id_by_hash(&self, hash: &Ripemd160) -> Option<BlockId> {
        let t = self.by_hash.as_ref()?;
        Some(id_from(t.get(hash.as_bytes().as_slice()).ok()??.value()))
    }

    fn chain(&self, n: u32) -> Option<BlockId> {
        let t = self.chain.as_ref()?;
        Some(id_from(t.get(n).ok()??.value()))
    }

    fn trx(&self, hash: &Ripemd160) -> Option<Vec<u8>> {
        let t = self.trxs.as_ref()?;
        Some(t.get(hash.as_bytes().as_slice()).ok()??.value().to_vec())
    }
}

/// The relay store.
pub struct RelayStore {
    db: Arc<Database>,
    commits: Arc<CommitQueue>,
    writer: Option<std::thread::JoinHandle<()>>,
    chain_id: Sha256,
    block_interval_secs: i64,
    /// The head of everything accepted.
    accepted: ChainHead,
    /// The head of what is known to be durable.
    durable_head: ChainHead,
    /// The last ticket handed out.
    ticket: u64,
    overlay: Overlay,
    /// Held blocks by the id of the parent they wait for.
    held: HashMap<BlockId, Vec<Held>>,
    held_bytes: usize,
    held_count: usize,
    held_order: u64,
    /// [`MAX_NOT_DURABLE_BYTES`] and [`MAX_NOT_DURABLE_BATCHES`] unless set (tests).
    max_not_durable: (usize, u64),
}

impl Drop for RelayStore {
    /// The writer thread commits what is queued, then stops.
    fn drop(&mut self) {
        self.commits.stop();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

impl RelayStore {
    /// Opens (or creates) the store at `path`, with a writer thread.
    pub fn open(path: &Path, chain_id: Sha256) -> Result<Self, DelegateError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(local)?;
        }
        let db = Database::create(path).map_err(local)?;
        Self::with_database(db, chain_id, Mode::Thread)
    }

    /// A store in memory (tests, simulations), with a writer thread.
    pub fn in_memory(chain_id: Sha256) -> Result<Self, DelegateError> {
        Self::with_backend(redb::backends::InMemoryBackend::new(), chain_id)
    }

    /// A store on any redb storage backend, with a writer thread.
    pub fn with_backend(
        backend: impl redb::StorageBackend,
        chain_id: Sha256,
    ) -> Result<Self, DelegateError> {
        Self::on_backend(backend, chain_id, Mode::Thread)
    }

    /// A store on any redb storage backend whose commits run only when the caller runs its
    /// [`RelayStore::commit_queue`] (the simulator's crash-safe memory disk).
    pub fn with_backend_deferred(
        backend: impl redb::StorageBackend,
        chain_id: Sha256,
    ) -> Result<Self, DelegateError> {
        Self::on_backend(backend, chain_id, Mode::Deferred)
    }

    fn on_backend(
        backend: impl redb::StorageBackend,
        chain_id: Sha256,
        mode: Mode,
    ) -> Result<Self, DelegateError> {
        let db = Database::builder()
            .create_with_backend(backend)
            .map_err(local)?;
        Self::with_database(db, chain_id, mode)
    }

    fn with_database(db: Database, chain_id: Sha256, mode: Mode) -> Result<Self, DelegateError> {
        let tx = db.begin_write().map_err(local)?;
        for t in [BLOCKS, BLOCK_BY_HASH, TRXS] {
            tx.open_table(t).map_err(local)?;
        }
        tx.open_table(CHAIN).map_err(local)?;
        tx.open_table(TRX_EXPIRY).map_err(local)?;
        tx.open_table(META).map_err(local)?;
        tx.commit().map_err(local)?;
        let db = Arc::new(db);
        let commits = CommitQueue::new(db.clone(), mode, 0);
        let writer = match mode {
            Mode::Thread => Some(commits.spawn_writer().map_err(local)?),
            Mode::Deferred => None,
        };
        let mut store = Self {
            db,
            commits,
            writer,
            chain_id,
            block_interval_secs: 5,
            accepted: ChainHead::default(),
            durable_head: ChainHead::default(),
            ticket: 0,
            overlay: Overlay::default(),
            held: HashMap::new(),
            held_bytes: 0,
            held_count: 0,
            held_order: 0,
            max_not_durable: (MAX_NOT_DURABLE_BYTES, MAX_NOT_DURABLE_BATCHES),
        };
        store.accepted = store.read_head()?;
        store.durable_head = store.accepted;
        Ok(store)
    }

    /// Sets the block interval reported to the node.
    pub fn set_block_interval(&mut self, secs: i64) {
        self.block_interval_secs = secs;
    }

    /// The queue of accepted writes and its writer's progress (the simulator runs a deferred
    /// store's commits through it).
    pub fn commit_queue(&self) -> Arc<CommitQueue> {
        self.commits.clone()
    }

    /// Lowers the bytes and batches not yet durable beyond which the store is saturated (tests
    /// of back-pressure); the defaults are [`MAX_NOT_DURABLE_BYTES`] and
    /// [`MAX_NOT_DURABLE_BATCHES`], and larger values are ignored.
    pub fn set_not_durable_limits(&mut self, bytes: usize, batches: u64) {
        self.max_not_durable = (
            bytes.min(MAX_NOT_DURABLE_BYTES),
            batches.min(MAX_NOT_DURABLE_BATCHES),
        );
    }

    /// Bytes of accepted items not yet known to be durable.
    pub fn not_durable_bytes(&self) -> usize {
        self.overlay.bytes
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

    fn reader(&self) -> Result<Reader, DelegateError> {
        let tx = self.db.begin_read().map_err(local)?;
        Ok(Reader {
            blocks: tx.open_table(BLOCKS).ok(),
            by_hash: tx.open_table(BLOCK_BY_HASH).ok(),
            chain: tx.open_table(CHAIN).ok(),
            trxs: tx.open_table(TRXS).ok(),
        })
    }

    fn has_block(&self, r: &Reader, id: &BlockId) -> bool {
        self.overlay.blocks.contains_key(id) || r.has_block(id)
    }

    fn block(&self, r: &Reader, id: &BlockId) -> Option<Vec<u8>> {
        match self.overlay.blocks.get(id) {
            Some((_, data)) => Some(data.to_vec()),
            None => r.block(id),
        }
    }

    fn chain_at(&self, r: &Reader, n: u32) -> Option<BlockId> {
        match self.overlay.chain.get(&n) {
            Some((_, id)) => Some(*id),
            None => r.chain(n),
        }
    }

    fn block_item(&self, r: &Reader, hash: &Ripemd160) -> Option<Vec<u8>> {
        if let Some(data) = self.block(r, hash) {
            return Some(data);
        }
        let id = match self.overlay.by_hash.get(hash) {
            Some((_, id)) => *id,
            None => r.id_by_hash(hash)?,
        };
        self.block(r, &id)
    }

    fn has_block_item(&self, r: &Reader, hash: &Ripemd160) -> bool {
        self.has_block(r, hash)
            || self.overlay.by_hash.contains_key(hash)
            || r.id_by_hash(hash).is_some()
    }

    fn has_trx(&self, r: &Reader, hash: &Ripemd160) -> bool {
        self.overlay.trxs.contains_key(hash) || r.trx(hash).is_some()
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

    fn begin(&self) -> Pending {
        Pending {
            ticket: self.ticket + 1,
            ops: Vec::new(),
            keys: Vec::new(),
            bytes: 0,
        }
    }

    /// Hands a batch's writes to the writer and remembers them in the overlay's journal.
    fn finish(&mut self, p: Pending) {
        if p.ops.is_empty() {
            return;
        }
        self.ticket = p.ticket;
        self.overlay.bytes += p.bytes;
        self.overlay.journal.push_back(Batch {
            ticket: p.ticket,
            keys: p.keys,
            accepted: self.accepted,
            bytes: p.bytes,
        });
        self.commits.submit(Work {
            ticket: p.ticket,
            ops: p.ops,
        });
    }

    fn set_chain(&mut self, p: &mut Pending, n: u32, id: BlockId) {
        self.overlay.chain.insert(n, (p.ticket, id));
        p.keys.push(Key::Chain(n));
        p.ops.push(Op::Chain(n, id));
        p.bytes += OVERLAY_ENTRY_BYTES;
    }

    /// One block, and any held descendants it links.
    fn accept_block(
        &mut self,
        r: &Reader,
        p: &mut Pending,
        data: &[u8],
        to_hold: &mut Vec<(BlockId, Vec<u8>)>,
    ) -> Result<BlockOutcome, DelegateError> {
        let (id, previous) = validate_block(data)?;
        if self.has_block(r, &id) {
            return Ok(BlockOutcome::Duplicate);
        }
        let links = id.block_number() == 1 || self.has_block(r, &previous);
        if !links {
            to_hold.push((previous, data.to_vec()));
            return Ok(BlockOutcome::Held {
                missing_parent: previous,
            });
        }
        // Apply it, then any held descendants that now link.
        let mut linked = Vec::new();
        let mut queue = vec![data.to_vec()];
        while let Some(block) = queue.pop() {
            let Ok((bid, prev)) = validate_block(&block) else {
                continue;
            };
            if self.has_block(r, &bid) {
                continue;
            }
            let hash = message_hash(&block);
            let n = bid.block_number();
            let time = TimePointSec(block_timestamp(&block).unwrap_or(0));
            let data: Arc<[u8]> = block.into();
            p.bytes += data.len() + 2 * OVERLAY_ENTRY_BYTES;
            self.overlay.blocks.insert(bid, (p.ticket, data.clone()));
            self.overlay.by_hash.insert(hash, (p.ticket, bid));
            p.keys.push(Key::Block(bid));
            p.keys.push(Key::Hash(hash));
            p.ops.push(Op::Block {
                id: bid,
                hash,
                data,
            });
            if n > self.accepted.number {
                // A longer chain: rewrite the numbers back to the fork point.
                let mut cur = bid;
                let mut cur_prev = prev;
                let mut k = n;
                loop {
                    self.set_chain(p, k, cur);
                    if k <= 1 || self.chain_at(r, k - 1) == Some(cur_prev) {
                        break;
                    }
                    let Some(parent) = self.block(r, &cur_prev) else {
                        break;
                    };
                    cur = cur_prev;
                    cur_prev = block_previous_of(&parent).unwrap_or_default();
                    k -= 1;
                }
                self.accepted = ChainHead {
                    block_id: bid,
                    number: n,
                    time,
                };
                p.ops.push(Op::Head(bid));
            }
            linked.push(bid);
            queue.extend(self.take_held_children(&bid));
        }
        Ok(BlockOutcome::Accepted { linked })
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

    /// The durable head.
    fn head(&self) -> ChainHead {
        self.durable_head
    }

    fn accepted_head(&self) -> ChainHead {
        self.accepted
    }

    fn has_item(&self, item: &ItemId) -> bool {
        self.has_items(std::slice::from_ref(item))
            .first()
            .copied()
            .unwrap_or(false)
    }

    fn has_items(&self, items: &[ItemId]) -> Vec<bool> {
        let Ok(r) = self.reader() else {
            return vec![false; items.len()];
        };
        items
            .iter()
            .map(|item| match item.item_type {
                msg_type::TRX => self.has_trx(&r, &item.item_hash),
                msg_type::BLOCK => self.has_block_item(&r, &item.item_hash),
                _ => false,
            })
            .collect()
    }

    fn get_item(&self, item: &ItemId) -> Option<Vec<u8>> {
        match item.item_type {
            msg_type::TRX => match self.overlay.trxs.get(&item.item_hash) {
                Some((_, data)) => Some(data.to_vec()),
                None => self.reader().ok()?.trx(&item.item_hash),
            },
            msg_type::BLOCK => self.block_item(&self.reader().ok()?, &item.item_hash),
            _ => None,
        }
    }

    fn handle_blocks(
        &mut self,
        blocks: &[Vec<u8>],
        _sync_mode: bool,
    ) -> Vec<Result<BlockOutcome, DelegateError>> {
        let r = match self.reader() {
            Ok(r) => r,
            Err(e) => return blocks.iter().map(|_| Err(e.clone())).collect(),
        };
        let mut p = self.begin();
        let mut to_hold = Vec::new();
        let results = blocks
            .iter()
            .map(|data| self.accept_block(&r, &mut p, data, &mut to_hold))
            .collect();
        self.finish(p);
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
        let mut p = self.begin();
        let data: Arc<[u8]> = data.into();
        p.bytes += data.len() + OVERLAY_ENTRY_BYTES;
        self.overlay.trxs.insert(hash, (p.ticket, data.clone()));
        p.keys.push(Key::Trx(hash));
        p.ops.push(Op::Trx {
            hash,
            expiration,
            data,
        });
        self.finish(p);
        Ok(())
    }

    fn accepted_ticket(&self) -> u64 {
        self.ticket
    }

    fn poll_durable(&mut self) -> u64 {
        let durable = self.commits.durable();
        let o = &mut self.overlay;
        while o.journal.front().is_some_and(|b| b.ticket <= durable) {
            let Some(b) = o.journal.pop_front() else {
                break;
            };
            for key in b.keys {
                // Only if no later batch wrote it again.
                match key {
                    Key::Block(k) => forget_if_durable(&mut o.blocks, &k, durable),
                    Key::Hash(k) => forget_if_durable(&mut o.by_hash, &k, durable),
                    Key::Chain(k) => forget_if_durable(&mut o.chain, &k, durable),
                    Key::Trx(k) => forget_if_durable(&mut o.trxs, &k, durable),
                }
            }
            o.bytes -= b.bytes;
            self.durable_head = b.accepted;
        }
        durable
    }

    fn saturated(&self) -> bool {
        let (bytes, batches) = self.max_not_durable;
        self.overlay.bytes > bytes || self.ticket.saturating_sub(self.commits.durable()) > batches
    }

    fn not_durable_bytes(&self) -> usize {
        self.overlay.bytes
    }

    fn set_durable_waker(&mut self, wake: Box<dyn Fn() + Send + Sync>) {
        self.commits.set_waker(wake);
    }

    fn make_durable(&mut self) -> Result<(), DelegateError> {
        self.commits.wait_durable(self.ticket).map_err(local)?;
        self.poll_durable();
        Ok(())
    }

    /// From the database alone, up to the durable head: ids given to a peer that syncs from
    /// us are never taken back by a crash.
    fn block_ids_after(&self, synopsis: &[BlockId], limit: usize) -> (Vec<BlockId>, u32) {
        let Ok(r) = self.reader() else {
            return (Vec::new(), 0);
        };
        let on_chain = |id: &BlockId| -> bool { r.chain(id.block_number()) == Some(*id) };
        let start = if synopsis.is_empty() {
            1
        } else {
            match synopsis.iter().rev().find(|id| on_chain(id)) {
                Some(id) => id.block_number(),
                // On a fork we cannot reach: nothing in common.
                None => return (Vec::new(), 0),
            }
        };
        let head = self.durable_head.number;
        if start == 0 || start > head {
            return (Vec::new(), 0);
        }
        let end = head.min(start.saturating_add(limit.saturating_sub(1) as u32));
        let mut ids = Vec::with_capacity((end - start + 1) as usize);
        if let Some(chain) = &r.chain
            && let Ok(range) = chain.range(start..=end)
        {
            for (_, v) in range.flatten() {
                ids.push(id_from(v.value()));
            }
        }
        (ids, head - end)
    }

    /// Of everything accepted: what we ask peers to continue from.
    fn blockchain_synopsis(&self) -> Vec<BlockId> {
        let Ok(r) = self.reader() else {
            return Vec::new();
        };
        synopsis_numbers(self.accepted.number)
            .into_iter()
            .filter_map(|n| self.chain_at(&r, n))
            .collect()
    }

    /// Queues the removal of expired transactions, when the earliest stored one has expired.
    fn prune(&mut self, now: TimePoint) {
        let cutoff = u32::try_from(now.0.div_euclid(1_000_000)).unwrap_or(u32::MAX);
        let earliest = (|| -> Result<Option<u32>, DelegateError> {
            let tx = self.db.begin_read().map_err(local)?;
            let exp = tx.open_table(TRX_EXPIRY).map_err(local)?;
            let first = exp.first().map_err(local)?;
            Ok(first.and_then(|(k, _)| {
                let k = k.value();
                Some(u32::from_be_bytes(k.get(..4)?.try_into().ok()?))
            }))
        })();
        // Transactions not yet durable are not in the database yet: their removal is queued
        // after them.
        match earliest {
            Ok(_) if !self.overlay.trxs.is_empty() => {
                let mut p = self.begin();
                p.ops.push(Op::Prune(cutoff));
                self.finish(p);
            }
            Ok(Some(e)) if e < cutoff => {
                let mut p = self.begin();
                p.ops.push(Op::Prune(cutoff));
                self.finish(p);
                debug!(cutoff, "expired transactions pruned");
            }
            Ok(_) => {}
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
        assert_eq!(s.accepted_head().number, 50);
        s.make_durable().unwrap();
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
        s.make_durable().unwrap();
        assert_eq!(s.head().number, 3);
        assert_eq!(s.held_blocks(), 0);
    }

    #[test]
    fn a_deferred_store_reads_what_it_accepted_reports_only_what_is_durable_and_saturates() {
        let mut s =
            RelayStore::with_backend_deferred(redb::backends::InMemoryBackend::new(), chain_id())
                .unwrap();
        s.set_not_durable_limits(usize::MAX, 2);
        let q = s.commit_queue();
        let blocks = make_test_chain(Ripemd160::default(), 30, 1_700_000_000);
        for (k, batch) in blocks.chunks(10).enumerate() {
            assert!(!s.saturated(), "batch {k}");
            s.handle_blocks(batch, true);
            assert_eq!(s.accepted_ticket(), k as u64 + 1);
        }
        // Three batches wait: over the limit of two.
        assert!(s.saturated());
        assert_eq!(s.accepted_head().number, 30);
        assert_eq!(s.head().number, 0);
        assert_eq!(s.poll_durable(), 0);
        let id = block_id_of(&blocks[29]).unwrap();
        let item = ItemId {
            item_type: msg_type::BLOCK,
            item_hash: id,
        };
        assert_eq!(s.get_item(&item).as_deref(), Some(blocks[29].as_slice()));
        assert_eq!(s.blockchain_synopsis().last(), Some(&id));
        // Peers syncing from us are offered only what is durable.
        assert_eq!(s.block_ids_after(&[], 100), (vec![], 0));
        assert!(s.not_durable_bytes() > 0);
        // One group commit makes all three durable.
        assert!(q.run().unwrap());
        assert_eq!(s.poll_durable(), 3);
        assert!(!s.saturated());
        assert_eq!(s.head().number, 30);
        assert_eq!(s.not_durable_bytes(), 0);
        assert_eq!(s.block_ids_after(&[], 100).0.len(), 30);
        assert_eq!(s.get_item(&item).as_deref(), Some(blocks[29].as_slice()));
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
        s.make_durable().unwrap();
        assert!(!s.has_item(&item));
        assert!(matches!(
            s.handle_transaction(&trx, TimePoint(i64::from(exp + 1) * 1_000_000)),
            Err(DelegateError::Unusable(_))
        ));
    }
}
