//! Single-request broker operations shared by the consumer and the admin commands: offsets,
//! consumer lists, heartbeats and pulls. Request builders are separate functions so their
//! header key sets are unit-tested.

use bytes::Bytes;

use super::body::{mq_string, ConsumerListBody, HeartbeatData, MessageQueue};
use super::mq_client::{check_success, header_i64, parse_body, MqClient};
use super::ClientError;
use crate::message::{self, sysflag, MessageExt};
use crate::remoting::{request_code, response_code, RemotingCommand};

/// PullSysFlag bits (§2.3).
pub mod pull_sys_flag {
    pub const COMMIT_OFFSET: i32 = 0x1;
    pub const SUSPEND: i32 = 0x2;
    pub const SUBSCRIPTION: i32 = 0x4;
    pub const CLASS_FILTER: i32 = 0x8;
    pub const LITE_PULL: i32 = 0x10;
}

pub fn query_consumer_offset_request(group: &str, mq: &MessageQueue) -> RemotingCommand {
    RemotingCommand::request(request_code::QUERY_CONSUMER_OFFSET)
        .with_ext("consumerGroup", group)
        .with_ext("topic", &mq.topic)
        .with_ext("queueId", mq.queue_id)
        .with_ext("setZeroIfNotFound", false)
}

pub fn update_consumer_offset_request(
    group: &str,
    mq: &MessageQueue,
    commit_offset: i64,
) -> RemotingCommand {
    RemotingCommand::request(request_code::UPDATE_CONSUMER_OFFSET)
        .with_ext("consumerGroup", group)
        .with_ext("topic", &mq.topic)
        .with_ext("queueId", mq.queue_id)
        .with_ext("commitOffset", commit_offset)
}

pub fn max_offset_request(mq: &MessageQueue) -> RemotingCommand {
    RemotingCommand::request(request_code::GET_MAX_OFFSET)
        .with_ext("topic", &mq.topic)
        .with_ext("queueId", mq.queue_id)
}

pub fn min_offset_request(mq: &MessageQueue) -> RemotingCommand {
    RemotingCommand::request(request_code::GET_MIN_OFFSET)
        .with_ext("topic", &mq.topic)
        .with_ext("queueId", mq.queue_id)
}

/// What to pull and how (PullMessageRequestHeader).
#[derive(Debug, Clone)]
pub struct PullRequest {
    pub group: String,
    pub queue: MessageQueue,
    pub queue_offset: i64,
    pub max_msg_nums: i32,
    /// Offset to store for the group on the broker (COMMIT_OFFSET flag), if any.
    pub commit_offset: Option<i64>,
    /// Long polling: how long the broker may hold the request (SUSPEND flag when > 0).
    pub suspend_timeout_ms: u64,
    /// Subscription expression sent with the request (SUBSCRIPTION flag) when set.
    pub subscription: Option<String>,
    pub sub_version: i64,
}

pub fn pull_message_request(p: &PullRequest) -> RemotingCommand {
    let mut sys_flag = 0;
    if p.commit_offset.is_some() {
        sys_flag |= pull_sys_flag::COMMIT_OFFSET;
    }
    if p.suspend_timeout_ms > 0 {
        sys_flag |= pull_sys_flag::SUSPEND;
    }
    if p.subscription.is_some() {
        sys_flag |= pull_sys_flag::SUBSCRIPTION;
    }
    let mut request = RemotingCommand::request(request_code::PULL_MESSAGE)
        .with_ext("consumerGroup", &p.group)
        .with_ext("topic", &p.queue.topic)
        .with_ext("queueId", p.queue.queue_id)
        .with_ext("queueOffset", p.queue_offset)
        .with_ext("maxMsgNums", p.max_msg_nums)
        .with_ext("sysFlag", sys_flag)
        .with_ext("commitOffset", p.commit_offset.unwrap_or(0))
        .with_ext("suspendTimeoutMillis", p.suspend_timeout_ms)
        .with_ext("subVersion", p.sub_version)
        .with_ext("expressionType", "TAG");
    if let Some(sub) = &p.subscription {
        request.set_ext("subscription", sub);
    }
    request
}

