//! SEND_MESSAGE (10), SEND_MESSAGE_V2 (310), SEND_BATCH_MESSAGE (320) and
//! CONSUMER_SEND_MSG_BACK (36) (RocketMQ `SendMessageProcessor`).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, Bytes};

use super::{topic_not_exist_remark, ProcessResult, FAQ_URL};
use crate::broker::channel::ClientChannel;
use crate::broker::response::{put_status_code, put_status_is_stored};
use crate::broker::topic_config::{is_not_allowed_send_topic, validate_topic_name};
use crate::broker::BrokerController;
use crate::message::properties::{
    self as props, decode_properties, decode_properties_ref, encode_properties,
    encode_properties_ref, Properties,
};
use crate::message::{msg_id, sysflag};
use crate::protocol::topic::{
    self, dlq_topic, retry_topic, TopicConfig, PERM_READ, PERM_WRITE, RETRY_GROUP_TOPIC_PREFIX,
};
use crate::remoting::response_code as rc;
use crate::remoting::{request_code, RemotingCommand, RemotingError};
use crate::rt;
use crate::store::{MessageToStore, PutMessageResult};

/// MQVersion V3_4_9: from this version on the request's maxReconsumeTimes is honoured.
const VERSION_V3_4_9: i32 = 121;

/// `SendMessageRequestHeader`, from either the long (V1) or one-letter (V2) keys.
#[derive(Debug, Clone)]
pub struct SendHeader {
    pub producer_group: String,
    pub topic: String,
    pub default_topic: String,
    pub default_topic_queue_nums: i32,
    pub queue_id: i32,
    pub sys_flag: i32,
    pub born_timestamp: i64,
    pub flag: i32,
    pub properties: Option<String>,
    pub reconsume_times: i32,
    pub unit_mode: bool,
    pub batch: bool,
    pub max_reconsume_times: Option<i32>,
}

impl SendHeader {
    pub fn parse(request: &RemotingCommand) -> Result<SendHeader, RemotingError> {
        // V2 headers carry one-letter keys; accept whichever form the request has.
        let v2 = request.ext("a").is_some() || request.ext("b").is_some();
        let k = |long: &'static str, short: &'static str| if v2 { short } else { long };
        Ok(SendHeader {
            producer_group: request.required(k("producerGroup", "a"))?,
            topic: request.required(k("topic", "b"))?,
            default_topic: request
                .optional(k("defaultTopic", "c"))?
                .unwrap_or_else(|| topic::AUTO_CREATE_TOPIC_KEY_TOPIC.to_string()),
            default_topic_queue_nums: request
                .optional(k("defaultTopicQueueNums", "d"))?
                .unwrap_or(4),
            queue_id: request.required(k("queueId", "e"))?,
            sys_flag: request.optional(k("sysFlag", "f"))?.unwrap_or(0),
            born_timestamp: request.optional(k("bornTimestamp", "g"))?.unwrap_or(0),
            flag: request.optional(k("flag", "h"))?.unwrap_or(0),
            properties: request.ext(k("properties", "i")).map(str::to_string),
            reconsume_times: request.optional(k("reconsumeTimes", "j"))?.unwrap_or(0),
            unit_mode: request.ext_bool(k("unitMode", "k"), false),
            max_reconsume_times: request.optional(k("maxReconsumeTimes", "l"))?,
            batch: request.ext_bool(k("batch", "m"), false),
        })
    }
}

/// A send response carrying the extFields the Java client reads without null checks.
fn send_response(
    controller: &BrokerController,
    request: &RemotingCommand,
    code: i32,
    remark: Option<String>,
) -> RemotingCommand {
    let mut response = request.response(code, remark);
    response.set_ext(props::MSG_REGION, &controller.config.region_id);
    response.set_ext(props::TRACE_ON, controller.config.trace_on);
    response
}

/// One inner message of a SEND_BATCH_MESSAGE body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchItem {
    pub flag: i32,
    pub body: Bytes,
    pub properties: String,
}

