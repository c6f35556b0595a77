//! Frame codec: `length:i32 | serType:u8 hdrLen:u24 | header | body`, both header encodings.
//! OWNER: remoting helper.
//!
//! * `length` counts everything after itself (4 + header + body). Like Netty's
//!   `LengthFieldBasedFrameDecoder` in RocketMQ, the whole frame *including* the length int must
//!   fit in [`FRAME_MAX_LENGTH_BYTES`]; the same limit applies when encoding.
//! * Header type 0 is fastjson-compatible JSON, type 1 the compact ROCKETMQ binary header.
//! * Decoding never panics: every length is checked against the bytes actually present.
//! * The body of a decoded command is a zero-copy slice of the frame.

use std::fmt;
use std::fmt::Write as _;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;

use super::command::{ExtFields, LanguageCode, SerializeType};
use super::{RemotingCommand, RemotingError, FRAME_MAX_LENGTH_BYTES};

/// Size of the leading length int.
pub const LENGTH_FIELD_BYTES: usize = 4;
/// Size of the `serType:u8 | hdrLen:u24` int.
pub const HEADER_LENGTH_FIELD_BYTES: usize = 4;
/// Largest header length representable in 24 bits.
pub const HEADER_MAX_LENGTH_BYTES: usize = 0x00FF_FFFF;

const _: () = assert!(FRAME_MAX_LENGTH_BYTES <= i32::MAX as usize);
const _: () = assert!(
    FRAME_MAX_LENGTH_BYTES - LENGTH_FIELD_BYTES - HEADER_LENGTH_FIELD_BYTES
        <= HEADER_MAX_LENGTH_BYTES + 1
);

/// Encodes `cmd` as one complete frame (including the leading length) in `cmd.serialize_type`.
///
/// A command whose code/version do not fit the ROCKETMQ header's 16-bit fields (5.x POP codes
/// 2000xx) or whose ext field keys exceed 32767 bytes is written with a JSON header instead:
/// every RocketMQ peer decodes both, and truncating like Java does would corrupt it.
/// The body is copied into the returned frame; the connection writer avoids that copy by
/// using [`encode_header`] and writing the body separately.
pub fn encode(cmd: &RemotingCommand) -> Result<Bytes, RemotingError> {
    let mut frame = BytesMut::with_capacity(estimate_header_bytes(cmd) + cmd.body.len());
    encode_header_into(cmd, &mut frame)?;
    frame.extend_from_slice(&cmd.body);
    Ok(frame.freeze())
}

/// Encodes the frame prefix of `cmd`: length int, serialize type + header length int and the
/// header — everything but the body, which must be written right after it.
pub fn encode_header(cmd: &RemotingCommand) -> Result<BytesMut, RemotingError> {
    let mut buf = BytesMut::with_capacity(estimate_header_bytes(cmd));
    encode_header_into(cmd, &mut buf)?;
    Ok(buf)
}

/// Appends the frame prefix of `cmd` (see [`encode_header`]) to `buf`, which may already hold
/// other frames (a connection's write batch). On error `buf` is left as it was.
pub fn encode_header_into(cmd: &RemotingCommand, buf: &mut BytesMut) -> Result<(), RemotingError> {
    let start = buf.len();
    let result = append_header(cmd, buf, start);
    if result.is_err() {
        buf.truncate(start);
    }
    result
}

fn append_header(
    cmd: &RemotingCommand,
    buf: &mut BytesMut,
    start: usize,
) -> Result<(), RemotingError> {
    let body_len = cmd.body.len();
    if body_len > FRAME_MAX_LENGTH_BYTES {
        return Err(RemotingError::FrameTooLarge {
            length: body_len,
            max: FRAME_MAX_LENGTH_BYTES,
        });
    }
    buf.reserve(estimate_header_bytes(cmd));
    buf.put_u32(0); // length, patched below
    buf.put_u32(0); // serialize type + header length, patched below
    let serialize_type = match cmd.serialize_type {
        SerializeType::RocketMq if fits_rocketmq_header(cmd) => {
            write_rocketmq_header(cmd, buf)?;
            SerializeType::RocketMq
        }
        _ => {
            write_json_header(cmd, buf)?;
            SerializeType::Json
        }
    };
    let prefix_len = buf.len() - start;
    let header_len = prefix_len - LENGTH_FIELD_BYTES - HEADER_LENGTH_FIELD_BYTES;
    let frame_len = prefix_len + body_len;
    if frame_len > FRAME_MAX_LENGTH_BYTES {
        return Err(RemotingError::FrameTooLarge {
            length: frame_len,
            max: FRAME_MAX_LENGTH_BYTES,
        });
    }
    // Both follow from the frame limit checked above.
    assert!(header_len <= HEADER_MAX_LENGTH_BYTES);
    assert!(frame_len - LENGTH_FIELD_BYTES <= i32::MAX as usize);
    let length = (frame_len - LENGTH_FIELD_BYTES) as u32;
    let type_and_header_len = ((serialize_type as u32) << 24) | header_len as u32;
    buf[start..start + 4].copy_from_slice(&length.to_be_bytes());
    buf[start + 4..start + 8].copy_from_slice(&type_and_header_len.to_be_bytes());
    Ok(())
}

