//! A small in-memory chain for the `node_events` fuzz target: a [`Delegate`] that costs a few
//! allocations to create (the redb-backed relay store takes about 175 µs to open, more than a
//! whole fuzz run should), with blocks the fuzzer can name by number.
//!
//! Blocks are fake but shaped like the real ones where the node looks: message data starts
//! with the previous block's id and ends with the block's own id, whose first four bytes are
//! the block number. [`block`] builds block `n` of one of a few parallel chains ("forks");
//! fork 0 is the chain the fuzzed peers serve. Byte 20 of the data marks blocks the
//! application refuses: [`MARK_INVALID`] (the peer is blamed) or [`MARK_LOCAL_FAILURE`].

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::app::{BlockOutcome, ChainHead, Delegate, DelegateError, synopsis_numbers};
use crate::wire::message::{ItemId, block_id_of, block_previous_of, message_hash, msg_type};
use crate::wire::types::{BlockId, ItemHash, Ripemd160, Sha256, TimePoint, TimePointSec};

/// The chain id of the fuzzed node.
pub const CHAIN_ID: Sha256 = Sha256([0x42; 32]);
/// Blocks on each fork that the fuzzer can name.
pub const CHAIN_LEN: u32 = 40;
/// Byte 20 of a block or byte 0 of a transaction that the application refuses as invalid.
pub const MARK_INVALID: u8 = 0xEE;
/// Byte 20 of a block that fails to apply through no fault of the peer; byte 0 of a
/// transaction that is unusable.
pub const MARK_LOCAL_FAILURE: u8 = 0xEF;
/// Transactions the chain keeps; beyond it new ones fail as a local error.
pub const MAX_TRXS: usize = 512;
/// Blocks held for a missing parent.
pub const MAX_HELD: usize = 16;
/// In deferred mode, accepted batches not yet durable beyond which the chain is saturated.
pub const MAX_NOT_DURABLE: u64 = 1;
/// Seconds since the epoch of block 0: far enough behind the fuzz clock that sync offers of
/// a few thousand blocks are plausible and of billions are not.
pub const GENESIS_SECS: u32 = 1_699_990_000;

/// The id of block `n` on `fork` (block 0 is the all-zero id).
pub fn block_id(n: u32, fork: u8) -> BlockId {
    if n == 0 {
        return Ripemd160::default();
    }
    let mut id = [0u8; 20];
    id[..4].copy_from_slice(&n.to_be_bytes());
    id[4] = fork;
    for (i, b) in id.iter_mut().enumerate().skip(5) {
        *b = (n as u8 ^ 0x5a)
            .wrapping_add(i as u8)
            .wrapping_mul(fork | 1);
    }
    Ripemd160(id)
}

/// Block message data for block `n` on `fork`, with `mark` at byte 20 (0 for a good block).
pub fn block(n: u32, fork: u8, mark: u8) -> Vec<u8> {
    let mut data = Vec::with_capacity(48);
    data.extend_from_slice(block_id(n.saturating_sub(1), fork).as_bytes());
    data.extend_from_slice(&[mark, 0xB0, fork, 0, 0, 0, 0, 0]);
    data[24..28].copy_from_slice(&n.to_be_bytes());
    data.extend_from_slice(block_id(n, fork).as_bytes());
    data
}

/// The fuzzed node's application.
#[derive(Debug, Default)]
pub struct FuzzChain {
    /// Our chain: `chain[i]` is block `i + 1`.
    chain: Vec<(BlockId, Vec<u8>)>,
    /// Block number of every block on our chain, by id.
    by_id: HashMap<BlockId, u32>,
    /// Block ids by inventory hash (ripemd160 of the message data).
    by_inventory: HashMap<ItemHash, BlockId>,
    held: Vec<Vec<u8>>,
    trxs: HashMap<ItemHash, Vec<u8>>,
    /// Deferred durability (see [`FuzzChain::deferred`]): the last accepted batch's ticket, the
    /// last durable one, and the harness's signal that a commit finished.
    deferred: Option<Deferred>,
}

#[derive(Debug)]
struct Deferred {
    accepted: u64,
    durable: u64,
    commit: Arc<AtomicBool>,
}

impl FuzzChain {
    /// A chain holding blocks 1..=`head` of fork 0.
    pub fn new(head: u32) -> Self {
        let mut chain = Self::default();
        for n in 1..=head {
            chain.append(block(n, 0, 0));
        }
        chain
    }

