//! The stored message entry (CommitLog v1/v2 layout), which is also what PULL_MESSAGE,
//! QUERY_MESSAGE and VIEW_MESSAGE_BY_ID return. OWNER: store helper.

use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;

use super::sysflag;
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

/// Offset of TOTALSIZE.
pub const POS_TOTAL_SIZE: usize = 0;
/// Offset of MAGICCODE.
pub const POS_MAGIC: usize = 4;
/// Offset of BODYCRC.
pub const POS_BODY_CRC: usize = 8;
/// Offset of QUEUEID.
pub const POS_QUEUE_ID: usize = 12;
/// Offset of QUEUEOFFSET.
pub const POS_QUEUE_OFFSET: usize = 20;
/// Offset of PHYSICALOFFSET.
pub const POS_PHYSICAL_OFFSET: usize = 28;
/// Offset of SYSFLAG.
pub const POS_SYS_FLAG: usize = 36;
/// Offset of BORNTIMESTAMP.
pub const POS_BORN_TIMESTAMP: usize = 40;
/// Offset of BORNHOST.
pub const POS_BORN_HOST: usize = 48;
/// Smallest possible entry: v1, IPv4 hosts, empty body, topic and properties.
pub const MIN_ENTRY_SIZE: usize = 91;
/// Largest topic a v1 entry can carry (1-byte length); longer topics use v2.
pub const MAX_V1_TOPIC_LEN: usize = 127;
/// Properties length is a Java short.
pub const MAX_PROPERTIES_LEN: usize = i16::MAX as usize;

const _: () = assert!(POS_BORN_HOST + 8 + 8 + 8 + 4 + 8 + 4 + 1 + 2 == MIN_ENTRY_SIZE);

/// The fields of an entry about to be encoded (the store fills offsets and store time).
#[derive(Debug, Clone)]
pub struct EntryFields<'a> {
    pub queue_id: i32,
    pub flag: i32,
    pub queue_offset: i64,
    pub commitlog_offset: i64,
    /// The host-address v6 bits are derived from `born_host` / `store_host`.
    pub sys_flag: i32,
    pub born_timestamp: i64,
    pub born_host: SocketAddr,
    pub store_timestamp: i64,
    pub store_host: SocketAddr,
    pub reconsume_times: i32,
    pub prepared_transaction_offset: i64,
    pub body: &'a [u8],
    pub topic: &'a str,
    /// Encoded property string.
    pub properties: &'a [u8],
}

/// Why an entry cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("properties length {0} exceeds {MAX_PROPERTIES_LEN}")]
    PropertiesTooLong(usize),
    #[error("topic length {0} exceeds 65535")]
    TopicTooLong(usize),
    #[error("entry size {0} exceeds i32")]
    EntryTooLarge(usize),
}

/// True when the topic needs the v2 magic (2-byte topic length), as RocketMQ 5.x does with
/// `autoMessageVersionOnTopicLen=true`.
pub fn needs_v2(topic: &str) -> bool {
    topic.len() > MAX_V1_TOPIC_LEN
}

/// Total stored size of an entry.
pub fn entry_size(
    body_len: usize,
    topic_len: usize,
    properties_len: usize,
    born_v6: bool,
    store_v6: bool,
) -> usize {
    let topic_len_size = if topic_len > MAX_V1_TOPIC_LEN { 2 } else { 1 };
    MIN_ENTRY_SIZE - 1
        + topic_len_size
        + if born_v6 { 12 } else { 0 }
        + if store_v6 { 12 } else { 0 }
        + body_len
        + topic_len
        + properties_len
}

/// RocketMQ's BODYCRC: CRC32 of the body with the sign bit cleared.
pub fn body_crc(body: &[u8]) -> i32 {
    (crc32fast::hash(body) & 0x7FFF_FFFF) as i32
}

/// A writer over an entry's exact-size buffer (the buffer may be the mapped CommitLog itself).
struct SliceWriter<'a> {
    out: &'a mut [u8],
    pos: usize,
}

