//! Admin requests (RocketMQ `AdminBrokerProcessor`): topics, subscription groups, offsets,
//! statistics and connections, runtime info.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{json_body, parse_body, topic_not_exist_remark, ProcessResult};
use crate::broker::subscription_group::SubscriptionGroupConfig;
use crate::broker::topic_config::validate_topic_name;
use crate::broker::{BrokerController, BROKER_VERSION_DESC};
use crate::message::decode_entry;
use crate::protocol::consumer::{
    ConsumeStats, MessageQueue, OffsetWrapper, TopicOffset, TopicStatsTable,
};
use crate::protocol::topic::TopicConfig;
use crate::remoting::command::APOGEE_VERSION;
use crate::remoting::response_code as rc;
use crate::remoting::RemotingCommand;
use crate::store::MatchAll;

fn ok(request: &RemotingCommand) -> RemotingCommand {
    request.response(rc::SUCCESS, None)
}

pub async fn update_and_create_topic(
    controller: &Arc<BrokerController>,
    request: &RemotingCommand,
) -> ProcessResult {
    let topic: String = request.required("topic")?;
    let read_queue_nums: i32 = request.required("readQueueNums")?;
    let write_queue_nums: i32 = request.required("writeQueueNums")?;
    let perm: i32 = request.required("perm")?;
    let topic_filter_type = request
        .ext("topicFilterType")
        .filter(|s| !s.is_empty())
        .unwrap_or("SINGLE_TAG")
        .to_string();
    let topic_sys_flag: i32 = request.optional("topicSysFlag")?.unwrap_or(0);
    let order = request.ext_bool("order", false);
    if let Err(reason) = validate_topic_name(&topic) {
        return Ok(Some(request.response(rc::INVALID_PARAMETER, reason)));
    }
    if topic == controller.config.broker_cluster_name {
        return Ok(Some(request.response(
            rc::SYSTEM_ERROR,
            format!("The specified topic[{topic}] is conflict with the cluster name"),
        )));
    }
    if read_queue_nums <= 0 || write_queue_nums <= 0 {
        return Ok(Some(request.response(
            rc::INVALID_PARAMETER,
            format!(
                "queue nums must be positive, got read {read_queue_nums} write {write_queue_nums}"
            ),
        )));
    }
    let mut tc = TopicConfig::new(&topic, read_queue_nums, write_queue_nums, perm);
    tc.topic_filter_type = topic_filter_type;
    tc.topic_sys_flag = topic_sys_flag;
    tc.order = order;
    if let Some(attrs) = request.ext("attributes").filter(|a| !a.is_empty()) {
        // 5.x "+k=v,+k2=v2": '+' adds, '-' removes.
        for part in attrs.split(',') {
            if let Some(kv) = part.strip_prefix('+') {
                if let Some((k, v)) = kv.split_once('=') {
                    tc.attributes.insert(k.to_string(), v.to_string());
                }
            }
        }
    }
    controller.topics.update(tc);
    controller.topics.on_changed().await?;
    Ok(Some(ok(request)))
}

pub async fn delete_topic(
    controller: &Arc<BrokerController>,
    request: &RemotingCommand,
) -> ProcessResult {
    let topic: String = request.required("topic")?;
    controller.topics.delete(&topic);
    controller.offsets.remove_topic(&topic);
    controller.store.delete_topics(std::slice::from_ref(&topic));
    controller.topics.on_changed().await?;
    controller.offsets.persist(true).await?;
    Ok(Some(ok(request)))
}

pub fn get_all_topic_config(
    controller: &Arc<BrokerController>,
    request: &RemotingCommand,
) -> ProcessResult {
    let wrapper = controller.topics.wrapper();
    let total = wrapper.topic_config_table.len();
    Ok(Some(
        ok(request)
            .with_ext("totalTopicNum", total)
            .with_body(json_body(&wrapper)),
    ))
}

/// GET_TOPIC_CONFIG (351): header `topic`, body = the TopicConfig wrapped as 5.x does
/// (`{"topicConfig":{...}}`).
pub fn get_topic_config(
    controller: &Arc<BrokerController>,
    request: &RemotingCommand,
) -> ProcessResult {
    let topic: String = request.required("topic")?;
    match controller.topics.select(&topic) {
        Some(tc) => {
            let body = serde_json::json!({ "topicConfig": tc });
            Ok(Some(ok(request).with_body(json_body(&body))))
        }
        None => Ok(Some(
            request.response(rc::TOPIC_NOT_EXIST, topic_not_exist_remark(&topic)),
        )),
    }
}

