//! IndexFile: RocketMQ's hash index over `<topic>#<key>` (header 40 B, slots of i32, entries of
//! 20 B), for QUERY_MESSAGE by key. Derived from the CommitLog by dispatch. OWNER: store-index
//! helper.
//!
//! Contract used by the store core ([`IndexService`]; methods are synchronous and touch the
//! disk — async callers wrap `open`, `flush`, `truncate_after` in `rt::blocking`):
//! - `IndexService::open(disk, dir, max_hash_slot_num, max_index_num)` loads index files (and
//!   repairs the slot of a put torn by a crash in the newest file).
//! - `truncate_after(commitlog_offset)` after CommitLog recovery: removes every entry whose
//!   CommitLog offset is `>= commitlog_offset` exactly (newer files deleted, the straddling file
//!   cut: its slot chains are unlinked entry by entry). Re-dispatch from any offset at or below
//!   `last_indexed_commitlog_offset()` then rebuilds the tail; `build_index` skips messages at
//!   or below that offset, so replaying already-indexed messages is harmless.
//! - `build_index(topic, keys, commitlog_offset, store_timestamp)`: keys are UNIQ_KEY and each
//!   KEYS token (the caller splits KEYS on spaces); empty keys are skipped.
//! - `query(topic, key, max_num, begin_ts, end_ts)` -> CommitLog offsets of candidates (hash
//!   matches: the caller re-reads each message and re-checks the key), newest file first, plus
//!   last update timestamp / phy offset; `flush()`, `delete_expired(commitlog_min)`.
//!
//! Layout (RocketMQ `IndexFile`/`IndexHeader`, big-endian): header of 40 bytes
//! `beginTimestamp:i64 | endTimestamp:i64 | beginPhyOffset:i64 | endPhyOffset:i64 |
//! hashSlotCount:i32 | indexCount:i32` (indexCount starts at 1, entry 0 unused); then
//! `max_hash_slot_num` slots of i32 (index of the newest entry of the bucket, 0 = empty); then
//! `max_index_num` entries of 20 bytes `keyHash:i32 | phyOffset:i64 | timeDiffSec:i32 |
//! prevIndex:i32`. The file is full when indexCount reaches `max_index_num`.
//!
//! File names are the creation time `yyyyMMddHHmmssSSS` computed from `rt::now_ms()` in UTC
//! (RocketMQ uses the JVM's local time zone; only ordering matters to readers). Names are made
//! strictly increasing even if two files are created in the same millisecond.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use thiserror::Error;

use super::disk::{Disk, SegmentFile};
use super::error::StoreError;
use crate::message::properties::{java_string_hash, java_string_hash_continue};

pub const INDEX_HEADER_SIZE: u64 = 40;
pub const HASH_SLOT_SIZE: u64 = 4;
pub const INDEX_ENTRY_SIZE: u64 = 20;
/// Slot value / prevIndex meaning "none".
pub const INVALID_INDEX: i32 = 0;
/// RocketMQ defaults (`maxHashSlotNum`, `maxIndexNum`).
pub const DEFAULT_MAX_HASH_SLOT_NUM: u32 = 5_000_000;
pub const DEFAULT_MAX_INDEX_NUM: u32 = 20_000_000;

const _: () = assert!(INDEX_HEADER_SIZE == 8 * 4 + 4 * 2);
const _: () = assert!(INDEX_ENTRY_SIZE == 4 + 8 + 4 + 4);
const _: () = assert!(
    INDEX_HEADER_SIZE
        + DEFAULT_MAX_HASH_SLOT_NUM as u64 * HASH_SLOT_SIZE
        + DEFAULT_MAX_INDEX_NUM as u64 * INDEX_ENTRY_SIZE
        == 420_000_040
);

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum IndexError {
    #[error("index {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("corrupt index file {path} at byte {offset}: {reason}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error(
        "bad index sizes: max_hash_slot_num {max_hash_slot_num}, max_index_num {max_index_num}"
    )]
    BadSizes {
        max_hash_slot_num: u32,
        max_index_num: u32,
    },
}