/// Java `PullStatus` plus the offsets the broker reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullStatus {
    Found,
    NoNewMsg,
    NoMatchedMsg,
    OffsetIllegal,
}

impl PullStatus {
    /// Java's enum name.
    pub fn as_str(&self) -> &'static str {
        match self {
            PullStatus::Found => "FOUND",
            PullStatus::NoNewMsg => "NO_NEW_MSG",
            PullStatus::NoMatchedMsg => "NO_MATCHED_MSG",
            PullStatus::OffsetIllegal => "OFFSET_ILLEGAL",
        }
    }
}

#[derive(Debug, Clone)]
pub struct PullResult {
    pub status: PullStatus,
    pub next_begin_offset: i64,
    pub min_offset: i64,
    pub max_offset: i64,
    pub suggest_which_broker_id: i64,
    /// Decoded, decompressed and (by the caller) tag-filtered messages.
    pub messages: Vec<MessageExt>,
}

/// Inflates zlib-compressed bodies (sysFlag COMPRESSED) in place.
pub fn decompress_messages(messages: &mut [MessageExt]) -> Result<(), String> {
    use std::io::Read;
    for m in messages.iter_mut() {
        if m.sys_flag & sysflag::COMPRESSED != 0 {
            // Compression type bits 8..10: 0 or 3 = zlib; other algorithms are not supported.
            let kind = (m.sys_flag >> 8) & 0x7;
            if kind != 0 && kind != 3 {
                return Err(format!(
                    "message at commitlog offset {} uses compression type {kind}, only zlib is supported",
                    m.commitlog_offset
                ));
            }
            let mut out = Vec::new();
            flate2::read::ZlibDecoder::new(&m.body[..])
                .read_to_end(&mut out)
                .map_err(|e| {
                    format!(
                        "message at commitlog offset {}: corrupt zlib body: {e}",
                        m.commitlog_offset
                    )
                })?;
            m.body = Bytes::from(out);
            m.sys_flag &= !sysflag::COMPRESSED;
        }
    }
    Ok(())
}

impl MqClient {
    /// QUERY_CONSUMER_OFFSET; Ok(None) when the broker has no offset for the group.
    pub async fn query_consumer_offset(
        &self,
        addr: &str,
        group: &str,
        mq: &MessageQueue,
    ) -> Result<Option<i64>, ClientError> {
        let op = format!("QUERY_CONSUMER_OFFSET {group} {}", mq_string(mq));
        let response = self
            .invoke_broker_raw(
                addr,
                &op,
                query_consumer_offset_request(group, mq),
                self.rpc_timeout_ms(),
            )
            .await?;
        if response.code == response_code::QUERY_NOT_FOUND {
            return Ok(None);
        }
        check_success("broker", addr, &op, &response)?;
        let offset = header_i64("broker", addr, &op, &response, "offset")?;
        Ok(if offset < 0 { None } else { Some(offset) })
    }

    /// UPDATE_CONSUMER_OFFSET, acknowledged (not oneway, so callers learn about failures).
    pub async fn update_consumer_offset(
        &self,
        addr: &str,
        group: &str,
        mq: &MessageQueue,
        commit_offset: i64,
    ) -> Result<(), ClientError> {
        let op = format!("UPDATE_CONSUMER_OFFSET {group} {}", mq_string(mq));
        self.invoke_broker(
            addr,
            &op,
            update_consumer_offset_request(group, mq, commit_offset),
        )
        .await
        .map(|_| ())
    }

    pub async fn get_max_offset(&self, addr: &str, mq: &MessageQueue) -> Result<i64, ClientError> {
        let op = format!("GET_MAX_OFFSET {}", mq_string(mq));
        let response = self
            .invoke_broker(addr, &op, max_offset_request(mq))
            .await?;
        header_i64("broker", addr, &op, &response, "offset")
    }