impl SliceWriter<'_> {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        self.out[self.pos..self.pos + bytes.len()].copy_from_slice(bytes);
        self.pos += bytes.len();
    }
    #[inline]
    fn put_host(&mut self, host: &SocketAddr) {
        match host {
            SocketAddr::V4(a) => self.put(&a.ip().octets()),
            SocketAddr::V6(a) => self.put(&a.ip().octets()),
        }
        self.put(&(host.port() as i32).to_be_bytes());
    }
}

/// Checks `fields` and returns the size its entry will have.
pub fn encoded_size(fields: &EntryFields<'_>) -> Result<usize, EncodeError> {
    if fields.properties.len() > MAX_PROPERTIES_LEN {
        return Err(EncodeError::PropertiesTooLong(fields.properties.len()));
    }
    if fields.topic.len() > u16::MAX as usize {
        return Err(EncodeError::TopicTooLong(fields.topic.len()));
    }
    let size = entry_size(
        fields.body.len(),
        fields.topic.len(),
        fields.properties.len(),
        fields.born_host.is_ipv6(),
        fields.store_host.is_ipv6(),
    );
    if size > i32::MAX as usize {
        return Err(EncodeError::EntryTooLarge(size));
    }
    Ok(size)
}

/// Appends the encoded entry to `out`; returns its size.
pub fn encode_entry(fields: &EntryFields<'_>, out: &mut Vec<u8>) -> Result<usize, EncodeError> {
    let size = encoded_size(fields)?;
    let start = out.len();
    out.resize(start + size, 0);
    encode_entry_into(fields, body_crc(fields.body), &mut out[start..]);
    Ok(size)
}

/// Encodes the entry into `out`, which must be exactly [`encoded_size`] bytes (checked), with
/// `body_crc` = [`body_crc`] of the body (computed by the caller, e.g. outside a lock).
pub fn encode_entry_into(fields: &EntryFields<'_>, body_crc: i32, out: &mut [u8]) {
    let born_v6 = fields.born_host.is_ipv6();
    let store_v6 = fields.store_host.is_ipv6();
    let size = out.len();
    debug_assert_eq!(Ok(size), encoded_size(fields));
    let mut sys_flag = fields.sys_flag & !(sysflag::BORNHOST_V6 | sysflag::STOREHOSTADDRESS_V6);
    if born_v6 {
        sys_flag |= sysflag::BORNHOST_V6;
    }
    if store_v6 {
        sys_flag |= sysflag::STOREHOSTADDRESS_V6;
    }
    let v2 = needs_v2(fields.topic);
    let magic = if v2 {
        MESSAGE_MAGIC_CODE_V2
    } else {
        MESSAGE_MAGIC_CODE_V1
    };
    let mut w = SliceWriter { out, pos: 0 };
    w.put(&(size as i32).to_be_bytes());
    w.put(&magic.to_be_bytes());
    w.put(&body_crc.to_be_bytes());
    w.put(&fields.queue_id.to_be_bytes());
    w.put(&fields.flag.to_be_bytes());
    w.put(&fields.queue_offset.to_be_bytes());
    w.put(&fields.commitlog_offset.to_be_bytes());
    w.put(&sys_flag.to_be_bytes());
    w.put(&fields.born_timestamp.to_be_bytes());
    w.put_host(&fields.born_host);
    w.put(&fields.store_timestamp.to_be_bytes());
    w.put_host(&fields.store_host);
    w.put(&fields.reconsume_times.to_be_bytes());
    w.put(&fields.prepared_transaction_offset.to_be_bytes());
    w.put(&(fields.body.len() as i32).to_be_bytes());
    w.put(fields.body);
    if v2 {
        w.put(&(fields.topic.len() as u16).to_be_bytes());
    } else {
        w.put(&[fields.topic.len() as u8]);
    }
    w.put(fields.topic.as_bytes());
    w.put(&(fields.properties.len() as i16).to_be_bytes());
    w.put(fields.properties);
    // Pair assertion with decode: what we wrote has exactly the declared size.
    assert_eq!(w.pos, size, "encoded entry size");
}

/// Offset of STORETIMESTAMP in an entry (shifts by 12 when the born host is IPv6).
pub fn store_timestamp_pos(sys_flag: i32) -> usize {
    POS_BORN_HOST
        + if sys_flag & sysflag::BORNHOST_V6 != 0 {
            20
        } else {
            8
        }
}

