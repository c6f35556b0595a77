//! Tests of broker.conf / namesrv.conf mapping and of the shipped conf/ directory.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::*;
use crate::store::{BrokerRole, FlushDiskType};

const HOME: Option<&str> = Some("/home/rmq");

fn parse_broker(text: &str) -> Result<(BrokerConfig, ConfigWarnings), ConfigError> {
    BrokerConfig::parse_with_home(text, "conf/test.properties", HOME)
}

fn invalid_value(text: &str) -> (usize, String, String, String) {
    match parse_broker(text) {
        Err(ConfigError::InvalidValue {
            path,
            line,
            key,
            value,
            reason,
        }) => {
            assert_eq!(path, "conf/test.properties");
            (line, key, value, reason)
        }
        other => panic!("expected InvalidValue for {text:?}, got {other:?}"),
    }
}

#[test]
fn broker_conf_keys_map_to_fields() {
    let text = r#"
# a slave of broker-b, written the way operators write it
brokerClusterName = ProdCluster
brokerName: broker-b
brokerId 2
namesrvAddr=10.0.0.1:9876;10.0.0.2:9876
listenPort=20911
brokerIP1=10.1.0.5
brokerIP2=10.2.0.5
haMasterAddress=10.1.0.4:20912
brokerRole=SLAVE
flushDiskType=SYNC_FLUSH
storePathRootDir=${user.home}/store-b
storePathCommitLog=~/cl
storePathConsumeQueue=/data/cq
storePathIndex=/data/index
storeCheckpoint=/data/checkpoint
abortFile=/data/abort
autoCreateTopicEnable=false
autoCreateSubscriptionGroup=false
deleteWhen=04;16
fileReservedTime=48
mappedFileSizeCommitLog=104857600
mappedFileSizeConsumeQueue=6000
defaultTopicQueueNums=4
maxMessageSize=1048576
flushIntervalCommitLog=200
flushCommitLogLeastPages=0
warmMapedFileEnable=true
flushLeastPagesWhenWarmMapedFile=1024
flushCommitLogThoroughInterval=2000
flushIntervalConsumeQueue=300
flushConsumeQueueLeastPages=1
flushConsumeQueueThoroughInterval=3000
syncFlushTimeout=1500
diskMaxUsedSpaceRatio=88
diskSpaceCleanForciblyRatio=80
diskSpaceWarningLevelRatio=0.95
cleanFileForciblyEnable=false
deleteCommitLogFilesInterval=50
destroyMapedFileIntervalForcibly=60000
cleanResourceInterval=5000
checkCRCOnRecover=false
messageIndexEnable=false
maxHashSlotNum=1000
maxIndexNum=4000
brokerPermission=4
registerNameServerPeriod=10000
longPollingEnable=false
shortPollingTimeMills=500
slaveReadEnable=true
regionId=eu-west
traceOn=false
aclEnable=true
messageDelayLevel=1s 5s \
    10s 1m
"#;
    let (c, warnings) = parse_broker(text).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(c.broker_cluster_name, "ProdCluster");
    assert_eq!(c.broker_name, "broker-b");
    assert_eq!(c.broker_id, 2);
    assert_eq!(c.namesrv_addrs, vec!["10.0.0.1:9876", "10.0.0.2:9876"]);
    assert_eq!(c.listen_port, 20911);
    assert_eq!(
        c.ha_listen_port, 20912,
        "haListenPort defaults to listenPort + 1"
    );
    assert_eq!(c.broker_ip1, "10.1.0.5".parse::<IpAddr>().unwrap());
    assert_eq!(c.broker_ip2, Some("10.2.0.5".parse().unwrap()));
    assert_eq!(c.ha_master_address.as_deref(), Some("10.1.0.4:20912"));
    assert_eq!(c.broker_addr(), "10.1.0.5:20911");
    assert_eq!(c.ha_server_addr(), "10.2.0.5:20912");
    assert_eq!(c.store.broker_role, BrokerRole::Slave);
    assert_eq!(c.store.flush_disk_type, FlushDiskType::SyncFlush);
    assert_eq!(
        c.store.store_path_root_dir,
        PathBuf::from("/home/rmq/store-b")
    );
    assert_eq!(c.store.commitlog_dir(), PathBuf::from("/home/rmq/cl"));
    assert_eq!(c.store.consume_queue_dir(), PathBuf::from("/data/cq"));
    assert_eq!(c.store.index_dir(), PathBuf::from("/data/index"));
    assert_eq!(c.store.checkpoint_path(), PathBuf::from("/data/checkpoint"));
    assert_eq!(c.store.abort_path(), PathBuf::from("/data/abort"));
    assert!(!c.auto_create_topic_enable);
    assert!(!c.auto_create_subscription_group);
    assert_eq!(c.store.delete_when, "04;16");
    assert_eq!(c.store.file_reserved_time_hours, 48);
    assert_eq!(c.store.mapped_file_size_commitlog, 104_857_600);
    assert_eq!(c.store.mapped_file_size_consume_queue, 6000);
    assert_eq!(c.default_topic_queue_nums, 4);
    assert_eq!(c.store.max_message_size, 1_048_576);
    assert_eq!(c.store.flush_interval_commitlog_ms, 200);
    assert_eq!(c.store.flush_commitlog_least_pages, 0);
    assert!(c.store.warm_mapped_file_enable);
    assert_eq!(c.store.flush_least_pages_when_warm_mapped_file, 1024);
    assert_eq!(c.store.flush_commitlog_thorough_interval_ms, 2000);
    assert_eq!(c.store.flush_interval_consume_queue_ms, 300);
    assert_eq!(c.store.flush_consume_queue_least_pages, 1);
    assert_eq!(c.store.flush_consume_queue_thorough_interval_ms, 3000);
    assert_eq!(c.store.sync_flush_timeout_ms, 1500);
    assert_eq!(c.store.disk_max_used_space_ratio, 88);
    assert_eq!(c.store.disk_space_clean_forcibly_ratio, 0.80);
    assert_eq!(c.store.disk_space_warning_level_ratio, 0.95);
    assert!(!c.store.clean_file_forcibly_enable);
    assert_eq!(c.store.delete_commitlog_files_interval_ms, 50);
    assert_eq!(c.store.destroy_mapped_file_interval_forcibly_ms, 60_000);
    assert_eq!(c.store.clean_resource_interval_ms, 5000);
    assert!(!c.store.check_crc_on_recover);
    assert!(!c.store.message_index_enable);
    assert_eq!(c.store.max_hash_slot_num, 1000);
    assert_eq!(c.store.max_index_num, 4000);
    assert_eq!(c.broker_permission, 4);
    assert_eq!(c.register_name_server_period_ms, 10_000);
    assert!(!c.long_polling_enable);
    assert_eq!(c.short_polling_time_ms, 500);
    assert!(c.slave_read_enable);
    assert_eq!(c.region_id, "eu-west");
    assert!(!c.trace_on);
    assert!(c.acl_enable);
    assert_eq!(c.message_delay_level, "1s 5s 10s 1m");
}

