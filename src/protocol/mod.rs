//! JSON bodies and shared protocol types (topic configs, routes, heartbeats, ...), serialized
//! with RocketMQ's camelCase field names.
//! OWNERS: topic.rs, route.rs, register.rs, cluster.rs, kv.rs — namesrv helper;
//! heartbeat.rs, consumer.rs — broker helper.

pub mod cluster;
pub mod consumer;
pub mod heartbeat;
pub mod kv;
pub mod register;
pub mod route;
pub mod topic;

/// Parses JSON that may come from fastjson with unquoted numeric map keys
/// (`{0:"addr"}`), by quoting such keys first.
pub fn parse_lenient_json<T: serde::de::DeserializeOwned>(text: &str) -> serde_json::Result<T> {
    match serde_json::from_str(text) {
        Ok(v) => Ok(v),
        Err(first) => serde_json::from_str(&quote_numeric_keys(text)).map_err(|_| first),
    }
}

/// Quotes bare integer object keys outside strings: `{0:"a",12:{}}` → `{"0":"a","12":{}}`.
pub fn quote_numeric_keys(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len() + 16);
    let mut in_string = false;
    let mut escaped = false;
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i] as char;
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            i += 1;
            continue;
        }
        if c == '"' {
            in_string = true;
            out.push(c);
            i += 1;
            continue;
        }
        if c == '{' || c == ',' {
            out.push(c);
            i += 1;
            // skip whitespace
            let mut j = i;
            while j < bytes.len() && (bytes[j] as char).is_ascii_whitespace() {
                j += 1;
            }
            let start = j;
            if j < bytes.len() && (bytes[j] == b'-' || bytes[j].is_ascii_digit()) {
                j += 1;
                while j < bytes.len() && bytes[j].is_ascii_digit() {
                    j += 1;
                }
                let mut k = j;
                while k < bytes.len() && (bytes[k] as char).is_ascii_whitespace() {
                    k += 1;
                }
                if k < bytes.len() && bytes[k] == b':' {
                    out.push_str(&text[i..start]);
                    out.push('"');
                    out.push_str(&text[start..j]);
                    out.push('"');
                    i = j;
                    continue;
                }
            }
            continue;
        }
        out.push(c);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn numeric_keys_are_quoted_outside_strings() {
        let s = r#"{0:"10.0.0.1:10911", 1 : "x,2:y", "a":{12:3}}"#;
        let q = quote_numeric_keys(s);
        let v: serde_json::Value = serde_json::from_str(&q).unwrap();
        assert_eq!(v["0"], "10.0.0.1:10911");
        assert_eq!(v["1"], "x,2:y");
        assert_eq!(v["a"]["12"], 3);
        let m: BTreeMap<String, String> = parse_lenient_json(r#"{0:"a"}"#).unwrap();
        assert_eq!(m["0"], "a");
    }
}
