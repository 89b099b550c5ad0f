//! A simulated disk for crash and fault tests.
//!
//! [`SimDisk`] keeps what a real disk would have durably apart from what the
//! running program sees:
//!
//! ```text
//!   file contents:    current bytes ──sync()──▶ durable bytes
//!                     (pending writes and truncations are replayed on sync)
//!   directory:        current names ──sync_dir()──▶ durable names
//! ```
//!
//! [`SimDisk::power_loss`] throws the current view away and rebuilds it from the
//! durable one, optionally keeping unsynced writes with the last one torn at a
//! 512-byte sector boundary and the rest of it absent, zero-filled or garbage.
//! A file whose directory entry was never made durable disappears; a rename
//! that was not followed by `sync_dir` is undone.
//!
//! Faults: [`SimDisk::crash_after`] freezes the disk after N mutating
//! operations (every later one fails, as if the machine had died), and
//! [`SimDisk::inject`] makes one chosen operation fail with EIO or ENOSPC.
//! Mutating operations are counted: create, write, append, sync, truncate,
//! rename, remove and sync_dir.

use super::memory::{read_from, write_into};
use super::{FileHandle, LockGuard, Storage, StorageFile, eio};
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

/// Sector size used to tear writes.
pub const SECTOR: usize = 512;

/// What happens to the unsynced tail of a torn write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TornFill {
    /// The rest of the write never reached the disk.
    Absent,
    /// The rest of the write reads back as zeros.
    Zero,
    /// The rest of the write reads back as pseudo-random bytes.
    Garbage,
}

/// How a power loss treats writes that were not yet synced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerLoss {
    /// Every unsynced write and truncation is lost.
    DropUnsynced,
    /// Unsynced writes survive, except that the last one of each file keeps
    /// only `sectors_kept` whole sectors and the rest is `fill`.
    TearLastWrite {
        /// Whole 512-byte sectors of the last write that survive.
        sectors_kept: usize,
        /// What stands where the rest of the write was.
        fill: TornFill,
    },
}

/// A one-shot injected failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The Nth mutating operation (counting from 1) fails with EIO.
    EioAt(u64),
    /// The Nth mutating operation fails with ENOSPC.
    NoSpaceAt(u64),
    /// The Nth `sync` call (counting from 1) fails with EIO.
    SyncFailsAt(u64),
    /// Power is lost just before the first operation named `op` ("write",
    /// "append", "sync", "truncate", "rename", "remove", "create") on the
    /// file `file`: it and every later operation fail.
    CrashBefore {
        /// Operation name.
        op: &'static str,
        /// File name.
        file: &'static str,
    },
}

#[derive(Debug, Clone)]
enum Pending {
    Write { offset: u64, data: Vec<u8> },
    Truncate(u64),
}

#[derive(Debug, Default)]
struct Inode {
    current: Vec<u8>,
    durable: Vec<u8>,
    pending: Vec<Pending>,
}

impl Inode {
    fn apply(buf: &mut Vec<u8>, op: &Pending) -> io::Result<()> {
        match op {
            Pending::Write { offset, data } => write_into(buf, *offset, data),
            Pending::Truncate(len) => {
                buf.resize(usize::try_from(*len).unwrap_or(usize::MAX), 0);
                Ok(())
            }
        }
    }

    fn sync(&mut self) -> io::Result<()> {
        for op in std::mem::take(&mut self.pending) {
            Self::apply(&mut self.durable, &op)?;
        }
        Ok(())
    }

    fn lose_power(&mut self, mode: PowerLoss, seed: &mut u64) -> io::Result<()> {
        let pending = std::mem::take(&mut self.pending);
        if let PowerLoss::TearLastWrite { sectors_kept, fill } = mode {
            let last = pending.len().saturating_sub(1);
            for (i, op) in pending.iter().enumerate() {
                match op {
                    Pending::Write { offset, data } if i == last => {
                        let kept = (sectors_kept * SECTOR).min(data.len());
                        let mut torn = data.get(..kept).unwrap_or_default().to_vec();
                        match fill {
                            TornFill::Absent => {}
                            TornFill::Zero => torn.resize(data.len(), 0),
                            TornFill::Garbage => {
                                torn.extend((kept..data.len()).map(|_| next_byte(seed)))
                            }
                        }
                        write_into(&mut self.durable, *offset, &torn)?;
                    }
                    op => Self::apply(&mut self.durable, op)?,
                }
            }
        }
        self.current = self.durable.clone();
        Ok(())
    }
}

fn next_byte(seed: &mut u64) -> u8 {
    // xorshift64: deterministic garbage.
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    (*seed >> 24) as u8
}

