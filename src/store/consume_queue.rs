//! ConsumeQueue: per topic/queue files of 20-byte units `commitlog_offset:i64 | size:i32 |
//! tags_code:i64` (big-endian), 300,000 units per file by default, named by the 20-digit
//! starting byte offset, under `<consumequeue dir>/<topic>/<queueId>/`. Derived from the
//! CommitLog by dispatch; truncatable and rebuildable. OWNER: store-index helper.
//!
//! Contract used by the store core (store-core helper calls these on [`ConsumeQueueStore`]; every
//! method is synchronous and may touch the disk, so async callers wrap the heavy ones — `open`,
//! `flush`, `truncate_dirty`, `delete_expired_files` — in `rt::blocking`):
//! - `ConsumeQueueStore::open(disk, dir, file_size_bytes)` loads and recovers all queues
//!   (scan from the 3rd-to-last file, truncate after the last valid unit).
//! - `put_unit(topic, queue_id, queue_offset, commitlog_offset, size, tags_code)` writes the unit
//!   at `queue_offset` and returns the new max offset. `queue_offset` must be the queue's next
//!   offset; an already-present identical unit is accepted and ignored (re-dispatch after
//!   abnormal recovery); an empty queue accepts any first offset and pads its first file with
//!   blank units `(0, i32::MAX, 0)` as RocketMQ does.
//! - `max_commitlog_offset_referenced()` (one past the end of the furthest entry any queue
//!   references) for recovery; `truncate_dirty(commitlog_max_offset)` drops units whose entry
//!   ends beyond `commitlog_max_offset`.
//! - `max_offset`, `min_offset`, `read_units(topic, queue_id, from, max_count)`, `read_unit`,
//!   `flush(least_pages)` (+ [`FlushPolicy`] for the thorough interval), `delete_topic`,
//!   `correct_min_offset(commitlog_min)`, `delete_expired_files(commitlog_min)`,
//!   `queue_offset_table()` (topic-queue → next offset, to seed the CommitLog's offset table),
//!   `offset_by_time(topic, queue_id, timestamp_ms, boundary, store_time_of)`.
//!
//! Invariants kept per queue (checked where written and again where read back): every real unit
//! has `size > 0` and `commitlog_offset >= 0`; within a queue each unit's entry starts at or after
//! the end of the previous unit's entry; blank pad units only precede the first real unit.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use thiserror::Error;

use super::disk::{Disk, SegmentFile};
use super::error::StoreError;
use super::BoundaryType;

/// Bytes of one ConsumeQueue unit.
pub const CQ_STORE_UNIT_SIZE: u64 = 20;
/// RocketMQ's default ConsumeQueue file size (300,000 units).
pub const DEFAULT_MAPPED_FILE_SIZE_CONSUME_QUEUE: u64 = 300_000 * CQ_STORE_UNIT_SIZE;
/// Page size used to count dirty pages for `flush(least_pages)` (RocketMQ `OS_PAGE_SIZE`).
pub const OS_PAGE_SIZE: u64 = 4096;
/// Size field of a blank pad unit.
pub const BLANK_UNIT_SIZE: i32 = i32::MAX;

const _: () = assert!(CQ_STORE_UNIT_SIZE == 8 + 4 + 8);
const _: () = assert!(DEFAULT_MAPPED_FILE_SIZE_CONSUME_QUEUE == 6_000_000);
const _: () = assert!(DEFAULT_MAPPED_FILE_SIZE_CONSUME_QUEUE.is_multiple_of(CQ_STORE_UNIT_SIZE));

/// Chunk used when scanning files (recovery, zero checks).
const SCAN_CHUNK_BYTES: u64 = 64 * 1024 / CQ_STORE_UNIT_SIZE * CQ_STORE_UNIT_SIZE;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ConsumeQueueError {
    #[error("consume queue {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("corrupt consume queue file {path} at byte {offset}: {reason}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("consume queue {topic}/{queue_id}: {reason}")]
    InvalidUnit {
        topic: String,
        queue_id: i32,
        queue_offset: i64,
        reason: String,
    },
    #[error(
        "consume queue {topic}/{queue_id}: unit at queue offset {queue_offset} but next offset \
         is {expected_queue_offset}"
    )]
    Gap {
        topic: String,
        queue_id: i32,
        queue_offset: i64,
        expected_queue_offset: i64,
    },
    #[error(
        "consume queue {topic}/{queue_id}: queue offset {queue_offset} already holds commitlog \
         offset {existing_commitlog_offset}, refusing {commitlog_offset}"
    )]
    Conflict {
        topic: String,
        queue_id: i32,
        queue_offset: i64,
        existing_commitlog_offset: i64,
        commitlog_offset: i64,
    },
    #[error("invalid consume queue topic name {0:?}")]
    InvalidTopic(String),
    #[error("consume queue file size {0} must be a positive multiple of 20")]
    BadFileSize(u64),
}

impl From<ConsumeQueueError> for StoreError {
    fn from(e: ConsumeQueueError) -> StoreError {
        match e {
            ConsumeQueueError::Io { op, path, source } => StoreError::Io { op, path, source },
            ConsumeQueueError::Corrupt {
                path,
                offset,
                reason,
            } => StoreError::Corrupt {
                path,
                offset,
                reason,
            },
            other => StoreError::Poisoned(other.to_string()),
        }
    }
}

type Result<T> = std::result::Result<T, ConsumeQueueError>;

fn io_err<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> ConsumeQueueError + 'a {
    move |source| ConsumeQueueError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// One ConsumeQueue unit with its logical position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CqUnit {
    /// Logical position in the queue (byte position / 20). Not stored in the unit itself.
    pub queue_offset: i64,
    pub commitlog_offset: i64,
    pub size: i32,
    pub tags_code: i64,
}

impl CqUnit {
    /// The 20 stored bytes (big-endian, RocketMQ layout).
    pub fn encode(&self) -> [u8; CQ_STORE_UNIT_SIZE as usize] {
        encode_unit(self.commitlog_offset, self.size, self.tags_code)
    }

    /// One past the end of the referenced CommitLog entry.
    pub fn commitlog_end_offset(&self) -> i64 {
        self.commitlog_offset + self.size as i64
    }

    pub fn is_blank(&self) -> bool {
        is_blank(self.commitlog_offset, self.size, self.tags_code)
    }
}

