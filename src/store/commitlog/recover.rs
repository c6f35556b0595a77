//! CommitLog recovery at start (RocketMQ §4.6, reading less): the CRC scan starts at the file
//! holding the checkpoint's CommitLog safe point (everything before it was durable; without
//! that Apogee field, RocketMQ's rule: normal the 3rd last file, abnormal the newest file whose
//! first entry is older than the checkpoint's minimum timestamp) and runs until the first
//! invalid entry; the dirty tail is zeroed and later files deleted; ConsumeQueues and index are
//! truncated to the valid end and only what they lack is re-dispatched, from the checkpoint's
//! dispatch safe point (earlier if the ConsumeQueues hold less); the queue offset table is
//! seeded from the ConsumeQueues. Progress (files, bytes, rate) is logged.

use crate::store::checkpoint::CheckpointData;
use crate::store::consume_queue::ConsumeQueueStore;
use crate::store::dispatch::{DispatchError, DispatchMode, Dispatcher};
use crate::store::error::StoreError;
use crate::store::key_index::KeyIndex;
use crate::store::DebugBugs;

use super::{CommitLog, EntryAt, EntryKind};

/// What recovery found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryOutcome {
    pub abnormal: bool,
    /// One past the last valid entry.
    pub valid_end: u64,
    /// CommitLog offset where the scan started.
    pub scan_start: u64,
    /// CommitLog offset where re-dispatch started (before any fallback to the first file).
    pub dispatch_start: u64,
    pub files_scanned: usize,
    pub bytes_scanned: u64,
    pub entries_scanned: u64,
    pub files_deleted: usize,
    pub entries_dispatched: usize,
    /// Bytes re-written during abnormal recovery (possibly unflushed region).
    pub bytes_rewritten: u64,
    /// Why the scan stopped (None when it ran to the end of the last file).
    pub stop_reason: Option<String>,
}

/// Inputs that are not part of the log itself.
pub struct RecoveryContext<'a> {
    pub cq: &'a ConsumeQueueStore,
    pub index: &'a dyn KeyIndex,
    pub dispatcher: &'a Dispatcher,
    pub checkpoint: CheckpointData,
    pub abnormal: bool,
    pub check_crc: bool,
    pub debug_bugs: DebugBugs,
}

/// Bytes of the dirty tail zeroed beyond which, after this many zero bytes in a row, the rest
/// of a large file is assumed clean (writes only ever went forward from the old end).
const ZERO_RUN_ENOUGH_BYTES: u64 = 4 * 1024 * 1024;
const ZERO_CHUNK_BYTES: u64 = 64 * 1024;
/// Bytes of a file mapped in at once ahead of the recovery scan.
const SCAN_PREFAULT_BYTES: u64 = 64 * 1024 * 1024;

impl CommitLog {
    /// The file the CRC scan starts from. With the checkpoint's CommitLog safe point (an
    /// Apogee field): the file holding it, since every byte before it was durable. Without it
    /// (a RocketMQ checkpoint): RocketMQ's rule (normal: the 3rd last file; abnormal: the
    /// newest file whose first entry is older than the checkpoint's minimum timestamp).
    fn choose_scan_start(&self, ctx: &RecoveryContext<'_>) -> Result<usize, StoreError> {
        let files = self.files.files();
        let n = files.len();
        let safe = ctx.checkpoint.commitlog_flushed_offset.max(0) as u64;
        if safe > 0 {
            if let Some(i) = files
                .iter()
                .position(|f| f.start_offset <= safe && safe < f.end_offset())
            {
                return Ok(i);
            }
            match (files.first(), files.last()) {
                (Some(first), _) if safe < first.start_offset => return Ok(0),
                // Safe point at the very end of the last file: it is full and durable.
                (_, Some(last)) if safe == last.end_offset() => return Ok(n - 1),
                _ => tracing::warn!(
                    safe,
                    max = files.last().map(|f| f.end_offset()).unwrap_or(0),
                    "checkpoint safe point beyond the CommitLog files; choosing the scan start by timestamp"
                ),
            }
        }
        if !ctx.abnormal {
            return Ok(n.saturating_sub(3));
        }
        let min_ts = ctx.checkpoint.min_timestamp();
        if min_ts > 0 {
            for i in (0..n).rev() {
                if let EntryAt::Message(bytes) =
                    self.read_entry_at(files[i].start_offset, ctx.check_crc)?
                {
                    let ts = crate::message::entry::decode_entry(&bytes, false)
                        .map(|(m, _)| m.store_timestamp)
                        .unwrap_or(i64::MAX);
                    if ts <= min_ts {
                        return Ok(i);
                    }
                }
            }
        }
        Ok(0)
    }

