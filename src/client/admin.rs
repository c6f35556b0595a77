//! Admin operations (what mqadmin's verbs do), as methods of [`MqClient`].

use std::collections::BTreeMap;
use std::net::SocketAddr;

use super::body::{
    readable_queues, ClusterInfo, ClusterInfoExt, ConsumeStats, KVTable, MessageQueue, TopicList,
    TopicRouteData, TopicStatsTable,
};
use super::mq_client::{check_success, header_i64, parse_body, MqClient};
use super::ClientError;
use crate::message::{self, MessageExt};
use crate::protocol::topic::{TopicConfig, AUTO_CREATE_TOPIC_KEY_TOPIC};
use crate::remoting::{request_code, response_code, RemotingCommand};
use crate::rt;

/// One broker address of the cluster list with its runtime stats.
#[derive(Debug, Clone)]
pub struct ClusterBroker {
    pub cluster: String,
    pub broker_name: String,
    pub broker_id: i64,
    pub addr: String,
    /// GET_BROKER_RUNTIME_INFO, or the error text if the broker did not answer.
    pub runtime: Result<BTreeMap<String, String>, String>,
}

impl ClusterBroker {
    /// `brokerRole` from the runtime info (ASYNC_MASTER, SYNC_MASTER, SLAVE); without it (an
    /// older or foreign broker, or no answer) guessed from the broker id, as RocketMQ's
    /// tools do: 0 is the master.
    pub fn role(&self) -> String {
        match self
            .runtime
            .as_ref()
            .ok()
            .and_then(|kv| kv.get("brokerRole"))
        {
            Some(role) => role.clone(),
            None if self.broker_id == 0 => "MASTER".to_string(),
            None => "SLAVE".to_string(),
        }
    }

    /// Replication lag in bytes: on a master, its CommitLog max offset minus the offset its
    /// slave acknowledged (`haSlaveFallBehindBytes`); on a slave, the master offset it last saw
    /// minus its own max offset. None when unknown: no answer, or a master with no slave
    /// connected (nothing replicates).
    pub fn replication_lag_bytes(&self) -> Option<i64> {
        let kv = self.runtime.as_ref().ok()?;
        let num = |k: &str| kv.get(k).and_then(|v| v.parse::<i64>().ok());
        if self.broker_id == 0 && num("haConnectionCount").unwrap_or(0) == 0 {
            return None;
        }
        num("haSlaveFallBehindBytes")
    }
}

/// One queue of `topicStatus`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueStatus {
    pub queue: MessageQueue,
    pub min_offset: i64,
    pub max_offset: i64,
    pub last_update_timestamp: i64,
}

/// One queue of `consumerProgress`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueProgressRow {
    pub queue: MessageQueue,
    pub broker_offset: i64,
    pub consumer_offset: i64,
    pub last_timestamp: i64,
}

impl QueueProgressRow {
    pub fn diff(&self) -> i64 {
        self.broker_offset - self.consumer_offset
    }
}

#[derive(Debug, Clone, Default)]
pub struct ConsumerProgress {
    pub rows: Vec<QueueProgressRow>,
    pub consume_tps: f64,
}

impl ConsumerProgress {
    pub fn diff_total(&self) -> i64 {
        self.rows.iter().map(QueueProgressRow::diff).sum()
    }
}

/// Outcome of wipe/add write perm on one name server.
#[derive(Debug)]
pub struct NamesrvPermResult {
    pub namesrv: String,
    pub result: Result<i64, ClientError>,
}

pub fn update_topic_request(config: &TopicConfig) -> RemotingCommand {
    RemotingCommand::request(request_code::UPDATE_AND_CREATE_TOPIC)
        .with_ext("topic", &config.topic_name)
        .with_ext("defaultTopic", AUTO_CREATE_TOPIC_KEY_TOPIC)
        .with_ext("readQueueNums", config.read_queue_nums)
        .with_ext("writeQueueNums", config.write_queue_nums)
        .with_ext("perm", config.perm)
        .with_ext("topicFilterType", &config.topic_filter_type)
        .with_ext("topicSysFlag", config.topic_sys_flag)
        .with_ext("order", config.order)
}