/// Decodes a batch body: per message `totalSize | magic | bodyCRC | flag | bodyLen | body |
/// propsLen:i16 | props` (RocketMQ `MessageDecoder.encodeMessages`).
pub fn decode_batch_body(body: &Bytes) -> Result<Vec<BatchItem>, String> {
    const FIXED: usize = 4 + 4 + 4 + 4 + 4;
    let mut items = Vec::new();
    let mut pos = 0usize;
    while pos < body.len() {
        let rest = &body[pos..];
        if rest.len() < FIXED + 2 {
            return Err(format!("batch message at byte {pos} is truncated"));
        }
        let mut cur = rest;
        let total_size = cur.get_i32();
        let _magic = cur.get_i32();
        let _body_crc = cur.get_i32();
        let flag = cur.get_i32();
        let body_len = cur.get_i32();
        if body_len < 0 || (body_len as usize) + 2 > cur.len() {
            return Err(format!(
                "batch message at byte {pos} declares body length {body_len} beyond the request"
            ));
        }
        let msg_body = body.slice(pos + FIXED..pos + FIXED + body_len as usize);
        cur.advance(body_len as usize);
        let props_len = cur.get_i16();
        if props_len < 0 || props_len as usize > cur.len() {
            return Err(format!("batch message at byte {pos} declares properties length {props_len} beyond the request"));
        }
        let props_bytes = &cur[..props_len as usize];
        let computed = FIXED + body_len as usize + 2 + props_len as usize;
        if total_size < 0 || total_size as usize != computed {
            return Err(format!(
                "batch message at byte {pos} declares total size {total_size} but its fields take {computed}"
            ));
        }
        let properties = std::str::from_utf8(props_bytes)
            .map_err(|_| format!("batch message at byte {pos} has non-UTF-8 properties"))?
            .to_string();
        items.push(BatchItem {
            flag,
            body: msg_body,
            properties,
        });
        pos += computed;
    }
    Ok(items)
}

/// Encodes a batch body (the client side of [`decode_batch_body`]; used by tests and tools).
pub fn encode_batch_body(items: &[BatchItem]) -> Vec<u8> {
    let mut out = Vec::new();
    for item in items {
        let total = 20 + item.body.len() + 2 + item.properties.len();
        out.extend_from_slice(&(total as i32).to_be_bytes());
        out.extend_from_slice(&0i32.to_be_bytes());
        out.extend_from_slice(&0i32.to_be_bytes());
        out.extend_from_slice(&item.flag.to_be_bytes());
        out.extend_from_slice(&(item.body.len() as i32).to_be_bytes());
        out.extend_from_slice(&item.body);
        out.extend_from_slice(&(item.properties.len() as i16).to_be_bytes());
        out.extend_from_slice(item.properties.as_bytes());
    }
    out
}

/// Resolves the topic config for a send, auto-creating it if allowed. Err = the response.
async fn resolve_topic(
    controller: &Arc<BrokerController>,
    request: &RemotingCommand,
    header: &SendHeader,
) -> Result<TopicConfig, RemotingCommand> {
    if let Some(tc) = controller.topics.select(&header.topic) {
        return Ok(tc);
    }
    let is_retry = header.topic.starts_with(RETRY_GROUP_TOPIC_PREFIX);
    let mut created = controller.topics.create_topic_in_send(
        &header.topic,
        &header.default_topic,
        header.default_topic_queue_nums,
        0,
    );
    if created.is_none() && is_retry {
        created = Some(controller.topics.create_topic_in_send_back(
            &header.topic,
            1,
            PERM_READ | PERM_WRITE,
            0,
        ));
    }
    match created {
        Some((tc, was_created)) => {
            if was_created {
                tracing::info!("auto-created topic {:?} from {}", tc, header.default_topic);
                if let Err(e) = controller.topics.on_changed().await {
                    tracing::warn!("persisting topics after auto-create failed: {e}");
                }
            }
            Ok(tc)
        }
        None => Err(send_response(
            controller,
            request,
            rc::TOPIC_NOT_EXIST,
            Some(topic_not_exist_remark(&header.topic)),
        )),
    }
}

fn store_host(controller: &BrokerController) -> SocketAddr {
    controller.broker_addr()
}

