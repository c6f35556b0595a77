//! Consumer group configurations (RocketMQ `SubscriptionGroupManager`), persisted to
//! `config/subscriptionGroup.json`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use super::config_file::ConfigFile;
use super::BrokerError;
use crate::config::BrokerConfig;
use crate::protocol::topic::DataVersion;
use crate::store::Disk;

/// RocketMQ `SubscriptionGroupConfig` (4.9 fields plus 5.x `attributes`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionGroupConfig {
    pub group_name: String,
    #[serde(default = "yes")]
    pub consume_enable: bool,
    #[serde(default = "yes")]
    pub consume_from_min_enable: bool,
    #[serde(default = "yes")]
    pub consume_broadcast_enable: bool,
    #[serde(default)]
    pub consume_message_orderly: bool,
    #[serde(default = "one")]
    pub retry_queue_nums: i32,
    #[serde(default = "sixteen")]
    pub retry_max_times: i32,
    #[serde(default)]
    pub broker_id: i64,
    #[serde(default = "one_i64")]
    pub which_broker_when_consume_slowly: i64,
    #[serde(default = "yes")]
    pub notify_consumer_ids_changed_enable: bool,
    #[serde(default)]
    pub group_sys_flag: i32,
    #[serde(default = "fifteen")]
    pub consume_timeout_minute: i32,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

fn yes() -> bool {
    true
}
fn one() -> i32 {
    1
}
fn one_i64() -> i64 {
    1
}
fn sixteen() -> i32 {
    16
}
fn fifteen() -> i32 {
    15
}

impl SubscriptionGroupConfig {
    pub fn new(group_name: &str) -> Self {
        SubscriptionGroupConfig {
            group_name: group_name.to_string(),
            consume_enable: true,
            consume_from_min_enable: true,
            consume_broadcast_enable: true,
            consume_message_orderly: false,
            retry_queue_nums: 1,
            retry_max_times: 16,
            broker_id: 0,
            which_broker_when_consume_slowly: 1,
            notify_consumer_ids_changed_enable: true,
            group_sys_flag: 0,
            consume_timeout_minute: 15,
            attributes: BTreeMap::new(),
        }
    }
}

/// subscriptionGroup.json / GET_ALL_SUBSCRIPTIONGROUP_CONFIG body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionGroupWrapper {
    #[serde(default)]
    pub subscription_group_table: BTreeMap<String, SubscriptionGroupConfig>,
    #[serde(default)]
    pub data_version: DataVersion,
}

/// Groups RocketMQ creates at startup (`SubscriptionGroupManager.init`).
const SYSTEM_GROUPS: &[&str] = &[
    "TOOLS_CONSUMER",
    "FILTERSRV_CONSUMER",
    "SELF_TEST_C_GROUP",
    "CID_ONS-HTTP-PROXY",
    "CID_ONSAPI_PULL",
    "CID_ONSAPI_PERMISSION",
    "CID_ONSAPI_OWNER",
    "CID_RMQ_SYS_TRACE",
];

pub struct SubscriptionGroupManager {
    table: Mutex<SubscriptionGroupWrapper>,
    file: ConfigFile,
    auto_create: bool,
}

impl SubscriptionGroupManager {
    pub fn load(
        config: &BrokerConfig,
        disk: Arc<dyn Disk>,
    ) -> Result<SubscriptionGroupManager, BrokerError> {
        let file = ConfigFile::new(
            disk,
            config.store.config_dir().join("subscriptionGroup.json"),
        );
        let mut wrapper = SubscriptionGroupWrapper::default();
        for g in SYSTEM_GROUPS {
            let mut cfg = SubscriptionGroupConfig::new(g);
            if *g == "TOOLS_CONSUMER" || *g == "FILTERSRV_CONSUMER" {
                cfg.consume_broadcast_enable = true;
            }
            wrapper.subscription_group_table.insert(g.to_string(), cfg);
        }
        if let Some(loaded) = file.load::<SubscriptionGroupWrapper>()? {
            wrapper
                .subscription_group_table
                .extend(loaded.subscription_group_table);
            wrapper.data_version = loaded.data_version;
        }
        Ok(SubscriptionGroupManager {
            table: Mutex::new(wrapper),
            file,
            auto_create: config.auto_create_subscription_group,
        })
    }

    fn lock(&self) -> MutexGuard<'_, SubscriptionGroupWrapper> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, group: &str) -> Option<SubscriptionGroupConfig> {
        self.lock().subscription_group_table.get(group).cloned()
    }

    /// Finds a group, auto-creating it when `autoCreateSubscriptionGroup` is on (RocketMQ
    /// `findSubscriptionGroupConfig`). The bool says whether it was created (persist then).
    pub fn find_or_create(&self, group: &str) -> Option<(SubscriptionGroupConfig, bool)> {
        let mut table = self.lock();
        if let Some(cfg) = table.subscription_group_table.get(group) {
            return Some((cfg.clone(), false));
        }
        if !self.auto_create || group.is_empty() {
            return None;
        }
        let cfg = SubscriptionGroupConfig::new(group);
        table
            .subscription_group_table
            .insert(group.to_string(), cfg.clone());
        table.data_version.next_version(crate::rt::now_ms());
        Some((cfg, true))
    }

    pub fn update(&self, cfg: SubscriptionGroupConfig) {
        let mut table = self.lock();
        table
            .subscription_group_table
            .insert(cfg.group_name.clone(), cfg);
        table.data_version.next_version(crate::rt::now_ms());
    }

    /// Slave side of metadata sync (RocketMQ `SlaveSynchronize.syncSubscriptionGroupConfig`):
    /// the master's table replaces ours when the data versions differ. True if it did.
    pub fn replace_from_master(&self, master: SubscriptionGroupWrapper) -> bool {
        let mut table = self.lock();
        if table.data_version == master.data_version {
            return false;
        }
        *table = master;
        true
    }

    pub fn delete(&self, group: &str) -> bool {
        let mut table = self.lock();
        let removed = table.subscription_group_table.remove(group).is_some();
        if removed {
            table.data_version.next_version(crate::rt::now_ms());
        }
        removed
    }

    pub fn wrapper(&self) -> SubscriptionGroupWrapper {
        self.lock().clone()
    }

    pub fn encode(&self) -> String {
        serde_json::to_string_pretty(&*self.lock()).unwrap_or_default()
    }

    pub async fn persist(&self) -> Result<(), BrokerError> {
        self.file.persist(|| self.encode()).await
    }
}
