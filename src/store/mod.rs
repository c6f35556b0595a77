//! The message store: one CommitLog, ConsumeQueues and IndexFiles derived from it by dispatch,
//! checkpoint/abort/lock files, flush, recovery and retention, all on the [`disk`] seam.
//!
//! OWNER: store helper. The public API of [`MessageStore`] below is the contract the broker,
//! HA and simulations build against; keep it (add to it freely).

pub mod checkpoint;
pub mod cleanup;
pub mod commitlog;
pub mod config;
pub mod consume_queue;
pub mod disk;
pub mod dispatch;
pub mod error;
pub mod index_file;
pub mod key_index;
pub mod replication;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::watch;

use checkpoint::Checkpoint;
use commitlog::append::{prepare_message, AppendError, PreparedEntry};
use commitlog::flush::{CommitLogFlushLoop, ConsumeQueueFlushLoop, FlushWait, GroupCommit};
use commitlog::recover::{RecoveryContext, RecoveryOutcome};
use commitlog::{CommitLog, EntryAt};
use consume_queue::ConsumeQueueStore;
use disk::DiskLock;
use dispatch::{parse_delay_levels, DispatchEntry, DispatchError, DispatchMode, Dispatcher};
use key_index::KeyIndex;

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

/// Why writes are refused (both clear only as stated).
#[derive(Debug, Default)]
struct Health {
    /// An fsync or write failed: permanent until restart (the kernel may have dropped data).
    poisoned: Option<String>,
    /// Disk usage above diskSpaceWarningLevelRatio: cleared by the clean loop when space frees.
    disk_full: Option<String>,
}

#[derive(Debug, Default)]
struct Stats {
    put_message_times_total: AtomicU64,
    put_message_size_total: AtomicU64,
    get_message_times_found: AtomicU64,
    get_message_times_miss: AtomicU64,
}

/// Everything the background loops share with the facade.
pub struct StoreInner {
    pub(crate) config: Arc<StoreConfig>,
    pub(crate) disk: Arc<dyn Disk>,
    pub(crate) log: Arc<CommitLog>,
    pub(crate) cq: Arc<ConsumeQueueStore>,
    pub(crate) index: Arc<dyn KeyIndex>,
    pub(crate) dispatcher: Dispatcher,
    pub(crate) checkpoint: Checkpoint,
    pub(crate) group_commit: GroupCommit,
    health: Mutex<Health>,
    /// True while `health` refuses writes (every put checks; a load beats the mutex).
    refusing: std::sync::atomic::AtomicBool,
    stats: Stats,
    shutdown: watch::Sender<bool>,
    lock: Mutex<Option<DiskLock>>,
    recovery: RecoveryOutcome,
}