    /// The same chain, but accepted work becomes durable only when `commit` has been set (the
    /// harness's stand-in for the relay store's writer finishing a commit): every batch then
    /// carries a ticket, and more than [`MAX_NOT_DURABLE`] batches waiting saturate it.
    pub fn deferred(mut self, commit: Arc<AtomicBool>) -> Self {
        self.deferred = Some(Deferred {
            accepted: 0,
            durable: 0,
            commit,
        });
        self
    }

    /// A batch was accepted: it takes the next ticket.
    fn accepted(&mut self) {
        if let Some(d) = self.deferred.as_mut() {
            d.accepted += 1;
        }
    }

    fn head_id(&self) -> BlockId {
        self.chain.last().map(|(id, _)| *id).unwrap_or_default()
    }

    fn append(&mut self, data: Vec<u8>) -> BlockId {
        let id = block_id_of(&data).unwrap_or_default();
        self.by_id.insert(id, self.chain.len() as u32 + 1);
        self.by_inventory.insert(message_hash(&data), id);
        self.chain.push((id, data));
        id
    }

    fn block_by_hash(&self, hash: &ItemHash) -> Option<&Vec<u8>> {
        let id = self.by_inventory.get(hash).unwrap_or(hash);
        let n = *self.by_id.get(id)?;
        self.chain.get(n as usize - 1).map(|(_, d)| d)
    }

    /// Whether `id` is on our chain (the all-zero id stands for the genesis state).
    fn on_chain(&self, id: &BlockId) -> bool {
        *id == BlockId::default() || self.by_id.contains_key(id)
    }

    fn apply(&mut self, data: &[u8]) -> Result<BlockOutcome, DelegateError> {
        let (Ok(id), Ok(previous)) = (block_id_of(data), block_previous_of(data)) else {
            return Err(DelegateError::Invalid("too short".into()));
        };
        if data.len() < 40 || data[20] == MARK_INVALID {
            return Err(DelegateError::Invalid("refused".into()));
        }
        if data[20] == MARK_LOCAL_FAILURE {
            return Err(DelegateError::Local("disk full".into()));
        }
        if self.by_id.contains_key(&id) {
            return Ok(BlockOutcome::Duplicate);
        }
        let head = self.chain.len() as u32;
        if previous == self.head_id() && id.block_number() == head + 1 {
            let mut linked = vec![self.append(data.to_vec())];
            // Held descendants that now link.
            while let Some(i) = self.held.iter().position(|h| {
                block_previous_of(h).ok() == Some(self.head_id())
                    && block_id_of(h).is_ok_and(|c| c.block_number() == self.chain.len() as u32 + 1)
            }) {
                let child = self.held.swap_remove(i);
                linked.push(self.append(child));
            }
            return Ok(BlockOutcome::Accepted { linked });
        }
        if self.on_chain(&previous) {
            return Err(DelegateError::Unusable("on a fork".into()));
        }
        if self.held.len() < MAX_HELD && !self.held.iter().any(|h| h[..] == data[..]) {
            self.held.push(data.to_vec());
        }
        Ok(BlockOutcome::Held {
            missing_parent: previous,
        })
    }
}

impl Delegate for FuzzChain {
    fn chain_id(&self) -> Sha256 {
        CHAIN_ID
    }

    fn head(&self) -> ChainHead {
        let number = self.chain.len() as u32;
        ChainHead {
            block_id: self.head_id(),
            number,
            time: TimePointSec(GENESIS_SECS + 5 * number),
        }
    }

    fn has_item(&self, item: &ItemId) -> bool {
        match item.item_type {
            msg_type::BLOCK => self.block_by_hash(&item.item_hash).is_some(),
            msg_type::TRX => self.trxs.contains_key(&item.item_hash),
            _ => false,
        }
    }

    fn get_item(&self, item: &ItemId) -> Option<Vec<u8>> {
        match item.item_type {
            msg_type::BLOCK => self.block_by_hash(&item.item_hash).cloned(),
            msg_type::TRX => self.trxs.get(&item.item_hash).cloned(),
            _ => None,
        }
    }

    fn handle_blocks(
        &mut self,
        blocks: &[Vec<u8>],
        _sync_mode: bool,
    ) -> Vec<Result<BlockOutcome, DelegateError>> {
        let out: Vec<_> = blocks.iter().map(|b| self.apply(b)).collect();
        if out
            .iter()
            .any(|r| matches!(r, Ok(BlockOutcome::Accepted { .. })))
        {
            self.accepted();
        }
        out
    }

