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

/// The properties dispatch needs (ConsumeQueue tags code, index keys), found in one pass over
/// an encoded property string with the same last-wins rule as [`decode_properties`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DispatchProperties<'a> {
    pub tags: Option<&'a str>,
    pub keys: Option<&'a str>,
    pub uniq_key: Option<&'a str>,
    pub delay: Option<&'a str>,
}

impl<'a> DispatchProperties<'a> {
    /// KEYS tokens (space-separated), without allocating.
    pub fn key_tokens(&self) -> impl Iterator<Item = &'a str> {
        self.keys.unwrap_or("").split(' ').filter(|s| !s.is_empty())
    }
}

/// Scans `s` once for TAGS, KEYS, UNIQ_KEY and DELAY (dispatch runs this for every message;
/// looking each name up separately walked the string four times).
pub fn scan_dispatch_properties(s: &str) -> DispatchProperties<'_> {
    let mut out = DispatchProperties::default();
    let bytes = s.as_bytes();
    let mut start = 0;
    while start < bytes.len() {
        let end = find_byte(bytes, start, PROPERTY_SEPARATOR as u8).unwrap_or(bytes.len());
        // Both separators are ASCII, so these byte positions are char boundaries.
        let seg = &s[start..end];
        start = end + 1;
        // Only four names matter: check the name in place before anything else.
        let (name, value) = match seg.as_bytes().first() {
            Some(b'T') => (TAGS, &mut out.tags),
            Some(b'K') => (KEYS, &mut out.keys),
            Some(b'U') => (UNIQ_KEY, &mut out.uniq_key),
            Some(b'D') => (DELAY, &mut out.delay),
            _ => continue,
        };
        if seg.len() > name.len()
            && seg.as_bytes()[name.len()] == NAME_VALUE_SEPARATOR as u8
            && seg.starts_with(name)
        {
            *value = Some(&seg[name.len() + 1..]);
        }
    }
    out
}

/// Position of the first `needle` in `haystack[from..]`, eight bytes per step (property
/// strings are short: a general memchr's set-up costs more than it saves).
fn find_byte(haystack: &[u8], from: usize, needle: u8) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let pattern = LO.wrapping_mul(needle as u64);
    let mut pos = from;
    while pos + 8 <= haystack.len() {
        let mut word = [0u8; 8];
        word.copy_from_slice(&haystack[pos..pos + 8]);
        let x = u64::from_le_bytes(word) ^ pattern;
        // Exact for the lowest matching byte (borrows only run upwards from a match).
        let found = x.wrapping_sub(LO) & !x & HI;
        if found != 0 {
            return Some(pos + (found.trailing_zeros() / 8) as usize);
        }
        pos += 8;
    }
    haystack[pos..]
        .iter()
        .position(|&b| b == needle)
        .map(|i| pos + i)
}

/// Java `String.hashCode` of a tag, as RocketMQ's ConsumeQueue tags code.
pub fn tags_hash_code(tags: &str) -> i64 {
    java_string_hash(tags) as i64
}

/// Java `String.hashCode` (UTF-16 code units, wrapping i32).
pub fn java_string_hash(s: &str) -> i32 {
    java_string_hash_continue(0, s)
}

/// Continues a Java `String.hashCode` over `s`: the hash of a concatenation `a + b` is
/// `java_string_hash_continue(java_string_hash(a), b)`, so callers need not build the string.
pub fn java_string_hash_continue(mut h: i32, s: &str) -> i32 {
    if s.is_ascii() {
        // One UTF-16 unit per byte. Four at a time: h*31^4 + a*31^3 + b*31^2 + c*31 + d
        // (wrapping, so equal to the one-by-one loop) shortens the multiply chain 4x.
        let mut chunks = s.as_bytes().chunks_exact(4);
        for c in &mut chunks {
            h = h
                .wrapping_mul(923_521)
                .wrapping_add((c[0] as i32).wrapping_mul(29_791))
                .wrapping_add((c[1] as i32).wrapping_mul(961))
                .wrapping_add((c[2] as i32).wrapping_mul(31))
                .wrapping_add(c[3] as i32);
        }
        for &b in chunks.remainder() {
            h = h.wrapping_mul(31).wrapping_add(b as i32);
        }
    } else {
        for unit in s.encode_utf16() {
            h = h.wrapping_mul(31).wrapping_add(unit as i32);
        }
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
        // Concatenation without building the string, ASCII and not.
        for (a, b) in [("Topic#", "key-1"), ("T\u{e9}", "#\u{1F600}x"), ("", "")] {
            assert_eq!(
                java_string_hash_continue(java_string_hash(a), b),
                java_string_hash(&format!("{a}{b}"))
            );
        }
        // "\u{e9}".hashCode() == 233; a surrogate pair hashes as two units.
        assert_eq!(java_string_hash("\u{e9}"), 233);
        assert_eq!(java_string_hash("\u{1F600}"), 0xD83D * 31 + 0xDE00);
    }

    #[test]
    fn dispatch_scan_matches_decode_properties() {
        let cases = [
            "",
            "KEYS\u{1}k1 k2\u{2}TAGS\u{1}TagA\u{2}UNIQ_KEY\u{1}U1\u{2}TAGS\u{1}TagB\u{2}",
            "DELAY\u{1}3\u{2}\u{1}noname\u{2}junk\u{2}TAGS\u{1}a\u{1}b\u{2}KEYS\u{1}\u{2}",
            "TAGS\u{1}\u{e9}t\u{2}UNIQ_KEY\u{1}x",
        ];
        for s in cases {
            let full = decode_properties(s);
            let scan = scan_dispatch_properties(s);
            assert_eq!(scan.tags, full.get(TAGS).map(String::as_str), "{s:?}");
            assert_eq!(scan.keys, full.get(KEYS).map(String::as_str), "{s:?}");
            assert_eq!(
                scan.uniq_key,
                full.get(UNIQ_KEY).map(String::as_str),
                "{s:?}"
            );
            assert_eq!(scan.delay, full.get(DELAY).map(String::as_str), "{s:?}");
        }
        // Separators at every position of the eight-byte steps and in the tail.
        for len in 0..20 {
            for at in 0..len {
                let mut v = vec![b'a'; len];
                v[at] = 2;
                if at + 3 < len {
                    v[at + 3] = 2;
                }
                assert_eq!(find_byte(&v, 0, 2), Some(at), "{v:?}");
                assert_eq!(
                    find_byte(&v, at + 1, 2),
                    v[at + 1..].iter().position(|&b| b == 2).map(|i| at + 1 + i)
                );
            }
            assert_eq!(find_byte(&vec![0xFFu8; len], 0, 2), None);
        }
        let scan = scan_dispatch_properties(cases[1]);
        assert_eq!(scan.tags, Some("TagB"), "last occurrence wins");
        assert_eq!(scan.key_tokens().collect::<Vec<_>>(), ["k1", "k2"]);
    }
}