    /// Where re-dispatch starts: the checkpoint's dispatch safe point (every entry before it
    /// has its ConsumeQueue unit and index keys durable), else the first file; earlier when the
    /// ConsumeQueues hold less than that (lost or deleted files). Call after the ConsumeQueues
    /// were truncated to `valid_end`.
    fn choose_dispatch_start(
        &self,
        ctx: &RecoveryContext<'_>,
        valid_end: u64,
    ) -> Result<u64, StoreError> {
        let first_start = self.files.min_offset();
        let safe = ctx.checkpoint.dispatch_flushed_offset.max(0) as u64;
        // Zero means unknown (a RocketMQ checkpoint) or nothing proven: replay everything.
        let mut start = if safe > 0 && safe.min(valid_end) >= first_start {
            safe.min(valid_end)
        } else {
            first_start
        };
        let cq_ref = ctx.cq.max_commitlog_offset_referenced().max(0) as u64;
        if cq_ref < start {
            // Resume right after the last unit when it ends on an entry boundary (entries
            // without units, e.g. prepared transactions, may follow it); else from its file.
            start = if cq_ref < first_start {
                first_start
            } else if cq_ref == valid_end
                || matches!(
                    self.read_entry_at(cq_ref, false)?,
                    EntryAt::Message(_) | EntryAt::Blank
                )
            {
                cq_ref
            } else {
                self.files
                    .find(cq_ref)
                    .map(|f| f.start_offset)
                    .unwrap_or(first_start)
            };
        }
        Ok(start.max(first_start))
    }

