//! A deliberately tiny RocketMQ remoting client (JSON headers) used by the harness for things the crates.io
//! client does not expose or hides behind retries: readiness probes (GET_BROKER_CLUSTER_INFO), committed
//! consumer offsets (QUERY_CONSUMER_OFFSET), raw broker answers for error cases. It also records the exact
//! request and response bytes so a failing test can print them.
//!
//! Frame: `length:i32 | serType:u8 hdrLen:u24 | header | body`, length = 4 + hdrLen + bodyLen (big endian).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub mod code {
    pub const SEND_MESSAGE: i32 = 10;
    pub const QUERY_MESSAGE: i32 = 12;
    pub const QUERY_CONSUMER_OFFSET: i32 = 14;
    pub const GET_MAX_OFFSET: i32 = 30;
    pub const GET_CONSUMER_LIST_BY_GROUP: i32 = 38;
    pub const GET_ROUTEINFO_BY_TOPIC: i32 = 105;
    pub const GET_BROKER_CLUSTER_INFO: i32 = 106;
}

pub mod response {
    pub const SUCCESS: i32 = 0;
    pub const TOPIC_NOT_EXIST: i32 = 17;
    pub const QUERY_NOT_FOUND: i32 = 22;
}

/// One decoded response, with the raw bytes of the exchange kept for diagnostics.
#[derive(Clone)]
pub struct RawResponse {
    pub code: i32,
    pub opaque: i32,
    pub flag: i32,
    pub remark: Option<String>,
    pub ext_fields: BTreeMap<String, String>,
    pub body: Vec<u8>,
    pub serialize_type: u8,
    pub request_bytes: Vec<u8>,
    pub response_bytes: Vec<u8>,
}

impl RawResponse {
    pub fn ext(&self, key: &str) -> Option<&str> {
        self.ext_fields.get(key).map(String::as_str)
    }

    pub fn ext_i64(&self, key: &str) -> Result<i64> {
        let raw = self
            .ext(key)
            .ok_or_else(|| anyhow!("response has no extField `{key}`: {self:?}"))?;
        raw.parse::<i64>()
            .with_context(|| format!("extField `{key}`=`{raw}` is not an integer: {self:?}"))
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl fmt::Debug for RawResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawResponse")
            .field("code", &self.code)
            .field("opaque", &self.opaque)
            .field("flag", &self.flag)
            .field("remark", &self.remark)
            .field("ext_fields", &self.ext_fields)
            .field("serialize_type", &self.serialize_type)
            .field(
                "body",
                &String::from_utf8_lossy(&self.body[..self.body.len().min(2048)]),
            )
            .field("request_bytes", &hex_preview(&self.request_bytes))
            .field("response_bytes", &hex_preview(&self.response_bytes))
            .finish()
    }
}

pub fn hex_preview(bytes: &[u8]) -> String {
    let shown = &bytes[..bytes.len().min(512)];
    let mut out: String = shown.iter().map(|b| format!("{b:02x}")).collect();
    if bytes.len() > shown.len() {
        out.push_str(&format!("...(+{} bytes)", bytes.len() - shown.len()));
    }
    out
}

/// Encodes a JSON-header request frame.
pub fn encode_request(code: i32, opaque: i32, ext_fields: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let ext: serde_json::Map<String, serde_json::Value> = ext_fields
        .iter()
        .map(|(k, v)| {
            (
                (*k).to_string(),
                serde_json::Value::String((*v).to_string()),
            )
        })
        .collect();
    let header = serde_json::json!({
        "code": code,
        "language": "JAVA",
        "version": 479,
        "opaque": opaque,
        "flag": 0,
        "extFields": ext,
        "serializeTypeCurrentRPC": "JSON",
    });
    let header = serde_json::to_vec(&header).expect("JSON header always serializes");
    let length = 4 + header.len() + body.len();
    let mut frame = Vec::with_capacity(4 + length);
    frame.extend_from_slice(&(length as u32).to_be_bytes());
    frame.extend_from_slice(&(header.len() as u32 & 0x00FF_FFFF).to_be_bytes()); // type 0 = JSON
    frame.extend_from_slice(&header);
    frame.extend_from_slice(body);
    frame
}

fn decode_frame(frame: &[u8]) -> Result<RawResponse> {
    if frame.len() < 8 {
        bail!("frame shorter than 8 bytes: {}", hex_preview(frame));
    }
    let length = u32::from_be_bytes(frame[0..4].try_into()?) as usize;
    if length + 4 != frame.len() {
        bail!(
            "length field {length} does not match frame size {}",
            frame.len()
        );
    }
    let serialize_type = frame[4];
    let header_len = (u32::from_be_bytes(frame[4..8].try_into()?) & 0x00FF_FFFF) as usize;
    if 8 + header_len > frame.len() {
        bail!("header length {header_len} exceeds frame length {length}");
    }
    let header = &frame[8..8 + header_len];
    let body = frame[8 + header_len..].to_vec();
    let mut resp = match serialize_type {
        0 => decode_json_header(header)?,
        1 => decode_binary_header(header)?,
        other => bail!("unknown serialize type {other}"),
    };
    resp.serialize_type = serialize_type;
    resp.body = body;
    resp.response_bytes = frame.to_vec();
    Ok(resp)
}

