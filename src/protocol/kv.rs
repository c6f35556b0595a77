//! Small list bodies: `KVTable` (GET_KVLIST_BY_NAMESPACE, REGISTER_BROKER response) and
//! `TopicList` (GET_ALL_TOPIC_LIST_FROM_NAMESERVER, GET_TOPICS_BY_CLUSTER). OWNER: namesrv helper.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::parse_lenient_json;

/// KV namespace holding per-topic order configs (`orderTopicConf`).
pub const NAMESPACE_ORDER_TOPIC_CONFIG: &str = "ORDER_TOPIC_CONFIG";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KVTable {
    #[serde(default)]
    pub table: BTreeMap<String, String>,
}

impl KVTable {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
    pub fn decode(body: &[u8]) -> serde_json::Result<KVTable> {
        parse_lenient_json(&String::from_utf8_lossy(body))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicList {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker_addr: Option<String>,
    #[serde(default)]
    pub topic_list: BTreeSet<String>,
}

impl TopicList {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
    pub fn decode(body: &[u8]) -> serde_json::Result<TopicList> {
        parse_lenient_json(&String::from_utf8_lossy(body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shapes() {
        let mut kv = KVTable::default();
        kv.table.insert("k".into(), "v".into());
        assert_eq!(kv.encode(), br#"{"table":{"k":"v"}}"#);
        let list = TopicList {
            broker_addr: None,
            topic_list: ["B".to_string(), "A".to_string()].into_iter().collect(),
        };
        assert_eq!(list.encode(), br#"{"topicList":["A","B"]}"#);
        let java = br#"{"brokerAddr":null,"topicList":["A","B"]}"#;
        assert_eq!(TopicList::decode(java).unwrap(), list);
    }
}
