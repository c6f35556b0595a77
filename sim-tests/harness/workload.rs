//! The simulation workload, on Apogee's own remoting client: producers that send single
//! messages and batches with seeded random sizes, tags, keys and queues and retry like real
//! clients; pull consumers in one consumer group (heartbeat, average allocation, committed
//! offsets); the final scan that reads every queue from its min to its max offset.
//! Everything they see goes to the [`Oracle`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apogee::message::properties::{self, encode_properties, Properties};
use apogee::remoting::request_code as rq;
use apogee::remoting::response_code as rs;
use apogee::remoting::{RemotingClient, RemotingCommand};
use apogee::rt;
use apogee::store::FlushDiskType;
use bytes::{BufMut, Bytes, BytesMut};

use super::cluster::NodeStatus;
use super::oracle::{
    body_id, Consumed, ObservedBy, OffsetEvent, OffsetEventKind, Oracle, SendAttempt, SendOutcome,
    SentMessage, BODY_ID_BYTES,
};
use super::{chance, draw};

pub const SEND_TIMEOUT_MS: u64 = 3_000;
pub const ADMIN_TIMEOUT_MS: u64 = 3_000;
pub const PULL_TIMEOUT_MS: u64 = 3_000;
pub const PRODUCER_GROUP: &str = "sim-pg";
pub const SCAN_GROUP: &str = "sim-scan";
/// Pull sysFlag SUBSCRIPTION bit: the request carries its own subscription expression.
const PULL_FLAG_SUBSCRIPTION: i32 = 0x4;

/// One broker as the workload knows it (fixed address; status shared with the harness).
#[derive(Clone)]
pub struct BrokerInfo {
    pub name: String,
    pub addr: String,
    pub flush: FlushDiskType,
    pub status: Arc<Mutex<NodeStatus>>,
}

impl BrokerInfo {
    pub fn incarnation(&self) -> u64 {
        self.status.lock().expect("status lock").incarnation
    }
}

#[derive(Clone)]
pub struct WorkloadConfig {
    pub topic: String,
    pub queue_count: i32,
    pub group: String,
    pub namesrv_addrs: Vec<String>,
    pub brokers: Vec<BrokerInfo>,
    pub body_bytes_max: usize,
    pub batch_size_max: usize,
    /// Attempts per logical message (RocketMQ's retryTimesWhenSendFailed + 1).
    pub send_attempts_max: usize,
    /// Pause between two sends of one producer.
    pub send_pause_ms_max: u64,
    /// Messages per producer (None: until stopped).
    pub messages_per_producer: Option<u64>,
    /// Master address -> its slave (t72). Producers and the final scan use masters only;
    /// consumers fall back to the slave while its master is unreachable, as RocketMQ's client
    /// does (`findBrokerAddressInSubscribe` takes any address of the broker group).
    pub slaves: BTreeMap<String, BrokerInfo>,
}

impl WorkloadConfig {
    pub fn new(topic: &str, namesrv_addrs: Vec<String>, brokers: Vec<BrokerInfo>) -> Self {
        WorkloadConfig {
            topic: topic.to_string(),
            queue_count: 4,
            group: "sim-cg".to_string(),
            namesrv_addrs,
            brokers,
            body_bytes_max: 2048,
            batch_size_max: 4,
            send_attempts_max: 3,
            send_pause_ms_max: 40,
            messages_per_producer: None,
            slaves: BTreeMap::new(),
        }
    }

    fn broker_by_addr(&self, addr: &str) -> Option<&BrokerInfo> {
        self.brokers
            .iter()
            .chain(self.slaves.values())
            .find(|b| b.addr == addr)
    }

    /// The address a consumer talks to for master `master`: the master, or its slave while
    /// the master is in `masters_down`.
    fn serving_addr(&self, master: &str, masters_down: &BTreeSet<String>) -> String {
        match self.slaves.get(master) {
            Some(slave) if masters_down.contains(master) => slave.addr.clone(),
            _ => master.to_string(),
        }
    }
}

/// A stop switch shared by the supervisor and the workload tasks, with a count of the tasks
/// still running (so the final scan starts only after the last in-flight send finished).
#[derive(Clone, Default)]
pub struct StopFlag {
    stopped: Arc<AtomicBool>,
    running: Arc<AtomicUsize>,
}

/// Held by a running workload task; dropping it (task end or node kill) counts it out.
pub struct RunningGuard(Arc<AtomicUsize>);

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl StopFlag {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst)
    }
    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }
    pub fn enter(&self) -> RunningGuard {
        self.running.fetch_add(1, Ordering::SeqCst);
        RunningGuard(self.running.clone())
    }
    pub fn running(&self) -> usize {
        self.running.load(Ordering::SeqCst)
    }
}

// ---------------------------------------------------------------------------------------------
// Raw operations
// ---------------------------------------------------------------------------------------------

/// A route as the producer uses it: (broker addr, write queue count).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub brokers: Vec<(String, i32)>,
}

