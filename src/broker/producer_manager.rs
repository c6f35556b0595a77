//! Online producers per group (RocketMQ `ProducerManager`), for GET_PRODUCER_CONNECTION_LIST
//! and (later) transaction check-back.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use super::consumer_manager::ClientChannelInfo;
use crate::protocol::consumer::ProducerConnection;

#[derive(Default)]
pub struct ProducerManager {
    groups: Mutex<HashMap<String, BTreeMap<u64, ClientChannelInfo>>>,
}

impl ProducerManager {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, BTreeMap<u64, ClientChannelInfo>>> {
        self.groups.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn register(&self, group: &str, info: ClientChannelInfo) {
        self.lock()
            .entry(group.to_string())
            .or_default()
            .insert(info.channel.id(), info);
    }

    pub fn unregister(&self, group: &str, channel_id: u64) {
        let mut groups = self.lock();
        if let Some(channels) = groups.get_mut(group) {
            channels.remove(&channel_id);
            if channels.is_empty() {
                groups.remove(group);
            }
        }
    }

    pub fn on_channel_closed(&self, channel_id: u64) {
        self.remove_where(|c| c.channel.id() == channel_id);
    }

    pub fn scan_expired(&self, now_ms: i64, timeout_ms: i64) {
        self.remove_where(|c| now_ms - c.last_update_ms > timeout_ms);
    }

    fn remove_where(&self, pred: impl Fn(&ClientChannelInfo) -> bool) {
        let mut groups = self.lock();
        for channels in groups.values_mut() {
            channels.retain(|_, c| !pred(c));
        }
        groups.retain(|_, c| !c.is_empty());
    }

    pub fn connection(&self, group: &str) -> Option<ProducerConnection> {
        let groups = self.lock();
        let channels = groups.get(group)?;
        Some(ProducerConnection {
            connection_set: channels.values().map(|c| c.connection_info()).collect(),
        })
    }
}