#[derive(Debug, Default)]
struct State {
    inodes: HashMap<u64, Inode>,
    names: BTreeMap<String, u64>,
    durable_names: BTreeMap<String, u64>,
    next_inode: u64,
    ops: u64,
    syncs: u64,
    crash_after: Option<u64>,
    frozen: bool,
    faults: Vec<Fault>,
    locked: bool,
    seed: u64,
}

impl State {
    /// Counts one mutating operation on `file` and decides whether it fails.
    fn mutate_file(&mut self, what: &str, file: &str) -> io::Result<()> {
        if let Some(i) = self.faults.iter().position(
            |f| matches!(f, Fault::CrashBefore { op, file: f } if *op == what && *f == file),
        ) {
            self.faults.remove(i);
            self.frozen = true;
        }
        self.mutate(what)
    }

    fn name_of(&self, inode: u64) -> String {
        self.names
            .iter()
            .find(|(_, id)| **id == inode)
            .map(|(n, _)| n.clone())
            .unwrap_or_default()
    }

    /// Counts one mutating operation and decides whether it fails.
    fn mutate(&mut self, what: &str) -> io::Result<()> {
        if self.frozen {
            return Err(eio(&format!("power lost before {what}")));
        }
        self.ops += 1;
        if let Some(limit) = self.crash_after
            && self.ops > limit
        {
            self.frozen = true;
            return Err(eio(&format!("power lost at {what}")));
        }
        let ops = self.ops;
        if let Some(i) = self.faults.iter().position(|f| match f {
            Fault::EioAt(n) | Fault::NoSpaceAt(n) => *n == ops,
            Fault::SyncFailsAt(_) | Fault::CrashBefore { .. } => false,
        }) {
            let fault = self.faults.remove(i);
            return Err(match fault {
                Fault::NoSpaceAt(_) => io::Error::new(io::ErrorKind::StorageFull, "ENOSPC"),
                _ => eio(what),
            });
        }
        Ok(())
    }

    fn inode(&mut self, id: u64) -> io::Result<&mut Inode> {
        self.inodes
            .get_mut(&id)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "stale file handle"))
    }
}

/// The simulated disk. Clones share the same disk.
#[derive(Debug, Clone, Default)]
pub struct SimDisk {
    state: Arc<Mutex<State>>,
}

impl SimDisk {
    /// An empty disk.
    pub fn new() -> Self {
        let disk = Self::default();
        if let Ok(mut s) = disk.state.lock() {
            s.seed = 0x9E37_79B9_7F4A_7C15;
        }
        disk
    }

    fn lock_state(&self) -> io::Result<MutexGuard<'_, State>> {
        self.state
            .lock()
            .map_err(|_| io::Error::other("simulated disk lock poisoned"))
    }

    /// Freezes the disk after `ops` more mutating operations: the next one and
    /// all later ones fail until [`SimDisk::power_loss`].
    pub fn crash_after(&self, ops: u64) -> io::Result<()> {
        let mut s = self.lock_state()?;
        s.crash_after = Some(s.ops + ops);
        Ok(())
    }

    /// Arms a one-shot fault. Operation and sync counts are absolute since the
    /// disk was created (see [`SimDisk::op_count`], [`SimDisk::sync_count`]).
    pub fn inject(&self, fault: Fault) -> io::Result<()> {
        self.lock_state()?.faults.push(fault);
        Ok(())
    }

    /// Mutating operations performed so far.
    pub fn op_count(&self) -> u64 {
        self.lock_state().map(|s| s.ops).unwrap_or(0)
    }

    /// `sync` calls performed so far.
    pub fn sync_count(&self) -> u64 {
        self.lock_state().map(|s| s.syncs).unwrap_or(0)
    }

    /// True once a crash point was reached.
    pub fn is_frozen(&self) -> bool {
        self.lock_state().map(|s| s.frozen).unwrap_or(true)
    }

    /// Simulates a power loss: the view becomes what was durable (see
    /// [`PowerLoss`]), the lock is released and the disk works again.
    pub fn power_loss(&self, mode: PowerLoss) -> io::Result<()> {
        let mut s = self.lock_state()?;
        let state = &mut *s;
        state.names = state.durable_names.clone();
        let live: Vec<u64> = state.names.values().copied().collect();
        state.inodes.retain(|id, _| live.contains(id));
        for inode in state.inodes.values_mut() {
            inode.lose_power(mode, &mut state.seed)?;
        }
        state.crash_after = None;
        state.frozen = false;
        state.faults.clear();
        state.locked = false;
        Ok(())
    }

    /// The current bytes of `name`, or `None` if it does not exist.
    pub fn contents(&self, name: &str) -> Option<Vec<u8>> {
        let s = self.lock_state().ok()?;
        let id = s.names.get(name)?;
        s.inodes.get(id).map(|i| i.current.clone())
    }

    /// Overwrites `name` durably (for corruption tests).
    pub fn set_contents(&self, name: &str, bytes: Vec<u8>) -> io::Result<()> {
        let mut s = self.lock_state()?;
        let id = *s
            .names
            .get(name)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, name.to_string()))?;
        let inode = s.inode(id)?;
        inode.current = bytes.clone();
        inode.durable = bytes;
        inode.pending.clear();
        Ok(())
    }
}

