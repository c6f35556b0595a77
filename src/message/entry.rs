//! The stored message entry (CommitLog v1/v2 layout), which is also what PULL_MESSAGE,
//! QUERY_MESSAGE and VIEW_MESSAGE_BY_ID return. OWNER: store helper.

use std::net::SocketAddr;

use bytes::Bytes;

use super::Properties;

/// MAGICCODE of a v1 entry (1-byte topic length).
pub const MESSAGE_MAGIC_CODE_V1: i32 = 0xDAA320A7_u32 as i32;
/// MAGICCODE of a v2 entry (2-byte topic length).
pub const MESSAGE_MAGIC_CODE_V2: i32 = 0xDAA320AB_u32 as i32;
/// MAGICCODE of the blank filler at a CommitLog file's end.
pub const BLANK_MAGIC_CODE: i32 = 0xCBD43194_u32 as i32;

/// A decoded stored message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageExt {
    pub store_size: i32,
    pub body_crc: i32,
    pub queue_id: i32,
    pub flag: i32,
    pub queue_offset: i64,
    pub commitlog_offset: i64,
    pub sys_flag: i32,
    pub born_timestamp: i64,
    pub born_host: SocketAddr,
    pub store_timestamp: i64,
    pub store_host: SocketAddr,
    pub reconsume_times: i32,
    pub prepared_transaction_offset: i64,
    pub body: Bytes,
    pub topic: String,
    pub properties: Properties,
}

impl MessageExt {
    pub fn tags(&self) -> Option<&str> {
        self.properties
            .get(super::properties::TAGS)
            .map(String::as_str)
    }
    pub fn keys(&self) -> Vec<&str> {
        self.properties
            .get(super::properties::KEYS)
            .map(|k| k.split(' ').filter(|s| !s.is_empty()).collect())
            .unwrap_or_default()
    }
    pub fn uniq_key(&self) -> Option<&str> {
        self.properties
            .get(super::properties::UNIQ_KEY)
            .map(String::as_str)
    }
    /// The offset msgId of this stored message.
    pub fn offset_msg_id(&self) -> String {
        super::msg_id::create_offset_msg_id(self.store_host, self.commitlog_offset)
    }
}

/// Decodes one entry at the start of `buf`; checks magic, declared size and (if `check_crc`)
/// body CRC. Returns the message and its total size.
pub fn decode_entry(buf: &[u8], check_crc: bool) -> Result<(MessageExt, usize), String> {
    let _ = (buf, check_crc);
    todo!("store helper")
}

/// Decodes a concatenation of entries (a pull or query body).
pub fn decode_entries(buf: &[u8]) -> Result<Vec<MessageExt>, String> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let (msg, size) = decode_entry(&buf[pos..], false)?;
        pos += size;
        out.push(msg);
    }
    Ok(out)
}
