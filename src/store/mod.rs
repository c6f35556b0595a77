//! The message store: one CommitLog, ConsumeQueues and IndexFiles derived from it by dispatch,
//! checkpoint/abort/lock files, flush, recovery and retention, all on the [`disk`] seam.
//!
//! OWNER: store helper. The public API of [`MessageStore`] below is the contract the broker,
//! HA and simulations build against; keep it (add to it freely).

pub mod config;
pub mod consume_queue;
pub mod disk;
pub mod error;
pub mod index_file;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;

pub use config::{BrokerRole, DebugBugs, FlushDiskType, StoreConfig};
pub use disk::{Disk, SegmentFile};
pub use error::StoreError;

/// A message about to be appended (RocketMQ `MessageExtBrokerInner`). The store assigns the
/// CommitLog offset, queue offset and store timestamp.
#[derive(Debug, Clone, Default)]
pub struct MessageToStore {
    pub topic: String,
    pub queue_id: i32,
    pub flag: i32,
    pub body: Bytes,
    /// Encoded property string (see `crate::message::properties`).
    pub properties: String,
    /// ConsumeQueue tags code (hash of TAGS, or a delivery time for schedule topics).
    pub tags_code: i64,
    pub sys_flag: i32,
    pub born_timestamp: i64,
    pub born_host: Option<SocketAddr>,
    pub store_host: Option<SocketAddr>,
    pub reconsume_times: i32,
    pub prepared_transaction_offset: i64,
    /// Keys to index (UNIQ_KEY and each KEYS token); derived from properties if empty.
    pub wait_store_msg_ok: bool,
}

/// RocketMQ `PutMessageStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutMessageStatus {
    PutOk,
    FlushDiskTimeout,
    FlushSlaveTimeout,
    SlaveNotAvailable,
    ServiceNotAvailable,
    CreateMappedFileFailed,
    MessageIllegal,
    PropertiesSizeExceeded,
    OsPageCacheBusy,
    UnknownError,
}

/// Where and how a message (or a batch) was appended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendResult {
    /// CommitLog offset of the first entry.
    pub wrote_offset: i64,
    pub wrote_bytes: i32,
    /// Offset msgId(s), comma-joined for a batch.
    pub msg_id: String,
    pub store_timestamp: i64,
    /// Queue offset of the first entry.
    pub queue_offset: i64,
    pub msg_num: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutMessageResult {
    pub status: PutMessageStatus,
    pub append: Option<AppendResult>,
    /// Human-readable reason for a non-OK status (becomes the response remark).
    pub remark: Option<String>,
}

/// RocketMQ `GetMessageStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GetMessageStatus {
    Found,
    NoMatchedMessage,
    MessageWasRemoving,
    OffsetFoundNull,
    OffsetOverflowBadly,
    OffsetOverflowOne,
    OffsetTooSmall,
    NoMatchedLogicQueue,
    NoMessageInQueue,
}

#[derive(Debug, Clone)]
pub struct GetMessageResult {
    pub status: GetMessageStatus,
    pub next_begin_offset: i64,
    pub min_offset: i64,
    pub max_offset: i64,
    /// Raw stored entries, in queue order.
    pub messages: Vec<Bytes>,
    /// Queue offset of each returned message.
    pub queue_offsets: Vec<i64>,
    pub suggest_pulling_from_slave: bool,
}

/// Filter applied while reading a ConsumeQueue (tags) and, optionally, the entry (properties).
pub trait MessageFilter: Send + Sync {
    fn is_matched_by_consume_queue(&self, tags_code: i64) -> bool;
    fn is_matched_by_commitlog(&self, entry: &[u8]) -> bool {
        let _ = entry;
        true
    }
}

/// Matches everything.
pub struct MatchAll;
impl MessageFilter for MatchAll {
    fn is_matched_by_consume_queue(&self, _tags_code: i64) -> bool {
        true
    }
}

/// Result of QUERY_MESSAGE by key.
#[derive(Debug, Clone, Default)]
pub struct QueryMessageResult {
    pub messages: Vec<Bytes>,
    pub index_last_update_timestamp: i64,
    pub index_last_update_phyoffset: i64,
}

/// Boundary for SEARCH_OFFSET_BY_TIMESTAMP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BoundaryType {
    #[default]
    Lower,
    Upper,
}

/// Called after each ConsumeQueue unit is dispatched: (topic, queue_id, next queue offset
/// i.e. new max, tags code). The broker wakes parked long polls from it.
pub type ArrivalListener = Arc<dyn Fn(&str, i32, i64, i64) + Send + Sync>;

/// The store facade. Background loops (flush, clean) are spawned through `rt` by `open`.
pub struct MessageStore {
    // store helper
}

