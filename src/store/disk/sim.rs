//! Simulated disk: per-node in-memory files with DURABLE state vs PENDING operations, crash
//! modes and injected faults. Used by unit/property tests and by madsim simulations (compiled in
//! every build; it never touches `madsim::fs` or the real file system). OWNER: store helper.
//!
//! # Model
//! Every file is an inode with two byte images: `live` (what reads see: the page cache) and
//! `durable` (what survives a power loss). Every mutation is applied to `live` at once and also
//! appended to ONE ordered pending log:
//! - `write_at` / `set_len` on a file (also the initial length given to `create`);
//! - directory operations: file create, remove, rename. A directory operation becomes durable
//!   only when `sync_dir` is called on the PARENT directory of the entry (for a rename: the
//!   parent of the destination; the source entry disappears durably with it).
//! - `sync_range(pos, len)` makes durable the parts of this file's pending writes that intersect
//!   the range, plus its pending length changes (fdatasync semantics); the rest stays pending.
//!   `sync_all` makes all of this file's pending data durable. Neither makes the directory
//!   entry durable: a created file that was fsynced but whose directory was not is lost on
//!   power loss, as on a real file system.
//! - Directories made by `create_dir_all` are durable at once (a simplification; files inside
//!   are strict).
//!
//! # Crashes: [`SimDisk::crash`]`(mode, rng)`
//! Call it just before killing the node (madsim `Handle::kill`). All handles opened before the
//! crash become stale (every call on them fails with EIO), so a zombie task of the dead
//! incarnation can never write into the new one; locks taken with `try_lock` are released.
//! - [`CrashMode::ProcessCrash`]: the page cache survives: live state is kept, pending ops stay
//!   pending (a later power loss can still drop them).
//! - [`CrashMode::PowerLoss`]: every pending op is dropped; live := durable.
//! - [`CrashMode::TornPowerLoss`]: an rng-chosen prefix of the pending log survives (applied in
//!   order), the op right after it, if a write, is cut at a 512-byte sector boundary (a random
//!   aligned cut strictly inside it; possibly nothing), the rest is dropped.
//!
//! # Faults
//! - [`SimDisk::inject_fault`] with a [`Fault`]: EIO on read / write / sync (sync covers
//!   `sync_range`, `sync_all` and `sync_dir`) for paths starting with a prefix, one-shot or
//!   sticky; or silent read corruption (one bit flipped in the returned buffer). A failed sync
//!   behaves like Linux after an fsync error: the pending writes it covered are DROPPED from the
//!   pending log without reaching durable state (reads still see them until a power loss).
//!   [`SimDisk::clear_faults`] removes all.
//! - [`SimDisk::set_capacity_bytes`]: total size limit; any create/grow beyond it fails with
//!   ENOSPC (raw os error 28) and changes nothing. `space()` reports it.
//!
//! # Inspection (for checkers)
//! `read_live(path)`, `read_durable(path)`, `pending_ops()`, `used_bytes()`, `paths()`,
//! `corrupt_byte(path, pos)` (flips a byte in both images: bit rot).
//!
//! # Determinism
//! No randomness except the rng handed to `crash` (`rt::rng()` in simulations, a
//! [`SeededRng`] in tests). Time (`modified_ms`) comes from `rt::now_ms()` (simulated under
//! madsim). All maps are ordered.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use madsim::rand::{Rng, RngCore};

use super::{Disk, DiskLock, DiskSpace, SegmentFile};

/// Sector size used to cut torn writes.
pub const SECTOR_SIZE: u64 = 512;
/// Capacity reported when no limit is set (1 TiB).
pub const DEFAULT_CAPACITY_BYTES: u64 = 1 << 40;

/// How the machine went down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashMode {
    /// The process died; the OS page cache (pending writes) survives.
    ProcessCrash,
    /// Power went out: everything not synced is lost.
    PowerLoss,
    /// Power went out mid-writeback: a prefix of the pending ops survives, the last one torn.
    TornPowerLoss,
}

