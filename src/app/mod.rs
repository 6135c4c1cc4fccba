//! The application boundary: what the node asks of the chain it relays.
//!
//! [`Delegate`] is the Rust counterpart of the reference's `node_delegate`, reduced to what the
//! node needs. The node calls it from its own task, synchronously, in the order items must be
//! applied. [`relay_store::RelayStore`] is the default application `grapevine run` uses.
//!
//! # Durability
//!
//! An application may accept items at once and make them durable later, off the node task:
//! each accepting call may advance [`Delegate::accepted_ticket`], and
//! [`Delegate::poll_durable`] says up to which ticket everything is durable. The node
//! advertises an item only once its ticket is durable, learns of progress through
//! [`crate::node::Node::on_durable`] (the runtime calls it when the waker given to
//! [`Delegate::set_durable_waker`] fires), and hands over no sync blocks and fetches nothing
//! while the application is [`Delegate::saturated`]. [`Delegate::head`] is the durable head
//! (what peers and the operator are told), [`Delegate::accepted_head`] the head of everything
//! accepted (what sync continues from). The defaults describe an application whose every call
//! is durable when it returns.

pub mod commits;
pub mod relay_store;

use crate::wire::message::ItemId;
use crate::wire::types::{BlockId, Sha256, TimePoint, TimePointSec};

/// The head of our chain, as hello's user_data reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChainHead {
    pub block_id: BlockId,
    pub number: u32,
    pub time: TimePointSec,
}

/// Why the application refused an item. [`DelegateError::blames_peer`] tells the node whether
/// the peer that sent it misbehaved.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DelegateError {
    /// The item is invalid: whoever sent it is at fault.
    #[error("invalid item: {0}")]
    Invalid(String),
    /// The item may be fine but cannot be used (yet), e.g. an expired transaction.
    #[error("item not usable: {0}")]
    Unusable(String),
    /// Our own failure (disk, database): nobody else is to blame.
    #[error("local failure: {0}")]
    Local(String),
}

impl DelegateError {
    /// Whether the peer that sent the item should be disconnected for it.
    pub fn blames_peer(&self) -> bool {
        matches!(self, DelegateError::Invalid(_))
    }
}

/// What became of a block handed to the application.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlockOutcome {
    /// Accepted. `linked` lists the ids of blocks that joined the chain with it, this one
    /// first, then any held descendants that now link.
    Accepted { linked: Vec<BlockId> },
    /// Valid but its parent is unknown: held until the parent arrives. Never the peer's fault.
    /// `missing_parent` is the id of the block it waits for (its header's `previous`).
    Held { missing_parent: BlockId },
    /// Already known.
    Duplicate,
}

/// What the node needs from a chain.
pub trait Delegate: Send {
    /// The chain this application serves.
    fn chain_id(&self) -> Sha256;

    /// Seconds between blocks (sets inactivity timeouts).
    fn block_interval_secs(&self) -> i64 {
        5
    }

    /// The head block that is durable: what hello and the status report.
    fn head(&self) -> ChainHead;

    /// The head of everything accepted, durable or not: what sync continues from.
    fn accepted_head(&self) -> ChainHead {
        self.head()
    }

    /// Whether the item is known. For blocks `item_hash` may be the block id or the inventory
    /// hash (ripemd160 of the block message).
    fn has_item(&self, item: &ItemId) -> bool;

    /// [`Delegate::has_item`] for many items at once (one answer each, in order): an
    /// application with a database answers them from one read transaction.
    fn has_items(&self, items: &[ItemId]) -> Vec<bool> {
        items.iter().map(|i| self.has_item(i)).collect()
    }

    /// The message data of a known item (trx message data, or block message data including
    /// the trailing block id).
    fn get_item(&self, item: &ItemId) -> Option<Vec<u8>>;

    /// Applies blocks (block message data) in order. One answer per block; `sync_mode` says
    /// they come from a blockchain sync rather than live gossip.
    fn handle_blocks(
        &mut self,
        blocks: &[Vec<u8>],
        sync_mode: bool,
    ) -> Vec<Result<BlockOutcome, DelegateError>>;

    /// Applies a transaction (trx message data).
    fn handle_transaction(&mut self, data: &[u8], now: TimePoint) -> Result<(), DelegateError>;

    /// Block ids after the last block of `synopsis` we share, starting with that block, at most
    /// `limit` of them, and how many more follow. An empty synopsis means from block 1. Only
    /// durable blocks: a peer syncing from us must not be offered what a crash takes back.
    fn block_ids_after(&self, synopsis: &[BlockId], limit: usize) -> (Vec<BlockId>, u32);

    /// Our blockchain synopsis: ids of blocks on our chain, oldest first, ending at the
    /// accepted head, dense near the head and sparse further back.
    fn blockchain_synopsis(&self) -> Vec<BlockId>;

    /// Drops what has expired (e.g. transactions past their expiration).
    fn prune(&mut self, _now: TimePoint) {}

    /// Makes everything accepted so far durable, waiting for it (tools, tests and
    /// benchmarks; the node never calls it: it waits for [`Delegate::poll_durable`] instead).
    /// The default has nothing to do.
    fn make_durable(&mut self) -> Result<(), DelegateError> {
        Ok(())
    }

    /// The ticket of the last accepted batch (blocks or a transaction): 1, 2, 3, … in the
    /// order of acceptance. An application that is durable at once may leave it at 0.
    fn accepted_ticket(&self) -> u64 {
        0
    }

    /// Every ticket up to the one returned is durable. Never blocks; the application may use
    /// the call to forget what it kept in memory for batches now durable.
    fn poll_durable(&mut self) -> u64 {
        self.accepted_ticket()
    }

    /// Whether too much accepted work is not durable yet: the node then hands over no sync
    /// blocks and fetches no items until [`Delegate::poll_durable`] moves on.
    fn saturated(&self) -> bool {
        false
    }

    /// Bytes of accepted items the application holds in memory until they are durable (for
    /// the node's memory accounting).
    fn not_durable_bytes(&self) -> usize {
        0
    }

    /// `wake` is to be called (from any thread) whenever more work became durable.
    fn set_durable_waker(&mut self, _wake: Box<dyn Fn() + Send + Sync>) {}
}

/// The synopsis numbers for a chain whose head is `head`: head, head-1, head-3, head-7, …,
/// down to 1, oldest first.
pub fn synopsis_numbers(head: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut step = 1u32;
    let mut n = head;
    while n >= 1 {
        out.push(n);
        if n <= step {
            break;
        }
        n -= step;
        step = step.saturating_mul(2);
    }
    if out.last() != Some(&1) && head >= 1 {
        out.push(1);
    }
    out.reverse();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synopsis_is_dense_near_the_head() {
        assert_eq!(synopsis_numbers(0), Vec::<u32>::new());
        assert_eq!(synopsis_numbers(1), vec![1]);
        assert_eq!(synopsis_numbers(10), vec![1, 3, 7, 9, 10]);
        let s = synopsis_numbers(1_000_000);
        assert!(s.len() < 25);
        assert_eq!(s.first(), Some(&1));
        assert_eq!(s.last(), Some(&1_000_000));
    }
}
