//! The name server's route state (RocketMQ `RouteInfoManager`): which broker groups exist, which
//! topics they serve with how many queues, and when each broker last registered.
//!
//! Pure state: no I/O, no clock. Callers pass `now_ms` and connection ids, so every rule here is
//! unit-testable; the processor and the scan loop own the locking and the timing.

use std::collections::{BTreeMap, BTreeSet};

use crate::protocol::cluster::ClusterInfo;
use crate::protocol::kv::TopicList;
use crate::protocol::route::{BrokerData, QueueData, TopicRouteData, MASTER_ID};
use crate::protocol::topic::{DataVersion, TopicConfig, TopicConfigSerializeWrapper};
use crate::protocol::topic::{PERM_READ, PERM_WRITE};

/// A broker is identified for liveness by its cluster and address (RocketMQ `BrokerAddrInfo`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct BrokerAddrInfo {
    pub cluster_name: String,
    pub broker_addr: String,
}

/// Liveness record of one registered broker (RocketMQ `BrokerLiveInfo`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerLiveInfo {
    pub last_update_ms: i64,
    pub heartbeat_timeout_ms: u64,
    pub data_version: DataVersion,
    /// Connection the broker registered over (None for in-process registrations).
    pub connection_id: Option<u64>,
    pub ha_server_addr: String,
}

/// One REGISTER_BROKER, decoded.
#[derive(Debug, Clone, Default)]
pub struct BrokerRegistration {
    pub cluster_name: String,
    pub broker_addr: String,
    pub broker_name: String,
    pub broker_id: i64,
    pub ha_server_addr: String,
    /// Per-broker expiry (5.x `heartbeatTimeoutMillis`); None = the table's default.
    pub heartbeat_timeout_ms: Option<u64>,
    pub topic_config_wrapper: TopicConfigSerializeWrapper,
    pub filter_server_list: Vec<String>,
    pub connection_id: Option<u64>,
}

/// For a slave: where its master is (both None for masters or when no master is registered).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistrationOutcome {
    pub ha_server_addr: Option<String>,
    pub master_addr: Option<String>,
}

/// A broker removed because it went silent or its connection closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemovedBroker {
    pub cluster_name: String,
    pub broker_addr: String,
    pub connection_id: Option<u64>,
}

#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    /// topic → broker name → queues of the topic on that broker group
    topic_queue_table: BTreeMap<String, BTreeMap<String, QueueData>>,
    /// broker name → group (cluster, member addresses by id)
    broker_addr_table: BTreeMap<String, BrokerData>,
    /// cluster → broker names
    cluster_addr_table: BTreeMap<String, BTreeSet<String>>,
    broker_live_table: BTreeMap<BrokerAddrInfo, BrokerLiveInfo>,
    /// Filter servers per broker (RocketMQ 4.x feature; kept only to answer routes).
    filter_server_table: BTreeMap<BrokerAddrInfo, Vec<String>>,
    default_heartbeat_timeout_ms: u64,
}

impl RouteTable {
    /// `default_heartbeat_timeout_ms`: silence after which a broker is dropped unless it asked
    /// for its own timeout (RocketMQ: 120 s).
    pub fn new(default_heartbeat_timeout_ms: u64) -> Self {
        assert!(
            default_heartbeat_timeout_ms > 0,
            "broker expiry timeout must be positive"
        );
        RouteTable {
            default_heartbeat_timeout_ms,
            ..Default::default()
        }
    }