impl CrashMode {
    pub const ALL: [CrashMode; 3] = [
        CrashMode::ProcessCrash,
        CrashMode::PowerLoss,
        CrashMode::TornPowerLoss,
    ];
}

/// Which operation a fault hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultOp {
    Read,
    Write,
    /// `sync_range`, `sync_all`, `sync_dir`.
    Sync,
    /// Reads succeed but one bit of the returned buffer is flipped.
    CorruptRead,
}

/// An injected fault: `op` on any path starting with `path_prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub op: FaultOp,
    pub path_prefix: PathBuf,
    /// Sticky faults fire every time; others fire once and disappear.
    pub sticky: bool,
}

impl Fault {
    pub fn once(op: FaultOp, path_prefix: impl Into<PathBuf>) -> Fault {
        Fault {
            op,
            path_prefix: path_prefix.into(),
            sticky: false,
        }
    }
    pub fn sticky(op: FaultOp, path_prefix: impl Into<PathBuf>) -> Fault {
        Fault {
            op,
            path_prefix: path_prefix.into(),
            sticky: true,
        }
    }
}

/// A small deterministic generator (SplitMix64) for tests and proptests that need an rng for
/// [`SimDisk::crash`] without a runtime (it works in both builds).
#[derive(Debug, Clone)]
pub struct SeededRng {
    state: u64,
}

impl SeededRng {
    pub fn new(seed: u64) -> SeededRng {
        SeededRng { state: seed }
    }
}

impl RngCore for SeededRng {
    fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }
    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), madsim::rand::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

type Ino = u64;

#[derive(Debug, Default)]
struct Inode {
    live: Vec<u8>,
    durable: Vec<u8>,
    modified_ms: i64,
}

#[derive(Debug, Clone)]
enum DirOp {
    Create {
        path: PathBuf,
        ino: Ino,
    },
    Remove {
        path: PathBuf,
        ino: Ino,
    },
    Rename {
        from: PathBuf,
        to: PathBuf,
        ino: Ino,
    },
}

#[derive(Debug, Clone)]
enum Pending {
    Write { ino: Ino, pos: u64, data: Vec<u8> },
    SetLen { ino: Ino, len: u64 },
    Dir { dir: PathBuf, op: DirOp },
}

#[derive(Debug, Default)]
struct State {
    /// Bumped by every crash; handles from an older epoch are stale.
    epoch: u64,
    next_ino: Ino,
    inodes: BTreeMap<Ino, Inode>,
    live_ns: BTreeMap<PathBuf, Ino>,
    durable_ns: BTreeMap<PathBuf, Ino>,
    dirs: BTreeSet<PathBuf>,
    pending: Vec<Pending>,
    faults: Vec<Fault>,
    capacity_bytes: Option<u64>,
    locks: BTreeSet<PathBuf>,
}

/// The simulated disk of one node. Cheap to clone (shared state); keep one per node outside the
/// node's `init` closure so it survives restarts.
#[derive(Clone, Default)]
pub struct SimDisk {
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for SimDisk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SimDisk")
    }
}

/// EIO with the raw errno kept (callers may check `raw_os_error()`); `what` and `path` are
/// traced so a failing simulation shows which injected fault fired.
fn raw_eio(what: &str, path: &Path) -> io::Error {
    tracing::debug!(op = what, path = %path.display(), "simulated EIO");
    io::Error::from_raw_os_error(libc::EIO)
}

fn enospc() -> io::Error {
    io::Error::from_raw_os_error(libc::ENOSPC)
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: no such file", path.display()),
    )
}

fn parent_of(path: &Path) -> PathBuf {
    path.parent().map(Path::to_path_buf).unwrap_or_default()
}

fn apply_write(image: &mut Vec<u8>, pos: u64, data: &[u8]) {
    let end = pos as usize + data.len();
    if image.len() < end {
        image.resize(end, 0);
    }
    image[pos as usize..end].copy_from_slice(data);
}

