//! Consumer-side JSON bodies: consumer id lists, queue locks, consumer connections and the
//! admin statistics tables (RocketMQ `ConsumerListByGroupResponseBody`, `LockBatchRequestBody`,
//! `ConsumerConnection`, `TopicStatsTable`, `ConsumeStats`). OWNER: broker helper.
//!
//! `TopicStatsTable` and `ConsumeStats` are maps keyed by `MessageQueue` objects; fastjson
//! writes those keys as JSON objects (`{{"brokerName":"b","queueId":0,"topic":"T"}:{...}}`),
//! which is not standard JSON. We emit the same shape (Java admin tools parse it) and provide
//! `encode`/`decode` helpers for it.

use std::collections::{BTreeMap, BTreeSet};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::heartbeat::SubscriptionData;

/// GET_CONSUMER_LIST_BY_GROUP response body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerListBody {
    #[serde(default)]
    pub consumer_id_list: Vec<String>,
}

/// A queue of a topic on a broker. Fields in fastjson's (alphabetical) order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageQueue {
    pub broker_name: String,
    pub queue_id: i32,
    pub topic: String,
}

/// LOCK_BATCH_MQ / UNLOCK_BATCH_MQ request body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LockBatchRequestBody {
    #[serde(default)]
    pub consumer_group: String,
    #[serde(default)]
    pub client_id: String,
    #[serde(default)]
    pub only_this_broker: bool,
    #[serde(default)]
    pub mq_set: BTreeSet<MessageQueue>,
}

/// LOCK_BATCH_MQ response body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LockBatchResponseBody {
    #[serde(rename = "lockOKMQSet", default)]
    pub lock_ok_mq_set: BTreeSet<MessageQueue>,
}

/// One client connection of a group (RocketMQ `Connection`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionInfo {
    pub client_addr: String,
    pub client_id: String,
    pub language: String,
    pub version: i32,
}

/// GET_CONSUMER_CONNECTION_LIST response body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerConnection {
    pub connection_set: BTreeSet<ConnectionInfo>,
    pub consume_from_where: String,
    pub consume_type: String,
    pub message_model: String,
    pub subscription_table: BTreeMap<String, SubscriptionData>,
}

/// GET_PRODUCER_CONNECTION_LIST response body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProducerConnection {
    pub connection_set: BTreeSet<ConnectionInfo>,
}

/// Per-queue figures of GET_TOPIC_STATS_INFO.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicOffset {
    pub last_update_timestamp: i64,
    pub max_offset: i64,
    pub min_offset: i64,
}

/// GET_TOPIC_STATS_INFO response body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicStatsTable {
    pub offset_table: BTreeMap<MessageQueue, TopicOffset>,
}

/// Per-queue figures of GET_CONSUME_STATS.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OffsetWrapper {
    pub broker_offset: i64,
    pub consumer_offset: i64,
    #[serde(default)]
    pub last_timestamp: i64,
}

/// GET_CONSUME_STATS response body.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConsumeStats {
    pub consume_tps: f64,
    pub offset_table: BTreeMap<MessageQueue, OffsetWrapper>,
}

/// Error decoding a fastjson object-keyed table.
#[derive(Debug, thiserror::Error)]
#[error("malformed statistics body: {0}")]
pub struct StatsDecodeError(String);

impl TopicStatsTable {
    pub fn encode(&self) -> String {
        format!(
            "{{\"offsetTable\":{}}}",
            encode_object_keyed_map(&self.offset_table)
        )
    }
    pub fn decode(text: &str) -> Result<TopicStatsTable, StatsDecodeError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Raw {
            #[serde(default)]
            offset_table: BTreeMap<String, TopicOffset>,
        }
        let raw: Raw = decode_stringified(text)?;
        Ok(TopicStatsTable {
            offset_table: parse_queue_keys(raw.offset_table)?,
        })
    }
}

impl ConsumeStats {
    pub fn encode(&self) -> String {
        // fastjson writes a double with a decimal point.
        format!(
            "{{\"consumeTps\":{:?},\"offsetTable\":{}}}",
            self.consume_tps,
            encode_object_keyed_map(&self.offset_table)
        )
    }
    pub fn decode(text: &str) -> Result<ConsumeStats, StatsDecodeError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Raw {
            #[serde(default)]
            consume_tps: f64,
            #[serde(default)]
            offset_table: BTreeMap<String, OffsetWrapper>,
        }
        let raw: Raw = decode_stringified(text)?;
        Ok(ConsumeStats {
            consume_tps: raw.consume_tps,
            offset_table: parse_queue_keys(raw.offset_table)?,
        })
    }
}

fn encode_object_keyed_map<V: Serialize>(map: &BTreeMap<MessageQueue, V>) -> String {
    let mut out = String::from("{");
    for (i, (mq, value)) in map.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        // Serializing plain structs of strings and numbers cannot fail.
        out.push_str(&serde_json::to_string(mq).unwrap_or_default());
        out.push(':');
        out.push_str(&serde_json::to_string(value).unwrap_or_default());
    }
    out.push('}');
    out
}