pub fn query_message_request(
    topic: &str,
    key: &str,
    max_num: i32,
    begin_ms: i64,
    end_ms: i64,
) -> RemotingCommand {
    RemotingCommand::request(request_code::QUERY_MESSAGE)
        .with_ext("topic", topic)
        .with_ext("key", key)
        .with_ext("maxNum", max_num)
        .with_ext("beginTimestamp", begin_ms)
        .with_ext("endTimestamp", end_ms)
}

/// Address string of a decoded store host.
pub fn addr_string(addr: SocketAddr) -> String {
    addr.to_string()
}

impl MqClient {
    /// GET_BROKER_RUNTIME_INFO of one broker.
    pub async fn broker_runtime_info(
        &self,
        addr: &str,
    ) -> Result<BTreeMap<String, String>, ClientError> {
        let op = "GET_BROKER_RUNTIME_INFO";
        let response = self
            .invoke_broker(
                addr,
                op,
                RemotingCommand::request(request_code::GET_BROKER_RUNTIME_INFO),
            )
            .await?;
        let table: KVTable = parse_body("broker", addr, op, &response.body)?;
        Ok(table.table)
    }

    /// Cluster info plus each broker address's runtime stats (sorted cluster, name, id).
    pub async fn cluster_list(&self) -> Result<Vec<ClusterBroker>, ClientError> {
        let info = self.cluster_info().await?;
        let mut out = Vec::new();
        for (cluster, names) in &info.cluster_addr_table {
            for name in names {
                let Some(data) = info.broker_addr_table.get(name) else {
                    continue;
                };
                for (id, addr) in &data.broker_addrs {
                    let runtime = self
                        .broker_runtime_info(addr)
                        .await
                        .map_err(|e| e.to_string());
                    out.push(ClusterBroker {
                        cluster: cluster.clone(),
                        broker_name: name.clone(),
                        broker_id: *id,
                        addr: addr.clone(),
                        runtime,
                    });
                }
            }
        }
        Ok(out)
    }

    /// GET_ALL_TOPIC_LIST_FROM_NAMESERVER.
    pub async fn topic_list(&self) -> Result<Vec<String>, ClientError> {
        let op = "GET_ALL_TOPIC_LIST_FROM_NAMESERVER";
        let (addr, response) = self
            .invoke_namesrv_ok(
                op,
                RemotingCommand::request(request_code::GET_ALL_TOPIC_LIST_FROM_NAMESERVER),
            )
            .await?;
        let list: TopicList = parse_body("namesrv", &addr, op, &response.body)?;
        // A BTreeSet: already sorted and unique.
        Ok(list.topic_list.into_iter().collect())
    }

    /// UPDATE_AND_CREATE_TOPIC on one broker.
    pub async fn create_topic_on_broker(
        &self,
        addr: &str,
        config: &TopicConfig,
    ) -> Result<(), ClientError> {
        let op = format!("UPDATE_AND_CREATE_TOPIC {}", config.topic_name);
        self.invoke_broker(addr, &op, update_topic_request(config))
            .await?;
        Ok(())
    }

    /// UPDATE_AND_CREATE_TOPIC on every master of `cluster`; returns the addresses updated.
    pub async fn create_topic_on_cluster(
        &self,
        cluster: &str,
        config: &TopicConfig,
    ) -> Result<Vec<String>, ClientError> {
        let info = self.cluster_info().await?;
        let masters = info
            .master_addrs(cluster)
            .ok_or_else(|| ClientError::ClusterNotFound(cluster.to_string()))?;
        if masters.is_empty() {
            return Err(ClientError::ClusterNotFound(format!(
                "{cluster} (no master broker)"
            )));
        }
        let mut done = Vec::new();
        for (_, addr) in masters {
            self.create_topic_on_broker(&addr, config).await?;
            done.push(addr);
        }
        self.invalidate_route(&config.topic_name);
        Ok(done)
    }

