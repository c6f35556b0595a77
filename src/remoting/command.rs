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

impl LanguageCode {
    /// Every language, indexed by ordinal.
    pub const ALL: [LanguageCode; 14] = [
        LanguageCode::Java,
        LanguageCode::Cpp,
        LanguageCode::Dotnet,
        LanguageCode::Python,
        LanguageCode::Delphi,
        LanguageCode::Erlang,
        LanguageCode::Ruby,
        LanguageCode::Other,
        LanguageCode::Http,
        LanguageCode::Go,
        LanguageCode::Php,
        LanguageCode::Oms,
        LanguageCode::Rust,
        LanguageCode::NodeJs,
    ];

    /// The Java enum name, as written in JSON headers.
    pub fn name(self) -> &'static str {
        match self {
            LanguageCode::Java => "JAVA",
            LanguageCode::Cpp => "CPP",
            LanguageCode::Dotnet => "DOTNET",
            LanguageCode::Python => "PYTHON",
            LanguageCode::Delphi => "DELPHI",
            LanguageCode::Erlang => "ERLANG",
            LanguageCode::Ruby => "RUBY",
            LanguageCode::Other => "OTHER",
            LanguageCode::Http => "HTTP",
            LanguageCode::Go => "GO",
            LanguageCode::Php => "PHP",
            LanguageCode::Oms => "OMS",
            LanguageCode::Rust => "RUST",
            LanguageCode::NodeJs => "NODE_JS",
        }
    }

    /// The language with this ordinal; unknown ordinals read as `Other` (a peer newer than us).
    pub fn from_ordinal(ordinal: i64) -> LanguageCode {
        usize::try_from(ordinal)
            .ok()
            .and_then(|i| LanguageCode::ALL.get(i).copied())
            .unwrap_or(LanguageCode::Other)
    }

    /// The language named `name` (case-insensitive; a decimal ordinal is accepted too);
    /// unknown names read as `Other`.
    pub fn from_name_lenient(name: &str) -> LanguageCode {
        let name = name.trim();
        if let Ok(ordinal) = name.parse::<i64>() {
            return LanguageCode::from_ordinal(ordinal);
        }
        LanguageCode::ALL
            .iter()
            .copied()
            .find(|l| l.name().eq_ignore_ascii_case(name))
            .unwrap_or(LanguageCode::Other)
    }
}

/// RESPONSE bit of `flag`.
pub const FLAG_RESPONSE: i32 = 0x1;
/// ONEWAY bit of `flag`: no response must be sent.
pub const FLAG_ONEWAY: i32 = 0x2;

/// Our version ordinal on the wire (RocketMQ V4_9_8 = 409: old enough for 4.x clients, new
/// enough for standard route JSON).
pub const APOGEE_VERSION: i32 = 409;

/// The flattened custom header of a command: string keys and values, kept sorted by key (the
/// encoding is deterministic and sorted, as ACL signing needs), one value per key (a later
/// insert replaces). Every key and value lives in one string arena, indexed by a sorted `Vec`
/// of ranges: a decoded SEND header (about a dozen fields) costs two allocations instead of a
/// B-tree of nodes and two owned `String`s per field, which were ~20% of the broker's
/// instructions per sent message. The method names are `BTreeMap`'s; keys and values are
/// handed out as `&str`.
#[derive(Clone, Default)]
pub struct ExtFields {
    /// Keys and values back to back; a replaced or removed field's bytes stay until drop.
    arena: String,
    /// (key start, key end, value end) in `arena` (the value starts at the key's end), sorted by
    /// key.
    entries: Vec<(u32, u32, u32)>,
}

impl ExtFields {
    pub fn new() -> Self {
        ExtFields::default()
    }

    /// Room for `fields` fields of `bytes` key and value bytes in all.
    pub fn with_capacity(fields: usize, bytes: usize) -> Self {
        ExtFields {
            arena: String::with_capacity(bytes),
            entries: Vec::with_capacity(fields),
        }
    }

    fn key_at(&self, i: usize) -> &str {
        let (k, v, _) = self.entries[i];
        &self.arena[k as usize..v as usize]
    }

    fn value_at(&self, i: usize) -> &str {
        let (_, v, end) = self.entries[i];
        &self.arena[v as usize..end as usize]
    }

    fn position(&self, key: &str) -> Result<usize, usize> {
        // Compared as bytes (UTF-8 byte order is str order), which skips the char-boundary
        // checks of slicing a str.
        let arena = self.arena.as_bytes();
        let key = key.as_bytes();
        let key_of = |&(k, v, _): &(u32, u32, u32)| &arena[k as usize..v as usize];
        // Keys mostly differ in their first byte (SEND_MESSAGE_V2's are single letters): decide
        // on it inline, and call the slice comparison (a memcmp call) only on a tie.
        let cmp = |e: &(u32, u32, u32)| {
            let k = key_of(e);
            match (k.first(), key.first()) {
                (Some(a), Some(b)) if a != b => a.cmp(b),
                _ => k.cmp(key),
            }
        };
        // Fields usually arrive in key order (we, and fastjson for sorted maps, write them so):
        // appending at the end is checked first.
        match self.entries.last() {
            None => Err(0),
            Some(last) if cmp(last) == std::cmp::Ordering::Less => Err(self.entries.len()),
            _ => self.entries.binary_search_by(cmp),
        }
    }

