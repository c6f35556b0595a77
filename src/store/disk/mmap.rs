//! Production disk: files mapped with memmap2, writes are memcpy into the mapping (or pwrite, in
//! [`WriteMode::Syscall`]), reads always from the mapping, `sync_range`
//! is msync of the touched pages, `sync_all` is msync + fsync, `sync_dir` fsyncs the directory.
//! This module is the seam: it is the one place in the store allowed to use `std::fs`.
//! OWNER: store helper.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use memmap2::MmapRaw;

use super::{Disk, DiskLock, DiskSpace, SegmentFile, WriteMode};

/// The real file system, files accessed through memory maps.
#[derive(Debug, Default, Clone, Copy)]
pub struct MmapDisk {
    /// Write mode of every file this disk creates or opens (callers may change it per file).
    write_mode: WriteMode,
}

impl MmapDisk {
    pub fn new() -> MmapDisk {
        MmapDisk::default()
    }

    /// A disk whose files start in `write_mode` (the conformance suite runs both modes).
    pub fn with_write_mode(write_mode: WriteMode) -> MmapDisk {
        MmapDisk { write_mode }
    }
}

/// One mapped file. The mapping is replaced (under the write lock) only when the file grows or
/// shrinks; reads, writes and msync share the read lock so a slow msync never blocks appends.
pub struct MmapFile {
    file: File,
    map: RwLock<Mapping>,
    /// [`WriteMode::Syscall`]: writes go through pwrite instead of the mapping.
    write_by_syscall: AtomicBool,
    /// `write_in_place` encodes here when it cannot encode into the mapping: in syscall mode
    /// (before the pwrite) and when the write grows the file. Writers of one file are
    /// serialized by its owner, so this lock is never contended.
    scratch: Mutex<Vec<u8>>,
}

struct Mapping {
    len: u64,
    // None while the file is empty: a zero-length file cannot be mapped.
    raw: Option<MmapRaw>,
}

fn lock_poisoned() -> io::Error {
    io::Error::other("mmap file lock poisoned")
}

fn map_file(file: &File, len: u64) -> io::Result<Option<MmapRaw>> {
    if len == 0 {
        return Ok(None);
    }
    // MmapRaw: a shared, writable mapping addressed through raw pointers, which lets
    // concurrent readers and the single appender share it without &mut.
    Ok(Some(
        memmap2::MmapOptions::new()
            .len(len as usize)
            .map_raw(file)?,
    ))
}

impl MmapFile {
    fn open_file(file: File, write_mode: WriteMode) -> io::Result<MmapFile> {
        let len = file.metadata()?.len();
        let raw = map_file(&file, len)?;
        Ok(MmapFile {
            file,
            map: RwLock::new(Mapping { len, raw }),
            write_by_syscall: AtomicBool::new(write_mode == WriteMode::Syscall),
            scratch: Mutex::new(Vec::new()),
        })
    }

    fn writes_by_syscall(&self) -> bool {
        self.write_by_syscall.load(Ordering::Relaxed)
    }

    fn remap(&self, len: u64) -> io::Result<()> {
        let mut mapping = self.map.write().map_err(|_| lock_poisoned())?;
        if mapping.len == len {
            return Ok(());
        }
        // Write back what the old mapping holds before dropping it: the bytes stay in the page
        // cache anyway, but a shrink must not race with dirty pages beyond the new end.
        if let Some(raw) = mapping.raw.take() {
            raw.flush_async()?;
        }
        self.file.set_len(len)?;
        mapping.raw = map_file(&self.file, len)?;
        mapping.len = len;
        Ok(())
    }
}

fn out_of_range(pos: u64, n: usize, len: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("range {pos}+{n} beyond file length {len}"),
    )
}

impl SegmentFile for MmapFile {
    fn len(&self) -> u64 {
        match self.map.read() {
            Ok(m) => m.len,
            Err(_) => 0,
        }
    }

    fn read_at(&self, pos: u64, buf: &mut [u8]) -> io::Result<()> {
        let mapping = self.map.read().map_err(|_| lock_poisoned())?;
        let end = pos
            .checked_add(buf.len() as u64)
            .ok_or_else(|| out_of_range(pos, buf.len(), mapping.len))?;
        if end > mapping.len {
            return Err(out_of_range(pos, buf.len(), mapping.len));
        }
        if buf.is_empty() {
            return Ok(());
        }
        let raw = mapping
            .raw
            .as_ref()
            .ok_or_else(|| out_of_range(pos, buf.len(), 0))?;
        // SAFETY: [pos, end) lies inside the mapping (checked above) and the mapping cannot be
        // replaced while the read lock is held.
        unsafe {
            std::ptr::copy_nonoverlapping(
                raw.as_ptr().add(pos as usize),
                buf.as_mut_ptr(),
                buf.len(),
            );
        }
        Ok(())
    }