impl StoreInner {
    pub(crate) fn shutdown_rx(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Refuses writes from now on (first reason wins).
    pub(crate) fn poison(&self, reason: String) {
        let mut h = self.health();
        if h.poisoned.is_none() {
            h.poisoned = Some(reason);
        }
        self.refusing.store(true, Ordering::Release);
    }

    pub(crate) fn set_disk_full(&self, reason: Option<String>) {
        let mut h = self.health();
        if h.disk_full.is_some() != reason.is_some() {
            match &reason {
                Some(r) => tracing::warn!(reason = %r, "refusing writes"),
                None => tracing::info!("disk usage back below the warning level; accepting writes"),
            }
        }
        h.disk_full = reason;
        self.refusing.store(
            h.poisoned.is_some() || h.disk_full.is_some(),
            Ordering::Release,
        );
    }

    fn write_refused(&self) -> Option<String> {
        if !self.refusing.load(Ordering::Acquire) {
            return None;
        }
        let h = self.health();
        h.poisoned.clone().or_else(|| h.disk_full.clone())
    }

    /// Flushes ConsumeQueues, index and checkpoint (blocking). On a thorough flush
    /// (`least_pages == 0`) the checkpoint's logics timestamp advances to what was dispatched
    /// before the flush started.
    pub(crate) fn flush_derived(&self, least_pages: u32) -> Result<(), StoreError> {
        let dispatched_ts = self.dispatcher.last_store_timestamp();
        // Every entry below the reput offset has its unit and keys written; after the flushes
        // below they are durable, except units a queue skipped (fewer dirty pages than asked).
        let reput_before = self.dispatcher.reput_offset() as i64;
        self.cq.flush(least_pages).map_err(StoreError::from)?;
        let index_ts = self.index.flush()?;
        let unflushed = self
            .cq
            .min_unflushed_commitlog_offset()
            .map_err(StoreError::from)?;
        let dispatch_flushed = unflushed.map_or(reput_before, |u| u.min(reput_before));
        let commitlog_flushed = self.log.flushed_offset() as i64;
        self.checkpoint.update(|c| {
            c.dispatch_flushed_offset = dispatch_flushed;
            c.commitlog_flushed_offset = commitlog_flushed;
            if least_pages == 0 && dispatched_ts > 0 {
                c.logics_msg_timestamp = dispatched_ts;
            }
            if let Some(ts) = index_ts {
                c.index_msg_timestamp = ts;
            }
            let physic = self.log.flushed_store_timestamp();
            if physic > 0 {
                c.physic_msg_timestamp = physic;
            }
        });
        self.checkpoint.flush()
    }

    fn dispatch_written(&self) -> Result<(), StoreError> {
        let end = self.log.max_offset();
        match self.dispatcher.dispatch_until(
            &self.log,
            &self.cq,
            &*self.index,
            end,
            DispatchMode::Live,
        ) {
            Ok(_) => Ok(()),
            Err(DispatchError::Store(e)) => Err(e),
            Err(DispatchError::ReplayGap { .. }) => unreachable!("live dispatch reports no gaps"),
        }
    }
}

/// The store facade. Background loops (flush, clean) are spawned through `rt` by `open`.
pub struct MessageStore {
    inner: Arc<StoreInner>,
    tasks: Mutex<Vec<crate::rt::JoinHandle<()>>>,
    /// SYNC_MASTER waiter and transfer wake-up (see `replication.rs`, owned by the ha helper).
    replication: replication::ReplicationHook,
}

fn refused(remark: String) -> PutMessageResult {
    PutMessageResult {
        status: PutMessageStatus::ServiceNotAvailable,
        append: None,
        remark: Some(remark),
    }
}

fn failed(status: PutMessageStatus, remark: String) -> PutMessageResult {
    PutMessageResult {
        status,
        append: None,
        remark: Some(remark),
    }
}

impl MessageStore {
    /// The synchronous part of `open`: lock, load, recover, abort file, first checkpoint.
    fn open_blocking(config: StoreConfig, disk: Arc<dyn Disk>) -> Result<StoreInner, StoreError> {
        let root = config.store_path_root_dir.clone();
        let io = |op: &'static str, path: &std::path::Path| {
            let path = path.to_path_buf();
            move |source| StoreError::Io { op, path, source }
        };
        disk.create_dir_all(&root)
            .map_err(io("create dir", &root))?;
        let lock_path = config.lock_path();
        let lock = disk
            .try_lock(&lock_path)
            .map_err(io("lock", &lock_path))?
            .ok_or_else(|| StoreError::Locked { path: root.clone() })?;
        let abort_path = config.abort_path();
        let abnormal = disk.exists(&abort_path);

        let log = Arc::new(CommitLog::load(disk.clone(), &config)?);
        let cq = Arc::new(
            ConsumeQueueStore::open(
                disk.clone(),
                &config.consume_queue_dir(),
                config.mapped_file_size_consume_queue,
            )
            .map_err(StoreError::from)?,
        );
        let index: Arc<dyn KeyIndex> = key_index::open_index(&config, disk.clone())?;
        let checkpoint = Checkpoint::open(&*disk, &config.checkpoint_path())?;
        let dispatcher = Dispatcher::new(
            parse_delay_levels(&config.message_delay_level),
            config.message_index_enable,
        )
        .with_conflicts_tolerated(config.debug_bugs.reuse_queue_offset_after_recovery);
        let recovery = log.recover(&RecoveryContext {
            cq: &cq,
            index: &*index,
            dispatcher: &dispatcher,
            checkpoint: checkpoint.get(),
            abnormal,
            check_crc: config.check_crc_on_recover,
            debug_bugs: config.debug_bugs,
        })?;

        // From here until a clean shutdown, a restart is abnormal.
        if !abnormal {
            disk.create(&abort_path, 0)
                .map_err(io("create", &abort_path))?;
        }
        let abort_dir = abort_path.parent().unwrap_or(&root).to_path_buf();
        disk.sync_dir(&abort_dir)
            .map_err(io("sync dir", &abort_dir))?;

