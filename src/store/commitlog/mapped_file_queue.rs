//! The CommitLog's segmented files: fixed-size files named by the 20-digit CommitLog offset at
//! which they start (RocketMQ `MappedFileQueue`). Positions inside a file are `file_pos`;
//! positions in the log are `commitlog_offset`.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::store::disk::{Disk, SegmentFile, WriteMode};
use crate::store::error::StoreError;

/// File name of a mapped file starting at `commitlog_offset`.
pub fn file_name_of(commitlog_offset: u64) -> String {
    format!("{commitlog_offset:020}")
}

/// Start offset encoded in a file name; None for anything that is not 20 digits.
pub fn parse_file_name(name: &str) -> Option<u64> {
    if name.len() != 20 || !name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    name.parse().ok()
}

/// One CommitLog file.
pub struct MappedFile {
    pub start_offset: u64,
    pub path: PathBuf,
    pub file: Arc<dyn SegmentFile>,
    pub size: u64,
    /// Bytes written (entries and blank filler), relative to the file start.
    wrote_pos: AtomicU64,
    /// Bytes durable, relative to the file start.
    flushed_pos: AtomicU64,
}

impl MappedFile {
    pub fn wrote_pos(&self) -> u64 {
        self.wrote_pos.load(Ordering::Acquire)
    }
    pub fn set_wrote_pos(&self, pos: u64) {
        assert!(
            pos <= self.size,
            "wrote pos {pos} beyond file size {}",
            self.size
        );
        self.wrote_pos.store(pos, Ordering::Release);
    }
    pub fn flushed_pos(&self) -> u64 {
        self.flushed_pos.load(Ordering::Acquire)
    }
    pub fn set_flushed_pos(&self, pos: u64) {
        assert!(
            pos <= self.size,
            "flushed pos {pos} beyond file size {}",
            self.size
        );
        self.flushed_pos.store(pos, Ordering::Release);
    }
    pub fn end_offset(&self) -> u64 {
        self.start_offset + self.size
    }
    pub fn is_full(&self) -> bool {
        self.wrote_pos() >= self.size
    }
    pub fn read_at(&self, file_pos: u64, buf: &mut [u8]) -> Result<(), StoreError> {
        self.file
            .read_at(file_pos, buf)
            .map_err(|source| StoreError::Io {
                op: "read",
                path: self.path.clone(),
                source,
            })
    }
}

/// The ordered list of CommitLog files.
pub struct MappedFileQueue {
    disk: Arc<dyn Disk>,
    dir: PathBuf,
    file_size: u64,
    files: RwLock<Vec<Arc<MappedFile>>>,
    /// Write mode of every file, loaded or created later (see [`Self::with_write_mode`]).
    write_mode: WriteMode,
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// True for a file shorter than the fixed size that holds only zeros (an interrupted
/// creation), which is safe to delete; anything else of the wrong size is corruption.
fn is_abandoned_creation(file: &dyn SegmentFile, file_size: u64) -> Result<bool, StoreError> {
    let len = file.len();
    if len >= file_size {
        return Ok(false);
    }
    let mut pos = 0;
    let mut buf = vec![0u8; 64 * 1024];
    while pos < len {
        let n = (len - pos).min(buf.len() as u64) as usize;
        if file.read_at(pos, &mut buf[..n]).is_err() {
            return Ok(false);
        }
        if buf[..n].iter().any(|b| *b != 0) {
            return Ok(false);
        }
        pos += n as u64;
    }
    Ok(true)
}

impl MappedFileQueue {
    /// Loads every file under `dir`. Each must be named by its start offset, be exactly
    /// `file_size` bytes, and continue where the previous one ends; anything else is a
    /// `Corrupt` error naming the file (a foreign file in the CommitLog directory is never
    /// silently ignored or deleted). Write positions are set to the file size; recovery
    /// corrects them.
    pub fn load(disk: Arc<dyn Disk>, dir: &Path, file_size: u64) -> Result<Self, StoreError> {
        assert!(file_size > 0, "mapped file size must be positive");
        disk.create_dir_all(dir)
            .map_err(io_err("create dir", dir))?;
        let mut files: Vec<Arc<MappedFile>> = Vec::new();
        for name in disk.list(dir).map_err(io_err("list", dir))? {
            let path = dir.join(&name);
            let Some(start_offset) = parse_file_name(&name) else {
                return Err(StoreError::Corrupt {
                    path,
                    offset: 0,
                    reason: "not a CommitLog file name (20-digit start offset expected)".into(),
                });
            };
            if start_offset % file_size != 0 {
                return Err(StoreError::Corrupt {
                    path,
                    offset: 0,
                    reason: format!(
                        "start offset {start_offset} is not a multiple of the file size {file_size}"
                    ),
                });
            }
            if let Some(prev) = files.last() {
                if prev.end_offset() != start_offset {
                    return Err(StoreError::Corrupt {
                        path,
                        offset: 0,
                        reason: format!(
                            "gap in the CommitLog: previous file ends at {}",
                            prev.end_offset()
                        ),
                    });
                }
            }
            let file = disk.open(&path).map_err(io_err("open", &path))?;
            if file.len() != file_size && is_abandoned_creation(&*file, file_size)? {
                // A file system may persist the name of a file whose creation never
                // completed (length and data not synced). It holds nothing: drop it.
                tracing::warn!(
                    path = %path.display(),
                    len = file.len(),
                    "removing an incompletely created, empty CommitLog file"
                );
                if let Some(prev) = files.last() {
                    if prev.end_offset() != start_offset {
                        return Err(StoreError::Corrupt {
                            path,
                            offset: 0,
                            reason: "incomplete file after a gap".into(),
                        });
                    }
                }
                disk.remove_file(&path).map_err(io_err("remove", &path))?;
                disk.sync_dir(dir).map_err(io_err("sync dir", dir))?;
                continue;
            }
            if file.len() != file_size {
                return Err(StoreError::Corrupt {
                    path,
                    offset: file.len(),
                    reason: format!(
                        "file length {} differs from mappedFileSizeCommitLog {file_size}",
                        file.len()
                    ),
                });
            }
            files.push(Arc::new(MappedFile {
                start_offset,
                path,
                file,
                size: file_size,
                wrote_pos: AtomicU64::new(file_size),
                flushed_pos: AtomicU64::new(file_size),
            }));
        }
        Ok(MappedFileQueue {
            disk,
            dir: dir.to_path_buf(),
            file_size,
            write_mode: WriteMode::default(),
            files: RwLock::new(files),
        })
    }

