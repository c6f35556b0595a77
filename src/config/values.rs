//! Value parsers shared by the broker and namesrv key tables. Each returns the reason a value is
//! rejected; the caller adds file, line and key.

use std::fmt::Display;
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;

use crate::store::{BrokerRole, FlushDiskType};

pub(crate) fn parse_bool(value: &str) -> Result<bool, String> {
    // Java's Boolean.parseBoolean turns every typo into `false`; we refuse instead.
    if value.eq_ignore_ascii_case("true") {
        Ok(true)
    } else if value.eq_ignore_ascii_case("false") {
        Ok(false)
    } else {
        Err("expected `true` or `false`".to_string())
    }
}

/// An integer within `min..=max` (inclusive).
pub(crate) fn parse_int<T>(value: &str, min: T, max: T) -> Result<T, String>
where
    T: FromStr + PartialOrd + Display + Copy,
{
    let parsed: T = value
        .parse()
        .map_err(|_| format!("expected an integer between {min} and {max}"))?;
    if parsed < min || parsed > max {
        return Err(format!("must be between {min} and {max}"));
    }
    Ok(parsed)
}

/// A number of milliseconds/pages/... that must be positive.
pub(crate) fn parse_positive_u64(value: &str) -> Result<u64, String> {
    parse_int(value, 1u64, i64::MAX as u64)
}

pub(crate) fn parse_non_empty(value: &str) -> Result<String, String> {
    if value.is_empty() {
        return Err("must not be empty".to_string());
    }
    Ok(value.to_string())
}

pub(crate) fn parse_ip(value: &str) -> Result<IpAddr, String> {
    value
        .parse()
        .map_err(|_| "expected an IPv4 or IPv6 address such as 192.168.0.10".to_string())
}

/// `host:port` (the host is an IP or a name; the port 1..=65535).
pub(crate) fn parse_addr(value: &str) -> Result<String, String> {
    let value = value.trim();
    let Some((host, port)) = value.rsplit_once(':') else {
        return Err(format!("`{value}` is not `host:port`"));
    };
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(format!("`{value}` has no valid host before `:`"));
    }
    if parse_int(port, 1u16, u16::MAX).is_err() {
        return Err(format!("`{value}` has no valid port (1-65535) after `:`"));
    }
    Ok(value.to_string())
}

/// RocketMQ's `;`-separated address list (`namesrvAddr`); empty segments (a trailing `;`) are
/// skipped like RocketMQ does.
pub(crate) fn parse_addr_list(value: &str) -> Result<Vec<String>, String> {
    value
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(parse_addr)
        .collect()
}

/// Expands `${user.home}` anywhere and a leading `~` (as operators write RocketMQ paths).
pub(crate) fn expand_path(value: &str, home: Option<&str>) -> Result<PathBuf, String> {
    if value.is_empty() {
        return Err("must not be empty".to_string());
    }
    let needs_home = value.contains("${user.home}") || value == "~" || value.starts_with("~/");
    if !needs_home {
        return Ok(PathBuf::from(value));
    }
    let Some(home) = home else {
        return Err("uses ${user.home} or ~ but the HOME environment variable is not set".into());
    };
    let mut expanded = value.replace("${user.home}", home);
    if expanded == "~" || expanded.starts_with("~/") {
        expanded = format!("{home}{}", &expanded[1..]);
    }
    Ok(PathBuf::from(expanded))
}

/// Like [`expand_path`], but an empty value means "not set" (use the derived default).
pub(crate) fn parse_optional_path(
    value: &str,
    home: Option<&str>,
) -> Result<Option<PathBuf>, String> {
    if value.is_empty() {
        return Ok(None);
    }
    expand_path(value, home).map(Some)
}

pub(crate) fn parse_broker_role(value: &str) -> Result<BrokerRole, String> {
    match value.to_ascii_uppercase().as_str() {
        "ASYNC_MASTER" => Ok(BrokerRole::AsyncMaster),
        "SYNC_MASTER" => Ok(BrokerRole::SyncMaster),
        "SLAVE" => Ok(BrokerRole::Slave),
        _ => Err("expected ASYNC_MASTER, SYNC_MASTER or SLAVE".to_string()),
    }
}

pub(crate) fn broker_role_name(role: BrokerRole) -> &'static str {
    match role {
        BrokerRole::AsyncMaster => "ASYNC_MASTER",
        BrokerRole::SyncMaster => "SYNC_MASTER",
        BrokerRole::Slave => "SLAVE",
    }
}

pub(crate) fn parse_flush_disk_type(value: &str) -> Result<FlushDiskType, String> {
    match value.to_ascii_uppercase().as_str() {
        "ASYNC_FLUSH" => Ok(FlushDiskType::AsyncFlush),
        "SYNC_FLUSH" => Ok(FlushDiskType::SyncFlush),
        _ => Err("expected ASYNC_FLUSH or SYNC_FLUSH".to_string()),
    }
}