        let (shutdown, _) = watch::channel(false);
        Ok(StoreInner {
            group_commit: GroupCommit::new(log.flushed_offset()),
            config: Arc::new(config),
            disk,
            log,
            cq,
            index,
            dispatcher,
            checkpoint,
            health: Mutex::new(Health::default()),
            refusing: std::sync::atomic::AtomicBool::new(false),
            stats: Stats::default(),
            shutdown,
            lock: Mutex::new(Some(lock)),
            recovery,
        })
    }

    /// Opens (creating if needed) the store under `config`'s paths on `disk`: takes the lock
    /// file, runs normal or abnormal recovery (abort file), creates the abort file, and starts
    /// the flush and clean loops. A corrupt or foreign file is an error naming path and offset.
    pub async fn open(config: StoreConfig, disk: Arc<dyn Disk>) -> Result<Arc<Self>, StoreError> {
        // Loading and recovery read and fsync files: keep them off the async workers.
        let inner = Arc::new(crate::rt::blocking(move || Self::open_blocking(config, disk)).await?);
        inner.flush_derived(0)?;
        let tasks = vec![
            crate::rt::spawn(CommitLogFlushLoop::new(inner.clone()).run()),
            crate::rt::spawn(ConsumeQueueFlushLoop::new(inner.clone()).run()),
            crate::rt::spawn(cleanup::CleanLoop::new(inner.clone()).run()),
        ];
        Ok(Arc::new(MessageStore {
            inner,
            tasks: Mutex::new(tasks),
            replication: replication::ReplicationHook::default(),
        }))
    }

    /// Appends one message; returns after the flush contract is met (SYNC_FLUSH: an fsync
    /// covering it, or FlushDiskTimeout).
    pub async fn put_message(&self, msg: MessageToStore) -> PutMessageResult {
        self.put_batch(std::slice::from_ref(&msg)).await
    }

    /// Appends a batch (same topic and queue) with consecutive queue offsets, atomically with
    /// respect to other appends.
    pub async fn put_messages(&self, batch: Vec<MessageToStore>) -> PutMessageResult {
        self.put_batch(&batch).await
    }

