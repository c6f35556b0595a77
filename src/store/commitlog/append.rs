//! Appending to the CommitLog: entries are encoded outside the lock; under the append lock the
//! store assigns the CommitLog offset, queue offsets (per topic-queue table) and the store
//! timestamp, writes the BLANK filler when the batch does not fit the current file, and writes
//! the batch in one `write_at`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::message::entry::{self, EntryFields};
use crate::message::sysflag;
use crate::store::error::StoreError;
use crate::store::MessageToStore;

use super::{CommitLog, END_FILE_MIN_BLANK_LENGTH};

/// A message encoded with placeholder offsets, ready for the append lock.
#[derive(Debug, Clone)]
pub struct EncodedEntry {
    pub topic: String,
    pub queue_id: i32,
    pub sys_flag: i32,
    pub bytes: Vec<u8>,
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

/// Where an append landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    pub wrote_offset: u64,
    pub wrote_bytes: u64,
    pub store_timestamp: i64,
    /// Queue offset of each entry (0 for PREPARED/ROLLBACK transactional entries).
    pub queue_offsets: Vec<i64>,
    /// CommitLog offset of each entry.
    pub commitlog_offsets: Vec<u64>,
}

fn unspecified_host() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)
}

/// Encodes one message (validating sizes) with zero offsets and store time.
pub fn encode_message(
    msg: &MessageToStore,
    max_message_size: usize,
    default_store_host: Option<SocketAddr>,
) -> Result<EncodedEntry, AppendError> {
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
    let mut bytes = Vec::new();
    entry::encode_entry(&fields, &mut bytes).map_err(|e| match e {
        entry::EncodeError::PropertiesTooLong(_) => {
            AppendError::PropertiesSizeExceeded(e.to_string())
        }
        other => AppendError::MessageIllegal(other.to_string()),
    })?;
    Ok(EncodedEntry {
        topic: msg.topic.clone(),
        queue_id: msg.queue_id,
        sys_flag: fields.sys_flag,
        bytes,
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
    fn check_batch(&self, batch: &[EncodedEntry]) -> Result<u64, AppendError> {
        assert!(!batch.is_empty(), "empty append batch");
        if batch.len() > 1 {
            let (t, q) = (&batch[0].topic, batch[0].queue_id);
            if batch.iter().any(|e| &e.topic != t || e.queue_id != q) {
                return Err(AppendError::MessageIllegal(
                    "a batch must target one topic and queue".into(),
                ));
            }
        }
        let total: u64 = batch.iter().map(|e| e.bytes.len() as u64).sum();
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
        batch: &mut [EncodedEntry],
        clock_ms: &dyn Fn() -> i64,
    ) -> Result<Appended, AppendError> {
        let total = self.check_batch(batch)?;
        loop {
            if let Some(appended) = self.try_append(batch, clock_ms)? {
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

    /// Appends `batch` if the last file has room for it; `Ok(None)` (nothing written) when a
    /// new file is needed first ([`Self::make_room`]). Never blocks on more than the append lock
    /// and a memcpy into the mapping, so the put path calls it on the async task.
    pub fn try_append(
        &self,
        batch: &mut [EncodedEntry],
        clock_ms: &dyn Fn() -> i64,
    ) -> Result<Option<Appended>, AppendError> {
        let total = self.check_batch(batch)?;
        let mut st = self.lock_append();
        let file = match self.files.last() {
            Some(f) if f.size - f.wrote_pos() >= total + END_FILE_MIN_BLANK_LENGTH => f,
            _ => return Ok(None),
        };

        // Read under the lock so store timestamps follow CommitLog order (as far as the
        // clock allows).
        let store_timestamp = clock_ms();
        let file_pos = file.wrote_pos();
        let wrote_offset = file.start_offset + file_pos;
        let key = (batch[0].topic.clone(), batch[0].queue_id);
        let first_queue_offset = st.queue_offsets.get(&key).copied().unwrap_or(0);
        let mut next_queue_offset = first_queue_offset;
        let mut queue_offsets = Vec::with_capacity(batch.len());
        let mut commitlog_offsets = Vec::with_capacity(batch.len());
        let mut entry_offset = wrote_offset;
        for e in batch.iter_mut() {
            let queue_offset = if takes_queue_offset(e.sys_flag) {
                next_queue_offset += 1;
                next_queue_offset - 1
            } else {
                0
            };
            entry::patch_entry(
                &mut e.bytes,
                queue_offset,
                entry_offset as i64,
                store_timestamp,
            );
            queue_offsets.push(queue_offset);
            commitlog_offsets.push(entry_offset);
            entry_offset += e.bytes.len() as u64;
        }
        assert_eq!(entry_offset - wrote_offset, total, "batch size");
        let write = |data: &[u8]| {
            file.file.write_at(file_pos, data).map_err(|source| {
                classify(StoreError::Io {
                    op: "write",
                    path: file.path.clone(),
                    source,
                })
            })
        };
        if let [single] = &*batch {
            // The common case goes straight from the encoded entry into the mapping.
            write(&single.bytes)?;
        } else {
            // A batch is one write, so a failure never leaves part of it behind.
            let mut buf = Vec::with_capacity(total as usize);
            for e in batch.iter() {
                buf.extend_from_slice(&e.bytes);
            }
            write(&buf)?;
        }
        // Readers see nothing of the batch until the write position moves.
        file.set_wrote_pos(file_pos + total);
        if next_queue_offset != first_queue_offset {
            st.queue_offsets.insert(key, next_queue_offset);
        }
        st.last_store_timestamp = store_timestamp;
        st.last_end_offset = wrote_offset + total;
        debug_assert_eq!(self.files.max_offset(), wrote_offset + total);
        Ok(Some(Appended {
            wrote_offset,
            wrote_bytes: total,
            store_timestamp,
            queue_offsets,
            commitlog_offsets,
        }))
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