pub(crate) fn flush_disk_type_name(kind: FlushDiskType) -> &'static str {
    match kind {
        FlushDiskType::AsyncFlush => "ASYNC_FLUSH",
        FlushDiskType::SyncFlush => "SYNC_FLUSH",
    }
}

/// `deleteWhen`: `;`-separated hours of the day ("04", "04;16").
pub(crate) fn parse_delete_when(value: &str) -> Result<String, String> {
    let hours: Vec<&str> = value.split(';').map(str::trim).collect();
    if hours.iter().any(|h| parse_int(h, 0u8, 23).is_err()) {
        return Err("expected `;`-separated hours of the day 00-23, e.g. `04` or `04;16`".into());
    }
    Ok(value.to_string())
}

/// `messageDelayLevel`: space-separated durations with unit s, m, h or d ("1s 5s 10s 1m").
pub(crate) fn parse_message_delay_level(value: &str) -> Result<String, String> {
    let levels: Vec<&str> = value.split_whitespace().collect();
    if levels.is_empty() {
        return Err("must list at least one delay such as `1s`".to_string());
    }
    for level in &levels {
        let (digits, unit) = level.split_at(level.len().saturating_sub(1));
        let count_ok = parse_int(digits, 1u64, u32::MAX as u64).is_ok();
        if !count_ok || !matches!(unit, "s" | "m" | "h" | "d") {
            return Err(format!(
                "delay `{level}` is not a positive number followed by s, m, h or d"
            ));
        }
    }
    Ok(levels.join(" "))
}

/// A disk-usage ratio written either as a fraction (`0.85`) or, as RocketMQ 5.x does, as a
/// percentage (`85`); returned as a fraction in (0, 1].
pub(crate) fn parse_ratio(value: &str) -> Result<f64, String> {
    let number: f64 = value
        .parse()
        .map_err(|_| "expected a fraction such as 0.85 or a percentage such as 85".to_string())?;
    let fraction = if number > 1.0 { number / 100.0 } else { number };
    // NaN fails the range test too.
    let in_range = fraction > 0.0 && fraction <= 1.0;
    if !in_range {
        return Err("must be a fraction in (0, 1] or a percentage in (1, 100]".to_string());
    }
    Ok(fraction)
}

/// Levenshtein distance, for "did you mean" hints on misspelt keys.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bools_and_ints() {
        assert_eq!(parse_bool("TRUE"), Ok(true));
        assert_eq!(parse_bool("false"), Ok(false));
        assert!(parse_bool("yes").is_err());
        assert_eq!(parse_int("12", 3u16, 100), Ok(12));
        assert!(parse_int("2", 3u16, 100)
            .unwrap_err()
            .contains("between 3 and 100"));
        assert!(parse_int("x", 3u16, 100).is_err());
        assert!(parse_int("70000", 0u16, u16::MAX).is_err());
    }

    #[test]
    fn addresses() {
        assert_eq!(
            parse_addr_list("10.0.0.1:9876; ns2:9876;"),
            Ok(vec!["10.0.0.1:9876".to_string(), "ns2:9876".to_string()])
        );
        assert!(parse_addr_list("10.0.0.1").is_err());
        assert!(parse_addr_list("10.0.0.1:0").is_err());
        assert!(parse_addr(":9876").is_err());
        assert_eq!(parse_addr_list(""), Ok(vec![]));
    }

    #[test]
    fn paths_expand_home() {
        let home = Some("/home/rmq");
        assert_eq!(
            expand_path("${user.home}/store", home),
            Ok(PathBuf::from("/home/rmq/store"))
        );
        assert_eq!(
            expand_path("~/store", home),
            Ok(PathBuf::from("/home/rmq/store"))
        );
        assert_eq!(expand_path("~", home), Ok(PathBuf::from("/home/rmq")));
        assert_eq!(expand_path("/data/~x", home), Ok(PathBuf::from("/data/~x")));
        assert!(expand_path("~/store", None).unwrap_err().contains("HOME"));
        assert_eq!(parse_optional_path("", home), Ok(None));
    }

    #[test]
    fn enums_and_lists() {
        assert_eq!(parse_broker_role("SYNC_MASTER"), Ok(BrokerRole::SyncMaster));
        assert!(parse_broker_role("MASTER").is_err());
        assert_eq!(
            parse_flush_disk_type("SYNC_FLUSH"),
            Ok(FlushDiskType::SyncFlush)
        );
        assert!(parse_delete_when("04;16").is_ok());
        assert!(parse_delete_when("24").is_err());
        assert!(parse_delete_when("4am").is_err());
        assert_eq!(
            parse_message_delay_level(" 1s  5m 2h 1d "),
            Ok("1s 5m 2h 1d".into())
        );
        assert!(parse_message_delay_level("1s 5x").is_err());
        assert!(parse_message_delay_level("s").is_err());
        assert_eq!(parse_ratio("85"), Ok(0.85));
        assert_eq!(parse_ratio("0.9"), Ok(0.9));
        assert!(parse_ratio("0").is_err());
        assert!(parse_ratio("150").is_err());
        assert_eq!(edit_distance("brokerNmae", "brokerName"), 2);
    }
}