    async fn put_batch(&self, batch: &[MessageToStore]) -> PutMessageResult {
        let inner = &self.inner;
        if batch.is_empty() {
            return failed(
                PutMessageStatus::MessageIllegal,
                "empty message batch".into(),
            );
        }
        if inner.config.broker_role == BrokerRole::Slave {
            return refused("the message store is a slave and does not accept writes".into());
        }
        if let Some(reason) = inner.write_refused() {
            return refused(reason);
        }
        if let Some(reason) = self.replication.write_fence() {
            return refused(reason);
        }
        let wait = batch.iter().any(|m| m.wait_store_msg_ok);
        let prepare = |msg| match prepare_message(msg, inner.config.max_message_size, None) {
            Ok(e) => Ok(e),
            Err(AppendError::PropertiesSizeExceeded(r)) => {
                Err(failed(PutMessageStatus::PropertiesSizeExceeded, r))
            }
            Err(AppendError::MessageIllegal(r)) => Err(failed(PutMessageStatus::MessageIllegal, r)),
            Err(other) => Err(failed(PutMessageStatus::UnknownError, format!("{other:?}"))),
        };
        // A single message (the common case) stays on the stack.
        let mut one: [PreparedEntry<'_>; 1];
        let mut many: Vec<PreparedEntry<'_>>;
        let prepared: &mut [PreparedEntry<'_>] = if let [msg] = batch {
            one = match prepare(msg) {
                Ok(e) => [e],
                Err(r) => return r,
            };
            &mut one
        } else {
            many = match batch.iter().map(prepare).collect::<Result<Vec<_>, _>>() {
                Ok(v) => v,
                Err(r) => return r,
            };
            &mut many
        };
        let total = match inner.log.check_batch(prepared) {
            Ok(total) => total,
            Err(AppendError::MessageIllegal(r)) => {
                return failed(PutMessageStatus::MessageIllegal, r)
            }
            Err(other) => return failed(PutMessageStatus::UnknownError, format!("{other:?}")),
        };
        // The append encodes into the mapping under the append lock: done here, on the async
        // task. Only creating the next file (preallocation, fsyncs) goes to a blocking thread.
        // Order between puts is decided by the append lock.
        let appended = loop {
            let error = match inner.log.try_append(prepared, total, &crate::rt::now_ms) {
                Ok(Some(a)) => break a,
                Ok(None) => {
                    let worker = inner.clone();
                    match crate::rt::blocking(move || worker.log.make_room(total)).await {
                        Ok(()) => continue,
                        Err(e) => e,
                    }
                }
                Err(e) => e,
            };
            return match error {
                AppendError::MessageIllegal(r) => failed(PutMessageStatus::MessageIllegal, r),
                AppendError::PropertiesSizeExceeded(r) => {
                    failed(PutMessageStatus::PropertiesSizeExceeded, r)
                }
                AppendError::DiskFull(r) => {
                    tracing::warn!(reason = %r, "append refused: disk full");
                    refused(format!("disk full, message not stored: {r}"))
                }
                AppendError::Io(e) => {
                    let reason = format!("CommitLog write failed: {e}");
                    tracing::error!(%reason, "store poisoned");
                    inner.poison(reason.clone());
                    refused(reason)
                }
            };
        };
        inner
            .stats
            .put_message_times_total
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        inner
            .stats
            .put_message_size_total
            .fetch_add(appended.wrote_bytes, Ordering::Relaxed);
        let end_offset = appended.wrote_offset + appended.wrote_bytes;
        // Dispatch before the reply, so a message acknowledged PUT_OK is pullable at once.
        // ConsumeQueue and index writes are memcpys into mappings as well; the entries are
        // dispatched from what they were just encoded from, not read back.
        let dispatched = inner.dispatcher.dispatch_appended(
            &inner.log,
            &inner.cq,
            &*inner.index,
            appended.wrote_offset,
            end_offset,
            prepared
                .iter()
                .zip(batch)
                .map(|(e, msg)| DispatchEntry::from_prepared(e, &msg.properties)),
        );
        if let Err(e) = dispatched {
            let e = match e {
                DispatchError::Store(e) => e,
                DispatchError::ReplayGap { .. } => unreachable!("live dispatch reports no gaps"),
            };
            let reason = format!("dispatch to ConsumeQueue/index failed: {e}");
            tracing::error!(%reason, "store poisoned");
            inner.poison(reason.clone());
            return refused(reason);
        }
        if let Some(job) = inner.log.warm_job(end_offset) {
            // Page faults ahead of the writer happen on a blocking thread, not in appends.
            let log = inner.log.clone();
            crate::rt::spawn(async move { crate::rt::blocking(move || log.warm(job)).await });
        }
        if let Some(job) = inner.index.warm_job() {
            // Likewise for the index (its slot table is written at random).
            crate::rt::spawn(async move { crate::rt::blocking(job).await });
        }
        self.replication.appended(end_offset as i64);
        let store_host = batch[0].store_host;
        let store_host = store_host.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        let msg_id = match &*prepared {
            [one] => crate::message::msg_id::create_offset_msg_id(
                store_host,
                one.fields.commitlog_offset,
            ),
            many => many
                .iter()
                .map(|e| {
                    crate::message::msg_id::create_offset_msg_id(
                        store_host,
                        e.fields.commitlog_offset,
                    )
                })
                .collect::<Vec<_>>()
                .join(","),
        };
        let append = AppendResult {
            wrote_offset: appended.wrote_offset as i64,
            wrote_bytes: appended.wrote_bytes as i32,
            msg_id,
            store_timestamp: appended.store_timestamp,
            queue_offset: prepared[0].fields.queue_offset,
            msg_num: batch.len() as i32,
        };
        let mut status = PutMessageStatus::PutOk;
        let mut remark = None;
        let mut awaited = false;
        if inner.config.flush_disk_type == FlushDiskType::SyncFlush {
            if wait && !inner.config.debug_bugs.ack_sync_flush_before_fsync {
                awaited = true;
                match inner
                    .group_commit
                    .wait_flushed(end_offset, inner.config.sync_flush_timeout_ms)
                    .await
                {
                    FlushWait::Flushed => {}
                    FlushWait::TimedOut => {
                        status = PutMessageStatus::FlushDiskTimeout;
                        remark = Some(format!(
                            "flush did not complete within syncFlushTimeout {} ms",
                            inner.config.sync_flush_timeout_ms
                        ));
                    }
                    FlushWait::Failed(reason) => return refused(reason),
                }
            } else if !wait || !inner.config.debug_bugs.ack_sync_flush_before_fsync {
                inner.group_commit.wake();
            }
            // With the deliberate bug the flush loop's own timer makes the acked bytes durable
            // later, leaving a window in which a power loss loses an acknowledged message.
        }
        if !awaited {
            // Nothing above waited: without a yield a producer that never pauses would keep
            // the worker and starve the flush, dispatch and timer tasks.
            crate::rt::yield_now().await;
        }
        // HA hook (replication.rs): SYNC_MASTER waits for a slave; the results combine.
        let (status, remark) = self
            .replication
            .combine(
                inner.config.broker_role,
                wait,
                end_offset as i64,
                status,
                remark,
            )
            .await;
        PutMessageResult {
            status,
            append: Some(append),
            remark,
        }
    }

    /// Appends bytes that are already CommitLog entries (replication) at `commitlog_offset`,
    /// which must equal the current max offset, then dispatches them. Returns the new max.
    pub fn append_raw(&self, commitlog_offset: i64, data: &[u8]) -> Result<i64, StoreError> {
        let inner = &self.inner;
        if let Some(reason) = inner.write_refused() {
            return Err(StoreError::Poisoned(reason));
        }
        let end = match inner.log.append_raw(commitlog_offset.max(0) as u64, data) {
            Ok(end) => end,
            Err(AppendError::Io(e)) => {
                inner.poison(format!("CommitLog write failed: {e}"));
                return Err(e);
            }
            Err(other) => return Err(StoreError::Poisoned(format!("{other:?}"))),
        };
        if let Err(e) = inner.dispatch_written() {
            inner.poison(format!("dispatch failed: {e}"));
            return Err(e);
        }
        inner.group_commit.wake();
        Ok(end as i64)
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
        let inner = &self.inner;
        let mut result = GetMessageResult {
            status: GetMessageStatus::NoMatchedLogicQueue,
            next_begin_offset: 0,
            min_offset: 0,
            max_offset: 0,
            messages: Vec::new(),
            queue_offsets: Vec::new(),
            suggest_pulling_from_slave: false,
        };
        let Some(queue) = inner.cq.queue(topic, queue_id) else {
            inner
                .stats
                .get_message_times_miss
                .fetch_add(1, Ordering::Relaxed);
            return result;
        };
        let min = queue.min_offset();
        let max = queue.max_offset();
        result.min_offset = min;
        result.max_offset = max;
        if max == 0 {
            result.status = GetMessageStatus::NoMessageInQueue;
        } else if queue_offset < min {
            result.status = GetMessageStatus::OffsetTooSmall;
            result.next_begin_offset = min;
        } else if queue_offset == max {
            result.status = GetMessageStatus::OffsetOverflowOne;
            result.next_begin_offset = queue_offset;
        } else if queue_offset > max {
            result.status = GetMessageStatus::OffsetOverflowBadly;
            // RocketMQ 5.x corrects to the max offset (4.9 used the min when it was 0).
            result.next_begin_offset = max;
        } else {
            self.read_queue(
                &mut result,
                topic,
                queue_id,
                queue_offset,
                max_msg_nums,
                max_total_bytes,
                filter,
            );
        }
        let counter = if result.status == GetMessageStatus::Found {
            &inner.stats.get_message_times_found
        } else {
            &inner.stats.get_message_times_miss
        };
        counter.fetch_add(1, Ordering::Relaxed);
        result
    }

    #[allow(clippy::too_many_arguments)]
    fn read_queue(
        &self,
        result: &mut GetMessageResult,
        topic: &str,
        queue_id: i32,
        queue_offset: i64,
        max_msg_nums: i32,
        max_total_bytes: usize,
        filter: &dyn MessageFilter,
    ) {
        let inner = &self.inner;
        let max_count = max_msg_nums.max(1) as usize;
        result.next_begin_offset = queue_offset;
        result.status = GetMessageStatus::OffsetFoundNull;
        let units = match inner
            .cq
            .read_units(topic, queue_id, queue_offset, max_count)
        {
            Ok(units) => units,
            Err(e) => {
                tracing::error!(topic, queue_id, queue_offset, error = %e, "ConsumeQueue read failed");
                return;
            }
        };
        let log_min = inner.log.min_offset() as i64;
        let mut total_bytes = 0usize;
        let mut saw_removed = false;
        let mut last_commitlog_offset: Option<i64> = None;
        for unit in units {
            if result.messages.len() >= max_count {
                break;
            }
            if unit.commitlog_offset < log_min {
                saw_removed = true;
                result.next_begin_offset = unit.queue_offset + 1;
                continue;
            }
            if !filter.is_matched_by_consume_queue(unit.tags_code) {
                result.next_begin_offset = unit.queue_offset + 1;
                continue;
            }
            if !result.messages.is_empty() && total_bytes + unit.size as usize > max_total_bytes {
                break;
            }
            match inner
                .log
                .read_message(unit.commitlog_offset as u64, unit.size as usize)
            {
                Ok(Some(bytes)) => {
                    result.next_begin_offset = unit.queue_offset + 1;
                    last_commitlog_offset = Some(unit.commitlog_offset);
                    if !filter.is_matched_by_commitlog(&bytes) {
                        continue;
                    }
                    total_bytes += bytes.len();
                    result.messages.push(bytes);
                    result.queue_offsets.push(unit.queue_offset);
                }
                Ok(None) => {
                    saw_removed = true;
                    result.next_begin_offset = unit.queue_offset + 1;
                }
                Err(e) => {
                    tracing::error!(topic, queue_id, queue_offset = unit.queue_offset, error = %e, "CommitLog read failed");
                    saw_removed = true;
                    result.next_begin_offset = unit.queue_offset + 1;
                }
            }
        }
        // RocketMQ: how far the last message read lies behind the CommitLog's end decides
        // whether the consumer is "far behind" (reading cold data the master should not serve).
        if let Some(last) = last_commitlog_offset {
            let behind_bytes = (inner.log.max_offset() as i64).saturating_sub(last).max(0) as u128;
            let memory_bytes = u128::from(inner.config.total_physical_memory_bytes)
                * u128::from(inner.config.access_message_in_memory_max_ratio)
                / 100;
            result.suggest_pulling_from_slave = behind_bytes > memory_bytes;
        }
        result.status = if !result.messages.is_empty() {
            GetMessageStatus::Found
        } else if saw_removed {
            GetMessageStatus::MessageWasRemoving
        } else if result.next_begin_offset > queue_offset {
            GetMessageStatus::NoMatchedMessage
        } else {
            GetMessageStatus::OffsetFoundNull
        };
    }

    /// Next queue offset (count of units) of a queue; 0 if absent.
    pub fn max_offset_in_queue(&self, topic: &str, queue_id: i32) -> i64 {
        self.inner.cq.max_offset(topic, queue_id)
    }

    /// First valid queue offset of a queue; 0 if absent.
    pub fn min_offset_in_queue(&self, topic: &str, queue_id: i32) -> i64 {
        self.inner.cq.min_offset(topic, queue_id)
    }

    fn store_time_of(&self, commitlog_offset: i64, size: i32) -> Option<i64> {
        if commitlog_offset < 0 || size <= 0 {
            return None;
        }
        let bytes = self
            .inner
            .log
            .read_message(commitlog_offset as u64, size as usize)
            .ok()??;
        let sys_flag = i32::from_be_bytes(bytes.get(36..40)?.try_into().ok()?);
        let pos = crate::message::entry::store_timestamp_pos(sys_flag);
        Some(i64::from_be_bytes(
            bytes.get(pos..pos + 8)?.try_into().ok()?,
        ))
    }

    /// Store timestamp of the first valid message of a queue.
    pub fn earliest_message_time(&self, topic: &str, queue_id: i32) -> Option<i64> {
        let min = self.min_offset_in_queue(topic, queue_id);
        let unit = self.inner.cq.read_unit(topic, queue_id, min).ok()??;
        self.store_time_of(unit.commitlog_offset, unit.size)
    }

    /// Queue offset for a store timestamp (binary search over the ConsumeQueue).
    pub fn offset_in_queue_by_time(
        &self,
        topic: &str,
        queue_id: i32,
        timestamp_ms: i64,
        boundary: BoundaryType,
    ) -> i64 {
        let lookup = |off: i64, size: i32| self.store_time_of(off, size);
        match self
            .inner
            .cq
            .offset_by_time(topic, queue_id, timestamp_ms, boundary, &lookup)
        {
            Ok(off) => off,
            Err(e) => {
                tracing::error!(topic, queue_id, error = %e, "offset by time failed");
                0
            }
        }
    }

    /// The raw entry stored at `commitlog_offset` (VIEW_MESSAGE_BY_ID).
    pub fn look_message_by_offset(&self, commitlog_offset: i64) -> Option<Bytes> {
        if commitlog_offset < 0 || commitlog_offset as u64 >= self.inner.log.max_offset() {
            return None;
        }
        match self.inner.log.read_entry_at(commitlog_offset as u64, false) {
            Ok(EntryAt::Message(bytes)) => Some(bytes),
            _ => None,
        }
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
        let found =
            match self
                .inner
                .index
                .query(topic, key, max_num, begin_timestamp, end_timestamp)
            {
                Ok(found) => found,
                Err(e) => {
                    tracing::error!(topic, key, error = %e, "index query failed");
                    return QueryMessageResult::default();
                }
            };
        let mut out = QueryMessageResult {
            messages: Vec::new(),
            index_last_update_timestamp: found.index_last_update_timestamp,
            index_last_update_phyoffset: found.index_last_update_phyoffset,
        };
        for offset in found.commitlog_offsets {
            if out.messages.len() >= max_num {
                break;
            }
            let Some(bytes) = self.look_message_by_offset(offset) else {
                continue;
            };
            // Hash collisions are resolved here by checking the entry's own keys.
            let Ok((msg, _)) = crate::message::entry::decode_entry(&bytes, false) else {
                continue;
            };
            if msg.topic == topic && (msg.keys().contains(&key) || msg.uniq_key() == Some(key)) {
                out.messages.push(bytes);
            }
        }
        out
    }

    /// Registers the listener for dispatched ConsumeQueue units (long polling).
    pub fn set_arrival_listener(&self, listener: ArrivalListener) {
        self.inner.dispatcher.set_listener(listener);
    }

    /// Removes the ConsumeQueues of these topics (DELETE_TOPIC_IN_BROKER).
    pub fn delete_topics(&self, topics: &[String]) {
        self.inner.log.remove_topics(topics);
        for topic in topics {
            if let Err(e) = self.inner.cq.delete_topic(topic) {
                tracing::error!(topic, error = %e, "deleting topic ConsumeQueues failed");
            }
        }
    }

    pub fn commitlog_min_offset(&self) -> i64 {
        self.inner.log.min_offset() as i64
    }
    /// Offset one past the last written CommitLog byte.
    pub fn commitlog_max_offset(&self) -> i64 {
        self.inner.log.max_offset() as i64
    }
    /// Offset up to which the CommitLog is durable (fsynced).
    pub fn commitlog_flushed_offset(&self) -> i64 {
        self.inner.log.flushed_offset() as i64
    }

    /// What recovery found at open.
    pub fn recovery_outcome(&self) -> &RecoveryOutcome {
        &self.inner.recovery
    }

    /// SYNC_FLUSH group-commit counters (fsync rounds, waiters per round, fsync time).
    pub fn group_commit_stats(&self) -> commitlog::flush::GroupCommitStats {
        self.inner.group_commit.stats()
    }

    /// The configuration the store runs with.
    pub fn config(&self) -> &StoreConfig {
        &self.inner.config
    }

    /// Flushes the CommitLog, ConsumeQueues, index and checkpoint now (admin, tests).
    pub async fn flush_all(&self) -> Result<(), StoreError> {
        let inner = self.inner.clone();
        let result = crate::rt::blocking(move || {
            inner.log.flush(0)?;
            inner.flush_derived(0)
        })
        .await;
        match &result {
            Ok(()) => self
                .inner
                .group_commit
                .publish(self.inner.log.flushed_offset(), None),
            Err(e) => self.inner.poison(format!("flush failed: {e}")),
        }
        result
    }

    /// Runs one retention/disk-space round now (`manual`: delete expired files regardless of
    /// deleteWhen, like RocketMQ's manual trigger).
    pub async fn clean_now(&self, manual: bool) -> Result<cleanup::CleanRound, StoreError> {
        let inner = self.inner.clone();
        crate::rt::blocking(move || cleanup::clean_once(&inner, manual)).await
    }

    /// Key/value figures for GET_BROKER_RUNTIME_INFO (commitLogMinOffset, commitLogMaxOffset,
    /// commitLogDirCapacity, dispatchBehindBytes, putTps, ...).
    pub fn runtime_info(&self) -> Vec<(String, String)> {
        let inner = &self.inner;
        let min = inner.log.min_offset();
        let max = inner.log.max_offset();
        let mut out = vec![
            ("commitLogMinOffset".to_string(), min.to_string()),
            ("commitLogMaxOffset".to_string(), max.to_string()),
            (
                "dispatchBehindBytes".to_string(),
                max.saturating_sub(inner.dispatcher.reput_offset())
                    .to_string(),
            ),
            (
                "remainHowManyDataToFlush".to_string(),
                format!("{} B", max.saturating_sub(inner.log.flushed_offset())),
            ),
            (
                "putMessageTimesTotal".to_string(),
                inner
                    .stats
                    .put_message_times_total
                    .load(Ordering::Relaxed)
                    .to_string(),
            ),
            (
                "putMessageSizeTotal".to_string(),
                inner
                    .stats
                    .put_message_size_total
                    .load(Ordering::Relaxed)
                    .to_string(),
            ),
            (
                "getFoundTimesTotal".to_string(),
                inner
                    .stats
                    .get_message_times_found
                    .load(Ordering::Relaxed)
                    .to_string(),
            ),
            (
                "getMissTimesTotal".to_string(),
                inner
                    .stats
                    .get_message_times_miss
                    .load(Ordering::Relaxed)
                    .to_string(),
            ),
            ("pageCacheLockTimeMills".to_string(), "0".to_string()),
            (
                "remainTransientStoreBufferNumbs".to_string(),
                "0".to_string(),
            ),
        ];
        let dir = inner.config.commitlog_dir();
        if let Ok(space) = inner.disk.space(&dir) {
            let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
            out.push((
                "commitLogDirCapacity".to_string(),
                format!(
                    "Total : {:.1} GiB, Free : {:.1} GiB.",
                    gib(space.total_bytes),
                    gib(space.available_bytes)
                ),
            ));
            let used = space.total_bytes.saturating_sub(space.available_bytes);
            let ratio = if space.total_bytes == 0 {
                0.0
            } else {
                used as f64 / space.total_bytes as f64
            };
            out.push(("commitLogDiskRatio".to_string(), format!("{ratio}")));
        }
        let earliest = match inner.log.read_entry_at(min, false) {
            Ok(EntryAt::Message(bytes)) => crate::message::entry::decode_entry(&bytes, false)
                .map(|(m, _)| m.store_timestamp)
                .unwrap_or(0),
            _ => 0,
        };
        out.push(("earliestMessageTimeStamp".to_string(), earliest.to_string()));
        out
    }

    /// True when writes are refused because the disk is full (or an fsync failed).
    pub fn is_write_refused(&self) -> Option<String> {
        self.inner.write_refused()
    }

    /// Clean shutdown: stop loops, flush everything, write the checkpoint, delete the abort
    /// file, release the lock.
    pub async fn shutdown(&self) {
        let inner = &self.inner;
        // send_replace stores the value even when a loop has not subscribed yet.
        inner.shutdown.send_replace(true);
        let tasks: Vec<_> =
            std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for task in tasks {
            let _ = task.await;
        }
        if let Some(reason) = inner.health().poisoned.clone() {
            // Keep the abort file: the next start must recover abnormally.
            tracing::error!(%reason, "store poisoned; shutting down without a clean mark");
            inner.lock.lock().unwrap_or_else(|e| e.into_inner()).take();
            return;
        }
        if let Err(e) = self.flush_all().await {
            tracing::error!(error = %e, "final flush failed; keeping the abort file");
            inner.lock.lock().unwrap_or_else(|e| e.into_inner()).take();
            return;
        }
        let abort = inner.config.abort_path();
        if inner.disk.exists(&abort) {
            if let Err(e) = inner.disk.remove_file(&abort) {
                tracing::error!(error = %e, path = %abort.display(), "removing the abort file failed");
            } else if let Some(dir) = abort.parent() {
                if let Err(e) = inner.disk.sync_dir(dir) {
                    tracing::error!(error = %e, "syncing the store root failed");
                }
            }
        }
        inner.lock.lock().unwrap_or_else(|e| e.into_inner()).take();
        tracing::info!("message store shut down cleanly");
    }
}

#[cfg(test)]
#[path = "store_test.rs"]
mod store_test;

#[cfg(all(test, not(madsim)))]
#[path = "crash_test.rs"]
mod crash_test;