    /// Runs recovery. Afterwards the log, ConsumeQueues and index agree and are durable.
    pub fn recover(&self, ctx: &RecoveryContext<'_>) -> Result<RecoveryOutcome, StoreError> {
        let started = crate::rt::now();
        let mut out = RecoveryOutcome {
            abnormal: ctx.abnormal,
            ..RecoveryOutcome::default()
        };
        let files = self.files.files();
        tracing::info!(
            abnormal = ctx.abnormal,
            files = files.len(),
            "CommitLog recovery starting"
        );
        let mut last_store_timestamp = 0;
        if files.is_empty() {
            out.valid_end = 0;
        } else {
            let start_index = self.choose_scan_start(ctx)?;
            let mut offset = files[start_index].start_offset;
            // Entries stored after the last successful flush recorded in the checkpoint (with
            // RocketMQ's 3 s of slack) may exist only in the page cache.
            let physic_ts = ctx.checkpoint.physic_msg_timestamp;
            let maybe_unflushed_ts = if physic_ts > 0 {
                physic_ts - 3000
            } else {
                i64::MIN
            };
            let mut rewrite_from: Option<u64> = None;
            let safe = ctx.checkpoint.commitlog_flushed_offset.max(0) as u64;
            if safe > 0 && safe >= offset {
                // Exact: nothing before the safe point can be unflushed.
                rewrite_from = Some(safe);
            }
            out.scan_start = offset;
            let mut current_file = usize::MAX;
            let mut buf = Vec::new();
            let mut populated_to = 0u64;
            loop {
                let Some(file) = self.files.find(offset) else {
                    break; // ran past the last file: the log is full to its end
                };
                if file.start_offset != current_file as u64 || current_file == usize::MAX {
                    current_file = file.start_offset as usize;
                    out.files_scanned += 1;

                    let secs = started.elapsed().as_secs_f64();
                    tracing::info!(
                        path = %file.path.display(),
                        files_done = out.files_scanned - 1,
                        bytes_done = out.bytes_scanned,
                        mb_per_s = format!("{:.1}", out.bytes_scanned as f64 / 1_048_576.0 / secs.max(1e-9)),
                        "recovering CommitLog file"
                    );
                }
                if offset >= populated_to {
                    // Map the next stretch in with one call instead of a fault per page
                    // (bounded: past the end of data it would only map zeros).
                    let from = offset - file.start_offset;
                    let len = SCAN_PREFAULT_BYTES.min(file.size - from);
                    if let Err(e) = file.file.prefault(from, len, false) {
                        tracing::debug!(path = %file.path.display(), error = %e, "prefault failed");
                    }
                    populated_to = offset + len;
                }
                match self.read_entry_into(offset, ctx.check_crc, &mut buf)? {
                    EntryKind::Message => {
                        if let Ok((m, _)) = crate::message::entry::parse_entry(&buf, false) {
                            last_store_timestamp = m.store_timestamp;
                            if rewrite_from.is_none() && m.store_timestamp >= maybe_unflushed_ts {
                                rewrite_from = Some(offset);
                            }
                        }
                        offset += buf.len() as u64;
                        out.bytes_scanned += buf.len() as u64;
                        out.entries_scanned += 1;
                    }
                    EntryKind::Blank => {
                        out.bytes_scanned += file.end_offset() - offset;
                        offset = file.end_offset();
                    }
                    EntryKind::Invalid(reason) => {
                        if reason != "zeros (end of data)" {
                            tracing::warn!(
                                path = %file.path.display(),
                                file_pos = offset - file.start_offset,
                                %reason,
                                "CommitLog recovery stops at an invalid entry"
                            );
                        }
                        out.stop_reason = Some(reason);
                        break;
                    }
                }
            }
            out.valid_end = offset;
            out.files_deleted = self.truncate_to(offset)?;
            // The scanned region may live only in the page cache (process crash): make it
            // durable before new entries are acknowledged after it.
            if ctx.abnormal {
                // After a failed fsync Linux marks the dirty pages clean while they may never
                // have reached the disk; a restarted process still reads them from the cache
                // and a plain fsync would not write them again. Re-write what may be
                // unflushed so the fsync below really persists it.
                let from = rewrite_from.unwrap_or(offset);
                out.bytes_rewritten = offset.saturating_sub(from);
                self.rewrite_region(from, offset)?;
            }
            self.sync_region(out.scan_start, offset)?;
        }
        ctx.cq
            .truncate_dirty(out.valid_end as i64)
            .map_err(StoreError::from)?;
        ctx.index.truncate_after(out.valid_end as i64)?;
        if ctx.abnormal {
            // Derived data loaded after a crash may be only in the page cache: only what the
            // checkpoint's dispatch safe point covers is known durable. The flushes below
            // must really persist the rest before a new checkpoint vouches for it.
            ctx.cq
                .redirty_from(ctx.checkpoint.dispatch_flushed_offset)
                .map_err(StoreError::from)?;
            ctx.index.mark_dirty();
        }
        self.set_flushed(out.valid_end, last_store_timestamp);
        {
            let mut st = self.lock_append();
            st.last_end_offset = out.valid_end;
            st.last_store_timestamp = last_store_timestamp;
        }

        // Re-dispatch what the ConsumeQueues and index lack.
        let first_start = self.files.min_offset();
        out.dispatch_start = if out.valid_end == 0 && self.files.count() == 0 {
            0
        } else {
            self.choose_dispatch_start(ctx, out.valid_end)?
        };
        let mode = if out.dispatch_start == first_start {
            DispatchMode::ReplayFromStart
        } else {
            DispatchMode::ReplayFromMiddle
        };
        tracing::info!(
            dispatch_start = out.dispatch_start,
            bytes = out.valid_end.saturating_sub(out.dispatch_start),
            "re-dispatching the CommitLog tail to ConsumeQueues and index"
        );
        ctx.dispatcher.set_reput_offset(out.dispatch_start);
        out.entries_dispatched = match ctx.dispatcher.dispatch_until(
            self,
            ctx.cq,
            ctx.index,
            out.valid_end,
            mode,
        ) {
            Ok(n) => n,
            Err(DispatchError::ReplayGap {
                topic,
                queue_id,
                queue_offset,
                cq_max_offset,
            }) => {
                tracing::warn!(
                    %topic, queue_id, queue_offset, cq_max_offset,
                    "ConsumeQueue lacks units older than the replay start; replaying the whole CommitLog"
                );
                ctx.dispatcher.set_reput_offset(first_start);
                match ctx.dispatcher.dispatch_until(
                    self,
                    ctx.cq,
                    ctx.index,
                    out.valid_end,
                    DispatchMode::ReplayFromStart,
                ) {
                    Ok(n) => n,
                    Err(DispatchError::Store(e)) => return Err(e),
                    Err(DispatchError::ReplayGap { .. }) => {
                        unreachable!("ReplayFromStart never reports gaps")
                    }
                }
            }
            Err(DispatchError::Store(e)) => return Err(e),
        };
        ctx.cq
            .correct_min_offset(first_start as i64)
            .map_err(StoreError::from)?;
        ctx.cq.flush(0).map_err(StoreError::from)?;
        ctx.index.flush()?;

        let mut table = ctx.cq.queue_offset_table();
        if ctx.debug_bugs.reuse_queue_offset_after_recovery {
            for next in table.values_mut() {
                *next = (*next - 1).max(0);
            }
        }
        self.lock_append().queue_offsets = table.into();

        let elapsed = started.elapsed().as_secs_f64();
        let mb_per_s = if elapsed > 0.0 {
            out.bytes_scanned as f64 / 1_048_576.0 / elapsed
        } else {
            0.0
        };
        tracing::info!(
            valid_end = out.valid_end,
            files = out.files_scanned,
            bytes = out.bytes_scanned,
            entries = out.entries_scanned,
            dispatched = out.entries_dispatched,
            deleted_files = out.files_deleted,
            rewritten = out.bytes_rewritten,
            mb_per_s = format!("{mb_per_s:.1}"),
            "CommitLog recovery done"
        );
        Ok(out)
    }

