//! The CommitLog: one append-only log of entries over fixed-size mapped files. Append assigns
//! CommitLog offsets, queue offsets and store timestamps under one lock (`append.rs`); flushing
//! makes written bytes durable (`flush.rs` holds the loops); recovery finds the valid end after
//! a restart (`recover.rs`).

pub mod append;
pub mod flush;
pub mod mapped_file_queue;
pub mod recover;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

use crate::message::entry::{self, BLANK_MAGIC_CODE, MESSAGE_MAGIC_CODE_V1, MESSAGE_MAGIC_CODE_V2};
use crate::store::disk::{Disk, WriteMode};
use crate::store::error::StoreError;

pub use mapped_file_queue::{MappedFile, MappedFileQueue};

/// Page size used to count dirty pages (RocketMQ `OS_PAGE_SIZE`).
pub const OS_PAGE_SIZE: u64 = 4096;
/// Bytes a file must keep free after an entry for the blank filler (size + BLANK magic).
pub const END_FILE_MIN_BLANK_LENGTH: u64 = 8;

/// What sits at a CommitLog position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryAt {
    /// A message entry of this many bytes.
    Message(Bytes),
    /// Blank filler: continue at the next file.
    Blank,
    /// Zeros or garbage: the end of the valid log (with the reason).
    Invalid(String),
}

/// What [`CommitLog::read_entry_into`] found (the entry bytes are in the caller's buffer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    Message,
    Blank,
    Invalid(String),
}

/// Next queue offset per topic-queue, looked up by `&str` (an append must not allocate a key
/// to find its queue; only a queue's first append inserts one).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct QueueOffsetTable {
    topics: BTreeMap<String, BTreeMap<i32, i64>>,
}

impl QueueOffsetTable {
    pub fn get(&self, topic: &str, queue_id: i32) -> Option<i64> {
        self.topics.get(topic)?.get(&queue_id).copied()
    }

    pub fn get_mut(&mut self, topic: &str, queue_id: i32) -> Option<&mut i64> {
        self.topics.get_mut(topic)?.get_mut(&queue_id)
    }

    pub fn set(&mut self, topic: &str, queue_id: i32, next_queue_offset: i64) {
        match self.topics.get_mut(topic) {
            Some(queues) => {
                queues.insert(queue_id, next_queue_offset);
            }
            None => {
                self.topics.insert(
                    topic.to_string(),
                    BTreeMap::from([(queue_id, next_queue_offset)]),
                );
            }
        }
    }

    /// Drops every queue of these topics.
    pub fn remove_topics(&mut self, topics: &[String]) {
        self.topics.retain(|t, _| !topics.contains(t));
    }
}

impl From<BTreeMap<(String, i32), i64>> for QueueOffsetTable {
    fn from(flat: BTreeMap<(String, i32), i64>) -> Self {
        let mut table = QueueOffsetTable::default();
        for ((topic, queue_id), next) in flat {
            table
                .topics
                .entry(topic)
                .or_default()
                .insert(queue_id, next);
        }
        table
    }
}

/// Per topic-queue next queue offsets plus what the last append left behind.
#[derive(Debug, Default)]
pub struct AppendState {
    pub queue_offsets: QueueOffsetTable,
    /// Store timestamp of the newest entry and the offset one past it (for the checkpoint).
    pub last_store_timestamp: i64,
    pub last_end_offset: u64,
}

/// The log itself (no background loops; see `flush.rs`).
pub struct CommitLog {
    pub files: MappedFileQueue,
    pub(crate) append_state: Mutex<AppendState>,
    /// Bytes below this offset are durable.
    flushed_offset: AtomicU64,
    /// Store timestamp of the newest durable entry (checkpoint physicMsgTimestamp).
    flushed_store_timestamp: AtomicU64,
    /// Serializes flushes so two syncs never race on the positions.
    flush_lock: Mutex<()>,
    /// CommitLog offset up to which pages ahead of the write position are prefaulted.
    warmed_to: AtomicU64,
    /// A prefault job is running.
    warming: AtomicBool,
    /// warmMapedFileEnable: warm-up jobs also write zeros ahead of the writer (and sync them),
    /// so a sync of appended bytes finds its blocks already written (see [`Self::warm`]).
    zero_fill_ahead: bool,
    /// flushLeastPagesWhenWarmMapedFile in bytes, at most [`ZERO_FILL_SYNC_MAX_BYTES`]: zeros
    /// written between syncs of a warm-up.
    zero_fill_sync_bytes: u64,
    /// CommitLog offset from which a warm-up job is writing zeros right now (u64::MAX: none).
    /// With `writer_end` it keeps zeros and appended bytes apart ([`Self::fence_zero_fill`]).
    pub(crate) zeroing_from: AtomicU64,
    /// End offset of the append being written, published before its bytes are written.
    pub(crate) writer_end: AtomicU64,
}

