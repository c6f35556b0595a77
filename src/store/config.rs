//! Store settings (RocketMQ `MessageStoreConfig` keys that Apogee honours). Filled from
//! broker.conf by `crate::config`. OWNER: store helper (fields may be added; keep defaults
//! equal to RocketMQ's).

use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FlushDiskType {
    #[default]
    AsyncFlush,
    SyncFlush,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BrokerRole {
    #[default]
    AsyncMaster,
    SyncMaster,
    Slave,
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// storePathRootDir
    pub store_path_root_dir: PathBuf,
    /// storePathCommitLog (default `<root>/commitlog`)
    pub store_path_commitlog: Option<PathBuf>,
    /// storePathConsumeQueue (default `<root>/consumequeue`)
    pub store_path_consume_queue: Option<PathBuf>,
    /// storePathIndex (default `<root>/index`)
    pub store_path_index: Option<PathBuf>,
    /// storeCheckpoint (default `<root>/checkpoint`)
    pub store_checkpoint: Option<PathBuf>,
    /// abortFile (default `<root>/abort`)
    pub abort_file: Option<PathBuf>,
    /// mappedFileSizeCommitLog
    pub mapped_file_size_commitlog: u64,
    /// mappedFileSizeConsumeQueue (bytes; RocketMQ default 300,000 × 20)
    pub mapped_file_size_consume_queue: u64,
    /// maxHashSlotNum
    pub max_hash_slot_num: u32,
    /// maxIndexNum
    pub max_index_num: u32,
    /// maxMessageSize (bytes of body)
    pub max_message_size: usize,
    pub flush_disk_type: FlushDiskType,
    pub broker_role: BrokerRole,
    /// flushIntervalCommitLog
    pub flush_interval_commitlog_ms: u64,
    /// flushCommitLogLeastPages
    pub flush_commitlog_least_pages: u32,
    /// flushCommitLogThoroughInterval
    pub flush_commitlog_thorough_interval_ms: u64,
    /// flushIntervalConsumeQueue
    pub flush_interval_consume_queue_ms: u64,
    /// flushConsumeQueueLeastPages
    pub flush_consume_queue_least_pages: u32,
    /// flushConsumeQueueThoroughInterval
    pub flush_consume_queue_thorough_interval_ms: u64,
    /// syncFlushTimeout
    pub sync_flush_timeout_ms: u64,
    /// deleteWhen ("04", ';'-separated hours)
    pub delete_when: String,
    /// fileReservedTime (hours)
    pub file_reserved_time_hours: u64,
    /// cleanResourceInterval
    pub clean_resource_interval_ms: u64,
    /// diskMaxUsedSpaceRatio (percent)
    pub disk_max_used_space_ratio: u32,
    /// accessMessageInMemoryMaxRatio (percent of physical memory, RocketMQ default 40): a pull
    /// whose last message lies further than this behind the CommitLog's end is flagged
    /// `suggest_pulling_from_slave` (the data is unlikely to be in the page cache).
    pub access_message_in_memory_max_ratio: u32,
    /// Physical memory the ratio above applies to. Not a RocketMQ key (Java reads it from the
    /// OS): the mqbroker binary fills it from /proc/meminfo; the default stands in elsewhere.
    pub total_physical_memory_bytes: u64,
    /// diskSpaceCleanForciblyRatio (fraction, RocketMQ default 0.85)
    pub disk_space_clean_forcibly_ratio: f64,
    /// diskSpaceWarningLevelRatio (fraction, RocketMQ default 0.90): writes refused above it.
    pub disk_space_warning_level_ratio: f64,
    /// cleanFileForciblyEnable
    pub clean_file_forcibly_enable: bool,
    /// deleteCommitLogFilesInterval
    pub delete_commitlog_files_interval_ms: u64,
    /// destroyMapedFileIntervalForcibly
    pub destroy_mapped_file_interval_forcibly_ms: u64,
    /// checkCRCOnRecover
    pub check_crc_on_recover: bool,
    /// messageIndexEnable
    pub message_index_enable: bool,
    /// warmMapedFileEnable: write zeros (and sync them) ahead of the CommitLog's writer, so
    /// appended bytes land in blocks already written (see `CommitLog::warm`).
    pub warm_mapped_file_enable: bool,
    /// flushLeastPagesWhenWarmMapedFile: pages of zeros written between syncs while warming
    /// (the CommitLog syncs at least every 1 MiB of zeros; see `ZERO_FILL_SYNC_MAX_BYTES`).
    pub flush_least_pages_when_warm_mapped_file: u32,
    /// messageDelayLevel (delay of each level, for the schedule topic's ConsumeQueue tags code)
    pub message_delay_level: String,
    /// Test-only deliberate bugs, so simulations can prove their checkers fail. Always off in
    /// production configs (not reachable from broker.conf).
    pub debug_bugs: DebugBugs,
}

/// Deliberate bugs a simulation may switch on to show that a checker catches them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DebugBugs {
    /// Acknowledge SYNC_FLUSH sends before the fsync that covers them.
    pub ack_sync_flush_before_fsync: bool,
    /// After recovery, restart queue offsets one below the true next offset (reuse).
    pub reuse_queue_offset_after_recovery: bool,
    /// Slave metadata sync overwrites the slave's newer consumer offsets with the master's
    /// older ones (RocketMQ #1094) and does not push them back.
    pub slave_sync_overwrites_newer_offsets: bool,
    /// Slave metadata sync skips consumer offsets (the slave's stay stale).
    pub slave_sync_skips_offsets: bool,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            store_path_root_dir: PathBuf::from("store"),
            store_path_commitlog: None,
            store_path_consume_queue: None,
            store_path_index: None,
            store_checkpoint: None,
            abort_file: None,
            mapped_file_size_commitlog: 1024 * 1024 * 1024,
            mapped_file_size_consume_queue: 300_000 * 20,
            max_hash_slot_num: 5_000_000,
            max_index_num: 20_000_000,
            max_message_size: 4 * 1024 * 1024,
            flush_disk_type: FlushDiskType::AsyncFlush,
            broker_role: BrokerRole::AsyncMaster,
            flush_interval_commitlog_ms: 500,
            flush_commitlog_least_pages: 4,
            flush_commitlog_thorough_interval_ms: 10_000,
            flush_interval_consume_queue_ms: 1000,
            flush_consume_queue_least_pages: 2,
            flush_consume_queue_thorough_interval_ms: 60_000,
            sync_flush_timeout_ms: 5000,
            delete_when: "04".to_string(),
            file_reserved_time_hours: 72,
            clean_resource_interval_ms: 10_000,
            disk_max_used_space_ratio: 75,
            access_message_in_memory_max_ratio: 40,
            total_physical_memory_bytes: 8 << 30,
            disk_space_clean_forcibly_ratio: 0.85,
            disk_space_warning_level_ratio: 0.90,
            clean_file_forcibly_enable: true,
            delete_commitlog_files_interval_ms: 100,
            destroy_mapped_file_interval_forcibly_ms: 120_000,
            check_crc_on_recover: true,
            message_index_enable: true,
            warm_mapped_file_enable: false,
            flush_least_pages_when_warm_mapped_file: 4096,
            message_delay_level: "1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h"
                .to_string(),
            debug_bugs: DebugBugs::default(),
        }
    }
}

impl StoreConfig {
    pub fn commitlog_dir(&self) -> PathBuf {
        self.store_path_commitlog
            .clone()
            .unwrap_or_else(|| self.store_path_root_dir.join("commitlog"))
    }
    pub fn consume_queue_dir(&self) -> PathBuf {
        self.store_path_consume_queue
            .clone()
            .unwrap_or_else(|| self.store_path_root_dir.join("consumequeue"))
    }
    pub fn index_dir(&self) -> PathBuf {
        self.store_path_index
            .clone()
            .unwrap_or_else(|| self.store_path_root_dir.join("index"))
    }
    pub fn checkpoint_path(&self) -> PathBuf {
        self.store_checkpoint
            .clone()
            .unwrap_or_else(|| self.store_path_root_dir.join("checkpoint"))
    }
    pub fn abort_path(&self) -> PathBuf {
        self.abort_file
            .clone()
            .unwrap_or_else(|| self.store_path_root_dir.join("abort"))
    }
    pub fn lock_path(&self) -> PathBuf {
        self.store_path_root_dir.join("lock")
    }
    pub fn config_dir(&self) -> PathBuf {
        self.store_path_root_dir.join("config")
    }
}