    /// Sets write positions so the log ends at `valid_end`: zeroes the dirty tail of the file
    /// holding it, deletes later files. Returns the files deleted.
    fn truncate_to(&self, valid_end: u64) -> Result<usize, StoreError> {
        let files = self.files.files();
        // The file holding valid_end: one starting exactly there, else the one containing it,
        // else (valid_end at the end of the last file) the last file, which stays full.
        let holder = files
            .iter()
            .find(|f| f.start_offset <= valid_end && valid_end < f.end_offset())
            .cloned();
        let Some(holder) = holder else {
            for f in &files {
                f.set_wrote_pos(f.size);
                f.set_flushed_pos(f.size);
            }
            return Ok(0);
        };
        for f in files.iter().filter(|f| f.end_offset() <= valid_end) {
            f.set_wrote_pos(f.size);
            f.set_flushed_pos(f.size);
        }
        let file_pos = valid_end - holder.start_offset;
        self.zero_tail(&holder, file_pos)?;
        holder.set_wrote_pos(file_pos);
        holder.set_flushed_pos(file_pos);
        self.files.remove_from(holder.end_offset())
    }

    fn zero_tail(&self, file: &super::MappedFile, from: u64) -> Result<(), StoreError> {
        let io = |op: &'static str| {
            let path = file.path.clone();
            move |source| StoreError::Io { op, path, source }
        };
        let mut pos = from;
        let mut zero_run = 0u64;
        let mut chunk = vec![0u8; ZERO_CHUNK_BYTES as usize];
        let zeros = vec![0u8; ZERO_CHUNK_BYTES as usize];
        let mut dirty_end = from;
        while pos < file.size && zero_run < ZERO_RUN_ENOUGH_BYTES {
            let n = (file.size - pos).min(ZERO_CHUNK_BYTES) as usize;
            file.file
                .read_at(pos, &mut chunk[..n])
                .map_err(io("read"))?;
            if chunk[..n].iter().all(|b| *b == 0) {
                zero_run += n as u64;
            } else {
                zero_run = 0;
                file.file
                    .write_at(pos, &zeros[..n])
                    .map_err(io("zero dirty tail"))?;
                dirty_end = pos + n as u64;
            }
            pos += n as u64;
        }
        if dirty_end > from {
            tracing::warn!(
                path = %file.path.display(),
                from,
                to = dirty_end,
                "zeroed the dirty tail of a CommitLog file"
            );
            file.file
                .sync_range(from, dirty_end - from)
                .map_err(io("fsync"))?;
        }
        Ok(())
    }

    /// Reads `[from, to)` and writes the same bytes back, dirtying the pages again.
    fn rewrite_region(&self, from: u64, to: u64) -> Result<(), StoreError> {
        let mut buf = vec![0u8; ZERO_CHUNK_BYTES as usize];
        for f in self.files.files() {
            if f.end_offset() <= from || f.start_offset >= to {
                continue;
            }
            let mut pos = from.max(f.start_offset) - f.start_offset;
            let end = to.min(f.end_offset()) - f.start_offset;
            while pos < end {
                let n = (end - pos).min(ZERO_CHUNK_BYTES) as usize;
                f.read_at(pos, &mut buf[..n])?;
                f.file
                    .write_at(pos, &buf[..n])
                    .map_err(|source| StoreError::Io {
                        op: "rewrite",
                        path: f.path.clone(),
                        source,
                    })?;
                pos += n as u64;
            }
        }
        Ok(())
    }

    fn sync_region(&self, from: u64, to: u64) -> Result<(), StoreError> {
        for f in self.files.files() {
            if f.end_offset() <= from || f.start_offset >= to {
                continue;
            }
            let a = from.max(f.start_offset) - f.start_offset;
            let b = to.min(f.end_offset()) - f.start_offset;
            if b > a {
                f.file
                    .sync_range(a, b - a)
                    .map_err(|source| StoreError::Io {
                        op: "fsync",
                        path: f.path.clone(),
                        source,
                    })?;
            }
        }
        Ok(())
    }
}
