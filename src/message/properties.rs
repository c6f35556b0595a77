//! Property string: `name \x01 value \x02` repeated. OWNER: store helper.

use std::collections::BTreeMap;

/// Message properties, ordered for deterministic encoding.
pub type Properties = BTreeMap<String, String>;

pub const NAME_VALUE_SEPARATOR: char = '\u{1}';
pub const PROPERTY_SEPARATOR: char = '\u{2}';

pub const KEYS: &str = "KEYS";
pub const TAGS: &str = "TAGS";
pub const WAIT: &str = "WAIT";
pub const DELAY: &str = "DELAY";
pub const RETRY_TOPIC: &str = "RETRY_TOPIC";
pub const REAL_TOPIC: &str = "REAL_TOPIC";
pub const REAL_QID: &str = "REAL_QID";
pub const TRAN_MSG: &str = "TRAN_MSG";
pub const PGROUP: &str = "PGROUP";
pub const MIN_OFFSET: &str = "MIN_OFFSET";
pub const MAX_OFFSET: &str = "MAX_OFFSET";
pub const CLUSTER: &str = "CLUSTER";
pub const UNIQ_KEY: &str = "UNIQ_KEY";
pub const ORIGIN_MESSAGE_ID: &str = "ORIGIN_MESSAGE_ID";
pub const RECONSUME_TIME: &str = "RECONSUME_TIME";
pub const MAX_RECONSUME_TIMES: &str = "MAX_RECONSUME_TIMES";
pub const MSG_REGION: &str = "MSG_REGION";
pub const TRACE_ON: &str = "TRACE_ON";

/// Encodes properties as RocketMQ's Java encoder does (trailing `\x02` after every pair).
pub fn encode_properties(props: &Properties) -> String {
    let mut out = String::new();
    for (k, v) in props {
        out.push_str(k);
        out.push(NAME_VALUE_SEPARATOR);
        out.push_str(v);
        out.push(PROPERTY_SEPARATOR);
    }
    out
}

/// Parses a property string leniently (segments without an interior `\x01` are ignored).
pub fn decode_properties(s: &str) -> Properties {
    let mut props = Properties::new();
    for seg in s.split(PROPERTY_SEPARATOR) {
        if let Some(i) = seg.find(NAME_VALUE_SEPARATOR) {
            if i > 0 {
                props.insert(seg[..i].to_string(), seg[i + 1..].to_string());
            }
        }
    }
    props
}

/// A property string parsed without copying: the same pairs, order and last-wins rule as
/// [`decode_properties`], borrowing from the string (the send path parses every message's
/// properties; owning each key and value cost two allocations per pair).
pub type PropertiesRef<'a> = BTreeMap<&'a str, &'a str>;

/// [`decode_properties`] without copies.
pub fn decode_properties_ref(s: &str) -> PropertiesRef<'_> {
    let mut props = PropertiesRef::new();
    for seg in s.split(PROPERTY_SEPARATOR) {
        if let Some(i) = seg.find(NAME_VALUE_SEPARATOR) {
            if i > 0 {
                props.insert(&seg[..i], &seg[i + 1..]);
            }
        }
    }
    props
}

/// [`encode_properties`] for a borrowed map: byte-identical output, one allocation.
pub fn encode_properties_ref(props: &PropertiesRef<'_>) -> String {
    let len = props.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
    let mut out = String::with_capacity(len);
    for (k, v) in props {
        out.push_str(k);
        out.push(NAME_VALUE_SEPARATOR);
        out.push_str(v);
        out.push(PROPERTY_SEPARATOR);
    }
    debug_assert_eq!(out.len(), len);
    out
}

/// Java `String.hashCode` of a tag, as RocketMQ's ConsumeQueue tags code.
pub fn tags_hash_code(tags: &str) -> i64 {
    java_string_hash(tags) as i64
}

/// Java `String.hashCode` (UTF-16 code units, wrapping i32).
pub fn java_string_hash(s: &str) -> i32 {
    let mut h: i32 = 0;
    for unit in s.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(unit as i32);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_java_hash() {
        let mut p = Properties::new();
        p.insert("TAGS".into(), "TagA".into());
        p.insert("KEYS".into(), "k1 k2".into());
        let s = encode_properties(&p);
        assert_eq!(s, "KEYS\u{1}k1 k2\u{2}TAGS\u{1}TagA\u{2}");
        assert_eq!(decode_properties(&s), p);
        // "TagA".hashCode() in Java
        assert_eq!(java_string_hash("TagA"), 2598919);
        assert_eq!(java_string_hash(""), 0);
    }
}
