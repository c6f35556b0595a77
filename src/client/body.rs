//! JSON bodies the client reads and writes. Route, cluster and KV bodies are owned by the
//! namesrv helper (protocol::{route,cluster,kv}) and heartbeat/consumer bodies by the broker
//! helper; these private definitions stand in until those land, then get replaced by re-exports.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::protocol::topic::{is_readable, is_writeable};

/// Broker id of a master.
pub const MASTER_ID: i64 = 0;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueData {
    pub broker_name: String,
    #[serde(default)]
    pub read_queue_nums: i32,
    #[serde(default)]
    pub write_queue_nums: i32,
    #[serde(default)]
    pub perm: i32,
    #[serde(default)]
    pub topic_sys_flag: i32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BrokerData {
    #[serde(default)]
    pub cluster: String,
    pub broker_name: String,
    /// brokerId → "ip:port"; JSON keys are the decimal ids.
    #[serde(default)]
    pub broker_addrs: BTreeMap<i64, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone_name: Option<String>,
    #[serde(default)]
    pub enable_acting_master: bool,
}

impl BrokerData {
    pub fn master_addr(&self) -> Option<&str> {
        self.broker_addrs.get(&MASTER_ID).map(String::as_str)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicRouteData {
    #[serde(default)]
    pub order_topic_conf: Option<String>,
    #[serde(default)]
    pub queue_datas: Vec<QueueData>,
    #[serde(default)]
    pub broker_datas: Vec<BrokerData>,
    #[serde(default)]
    pub filter_server_table: BTreeMap<String, Vec<String>>,
}

impl TopicRouteData {
    pub fn broker_data(&self, broker_name: &str) -> Option<&BrokerData> {
        self.broker_datas
            .iter()
            .find(|b| b.broker_name == broker_name)
    }

    pub fn master_addr(&self, broker_name: &str) -> Option<&str> {
        self.broker_data(broker_name)
            .and_then(BrokerData::master_addr)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterInfo {
    #[serde(default)]
    pub broker_addr_table: BTreeMap<String, BrokerData>,
    #[serde(default)]
    pub cluster_addr_table: BTreeMap<String, Vec<String>>,
}

impl ClusterInfo {
    /// Master addresses of every broker of `cluster`, sorted by broker name.
    pub fn master_addrs(&self, cluster: &str) -> Option<Vec<(String, String)>> {
        let names = self.cluster_addr_table.get(cluster)?;
        let mut names: Vec<&String> = names.iter().collect();
        names.sort();
        Some(
            names
                .into_iter()
                .filter_map(|name| {
                    let data = self.broker_addr_table.get(name)?;
                    Some((name.clone(), data.master_addr()?.to_string()))
                })
                .collect(),
        )
    }

    /// The cluster a broker name belongs to.
    pub fn cluster_of(&self, broker_name: &str) -> Option<&str> {
        self.cluster_addr_table
            .iter()
            .find(|(_, names)| names.iter().any(|n| n == broker_name))
            .map(|(c, _)| c.as_str())
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KvTable {
    #[serde(default)]
    pub table: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicList {
    #[serde(default)]
    pub topic_list: Vec<String>,
    #[serde(default)]
    pub broker_addr: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerIdList {
    #[serde(default)]
    pub consumer_id_list: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionData {
    pub class_filter_mode: bool,
    pub topic: String,
    pub sub_string: String,
    pub tags_set: Vec<String>,
    pub code_set: Vec<i32>,
    pub sub_version: i64,
    pub expression_type: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerData {
    pub group_name: String,
    pub consume_type: String,
    pub message_model: String,
    pub consume_from_where: String,
    pub subscription_data_set: Vec<SubscriptionData>,
    pub unit_mode: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProducerData {
    pub group_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeartbeatData {
    #[serde(rename = "clientID")]
    pub client_id: String,
    pub producer_data_set: Vec<ProducerData>,
    pub consumer_data_set: Vec<ConsumerData>,
    pub heartbeat_fingerprint: i64,
    pub without_sub: bool,
}

/// A queue of a topic on one broker (RocketMQ `MessageQueue`); sorts by topic, broker name,
/// queue id like Java's `compareTo`, which queue allocation relies on.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageQueue {
    pub topic: String,
    pub broker_name: String,
    pub queue_id: i32,
}

impl MessageQueue {
    pub fn new(topic: &str, broker_name: &str, queue_id: i32) -> Self {
        MessageQueue {
            topic: topic.to_string(),
            broker_name: broker_name.to_string(),
            queue_id,
        }
    }
}

impl std::fmt::Display for MessageQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "MessageQueue [topic={}, brokerName={}, queueId={}]",
            self.topic, self.broker_name, self.queue_id
        )
    }
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
            out.push(MessageQueue::new(topic, &qd.broker_name, queue_id));
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
            out.push(MessageQueue::new(topic, &qd.broker_name, queue_id));
        }
    }
    out.sort();
    out
}

/// Per-queue offsets of a topic (`TopicOffset` in GET_TOPIC_STATS_INFO).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicOffset {
    #[serde(default)]
    pub min_offset: i64,
    #[serde(default)]
    pub max_offset: i64,
    #[serde(default)]
    pub last_update_timestamp: i64,
}

/// Per-queue consumer progress (`OffsetWrapper` in GET_CONSUME_STATS).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OffsetWrapper {
    #[serde(default)]
    pub broker_offset: i64,
    #[serde(default)]
    pub consumer_offset: i64,
    #[serde(default)]
    pub pull_offset: i64,
    #[serde(default)]
    pub last_timestamp: i64,
}

/// Parses a JSON object whose keys are themselves JSON objects, as fastjson writes
/// `Map<MessageQueue, V>`: `{{"brokerName":"b","queueId":0,"topic":"T"}:{...},...}`.
/// Also accepts a standard JSON object whose keys are JSON-encoded MessageQueues, and an
/// array of `[key, value]` pairs.
pub fn parse_object_keyed_map<K, V>(text: &str) -> Result<Vec<(K, V)>, String>
where
    K: serde::de::DeserializeOwned,
    V: serde::de::DeserializeOwned,
{
    let bytes = text.as_bytes();
    let mut pos = skip_ws(bytes, 0);
    if pos >= bytes.len() {
        return Err("empty map".to_string());
    }
    if bytes[pos] == b'[' {
        let pairs: Vec<(K, V)> = serde_json::from_str(text).map_err(|e| e.to_string())?;
        return Ok(pairs);
    }
    if bytes[pos] != b'{' {
        return Err(format!("expected '{{' at byte {pos}"));
    }
    pos += 1;
    let mut out = Vec::new();
    loop {
        pos = skip_ws(bytes, pos);
        match bytes.get(pos) {
            Some(b'}') => return Ok(out),
            Some(b',') => {
                pos += 1;
                continue;
            }
            Some(_) => {}
            None => return Err("unterminated map".to_string()),
        }
        let (key_value, next) = parse_one_value(text, pos)?;
        let key: K = match key_value {
            // A standard JSON object: the key is a string holding the JSON of the object.
            serde_json::Value::String(s) => serde_json::from_str(&s).map_err(|e| e.to_string())?,
            other => serde_json::from_value(other).map_err(|e| e.to_string())?,
        };
        pos = skip_ws(bytes, next);
        if bytes.get(pos) != Some(&b':') {
            return Err(format!("expected ':' at byte {pos}"));
        }
        pos += 1;
        let (value, next) = parse_one_value(text, skip_ws(bytes, pos))?;
        let value: V = serde_json::from_value(value).map_err(|e| e.to_string())?;
        out.push((key, value));
        pos = next;
    }
}

fn skip_ws(bytes: &[u8], mut pos: usize) -> usize {
    while pos < bytes.len() && bytes[pos].is_ascii_whitespace() {
        pos += 1;
    }
    pos
}

/// Parses one JSON value starting at `pos`; returns it and the position after it.
fn parse_one_value(text: &str, pos: usize) -> Result<(serde_json::Value, usize), String> {
    let rest = text.get(pos..).ok_or("position out of range")?;
    let mut stream = serde_json::Deserializer::from_str(rest).into_iter::<serde_json::Value>();
    match stream.next() {
        Some(Ok(v)) => Ok((v, pos + stream.byte_offset())),
        Some(Err(e)) => Err(format!("at byte {pos}: {e}")),
        None => Err(format!("missing value at byte {pos}")),
    }
}

/// Looks up the first map-valued field `field` of a JSON object text and returns its raw text
/// (for bodies like `{"offsetTable":{{..}:{..}},"consumeTps":1.0}` that serde cannot parse).
pub fn raw_field<'a>(text: &'a str, field: &str) -> Option<&'a str> {
    let needle = format!("\"{field}\"");
    let start = text.find(&needle)? + needle.len();
    let bytes = text.as_bytes();
    let mut pos = skip_ws(bytes, start);
    if bytes.get(pos) != Some(&b':') {
        return None;
    }
    pos = skip_ws(bytes, pos + 1);
    // Walk the balanced value, honouring strings.
    let begin = pos;
    let mut depth = 0i32;
    let mut in_string = false;
    let mut escaped = false;
    while pos < bytes.len() {
        let c = bytes[pos];
        if in_string {
            if escaped {
                escaped = false;
            } else if c == b'\\' {
                escaped = true;
            } else if c == b'"' {
                in_string = false;
            }
        } else {
            match c {
                b'"' => in_string = true,
                b'{' | b'[' => depth += 1,
                b'}' | b']' => {
                    depth -= 1;
                    if depth == 0 {
                        return text.get(begin..=pos);
                    }
                    if depth < 0 {
                        return text.get(begin..pos);
                    }
                }
                b',' if depth == 0 => return text.get(begin..pos),
                _ => {}
            }
        }
        pos += 1;
    }
    text.get(begin..pos)
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
        assert_eq!(
            w,
            (0..3)
                .map(|q| MessageQueue::new("T", "b2", q))
                .collect::<Vec<_>>()
        );
        // Readable: b1 (perm 4, 4 queues) and b2 (perm 6, 2 read queues), sorted by broker.
        let r = readable_queues("T", &route);
        assert_eq!(r.len(), 6);
        assert_eq!(r[0], MessageQueue::new("T", "b1", 0));
        assert_eq!(r[5], MessageQueue::new("T", "b2", 1));
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
            broker_datas: vec![BrokerData {
                cluster: "c".into(),
                broker_name: "b1".into(),
                broker_addrs: [(1, "x:1".to_string())].into_iter().collect(),
                ..Default::default()
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

    #[test]
    fn fastjson_object_keyed_map_parses() {
        let text = r#"{"offsetTable":{{"brokerName":"b","queueId":1,"topic":"T"}:{"lastUpdateTimestamp":5,"maxOffset":10,"minOffset":2},
            {"brokerName":"b","queueId":0,"topic":"T"}:{"lastUpdateTimestamp":0,"maxOffset":3,"minOffset":0}},"topicPutTps":0.0}"#;
        let raw = raw_field(text, "offsetTable").unwrap();
        let map: Vec<(MessageQueue, TopicOffset)> = parse_object_keyed_map(raw).unwrap();
        assert_eq!(map.len(), 2);
        assert_eq!(map[0].0, MessageQueue::new("T", "b", 1));
        assert_eq!(map[0].1.max_offset, 10);
        assert_eq!(map[0].1.min_offset, 2);
        assert_eq!(map[0].1.last_update_timestamp, 5);
        assert_eq!(map[1].1.max_offset, 3);
        // Standard JSON form (key is the JSON text of the queue) also parses.
        let std_form = r#"{"{\"brokerName\":\"b\",\"queueId\":0,\"topic\":\"T\"}":{"brokerOffset":7,"consumerOffset":4}}"#;
        let map: Vec<(MessageQueue, OffsetWrapper)> = parse_object_keyed_map(std_form).unwrap();
        assert_eq!(map[0].0.queue_id, 0);
        assert_eq!(map[0].1.broker_offset, 7);
        assert_eq!(map[0].1.consumer_offset, 4);
        assert!(parse_object_keyed_map::<MessageQueue, TopicOffset>("{{\"topic\":1}").is_err());
        assert_eq!(raw_field(r#"{"a":1.5,"b":{}}"#, "a"), Some("1.5"));
    }

    #[test]
    fn heartbeat_json_has_java_field_names() {
        let hb = HeartbeatData {
            client_id: "1.2.3.4@1".into(),
            producer_data_set: vec![ProducerData {
                group_name: "pg".into(),
            }],
            consumer_data_set: vec![],
            heartbeat_fingerprint: 0,
            without_sub: false,
        };
        let v: serde_json::Value = serde_json::to_value(&hb).unwrap();
        assert_eq!(v["clientID"], "1.2.3.4@1");
        assert_eq!(v["producerDataSet"][0]["groupName"], "pg");
        assert!(v["consumerDataSet"].as_array().unwrap().is_empty());
        assert_eq!(v["withoutSub"], false);
    }
}
