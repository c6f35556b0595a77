//! REGISTER_BROKER: request header, body (plain JSON or RocketMQ's compressed form) and result.
//! OWNER: namesrv helper.
//!
//! Compressed body (`compressed=true`): a zlib stream of
//! `len:i32 + DataVersion JSON`, `count:i32`, per topic `len:i32 + "name read write perm
//! filterType attributesJSON"`, `len:i32 + filterServerList JSON`, and, from senders with version
//! ≥ V5_0_0, `count:i32` + per entry `len:i32 + TopicQueueMappingInfo JSON` (skipped here:
//! Apogee has no static topics). All integers big-endian.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::kv::KVTable;
use super::parse_lenient_json;
use super::topic::{DataVersion, TopicConfig, TopicConfigSerializeWrapper};
use crate::remoting::{request_code, RemotingCommand, RemotingError};

/// RocketMQ `MQVersion.Version.V5_0_0` ordinal: senders at or above it append the static-topic
/// mapping section to a compressed register body.
pub const VERSION_V5_0_0: i32 = 413;

/// Upper bound on an inflated register body, so a small malicious body cannot exhaust memory.
pub const MAX_INFLATED_REGISTER_BODY_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RegisterBodyError {
    #[error("register body is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("compressed register body cannot be inflated: {0}")]
    Inflate(std::io::Error),
    #[error("compressed register body inflates beyond {MAX_INFLATED_REGISTER_BODY_BYTES} bytes")]
    TooLarge,
    #[error("compressed register body is truncated in {section}")]
    Truncated { section: &'static str },
    #[error("compressed register body has an invalid {section}: {reason}")]
    Invalid {
        section: &'static str,
        reason: String,
    },
}

/// RocketMQ `UtilAll.crc32`: CRC32 masked with 0x7FFFFFFF (the `bodyCrc32` header).
pub fn crc32_masked(data: &[u8]) -> i32 {
    (crc32fast::hash(data) & 0x7FFF_FFFF) as i32
}

/// `{"topicConfigSerializeWrapper":{...},"filterServerList":[]}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisterBrokerBody {
    #[serde(default)]
    pub topic_config_serialize_wrapper: TopicConfigSerializeWrapper,
    #[serde(default)]
    pub filter_server_list: Vec<String>,
}

impl RegisterBrokerBody {
    /// JSON body, or RocketMQ's compressed form when `compressed`.
    pub fn encode(&self, compressed: bool) -> Vec<u8> {
        if !compressed {
            return serde_json::to_vec(self).unwrap_or_default();
        }
        let mut raw = Vec::new();
        let wrapper = &self.topic_config_serialize_wrapper;
        put_block(
            &mut raw,
            &serde_json::to_vec(&wrapper.data_version).unwrap_or_default(),
        );
        put_i32(&mut raw, wrapper.topic_config_table.len() as i32);
        for topic in wrapper.topic_config_table.values() {
            put_block(&mut raw, encode_topic_config_text(topic).as_bytes());
        }
        put_block(
            &mut raw,
            &serde_json::to_vec(&self.filter_server_list).unwrap_or_default(),
        );
        put_i32(&mut raw, 0); // static-topic mappings: none
        let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        // Writing into a Vec cannot fail.
        let _ = encoder.write_all(&raw);
        encoder.finish().unwrap_or_default()
    }

