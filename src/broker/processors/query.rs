//! QUERY_MESSAGE (12) and VIEW_MESSAGE_BY_ID (33) (RocketMQ `QueryMessageProcessor`).

use std::sync::Arc;

use bytes::BytesMut;

use super::ProcessResult;
use crate::broker::BrokerController;
use crate::remoting::response_code as rc;
use crate::remoting::RemotingCommand;

/// RocketMQ `defaultQueryMaxNum`.
pub const DEFAULT_QUERY_MAX_NUM: usize = 32;
/// ExtField marking a query by UNIQ_KEY.
pub const UNIQUE_KEY_QUERY: &str = "_UNIQUE_KEY_QUERY";

pub fn query_message(
    controller: &Arc<BrokerController>,
    request: &RemotingCommand,
) -> ProcessResult {
    let topic: String = request.required("topic")?;
    let key: String = request.required("key")?;
    let mut max_num: i64 = request.required("maxNum")?;
    let begin_timestamp: i64 = request.required("beginTimestamp")?;
    let end_timestamp: i64 = request.required("endTimestamp")?;
    if request.ext_bool(UNIQUE_KEY_QUERY, false) {
        max_num = DEFAULT_QUERY_MAX_NUM as i64;
    }
    let result = controller.store.query_message(
        &topic,
        &key,
        max_num.clamp(0, 64 * 1024) as usize,
        begin_timestamp,
        end_timestamp,
    );
    let mut response = request
        .response(rc::SUCCESS, None)
        .with_ext(
            "indexLastUpdateTimestamp",
            result.index_last_update_timestamp,
        )
        .with_ext(
            "indexLastUpdatePhyoffset",
            result.index_last_update_phyoffset,
        );
    if result.messages.is_empty() {
        response.code = rc::QUERY_NOT_FOUND;
        response.remark = Some("can not find message, maybe time range not correct".to_string());
        return Ok(Some(response));
    }
    let mut body = BytesMut::new();
    for m in &result.messages {
        body.extend_from_slice(m);
    }
    response.body = body.freeze();
    Ok(Some(response))
}

pub fn view_message_by_id(
    controller: &Arc<BrokerController>,
    request: &RemotingCommand,
) -> ProcessResult {
    let commitlog_offset: i64 = request.required("offset")?;
    match controller.store.look_message_by_offset(commitlog_offset) {
        Some(entry) => Ok(Some(request.response(rc::SUCCESS, None).with_body(entry))),
        None => Ok(Some(request.response(
            rc::SYSTEM_ERROR,
            format!("can not find message by the offset, {commitlog_offset}"),
        ))),
    }
}