/// GET_ROUTEINFO_BY_TOPIC from one namesrv.
pub async fn fetch_route(client: &RemotingClient, namesrv: &str, topic: &str) -> Option<Route> {
    let req = RemotingCommand::request(rq::GET_ROUTEINFO_BY_TOPIC).with_ext("topic", topic);
    let resp = client.invoke(namesrv, req, ADMIN_TIMEOUT_MS).await.ok()?;
    if resp.code != rs::SUCCESS {
        return None;
    }
    let text = std::str::from_utf8(&resp.body).ok()?;
    let v: serde_json::Value = apogee::protocol::parse_lenient_json(text).ok()?;
    let mut queue_nums: BTreeMap<String, i32> = BTreeMap::new();
    for q in v.get("queueDatas")?.as_array()? {
        let name = q.get("brokerName")?.as_str()?.to_string();
        let perm = q.get("perm").and_then(|p| p.as_i64()).unwrap_or(6);
        if perm & 2 != 0 {
            queue_nums.insert(name, q.get("writeQueueNums")?.as_i64()? as i32);
        }
    }
    let mut brokers = Vec::new();
    for b in v.get("brokerDatas")?.as_array()? {
        let name = b.get("brokerName")?.as_str()?;
        let master = b.get("brokerAddrs")?.get("0")?.as_str()?;
        if let Some(n) = queue_nums.get(name) {
            brokers.push((master.to_string(), *n));
        }
    }
    brokers.sort();
    if brokers.is_empty() {
        None
    } else {
        Some(Route { brokers })
    }
}

/// UPDATE_AND_CREATE_TOPIC on one broker (admin). Ok(()) once the broker answered SUCCESS.
pub async fn create_topic(
    client: &RemotingClient,
    broker: &str,
    topic: &str,
    queue_count: i32,
) -> Result<(), String> {
    let req = RemotingCommand::request(rq::UPDATE_AND_CREATE_TOPIC)
        .with_ext("topic", topic)
        .with_ext("defaultTopic", "TBW102")
        .with_ext("readQueueNums", queue_count)
        .with_ext("writeQueueNums", queue_count)
        .with_ext("perm", 6)
        .with_ext("topicFilterType", "SINGLE_TAG")
        .with_ext("topicSysFlag", 0)
        .with_ext("order", false);
    match client.invoke(broker, req, ADMIN_TIMEOUT_MS).await {
        Ok(resp) if resp.code == rs::SUCCESS => Ok(()),
        Ok(resp) => Err(format!("code {} {:?}", resp.code, resp.remark)),
        Err(e) => Err(e.to_string()),
    }
}

/// GET_MAX_OFFSET / GET_MIN_OFFSET.
pub async fn queue_offset_bound(
    client: &RemotingClient,
    broker: &str,
    topic: &str,
    queue_id: i32,
    max: bool,
) -> Result<i64, String> {
    let code = if max {
        rq::GET_MAX_OFFSET
    } else {
        rq::GET_MIN_OFFSET
    };
    let req = RemotingCommand::request(code)
        .with_ext("topic", topic)
        .with_ext("queueId", queue_id);
    let resp = client
        .invoke(broker, req, ADMIN_TIMEOUT_MS)
        .await
        .map_err(|e| e.to_string())?;
    if resp.code != rs::SUCCESS {
        return Err(format!("code {} {:?}", resp.code, resp.remark));
    }
    resp.required::<i64>("offset").map_err(|e| e.to_string())
}

fn message_properties(msg: &SentMessage) -> Properties {
    let mut props = Properties::new();
    if let Some(tags) = &msg.tags {
        props.insert(properties::TAGS.to_string(), tags.clone());
    }
    props.insert(properties::KEYS.to_string(), msg.keys.clone());
    // A stable UNIQ_KEY per logical message: retries carry the same one, as in RocketMQ.
    props.insert(properties::UNIQ_KEY.to_string(), format!("{:032X}", msg.id));
    props.insert(properties::WAIT.to_string(), "true".to_string());
    props
}

/// SEND_BATCH_MESSAGE body: per message `totalSize flag... body propsLen props` (§2.2).
fn encode_batch(batch: &[SentMessage]) -> Bytes {
    let mut buf = BytesMut::new();
    for msg in batch {
        let props = encode_properties(&message_properties(msg));
        let total = 4 + 4 + 4 + 4 + 4 + msg.body.len() + 2 + props.len();
        buf.put_i32(total as i32);
        buf.put_i32(0); // magic: the broker ignores it
        buf.put_i32(0); // body CRC: the broker recomputes it
        buf.put_i32(0); // flag
        buf.put_i32(msg.body.len() as i32);
        buf.put_slice(&msg.body);
        buf.put_i16(props.len() as i16);
        buf.put_slice(props.as_bytes());
    }
    buf.freeze()
}