/// Completes the properties of a message about to be stored: UNIQ_KEY if absent, CLUSTER.
fn finish_properties(controller: &BrokerController, properties: &mut Properties) {
    if properties.get(props::UNIQ_KEY).is_none_or(|v| v.is_empty()) {
        properties.insert(props::UNIQ_KEY.to_string(), new_uniq_key(controller));
    }
    properties.insert(
        props::CLUSTER.to_string(),
        controller.config.broker_cluster_name.clone(),
    );
}

fn new_uniq_key(controller: &BrokerController) -> String {
    msg_id::create_uniq_key(
        store_host(controller),
        controller.next_uniq_counter(),
        rt::now_ms(),
    )
}

/// ConsumeQueue tags code of a message with these TAGS.
fn tags_code_of(tags: Option<&str>) -> i64 {
    tags.filter(|t| !t.is_empty())
        .map(props::tags_hash_code)
        .unwrap_or(0)
}

/// The WAIT property: only an explicit "false" lets the store acknowledge before its flush.
fn wait_store_msg_ok(wait: Option<&str>) -> bool {
    wait.is_none_or(|v| !v.eq_ignore_ascii_case("false"))
}

pub async fn process_send(
    controller: &Arc<BrokerController>,
    channel: &ClientChannel,
    request: &RemotingCommand,
) -> ProcessResult {
    let header = SendHeader::parse(request)?;
    let is_batch = request.code == request_code::SEND_BATCH_MESSAGE;
    let respond = |code: i32, remark: String| {
        Ok(Some(send_response(controller, request, code, Some(remark))))
    };

    if controller.is_slave() {
        return respond(
            rc::SERVICE_NOT_AVAILABLE,
            "the broker is a slave, sending messages is not allowed".into(),
        );
    }
    if let Some(reason) = controller.store.is_write_refused() {
        return respond(
            rc::SERVICE_NOT_AVAILABLE,
            format!("service not available now: {reason}"),
        );
    }
    if !topic::is_writeable(controller.config.broker_permission) {
        return respond(
            rc::NO_PERMISSION,
            format!(
                "the broker[{}] sending message is forbidden",
                controller.broker_addr()
            ),
        );
    }
    if let Err(reason) = validate_topic_name(&header.topic) {
        return respond(rc::INVALID_PARAMETER, reason);
    }
    if is_not_allowed_send_topic(&header.topic) {
        return respond(
            rc::NO_PERMISSION,
            format!("Sending message to topic[{}] is forbidden.", header.topic),
        );
    }
    let topic_config = match resolve_topic(controller, request, &header).await {
        Ok(tc) => tc,
        Err(response) => return Ok(Some(response)),
    };
    if !topic::is_writeable(topic_config.perm) {
        return respond(
            rc::NO_PERMISSION,
            format!("the topic[{}] sending message is forbidden", header.topic),
        );
    }
    let queue_nums = topic_config
        .read_queue_nums
        .max(topic_config.write_queue_nums);
    if header.queue_id >= queue_nums {
        return respond(
            rc::INVALID_PARAMETER,
            format!(
                "request queueId[{}] is illegal, {:?} Producer: {}",
                header.queue_id,
                topic_config,
                channel.peer_addr()
            ),
        );
    }
    let mut queue_id = header.queue_id;
    if queue_id < 0 {
        queue_id = rt::random_below(topic_config.write_queue_nums.max(1) as u64) as i32;
    }
    let mut sys_flag = header.sys_flag;
    if topic_config.topic_filter_type == "MULTI_TAG" {
        sys_flag |= sysflag::MULTI_TAGS;
    }
    // Set below only when the client sent no UNIQ_KEY; declared first because `properties`
    // may borrow it.
    let generated_uniq_key: String;
    let mut properties = decode_properties_ref(header.properties.as_deref().unwrap_or(""));
    if properties
        .get(props::TRAN_MSG)
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    {
        return respond(
            rc::NO_PERMISSION,
            format!(
                "the broker[{}] sending transaction message is forbidden",
                controller.broker_addr()
            ),
        );
    }

    if is_batch {
        if header.topic.starts_with(RETRY_GROUP_TOPIC_PREFIX) {
            return respond(
                rc::MESSAGE_ILLEGAL,
                format!(
                    "batch request does not support retry group {}",
                    header.topic
                ),
            );
        }
        let items = match decode_batch_body(&request.body) {
            Ok(items) if !items.is_empty() => items,
            Ok(_) => return respond(rc::MESSAGE_ILLEGAL, "the batch is empty".into()),
            Err(reason) => return respond(rc::MESSAGE_ILLEGAL, reason),
        };
        let mut batch = Vec::with_capacity(items.len());
        let mut uniq_keys = Vec::with_capacity(items.len());
        for item in items {
            let mut properties = decode_properties(&item.properties);
            finish_properties(controller, &mut properties);
            uniq_keys.push(properties.get(props::UNIQ_KEY).cloned().unwrap_or_default());
            batch.push(MessageToStore {
                topic: header.topic.clone(),
                queue_id,
                flag: item.flag,
                body: item.body,
                tags_code: tags_code_of(properties.get(props::TAGS).map(String::as_str)),
                wait_store_msg_ok: wait_store_msg_ok(
                    properties.get(props::WAIT).map(String::as_str),
                ),
                properties: encode_properties(&properties),
                sys_flag,
                born_timestamp: header.born_timestamp,
                born_host: Some(channel.peer_addr()),
                store_host: Some(store_host(controller)),
                reconsume_times: header.reconsume_times,
                prepared_transaction_offset: 0,
            });
        }
        let result = controller.store.put_messages(batch).await;
        return Ok(Some(put_result_response(
            controller,
            request,
            queue_id,
            result,
            &uniq_keys.join(","),
        )));
    }

    // Single message: %RETRY% handling and DLQ rerouting (RocketMQ `handleRetryAndDLQ`).
    let mut topic_name = header.topic.clone();
    if let Some(group) = header.topic.strip_prefix(RETRY_GROUP_TOPIC_PREFIX) {
        let Some((group_config, created)) = controller.groups.find_or_create(group) else {
            return respond(
                rc::SUBSCRIPTION_GROUP_NOT_EXIST,
                format!("subscription group not exist, {group} {FAQ_URL}"),
            );
        };
        if created {
            persist_groups(controller).await;
        }
        let max_reconsume_times = if request.version >= VERSION_V3_4_9 {
            header
                .max_reconsume_times
                .unwrap_or(group_config.retry_max_times)
        } else {
            group_config.retry_max_times
        };
        if header.reconsume_times > max_reconsume_times {
            topic_name = dlq_topic(group);
            let (dlq, created) = controller.topics.create_topic_in_send_back(
                &topic_name,
                1,
                PERM_READ | PERM_WRITE,
                0,
            );
            if created {
                if let Err(e) = controller.topics.on_changed().await {
                    tracing::warn!("persisting topics after DLQ create failed: {e}");
                }
            }
            if !topic::is_writeable(dlq.perm) {
                return respond(
                    rc::NO_PERMISSION,
                    format!("the topic[{topic_name}] sending message is forbidden"),
                );
            }
            queue_id = rt::random_below(dlq.write_queue_nums.max(1) as u64) as i32;
            properties.remove(props::DELAY);
        }
    }
    // finish_properties on the borrowed map (same result, no copy of every pair).
    if properties.get(props::UNIQ_KEY).is_none_or(|v| v.is_empty()) {
        generated_uniq_key = new_uniq_key(controller);
        properties.insert(props::UNIQ_KEY, &generated_uniq_key);
    }
    properties.insert(props::CLUSTER, &controller.config.broker_cluster_name);
    let uniq_key = properties.get(props::UNIQ_KEY).copied().unwrap_or_default();
    let msg = MessageToStore {
        topic: topic_name,
        queue_id,
        flag: header.flag,
        body: request.body.clone(),
        tags_code: tags_code_of(properties.get(props::TAGS).copied()),
        wait_store_msg_ok: wait_store_msg_ok(properties.get(props::WAIT).copied()),
        properties: encode_properties_ref(&properties),
        sys_flag,
        born_timestamp: header.born_timestamp,
        born_host: Some(channel.peer_addr()),
        store_host: Some(store_host(controller)),
        reconsume_times: header.reconsume_times,
        prepared_transaction_offset: 0,
    };
    let result = controller.store.put_message(msg).await;
    Ok(Some(put_result_response(
        controller, request, queue_id, result, uniq_key,
    )))
}

