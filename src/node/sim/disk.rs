//! A simulated node's disk: the bytes of its redb store, which outlive the node's process.
//!
//! Every incarnation of a node opens the same [`SimDisk`] through a [`DiskHandle`]. A kill
//! detaches the running incarnation's handle: writes made before the kill stay (a killed process
//! leaves the operating system's page cache intact, and redb commits one transaction per call,
//! so no call is ever cut in half), and whatever the dead incarnation would write afterwards (redb's
//! clean-shutdown bookkeeping when its `Database` is dropped) never happens. The next
//! incarnation therefore opens a store that was not closed cleanly, as after `kill -9`.

use std::sync::{Arc, Mutex, MutexGuard};

#[derive(Debug, Default)]
struct DiskState {
    bytes: Vec<u8>,
    /// The incarnation whose writes land; older handles are dead processes.
    generation: u64,
}

/// The disk of one simulated node.
#[derive(Clone, Debug, Default)]
pub struct SimDisk(Arc<Mutex<DiskState>>);

/// One incarnation's access to a [`SimDisk`], usable as a redb storage backend.
#[derive(Debug)]
pub struct DiskHandle {
    disk: SimDisk,
    generation: u64,
}

impl SimDisk {
    /// An empty disk.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, DiskState> {
        // A panic while holding the lock leaves plain bytes behind: still readable.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A handle for a new incarnation; every older handle stops writing.
    pub fn attach(&self) -> DiskHandle {
        let mut s = self.lock();
        s.generation += 1;
        DiskHandle {
            disk: self.clone(),
            generation: s.generation,
        }
    }

    /// The running incarnation died: its later writes are lost.
    pub fn crash(&self) {
        self.lock().generation += 1;
    }

    /// Bytes on the disk.
    pub fn len(&self) -> usize {
        self.lock().bytes.len()
    }

    /// Whether nothing was ever written.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn out_of_range() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, "offset beyond the disk")
}

impl redb::StorageBackend for DiskHandle {
    fn len(&self) -> std::io::Result<u64> {
        Ok(self.disk.lock().bytes.len() as u64)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
        let s = self.disk.lock();
        let start = usize::try_from(offset).map_err(|_| out_of_range())?;
        let src = s
            .bytes
            .get(start..start + out.len())
            .ok_or_else(out_of_range)?;
        out.copy_from_slice(src);
        Ok(())
    }

    fn set_len(&self, len: u64) -> std::io::Result<()> {
        let mut s = self.disk.lock();
        if s.generation == self.generation {
            let len = usize::try_from(len).map_err(|_| out_of_range())?;
            s.bytes.resize(len, 0);
        }
        Ok(())
    }

    fn sync_data(&self) -> std::io::Result<()> {
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        let mut s = self.disk.lock();
        if s.generation != self.generation {
            return Ok(());
        }
        let start = usize::try_from(offset).map_err(|_| out_of_range())?;
        let dst = s
            .bytes
            .get_mut(start..start + data.len())
            .ok_or_else(out_of_range)?;
        dst.copy_from_slice(data);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::Delegate;
    use crate::app::relay_store::{RelayStore, make_test_chain};
    use crate::wire::types::{Ripemd160, Sha256};

    #[test]
    fn committed_blocks_survive_a_kill_and_the_dead_process_writes_nothing() {
        let disk = SimDisk::new();
        let chain = Sha256([3; 32]);
        let blocks = make_test_chain(Ripemd160::default(), 5, 1_600_000_000);
        let mut first = RelayStore::with_backend(disk.attach(), chain).unwrap();
        first.handle_blocks(&blocks[..3], false);
        first.make_durable().unwrap();
        assert_eq!(first.head().number, 3);
        disk.crash();
        // The dead process "keeps running" in memory: nothing it does reaches the disk.
        first.handle_blocks(&blocks[3..], false);
        first.make_durable().unwrap();
        let second = RelayStore::with_backend(disk.attach(), chain).unwrap();
        drop(first);
        assert_eq!(second.head().number, 3);
        drop(second);
        let third = RelayStore::with_backend(disk.attach(), chain).unwrap();
        assert_eq!(third.head().number, 3);
    }
}
