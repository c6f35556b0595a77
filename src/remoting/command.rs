//! The logical remoting command (header + body), independent of its wire encoding.

use std::collections::BTreeMap;
use std::str::FromStr;

use bytes::Bytes;

use super::RemotingError;

/// Header encoding, the top byte of the frame's second int.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SerializeType {
    #[default]
    Json = 0,
    RocketMq = 1,
}

/// Client language (wire: JSON enum name, or one byte in the ROCKETMQ encoding).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LanguageCode {
    Java = 0,
    Cpp = 1,
    Dotnet = 2,
    Python = 3,
    Delphi = 4,
    Erlang = 5,
    Ruby = 6,
    #[default]
    Other = 7,
    Http = 8,
    Go = 9,
    Php = 10,
    Oms = 11,
    Rust = 12,
    NodeJs = 13,
}

/// RESPONSE bit of `flag`.
pub const FLAG_RESPONSE: i32 = 0x1;
/// ONEWAY bit of `flag`: no response must be sent.
pub const FLAG_ONEWAY: i32 = 0x2;

/// Our version ordinal on the wire (RocketMQ V4_9_8 = 409: old enough for 4.x clients, new
/// enough for standard route JSON).
pub const APOGEE_VERSION: i32 = 409;

/// A RocketMQ remoting command. `ext_fields` hold the flattened custom header (all values are
/// strings on the wire); a BTreeMap keeps encoding deterministic and sorted (ACL signing).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RemotingCommand {
    pub code: i32,
    pub language: LanguageCode,
    pub version: i32,
    pub opaque: i32,
    pub flag: i32,
    pub remark: Option<String>,
    pub ext_fields: BTreeMap<String, String>,
    pub body: Bytes,
    /// Encoding the command arrived in (decode) or will be written in (encode).
    pub serialize_type: SerializeType,
}

impl RemotingCommand {
    /// A new request with `code`; the opaque is assigned by the client when sent.
    pub fn request(code: i32) -> Self {
        RemotingCommand {
            code,
            language: LanguageCode::Rust,
            version: APOGEE_VERSION,
            ..Default::default()
        }
    }

    /// A response to `self` with `code` and optional remark: copies opaque and encoding.
    pub fn response(&self, code: i32, remark: impl Into<Option<String>>) -> Self {
        RemotingCommand {
            code,
            language: LanguageCode::Rust,
            version: APOGEE_VERSION,
            opaque: self.opaque,
            flag: FLAG_RESPONSE,
            remark: remark.into(),
            serialize_type: self.serialize_type,
            ..Default::default()
        }
    }

    pub fn is_response(&self) -> bool {
        self.flag & FLAG_RESPONSE != 0
    }

    pub fn is_oneway(&self) -> bool {
        self.flag & FLAG_ONEWAY != 0
    }

    pub fn mark_oneway(&mut self) {
        self.flag |= FLAG_ONEWAY;
    }

    /// Builder-style header field setter.
    pub fn with_ext(mut self, key: &str, value: impl ToString) -> Self {
        self.ext_fields.insert(key.to_string(), value.to_string());
        self
    }

    /// Builder-style body setter.
    pub fn with_body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    pub fn set_ext(&mut self, key: &str, value: impl ToString) {
        self.ext_fields.insert(key.to_string(), value.to_string());
    }

    /// An optional header field as a string.
    pub fn ext(&self, key: &str) -> Option<&str> {
        self.ext_fields.get(key).map(String::as_str)
    }

    /// A required header field (`@CFNotNull` in RocketMQ), parsed: missing or unparsable gives
    /// an error that names the field, answered to the client with a clear remark.
    pub fn required<T: FromStr>(&self, key: &str) -> Result<T, RemotingError> {
        let raw = self
            .ext(key)
            .ok_or_else(|| RemotingError::MissingField(key.to_string()))?;
        raw.trim()
            .parse::<T>()
            .map_err(|_| RemotingError::InvalidField {
                field: key.to_string(),
                value: raw.to_string(),
            })
    }

    /// An optional header field, parsed; present but unparsable is an error.
    pub fn optional<T: FromStr>(&self, key: &str) -> Result<Option<T>, RemotingError> {
        match self.ext(key) {
            None => Ok(None),
            Some(raw) if raw.is_empty() || raw == "null" => Ok(None),
            Some(raw) => {
                raw.trim()
                    .parse::<T>()
                    .map(Some)
                    .map_err(|_| RemotingError::InvalidField {
                        field: key.to_string(),
                        value: raw.to_string(),
                    })
            }
        }
    }

    /// A boolean header field as Java writes it ("true"/"false"); missing = `default`.
    pub fn ext_bool(&self, key: &str, default: bool) -> bool {
        match self.ext(key) {
            Some(v) => v.eq_ignore_ascii_case("true"),
            None => default,
        }
    }
}