async fn persist_groups(controller: &BrokerController) {
    if let Err(e) = controller.groups.persist().await {
        tracing::warn!("persisting subscription groups failed: {e}");
    }
}

fn put_result_response(
    controller: &BrokerController,
    request: &RemotingCommand,
    queue_id: i32,
    result: PutMessageResult,
    transaction_id: &str,
) -> RemotingCommand {
    let (code, default_remark) = put_status_code(result.status);
    let remark = result.remark.clone().or(default_remark.map(str::to_string));
    let mut response = send_response(controller, request, code, remark);
    if put_status_is_stored(result.status) {
        if let Some(append) = &result.append {
            response.set_ext("msgId", &append.msg_id);
            response.set_ext("queueId", queue_id);
            response.set_ext("queueOffset", append.queue_offset);
            response.set_ext("transactionId", transaction_id);
            controller.stats.msg_put_total.fetch_add(
                append.msg_num.max(1) as u64,
                std::sync::atomic::Ordering::Relaxed,
            );
        }
    }
    response
}

/// CONSUMER_SEND_MSG_BACK: re-send a message the consumer failed to process to the group's
/// retry topic, or to its DLQ once retries are exhausted. Delay levels are accepted but the
/// message is delivered without delay (no schedule service yet).
pub async fn consumer_send_msg_back(
    controller: &Arc<BrokerController>,
    channel: &ClientChannel,
    request: &RemotingCommand,
) -> ProcessResult {
    let commitlog_offset: i64 = request.required("offset")?;
    let group: String = request.required("group")?;
    let delay_level: i32 = request.required("delayLevel")?;
    let origin_msg_id = request.ext("originMsgId").map(str::to_string);
    let max_reconsume_header: Option<i32> = request.optional("maxReconsumeTimes")?;
    let respond = |code: i32, remark: String| Ok(Some(request.response(code, remark)));

    if controller.is_slave() {
        return respond(
            rc::SERVICE_NOT_AVAILABLE,
            "the broker is a slave, sending messages is not allowed".into(),
        );
    }
    let Some((group_config, created)) = controller.groups.find_or_create(&group) else {
        return respond(
            rc::SUBSCRIPTION_GROUP_NOT_EXIST,
            format!("subscription group not exist, {group} {FAQ_URL}"),
        );
    };
    if created {
        persist_groups(controller).await;
    }
    if !topic::is_writeable(controller.config.broker_permission) {
        return respond(
            rc::NO_PERMISSION,
            format!(
                "the broker[{}] sending message is forbidden",
                controller.broker_addr()
            ),
        );
    }
    if group_config.retry_queue_nums <= 0 {
        // RocketMQ drops the message silently when the group has no retry queues.
        return Ok(Some(request.response(rc::SUCCESS, None)));
    }
    let Some(entry) = controller.store.look_message_by_offset(commitlog_offset) else {
        return respond(
            rc::SYSTEM_ERROR,
            format!("look message by offset failed, {commitlog_offset}"),
        );
    };
    let original = match crate::message::decode_entry(&entry, false) {
        Ok((m, _)) => m,
        Err(reason) => {
            return respond(
                rc::SYSTEM_ERROR,
                format!("stored message at offset {commitlog_offset} is unreadable: {reason}"),
            )
        }
    };
    let mut properties = original.properties.clone();
    if !properties.contains_key(props::RETRY_TOPIC) {
        properties.insert(props::RETRY_TOPIC.to_string(), original.topic.clone());
    }
    properties.insert(props::WAIT.to_string(), "false".to_string());
    let max_reconsume_times = if request.version >= VERSION_V3_4_9 {
        max_reconsume_header
            .filter(|m| *m >= 0)
            .unwrap_or(group_config.retry_max_times)
    } else {
        group_config.retry_max_times
    };
    let to_dlq = original.reconsume_times >= max_reconsume_times || delay_level < 0;
    let (target_topic, queue_nums, perm) = if to_dlq {
        (dlq_topic(&group), 1, PERM_READ | PERM_WRITE)
    } else {
        (
            retry_topic(&group),
            group_config.retry_queue_nums,
            PERM_READ | PERM_WRITE,
        )
    };
    let (tc, created) =
        controller
            .topics
            .create_topic_in_send_back(&target_topic, queue_nums, perm, 0);
    if created {
        if let Err(e) = controller.topics.on_changed().await {
            tracing::warn!("persisting topics after retry/DLQ create failed: {e}");
        }
    }
    if !topic::is_writeable(tc.perm) {
        return respond(
            rc::NO_PERMISSION,
            format!("the topic[{target_topic}] sending message is forbidden"),
        );
    }
    let queue_id = rt::random_below(tc.write_queue_nums.max(1) as u64) as i32;
    // The delay (given level, or 3 + reconsumeTimes) would route through SCHEDULE_TOPIC_XXXX;
    // without a schedule service the retry is delivered at once.
    properties.remove(props::DELAY);
    let origin = properties
        .get(props::ORIGIN_MESSAGE_ID)
        .cloned()
        .filter(|s| !s.is_empty())
        .or(origin_msg_id.filter(|s| !s.is_empty()))
        .unwrap_or_else(|| original.offset_msg_id());
    properties.insert(props::ORIGIN_MESSAGE_ID.to_string(), origin);
    let msg = MessageToStore {
        topic: target_topic,
        queue_id,
        flag: original.flag,
        body: original.body.clone(),
        tags_code: tags_code_of(properties.get(props::TAGS).map(String::as_str)),
        wait_store_msg_ok: false,
        properties: encode_properties(&properties),
        sys_flag: original.sys_flag & !(sysflag::BORNHOST_V6 | sysflag::STOREHOSTADDRESS_V6),
        born_timestamp: original.born_timestamp,
        born_host: Some(original.born_host),
        store_host: Some(store_host(controller)),
        reconsume_times: original.reconsume_times + 1,
        prepared_transaction_offset: 0,
    };
    let _ = channel;
    let result = controller.store.put_message(msg).await;
    let (code, default_remark) = put_status_code(result.status);
    if put_status_is_stored(result.status) {
        return Ok(Some(request.response(rc::SUCCESS, None)));
    }
    Ok(Some(request.response(
        code,
        result.remark.or(default_remark.map(str::to_string)),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_body_round_trip_and_rejects_garbage() {
        let items = vec![
            BatchItem {
                flag: 1,
                body: Bytes::from_static(b"hello"),
                properties: "TAGS\u{1}a\u{2}".into(),
            },
            BatchItem {
                flag: 0,
                body: Bytes::new(),
                properties: String::new(),
            },
        ];
        let body = Bytes::from(encode_batch_body(&items));
        assert_eq!(decode_batch_body(&body).unwrap(), items);
        let truncated = body.slice(..body.len() - 1);
        assert!(decode_batch_body(&truncated).is_err());
        let mut bad = body.to_vec();
        bad[3] = bad[3].wrapping_add(1); // total size of the first message
        assert!(decode_batch_body(&Bytes::from(bad)).is_err());
    }

    #[test]
    fn v2_header_maps_one_letter_keys() {
        let req = RemotingCommand::request(request_code::SEND_MESSAGE_V2)
            .with_ext("a", "pg")
            .with_ext("b", "T")
            .with_ext("c", "TBW102")
            .with_ext("d", 4)
            .with_ext("e", -1)
            .with_ext("f", 0)
            .with_ext("g", 123)
            .with_ext("h", 7)
            .with_ext("j", 2)
            .with_ext("l", 5);
        let h = SendHeader::parse(&req).unwrap();
        assert_eq!(h.producer_group, "pg");
        assert_eq!(h.topic, "T");
        assert_eq!(h.queue_id, -1);
        assert_eq!(h.flag, 7);
        assert_eq!(h.reconsume_times, 2);
        assert_eq!(h.max_reconsume_times, Some(5));
        let missing = RemotingCommand::request(request_code::SEND_MESSAGE).with_ext("topic", "T");
        let err = SendHeader::parse(&missing).unwrap_err();
        assert!(err.to_string().contains("producerGroup"), "{err}");
    }
}
