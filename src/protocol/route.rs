//! Topic routes (RocketMQ `TopicRouteData`, `QueueData`, `BrokerData`): the body of
//! GET_ROUTEINFO_BY_TOPIC and part of GET_BROKER_CLUSTER_INFO. OWNER: namesrv helper.
//!
//! Field names are RocketMQ's; fields are declared in alphabetical order because fastjson sorts
//! them that way, and absent (null) optional fields are omitted as fastjson does by default.
//! `brokerAddrs` is keyed by broker id and always written with quoted keys (`{"0":"ip:port"}`,
//! the standard JSON RocketMQ ≥ 4.9.4 emits); [`TopicRouteData::decode`] also accepts fastjson's
//! legacy unquoted keys.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::parse_lenient_json;

/// Broker id of a master.
pub const MASTER_ID: i64 = 0;

/// Queues of one topic on one broker group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueData {
    pub broker_name: String,
    #[serde(default)]
    pub perm: i32,
    #[serde(default)]
    pub read_queue_nums: i32,
    #[serde(default)]
    pub topic_sys_flag: i32,
    #[serde(default)]
    pub write_queue_nums: i32,
}

/// One broker group: its cluster, name and the address of each member by broker id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BrokerData {
    /// broker id (0 = master) → "ip:port"
    #[serde(default)]
    pub broker_addrs: BTreeMap<i64, String>,
    pub broker_name: String,
    #[serde(default)]
    pub cluster: String,
    #[serde(default)]
    pub enable_acting_master: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone_name: Option<String>,
}

impl BrokerData {
    pub fn new(cluster: &str, broker_name: &str) -> Self {
        BrokerData {
            broker_addrs: BTreeMap::new(),
            broker_name: broker_name.to_string(),
            cluster: cluster.to_string(),
            enable_acting_master: false,
            zone_name: None,
        }
    }

    /// The master's address, if a master is registered.
    pub fn master_addr(&self) -> Option<&str> {
        self.broker_addrs.get(&MASTER_ID).map(String::as_str)
    }

    /// The master's address, else the address of the member with the lowest id (what RocketMQ
    /// clients pick to read from when the master is gone).
    pub fn select_broker_addr(&self) -> Option<&str> {
        self.master_addr()
            .or_else(|| self.broker_addrs.values().next().map(String::as_str))
    }
}

/// The route of one topic.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicRouteData {
    #[serde(default)]
    pub broker_datas: Vec<BrokerData>,
    /// broker address → filter server addresses (always empty in Apogee).
    #[serde(default)]
    pub filter_server_table: BTreeMap<String, Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_topic_conf: Option<String>,
    #[serde(default)]
    pub queue_datas: Vec<QueueData>,
    /// 5.x static-topic mapping; kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_queue_mapping_by_broker: Option<serde_json::Value>,
}

impl TopicRouteData {
    /// Standard JSON (quoted map keys).
    pub fn encode(&self) -> Vec<u8> {
        // Serializing plain structs and string/integer-keyed maps cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses a route body, accepting fastjson's unquoted numeric keys.
    pub fn decode(body: &[u8]) -> serde_json::Result<TopicRouteData> {
        let text = String::from_utf8_lossy(body);
        parse_lenient_json(&text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> TopicRouteData {
        let mut broker = BrokerData::new("c1", "b1");
        broker.broker_addrs.insert(0, "10.0.0.1:10911".into());
        broker.broker_addrs.insert(1, "10.0.0.2:10911".into());
        TopicRouteData {
            broker_datas: vec![broker],
            queue_datas: vec![QueueData {
                broker_name: "b1".into(),
                perm: 6,
                read_queue_nums: 4,
                topic_sys_flag: 0,
                write_queue_nums: 4,
            }],
            ..Default::default()
        }
    }

    #[test]
    fn route_json_has_rocketmq_field_names_and_quoted_broker_ids() {
        let json = String::from_utf8(sample().encode()).unwrap();
        assert_eq!(
            json,
            r#"{"brokerDatas":[{"brokerAddrs":{"0":"10.0.0.1:10911","1":"10.0.0.2:10911"},"brokerName":"b1","cluster":"c1","enableActingMaster":false}],"filterServerTable":{},"queueDatas":[{"brokerName":"b1","perm":6,"readQueueNums":4,"topicSysFlag":0,"writeQueueNums":4}]}"#
        );
    }

    #[test]
    fn decodes_java_output_with_unquoted_keys_and_nulls() {
        let java = r#"{"brokerDatas":[{"brokerAddrs":{0:"10.0.0.1:10911",1:"10.0.0.2:10911"},
            "brokerName":"b1","cluster":"c1","enableActingMaster":false,"zoneName":null}],
            "filterServerTable":{},"orderTopicConf":null,"queueDatas":[{"brokerName":"b1",
            "perm":6,"readQueueNums":4,"topicSysFlag":0,"writeQueueNums":4}],
            "topicQueueMappingByBroker":null}"#;
        let route = TopicRouteData::decode(java.as_bytes()).unwrap();
        assert_eq!(route, sample());
        assert_eq!(route.broker_datas[0].master_addr(), Some("10.0.0.1:10911"));
        let mut slave_only = route.broker_datas[0].clone();
        slave_only.broker_addrs.remove(&0);
        assert_eq!(slave_only.select_broker_addr(), Some("10.0.0.2:10911"));
        assert!(TopicRouteData::decode(b"{\"queueDatas\":5}").is_err());
    }
}
