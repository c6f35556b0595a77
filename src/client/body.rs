//! JSON bodies the client reads and writes, and queue lists derived from routes. Heartbeat and
//! consumer bodies come from `protocol::{heartbeat,consumer}`. Route, cluster and KV bodies are
//! owned by the namesrv helper (protocol::{route,cluster,kv}); the definitions here stand in
//! until those land, then get replaced by re-exports.

pub use crate::protocol::consumer::{
    ConsumeStats, ConsumerListBody, MessageQueue, OffsetWrapper, TopicOffset, TopicStatsTable,
};
pub use crate::protocol::heartbeat::{ConsumerData, HeartbeatData, ProducerData, SubscriptionData};
use crate::protocol::topic::{is_readable, is_writeable};

pub use crate::protocol::cluster::ClusterInfo;
pub use crate::protocol::kv::{KVTable, TopicList};
pub use crate::protocol::route::{BrokerData, QueueData, TopicRouteData, MASTER_ID};

/// Client-side lookups on a topic route.
pub trait RouteExt {
    fn broker_data(&self, broker_name: &str) -> Option<&BrokerData>;
    /// Master address of `broker_name` (broker id 0).
    fn master_addr(&self, broker_name: &str) -> Option<&str>;
}

impl RouteExt for TopicRouteData {
    fn broker_data(&self, broker_name: &str) -> Option<&BrokerData> {
        self.broker_datas
            .iter()
            .find(|b| b.broker_name == broker_name)
    }

    fn master_addr(&self, broker_name: &str) -> Option<&str> {
        self.broker_data(broker_name)
            .and_then(BrokerData::master_addr)
    }
}

/// Client-side lookups on the cluster info.
pub trait ClusterInfoExt {
    /// (broker name, master address) of every broker of `cluster` that has a master, sorted
    /// by broker name; None for an unknown cluster.
    fn master_addrs(&self, cluster: &str) -> Option<Vec<(String, String)>>;
    /// The cluster a broker name belongs to.
    fn cluster_of(&self, broker_name: &str) -> Option<&str>;
}

impl ClusterInfoExt for ClusterInfo {
    fn master_addrs(&self, cluster: &str) -> Option<Vec<(String, String)>> {
        let names = self.cluster_addr_table.get(cluster)?;
        Some(
            names
                .iter()
                .filter_map(|name| {
                    let data = self.broker_addr_table.get(name)?;
                    Some((name.clone(), data.master_addr()?.to_string()))
                })
                .collect(),
        )
    }

    fn cluster_of(&self, broker_name: &str) -> Option<&str> {
        self.cluster_addr_table
            .iter()
            .find(|(_, names)| names.contains(broker_name))
            .map(|(c, _)| c.as_str())
    }
}

/// A `MessageQueue` (field order and derived `Ord` are the broker's: broker name, queue id,
/// topic — the same order as Java's `compareTo` within one topic).
pub fn mq(topic: &str, broker_name: &str, queue_id: i32) -> MessageQueue {
    MessageQueue {
        broker_name: broker_name.to_string(),
        queue_id,
        topic: topic.to_string(),
    }
}

/// Java's `MessageQueue.toString`, for messages and logs.
pub fn mq_string(q: &MessageQueue) -> String {
    format!(
        "MessageQueue [topic={}, brokerName={}, queueId={}]",
        q.topic, q.broker_name, q.queue_id
    )
}

/// Writable queues of a route, in route order (one per queue id < writeQueueNums of each
/// broker with WRITE perm and a master), as the Java producer's TopicPublishInfo builds them.
pub fn writable_queues(topic: &str, route: &TopicRouteData) -> Vec<MessageQueue> {
    let mut queue_datas: Vec<&QueueData> = route.queue_datas.iter().collect();
    queue_datas.sort_by(|a, b| a.broker_name.cmp(&b.broker_name));
    let mut out = Vec::new();
    for qd in queue_datas {
        if !is_writeable(qd.perm) || route.master_addr(&qd.broker_name).is_none() {
            continue;
        }
        for queue_id in 0..qd.write_queue_nums.max(0) {
            out.push(mq(topic, &qd.broker_name, queue_id));
        }
    }
    out
}