    /// DELETE_TOPIC_IN_BROKER on every master of `cluster`, then DELETE_TOPIC_IN_NAMESRV on
    /// every name server.
    pub async fn delete_topic(&self, topic: &str, cluster: &str) -> Result<(), ClientError> {
        let info = self.cluster_info().await?;
        let masters = info
            .master_addrs(cluster)
            .ok_or_else(|| ClientError::ClusterNotFound(cluster.to_string()))?;
        for (_, addr) in masters {
            let request = RemotingCommand::request(request_code::DELETE_TOPIC_IN_BROKER)
                .with_ext("topic", topic);
            self.invoke_broker(&addr, &format!("DELETE_TOPIC_IN_BROKER {topic}"), request)
                .await?;
        }
        for namesrv in self.config().namesrv_addrs.clone() {
            let request = RemotingCommand::request(request_code::DELETE_TOPIC_IN_NAMESRV)
                .with_ext("topic", topic)
                .with_ext("clusterName", cluster);
            self.invoke_one_namesrv(
                &namesrv,
                &format!("DELETE_TOPIC_IN_NAMESRV {topic}"),
                request,
            )
            .await?;
        }
        self.invalidate_route(topic);
        Ok(())
    }

    /// Per-queue min/max offsets and last update time. Uses GET_TOPIC_STATS_INFO, falling
    /// back to GET_MIN/MAX_OFFSET per queue (last update unknown, 0) if unsupported.
    pub async fn topic_status(&self, topic: &str) -> Result<Vec<QueueStatus>, ClientError> {
        let route = self.fetch_topic_route(topic).await?;
        let mut out = Vec::new();
        let mut brokers: Vec<_> = route.broker_datas.iter().collect();
        brokers.sort_by(|a, b| a.broker_name.cmp(&b.broker_name));
        for bd in brokers {
            let Some(addr) = bd.master_addr() else {
                continue;
            };
            let op = format!("GET_TOPIC_STATS_INFO {topic}");
            let request = RemotingCommand::request(request_code::GET_TOPIC_STATS_INFO)
                .with_ext("topic", topic);
            let response = self
                .invoke_broker_raw(addr, &op, request, self.rpc_timeout_ms())
                .await?;
            if response.code == response_code::REQUEST_CODE_NOT_SUPPORTED {
                out.extend(
                    self.topic_status_by_offsets(topic, &route, &bd.broker_name, addr)
                        .await?,
                );
                continue;
            }
            check_success("broker", addr, &op, &response)?;
            let bad = |detail: String| ClientError::BadResponse {
                role: "broker",
                addr: addr.to_string(),
                op: op.clone(),
                detail,
            };
            let text = std::str::from_utf8(&response.body).map_err(|e| bad(e.to_string()))?;
            let stats = TopicStatsTable::decode(text).map_err(|e| bad(e.to_string()))?;
            out.extend(
                stats
                    .offset_table
                    .into_iter()
                    .map(|(queue, o)| QueueStatus {
                        queue,
                        min_offset: o.min_offset,
                        max_offset: o.max_offset,
                        last_update_timestamp: o.last_update_timestamp,
                    }),
            );
        }
        out.sort_by(|a, b| a.queue.cmp(&b.queue));
        Ok(out)
    }

    async fn topic_status_by_offsets(
        &self,
        topic: &str,
        route: &TopicRouteData,
        broker_name: &str,
        addr: &str,
    ) -> Result<Vec<QueueStatus>, ClientError> {
        let mut out = Vec::new();
        for mq in readable_queues(topic, route)
            .into_iter()
            .filter(|q| q.broker_name == broker_name)
        {
            let min_offset = self.get_min_offset(addr, &mq).await?;
            let max_offset = self.get_max_offset(addr, &mq).await?;
            out.push(QueueStatus {
                queue: mq,
                min_offset,
                max_offset,
                last_update_timestamp: 0,
            });
        }
        Ok(out)
    }