    pub async fn get_min_offset(&self, addr: &str, mq: &MessageQueue) -> Result<i64, ClientError> {
        let op = format!("GET_MIN_OFFSET {}", mq_string(mq));
        let response = self
            .invoke_broker(addr, &op, min_offset_request(mq))
            .await?;
        header_i64("broker", addr, &op, &response, "offset")
    }

    /// GET_CONSUMER_LIST_BY_GROUP; an empty list when the broker knows no consumer.
    pub async fn consumer_id_list(
        &self,
        addr: &str,
        group: &str,
    ) -> Result<Vec<String>, ClientError> {
        let op = format!("GET_CONSUMER_LIST_BY_GROUP {group}");
        let request = RemotingCommand::request(request_code::GET_CONSUMER_LIST_BY_GROUP)
            .with_ext("consumerGroup", group);
        let response = self
            .invoke_broker_raw(addr, &op, request, self.rpc_timeout_ms())
            .await?;
        if response.code == response_code::SYSTEM_ERROR
            && response
                .remark
                .as_deref()
                .is_some_and(|r| r.contains("no consumer"))
        {
            return Ok(Vec::new());
        }
        check_success("broker", addr, &op, &response)?;
        let list: ConsumerListBody = parse_body("broker", addr, &op, &response.body)?;
        Ok(list.consumer_id_list)
    }

    /// HEART_BEAT with `data` to one broker address.
    pub async fn send_heartbeat(
        &self,
        addr: &str,
        data: &HeartbeatData,
    ) -> Result<(), ClientError> {
        let body = serde_json::to_vec(data).map_err(|e| {
            ClientError::InvalidArgument(format!("heartbeat does not serialize: {e}"))
        })?;
        let request = RemotingCommand::request(request_code::HEART_BEAT).with_body(body);
        self.invoke_broker(addr, "HEART_BEAT", request)
            .await
            .map(|_| ())
    }

    /// UNREGISTER_CLIENT for a consumer and/or producer group.
    pub async fn unregister_client(
        &self,
        addr: &str,
        producer_group: Option<&str>,
        consumer_group: Option<&str>,
    ) -> Result<(), ClientError> {
        let mut request = RemotingCommand::request(request_code::UNREGISTER_CLIENT)
            .with_ext("clientID", self.client_id());
        if let Some(g) = producer_group {
            request.set_ext("producerGroup", g);
        }
        if let Some(g) = consumer_group {
            request.set_ext("consumerGroup", g);
        }
        self.invoke_broker(addr, "UNREGISTER_CLIENT", request)
            .await
            .map(|_| ())
    }