    /// Decodes a body; `sender_version` is the request's `version` (it gates the compressed
    /// form's last section).
    pub fn decode(
        body: &[u8],
        compressed: bool,
        sender_version: i32,
    ) -> Result<RegisterBrokerBody, RegisterBodyError> {
        if !compressed {
            if body.is_empty() {
                return Ok(RegisterBrokerBody::default());
            }
            return Ok(parse_lenient_json(&String::from_utf8_lossy(body))?);
        }
        let mut inflated = Vec::new();
        flate2::read::ZlibDecoder::new(body)
            .take(MAX_INFLATED_REGISTER_BODY_BYTES + 1)
            .read_to_end(&mut inflated)
            .map_err(RegisterBodyError::Inflate)?;
        if inflated.len() as u64 > MAX_INFLATED_REGISTER_BODY_BYTES {
            return Err(RegisterBodyError::TooLarge);
        }
        let mut reader = Reader {
            data: &inflated,
            position: 0,
        };
        let data_version: DataVersion =
            parse_lenient_json(&reader.block("dataVersion")?).map_err(|e| {
                RegisterBodyError::Invalid {
                    section: "dataVersion",
                    reason: e.to_string(),
                }
            })?;
        let topic_count = reader.count("topic config count")?;
        let mut topic_config_table = BTreeMap::new();
        for _ in 0..topic_count {
            let text = reader.block("topic config")?;
            let topic = decode_topic_config_text(&text)?;
            topic_config_table.insert(topic.topic_name.clone(), topic);
        }
        let filter_json = reader.block("filterServerList")?;
        // Java logs and ignores an unparsable filter server list; so do we.
        let filter_server_list = parse_lenient_json(&filter_json).unwrap_or_default();
        if sender_version >= VERSION_V5_0_0 {
            let mappings = reader.count("topic queue mapping count")?;
            for _ in 0..mappings {
                reader.block("topic queue mapping")?;
            }
        }
        Ok(RegisterBrokerBody {
            topic_config_serialize_wrapper: TopicConfigSerializeWrapper {
                topic_config_table,
                data_version,
            },
            filter_server_list,
        })
    }
}

fn put_i32(out: &mut Vec<u8>, value: i32) {
    out.extend_from_slice(&value.to_be_bytes());
}

fn put_block(out: &mut Vec<u8>, data: &[u8]) {
    put_i32(out, data.len() as i32);
    out.extend_from_slice(data);
}

struct Reader<'a> {
    data: &'a [u8],
    position: usize,
}

impl Reader<'_> {
    fn i32(&mut self, section: &'static str) -> Result<i32, RegisterBodyError> {
        let end = self.position + 4;
        let bytes = self
            .data
            .get(self.position..end)
            .ok_or(RegisterBodyError::Truncated { section })?;
        self.position = end;
        Ok(i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    fn count(&mut self, section: &'static str) -> Result<usize, RegisterBodyError> {
        let n = self.i32(section)?;
        usize::try_from(n).map_err(|_| RegisterBodyError::Invalid {
            section,
            reason: format!("negative count {n}"),
        })
    }

    fn block(&mut self, section: &'static str) -> Result<String, RegisterBodyError> {
        let len = self.count(section)?;
        let end = self.position.checked_add(len);
        let bytes = end
            .and_then(|end| self.data.get(self.position..end))
            .ok_or(RegisterBodyError::Truncated { section })?;
        self.position += len;
        Ok(String::from_utf8_lossy(bytes).into_owned())
    }
}

/// RocketMQ `TopicConfig.encode`: space-separated name, queue counts, perm, filter type and the
/// attributes as JSON.
pub fn encode_topic_config_text(topic: &TopicConfig) -> String {
    format!(
        "{} {} {} {} {} {}",
        topic.topic_name,
        topic.read_queue_nums,
        topic.write_queue_nums,
        topic.perm,
        topic.topic_filter_type,
        serde_json::to_string(&topic.attributes).unwrap_or_else(|_| "{}".to_string())
    )
}

/// RocketMQ `TopicConfig.decode`; like Java, unparsable attributes are ignored.
pub fn decode_topic_config_text(text: &str) -> Result<TopicConfig, RegisterBodyError> {
    let parts: Vec<&str> = text.split(' ').collect();
    let invalid = |reason: String| RegisterBodyError::Invalid {
        section: "topic config",
        reason,
    };
    if parts.len() < 5 {
        return Err(invalid(format!("`{text}` has fewer than 5 fields")));
    }
    let number = |i: usize| {
        parts[i]
            .parse::<i32>()
            .map_err(|_| invalid(format!("`{}` in `{text}` is not an integer", parts[i])))
    };
    let mut topic = TopicConfig::new(parts[0], number(1)?, number(2)?, number(3)?);
    if !matches!(parts[4], "SINGLE_TAG" | "MULTI_TAG") {
        return Err(invalid(format!("unknown topic filter type `{}`", parts[4])));
    }
    topic.topic_filter_type = parts[4].to_string();
    if parts.len() >= 6 {
        if let Ok(attributes) = serde_json::from_str(parts[5]) {
            topic.attributes = attributes;
        }
    }
    Ok(topic)
}

/// REGISTER_BROKER request header fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterBrokerRequestHeader {
    pub broker_name: String,
    /// "ip:port" clients use.
    pub broker_addr: String,
    pub cluster_name: String,
    /// "ip:haPort" slaves replicate from.
    pub ha_server_addr: String,
    /// 0 = master.
    pub broker_id: i64,
    /// 5.x per-broker expiry; None = the name server's default.
    pub heartbeat_timeout_ms: Option<u64>,
    pub compressed: bool,
    /// Masked CRC32 of the body, 0 = not checked.
    pub body_crc32: i32,
}