fn estimate_header_bytes(cmd: &RemotingCommand) -> usize {
    160 + estimate_ext_bytes(cmd)
}

fn estimate_ext_bytes(cmd: &RemotingCommand) -> usize {
    let remark = cmd.remark.as_ref().map_or(0, String::len);
    let ext: usize = cmd
        .ext_fields
        .iter()
        .map(|(k, v)| k.len() + v.len() + 8)
        .sum();
    remark + ext
}

fn fits_rocketmq_header(cmd: &RemotingCommand) -> bool {
    i16::try_from(cmd.code).is_ok()
        && i16::try_from(cmd.version).is_ok()
        && cmd.ext_fields.keys().all(|k| k.len() <= i16::MAX as usize)
}

/// Decodes one frame *without* its leading length int (what a length-field decoder yields).
pub fn decode(frame: Bytes) -> Result<RemotingCommand, RemotingError> {
    if frame.len() < HEADER_LENGTH_FIELD_BYTES {
        return Err(malformed(format!(
            "frame of {} bytes is shorter than the 4-byte header length field",
            frame.len()
        )));
    }
    if frame.len() + LENGTH_FIELD_BYTES > FRAME_MAX_LENGTH_BYTES {
        return Err(RemotingError::FrameTooLarge {
            length: frame.len() + LENGTH_FIELD_BYTES,
            max: FRAME_MAX_LENGTH_BYTES,
        });
    }
    let type_and_header_len = u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
    let serialize_type_byte = (type_and_header_len >> 24) as u8;
    let header_len = (type_and_header_len & HEADER_MAX_LENGTH_BYTES as u32) as usize;
    let header_end = HEADER_LENGTH_FIELD_BYTES + header_len;
    if header_end > frame.len() {
        return Err(malformed(format!(
            "header length {header_len} exceeds the {} bytes left in the frame",
            frame.len() - HEADER_LENGTH_FIELD_BYTES
        )));
    }
    let header = &frame[HEADER_LENGTH_FIELD_BYTES..header_end];
    let mut cmd = match serialize_type_byte {
        0 => decode_json_header(header)?,
        1 => decode_rocketmq_header(header)?,
        other => return Err(malformed(format!("unknown serialize type {other}"))),
    };
    cmd.body = frame.slice(header_end..);
    Ok(cmd)
}

/// Tries to split one complete frame off the front of `buf`: Ok(None) when more bytes are
/// needed; an error when the declared length is negative or over the frame limit.
/// The returned frame excludes the leading length int and shares `buf`'s allocation.
pub fn try_split_frame(buf: &mut BytesMut) -> Result<Option<Bytes>, RemotingError> {
    let Some(length) = peek_frame_length(buf)? else {
        return Ok(None);
    };
    if buf.len() < LENGTH_FIELD_BYTES + length {
        return Ok(None);
    }
    buf.advance(LENGTH_FIELD_BYTES);
    let frame = buf.split_to(length).freeze();
    assert_eq!(frame.len(), length);
    Ok(Some(frame))
}

/// The validated length (without the length int) of the frame at the front of `buf`, once its
/// length int has arrived. Lets a reader reserve room for a whole large frame at once.
pub fn peek_frame_length(buf: &[u8]) -> Result<Option<usize>, RemotingError> {
    if buf.len() < LENGTH_FIELD_BYTES {
        return Ok(None);
    }
    let length = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if length < 0 {
        return Err(malformed(format!("negative frame length {length}")));
    }
    let length = length as usize;
    if length + LENGTH_FIELD_BYTES > FRAME_MAX_LENGTH_BYTES {
        return Err(RemotingError::FrameTooLarge {
            length: length + LENGTH_FIELD_BYTES,
            max: FRAME_MAX_LENGTH_BYTES,
        });
    }
    if length < HEADER_LENGTH_FIELD_BYTES {
        return Err(malformed(format!(
            "frame length {length} is shorter than the 4-byte header length field"
        )));
    }
    Ok(Some(length))
}