impl State {
    /// Bytes of files in the live namespace (a removed file frees its space at once).
    fn used_bytes(&self) -> u64 {
        self.live_ns
            .values()
            .filter_map(|ino| self.inodes.get(ino))
            .map(|i| i.live.len() as u64)
            .sum()
    }

    /// Fires (and consumes, if one-shot) a matching fault.
    fn take_fault(&mut self, op: FaultOp, path: &Path) -> bool {
        let Some(i) = self
            .faults
            .iter()
            .position(|f| f.op == op && path.starts_with(&f.path_prefix))
        else {
            return false;
        };
        if !self.faults[i].sticky {
            self.faults.remove(i);
        }
        true
    }

    fn check_growth(&self, ino: Ino, new_len: u64) -> io::Result<()> {
        let Some(cap) = self.capacity_bytes else {
            return Ok(());
        };
        let current = self
            .inodes
            .get(&ino)
            .map(|i| i.live.len() as u64)
            .unwrap_or(0);
        if new_len > current && self.used_bytes() + (new_len - current) > cap {
            return Err(enospc());
        }
        Ok(())
    }

    fn apply_durable(&mut self, op: &Pending) {
        match op {
            Pending::Write { ino, pos, data } => {
                if let Some(inode) = self.inodes.get_mut(ino) {
                    apply_write(&mut inode.durable, *pos, data);
                }
            }
            Pending::SetLen { ino, len } => {
                if let Some(inode) = self.inodes.get_mut(ino) {
                    inode.durable.resize(*len as usize, 0);
                }
            }
            Pending::Dir { op, .. } => match op {
                DirOp::Create { path, ino } => {
                    self.durable_ns.insert(path.clone(), *ino);
                }
                DirOp::Remove { path, ino } => {
                    if self.durable_ns.get(path) == Some(ino) {
                        self.durable_ns.remove(path);
                    }
                }
                DirOp::Rename { from, to, ino } => {
                    if self.durable_ns.get(from) == Some(ino) {
                        self.durable_ns.remove(from);
                    }
                    self.durable_ns.insert(to.clone(), *ino);
                }
            },
        }
    }

    /// Makes durable this inode's pending ops intersecting [pos, end); `drop_only` models a
    /// failed fsync (covered data leaves the pending log without reaching durable state).
    fn sync_inode(&mut self, ino: Ino, pos: u64, end: u64, drop_only: bool) {
        let pending = std::mem::take(&mut self.pending);
        let mut kept = Vec::with_capacity(pending.len());
        for op in pending {
            match op {
                Pending::Write {
                    ino: w_ino,
                    pos: w_pos,
                    data,
                } if w_ino == ino => {
                    let w_end = w_pos + data.len() as u64;
                    let lo = w_pos.max(pos);
                    let hi = w_end.min(end);
                    if lo >= hi {
                        kept.push(Pending::Write {
                            ino,
                            pos: w_pos,
                            data,
                        });
                        continue;
                    }
                    if !drop_only {
                        let part = &data[(lo - w_pos) as usize..(hi - w_pos) as usize];
                        if let Some(inode) = self.inodes.get_mut(&ino) {
                            apply_write(&mut inode.durable, lo, part);
                        }
                    }
                    if w_pos < lo {
                        kept.push(Pending::Write {
                            ino,
                            pos: w_pos,
                            data: data[..(lo - w_pos) as usize].to_vec(),
                        });
                    }
                    if hi < w_end {
                        kept.push(Pending::Write {
                            ino,
                            pos: hi,
                            data: data[(hi - w_pos) as usize..].to_vec(),
                        });
                    }
                }
                Pending::SetLen { ino: s_ino, len } if s_ino == ino => {
                    if !drop_only {
                        if let Some(inode) = self.inodes.get_mut(&ino) {
                            inode.durable.resize(len as usize, 0);
                        }
                    }
                }
                other => kept.push(other),
            }
        }
        self.pending = kept;
    }

