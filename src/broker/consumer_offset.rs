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

/// A committed offset the slave holds ahead of its master (see
/// [`ConsumerOffsetManager::merge_from_master`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetAhead {
    pub topic: String,
    pub group: String,
    pub queue_id: i32,
    pub queue_offset: i64,
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

    /// Commits only if `queue_offset` is ahead of the committed one (or none exists). Used for
    /// offsets a slave pushes back to its master after an outage (metadata sync): such a push
    /// must never rewind an offset a consumer committed on the master meanwhile. True if it
    /// moved the offset.
    pub fn commit_forward(
        &self,
        group: &str,
        topic: &str,
        queue_id: i32,
        queue_offset: i64,
    ) -> bool {
        let mut table = self.lock();
        let queues = table
            .offset_table
            .entry(offset_key(topic, group))
            .or_default();
        match queues.get(&queue_id) {
            Some(&current) if current >= queue_offset => false,
            _ => {
                queues.insert(queue_id, queue_offset);
                self.dirty.store(true, Ordering::Release);
                true
            }
        }
    }

    /// Slave side of metadata sync: merges the master's table into ours. An offset the master
    /// has ahead of ours (or we lack) is taken; one we have ahead (committed here while the
    /// master was down, or lost by the master in a crash) is kept and returned so the caller can
    /// push it to the master. With `overwrite_newer` (a deliberate bug for simulations) the
    /// master's older offsets overwrite ours, as RocketMQ 4.x's `putAll` did (#1094).
    pub fn merge_from_master(
        &self,
        master: &ConsumerOffsetWrapper,
        overwrite_newer: bool,
    ) -> Vec<OffsetAhead> {
        let mut table = self.lock();
        let mut changed = false;
        for (key, master_queues) in &master.offset_table {
            let local = table.offset_table.entry(key.clone()).or_default();
            for (&queue_id, &master_offset) in master_queues {
                match local.get(&queue_id) {
                    Some(&ours)
                        if ours >= master_offset && !(overwrite_newer && ours != master_offset) => {
                    }
                    _ => {
                        local.insert(queue_id, master_offset);
                        changed = true;
                    }
                }
            }
        }
        let mut ahead = Vec::new();
        for (key, queues) in &table.offset_table {
            let Some((topic, group)) = key.rsplit_once(TOPIC_GROUP_SEPARATOR) else {
                continue;
            };
            let master_queues = master.offset_table.get(key);
            for (&queue_id, &ours) in queues {
                let theirs = master_queues.and_then(|m| m.get(&queue_id)).copied();
                if theirs.is_none_or(|t| t < ours) {
                    ahead.push(OffsetAhead {
                        topic: topic.to_string(),
                        group: group.to_string(),
                        queue_id,
                        queue_offset: ours,
                    });
                }
            }
        }
        if changed {
            self.dirty.store(true, Ordering::Release);
        }
        ahead
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