pub async fn update_and_create_subscription_group(
    controller: &Arc<BrokerController>,
    request: &RemotingCommand,
) -> ProcessResult {
    let cfg: SubscriptionGroupConfig = parse_body(request)?;
    if cfg.group_name.is_empty() {
        return Ok(Some(request.response(
            rc::INVALID_PARAMETER,
            "the subscription group name is empty".to_string(),
        )));
    }
    controller.groups.update(cfg);
    controller.groups.persist().await?;
    Ok(Some(ok(request)))
}

pub async fn delete_subscription_group(
    controller: &Arc<BrokerController>,
    request: &RemotingCommand,
) -> ProcessResult {
    let group: String = request.required("groupName")?;
    controller.groups.delete(&group);
    controller.groups.persist().await?;
    Ok(Some(ok(request)))
}

pub fn get_all_subscription_group(
    controller: &Arc<BrokerController>,
    request: &RemotingCommand,
) -> ProcessResult {
    Ok(Some(
        ok(request).with_body(json_body(&controller.groups.wrapper())),
    ))
}

pub fn get_all_consumer_offset(
    controller: &Arc<BrokerController>,
    request: &RemotingCommand,
) -> ProcessResult {
    Ok(Some(
        ok(request).with_body(json_body(&controller.offsets.wrapper())),
    ))
}

/// Store timestamp of the message at `queue_offset`, 0 if unreadable.
fn store_time_at(
    controller: &BrokerController,
    topic: &str,
    queue_id: i32,
    queue_offset: i64,
) -> i64 {
    if queue_offset < 0 {
        return 0;
    }
    let result = controller.store.get_message(
        topic,
        queue_id,
        queue_offset,
        1,
        64 * 1024 * 1024,
        &MatchAll,
    );
    result
        .messages
        .first()
        .and_then(|m| decode_entry(m, false).ok())
        .map(|(m, _)| m.store_timestamp)
        .unwrap_or(0)
}

fn message_queue(controller: &BrokerController, topic: &str, queue_id: i32) -> MessageQueue {
    MessageQueue {
        broker_name: controller.config.broker_name.clone(),
        queue_id,
        topic: topic.to_string(),
    }
}

pub fn get_topic_stats_info(
    controller: &Arc<BrokerController>,
    request: &RemotingCommand,
) -> ProcessResult {
    let topic: String = request.required("topic")?;
    let Some(tc) = controller.topics.select(&topic) else {
        return Ok(Some(
            request.response(rc::TOPIC_NOT_EXIST, topic_not_exist_remark(&topic)),
        ));
    };
    let mut table = TopicStatsTable::default();
    for queue_id in 0..tc.write_queue_nums {
        let min_offset = controller
            .store
            .min_offset_in_queue(&topic, queue_id)
            .max(0);
        let max_offset = controller
            .store
            .max_offset_in_queue(&topic, queue_id)
            .max(0);
        let last_update_timestamp = if max_offset > min_offset {
            store_time_at(controller, &topic, queue_id, max_offset - 1)
        } else {
            0
        };
        table.offset_table.insert(
            message_queue(controller, &topic, queue_id),
            TopicOffset {
                last_update_timestamp,
                max_offset,
                min_offset,
            },
        );
    }
    Ok(Some(ok(request).with_body(table.encode())))
}