    fn gc_inodes(&mut self) {
        let referenced: BTreeSet<Ino> = self
            .live_ns
            .values()
            .chain(self.durable_ns.values())
            .copied()
            .collect();
        let pending_refs: BTreeSet<Ino> = self
            .pending
            .iter()
            .filter_map(|p| match p {
                Pending::Dir {
                    op: DirOp::Create { ino, .. } | DirOp::Rename { ino, .. },
                    ..
                } => Some(*ino),
                _ => None,
            })
            .collect();
        self.inodes
            .retain(|ino, _| referenced.contains(ino) || pending_refs.contains(ino));
    }
}

/// A handle on a simulated file.
pub struct SimFile {
    state: Arc<Mutex<State>>,
    ino: Ino,
    path: PathBuf,
    epoch: u64,
}

impl SimDisk {
    /// An empty disk with no capacity limit and no faults.
    pub fn new() -> SimDisk {
        SimDisk::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock is a bug in this module; keep going with the state.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Simulates a crash of the node (see the module docs). Call before killing the node.
    pub fn crash<R: Rng + ?Sized>(&self, mode: CrashMode, rng: &mut R) {
        let mut st = self.lock();
        st.epoch += 1;
        st.locks.clear();
        match mode {
            CrashMode::ProcessCrash => {}
            CrashMode::PowerLoss => {
                st.pending.clear();
                st.restore_live_from_durable();
            }
            CrashMode::TornPowerLoss => {
                let pending = std::mem::take(&mut st.pending);
                let keep = rng.gen_range(0..=pending.len());
                for op in &pending[..keep] {
                    st.apply_durable(op);
                }
                if let Some(Pending::Write { ino, pos, data }) = pending.get(keep) {
                    let end = pos + data.len() as u64;
                    let first_cut = (pos / SECTOR_SIZE + 1) * SECTOR_SIZE;
                    // Choice 0 keeps nothing of the write; choice i keeps up to the i-th
                    // sector boundary strictly inside it.
                    let inner_cuts = if first_cut < end {
                        (end - 1 - first_cut) / SECTOR_SIZE + 1
                    } else {
                        0
                    };
                    let choice = rng.gen_range(0..=inner_cuts);
                    if choice > 0 {
                        let cut = first_cut + (choice - 1) * SECTOR_SIZE;
                        let part = data[..(cut - pos) as usize].to_vec();
                        let torn = Pending::Write {
                            ino: *ino,
                            pos: *pos,
                            data: part,
                        };
                        st.apply_durable(&torn);
                    }
                }
                st.restore_live_from_durable();
            }
        }
    }

    /// Adds a fault (see [`Fault`]).
    pub fn inject_fault(&self, fault: Fault) {
        self.lock().faults.push(fault);
    }

    /// Removes every injected fault.
    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    /// Limits the total bytes of all files (None: unlimited). Growing past it fails with ENOSPC.
    pub fn set_capacity_bytes(&self, capacity_bytes: Option<u64>) {
        self.lock().capacity_bytes = capacity_bytes;
    }

    /// Sum of all file lengths (live view).
    pub fn used_bytes(&self) -> u64 {
        self.lock().used_bytes()
    }

    /// Number of operations not yet durable.
    pub fn pending_ops(&self) -> usize {
        self.lock().pending.len()
    }

    /// All file paths in the live namespace, sorted.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.lock().live_ns.keys().cloned().collect()
    }

    /// What a read of the whole file returns now (None if absent).
    pub fn read_live(&self, path: &Path) -> Option<Vec<u8>> {
        let st = self.lock();
        let ino = st.live_ns.get(path)?;
        st.inodes.get(ino).map(|i| i.live.clone())
    }

    /// What the file would hold after a power loss now (None if it would not exist).
    pub fn read_durable(&self, path: &Path) -> Option<Vec<u8>> {
        let st = self.lock();
        let ino = st.durable_ns.get(path)?;
        st.inodes.get(ino).map(|i| i.durable.clone())
    }