fn decode_stringified<T: DeserializeOwned>(text: &str) -> Result<T, StatsDecodeError> {
    let standard = stringify_object_keys(text).map_err(StatsDecodeError)?;
    serde_json::from_str(&standard).map_err(|e| StatsDecodeError(e.to_string()))
}

fn parse_queue_keys<V>(
    raw: BTreeMap<String, V>,
) -> Result<BTreeMap<MessageQueue, V>, StatsDecodeError> {
    let mut out = BTreeMap::new();
    for (key, value) in raw {
        let mq: MessageQueue = serde_json::from_str(&key)
            .map_err(|e| StatsDecodeError(format!("queue key {key}: {e}")))?;
        out.insert(mq, value);
    }
    Ok(out)
}

/// Rewrites object-valued map keys (`{{"a":1}:2}`) as string keys (`{"{\"a\":1}":2}`) so a
/// standard JSON parser accepts fastjson's output. Other text is copied unchanged.
pub fn stringify_object_keys(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len() + 32);
    // Container stack: true = object, false = array.
    let mut stack: Vec<bool> = Vec::new();
    let mut i = 0;
    let mut expect_key = false;
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b'"' => {
                let end = skip_string(bytes, i)?;
                out.push_str(&text[i..end]);
                i = end;
                expect_key = false;
                continue;
            }
            b'{' if expect_key => {
                let end = skip_balanced(bytes, i)?;
                let key = &text[i..end];
                out.push_str(&serde_json::to_string(key).map_err(|e| e.to_string())?);
                i = end;
                expect_key = false;
                continue;
            }
            b'{' => {
                stack.push(true);
                expect_key = true;
            }
            b'[' => {
                stack.push(false);
                expect_key = false;
            }
            b'}' | b']' => {
                stack.pop();
                expect_key = false;
            }
            b',' => {
                expect_key = stack.last().copied().unwrap_or(false);
            }
            b':' => expect_key = false,
            c if c.is_ascii_whitespace() => {}
            _ => expect_key = false,
        }
        out.push(c as char);
        i += 1;
    }
    Ok(out)
}

/// Index one past the closing quote of the string starting at `start`.
fn skip_string(bytes: &[u8], start: usize) -> Result<usize, String> {
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return Ok(i + 1),
            _ => i += 1,
        }
    }
    Err(format!("unterminated string at byte {start}"))
}

/// Index one past the brace closing the object starting at `start`.
fn skip_balanced(bytes: &[u8], start: usize) -> Result<usize, String> {
    let mut depth = 0usize;
    let mut i = start;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                i = skip_string(bytes, i)?;
                continue;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth -= 1;
                if depth == 0 {
                    return Ok(i + 1);
                }
            }
            _ => {}
        }
        i += 1;
    }
    Err(format!("unbalanced object at byte {start}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mq(topic: &str, queue_id: i32) -> MessageQueue {
        MessageQueue {
            broker_name: "broker-a".into(),
            queue_id,
            topic: topic.into(),
        }
    }

    #[test]
    fn topic_stats_golden_and_round_trip() {
        let mut table = TopicStatsTable::default();
        table.offset_table.insert(
            mq("T", 0),
            TopicOffset {
                last_update_timestamp: 5,
                max_offset: 3,
                min_offset: 0,
            },
        );
        let text = table.encode();
        assert_eq!(
            text,
            r#"{"offsetTable":{{"brokerName":"broker-a","queueId":0,"topic":"T"}:{"lastUpdateTimestamp":5,"maxOffset":3,"minOffset":0}}}"#
        );
        assert_eq!(TopicStatsTable::decode(&text).unwrap(), table);
    }

    #[test]
    fn consume_stats_round_trip() {
        let mut stats = ConsumeStats::default();
        for q in 0..3 {
            stats.offset_table.insert(
                mq("T,{x}", q),
                OffsetWrapper {
                    broker_offset: 10,
                    consumer_offset: q as i64,
                    last_timestamp: 0,
                },
            );
        }
        let text = stats.encode();
        assert!(text.starts_with(r#"{"consumeTps":0.0,"offsetTable":{{"#));
        let back = ConsumeStats::decode(&text).unwrap();
        assert_eq!(back.offset_table, stats.offset_table);
        assert!(ConsumeStats::decode("{\"offsetTable\":{{\"a\":").is_err());
    }

    #[test]
    fn lock_body_parses() {
        let text = r#"{"consumerGroup":"g","clientId":"c","onlyThisBroker":false,"mqSet":[{"topic":"T","brokerName":"b","queueId":1}]}"#;
        let body: LockBatchRequestBody = serde_json::from_str(text).unwrap();
        assert_eq!(body.mq_set.len(), 1);
        let resp = LockBatchResponseBody {
            lock_ok_mq_set: body.mq_set.clone(),
        };
        let json = serde_json::to_string(&resp).unwrap();
        assert_eq!(
            json,
            r#"{"lockOKMQSet":[{"brokerName":"b","queueId":1,"topic":"T"}]}"#
        );
    }
}