#[derive(Debug)]
struct SimFile {
    disk: SimDisk,
    inode: u64,
}

impl SimFile {
    fn write_op(&self, what: &str, op: Pending) -> io::Result<()> {
        let mut s = self.disk.lock_state()?;
        let name = s.name_of(self.inode);
        s.mutate_file(what, &name)?;
        let inode = s.inode(self.inode)?;
        Inode::apply(&mut inode.current, &op)?;
        inode.pending.push(op);
        Ok(())
    }
}

impl StorageFile for SimFile {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let mut s = self.disk.lock_state()?;
        read_from(&s.inode(self.inode)?.current, offset, buf)
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.write_op(
            "write",
            Pending::Write {
                offset,
                data: data.to_vec(),
            },
        )
    }

    fn append(&self, data: &[u8]) -> io::Result<u64> {
        let mut s = self.disk.lock_state()?;
        let name = s.name_of(self.inode);
        s.mutate_file("append", &name)?;
        let inode = s.inode(self.inode)?;
        let offset = inode.current.len() as u64;
        let op = Pending::Write {
            offset,
            data: data.to_vec(),
        };
        Inode::apply(&mut inode.current, &op)?;
        inode.pending.push(op);
        Ok(offset)
    }

    fn sync(&self) -> io::Result<()> {
        let mut s = self.disk.lock_state()?;
        let name = s.name_of(self.inode);
        s.mutate_file("sync", &name)?;
        s.syncs += 1;
        let syncs = s.syncs;
        if let Some(i) = s
            .faults
            .iter()
            .position(|f| matches!(f, Fault::SyncFailsAt(n) if *n == syncs))
        {
            s.faults.remove(i);
            // Like Linux after a failed writeback: the dirty pages are dropped
            // and the error is reported once.
            let inode = s.inode(self.inode)?;
            inode.pending.clear();
            return Err(eio("fsync failed"));
        }
        s.inode(self.inode)?.sync()
    }

    fn truncate(&self, len: u64) -> io::Result<()> {
        self.write_op("truncate", Pending::Truncate(len))
    }

    fn len(&self) -> io::Result<u64> {
        let mut s = self.disk.lock_state()?;
        Ok(s.inode(self.inode)?.current.len() as u64)
    }
}

#[derive(Debug)]
struct SimLock {
    disk: SimDisk,
}

impl LockGuard for SimLock {}

impl Drop for SimLock {
    fn drop(&mut self) {
        if let Ok(mut s) = self.disk.state.lock() {
            s.locked = false;
        }
    }
}

fn not_found(name: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{name} not found"))
}

impl Storage for SimDisk {
    fn open(&self, name: &str, create: bool) -> io::Result<FileHandle> {
        let mut s = self.lock_state()?;
        let inode = match s.names.get(name) {
            Some(id) => *id,
            None if create => {
                s.mutate_file("create", name)?;
                s.next_inode += 1;
                let id = s.next_inode;
                s.inodes.insert(id, Inode::default());
                s.names.insert(name.to_string(), id);
                id
            }
            None => return Err(not_found(name)),
        };
        Ok(Arc::new(SimFile {
            disk: self.clone(),
            inode,
        }))
    }

    fn exists(&self, name: &str) -> io::Result<bool> {
        Ok(self.lock_state()?.names.contains_key(name))
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let mut s = self.lock_state()?;
        s.mutate_file("rename", to)?;
        let id = s.names.remove(from).ok_or_else(|| not_found(from))?;
        s.names.insert(to.to_string(), id);
        Ok(())
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        let mut s = self.lock_state()?;
        s.mutate_file("remove", name)?;
        s.names
            .remove(name)
            .map(|_| ())
            .ok_or_else(|| not_found(name))
    }

    fn list(&self) -> io::Result<Vec<String>> {
        Ok(self.lock_state()?.names.keys().cloned().collect())
    }

    fn sync_dir(&self) -> io::Result<()> {
        let mut s = self.lock_state()?;
        s.mutate("sync_dir")?;
        s.durable_names = s.names.clone();
        Ok(())
    }

    fn lock(&self) -> io::Result<Option<Box<dyn LockGuard>>> {
        let mut s = self.lock_state()?;
        if s.locked {
            return Ok(None);
        }
        s.locked = true;
        Ok(Some(Box::new(SimLock { disk: self.clone() })))
    }

    fn describe(&self) -> String {
        "simulated disk".to_string()
    }
}
