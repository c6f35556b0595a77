//! The harness's view of a broker's [`SimDisk`]: crash modes, EIO/ENOSPC faults, and a log of
//! power losses that the durability checkers read (an ASYNC_FLUSH ack older than a power loss
//! may legitimately be lost; a SYNC_FLUSH ack never).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub use apogee::store::disk::sim::{CrashMode, Fault, FaultOp, SimDisk};
use apogee::store::Disk;

/// Disk faults the harness injects (they stay until cleared, so the broker sees them on every
/// retry and must keep refusing writes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskFault {
    /// Writes fail with EIO.
    WriteEio,
    /// fsync fails with EIO (the store must poison itself, never ack unsynced data).
    SyncEio,
    /// The volume is full: creating or growing files fails with ENOSPC.
    NoSpace,
}

#[derive(Debug, Default)]
struct DiskLog {
    /// Simulated time of every crash, with its mode.
    crashes: Vec<(apogee::rt::Instant, CrashMode)>,
    active_faults: Vec<DiskFault>,
}

/// One broker's disk, shared by the harness and every incarnation of the broker node.
#[derive(Clone)]
pub struct SimDiskHandle {
    disk: SimDisk,
    /// Store root as the broker sees it (for path-scoped faults and the CQ checker).
    store_root: PathBuf,
    log: Arc<Mutex<DiskLog>>,
}

impl SimDiskHandle {
    pub fn new(store_root: impl Into<PathBuf>) -> SimDiskHandle {
        SimDiskHandle {
            disk: SimDisk::new(),
            store_root: store_root.into(),
            log: Arc::new(Mutex::new(DiskLog::default())),
        }
    }

    /// The disk as the broker's store takes it.
    pub fn as_disk(&self) -> Arc<dyn Disk> {
        Arc::new(self.disk.clone())
    }

    pub fn sim_disk(&self) -> &SimDisk {
        &self.disk
    }

    pub fn store_root(&self) -> &Path {
        &self.store_root
    }

    /// Applies a crash to the disk (the node itself is killed by the cluster right after).
    /// Torn writes are cut with madsim's seeded RNG.
    pub fn crash(&self, mode: CrashMode) {
        let mut rng = apogee::rt::rng();
        self.disk.crash(mode, &mut rng);
        let at = apogee::rt::now();
        self.log.lock().expect("disk log").crashes.push((at, mode));
    }

    /// Simulated instants of every crash that lost unsynced data.
    pub fn power_losses(&self) -> Vec<apogee::rt::Instant> {
        self.log
            .lock()
            .expect("disk log")
            .crashes
            .iter()
            .filter(|(_, m)| *m != CrashMode::ProcessCrash)
            .map(|(t, _)| *t)
            .collect()
    }

    pub fn crash_count(&self) -> usize {
        self.log.lock().expect("disk log").crashes.len()
    }

    /// Injects a sticky fault on the whole store until [`clear_faults`](Self::clear_faults).
    pub fn inject(&self, fault: DiskFault) {
        match fault {
            DiskFault::WriteEio => self
                .disk
                .inject_fault(Fault::sticky(FaultOp::Write, self.store_root.clone())),
            DiskFault::SyncEio => self
                .disk
                .inject_fault(Fault::sticky(FaultOp::Sync, self.store_root.clone())),
            DiskFault::NoSpace => {
                // Full from now on: whatever exists may be rewritten, nothing may grow.
                let used = self.disk.used_bytes();
                self.disk.set_capacity_bytes(Some(used));
            }
        }
        self.log.lock().expect("disk log").active_faults.push(fault);
    }

    pub fn clear_faults(&self) {
        self.disk.clear_faults();
        self.disk.set_capacity_bytes(None);
        self.log.lock().expect("disk log").active_faults.clear();
    }

    pub fn active_faults(&self) -> Vec<DiskFault> {
        self.log.lock().expect("disk log").active_faults.clone()
    }

    /// Whole-file read of the live image (page cache view), for read-only checkers.
    pub fn read_live(&self, path: &Path) -> Option<Vec<u8>> {
        self.disk.read_live(path)
    }

    pub fn paths(&self) -> Vec<PathBuf> {
        self.disk.paths()
    }
}
