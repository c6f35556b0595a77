//! Committed consumer offsets (RocketMQ `ConsumerOffsetManager`): `topic@group` → queue id →
//! queue offset, persisted to `config/consumerOffset.json` every 5 s and at shutdown.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use super::config_file::ConfigFile;
use super::BrokerError;
use crate::config::BrokerConfig;
use crate::store::Disk;

pub const TOPIC_GROUP_SEPARATOR: char = '@';

/// consumerOffset.json / GET_ALL_CONSUMER_OFFSET body. Queue-id keys are written quoted
/// (standard JSON); fastjson's unquoted form is accepted on read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerOffsetWrapper {
    #[serde(default)]
    pub offset_table: BTreeMap<String, BTreeMap<i32, i64>>,
}

pub fn offset_key(topic: &str, group: &str) -> String {
    format!("{topic}{TOPIC_GROUP_SEPARATOR}{group}")
}

pub struct ConsumerOffsetManager {
    table: Mutex<ConsumerOffsetWrapper>,
    file: ConfigFile,
    dirty: AtomicBool,
}

impl ConsumerOffsetManager {
    pub fn load(
        config: &BrokerConfig,
        disk: Arc<dyn Disk>,
    ) -> Result<ConsumerOffsetManager, BrokerError> {
        let file = ConfigFile::new(disk, config.store.config_dir().join("consumerOffset.json"));
        let wrapper = file.load::<ConsumerOffsetWrapper>()?.unwrap_or_default();
        Ok(ConsumerOffsetManager {
            table: Mutex::new(wrapper),
            file,
            dirty: AtomicBool::new(false),
        })
    }

    fn lock(&self) -> MutexGuard<'_, ConsumerOffsetWrapper> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The committed offset, or None if the group never committed one for this queue.
    pub fn query(&self, group: &str, topic: &str, queue_id: i32) -> Option<i64> {
        self.lock()
            .offset_table
            .get(&offset_key(topic, group))
            .and_then(|m| m.get(&queue_id))
            .copied()
    }

    pub fn commit(&self, group: &str, topic: &str, queue_id: i32, queue_offset: i64) {
        self.lock()
            .offset_table
            .entry(offset_key(topic, group))
            .or_default()
            .insert(queue_id, queue_offset);
        self.dirty.store(true, Ordering::Release);
    }

    /// All committed offsets of a group on a topic.
    pub fn query_all(&self, group: &str, topic: &str) -> BTreeMap<i32, i64> {
        self.lock()
            .offset_table
            .get(&offset_key(topic, group))
            .cloned()
            .unwrap_or_default()
    }

    /// Topics a group has offsets for.
    pub fn topics_of_group(&self, group: &str) -> BTreeSet<String> {
        self.lock()
            .offset_table
            .keys()
            .filter_map(|k| k.rsplit_once(TOPIC_GROUP_SEPARATOR))
            .filter(|(_, g)| *g == group)
            .map(|(t, _)| t.to_string())
            .collect()
    }

    /// Groups having offsets on a topic.
    pub fn groups_of_topic(&self, topic: &str) -> BTreeSet<String> {
        self.lock()
            .offset_table
            .keys()
            .filter_map(|k| k.rsplit_once(TOPIC_GROUP_SEPARATOR))
            .filter(|(t, _)| *t == topic)
            .map(|(_, g)| g.to_string())
            .collect()
    }

    pub fn remove_topic(&self, topic: &str) {
        self.lock().offset_table.retain(|k, _| {
            k.rsplit_once(TOPIC_GROUP_SEPARATOR)
                .is_none_or(|(t, _)| t != topic)
        });
        self.dirty.store(true, Ordering::Release);
    }

    pub fn wrapper(&self) -> ConsumerOffsetWrapper {
        self.lock().clone()
    }

    pub fn encode(&self) -> String {
        serde_json::to_string_pretty(&*self.lock()).unwrap_or_default()
    }

    /// Persists if anything changed since the last persist (or `force`).
    pub async fn persist(&self, force: bool) -> Result<(), BrokerError> {
        if !self.dirty.swap(false, Ordering::AcqRel) && !force {
            return Ok(());
        }
        let result = self.file.persist(|| self.encode()).await;
        if result.is_err() {
            // Retry on the next tick.
            self.dirty.store(true, Ordering::Release);
        }
        result
    }
}