/// Encodes `commitlog_offset:i64 | size:i32 | tags_code:i64`, big-endian.
pub fn encode_unit(commitlog_offset: i64, size: i32, tags_code: i64) -> [u8; 20] {
    let mut buf = [0u8; 20];
    buf[0..8].copy_from_slice(&commitlog_offset.to_be_bytes());
    buf[8..12].copy_from_slice(&size.to_be_bytes());
    buf[12..20].copy_from_slice(&tags_code.to_be_bytes());
    buf
}

/// Decodes one unit; `bytes` must be exactly 20 bytes.
pub fn decode_unit(bytes: &[u8]) -> (i64, i32, i64) {
    assert_eq!(bytes.len(), CQ_STORE_UNIT_SIZE as usize);
    let mut o = [0u8; 8];
    o.copy_from_slice(&bytes[0..8]);
    let mut s = [0u8; 4];
    s.copy_from_slice(&bytes[8..12]);
    let mut t = [0u8; 8];
    t.copy_from_slice(&bytes[12..20]);
    (
        i64::from_be_bytes(o),
        i32::from_be_bytes(s),
        i64::from_be_bytes(t),
    )
}

fn is_blank(commitlog_offset: i64, size: i32, tags_code: i64) -> bool {
    commitlog_offset == 0 && size == BLANK_UNIT_SIZE && tags_code == 0
}

/// File name of a ConsumeQueue (or any mapped) file: 20-digit zero-padded start offset.
pub fn file_name_of(start_byte_offset: u64) -> String {
    format!("{start_byte_offset:020}")
}

fn parse_file_name(name: &str) -> Option<u64> {
    if name.len() != 20 || !name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    name.parse().ok()
}

fn check_topic_name(topic: &str) -> Result<()> {
    // The topic becomes a directory name: refuse anything that could escape the queue dir.
    if topic.is_empty()
        || topic == "."
        || topic == ".."
        || topic.contains('/')
        || topic.contains('\\')
        || topic.contains('\0')
    {
        return Err(ConsumeQueueError::InvalidTopic(topic.to_string()));
    }
    Ok(())
}

/// Decides `least_pages` for each periodic ConsumeQueue flush: the configured minimum normally,
/// 0 (flush everything dirty) once every `thorough_interval_ms` (RocketMQ
/// `flushConsumeQueueLeastPages` / `flushConsumeQueueThoroughInterval`). The caller passes
/// `rt::now_ms()`; the policy keeps no clock of its own.
#[derive(Debug, Clone)]
pub struct FlushPolicy {
    least_pages: u32,
    thorough_interval_ms: u64,
    last_thorough_ms: i64,
}

impl FlushPolicy {
    pub fn new(least_pages: u32, thorough_interval_ms: u64, now_ms: i64) -> FlushPolicy {
        FlushPolicy {
            least_pages,
            thorough_interval_ms,
            last_thorough_ms: now_ms,
        }
    }

    /// The `least_pages` to pass to `flush` for a flush happening at `now_ms`.
    pub fn least_pages_at(&mut self, now_ms: i64) -> u32 {
        if now_ms
            >= self
                .last_thorough_ms
                .saturating_add(self.thorough_interval_ms as i64)
        {
            self.last_thorough_ms = now_ms;
            0
        } else {
            self.least_pages
        }
    }
}

struct CqFile {
    start_byte_offset: u64,
    path: PathBuf,
    file: Arc<dyn SegmentFile>,
}

struct QueueState {
    /// Contiguous files, oldest first.
    files: Vec<CqFile>,
    /// Byte position one past the last unit (= max queue offset × 20).
    write_pos: u64,
    /// Byte position up to which units are durable.
    flushed_pos: u64,
    /// First queue offset whose unit is real and whose entry is still in the CommitLog.
    min_queue_offset: i64,
    /// The last real unit (for the ordering check and the max referenced CommitLog offset).
    last_unit: Option<CqUnit>,
}

/// One ConsumeQueue (`topic`, `queue_id`).
pub struct ConsumeQueue {
    topic: String,
    queue_id: i32,
    dir: PathBuf,
    disk: Arc<dyn Disk>,
    file_size: u64,
    state: RwLock<QueueState>,
}