/// Sends one message (batch of 1: SEND_MESSAGE_V2) or a batch to one queue; returns one
/// outcome for the whole request.
async fn send_once(
    client: &RemotingClient,
    broker: &str,
    topic: &str,
    queue_id: i32,
    batch: &[SentMessage],
) -> (SendOutcome, i64) {
    assert!(!batch.is_empty());
    let (code, props, body, is_batch) = if batch.len() == 1 {
        (
            rq::SEND_MESSAGE_V2,
            encode_properties(&message_properties(&batch[0])),
            batch[0].body.clone(),
            false,
        )
    } else {
        (
            rq::SEND_BATCH_MESSAGE,
            String::new(),
            encode_batch(batch),
            true,
        )
    };
    let req = RemotingCommand::request(code)
        .with_ext("a", PRODUCER_GROUP)
        .with_ext("b", topic)
        .with_ext("c", "TBW102")
        .with_ext("d", 4)
        .with_ext("e", queue_id)
        .with_ext("f", 0)
        .with_ext("g", rt::now_ms())
        .with_ext("h", 0)
        .with_ext("i", props)
        .with_ext("j", 0)
        .with_ext("k", false)
        .with_ext("m", is_batch)
        .with_body(body);
    match client.invoke(broker, req, SEND_TIMEOUT_MS).await {
        Err(e) => (
            SendOutcome::Unknown {
                reason: e.to_string(),
            },
            -1,
        ),
        Ok(resp) => match resp.code {
            rs::SUCCESS
            | rs::FLUSH_DISK_TIMEOUT
            | rs::FLUSH_SLAVE_TIMEOUT
            | rs::SLAVE_NOT_AVAILABLE => {
                let q = resp.required::<i32>("queueId");
                let off = resp.required::<i64>("queueOffset");
                match (q, off) {
                    (Ok(q), Ok(off)) => (
                        SendOutcome::Acked {
                            response_code: resp.code,
                            queue_id: q,
                            queue_offset: off,
                        },
                        off,
                    ),
                    // An ack we cannot place is a protocol bug; keep it visible as unknown.
                    _ => (
                        SendOutcome::Unknown {
                            reason: format!("ack without queueId/queueOffset: {resp:?}"),
                        },
                        -1,
                    ),
                }
            }
            other => (
                SendOutcome::Failed {
                    response_code: other,
                    remark: resp.remark.clone().unwrap_or_default(),
                },
                -1,
            ),
        },
    }
}

/// Body: 8-byte id, then bytes derived from the id (so any corruption is visible).
pub fn make_body(id: u64, len: usize) -> Bytes {
    let len = len.max(BODY_ID_BYTES);
    let mut buf = BytesMut::with_capacity(len);
    buf.put_u64_le(id);
    let mut x = id.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while buf.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        buf.put_u8((x & 0xff) as u8);
    }
    buf.freeze()
}

// ---------------------------------------------------------------------------------------------
// Producer
// ---------------------------------------------------------------------------------------------

/// One producer incarnation: sends until `stop` (or its message budget), retrying each
/// request up to `send_attempts_max` times on another queue, like RocketMQ's producer.
pub async fn producer_main(name: String, cfg: WorkloadConfig, oracle: Oracle, stop: StopFlag) {
    let _running = stop.enter();
    let client = RemotingClient::new();
    let mut route: Option<Route> = None;
    let mut route_refreshed_at: Option<rt::Instant> = None;
    let mut sent = 0u64;
    while !stop.is_stopped() {
        if let Some(budget) = cfg.messages_per_producer {
            if sent >= budget {
                break;
            }
        }
        let stale = route_refreshed_at
            .map(|t| rt::now() - t > Duration::from_secs(3))
            .unwrap_or(true);
        if stale {
            for ns in &cfg.namesrv_addrs {
                if let Some(r) = fetch_route(&client, ns, &cfg.topic).await {
                    if route.as_ref() != Some(&r) {
                        oracle.trace().event(format!("{name} route {r:?}"));
                    }
                    route = Some(r);
                    break;
                }
            }
            route_refreshed_at = Some(rt::now());
        }
        let Some(r) = route.clone() else {
            // No route yet (namesrv down before the first lookup): wait like a real client.
            rt::sleep_ms(500).await;
            continue;
        };
        let batch_size = if cfg.batch_size_max > 1 && chance(0.3) {
            draw(2, cfg.batch_size_max as u64 + 1) as usize
        } else {
            1
        };
        let tags = match draw(0, 4) {
            0 => None,
            n => Some(format!("Tag{n}")),
        };
        let batch: Vec<SentMessage> = (0..batch_size)
            .map(|_| {
                let len = draw(BODY_ID_BYTES as u64, cfg.body_bytes_max as u64 + 1) as usize;
                oracle.new_message(&cfg.topic, tags.clone(), |id| make_body(id, len))
            })
            .collect();
        sent += batch_size as u64;
        let (mut broker_index, _) = (draw(0, r.brokers.len() as u64) as usize, ());
        let mut queue_id = -1;
        for attempt in 0..cfg.send_attempts_max {
            let (broker, queue_nums) = &r.brokers[broker_index % r.brokers.len()];
            queue_id = if queue_id < 0 {
                draw(0, *queue_nums as u64) as i32
            } else {
                (queue_id + 1) % *queue_nums
            };
            let flush = cfg
                .broker_by_addr(broker)
                .map(|b| b.flush)
                .unwrap_or_default();
            let started_at = rt::now();
            let (outcome, first_offset) =
                send_once(&client, broker, &cfg.topic, queue_id, &batch).await;
            let finished_at = rt::now();
            let acked = matches!(outcome, SendOutcome::Acked { .. });
            for (i, msg) in batch.iter().enumerate() {
                let per_msg = match &outcome {
                    SendOutcome::Acked {
                        response_code,
                        queue_id,
                        ..
                    } => SendOutcome::Acked {
                        response_code: *response_code,
                        queue_id: *queue_id,
                        queue_offset: first_offset + i as i64,
                    },
                    other => other.clone(),
                };
                oracle.record_attempt(
                    msg.id,
                    SendAttempt {
                        broker: broker.clone(),
                        started_at,
                        finished_at,
                        flush,
                        batch_size,
                        outcome: per_msg,
                    },
                );
            }
            if acked || stop.is_stopped() {
                break;
            }
            if attempt + 1 < cfg.send_attempts_max {
                broker_index += 1;
                rt::sleep_ms(draw(50, 400)).await;
            }
        }
        rt::sleep_ms(draw(0, cfg.send_pause_ms_max + 1)).await;
    }
    oracle
        .trace()
        .event(format!("{name} stops after {sent} messages"));
}