    /// Records a registration. Only the master (broker id 0) updates queue data, and only when
    /// its topic config version changed, the group is new, or a topic lacks its queue data —
    /// so a periodic re-registration does not undo WIPE_WRITE_PERM_OF_BROKER.
    pub fn register_broker(
        &mut self,
        registration: BrokerRegistration,
        now_ms: i64,
    ) -> RegistrationOutcome {
        let BrokerRegistration {
            cluster_name,
            broker_addr,
            broker_name,
            broker_id,
            ha_server_addr,
            heartbeat_timeout_ms,
            topic_config_wrapper,
            filter_server_list,
            connection_id,
        } = registration;
        let addr_info = BrokerAddrInfo {
            cluster_name: cluster_name.clone(),
            broker_addr: broker_addr.clone(),
        };
        self.cluster_addr_table
            .entry(cluster_name.clone())
            .or_default()
            .insert(broker_name.clone());

        let mut register_first = false;
        let broker_data = self
            .broker_addr_table
            .entry(broker_name.clone())
            .or_insert_with(|| {
                register_first = true;
                BrokerData::new(&cluster_name, &broker_name)
            });
        // A slave promoted to master (or the reverse) re-registers the same address under a new
        // id: one address keeps one id.
        broker_data
            .broker_addrs
            .retain(|id, addr| *id == broker_id || *addr != broker_addr);
        let previous_addr = broker_data
            .broker_addrs
            .insert(broker_id, broker_addr.clone());
        register_first |= previous_addr.is_none();

        if broker_id == MASTER_ID {
            let version_changed = self.is_broker_topic_config_changed(
                &cluster_name,
                &broker_addr,
                &topic_config_wrapper.data_version,
            );
            for topic in topic_config_wrapper.topic_config_table.values() {
                let missing = self
                    .topic_queue_table
                    .get(&topic.topic_name)
                    .is_none_or(|by_broker| !by_broker.contains_key(&broker_name));
                if register_first || version_changed || missing {
                    self.create_and_update_queue_data(&broker_name, topic);
                }
            }
        }

        self.broker_live_table.insert(
            addr_info.clone(),
            BrokerLiveInfo {
                last_update_ms: now_ms,
                heartbeat_timeout_ms: heartbeat_timeout_ms
                    .unwrap_or(self.default_heartbeat_timeout_ms),
                data_version: topic_config_wrapper.data_version,
                connection_id,
                ha_server_addr,
            },
        );
        if filter_server_list.is_empty() {
            self.filter_server_table.remove(&addr_info);
        } else {
            self.filter_server_table
                .insert(addr_info, filter_server_list);
        }

        let mut outcome = RegistrationOutcome::default();
        if broker_id != MASTER_ID {
            let master_addr = self
                .broker_addr_table
                .get(&broker_name)
                .and_then(|b| b.master_addr())
                .map(str::to_string);
            if let Some(master_addr) = master_addr {
                let master_info = BrokerAddrInfo {
                    cluster_name,
                    broker_addr: master_addr.clone(),
                };
                if let Some(live) = self.broker_live_table.get(&master_info) {
                    outcome.ha_server_addr = Some(live.ha_server_addr.clone());
                    outcome.master_addr = Some(master_addr);
                }
            }
        }
        self.debug_check();
        outcome
    }

    fn create_and_update_queue_data(&mut self, broker_name: &str, topic: &TopicConfig) {
        let queue_data = QueueData {
            broker_name: broker_name.to_string(),
            perm: topic.perm,
            read_queue_nums: topic.read_queue_nums,
            topic_sys_flag: topic.topic_sys_flag,
            write_queue_nums: topic.write_queue_nums,
        };
        self.topic_queue_table
            .entry(topic.topic_name.clone())
            .or_default()
            .insert(broker_name.to_string(), queue_data);
    }

    /// True if the broker is unknown or registered a different topic config version.
    pub fn is_broker_topic_config_changed(
        &self,
        cluster_name: &str,
        broker_addr: &str,
        data_version: &DataVersion,
    ) -> bool {
        match self.live_info(cluster_name, broker_addr) {
            Some(live) => live.data_version != *data_version,
            None => true,
        }
    }

    pub fn live_info(&self, cluster_name: &str, broker_addr: &str) -> Option<&BrokerLiveInfo> {
        self.broker_live_table.get(&BrokerAddrInfo {
            cluster_name: cluster_name.to_string(),
            broker_addr: broker_addr.to_string(),
        })
    }

    /// QUERY_DATA_VERSION counts as a heartbeat.
    pub fn update_broker_timestamp(&mut self, cluster_name: &str, broker_addr: &str, now_ms: i64) {
        let key = BrokerAddrInfo {
            cluster_name: cluster_name.to_string(),
            broker_addr: broker_addr.to_string(),
        };
        if let Some(live) = self.broker_live_table.get_mut(&key) {
            live.last_update_ms = now_ms;
        }
    }