#[test]
fn empty_file_gives_rocketmq_defaults() {
    let (c, warnings) = parse_broker("").unwrap();
    assert!(warnings.is_empty());
    let d = BrokerConfig::default();
    assert_eq!(c.to_properties(), d.to_properties());
    assert_eq!(c.listen_port, 10911);
    assert_eq!(c.ha_listen_port, 10912);
    assert_eq!(c.store.broker_role, BrokerRole::AsyncMaster);
}

#[test]
fn invalid_values_name_file_line_key_and_reason() {
    let (line, key, value, reason) = invalid_value("brokerName=a\n\nlistenPort=abc\n");
    assert_eq!(
        (line, key.as_str(), value.as_str()),
        (3, "listenPort", "abc")
    );
    assert!(reason.contains("integer"), "{reason}");

    let (line, key, _, reason) = invalid_value("# c\nlistenPort=2\n");
    assert_eq!((line, key.as_str()), (2, "listenPort"));
    assert!(reason.contains("between 3 and 65535"), "{reason}");

    let (line, key, value, reason) = invalid_value("brokerRole=MASTER");
    assert_eq!(
        (line, key.as_str(), value.as_str()),
        (1, "brokerRole", "MASTER")
    );
    assert!(reason.contains("ASYNC_MASTER"), "{reason}");

    let (_, key, _, reason) = invalid_value("flushDiskType=SYNC");
    assert_eq!(key, "flushDiskType");
    assert!(reason.contains("SYNC_FLUSH"));

    let (line, key, _, _) = invalid_value("a=b\nautoCreateTopicEnable=yes\n");
    assert_eq!((line, key.as_str()), (2, "autoCreateTopicEnable"));

    let (_, key, _, reason) = invalid_value("namesrvAddr=10.0.0.1:9876;10.0.0.2");
    assert_eq!(key, "namesrvAddr");
    assert!(reason.contains("10.0.0.2"), "{reason}");

    let (_, key, _, _) = invalid_value("brokerIP1=10.0.0.300");
    assert_eq!(key, "brokerIP1");
    let (_, key, _, _) = invalid_value("brokerId=-1");
    assert_eq!(key, "brokerId");
    let (_, key, _, _) = invalid_value("mappedFileSizeConsumeQueue=6001");
    assert_eq!(key, "mappedFileSizeConsumeQueue");
    let (_, key, _, _) = invalid_value("deleteWhen=25");
    assert_eq!(key, "deleteWhen");
    let (_, key, _, _) = invalid_value("messageDelayLevel=1s 2w");
    assert_eq!(key, "messageDelayLevel");
    let (_, key, _, _) = invalid_value("brokerName=");
    assert_eq!(key, "brokerName");
    let (_, key, _, _) = invalid_value("fileReservedTime=0");
    assert_eq!(key, "fileReservedTime");

    // The Display form is what the binaries print on one line.
    let err = parse_broker("x=1\nlistenPort=abc").unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("conf/test.properties:2:"), "{text}");
    assert!(
        text.contains("listenPort") && text.contains("abc"),
        "{text}"
    );
}