impl From<IndexError> for StoreError {
    fn from(e: IndexError) -> StoreError {
        match e {
            IndexError::Io { op, path, source } => StoreError::Io { op, path, source },
            IndexError::Corrupt {
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

type Result<T> = std::result::Result<T, IndexError>;

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> IndexError + 'a {
    move |source| IndexError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// The 40-byte header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexHeader {
    pub begin_timestamp: i64,
    pub end_timestamp: i64,
    pub begin_phy_offset: i64,
    pub end_phy_offset: i64,
    pub hash_slot_count: i32,
    pub index_count: i32,
}

impl Default for IndexHeader {
    fn default() -> IndexHeader {
        IndexHeader {
            begin_timestamp: 0,
            end_timestamp: 0,
            begin_phy_offset: 0,
            end_phy_offset: 0,
            hash_slot_count: 0,
            index_count: 1,
        }
    }
}

impl IndexHeader {
    pub fn encode(&self) -> [u8; INDEX_HEADER_SIZE as usize] {
        let mut b = [0u8; INDEX_HEADER_SIZE as usize];
        b[0..8].copy_from_slice(&self.begin_timestamp.to_be_bytes());
        b[8..16].copy_from_slice(&self.end_timestamp.to_be_bytes());
        b[16..24].copy_from_slice(&self.begin_phy_offset.to_be_bytes());
        b[24..32].copy_from_slice(&self.end_phy_offset.to_be_bytes());
        b[32..36].copy_from_slice(&self.hash_slot_count.to_be_bytes());
        b[36..40].copy_from_slice(&self.index_count.to_be_bytes());
        b
    }

    /// Decodes; an indexCount of 0 (never written) reads as 1, as in RocketMQ.
    pub fn decode(b: &[u8; INDEX_HEADER_SIZE as usize]) -> IndexHeader {
        let index_count = be_i32(&b[36..40]);
        IndexHeader {
            begin_timestamp: be_i64(&b[0..8]),
            end_timestamp: be_i64(&b[8..16]),
            begin_phy_offset: be_i64(&b[16..24]),
            end_phy_offset: be_i64(&b[24..32]),
            hash_slot_count: be_i32(&b[32..36]),
            index_count: if index_count <= 0 { 1 } else { index_count },
        }
    }

    /// True when the file holds at least one entry.
    pub fn has_entries(&self) -> bool {
        self.index_count > 1
    }
}

/// One 20-byte entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    pub key_hash: i32,
    pub phy_offset: i64,
    pub time_diff_secs: i32,
    pub prev_index: i32,
}

impl IndexEntry {
    pub fn encode(&self) -> [u8; INDEX_ENTRY_SIZE as usize] {
        let mut b = [0u8; INDEX_ENTRY_SIZE as usize];
        b[0..4].copy_from_slice(&self.key_hash.to_be_bytes());
        b[4..12].copy_from_slice(&self.phy_offset.to_be_bytes());
        b[12..16].copy_from_slice(&self.time_diff_secs.to_be_bytes());
        b[16..20].copy_from_slice(&self.prev_index.to_be_bytes());
        b
    }

    pub fn decode(b: &[u8; INDEX_ENTRY_SIZE as usize]) -> IndexEntry {
        IndexEntry {
            key_hash: be_i32(&b[0..4]),
            phy_offset: be_i64(&b[4..12]),
            time_diff_secs: be_i32(&b[12..16]),
            prev_index: be_i32(&b[16..20]),
        }
    }
}

fn be_i32(b: &[u8]) -> i32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(b);
    i32::from_be_bytes(a)
}

fn be_i64(b: &[u8]) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    i64::from_be_bytes(a)
}

/// `<topic>#<key>`.
pub fn build_key(topic: &str, key: &str) -> String {
    format!("{topic}#{key}")
}

/// |Java String.hashCode| with Integer.MIN_VALUE mapped to 0 (RocketMQ indexKeyHashMethod).
pub fn index_key_hash(key: &str) -> i32 {
    abs_key_hash(java_string_hash(key))
}

/// [`index_key_hash`] of `build_key(topic, key)` without building the string (dispatch indexes
/// every message's UNIQ_KEY: the `format!` was an allocation per message).
pub fn index_key_hash_of(topic: &str, key: &str) -> i32 {
    let h = java_string_hash_continue(java_string_hash(topic), "#");
    abs_key_hash(java_string_hash_continue(h, key))
}

fn abs_key_hash(h: i32) -> i32 {
    if h == i32::MIN {
        0
    } else {
        h.abs()
    }
}