    /// Consumer progress of `group`: GET_CONSUME_STATS per broker of the topic (or of the
    /// group's retry topic when no topic is given), falling back to per-queue
    /// QUERY_CONSUMER_OFFSET vs GET_MAX_OFFSET.
    pub async fn consumer_progress(
        &self,
        group: &str,
        topic: Option<&str>,
    ) -> Result<ConsumerProgress, ClientError> {
        let route_topic = match topic {
            Some(t) => t.to_string(),
            None => crate::protocol::topic::retry_topic(group),
        };
        let route = self.fetch_topic_route(&route_topic).await?;
        let mut progress = ConsumerProgress::default();
        let mut brokers: Vec<_> = route.broker_datas.iter().collect();
        brokers.sort_by(|a, b| a.broker_name.cmp(&b.broker_name));
        for bd in brokers {
            let Some(addr) = bd.master_addr() else {
                continue;
            };
            let op = format!("GET_CONSUME_STATS {group}");
            let mut request = RemotingCommand::request(request_code::GET_CONSUME_STATS)
                .with_ext("consumerGroup", group);
            if let Some(t) = topic {
                request.set_ext("topic", t);
            }
            let response = self
                .invoke_broker_raw(addr, &op, request, self.rpc_timeout_ms())
                .await?;
            if response.code == response_code::REQUEST_CODE_NOT_SUPPORTED {
                let Some(t) = topic else {
                    return Err(ClientError::InvalidArgument(format!(
                        "broker {addr} does not support GET_CONSUME_STATS: give the topic (-t)"
                    )));
                };
                for mq in readable_queues(t, &route)
                    .into_iter()
                    .filter(|q| q.broker_name == bd.broker_name)
                {
                    let broker_offset = self.get_max_offset(addr, &mq).await?;
                    let consumer_offset = self
                        .query_consumer_offset(addr, group, &mq)
                        .await?
                        .unwrap_or(-1);
                    progress.rows.push(QueueProgressRow {
                        queue: mq,
                        broker_offset,
                        consumer_offset: consumer_offset.max(0),
                        last_timestamp: 0,
                    });
                }
                continue;
            }
            check_success("broker", addr, &op, &response)?;
            let bad = |detail: String| ClientError::BadResponse {
                role: "broker",
                addr: addr.to_string(),
                op: op.clone(),
                detail,
            };
            let text = std::str::from_utf8(&response.body).map_err(|e| bad(e.to_string()))?;
            let stats = ConsumeStats::decode(text).map_err(|e| bad(e.to_string()))?;
            progress.consume_tps += stats.consume_tps;
            progress
                .rows
                .extend(
                    stats
                        .offset_table
                        .into_iter()
                        .map(|(queue, o)| QueueProgressRow {
                            queue,
                            broker_offset: o.broker_offset,
                            consumer_offset: o.consumer_offset,
                            last_timestamp: o.last_timestamp,
                        }),
                );
        }
        progress.rows.sort_by(|a, b| a.queue.cmp(&b.queue));
        Ok(progress)
    }

    async fn change_write_perm(
        &self,
        code: i32,
        header: &str,
        broker_name: &str,
    ) -> Vec<NamesrvPermResult> {
        let mut out = Vec::new();
        let op = if code == request_code::WIPE_WRITE_PERM_OF_BROKER {
            "WIPE_WRITE_PERM_OF_BROKER"
        } else {
            "ADD_WRITE_PERM_OF_BROKER"
        };
        for namesrv in self.config().namesrv_addrs.clone() {
            let request = RemotingCommand::request(code).with_ext("brokerName", broker_name);
            let result = match self.invoke_one_namesrv(&namesrv, op, request).await {
                Ok(response) => header_i64("namesrv", &namesrv, op, &response, header),
                Err(e) => Err(e),
            };
            out.push(NamesrvPermResult { namesrv, result });
        }
        out
    }

    /// WIPE_WRITE_PERM_OF_BROKER on every name server: (namesrv, wiped topic count).
    pub async fn wipe_write_perm(&self, broker_name: &str) -> Vec<NamesrvPermResult> {
        self.change_write_perm(
            request_code::WIPE_WRITE_PERM_OF_BROKER,
            "wipeTopicCount",
            broker_name,
        )
        .await
    }

    /// ADD_WRITE_PERM_OF_BROKER on every name server: (namesrv, topic count).
    pub async fn add_write_perm(&self, broker_name: &str) -> Vec<NamesrvPermResult> {
        self.change_write_perm(
            request_code::ADD_WRITE_PERM_OF_BROKER,
            "addTopicCount",
            broker_name,
        )
        .await
    }