    /// One PULL_MESSAGE. `rpc_timeout_ms` must exceed the suspend timeout for long polling.
    pub async fn pull_message(
        &self,
        addr: &str,
        pull: &PullRequest,
        rpc_timeout_ms: u64,
    ) -> Result<PullResult, ClientError> {
        let op = format!("PULL_MESSAGE {} {}", pull.group, mq_string(&pull.queue));
        let response = self
            .invoke_broker_raw(addr, &op, pull_message_request(pull), rpc_timeout_ms)
            .await?;
        let status = match response.code {
            response_code::SUCCESS => PullStatus::Found,
            response_code::PULL_NOT_FOUND => PullStatus::NoNewMsg,
            response_code::PULL_RETRY_IMMEDIATELY => PullStatus::NoMatchedMsg,
            response_code::PULL_OFFSET_MOVED => PullStatus::OffsetIllegal,
            _ => {
                check_success("broker", addr, &op, &response)?;
                return Err(ClientError::BadResponse {
                    role: "broker",
                    addr: addr.to_string(),
                    op,
                    detail: "SUCCESS code outside the pull status mapping".to_string(),
                });
            }
        };
        let next_begin_offset = header_i64("broker", addr, &op, &response, "nextBeginOffset")?;
        let min_offset = header_i64("broker", addr, &op, &response, "minOffset")?;
        let max_offset = header_i64("broker", addr, &op, &response, "maxOffset")?;
        let suggest_which_broker_id = response
            .optional::<i64>("suggestWhichBrokerId")
            .ok()
            .flatten()
            .unwrap_or(0);
        let mut messages = Vec::new();
        if status == PullStatus::Found {
            messages = message::decode_entries(&response.body).map_err(|detail| {
                ClientError::BadResponse {
                    role: "broker",
                    addr: addr.to_string(),
                    op: op.clone(),
                    detail: format!("pull body does not decode: {detail}"),
                }
            })?;
            decompress_messages(&mut messages).map_err(|detail| ClientError::BadResponse {
                role: "broker",
                addr: addr.to_string(),
                op: op.clone(),
                detail,
            })?;
            for m in &messages {
                // A broker must only return messages of the queue asked for, in order.
                if m.topic != pull.queue.topic || m.queue_id != pull.queue.queue_id {
                    return Err(ClientError::BadResponse {
                        role: "broker",
                        addr: addr.to_string(),
                        op,
                        detail: format!(
                            "pulled message of {}:{} from a pull of {}",
                            m.topic,
                            m.queue_id,
                            mq_string(&pull.queue)
                        ),
                    });
                }
            }
        }
        Ok(PullResult {
            status,
            next_begin_offset,
            min_offset,
            max_offset,
            suggest_which_broker_id,
            messages,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(c: &RemotingCommand) -> Vec<&str> {
        c.ext_fields.keys().collect()
    }

    #[test]
    fn offset_request_headers() {
        let mq = super::super::body::mq("T", "b", 2);
        let q = query_consumer_offset_request("g", &mq);
        assert_eq!(q.code, 14);
        assert_eq!(
            keys(&q),
            vec!["consumerGroup", "queueId", "setZeroIfNotFound", "topic"]
        );
        assert_eq!(q.ext("queueId"), Some("2"));
        let u = update_consumer_offset_request("g", &mq, 42);
        assert_eq!(u.code, 15);
        assert_eq!(
            keys(&u),
            vec!["commitOffset", "consumerGroup", "queueId", "topic"]
        );
        assert_eq!(u.ext("commitOffset"), Some("42"));
        assert_eq!(keys(&max_offset_request(&mq)), vec!["queueId", "topic"]);
        assert_eq!(max_offset_request(&mq).code, 30);
        assert_eq!(min_offset_request(&mq).code, 31);
    }

    #[test]
    fn pull_request_flags_and_headers() {
        let mut p = PullRequest {
            group: "g".into(),
            queue: super::super::body::mq("T", "b", 1),
            queue_offset: 10,
            max_msg_nums: 32,
            commit_offset: Some(7),
            suspend_timeout_ms: 15_000,
            subscription: None,
            sub_version: 99,
        };
        let r = pull_message_request(&p);
        assert_eq!(r.code, 11);
        assert_eq!(
            keys(&r),
            vec![
                "commitOffset",
                "consumerGroup",
                "expressionType",
                "maxMsgNums",
                "queueId",
                "queueOffset",
                "subVersion",
                "suspendTimeoutMillis",
                "sysFlag",
                "topic"
            ]
        );
        assert_eq!(r.ext("sysFlag"), Some("3"));
        assert_eq!(r.ext("commitOffset"), Some("7"));
        assert_eq!(r.ext("suspendTimeoutMillis"), Some("15000"));
        p.commit_offset = None;
        p.suspend_timeout_ms = 0;
        p.subscription = Some("a || b".into());
        let r = pull_message_request(&p);
        assert_eq!(r.ext("sysFlag"), Some("4"));
        assert_eq!(r.ext("subscription"), Some("a || b"));
        assert_eq!(r.ext("commitOffset"), Some("0"));
    }
}