fn decode_json_header(header: &[u8]) -> Result<RawResponse> {
    let value: serde_json::Value = serde_json::from_slice(header).with_context(|| {
        format!(
            "response JSON header does not parse: {}",
            String::from_utf8_lossy(header)
        )
    })?;
    let int = |k: &str| {
        value
            .get(k)
            .and_then(serde_json::Value::as_i64)
            .unwrap_or(0) as i32
    };
    let mut ext_fields = BTreeMap::new();
    if let Some(map) = value
        .get("extFields")
        .and_then(serde_json::Value::as_object)
    {
        for (k, v) in map {
            let v = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            ext_fields.insert(k.clone(), v);
        }
    }
    Ok(RawResponse {
        code: int("code"),
        opaque: int("opaque"),
        flag: int("flag"),
        remark: value
            .get("remark")
            .and_then(serde_json::Value::as_str)
            .map(str::to_string),
        ext_fields,
        body: Vec::new(),
        serialize_type: 0,
        request_bytes: Vec::new(),
        response_bytes: Vec::new(),
    })
}

fn decode_binary_header(h: &[u8]) -> Result<RawResponse> {
    let mut pos = 0usize;
    let mut take = |n: usize| -> Result<&[u8]> {
        let s = h
            .get(pos..pos + n)
            .ok_or_else(|| anyhow!("binary header truncated at {pos}"))?;
        pos += n;
        Ok(s)
    };
    let code = i16::from_be_bytes(take(2)?.try_into()?) as i32;
    let _language = take(1)?[0];
    let _version = i16::from_be_bytes(take(2)?.try_into()?);
    let opaque = i32::from_be_bytes(take(4)?.try_into()?);
    let flag = i32::from_be_bytes(take(4)?.try_into()?);
    let remark_len = i32::from_be_bytes(take(4)?.try_into()?) as usize;
    let remark = if remark_len > 0 {
        Some(String::from_utf8_lossy(take(remark_len)?).into_owned())
    } else {
        None
    };
    let ext_len = i32::from_be_bytes(take(4)?.try_into()?) as usize;
    let ext = take(ext_len)?.to_vec();
    let mut ext_fields = BTreeMap::new();
    let mut p = 0usize;
    while p < ext.len() {
        let kl = u16::from_be_bytes(
            ext.get(p..p + 2)
                .ok_or_else(|| anyhow!("ext truncated"))?
                .try_into()?,
        ) as usize;
        p += 2;
        let k =
            String::from_utf8_lossy(ext.get(p..p + kl).ok_or_else(|| anyhow!("ext truncated"))?)
                .into_owned();
        p += kl;
        let vl = u32::from_be_bytes(
            ext.get(p..p + 4)
                .ok_or_else(|| anyhow!("ext truncated"))?
                .try_into()?,
        ) as usize;
        p += 4;
        let v =
            String::from_utf8_lossy(ext.get(p..p + vl).ok_or_else(|| anyhow!("ext truncated"))?)
                .into_owned();
        p += vl;
        ext_fields.insert(k, v);
    }
    Ok(RawResponse {
        code,
        opaque,
        flag,
        remark,
        ext_fields,
        body: Vec::new(),
        serialize_type: 1,
        request_bytes: Vec::new(),
        response_bytes: Vec::new(),
    })
}

/// Sends one request on a fresh connection and waits (bounded) for the response with the same opaque.
pub async fn call(
    addr: &str,
    code: i32,
    ext_fields: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> Result<RawResponse> {
    let request = encode_request(code, 1, ext_fields, body);
    let fut = async {
        let mut stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connect {addr}"))?;
        stream.write_all(&request).await?;
        stream.flush().await?;
        loop {
            let mut len = [0u8; 4];
            stream.read_exact(&mut len).await.with_context(|| {
                format!("reading response length from {addr} (connection closed?)")
            })?;
            let length = u32::from_be_bytes(len) as usize;
            if length > 64 * 1024 * 1024 {
                bail!("response frame length {length} from {addr} is absurd");
            }
            let mut frame = Vec::with_capacity(4 + length);
            frame.extend_from_slice(&len);
            frame.resize(4 + length, 0);
            stream.read_exact(&mut frame[4..]).await?;
            let mut resp = decode_frame(&frame)?;
            // Skip server-initiated requests (flag bit 0 clear) and unrelated responses.
            if resp.flag & 1 == 1 && resp.opaque == 1 {
                resp.request_bytes = request.clone();
                return Ok(resp);
            }
        }
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| anyhow!("no response to request code {code} from {addr} within {timeout:?}"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_frame_layout() {
        let frame = encode_request(105, 7, &[("topic", "T")], b"xy");
        let length = u32::from_be_bytes(frame[0..4].try_into().unwrap()) as usize;
        assert_eq!(length + 4, frame.len());
        assert_eq!(frame[4], 0, "JSON serialize type");
        let header_len = (u32::from_be_bytes(frame[4..8].try_into().unwrap()) & 0xFF_FFFF) as usize;
        assert_eq!(&frame[8 + header_len..], b"xy");
        let header: serde_json::Value = serde_json::from_slice(&frame[8..8 + header_len]).unwrap();
        assert_eq!(header["code"], 105);
        assert_eq!(header["extFields"]["topic"], "T");
    }
}
