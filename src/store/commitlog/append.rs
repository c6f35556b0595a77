//! Appending to the CommitLog: messages are checked and measured (and their body CRC computed)
//! outside the lock; under the append lock the store assigns the CommitLog offset, queue
//! offsets (per topic-queue table) and the store timestamp, writes the BLANK filler when the
//! batch does not fit the current file, and encodes the batch straight into the file (in place
//! in a mapping: no staging buffer) in one write.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::message::entry::{self, EntryFields};
use crate::message::sysflag;
use crate::store::error::StoreError;
use crate::store::MessageToStore;

use super::{CommitLog, END_FILE_MIN_BLANK_LENGTH};

/// A message checked and measured before the append lock; the lock fills in its offsets and
/// store time, then encodes it.
#[derive(Debug, Clone)]
pub struct PreparedEntry<'a> {
    /// Queue offset, CommitLog offset and store timestamp are set by [`CommitLog::try_append`].
    pub fields: EntryFields<'a>,
    pub size: usize,
    pub body_crc: i32,
}

impl PreparedEntry<'_> {
    /// SYSFLAG as stored (the encoder sets the IPv6 host bits from the addresses).
    pub fn stored_sys_flag(&self) -> i32 {
        let mut f = self.fields.sys_flag & !(sysflag::BORNHOST_V6 | sysflag::STOREHOSTADDRESS_V6);
        if self.fields.born_host.is_ipv6() {
            f |= sysflag::BORNHOST_V6;
        }
        if self.fields.store_host.is_ipv6() {
            f |= sysflag::STOREHOSTADDRESS_V6;
        }
        f
    }
}

/// Why an append did not happen. Nothing was acknowledged in any case.
#[derive(Debug)]
pub enum AppendError {
    /// Body too large, properties too long, batch too large for a file, mixed batch.
    MessageIllegal(String),
    PropertiesSizeExceeded(String),
    /// ENOSPC creating or writing a file: the log is untouched past its previous end.
    DiskFull(String),
    /// Any other I/O failure: the store must stop accepting writes.
    Io(StoreError),
}

/// Where an append landed (each entry's offsets are in its [`PreparedEntry::fields`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    pub wrote_offset: u64,
    pub wrote_bytes: u64,
    pub store_timestamp: i64,
}

fn unspecified_host() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)
}

/// Checks one message (sizes, topic, queue id) and measures its entry, with zero offsets and
/// store time; computes its body CRC here, outside the append lock.
pub fn prepare_message(
    msg: &MessageToStore,
    max_message_size: usize,
    default_store_host: Option<SocketAddr>,
) -> Result<PreparedEntry<'_>, AppendError> {
    if msg.body.len() > max_message_size {
        return Err(AppendError::MessageIllegal(format!(
            "message body size {} exceeds maxMessageSize {max_message_size}",
            msg.body.len()
        )));
    }
    if msg.properties.len() > entry::MAX_PROPERTIES_LEN {
        return Err(AppendError::PropertiesSizeExceeded(format!(
            "message properties length {} exceeds {}",
            msg.properties.len(),
            entry::MAX_PROPERTIES_LEN
        )));
    }
    if msg.topic.is_empty() || msg.topic.len() > u16::MAX as usize {
        return Err(AppendError::MessageIllegal(format!(
            "topic length {} out of range",
            msg.topic.len()
        )));
    }
    if msg.queue_id < 0 {
        return Err(AppendError::MessageIllegal(format!(
            "negative queue id {}",
            msg.queue_id
        )));
    }
    let fields = EntryFields {
        queue_id: msg.queue_id,
        flag: msg.flag,
        queue_offset: 0,
        commitlog_offset: 0,
        sys_flag: msg.sys_flag,
        born_timestamp: msg.born_timestamp,
        born_host: msg.born_host.unwrap_or_else(unspecified_host),
        store_timestamp: 0,
        store_host: msg
            .store_host
            .or(default_store_host)
            .unwrap_or_else(unspecified_host),
        reconsume_times: msg.reconsume_times,
        prepared_transaction_offset: msg.prepared_transaction_offset,
        body: &msg.body,
        topic: &msg.topic,
        properties: msg.properties.as_bytes(),
    };
    let size = entry::encoded_size(&fields).map_err(|e| match e {
        entry::EncodeError::PropertiesTooLong(_) => {
            AppendError::PropertiesSizeExceeded(e.to_string())
        }
        other => AppendError::MessageIllegal(other.to_string()),
    })?;
    Ok(PreparedEntry {
        body_crc: entry::body_crc(&msg.body),
        fields,
        size,
    })
}