/// Total bytes of one index file.
pub fn index_file_size(max_hash_slot_num: u32, max_index_num: u32) -> u64 {
    INDEX_HEADER_SIZE
        + max_hash_slot_num as u64 * HASH_SLOT_SIZE
        + max_index_num as u64 * INDEX_ENTRY_SIZE
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar (Howard
/// Hinnant's civil_from_days).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    (y, m, d)
}

/// Inverse of [`civil_from_days`].
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `yyyyMMddHHmmssSSS` of epoch milliseconds, UTC.
pub fn index_file_name(epoch_ms: i64) -> String {
    let days = epoch_ms.div_euclid(86_400_000);
    let ms_of_day = epoch_ms.rem_euclid(86_400_000);
    let (y, mo, d) = civil_from_days(days);
    let h = ms_of_day / 3_600_000;
    let mi = ms_of_day / 60_000 % 60;
    let s = ms_of_day / 1000 % 60;
    let ms = ms_of_day % 1000;
    format!("{y:04}{mo:02}{d:02}{h:02}{mi:02}{s:02}{ms:03}")
}

/// Epoch milliseconds of a `yyyyMMddHHmmssSSS` name (UTC); None if not such a name.
pub fn parse_index_file_name(name: &str) -> Option<i64> {
    if name.len() != 17 || !name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = |a: usize, b: usize| name[a..b].parse::<i64>().ok();
    let (y, mo, d) = (n(0, 4)?, n(4, 6)?, n(6, 8)?);
    let (h, mi, s, ms) = (n(8, 10)?, n(10, 12)?, n(12, 14)?, n(14, 17)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 59 {
        return None;
    }
    let days = days_from_civil(y, mo as u32, d as u32);
    Some(days * 86_400_000 + h * 3_600_000 + mi * 60_000 + s * 1000 + ms)
}

/// One index file.
pub struct IndexFile {
    path: PathBuf,
    name_ms: i64,
    file: Arc<dyn SegmentFile>,
    hash_slot_num: u32,
    index_num: u32,
    /// In-memory copy of bytes 0..40; the lock also serializes puts against chain walks.
    header: RwLock<IndexHeader>,
    dirty: AtomicBool,
    /// Bytes from the file start mapped in ahead of the writer ([`IndexService::warm_job`]).
    warmed_to: AtomicU64,
    /// A warm-up job for this file is running.
    warming: AtomicBool,
    /// A put came within half a warm-up of `warmed_to`.
    wants_warm: AtomicBool,
    /// `file.supports_prefault()`, asked once.
    prefaults: bool,
}

/// Entry bytes prefaulted ahead of the newest entry; a new job starts when the writer gets
/// within half of it. The first job of a file also maps in the whole slot table, which puts
/// hit at random (5,000,000 slots: 20 MB, otherwise a page fault each on first touch).
pub const INDEX_WARM_AHEAD_BYTES: u64 = 1024 * 1024;

/// Entries a file holds before its first warm-up job: a broker that took a few sends keeps the
/// slot table (20 MB) out of its resident set (idle RSS); under load the threshold is reached
/// within milliseconds and costs at most this many page faults on the put path.
pub const INDEX_WARM_MIN_ENTRIES: i32 = 4096;

impl IndexFile {
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn header(&self) -> IndexHeader {
        *self.header.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn is_full(&self) -> bool {
        self.header().index_count >= self.index_num as i32
    }

    fn slot_pos(&self, key_hash: i32) -> u64 {
        debug_assert!(key_hash >= 0);
        INDEX_HEADER_SIZE + (key_hash as u64 % self.hash_slot_num as u64) * HASH_SLOT_SIZE
    }

    fn entry_pos(&self, index: i32) -> u64 {
        debug_assert!(index > 0 && (index as u32) < self.index_num);
        INDEX_HEADER_SIZE
            + self.hash_slot_num as u64 * HASH_SLOT_SIZE
            + index as u64 * INDEX_ENTRY_SIZE
    }

    fn read_slot(&self, pos: u64) -> Result<i32> {
        let mut b = [0u8; 4];
        self.file
            .read_at(pos, &mut b)
            .map_err(io_err("read", &self.path))?;
        Ok(i32::from_be_bytes(b))
    }

    fn write_slot(&self, pos: u64, value: i32) -> Result<()> {
        self.file
            .write_at(pos, &value.to_be_bytes())
            .map_err(io_err("write", &self.path))
    }

    fn read_entry(&self, index: i32) -> Result<IndexEntry> {
        let mut b = [0u8; INDEX_ENTRY_SIZE as usize];
        self.file
            .read_at(self.entry_pos(index), &mut b)
            .map_err(io_err("read", &self.path))?;
        Ok(IndexEntry::decode(&b))
    }

    fn write_header(&self, header: &IndexHeader) -> Result<()> {
        self.file
            .write_at(0, &header.encode())
            .map_err(io_err("write", &self.path))
    }

    fn corrupt(&self, offset: u64, reason: String) -> IndexError {
        IndexError::Corrupt {
            path: self.path.clone(),
            offset,
            reason,
        }
    }

    /// RocketMQ `IndexFile.putKey`. Returns false when the file is full. Write order is entry,
    /// slot, header, so a crash that keeps a prefix of the writes leaves at most the slot of the
    /// last put ahead of the header (repaired by [`IndexFile::repair_torn_put`]).
    fn put_key(&self, key_hash: i32, phy_offset: i64, store_timestamp: i64) -> Result<bool> {
        let mut header = self.header.write().unwrap_or_else(|e| e.into_inner());
        if header.index_count >= self.index_num as i32 {
            return Ok(false);
        }
        if self.prefaults
            && header.index_count >= INDEX_WARM_MIN_ENTRIES
            && self.entry_pos(header.index_count) + INDEX_WARM_AHEAD_BYTES / 2
                > self.warmed_to.load(Ordering::Relaxed)
        {
            self.wants_warm.store(true, Ordering::Relaxed);
        }
        if header.has_entries() {
            assert!(
                phy_offset >= header.end_phy_offset,
                "index entries must follow CommitLog order ({phy_offset} < {})",
                header.end_phy_offset
            );
        }
        assert!(key_hash >= 0);
        let slot_pos = self.slot_pos(key_hash);
        let mut slot_value = self.read_slot(slot_pos)?;
        if slot_value <= INVALID_INDEX || slot_value >= header.index_count {
            slot_value = INVALID_INDEX;
        }
        let time_diff_secs = if header.begin_timestamp <= 0 || !header.has_entries() {
            0
        } else {
            ((store_timestamp - header.begin_timestamp) / 1000).clamp(0, i32::MAX as i64) as i32
        };
        let index = header.index_count;
        let entry = IndexEntry {
            key_hash,
            phy_offset,
            time_diff_secs,
            prev_index: slot_value,
        };
        let mut next = *header;
        if !header.has_entries() {
            next.begin_phy_offset = phy_offset;
            next.begin_timestamp = store_timestamp;
        }
        if slot_value == INVALID_INDEX {
            next.hash_slot_count += 1;
        }
        next.index_count += 1;
        next.end_phy_offset = phy_offset;
        next.end_timestamp = store_timestamp;
        // Entry, slot, header, in this order (see above), in one call.
        self.file
            .write_at_many(&[
                (self.entry_pos(index), &entry.encode()),
                (slot_pos, &index.to_be_bytes()),
                (0, &next.encode()),
            ])
            .map_err(io_err("write", &self.path))?;
        *header = next;
        self.dirty.store(true, Ordering::Release);
        Ok(true)
    }

    /// True if the file's time range overlaps `[begin, end]` (RocketMQ `isTimeMatched`).
    fn is_time_matched(&self, begin: i64, end: i64) -> bool {
        let h = self.header();
        (begin < h.begin_timestamp && end > h.end_timestamp)
            || (begin >= h.begin_timestamp && begin <= h.end_timestamp)
            || (end >= h.begin_timestamp && end <= h.end_timestamp)
    }

    /// Walks the bucket chain of `key`, collecting offsets of entries with the same hash whose
    /// (second-granular) time lies in `[begin, end]`. RocketMQ `selectPhyOffset`.
    fn select_phy_offsets(
        &self,
        out: &mut Vec<i64>,
        key: &str,
        max_num: usize,
        begin: i64,
        end: i64,
    ) -> Result<()> {
        let header = self.header.read().unwrap_or_else(|e| e.into_inner());
        let key_hash = index_key_hash(key);
        let slot_pos = self.slot_pos(key_hash);
        let slot_value = self.read_slot(slot_pos)?;
        if slot_value <= INVALID_INDEX || slot_value >= header.index_count {
            return Ok(());
        }
        let mut index = slot_value;
        let mut prev_phy_offset = i64::MAX;
        while out.len() < max_num {
            let entry = self.read_entry(index)?;
            // Pair of the checks in put_key: every entry of a chain hashes to this bucket and
            // the chain runs backwards in CommitLog order.
            if entry.key_hash < 0
                || self.slot_pos(entry.key_hash) != slot_pos
                || entry.phy_offset > prev_phy_offset
            {
                return Err(self.corrupt(
                    self.entry_pos(index),
                    format!("entry {index} {entry:?} breaks the chain of slot {slot_pos}"),
                ));
            }
            prev_phy_offset = entry.phy_offset;
            if entry.time_diff_secs < 0 {
                break;
            }
            let time_read = header.begin_timestamp + entry.time_diff_secs as i64 * 1000;
            let time_matched = time_read >= begin && time_read <= end;
            if entry.key_hash == key_hash && time_matched {
                out.push(entry.phy_offset);
            }
            // Chains only point to older entries; anything else ends the walk.
            if entry.prev_index <= INVALID_INDEX || entry.prev_index >= index || time_read < begin {
                break;
            }
            index = entry.prev_index;
        }
        Ok(())
    }

    /// After a crash that kept a prefix of the writes: if the slot of the entry just past
    /// indexCount already points at it (entry and slot written, header not), restore the slot
    /// to the entry's prevIndex, so the bucket's older chain is not cut off by the next put.
    fn repair_torn_put(&self) -> Result<bool> {
        let header = self.header();
        if header.index_count >= self.index_num as i32 {
            return Ok(false);
        }
        let entry = self.read_entry(header.index_count)?;
        if entry.key_hash < 0 {
            return Ok(false);
        }
        let slot_pos = self.slot_pos(entry.key_hash);
        if self.read_slot(slot_pos)? != header.index_count {
            return Ok(false);
        }
        let restored = if entry.prev_index > INVALID_INDEX && entry.prev_index < header.index_count
        {
            entry.prev_index
        } else {
            INVALID_INDEX
        };
        tracing::warn!(path = %self.path.display(), slot_pos, restored, "repairing slot of a torn index put");
        self.write_slot(slot_pos, restored)?;
        self.file
            .write_at(
                self.entry_pos(header.index_count),
                &[0u8; INDEX_ENTRY_SIZE as usize],
            )
            .map_err(io_err("write", &self.path))?;
        self.file.sync_all().map_err(io_err("sync", &self.path))?;
        Ok(true)
    }

    /// Removes entries whose phyOffset is `>= commitlog_offset` (a suffix, since entries follow
    /// CommitLog order), unlinking each from its bucket newest first. Returns the new header.
    fn truncate_entries_from(&self, commitlog_offset: i64) -> Result<IndexHeader> {
        let mut header = self.header.write().unwrap_or_else(|e| e.into_inner());
        // First index whose entry is at or beyond the cut.
        let (mut lo, mut hi) = (1i32, header.index_count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.read_entry(mid)?.phy_offset < commitlog_offset {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let keep = lo;
        if keep == header.index_count {
            return Ok(*header);
        }
        let mut next = *header;
        for index in (keep..header.index_count).rev() {
            let entry = self.read_entry(index)?;
            if entry.key_hash < 0 {
                return Err(self.corrupt(self.entry_pos(index), format!("bad entry {entry:?}")));
            }
            let slot_pos = self.slot_pos(entry.key_hash);
            let slot_value = self.read_slot(slot_pos)?;
            if slot_value == index {
                let restored = if entry.prev_index > INVALID_INDEX && entry.prev_index < index {
                    entry.prev_index
                } else {
                    INVALID_INDEX
                };
                self.write_slot(slot_pos, restored)?;
                if restored == INVALID_INDEX {
                    next.hash_slot_count -= 1;
                }
            } else {
                return Err(self.corrupt(
                    slot_pos,
                    format!("slot holds {slot_value}, expected newest entry {index} of its chain"),
                ));
            }
            self.file
                .write_at(self.entry_pos(index), &[0u8; INDEX_ENTRY_SIZE as usize])
                .map_err(io_err("write", &self.path))?;
        }
        next.index_count = keep;
        if keep > 1 {
            let last = self.read_entry(keep - 1)?;
            next.end_phy_offset = last.phy_offset;
            // Only second precision survives in the entry; the exact store time is lost.
            next.end_timestamp = next.begin_timestamp + last.time_diff_secs as i64 * 1000;
        } else {
            next.end_phy_offset = next.begin_phy_offset;
            next.end_timestamp = next.begin_timestamp;
        }
        assert!(next.hash_slot_count >= 0);
        self.write_header(&next)?;
        self.file.sync_all().map_err(io_err("sync", &self.path))?;
        *header = next;
        Ok(next)
    }

    fn flush(&self) -> Result<()> {
        if self.dirty.swap(false, Ordering::AcqRel) {
            if let Err(e) = self.file.sync_all() {
                self.dirty.store(true, Ordering::Release);
                return Err(io_err("sync", &self.path)(e));
            }
        }
        Ok(())
    }
}

/// Result of [`IndexService::query`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryOffsetResult {
    /// CommitLog offsets of candidate messages (hash and time matched), newest first.
    pub phy_offsets: Vec<i64>,
    pub index_last_update_timestamp: i64,
    pub index_last_update_phyoffset: i64,
}

/// All index files of a store, oldest first.
pub struct IndexService {
    disk: Arc<dyn Disk>,
    dir: PathBuf,
    hash_slot_num: u32,
    index_num: u32,
    files: RwLock<Vec<Arc<IndexFile>>>,
    /// Serializes `build_index` / `truncate_after` / `delete_expired` (file list changes), and
    /// caches what `build_index` needs per message.
    write_lock: Mutex<WriterCache>,
    /// The newest file wants a warm-up job ([`IndexService::warm_job`]); a plain load per put.
    warm_wanted: AtomicBool,
}

/// The writer's view of the newest file, kept under `write_lock` so indexing a message takes
/// no lock on the file list and no `Arc` clone. `None` until first needed and after any change
/// of the file list other than `build_index`'s own roll.
#[derive(Default)]
struct WriterCache {
    state: Option<WriterState>,
}

struct WriterState {
    /// The newest file, if any.
    last: Option<Arc<IndexFile>>,
    /// [`IndexService::last_indexed_commitlog_offset`].
    last_indexed: Option<i64>,
}

impl IndexService {
    /// Loads `<dir>/<yyyyMMddHHmmssSSS>` files. A file of the wrong size is an error naming it;
    /// other names are ignored with a warning. The newest file's possibly torn last put is
    /// repaired.
    pub fn open(
        disk: Arc<dyn Disk>,
        dir: &Path,
        max_hash_slot_num: u32,
        max_index_num: u32,
    ) -> Result<IndexService> {
        if max_hash_slot_num == 0 || max_index_num < 2 || max_index_num > i32::MAX as u32 {
            return Err(IndexError::BadSizes {
                max_hash_slot_num,
                max_index_num,
            });
        }
        let size = index_file_size(max_hash_slot_num, max_index_num);
        let mut files = Vec::new();
        for name in disk.list(dir).map_err(io_err("list", dir))? {
            let path = dir.join(&name);
            let Some(name_ms) = parse_index_file_name(&name) else {
                tracing::warn!(path = %path.display(), "ignoring non index file");
                continue;
            };
            let file = disk.open(&path).map_err(io_err("open", &path))?;
            if file.len() != size {
                return Err(IndexError::Corrupt {
                    path,
                    offset: file.len(),
                    reason: format!("length does not match configured index file size {size}"),
                });
            }
            let mut b = [0u8; INDEX_HEADER_SIZE as usize];
            file.read_at(0, &mut b).map_err(io_err("read", &path))?;
            let header = IndexHeader::decode(&b);
            if header.index_count > max_index_num as i32 || header.hash_slot_count < 0 {
                return Err(IndexError::Corrupt {
                    path,
                    offset: 32,
                    reason: format!("header {header:?} out of range"),
                });
            }
            let prefaults = file.supports_prefault();
            files.push(Arc::new(IndexFile {
                path,
                name_ms,
                file,
                hash_slot_num: max_hash_slot_num,
                index_num: max_index_num,
                header: RwLock::new(header),
                dirty: AtomicBool::new(false),
                warmed_to: AtomicU64::new(0),
                warming: AtomicBool::new(false),
                wants_warm: AtomicBool::new(false),
                prefaults,
            }));
        }
        // Names sort chronologically (fixed width digits); list() is sorted by name already.
        files.sort_by_key(|f| f.name_ms);
        if let Some(last) = files.last() {
            last.repair_torn_put()?;
        }
        Ok(IndexService {
            disk,
            dir: dir.to_path_buf(),
            hash_slot_num: max_hash_slot_num,
            index_num: max_index_num,
            files: RwLock::new(files),
            write_lock: Mutex::new(WriterCache::default()),
            warm_wanted: AtomicBool::new(false),
        })
    }

    fn files(&self) -> Vec<Arc<IndexFile>> {
        self.files.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn file_count(&self) -> usize {
        self.files.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Paths of the index files, oldest first.
    pub fn file_paths(&self) -> Vec<PathBuf> {
        self.files().iter().map(|f| f.path.clone()).collect()
    }

    /// CommitLog offset of the newest indexed message (None if nothing is indexed).
    /// `build_index` ignores messages at or below it.
    pub fn last_indexed_commitlog_offset(&self) -> Option<i64> {
        self.files
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .rev()
            .map(|f| f.header())
            .find(|h| h.has_entries())
            .map(|h| h.end_phy_offset)
    }

    /// Creates the next file; its header carries the previous file's end offset/time, as
    /// RocketMQ does. The full previous file is flushed first.
    fn create_file(&self, prev: Option<&Arc<IndexFile>>) -> Result<Arc<IndexFile>> {
        if let Some(p) = prev {
            p.flush()?;
        }
        let mut name_ms = crate::rt::now_ms();
        if let Some(p) = prev {
            name_ms = name_ms.max(p.name_ms + 1);
        }
        let path = self.dir.join(index_file_name(name_ms));
        self.disk
            .create_dir_all(&self.dir)
            .map_err(io_err("create dir", &self.dir))?;
        let size = index_file_size(self.hash_slot_num, self.index_num);
        let file = self
            .disk
            .create(&path, size)
            .map_err(io_err("create", &path))?;
        let mut header = IndexHeader::default();
        if let Some(p) = prev {
            let ph = p.header();
            header.begin_phy_offset = ph.end_phy_offset;
            header.end_phy_offset = ph.end_phy_offset;
            header.begin_timestamp = ph.end_timestamp;
            header.end_timestamp = ph.end_timestamp;
        }
        file.write_at(0, &header.encode())
            .map_err(io_err("write", &path))?;
        // Length and entry durable before any entry lands in it (see ConsumeQueue files).
        file.sync_all().map_err(io_err("sync", &path))?;
        self.disk
            .sync_dir(&self.dir)
            .map_err(io_err("sync dir", &self.dir))?;
        tracing::info!(path = %path.display(), "created index file");
        let prefaults = file.supports_prefault();
        Ok(Arc::new(IndexFile {
            path,
            name_ms,
            file,
            hash_slot_num: self.hash_slot_num,
            index_num: self.index_num,
            header: RwLock::new(header),
            dirty: AtomicBool::new(false),
            warmed_to: AtomicU64::new(0),
            warming: AtomicBool::new(false),
            wants_warm: AtomicBool::new(false),
            prefaults,
        }))
    }

    fn last_writable_file(&self) -> Result<Arc<IndexFile>> {
        let last = self
            .files
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .last()
            .cloned();
        match last {
            Some(f) if !f.is_full() => Ok(f),
            prev => {
                let f = self.create_file(prev.as_ref())?;
                self.files
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(f.clone());
                Ok(f)
            }
        }
    }

    /// Indexes `keys` (UNIQ_KEY and each KEYS token) of the message at `commitlog_offset`.
    /// Messages at or below [`IndexService::last_indexed_commitlog_offset`] are skipped
    /// (re-dispatch after recovery). Not durable until `flush`.
    pub fn build_index(
        &self,
        topic: &str,
        keys: &[&str],
        commitlog_offset: i64,
        store_timestamp: i64,
    ) -> Result<()> {
        let mut cache = self.write_lock.lock().unwrap_or_else(|e| e.into_inner());
        let state = cache.state.get_or_insert_with(|| WriterState {
            last: self
                .files
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .last()
                .cloned(),
            last_indexed: self.last_indexed_commitlog_offset(),
        });
        if state
            .last_indexed
            .is_some_and(|last| commitlog_offset <= last)
        {
            return Ok(());
        }
        let mut indexed = false;
        for key in keys.iter().filter(|k| !k.is_empty()) {
            let key_hash = index_key_hash_of(topic, key);
            loop {
                let file = match &state.last {
                    Some(f) => f,
                    None => state.last.insert(self.last_writable_file()?),
                };
                if file.put_key(key_hash, commitlog_offset, store_timestamp)? {
                    indexed = true;
                    break;
                }
                // Full: roll to the next file.
                state.last = Some(self.last_writable_file()?);
            }
        }
        if indexed {
            state.last_indexed = Some(commitlog_offset);
            if state.last.as_ref().is_some_and(|f| {
                f.wants_warm.load(Ordering::Relaxed) && !f.warming.load(Ordering::Relaxed)
            }) {
                self.warm_wanted.store(true, Ordering::Release);
            }
        }
        Ok(())
    }

    /// When the newest file's writer nears the end of what is mapped in: a job that maps in
    /// the next [`INDEX_WARM_AHEAD_BYTES`] of entries (and, the first time, the slot table)
    /// with `SegmentFile::prefault`. Run it off the async workers; None on disks without
    /// mappings, or when nothing is due or a job runs.
    pub fn warm_job(&self) -> Option<Box<dyn FnOnce() + Send>> {
        if !self.warm_wanted.load(Ordering::Acquire) {
            return None;
        }
        self.warm_wanted.store(false, Ordering::Release);
        let file = self
            .files
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .last()
            .cloned()?;
        if !file.prefaults
            || file
                .warming
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
        {
            return None;
        }
        file.wants_warm.store(false, Ordering::Relaxed);
        let count = file
            .header()
            .index_count
            .clamp(1, file.index_num as i32 - 1);
        let from = file.warmed_to.load(Ordering::Acquire);
        let to = (file.entry_pos(count) + INDEX_WARM_AHEAD_BYTES).min(file.file.len());
        Some(Box::new(move || {
            if to > from {
                if let Err(e) = file.file.prefault(from, to - from, true) {
                    tracing::debug!(path = %file.path.display(), error = %e, "index prefault failed");
                }
            }
            file.warmed_to.fetch_max(to, Ordering::AcqRel);
            file.warming.store(false, Ordering::Release);
        }))
    }

    /// CommitLog offsets of messages whose `<topic>#<key>` hash matches, stored within
    /// `[begin_timestamp, end_timestamp]` (second granularity, as RocketMQ), newest file first,
    /// at most `max_num`. Candidates may be hash collisions: re-check the key on the message.
    pub fn query(
        &self,
        topic: &str,
        key: &str,
        max_num: usize,
        begin_timestamp: i64,
        end_timestamp: i64,
    ) -> Result<QueryOffsetResult> {
        let files = self.files();
        let mut result = QueryOffsetResult::default();
        if let Some(last) = files.last() {
            let h = last.header();
            result.index_last_update_timestamp = h.end_timestamp;
            result.index_last_update_phyoffset = h.end_phy_offset;
        }
        let idx_key = build_key(topic, key);
        for f in files.iter().rev() {
            if result.phy_offsets.len() >= max_num {
                break;
            }
            if f.is_time_matched(begin_timestamp, end_timestamp) {
                f.select_phy_offsets(
                    &mut result.phy_offsets,
                    &idx_key,
                    max_num,
                    begin_timestamp,
                    end_timestamp,
                )?;
            }
            if f.header().begin_timestamp < begin_timestamp {
                break;
            }
        }
        Ok(result)
    }

    /// Removes every entry whose CommitLog offset is `>= commitlog_offset` (after CommitLog
    /// recovery truncated the log there, or before re-dispatching from there): later files are
    /// deleted, the straddling file is cut exactly, its slot chains unlinked. Durable on return.
    pub fn truncate_after(&self, commitlog_offset: i64) -> Result<()> {
        let mut cache = self.write_lock.lock().unwrap_or_else(|e| e.into_inner());
        cache.state = None;
        let mut removed = false;
        loop {
            let last = self
                .files
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .last()
                .cloned();
            let Some(last) = last else { break };
            let h = last.header();
            if !h.has_entries() || h.begin_phy_offset >= commitlog_offset {
                tracing::info!(path = %last.path.display(), commitlog_offset, "removing index file beyond the log");
                self.disk
                    .remove_file(&last.path)
                    .map_err(io_err("remove", &last.path))?;
                self.files.write().unwrap_or_else(|e| e.into_inner()).pop();
                removed = true;
                continue;
            }
            if h.end_phy_offset >= commitlog_offset {
                let next = last.truncate_entries_from(commitlog_offset)?;
                tracing::info!(path = %last.path.display(), commitlog_offset, index_count = next.index_count, "truncated index file");
                assert!(next.end_phy_offset < commitlog_offset);
            }
            break;
        }
        if removed {
            self.disk
                .sync_dir(&self.dir)
                .map_err(io_err("sync dir", &self.dir))?;
        }
        Ok(())
    }

    /// Syncs files written since their last flush. Returns the end timestamp of the newest
    /// file (for the checkpoint's `indexMsgTimestamp`), None without entries.
    /// Treats every file as dirty, so the next flush syncs it whole: after an abnormal exit
    /// the loaded pages may exist only in the page cache.
    pub fn mark_dirty(&self) {
        for f in self.files() {
            f.dirty.store(true, Ordering::Release);
        }
    }

    pub fn flush(&self) -> Result<Option<i64>> {
        let files = self.files();
        for f in &files {
            f.flush()?;
        }
        Ok(files
            .iter()
            .rev()
            .map(|f| f.header())
            .find(|h| h.has_entries())
            .map(|h| h.end_timestamp))
    }

    /// Deletes files (never the newest) whose endPhyOffset is below `commitlog_min_offset`.
    /// Returns how many.
    pub fn delete_expired(&self, commitlog_min_offset: i64) -> Result<usize> {
        let mut cache = self.write_lock.lock().unwrap_or_else(|e| e.into_inner());
        cache.state = None;
        let files = self.files();
        let mut deleted = 0;
        for f in files.iter().take(files.len().saturating_sub(1)) {
            if f.header().end_phy_offset >= commitlog_min_offset {
                break;
            }
            self.disk
                .remove_file(&f.path)
                .map_err(io_err("remove", &f.path))?;
            deleted += 1;
        }
        if deleted > 0 {
            self.files
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .drain(..deleted);
            self.disk
                .sync_dir(&self.dir)
                .map_err(io_err("sync dir", &self.dir))?;
        }
        Ok(deleted)
    }
}

#[cfg(test)]
#[path = "index_file_test.rs"]
mod tests;
