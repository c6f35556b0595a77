//! Producer: sync send with retries over the route's writable queues, oneway send, batch send,
//! and an explicit per-send outcome for the simulation oracle.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::{BufMut, Bytes, BytesMut};

use super::body::{mq, writable_queues, MessageQueue};
use super::mq_client::{header_i64, MqClient};
use super::ClientError;
use crate::message::properties::{self, Properties};
use crate::message::{encode_properties, sysflag};
use crate::protocol::topic::AUTO_CREATE_TOPIC_KEY_TOPIC;
use crate::remoting::{request_code, response_code, RemotingCommand};
use crate::rt;

/// A message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub topic: String,
    pub body: Bytes,
    pub flag: i32,
    pub properties: Properties,
}

impl Message {
    pub fn new(topic: &str, body: impl Into<Bytes>) -> Self {
        let mut properties = Properties::new();
        // Java's Message defaults waitStoreMsgOK to true.
        properties.insert(properties::WAIT.to_string(), "true".to_string());
        Message {
            topic: topic.to_string(),
            body: body.into(),
            flag: 0,
            properties,
        }
    }

    pub fn with_tags(mut self, tags: &str) -> Self {
        if !tags.is_empty() {
            self.properties
                .insert(properties::TAGS.to_string(), tags.to_string());
        }
        self
    }

    /// Keys, space separated inside the KEYS property.
    pub fn with_keys<S: AsRef<str>>(mut self, keys: &[S]) -> Self {
        let joined = keys
            .iter()
            .map(|k| k.as_ref().trim())
            .filter(|k| !k.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        if !joined.is_empty() {
            self.properties.insert(properties::KEYS.to_string(), joined);
        }
        self
    }

    pub fn with_property(mut self, key: &str, value: &str) -> Self {
        self.properties.insert(key.to_string(), value.to_string());
        self
    }

    pub fn with_wait_store_msg_ok(mut self, wait: bool) -> Self {
        self.properties
            .insert(properties::WAIT.to_string(), wait.to_string());
        self
    }

    pub fn with_delay_level(mut self, level: i32) -> Self {
        self.properties
            .insert(properties::DELAY.to_string(), level.to_string());
        self
    }

    pub fn tags(&self) -> Option<&str> {
        self.properties.get(properties::TAGS).map(String::as_str)
    }

    pub fn uniq_key(&self) -> Option<&str> {
        self.properties
            .get(properties::UNIQ_KEY)
            .map(String::as_str)
    }
}

/// Java `SendStatus`: every variant means the broker stored the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendStatus {
    SendOk,
    FlushDiskTimeout,
    FlushSlaveTimeout,
    SlaveNotAvailable,
}

impl SendStatus {
    /// The status of a send response code; None for codes that mean "not sent".
    pub fn from_code(code: i32) -> Option<SendStatus> {
        match code {
            response_code::SUCCESS => Some(SendStatus::SendOk),
            response_code::FLUSH_DISK_TIMEOUT => Some(SendStatus::FlushDiskTimeout),
            response_code::FLUSH_SLAVE_TIMEOUT => Some(SendStatus::FlushSlaveTimeout),
            response_code::SLAVE_NOT_AVAILABLE => Some(SendStatus::SlaveNotAvailable),
            _ => None,
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            SendStatus::SendOk => "SEND_OK",
            SendStatus::FlushDiskTimeout => "FLUSH_DISK_TIMEOUT",
            SendStatus::FlushSlaveTimeout => "FLUSH_SLAVE_TIMEOUT",
            SendStatus::SlaveNotAvailable => "SLAVE_NOT_AVAILABLE",
        }
    }
}

impl std::fmt::Display for SendStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendResult {
    pub status: SendStatus,
    /// UNIQ_KEY (client msgId); comma-joined for a batch.
    pub msg_id: String,
    /// Offset msgId from the broker (store host + CommitLog offset); comma-joined for a batch.
    pub offset_msg_id: String,
    pub queue: MessageQueue,
    /// Queue offset of the (first) message.
    pub queue_offset: i64,
    /// Broker address that stored it.
    pub broker_addr: String,
}