fn malformed(reason: String) -> RemotingError {
    RemotingError::Malformed(reason)
}

// ---------------------------------------------------------------------------------------------
// ROCKETMQ binary header (type 1)
// ---------------------------------------------------------------------------------------------

fn write_rocketmq_header(cmd: &RemotingCommand, buf: &mut BytesMut) -> Result<(), RemotingError> {
    let code =
        i16::try_from(cmd.code).map_err(|_| malformed(format!("code {} exceeds i16", cmd.code)))?;
    let version = i16::try_from(cmd.version)
        .map_err(|_| malformed(format!("version {} exceeds i16", cmd.version)))?;
    buf.put_i16(code);
    buf.put_u8(cmd.language as u8);
    buf.put_i16(version);
    buf.put_i32(cmd.opaque);
    buf.put_i32(cmd.flag);
    match &cmd.remark {
        Some(remark) if !remark.is_empty() => {
            buf.put_i32(len_i32(remark.len(), "remark")?);
            buf.put_slice(remark.as_bytes());
        }
        _ => buf.put_i32(0),
    }
    let ext_len_pos = buf.len();
    buf.put_i32(0); // patched below
    for (key, value) in cmd.ext_fields.iter() {
        let key_len = i16::try_from(key.len())
            .map_err(|_| malformed(format!("ext field key of {} bytes exceeds i16", key.len())))?;
        buf.put_i16(key_len);
        buf.put_slice(key.as_bytes());
        buf.put_i32(len_i32(value.len(), key)?);
        buf.put_slice(value.as_bytes());
    }
    let ext_len = len_i32(buf.len() - ext_len_pos - 4, "ext fields")?;
    buf[ext_len_pos..ext_len_pos + 4].copy_from_slice(&ext_len.to_be_bytes());
    Ok(())
}

fn len_i32(len: usize, what: &str) -> Result<i32, RemotingError> {
    if len > FRAME_MAX_LENGTH_BYTES {
        return Err(RemotingError::FrameTooLarge {
            length: len,
            max: FRAME_MAX_LENGTH_BYTES,
        });
    }
    i32::try_from(len).map_err(|_| malformed(format!("{what} of {len} bytes exceeds i32")))
}

/// Bounds-checked big-endian reader over a header slice.
struct HeaderReader<'a> {
    bytes: &'a [u8],
}

impl<'a> HeaderReader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], RemotingError> {
        if self.bytes.len() < n {
            return Err(malformed(format!(
                "ROCKETMQ header truncated reading {what}: need {n} bytes, {} left",
                self.bytes.len()
            )));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }
    fn u8(&mut self, what: &str) -> Result<u8, RemotingError> {
        Ok(self.take(1, what)?[0])
    }
    fn i16(&mut self, what: &str) -> Result<i16, RemotingError> {
        let b = self.take(2, what)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }
    fn i32(&mut self, what: &str) -> Result<i32, RemotingError> {
        let b = self.take(4, what)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn len(&mut self, what: &str) -> Result<usize, RemotingError> {
        let len = self.i32(what)?;
        usize::try_from(len).map_err(|_| malformed(format!("negative {what} {len}")))
    }
    fn string(&mut self, len: usize, what: &str) -> Result<String, RemotingError> {
        Ok(utf8_lossy(self.take(len, what)?))
    }
    /// Like [`string`](Self::string), borrowed when the bytes are valid UTF-8.
    fn str(&mut self, len: usize, what: &str) -> Result<std::borrow::Cow<'a, str>, RemotingError> {
        Ok(String::from_utf8_lossy(self.take(len, what)?))
    }
}

