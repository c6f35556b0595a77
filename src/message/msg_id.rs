//! Message ids: offset msgId (store host + CommitLog offset, uppercase hex) and UNIQ_KEY.
//! OWNER: store helper.

use std::net::{IpAddr, SocketAddr};

fn push_hex(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for b in bytes {
        out.push(HEX[(b >> 4) as usize] as char);
        out.push(HEX[(b & 0xF) as usize] as char);
    }
}

fn parse_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

fn ip_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// Offset msgId: store host IP (4/16 bytes) + port (i32) + CommitLog offset (i64), hex.
/// Every put answers one, so it is built in a stack buffer with a single allocation.
pub fn create_offset_msg_id(store_host: SocketAddr, commitlog_offset: i64) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut bytes = [0u8; 28];
    let ip_len = match store_host.ip() {
        IpAddr::V4(a) => {
            bytes[..4].copy_from_slice(&a.octets());
            4
        }
        IpAddr::V6(a) => {
            bytes[..16].copy_from_slice(&a.octets());
            16
        }
    };
    bytes[ip_len..ip_len + 4].copy_from_slice(&(store_host.port() as i32).to_be_bytes());
    bytes[ip_len + 4..ip_len + 12].copy_from_slice(&commitlog_offset.to_be_bytes());
    let bytes = &bytes[..ip_len + 12];
    let mut hex = [0u8; 56];
    for (i, b) in bytes.iter().enumerate() {
        hex[2 * i] = HEX[(b >> 4) as usize];
        hex[2 * i + 1] = HEX[(b & 0xF) as usize];
    }
    let hex = &hex[..bytes.len() * 2];
    debug_assert!(hex.len() == 32 || hex.len() == 56);
    std::str::from_utf8(hex)
        .expect("only ASCII hex digits were written")
        .to_owned()
}

/// Decodes an offset msgId into (store host, CommitLog offset). None if malformed.
pub fn decode_offset_msg_id(msg_id: &str) -> Option<(SocketAddr, i64)> {
    let bytes = parse_hex(msg_id)?;
    let ip_len = match bytes.len() {
        16 => 4,
        28 => 16,
        _ => return None,
    };
    let ip: IpAddr = if ip_len == 4 {
        IpAddr::from([bytes[0], bytes[1], bytes[2], bytes[3]])
    } else {
        let mut a = [0u8; 16];
        a.copy_from_slice(&bytes[..16]);
        IpAddr::from(a)
    };
    let mut port = [0u8; 4];
    port.copy_from_slice(&bytes[ip_len..ip_len + 4]);
    let port = i32::from_be_bytes(port);
    let mut offset = [0u8; 8];
    offset.copy_from_slice(&bytes[ip_len + 4..ip_len + 12]);
    Some((SocketAddr::new(ip, port as u16), i64::from_be_bytes(offset)))
}

/// Milliseconds since the start of the (UTC) month containing `now_ms`. RocketMQ uses local
/// time; the value only has to be unique-ish and monotonic within a month, so UTC serves.
fn ms_since_month_start(now_ms: i64) -> i64 {
    let days = now_ms.div_euclid(86_400_000);
    let ms_in_day = now_ms.rem_euclid(86_400_000);
    // Civil-from-days (Howard Hinnant's algorithm): day of month of `days`.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day_of_month = doy - (153 * mp + 2) / 5 + 1;
    (day_of_month - 1) * 86_400_000 + ms_in_day
}

/// A new UNIQ_KEY in RocketMQ's client format (IP + pid + prefix + ms-in-month + counter).
/// `counter` is owned by the caller (no global statics).
pub fn create_uniq_key(host: SocketAddr, counter: u16, now_ms: i64) -> String {
    let mut bytes = ip_bytes(host.ip());
    let pid = std::process::id();
    bytes.extend_from_slice(&(pid as i16).to_be_bytes());
    // Java uses the classloader's hashCode: a per-process constant. Derive one from the pid
    // and port so ids of two processes on one host differ.
    let prefix = (pid.wrapping_mul(0x9E37_79B1) ^ host.port() as u32) as i32;
    bytes.extend_from_slice(&prefix.to_be_bytes());
    bytes.extend_from_slice(&(ms_since_month_start(now_ms) as i32).to_be_bytes());
    bytes.extend_from_slice(&counter.to_be_bytes());
    let mut out = String::with_capacity(bytes.len() * 2);
    push_hex(&mut out, &bytes);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_msg_id_round_trip_v4_and_v6() {
        let host: SocketAddr = "10.0.0.2:10911".parse().expect("addr");
        let id = create_offset_msg_id(host, 1_048_576);
        // 0A000002 | 00002A9F | 0000000000100000
        assert_eq!(id, "0A00000200002A9F0000000000100000");
        assert_eq!(decode_offset_msg_id(&id), Some((host, 1_048_576)));
        assert_eq!(
            decode_offset_msg_id(&id.to_lowercase()),
            Some((host, 1_048_576))
        );

        let host6: SocketAddr = "[fe80::1]:9876".parse().expect("addr");
        let id6 = create_offset_msg_id(host6, 7);
        assert_eq!(id6.len(), 56);
        assert_eq!(decode_offset_msg_id(&id6), Some((host6, 7)));
    }

    #[test]
    fn malformed_offset_msg_ids_are_none() {
        assert_eq!(decode_offset_msg_id(""), None);
        assert_eq!(decode_offset_msg_id("XYZ"), None);
        assert_eq!(decode_offset_msg_id(&"0".repeat(30)), None);
        assert_eq!(decode_offset_msg_id(&"G".repeat(32)), None);
        assert_eq!(decode_offset_msg_id(&"é".repeat(16)), None);
    }

    #[test]
    fn uniq_key_layout() {
        let host: SocketAddr = "192.168.0.1:0".parse().expect("addr");
        // 2023-11-14T22:13:20Z: day 14 of the month.
        let now_ms = 1_700_000_000_000;
        let key = create_uniq_key(host, 0x0102, now_ms);
        assert_eq!(key.len(), 32);
        assert!(key.starts_with("C0A80001"));
        assert!(key.ends_with("0102"));
        let ms = i64::from_str_radix(&key[20..28], 16).expect("hex");
        assert_eq!(ms, 13 * 86_400_000 + (22 * 3600 + 13 * 60 + 20) * 1000);
        assert_eq!(key, key.to_uppercase());
        let key6 = create_uniq_key("[::1]:0".parse().expect("addr"), 1, now_ms);
        assert_eq!(key6.len(), 56);
        assert_ne!(
            create_uniq_key(host, 1, now_ms),
            create_uniq_key(host, 2, now_ms)
        );
    }

    #[test]
    fn month_start_on_first_day() {
        // 2024-03-01T00:00:00.005Z
        assert_eq!(ms_since_month_start(1_709_251_200_005), 5);
        // 2024-02-29T00:00:01Z (leap day)
        assert_eq!(
            ms_since_month_start(1_709_164_801_000),
            28 * 86_400_000 + 1000
        );
    }
}
