//! Online consumers per group (RocketMQ `ConsumerManager`/`ConsumerGroupInfo`), fed by
//! heartbeats, drained by UNREGISTER_CLIENT, connection close and 120 s of silence.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use super::channel::ClientChannel;
use crate::protocol::consumer::{ConnectionInfo, ConsumerConnection};
use crate::protocol::heartbeat::SubscriptionData;

/// Silence after which a client channel is dropped (`channelExpiredTimeout`).
pub const CHANNEL_EXPIRED_TIMEOUT_MS: i64 = 120_000;

#[derive(Clone)]
pub struct ClientChannelInfo {
    pub channel: ClientChannel,
    pub client_id: String,
    pub language: String,
    pub version: i32,
    pub last_update_ms: i64,
}

impl ClientChannelInfo {
    pub fn connection_info(&self) -> ConnectionInfo {
        ConnectionInfo {
            client_addr: self.channel.peer_addr().to_string(),
            client_id: self.client_id.clone(),
            language: self.language.clone(),
            version: self.version,
        }
    }
}

#[derive(Clone)]
pub struct ConsumerGroupInfo {
    pub group_name: String,
    pub consume_type: String,
    pub message_model: String,
    pub consume_from_where: String,
    /// Keyed by channel id.
    pub channels: BTreeMap<u64, ClientChannelInfo>,
    pub subscriptions: BTreeMap<String, SubscriptionData>,
}

impl ConsumerGroupInfo {
    pub fn all_channels(&self) -> Vec<ClientChannel> {
        self.channels.values().map(|c| c.channel.clone()).collect()
    }

    pub fn client_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .channels
            .values()
            .map(|c| c.client_id.clone())
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }

    pub fn connection(&self) -> ConsumerConnection {
        ConsumerConnection {
            connection_set: self
                .channels
                .values()
                .map(|c| c.connection_info())
                .collect(),
            consume_from_where: self.consume_from_where.clone(),
            consume_type: self.consume_type.clone(),
            message_model: self.message_model.clone(),
            subscription_table: self.subscriptions.clone(),
        }
    }

    /// Replaces the subscriptions; true when a topic was added or removed or a subscription
    /// got a newer version (RocketMQ `updateSubscription`).
    fn update_subscriptions(&mut self, subs: &[SubscriptionData]) -> bool {
        let mut changed = false;
        for sub in subs {
            match self.subscriptions.get(&sub.topic) {
                None => {
                    self.subscriptions.insert(sub.topic.clone(), sub.clone());
                    changed = true;
                }
                Some(old) if sub.sub_version > old.sub_version => {
                    self.subscriptions.insert(sub.topic.clone(), sub.clone());
                    changed = true;
                }
                Some(_) => {}
            }
        }
        let before = self.subscriptions.len();
        self.subscriptions
            .retain(|topic, _| subs.iter().any(|s| &s.topic == topic));
        changed || before != self.subscriptions.len()
    }
}

/// What a membership change asks the caller to do: notify these channels of `group`.
pub struct MembershipChange {
    pub group: String,
    pub notify: Vec<ClientChannel>,
}

#[derive(Default)]
pub struct ConsumerManager {
    groups: Mutex<HashMap<String, ConsumerGroupInfo>>,
}

impl ConsumerManager {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, ConsumerGroupInfo>> {
        self.groups.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers (or refreshes) a consumer. Returns true when membership or subscriptions
    /// changed (the caller notifies the group's clients if the group allows it).
    #[allow(clippy::too_many_arguments)]
    pub fn register(
        &self,
        group: &str,
        info: ClientChannelInfo,
        consume_type: &str,
        message_model: &str,
        consume_from_where: &str,
        subs: &[SubscriptionData],
    ) -> bool {
        let mut groups = self.lock();
        let entry = groups
            .entry(group.to_string())
            .or_insert_with(|| ConsumerGroupInfo {
                group_name: group.to_string(),
                consume_type: consume_type.to_string(),
                message_model: message_model.to_string(),
                consume_from_where: consume_from_where.to_string(),
                channels: BTreeMap::new(),
                subscriptions: BTreeMap::new(),
            });
        entry.consume_type = consume_type.to_string();
        entry.message_model = message_model.to_string();
        entry.consume_from_where = consume_from_where.to_string();
        let channel_id = info.channel.id();
        let new_channel = match entry.channels.get_mut(&channel_id) {
            Some(existing) => {
                existing.last_update_ms = info.last_update_ms;
                if existing.client_id != info.client_id {
                    existing.client_id = info.client_id.clone();
                    true
                } else {
                    false
                }
            }
            None => {
                entry.channels.insert(channel_id, info);
                true
            }
        };
        let subs_changed = entry.update_subscriptions(subs);
        new_channel || subs_changed
    }

    /// Removes a client's channel from one group (UNREGISTER_CLIENT).
    pub fn unregister(&self, group: &str, channel_id: u64) -> Option<MembershipChange> {
        let mut groups = self.lock();
        let info = groups.get_mut(group)?;
        info.channels.remove(&channel_id)?;
        let notify = info.all_channels();
        if info.channels.is_empty() {
            groups.remove(group);
        }
        Some(MembershipChange {
            group: group.to_string(),
            notify,
        })
    }

    /// Removes a closed channel from every group.
    pub fn on_channel_closed(&self, channel_id: u64) -> Vec<MembershipChange> {
        self.remove_where(|c| c.channel.id() == channel_id)
    }

    /// Removes channels silent for longer than `timeout_ms`.
    pub fn scan_expired(&self, now_ms: i64, timeout_ms: i64) -> Vec<MembershipChange> {
        self.remove_where(|c| now_ms - c.last_update_ms > timeout_ms)
    }

    fn remove_where(&self, pred: impl Fn(&ClientChannelInfo) -> bool) -> Vec<MembershipChange> {
        let mut groups = self.lock();
        let mut changes = Vec::new();
        let mut empty = Vec::new();
        for (name, info) in groups.iter_mut() {
            let before = info.channels.len();
            info.channels.retain(|_, c| !pred(c));
            if info.channels.len() != before {
                changes.push(MembershipChange {
                    group: name.clone(),
                    notify: info.all_channels(),
                });
                if info.channels.is_empty() {
                    empty.push(name.clone());
                }
            }
        }
        for name in empty {
            groups.remove(&name);
        }
        changes
    }

    pub fn group(&self, group: &str) -> Option<ConsumerGroupInfo> {
        self.lock().get(group).cloned()
    }

    pub fn find_subscription(&self, group: &str, topic: &str) -> Option<SubscriptionData> {
        self.lock()
            .get(group)
            .and_then(|g| g.subscriptions.get(topic).cloned())
    }

    pub fn group_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.lock().keys().cloned().collect();
        names.sort();
        names
    }
}