    /// UNREGISTER_BROKER (and the removal path of expiry and connection close). When the last
    /// member of a group leaves, the group, its cluster entry (if emptied) and its queue data go.
    pub fn unregister_broker(
        &mut self,
        cluster_name: &str,
        broker_addr: &str,
        broker_name: &str,
        broker_id: i64,
    ) {
        let key = BrokerAddrInfo {
            cluster_name: cluster_name.to_string(),
            broker_addr: broker_addr.to_string(),
        };
        self.broker_live_table.remove(&key);
        self.filter_server_table.remove(&key);
        let mut removed_group_cluster = None;
        if let Some(data) = self.broker_addr_table.get_mut(broker_name) {
            if data.broker_addrs.get(&broker_id).map(String::as_str) == Some(broker_addr) {
                data.broker_addrs.remove(&broker_id);
            }
            if data.broker_addrs.is_empty() {
                removed_group_cluster = Some(data.cluster.clone());
                self.broker_addr_table.remove(broker_name);
            }
        }
        if let Some(group_cluster) = removed_group_cluster {
            // A group that moved clusters is listed under both names; drop it from both.
            for cluster in [cluster_name, group_cluster.as_str()] {
                if let Some(names) = self.cluster_addr_table.get_mut(cluster) {
                    names.remove(broker_name);
                    if names.is_empty() {
                        self.cluster_addr_table.remove(cluster);
                    }
                }
            }
            self.remove_topics_of_broker_name(broker_name);
        }
        self.debug_check();
    }

    fn remove_topics_of_broker_name(&mut self, broker_name: &str) {
        self.topic_queue_table.retain(|_, by_broker| {
            by_broker.remove(broker_name);
            !by_broker.is_empty()
        });
    }

    /// Removes a broker known only by cluster and address (expiry, connection close).
    fn remove_by_addr(&mut self, key: &BrokerAddrInfo) {
        let member_of = |data: &BrokerData| {
            data.broker_addrs
                .iter()
                .find(|(_, addr)| **addr == key.broker_addr)
                .map(|(id, _)| (data.broker_name.clone(), *id))
        };
        // Prefer the group of the same cluster; a group registered under another cluster name
        // earlier (renamed cluster) still must not keep a dead address.
        let member = self
            .broker_addr_table
            .values()
            .filter(|data| data.cluster == key.cluster_name)
            .find_map(member_of)
            .or_else(|| self.broker_addr_table.values().find_map(member_of));
        match member {
            Some((broker_name, broker_id)) => {
                self.unregister_broker(&key.cluster_name, &key.broker_addr, &broker_name, broker_id)
            }
            None => {
                self.broker_live_table.remove(key);
                self.filter_server_table.remove(key);
            }
        }
    }

    /// Drops brokers silent for longer than their heartbeat timeout.
    pub fn scan_not_active_brokers(&mut self, now_ms: i64) -> Vec<RemovedBroker> {
        let expired: Vec<(BrokerAddrInfo, Option<u64>)> = self
            .broker_live_table
            .iter()
            .filter(|(_, live)| {
                now_ms.saturating_sub(live.last_update_ms) > live.heartbeat_timeout_ms as i64
            })
            .map(|(key, live)| (key.clone(), live.connection_id))
            .collect();
        let mut removed = Vec::with_capacity(expired.len());
        for (key, connection_id) in expired {
            self.remove_by_addr(&key);
            removed.push(RemovedBroker {
                cluster_name: key.cluster_name,
                broker_addr: key.broker_addr,
                connection_id,
            });
        }
        removed
    }

    /// Drops every broker that registered over the closed connection.
    pub fn on_connection_closed(&mut self, connection_id: u64) -> Vec<RemovedBroker> {
        let gone: Vec<BrokerAddrInfo> = self
            .broker_live_table
            .iter()
            .filter(|(_, live)| live.connection_id == Some(connection_id))
            .map(|(key, _)| key.clone())
            .collect();
        gone.into_iter()
            .map(|key| {
                self.remove_by_addr(&key);
                RemovedBroker {
                    cluster_name: key.cluster_name,
                    broker_addr: key.broker_addr,
                    connection_id: Some(connection_id),
                }
            })
            .collect()
    }

    /// The route of `topic`, or None if no registered broker group serves it.
    pub fn pickup_topic_route_data(&self, topic: &str) -> Option<TopicRouteData> {
        let by_broker = self.topic_queue_table.get(topic)?;
        let mut route = TopicRouteData {
            queue_datas: by_broker.values().cloned().collect(),
            ..Default::default()
        };
        for broker_name in by_broker.keys() {
            let Some(data) = self.broker_addr_table.get(broker_name) else {
                continue;
            };
            for addr in data.broker_addrs.values() {
                let key = BrokerAddrInfo {
                    cluster_name: data.cluster.clone(),
                    broker_addr: addr.clone(),
                };
                if let Some(filters) = self.filter_server_table.get(&key) {
                    route
                        .filter_server_table
                        .insert(addr.clone(), filters.clone());
                }
            }
            route.broker_datas.push(data.clone());
        }
        if route.broker_datas.is_empty() || route.queue_datas.is_empty() {
            return None;
        }
        Some(route)
    }