/// Java decodes header strings with `new String(bytes, UTF_8)`, replacing invalid sequences;
/// do the same rather than rejecting the whole frame.
fn utf8_lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn decode_rocketmq_header(header: &[u8]) -> Result<RemotingCommand, RemotingError> {
    let mut r = HeaderReader { bytes: header };
    let code = r.i16("code")?;
    let language = LanguageCode::from_ordinal(i64::from(r.u8("language")?));
    let version = r.i16("version")?;
    let opaque = r.i32("opaque")?;
    let flag = r.i32("flag")?;
    let remark_len = r.len("remark length")?;
    let remark = if remark_len > 0 {
        Some(r.string(remark_len, "remark")?)
    } else {
        None
    };
    let ext_len = r.len("ext fields length")?;
    let mut ext = HeaderReader {
        bytes: r.take(ext_len, "ext fields")?,
    };
    // Keys and values are shorter than the block they are read from.
    let mut ext_fields = ExtFields::with_capacity(16, ext.bytes.len());
    while !ext.bytes.is_empty() {
        let key_len = ext.i16("ext field key length")?;
        let key_len = usize::try_from(key_len)
            .map_err(|_| malformed(format!("negative ext field key length {key_len}")))?;
        let key = ext.str(key_len, "ext field key")?;
        let value_len = ext.len("ext field value length")?;
        let value = ext.str(value_len, "ext field value")?;
        ext_fields.insert_str(&key, &value);
    }
    // Like Java, bytes after the ext fields block inside the header are ignored.
    Ok(RemotingCommand {
        code: i32::from(code),
        language,
        version: i32::from(version),
        opaque,
        flag,
        remark,
        ext_fields,
        body: Bytes::new(),
        serialize_type: SerializeType::RocketMq,
    })
}

// ---------------------------------------------------------------------------------------------
// JSON header (type 0)
// ---------------------------------------------------------------------------------------------

/// Writes the header exactly as fastjson does for Java's RemotingCommand: getters in
/// alphabetical order, `language` as the enum name, null remark/extFields omitted.
fn write_json_header(cmd: &RemotingCommand, buf: &mut BytesMut) -> Result<(), RemotingError> {
    write_fmt(buf, format_args!("{{\"code\":{}", cmd.code));
    if !cmd.ext_fields.is_empty() {
        buf.put_slice(b",\"extFields\":{");
        for (i, (key, value)) in cmd.ext_fields.iter().enumerate() {
            if i > 0 {
                buf.put_u8(b',');
            }
            write_json_string(buf, key)?;
            buf.put_u8(b':');
            write_json_string(buf, value)?;
        }
        buf.put_u8(b'}');
    }
    write_fmt(
        buf,
        format_args!(
            ",\"flag\":{},\"language\":\"{}\",\"opaque\":{}",
            cmd.flag,
            cmd.language.name(),
            cmd.opaque
        ),
    );
    if let Some(remark) = &cmd.remark {
        buf.put_slice(b",\"remark\":");
        write_json_string(buf, remark)?;
    }
    write_fmt(
        buf,
        format_args!(
            ",\"serializeTypeCurrentRPC\":\"JSON\",\"version\":{}}}",
            cmd.version
        ),
    );
    Ok(())
}

fn write_fmt(buf: &mut BytesMut, args: fmt::Arguments<'_>) {
    // BytesMut's fmt::Write grows the buffer and cannot fail.
    let _ = buf.write_fmt(args);
}

fn write_json_string(buf: &mut BytesMut, s: &str) -> Result<(), RemotingError> {
    // Header keys and values (topics, groups, numbers, msgIds) almost never need escaping:
    // copy them between quotes directly; serde_json's writer (same output) handles the rest.
    if !s.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
        buf.reserve(s.len() + 2);
        buf.put_u8(b'"');
        buf.put_slice(s.as_bytes());
        buf.put_u8(b'"');
        return Ok(());
    }
    serde_json::to_writer(buf.writer(), s)
        .map_err(|e| malformed(format!("cannot encode JSON string: {e}")))
}

fn decode_json_header(header: &[u8]) -> Result<RemotingCommand, RemotingError> {
    if let Some(cmd) = fast_json::decode(header) {
        return Ok(cmd);
    }
    decode_json_header_serde(header)
}

/// The lenient serde decode of a JSON header (every shape fastjson may produce).
fn decode_json_header_serde(header: &[u8]) -> Result<RemotingCommand, RemotingError> {
    let parsed: JsonHeader = serde_json::from_slice(header)
        .map_err(|e| malformed(format!("invalid JSON header: {e}")))?;
    Ok(RemotingCommand {
        code: parsed.code,
        language: parsed.language,
        version: parsed.version,
        opaque: parsed.opaque,
        flag: parsed.flag,
        remark: parsed.remark,
        ext_fields: parsed.ext_fields,
        body: Bytes::new(),
        serialize_type: SerializeType::Json,
    })
}