/// Rewrites the fields the store assigns under its append lock, in an encoded entry.
pub fn patch_entry(
    entry: &mut [u8],
    queue_offset: i64,
    commitlog_offset: i64,
    store_timestamp: i64,
) {
    assert!(entry.len() >= MIN_ENTRY_SIZE, "patching a truncated entry");
    entry[POS_QUEUE_OFFSET..POS_QUEUE_OFFSET + 8].copy_from_slice(&queue_offset.to_be_bytes());
    entry[POS_PHYSICAL_OFFSET..POS_PHYSICAL_OFFSET + 8]
        .copy_from_slice(&commitlog_offset.to_be_bytes());
    let sys_flag = read_i32(entry, POS_SYS_FLAG);
    let pos = store_timestamp_pos(sys_flag);
    entry[pos..pos + 8].copy_from_slice(&store_timestamp.to_be_bytes());
}

fn read_i32(buf: &[u8], pos: usize) -> i32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&buf[pos..pos + 4]);
    i32::from_be_bytes(b)
}

/// A bounds-checked big-endian reader over one entry.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        if self.buf.len() - self.pos < n {
            return Err(format!(
                "entry truncated reading {what} at byte {} (need {n}, have {})",
                self.pos,
                self.buf.len() - self.pos
            ));
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }
    fn i16(&mut self, what: &str) -> Result<i16, String> {
        let b = self.take(2, what)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }
    fn u16(&mut self, what: &str) -> Result<u16, String> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn i32(&mut self, what: &str) -> Result<i32, String> {
        let b = self.take(4, what)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn i64(&mut self, what: &str) -> Result<i64, String> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }
    fn host(&mut self, v6: bool, what: &str) -> Result<SocketAddr, String> {
        let ip: IpAddr = if v6 {
            let b = self.take(16, what)?;
            let mut a = [0u8; 16];
            a.copy_from_slice(b);
            IpAddr::from(a)
        } else {
            let b = self.take(4, what)?;
            IpAddr::from([b[0], b[1], b[2], b[3]])
        };
        let port = self.i32(what)?;
        Ok(SocketAddr::new(ip, port as u16))
    }
}

/// Reads TOTALSIZE and MAGICCODE at the start of `buf` (None if fewer than 8 bytes).
pub fn peek_header(buf: &[u8]) -> Option<(i32, i32)> {
    if buf.len() < 8 {
        return None;
    }
    Some((read_i32(buf, POS_TOTAL_SIZE), read_i32(buf, POS_MAGIC)))
}

/// The fields of a stored entry, borrowed from its bytes (no allocation): what dispatch and
/// recovery need per entry. [`decode_entry`] builds a [`MessageExt`] from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryView<'a> {
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
    pub body: &'a [u8],
    pub topic: &'a str,
    /// The encoded property string.
    pub properties: &'a str,
}

impl<'a> EntryView<'a> {
    /// The value of property `name`, found in the encoded string without building a map.
    pub fn property(&self, name: &str) -> Option<&'a str> {
        self.properties
            .split(super::properties::PROPERTY_SEPARATOR)
            // The last occurrence wins, as in `decode_properties`.
            .rev()
            .find_map(|seg| {
                let (k, v) = seg.split_once(super::properties::NAME_VALUE_SEPARATOR)?;
                (k == name).then_some(v)
            })
    }
    /// KEYS tokens (space-separated), without allocating.
    pub fn keys(&self) -> impl Iterator<Item = &'a str> {
        self.property(super::properties::KEYS)
            .unwrap_or("")
            .split(' ')
            .filter(|s| !s.is_empty())
    }
    pub fn uniq_key(&self) -> Option<&'a str> {
        self.property(super::properties::UNIQ_KEY)
    }
}