    pub fn file_size(&self) -> u64 {
        self.file_size
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn read_files(&self) -> RwLockReadGuard<'_, Vec<Arc<MappedFile>>> {
        self.files.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_files(&self) -> RwLockWriteGuard<'_, Vec<Arc<MappedFile>>> {
        self.files.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn files(&self) -> Vec<Arc<MappedFile>> {
        self.read_files().clone()
    }

    pub fn last(&self) -> Option<Arc<MappedFile>> {
        self.read_files().last().cloned()
    }

    /// Runs `f` on the last file under the list's read lock, without cloning its `Arc` (the
    /// append path: a clone and a drop are two more atomics per put). Blocks file creation and
    /// removal while `f` runs, so keep `f` short.
    pub fn with_last<R>(&self, f: impl FnOnce(Option<&MappedFile>) -> R) -> R {
        f(self.read_files().last().map(|file| &**file))
    }

    pub fn first(&self) -> Option<Arc<MappedFile>> {
        self.read_files().first().cloned()
    }

    pub fn count(&self) -> usize {
        self.read_files().len()
    }

    /// The file holding `commitlog_offset`.
    pub fn find(&self, commitlog_offset: u64) -> Option<Arc<MappedFile>> {
        let files = self.read_files();
        let first = files.first()?;
        if commitlog_offset < first.start_offset {
            return None;
        }
        let index = ((commitlog_offset - first.start_offset) / self.file_size) as usize;
        let file = files.get(index)?;
        debug_assert!(file.start_offset <= commitlog_offset);
        debug_assert!(commitlog_offset < file.end_offset());
        Some(file.clone())
    }

    /// Sets the write mode of the loaded files and of every file created from now on.
    pub fn with_write_mode(mut self, write_mode: WriteMode) -> Self {
        self.write_mode = write_mode;
        for file in self.files() {
            file.file.set_write_mode(write_mode);
        }
        self
    }

    /// Creates the file starting at `start_offset` (it must follow the last file) and makes its
    /// directory entry durable, so a synced append into it survives power loss.
    pub fn create_next(&self, start_offset: u64) -> Result<Arc<MappedFile>, StoreError> {
        assert_eq!(start_offset % self.file_size, 0, "unaligned file start");
        if let Some(last) = self.last() {
            assert_eq!(last.end_offset(), start_offset, "files must be contiguous");
        }
        let path = self.dir.join(file_name_of(start_offset));
        let file = self
            .disk
            .create(&path, self.file_size)
            .map_err(io_err("create", &path))?;
        file.set_write_mode(self.write_mode);
        // Length first, then the directory entry: a power loss must never leave a named
        // CommitLog file shorter than its fixed size.
        if let Err(e) = file.sync_all() {
            let _ = self.disk.remove_file(&path);
            return Err(io_err("fsync", &path)(e));
        }
        if let Err(e) = self.disk.sync_dir(&self.dir) {
            let _ = self.disk.remove_file(&path);
            return Err(io_err("sync dir", &self.dir)(e));
        }
        let mapped = Arc::new(MappedFile {
            start_offset,
            path,
            file,
            size: self.file_size,
            wrote_pos: AtomicU64::new(0),
            flushed_pos: AtomicU64::new(0),
        });
        self.write_files().push(mapped.clone());
        Ok(mapped)
    }

    /// Removes files whose start is at or beyond `commitlog_offset` (recovery truncation).
    pub fn remove_from(&self, commitlog_offset: u64) -> Result<usize, StoreError> {
        let victims: Vec<Arc<MappedFile>> = {
            let mut files = self.write_files();
            let keep = files
                .iter()
                .take_while(|f| f.start_offset < commitlog_offset)
                .count();
            files.split_off(keep)
        };
        for f in &victims {
            tracing::warn!(path = %f.path.display(), "deleting CommitLog file beyond the valid end");
            self.disk
                .remove_file(&f.path)
                .map_err(io_err("remove", &f.path))?;
        }
        if !victims.is_empty() {
            self.disk
                .sync_dir(&self.dir)
                .map_err(io_err("sync dir", &self.dir))?;
        }
        Ok(victims.len())
    }

    /// Removes the first file (retention); never the last one.
    pub fn remove_first(&self) -> Result<Option<Arc<MappedFile>>, StoreError> {
        let victim = {
            let mut files = self.write_files();
            if files.len() <= 1 {
                return Ok(None);
            }
            files.remove(0)
        };
        self.disk
            .remove_file(&victim.path)
            .map_err(io_err("remove", &victim.path))?;
        self.disk
            .sync_dir(&self.dir)
            .map_err(io_err("sync dir", &self.dir))?;
        Ok(Some(victim))
    }

    /// CommitLog offset of the first byte still stored (0 if empty).
    pub fn min_offset(&self) -> u64 {
        self.first().map(|f| f.start_offset).unwrap_or(0)
    }

    /// One past the last written byte.
    pub fn max_offset(&self) -> u64 {
        self.last()
            .map(|f| f.start_offset + f.wrote_pos())
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::disk::sim::SimDisk;

    #[test]
    fn names_round_trip() {
        assert_eq!(file_name_of(1_073_741_824), "00000000001073741824");
        assert_eq!(parse_file_name("00000000001073741824"), Some(1_073_741_824));
        assert_eq!(parse_file_name("0000000000107374182"), None);
        assert_eq!(parse_file_name("0000000000107374182x"), None);
    }

    #[test]
    fn load_rejects_foreign_and_wrong_size_files() {
        let disk = SimDisk::new();
        let dir = Path::new("/s/commitlog");
        disk.create_dir_all(dir).expect("mkdir");
        disk.create(&dir.join("00000000000000000000"), 1024)
            .expect("create");
        disk.create(&dir.join("00000000000000001024"), 1000)
            .expect("create")
            .write_at(10, b"data")
            .expect("write");
        let err = MappedFileQueue::load(Arc::new(disk.clone()), dir, 1024)
            .err()
            .expect("wrong size must fail");
        let text = err.to_string();
        assert!(text.contains("00000000000000001024"), "{text}");
        assert!(text.contains("differs"), "{text}");

        disk.remove_file(&dir.join("00000000000000001024"))
            .expect("rm");
        disk.create(&dir.join("notes.txt"), 3).expect("create");
        let err = MappedFileQueue::load(Arc::new(disk.clone()), dir, 1024)
            .err()
            .expect("foreign file must fail");
        assert!(err.to_string().contains("notes.txt"));

        disk.remove_file(&dir.join("notes.txt")).expect("rm");
        disk.create(&dir.join("00000000000000004096"), 1024)
            .expect("create");
        let err = MappedFileQueue::load(Arc::new(disk.clone()), dir, 1024)
            .err()
            .expect("gap must fail");
        assert!(err.to_string().contains("gap"));
    }

    #[test]
    fn empty_short_file_from_an_interrupted_creation_is_dropped() {
        let disk = SimDisk::new();
        let dir = Path::new("/s/commitlog");
        disk.create_dir_all(dir).expect("mkdir");
        disk.create(&dir.join("00000000000000000000"), 1024)
            .expect("create");
        disk.create(&dir.join("00000000000000001024"), 0)
            .expect("create");
        let q = MappedFileQueue::load(Arc::new(disk.clone()), dir, 1024).expect("load");
        assert_eq!(q.count(), 1);
        assert!(!disk.exists(&dir.join("00000000000000001024")));
    }

    #[test]
    fn find_and_create_next() {
        let disk = Arc::new(SimDisk::new());
        let dir = Path::new("/s/commitlog");
        let q = MappedFileQueue::load(disk, dir, 1024).expect("load");
        assert!(q.find(0).is_none());
        q.create_next(0).expect("create");
        q.create_next(1024).expect("create");
        assert_eq!(q.find(1023).expect("file").start_offset, 0);
        assert_eq!(q.find(1024).expect("file").start_offset, 1024);
        assert!(q.find(2048).is_none());
        assert_eq!(q.remove_from(1024).expect("remove"), 1);
        assert_eq!(q.count(), 1);
        assert!(
            q.remove_first().expect("remove").is_none(),
            "never the last file"
        );
    }
}
