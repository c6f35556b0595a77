//! Java `.properties` parsing with line numbers. OWNER: config helper.
//!
//! Follows `java.util.Properties.load`: `#` and `!` start comment lines, a key ends at the first
//! unescaped `=`, `:` or whitespace, a logical line continues while it ends in an odd number of
//! backslashes, and `\t \n \r \f \uXXXX` escapes are decoded (any other escaped character stands
//! for itself). Unlike Java, values are also trimmed of trailing whitespace, because RocketMQ
//! operators routinely leave trailing blanks and Java's own RocketMQ loader then fails on
//! `Integer.parseInt("10911 ")` only at a distance.

use super::ConfigError;

/// One `key=value` entry with the 1-based line where its logical line starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Property {
    pub key: String,
    pub value: String,
    pub line: usize,
}

/// Parses properties text into its entries, in file order (duplicates kept: the caller decides;
/// Java's `Properties` keeps the last one). `origin` names the file in errors.
pub fn parse_properties(text: &str, origin: &str) -> Result<Vec<Property>, ConfigError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines = split_lines(text);
    let mut properties = Vec::new();
    let mut index = 0;
    while index < lines.len() {
        let start_line = index + 1;
        let first = lines[index].trim_start_matches(is_properties_whitespace);
        index += 1;
        if first.is_empty() || first.starts_with('#') || first.starts_with('!') {
            // Comment lines never continue, even when they end in a backslash.
            continue;
        }
        // Join continuation lines: a line ending in an odd number of backslashes continues on
        // the next line, whose leading whitespace is dropped.
        let mut logical = String::from(first);
        while ends_with_odd_backslashes(&logical) {
            logical.pop();
            if index >= lines.len() {
                break;
            }
            logical.push_str(lines[index].trim_start_matches(is_properties_whitespace));
            index += 1;
        }
        let (raw_key, raw_value) = split_key_value(&logical);
        let key = unescape(raw_key, origin, start_line)?;
        let value = unescape(raw_value, origin, start_line)?;
        properties.push(Property {
            key,
            value: value.trim_end().to_string(),
            line: start_line,
        });
    }
    Ok(properties)
}

fn is_properties_whitespace(c: char) -> bool {
    c == ' ' || c == '\t' || c == '\u{000c}'
}

/// Splits on `\n`, `\r\n` and lone `\r`, as Java's LineReader does.
fn split_lines(text: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let bytes = text.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\n' => {
                lines.push(&text[start..i]);
                start = i + 1;
            }
            b'\r' => {
                lines.push(&text[start..i]);
                if i + 1 < bytes.len() && bytes[i + 1] == b'\n' {
                    i += 1;
                }
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    if start < bytes.len() {
        lines.push(&text[start..]);
    }
    lines
}

fn ends_with_odd_backslashes(s: &str) -> bool {
    s.bytes().rev().take_while(|b| *b == b'\\').count() % 2 == 1
}

/// Splits a logical line into its raw (still escaped) key and value.
fn split_key_value(line: &str) -> (&str, &str) {
    let mut escaped = false;
    let mut key_end = line.len();
    let mut separator_is_whitespace = false;
    for (i, c) in line.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        if c == '\\' {
            escaped = true;
            continue;
        }
        if c == '=' || c == ':' {
            key_end = i;
            break;
        }
        if is_properties_whitespace(c) {
            key_end = i;
            separator_is_whitespace = true;
            break;
        }
    }
    let key = &line[..key_end];
    let mut rest = &line[key_end..];
    if separator_is_whitespace {
        // `key   = value` and `key value` are both legal: skip blanks, then one `=` or `:`.
        rest = rest.trim_start_matches(is_properties_whitespace);
        if let Some(r) = rest.strip_prefix('=').or_else(|| rest.strip_prefix(':')) {
            rest = r;
        }
    } else if !rest.is_empty() {
        rest = &rest[1..];
    }
    (key, rest.trim_start_matches(is_properties_whitespace))
}

fn unescape(raw: &str, origin: &str, line: usize) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            None => break,
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\u{000c}'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                let code = if hex.len() == 4 {
                    u32::from_str_radix(&hex, 16).ok()
                } else {
                    None
                };
                let Some(code) = code else {
                    return Err(ConfigError::Syntax {
                        path: origin.to_string(),
                        line,
                        reason: format!("malformed \\uXXXX escape `\\u{hex}`"),
                    });
                };
                out.push(decode_utf16_unit(code, &mut chars, origin, line)?);
            }
            Some(other) => out.push(other),
        }
    }
    Ok(out)
}