impl MessageStore {
    /// Opens (creating if needed) the store under `config`'s paths on `disk`: takes the lock
    /// file, runs normal or abnormal recovery (abort file), creates the abort file, and starts
    /// the flush and clean loops. A corrupt or foreign file is an error naming path and offset.
    pub async fn open(config: StoreConfig, disk: Arc<dyn Disk>) -> Result<Arc<Self>, StoreError> {
        let _ = (config, disk);
        todo!("store helper")
    }

    /// Appends one message; returns after the flush contract is met (SYNC_FLUSH: an fsync
    /// covering it, or FlushDiskTimeout).
    pub async fn put_message(&self, msg: MessageToStore) -> PutMessageResult {
        let _ = msg;
        todo!("store helper")
    }

    /// Appends a batch (same topic and queue) with consecutive queue offsets, atomically with
    /// respect to other appends.
    pub async fn put_messages(&self, batch: Vec<MessageToStore>) -> PutMessageResult {
        let _ = batch;
        todo!("store helper")
    }

    /// Reads up to `max_msg_nums` messages / `max_total_bytes` from a queue.
    pub fn get_message(
        &self,
        topic: &str,
        queue_id: i32,
        queue_offset: i64,
        max_msg_nums: i32,
        max_total_bytes: usize,
        filter: &dyn MessageFilter,
    ) -> GetMessageResult {
        let _ = (
            topic,
            queue_id,
            queue_offset,
            max_msg_nums,
            max_total_bytes,
            filter,
        );
        todo!("store helper")
    }

    /// Next queue offset (count of units) of a queue; 0 if absent.
    pub fn max_offset_in_queue(&self, topic: &str, queue_id: i32) -> i64 {
        let _ = (topic, queue_id);
        todo!("store helper")
    }

    /// First valid queue offset of a queue; 0 if absent.
    pub fn min_offset_in_queue(&self, topic: &str, queue_id: i32) -> i64 {
        let _ = (topic, queue_id);
        todo!("store helper")
    }

    /// Store timestamp of the first valid message of a queue.
    pub fn earliest_message_time(&self, topic: &str, queue_id: i32) -> Option<i64> {
        let _ = (topic, queue_id);
        todo!("store helper")
    }

    /// Queue offset for a store timestamp (binary search over the ConsumeQueue).
    pub fn offset_in_queue_by_time(
        &self,
        topic: &str,
        queue_id: i32,
        timestamp_ms: i64,
        boundary: BoundaryType,
    ) -> i64 {
        let _ = (topic, queue_id, timestamp_ms, boundary);
        todo!("store helper")
    }

    /// The raw entry stored at `commitlog_offset` (VIEW_MESSAGE_BY_ID).
    pub fn look_message_by_offset(&self, commitlog_offset: i64) -> Option<Bytes> {
        let _ = commitlog_offset;
        todo!("store helper")
    }

    /// Messages whose key (KEYS token or UNIQ_KEY) is `key`, within the time range.
    pub fn query_message(
        &self,
        topic: &str,
        key: &str,
        max_num: usize,
        begin_timestamp: i64,
        end_timestamp: i64,
    ) -> QueryMessageResult {
        let _ = (topic, key, max_num, begin_timestamp, end_timestamp);
        todo!("store helper")
    }

    /// Registers the listener for dispatched ConsumeQueue units (long polling).
    pub fn set_arrival_listener(&self, listener: ArrivalListener) {
        let _ = listener;
        todo!("store helper")
    }

    /// Removes the ConsumeQueues of these topics (DELETE_TOPIC_IN_BROKER).
    pub fn delete_topics(&self, topics: &[String]) {
        let _ = topics;
        todo!("store helper")
    }

    pub fn commitlog_min_offset(&self) -> i64 {
        todo!("store helper")
    }
    /// Offset one past the last written CommitLog byte.
    pub fn commitlog_max_offset(&self) -> i64 {
        todo!("store helper")
    }
    /// Offset up to which the CommitLog is durable (fsynced).
    pub fn commitlog_flushed_offset(&self) -> i64 {
        todo!("store helper")
    }

    /// Key/value figures for GET_BROKER_RUNTIME_INFO (commitLogMinOffset, commitLogMaxOffset,
    /// commitLogDirCapacity, dispatchBehindBytes, putTps, ...).
    pub fn runtime_info(&self) -> Vec<(String, String)> {
        todo!("store helper")
    }

    /// True when writes are refused because the disk is full (or an fsync failed).
    pub fn is_write_refused(&self) -> Option<String> {
        todo!("store helper")
    }

    /// Clean shutdown: stop loops, flush everything, write the checkpoint, delete the abort
    /// file, release the lock.
    pub async fn shutdown(&self) {
        todo!("store helper")
    }
}