    /// Bit rot: flips all bits of the byte at `pos` in both the live and durable images.
    pub fn corrupt_byte(&self, path: &Path, pos: u64) -> io::Result<()> {
        let mut st = self.lock();
        let ino = *st.live_ns.get(path).ok_or_else(|| not_found(path))?;
        let inode = st.inodes.get_mut(&ino).ok_or_else(|| not_found(path))?;
        let mut hit = false;
        for image in [&mut inode.live, &mut inode.durable] {
            if let Some(b) = image.get_mut(pos as usize) {
                *b ^= 0xFF;
                hit = true;
            }
        }
        if hit {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "corrupt_byte beyond file end",
            ))
        }
    }
}

impl State {
    fn restore_live_from_durable(&mut self) {
        self.live_ns = self.durable_ns.clone();
        for inode in self.inodes.values_mut() {
            inode.live = inode.durable.clone();
        }
        // Directories are durable at once; make sure every surviving file's parents exist.
        let parents: Vec<PathBuf> = self
            .live_ns
            .keys()
            .flat_map(|p| p.ancestors().skip(1).map(Path::to_path_buf))
            .filter(|p| !p.as_os_str().is_empty())
            .collect();
        self.dirs.extend(parents);
        self.gc_inodes();
    }
}

impl SimFile {
    fn lock(&self) -> io::Result<MutexGuard<'_, State>> {
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.epoch != self.epoch {
            return Err(raw_eio("stale handle from before a crash", &self.path));
        }
        Ok(st)
    }
}

impl SegmentFile for SimFile {
    fn len(&self) -> u64 {
        match self.lock() {
            Ok(st) => st
                .inodes
                .get(&self.ino)
                .map(|i| i.live.len() as u64)
                .unwrap_or(0),
            Err(_) => 0,
        }
    }

    fn read_at(&self, pos: u64, buf: &mut [u8]) -> io::Result<()> {
        let mut st = self.lock()?;
        if st.take_fault(FaultOp::Read, &self.path) {
            return Err(raw_eio("read", &self.path));
        }
        let corrupt = st.take_fault(FaultOp::CorruptRead, &self.path);
        let inode = st
            .inodes
            .get(&self.ino)
            .ok_or_else(|| not_found(&self.path))?;
        let end = pos as usize + buf.len();
        if end > inode.live.len() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "{}: read {pos}+{} beyond length {}",
                    self.path.display(),
                    buf.len(),
                    inode.live.len()
                ),
            ));
        }
        buf.copy_from_slice(&inode.live[pos as usize..end]);
        if corrupt && !buf.is_empty() {
            let mid = buf.len() / 2;
            buf[mid] ^= 0x01;
        }
        Ok(())
    }

    fn write_at(&self, pos: u64, data: &[u8]) -> io::Result<()> {
        let mut st = self.lock()?;
        if st.take_fault(FaultOp::Write, &self.path) {
            return Err(raw_eio("write", &self.path));
        }
        if data.is_empty() {
            return Ok(());
        }
        let end = pos + data.len() as u64;
        st.check_growth(self.ino, end)?;
        let now = crate::rt::now_ms();
        let inode = st
            .inodes
            .get_mut(&self.ino)
            .ok_or_else(|| not_found(&self.path))?;
        apply_write(&mut inode.live, pos, data);
        inode.modified_ms = now;
        st.pending.push(Pending::Write {
            ino: self.ino,
            pos,
            data: data.to_vec(),
        });
        Ok(())
    }

    fn sync_range(&self, pos: u64, len: u64) -> io::Result<()> {
        let mut st = self.lock()?;
        let failed = st.take_fault(FaultOp::Sync, &self.path);
        st.sync_inode(self.ino, pos, pos.saturating_add(len), failed);
        if failed {
            return Err(raw_eio("sync", &self.path));
        }
        Ok(())
    }

    fn sync_all(&self) -> io::Result<()> {
        let mut st = self.lock()?;
        let failed = st.take_fault(FaultOp::Sync, &self.path);
        st.sync_inode(self.ino, 0, u64::MAX, failed);
        if failed {
            return Err(raw_eio("sync", &self.path));
        }
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut st = self.lock()?;
        if st.take_fault(FaultOp::Write, &self.path) {
            return Err(raw_eio("set_len", &self.path));
        }
        st.check_growth(self.ino, len)?;
        let now = crate::rt::now_ms();
        let inode = st
            .inodes
            .get_mut(&self.ino)
            .ok_or_else(|| not_found(&self.path))?;
        inode.live.resize(len as usize, 0);
        inode.modified_ms = now;
        st.pending.push(Pending::SetLen { ino: self.ino, len });
        Ok(())
    }
}