    /// VIEW_MESSAGE_BY_ID: decodes the offset msgId into the store host and CommitLog
    /// offset, and reads that entry from the broker listening at the store host.
    pub async fn view_message(&self, offset_msg_id: &str) -> Result<MessageExt, ClientError> {
        let (store_host, commitlog_offset) = decode_offset_msg_id(offset_msg_id)?;
        let addr = addr_string(store_host);
        let op = format!("VIEW_MESSAGE_BY_ID {offset_msg_id}");
        let request = RemotingCommand::request(request_code::VIEW_MESSAGE_BY_ID)
            .with_ext("offset", commitlog_offset);
        let response = self.invoke_broker(&addr, &op, request).await?;
        let mut messages =
            message::decode_entries(&response.body).map_err(|detail| ClientError::BadResponse {
                role: "broker",
                addr: addr.clone(),
                op: op.clone(),
                detail,
            })?;
        super::broker_ops::decompress_messages(&mut messages).map_err(|detail| {
            ClientError::BadResponse {
                role: "broker",
                addr: addr.clone(),
                op: op.clone(),
                detail,
            }
        })?;
        let msg = messages.into_iter().next().ok_or_else(|| {
            ClientError::MessageNotFound(format!("{offset_msg_id} (empty body from {addr})"))
        })?;
        if msg.commitlog_offset != commitlog_offset {
            return Err(ClientError::BadResponse {
                role: "broker",
                addr,
                op,
                detail: format!(
                    "asked for commitlog offset {commitlog_offset}, got {}",
                    msg.commitlog_offset
                ),
            });
        }
        Ok(msg)
    }

    /// Java `viewMessage(topic, msgId)`: the id as an offset msgId first, then (with a topic)
    /// as a UNIQ_KEY.
    pub async fn view_message_by_any_id(
        &self,
        topic: Option<&str>,
        msg_id: &str,
    ) -> Result<MessageExt, ClientError> {
        let by_offset = self.view_message(msg_id).await;
        let Some(topic) = topic else {
            return by_offset;
        };
        match by_offset {
            Ok(m) if m.topic == topic => Ok(m),
            other => {
                let mut found = self.query_message_by_uniq_key(topic, msg_id).await?;
                match found.pop() {
                    Some(m) => Ok(m),
                    None => match other {
                        Err(e) => Err(e),
                        Ok(_) => Err(ClientError::MessageNotFound(format!(
                            "{msg_id} in topic {topic}"
                        ))),
                    },
                }
            }
        }
    }

    /// QUERY_MESSAGE with `_UNIQUE_KEY_QUERY=true` on every master of the topic, keeping
    /// messages whose UNIQ_KEY is `uniq_key` (several if a retried send stored it twice).
    pub async fn query_message_by_uniq_key(
        &self,
        topic: &str,
        uniq_key: &str,
    ) -> Result<Vec<MessageExt>, ClientError> {
        let mut out = self
            .query_index(topic, uniq_key, 32, 0, i64::MAX, true)
            .await?;
        out.retain(|m| m.uniq_key() == Some(uniq_key));
        Ok(out)
    }

