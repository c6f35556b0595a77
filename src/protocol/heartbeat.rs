//! HEART_BEAT body (RocketMQ `HeartbeatData`, `ProducerData`, `ConsumerData`,
//! `SubscriptionData`) and the tag-expression parser both the broker and clients use.
//! OWNER: broker helper.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::message::properties::tags_hash_code;

/// `SubscriptionData.SUB_ALL`: matches every tag.
pub const SUB_ALL: &str = "*";
/// Expression types (`ExpressionType`).
pub const EXPRESSION_TYPE_TAG: &str = "TAG";
pub const EXPRESSION_TYPE_SQL92: &str = "SQL92";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeartbeatData {
    #[serde(rename = "clientID", default)]
    pub client_id: String,
    #[serde(default)]
    pub producer_data_set: Vec<ProducerData>,
    #[serde(default)]
    pub consumer_data_set: Vec<ConsumerData>,
    /// 5.x heartbeat V2; 0 (or absent) for V1 heartbeats.
    #[serde(default)]
    pub heartbeat_fingerprint: i64,
    #[serde(default)]
    pub without_sub: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProducerData {
    pub group_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerData {
    pub group_name: String,
    /// CONSUME_ACTIVELY | CONSUME_PASSIVELY | CONSUME_POP
    #[serde(default = "default_consume_type")]
    pub consume_type: String,
    /// BROADCASTING | CLUSTERING
    #[serde(default = "default_message_model")]
    pub message_model: String,
    #[serde(default = "default_consume_from_where")]
    pub consume_from_where: String,
    #[serde(default)]
    pub subscription_data_set: Vec<SubscriptionData>,
    #[serde(default)]
    pub unit_mode: bool,
}

fn default_consume_type() -> String {
    "CONSUME_PASSIVELY".to_string()
}
fn default_message_model() -> String {
    "CLUSTERING".to_string()
}
fn default_consume_from_where() -> String {
    "CONSUME_FROM_LAST_OFFSET".to_string()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionData {
    #[serde(default)]
    pub class_filter_mode: bool,
    pub topic: String,
    #[serde(default = "default_sub_string")]
    pub sub_string: String,
    #[serde(default)]
    pub tags_set: BTreeSet<String>,
    #[serde(default)]
    pub code_set: BTreeSet<i32>,
    #[serde(default)]
    pub sub_version: i64,
    #[serde(default = "default_expression_type")]
    pub expression_type: String,
}

fn default_sub_string() -> String {
    SUB_ALL.to_string()
}
fn default_expression_type() -> String {
    EXPRESSION_TYPE_TAG.to_string()
}

/// Why a subscription expression was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscriptionParseError {
    #[error("expression type `{0}` is not supported (only TAG)")]
    UnsupportedType(String),
}

impl SubscriptionData {
    /// Builds a subscription from a TAG expression (`*`, `a`, `a || b`) as RocketMQ's
    /// `FilterAPI.buildSubscriptionData` does: tags are split on `||` and trimmed, codes are the
    /// Java hash codes of the tags.
    pub fn build(
        topic: &str,
        expression: Option<&str>,
        expression_type: Option<&str>,
        sub_version: i64,
    ) -> Result<SubscriptionData, SubscriptionParseError> {
        let expression_type = expression_type
            .filter(|t| !t.is_empty())
            .unwrap_or(EXPRESSION_TYPE_TAG);
        if !expression_type.eq_ignore_ascii_case(EXPRESSION_TYPE_TAG) {
            return Err(SubscriptionParseError::UnsupportedType(
                expression_type.to_string(),
            ));
        }
        let expression = expression.map(str::trim).unwrap_or("");
        let mut data = SubscriptionData {
            class_filter_mode: false,
            topic: topic.to_string(),
            sub_string: SUB_ALL.to_string(),
            tags_set: BTreeSet::new(),
            code_set: BTreeSet::new(),
            sub_version,
            expression_type: EXPRESSION_TYPE_TAG.to_string(),
        };
        if expression.is_empty() || expression == SUB_ALL {
            return Ok(data);
        }
        data.sub_string = expression.to_string();
        for tag in expression.split("||") {
            let tag = tag.trim();
            if !tag.is_empty() {
                data.tags_set.insert(tag.to_string());
                data.code_set.insert(tags_hash_code(tag) as i32);
            }
        }
        Ok(data)
    }

    /// True when the subscription accepts every tag.
    pub fn matches_all(&self) -> bool {
        self.sub_string.trim() == SUB_ALL || self.tags_set.contains(SUB_ALL)
    }

    /// ConsumeQueue-level tag filter (RocketMQ `ExpressionMessageFilter.isMatchedByConsumeQueue`
    /// for TAG expressions).
    pub fn matches_tags_code(&self, tags_code: i64) -> bool {
        if self.matches_all() {
            return true;
        }
        // Tag hash codes are Java ints widened to long; compare on the int value.
        self.code_set.contains(&(tags_code as i32))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_java_heartbeat() {
        let text = r#"{"clientID":"10.0.0.5@12345","producerDataSet":[{"groupName":"pg"}],
 "consumerDataSet":[{"groupName":"cg","consumeType":"CONSUME_PASSIVELY","messageModel":"CLUSTERING",
   "consumeFromWhere":"CONSUME_FROM_LAST_OFFSET","unitMode":false,
   "subscriptionDataSet":[{"classFilterMode":false,"topic":"T","subString":"a||b","tagsSet":["a","b"],
     "codeSet":[97,98],"subVersion":1700000000000,"expressionType":"TAG"}]}],
 "heartbeatFingerprint":0,"withoutSub":false}"#;
        let hb: HeartbeatData = serde_json::from_str(text).unwrap();
        assert_eq!(hb.client_id, "10.0.0.5@12345");
        assert_eq!(hb.producer_data_set[0].group_name, "pg");
        let sub = &hb.consumer_data_set[0].subscription_data_set[0];
        assert_eq!(sub.code_set.len(), 2);
        assert!(sub.matches_tags_code(97));
        assert!(!sub.matches_tags_code(99));
        assert!(!sub.matches_all());
    }

    #[test]
    fn builds_tag_expressions() {
        let all = SubscriptionData::build("T", Some("*"), None, 1).unwrap();
        assert!(all.matches_all());
        assert!(all.matches_tags_code(12345));
        let ab = SubscriptionData::build("T", Some(" TagA || TagB "), Some("TAG"), 1).unwrap();
        assert_eq!(ab.tags_set.len(), 2);
        assert!(ab.matches_tags_code(2598919)); // "TagA".hashCode()
        assert!(!ab.matches_tags_code(0));
        assert!(SubscriptionData::build("T", Some("a > 1"), Some("SQL92"), 1).is_err());
    }
}