/// Decodes one `\uXXXX` unit; a high surrogate must be followed by `\uXXXX` with a low one.
fn decode_utf16_unit(
    code: u32,
    rest: &mut std::str::Chars<'_>,
    origin: &str,
    line: usize,
) -> Result<char, ConfigError> {
    let bad = |what: &str| ConfigError::Syntax {
        path: origin.to_string(),
        line,
        reason: format!("invalid \\u escape: {what} (U+{code:04X})"),
    };
    if (0xD800..0xDC00).contains(&code) {
        let lookahead: String = rest.clone().take(6).collect();
        let low = lookahead
            .strip_prefix("\\u")
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .filter(|l| (0xDC00..0xE000).contains(l))
            .ok_or_else(|| bad("high surrogate without a following low surrogate"))?;
        for _ in 0..6 {
            rest.next();
        }
        let combined = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
        return char::from_u32(combined).ok_or_else(|| bad("not a character"));
    }
    char::from_u32(code).ok_or_else(|| bad("lone low surrogate"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(text: &str) -> Vec<(String, String, usize)> {
        parse_properties(text, "t.properties")
            .unwrap()
            .into_iter()
            .map(|p| (p.key, p.value, p.line))
            .collect()
    }

    #[test]
    fn separators_comments_and_whitespace() {
        let text = "# comment\n! bang comment\n\n  a=1\nb: 2\nc 3\n d  =  4  \ne\tx\nf=\ng\n";
        assert_eq!(
            kv(text),
            vec![
                ("a".into(), "1".into(), 4),
                ("b".into(), "2".into(), 5),
                ("c".into(), "3".into(), 6),
                ("d".into(), "4".into(), 7),
                ("e".into(), "x".into(), 8),
                ("f".into(), "".into(), 9),
                ("g".into(), "".into(), 10),
            ]
        );
    }

    #[test]
    fn value_may_contain_separators() {
        assert_eq!(
            kv("namesrvAddr=10.0.0.1:9876;10.0.0.2:9876\nk = a=b\n"),
            vec![
                (
                    "namesrvAddr".into(),
                    "10.0.0.1:9876;10.0.0.2:9876".into(),
                    1
                ),
                ("k".into(), "a=b".into(), 2),
            ]
        );
    }

    #[test]
    fn continuation_lines_join_and_keep_first_line_number() {
        let text = "x=1\nmessageDelayLevel=1s 5s \\\n    10s \\\n\t30s\ny=2\n";
        assert_eq!(
            kv(text),
            vec![
                ("x".into(), "1".into(), 1),
                ("messageDelayLevel".into(), "1s 5s 10s 30s".into(), 2),
                ("y".into(), "2".into(), 5),
            ]
        );
        // An even number of trailing backslashes is an escaped backslash, not a continuation.
        assert_eq!(
            kv("p=C:\\\\\nq=1"),
            vec![("p".into(), "C:\\".into(), 1), ("q".into(), "1".into(), 2)]
        );
        // A comment ending in a backslash does not swallow the next line.
        assert_eq!(kv("# c \\\nz=9"), vec![("z".into(), "9".into(), 2)]);
        // Continuation at end of file just ends the value.
        assert_eq!(kv("w=a\\"), vec![("w".into(), "a".into(), 1)]);
    }

    #[test]
    fn escapes_are_decoded() {
        assert_eq!(
            kv("k\\ ey=t\\tn\\nu\\u00e9\\u4e2d \\=\\:\\#\ns=\\uD83D\\uDE00\n"),
            vec![
                ("k ey".into(), "t\tn\nu\u{e9}\u{4e2d} =:#".into(), 1),
                ("s".into(), "\u{1F600}".into(), 2),
            ]
        );
    }

    #[test]
    fn crlf_and_cr_line_endings() {
        assert_eq!(
            kv("a=1\r\nb=2\rc=3"),
            vec![
                ("a".into(), "1".into(), 1),
                ("b".into(), "2".into(), 2),
                ("c".into(), "3".into(), 3),
            ]
        );
    }

    #[test]
    fn malformed_unicode_escape_names_file_and_line() {
        let err = parse_properties("a=1\n\nb=\\u12G4\n", "conf/x.properties").unwrap_err();
        match &err {
            ConfigError::Syntax { path, line, reason } => {
                assert_eq!(path, "conf/x.properties");
                assert_eq!(*line, 3);
                assert!(reason.contains("\\u"), "{reason}");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(err.to_string().starts_with("conf/x.properties:3:"), "{err}");
        let short = parse_properties("a=\\u12", "f").unwrap_err();
        assert!(matches!(short, ConfigError::Syntax { line: 1, .. }));
        let lone = parse_properties("a=\\uD800x", "f").unwrap_err();
        assert!(matches!(lone, ConfigError::Syntax { line: 1, .. }));
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any text parses or fails with a syntax error on an existing line; never panics.
        #[test]
        fn arbitrary_text_never_panics(text in "(?s)[a-z=:# !\\\\\\r\\n\\tu0-9DdEe\u{e9}\u{4e2d}]{0,80}") {
            let line_count = text.split(['\n', '\r']).count().max(1);
            match parse_properties(&text, "p") {
                Ok(props) => {
                    for p in props {
                        prop_assert!(p.line >= 1 && p.line <= line_count);
                        prop_assert!(!p.value.ends_with(' '));
                    }
                }
                Err(ConfigError::Syntax { line, .. }) => {
                    prop_assert!(line >= 1 && line <= line_count);
                }
                Err(other) => prop_assert!(false, "unexpected error {other:?}"),
            }
        }

        /// `key=value` lines with plain keys read back exactly (values trimmed at the end).
        #[test]
        fn plain_entries_round_trip(
            entries in proptest::collection::vec(("[a-zA-Z][a-zA-Z0-9.]{0,12}", "[a-zA-Z0-9;:/. =-]{0,20}"), 0..8)
        ) {
            let text: String = entries.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
            let props = parse_properties(&text, "p").unwrap();
            prop_assert_eq!(props.len(), entries.len());
            for (i, (p, (k, v))) in props.iter().zip(&entries).enumerate() {
                prop_assert_eq!(&p.key, k);
                prop_assert_eq!(p.value.as_str(), v.trim());
                prop_assert_eq!(p.line, i + 1);
            }
        }
    }
}
