//! PULL_MESSAGE (11) and LITE_PULL_MESSAGE (361) (RocketMQ `PullMessageProcessor`), including
//! long-polling suspension.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;

use super::{topic_not_exist_remark, ProcessResult, FAQ_URL};
use crate::broker::channel::ClientChannel;
use crate::broker::long_polling::HeldPull;
use crate::broker::response::{get_status_code, get_status_name};
use crate::broker::BrokerController;
use crate::protocol::heartbeat::{SubscriptionData, EXPRESSION_TYPE_TAG};
use crate::protocol::route::MASTER_ID;
use crate::protocol::topic;
use crate::remoting::response_code as rc;
use crate::remoting::RemotingCommand;
use crate::rt;
use crate::store::MessageFilter;

/// PullSysFlag bits.
pub const FLAG_COMMIT_OFFSET: i32 = 0x1;
pub const FLAG_SUSPEND: i32 = 0x2;
pub const FLAG_SUBSCRIPTION: i32 = 0x4;
pub const FLAG_CLASS_FILTER: i32 = 0x8;

/// Bytes returned by one pull at most (RocketMQ `maxTransferBytesOnMessageInMemory`).
pub const MAX_TRANSFER_BYTES: usize = 256 * 1024;

/// Tag filter over ConsumeQueue tag codes.
struct TagFilter<'a>(&'a SubscriptionData);

impl MessageFilter for TagFilter<'_> {
    fn is_matched_by_consume_queue(&self, tags_code: i64) -> bool {
        self.0.matches_tags_code(tags_code)
    }
}

