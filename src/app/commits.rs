//! Durable commits off the node task: the relay store's write-behind queue.
//!
//! The relay store accepts a batch in memory (its overlay) and hands the writes to a
//! [`CommitQueue`], tagged with a ticket (1, 2, 3, … in acceptance order). A writer takes
//! everything queued at once and writes it in one durable redb transaction (a group commit:
//! batches that queue while one fsync runs share the next), then publishes "durable up to
//! ticket N" ([`CommitQueue::durable`]) and calls the waker the runtime gave, so the node task
//! learns it through an input and never waits on a sync itself.
//!
//! Who writes is the queue's [`Mode`]: a dedicated thread ([`Mode::Thread`], `grapevine run`),
//! or whoever calls [`CommitQueue::run`] ([`Mode::Deferred`]: the simulated network, which
//! completes commits as timed events so that a kill can fall between acceptance and
//! durability, deterministically).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use redb::{Database, Durability, ReadableTable, TableDefinition};
use tracing::warn;

use crate::wire::types::{BlockId, Ripemd160};

/// Pause before a failed commit (e.g. a full disk) is tried again.
pub const COMMIT_RETRY: Duration = Duration::from_secs(1);

pub(crate) const BLOCKS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("blocks");
pub(crate) const CHAIN: TableDefinition<u32, &[u8]> = TableDefinition::new("chain");
pub(crate) const BLOCK_BY_HASH: TableDefinition<&[u8], &[u8]> =
    TableDefinition::new("block_by_inventory_hash");
pub(crate) const TRXS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("transactions");
pub(crate) const TRX_EXPIRY: TableDefinition<&[u8], ()> =
    TableDefinition::new("transaction_expiry");
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// One write, in the order the store accepted it.
#[derive(Clone, Debug)]
pub(crate) enum Op {
    Block {
        id: BlockId,
        hash: Ripemd160,
        data: Arc<[u8]>,
    },
    Chain(u32, BlockId),
    Head(BlockId),
    Trx {
        hash: Ripemd160,
        expiration: u32,
        data: Arc<[u8]>,
    },
    /// Remove transactions expiring before this second.
    Prune(u32),
}

/// The writes of one accepted batch.
#[derive(Debug)]
pub(crate) struct Work {
    pub ticket: u64,
    pub ops: Vec<Op>,
}

/// Who carries out the commits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// A dedicated writer thread.
    Thread,
    /// Whoever calls [`CommitQueue::run`] (simulations, tests).
    Deferred,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Work>,
    /// A writer is between taking work and publishing it.
    writing: bool,
    stop: bool,
}

/// Called after a commit makes more work durable.
pub type Waker = Box<dyn Fn() + Send + Sync>;

/// The queue of accepted, not yet durable writes, and its writer's progress.
pub struct CommitQueue {
    db: Arc<Database>,
    mode: Mode,
    state: Mutex<State>,
    /// Signals the writer thread (work or stop) and waiters for durability.
    changed: Condvar,
    durable: AtomicU64,
    waker: Mutex<Option<Waker>>,
}

