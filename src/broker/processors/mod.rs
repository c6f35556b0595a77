//! Request processors, one file per family. Each takes the controller and the request and
//! returns the response (None = no response now).

pub mod admin;
pub mod heartbeat;
pub mod offset;
pub mod pull;
pub mod query;
pub mod send;

use super::response::ProcessError;
use crate::remoting::RemotingCommand;

pub type ProcessResult = Result<Option<RemotingCommand>, ProcessError>;

/// RocketMQ's hint appended to "not exist" remarks.
pub const FAQ_URL: &str = "http://rocketmq.apache.org/docs/faq/";

pub fn topic_not_exist_remark(topic: &str) -> String {
    format!("topic[{topic}] not exist, apply first please! {FAQ_URL}")
}

/// Parses a JSON request body leniently (fastjson may write unquoted numeric keys).
pub fn parse_body<T: serde::de::DeserializeOwned>(
    request: &RemotingCommand,
) -> Result<T, ProcessError> {
    let text = std::str::from_utf8(&request.body)
        .map_err(|e| ProcessError::Body(format!("body is not UTF-8: {e}")))?;
    crate::protocol::parse_lenient_json(text).map_err(|e| ProcessError::Body(e.to_string()))
}

/// Serializes a response body.
pub fn json_body<T: serde::Serialize>(value: &T) -> Vec<u8> {
    // Our body types are plain data; serialization cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}
