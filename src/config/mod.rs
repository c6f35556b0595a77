//! broker.conf / namesrv.conf: RocketMQ's Java-properties format and keys.
//! OWNER: config+namesrv helper. Fields may be added; defaults equal RocketMQ's.

pub mod properties;

use std::net::IpAddr;
use std::path::Path;

use thiserror::Error;

use crate::store::StoreConfig;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}: invalid value `{value}` for key `{key}`: {reason}")]
    InvalidValue {
        path: String,
        line: usize,
        key: String,
        value: String,
        reason: String,
    },
    #[error("{path}:{line}: {reason}")]
    Syntax {
        path: String,
        line: usize,
        reason: String,
    },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// Broker settings (RocketMQ `BrokerConfig` + `NettyServerConfig` keys) plus the store's.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// brokerClusterName
    pub broker_cluster_name: String,
    /// brokerName
    pub broker_name: String,
    /// brokerId (0 = master)
    pub broker_id: i64,
    /// namesrvAddr, `;`-separated in the file
    pub namesrv_addrs: Vec<String>,
    /// listenPort (the broker also listens on listenPort - 2, the "VIP" port)
    pub listen_port: u16,
    /// brokerIP1 (address registered to the namesrv and stored as store host)
    pub broker_ip1: IpAddr,
    /// brokerIP2 (HA address)
    pub broker_ip2: Option<IpAddr>,
    /// haListenPort (default listenPort + 1)
    pub ha_listen_port: u16,
    /// haMasterAddress
    pub ha_master_address: Option<String>,
    /// autoCreateTopicEnable
    pub auto_create_topic_enable: bool,
    /// autoCreateSubscriptionGroup
    pub auto_create_subscription_group: bool,
    /// defaultTopicQueueNums
    pub default_topic_queue_nums: i32,
    /// brokerPermission
    pub broker_permission: i32,
    /// registerNameServerPeriod
    pub register_name_server_period_ms: u64,
    /// longPollingEnable
    pub long_polling_enable: bool,
    /// shortPollingTimeMills
    pub short_polling_time_ms: u64,
    /// slaveReadEnable
    pub slave_read_enable: bool,
    /// regionId (returned as MSG_REGION)
    pub region_id: String,
    /// traceOn (returned as TRACE_ON)
    pub trace_on: bool,
    /// aclEnable
    pub acl_enable: bool,
    /// messageDelayLevel
    pub message_delay_level: String,
    /// Store settings parsed from the same file.
    pub store: StoreConfig,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            broker_cluster_name: "DefaultCluster".to_string(),
            broker_name: "broker-a".to_string(),
            broker_id: 0,
            namesrv_addrs: Vec::new(),
            listen_port: 10911,
            broker_ip1: IpAddr::from([127, 0, 0, 1]),
            broker_ip2: None,
            ha_listen_port: 10912,
            ha_master_address: None,
            auto_create_topic_enable: true,
            auto_create_subscription_group: true,
            default_topic_queue_nums: 8,
            broker_permission: 6,
            register_name_server_period_ms: 30_000,
            long_polling_enable: true,
            short_polling_time_ms: 1000,
            slave_read_enable: false,
            region_id: "DefaultRegion".to_string(),
            trace_on: true,
            acl_enable: false,
            message_delay_level: "1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h"
                .to_string(),
            store: StoreConfig::default(),
        }
    }
}

/// Namesrv settings.
#[derive(Debug, Clone)]
pub struct NamesrvConfig {
    /// listenPort (default 9876)
    pub listen_port: u16,
    /// Address to bind (default 0.0.0.0).
    pub listen_ip: IpAddr,
    /// Broker silent this long is removed from routes.
    pub broker_channel_expired_timeout_ms: u64,
    /// How often expired brokers are scanned for.
    pub scan_not_active_broker_interval_ms: u64,
    /// enableAllTopicList
    pub enable_all_topic_list: bool,
}

impl Default for NamesrvConfig {
    fn default() -> Self {
        NamesrvConfig {
            listen_port: 9876,
            listen_ip: IpAddr::from([0, 0, 0, 0]),
            broker_channel_expired_timeout_ms: 120_000,
            scan_not_active_broker_interval_ms: 5_000,
            enable_all_topic_list: true,
        }
    }
}

/// Warnings produced while loading (unknown keys), for the caller to log.
pub type ConfigWarnings = Vec<String>;

impl BrokerConfig {
    /// Parses a broker.conf (properties) file.
    pub fn load(path: &Path) -> Result<(BrokerConfig, ConfigWarnings), ConfigError> {
        let _ = path;
        todo!("config helper")
    }
    /// Parses properties text; `origin` names the file in errors.
    pub fn parse(text: &str, origin: &str) -> Result<(BrokerConfig, ConfigWarnings), ConfigError> {
        let _ = (text, origin);
        todo!("config helper")
    }
}

impl NamesrvConfig {
    pub fn load(path: &Path) -> Result<(NamesrvConfig, ConfigWarnings), ConfigError> {
        let _ = path;
        todo!("config helper")
    }
    pub fn parse(text: &str, origin: &str) -> Result<(NamesrvConfig, ConfigWarnings), ConfigError> {
        let _ = (text, origin);
        todo!("config helper")
    }
}
