//! Topic configurations (RocketMQ `TopicConfigManager`): system topics, auto-creation from the
//! `TBW102` template, persisted to `config/topics.json`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use super::config_file::ConfigFile;
use super::BrokerError;
use crate::config::BrokerConfig;
use crate::protocol::topic::{
    self, DataVersion, TopicConfig, TopicConfigSerializeWrapper, AUTO_CREATE_TOPIC_KEY_TOPIC,
    PERM_INHERIT, PERM_READ, PERM_WRITE,
};
use crate::store::Disk;

pub const SELF_TEST_TOPIC: &str = "SELF_TEST_TOPIC";
pub const OFFSET_MOVED_EVENT: &str = "OFFSET_MOVED_EVENT";
pub const SCHEDULE_TOPIC: &str = topic::SCHEDULE_TOPIC;
pub const REPLY_TOPIC_POSTFIX: &str = "REPLY_TOPIC";
pub const TOPIC_MAX_LENGTH: usize = 127;

/// Topics producers may never send to directly (RocketMQ `TopicValidator.isNotAllowedSendTopic`).
const NOT_ALLOWED_SEND_TOPICS: &[&str] = &[
    SCHEDULE_TOPIC,
    "RMQ_SYS_TRANS_HALF_TOPIC",
    "RMQ_SYS_TRANS_OP_HALF_TOPIC",
    "TRANS_CHECK_MAX_TIME_TOPIC",
    "rmq_sys_wheel_timer",
];

pub fn is_not_allowed_send_topic(topic: &str) -> bool {
    NOT_ALLOWED_SEND_TOPICS.contains(&topic)
}

/// Checks a topic name (RocketMQ `TopicValidator.validateTopic`): non-empty, at most 127
/// characters of `[%|a-zA-Z0-9_-]`. Returns the reason on failure.
pub fn validate_topic_name(topic: &str) -> Result<(), String> {
    if topic.is_empty() {
        return Err("the specified topic is blank".to_string());
    }
    if topic.len() > TOPIC_MAX_LENGTH {
        return Err(format!(
            "the specified topic is longer than topic max length {TOPIC_MAX_LENGTH}"
        ));
    }
    if let Some(bad) = topic
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '%' | '|' | '_' | '-')))
    {
        return Err(format!(
            "the specified topic[{topic}] contains illegal character `{bad}`, allowing only ^[%|a-zA-Z0-9_-]+$"
        ));
    }
    Ok(())
}

pub struct TopicConfigManager {
    table: Mutex<TopicConfigSerializeWrapper>,
    file: ConfigFile,
    auto_create_topic_enable: bool,
    /// Signalled on every change so the registration loop registers at once.
    changed: Arc<Notify>,
}

impl TopicConfigManager {
    /// Creates the system topics, then overlays `config/topics.json` (persisted values win, as
    /// in RocketMQ).
    pub fn load(
        config: &BrokerConfig,
        disk: Arc<dyn Disk>,
        changed: Arc<Notify>,
    ) -> Result<TopicConfigManager, BrokerError> {
        let path: PathBuf = config.store.config_dir().join("topics.json");
        let file = ConfigFile::new(disk, path);
        let mut wrapper = TopicConfigSerializeWrapper::default();
        for tc in system_topics(config) {
            wrapper.topic_config_table.insert(tc.topic_name.clone(), tc);
        }
        if let Some(loaded) = file.load::<TopicConfigSerializeWrapper>()? {
            for (name, mut tc) in loaded.topic_config_table {
                if tc.topic_name.is_empty() {
                    tc.topic_name = name.clone();
                }
                wrapper.topic_config_table.insert(name, tc);
            }
            wrapper.data_version = loaded.data_version;
        }
        Ok(TopicConfigManager {
            table: Mutex::new(wrapper),
            file,
            auto_create_topic_enable: config.auto_create_topic_enable,
            changed,
        })
    }

    fn lock(&self) -> MutexGuard<'_, TopicConfigSerializeWrapper> {
        // A poisoned lock only means another request panicked mid-update of a plain map.
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn select(&self, topic: &str) -> Option<TopicConfig> {
        self.lock().topic_config_table.get(topic).cloned()
    }

    pub fn contains(&self, topic: &str) -> bool {
        self.lock().topic_config_table.contains_key(topic)
    }

    pub fn topic_names(&self) -> Vec<String> {
        self.lock().topic_config_table.keys().cloned().collect()
    }

    pub fn wrapper(&self) -> TopicConfigSerializeWrapper {
        self.lock().clone()
    }

    pub fn data_version(&self) -> DataVersion {
        self.lock().data_version.clone()
    }