    /// Offset into the arena as stored in `entries`. A header is bounded by the 16 MiB frame
    /// limit; a command built in memory beyond 4 GiB of header text is a bug.
    fn offset(&self) -> u32 {
        u32::try_from(self.arena.len()).expect("ext fields beyond 4 GiB")
    }

    /// Sets `key` to `value` (appended to the arena); returns whether a value was replaced.
    pub fn insert_str(&mut self, key: &str, value: &str) -> bool {
        self.insert_with(key, |arena| arena.push_str(value))
    }

    /// Sets `key` to the value `write` appends to the arena (no intermediate `String`).
    fn insert_with(&mut self, key: &str, write: impl FnOnce(&mut String)) -> bool {
        if self.entries.capacity() == 0 {
            // A header built field by field (responses, client requests) would otherwise
            // regrow both buffers several times; a SEND response needs ~5 fields, ~100 bytes.
            self.entries.reserve(8);
            self.arena.reserve(128);
        }
        let pos = self.position(key);
        let k = self.offset();
        // A replaced key is written again so the entry stays one contiguous key+value run.
        self.arena.push_str(key);
        let v = self.offset();
        write(&mut self.arena);
        let end = self.offset();
        match pos {
            Ok(i) => {
                self.entries[i] = (k, v, end);
                true
            }
            Err(i) => {
                self.entries.insert(i, (k, v, end));
                false
            }
        }
    }

    /// Sets `key` to `value`; returns the value it replaces.
    pub fn insert(&mut self, key: String, value: String) -> Option<String> {
        let old = self.get(&key).map(str::to_owned);
        self.insert_str(&key, &value);
        old
    }

    /// Sets `key` to `value` formatted straight into the arena.
    pub fn insert_display(&mut self, key: &str, value: impl std::fmt::Display) {
        use std::fmt::Write as _;
        // Writing to a String cannot fail.
        self.insert_with(key, |arena| {
            let _ = write!(arena, "{value}");
        });
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.position(key).ok().map(|i| self.value_at(i))
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.position(key).is_ok()
    }

    pub fn remove(&mut self, key: &str) -> Option<String> {
        let i = self.position(key).ok()?;
        let value = self.value_at(i).to_owned();
        self.entries.remove(i);
        Some(value)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Fields in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        (0..self.entries.len()).map(|i| (self.key_at(i), self.value_at(i)))
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> + '_ {
        (0..self.entries.len()).map(|i| self.key_at(i))
    }

    pub fn values(&self) -> impl Iterator<Item = &str> + '_ {
        (0..self.entries.len()).map(|i| self.value_at(i))
    }
}

/// Equal when the fields are (the arena's layout and leftovers do not matter).
impl PartialEq for ExtFields {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for ExtFields {}

impl std::fmt::Debug for ExtFields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl FromIterator<(String, String)> for ExtFields {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Self {
        let mut fields = ExtFields::new();
        for (k, v) in iter {
            fields.insert_str(&k, &v);
        }
        fields
    }
}

impl<const N: usize> From<[(String, String); N]> for ExtFields {
    fn from(entries: [(String, String); N]) -> Self {
        entries.into_iter().collect()
    }
}

impl From<BTreeMap<String, String>> for ExtFields {
    fn from(map: BTreeMap<String, String>) -> Self {
        map.into_iter().collect()
    }
}

/// A RocketMQ remoting command. `ext_fields` hold the flattened custom header (all values are
/// strings on the wire), sorted by key.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RemotingCommand {
    pub code: i32,
    pub language: LanguageCode,
    pub version: i32,
    pub opaque: i32,
    pub flag: i32,
    pub remark: Option<String>,
    pub ext_fields: ExtFields,
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

    /// The response to a request that failed with `err`: a missing or invalid header field
    /// gives SYSTEM_ERROR with a remark naming the field (RocketMQ's
    /// "the custom field <x> is null"); other errors map through
    /// [`response_code::for_error`](super::response_code::for_error).
    pub fn error_response(&self, err: &RemotingError) -> Self {
        let remark = match err {
            RemotingError::MissingField(field) => format!("the custom field <{field}> is null"),
            RemotingError::InvalidField { field, value } => {
                format!("the custom field <{field}> has invalid value <{value}>")
            }
            other => other.to_string(),
        };
        self.response(super::response_code::for_error(err), remark)
    }

    /// REQUEST_CODE_NOT_SUPPORTED response for an unknown request code, with Java's remark
    /// (" request type <code> not supported", leading space included).
    pub fn not_supported(&self) -> Self {
        self.response(
            super::response_code::REQUEST_CODE_NOT_SUPPORTED,
            format!(" request type {} not supported", self.code),
        )
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
    pub fn with_ext(mut self, key: &str, value: impl std::fmt::Display) -> Self {
        self.ext_fields.insert_display(key, value);
        self
    }

    /// Builder-style body setter.
    pub fn with_body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    pub fn set_ext(&mut self, key: &str, value: impl std::fmt::Display) {
        self.ext_fields.insert_display(key, value);
    }

    /// An optional header field as a string.
    pub fn ext(&self, key: &str) -> Option<&str> {
        self.ext_fields.get(key)
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