/// Parses one entry at the start of `buf` without copying; checks magic, declared size and
/// (if `check_crc`) body CRC. Returns the view and the entry's total size.
pub fn parse_entry(buf: &[u8], check_crc: bool) -> Result<(EntryView<'_>, usize), String> {
    let mut r = Reader { buf, pos: 0 };
    let store_size = r.i32("TOTALSIZE")?;
    let magic = r.i32("MAGICCODE")?;
    let v2 = match magic {
        MESSAGE_MAGIC_CODE_V1 => false,
        MESSAGE_MAGIC_CODE_V2 => true,
        BLANK_MAGIC_CODE => return Err("blank filler, not a message".to_string()),
        other => return Err(format!("bad magic code {:#010X}", other as u32)),
    };
    if store_size < MIN_ENTRY_SIZE as i32 {
        return Err(format!(
            "declared size {store_size} below minimum {MIN_ENTRY_SIZE}"
        ));
    }
    if store_size as usize > buf.len() {
        return Err(format!(
            "declared size {store_size} exceeds the {} bytes available",
            buf.len()
        ));
    }
    // Only the declared entry is parsed: a field running past it is a size mismatch.
    let mut r = Reader {
        buf: &buf[..store_size as usize],
        pos: 8,
    };
    let body_crc_stored = r.i32("BODYCRC")?;
    let queue_id = r.i32("QUEUEID")?;
    let flag = r.i32("FLAG")?;
    let queue_offset = r.i64("QUEUEOFFSET")?;
    let commitlog_offset = r.i64("PHYSICALOFFSET")?;
    let sys_flag = r.i32("SYSFLAG")?;
    let born_timestamp = r.i64("BORNTIMESTAMP")?;
    let born_host = r.host(sys_flag & sysflag::BORNHOST_V6 != 0, "BORNHOST")?;
    let store_timestamp = r.i64("STORETIMESTAMP")?;
    let store_host = r.host(sys_flag & sysflag::STOREHOSTADDRESS_V6 != 0, "STOREHOST")?;
    let reconsume_times = r.i32("RECONSUMETIMES")?;
    let prepared_transaction_offset = r.i64("PREPARED TRANSACTION OFFSET")?;
    let body_len = r.i32("BODY length")?;
    if body_len < 0 {
        return Err(format!("negative body length {body_len}"));
    }
    let body = r.take(body_len as usize, "BODY")?;
    let topic_len = if v2 {
        r.u16("TOPIC length")? as usize
    } else {
        r.take(1, "TOPIC length")?[0] as usize
    };
    let topic = r.take(topic_len, "TOPIC")?;
    let properties_len = r.i16("PROPERTIES length")?;
    if properties_len < 0 {
        return Err(format!("negative properties length {properties_len}"));
    }
    let properties = r.take(properties_len as usize, "PROPERTIES")?;
    if r.pos != store_size as usize {
        return Err(format!(
            "declared size {store_size} but fields end at {}",
            r.pos
        ));
    }
    if check_crc {
        let computed = body_crc(body);
        if computed != body_crc_stored {
            return Err(format!(
                "body CRC mismatch: stored {body_crc_stored:#010X}, computed {computed:#010X}"
            ));
        }
        // The body CRC does not cover topic and properties, which end the entry. A torn
        // write (power loss cutting the entry at a sector boundary) leaves zeros from the cut
        // to the entry's end; neither RocketMQ's nor our encoder ever ends a topic or a
        // properties string with NUL (properties end with PROPERTY_SEPARATOR), so a zero last
        // byte there means the tail never reached the disk (found by sim t70 seed 18).
        if properties.last() == Some(&0) || (properties.is_empty() && topic.last() == Some(&0)) {
            return Err(
                "entry ends in zeros after its body: torn write (topic/properties tail lost)"
                    .to_string(),
            );
        }
    }
    let topic = std::str::from_utf8(topic).map_err(|e| format!("topic is not UTF-8: {e}"))?;
    let properties =
        std::str::from_utf8(properties).map_err(|e| format!("properties are not UTF-8: {e}"))?;
    Ok((
        EntryView {
            store_size,
            body_crc: body_crc_stored,
            queue_id,
            flag,
            queue_offset,
            commitlog_offset,
            sys_flag,
            born_timestamp,
            born_host,
            store_timestamp,
            store_host,
            reconsume_times,
            prepared_transaction_offset,
            body,
            topic,
            properties,
        },
        store_size as usize,
    ))
}