    fn write_at(&self, pos: u64, data: &[u8]) -> io::Result<()> {
        self.write_at_many(&[(pos, data)])
    }

    fn write_at_many(&self, writes: &[(u64, &[u8])]) -> io::Result<()> {
        let mut end = 0;
        for (pos, data) in writes {
            let write_end = pos
                .checked_add(data.len() as u64)
                .ok_or_else(|| out_of_range(*pos, data.len(), u64::MAX))?;
            if !data.is_empty() {
                end = end.max(write_end);
            }
        }
        if end == 0 {
            return Ok(());
        }
        // One read lock for every write (the lock's atomics cost more than a small memcpy).
        let mut mapping = self.map.read().map_err(|_| lock_poisoned())?;
        if end > mapping.len {
            drop(mapping);
            self.remap(end)?;
            mapping = self.map.read().map_err(|_| lock_poisoned())?;
            if end > mapping.len {
                // Shrunk concurrently between remap and read lock: refuse rather than corrupt.
                return Err(out_of_range(0, end as usize, mapping.len));
            }
        }
        if self.writes_by_syscall() {
            // The mapping (checked to cover `end` above) is kept only so the file is not
            // shrunk under concurrent readers; the bytes go through the page cache directly.
            for (pos, data) in writes {
                self.file.write_all_at(data, *pos)?;
            }
            return Ok(());
        }
        let raw = mapping
            .raw
            .as_ref()
            .ok_or_else(|| out_of_range(0, end as usize, 0))?;
        for (pos, data) in writes {
            // SAFETY: [pos, pos + len) ends at or below `end`, inside the mapping, which cannot
            // be replaced while the read lock is held. Writers of one file are serialized by
            // their owner (CommitLog append lock, CQ queue lock, index write lock), so no two
            // writes overlap.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    data.as_ptr(),
                    raw.as_mut_ptr().add(*pos as usize),
                    data.len(),
                );
            }
        }
        Ok(())
    }

    fn write_in_place(
        &self,
        pos: u64,
        len: usize,
        fill: &mut dyn FnMut(&mut [u8]),
    ) -> io::Result<()> {
        if len == 0 {
            return Ok(());
        }
        if !self.writes_by_syscall() {
            let mapping = self.map.read().map_err(|_| lock_poisoned())?;
            let end = pos
                .checked_add(len as u64)
                .ok_or_else(|| out_of_range(pos, len, mapping.len))?;
            if let (true, Some(raw)) = (end <= mapping.len, mapping.raw.as_ref()) {
                // SAFETY: [pos, end) is inside the mapping (checked above), which cannot be
                // replaced while the read lock is held. Writers of one file are serialized by
                // their owner (the CommitLog append lock) and readers never look at bytes past
                // the published write position, so nothing else accesses this range while the
                // slice lives. Every bit pattern is a valid u8.
                let buf = unsafe {
                    std::slice::from_raw_parts_mut(raw.as_mut_ptr().add(pos as usize), len)
                };
                fill(buf);
                return Ok(());
            }
        }
        // Syscall mode (pwrite), or growing the file (`write_at` remaps): through the buffer.
        let mut scratch = self.scratch.lock().unwrap_or_else(|e| e.into_inner());
        super::write_through_buffer(self, &mut scratch, pos, len, fill)
    }

    fn sync_range(&self, pos: u64, len: u64) -> io::Result<()> {
        let mapping = self.map.read().map_err(|_| lock_poisoned())?;
        let Some(raw) = mapping.raw.as_ref() else {
            return Ok(());
        };
        if pos >= mapping.len || len == 0 {
            return Ok(());
        }
        let len = len.min(mapping.len - pos);
        // msync(MS_SYNC) of the pages covering the range (memmap2 aligns to the page).
        raw.flush_range(pos as usize, len as usize)
    }

    fn sync_all(&self) -> io::Result<()> {
        {
            let mapping = self.map.read().map_err(|_| lock_poisoned())?;
            if let Some(raw) = mapping.raw.as_ref() {
                raw.flush()?;
            }
        }
        self.file.sync_all()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.remap(len)
    }

    fn set_write_mode(&self, mode: WriteMode) {
        self.write_by_syscall
            .store(mode == WriteMode::Syscall, Ordering::Relaxed);
    }

    fn supports_prefault(&self) -> bool {
        // Write-prefaulting dirties pages through the mapping, which is what syscall mode
        // avoids; read prefaults (recovery) are still served by `prefault`.
        !self.writes_by_syscall()
    }

    fn prefault(&self, pos: u64, len: u64, for_write: bool) -> io::Result<()> {
        const PAGE: u64 = 4096;
        let mapping = self.map.read().map_err(|_| lock_poisoned())?;
        let Some(raw) = mapping.raw.as_ref() else {
            return Ok(());
        };
        let start = pos - pos % PAGE;
        let end = pos.saturating_add(len).min(mapping.len);
        if start >= end {
            return Ok(());
        }
        // MADV_POPULATE_WRITE / _READ (Linux 5.14+) fault the pages in without touching their
        // contents, so they are safe next to concurrent appends. (Write-populating a range
        // that is only read would dirty every page of it.)
        if for_write && self.writes_by_syscall() {
            return Ok(());
        }
        let advice = if for_write {
            memmap2::Advice::PopulateWrite
        } else {
            memmap2::Advice::PopulateRead
        };
        if raw
            .advise_range(advice, start as usize, (end - start) as usize)
            .is_ok()
        {
            return Ok(());
        }
        // Older kernels: read one byte per page (maps it in; the first write then only
        // marks it dirty).
        let mut page = start;
        while page < end {
            // SAFETY: `page` lies inside the mapping, which cannot be replaced while the read
            // lock is held; a volatile read of a byte another thread may be writing is a
            // benign race on plain bytes (the value is discarded).
            unsafe {
                std::ptr::read_volatile(raw.as_ptr().add(page as usize));
            }
            page += PAGE;
        }
        Ok(())
    }
}

