//! Offset requests: QUERY_CONSUMER_OFFSET (14), UPDATE_CONSUMER_OFFSET (15), GET_MAX_OFFSET (30),
//! GET_MIN_OFFSET (31), GET_EARLIEST_MSG_STORETIME (32), SEARCH_OFFSET_BY_TIMESTAMP (29).

use std::sync::Arc;

use super::ProcessResult;
use crate::broker::BrokerController;
use crate::remoting::response_code as rc;
use crate::remoting::RemotingCommand;
use crate::store::BoundaryType;

pub fn query_consumer_offset(
    controller: &Arc<BrokerController>,
    request: &RemotingCommand,
) -> ProcessResult {
    let group: String = request.required("consumerGroup")?;
    let topic: String = request.required("topic")?;
    let queue_id: i32 = request.required("queueId")?;
    let set_zero_if_not_found = request.ext_bool("setZeroIfNotFound", true);
    if let Some(offset) = controller.offsets.query(&group, &topic, queue_id) {
        if offset >= 0 {
            return Ok(Some(
                request
                    .response(rc::SUCCESS, None)
                    .with_ext("offset", offset),
            ));
        }
    }
    // Never committed: a group starting on a queue whose first message is still present
    // starts at 0 (RocketMQ answers 0 when minOffset <= 0 and the data is in memory).
    let min_offset = controller.store.min_offset_in_queue(&topic, queue_id);
    if set_zero_if_not_found && min_offset <= 0 {
        return Ok(Some(
            request.response(rc::SUCCESS, None).with_ext("offset", 0),
        ));
    }
    Ok(Some(request.response(
        rc::QUERY_NOT_FOUND,
        "Not found, V3_0_6_SNAPSHOT maybe this group consumer boot first".to_string(),
    )))
}

pub fn update_consumer_offset(
    controller: &Arc<BrokerController>,
    request: &RemotingCommand,
) -> ProcessResult {
    let group: String = request.required("consumerGroup")?;
    let topic: String = request.required("topic")?;
    let queue_id: i32 = request.required("queueId")?;
    let commit_offset: i64 = request.required("commitOffset")?;
    if !controller.topics.contains(&topic) {
        return Ok(Some(request.response(
            rc::TOPIC_NOT_EXIST,
            super::topic_not_exist_remark(&topic),
        )));
    }
    // A slave pushing back an offset committed on it during an outage (slave_sync): apply it
    // only if it moves the offset forward, never undoing a consumer's commit here.
    if request.ext_bool(crate::broker::slave_sync::ONLY_FORWARD_FIELD, false) {
        controller
            .offsets
            .commit_forward(&group, &topic, queue_id, commit_offset);
    } else {
        controller
            .offsets
            .commit(&group, &topic, queue_id, commit_offset);
    }
    Ok(Some(request.response(rc::SUCCESS, None)))
}

/// GET_MAX_OFFSET / GET_MIN_OFFSET: `topic!, queueId!` → header `offset`.
fn queue_offset_response(
    controller: &Arc<BrokerController>,
    request: &RemotingCommand,
    read: fn(&crate::store::MessageStore, &str, i32) -> i64,
) -> ProcessResult {
    let topic: String = request.required("topic")?;
    let queue_id: i32 = request.required("queueId")?;
    let offset = read(&controller.store, &topic, queue_id);
    Ok(Some(
        request
            .response(rc::SUCCESS, None)
            .with_ext("offset", offset),
    ))
}

pub fn get_max_offset(
    controller: &Arc<BrokerController>,
    request: &RemotingCommand,
) -> ProcessResult {
    queue_offset_response(controller, request, |store, topic, queue_id| {
        store.max_offset_in_queue(topic, queue_id)
    })
}

pub fn get_min_offset(
    controller: &Arc<BrokerController>,
    request: &RemotingCommand,
) -> ProcessResult {
    queue_offset_response(controller, request, |store, topic, queue_id| {
        store.min_offset_in_queue(topic, queue_id)
    })
}

pub fn get_earliest_msg_storetime(
    controller: &Arc<BrokerController>,
    request: &RemotingCommand,
) -> ProcessResult {
    let topic: String = request.required("topic")?;
    let queue_id: i32 = request.required("queueId")?;
    // RocketMQ answers -1 when the queue has no message.
    let timestamp = controller
        .store
        .earliest_message_time(&topic, queue_id)
        .unwrap_or(-1);
    Ok(Some(
        request
            .response(rc::SUCCESS, None)
            .with_ext("timestamp", timestamp),
    ))
}

pub fn search_offset_by_timestamp(
    controller: &Arc<BrokerController>,
    request: &RemotingCommand,
) -> ProcessResult {
    let topic: String = request.required("topic")?;
    let queue_id: i32 = request.required("queueId")?;
    let timestamp: i64 = request.required("timestamp")?;
    let boundary = match request.ext("boundaryType") {
        Some(b) if b.eq_ignore_ascii_case("upper") => BoundaryType::Upper,
        _ => BoundaryType::Lower,
    };
    let offset = controller
        .store
        .offset_in_queue_by_time(&topic, queue_id, timestamp, boundary);
    Ok(Some(
        request
            .response(rc::SUCCESS, None)
            .with_ext("offset", offset),
    ))
}