/// Readable queues of a route, sorted (the consumer's mqAll for allocation, §8).
pub fn readable_queues(topic: &str, route: &TopicRouteData) -> Vec<MessageQueue> {
    let mut out = Vec::new();
    for qd in &route.queue_datas {
        if !is_readable(qd.perm) {
            continue;
        }
        for queue_id in 0..qd.read_queue_nums.max(0) {
            out.push(mq(topic, &qd.broker_name, queue_id));
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::parse_lenient_json;

    const ROUTE_JSON: &str = r#"{"orderTopicConf":null,
        "queueDatas":[{"brokerName":"b2","readQueueNums":2,"writeQueueNums":3,"perm":6,"topicSysFlag":0},
                      {"brokerName":"b1","readQueueNums":4,"writeQueueNums":4,"perm":4,"topicSysFlag":0}],
        "brokerDatas":[{"cluster":"c1","brokerName":"b1","brokerAddrs":{"0":"10.0.0.1:10911","1":"10.0.0.2:10911"},
                        "zoneName":null,"enableActingMaster":false},
                       {"cluster":"c1","brokerName":"b2","brokerAddrs":{"0":"10.0.0.3:10911"}}],
        "filterServerTable":{}, "topicQueueMappingByBroker":null}"#;

    #[test]
    fn route_parses_and_selects_queues() {
        let route: TopicRouteData = parse_lenient_json(ROUTE_JSON).unwrap();
        assert_eq!(route.queue_datas.len(), 2);
        assert_eq!(route.master_addr("b1"), Some("10.0.0.1:10911"));
        assert_eq!(
            route
                .broker_data("b1")
                .unwrap()
                .broker_addrs
                .get(&1)
                .map(String::as_str),
            Some("10.0.0.2:10911")
        );
        assert_eq!(route.master_addr("b2"), Some("10.0.0.3:10911"));
        assert_eq!(route.master_addr("b3"), None);
        // b1 is read-only: only b2's 3 write queues are writable.
        let w = writable_queues("T", &route);
        assert_eq!(w, (0..3).map(|q| mq("T", "b2", q)).collect::<Vec<_>>());
        // Readable: b1 (perm 4, 4 queues) and b2 (perm 6, 2 read queues), sorted by broker.
        let r = readable_queues("T", &route);
        assert_eq!(r.len(), 6);
        assert_eq!(r[0], mq("T", "b1", 0));
        assert_eq!(r[5], mq("T", "b2", 1));
    }

    #[test]
    fn route_with_unquoted_numeric_keys_parses() {
        let text = ROUTE_JSON.replace(
            r#"{"0":"10.0.0.1:10911","1":"10.0.0.2:10911"}"#,
            r#"{0:"10.0.0.1:10911",1:"10.0.0.2:10911"}"#,
        );
        assert!(text.contains("{0:"));
        let route: TopicRouteData = parse_lenient_json(&text).unwrap();
        assert_eq!(route.master_addr("b1"), Some("10.0.0.1:10911"));
    }

    #[test]
    fn route_without_master_has_no_writable_queue() {
        let route = TopicRouteData {
            queue_datas: vec![QueueData {
                broker_name: "b1".into(),
                read_queue_nums: 4,
                write_queue_nums: 4,
                perm: 6,
                topic_sys_flag: 0,
            }],
            broker_datas: vec![{
                let mut b = BrokerData::new("c", "b1");
                b.broker_addrs.insert(1, "x:1".to_string());
                b
            }],
            ..Default::default()
        };
        assert!(writable_queues("T", &route).is_empty());
        assert_eq!(readable_queues("T", &route).len(), 4);
    }

    #[test]
    fn cluster_info_master_addrs() {
        let text = r#"{"brokerAddrTable":{"b2":{"cluster":"c","brokerName":"b2","brokerAddrs":{"0":"a2:1"}},
            "b1":{"cluster":"c","brokerName":"b1","brokerAddrs":{"1":"s1:1","0":"a1:1"}}},
            "clusterAddrTable":{"c":["b2","b1"]}}"#;
        let info: ClusterInfo = parse_lenient_json(text).unwrap();
        assert_eq!(
            info.master_addrs("c").unwrap(),
            vec![
                ("b1".to_string(), "a1:1".to_string()),
                ("b2".to_string(), "a2:1".to_string())
            ]
        );
        assert!(info.master_addrs("nope").is_none());
        assert_eq!(info.cluster_of("b2"), Some("c"));
    }
}