struct FlockHolder {
    // Closing the descriptor releases the flock.
    _file: File,
}

impl Disk for MmapDisk {
    fn create(&self, path: &Path, len: u64) -> io::Result<Arc<dyn SegmentFile>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        file.set_len(len)?;
        if len > 0 {
            // Reserve the blocks now: a store into a sparse mapped page on a full disk is a
            // SIGBUS, while a failed fallocate is a clean ENOSPC here, before anything is
            // written or acknowledged.
            // SAFETY: posix_fallocate on a descriptor we own.
            let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len as libc::off_t) };
            if rc != 0 && rc != libc::EOPNOTSUPP && rc != libc::EINVAL {
                drop(file);
                let _ = std::fs::remove_file(path);
                return Err(io::Error::from_raw_os_error(rc));
            }
        }
        Ok(Arc::new(MmapFile::open_file(file, self.write_mode)?))
    }

    fn open(&self, path: &Path) -> io::Result<Arc<dyn SegmentFile>> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        Ok(Arc::new(MmapFile::open_file(file, self.write_mode)?))
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry?;
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        match std::fs::remove_dir_all(dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn space(&self, path: &Path) -> io::Result<DiskSpace> {
        use std::os::unix::ffi::OsStrExt;
        // statvfs needs an existing path: walk up to the nearest existing ancestor.
        let mut probe = path;
        while !probe.exists() {
            match probe.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => probe = parent,
                _ => {
                    probe = Path::new(".");
                    break;
                }
            }
        }
        let c_path = std::ffi::CString::new(probe.as_os_str().as_bytes())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        // SAFETY: statvfs writes into a zeroed struct we own; c_path is NUL-terminated.
        let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        let fragment = stat.f_frsize as u64;
        Ok(DiskSpace {
            total_bytes: stat.f_blocks as u64 * fragment,
            available_bytes: stat.f_bavail as u64 * fragment,
        })
    }

    fn modified_ms(&self, path: &Path) -> io::Result<i64> {
        let modified = std::fs::metadata(path)?.modified()?;
        Ok(match modified.duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => d.as_millis() as i64,
            Err(_) => 0,
        })
    }

    fn try_lock(&self, path: &Path) -> io::Result<Option<DiskLock>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        // SAFETY: flock on a descriptor we own.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Ok(None);
            }
            return Err(err);
        }
        Ok(Some(DiskLock::new(Box::new(FlockHolder { _file: file }))))
    }
}
