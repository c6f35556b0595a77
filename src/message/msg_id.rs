//! Message ids: offset msgId (store host + CommitLog offset, uppercase hex) and UNIQ_KEY.
//! OWNER: store helper.

use std::net::SocketAddr;

/// Offset msgId: store host IP (4/16 bytes) + port (i32) + CommitLog offset (i64), hex.
pub fn create_offset_msg_id(store_host: SocketAddr, commitlog_offset: i64) -> String {
    let _ = (store_host, commitlog_offset);
    todo!("store helper")
}

/// Decodes an offset msgId into (store host, CommitLog offset). None if malformed.
pub fn decode_offset_msg_id(msg_id: &str) -> Option<(SocketAddr, i64)> {
    let _ = msg_id;
    todo!("store helper")
}

/// A new UNIQ_KEY in RocketMQ's client format (IP + pid + prefix + ms-in-month + counter).
/// `counter` is owned by the caller (no global statics).
pub fn create_uniq_key(host: SocketAddr, counter: u16, now_ms: i64) -> String {
    let _ = (host, counter, now_ms);
    todo!("store helper")
}