    /// Auto-creates `topic` from `default_topic` while sending (RocketMQ
    /// `createTopicInSendMessageMethod`). Returns the config (existing or new) and whether it
    /// was created; None when the template does not allow inheritance.
    pub fn create_topic_in_send(
        &self,
        topic: &str,
        default_topic: &str,
        client_default_queue_nums: i32,
        topic_sys_flag: i32,
    ) -> Option<(TopicConfig, bool)> {
        let mut table = self.lock();
        if let Some(tc) = table.topic_config_table.get(topic) {
            return Some((tc.clone(), false));
        }
        let template = table.topic_config_table.get(default_topic)?.clone();
        let mut template_perm = template.perm;
        if default_topic == AUTO_CREATE_TOPIC_KEY_TOPIC && !self.auto_create_topic_enable {
            template_perm = PERM_READ | PERM_WRITE;
        }
        if !topic::is_inherited(template_perm) {
            return None;
        }
        let queue_nums = client_default_queue_nums
            .min(template.write_queue_nums)
            .max(0);
        if queue_nums == 0 {
            return None;
        }
        let mut tc = TopicConfig::new(topic, queue_nums, queue_nums, template_perm & !PERM_INHERIT);
        tc.topic_sys_flag = topic_sys_flag;
        tc.topic_filter_type = template.topic_filter_type.clone();
        table
            .topic_config_table
            .insert(topic.to_string(), tc.clone());
        table.data_version.next_version(crate::rt::now_ms());
        Some((tc, true))
    }

    /// Creates a retry or DLQ topic if absent (RocketMQ `createTopicInSendMessageBackMethod`).
    pub fn create_topic_in_send_back(
        &self,
        topic: &str,
        queue_nums: i32,
        perm: i32,
        topic_sys_flag: i32,
    ) -> (TopicConfig, bool) {
        let mut table = self.lock();
        if let Some(tc) = table.topic_config_table.get(topic) {
            return (tc.clone(), false);
        }
        let mut tc = TopicConfig::new(topic, queue_nums, queue_nums, perm);
        tc.topic_sys_flag = topic_sys_flag;
        table
            .topic_config_table
            .insert(topic.to_string(), tc.clone());
        table.data_version.next_version(crate::rt::now_ms());
        (tc, true)
    }

    /// Creates or replaces a topic (UPDATE_AND_CREATE_TOPIC).
    pub fn update(&self, tc: TopicConfig) {
        let mut table = self.lock();
        table.topic_config_table.insert(tc.topic_name.clone(), tc);
        table.data_version.next_version(crate::rt::now_ms());
    }

    /// Slave side of metadata sync (RocketMQ `SlaveSynchronize.syncTopicConfig`): when the
    /// master's data version differs from ours, its table (and version) replaces ours. True if
    /// it did; the caller persists.
    pub fn replace_from_master(&self, master: TopicConfigSerializeWrapper) -> bool {
        let mut table = self.lock();
        if table.data_version == master.data_version {
            return false;
        }
        *table = master;
        true
    }

    /// Removes a topic; false if it did not exist.
    pub fn delete(&self, topic: &str) -> bool {
        let mut table = self.lock();
        let removed = table.topic_config_table.remove(topic).is_some();
        if removed {
            table.data_version.next_version(crate::rt::now_ms());
        }
        removed
    }

    /// Persists the table and asks the registration loop to register now. Call after any
    /// change.
    pub async fn on_changed(&self) -> Result<(), BrokerError> {
        self.changed.notify_one();
        self.persist().await
    }

    pub async fn persist(&self) -> Result<(), BrokerError> {
        self.file.persist(|| self.encode()).await
    }

    /// Writes `text` (see [`TopicConfigManager::encode`]) unless topics.json already holds it.
    pub async fn persist_if_changed(&self, text: String) -> Result<(), BrokerError> {
        self.file.persist_if_changed(text).await
    }

    /// topics.json text.
    pub fn encode(&self) -> String {
        let table = self.lock();
        serde_json::to_string_pretty(&*table).unwrap_or_default()
    }
}

/// The topics RocketMQ's `TopicConfigManager` creates at startup.
fn system_topics(config: &BrokerConfig) -> Vec<TopicConfig> {
    let mut topics = vec![TopicConfig::new(
        SELF_TEST_TOPIC,
        1,
        1,
        PERM_READ | PERM_WRITE,
    )];
    if config.auto_create_topic_enable {
        let n = config.default_topic_queue_nums;
        topics.push(TopicConfig::new(
            AUTO_CREATE_TOPIC_KEY_TOPIC,
            n,
            n,
            PERM_INHERIT | PERM_READ | PERM_WRITE,
        ));
    }
    // clusterTopicEnable / brokerTopicEnable default to true: the cluster and broker names are
    // readable+writable inheritable topics so clients can route by them.
    topics.push(TopicConfig::new(
        &config.broker_cluster_name,
        16,
        16,
        PERM_INHERIT | PERM_READ | PERM_WRITE,
    ));
    topics.push(TopicConfig::new(
        &config.broker_name,
        1,
        1,
        PERM_INHERIT | PERM_READ | PERM_WRITE,
    ));
    topics.push(TopicConfig::new(
        OFFSET_MOVED_EVENT,
        1,
        1,
        PERM_READ | PERM_WRITE,
    ));
    topics.push(TopicConfig::new(
        SCHEDULE_TOPIC,
        18,
        18,
        PERM_READ | PERM_WRITE,
    ));
    topics.push(TopicConfig::new(
        &format!("{}_{REPLY_TOPIC_POSTFIX}", config.broker_cluster_name),
        1,
        1,
        PERM_READ | PERM_WRITE,
    ));
    topics
}

/// Names of the topics created at startup (excluded from some admin listings).
pub fn system_topic_names(config: &BrokerConfig) -> BTreeMap<String, ()> {
    system_topics(config)
        .into_iter()
        .map(|t| (t.topic_name, ()))
        .collect()
}