impl Disk for SimDisk {
    fn create(&self, path: &Path, len: u64) -> io::Result<Arc<dyn SegmentFile>> {
        let mut st = self.lock();
        if st.take_fault(FaultOp::Write, path) {
            return Err(raw_eio("create", path));
        }
        let dir = parent_of(path);
        if !dir.as_os_str().is_empty() && !st.dirs.contains(&dir) {
            return Err(not_found(&dir));
        }
        // Creating over an existing file truncates it (O_TRUNC): same inode.
        let ino = match st.live_ns.get(path) {
            Some(ino) => {
                let ino = *ino;
                st.check_growth(ino, len)?;
                ino
            }
            None => {
                if let Some(cap) = st.capacity_bytes {
                    if st.used_bytes() + len > cap {
                        return Err(enospc());
                    }
                }
                st.next_ino += 1;
                let ino = st.next_ino;
                st.inodes.insert(ino, Inode::default());
                st.live_ns.insert(path.to_path_buf(), ino);
                st.pending.push(Pending::Dir {
                    dir: dir.clone(),
                    op: DirOp::Create {
                        path: path.to_path_buf(),
                        ino,
                    },
                });
                ino
            }
        };
        let now = crate::rt::now_ms();
        if let Some(inode) = st.inodes.get_mut(&ino) {
            inode.live = vec![0; len as usize];
            inode.modified_ms = now;
        }
        st.pending.push(Pending::SetLen { ino, len: 0 });
        st.pending.push(Pending::SetLen { ino, len });
        let epoch = st.epoch;
        Ok(Arc::new(SimFile {
            state: self.state.clone(),
            ino,
            path: path.to_path_buf(),
            epoch,
        }))
    }

    fn open(&self, path: &Path) -> io::Result<Arc<dyn SegmentFile>> {
        let mut st = self.lock();
        if st.take_fault(FaultOp::Read, path) {
            return Err(raw_eio("open", path));
        }
        let ino = *st.live_ns.get(path).ok_or_else(|| not_found(path))?;
        let epoch = st.epoch;
        Ok(Arc::new(SimFile {
            state: self.state.clone(),
            ino,
            path: path.to_path_buf(),
            epoch,
        }))
    }