/// Runs a pull. `allow_suspend` is true on the first execution and false when a parked
/// request is re-run.
pub async fn process_pull(
    controller: &Arc<BrokerController>,
    channel: &ClientChannel,
    request: RemotingCommand,
    allow_suspend: bool,
) -> ProcessResult {
    let group: String = request.required("consumerGroup")?;
    let topic_name: String = request.required("topic")?;
    let queue_id: i32 = request.required("queueId")?;
    let queue_offset: i64 = request.required("queueOffset")?;
    let max_msg_nums: i32 = request.required("maxMsgNums")?;
    let sys_flag: i32 = request.required("sysFlag")?;
    let commit_offset: i64 = request.required("commitOffset")?;
    let suspend_timeout_ms: i64 = request.required("suspendTimeoutMillis")?;
    let sub_version: i64 = request.optional("subVersion")?.unwrap_or(0);
    let max_msg_bytes: Option<i64> = request.optional("maxMsgBytes")?;
    let respond = |code: i32, remark: String| Ok(Some(request.response(code, remark)));

    if !topic::is_readable(controller.config.broker_permission) {
        return respond(
            rc::NO_PERMISSION,
            format!(
                "the broker[{}] pulling message is forbidden",
                controller.broker_addr()
            ),
        );
    }
    let Some((group_config, created)) = controller.groups.find_or_create(&group) else {
        return respond(
            rc::SUBSCRIPTION_GROUP_NOT_EXIST,
            format!("subscription group [{group}] does not exist, {FAQ_URL}"),
        );
    };
    if created {
        if let Err(e) = controller.groups.persist().await {
            tracing::warn!("persisting subscription groups failed: {e}");
        }
    }
    if !group_config.consume_enable {
        return respond(
            rc::NO_PERMISSION,
            format!("subscription group no permission, {group}"),
        );
    }
    let Some(topic_config) = controller.topics.select(&topic_name) else {
        return respond(rc::TOPIC_NOT_EXIST, topic_not_exist_remark(&topic_name));
    };
    if !topic::is_readable(topic_config.perm) {
        return respond(
            rc::NO_PERMISSION,
            format!("the topic[{topic_name}] pulling message is forbidden"),
        );
    }
    if queue_id < 0 || queue_id >= topic_config.read_queue_nums {
        return respond(
            rc::INVALID_PARAMETER,
            format!(
                "queueId[{queue_id}] is illegal, topic:[{topic_name}] topicConfig.readQueueNums:[{}] consumer:[{}]",
                topic_config.read_queue_nums,
                channel.peer_addr()
            ),
        );
    }

    let subscription = if sys_flag & FLAG_SUBSCRIPTION != 0 {
        match SubscriptionData::build(
            &topic_name,
            request.ext("subscription"),
            request.ext("expressionType"),
            sub_version,
        ) {
            Ok(sub) => sub,
            Err(e) => {
                return respond(
                    rc::SUBSCRIPTION_PARSE_FAILED,
                    format!("parse the consumer's subscription failed: {e}"),
                )
            }
        }
    } else {
        let Some(group_info) = controller.consumers.group(&group) else {
            return respond(
                rc::SUBSCRIPTION_NOT_EXIST,
                format!("the consumer's group info not exist {FAQ_URL}"),
            );
        };
        let Some(sub) = group_info.subscriptions.get(&topic_name).cloned() else {
            return respond(
                rc::SUBSCRIPTION_NOT_EXIST,
                format!("the consumer's subscription not exist {FAQ_URL}"),
            );
        };
        if sub.sub_version < sub_version {
            return respond(
                rc::SUBSCRIPTION_NOT_LATEST,
                "the consumer's subscription not latest".into(),
            );
        }
        if !sub
            .expression_type
            .eq_ignore_ascii_case(EXPRESSION_TYPE_TAG)
        {
            return respond(
                rc::SYSTEM_ERROR,
                format!(
                    "The broker does not support consumer to filter message by {}",
                    sub.expression_type
                ),
            );
        }
        sub
    };

    let max_bytes = match max_msg_bytes {
        Some(b) if b > 0 => (b as usize).min(MAX_TRANSFER_BYTES),
        _ => MAX_TRANSFER_BYTES,
    };
    let result = controller.store.get_message(
        &topic_name,
        queue_id,
        queue_offset,
        max_msg_nums.max(0),
        max_bytes,
        &TagFilter(&subscription),
    );

    let code = get_status_code(result.status, queue_offset);
    let mut response = request.response(code, get_status_name(result.status).to_string());
    // RocketMQ: with slaveReadEnable, a consumer far behind (its data likely out of the page
    // cache) is sent to the group's whichBrokerWhenConsumeSlowly (default 1, the slave), one
    // that keeps up to the group's brokerId (default 0); without it, always to the master.
    // The client follows the suggestion on its next pull of this queue.
    let suggest = if !controller.config.slave_read_enable {
        MASTER_ID
    } else if result.suggest_pulling_from_slave {
        group_config.which_broker_when_consume_slowly
    } else {
        group_config.broker_id
    };
    response.set_ext("suggestWhichBrokerId", suggest);
    response.set_ext("nextBeginOffset", result.next_begin_offset);
    response.set_ext("minOffset", result.min_offset);
    response.set_ext("maxOffset", result.max_offset);

    // Commit the consumer's offset on the first execution only (RocketMQ stores it whether or
    // not the pull is suspended).
    if allow_suspend && sys_flag & FLAG_COMMIT_OFFSET != 0 && !controller.is_slave() {
        controller
            .offsets
            .commit(&group, &topic_name, queue_id, commit_offset);
    }

    match code {
        rc::SUCCESS => {
            let total: usize = result.messages.iter().map(|m| m.len()).sum();
            let mut body = BytesMut::with_capacity(total);
            for m in &result.messages {
                body.extend_from_slice(m);
            }
            debug_assert_eq!(body.len(), total);
            controller
                .stats
                .msg_get_total
                .fetch_add(result.messages.len() as u64, Ordering::Relaxed);
            response.body = body.freeze();
        }
        rc::PULL_NOT_FOUND if allow_suspend && sys_flag & FLAG_SUSPEND != 0 => {
            let timeout_ms = if controller.config.long_polling_enable {
                suspend_timeout_ms.max(0) as u64
            } else {
                controller.config.short_polling_time_ms
            };
            controller.hold.hold(
                &topic_name,
                queue_id,
                HeldPull {
                    channel: channel.clone(),
                    request: request.clone(),
                    queue_offset,
                    deadline: rt::now() + Duration::from_millis(timeout_ms),
                    subscription: Some(subscription),
                },
            );
            // A message may have arrived between the read and the park: check once more so it
            // cannot be missed until the timeout.
            let max_now = controller.store.max_offset_in_queue(&topic_name, queue_id);
            if max_now > queue_offset {
                controller.notify_message_arriving(&topic_name, queue_id, max_now, None);
            }
            return Ok(None);
        }
        _ => {}
    }
    Ok(Some(response))
}