impl ConsumeQueue {
    fn read_state(&self) -> RwLockReadGuard<'_, QueueState> {
        // A poisoned lock means a panic mid-update in another thread; the state itself is only
        // mutated after disk writes succeed, so reading it is still sound.
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_state(&self) -> RwLockWriteGuard<'_, QueueState> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    pub fn queue_id(&self) -> i32 {
        self.queue_id
    }

    /// Next queue offset (number of units including blank pads).
    pub fn max_offset(&self) -> i64 {
        (self.read_state().write_pos / CQ_STORE_UNIT_SIZE) as i64
    }

    pub fn min_offset(&self) -> i64 {
        self.read_state().min_queue_offset
    }

    /// One past the end of the furthest CommitLog entry referenced; 0 if none.
    pub fn max_commitlog_offset_referenced(&self) -> i64 {
        self.read_state()
            .last_unit
            .map(|u| u.commitlog_end_offset())
            .unwrap_or(0)
    }

    fn new_empty(
        disk: Arc<dyn Disk>,
        dir: PathBuf,
        topic: &str,
        queue_id: i32,
        file_size: u64,
    ) -> ConsumeQueue {
        ConsumeQueue {
            topic: topic.to_string(),
            queue_id,
            dir,
            disk,
            file_size,
            state: RwLock::new(QueueState {
                files: Vec::new(),
                write_pos: 0,
                flushed_pos: 0,
                min_queue_offset: 0,
                last_unit: None,
            }),
        }
    }

    /// Loads the queue's files and recovers: scan from the 3rd-to-last file, stop at the first
    /// invalid unit, truncate (zero the rest of that file, delete later files).
    fn load(
        disk: Arc<dyn Disk>,
        dir: PathBuf,
        topic: &str,
        queue_id: i32,
        file_size: u64,
    ) -> Result<ConsumeQueue> {
        let queue = ConsumeQueue::new_empty(disk.clone(), dir.clone(), topic, queue_id, file_size);
        let names = disk.list(&dir).map_err(io_err("list", &dir))?;
        let mut files = Vec::new();
        for name in names {
            let path = dir.join(&name);
            let Some(start) = parse_file_name(&name) else {
                tracing::warn!(path = %path.display(), "ignoring non consume queue file");
                continue;
            };
            if start % file_size != 0 {
                return Err(ConsumeQueueError::Corrupt {
                    path,
                    offset: 0,
                    reason: format!(
                        "start offset {start} is not a multiple of file size {file_size}"
                    ),
                });
            }
            let file = disk.open(&path).map_err(io_err("open", &path))?;
            files.push(CqFile {
                start_byte_offset: start,
                path,
                file,
            });
        }
        files.sort_by_key(|f| f.start_byte_offset);
        let file_count = files.len();
        for (i, f) in files.iter().enumerate() {
            if i > 0 && f.start_byte_offset != files[i - 1].start_byte_offset + file_size {
                return Err(ConsumeQueueError::Corrupt {
                    path: f.path.clone(),
                    offset: 0,
                    reason: format!(
                        "gap: previous file starts at {}, file size {file_size}",
                        files[i - 1].start_byte_offset
                    ),
                });
            }
            let len = f.file.len();
            let is_last = i + 1 == file_count;
            if len > file_size || (len < file_size && !is_last) {
                return Err(ConsumeQueueError::Corrupt {
                    path: f.path.clone(),
                    offset: len,
                    reason: format!("length {len} does not match configured size {file_size}"),
                });
            }
            if len < file_size {
                // A pre-allocation torn by a crash: the missing tail reads as zero (no units).
                tracing::warn!(path = %f.path.display(), len, "extending short consume queue file");
                f.file
                    .set_len(file_size)
                    .map_err(io_err("extend", &f.path))?;
            }
        }
        if files.is_empty() {
            return Ok(queue);
        }

        // Scan from the 3rd-to-last file, as RocketMQ does: older files were flushed whole.
        let scan_from = file_count.saturating_sub(3);
        let mut write_pos = files[scan_from].start_byte_offset;
        let mut prev: Option<CqUnit> = None;
        let mut buf = vec![0u8; SCAN_CHUNK_BYTES as usize];
        'files: for f in &files[scan_from..] {
            let mut pos_in_file = 0;
            while pos_in_file < file_size {
                let n = SCAN_CHUNK_BYTES.min(file_size - pos_in_file);
                let chunk = &mut buf[..n as usize];
                f.file
                    .read_at(pos_in_file, chunk)
                    .map_err(io_err("read", &f.path))?;
                for raw in chunk.chunks_exact(CQ_STORE_UNIT_SIZE as usize) {
                    let (commitlog_offset, size, tags_code) = decode_unit(raw);
                    let unit = CqUnit {
                        queue_offset: ((f.start_byte_offset + pos_in_file) / CQ_STORE_UNIT_SIZE)
                            as i64,
                        commitlog_offset,
                        size,
                        tags_code,
                    };
                    if !unit_follows(prev.as_ref(), &unit) {
                        break 'files;
                    }
                    if !unit.is_blank() {
                        prev = Some(unit);
                    }
                    pos_in_file += CQ_STORE_UNIT_SIZE;
                    write_pos = f.start_byte_offset + pos_in_file;
                }
            }
        }
        {
            let mut st = queue.write_state();
            st.files = files;
            st.write_pos = write_pos;
            st.flushed_pos = write_pos;
        }
        queue.truncate_files_after(write_pos)?;
        {
            let mut st = queue.write_state();
            st.last_unit = queue.last_real_unit(&st)?;
            let first = st.files.first().map(|f| f.start_byte_offset).unwrap_or(0);
            st.min_queue_offset = queue.first_real_unit_offset(&st, first)?;
            debug_assert!(st.min_queue_offset <= (st.write_pos / CQ_STORE_UNIT_SIZE) as i64);
        }
        Ok(queue)
    }

    /// Makes `write_pos` the end of the queue on disk: zeroes whatever follows it in its file
    /// (stale units must not reappear at the next recovery once new units are written in
    /// front of them) and deletes files starting after it. Durable before returning.
    fn truncate_files_after(&self, write_pos: u64) -> Result<()> {
        let mut st = self.write_state();
        let mut removed_any = false;
        while let Some(last) = st.files.last() {
            if last.start_byte_offset > write_pos {
                let path = last.path.clone();
                self.disk
                    .remove_file(&path)
                    .map_err(io_err("remove", &path))?;
                tracing::info!(path = %path.display(), "removed consume queue file beyond truncation point");
                st.files.pop();
                removed_any = true;
            } else {
                break;
            }
        }
        if removed_any {
            self.disk
                .sync_dir(&self.dir)
                .map_err(io_err("sync dir", &self.dir))?;
        }
        if let Some(last) = st.files.last() {
            let from_in_file = write_pos - last.start_byte_offset;
            if from_in_file < self.file_size {
                zero_if_dirty(last, from_in_file, self.file_size)?;
            }
        }
        st.write_pos = write_pos;
        st.flushed_pos = st.flushed_pos.min(write_pos);
        Ok(())
    }

    /// The last real (non-blank) unit before `write_pos`, if any.
    fn last_real_unit(&self, st: &QueueState) -> Result<Option<CqUnit>> {
        if st.write_pos < CQ_STORE_UNIT_SIZE {
            return Ok(None);
        }
        let first = st.files.first().map(|f| f.start_byte_offset).unwrap_or(0);
        if st.write_pos <= first {
            return Ok(None);
        }
        let unit = self.read_unit_locked(st, st.write_pos / CQ_STORE_UNIT_SIZE - 1)?;
        Ok(if unit.is_blank() { None } else { Some(unit) })
    }

    /// Queue offset of the first non-blank unit at or after byte `from` (blank pads only sit at
    /// the head of the first file); `write_pos / 20` when there is none.
    fn first_real_unit_offset(&self, st: &QueueState, from: u64) -> Result<i64> {
        let end = st.write_pos / CQ_STORE_UNIT_SIZE;
        let mut q = from / CQ_STORE_UNIT_SIZE;
        while q < end {
            if !self.read_unit_locked(st, q)?.is_blank() {
                return Ok(q as i64);
            }
            q += 1;
        }
        Ok(end as i64)
    }

    fn file_for(&self, st: &QueueState, byte_pos: u64) -> Option<usize> {
        let first = st.files.first()?.start_byte_offset;
        if byte_pos < first {
            return None;
        }
        let idx = ((byte_pos - first) / self.file_size) as usize;
        if idx < st.files.len() {
            debug_assert!(st.files[idx].start_byte_offset <= byte_pos);
            Some(idx)
        } else {
            None
        }
    }

    /// Reads the unit at `queue_offset` (must lie in an existing file) without validation.
    fn read_unit_locked(&self, st: &QueueState, queue_offset: u64) -> Result<CqUnit> {
        let byte_pos = queue_offset * CQ_STORE_UNIT_SIZE;
        let Some(idx) = self.file_for(st, byte_pos) else {
            return Err(ConsumeQueueError::Corrupt {
                path: self.dir.clone(),
                offset: byte_pos,
                reason: format!("no file holds queue offset {queue_offset}"),
            });
        };
        let f = &st.files[idx];
        let mut raw = [0u8; CQ_STORE_UNIT_SIZE as usize];
        f.file
            .read_at(byte_pos - f.start_byte_offset, &mut raw)
            .map_err(io_err("read", &f.path))?;
        let (commitlog_offset, size, tags_code) = decode_unit(&raw);
        Ok(CqUnit {
            queue_offset: queue_offset as i64,
            commitlog_offset,
            size,
            tags_code,
        })
    }

    /// After an abnormal exit: units of entries at or beyond `commitlog_offset` may exist only
    /// in the page cache (or in pages a failed fsync marked clean). Writes them again and
    /// marks them unflushed, so the next flush really makes them durable.
    fn redirty_from(&self, commitlog_offset: i64) -> Result<()> {
        let mut st = self.write_state();
        let Some(first) = st.files.first().map(|f| f.start_byte_offset) else {
            return Ok(());
        };
        let lo = first / CQ_STORE_UNIT_SIZE;
        let hi = st.write_pos / CQ_STORE_UNIT_SIZE;
        let from = if commitlog_offset <= 0 {
            lo
        } else {
            partition_point(lo, hi, |q| {
                let u = self.read_unit_locked(&st, q)?;
                Ok(u.is_blank() || u.commitlog_offset < commitlog_offset)
            })?
        };
        let from_pos = from * CQ_STORE_UNIT_SIZE;
        let mut buf = Vec::new();
        for f in &st.files {
            let file_end = f.start_byte_offset + self.file_size;
            if file_end <= from_pos || f.start_byte_offset >= st.write_pos {
                continue;
            }
            let a = from_pos.max(f.start_byte_offset) - f.start_byte_offset;
            let b = st.write_pos.min(file_end) - f.start_byte_offset;
            buf.resize((b - a) as usize, 0);
            f.file
                .read_at(a, &mut buf)
                .map_err(io_err("read", &f.path))?;
            f.file
                .write_at(a, &buf)
                .map_err(io_err("rewrite", &f.path))?;
        }
        st.flushed_pos = st.flushed_pos.min(from_pos);
        Ok(())
    }

    /// CommitLog offset of the first real unit not yet durable; None when every unit is.
    /// Units are in CommitLog order, so every entry below it has its unit durable here.
    pub fn first_unflushed_commitlog_offset(&self) -> Result<Option<i64>> {
        let st = self.read_state();
        let mut queue_offset = st.flushed_pos / CQ_STORE_UNIT_SIZE;
        let end = st.write_pos / CQ_STORE_UNIT_SIZE;
        while queue_offset < end {
            let unit = self.read_unit_locked(&st, queue_offset)?;
            if !unit.is_blank() {
                return Ok(Some(unit.commitlog_offset));
            }
            // Blank pads at the head of a queue that started mid-file refer to no entry.
            queue_offset += 1;
        }
        Ok(None)
    }

    fn rewrite_tags_code_locked(
        &self,
        st: &mut QueueState,
        unit: CqUnit,
        tags_code: i64,
    ) -> Result<()> {
        let byte_pos = unit.queue_offset as u64 * CQ_STORE_UNIT_SIZE;
        let Some(idx) = self.file_for(st, byte_pos) else {
            return Err(ConsumeQueueError::Corrupt {
                path: self.dir.clone(),
                offset: byte_pos,
                reason: format!("no file holds queue offset {}", unit.queue_offset),
            });
        };
        let f = &st.files[idx];
        let bytes = encode_unit(unit.commitlog_offset, unit.size, tags_code);
        tracing::warn!(
            path = %f.path.display(),
            queue_offset = unit.queue_offset,
            stored_tags_code = unit.tags_code,
            tags_code,
            "repairing a torn ConsumeQueue unit from the CommitLog"
        );
        f.file
            .write_at(byte_pos - f.start_byte_offset, &bytes)
            .map_err(io_err("write", &f.path))?;
        // Make it durable now: everything before the flushed position is trusted later.
        f.file
            .sync_range(byte_pos - f.start_byte_offset, CQ_STORE_UNIT_SIZE)
            .map_err(io_err("sync", &f.path))?;
        if let Some(last) = st.last_unit.as_mut() {
            if last.queue_offset == unit.queue_offset {
                last.tags_code = tags_code;
            }
        }
        Ok(())
    }

    fn create_file(&self, start_byte_offset: u64) -> Result<CqFile> {
        self.disk
            .create_dir_all(&self.dir)
            .map_err(io_err("create dir", &self.dir))?;
        let path = self.dir.join(file_name_of(start_byte_offset));
        let file = self
            .disk
            .create(&path, self.file_size)
            .map_err(io_err("create", &path))?;
        // Make length and entry durable now, so a crash can never leave a later file without
        // an earlier full-size one (recovery refuses gaps and short middle files).
        file.sync_all().map_err(io_err("sync", &path))?;
        self.disk
            .sync_dir(&self.dir)
            .map_err(io_err("sync dir", &self.dir))?;
        Ok(CqFile {
            start_byte_offset,
            path,
            file,
        })
    }

    /// See [`ConsumeQueueStore::put_unit`].
    pub fn put_unit(
        &self,
        queue_offset: i64,
        commitlog_offset: i64,
        size: i32,
        tags_code: i64,
    ) -> Result<i64> {
        let invalid = |reason: String| ConsumeQueueError::InvalidUnit {
            topic: self.topic.clone(),
            queue_id: self.queue_id,
            queue_offset,
            reason,
        };
        if queue_offset < 0 {
            return Err(invalid("negative queue offset".into()));
        }
        if commitlog_offset < 0 {
            return Err(invalid(format!(
                "negative commitlog offset {commitlog_offset}"
            )));
        }
        if size <= 0 || size == BLANK_UNIT_SIZE {
            return Err(invalid(format!("bad entry size {size}")));
        }
        let mut st = self.write_state();
        let max_offset = (st.write_pos / CQ_STORE_UNIT_SIZE) as i64;
        if queue_offset < max_offset {
            // Re-dispatch of a unit we already hold (abnormal recovery replays the log).
            let first = st.files.first().map(|f| f.start_byte_offset).unwrap_or(0);
            let existing = if (queue_offset as u64) * CQ_STORE_UNIT_SIZE >= first {
                Some(self.read_unit_locked(&st, queue_offset as u64)?)
            } else {
                None
            };
            return match existing {
                Some(u) if u.commitlog_offset == commitlog_offset && u.size == size => {
                    if u.tags_code != tags_code {
                        // A torn power loss can cut a unit at a sector boundary, keeping its
                        // offset and size but not its tags code. The CommitLog is the truth:
                        // repair the derived unit in place.
                        self.rewrite_tags_code_locked(&mut st, u, tags_code)?;
                    }
                    Ok(max_offset)
                }
                None if commitlog_offset + size as i64
                    <= st.last_unit.map(|u| u.commitlog_end_offset()).unwrap_or(0) =>
                {
                    Ok(max_offset)
                }
                _ => Err(ConsumeQueueError::Conflict {
                    topic: self.topic.clone(),
                    queue_id: self.queue_id,
                    queue_offset,
                    existing_commitlog_offset: existing.map(|u| u.commitlog_offset).unwrap_or(-1),
                    commitlog_offset,
                }),
            };
        }
        let queue_is_new = st.files.is_empty() && st.write_pos == 0;
        if queue_offset > max_offset && !queue_is_new {
            return Err(ConsumeQueueError::Gap {
                topic: self.topic.clone(),
                queue_id: self.queue_id,
                queue_offset,
                expected_queue_offset: max_offset,
            });
        }
        if let Some(last) = st.last_unit {
            if commitlog_offset < last.commitlog_end_offset() {
                return Err(invalid(format!(
                    "commitlog offset {commitlog_offset} precedes the end {} of the previous \
                     unit (queue offset {})",
                    last.commitlog_end_offset(),
                    last.queue_offset
                )));
            }
        }

        let byte_pos = queue_offset as u64 * CQ_STORE_UNIT_SIZE;
        let file_start = byte_pos - byte_pos % self.file_size;
        let need_file = match st.files.last() {
            None => true,
            Some(f) => f.start_byte_offset + self.file_size <= byte_pos,
        };
        if need_file {
            if let Some(prev) = st.files.last() {
                // Rolling to a new file: make the full previous file durable first, so a
                // durable file always implies whole durable predecessors (recovery scans only
                // the last three files and trusts older ones).
                let prev_end = prev.start_byte_offset + self.file_size;
                assert_eq!(
                    st.write_pos, prev_end,
                    "rolling from a file that is not full"
                );
                if st.flushed_pos < prev_end {
                    let from = st.flushed_pos.max(prev.start_byte_offset) - prev.start_byte_offset;
                    prev.file
                        .sync_range(from, self.file_size - from)
                        .map_err(io_err("sync", &prev.path))?;
                    st.flushed_pos = prev_end;
                }
            }
            let f = self.create_file(file_start)?;
            if queue_is_new && byte_pos > file_start {
                // A queue starting mid-file: pad the head with blank units (RocketMQ
                // fillPreBlank) so positions stay byte position / 20.
                let blank = encode_unit(0, BLANK_UNIT_SIZE, 0);
                let count = ((byte_pos - file_start) / CQ_STORE_UNIT_SIZE) as usize;
                let pad = blank.repeat(count);
                f.file.write_at(0, &pad).map_err(io_err("write", &f.path))?;
            }
            if queue_is_new {
                st.flushed_pos = file_start;
                st.min_queue_offset = queue_offset;
            }
            st.files.push(f);
        }
        let idx = self
            .file_for(&st, byte_pos)
            .expect("file for the next unit was just ensured");
        let f = &st.files[idx];
        let bytes = encode_unit(commitlog_offset, size, tags_code);
        f.file
            .write_at(byte_pos - f.start_byte_offset, &bytes)
            .map_err(io_err("write", &f.path))?;
        st.write_pos = byte_pos + CQ_STORE_UNIT_SIZE;
        st.last_unit = Some(CqUnit {
            queue_offset,
            commitlog_offset,
            size,
            tags_code,
        });
        Ok(queue_offset + 1)
    }

    /// See [`ConsumeQueueStore::read_units`].
    pub fn read_units(&self, from: i64, max_count: usize) -> Result<Vec<CqUnit>> {
        let st = self.read_state();
        let max_offset = (st.write_pos / CQ_STORE_UNIT_SIZE) as i64;
        if from < st.min_queue_offset || from >= max_offset || max_count == 0 {
            return Ok(Vec::new());
        }
        let to = max_offset.min(from.saturating_add(max_count as i64));
        let mut units = Vec::with_capacity((to - from) as usize);
        let mut pos = from as u64 * CQ_STORE_UNIT_SIZE;
        let end = to as u64 * CQ_STORE_UNIT_SIZE;
        let mut buf = Vec::new();
        while pos < end {
            let Some(idx) = self.file_for(&st, pos) else {
                return Err(ConsumeQueueError::Corrupt {
                    path: self.dir.clone(),
                    offset: pos,
                    reason: "no file holds this position".into(),
                });
            };
            let f = &st.files[idx];
            let in_file = pos - f.start_byte_offset;
            let n = (end - pos).min(self.file_size - in_file);
            buf.resize(n as usize, 0);
            f.file
                .read_at(in_file, &mut buf)
                .map_err(io_err("read", &f.path))?;
            for (i, raw) in buf.chunks_exact(CQ_STORE_UNIT_SIZE as usize).enumerate() {
                let (commitlog_offset, size, tags_code) = decode_unit(raw);
                let unit = CqUnit {
                    queue_offset: ((pos / CQ_STORE_UNIT_SIZE) + i as u64) as i64,
                    commitlog_offset,
                    size,
                    tags_code,
                };
                // Pair of the checks in put_unit: what we read back must still be a real,
                // ordered unit, else the file is corrupt.
                if unit.is_blank() || !unit_follows(units.last(), &unit) {
                    return Err(ConsumeQueueError::Corrupt {
                        path: f.path.clone(),
                        offset: in_file + i as u64 * CQ_STORE_UNIT_SIZE,
                        reason: format!("invalid unit {unit:?} after {:?}", units.last()),
                    });
                }
                units.push(unit);
            }
            pos += n;
        }
        assert_eq!(units.len() as i64, to - from);
        Ok(units)
    }

    /// The unit at `queue_offset` if it lies in `[min_offset, max_offset)`.
    pub fn read_unit(&self, queue_offset: i64) -> Result<Option<CqUnit>> {
        Ok(self.read_units(queue_offset, 1)?.into_iter().next())
    }

    /// Flushes dirty units if at least `least_pages` 4 KiB pages are dirty (0: anything dirty),
    /// or a file filled up. Returns whether anything was synced. The sync runs without holding
    /// the queue lock, so dispatch is not blocked by an fsync.
    pub fn flush(&self, least_pages: u32) -> Result<bool> {
        let (targets, write_pos) = {
            let st = self.read_state();
            if st.write_pos <= st.flushed_pos {
                return Ok(false);
            }
            let crossed_file = st.flushed_pos / self.file_size != st.write_pos / self.file_size;
            let dirty_pages = st.write_pos / OS_PAGE_SIZE - st.flushed_pos / OS_PAGE_SIZE;
            if least_pages > 0 && !crossed_file && dirty_pages < least_pages as u64 {
                return Ok(false);
            }
            let mut targets = Vec::new();
            for f in &st.files {
                let file_end = f.start_byte_offset + self.file_size;
                if file_end <= st.flushed_pos || f.start_byte_offset >= st.write_pos {
                    continue;
                }
                let from = st.flushed_pos.max(f.start_byte_offset) - f.start_byte_offset;
                let to = st.write_pos.min(file_end) - f.start_byte_offset;
                targets.push((f.file.clone(), f.path.clone(), from, to - from));
            }
            (targets, st.write_pos)
        };
        for (file, path, from, len) in targets {
            file.sync_range(from, len).map_err(io_err("sync", &path))?;
        }
        let mut st = self.write_state();
        // A concurrent truncation may have moved write_pos back.
        st.flushed_pos = st.flushed_pos.max(write_pos.min(st.write_pos));
        Ok(true)
    }

    /// Drops units whose entry ends beyond `commitlog_max_offset`.
    fn truncate_dirty(&self, commitlog_max_offset: i64) -> Result<()> {
        let new_write_pos = {
            let st = self.read_state();
            let Some(first) = st.files.first().map(|f| f.start_byte_offset) else {
                return Ok(());
            };
            let lo = first / CQ_STORE_UNIT_SIZE;
            let hi = st.write_pos / CQ_STORE_UNIT_SIZE;
            // Units are ordered by commitlog offset, blanks (end 0) first: binary search for
            // the first unit whose entry ends beyond the log.
            let q = partition_point(lo, hi, |q| {
                let u = self.read_unit_locked(&st, q)?;
                Ok(u.is_blank() || u.commitlog_end_offset() <= commitlog_max_offset)
            })?;
            q * CQ_STORE_UNIT_SIZE
        };
        if new_write_pos == self.read_state().write_pos {
            return Ok(());
        }
        tracing::info!(
            topic = %self.topic, queue_id = self.queue_id,
            from = self.max_offset(), to = new_write_pos / CQ_STORE_UNIT_SIZE,
            commitlog_max_offset, "truncating dirty consume queue units"
        );
        self.truncate_files_after(new_write_pos)?;
        let mut st = self.write_state();
        st.last_unit = self.last_real_unit(&st)?;
        let max = (st.write_pos / CQ_STORE_UNIT_SIZE) as i64;
        st.min_queue_offset = st.min_queue_offset.min(max);
        if let Some(u) = st.last_unit {
            assert!(u.commitlog_end_offset() <= commitlog_max_offset);
        }
        Ok(())
    }

    /// Advances the min offset past units whose entry starts below `commitlog_min_offset`.
    fn correct_min_offset(&self, commitlog_min_offset: i64) -> Result<()> {
        let mut st = self.write_state();
        let lo = st.min_queue_offset.max(0) as u64;
        let hi = st.write_pos / CQ_STORE_UNIT_SIZE;
        let first = st.files.first().map(|f| f.start_byte_offset).unwrap_or(0) / CQ_STORE_UNIT_SIZE;
        let lo = lo.max(first);
        let q = partition_point(lo, hi, |q| {
            let u = self.read_unit_locked(&st, q)?;
            Ok(u.is_blank() || u.commitlog_offset < commitlog_min_offset)
        })?;
        st.min_queue_offset = st.min_queue_offset.max(q as i64);
        Ok(())
    }

    /// Deletes files (never the last) whose last unit's entry starts below
    /// `commitlog_min_offset`; returns how many.
    fn delete_expired_files(&self, commitlog_min_offset: i64) -> Result<usize> {
        let mut deleted = 0;
        {
            let mut st = self.write_state();
            while st.files.len() > 1 {
                let f = &st.files[0];
                let last_q = (f.start_byte_offset + self.file_size) / CQ_STORE_UNIT_SIZE - 1;
                let u = self.read_unit_locked(&st, last_q)?;
                if !(u.is_blank() || u.commitlog_offset < commitlog_min_offset) {
                    break;
                }
                let path = f.path.clone();
                self.disk
                    .remove_file(&path)
                    .map_err(io_err("remove", &path))?;
                st.files.remove(0);
                deleted += 1;
            }
            if deleted > 0 {
                self.disk
                    .sync_dir(&self.dir)
                    .map_err(io_err("sync dir", &self.dir))?;
                let first_q = (st.files[0].start_byte_offset / CQ_STORE_UNIT_SIZE) as i64;
                st.min_queue_offset = st.min_queue_offset.max(first_q);
            }
        }
        self.correct_min_offset(commitlog_min_offset)?;
        Ok(deleted)
    }

    /// See [`ConsumeQueueStore::offset_by_time`].
    pub fn offset_by_time(
        &self,
        timestamp_ms: i64,
        boundary: BoundaryType,
        store_time_of: &dyn Fn(i64, i32) -> Option<i64>,
    ) -> Result<i64> {
        let st = self.read_state();
        let lo = st.min_queue_offset.max(0) as u64;
        let hi = st.write_pos / CQ_STORE_UNIT_SIZE;
        if lo >= hi {
            return Ok(st.min_queue_offset);
        }
        // Unreadable entries (already deleted from the log) count as older than anything.
        let time_at = |q: u64| -> Result<i64> {
            let u = self.read_unit_locked(&st, q)?;
            if u.is_blank() {
                return Ok(i64::MIN);
            }
            Ok(store_time_of(u.commitlog_offset, u.size).unwrap_or(i64::MIN))
        };
        match boundary {
            BoundaryType::Lower => {
                // First offset stored at or after the timestamp; max offset when none.
                let q = partition_point(lo, hi, |q| Ok(time_at(q)? < timestamp_ms))?;
                Ok(q as i64)
            }
            BoundaryType::Upper => {
                // Last offset stored at or before the timestamp; min offset when none.
                let q = partition_point(lo, hi, |q| Ok(time_at(q)? <= timestamp_ms))?;
                Ok(if q == lo { lo as i64 } else { q as i64 - 1 })
            }
        }
    }
}