// ---------------------------------------------------------------------------------------------
// Consumer
// ---------------------------------------------------------------------------------------------

fn heartbeat_body(client_id: &str, group: &str, topic: &str) -> Bytes {
    let v = serde_json::json!({
        "clientID": client_id,
        "producerDataSet": [],
        "consumerDataSet": [{
            "groupName": group,
            "consumeType": "CONSUME_ACTIVELY",
            "messageModel": "CLUSTERING",
            "consumeFromWhere": "CONSUME_FROM_FIRST_OFFSET",
            "unitMode": false,
            "subscriptionDataSet": [{
                "classFilterMode": false,
                "topic": topic,
                "subString": "*",
                "tagsSet": [],
                "codeSet": [],
                "subVersion": 0,
                "expressionType": "TAG"
            }]
        }],
        "heartbeatFingerprint": 0,
        "withoutSub": false
    });
    Bytes::from(v.to_string())
}

async fn heartbeat(
    client: &RemotingClient,
    broker: &str,
    client_id: &str,
    cfg: &WorkloadConfig,
) -> bool {
    heartbeat_within(client, broker, client_id, cfg, ADMIN_TIMEOUT_MS).await
}

/// Probe of a master already known down: short, so reading from its slave is not stalled.
const DOWN_MASTER_HEARTBEAT_TIMEOUT_MS: u64 = 300;

async fn heartbeat_within(
    client: &RemotingClient,
    broker: &str,
    client_id: &str,
    cfg: &WorkloadConfig,
    timeout_ms: u64,
) -> bool {
    let req = RemotingCommand::request(rq::HEART_BEAT)
        .with_body(heartbeat_body(client_id, &cfg.group, &cfg.topic));
    matches!(client.invoke(broker, req, timeout_ms).await, Ok(r) if r.code == rs::SUCCESS)
}

async fn consumer_ids(client: &RemotingClient, broker: &str, group: &str) -> Option<Vec<String>> {
    let req =
        RemotingCommand::request(rq::GET_CONSUMER_LIST_BY_GROUP).with_ext("consumerGroup", group);
    let resp = client.invoke(broker, req, ADMIN_TIMEOUT_MS).await.ok()?;
    if resp.code != rs::SUCCESS {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&resp.body).ok()?;
    let mut ids: Vec<String> = v
        .get("consumerIdList")?
        .as_array()?
        .iter()
        .filter_map(|x| x.as_str().map(str::to_string))
        .collect();
    ids.sort();
    ids.dedup();
    Some(ids)
}

/// RocketMQ's AllocateMessageQueueAveragely over sorted ids and queues.
pub fn allocate_averagely(queues: &[i32], ids: &[String], me: &str) -> Vec<i32> {
    let Some(index) = ids.iter().position(|id| id == me) else {
        return Vec::new();
    };
    let (q, n) = (queues.len(), ids.len());
    let modulo = q % n;
    let average = if q <= n {
        1
    } else if modulo > 0 && index < modulo {
        q / n + 1
    } else {
        q / n
    };
    let start = if modulo > 0 && index < modulo {
        index * average
    } else {
        index * average + modulo
    };
    let range = average.min(q.saturating_sub(start));
    (0..range).map(|i| queues[(start + i) % q]).collect()
}

pub struct PullResult {
    pub code: i32,
    pub next_begin_offset: i64,
    pub min_offset: i64,
    pub max_offset: i64,
    pub messages: Vec<apogee::message::MessageExt>,
    pub body: Bytes,
}

pub async fn pull(
    client: &RemotingClient,
    broker: &str,
    group: &str,
    topic: &str,
    queue_id: i32,
    queue_offset: i64,
    max_msg_nums: i32,
) -> Result<PullResult, String> {
    let req = RemotingCommand::request(rq::PULL_MESSAGE)
        .with_ext("consumerGroup", group)
        .with_ext("topic", topic)
        .with_ext("queueId", queue_id)
        .with_ext("queueOffset", queue_offset)
        .with_ext("maxMsgNums", max_msg_nums)
        .with_ext("sysFlag", PULL_FLAG_SUBSCRIPTION)
        .with_ext("commitOffset", 0)
        .with_ext("suspendTimeoutMillis", 0)
        .with_ext("subscription", "*")
        .with_ext("subVersion", 0)
        .with_ext("expressionType", "TAG");
    let resp = client
        .invoke(broker, req, PULL_TIMEOUT_MS)
        .await
        .map_err(|e| e.to_string())?;
    let get = |k: &str| resp.optional::<i64>(k).ok().flatten().unwrap_or(-1);
    let messages = if resp.code == rs::SUCCESS {
        apogee::message::decode_entries(&resp.body)
            .map_err(|e| format!("undecodable pull body from {broker}: {e}"))?
    } else {
        Vec::new()
    };
    Ok(PullResult {
        code: resp.code,
        next_begin_offset: get("nextBeginOffset"),
        min_offset: get("minOffset"),
        max_offset: get("maxOffset"),
        messages,
        body: resp.body.clone(),
    })
}