/// The JSON header, deserialized leniently the way fastjson reads it: numbers may come as
/// strings, `language` as a name (any case) or an ordinal, null for omitted, unknown keys ignored.
#[derive(Default)]
struct JsonHeader {
    code: i32,
    language: LanguageCode,
    version: i32,
    opaque: i32,
    flag: i32,
    remark: Option<String>,
    ext_fields: ExtFields,
}

enum JsonKey {
    Code,
    Language,
    Version,
    Opaque,
    Flag,
    Remark,
    ExtFields,
    Other,
}

impl<'de> Deserialize<'de> for JsonKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = JsonKey;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a header key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<JsonKey, E> {
                Ok(match v {
                    "code" => JsonKey::Code,
                    "language" => JsonKey::Language,
                    "version" => JsonKey::Version,
                    "opaque" => JsonKey::Opaque,
                    "flag" => JsonKey::Flag,
                    "remark" => JsonKey::Remark,
                    "extFields" => JsonKey::ExtFields,
                    _ => JsonKey::Other,
                })
            }
        }
        deserializer.deserialize_identifier(KeyVisitor)
    }
}

impl<'de> Deserialize<'de> for JsonHeader {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct HeaderVisitor;
        impl<'de> Visitor<'de> for HeaderVisitor {
            type Value = JsonHeader;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<JsonHeader, A::Error> {
                let mut h = JsonHeader::default();
                while let Some(key) = map.next_key::<JsonKey>()? {
                    match key {
                        JsonKey::Code => h.code = map.next_value::<LenientI32>()?.0,
                        JsonKey::Version => h.version = map.next_value::<LenientI32>()?.0,
                        JsonKey::Opaque => h.opaque = map.next_value::<LenientI32>()?.0,
                        JsonKey::Flag => h.flag = map.next_value::<LenientI32>()?.0,
                        JsonKey::Language => h.language = map.next_value::<LenientLanguage>()?.0,
                        JsonKey::Remark => h.remark = map.next_value::<LenientString>()?.0,
                        JsonKey::ExtFields => h.ext_fields = map.next_value::<LenientExt>()?.0,
                        JsonKey::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(h)
            }
        }
        deserializer.deserialize_map(HeaderVisitor)
    }
}

/// An i32 given as a JSON number, a numeric string, or null (0).
struct LenientI32(i32);

impl<'de> Deserialize<'de> for LenientI32 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = LenientI32;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a 32-bit integer or a string holding one")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<LenientI32, E> {
                i32::try_from(v)
                    .map(LenientI32)
                    .map_err(|_| E::custom(format!("integer {v} out of i32 range")))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<LenientI32, E> {
                i32::try_from(v)
                    .map(LenientI32)
                    .map_err(|_| E::custom(format!("integer {v} out of i32 range")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<LenientI32, E> {
                if v.fract() == 0.0 && v >= f64::from(i32::MIN) && v <= f64::from(i32::MAX) {
                    Ok(LenientI32(v as i32))
                } else {
                    Err(E::custom(format!("number {v} is not a 32-bit integer")))
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<LenientI32, E> {
                let t = v.trim();
                if t.is_empty() {
                    return Ok(LenientI32(0));
                }
                t.parse::<i32>()
                    .map(LenientI32)
                    .map_err(|_| E::custom(format!("`{v}` is not a 32-bit integer")))
            }
            fn visit_unit<E: de::Error>(self) -> Result<LenientI32, E> {
                Ok(LenientI32(0))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// A language given as its enum name (any case), an ordinal, or null.
struct LenientLanguage(LanguageCode);

impl<'de> Deserialize<'de> for LenientLanguage {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = LenientLanguage;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a language name or ordinal")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<LenientLanguage, E> {
                Ok(LenientLanguage(LanguageCode::from_ordinal(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<LenientLanguage, E> {
                Ok(LenientLanguage(LanguageCode::from_ordinal(
                    i64::try_from(v).unwrap_or(-1),
                )))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<LenientLanguage, E> {
                Ok(LenientLanguage(LanguageCode::from_name_lenient(v)))
            }
            fn visit_unit<E: de::Error>(self) -> Result<LenientLanguage, E> {
                Ok(LenientLanguage(LanguageCode::default()))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// A string given as a string, a number or a boolean; null is None.
struct LenientString(Option<String>);

impl<'de> Deserialize<'de> for LenientString {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = LenientString;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, number, boolean or null")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<LenientString, E> {
                Ok(LenientString(Some(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<LenientString, E> {
                Ok(LenientString(Some(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<LenientString, E> {
                Ok(LenientString(Some(v.to_string())))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<LenientString, E> {
                Ok(LenientString(Some(v.to_string())))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<LenientString, E> {
                Ok(LenientString(Some(v.to_string())))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<LenientString, E> {
                Ok(LenientString(Some(v.to_string())))
            }
            fn visit_unit<E: de::Error>(self) -> Result<LenientString, E> {
                Ok(LenientString(None))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// `extFields`: an object of scalar values (stringified), or null. Null values are dropped
/// (a Java `null` field reads as absent).
struct LenientExt(ExtFields);

impl<'de> Deserialize<'de> for LenientExt {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = LenientExt;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of strings or null")
            }
            fn visit_unit<E: de::Error>(self) -> Result<LenientExt, E> {
                Ok(LenientExt(ExtFields::new()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<LenientExt, A::Error> {
                let mut fields = ExtFields::new();
                while let Some(key) = map.next_key::<String>()? {
                    if let Some(value) = map.next_value::<LenientString>()?.0 {
                        fields.insert_str(&key, &value);
                    }
                }
                Ok(LenientExt(fields))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// The JSON header as every client writes it, decoded without serde: a flat object of integer
/// and string fields and an `extFields` object of strings. This was a quarter of the
/// broker's instructions per sent message (serde_json's generic visitor path). Anything outside
/// that shape (floats, numeric strings, nested values, malformed input) returns None
/// and takes the lenient serde path, so results and error messages are the same either way.
mod fast_json {
    use std::borrow::Cow;

    use bytes::Bytes;

    use super::super::command::{ExtFields, LanguageCode, SerializeType};
    use super::RemotingCommand;

    struct Cursor<'a> {
        text: &'a str,
        pos: usize,
    }

    impl<'a> Cursor<'a> {
        fn ws(&mut self) {
            let b = self.text.as_bytes();
            while self.pos < b.len() && matches!(b[self.pos], b' ' | b'\t' | b'\n' | b'\r') {
                self.pos += 1;
            }
        }
        fn peek(&mut self) -> Option<u8> {
            self.ws();
            self.text.as_bytes().get(self.pos).copied()
        }
        fn eat(&mut self, c: u8) -> Option<()> {
            (self.peek()? == c).then(|| self.pos += 1)
        }
        /// A JSON string; escapes decoded (the properties header value is full of \u0001
        /// and \u0002). Control characters, bad escapes and lone surrogates give None (the
        /// serde path, which reports them).
        fn string(&mut self) -> Option<Cow<'a, str>> {
            self.eat(b'"')?;
            let start = self.pos;
            let b = self.text.as_bytes();
            loop {
                match *b.get(self.pos)? {
                    b'"' => {
                        // `start` and `pos` sit next to ASCII bytes: char boundaries.
                        let s = &self.text[start..self.pos];
                        self.pos += 1;
                        return Some(Cow::Borrowed(s));
                    }
                    b'\\' => break,
                    c if c < 0x20 => return None,
                    _ => self.pos += 1,
                }
            }
            let mut out = String::with_capacity(self.pos - start + 16);
            out.push_str(&self.text[start..self.pos]);
            loop {
                let run = self.pos;
                loop {
                    match *b.get(self.pos)? {
                        b'"' | b'\\' => break,
                        c if c < 0x20 => return None,
                        _ => self.pos += 1,
                    }
                }
                out.push_str(&self.text[run..self.pos]);
                if b[self.pos] == b'"' {
                    self.pos += 1;
                    return Some(Cow::Owned(out));
                }
                self.pos += 1; // the backslash
                let esc = *b.get(self.pos)?;
                self.pos += 1;
                match esc {
                    b'"' => out.push('"'),
                    b'\\' => out.push('\\'),
                    b'/' => out.push('/'),
                    b'b' => out.push('\u{8}'),
                    b'f' => out.push('\u{c}'),
                    b'n' => out.push('\n'),
                    b'r' => out.push('\r'),
                    b't' => out.push('\t'),
                    b'u' => {
                        let hi = self.hex4()?;
                        let code = if (0xD800..0xDC00).contains(&hi) {
                            if b.get(self.pos..self.pos + 2)? != b"\\u" {
                                return None;
                            }
                            self.pos += 2;
                            let lo = self.hex4()?;
                            if !(0xDC00..0xE000).contains(&lo) {
                                return None;
                            }
                            0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                        } else {
                            hi
                        };
                        out.push(char::from_u32(code)?);
                    }
                    _ => return None,
                }
            }
        }
        fn hex4(&mut self) -> Option<u32> {
            let digits = self.text.get(self.pos..self.pos + 4)?;
            if !digits.bytes().all(|d| d.is_ascii_hexdigit()) {
                return None;
            }
            self.pos += 4;
            u32::from_str_radix(digits, 16).ok()
        }
        /// A JSON integer that fits i32 (no fraction, exponent or leading zero).
        fn int(&mut self) -> Option<i32> {
            self.ws();
            let b = self.text.as_bytes();
            let start = self.pos;
            if b.get(self.pos) == Some(&b'-') {
                self.pos += 1;
            }
            let digits = self.pos;
            while b.get(self.pos).is_some_and(u8::is_ascii_digit) {
                self.pos += 1;
            }
            let n = self.pos - digits;
            if n == 0 || (n > 1 && b[digits] == b'0') {
                return None;
            }
            if matches!(b.get(self.pos), Some(b'.' | b'e' | b'E')) {
                return None;
            }
            self.text[start..self.pos].parse().ok()
        }
        fn literal(&mut self, word: &str) -> Option<()> {
            self.ws();
            self.text[self.pos..]
                .starts_with(word)
                .then(|| self.pos += word.len())
        }
        /// Skips a scalar of an unknown key (plain string, integer, true, false, null).
        fn skip_scalar(&mut self) -> Option<()> {
            match self.peek()? {
                b'"' => self.string().map(|_| ()),
                b't' => self.literal("true"),
                b'f' => self.literal("false"),
                b'n' => self.literal("null"),
                _ => self.int().map(|_| ()),
            }
        }
        fn ext_fields(&mut self) -> Option<ExtFields> {
            // Keys and values are at most the header's text.
            let mut fields = ExtFields::with_capacity(16, self.text.len() - self.pos);
            if self.peek()? == b'n' {
                self.literal("null")?;
                return Some(fields);
            }
            self.eat(b'{')?;
            if self.eat(b'}').is_some() {
                return Some(fields);
            }
            loop {
                let key = self.string()?;
                self.eat(b':')?;
                if self.peek()? == b'n' {
                    // A null value reads as absent: skipped, like the serde path does (an
                    // earlier value of the same key stays).
                    self.literal("null")?;
                } else {
                    let value = self.string()?;
                    fields.insert_str(&key, &value);
                }
                match self.peek()? {
                    b',' => self.pos += 1,
                    b'}' => {
                        self.pos += 1;
                        return Some(fields);
                    }
                    _ => return None,
                }
            }
        }
    }

    pub(super) fn decode(header: &[u8]) -> Option<RemotingCommand> {
        let text = std::str::from_utf8(header).ok()?;
        let mut c = Cursor { text, pos: 0 };
        let mut cmd = RemotingCommand {
            code: 0,
            language: LanguageCode::default(),
            version: 0,
            opaque: 0,
            flag: 0,
            remark: None,
            ext_fields: ExtFields::new(),
            body: Bytes::new(),
            serialize_type: SerializeType::Json,
        };
        c.eat(b'{')?;
        if c.eat(b'}').is_none() {
            loop {
                let key = c.string()?;
                c.eat(b':')?;
                match &*key {
                    "code" => cmd.code = c.int()?,
                    "version" => cmd.version = c.int()?,
                    "opaque" => cmd.opaque = c.int()?,
                    "flag" => cmd.flag = c.int()?,
                    "language" => cmd.language = LanguageCode::from_name_lenient(&c.string()?),
                    "remark" => {
                        cmd.remark = if c.peek()? == b'n' {
                            c.literal("null")?;
                            None
                        } else {
                            Some(c.string()?.into_owned())
                        }
                    }
                    "extFields" => cmd.ext_fields = c.ext_fields()?,
                    _ => c.skip_scalar()?,
                }
                match c.peek()? {
                    b',' => c.pos += 1,
                    b'}' => {
                        c.pos += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        c.ws();
        (c.pos == text.len()).then_some(cmd)
    }
}

#[cfg(test)]
#[path = "codec_test.rs"]
mod tests;