/// Bytes prefaulted ahead of the write position per warm-up job; a new job starts when the
/// writer comes within half of it. Prefaulted pages count in the broker's VmRSS (the idle
/// figure is ~this much file-backed memory), so keep it modest.
pub const WARM_AHEAD_BYTES: u64 = 16 * 1024 * 1024;

/// With warmMapedFileEnable: bytes written with zeros ahead of the write position per warm-up
/// job. Larger than [`WARM_AHEAD_BYTES`] because writing and syncing zeros is slower than
/// prefaulting, and the writer should not catch up with the job.
pub const ZERO_FILL_AHEAD_BYTES: u64 = 64 * 1024 * 1024;

/// Zeros written per step of a warm-up job; the job checks for the writer between steps.
const ZERO_FILL_STEP_BYTES: usize = 1024 * 1024;

/// Most zeros a warm-up job writes between syncs, whatever flushLeastPagesWhenWarmMapedFile
/// says (RocketMQ's default is 4096 pages = 16 MiB, for warming a whole file before use). This
/// warm-up runs beside live SYNC_FLUSH syncs, which queue behind a 16 MiB write on the device:
/// mqbench at 16 senders measured send p999 3.5-4.2 ms with a sync per MiB, 11.8 ms per 16 MiB.
const ZERO_FILL_SYNC_MAX_BYTES: u64 = 1024 * 1024;

/// try_lock attempts (each followed by a spin-loop hint) before the append lock blocks: a few
/// microseconds, longer than the lock is normally held.
const APPEND_LOCK_SPINS: u32 = 256;

/// A range of one file to prefault (see [`CommitLog::warm_job`]).
pub struct WarmJob {
    file: Arc<MappedFile>,
    from_pos: u64,
    to_pos: u64,
}

impl CommitLog {
    pub fn load(
        disk: Arc<dyn Disk>,
        config: &crate::store::StoreConfig,
    ) -> Result<Self, StoreError> {
        let files = MappedFileQueue::load(
            disk,
            &config.commitlog_dir(),
            config.mapped_file_size_commitlog,
        )?
        // SYNC_FLUSH is bounded by how many fsyncs per second the disk completes, and pages
        // written by pwrite sync faster than pages stored through the mapping (WriteMode).
        .with_write_mode(match config.flush_disk_type {
            crate::store::FlushDiskType::SyncFlush => WriteMode::Syscall,
            crate::store::FlushDiskType::AsyncFlush => WriteMode::Mapped,
        });
        Ok(CommitLog {
            files,
            append_state: Mutex::new(AppendState::default()),
            flushed_offset: AtomicU64::new(0),
            flushed_store_timestamp: AtomicU64::new(0),
            flush_lock: Mutex::new(()),
            warmed_to: AtomicU64::new(0),
            warming: AtomicBool::new(false),
            zero_fill_ahead: config.warm_mapped_file_enable,
            zero_fill_sync_bytes: ((config.flush_least_pages_when_warm_mapped_file as u64).max(1)
                * OS_PAGE_SIZE)
                .min(ZERO_FILL_SYNC_MAX_BYTES),
            zeroing_from: AtomicU64::new(u64::MAX),
            writer_end: AtomicU64::new(0),
        })
    }