async fn query_committed(
    client: &RemotingClient,
    broker: &str,
    group: &str,
    topic: &str,
    queue_id: i32,
) -> Result<Option<i64>, String> {
    let req = RemotingCommand::request(rq::QUERY_CONSUMER_OFFSET)
        .with_ext("consumerGroup", group)
        .with_ext("topic", topic)
        .with_ext("queueId", queue_id)
        .with_ext("setZeroIfNotFound", false);
    let resp = client
        .invoke(broker, req, ADMIN_TIMEOUT_MS)
        .await
        .map_err(|e| e.to_string())?;
    match resp.code {
        rs::SUCCESS => resp
            .required::<i64>("offset")
            .map(Some)
            .map_err(|e| e.to_string()),
        rs::QUERY_NOT_FOUND => Ok(None),
        other => Err(format!("code {other} {:?}", resp.remark)),
    }
}

async fn commit_offset(
    client: &RemotingClient,
    broker: &str,
    group: &str,
    topic: &str,
    queue_id: i32,
    offset: i64,
) -> bool {
    let req = RemotingCommand::request(rq::UPDATE_CONSUMER_OFFSET)
        .with_ext("consumerGroup", group)
        .with_ext("topic", topic)
        .with_ext("queueId", queue_id)
        .with_ext("commitOffset", offset);
    matches!(client.invoke(broker, req, ADMIN_TIMEOUT_MS).await, Ok(r) if r.code == rs::SUCCESS)
}

#[allow(clippy::too_many_arguments)]
fn to_consumed(
    by: ObservedBy,
    client: &str,
    broker: &str,
    queue_id: i32,
    queue_offset: i64,
    m: &apogee::message::MessageExt,
    started_at: rt::Instant,
    finished_at: rt::Instant,
) -> Consumed {
    Consumed {
        by,
        client: client.to_string(),
        broker: broker.to_string(),
        topic: m.topic.clone(),
        queue_id,
        queue_offset,
        stored_queue_offset: m.queue_offset,
        stored_queue_id: m.queue_id,
        commitlog_offset: m.commitlog_offset,
        body: m.body.clone(),
        tags: m.tags().map(str::to_string),
        keys: m.properties.get(properties::KEYS).cloned(),
        started_at,
        finished_at,
    }
}

/// Per owned queue state of one consumer incarnation.
struct OwnedQueue {
    next_offset: i64,
    committed: i64,
    committed_at: Option<rt::Instant>,
}

/// Like Java's persistAll: an owned queue's position is re-committed this often even when it
/// did not move, so a broker that lost its offset table (crash) learns it again.
const RECOMMIT_INTERVAL_MS: u64 = 2_000;

/// A commit's landing time is unknown until its response: treat it as "any time in the next
/// hour" (longer than any simulation).
const COMMIT_LANDING_UNKNOWN_S: u64 = 3_600;