    fn exists(&self, path: &Path) -> bool {
        let st = self.lock();
        st.live_ns.contains_key(path) || st.dirs.contains(path)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let st = self.lock();
        let mut names = BTreeSet::new();
        let children = st
            .live_ns
            .keys()
            .chain(st.dirs.iter())
            .filter(|p| p.parent() == Some(dir));
        for child in children {
            if let Some(name) = child.file_name() {
                names.insert(name.to_string_lossy().into_owned());
            }
        }
        Ok(names.into_iter().collect())
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut st = self.lock();
        if st.live_ns.contains_key(dir) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} is a file", dir.display()),
            ));
        }
        for ancestor in dir.ancestors() {
            if ancestor.as_os_str().is_empty() {
                break;
            }
            st.dirs.insert(ancestor.to_path_buf());
        }
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut st = self.lock();
        if st.take_fault(FaultOp::Write, path) {
            return Err(raw_eio("remove", path));
        }
        let ino = st.live_ns.remove(path).ok_or_else(|| not_found(path))?;
        st.pending.push(Pending::Dir {
            dir: parent_of(path),
            op: DirOp::Remove {
                path: path.to_path_buf(),
                ino,
            },
        });
        Ok(())
    }

    fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut st = self.lock();
        if st.take_fault(FaultOp::Write, dir) {
            return Err(raw_eio("remove_dir_all", dir));
        }
        let victims: Vec<(PathBuf, Ino)> = st
            .live_ns
            .iter()
            .filter(|(p, _)| p.starts_with(dir))
            .map(|(p, i)| (p.clone(), *i))
            .collect();
        for (path, ino) in victims {
            st.live_ns.remove(&path);
            st.pending.push(Pending::Dir {
                dir: parent_of(&path),
                op: DirOp::Remove { path, ino },
            });
        }
        st.dirs.retain(|d| !d.starts_with(dir));
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.lock();
        if st.take_fault(FaultOp::Write, from) {
            return Err(raw_eio("rename", from));
        }
        let to_dir = parent_of(to);
        if !to_dir.as_os_str().is_empty() && !st.dirs.contains(&to_dir) {
            return Err(not_found(&to_dir));
        }
        let ino = st.live_ns.remove(from).ok_or_else(|| not_found(from))?;
        st.live_ns.insert(to.to_path_buf(), ino);
        st.pending.push(Pending::Dir {
            dir: to_dir,
            op: DirOp::Rename {
                from: from.to_path_buf(),
                to: to.to_path_buf(),
                ino,
            },
        });
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut st = self.lock();
        if !st.dirs.contains(dir) {
            return Err(not_found(dir));
        }
        let failed = st.take_fault(FaultOp::Sync, dir);
        let pending = std::mem::take(&mut st.pending);
        let mut kept = Vec::with_capacity(pending.len());
        for op in pending {
            match &op {
                Pending::Dir { dir: d, .. } if d == dir => {
                    if !failed {
                        st.apply_durable(&op);
                    }
                }
                _ => kept.push(op),
            }
        }
        st.pending = kept;
        st.gc_inodes();
        if failed {
            return Err(raw_eio("sync_dir", dir));
        }
        Ok(())
    }

    fn space(&self, _path: &Path) -> io::Result<DiskSpace> {
        let st = self.lock();
        let total_bytes = st.capacity_bytes.unwrap_or(DEFAULT_CAPACITY_BYTES);
        Ok(DiskSpace {
            total_bytes,
            available_bytes: total_bytes.saturating_sub(st.used_bytes()),
        })
    }

    fn modified_ms(&self, path: &Path) -> io::Result<i64> {
        let st = self.lock();
        let ino = st.live_ns.get(path).ok_or_else(|| not_found(path))?;
        Ok(st.inodes.get(ino).map(|i| i.modified_ms).unwrap_or(0))
    }

    fn try_lock(&self, path: &Path) -> io::Result<Option<DiskLock>> {
        let mut st = self.lock();
        if st.locks.contains(path) {
            return Ok(None);
        }
        // The lock file itself exists on disk, as with flock.
        if !st.live_ns.contains_key(path) {
            drop(st);
            self.create(path, 0)?;
            st = self.lock();
        }
        st.locks.insert(path.to_path_buf());
        let holder = SimLockHolder {
            state: self.state.clone(),
            path: path.to_path_buf(),
            epoch: st.epoch,
        };
        Ok(Some(DiskLock::new(Box::new(holder))))
    }
}

struct SimLockHolder {
    state: Arc<Mutex<State>>,
    path: PathBuf,
    epoch: u64,
}

impl Drop for SimLockHolder {
    fn drop(&mut self) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        // A crash already released every lock; a stale guard must not release a new holder's.
        if st.epoch == self.epoch {
            st.locks.remove(&self.path);
        }
    }
}