    /// After an append ending at `end_offset`: the next range of the last file to warm up
    /// (prefault, and with warmMapedFileEnable zero-fill) when the writer is within half a
    /// warm-up of the warmed end (and no job runs). None when neither applies (a file without
    /// a writable mapping, warmMapedFileEnable off). Run the job with [`Self::warm`] off the
    /// async task.
    pub fn warm_job(&self, end_offset: u64) -> Option<WarmJob> {
        let ahead = if self.zero_fill_ahead {
            ZERO_FILL_AHEAD_BYTES
        } else {
            WARM_AHEAD_BYTES
        };
        if end_offset + ahead / 2 <= self.warmed_to.load(Ordering::Acquire)
            || self.warming.load(Ordering::Acquire)
        {
            // Far enough ahead, or a job is running: plain loads, no lock (every put asks).
            return None;
        }
        let file = self.files.last()?;
        if !(self.zero_fill_ahead || file.file.supports_prefault())
            || end_offset < file.start_offset
        {
            return None;
        }
        if self
            .warming
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return None;
        }
        let from = self
            .warmed_to
            .load(Ordering::Acquire)
            .max(end_offset)
            .min(file.end_offset());
        let to = (end_offset + ahead).min(file.end_offset());
        if from >= to {
            self.warming.store(false, Ordering::Release);
            return None;
        }
        Some(WarmJob {
            from_pos: from - file.start_offset,
            to_pos: to - file.start_offset,
            file,
        })
    }

    /// Runs a [`WarmJob`] (blocking): with warmMapedFileEnable it first writes zeros over the
    /// range and syncs them, then it prefaults the range when the file is mapped for writes.
    /// A failure only costs speed later: nothing ahead of the writer holds data.
    pub fn warm(&self, job: WarmJob) {
        if self.zero_fill_ahead {
            self.zero_fill(&job);
        }
        if job.file.file.supports_prefault() {
            if let Err(e) = job
                .file
                .file
                .prefault(job.from_pos, job.to_pos - job.from_pos, true)
            {
                tracing::debug!(path = %job.file.path.display(), error = %e, "prefault failed");
            }
        }
        self.warmed_to
            .fetch_max(job.file.start_offset + job.to_pos, Ordering::AcqRel);
        self.warming.store(false, Ordering::Release);
    }

    /// Writes zeros over the job's whole pages and syncs them every `zero_fill_sync_bytes`.
    /// Why: a fallocated file's blocks are "unwritten" extents, and the first sync of data
    /// in them must also write the extent change; on this project's test disks that doubles
    /// the latency of every SYNC_FLUSH fsync. Zeros written and synced ahead of the writer move
    /// that cost off the send path (RocketMQ's warmMapedFileEnable pre-writes whole files
    /// for the same reason). The zero pages stay in the page cache, so appends into them do
    /// not read from disk. Stops early when the writer reaches the range.
    fn zero_fill(&self, job: &WarmJob) {
        let file = &job.file;
        let page = OS_PAGE_SIZE;
        let mut pos = job.from_pos.div_ceil(page) * page;
        let mut unsynced_from = pos;
        let zeros = vec![0u8; ZERO_FILL_STEP_BYTES];
        while pos < job.to_pos {
            let end = (pos + ZERO_FILL_STEP_BYTES as u64).min(job.to_pos);
            let offset = file.start_offset + pos;
            // Claim the step, then look for the writer (SeqCst, paired with fence_zero_fill):
            // either the writer sees the claim and waits, or this sees the writer and stops.
            self.zeroing_from.store(offset, Ordering::SeqCst);
            if self.writer_end.load(Ordering::SeqCst) > offset {
                self.zeroing_from.store(u64::MAX, Ordering::SeqCst);
                return;
            }
            let written = file.file.write_at(pos, &zeros[..(end - pos) as usize]);
            self.zeroing_from.store(u64::MAX, Ordering::SeqCst);
            if let Err(e) = written {
                tracing::debug!(path = %file.path.display(), error = %e, "zero fill failed");
                return;
            }
            pos = end;
            if pos - unsynced_from >= self.zero_fill_sync_bytes || pos == job.to_pos {
                if let Err(e) = file.file.sync_range(unsynced_from, pos - unsynced_from) {
                    tracing::debug!(path = %file.path.display(), error = %e, "zero fill sync failed");
                    return;
                }
                unsynced_from = pos;
            }
        }
    }

    /// Called under the append lock before bytes up to `end_offset` are written: publishes
    /// the end, then waits while a warm-up step writes zeros below it (the job stops at its
    /// next step once it sees the end). A no-op unless warmMapedFileEnable.
    pub(crate) fn fence_zero_fill(&self, end_offset: u64) {
        if !self.zero_fill_ahead {
            return;
        }
        self.writer_end.store(end_offset, Ordering::SeqCst);
        // A step is one write of at most ZERO_FILL_STEP_BYTES; the writer only gets here when
        // it caught up with a warm-up, which the look-ahead makes rare.
        while self.zeroing_from.load(Ordering::SeqCst) < end_offset {
            std::hint::spin_loop();
        }
    }

    pub(crate) fn lock_append(&self) -> MutexGuard<'_, AppendState> {
        // Held for one entry's encoding and write: well under a microsecond, about two with
        // the pwrite of SYNC_FLUSH. A contended std Mutex spins only briefly before a futex
        // sleep, and the sleep and wake-up cost several times the wait (perf: 9% of SYNC_FLUSH
        // CPU at 64 writers was this context switch), so spin on try_lock first.
        for _ in 0..APPEND_LOCK_SPINS {
            match self.append_state.try_lock() {
                Ok(guard) => return guard,
                Err(std::sync::TryLockError::Poisoned(e)) => return e.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => std::hint::spin_loop(),
            }
        }
        self.append_state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn file_size(&self) -> u64 {
        self.files.file_size()
    }

    pub fn min_offset(&self) -> u64 {
        self.files.min_offset()
    }

    pub fn max_offset(&self) -> u64 {
        self.files.max_offset()
    }

    pub fn flushed_offset(&self) -> u64 {
        self.flushed_offset.load(Ordering::Acquire)
    }

    pub fn flushed_store_timestamp(&self) -> i64 {
        self.flushed_store_timestamp.load(Ordering::Acquire) as i64
    }

    pub(crate) fn set_flushed(&self, offset: u64, store_timestamp: i64) {
        self.flushed_offset.store(offset, Ordering::Release);
        self.flushed_store_timestamp
            .store(store_timestamp.max(0) as u64, Ordering::Release);
    }

    /// Next queue offset the log would assign in a queue.
    pub fn queue_offset(&self, topic: &str, queue_id: i32) -> Option<i64> {
        self.lock_append().queue_offsets.get(topic, queue_id)
    }

    /// Drops the queue offsets of deleted topics.
    pub fn remove_topics(&self, topics: &[String]) {
        let mut st = self.lock_append();
        st.queue_offsets.remove_topics(topics);
    }

    /// Reads what sits at `commitlog_offset` without trusting it: a full message entry (size,
    /// magic and layout checked; CRC if asked), the blank filler, or the reason it is neither.
    pub fn read_entry_at(
        &self,
        commitlog_offset: u64,
        check_crc: bool,
    ) -> Result<EntryAt, StoreError> {
        let mut buf = Vec::new();
        Ok(
            match self.read_entry_into(commitlog_offset, check_crc, &mut buf)? {
                EntryKind::Message => EntryAt::Message(Bytes::from(buf)),
                EntryKind::Blank => EntryAt::Blank,
                EntryKind::Invalid(reason) => EntryAt::Invalid(reason),
            },
        )
    }

    /// [`Self::read_entry_at`] into a caller's buffer (reused across entries by dispatch and
    /// recovery): on `Message`, `buf` holds exactly the entry.
    pub fn read_entry_into(
        &self,
        commitlog_offset: u64,
        check_crc: bool,
        buf: &mut Vec<u8>,
    ) -> Result<EntryKind, StoreError> {
        let Some(file) = self.files.find(commitlog_offset) else {
            return Ok(EntryKind::Invalid(format!(
                "offset {commitlog_offset} outside the CommitLog files"
            )));
        };
        let file_pos = commitlog_offset - file.start_offset;
        let remaining = file.size - file_pos;
        if remaining < END_FILE_MIN_BLANK_LENGTH {
            return Ok(EntryKind::Invalid(format!(
                "only {remaining} bytes left in {}",
                file.path.display()
            )));
        }
        let mut header = [0u8; 8];
        file.read_at(file_pos, &mut header)?;
        let Some((total_size, magic)) = entry::peek_header(&header) else {
            return Ok(EntryKind::Invalid("short header".into()));
        };
        match magic {
            BLANK_MAGIC_CODE => {
                if total_size as u64 != remaining {
                    return Ok(EntryKind::Invalid(format!(
                        "blank filler declares {total_size} bytes but {remaining} remain"
                    )));
                }
                Ok(EntryKind::Blank)
            }
            MESSAGE_MAGIC_CODE_V1 | MESSAGE_MAGIC_CODE_V2 => {
                if total_size < entry::MIN_ENTRY_SIZE as i32
                    || total_size as u64 + END_FILE_MIN_BLANK_LENGTH > remaining
                {
                    return Ok(EntryKind::Invalid(format!(
                        "entry size {total_size} impossible with {remaining} bytes left"
                    )));
                }
                buf.clear();
                buf.resize(total_size as usize, 0);
                file.read_at(file_pos, buf)?;
                match entry::parse_entry(buf, check_crc) {
                    Ok((view, _)) if view.commitlog_offset as u64 != commitlog_offset => {
                        Ok(EntryKind::Invalid(format!(
                            "entry records offset {} but sits at {commitlog_offset}",
                            view.commitlog_offset
                        )))
                    }
                    Ok(_) => Ok(EntryKind::Message),
                    Err(reason) => Ok(EntryKind::Invalid(reason)),
                }
            }
            0 if total_size == 0 => Ok(EntryKind::Invalid("zeros (end of data)".into())),
            other => Ok(EntryKind::Invalid(format!(
                "bad magic code {:#010X}",
                other as u32
            ))),
        }
    }

    /// The raw entry at `commitlog_offset` of `size` bytes (a ConsumeQueue unit's target),
    /// checked to be a message entry of exactly that size.
    pub fn read_message(
        &self,
        commitlog_offset: u64,
        size: usize,
    ) -> Result<Option<Bytes>, StoreError> {
        let Some(file) = self.files.find(commitlog_offset) else {
            return Ok(None);
        };
        let file_pos = commitlog_offset - file.start_offset;
        if file_pos + size as u64 > file.wrote_pos() {
            return Ok(None);
        }
        let mut buf = vec![0u8; size];
        file.read_at(file_pos, &mut buf)?;
        // Pair assertion with dispatch: the unit must point at a message of its size.
        match entry::peek_header(&buf) {
            Some((total, MESSAGE_MAGIC_CODE_V1 | MESSAGE_MAGIC_CODE_V2))
                if total as usize == size =>
            {
                Ok(Some(Bytes::from(buf)))
            }
            _ => Err(StoreError::Corrupt {
                path: file.path.clone(),
                offset: file_pos,
                reason: format!("no {size}-byte message entry where a queue unit points"),
            }),
        }
    }

    /// Flushes when at least `least_pages` 4 KiB pages are dirty (0: anything dirty).
    /// Returns whether a sync happened. Blocking: call through `rt::blocking`.
    pub fn flush(&self, least_pages: u32) -> Result<bool, StoreError> {
        let _guard = self.flush_lock.lock().unwrap_or_else(|e| e.into_inner());
        let (target, target_ts) = {
            let st = self.lock_append();
            (self.files.max_offset(), st.last_store_timestamp)
        };
        let from = self.flushed_offset();
        if target <= from {
            return Ok(false);
        }
        if least_pages > 0 && target / OS_PAGE_SIZE - from / OS_PAGE_SIZE < least_pages as u64 {
            return Ok(false);
        }
        for file in self.files.files() {
            if file.end_offset() <= from || file.start_offset >= target {
                continue;
            }
            let sync_from = from.max(file.start_offset) - file.start_offset;
            let sync_to = target.min(file.end_offset()) - file.start_offset;
            if sync_to > sync_from {
                file.file
                    .sync_range(sync_from, sync_to - sync_from)
                    .map_err(|source| StoreError::Io {
                        op: "fsync",
                        path: file.path.clone(),
                        source,
                    })?;
            }
            file.set_flushed_pos(sync_to);
        }
        assert!(
            target >= self.flushed_offset(),
            "flushed offset moves forward only"
        );
        self.set_flushed(target, target_ts);
        Ok(true)
    }
}