/// One consumer incarnation in the group: heartbeat, rebalance, pull, record, commit.
pub async fn consumer_main(
    name: String,
    client_ip: std::net::IpAddr,
    incarnation: u64,
    cfg: WorkloadConfig,
    oracle: Oracle,
    stop: StopFlag,
) {
    let _running = stop.enter();
    let client = RemotingClient::new();
    let client_id = format!("{client_ip}@{name}-{incarnation}");
    let queues: Vec<i32> = (0..cfg.queue_count).collect();
    let mut owned: BTreeMap<(String, i32), OwnedQueue> = BTreeMap::new();
    let mut last_rebalance: Option<rt::Instant> = None;
    // Masters that did not answer the last heartbeat: their queues are served by the slave.
    let mut masters_down: BTreeSet<String> = BTreeSet::new();
    while !stop.is_stopped() {
        let rebalance_due = last_rebalance
            .map(|t| rt::now() - t > Duration::from_millis(1000))
            .unwrap_or(true);
        if rebalance_due {
            last_rebalance = Some(rt::now());
            let mut wanted: BTreeSet<(String, i32)> = BTreeSet::new();
            for b in &cfg.brokers {
                // Like RocketMQ's client, heartbeat every address of the group (the slave too),
                // so a slave knows the consumers when the master goes away.
                let slave = cfg.slaves.get(&b.addr);
                let slave_ok = match slave {
                    Some(s) => heartbeat(&client, &s.addr, &client_id, &cfg).await,
                    None => false,
                };
                let timeout_ms = if masters_down.contains(&b.addr) {
                    DOWN_MASTER_HEARTBEAT_TIMEOUT_MS
                } else {
                    ADMIN_TIMEOUT_MS
                };
                let ids_from =
                    if heartbeat_within(&client, &b.addr, &client_id, &cfg, timeout_ms).await {
                        if masters_down.remove(&b.addr) {
                            oracle
                                .trace()
                                .event(format!("{client_id} back on master {}", b.addr));
                        }
                        b.addr.clone()
                    } else if let (Some(s), true) = (slave, slave_ok) {
                        if masters_down.insert(b.addr.clone()) {
                            oracle.trace().event(format!(
                                "{client_id} master {} unreachable: reading from slave {}",
                                b.addr, s.addr
                            ));
                        }
                        s.addr.clone()
                    } else {
                        // Broker unreachable: keep what we own there (its queues cannot move).
                        wanted.extend(owned.keys().filter(|(a, _)| *a == b.addr).cloned());
                        continue;
                    };
                let Some(ids) = consumer_ids(&client, &ids_from, &cfg.group).await else {
                    wanted.extend(owned.keys().filter(|(a, _)| *a == b.addr).cloned());
                    continue;
                };
                if std::env::var("SIM_DEBUG_IDS").is_ok() {
                    oracle.trace().event(format!("{client_id} sees {ids:?}"));
                }
                if !ids.contains(&client_id) {
                    oracle.trace().event(format!(
                        "{client_id} missing from the group's consumer list {ids:?}"
                    ));
                }
                for q in allocate_averagely(&queues, &ids, &client_id) {
                    wanted.insert((b.addr.clone(), q));
                }
            }
            let dropped: Vec<(String, i32)> = owned
                .keys()
                .filter(|k| !wanted.contains(k))
                .cloned()
                .collect();
            for k in dropped {
                owned.remove(&k);
                oracle
                    .trace()
                    .event(format!("{client_id} releases {}/{}", k.0, k.1));
            }
            for k in wanted {
                if owned.contains_key(&k) {
                    continue;
                }
                let serving = cfg.serving_addr(&k.0, &masters_down);
                let Some(b) = cfg.broker_by_addr(&serving).cloned() else {
                    continue;
                };
                let started_at = rt::now();
                let incarnation = b.incarnation();
                match query_committed(&client, &b.addr, &cfg.group, &cfg.topic, k.1).await {
                    Ok(found) => {
                        let start = found.unwrap_or(0);
                        if let Some(off) = found {
                            oracle.record_offset_event(OffsetEvent {
                                broker: b.addr.clone(),
                                broker_incarnation: incarnation,
                                group: cfg.group.clone(),
                                topic: cfg.topic.clone(),
                                queue_id: k.1,
                                offset: off,
                                started_at,
                                finished_at: rt::now(),
                                kind: OffsetEventKind::Query,
                            });
                        }
                        oracle
                            .trace()
                            .event(format!("{client_id} owns {}/{} from {start}", k.0, k.1));
                        owned.insert(
                            k,
                            OwnedQueue {
                                next_offset: start,
                                committed: start,
                                committed_at: None,
                            },
                        );
                    }
                    Err(e) => {
                        oracle.trace().event(format!(
                            "{client_id} cannot read the committed offset of {}/{}: {e}",
                            k.0, k.1
                        ));
                        continue;
                    }
                }
            }
        }
        let keys: Vec<(String, i32)> = owned.keys().cloned().collect();
        let mut idle = true;
        for (broker, queue_id) in keys {
            if stop.is_stopped() {
                break;
            }
            let Some(state) = owned.get(&(broker.clone(), queue_id)) else {
                continue;
            };
            let from = state.next_offset;
            let serving = cfg.serving_addr(&broker, &masters_down);
            let started_at = rt::now();
            let result = pull(
                &client, &serving, &cfg.group, &cfg.topic, queue_id, from, 16,
            )
            .await;
            let finished_at = rt::now();
            let Ok(result) = result else {
                // A master that does not answer a pull: read from its slave until a heartbeat
                // reaches the master again.
                if serving == broker
                    && cfg.slaves.contains_key(&broker)
                    && masters_down.insert(broker.clone())
                {
                    oracle.trace().event(format!(
                        "{client_id} pull from master {broker} failed: reading from its slave"
                    ));
                }
                continue;
            };
            let state = owned
                .get_mut(&(broker.clone(), queue_id))
                .expect("queue still owned");
            match result.code {
                rs::SUCCESS => {
                    idle = false;
                    for (i, m) in result.messages.iter().enumerate() {
                        oracle.record_consumed(to_consumed(
                            ObservedBy::Consumer,
                            &client_id,
                            &broker,
                            queue_id,
                            from + i as i64,
                            m,
                            started_at,
                            finished_at,
                        ));
                    }
                    if result.next_begin_offset > state.next_offset {
                        state.next_offset = result.next_begin_offset;
                    }
                }
                // A slave behind the consumer (ASYNC_MASTER tail not replicated) answers "offset
                // moved" to its own max offset; RocketMQ's slave answers PULL_RETRY_IMMEDIATELY
                // instead (offsetCheckInSlave=false): never rewind on a slave's word.
                rs::PULL_OFFSET_MOVED if serving != broker => {}
                rs::PULL_OFFSET_MOVED => {
                    oracle.trace().event(format!(
                        "{client_id} offset moved {broker}/{queue_id} {from} -> {}",
                        result.next_begin_offset
                    ));
                    if result.next_begin_offset >= 0 {
                        state.next_offset = result.next_begin_offset;
                    }
                }
                _ => {}
            }
            // Commit what moved (also backwards after PULL_OFFSET_MOVED), and re-commit the
            // current position periodically.
            let stale = state
                .committed_at
                .map(|t| rt::now() - t > Duration::from_millis(RECOMMIT_INTERVAL_MS))
                .unwrap_or(true);
            if state.next_offset != state.committed || (stale && state.next_offset > 0) {
                let offset = state.next_offset;
                let b = cfg.broker_by_addr(&serving).cloned();
                let incarnation = b.as_ref().map(|b| b.incarnation()).unwrap_or(0);
                let started_at = rt::now();
                // Recorded before sending: if this node dies mid-request the commit may still
                // land, at an unknown time (finished_at far in the future).
                oracle.record_offset_event(OffsetEvent {
                    broker: serving.clone(),
                    broker_incarnation: incarnation,
                    group: cfg.group.clone(),
                    topic: cfg.topic.clone(),
                    queue_id,
                    offset,
                    started_at,
                    finished_at: started_at + Duration::from_secs(COMMIT_LANDING_UNKNOWN_S),
                    kind: OffsetEventKind::Commit { acked: false },
                });
                let acked =
                    commit_offset(&client, &serving, &cfg.group, &cfg.topic, queue_id, offset)
                        .await;
                if acked {
                    oracle.record_acked_commit(OffsetEvent {
                        broker: serving.clone(),
                        broker_incarnation: incarnation,
                        group: cfg.group.clone(),
                        topic: cfg.topic.clone(),
                        queue_id,
                        offset,
                        started_at,
                        finished_at: rt::now(),
                        kind: OffsetEventKind::Commit { acked: true },
                    });
                    if let Some(state) = owned.get_mut(&(broker.clone(), queue_id)) {
                        state.committed = offset;
                        state.committed_at = Some(rt::now());
                    }
                }
            }
        }
        if idle {
            rt::sleep_ms(draw(50, 250)).await;
        }
    }
    oracle.trace().event(format!("{client_id} stops"));
}