#[test]
fn cross_field_rules() {
    // A slave needs a positive id: named on the brokerRole line.
    let (line, key, value, reason) = invalid_value("brokerId=0\nbrokerRole=SLAVE\n");
    assert_eq!(
        (line, key.as_str(), value.as_str()),
        (2, "brokerRole", "SLAVE")
    );
    assert!(reason.contains("brokerId > 0"), "{reason}");

    // A master's id is forced to 0, with a warning naming the line.
    let (c, warnings) = parse_broker("brokerRole=SYNC_MASTER\nbrokerId=3\n").unwrap();
    assert_eq!(c.broker_id, 0);
    assert_eq!(c.store.broker_role, BrokerRole::SyncMaster);
    assert_eq!(warnings.len(), 1);
    assert!(
        warnings[0].starts_with("conf/test.properties:2:"),
        "{warnings:?}"
    );

    // haListenPort: explicit value kept, clash with listenPort or the VIP port refused.
    let (c, _) = parse_broker("listenPort=10911\nhaListenPort=20000").unwrap();
    assert_eq!(c.ha_listen_port, 20000);
    let (line, key, _, _) = invalid_value("listenPort=10911\nhaListenPort=10909");
    assert_eq!((line, key.as_str()), (2, "haListenPort"));
    let (_, key, _, _) = invalid_value("listenPort=10911\nhaListenPort=10911");
    assert_eq!(key, "haListenPort");
    let (_, key, _, reason) = invalid_value("listenPort=65535");
    assert_eq!(key, "listenPort");
    assert!(reason.contains("haListenPort"), "{reason}");
    let (c, _) = parse_broker("listenPort=65535\nhaListenPort=65000").unwrap();
    assert_eq!(c.ha_listen_port, 65000);

    let (_, key, _, _) = invalid_value("mappedFileSizeCommitLog=1048576\nmaxMessageSize=2097152");
    assert_eq!(key, "maxMessageSize");

    // RocketMQ clamps diskMaxUsedSpaceRatio; we do too, loudly.
    let (c, warnings) = parse_broker("diskMaxUsedSpaceRatio=99").unwrap();
    assert_eq!(c.store.disk_max_used_space_ratio, 95);
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].contains("diskMaxUsedSpaceRatio"));
}

#[test]
fn unsupported_and_unknown_keys_warn_by_name_and_line() {
    let text = "sendMessageThreadPoolNums=16\ntransientStorePoolEnable=true\n\
                enableDLegerCommitLog=true\nbrokerNmae=x\ntotallyMadeUp=1\nbrokername=y\n";
    let (c, warnings) = parse_broker(text).unwrap();
    assert_eq!(
        c.broker_name, "broker-a",
        "misspelt key must not be applied"
    );
    assert_eq!(warnings.len(), 6, "{warnings:#?}");
    for (i, key) in [
        "sendMessageThreadPoolNums",
        "transientStorePoolEnable",
        "enableDLegerCommitLog",
    ]
    .iter()
    .enumerate()
    {
        assert!(warnings[i].starts_with(&format!("conf/test.properties:{}:", i + 1)));
        assert!(warnings[i].contains(key));
        assert!(warnings[i].contains(NOT_SUPPORTED_YET), "{}", warnings[i]);
    }
    assert!(
        warnings[3].contains("unknown key `brokerNmae`"),
        "{}",
        warnings[3]
    );
    assert!(
        warnings[3].contains("did you mean `brokerName`"),
        "{}",
        warnings[3]
    );
    assert!(warnings[4].contains("unknown key `totallyMadeUp`"));
    assert!(!warnings[4].contains("did you mean"));
    assert!(
        warnings[5].contains("did you mean `brokerName`"),
        "{}",
        warnings[5]
    );

    let (c, warnings) = parse_broker("brokerName=a\nbrokerName=b\n").unwrap();
    assert_eq!(c.broker_name, "b", "later value wins, as in Java");
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].contains("set again"));
}

