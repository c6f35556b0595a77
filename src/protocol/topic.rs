//! Topic configuration and data version (RocketMQ `TopicConfig`, `DataVersion`, `PermName`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub const PERM_PRIORITY: i32 = 0x8;
pub const PERM_READ: i32 = 0x4;
pub const PERM_WRITE: i32 = 0x2;
pub const PERM_INHERIT: i32 = 0x1;

pub fn is_readable(perm: i32) -> bool {
    perm & PERM_READ != 0
}
pub fn is_writeable(perm: i32) -> bool {
    perm & PERM_WRITE != 0
}
pub fn is_inherited(perm: i32) -> bool {
    perm & PERM_INHERIT != 0
}

/// The auto-create template topic.
pub const AUTO_CREATE_TOPIC_KEY_TOPIC: &str = "TBW102";
pub const RETRY_GROUP_TOPIC_PREFIX: &str = "%RETRY%";
pub const DLQ_GROUP_TOPIC_PREFIX: &str = "%DLQ%";
pub const SCHEDULE_TOPIC: &str = "SCHEDULE_TOPIC_XXXX";

pub fn retry_topic(group: &str) -> String {
    format!("{RETRY_GROUP_TOPIC_PREFIX}{group}")
}
pub fn dlq_topic(group: &str) -> String {
    format!("{DLQ_GROUP_TOPIC_PREFIX}{group}")
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicConfig {
    pub topic_name: String,
    #[serde(default = "default_queue_nums")]
    pub read_queue_nums: i32,
    #[serde(default = "default_queue_nums")]
    pub write_queue_nums: i32,
    #[serde(default = "default_perm")]
    pub perm: i32,
    #[serde(default = "default_filter_type")]
    pub topic_filter_type: String,
    #[serde(default)]
    pub topic_sys_flag: i32,
    #[serde(default)]
    pub order: bool,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

fn default_queue_nums() -> i32 {
    16
}
fn default_perm() -> i32 {
    PERM_READ | PERM_WRITE
}
fn default_filter_type() -> String {
    "SINGLE_TAG".to_string()
}

impl TopicConfig {
    pub fn new(topic_name: &str, read_queue_nums: i32, write_queue_nums: i32, perm: i32) -> Self {
        TopicConfig {
            topic_name: topic_name.to_string(),
            read_queue_nums,
            write_queue_nums,
            perm,
            topic_filter_type: default_filter_type(),
            topic_sys_flag: 0,
            order: false,
            attributes: BTreeMap::new(),
        }
    }
}

/// RocketMQ `DataVersion`: bumped on every change of a config table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataVersion {
    #[serde(default)]
    pub state_version: i64,
    #[serde(default)]
    pub timestamp: i64,
    #[serde(default)]
    pub counter: i64,
}

impl DataVersion {
    pub fn next_version(&mut self, now_ms: i64) {
        self.timestamp = now_ms;
        self.counter += 1;
    }
}

/// `{"topicConfigTable":{...},"dataVersion":{...}}` (topics.json, GET_ALL_TOPIC_CONFIG,
/// REGISTER_BROKER body part).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicConfigSerializeWrapper {
    #[serde(default)]
    pub topic_config_table: BTreeMap<String, TopicConfig>,
    #[serde(default)]
    pub data_version: DataVersion,
}