// ---------------------------------------------------------------------------------------------
// Final scan and convergence probes
// ---------------------------------------------------------------------------------------------

/// Reads every queue of the topic on every broker from its min to its max offset and records
/// each message (ObservedBy::FinalScan) and each queue's bounds. Err if a broker does not
/// answer (the liveness phase retries).
pub async fn final_scan(
    client_name: &str,
    cfg: &WorkloadConfig,
    oracle: &Oracle,
) -> Result<(), String> {
    let client = RemotingClient::new();
    let mut found: Vec<Consumed> = Vec::new();
    let mut bounds = Vec::new();
    for b in &cfg.brokers {
        for queue_id in 0..cfg.queue_count {
            let min = queue_offset_bound(&client, &b.addr, &cfg.topic, queue_id, false).await?;
            let max = queue_offset_bound(&client, &b.addr, &cfg.topic, queue_id, true).await?;
            let mut at = min;
            while at < max {
                let started_at = rt::now();
                let r = pull(&client, &b.addr, SCAN_GROUP, &cfg.topic, queue_id, at, 32).await?;
                let finished_at = rt::now();
                if r.code != rs::SUCCESS || r.messages.is_empty() {
                    return Err(format!(
                        "scan {}/{queue_id} at {at} (bounds [{min},{max})): code {} next {}",
                        b.addr, r.code, r.next_begin_offset
                    ));
                }
                for (i, m) in r.messages.iter().enumerate() {
                    found.push(to_consumed(
                        ObservedBy::FinalScan,
                        client_name,
                        &b.addr,
                        queue_id,
                        at + i as i64,
                        m,
                        started_at,
                        finished_at,
                    ));
                }
                at += r.messages.len() as i64;
            }
            bounds.push((b.addr.clone(), queue_id, min, max));
        }
    }
    for c in found {
        oracle.record_consumed(c);
    }
    for (broker, queue_id, min, max) in bounds {
        oracle.record_scanned_queue(&broker, &cfg.topic, queue_id, min, max);
    }
    Ok(())
}

/// The group's committed offset and the max offset of every queue, for the liveness check.
pub async fn progress(cfg: &WorkloadConfig) -> Result<Vec<QueueProgress>, String> {
    let client = RemotingClient::new();
    let mut out = Vec::new();
    for b in &cfg.brokers {
        for queue_id in 0..cfg.queue_count {
            let max = queue_offset_bound(&client, &b.addr, &cfg.topic, queue_id, true).await?;
            let committed = query_committed(&client, &b.addr, &cfg.group, &cfg.topic, queue_id)
                .await?
                .unwrap_or(0);
            out.push(QueueProgress {
                broker: b.addr.clone(),
                queue_id,
                max_offset: max,
                committed_offset: committed,
            });
        }
    }
    Ok(out)
}

#[derive(Debug, Clone)]
pub struct QueueProgress {
    pub broker: String,
    pub queue_id: i32,
    pub max_offset: i64,
    pub committed_offset: i64,
}

/// A probe send after the faults stopped: the cluster must take new writes again.
pub async fn probe_send(cfg: &WorkloadConfig, oracle: &Oracle) -> Result<(), String> {
    let client = RemotingClient::new();
    let mut route = None;
    for ns in &cfg.namesrv_addrs {
        if let Some(r) = fetch_route(&client, ns, &cfg.topic).await {
            route = Some(r);
            break;
        }
    }
    let route = route.ok_or("no route from any namesrv")?;
    let (broker, _) = route.brokers[0].clone();
    let msg = oracle.new_message(&cfg.topic, Some("Probe".into()), |id| make_body(id, 64));
    let flush = cfg
        .broker_by_addr(&broker)
        .map(|b| b.flush)
        .unwrap_or_default();
    let started_at = rt::now();
    let (outcome, _) = send_once(&client, &broker, &cfg.topic, 0, std::slice::from_ref(&msg)).await;
    let ok = matches!(
        outcome,
        SendOutcome::Acked {
            response_code: 0,
            ..
        }
    );
    oracle.record_attempt(
        msg.id,
        SendAttempt {
            broker,
            started_at,
            finished_at: rt::now(),
            flush,
            batch_size: 1,
            outcome: outcome.clone(),
        },
    );
    if ok {
        Ok(())
    } else {
        Err(format!("probe send: {outcome:?}"))
    }
}