    pub fn cluster_info(&self) -> ClusterInfo {
        ClusterInfo {
            broker_addr_table: self.broker_addr_table.clone(),
            cluster_addr_table: self.cluster_addr_table.clone(),
        }
    }

    pub fn all_topics(&self) -> TopicList {
        TopicList {
            broker_addr: None,
            topic_list: self.topic_queue_table.keys().cloned().collect(),
        }
    }

    /// Topics with queues on any broker group of `cluster`.
    pub fn topics_by_cluster(&self, cluster: &str) -> TopicList {
        let names = self.cluster_addr_table.get(cluster);
        let topic_list = self
            .topic_queue_table
            .iter()
            .filter(|(_, by_broker)| {
                names.is_some_and(|names| by_broker.keys().any(|b| names.contains(b)))
            })
            .map(|(topic, _)| topic.clone())
            .collect();
        TopicList {
            broker_addr: None,
            topic_list,
        }
    }

    /// DELETE_TOPIC_IN_NAMESRV: everywhere, or only on the broker groups of `cluster_name`.
    pub fn delete_topic(&mut self, topic: &str, cluster_name: Option<&str>) {
        match cluster_name {
            None => {
                self.topic_queue_table.remove(topic);
            }
            Some(cluster) => {
                let Some(names) = self.cluster_addr_table.get(cluster) else {
                    return;
                };
                if let Some(by_broker) = self.topic_queue_table.get_mut(topic) {
                    by_broker.retain(|broker_name, _| !names.contains(broker_name));
                    if by_broker.is_empty() {
                        self.topic_queue_table.remove(topic);
                    }
                }
            }
        }
    }

    /// WIPE_WRITE_PERM_OF_BROKER: clears the write bit of every topic on `broker_name`;
    /// returns how many topics it touched.
    pub fn wipe_write_perm_of_broker(&mut self, broker_name: &str) -> usize {
        self.update_perm_of_broker(broker_name, |perm| perm & !PERM_WRITE)
    }

    /// ADD_WRITE_PERM_OF_BROKER: sets every topic on `broker_name` to read+write (RocketMQ sets
    /// the perm to exactly READ|WRITE); returns how many topics it touched.
    pub fn add_write_perm_of_broker(&mut self, broker_name: &str) -> usize {
        self.update_perm_of_broker(broker_name, |_| PERM_READ | PERM_WRITE)
    }

    fn update_perm_of_broker(&mut self, broker_name: &str, update: impl Fn(i32) -> i32) -> usize {
        let mut touched = 0;
        for by_broker in self.topic_queue_table.values_mut() {
            if let Some(queue_data) = by_broker.get_mut(broker_name) {
                queue_data.perm = update(queue_data.perm);
                touched += 1;
            }
        }
        touched
    }

    fn debug_check(&self) {
        // O(table size): full check in debug builds and tests only.
        if cfg!(debug_assertions) {
            self.check();
        }
    }

    /// Number of live (registered, unexpired) brokers.
    pub fn live_broker_count(&self) -> usize {
        self.broker_live_table.len()
    }

    /// Invariants: every group is listed under its cluster and has a member; every topic has
    /// queue data; queue data only names known groups or groups being re-registered.
    pub fn check(&self) {
        for (name, data) in &self.broker_addr_table {
            assert_eq!(&data.broker_name, name, "broker group keyed by its name");
            assert!(
                !data.broker_addrs.is_empty(),
                "broker group {name} without members"
            );
            assert!(
                self.cluster_addr_table
                    .get(&data.cluster)
                    .is_some_and(|names| names.contains(name)),
                "broker group {name} missing from cluster {}",
                data.cluster
            );
        }
        for (topic, by_broker) in &self.topic_queue_table {
            assert!(!by_broker.is_empty(), "topic {topic} without queue data");
            for (broker_name, queue_data) in by_broker {
                assert_eq!(&queue_data.broker_name, broker_name);
            }
        }
        for names in self.cluster_addr_table.values() {
            assert!(!names.is_empty(), "empty cluster kept");
        }
    }
}

#[cfg(test)]
#[path = "route_table_test.rs"]
mod tests;
