//! namesrv.conf keys → [`NamesrvConfig`].

use super::keys::{apply, KeySpec};
use super::properties::parse_properties;
use super::rocketmq_keys::ROCKETMQ_NAMESRV_KEYS;
use super::values::*;
use super::{ConfigError, ConfigWarnings, NamesrvConfig};

/// Every namesrv.conf key Apogee honours, in template order.
pub(crate) static NAMESRV_KEYS: &[KeySpec<NamesrvConfig>] = &[
    KeySpec {
        key: "listenPort",
        doc: "port brokers and clients connect to (0 = any free port)",
        get: |c| c.listen_port.to_string(),
        set: |c, v, _| {
            c.listen_port = parse_int(v, 0u16, u16::MAX)?;
            Ok(None)
        },
    },
    KeySpec {
        key: "bindAddress",
        doc: "local address to bind",
        get: |c| c.listen_ip.to_string(),
        set: |c, v, _| {
            c.listen_ip = parse_ip(v)?;
            Ok(None)
        },
    },
    KeySpec {
        key: "scanNotActiveBrokerInterval",
        doc: "ms between scans for brokers that stopped registering",
        get: |c| c.scan_not_active_broker_interval_ms.to_string(),
        set: |c, v, _| {
            c.scan_not_active_broker_interval_ms = parse_positive_u64(v)?;
            Ok(None)
        },
    },
    KeySpec {
        key: "brokerChannelExpiredTimeout",
        doc: "Apogee: ms without registration after which a broker is dropped from routes",
        get: |c| c.broker_channel_expired_timeout_ms.to_string(),
        set: |c, v, _| {
            c.broker_channel_expired_timeout_ms = parse_positive_u64(v)?;
            Ok(None)
        },
    },
    KeySpec {
        key: "enableAllTopicList",
        doc: "answer GET_ALL_TOPIC_LIST_FROM_NAMESERVER (else SYSTEM_ERROR `disable`)",
        get: |c| c.enable_all_topic_list.to_string(),
        set: |c, v, _| {
            c.enable_all_topic_list = parse_bool(v)?;
            Ok(None)
        },
    },
];

pub(crate) fn parse_namesrv(
    text: &str,
    origin: &str,
) -> Result<(NamesrvConfig, ConfigWarnings), ConfigError> {
    let properties = parse_properties(text, origin)?;
    let mut config = NamesrvConfig::default();
    let mut warnings = ConfigWarnings::new();
    apply(
        NAMESRV_KEYS,
        ROCKETMQ_NAMESRV_KEYS,
        &mut config,
        &properties,
        origin,
        None,
        &mut warnings,
    )?;
    Ok((config, warnings))
}