pub fn get_consume_stats(
    controller: &Arc<BrokerController>,
    request: &RemotingCommand,
) -> ProcessResult {
    let group: String = request.required("consumerGroup")?;
    let topics: Vec<String> = match request.ext("topic").filter(|t| !t.is_empty()) {
        Some(t) => vec![t.to_string()],
        None => controller
            .offsets
            .topics_of_group(&group)
            .into_iter()
            .collect(),
    };
    let mut stats = ConsumeStats::default();
    for topic in topics {
        let Some(tc) = controller.topics.select(&topic) else {
            continue;
        };
        let committed: BTreeMap<i32, i64> = controller.offsets.query_all(&group, &topic);
        for queue_id in 0..tc.write_queue_nums {
            let broker_offset = controller
                .store
                .max_offset_in_queue(&topic, queue_id)
                .max(0);
            let consumer_offset = committed.get(&queue_id).copied().unwrap_or(0).max(0);
            let last_timestamp = if consumer_offset > 0 {
                store_time_at(controller, &topic, queue_id, consumer_offset - 1)
            } else {
                0
            };
            stats.offset_table.insert(
                message_queue(controller, &topic, queue_id),
                OffsetWrapper {
                    broker_offset,
                    consumer_offset,
                    last_timestamp,
                },
            );
        }
    }
    Ok(Some(ok(request).with_body(stats.encode())))
}

pub fn get_consumer_connection_list(
    controller: &Arc<BrokerController>,
    request: &RemotingCommand,
) -> ProcessResult {
    let group: String = request.required("consumerGroup")?;
    match controller.consumers.group(&group) {
        Some(info) if !info.channels.is_empty() => {
            Ok(Some(ok(request).with_body(json_body(&info.connection()))))
        }
        _ => Ok(Some(request.response(
            rc::CONSUMER_NOT_ONLINE,
            format!("the consumer group[{group}] not online"),
        ))),
    }
}

pub fn get_producer_connection_list(
    controller: &Arc<BrokerController>,
    request: &RemotingCommand,
) -> ProcessResult {
    let group: String = request.required("producerGroup")?;
    match controller.producers.connection(&group) {
        Some(conn) => Ok(Some(ok(request).with_body(json_body(&conn)))),
        None => Ok(Some(request.response(
            rc::SYSTEM_ERROR,
            format!("the producer group[{group}] not exist"),
        ))),
    }
}

pub fn get_broker_runtime_info(
    controller: &Arc<BrokerController>,
    request: &RemotingCommand,
) -> ProcessResult {
    let mut table: BTreeMap<String, String> = controller.store.runtime_info().into_iter().collect();
    let mut put = |k: &str, v: String| {
        table.insert(k.to_string(), v);
    };
    put("brokerVersionDesc", BROKER_VERSION_DESC.to_string());
    put("brokerVersion", APOGEE_VERSION.to_string());
    put("bootTimestamp", controller.boot_timestamp_ms().to_string());
    put(
        "msgPutTotalTodayNow",
        controller
            .stats
            .msg_put_total
            .load(Ordering::Relaxed)
            .to_string(),
    );
    put(
        "msgGetTotalTodayNow",
        controller
            .stats
            .msg_get_total
            .load(Ordering::Relaxed)
            .to_string(),
    );
    put("msgPutTotalYesterdayMorning", "0".to_string());
    put("msgGetTotalYesterdayMorning", "0".to_string());
    put("msgPutTotalTodayMorning", "0".to_string());
    put("msgGetTotalTodayMorning", "0".to_string());
    put("sendThreadPoolQueueSize", "0".to_string());
    put("sendThreadPoolQueueCapacity", "10000".to_string());
    put("pullThreadPoolQueueSize", "0".to_string());
    put("pullThreadPoolQueueCapacity", "100000".to_string());
    put("pullHeldRequests", controller.held_pull_count().to_string());
    // Not in RocketMQ's table (its tools read the role from the broker config); mqadmin
    // clusterList shows it next to the replication lag.
    let role = match controller.config.store.broker_role {
        crate::store::BrokerRole::AsyncMaster => "ASYNC_MASTER",
        crate::store::BrokerRole::SyncMaster => "SYNC_MASTER",
        crate::store::BrokerRole::Slave => "SLAVE",
    };
    put("brokerRole", role.to_string());
    put("brokerId", controller.config.broker_id.to_string());
    if let Some(ha) = controller.ha.get() {
        for (k, v) in ha.runtime_info(controller.store.commitlog_max_offset()) {
            put(&k, v);
        }
    }
    put(
        "commitLogMinOffset",
        controller.store.commitlog_min_offset().to_string(),
    );
    put(
        "commitLogMaxOffset",
        controller.store.commitlog_max_offset().to_string(),
    );
    put("brokerActive", "true".to_string());
    let body = serde_json::json!({ "table": table });
    Ok(Some(ok(request).with_body(json_body(&body))))
}
