//! Client membership: HEART_BEAT (34), UNREGISTER_CLIENT (35), GET_CONSUMER_LIST_BY_GROUP (38),
//! LOCK_BATCH_MQ (41), UNLOCK_BATCH_MQ (42) (RocketMQ `ClientManageProcessor`,
//! `ConsumerManageProcessor`, `AdminBrokerProcessor.lockBatchMQ`).

use std::sync::Arc;

use super::{json_body, parse_body, ProcessResult};
use crate::broker::channel::ClientChannel;
use crate::broker::consumer_manager::ClientChannelInfo;
use crate::broker::BrokerController;
use crate::protocol::consumer::{ConsumerListBody, LockBatchRequestBody, LockBatchResponseBody};
use crate::protocol::heartbeat::HeartbeatData;
use crate::protocol::topic::{retry_topic, PERM_READ, PERM_WRITE};
use crate::remoting::response_code as rc;
use crate::remoting::{LanguageCode, RemotingCommand};
use crate::rt;

fn language_name(language: LanguageCode) -> String {
    let name = match language {
        LanguageCode::Java => "JAVA",
        LanguageCode::Cpp => "CPP",
        LanguageCode::Dotnet => "DOTNET",
        LanguageCode::Python => "PYTHON",
        LanguageCode::Delphi => "DELPHI",
        LanguageCode::Erlang => "ERLANG",
        LanguageCode::Ruby => "RUBY",
        LanguageCode::Other => "OTHER",
        LanguageCode::Http => "HTTP",
        LanguageCode::Go => "GO",
        LanguageCode::Php => "PHP",
        LanguageCode::Oms => "OMS",
        LanguageCode::Rust => "RUST",
        LanguageCode::NodeJs => "NODE_JS",
    };
    name.to_string()
}

pub async fn heart_beat(
    controller: &Arc<BrokerController>,
    channel: &ClientChannel,
    request: &RemotingCommand,
) -> ProcessResult {
    let heartbeat: HeartbeatData = parse_body(request)?;
    let now = rt::now_ms();
    let info = ClientChannelInfo {
        channel: channel.clone(),
        client_id: heartbeat.client_id.clone(),
        language: language_name(request.language),
        version: request.version,
        last_update_ms: now,
    };
    let mut groups_changed = false;
    let mut topics_changed = false;
    for consumer in &heartbeat.consumer_data_set {
        let group_config = match controller.groups.find_or_create(&consumer.group_name) {
            Some((cfg, created)) => {
                groups_changed |= created;
                Some(cfg)
            }
            None => None,
        };
        let notify_enabled = group_config
            .as_ref()
            .is_none_or(|g| g.notify_consumer_ids_changed_enable);
        if let Some(cfg) = &group_config {
            let (_, created) = controller.topics.create_topic_in_send_back(
                &retry_topic(&consumer.group_name),
                cfg.retry_queue_nums.max(1),
                PERM_READ | PERM_WRITE,
                0,
            );
            topics_changed |= created;
        }
        let changed = controller.consumers.register(
            &consumer.group_name,
            info.clone(),
            &consumer.consume_type,
            &consumer.message_model,
            &consumer.consume_from_where,
            &consumer.subscription_data_set,
        );
        if changed && notify_enabled {
            if let Some(group) = controller.consumers.group(&consumer.group_name) {
                controller.notify_consumer_ids_changed(&consumer.group_name, &group.all_channels());
            }
        }
    }
    for producer in &heartbeat.producer_data_set {
        controller
            .producers
            .register(&producer.group_name, info.clone());
    }
    if groups_changed {
        if let Err(e) = controller.groups.persist().await {
            tracing::warn!("persisting subscription groups failed: {e}");
        }
    }
    if topics_changed {
        if let Err(e) = controller.topics.on_changed().await {
            tracing::warn!("persisting topics failed: {e}");
        }
    }
    Ok(Some(request.response(rc::SUCCESS, None)))
}

pub fn unregister_client(
    controller: &Arc<BrokerController>,
    channel: &ClientChannel,
    request: &RemotingCommand,
) -> ProcessResult {
    let _client_id: String = request.required("clientID")?;
    if let Some(group) = request.ext("producerGroup").filter(|g| !g.is_empty()) {
        controller.producers.unregister(group, channel.id());
    }
    if let Some(group) = request.ext("consumerGroup").filter(|g| !g.is_empty()) {
        if let Some(change) = controller.consumers.unregister(group, channel.id()) {
            let enabled = controller
                .groups
                .get(group)
                .is_none_or(|g| g.notify_consumer_ids_changed_enable);
            if enabled {
                controller.notify_consumer_ids_changed(&change.group, &change.notify);
            }
        }
    }
    Ok(Some(request.response(rc::SUCCESS, None)))
}

pub fn get_consumer_list_by_group(
    controller: &Arc<BrokerController>,
    request: &RemotingCommand,
) -> ProcessResult {
    let group: String = request.required("consumerGroup")?;
    let ids = controller
        .consumers
        .group(&group)
        .map(|g| g.client_ids())
        .unwrap_or_default();
    if ids.is_empty() {
        return Ok(Some(request.response(
            rc::SYSTEM_ERROR,
            format!("no consumer for this group, {group}"),
        )));
    }
    let body = ConsumerListBody {
        consumer_id_list: ids,
    };
    Ok(Some(
        request
            .response(rc::SUCCESS, None)
            .with_body(json_body(&body)),
    ))
}

pub fn lock_batch_mq(
    controller: &Arc<BrokerController>,
    request: &RemotingCommand,
) -> ProcessResult {
    let body: LockBatchRequestBody = parse_body(request)?;
    let locked = controller.locks.try_lock_batch(
        &body.consumer_group,
        &body.mq_set,
        &body.client_id,
        rt::now_ms(),
    );
    let response = LockBatchResponseBody {
        lock_ok_mq_set: locked,
    };
    Ok(Some(
        request
            .response(rc::SUCCESS, None)
            .with_body(json_body(&response)),
    ))
}

pub fn unlock_batch_mq(
    controller: &Arc<BrokerController>,
    request: &RemotingCommand,
) -> ProcessResult {
    let body: LockBatchRequestBody = parse_body(request)?;
    controller
        .locks
        .unlock_batch(&body.consumer_group, &body.mq_set, &body.client_id);
    Ok(Some(request.response(rc::SUCCESS, None)))
}