impl CommitQueue {
    pub(crate) fn new(db: Arc<Database>, mode: Mode, durable: u64) -> Arc<Self> {
        Arc::new(Self {
            db,
            mode,
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            durable: AtomicU64::new(durable),
            waker: Mutex::new(None),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Who commits.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Every ticket up to this one is durable.
    pub fn durable(&self) -> u64 {
        self.durable.load(Ordering::Acquire)
    }

    /// Whether accepted writes wait to be committed (or are being committed).
    pub fn has_pending(&self) -> bool {
        let s = self.lock();
        !s.queue.is_empty() || s.writing
    }

    /// Sets what is called (from the writer) after each commit.
    pub fn set_waker(&self, waker: Waker) {
        *self.waker.lock().unwrap_or_else(|e| e.into_inner()) = Some(waker);
    }

    pub(crate) fn submit(&self, work: Work) {
        self.lock().queue.push_back(work);
        self.changed.notify_all();
    }

    /// Commits everything queued in one durable transaction and publishes it. Returns whether
    /// anything was committed; on failure the work stays queued, in order.
    pub fn run(&self) -> Result<bool, String> {
        let works: Vec<Work> = {
            let mut s = self.lock();
            if s.queue.is_empty() {
                return Ok(false);
            }
            s.writing = true;
            s.queue.drain(..).collect()
        };
        let result = self.write(&works);
        let mut s = self.lock();
        s.writing = false;
        match result {
            Ok(()) => {
                if let Some(last) = works.last() {
                    self.durable.store(last.ticket, Ordering::Release);
                }
                drop(s);
                self.changed.notify_all();
                if let Some(wake) = self
                    .waker
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .as_ref()
                {
                    wake();
                }
                Ok(true)
            }
            Err(e) => {
                for w in works.into_iter().rev() {
                    s.queue.push_front(w);
                }
                Err(e)
            }
        }
    }

    fn write(&self, works: &[Work]) -> Result<(), String> {
        let e = |e: redb::Error| e.to_string();
        let mut tx = self.db.begin_write().map_err(|x| e(x.into()))?;
        tx.set_durability(Durability::Immediate)
            .map_err(|x| e(x.into()))?;
        {
            let mut blocks = tx.open_table(BLOCKS).map_err(|x| e(x.into()))?;
            let mut chain = tx.open_table(CHAIN).map_err(|x| e(x.into()))?;
            let mut by_hash = tx.open_table(BLOCK_BY_HASH).map_err(|x| e(x.into()))?;
            let mut trxs = tx.open_table(TRXS).map_err(|x| e(x.into()))?;
            let mut expiry = tx.open_table(TRX_EXPIRY).map_err(|x| e(x.into()))?;
            let mut meta = tx.open_table(META).map_err(|x| e(x.into()))?;
            for op in works.iter().flat_map(|w| &w.ops) {
                match op {
                    Op::Block { id, hash, data } => {
                        blocks
                            .insert(id.as_bytes().as_slice(), &data[..])
                            .map_err(|x| e(x.into()))?;
                        by_hash
                            .insert(hash.as_bytes().as_slice(), id.as_bytes().as_slice())
                            .map_err(|x| e(x.into()))?;
                    }
                    Op::Chain(n, id) => {
                        chain
                            .insert(*n, id.as_bytes().as_slice())
                            .map_err(|x| e(x.into()))?;
                    }
                    Op::Head(id) => {
                        meta.insert("head", id.as_bytes().as_slice())
                            .map_err(|x| e(x.into()))?;
                    }
                    Op::Trx {
                        hash,
                        expiration,
                        data,
                    } => {
                        trxs.insert(hash.as_bytes().as_slice(), &data[..])
                            .map_err(|x| e(x.into()))?;
                        let mut key = expiration.to_be_bytes().to_vec();
                        key.extend_from_slice(hash.as_bytes());
                        expiry.insert(key.as_slice(), ()).map_err(|x| e(x.into()))?;
                    }
                    Op::Prune(cutoff) => {
                        let expired: Vec<Vec<u8>> = expiry
                            .range(..cutoff.to_be_bytes().as_slice())
                            .map_err(|x| e(x.into()))?
                            .flatten()
                            .map(|(k, _)| k.value().to_vec())
                            .collect();
                        for key in expired {
                            expiry.remove(key.as_slice()).map_err(|x| e(x.into()))?;
                            if let Some(hash) = key.get(4..) {
                                trxs.remove(hash).map_err(|x| e(x.into()))?;
                            }
                        }
                    }
                }
            }
        }
        tx.commit().map_err(|x| e(x.into()))
    }

    /// Blocks until `ticket` is durable (running the commits itself in [`Mode::Deferred`]).
    /// Fails if a commit fails (deferred) or the writer has stopped.
    pub fn wait_durable(&self, ticket: u64) -> Result<(), String> {
        loop {
            if self.durable() >= ticket {
                return Ok(());
            }
            match self.mode {
                Mode::Deferred => {
                    self.run()?;
                }
                Mode::Thread => {
                    let s = self.lock();
                    if s.stop {
                        return Err("the writer has stopped".into());
                    }
                    if self.durable() < ticket {
                        let _ = self
                            .changed
                            .wait_timeout(s, COMMIT_RETRY)
                            .unwrap_or_else(|e| e.into_inner());
                    }
                }
            }
        }
    }

    /// The writer thread's loop: commit whatever is queued, until stopped with nothing left.
    fn writer_loop(self: Arc<Self>) {
        loop {
            {
                let mut s = self.lock();
                while s.queue.is_empty() && !s.stop {
                    s = self.changed.wait(s).unwrap_or_else(|e| e.into_inner());
                }
                if s.queue.is_empty() && s.stop {
                    return;
                }
            }
            if let Err(e) = self.run() {
                warn!(error = %e, "cannot commit to the relay store; trying again");
                let s = self.lock();
                if s.stop {
                    // Nothing more will be accepted; give up on what the disk refuses.
                    return;
                }
                let _ = self
                    .changed
                    .wait_timeout(s, COMMIT_RETRY)
                    .unwrap_or_else(|e| e.into_inner());
            }
        }
    }

    /// Starts the writer thread.
    pub(crate) fn spawn_writer(self: &Arc<Self>) -> std::io::Result<std::thread::JoinHandle<()>> {
        let q = self.clone();
        std::thread::Builder::new()
            .name("relay-store-writer".into())
            .spawn(move || q.writer_loop())
    }

    /// Asks the writer thread to finish what is queued and stop.
    pub(crate) fn stop(&self) {
        self.lock().stop = true;
        self.changed.notify_all();
    }
}