/// Decodes one entry at the start of `buf`; checks magic, declared size and (if `check_crc`)
/// body CRC. Returns the message and its total size.
pub fn decode_entry(buf: &[u8], check_crc: bool) -> Result<(MessageExt, usize), String> {
    let (v, size) = parse_entry(buf, check_crc)?;
    Ok((
        MessageExt {
            store_size: v.store_size,
            body_crc: v.body_crc,
            queue_id: v.queue_id,
            flag: v.flag,
            queue_offset: v.queue_offset,
            commitlog_offset: v.commitlog_offset,
            sys_flag: v.sys_flag,
            born_timestamp: v.born_timestamp,
            born_host: v.born_host,
            store_timestamp: v.store_timestamp,
            store_host: v.store_host,
            reconsume_times: v.reconsume_times,
            prepared_transaction_offset: v.prepared_transaction_offset,
            body: Bytes::copy_from_slice(v.body),
            topic: v.topic.to_string(),
            properties: super::decode_properties(v.properties),
        },
        size,
    ))
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn v4(a: [u8; 4], port: u16) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::from(a)), port)
    }

    #[test]
    fn entry_view_reads_properties_in_place() {
        let props = "KEYS\u{1}k1 k2\u{2}TAGS\u{1}TagA\u{2}UNIQ_KEY\u{1}U1\u{2}TAGS\u{1}TagB\u{2}";
        let view = EntryView {
            store_size: 0,
            body_crc: 0,
            queue_id: 0,
            flag: 0,
            queue_offset: 0,
            commitlog_offset: 0,
            sys_flag: 0,
            born_timestamp: 0,
            born_host: v4([1, 2, 3, 4], 1),
            store_timestamp: 0,
            store_host: v4([1, 2, 3, 4], 1),
            reconsume_times: 0,
            prepared_transaction_offset: 0,
            body: b"",
            topic: "T",
            properties: props,
        };
        assert_eq!(view.property("TAGS"), Some("TagB"), "last occurrence wins");
        assert_eq!(view.uniq_key(), Some("U1"));
        assert_eq!(view.keys().collect::<Vec<_>>(), vec!["k1", "k2"]);
        assert_eq!(view.property("NOPE"), None);
        let map = crate::message::decode_properties(props);
        assert_eq!(map.get("TAGS").map(String::as_str), view.property("TAGS"));
    }

    /// Builds an entry field by field from the published layout table (§4.2), without the
    /// encoder, then checks that decode reads it and the encoder reproduces it byte for byte.
    #[test]
    fn hand_built_v1_vector_decodes_and_encoder_reproduces_it() {
        let body = b"Hello RocketMQ";
        let topic = b"TopicTest";
        let props = b"TAGS\x01TagA\x02UNIQ_KEY\x01C0A8000100002A9F0000000000000001\x02";
        let total = 91 + body.len() + topic.len() + props.len();
        let crc = (crc32fast::hash(body) & 0x7FFF_FFFF) as i32;
        let mut e: Vec<u8> = Vec::new();
        e.extend_from_slice(&(total as i32).to_be_bytes()); // 0 TOTALSIZE
        e.extend_from_slice(&[0xDA, 0xA3, 0x20, 0xA7]); // 4 MAGICCODE v1
        e.extend_from_slice(&crc.to_be_bytes()); // 8 BODYCRC
        e.extend_from_slice(&3i32.to_be_bytes()); // 12 QUEUEID
        e.extend_from_slice(&0i32.to_be_bytes()); // 16 FLAG
        e.extend_from_slice(&42i64.to_be_bytes()); // 20 QUEUEOFFSET
        e.extend_from_slice(&1_048_576i64.to_be_bytes()); // 28 PHYSICALOFFSET
        e.extend_from_slice(&0i32.to_be_bytes()); // 36 SYSFLAG
        e.extend_from_slice(&1_700_000_000_000i64.to_be_bytes()); // 40 BORNTIMESTAMP
        e.extend_from_slice(&[192, 168, 0, 1]); // 48 BORNHOST ip
        e.extend_from_slice(&54321i32.to_be_bytes()); //    port
        e.extend_from_slice(&1_700_000_000_123i64.to_be_bytes()); // 56 STORETIMESTAMP
        e.extend_from_slice(&[10, 0, 0, 2]); // 64 STOREHOST ip
        e.extend_from_slice(&10911i32.to_be_bytes()); //    port
        e.extend_from_slice(&0i32.to_be_bytes()); // 72 RECONSUMETIMES
        e.extend_from_slice(&0i64.to_be_bytes()); // 76 PREPARED TX OFFSET
        e.extend_from_slice(&(body.len() as i32).to_be_bytes()); // 84 BODY length
        e.extend_from_slice(body);
        e.push(topic.len() as u8); // TOPIC length (v1: 1 byte)
        e.extend_from_slice(topic);
        e.extend_from_slice(&(props.len() as i16).to_be_bytes()); // PROPERTIES length
        e.extend_from_slice(props);
        assert_eq!(e.len(), total);

        let (msg, size) = decode_entry(&e, true).expect("decode");
        assert_eq!(size, total);
        assert_eq!(msg.store_size as usize, total);
        assert_eq!(msg.queue_id, 3);
        assert_eq!(msg.queue_offset, 42);
        assert_eq!(msg.commitlog_offset, 1_048_576);
        assert_eq!(msg.born_timestamp, 1_700_000_000_000);
        assert_eq!(msg.store_timestamp, 1_700_000_000_123);
        assert_eq!(msg.born_host, v4([192, 168, 0, 1], 54321));
        assert_eq!(msg.store_host, v4([10, 0, 0, 2], 10911));
        assert_eq!(&msg.body[..], body);
        assert_eq!(msg.topic, "TopicTest");
        assert_eq!(msg.tags(), Some("TagA"));
        assert_eq!(msg.uniq_key(), Some("C0A8000100002A9F0000000000000001"));
        assert_eq!(msg.body_crc, crc);
        assert_eq!(msg.offset_msg_id(), "0A00000200002A9F0000000000100000");

        let mut out = Vec::new();
        let fields = EntryFields {
            queue_id: 3,
            flag: 0,
            queue_offset: 42,
            commitlog_offset: 1_048_576,
            sys_flag: 0,
            born_timestamp: 1_700_000_000_000,
            born_host: v4([192, 168, 0, 1], 54321),
            store_timestamp: 1_700_000_000_123,
            store_host: v4([10, 0, 0, 2], 10911),
            reconsume_times: 0,
            prepared_transaction_offset: 0,
            body,
            topic: "TopicTest",
            properties: props,
        };
        assert_eq!(encode_entry(&fields, &mut out).expect("encode"), total);
        assert_eq!(out, e, "encoder reproduces the hand-built bytes");

        // Patching assigns offsets and store time in place.
        let mut patched = out.clone();
        patch_entry(&mut patched, 7, 99, 5);
        let (m2, _) = decode_entry(&patched, true).expect("decode patched");
        assert_eq!(
            (m2.queue_offset, m2.commitlog_offset, m2.store_timestamp),
            (7, 99, 5)
        );
    }

    fn sample(born: SocketAddr, store: SocketAddr, topic: &str) -> Vec<u8> {
        let mut out = Vec::new();
        encode_entry(
            &EntryFields {
                queue_id: 1,
                flag: 5,
                queue_offset: 9,
                commitlog_offset: 1234,
                sys_flag: sysflag::COMPRESSED,
                born_timestamp: 1,
                born_host: born,
                store_timestamp: 2,
                store_host: store,
                reconsume_times: 3,
                prepared_transaction_offset: 4,
                body: b"xyz",
                topic,
                properties: b"KEYS\x01a b\x02",
            },
            &mut out,
        )
        .expect("encode");
        out
    }

    #[test]
    fn ipv6_hosts_shift_fields_and_set_flags() {
        let born = SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 1000);
        let store = SocketAddr::new(IpAddr::V6("fe80::1".parse().expect("ip")), 2000);
        let e = sample(born, store, "T");
        assert_eq!(e.len(), 91 + 24 + 3 + 1 + 9);
        let (m, _) = decode_entry(&e, true).expect("decode");
        assert_eq!(m.born_host, born);
        assert_eq!(m.store_host, store);
        assert_eq!(m.store_timestamp, 2);
        assert_eq!(
            m.sys_flag,
            sysflag::COMPRESSED | sysflag::BORNHOST_V6 | sysflag::STOREHOSTADDRESS_V6
        );
        assert_eq!(m.keys(), vec!["a", "b"]);
        assert_eq!(m.offset_msg_id().len(), 56);
        let mut patched = e.clone();
        patch_entry(&mut patched, 0, 0, 77);
        assert_eq!(
            decode_entry(&patched, true)
                .expect("decode")
                .0
                .store_timestamp,
            77
        );
    }

    #[test]
    fn long_topic_uses_v2_magic() {
        let topic = "t".repeat(200);
        let e = sample(v4([1, 2, 3, 4], 5), v4([5, 6, 7, 8], 9), &topic);
        assert_eq!(&e[4..8], &[0xDA, 0xA3, 0x20, 0xAB]);
        assert_eq!(e.len(), 92 + 3 + 200 + 9);
        let (m, size) = decode_entry(&e, true).expect("decode");
        assert_eq!(m.topic, topic);
        assert_eq!(size, e.len());
    }

    #[test]
    fn torn_tail_after_the_body_is_rejected_when_checking() {
        // A power loss that cuts the entry at a sector boundary inside its properties keeps
        // a valid body CRC; the zeroed tail must still fail the recovery check.
        let e = sample(v4([1, 2, 3, 4], 5), v4([5, 6, 7, 8], 9), "T");
        let mut torn = e.clone();
        let len = torn.len();
        torn[len - 4..].fill(0);
        let err = parse_entry(&torn, true).expect_err("torn tail accepted");
        assert!(err.contains("torn"), "{err}");
        assert!(parse_entry(&torn, false).is_ok());
        assert!(parse_entry(&e, true).is_ok());
    }

    #[test]
    fn corrupt_entries_are_rejected_with_reasons() {
        let e = sample(v4([1, 2, 3, 4], 5), v4([5, 6, 7, 8], 9), "T");
        // Truncated.
        assert!(decode_entry(&e[..e.len() - 1], true).is_err());
        assert!(decode_entry(&e[..3], true).is_err());
        // Bad magic.
        let mut bad = e.clone();
        bad[5] ^= 1;
        assert!(decode_entry(&bad, true).unwrap_err().contains("magic"));
        // Body flipped: CRC mismatch only when checking.
        let mut bad = e.clone();
        bad[88] ^= 0xFF;
        assert!(decode_entry(&bad, true).unwrap_err().contains("CRC"));
        assert!(decode_entry(&bad, false).is_ok());
        // Declared size larger than the fields.
        let mut bad = e.clone();
        bad.push(0);
        let size = (bad.len() as i32).to_be_bytes();
        bad[..4].copy_from_slice(&size);
        assert!(decode_entry(&bad, true)
            .unwrap_err()
            .contains("declared size"));
        // Blank filler.
        let mut blank = vec![0u8; 16];
        blank[..4].copy_from_slice(&16i32.to_be_bytes());
        blank[4..8].copy_from_slice(&BLANK_MAGIC_CODE.to_be_bytes());
        assert!(decode_entry(&blank, true).unwrap_err().contains("blank"));
        // Two entries back to back.
        let mut two = e.clone();
        two.extend_from_slice(&e);
        assert_eq!(decode_entries(&two).expect("decode").len(), 2);
    }

    #[test]
    fn oversized_properties_are_refused() {
        let props = vec![b'a'; 40_000];
        let mut out = Vec::new();
        let err = encode_entry(
            &EntryFields {
                queue_id: 0,
                flag: 0,
                queue_offset: 0,
                commitlog_offset: 0,
                sys_flag: 0,
                born_timestamp: 0,
                born_host: v4([0, 0, 0, 0], 0),
                store_timestamp: 0,
                store_host: v4([0, 0, 0, 0], 0),
                reconsume_times: 0,
                prepared_transaction_offset: 0,
                body: b"",
                topic: "T",
                properties: &props,
            },
            &mut out,
        )
        .unwrap_err();
        assert_eq!(err, EncodeError::PropertiesTooLong(40_000));
        assert!(out.is_empty());
    }
}
