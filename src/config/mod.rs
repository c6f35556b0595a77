//! broker.conf / namesrv.conf: RocketMQ's Java-properties format and keys.
//! OWNER: config+namesrv helper. Fields may be added; defaults equal RocketMQ's.

mod broker;
mod keys;
mod namesrv;
pub mod properties;
mod rocketmq_keys;
mod values;

#[cfg(test)]
mod tests;

pub use keys::NOT_SUPPORTED_YET;

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
    /// slaveTimeout, haSendHeartbeatInterval, haHousekeepingInterval, haTransferBatchSize,
    /// haMaxGapNotInSync (crate::ha)
    pub ha: crate::ha::HaConfig,
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
    /// Slave metadata sync period (RocketMQ: 10 s, fixed). Not a broker.conf key; tests and
    /// simulations shorten it.
    pub slave_sync_interval_ms: u64,
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
            ha: crate::ha::HaConfig::default(),
            auto_create_topic_enable: true,
            auto_create_subscription_group: true,
            default_topic_queue_nums: 8,
            broker_permission: 6,
            register_name_server_period_ms: 30_000,
            long_polling_enable: true,
            short_polling_time_ms: 1000,
            slave_read_enable: false,
            slave_sync_interval_ms: crate::broker::slave_sync::DEFAULT_SLAVE_SYNC_INTERVAL_MS,
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

/// Environment variable with the name server list, as in RocketMQ.
pub const NAMESRV_ADDR_ENV: &str = "NAMESRV_ADDR";

/// One supported key for documentation: RocketMQ key, default value as written, description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyDoc {
    pub key: &'static str,
    pub default_value: String,
    pub doc: &'static str,
}

fn read_config_file(path: &Path) -> Result<String, ConfigError> {
    // Read once at startup by the binaries; not a store file, so no `store::disk` seam.
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })
}

fn home_dir() -> Option<String> {
    std::env::var("HOME").ok().filter(|h| !h.is_empty())
}

impl BrokerConfig {
    /// Parses a broker.conf (properties) file.
    pub fn load(path: &Path) -> Result<(BrokerConfig, ConfigWarnings), ConfigError> {
        let text = read_config_file(path)?;
        BrokerConfig::parse(&text, &path.display().to_string())
    }
    /// Parses properties text; `origin` names the file in errors. `${user.home}` and `~` in
    /// paths expand to `$HOME`.
    pub fn parse(text: &str, origin: &str) -> Result<(BrokerConfig, ConfigWarnings), ConfigError> {
        broker::parse_broker(text, origin, home_dir().as_deref())
    }
    /// Like [`BrokerConfig::parse`] with an explicit home directory (tests, simulations).
    pub fn parse_with_home(
        text: &str,
        origin: &str,
        home: Option<&str>,
    ) -> Result<(BrokerConfig, ConfigWarnings), ConfigError> {
        broker::parse_broker(text, origin, home)
    }
    /// Every supported key as `key=value` lines (`mqbroker -p`); parses back to `self`.
    pub fn to_properties(&self) -> String {
        keys::to_properties(broker::BROKER_KEYS, self)
    }
    /// Supported keys with their defaults (the conf/broker.conf template).
    pub fn documented_keys() -> Vec<KeyDoc> {
        let defaults = BrokerConfig::default();
        broker::BROKER_KEYS
            .iter()
            .map(|spec| KeyDoc {
                key: spec.key,
                default_value: (spec.get)(&defaults),
                doc: spec.doc,
            })
            .collect()
    }
    /// `ip:port` registered to the name server (brokerIP1:listenPort).
    pub fn broker_addr(&self) -> String {
        std::net::SocketAddr::new(self.broker_ip1, self.listen_port).to_string()
    }
    /// `ip:haPort` registered as haServerAddr (brokerIP2, else brokerIP1).
    pub fn ha_server_addr(&self) -> String {
        let ip = self.broker_ip2.unwrap_or(self.broker_ip1);
        std::net::SocketAddr::new(ip, self.ha_listen_port).to_string()
    }
}

impl NamesrvConfig {
    pub fn load(path: &Path) -> Result<(NamesrvConfig, ConfigWarnings), ConfigError> {
        let text = read_config_file(path)?;
        NamesrvConfig::parse(&text, &path.display().to_string())
    }
    pub fn parse(text: &str, origin: &str) -> Result<(NamesrvConfig, ConfigWarnings), ConfigError> {
        namesrv::parse_namesrv(text, origin)
    }
    /// Every supported key as `key=value` lines (`mqnamesrv -p`).
    pub fn to_properties(&self) -> String {
        keys::to_properties(namesrv::NAMESRV_KEYS, self)
    }
    /// Supported keys with their defaults (the conf/namesrv.conf template).
    pub fn documented_keys() -> Vec<KeyDoc> {
        let defaults = NamesrvConfig::default();
        namesrv::NAMESRV_KEYS
            .iter()
            .map(|spec| KeyDoc {
                key: spec.key,
                default_value: (spec.get)(&defaults),
                doc: spec.doc,
            })
            .collect()
    }
    /// The socket address to bind.
    pub fn listen_addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::new(self.listen_ip, self.listen_port)
    }
}

/// The name server list a binary should use, with RocketMQ's precedence: the `-n` flag, else
/// `namesrvAddr` from the config file, else the `NAMESRV_ADDR` environment variable. Each
/// source is a `;`-separated `host:port` list; an invalid entry is an error naming its source.
/// Returns an empty list when no source names any server.
pub fn resolve_namesrv_addrs(
    flag: Option<&str>,
    env: Option<&str>,
    file: &[String],
) -> Result<Vec<String>, ConfigError> {
    let parse = |source: &str, value: &str| {
        values::parse_addr_list(value)
            .map_err(|reason| ConfigError::Invalid(format!("{source} `{value}`: {reason}")))
    };
    if let Some(flag) = flag.filter(|f| !f.trim().is_empty()) {
        return parse("-n", flag);
    }
    if !file.is_empty() {
        return parse("namesrvAddr", &file.join(";"));
    }
    match env.filter(|e| !e.trim().is_empty()) {
        Some(env) => parse(NAMESRV_ADDR_ENV, env),
        None => Ok(Vec::new()),
    }
}