/// What the simulation oracle needs to know about one send.
#[derive(Debug)]
pub enum SendOutcome {
    /// A broker answered with a "sent" status: the message is stored (and must not be lost if
    /// the status is SEND_OK with synchronous flush/replication).
    Acknowledged(SendResult),
    /// Every attempt got an answer (or no connection at all), none stored: the message is not
    /// in the system. `code` is the last broker response code, if any broker answered.
    Failed {
        code: Option<i32>,
        error: ClientError,
    },
    /// At least one attempt timed out or lost its connection after sending, and no attempt
    /// succeeded: the message may or may not be stored.
    Unknown { error: ClientError },
}

impl SendOutcome {
    pub fn result(&self) -> Option<&SendResult> {
        match self {
            SendOutcome::Acknowledged(r) => Some(r),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ProducerConfig {
    pub group: String,
    /// Extra attempts after the first (Java `retryTimesWhenSendFailed`, default 2).
    pub retry_times_when_send_failed: u32,
    pub send_timeout_ms: u64,
    /// Queue count asked for when the broker auto-creates the topic (header `d`).
    pub default_topic_queue_nums: i32,
    /// Bodies longer than this are zlib-compressed (Java `compressMsgBodyOverHowmuch`).
    pub compress_over_bytes: usize,
    /// Java `maxMessageSize` (4 MiB): larger bodies are rejected before sending.
    pub max_message_size_bytes: usize,
}

impl ProducerConfig {
    pub fn new(group: &str) -> Self {
        ProducerConfig {
            group: group.to_string(),
            retry_times_when_send_failed: 2,
            send_timeout_ms: 3_000,
            default_topic_queue_nums: 4,
            compress_over_bytes: 4 * 1024,
            max_message_size_bytes: 4 * 1024 * 1024,
        }
    }
}

/// Response codes after which the Java producer tries another broker/queue.
pub fn is_retryable_send_code(code: i32) -> bool {
    matches!(
        code,
        response_code::TOPIC_NOT_EXIST
            | response_code::SERVICE_NOT_AVAILABLE
            | response_code::SYSTEM_ERROR
            | response_code::SYSTEM_BUSY
            | response_code::NO_PERMISSION
            | response_code::NOT_LEADER_FOR_QUEUE
            | response_code::GO_AWAY
    )
}

pub struct Producer {
    client: MqClient,
    config: ProducerConfig,
    /// Round-robin position over the writable queues (Java `sendWhichQueue`).
    next_queue: AtomicUsize,
}

/// The `SEND_MESSAGE_V2` request for one message (one-letter header keys, §2.2).
#[allow(clippy::too_many_arguments)]
pub fn build_send_request(
    producer_group: &str,
    queue: &MessageQueue,
    default_topic_queue_nums: i32,
    sys_flag: i32,
    born_timestamp_ms: i64,
    flag: i32,
    properties: &str,
    batch: bool,
    body: Bytes,
) -> RemotingCommand {
    let code = if batch {
        request_code::SEND_BATCH_MESSAGE
    } else {
        request_code::SEND_MESSAGE_V2
    };
    RemotingCommand::request(code)
        .with_ext("a", producer_group)
        .with_ext("b", &queue.topic)
        .with_ext("c", AUTO_CREATE_TOPIC_KEY_TOPIC)
        .with_ext("d", default_topic_queue_nums)
        .with_ext("e", queue.queue_id)
        .with_ext("f", sys_flag)
        .with_ext("g", born_timestamp_ms)
        .with_ext("h", flag)
        .with_ext("i", properties)
        .with_ext("j", 0)
        .with_ext("k", false)
        .with_ext("m", batch)
        .with_ext("n", &queue.broker_name)
        .with_body(body)
}

/// SEND_BATCH_MESSAGE body: per message `totalSize | magic(0) | bodyCRC(0) | flag | bodyLen |
/// body | propsLen:i16 | props` (§2.2). Errors if a property string exceeds i16.
pub fn encode_batch_body(messages: &[(i32, Bytes, String)]) -> Result<Bytes, ClientError> {
    let mut out = BytesMut::new();
    for (flag, body, props) in messages {
        let props_len = i16::try_from(props.len()).map_err(|_| {
            ClientError::InvalidArgument(format!(
                "properties of {} bytes exceed the 32767 byte limit",
                props.len()
            ))
        })?;
        let total_size = 4 + 4 + 4 + 4 + 4 + body.len() + 2 + props.len();
        let total_size = i32::try_from(total_size)
            .map_err(|_| ClientError::InvalidArgument("batch message too large".to_string()))?;
        let start = out.len();
        out.put_i32(total_size);
        out.put_i32(0); // magic: the broker ignores it
        out.put_i32(0); // body CRC: the broker recomputes it
        out.put_i32(*flag);
        out.put_i32(body.len() as i32);
        out.put_slice(body);
        out.put_i16(props_len);
        out.put_slice(props.as_bytes());
        assert_eq!(out.len() - start, total_size as usize);
    }
    Ok(out.freeze())
}

/// Inverse of [`encode_batch_body`] (used by tests and the simulation's fake brokers).
pub fn decode_batch_body(mut buf: &[u8]) -> Result<Vec<(i32, Bytes, String)>, String> {
    use bytes::Buf;
    let mut out = Vec::new();
    while buf.has_remaining() {
        if buf.remaining() < 20 {
            return Err(format!(
                "truncated batch entry header ({} bytes)",
                buf.remaining()
            ));
        }
        let total = buf.get_i32();
        let _magic = buf.get_i32();
        let _crc = buf.get_i32();
        let flag = buf.get_i32();
        let body_len = buf.get_i32();
        if body_len < 0 || buf.remaining() < body_len as usize + 2 {
            return Err(format!("bad body length {body_len}"));
        }
        let body = Bytes::copy_from_slice(&buf[..body_len as usize]);
        buf.advance(body_len as usize);
        let props_len = buf.get_i16();
        if props_len < 0 || buf.remaining() < props_len as usize {
            return Err(format!("bad properties length {props_len}"));
        }
        let props =
            String::from_utf8(buf[..props_len as usize].to_vec()).map_err(|e| e.to_string())?;
        buf.advance(props_len as usize);
        if total as usize != 22 + body_len as usize + props_len as usize {
            return Err(format!("totalSize {total} disagrees with the lengths"));
        }
        out.push((flag, body, props));
    }
    Ok(out)
}

fn zlib_compress(body: &[u8]) -> Option<Vec<u8>> {
    let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(5));
    enc.write_all(body).ok()?;
    enc.finish().ok()
}

impl Producer {
    pub fn new(client: MqClient, config: ProducerConfig) -> Self {
        // Start the round robin at a random queue so producers spread out (Java does the same).
        let start = rt::random_below(1 << 16) as usize;
        Producer {
            client,
            config,
            next_queue: AtomicUsize::new(start),
        }
    }

    pub fn client(&self) -> &MqClient {
        &self.client
    }

    pub fn config(&self) -> &ProducerConfig {
        &self.config
    }

    fn validate(&self, msg: &Message) -> Result<(), ClientError> {
        if msg.topic.is_empty() || msg.topic.len() > 127 {
            return Err(ClientError::InvalidArgument(format!(
                "topic name `{}` must be 1..=127 characters",
                msg.topic
            )));
        }
        if msg.body.is_empty() {
            return Err(ClientError::InvalidArgument("message body is empty".into()));
        }
        if msg.body.len() > self.config.max_message_size_bytes {
            return Err(ClientError::InvalidArgument(format!(
                "message body of {} bytes exceeds the {} byte limit",
                msg.body.len(),
                self.config.max_message_size_bytes
            )));
        }
        Ok(())
    }

    /// Adds a UNIQ_KEY if the message has none (so retries keep the same id).
    fn ensure_uniq_key(&self, msg: &mut Message) {
        if msg.uniq_key().is_none() {
            msg.properties.insert(
                properties::UNIQ_KEY.to_string(),
                self.client.next_uniq_key(),
            );
        }
    }

    /// Picks the next queue, avoiding `avoid_broker` when another broker has one.
    fn select_queue(
        queues: &[MessageQueue],
        counter: usize,
        avoid_broker: Option<&str>,
    ) -> MessageQueue {
        assert!(!queues.is_empty());
        if let Some(avoid) = avoid_broker {
            for i in 0..queues.len() {
                let q = &queues[(counter + i) % queues.len()];
                if q.broker_name != avoid {
                    return q.clone();
                }
            }
        }
        queues[counter % queues.len()].clone()
    }

    /// Sends one message synchronously; Err when no attempt was acknowledged.
    pub async fn send(&self, msg: Message) -> Result<SendResult, ClientError> {
        match self.send_outcome(msg).await {
            SendOutcome::Acknowledged(r) => Ok(r),
            SendOutcome::Failed { error, .. } | SendOutcome::Unknown { error } => Err(error),
        }
    }

    /// Sends one message, retrying on other queues/brokers, and classifies the outcome.
    pub async fn send_outcome(&self, mut msg: Message) -> SendOutcome {
        if let Err(error) = self.validate(&msg) {
            return SendOutcome::Failed { code: None, error };
        }
        self.ensure_uniq_key(&mut msg);
        self.send_with_retries(msg, None).await
    }

    /// Exactly one SEND_MESSAGE_V2 attempt to `queue`, no retry: the per-attempt outcome a
    /// simulation oracle records (Acknowledged / Failed with the broker's code / Unknown).
    pub async fn send_attempt(&self, mut msg: Message, queue: &MessageQueue) -> SendOutcome {
        if let Err(error) = self.validate(&msg) {
            return SendOutcome::Failed { code: None, error };
        }
        self.ensure_uniq_key(&mut msg);
        let addr = match self
            .client
            .master_addr_of(&msg.topic, &queue.broker_name)
            .await
        {
            Ok(a) => a,
            Err(error) => return SendOutcome::Failed { code: None, error },
        };
        let (sys_flag, body) = self.encode_body(&msg.body);
        let request = build_send_request(
            &self.config.group,
            queue,
            self.config.default_topic_queue_nums,
            sys_flag,
            rt::now_ms(),
            msg.flag,
            &encode_properties(&msg.properties),
            false,
            body,
        );
        let op = format!("SEND_MESSAGE_V2 {}", msg.topic);
        let uniq_key = msg.uniq_key().unwrap_or_default().to_string();
        match self
            .client
            .invoke_broker_raw(&addr, &op, request, self.config.send_timeout_ms)
            .await
        {
            Ok(response) => match parse_send_response(&addr, &op, queue, &uniq_key, &response) {
                Ok(result) => SendOutcome::Acknowledged(result),
                // SUCCESS with unreadable headers: stored, but we cannot say where.
                Err(error) if response.code == response_code::SUCCESS => {
                    SendOutcome::Unknown { error }
                }
                Err(error) => SendOutcome::Failed {
                    code: Some(response.code),
                    error,
                },
            },
            Err(error) if error.is_outcome_unknown() => SendOutcome::Unknown { error },
            Err(error) => SendOutcome::Failed { code: None, error },
        }
    }

    /// Sends to one given queue (no queue selection; retries only on the same queue).
    pub async fn send_to_queue(
        &self,
        mut msg: Message,
        queue: &MessageQueue,
    ) -> Result<SendResult, ClientError> {
        self.validate(&msg)?;
        self.ensure_uniq_key(&mut msg);
        match self.send_with_retries(msg, Some(queue.clone())).await {
            SendOutcome::Acknowledged(r) => Ok(r),
            SendOutcome::Failed { error, .. } | SendOutcome::Unknown { error } => Err(error),
        }
    }

    async fn send_with_retries(
        &self,
        msg: Message,
        fixed_queue: Option<MessageQueue>,
    ) -> SendOutcome {
        let (sys_flag, body) = self.encode_body(&msg.body);
        let props = encode_properties(&msg.properties);
        let uniq_key = msg.uniq_key().unwrap_or_default().to_string();
        let attempts = 1 + self.config.retry_times_when_send_failed;
        let mut maybe_stored = false;
        let mut last_code = None;
        let mut last_error = None;
        let mut last_broker: Option<String> = None;
        for attempt in 0..attempts {
            let queue = match &fixed_queue {
                Some(q) => q.clone(),
                None => match self.client.topic_route(&msg.topic).await {
                    Ok(route) => {
                        let queues = writable_queues(&msg.topic, &route);
                        if queues.is_empty() {
                            last_error = Some(ClientError::NoRoute {
                                topic: msg.topic.clone(),
                                detail: "no writable queue on any master".to_string(),
                            });
                            self.client.invalidate_route(&msg.topic);
                            continue;
                        }
                        let counter = self.next_queue.fetch_add(1, Ordering::Relaxed);
                        Self::select_queue(&queues, counter, last_broker.as_deref())
                    }
                    Err(e) => {
                        // No route: nothing was sent, and another try only helps for
                        // transport errors to the name servers.
                        let retry = e.is_transport();
                        last_error = Some(e);
                        if retry {
                            continue;
                        }
                        break;
                    }
                },
            };
            let addr = match self
                .client
                .master_addr_of(&msg.topic, &queue.broker_name)
                .await
            {
                Ok(a) => a,
                Err(e) => {
                    last_error = Some(e);
                    continue;
                }
            };
            let request = build_send_request(
                &self.config.group,
                &queue,
                self.config.default_topic_queue_nums,
                sys_flag,
                rt::now_ms(),
                msg.flag,
                &props,
                false,
                body.clone(),
            );
            let op = format!("SEND_MESSAGE_V2 {}", msg.topic);
            match self
                .client
                .invoke_broker_raw(&addr, &op, request, self.config.send_timeout_ms)
                .await
            {
                Ok(response) => match parse_send_response(&addr, &op, &queue, &uniq_key, &response)
                {
                    Ok(result) => return SendOutcome::Acknowledged(result),
                    Err(e) => {
                        let code = response.code;
                        last_code = Some(code);
                        last_broker = Some(queue.broker_name.clone());
                        if code == response_code::SUCCESS {
                            // Stored, but the answer was unreadable.
                            maybe_stored = true;
                            last_error = Some(e);
                            break;
                        }
                        last_error = Some(e);
                        if !is_retryable_send_code(code) {
                            break;
                        }
                        if code == response_code::TOPIC_NOT_EXIST
                            || code == response_code::NO_PERMISSION
                        {
                            self.client.invalidate_route(&msg.topic);
                        }
                    }
                },
                Err(e) => {
                    if e.is_outcome_unknown() {
                        maybe_stored = true;
                    }
                    tracing::debug!(attempt, broker = %addr, error = %e, "send attempt failed");
                    last_broker = Some(queue.broker_name.clone());
                    last_error = Some(e);
                }
            }
        }
        let error = last_error.unwrap_or_else(|| ClientError::NoRoute {
            topic: msg.topic.clone(),
            detail: "no send attempt was made".to_string(),
        });
        if maybe_stored {
            SendOutcome::Unknown { error }
        } else {
            SendOutcome::Failed {
                code: last_code,
                error,
            }
        }
    }

    fn encode_body(&self, body: &Bytes) -> (i32, Bytes) {
        if body.len() > self.config.compress_over_bytes {
            if let Some(compressed) = zlib_compress(body) {
                return (sysflag::COMPRESSED, Bytes::from(compressed));
            }
        }
        (0, body.clone())
    }

    /// Sends without waiting for an answer, to the next queue of the round robin.
    pub async fn send_oneway(&self, mut msg: Message) -> Result<(), ClientError> {
        self.validate(&msg)?;
        self.ensure_uniq_key(&mut msg);
        let route = self.client.topic_route(&msg.topic).await?;
        let queues = writable_queues(&msg.topic, &route);
        if queues.is_empty() {
            return Err(ClientError::NoRoute {
                topic: msg.topic.clone(),
                detail: "no writable queue on any master".to_string(),
            });
        }
        let counter = self.next_queue.fetch_add(1, Ordering::Relaxed);
        let queue = Self::select_queue(&queues, counter, None);
        let addr = self
            .client
            .master_addr_of(&msg.topic, &queue.broker_name)
            .await?;
        let (sys_flag, body) = self.encode_body(&msg.body);
        let mut request = build_send_request(
            &self.config.group,
            &queue,
            self.config.default_topic_queue_nums,
            sys_flag,
            rt::now_ms(),
            msg.flag,
            &encode_properties(&msg.properties),
            false,
            body,
        );
        request.mark_oneway();
        self.client
            .invoke_broker_oneway(
                &addr,
                &format!("SEND_MESSAGE_V2(oneway) {}", msg.topic),
                request,
            )
            .await
    }

    /// Sends messages of one topic as one SEND_BATCH_MESSAGE (stored in one queue).
    pub async fn send_batch(&self, msgs: Vec<Message>) -> Result<SendResult, ClientError> {
        match self.send_batch_outcome(msgs).await {
            SendOutcome::Acknowledged(r) => Ok(r),
            SendOutcome::Failed { error, .. } | SendOutcome::Unknown { error } => Err(error),
        }
    }

    pub async fn send_batch_outcome(&self, mut msgs: Vec<Message>) -> SendOutcome {
        let Some(first) = msgs.first() else {
            return SendOutcome::Failed {
                code: None,
                error: ClientError::InvalidArgument("empty batch".into()),
            };
        };
        let topic = first.topic.clone();
        for m in &mut msgs {
            if m.topic != topic {
                return SendOutcome::Failed {
                    code: None,
                    error: ClientError::InvalidArgument("a batch must have one topic".into()),
                };
            }
            if m.properties.contains_key(properties::DELAY) {
                return SendOutcome::Failed {
                    code: None,
                    error: ClientError::InvalidArgument("batch messages cannot be delayed".into()),
                };
            }
            if let Err(error) = self.validate(m) {
                return SendOutcome::Failed { code: None, error };
            }
            self.ensure_uniq_key(m);
        }
        let entries: Vec<(i32, Bytes, String)> = msgs
            .iter()
            .map(|m| (m.flag, m.body.clone(), encode_properties(&m.properties)))
            .collect();
        let body = match encode_batch_body(&entries) {
            Ok(b) => b,
            Err(error) => return SendOutcome::Failed { code: None, error },
        };
        let uniq_keys: Vec<&str> = msgs.iter().filter_map(|m| m.uniq_key()).collect();
        let batch = Message {
            topic: topic.clone(),
            body,
            flag: 0,
            properties: [(properties::WAIT.to_string(), "true".to_string())]
                .into_iter()
                .collect(),
        }
        .with_property(properties::UNIQ_KEY, &uniq_keys.join(","));
        self.send_batch_with_retries(batch).await
    }

    async fn send_batch_with_retries(&self, batch: Message) -> SendOutcome {
        // The UNIQ_KEY property on the outer batch is only a carrier for the result's msg_id;
        // the broker takes each message's own UNIQ_KEY from the body.
        let msg_ids = batch.uniq_key().unwrap_or_default().to_string();
        let mut props = batch.properties.clone();
        props.remove(properties::UNIQ_KEY);
        let props = encode_properties(&props);
        let attempts = 1 + self.config.retry_times_when_send_failed;
        let mut maybe_stored = false;
        let mut last_code = None;
        let mut last_error = None;
        let mut last_broker: Option<String> = None;
        for _ in 0..attempts {
            let route = match self.client.topic_route(&batch.topic).await {
                Ok(r) => r,
                Err(e) => {
                    let retry = e.is_transport();
                    last_error = Some(e);
                    if retry {
                        continue;
                    }
                    break;
                }
            };
            let queues = writable_queues(&batch.topic, &route);
            if queues.is_empty() {
                last_error = Some(ClientError::NoRoute {
                    topic: batch.topic.clone(),
                    detail: "no writable queue on any master".to_string(),
                });
                break;
            }
            let counter = self.next_queue.fetch_add(1, Ordering::Relaxed);
            let queue = Self::select_queue(&queues, counter, last_broker.as_deref());
            let addr = match self
                .client
                .master_addr_of(&batch.topic, &queue.broker_name)
                .await
            {
                Ok(a) => a,
                Err(e) => {
                    last_error = Some(e);
                    continue;
                }
            };
            let request = build_send_request(
                &self.config.group,
                &queue,
                self.config.default_topic_queue_nums,
                0,
                rt::now_ms(),
                0,
                &props,
                true,
                batch.body.clone(),
            );
            let op = format!("SEND_BATCH_MESSAGE {}", batch.topic);
            match self
                .client
                .invoke_broker_raw(&addr, &op, request, self.config.send_timeout_ms)
                .await
            {
                Ok(response) => {
                    match parse_send_response(&addr, &op, &queue, &msg_ids, &response) {
                        Ok(result) => return SendOutcome::Acknowledged(result),
                        Err(e) => {
                            last_code = Some(response.code);
                            last_broker = Some(queue.broker_name.clone());
                            let code = response.code;
                            last_error = Some(e);
                            if code == response_code::SUCCESS {
                                maybe_stored = true;
                                break;
                            }
                            if !is_retryable_send_code(code) {
                                break;
                            }
                        }
                    }
                }
                Err(e) => {
                    if e.is_outcome_unknown() {
                        maybe_stored = true;
                    }
                    last_broker = Some(queue.broker_name.clone());
                    last_error = Some(e);
                }
            }
        }
        let error = last_error.unwrap_or_else(|| ClientError::NoRoute {
            topic: batch.topic.clone(),
            detail: "no send attempt was made".to_string(),
        });
        if maybe_stored {
            SendOutcome::Unknown { error }
        } else {
            SendOutcome::Failed {
                code: last_code,
                error,
            }
        }
    }
}

/// Reads a send response: a "sent" code with `msgId`, `queueId`, `queueOffset` headers.
pub fn parse_send_response(
    addr: &str,
    op: &str,
    queue: &MessageQueue,
    uniq_key: &str,
    response: &RemotingCommand,
) -> Result<SendResult, ClientError> {
    let Some(status) = SendStatus::from_code(response.code) else {
        return Err(ClientError::Response {
            role: "broker",
            addr: addr.to_string(),
            op: op.to_string(),
            code: response.code,
            remark: response.remark.clone().unwrap_or_default(),
        });
    };
    let queue_id = header_i64("broker", addr, op, response, "queueId")?;
    let queue_offset = header_i64("broker", addr, op, response, "queueOffset")?;
    let offset_msg_id = response
        .ext("msgId")
        .ok_or_else(|| ClientError::BadResponse {
            role: "broker",
            addr: addr.to_string(),
            op: op.to_string(),
            detail: "missing header msgId".to_string(),
        })?
        .to_string();
    let msg_id = if uniq_key.is_empty() {
        response
            .ext("transactionId")
            .unwrap_or_default()
            .to_string()
    } else {
        uniq_key.to_string()
    };
    Ok(SendResult {
        status,
        msg_id,
        offset_msg_id,
        queue: mq(&queue.topic, &queue.broker_name, queue_id as i32),
        queue_offset,
        broker_addr: addr.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::decode_properties;

    #[test]
    fn send_v2_header_has_one_letter_keys() {
        let q = mq("T", "b1", 3);
        let props = "TAGS\u{1}a\u{2}";
        let req = build_send_request(
            "pg",
            &q,
            4,
            0,
            1234,
            7,
            props,
            false,
            Bytes::from_static(b"x"),
        );
        assert_eq!(req.code, request_code::SEND_MESSAGE_V2);
        let keys: Vec<&str> = req.ext_fields.keys().collect();
        assert_eq!(
            keys,
            vec!["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "m", "n"]
        );
        assert_eq!(req.ext("a"), Some("pg"));
        assert_eq!(req.ext("b"), Some("T"));
        assert_eq!(req.ext("c"), Some("TBW102"));
        assert_eq!(req.ext("d"), Some("4"));
        assert_eq!(req.ext("e"), Some("3"));
        assert_eq!(req.ext("g"), Some("1234"));
        assert_eq!(req.ext("h"), Some("7"));
        assert_eq!(req.ext("i"), Some(props));
        assert_eq!(req.ext("m"), Some("false"));
        assert_eq!(req.ext("n"), Some("b1"));
        let batch = build_send_request("pg", &q, 4, 0, 1, 0, "", true, Bytes::new());
        assert_eq!(batch.code, request_code::SEND_BATCH_MESSAGE);
        assert_eq!(batch.ext("m"), Some("true"));
    }

    #[test]
    fn batch_body_layout() {
        let entries = vec![
            (
                0,
                Bytes::from_static(b"hello"),
                "UNIQ_KEY\u{1}A\u{2}".to_string(),
            ),
            (5, Bytes::from_static(b""), String::new()),
        ];
        let body = encode_batch_body(&entries).unwrap();
        // First entry: 20 fixed + 5 body + 2 + 11 props = 38 bytes.
        assert_eq!(&body[0..4], &38i32.to_be_bytes());
        assert_eq!(&body[4..12], &[0u8; 8]);
        assert_eq!(&body[12..16], &0i32.to_be_bytes());
        assert_eq!(&body[16..20], &5i32.to_be_bytes());
        assert_eq!(&body[20..25], b"hello");
        assert_eq!(&body[25..27], &11i16.to_be_bytes());
        assert_eq!(&body[27..38], b"UNIQ_KEY\x01A\x02");
        // Second entry: flag 5, empty body and props = 22 bytes.
        assert_eq!(body.len(), 38 + 22);
        assert_eq!(&body[38..42], &22i32.to_be_bytes());
        assert_eq!(&body[50..54], &5i32.to_be_bytes());
        assert_eq!(decode_batch_body(&body).unwrap(), entries);
        assert!(decode_batch_body(&body[..body.len() - 1]).is_err());
        let too_long = vec![(0, Bytes::new(), "x".repeat(40_000))];
        assert!(encode_batch_body(&too_long).is_err());
    }

    #[test]
    fn message_properties() {
        let m = Message::new("T", "b")
            .with_tags("TagA")
            .with_keys(&["k1", " ", "k2"]);
        let p = decode_properties(&encode_properties(&m.properties));
        assert_eq!(p.get("TAGS").map(String::as_str), Some("TagA"));
        assert_eq!(p.get("KEYS").map(String::as_str), Some("k1 k2"));
        assert_eq!(p.get("WAIT").map(String::as_str), Some("true"));
    }

    #[test]
    fn send_response_parsing_and_status() {
        let q = mq("T", "b1", 0);
        let req = RemotingCommand::request(request_code::SEND_MESSAGE_V2);
        let ok = req
            .response(response_code::FLUSH_DISK_TIMEOUT, None)
            .with_ext("msgId", "0A000001000027DF0000000000000010")
            .with_ext("queueId", 2)
            .with_ext("queueOffset", 17);
        let r = parse_send_response("x:1", "send", &q, "UNIQ", &ok).unwrap();
        assert_eq!(r.status, SendStatus::FlushDiskTimeout);
        assert_eq!(r.queue.queue_id, 2);
        assert_eq!(r.queue_offset, 17);
        assert_eq!(r.msg_id, "UNIQ");
        let denied = req.response(response_code::NO_PERMISSION, Some("no".to_string()));
        let e = parse_send_response("x:1", "send", &q, "U", &denied).unwrap_err();
        assert_eq!(e.response_code(), Some(response_code::NO_PERMISSION));
        assert!(e.to_string().contains("x:1"), "{e}");
        let missing = req.response(response_code::SUCCESS, None);
        assert!(matches!(
            parse_send_response("x:1", "send", &q, "U", &missing),
            Err(ClientError::BadResponse { .. })
        ));
        assert!(is_retryable_send_code(response_code::SYSTEM_BUSY));
        assert!(!is_retryable_send_code(response_code::MESSAGE_ILLEGAL));
    }

    #[test]
    fn queue_selection_avoids_failed_broker() {
        let queues = vec![mq("T", "b1", 0), mq("T", "b1", 1), mq("T", "b2", 0)];
        for c in 0..6 {
            assert_eq!(
                Producer::select_queue(&queues, c, Some("b1")).broker_name,
                "b2"
            );
        }
        assert_eq!(Producer::select_queue(&queues, 4, None), queues[1]);
        let only_b1 = &queues[..2];
        assert_eq!(Producer::select_queue(only_b1, 1, Some("b1")), queues[1]);
    }
}
