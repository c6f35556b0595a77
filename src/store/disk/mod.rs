//! The disk seam. The store reaches files only through [`Disk`] and [`SegmentFile`].
//! Production: [`mmap::MmapDisk`] (memmap2 + fsync of file and directory). Simulation and tests:
//! [`sim::SimDisk`] (in-memory, durable vs pending bytes, crash modes, injected faults).
//! Both pass one conformance suite (`conformance.rs`). OWNER: store helper.

use std::io;
use std::path::Path;
use std::sync::Arc;

#[cfg(test)]
mod conformance;
pub mod mmap;
pub mod sim;

/// How a file's writes reach the page cache. Readers always see written bytes at once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WriteMode {
    /// Stores into the mapping (fastest per write; the CommitLog under ASYNC_FLUSH).
    #[default]
    Mapped,
    /// pwrite(2) on the descriptor. Costs a syscall per write, but on the ext4 volume measured
    /// a sync of pages written this way completed 2-3x faster than of pages stored through
    /// the mapping (`cargo bench --bench group_commit` prints both), so the CommitLog uses it
    /// under SYNC_FLUSH, where the sync rate bounds throughput.
    Syscall,
}

/// One fixed-size (or growable) file: a CommitLog segment, a ConsumeQueue file, an IndexFile,
/// the checkpoint, a JSON config file.
pub trait SegmentFile: Send + Sync {
    /// Current length in bytes.
    fn len(&self) -> u64;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Reads exactly `buf.len()` bytes at `pos` (error if past the end).
    fn read_at(&self, pos: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Writes all of `data` at `pos`, growing the file if needed. Not durable until synced.
    fn write_at(&self, pos: u64, data: &[u8]) -> io::Result<()>;
    /// Several [`Self::write_at`]s in order, as one call (a mapped file takes its lock once).
    /// Not atomic: a failure may leave a prefix of them written, as separate calls would.
    fn write_at_many(&self, writes: &[(u64, &[u8])]) -> io::Result<()> {
        for (pos, data) in writes {
            self.write_at(*pos, data)?;
        }
        Ok(())
    }
    /// Writes `len` bytes at `pos` produced by `fill`, which gets a buffer of exactly `len`
    /// bytes of unspecified content and must write every byte of it. Same contract as [`Self::write_at`] (one write, not durable until synced);
    /// a mapped file hands `fill` the mapped bytes themselves, so the caller's encoding is the
    /// only copy (the CommitLog append encodes entries this way). `fill` must write every byte.
    fn write_in_place(
        &self,
        pos: u64,
        len: usize,
        fill: &mut dyn FnMut(&mut [u8]),
    ) -> io::Result<()> {
        write_through_buffer(self, &mut Vec::new(), pos, len, fill)
    }
    /// Makes bytes in `[pos, pos+len)` durable (msync/fsync).
    fn sync_range(&self, pos: u64, len: u64) -> io::Result<()>;
    /// Makes the whole file durable, including its length.
    fn sync_all(&self) -> io::Result<()>;
    /// Sets the length (truncates or zero-extends).
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Chooses how later writes reach the file (see [`WriteMode`]); files without a mapping
    /// ignore it.
    fn set_write_mode(&self, mode: WriteMode) {
        let _ = mode;
    }
    /// True when [`Self::prefault`] does something (a memory-mapped file).
    fn supports_prefault(&self) -> bool {
        false
    }
    /// Maps the pages of `[pos, pos+len)` in without changing a byte, so later accesses there
    /// take no page fault: writable ahead of appends (RocketMQ warms mapped files for the same
    /// reason), readable before a scan (recovery). Blocking (it faults the pages in).
    fn prefault(&self, pos: u64, len: u64, for_write: bool) -> io::Result<()> {
        let _ = (pos, len, for_write);
        Ok(())
    }
}

/// [`SegmentFile::write_in_place`] by way of `buf`: `fill` gets `len` bytes of it, then one
/// [`SegmentFile::write_at`] writes them (for files that cannot hand out their own bytes).
pub(crate) fn write_through_buffer<F: SegmentFile + ?Sized>(
    file: &F,
    buf: &mut Vec<u8>,
    pos: u64,
    len: usize,
    fill: &mut dyn FnMut(&mut [u8]),
) -> io::Result<()> {
    buf.clear();
    buf.resize(len, 0);
    fill(buf);
    file.write_at(pos, buf)
}

/// Space figures of the volume holding a path (for diskMaxUsedSpaceRatio and disk-full).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskSpace {
    pub total_bytes: u64,
    pub available_bytes: u64,
}

/// A file system as the store sees it.
pub trait Disk: Send + Sync + 'static {
    /// Creates (or truncates) a file of `len` zero bytes. The directory entry is durable only
    /// after `sync_dir` of its parent.
    fn create(&self, path: &Path, len: u64) -> io::Result<Arc<dyn SegmentFile>>;
    /// Opens an existing file.
    fn open(&self, path: &Path) -> io::Result<Arc<dyn SegmentFile>>;
    fn exists(&self, path: &Path) -> bool;
    /// Names (not paths) of the entries directly under `dir`, sorted; empty if `dir` is absent.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Removes a directory and everything under it.
    fn remove_dir_all(&self, dir: &Path) -> io::Result<()>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Makes the directory's entries (creates, renames, removes) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    fn space(&self, path: &Path) -> io::Result<DiskSpace>;
    /// Last modification time of a file, in ms since the Unix epoch (retention by age).
    fn modified_ms(&self, path: &Path) -> io::Result<i64>;
    /// Takes an exclusive advisory lock on `path` (created if absent), as RocketMQ does on the
    /// store's `lock` file so two brokers never share one root. `Ok(None)` when another holder
    /// has it. The lock is released when the returned guard is dropped (or the process dies).
    fn try_lock(&self, path: &Path) -> io::Result<Option<DiskLock>>;
}

/// An exclusive lock taken through [`Disk::try_lock`]; released on drop.
pub struct DiskLock {
    // Holds whatever keeps the lock (an open flock'ed file, a simulated lock entry).
    _holder: Box<dyn Send + Sync>,
}

impl DiskLock {
    pub fn new(holder: Box<dyn Send + Sync>) -> DiskLock {
        DiskLock { _holder: holder }
    }
}

impl std::fmt::Debug for DiskLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DiskLock")
    }
}

/// Reads a whole small file (config JSON, checkpoint). None if absent.
pub fn read_file(disk: &dyn Disk, path: &Path) -> io::Result<Option<Vec<u8>>> {
    if !disk.exists(path) {
        return Ok(None);
    }
    let file = disk.open(path)?;
    let mut buf = vec![0u8; file.len() as usize];
    file.read_at(0, &mut buf)?;
    Ok(Some(buf))
}

/// Replaces a small file atomically: write `<path>.tmp`, fsync it, rename over `path`, fsync the
/// directory. A crash at any point leaves either the old or the new content, never a torn file.
pub fn write_file_atomic(disk: &dyn Disk, path: &Path, data: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    disk.create_dir_all(dir)?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let file = disk.create(&tmp, 0)?;
    file.write_at(0, data)?;
    file.sync_all()?;
    drop(file);
    disk.rename(&tmp, path)?;
    disk.sync_dir(dir)
}