/// Validity of a unit met while scanning or reading: real units need `offset >= 0`,
/// `size > 0` (so a zero unit is invalid), and must start at or after the end of the previous
/// real unit; blank pads may only precede the first real unit.
fn unit_follows(prev: Option<&CqUnit>, unit: &CqUnit) -> bool {
    if unit.is_blank() {
        return prev.is_none();
    }
    if unit.commitlog_offset < 0 || unit.size <= 0 {
        return false;
    }
    match prev {
        Some(p) if !p.is_blank() => unit.commitlog_offset >= p.commitlog_end_offset(),
        _ => true,
    }
}

/// Smallest `q` in `[lo, hi)` for which `pred(q)` is false (pred true on a prefix); `hi` if
/// none.
fn partition_point(
    mut lo: u64,
    mut hi: u64,
    mut pred: impl FnMut(u64) -> Result<bool>,
) -> Result<u64> {
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if pred(mid)? {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    Ok(lo)
}

/// Writes zeros over `[from, to)` of `f` where it is not already zero, and syncs those bytes.
fn zero_if_dirty(f: &CqFile, from: u64, to: u64) -> Result<()> {
    let mut buf = vec![0u8; SCAN_CHUNK_BYTES as usize];
    let mut pos = from;
    while pos < to {
        let n = SCAN_CHUNK_BYTES.min(to - pos);
        let chunk = &mut buf[..n as usize];
        f.file
            .read_at(pos, chunk)
            .map_err(io_err("read", &f.path))?;
        if chunk.iter().any(|b| *b != 0) {
            chunk.fill(0);
            f.file
                .write_at(pos, chunk)
                .map_err(io_err("zero", &f.path))?;
            f.file.sync_range(pos, n).map_err(io_err("sync", &f.path))?;
        }
        pos += n;
    }
    Ok(())
}

/// All ConsumeQueues of a store.
pub struct ConsumeQueueStore {
    disk: Arc<dyn Disk>,
    dir: PathBuf,
    file_size: u64,
    /// topic → queue id → queue (nested so lookups by `&str` need no allocation).
    queues: RwLock<BTreeMap<String, BTreeMap<i32, Arc<ConsumeQueue>>>>,
    /// Bumped whenever a queue leaves `queues`, so holders of cached handles (dispatch)
    /// know to look them up again.
    generation: AtomicU64,
}

impl ConsumeQueueStore {
    /// Loads every `<dir>/<topic>/<queueId>/` and recovers each queue (scan from the
    /// 3rd-to-last file, truncate after the last valid unit). `file_size_bytes` is
    /// `mapped_file_size_consume_queue` (a positive multiple of 20). A file of the wrong size
    /// (other than a short last file, which is zero-extended), misaligned name or a gap between
    /// files is an error naming the file.
    pub fn open(
        disk: Arc<dyn Disk>,
        dir: &Path,
        file_size_bytes: u64,
    ) -> Result<ConsumeQueueStore> {
        if file_size_bytes == 0 || !file_size_bytes.is_multiple_of(CQ_STORE_UNIT_SIZE) {
            return Err(ConsumeQueueError::BadFileSize(file_size_bytes));
        }
        let mut queues: BTreeMap<String, BTreeMap<i32, Arc<ConsumeQueue>>> = BTreeMap::new();
        for topic in disk.list(dir).map_err(io_err("list", dir))? {
            let topic_dir = dir.join(&topic);
            for qid_name in disk.list(&topic_dir).map_err(io_err("list", &topic_dir))? {
                let Ok(queue_id) = qid_name.parse::<i32>() else {
                    tracing::warn!(path = %topic_dir.join(&qid_name).display(), "ignoring non queue-id entry");
                    continue;
                };
                let q = ConsumeQueue::load(
                    disk.clone(),
                    topic_dir.join(&qid_name),
                    &topic,
                    queue_id,
                    file_size_bytes,
                )?;
                queues
                    .entry(topic.clone())
                    .or_default()
                    .insert(queue_id, Arc::new(q));
            }
        }
        Ok(ConsumeQueueStore {
            disk,
            dir: dir.to_path_buf(),
            file_size: file_size_bytes,
            queues: RwLock::new(queues),
            generation: AtomicU64::new(0),
        })
    }

    pub fn file_size_bytes(&self) -> u64 {
        self.file_size
    }

    /// Changes whenever a queue handle obtained earlier may no longer be the store's (a topic
    /// was deleted): cached handles must be dropped then.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The queue if it exists.
    pub fn queue(&self, topic: &str, queue_id: i32) -> Option<Arc<ConsumeQueue>> {
        let queues = self.queues.read().unwrap_or_else(|e| e.into_inner());
        queues.get(topic)?.get(&queue_id).cloned()
    }

    /// The queue, created (in memory; files appear on the first unit) if absent.
    pub fn find_or_create(&self, topic: &str, queue_id: i32) -> Result<Arc<ConsumeQueue>> {
        if let Some(q) = self.queue(topic, queue_id) {
            return Ok(q);
        }
        check_topic_name(topic)?;
        let mut queues = self.queues.write().unwrap_or_else(|e| e.into_inner());
        let q = queues
            .entry(topic.to_string())
            .or_default()
            .entry(queue_id)
            .or_insert_with(|| {
                Arc::new(ConsumeQueue::new_empty(
                    self.disk.clone(),
                    self.dir.join(topic).join(queue_id.to_string()),
                    topic,
                    queue_id,
                    self.file_size,
                ))
            });
        Ok(q.clone())
    }

    fn all_queues(&self) -> Vec<Arc<ConsumeQueue>> {
        let queues = self.queues.read().unwrap_or_else(|e| e.into_inner());
        queues.values().flat_map(|m| m.values().cloned()).collect()
    }

    /// Writes the unit for the CommitLog entry at `commitlog_offset` (`size` bytes) at
    /// `queue_offset` and returns the queue's new max offset.
    /// - `queue_offset` == max offset: appended.
    /// - `queue_offset` < max offset and the same unit is already there: ignored (Ok, returns the
    ///   current max), so re-dispatch after recovery is idempotent; a different unit there is
    ///   `Conflict`.
    /// - `queue_offset` > max offset: `Gap`, unless the queue has never had a unit, in which case
    ///   its first file is padded with blank units up to `queue_offset`.
    /// - `size <= 0`, a negative offset, or an entry starting before the end of the previous
    ///   unit's entry: `InvalidUnit`.
    ///
    /// Not durable until `flush`.
    pub fn put_unit(
        &self,
        topic: &str,
        queue_id: i32,
        queue_offset: i64,
        commitlog_offset: i64,
        size: i32,
        tags_code: i64,
    ) -> Result<i64> {
        self.find_or_create(topic, queue_id)?.put_unit(
            queue_offset,
            commitlog_offset,
            size,
            tags_code,
        )
    }

    /// Next queue offset of a queue (0 if absent).
    pub fn max_offset(&self, topic: &str, queue_id: i32) -> i64 {
        self.queue(topic, queue_id).map_or(0, |q| q.max_offset())
    }

    /// First readable queue offset (0 if absent).
    pub fn min_offset(&self, topic: &str, queue_id: i32) -> i64 {
        self.queue(topic, queue_id).map_or(0, |q| q.min_offset())
    }

    /// Up to `max_count` units from `from`, in queue order. Empty when `from` is outside
    /// `[min_offset, max_offset)` or the queue is absent. A unit that reads back invalid (not
    /// positive size, blank, or out of CommitLog order) is `Corrupt` naming file and byte.
    pub fn read_units(
        &self,
        topic: &str,
        queue_id: i32,
        from: i64,
        max_count: usize,
    ) -> Result<Vec<CqUnit>> {
        match self.queue(topic, queue_id) {
            Some(q) => q.read_units(from, max_count),
            None => Ok(Vec::new()),
        }
    }

    /// The unit at `queue_offset` if within `[min_offset, max_offset)`.
    pub fn read_unit(
        &self,
        topic: &str,
        queue_id: i32,
        queue_offset: i64,
    ) -> Result<Option<CqUnit>> {
        match self.queue(topic, queue_id) {
            Some(q) => q.read_unit(queue_offset),
            None => Ok(None),
        }
    }

    /// One past the end of the furthest CommitLog entry referenced by any queue (RocketMQ
    /// `maxPhysicOffset`); 0 when no queue has a unit. Dispatch resumes from here.
    pub fn max_commitlog_offset_referenced(&self) -> i64 {
        self.all_queues()
            .iter()
            .map(|q| q.max_commitlog_offset_referenced())
            .max()
            .unwrap_or(0)
    }

    /// After CommitLog recovery: removes from every queue the units whose entry ends beyond
    /// `commitlog_max_offset` (RocketMQ truncateDirtyLogicFiles). The dropped tail is zeroed and
    /// synced, later files deleted.
    pub fn truncate_dirty(&self, commitlog_max_offset: i64) -> Result<()> {
        for q in self.all_queues() {
            q.truncate_dirty(commitlog_max_offset)?;
        }
        Ok(())
    }

    /// See [`ConsumeQueue::redirty_from`]; for every queue.
    pub fn redirty_from(&self, commitlog_offset: i64) -> Result<()> {
        for q in self.all_queues() {
            q.redirty_from(commitlog_offset)?;
        }
        Ok(())
    }

    /// The smallest CommitLog offset whose unit is not yet durable in some queue; None when
    /// every queue is durable to its end. With the reput offset taken before a flush this
    /// gives the point up to which dispatch results survive a power loss.
    pub fn min_unflushed_commitlog_offset(&self) -> Result<Option<i64>> {
        let mut min: Option<i64> = None;
        for q in self.all_queues() {
            if let Some(off) = q.first_unflushed_commitlog_offset()? {
                min = Some(min.map_or(off, |m| m.min(off)));
            }
        }
        Ok(min)
    }

    /// Flushes every queue with at least `least_pages` dirty pages (0: everything dirty).
    /// Returns whether anything was synced. Pair with [`FlushPolicy`] for the thorough interval.
    pub fn flush(&self, least_pages: u32) -> Result<bool> {
        let mut any = false;
        for q in self.all_queues() {
            any |= q.flush(least_pages)?;
        }
        Ok(any)
    }

    /// Removes all queues of `topic` and their directory.
    pub fn delete_topic(&self, topic: &str) -> Result<()> {
        check_topic_name(topic)?;
        {
            let mut queues = self.queues.write().unwrap_or_else(|e| e.into_inner());
            queues.remove(topic);
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
        let topic_dir = self.dir.join(topic);
        if self.disk.exists(&topic_dir) {
            self.disk
                .remove_dir_all(&topic_dir)
                .map_err(io_err("remove", &topic_dir))?;
            self.disk
                .sync_dir(&self.dir)
                .map_err(io_err("sync dir", &self.dir))?;
        }
        Ok(())
    }

    /// Advances every queue's min offset past units whose entry starts below
    /// `commitlog_min_offset` (the CommitLog's first file start).
    pub fn correct_min_offset(&self, commitlog_min_offset: i64) -> Result<()> {
        for q in self.all_queues() {
            q.correct_min_offset(commitlog_min_offset)?;
        }
        Ok(())
    }

    /// Deletes, in every queue, files (never a queue's last) wholly below
    /// `commitlog_min_offset`, then corrects min offsets. Returns the number of files deleted.
    pub fn delete_expired_files(&self, commitlog_min_offset: i64) -> Result<usize> {
        let mut deleted = 0;
        for q in self.all_queues() {
            deleted += q.delete_expired_files(commitlog_min_offset)?;
        }
        Ok(deleted)
    }

    /// (topic, queue id) → next queue offset, for every queue (seeds the CommitLog's
    /// topic-queue offset table after recovery).
    pub fn queue_offset_table(&self) -> BTreeMap<(String, i32), i64> {
        self.all_queues()
            .iter()
            .map(|q| ((q.topic.clone(), q.queue_id), q.max_offset()))
            .collect()
    }

    /// Queue offset for a store timestamp by binary search over `[min_offset, max_offset)`.
    /// `store_time_of(commitlog_offset, size)` returns the entry's store timestamp (None if
    /// unreadable; such entries count as older than any timestamp). Store timestamps are
    /// assumed non-decreasing along the queue.
    /// - `Lower`: first offset stored at or after `timestamp_ms`; max offset if none.
    /// - `Upper`: last offset stored at or before `timestamp_ms`; min offset if none (RocketMQ
    ///   answers 0 there).
    ///
    /// Absent or empty queue: its min offset (0 if absent).
    pub fn offset_by_time(
        &self,
        topic: &str,
        queue_id: i32,
        timestamp_ms: i64,
        boundary: BoundaryType,
        store_time_of: &dyn Fn(i64, i32) -> Option<i64>,
    ) -> Result<i64> {
        match self.queue(topic, queue_id) {
            Some(q) => q.offset_by_time(timestamp_ms, boundary, store_time_of),
            None => Ok(0),
        }
    }
}

#[cfg(test)]
#[path = "consume_queue_test.rs"]
mod tests;