#[test]
fn to_properties_round_trips() {
    let text = "brokerName=broker-x\nbrokerId=1\nbrokerRole=SLAVE\nnamesrvAddr=a:1;b:2\n\
                storePathRootDir=/data/with space\nbrokerIP2=10.0.0.2\nhaMasterAddress=m:3\n\
                haListenPort=4000\nstorePathIndex=/i\n";
    let (c, warnings) = parse_broker(text).unwrap();
    assert!(warnings.is_empty());
    let printed = c.to_properties();
    assert!(printed.contains("brokerRole=SLAVE\n"));
    assert!(printed.contains("namesrvAddr=a:1;b:2\n"));
    let (again, warnings) = parse_broker(&printed).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(again.to_properties(), printed);
    assert_eq!(
        again.store.store_path_root_dir,
        PathBuf::from("/data/with space")
    );
    assert_eq!(again.ha_listen_port, 4000);
}

#[test]
fn namesrv_config() {
    let (c, warnings) = NamesrvConfig::parse(
        "listenPort=9877\nbindAddress=127.0.0.1\nscanNotActiveBrokerInterval=1000\n\
         brokerChannelExpiredTimeout=3000\nenableAllTopicList=false\nkvConfigPath=/x\n",
        "namesrv.conf",
    )
    .unwrap();
    assert_eq!(c.listen_port, 9877);
    assert_eq!(c.listen_ip, "127.0.0.1".parse::<IpAddr>().unwrap());
    assert_eq!(c.listen_addr().to_string(), "127.0.0.1:9877");
    assert_eq!(c.scan_not_active_broker_interval_ms, 1000);
    assert_eq!(c.broker_channel_expired_timeout_ms, 3000);
    assert!(!c.enable_all_topic_list);
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].contains("kvConfigPath") && warnings[0].contains(NOT_SUPPORTED_YET));

    match NamesrvConfig::parse("\nlistenPort=99999", "ns.conf") {
        Err(ConfigError::InvalidValue {
            path, line, key, ..
        }) => {
            assert_eq!(
                (path.as_str(), line, key.as_str()),
                ("ns.conf", 2, "listenPort")
            );
        }
        other => panic!("{other:?}"),
    }
    let (printed, _) = NamesrvConfig::parse(&c.to_properties(), "p").unwrap();
    assert_eq!(printed.to_properties(), c.to_properties());
}

#[test]
fn namesrv_addr_precedence_flag_then_file_then_env() {
    let file = vec!["f:1".to_string()];
    assert_eq!(
        resolve_namesrv_addrs(Some("a:1;b:2"), Some("e:1"), &file).unwrap(),
        vec!["a:1", "b:2"]
    );
    assert_eq!(
        resolve_namesrv_addrs(None, Some("e:1"), &file).unwrap(),
        vec!["f:1"]
    );
    assert_eq!(
        resolve_namesrv_addrs(None, Some("e:1;e:2"), &[]).unwrap(),
        vec!["e:1", "e:2"]
    );
    assert_eq!(
        resolve_namesrv_addrs(Some(" "), None, &[]).unwrap(),
        Vec::<String>::new()
    );
    let err = resolve_namesrv_addrs(None, Some("nohost"), &[]).unwrap_err();
    assert!(err.to_string().contains("NAMESRV_ADDR"), "{err}");
    let err = resolve_namesrv_addrs(Some("x:0"), None, &[]).unwrap_err();
    assert!(err.to_string().contains("-n"), "{err}");
}

#[test]
fn load_reads_files_and_names_missing_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.conf");
    std::fs::write(&path, "brokerName=from-file\nlistenPort=x\n").unwrap();
    match BrokerConfig::load(&path) {
        Err(ConfigError::InvalidValue { path: p, line, .. }) => {
            assert_eq!(p, path.display().to_string());
            assert_eq!(line, 2);
        }
        other => panic!("{other:?}"),
    }
    std::fs::write(&path, "brokerName=from-file\n").unwrap();
    assert_eq!(
        BrokerConfig::load(&path).unwrap().0.broker_name,
        "from-file"
    );
    let missing = dir.path().join("missing.conf");
    let err = NamesrvConfig::load(&missing).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }));
    assert!(err.to_string().contains("missing.conf"));
}

