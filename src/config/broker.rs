//! broker.conf keys → [`BrokerConfig`] (and its [`StoreConfig`](crate::store::StoreConfig)),
//! plus the cross-field rules RocketMQ's BrokerStartup applies.

use super::keys::{apply, KeySpec, SetKeys};
use super::properties::parse_properties;
use super::rocketmq_keys::ROCKETMQ_BROKER_KEYS;
use super::values::*;
use super::{BrokerConfig, ConfigError, ConfigWarnings};
use crate::store::BrokerRole;

fn ok() -> Result<Option<String>, String> {
    Ok(None)
}

fn opt_path(p: &Option<std::path::PathBuf>) -> String {
    p.as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

/// Every broker.conf key Apogee honours, in template order.
pub(crate) static BROKER_KEYS: &[KeySpec<BrokerConfig>] = &[
    // ---- identity and cluster membership
    KeySpec {
        key: "brokerClusterName",
        doc: "cluster this broker registers under",
        get: |c| c.broker_cluster_name.clone(),
        set: |c, v, _| {
            c.broker_cluster_name = parse_non_empty(v)?;
            ok()
        },
    },
    KeySpec {
        key: "brokerName",
        doc: "broker group name shared by a master and its slaves",
        get: |c| c.broker_name.clone(),
        set: |c, v, _| {
            c.broker_name = parse_non_empty(v)?;
            ok()
        },
    },
    KeySpec {
        key: "brokerId",
        doc: "0 for the master, > 0 for slaves",
        get: |c| c.broker_id.to_string(),
        set: |c, v, _| {
            c.broker_id = parse_int(v, 0i64, i64::MAX)?;
            ok()
        },
    },
    KeySpec {
        key: "brokerRole",
        doc: "ASYNC_MASTER, SYNC_MASTER (acks after a slave has the message) or SLAVE",
        get: |c| broker_role_name(c.store.broker_role).to_string(),
        set: |c, v, _| {
            c.store.broker_role = parse_broker_role(v)?;
            ok()
        },
    },
    KeySpec {
        key: "namesrvAddr",
        doc: "name servers, `;`-separated host:port list (-n and NAMESRV_ADDR also work)",
        get: |c| c.namesrv_addrs.join(";"),
        set: |c, v, _| {
            c.namesrv_addrs = parse_addr_list(v)?;
            ok()
        },
    },
    KeySpec {
        key: "regionId",
        doc: "region reported to clients (MSG_REGION)",
        get: |c| c.region_id.clone(),
        set: |c, v, _| {
            c.region_id = parse_non_empty(v)?;
            ok()
        },
    },
    // ---- network
    KeySpec {
        key: "listenPort",
        doc: "client port; the broker also listens on listenPort - 2 (VIP channel)",
        get: |c| c.listen_port.to_string(),
        set: |c, v, _| {
            c.listen_port = parse_int(v, 3u16, u16::MAX)
                .map_err(|e| format!("{e} (the VIP port listenPort - 2 must be valid)"))?;
            ok()
        },
    },
    KeySpec {
        key: "brokerIP1",
        doc: "address registered to the name server and written as store host",
        get: |c| c.broker_ip1.to_string(),
        set: |c, v, _| {
            c.broker_ip1 = parse_ip(v)?;
            ok()
        },
    },
    KeySpec {
        key: "brokerIP2",
        doc: "address slaves use for HA (default: brokerIP1)",
        get: |c| c.broker_ip2.map(|ip| ip.to_string()).unwrap_or_default(),
        set: |c, v, _| {
            c.broker_ip2 = if v.is_empty() {
                None
            } else {
                Some(parse_ip(v)?)
            };
            ok()
        },
    },
    KeySpec {
        key: "haListenPort",
        doc: "HA port slaves connect to (default listenPort + 1)",
        get: |c| c.ha_listen_port.to_string(),
        set: |c, v, _| {
            c.ha_listen_port = parse_int(v, 1u16, u16::MAX)?;
            ok()
        },
    },
    KeySpec {
        key: "haMasterAddress",
        doc: "slave only: master's HA address ip:port (default: learnt from the name server)",
        get: |c| c.ha_master_address.clone().unwrap_or_default(),
        set: |c, v, _| {
            c.ha_master_address = if v.is_empty() {
                None
            } else {
                Some(parse_addr(v)?)
            };
            ok()
        },
    },
    KeySpec {
        key: "slaveTimeout",
        doc: "SYNC_MASTER: ms to wait for a slave's acknowledgement before FLUSH_SLAVE_TIMEOUT",
        get: |c| c.ha.slave_timeout_ms.to_string(),
        set: |c, v, _| {
            c.ha.slave_timeout_ms = parse_int(v, 1u64, 3_600_000)?;
            ok()
        },
    },
    KeySpec {
        key: "haSendHeartbeatInterval",
        doc: "ms between slave offset reports / master heartbeats when idle",
        get: |c| c.ha.send_heartbeat_interval_ms.to_string(),
        set: |c, v, _| {
            c.ha.send_heartbeat_interval_ms = parse_int(v, 1u64, 3_600_000)?;
            ok()
        },
    },
    KeySpec {
        key: "haHousekeepingInterval",
        doc: "ms of silence after which an HA connection is closed",
        get: |c| c.ha.housekeeping_interval_ms.to_string(),
        set: |c, v, _| {
            c.ha.housekeeping_interval_ms = parse_int(v, 1u64, 3_600_000)?;
            ok()
        },
    },
    KeySpec {
        key: "haTransferBatchSize",
        doc: "largest CommitLog chunk the master sends at once (bytes)",
        get: |c| c.ha.transfer_batch_size.to_string(),
        set: |c, v, _| {
            c.ha.transfer_batch_size = parse_int(v, 1usize, 4 * 1024 * 1024)?;
            ok()
        },
    },
    KeySpec {
        key: "haMaxGapNotInSync",
        doc: "bytes a slave may lag and still count as in sync for SYNC_MASTER",
        get: |c| c.ha.max_gap_not_in_sync.to_string(),
        set: |c, v, _| {
            c.ha.max_gap_not_in_sync = parse_int(v, 1i64, i64::MAX)?;
            ok()
        },
    },
    KeySpec {
        key: "registerNameServerPeriod",
        doc: "ms between registrations to every name server",
        get: |c| c.register_name_server_period_ms.to_string(),
        set: |c, v, _| {
            c.register_name_server_period_ms = parse_positive_u64(v)?;
            ok()
        },
    },
    // ---- topics, permissions, features
    KeySpec {
        key: "brokerPermission",
        doc: "perm bits of the whole broker: 2 write, 4 read, 6 read+write",
        get: |c| c.broker_permission.to_string(),
        set: |c, v, _| {
            c.broker_permission = parse_int(v, 0i32, 15)?;
            ok()
        },
    },
    KeySpec {
        key: "autoCreateTopicEnable",
        doc: "create unknown topics on first send (from template topic TBW102)",
        get: |c| c.auto_create_topic_enable.to_string(),
        set: |c, v, _| {
            c.auto_create_topic_enable = parse_bool(v)?;
            ok()
        },
    },
    KeySpec {
        key: "autoCreateSubscriptionGroup",
        doc: "create unknown consumer groups on first use",
        get: |c| c.auto_create_subscription_group.to_string(),
        set: |c, v, _| {
            c.auto_create_subscription_group = parse_bool(v)?;
            ok()
        },
    },
    KeySpec {
        key: "defaultTopicQueueNums",
        doc: "queues of an auto-created topic",
        get: |c| c.default_topic_queue_nums.to_string(),
        set: |c, v, _| {
            c.default_topic_queue_nums = parse_int(v, 1i32, 1024)?;
            ok()
        },
    },
    KeySpec {
        key: "longPollingEnable",
        doc: "park pulls that find no message until one arrives",
        get: |c| c.long_polling_enable.to_string(),
        set: |c, v, _| {
            c.long_polling_enable = parse_bool(v)?;
            ok()
        },
    },
    KeySpec {
        key: "shortPollingTimeMills",
        doc: "ms a pull is held when long polling is off",
        get: |c| c.short_polling_time_ms.to_string(),
        set: |c, v, _| {
            c.short_polling_time_ms = parse_int(v, 0u64, i64::MAX as u64)?;
            ok()
        },
    },
    KeySpec {
        key: "slaveReadEnable",
        doc: "let consumers read from slaves when the master lags",
        get: |c| c.slave_read_enable.to_string(),
        set: |c, v, _| {
            c.slave_read_enable = parse_bool(v)?;
            ok()
        },
    },
    KeySpec {
        key: "traceOn",
        doc: "reported to clients as TRACE_ON",
        get: |c| c.trace_on.to_string(),
        set: |c, v, _| {
            c.trace_on = parse_bool(v)?;
            ok()
        },
    },
    KeySpec {
        key: "aclEnable",
        doc: "check requests against conf/plain_acl.yml",
        get: |c| c.acl_enable.to_string(),
        set: |c, v, _| {
            c.acl_enable = parse_bool(v)?;
            ok()
        },
    },
    KeySpec {
        key: "messageDelayLevel",
        doc: "delay of each delay level 1..N (units s, m, h, d)",
        get: |c| c.message_delay_level.clone(),
        set: |c, v, _| {
            c.message_delay_level = parse_message_delay_level(v)?;
            ok()
        },
    },
    // ---- store paths
    KeySpec {
        key: "storePathRootDir",
        doc: "store root; ${user.home} and ~ are expanded",
        get: |c| c.store.store_path_root_dir.display().to_string(),
        set: |c, v, ctx| {
            c.store.store_path_root_dir = expand_path(v, ctx.home)?;
            ok()
        },
    },
    KeySpec {
        key: "storePathCommitLog",
        doc: "commitlog directory (default <storePathRootDir>/commitlog)",
        get: |c| opt_path(&c.store.store_path_commitlog),
        set: |c, v, ctx| {
            c.store.store_path_commitlog = parse_optional_path(v, ctx.home)?;
            ok()
        },
    },
    KeySpec {
        key: "storePathConsumeQueue",
        doc: "consume queue directory (default <storePathRootDir>/consumequeue)",
        get: |c| opt_path(&c.store.store_path_consume_queue),
        set: |c, v, ctx| {
            c.store.store_path_consume_queue = parse_optional_path(v, ctx.home)?;
            ok()
        },
    },
    KeySpec {
        key: "storePathIndex",
        doc: "index directory (default <storePathRootDir>/index)",
        get: |c| opt_path(&c.store.store_path_index),
        set: |c, v, ctx| {
            c.store.store_path_index = parse_optional_path(v, ctx.home)?;
            ok()
        },
    },
    KeySpec {
        key: "storeCheckpoint",
        doc: "checkpoint file (default <storePathRootDir>/checkpoint)",
        get: |c| opt_path(&c.store.store_checkpoint),
        set: |c, v, ctx| {
            c.store.store_checkpoint = parse_optional_path(v, ctx.home)?;
            ok()
        },
    },
    KeySpec {
        key: "abortFile",
        doc: "abort marker file (default <storePathRootDir>/abort)",
        get: |c| opt_path(&c.store.abort_file),
        set: |c, v, ctx| {
            c.store.abort_file = parse_optional_path(v, ctx.home)?;
            ok()
        },
    },
    // ---- store sizes
    KeySpec {
        key: "mappedFileSizeCommitLog",
        doc: "bytes per commitlog file",
        get: |c| c.store.mapped_file_size_commitlog.to_string(),
        set: |c, v, _| {
            c.store.mapped_file_size_commitlog = parse_int(v, 4096u64, i32::MAX as u64)?;
            ok()
        },
    },
    KeySpec {
        key: "mappedFileSizeConsumeQueue",
        doc: "bytes per consume queue file (a multiple of the 20-byte entry)",
        get: |c| c.store.mapped_file_size_consume_queue.to_string(),
        set: |c, v, _| {
            let size = parse_int(v, 20u64, i32::MAX as u64)?;
            if size % 20 != 0 {
                return Err("must be a multiple of 20 (the consume queue entry size)".into());
            }
            c.store.mapped_file_size_consume_queue = size;
            ok()
        },
    },
    KeySpec {
        key: "maxMessageSize",
        doc: "largest message body in bytes",
        get: |c| c.store.max_message_size.to_string(),
        set: |c, v, _| {
            c.store.max_message_size = parse_int(v, 1usize, i32::MAX as usize)?;
            ok()
        },
    },
    KeySpec {
        key: "messageIndexEnable",
        doc: "maintain the key/unique-key index files",
        get: |c| c.store.message_index_enable.to_string(),
        set: |c, v, _| {
            c.store.message_index_enable = parse_bool(v)?;
            ok()
        },
    },
    KeySpec {
        key: "warmMapedFileEnable",
        doc: "write and sync zeros ahead of the commitlog writer (faster SYNC_FLUSH fsyncs)",
        get: |c| c.store.warm_mapped_file_enable.to_string(),
        set: |c, v, _| {
            c.store.warm_mapped_file_enable = parse_bool(v)?;
            ok()
        },
    },
    KeySpec {
        key: "flushLeastPagesWhenWarmMapedFile",
        doc: "pages of zeros written between syncs while warming the commitlog (at most 256)",
        get: |c| c.store.flush_least_pages_when_warm_mapped_file.to_string(),
        set: |c, v, _| {
            c.store.flush_least_pages_when_warm_mapped_file = parse_int(v, 1u32, i32::MAX as u32)?;
            ok()
        },
    },
    KeySpec {
        key: "maxHashSlotNum",
        doc: "hash slots per index file",
        get: |c| c.store.max_hash_slot_num.to_string(),
        set: |c, v, _| {
            c.store.max_hash_slot_num = parse_int(v, 1u32, i32::MAX as u32)?;
            ok()
        },
    },
    KeySpec {
        key: "maxIndexNum",
        doc: "index entries per index file",
        get: |c| c.store.max_index_num.to_string(),
        set: |c, v, _| {
            c.store.max_index_num = parse_int(v, 1u32, i32::MAX as u32)?;
            ok()
        },
    },
    // ---- flushing
    KeySpec {
        key: "flushDiskType",
        doc: "ASYNC_FLUSH or SYNC_FLUSH (ack only after fsync)",
        get: |c| flush_disk_type_name(c.store.flush_disk_type).to_string(),
        set: |c, v, _| {
            c.store.flush_disk_type = parse_flush_disk_type(v)?;
            ok()
        },
    },
    KeySpec {
        key: "flushIntervalCommitLog",
        doc: "ms between async commitlog flushes",
        get: |c| c.store.flush_interval_commitlog_ms.to_string(),
        set: |c, v, _| {
            c.store.flush_interval_commitlog_ms = parse_positive_u64(v)?;
            ok()
        },
    },
    KeySpec {
        key: "flushCommitLogLeastPages",
        doc: "dirty 4 KiB pages needed before an async commitlog flush",
        get: |c| c.store.flush_commitlog_least_pages.to_string(),
        set: |c, v, _| {
            c.store.flush_commitlog_least_pages = parse_int(v, 0u32, i32::MAX as u32)?;
            ok()
        },
    },
    KeySpec {
        key: "flushCommitLogThoroughInterval",
        doc: "ms after which the commitlog is flushed regardless of pages",
        get: |c| c.store.flush_commitlog_thorough_interval_ms.to_string(),
        set: |c, v, _| {
            c.store.flush_commitlog_thorough_interval_ms = parse_positive_u64(v)?;
            ok()
        },
    },
    KeySpec {
        key: "flushIntervalConsumeQueue",
        doc: "ms between consume queue flushes",
        get: |c| c.store.flush_interval_consume_queue_ms.to_string(),
        set: |c, v, _| {
            c.store.flush_interval_consume_queue_ms = parse_positive_u64(v)?;
            ok()
        },
    },
    KeySpec {
        key: "flushConsumeQueueLeastPages",
        doc: "dirty pages needed before a consume queue flush",
        get: |c| c.store.flush_consume_queue_least_pages.to_string(),
        set: |c, v, _| {
            c.store.flush_consume_queue_least_pages = parse_int(v, 0u32, i32::MAX as u32)?;
            ok()
        },
    },
    KeySpec {
        key: "flushConsumeQueueThoroughInterval",
        doc: "ms after which consume queues are flushed regardless of pages",
        get: |c| c.store.flush_consume_queue_thorough_interval_ms.to_string(),
        set: |c, v, _| {
            c.store.flush_consume_queue_thorough_interval_ms = parse_positive_u64(v)?;
            ok()
        },
    },
    KeySpec {
        key: "syncFlushTimeout",
        doc: "ms a SYNC_FLUSH send waits for its fsync (then FLUSH_DISK_TIMEOUT)",
        get: |c| c.store.sync_flush_timeout_ms.to_string(),
        set: |c, v, _| {
            c.store.sync_flush_timeout_ms = parse_positive_u64(v)?;
            ok()
        },
    },
    KeySpec {
        key: "checkCRCOnRecover",
        doc: "verify message CRCs while recovering the commitlog",
        get: |c| c.store.check_crc_on_recover.to_string(),
        set: |c, v, _| {
            c.store.check_crc_on_recover = parse_bool(v)?;
            ok()
        },
    },
    // ---- retention and disk space
    KeySpec {
        key: "deleteWhen",
        doc: "hours of day (`;`-separated) when expired files are deleted",
        get: |c| c.store.delete_when.clone(),
        set: |c, v, _| {
            c.store.delete_when = parse_delete_when(v)?;
            ok()
        },
    },
    KeySpec {
        key: "fileReservedTime",
        doc: "hours a commitlog file is kept after its last write",
        get: |c| c.store.file_reserved_time_hours.to_string(),
        set: |c, v, _| {
            c.store.file_reserved_time_hours = parse_positive_u64(v)?;
            ok()
        },
    },
    KeySpec {
        key: "cleanResourceInterval",
        doc: "ms between retention checks",
        get: |c| c.store.clean_resource_interval_ms.to_string(),
        set: |c, v, _| {
            c.store.clean_resource_interval_ms = parse_positive_u64(v)?;
            ok()
        },
    },
    KeySpec {
        key: "accessMessageInMemoryMaxRatio",
        doc: "percent of physical memory a consumer may lag behind the CommitLog end before the \
              master suggests reading from a slave (with slaveReadEnable)",
        get: |c| c.store.access_message_in_memory_max_ratio.to_string(),
        set: |c, v, _| {
            c.store.access_message_in_memory_max_ratio = parse_int(v, 0u32, 100)?;
            ok()
        },
    },
    KeySpec {
        key: "diskMaxUsedSpaceRatio",
        doc: "percent of disk use above which old files are deleted early (10-95)",
        get: |c| c.store.disk_max_used_space_ratio.to_string(),
        set: |c, v, _| {
            let ratio = parse_int(v, 0u32, 100)?;
            // RocketMQ clamps this getter into 10..=95; do the same, but say so.
            let clamped = ratio.clamp(10, 95);
            c.store.disk_max_used_space_ratio = clamped;
            if clamped != ratio {
                return Ok(Some(format!("{ratio} is outside 10-95; using {clamped}")));
            }
            ok()
        },
    },
    KeySpec {
        key: "diskSpaceCleanForciblyRatio",
        doc: "disk use (fraction, or percent as in RocketMQ 5) that forces cleaning",
        get: |c| c.store.disk_space_clean_forcibly_ratio.to_string(),
        set: |c, v, _| {
            c.store.disk_space_clean_forcibly_ratio = parse_ratio(v)?;
            ok()
        },
    },
    KeySpec {
        key: "diskSpaceWarningLevelRatio",
        doc: "disk use (fraction, or percent) above which writes are refused",
        get: |c| c.store.disk_space_warning_level_ratio.to_string(),
        set: |c, v, _| {
            c.store.disk_space_warning_level_ratio = parse_ratio(v)?;
            ok()
        },
    },
    KeySpec {
        key: "cleanFileForciblyEnable",
        doc: "delete unexpired files when the disk is nearly full",
        get: |c| c.store.clean_file_forcibly_enable.to_string(),
        set: |c, v, _| {
            c.store.clean_file_forcibly_enable = parse_bool(v)?;
            ok()
        },
    },
    KeySpec {
        key: "deleteCommitLogFilesInterval",
        doc: "ms between deletions of consecutive expired commitlog files",
        get: |c| c.store.delete_commitlog_files_interval_ms.to_string(),
        set: |c, v, _| {
            c.store.delete_commitlog_files_interval_ms = parse_int(v, 0u64, i64::MAX as u64)?;
            ok()
        },
    },
    KeySpec {
        key: "destroyMapedFileIntervalForcibly",
        doc: "ms after which a file still in use is deleted anyway (RocketMQ's spelling)",
        get: |c| c.store.destroy_mapped_file_interval_forcibly_ms.to_string(),
        set: |c, v, _| {
            c.store.destroy_mapped_file_interval_forcibly_ms = parse_int(v, 0u64, i64::MAX as u64)?;
            ok()
        },
    },
];

/// Parses broker.conf text. `home` expands `${user.home}` / `~`.
pub(crate) fn parse_broker(
    text: &str,
    origin: &str,
    home: Option<&str>,
) -> Result<(BrokerConfig, ConfigWarnings), ConfigError> {
    let properties = parse_properties(text, origin)?;
    let mut config = BrokerConfig::default();
    let mut warnings = ConfigWarnings::new();
    let set_keys = apply(
        BROKER_KEYS,
        ROCKETMQ_BROKER_KEYS,
        &mut config,
        &properties,
        origin,
        home,
        &mut warnings,
    )?;
    validate(&mut config, &set_keys, origin, &mut warnings)?;
    Ok((config, warnings))
}

fn invalid(origin: &str, set_keys: &SetKeys, key: &str, reason: String) -> ConfigError {
    match set_keys.get(key) {
        Some((line, value)) => ConfigError::InvalidValue {
            path: origin.to_string(),
            line: *line,
            key: key.to_string(),
            value: value.clone(),
            reason,
        },
        None => ConfigError::Invalid(format!("{origin}: {key}: {reason}")),
    }
}

/// Cross-field rules (BrokerStartup's checks plus Apogee's port sanity).
fn validate(
    config: &mut BrokerConfig,
    set_keys: &SetKeys,
    origin: &str,
    warnings: &mut ConfigWarnings,
) -> Result<(), ConfigError> {
    let line_of = |key: &str| set_keys.get(key).map(|(line, _)| *line);
    match config.store.broker_role {
        BrokerRole::Slave => {
            if config.broker_id <= 0 {
                let key = if set_keys.contains_key("brokerRole") {
                    "brokerRole"
                } else {
                    "brokerId"
                };
                return Err(invalid(
                    origin,
                    set_keys,
                    key,
                    format!(
                        "a SLAVE needs brokerId > 0, but brokerId is {} (0 is the master)",
                        config.broker_id
                    ),
                ));
            }
        }
        BrokerRole::AsyncMaster | BrokerRole::SyncMaster => {
            if config.broker_id != 0 {
                // RocketMQ forces a master's id to 0; keep that behaviour but say so.
                warnings.push(format!(
                    "{origin}:{}: brokerId {} ignored: a master (brokerRole {}) always has \
                     brokerId 0",
                    line_of("brokerId").unwrap_or(0),
                    config.broker_id,
                    broker_role_name(config.store.broker_role)
                ));
                config.broker_id = 0;
            }
            if let Some(addr) = &config.ha_master_address {
                warnings.push(format!(
                    "{origin}:{}: haMasterAddress `{addr}` is ignored on a master",
                    line_of("haMasterAddress").unwrap_or(0)
                ));
            }
        }
    }
    if !set_keys.contains_key("haListenPort") {
        config.ha_listen_port = config.listen_port.checked_add(1).ok_or_else(|| {
            invalid(
                origin,
                set_keys,
                "listenPort",
                "haListenPort defaults to listenPort + 1, which is not a valid port; set \
                 haListenPort"
                    .to_string(),
            )
        })?;
    }
    let vip_port = config.listen_port - 2;
    if config.ha_listen_port == config.listen_port || config.ha_listen_port == vip_port {
        return Err(invalid(
            origin,
            set_keys,
            "haListenPort",
            format!(
                "clashes with listenPort {} or its VIP port {vip_port}",
                config.listen_port
            ),
        ));
    }
    if config.store.max_message_size as u64 > config.store.mapped_file_size_commitlog {
        return Err(invalid(
            origin,
            set_keys,
            "maxMessageSize",
            format!(
                "larger than a commitlog file (mappedFileSizeCommitLog {})",
                config.store.mapped_file_size_commitlog
            ),
        ));
    }
    Ok(())
}