/// PREPARED and ROLLBACK transactional entries take no queue offset (RocketMQ stores 0 and
/// leaves the topic-queue table alone; they are never dispatched to a ConsumeQueue).
pub fn takes_queue_offset(sys_flag: i32) -> bool {
    let tx = sysflag::transaction_type(sys_flag);
    tx == sysflag::TRANSACTION_NOT_TYPE || tx == sysflag::TRANSACTION_COMMIT_TYPE
}

fn is_enospc(e: &StoreError) -> bool {
    matches!(e, StoreError::Io { source, .. } if source.raw_os_error() == Some(libc::ENOSPC))
}

fn classify(e: StoreError) -> AppendError {
    if is_enospc(&e) {
        AppendError::DiskFull(e.to_string())
    } else {
        AppendError::Io(e)
    }
}

impl CommitLog {
    /// Checks a batch before the append lock: one topic-queue, fits one file. Returns its size.
    pub fn check_batch(&self, batch: &[PreparedEntry<'_>]) -> Result<u64, AppendError> {
        assert!(!batch.is_empty(), "empty append batch");
        if batch.len() > 1 {
            let (t, q) = (batch[0].fields.topic, batch[0].fields.queue_id);
            if batch
                .iter()
                .any(|e| e.fields.topic != t || e.fields.queue_id != q)
            {
                return Err(AppendError::MessageIllegal(
                    "a batch must target one topic and queue".into(),
                ));
            }
        }
        let total: u64 = batch.iter().map(|e| e.size as u64).sum();
        let file_size = self.file_size();
        if total + END_FILE_MIN_BLANK_LENGTH > file_size {
            return Err(AppendError::MessageIllegal(format!(
                "{total} bytes cannot fit a {file_size}-byte CommitLog file"
            )));
        }
        Ok(total)
    }

    /// Appends `batch` (all entries of one topic-queue when more than one) contiguously in one
    /// file with consecutive queue offsets. `clock_ms` (`rt::now_ms`) is read under the lock.
    /// Blocking when a new file must be created; the store's put path uses [`Self::try_append`]
    /// and [`Self::make_room`] to keep that off the async workers.
    pub fn append(
        &self,
        batch: &mut [PreparedEntry<'_>],
        clock_ms: &dyn Fn() -> i64,
    ) -> Result<Appended, AppendError> {
        let total = self.check_batch(batch)?;
        loop {
            if let Some(appended) = self.try_append(batch, total, clock_ms)? {
                return Ok(appended);
            }
            self.make_room(total)?;
        }
    }

    /// Ensures the last file can take `total` more bytes: writes the BLANK filler into a file
    /// too full for them and creates the next file (file creation and its fsyncs: blocking).
    pub fn make_room(&self, total: u64) -> Result<(), AppendError> {
        let _st = self.lock_append();
        let file = match self.files.last() {
            Some(f) if !f.is_full() => f,
            last => {
                let start = last.map(|f| f.end_offset()).unwrap_or(0);
                self.files.create_next(start).map_err(classify)?;
                return Ok(());
            }
        };
        let remaining = file.size - file.wrote_pos();
        assert!(
            remaining >= END_FILE_MIN_BLANK_LENGTH,
            "file tail too short for a blank"
        );
        if total + END_FILE_MIN_BLANK_LENGTH <= remaining {
            return Ok(()); // another put made room meanwhile
        }
        // Fill the rest of the file: the blank says "skip to the next file".
        let mut blank = [0u8; 8];
        blank[..4].copy_from_slice(&(remaining as i32).to_be_bytes());
        blank[4..].copy_from_slice(&entry::BLANK_MAGIC_CODE.to_be_bytes());
        let pos = file.wrote_pos();
        self.fence_zero_fill(file.start_offset + pos + blank.len() as u64);
        file.file.write_at(pos, &blank).map_err(|source| {
            classify(StoreError::Io {
                op: "write blank",
                path: file.path.clone(),
                source,
            })
        })?;
        file.set_wrote_pos(file.size);
        self.files
            .create_next(file.end_offset())
            .map_err(classify)?;
        Ok(())
    }

    /// Appends `batch` (`total` = [`Self::check_batch`]'s answer) if the last file has room for
    /// it; `Ok(None)` (nothing written) when a new file is needed first ([`Self::make_room`]).
    /// Never blocks on more than the append lock and encoding into the mapping, so the put path
    /// calls it on the async task. On success each entry's fields hold its offsets and time.
    pub fn try_append(
        &self,
        batch: &mut [PreparedEntry<'_>],
        total: u64,
        clock_ms: &dyn Fn() -> i64,
    ) -> Result<Option<Appended>, AppendError> {
        debug_assert_eq!(
            total,
            batch.iter().map(|e| e.size as u64).sum::<u64>(),
            "total is the batch's size"
        );
        let mut st = self.lock_append();
        // The last file changes only under the append lock (we hold it); retention never
        // removes it.
        self.files.with_last(|file| {
            let file = match file {
                Some(f) if f.size - f.wrote_pos() >= total + END_FILE_MIN_BLANK_LENGTH => f,
                _ => return Ok(None),
            };
            self.append_to(&mut st, file, batch, total, clock_ms)
                .map(Some)
        })
    }

    /// The part of [`Self::try_append`] once a file with room is found.
    fn append_to(
        &self,
        st: &mut super::AppendState,
        file: &super::MappedFile,
        batch: &mut [PreparedEntry<'_>],
        total: u64,
        clock_ms: &dyn Fn() -> i64,
    ) -> Result<Appended, AppendError> {
        // Read under the lock so store timestamps follow CommitLog order (as far as the
        // clock allows).
        let store_timestamp = clock_ms();
        let file_pos = file.wrote_pos();
        let wrote_offset = file.start_offset + file_pos;
        let (topic, queue_id) = (batch[0].fields.topic, batch[0].fields.queue_id);
        // One lookup: the queue's slot is updated in place (a new queue is inserted below, once).
        let slot = st.queue_offsets.get_mut(topic, queue_id);
        let first_queue_offset = slot.as_deref().copied().unwrap_or(0);
        let mut next_queue_offset = first_queue_offset;
        let mut entry_offset = wrote_offset;
        for e in batch.iter_mut() {
            e.fields.queue_offset = if takes_queue_offset(e.fields.sys_flag) {
                next_queue_offset += 1;
                next_queue_offset - 1
            } else {
                0
            };
            e.fields.commitlog_offset = entry_offset as i64;
            e.fields.store_timestamp = store_timestamp;
            entry_offset += e.size as u64;
        }
        assert_eq!(entry_offset - wrote_offset, total, "batch size");
        // The whole batch is one write, so a failure never leaves part of it behind; on a
        // mapping the entries are encoded in place.
        let batch_ref = &*batch;
        self.fence_zero_fill(wrote_offset + total);
        file.file
            .write_in_place(file_pos, total as usize, &mut |buf: &mut [u8]| {
                let mut pos = 0;
                for e in batch_ref {
                    entry::encode_entry_into(&e.fields, e.body_crc, &mut buf[pos..pos + e.size]);
                    pos += e.size;
                }
            })
            .map_err(|source| {
                classify(StoreError::Io {
                    op: "write",
                    path: file.path.clone(),
                    source,
                })
            })?;
        // Readers see nothing of the batch until the write position moves.
        file.set_wrote_pos(file_pos + total);
        if next_queue_offset != first_queue_offset {
            match slot {
                Some(next) => *next = next_queue_offset,
                None => st.queue_offsets.set(topic, queue_id, next_queue_offset),
            }
        }
        st.last_store_timestamp = store_timestamp;
        st.last_end_offset = wrote_offset + total;
        debug_assert_eq!(
            file.start_offset + file.wrote_pos(),
            wrote_offset + total,
            "the write position moved by the batch"
        );
        Ok(Appended {
            wrote_offset,
            wrote_bytes: total,
            store_timestamp,
        })
    }

    /// Appends bytes already laid out as entries at exactly `commitlog_offset` (replication
    /// from a master). The bytes must start at the current end; entries are not re-encoded.
    /// Returns the new end. Queue offsets come from the entries at dispatch.
    pub fn append_raw(&self, commitlog_offset: u64, data: &[u8]) -> Result<u64, AppendError> {
        let _st = self.lock_append();
        let mut pos = commitlog_offset;
        let end = self.files.max_offset();
        if pos != end {
            return Err(AppendError::MessageIllegal(format!(
                "raw append at {pos} but the CommitLog ends at {end}"
            )));
        }
        let mut rest = data;
        while !rest.is_empty() {
            let file = match self.files.last() {
                Some(f) if !f.is_full() => f,
                last => {
                    let start = last
                        .map(|f| f.end_offset())
                        .unwrap_or(pos - pos % self.file_size());
                    self.files.create_next(start).map_err(classify)?
                }
            };
            let file_pos = file.wrote_pos();
            let n = (file.size - file_pos).min(rest.len() as u64) as usize;
            self.fence_zero_fill(file.start_offset + file_pos + n as u64);
            file.file.write_at(file_pos, &rest[..n]).map_err(|source| {
                classify(StoreError::Io {
                    op: "write",
                    path: file.path.clone(),
                    source,
                })
            })?;
            file.set_wrote_pos(file_pos + n as u64);
            rest = &rest[n..];
            pos += n as u64;
        }
        Ok(pos)
    }
}