// ---- the shipped conf/ directory

fn conf_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("conf")
}

fn conf_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            conf_files(&path, out);
        } else {
            out.push(path);
        }
    }
}

#[test]
fn every_shipped_conf_file_parses() {
    let mut files = Vec::new();
    conf_files(&conf_dir(), &mut files);
    files.sort();
    let names: Vec<String> = files
        .iter()
        .map(|f| f.strip_prefix(conf_dir()).unwrap().display().to_string())
        .collect();
    for expected in [
        "broker.conf",
        "namesrv.conf",
        "2m-noslave/broker-a.properties",
        "2m-noslave/broker-b.properties",
        "2m-2s-async/broker-a.properties",
        "2m-2s-async/broker-a-s.properties",
        "2m-2s-async/broker-b.properties",
        "2m-2s-async/broker-b-s.properties",
        "2m-2s-sync/broker-a.properties",
        "2m-2s-sync/broker-a-s.properties",
        "2m-2s-sync/broker-b.properties",
        "2m-2s-sync/broker-b-s.properties",
        "dledger/broker-n0.conf",
        "dledger/broker-n1.conf",
        "dledger/broker-n2.conf",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "conf/{expected} missing"
        );
    }
    let mut brokers = 0;
    for (file, name) in files.iter().zip(&names) {
        let text = std::fs::read_to_string(file).unwrap();
        if name.as_str() == "namesrv.conf" {
            let (_, warnings) = NamesrvConfig::parse(&text, name).unwrap();
            assert!(warnings.is_empty(), "{name}: {warnings:?}");
            continue;
        }
        if !(name.ends_with(".conf") || name.ends_with(".properties")) {
            continue;
        }
        let (config, warnings) = BrokerConfig::parse_with_home(&text, name, HOME)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        brokers += 1;
        if name.starts_with("dledger/") {
            assert_eq!(warnings.len(), 5, "{name}: {warnings:#?}");
            assert!(
                warnings.iter().all(|w| w.contains(NOT_SUPPORTED_YET)),
                "{warnings:?}"
            );
            assert!(warnings.iter().any(|w| w.contains("dLegerPeers")));
            assert_eq!(config.broker_cluster_name, "RaftCluster");
        } else {
            assert!(warnings.is_empty(), "{name}: {warnings:#?}");
        }
        if name.contains("2m-") {
            assert_eq!(config.store.file_reserved_time_hours, 48, "{name}");
            assert_eq!(config.store.delete_when, "04", "{name}");
            assert_eq!(
                config.store.flush_disk_type,
                FlushDiskType::AsyncFlush,
                "{name}"
            );
            assert_eq!(config.namesrv_addrs.len(), 2, "{name}");
            let slave = name.ends_with("-s.properties");
            let expected_role = if slave {
                BrokerRole::Slave
            } else if name.starts_with("2m-2s-sync") {
                BrokerRole::SyncMaster
            } else {
                BrokerRole::AsyncMaster
            };
            assert_eq!(config.store.broker_role, expected_role, "{name}");
            assert_eq!(config.broker_id, i64::from(slave), "{name}");
            assert_eq!(
                config.listen_port,
                if slave { 11011 } else { 10911 },
                "{name}"
            );
            assert!(config.store.commitlog_dir().starts_with("/home/rmq/store/"));
        }
    }
    assert_eq!(brokers, 14);
}

#[test]
fn templates_list_every_key_with_its_default() {
    for (file, keys) in [
        ("broker.conf", BrokerConfig::documented_keys()),
        ("namesrv.conf", NamesrvConfig::documented_keys()),
    ] {
        let text = std::fs::read_to_string(conf_dir().join(file)).unwrap();
        for key in keys {
            let line = format!("{}={}", key.key, key.default_value);
            let present = text.lines().any(|l| l == line || l == format!("#{line}"));
            assert!(present, "conf/{file} lacks `{line}` (or `#{line}`)");
        }
    }
    // The active lines of the template are exactly the defaults.
    let text = std::fs::read_to_string(conf_dir().join("broker.conf")).unwrap();
    let (config, warnings) = BrokerConfig::parse_with_home(&text, "broker.conf", HOME).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(
        config.to_properties(),
        BrokerConfig::default().to_properties()
    );
    let text = std::fs::read_to_string(conf_dir().join("namesrv.conf")).unwrap();
    let (config, _) = NamesrvConfig::parse(&text, "namesrv.conf").unwrap();
    assert_eq!(
        config.to_properties(),
        NamesrvConfig::default().to_properties()
    );
}