    fn handle_transaction(&mut self, data: &[u8], _now: TimePoint) -> Result<(), DelegateError> {
        match data.first() {
            None | Some(&MARK_INVALID) => Err(DelegateError::Invalid("bad trx".into())),
            Some(&MARK_LOCAL_FAILURE) => Err(DelegateError::Unusable("expired".into())),
            Some(_) if self.trxs.len() >= MAX_TRXS => Err(DelegateError::Local("full".into())),
            Some(_) => {
                self.trxs.insert(message_hash(data), data.to_vec());
                self.accepted();
                Ok(())
            }
        }
    }

    fn block_ids_after(&self, synopsis: &[BlockId], limit: usize) -> (Vec<BlockId>, u32) {
        let start = if synopsis.is_empty() {
            1
        } else {
            match synopsis.iter().rev().find_map(|id| self.by_id.get(id)) {
                Some(&n) => n,
                None => return (Vec::new(), 0),
            }
        };
        let head = self.chain.len() as u32;
        if start == 0 || start > head {
            return (Vec::new(), 0);
        }
        let end = head.min(start.saturating_add(limit.saturating_sub(1) as u32));
        let ids = (start..=end)
            .filter_map(|n| self.chain.get(n as usize - 1).map(|(id, _)| *id))
            .collect();
        (ids, head - end)
    }

    fn blockchain_synopsis(&self) -> Vec<BlockId> {
        synopsis_numbers(self.chain.len() as u32)
            .into_iter()
            .filter_map(|n| {
                self.chain
                    .get((n as usize).checked_sub(1)?)
                    .map(|(id, _)| *id)
            })
            .collect()
    }

    fn accepted_ticket(&self) -> u64 {
        self.deferred.as_ref().map_or(0, |d| d.accepted)
    }

    fn poll_durable(&mut self) -> u64 {
        match self.deferred.as_mut() {
            None => 0,
            Some(d) => {
                if d.commit.swap(false, Ordering::Relaxed) {
                    d.durable = d.accepted;
                }
                d.durable
            }
        }
    }

    fn saturated(&self) -> bool {
        self.deferred
            .as_ref()
            .is_some_and(|d| d.accepted - d.durable > MAX_NOT_DURABLE)
    }

    fn prune(&mut self, _now: TimePoint) {
        // Transactions whose first byte is even "expire" at every prune.
        self.trxs
            .retain(|_, d| d.first().is_some_and(|b| b % 2 == 1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_link_hold_and_refuse() {
        let mut c = FuzzChain::new(2);
        assert_eq!(c.head().number, 2);
        assert_eq!(c.head().block_id, block_id(2, 0));
        // Block 4 waits for 3, then both join.
        assert!(matches!(
            c.apply(&block(4, 0, 0)),
            Ok(BlockOutcome::Held { .. })
        ));
        assert_eq!(
            c.apply(&block(3, 0, 0)),
            Ok(BlockOutcome::Accepted {
                linked: vec![block_id(3, 0), block_id(4, 0)]
            })
        );
        assert_eq!(c.apply(&block(4, 0, 0)), Ok(BlockOutcome::Duplicate));
        assert!(
            c.apply(&block(5, 0, MARK_INVALID))
                .unwrap_err()
                .blames_peer()
        );
        assert!(
            !c.apply(&block(5, 0, MARK_LOCAL_FAILURE))
                .unwrap_err()
                .blames_peer()
        );
        // Fork 1's block 3 has a parent we lack: held; fork 1's block 1 forks off genesis.
        assert!(matches!(
            c.apply(&block(3, 1, 0)),
            Ok(BlockOutcome::Held { .. })
        ));
        assert!(c.apply(&block(1, 1, 0)).is_err());
        // Items by id and by inventory hash.
        let item = |h| ItemId {
            item_type: msg_type::BLOCK,
            item_hash: h,
        };
        assert!(c.has_item(&item(block_id(4, 0))));
        assert!(c.has_item(&item(message_hash(&block(4, 0, 0)))));
        assert_eq!(c.get_item(&item(block_id(1, 0))), Some(block(1, 0, 0)));
        // Sync answers.
        assert_eq!(
            c.block_ids_after(&[block_id(2, 0)], 2),
            (vec![block_id(2, 0), block_id(3, 0)], 1)
        );
        assert_eq!(c.block_ids_after(&[block_id(2, 1)], 2), (Vec::new(), 0));
        assert_eq!(c.blockchain_synopsis().last(), Some(&block_id(4, 0)));
    }
}