impl RegisterBrokerRequestHeader {
    /// Reads the header of a REGISTER_BROKER request; a missing required field names itself.
    pub fn from_command(request: &RemotingCommand) -> Result<Self, RemotingError> {
        Ok(RegisterBrokerRequestHeader {
            broker_name: request.required("brokerName")?,
            broker_addr: request.required("brokerAddr")?,
            cluster_name: request.required("clusterName")?,
            ha_server_addr: request.required("haServerAddr")?,
            broker_id: request.required("brokerId")?,
            heartbeat_timeout_ms: request.optional("heartbeatTimeoutMillis")?,
            compressed: request.ext_bool("compressed", false),
            body_crc32: request.optional("bodyCrc32")?.unwrap_or(0),
        })
    }

    /// A REGISTER_BROKER request carrying `body`, with `bodyCrc32` computed over it.
    pub fn into_request(mut self, body: Vec<u8>) -> RemotingCommand {
        self.body_crc32 = crc32_masked(&body);
        let mut cmd = RemotingCommand::request(request_code::REGISTER_BROKER)
            .with_ext("brokerName", &self.broker_name)
            .with_ext("brokerAddr", &self.broker_addr)
            .with_ext("clusterName", &self.cluster_name)
            .with_ext("haServerAddr", &self.ha_server_addr)
            .with_ext("brokerId", self.broker_id)
            .with_ext("compressed", self.compressed)
            .with_ext("bodyCrc32", self.body_crc32);
        if let Some(timeout) = self.heartbeat_timeout_ms {
            cmd.set_ext("heartbeatTimeoutMillis", timeout);
        }
        cmd.with_body(body)
    }
}

/// What the name server answers a registration: for a slave, its master's HA and client
/// addresses; optionally the ORDER_TOPIC_CONFIG KV table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegisterBrokerResult {
    pub ha_server_addr: Option<String>,
    pub master_addr: Option<String>,
    pub kv_table: KVTable,
}