    /// QUERY_MESSAGE on every master of the topic; keeps only messages whose KEYS really
    /// contain `key` (the index stores hashes).
    pub async fn query_message_by_key(
        &self,
        topic: &str,
        key: &str,
        max_num: i32,
        begin_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<MessageExt>, ClientError> {
        let mut out = self
            .query_index(topic, key, max_num, begin_ms, end_ms, false)
            .await?;
        out.retain(|m| m.keys().contains(&key));
        Ok(out)
    }

    async fn query_index(
        &self,
        topic: &str,
        key: &str,
        max_num: i32,
        begin_ms: i64,
        end_ms: i64,
        uniq_key_query: bool,
    ) -> Result<Vec<MessageExt>, ClientError> {
        let route = self.fetch_topic_route(topic).await?;
        let mut out = Vec::new();
        let mut answered = 0;
        let mut last_error = None;
        for bd in &route.broker_datas {
            let Some(addr) = bd.master_addr() else {
                continue;
            };
            let op = format!("QUERY_MESSAGE {topic} {key}");
            let response = match self
                .invoke_broker_raw(
                    addr,
                    &op,
                    {
                        let mut r = query_message_request(topic, key, max_num, begin_ms, end_ms);
                        if uniq_key_query {
                            r.set_ext("_UNIQUE_KEY_QUERY", true);
                        }
                        r
                    },
                    self.rpc_timeout_ms(),
                )
                .await
            {
                Ok(r) => r,
                Err(e) => {
                    last_error = Some(e);
                    continue;
                }
            };
            if response.code == response_code::QUERY_NOT_FOUND {
                answered += 1;
                continue;
            }
            if let Err(e) = check_success("broker", addr, &op, &response) {
                last_error = Some(e);
                continue;
            }
            answered += 1;
            let mut messages = message::decode_entries(&response.body).map_err(|detail| {
                ClientError::BadResponse {
                    role: "broker",
                    addr: addr.to_string(),
                    op: op.clone(),
                    detail,
                }
            })?;
            let _ = super::broker_ops::decompress_messages(&mut messages);
            out.extend(messages.into_iter().filter(|m| m.topic == topic));
        }
        if answered == 0 {
            if let Some(e) = last_error {
                return Err(e);
            }
        }
        out.sort_by(|a, b| {
            (a.store_timestamp, a.commitlog_offset).cmp(&(b.store_timestamp, b.commitlog_offset))
        });
        Ok(out)
    }

    /// Cluster info, re-exported for mqadmin.
    pub async fn examine_cluster(&self) -> Result<ClusterInfo, ClientError> {
        self.cluster_info().await
    }
}

/// Decodes an offset msgId with a clear error.
pub fn decode_offset_msg_id(offset_msg_id: &str) -> Result<(SocketAddr, i64), ClientError> {
    let trimmed = offset_msg_id.trim();
    if !(trimmed.len() == 32 || trimmed.len() == 56)
        || !trimmed.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return Err(ClientError::InvalidArgument(format!(
            "`{offset_msg_id}` is not an offset msgId (32 or 56 hex digits)"
        )));
    }
    message::msg_id::decode_offset_msg_id(trimmed).ok_or_else(|| {
        ClientError::InvalidArgument(format!("`{offset_msg_id}` is not an offset msgId"))
    })
}

/// `yyyy-MM-dd HH:mm:ss,SSS` in UTC (RocketMQ's `timeMillisToHumanString2` layout).
pub fn format_timestamp_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02},{millis:03}",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    )
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Milliseconds since the Unix epoch, for "now" in admin output.
pub fn now_ms() -> i64 {
    rt::now_ms()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_topic_header_keys() {
        let mut cfg = TopicConfig::new("T", 8, 4, 6);
        cfg.order = true;
        let r = update_topic_request(&cfg);
        assert_eq!(r.code, 17);
        let keys: Vec<&str> = r.ext_fields.keys().collect();
        assert_eq!(
            keys,
            vec![
                "defaultTopic",
                "order",
                "perm",
                "readQueueNums",
                "topic",
                "topicFilterType",
                "topicSysFlag",
                "writeQueueNums"
            ]
        );
        assert_eq!(r.ext("readQueueNums"), Some("8"));
        assert_eq!(r.ext("writeQueueNums"), Some("4"));
        assert_eq!(r.ext("order"), Some("true"));
        assert_eq!(r.ext("defaultTopic"), Some("TBW102"));
    }

    #[test]
    fn query_message_header_keys() {
        let r = query_message_request("T", "k", 64, 0, i64::MAX);
        assert_eq!(r.code, 12);
        let keys: Vec<&str> = r.ext_fields.keys().collect();
        assert_eq!(
            keys,
            vec!["beginTimestamp", "endTimestamp", "key", "maxNum", "topic"]
        );
        assert_eq!(r.ext("endTimestamp"), Some(i64::MAX.to_string().as_str()));
    }

    #[test]
    fn timestamps_format_in_utc() {
        assert_eq!(format_timestamp_ms(0), "1970-01-01 00:00:00,000");
        // 2024-02-29 12:34:56.789 UTC
        assert_eq!(
            format_timestamp_ms(1_709_210_096_789),
            "2024-02-29 12:34:56,789"
        );
        assert_eq!(
            format_timestamp_ms(951_782_400_000),
            "2000-02-29 00:00:00,000"
        );
    }

    #[test]
    fn malformed_offset_msg_ids_are_rejected_before_decoding() {
        assert!(decode_offset_msg_id("xyz").is_err());
        assert!(decode_offset_msg_id(&"G".repeat(32)).is_err());
        assert!(decode_offset_msg_id(&"A".repeat(31)).is_err());
    }
}