/// True if a body carries an id (sanity for checkers reading raw bytes).
pub fn has_body_id(body: &[u8]) -> bool {
    body_id(body).is_some()
}

// ---------------------------------------------------------------------------------------------
// Producer on Apogee's own client library (route cache, queue selection, retries inside)
// ---------------------------------------------------------------------------------------------

/// One producer incarnation using `apogee::client::Producer`: the library chooses queues and
/// retries; the oracle gets one attempt per logical send with the library's classification
/// (acknowledged / failed / unknown), timed from the start of the call.
pub async fn client_producer_main(
    name: String,
    client_ip: std::net::IpAddr,
    cfg: WorkloadConfig,
    oracle: Oracle,
    stop: StopFlag,
) {
    use apogee::client::mq_client::{ClientConfig, MqClient};
    use apogee::client::producer::{
        Message, Producer, ProducerConfig, SendOutcome as LibOutcome, SendStatus,
    };

    let _running = stop.enter();
    let mut client_config = ClientConfig::new(cfg.namesrv_addrs.clone());
    client_config.client_ip = client_ip;
    // Fixed instance name: the default embeds the pid, which differs between processes and
    // would make the broker's consumer/producer tables (and the digest) differ per process.
    client_config.instance_name = name.clone();
    client_config.route_refresh_interval_ms = 3_000;
    let mut producer_config = ProducerConfig::new(PRODUCER_GROUP);
    producer_config.retry_times_when_send_failed = (cfg.send_attempts_max.max(1) - 1) as u32;
    producer_config.send_timeout_ms = SEND_TIMEOUT_MS;
    // The oracle compares raw bodies: never compress.
    producer_config.compress_over_bytes = usize::MAX;
    let producer = Producer::new(MqClient::new(client_config), producer_config);
    let mut sent = 0u64;
    while !stop.is_stopped() {
        if let Some(budget) = cfg.messages_per_producer {
            if sent >= budget {
                break;
            }
        }
        let batch_size = if cfg.batch_size_max > 1 && chance(0.3) {
            draw(2, cfg.batch_size_max as u64 + 1) as usize
        } else {
            1
        };
        let tags = match draw(0, 4) {
            0 => None,
            n => Some(format!("Tag{n}")),
        };
        let batch: Vec<SentMessage> = (0..batch_size)
            .map(|_| {
                let len = draw(BODY_ID_BYTES as u64, cfg.body_bytes_max as u64 + 1) as usize;
                oracle.new_message(&cfg.topic, tags.clone(), |id| make_body(id, len))
            })
            .collect();
        sent += batch_size as u64;
        let messages: Vec<Message> = batch
            .iter()
            .map(|m| {
                let mut msg =
                    Message::new(&cfg.topic, m.body.clone()).with_keys(&[m.keys.as_str()]);
                if let Some(t) = &m.tags {
                    msg = msg.with_tags(t);
                }
                msg
            })
            .collect();
        let started_at = rt::now();
        let outcome = if messages.len() == 1 {
            producer
                .send_outcome(messages.into_iter().next().expect("one message"))
                .await
        } else {
            producer.send_batch_outcome(messages).await
        };
        let finished_at = rt::now();
        let (broker, base) = match &outcome {
            LibOutcome::Acknowledged(r) => {
                let code = match r.status {
                    SendStatus::SendOk => rs::SUCCESS,
                    SendStatus::FlushDiskTimeout => rs::FLUSH_DISK_TIMEOUT,
                    SendStatus::FlushSlaveTimeout => rs::FLUSH_SLAVE_TIMEOUT,
                    SendStatus::SlaveNotAvailable => rs::SLAVE_NOT_AVAILABLE,
                };
                (
                    r.broker_addr.clone(),
                    Some((code, r.queue.queue_id, r.queue_offset)),
                )
            }
            _ => (
                cfg.brokers
                    .first()
                    .map(|b| b.addr.clone())
                    .unwrap_or_default(),
                None,
            ),
        };
        let flush = cfg
            .broker_by_addr(&broker)
            .map(|b| b.flush)
            .unwrap_or_default();
        for (i, msg) in batch.iter().enumerate() {
            let per_msg = match (&outcome, base) {
                (_, Some((code, queue_id, first))) => SendOutcome::Acked {
                    response_code: code,
                    queue_id,
                    queue_offset: first + i as i64,
                },
                (LibOutcome::Failed { code, error }, _) => SendOutcome::Failed {
                    response_code: code.unwrap_or(-1),
                    remark: error.to_string(),
                },
                (other, _) => SendOutcome::Unknown {
                    reason: format!("{other:?}"),
                },
            };
            oracle.record_attempt(
                msg.id,
                SendAttempt {
                    broker: broker.clone(),
                    started_at,
                    finished_at,
                    flush,
                    batch_size,
                    outcome: per_msg,
                },
            );
        }
        rt::sleep_ms(draw(0, cfg.send_pause_ms_max + 1)).await;
    }
    oracle.trace().event(format!(
        "{name} (client library) stops after {sent} messages"
    ));
}