impl RegisterBrokerResult {
    /// Reads a SUCCESS response to REGISTER_BROKER.
    pub fn from_response(response: &RemotingCommand) -> RegisterBrokerResult {
        let non_empty = |key: &str| {
            response
                .ext(key)
                .filter(|v| !v.is_empty() && *v != "null")
                .map(str::to_string)
        };
        RegisterBrokerResult {
            ha_server_addr: non_empty("haServerAddr"),
            master_addr: non_empty("masterAddr"),
            kv_table: KVTable::decode(&response.body).unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body() -> RegisterBrokerBody {
        let mut wrapper = TopicConfigSerializeWrapper::default();
        let mut t = TopicConfig::new("TopicA", 4, 4, 6);
        t.attributes.insert("+message.type".into(), "NORMAL".into());
        wrapper.topic_config_table.insert("TopicA".into(), t);
        wrapper
            .topic_config_table
            .insert("TBW102".into(), TopicConfig::new("TBW102", 8, 8, 7));
        wrapper.data_version = DataVersion {
            state_version: 0,
            timestamp: 1_700_000_000_000,
            counter: 3,
        };
        RegisterBrokerBody {
            topic_config_serialize_wrapper: wrapper,
            filter_server_list: vec![],
        }
    }

    #[test]
    fn json_body_shape_and_java_variant() {
        let json = String::from_utf8(body().encode(false)).unwrap();
        assert!(json.starts_with(r#"{"topicConfigSerializeWrapper":{"topicConfigTable":{"#));
        assert!(json
            .contains(r#""dataVersion":{"stateVersion":0,"timestamp":1700000000000,"counter":3}"#));
        assert!(json.ends_with(r#""filterServerList":[]}"#));
        assert_eq!(
            RegisterBrokerBody::decode(json.as_bytes(), false, 409).unwrap(),
            body()
        );
        // As a Java 5.x broker sends it: extra mapping fields, no attributes on old topics.
        let java = r#"{"filterServerList":[],"topicConfigSerializeWrapper":{"dataVersion":
            {"counter":1,"stateVersion":0,"timestamp":5},"mappingDataVersion":{"counter":0},
            "topicConfigTable":{"T":{"order":false,"perm":6,"readQueueNums":2,
            "topicFilterType":"SINGLE_TAG","topicName":"T","topicSysFlag":0,"writeQueueNums":2}},
            "topicQueueMappingInfoMap":{}}}"#;
        let decoded = RegisterBrokerBody::decode(java.as_bytes(), false, 479).unwrap();
        let t = &decoded.topic_config_serialize_wrapper.topic_config_table["T"];
        assert_eq!((t.read_queue_nums, t.write_queue_nums, t.perm), (2, 2, 6));
        assert!(RegisterBrokerBody::decode(b"{not json", false, 409).is_err());
    }

    #[test]
    fn compressed_body_round_trips_for_old_and_new_senders() {
        let encoded = body().encode(true);
        assert_eq!(
            RegisterBrokerBody::decode(&encoded, true, 409).unwrap(),
            body()
        );
        assert_eq!(
            RegisterBrokerBody::decode(&encoded, true, VERSION_V5_0_0).unwrap(),
            body()
        );
        // Truncated inflated content is an error naming the section, not a panic.
        let mut raw = Vec::new();
        put_block(&mut raw, br#"{"counter":1}"#);
        put_i32(&mut raw, 2);
        put_block(&mut raw, b"T 1 1 6 SINGLE_TAG {}");
        let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&raw).unwrap();
        let err = RegisterBodyError::to_string(
            &RegisterBrokerBody::decode(&enc.finish().unwrap(), true, 409).unwrap_err(),
        );
        assert!(err.contains("truncated in topic config"), "{err}");
        assert!(RegisterBrokerBody::decode(b"garbage", true, 409).is_err());
    }

    #[test]
    fn topic_config_text_form() {
        let t = decode_topic_config_text(r#"T 4 2 6 MULTI_TAG {"a":"b"}"#).unwrap();
        assert_eq!((t.read_queue_nums, t.write_queue_nums, t.perm), (4, 2, 6));
        assert_eq!(t.topic_filter_type, "MULTI_TAG");
        assert_eq!(t.attributes["a"], "b");
        assert_eq!(
            encode_topic_config_text(&t),
            r#"T 4 2 6 MULTI_TAG {"a":"b"}"#
        );
        assert!(decode_topic_config_text("T 4 2").is_err());
        assert!(decode_topic_config_text("T x 2 6 SINGLE_TAG").is_err());
    }

    #[test]
    fn crc_and_header_round_trip() {
        // CRC32("123456789") = 0xCBF43926 (the standard check value), top bit masked off.
        assert_eq!(crc32_masked(b"123456789"), 0x4BF4_3926);
        let header = RegisterBrokerRequestHeader {
            broker_name: "b".into(),
            broker_addr: "1.1.1.1:10911".into(),
            cluster_name: "c".into(),
            ha_server_addr: "1.1.1.1:10912".into(),
            broker_id: 1,
            heartbeat_timeout_ms: Some(1000),
            compressed: false,
            body_crc32: 0,
        };
        let request = header.clone().into_request(b"{}".to_vec());
        let parsed = RegisterBrokerRequestHeader::from_command(&request).unwrap();
        assert_eq!(parsed.body_crc32, crc32_masked(b"{}"));
        assert_eq!(parsed.broker_id, 1);
        assert_eq!(parsed.heartbeat_timeout_ms, Some(1000));
        let mut missing = request.clone();
        missing.ext_fields.remove("clusterName");
        let err = RegisterBrokerRequestHeader::from_command(&missing).unwrap_err();
        assert!(err.to_string().contains("clusterName"));
    }
}
