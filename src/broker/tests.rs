//! Broker unit tests: processors run in-process on a SimDisk (no sockets), plus loopback
//! end-to-end tests over real tokio sockets.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc::UnboundedReceiver;

use super::processors::pull::{FLAG_COMMIT_OFFSET, FLAG_SUBSCRIPTION, FLAG_SUSPEND};
use super::processors::send::{encode_batch_body, BatchItem};
use super::*;
use crate::message::properties::{self as props, decode_properties, encode_properties, Properties};
use crate::message::{decode_entries, MessageExt};
use crate::protocol::consumer::{
    ConsumeStats, ConsumerConnection, ConsumerListBody, LockBatchResponseBody, TopicStatsTable,
};
use crate::protocol::topic::TopicConfigSerializeWrapper;
use crate::remoting::request_code as code;
use crate::remoting::response_code as rc;
use crate::store::disk::sim::SimDisk;

const ROOT: &str = "/apogee-test/store";

pub(crate) fn test_config() -> BrokerConfig {
    let mut config = BrokerConfig {
        listen_port: 0,
        ..BrokerConfig::default()
    };
    config.store.store_path_root_dir = ROOT.into();
    config.store.mapped_file_size_commitlog = 1024 * 1024;
    config.store.mapped_file_size_consume_queue = 300 * 20;
    config.store.max_hash_slot_num = 1000;
    config.store.max_index_num = 4000;
    config
}

fn sim_disk() -> Arc<dyn Disk> {
    Arc::new(SimDisk::new())
}

async fn open_with(config: BrokerConfig, disk: Arc<dyn Disk>) -> Arc<BrokerController> {
    BrokerController::open(config, disk)
        .await
        .expect("open broker")
}

async fn open(disk: Arc<dyn Disk>) -> Arc<BrokerController> {
    open_with(test_config(), disk).await
}

fn peer(n: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, n], 40000 + n as u16))
}

fn channel(id: u64) -> (ClientChannel, UnboundedReceiver<RemotingCommand>) {
    ClientChannel::local(id, peer(id as u8))
}

fn props_of(pairs: &[(&str, &str)]) -> String {
    let mut p = Properties::new();
    for (k, v) in pairs {
        p.insert(k.to_string(), v.to_string());
    }
    encode_properties(&p)
}

fn send_v1(topic: &str, queue_id: i32, body: &'static [u8], properties: &str) -> RemotingCommand {
    RemotingCommand::request(code::SEND_MESSAGE)
        .with_ext("producerGroup", "pg")
        .with_ext("topic", topic)
        .with_ext("defaultTopic", "TBW102")
        .with_ext("defaultTopicQueueNums", 4)
        .with_ext("queueId", queue_id)
        .with_ext("sysFlag", 0)
        .with_ext("bornTimestamp", 1_700_000_000_000i64)
        .with_ext("flag", 3)
        .with_ext("properties", properties)
        .with_body(Bytes::from_static(body))
}

fn send_v2(
    topic: &str,
    queue_id: i32,
    body: Vec<u8>,
    properties: &str,
    batch: bool,
) -> RemotingCommand {
    let code = if batch {
        code::SEND_BATCH_MESSAGE
    } else {
        code::SEND_MESSAGE_V2
    };
    RemotingCommand::request(code)
        .with_ext("a", "pg")
        .with_ext("b", topic)
        .with_ext("c", "TBW102")
        .with_ext("d", 4)
        .with_ext("e", queue_id)
        .with_ext("f", 0)
        .with_ext("g", 1_700_000_000_000i64)
        .with_ext("h", 0)
        .with_ext("i", properties)
        .with_ext("j", 0)
        .with_ext("m", batch)
        .with_body(body)
}

fn pull_request(
    group: &str,
    topic: &str,
    queue_id: i32,
    queue_offset: i64,
    sys_flag: i32,
) -> RemotingCommand {
    RemotingCommand::request(code::PULL_MESSAGE)
        .with_ext("consumerGroup", group)
        .with_ext("topic", topic)
        .with_ext("queueId", queue_id)
        .with_ext("queueOffset", queue_offset)
        .with_ext("maxMsgNums", 32)
        .with_ext("sysFlag", sys_flag)
        .with_ext("commitOffset", 0)
        .with_ext("suspendTimeoutMillis", 15_000)
        .with_ext("subscription", "*")
        .with_ext("subVersion", 0)
        .with_ext("expressionType", "TAG")
}

async fn call(
    c: &Arc<BrokerController>,
    ch: &ClientChannel,
    req: RemotingCommand,
) -> RemotingCommand {
    c.process(ch, req).await.expect("a response")
}

async fn pull_all(
    c: &Arc<BrokerController>,
    topic: &str,
    queue_id: i32,
    from: i64,
) -> Vec<MessageExt> {
    let (ch, _rx) = channel(99);
    let resp = call(
        c,
        &ch,
        pull_request("pull-all", topic, queue_id, from, FLAG_SUBSCRIPTION),
    )
    .await;
    assert_eq!(resp.code, rc::SUCCESS, "{:?}", resp.remark);
    decode_entries(&resp.body).expect("decode pulled entries")
}

fn heartbeat(client_id: &str, group: &str, topics: &[(&str, &str)]) -> RemotingCommand {
    let subs: Vec<serde_json::Value> = topics
        .iter()
        .map(|(t, expr)| {
            serde_json::to_value(
                crate::protocol::heartbeat::SubscriptionData::build(t, Some(expr), None, 1)
                    .unwrap(),
            )
            .unwrap()
        })
        .collect();
    let body = serde_json::json!({
        "clientID": client_id,
        "producerDataSet": [{"groupName": "pg"}],
        "consumerDataSet": [{
            "groupName": group,
            "consumeType": "CONSUME_PASSIVELY",
            "messageModel": "CLUSTERING",
            "consumeFromWhere": "CONSUME_FROM_FIRST_OFFSET",
            "unitMode": false,
            "subscriptionDataSet": subs,
        }],
    });
    RemotingCommand::request(code::HEART_BEAT).with_body(serde_json::to_vec(&body).unwrap())
}

#[tokio::test]
async fn send_v1_then_pull_returns_identical_message() {
    let c = open(sim_disk()).await;
    let (ch, _rx) = channel(1);
    let properties = props_of(&[
        ("TAGS", "TagA"),
        ("KEYS", "k1 k2"),
        ("UNIQ_KEY", "ABCDEF0123"),
        ("custom", "v"),
    ]);
    let resp = call(&c, &ch, send_v1("TopicV1", 2, b"hello world", &properties)).await;
    assert_eq!(resp.code, rc::SUCCESS, "{:?}", resp.remark);
    assert_eq!(resp.ext("MSG_REGION"), Some("DefaultRegion"));
    assert_eq!(resp.ext("TRACE_ON"), Some("true"));
    assert_eq!(resp.ext("queueId"), Some("2"));
    assert_eq!(resp.ext("queueOffset"), Some("0"));
    assert_eq!(resp.ext("transactionId"), Some("ABCDEF0123"));
    let msg_id = resp.ext("msgId").expect("msgId").to_string();
    assert_eq!(msg_id.len(), 32);

    // Auto-created from TBW102 with min(4, 8) queues and the inherit bit cleared.
    let tc = c.topics.select("TopicV1").expect("auto-created");
    assert_eq!(tc.write_queue_nums, 4);
    assert_eq!(tc.perm, 6);

    let msgs = pull_all(&c, "TopicV1", 2, 0).await;
    assert_eq!(msgs.len(), 1);
    let m = &msgs[0];
    assert_eq!(&m.body[..], b"hello world");
    assert_eq!(m.topic, "TopicV1");
    assert_eq!(m.queue_id, 2);
    assert_eq!(m.flag, 3);
    assert_eq!(m.born_timestamp, 1_700_000_000_000);
    assert_eq!(m.born_host, peer(1));
    assert_eq!(m.tags(), Some("TagA"));
    assert_eq!(m.keys(), vec!["k1", "k2"]);
    assert_eq!(m.uniq_key(), Some("ABCDEF0123"));
    assert_eq!(m.properties.get("custom").map(String::as_str), Some("v"));
    assert_eq!(
        m.properties.get(props::CLUSTER).map(String::as_str),
        Some("DefaultCluster")
    );
    assert_eq!(m.offset_msg_id(), msg_id);
}

#[tokio::test]
async fn send_v2_and_batch_then_pull() {
    let c = open(sim_disk()).await;
    let (ch, _rx) = channel(1);
    // V2 without UNIQ_KEY: the broker generates one.
    let resp = call(
        &c,
        &ch,
        send_v2(
            "TopicV2",
            0,
            b"v2 body".to_vec(),
            &props_of(&[("TAGS", "x")]),
            false,
        ),
    )
    .await;
    assert_eq!(resp.code, rc::SUCCESS, "{:?}", resp.remark);
    let generated = resp
        .ext("transactionId")
        .expect("transactionId")
        .to_string();
    assert!(!generated.is_empty());

    let items = vec![
        BatchItem {
            flag: 1,
            body: Bytes::from_static(b"first"),
            properties: props_of(&[("TAGS", "a"), ("UNIQ_KEY", "U1")]),
        },
        BatchItem {
            flag: 2,
            body: Bytes::from_static(b"second"),
            properties: props_of(&[("KEYS", "kb"), ("UNIQ_KEY", "U2")]),
        },
        BatchItem {
            flag: 3,
            body: Bytes::from_static(b""),
            properties: String::new(),
        },
    ];
    let resp = call(
        &c,
        &ch,
        send_v2("TopicV2", 0, encode_batch_body(&items), "", true),
    )
    .await;
    assert_eq!(resp.code, rc::SUCCESS, "{:?}", resp.remark);
    assert_eq!(resp.ext("queueOffset"), Some("1"));
    assert_eq!(resp.ext("msgId").map(|s| s.split(',').count()), Some(3));
    assert!(resp.ext("MSG_REGION").is_some());

    let msgs = pull_all(&c, "TopicV2", 0, 0).await;
    assert_eq!(msgs.len(), 4);
    assert_eq!(&msgs[0].body[..], b"v2 body");
    assert_eq!(msgs[0].uniq_key(), Some(generated.as_str()));
    assert_eq!(&msgs[1].body[..], b"first");
    assert_eq!(msgs[1].flag, 1);
    assert_eq!(msgs[1].tags(), Some("a"));
    assert_eq!(msgs[1].uniq_key(), Some("U1"));
    assert_eq!(&msgs[2].body[..], b"second");
    assert_eq!(msgs[2].keys(), vec!["kb"]);
    assert_eq!(msgs[3].flag, 3);
    assert!(
        msgs[3].uniq_key().is_some(),
        "broker generates UNIQ_KEY for inner messages"
    );
    for (i, m) in msgs.iter().enumerate() {
        assert_eq!(m.queue_offset, i as i64);
    }
}

#[tokio::test]
async fn send_rejections() {
    let mut config = test_config();
    config.auto_create_topic_enable = false;
    let c = open_with(config, sim_disk()).await;
    let (ch, _rx) = channel(1);
    assert!(c.topics.select("TBW102").is_none());

    let resp = call(&c, &ch, send_v1("Unknown", 0, b"x", "")).await;
    assert_eq!(resp.code, rc::TOPIC_NOT_EXIST);
    assert!(resp.remark.as_deref().unwrap_or("").contains("Unknown"));
    assert!(
        resp.ext("MSG_REGION").is_some(),
        "error responses carry MSG_REGION too"
    );

    let resp = call(&c, &ch, send_v1("bad topic!", 0, b"x", "")).await;
    assert_eq!(resp.code, rc::INVALID_PARAMETER);

    let resp = call(&c, &ch, send_v1("SCHEDULE_TOPIC_XXXX", 0, b"x", "")).await;
    assert_eq!(resp.code, rc::NO_PERMISSION);

    // SELF_TEST_TOPIC has one queue.
    let resp = call(&c, &ch, send_v1("SELF_TEST_TOPIC", 1, b"x", "")).await;
    assert_eq!(resp.code, rc::INVALID_PARAMETER);
    let resp = call(&c, &ch, send_v1("SELF_TEST_TOPIC", -1, b"x", "")).await;
    assert_eq!(resp.code, rc::SUCCESS);
    assert_eq!(resp.ext("queueId"), Some("0"));

    let mut missing = send_v1("SELF_TEST_TOPIC", 0, b"x", "");
    missing.ext_fields.remove("queueId");
    let resp = call(&c, &ch, missing).await;
    assert_eq!(resp.code, rc::SYSTEM_ERROR);
    assert!(
        resp.remark.as_deref().unwrap_or("").contains("queueId"),
        "{:?}",
        resp.remark
    );

    let resp = call(&c, &ch, RemotingCommand::request(9999)).await;
    assert_eq!(resp.code, rc::REQUEST_CODE_NOT_SUPPORTED);

    let resp = call(
        &c,
        &ch,
        send_v2("SELF_TEST_TOPIC", 0, vec![0, 0, 0, 99], "", true),
    )
    .await;
    assert_eq!(resp.code, rc::MESSAGE_ILLEGAL);
}

#[tokio::test]
async fn slave_refuses_sends() {
    let mut config = test_config();
    config.store.broker_role = crate::store::BrokerRole::Slave;
    config.broker_id = 1;
    let c = open_with(config, sim_disk()).await;
    let (ch, _rx) = channel(1);
    let resp = call(&c, &ch, send_v1("SELF_TEST_TOPIC", 0, b"x", "")).await;
    assert_eq!(resp.code, rc::SERVICE_NOT_AVAILABLE);
}

#[tokio::test]
async fn retry_topic_reroutes_to_dlq_after_max_reconsume() {
    let c = open(sim_disk()).await;
    let (ch, _rx) = channel(1);
    let mut req = send_v1("%RETRY%cg", 0, b"retry me", &props_of(&[("TAGS", "t")]));
    req.set_ext("reconsumeTimes", 3);
    req.set_ext("maxReconsumeTimes", 16);
    req.version = 409;
    let resp = call(&c, &ch, req).await;
    assert_eq!(resp.code, rc::SUCCESS, "{:?}", resp.remark);
    assert_eq!(pull_all(&c, "%RETRY%cg", 0, 0).await.len(), 1);

    let mut req = send_v1("%RETRY%cg", 0, b"dead", "");
    req.set_ext("reconsumeTimes", 17);
    req.set_ext("maxReconsumeTimes", 16);
    req.version = 409;
    let resp = call(&c, &ch, req).await;
    assert_eq!(resp.code, rc::SUCCESS, "{:?}", resp.remark);
    let dlq = pull_all(&c, "%DLQ%cg", 0, 0).await;
    assert_eq!(dlq.len(), 1);
    assert_eq!(&dlq[0].body[..], b"dead");
    assert_eq!(dlq[0].reconsume_times, 17);

    // Batches to retry topics are illegal.
    let resp = call(
        &c,
        &ch,
        send_v2("%RETRY%cg", 0, encode_batch_body(&[]), "", true),
    )
    .await;
    assert_eq!(resp.code, rc::MESSAGE_ILLEGAL);
}

#[tokio::test]
async fn pull_statuses() {
    let c = open(sim_disk()).await;
    let (ch, _rx) = channel(1);
    for i in 0..3 {
        let tag = if i == 1 { "TagB" } else { "TagA" };
        let resp = call(
            &c,
            &ch,
            send_v1("PullTopic", 0, b"m", &props_of(&[("TAGS", tag)])),
        )
        .await;
        assert_eq!(resp.code, rc::SUCCESS);
    }
    // Offset beyond the end: moved to max (RocketMQ 5.x DefaultMessageStore.getMessage:
    // nextOffsetCorrection(offset, maxOffset); 4.9 used minOffset when it was 0).
    let resp = call(
        &c,
        &ch,
        pull_request("g", "PullTopic", 0, 10, FLAG_SUBSCRIPTION),
    )
    .await;
    assert_eq!(resp.code, rc::PULL_OFFSET_MOVED);
    assert_eq!(resp.ext("nextBeginOffset"), Some("3"));
    assert_eq!(resp.ext("maxOffset"), Some("3"));
    // Exactly at the end without SUSPEND: not found, answered at once.
    let resp = call(
        &c,
        &ch,
        pull_request("g", "PullTopic", 0, 3, FLAG_SUBSCRIPTION),
    )
    .await;
    assert_eq!(resp.code, rc::PULL_NOT_FOUND);
    assert_eq!(resp.remark.as_deref(), Some("OFFSET_OVERFLOW_ONE"));
    // Empty queue at offset 0: not found; at offset 5: moved.
    let resp = call(
        &c,
        &ch,
        pull_request("g", "PullTopic", 1, 0, FLAG_SUBSCRIPTION),
    )
    .await;
    assert_eq!(resp.code, rc::PULL_NOT_FOUND);
    let resp = call(
        &c,
        &ch,
        pull_request("g", "PullTopic", 1, 5, FLAG_SUBSCRIPTION),
    )
    .await;
    assert_eq!(resp.code, rc::PULL_OFFSET_MOVED);
    // Tag filter from the request's subscription.
    let mut req = pull_request("g", "PullTopic", 0, 0, FLAG_SUBSCRIPTION);
    req.set_ext("subscription", "TagB");
    let resp = call(&c, &ch, req).await;
    assert_eq!(resp.code, rc::SUCCESS);
    let msgs = decode_entries(&resp.body).unwrap();
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].tags(), Some("TagB"));
    // Without the SUBSCRIPTION flag the heartbeat's subscription is required.
    let resp = call(&c, &ch, pull_request("g2", "PullTopic", 0, 0, 0)).await;
    assert_eq!(resp.code, rc::SUBSCRIPTION_NOT_EXIST);
    let hb = call(&c, &ch, heartbeat("c1@1", "g2", &[("PullTopic", "TagA")])).await;
    assert_eq!(hb.code, rc::SUCCESS);
    let resp = call(&c, &ch, pull_request("g2", "PullTopic", 0, 0, 0)).await;
    assert_eq!(resp.code, rc::SUCCESS);
    let msgs = decode_entries(&resp.body).unwrap();
    assert_eq!(
        msgs.iter().map(|m| m.tags().unwrap()).collect::<Vec<_>>(),
        vec!["TagA", "TagA"]
    );
    // Heartbeat sub version 1 is older than the pull's.
    let mut req = pull_request("g2", "PullTopic", 0, 0, 0);
    req.set_ext("subVersion", 5);
    assert_eq!(call(&c, &ch, req).await.code, rc::SUBSCRIPTION_NOT_LATEST);
    // Unknown topic and bad queue id.
    let resp = call(
        &c,
        &ch,
        pull_request("g", "NoSuchTopic", 0, 0, FLAG_SUBSCRIPTION),
    )
    .await;
    assert_eq!(resp.code, rc::TOPIC_NOT_EXIST);
    let resp = call(
        &c,
        &ch,
        pull_request("g", "PullTopic", 4, 0, FLAG_SUBSCRIPTION),
    )
    .await;
    assert_eq!(resp.code, rc::INVALID_PARAMETER);
    // COMMIT_OFFSET stores the commit offset.
    let mut req = pull_request(
        "g3",
        "PullTopic",
        0,
        0,
        FLAG_SUBSCRIPTION | FLAG_COMMIT_OFFSET,
    );
    req.set_ext("commitOffset", 2);
    assert_eq!(call(&c, &ch, req).await.code, rc::SUCCESS);
    assert_eq!(c.offsets.query("g3", "PullTopic", 0), Some(2));
}

#[tokio::test]
async fn long_poll_wakes_on_arrival() {
    let c = open(sim_disk()).await;
    let (ch, _rx) = channel(1);
    let (consumer, mut consumer_rx) = channel(2);
    assert_eq!(
        call(&c, &ch, send_v1("LpTopic", 0, b"first", ""))
            .await
            .code,
        rc::SUCCESS
    );
    let mut req = pull_request("g", "LpTopic", 0, 1, FLAG_SUBSCRIPTION | FLAG_SUSPEND);
    req.opaque = 77;
    assert!(
        c.process(&consumer, req).await.is_none(),
        "parked, no response yet"
    );
    assert_eq!(c.held_pull_count(), 1);
    // Nothing arrives: the checker does not answer before the deadline.
    c.check_held_pulls();
    assert!(consumer_rx.try_recv().is_err());

    assert_eq!(
        call(&c, &ch, send_v1("LpTopic", 0, b"second", ""))
            .await
            .code,
        rc::SUCCESS
    );
    let resp = tokio::time::timeout(Duration::from_secs(5), consumer_rx.recv())
        .await
        .expect("woken within 5 s")
        .expect("a response");
    assert_eq!(resp.opaque, 77);
    assert_eq!(resp.code, rc::SUCCESS);
    let msgs = decode_entries(&resp.body).unwrap();
    assert_eq!(msgs.len(), 1);
    assert_eq!(&msgs[0].body[..], b"second");
    assert_eq!(c.held_pull_count(), 0);
}

#[tokio::test]
async fn long_poll_times_out_with_not_found() {
    let c = open(sim_disk()).await;
    let (consumer, mut consumer_rx) = channel(2);
    let mut req = pull_request(
        "g",
        "SELF_TEST_TOPIC",
        0,
        0,
        FLAG_SUBSCRIPTION | FLAG_SUSPEND,
    );
    req.set_ext("suspendTimeoutMillis", 100);
    req.opaque = 5;
    assert!(c.process(&consumer, req).await.is_none());
    c.check_held_pulls();
    assert!(consumer_rx.try_recv().is_err(), "not before the deadline");
    tokio::time::sleep(Duration::from_millis(150)).await;
    c.check_held_pulls();
    let resp = tokio::time::timeout(Duration::from_secs(5), consumer_rx.recv())
        .await
        .expect("answered after the timeout")
        .expect("a response");
    assert_eq!(resp.opaque, 5);
    assert_eq!(resp.code, rc::PULL_NOT_FOUND);
    assert_eq!(c.held_pull_count(), 0);
}

#[tokio::test]
async fn heartbeat_consumer_list_and_notify() {
    let c = open(sim_disk()).await;
    let (ch1, mut rx1) = channel(1);
    let (ch2, mut rx2) = channel(2);
    assert_eq!(
        call(&c, &ch1, heartbeat("10.0.0.1@b", "cg", &[("T", "*")]))
            .await
            .code,
        rc::SUCCESS
    );
    // First member: notified of its own join.
    assert_eq!(
        rx1.try_recv().map(|r| r.code).ok(),
        Some(code::NOTIFY_CONSUMER_IDS_CHANGED)
    );
    // Same heartbeat again: no change, no notify.
    call(&c, &ch1, heartbeat("10.0.0.1@b", "cg", &[("T", "*")])).await;
    assert!(rx1.try_recv().is_err());
    assert_eq!(
        call(&c, &ch2, heartbeat("10.0.0.2@a", "cg", &[("T", "*")]))
            .await
            .code,
        rc::SUCCESS
    );
    let n = rx1.try_recv().expect("member 1 notified");
    assert_eq!(n.code, code::NOTIFY_CONSUMER_IDS_CHANGED);
    assert!(n.is_oneway());
    assert_eq!(n.ext("consumerGroup"), Some("cg"));
    assert!(rx2.try_recv().is_ok());

    // Group, retry topic and producer registered.
    assert!(c.groups.get("cg").is_some());
    assert_eq!(
        c.topics.select("%RETRY%cg").map(|t| t.write_queue_nums),
        Some(1)
    );

    let req =
        RemotingCommand::request(code::GET_CONSUMER_LIST_BY_GROUP).with_ext("consumerGroup", "cg");
    let resp = call(&c, &ch1, req.clone()).await;
    assert_eq!(resp.code, rc::SUCCESS);
    let list: ConsumerListBody = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(list.consumer_id_list, vec!["10.0.0.1@b", "10.0.0.2@a"]);

    let resp = call(
        &c,
        &ch1,
        RemotingCommand::request(code::GET_CONSUMER_CONNECTION_LIST)
            .with_ext("consumerGroup", "cg"),
    )
    .await;
    assert_eq!(resp.code, rc::SUCCESS);
    let conn: ConsumerConnection = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(conn.connection_set.len(), 2);
    assert!(conn.subscription_table.contains_key("T"));

    // Connection close removes member 2 and tells member 1.
    c.on_channel_closed(ch2.id());
    assert_eq!(
        rx1.try_recv().map(|r| r.code).ok(),
        Some(code::NOTIFY_CONSUMER_IDS_CHANGED)
    );
    let resp = call(&c, &ch1, req.clone()).await;
    let list: ConsumerListBody = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(list.consumer_id_list, vec!["10.0.0.1@b"]);

    // UNREGISTER_CLIENT empties the group.
    let unreg = RemotingCommand::request(code::UNREGISTER_CLIENT)
        .with_ext("clientID", "10.0.0.1@b")
        .with_ext("consumerGroup", "cg");
    assert_eq!(call(&c, &ch1, unreg).await.code, rc::SUCCESS);
    let resp = call(&c, &ch1, req).await;
    assert_eq!(resp.code, rc::SYSTEM_ERROR);
    assert_eq!(
        resp.remark.as_deref(),
        Some("no consumer for this group, cg")
    );

    let resp = call(
        &c,
        &ch1,
        RemotingCommand::request(code::HEART_BEAT).with_body(&b"{not json"[..]),
    )
    .await;
    assert_eq!(resp.code, rc::SYSTEM_ERROR);
}

#[tokio::test]
async fn offsets_query_update_and_persist_across_restart() {
    let disk = sim_disk();
    let c = open(disk.clone()).await;
    let (ch, _rx) = channel(1);
    let query = RemotingCommand::request(code::QUERY_CONSUMER_OFFSET)
        .with_ext("consumerGroup", "g")
        .with_ext("topic", "SELF_TEST_TOPIC")
        .with_ext("queueId", 0);
    // Never committed, queue starts at 0: offset 0.
    let resp = call(&c, &ch, query.clone()).await;
    assert_eq!((resp.code, resp.ext("offset")), (rc::SUCCESS, Some("0")));
    let resp = call(&c, &ch, query.clone().with_ext("setZeroIfNotFound", false)).await;
    assert_eq!(resp.code, rc::QUERY_NOT_FOUND);

    let mut update = RemotingCommand::request(code::UPDATE_CONSUMER_OFFSET)
        .with_ext("consumerGroup", "g")
        .with_ext("topic", "SELF_TEST_TOPIC")
        .with_ext("queueId", 0)
        .with_ext("commitOffset", 42);
    update.mark_oneway();
    assert!(c
        .process(&ch, update)
        .await
        .is_some_and(|r| r.code == rc::SUCCESS));
    let resp = call(&c, &ch, query.clone()).await;
    assert_eq!(resp.ext("offset"), Some("42"));

    c.shutdown().await;
    drop(c);
    let c = open(disk.clone()).await;
    let resp = call(&c, &ch, query).await;
    assert_eq!(
        resp.ext("offset"),
        Some("42"),
        "offset survived the restart"
    );
    let text = crate::store::disk::read_file(
        &*disk,
        Path::new(&format!("{ROOT}/config/consumerOffset.json")),
    )
    .unwrap()
    .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&text).unwrap();
    assert_eq!(v["offsetTable"]["SELF_TEST_TOPIC@g"]["0"], 42);
    c.shutdown().await;
}

#[tokio::test]
async fn persisted_json_formats() {
    let disk = sim_disk();
    // A consumerOffset.json as fastjson writes it: unquoted queue-id keys.
    crate::store::disk::write_file_atomic(
        &*disk,
        Path::new(&format!("{ROOT}/config/consumerOffset.json")),
        br#"{"offsetTable":{"T@g":{0:5,1:7}}}"#,
    )
    .unwrap();
    let c = open(disk.clone()).await;
    assert_eq!(c.offsets.query("g", "T", 0), Some(5));
    assert_eq!(c.offsets.query("g", "T", 1), Some(7));
    assert_eq!(
        c.offsets.encode(),
        "{\n  \"offsetTable\": {\n    \"T@g\": {\n      \"0\": 5,\n      \"1\": 7\n    }\n  }\n}"
    );

    // Written by a background task right after start (off the start-up path).
    let topics_path = format!("{ROOT}/config/topics.json");
    let mut topics_text = None;
    for _ in 0..200 {
        topics_text = crate::store::disk::read_file(&*disk, Path::new(&topics_path)).unwrap();
        if topics_text.is_some() {
            break;
        }
        crate::rt::sleep(Duration::from_millis(5)).await;
    }
    let topics_text = topics_text.expect("topics.json written shortly after start");
    let wrapper: TopicConfigSerializeWrapper = serde_json::from_slice(&topics_text).unwrap();
    let tbw = &wrapper.topic_config_table["TBW102"];
    assert_eq!(
        (tbw.perm, tbw.read_queue_nums, tbw.write_queue_nums),
        (7, 8, 8)
    );
    assert!(wrapper.topic_config_table.contains_key("SELF_TEST_TOPIC"));
    assert!(wrapper.topic_config_table.contains_key("DefaultCluster"));
    assert!(wrapper.topic_config_table.contains_key("broker-a"));
    let golden_self_test = serde_json::json!({
        "topicName": "SELF_TEST_TOPIC", "readQueueNums": 1, "writeQueueNums": 1, "perm": 6,
        "topicFilterType": "SINGLE_TAG", "topicSysFlag": 0, "order": false, "attributes": {}
    });
    let v: serde_json::Value = serde_json::from_slice(&topics_text).unwrap();
    assert_eq!(v["topicConfigTable"]["SELF_TEST_TOPIC"], golden_self_test);

    c.groups
        .update(super::subscription_group::SubscriptionGroupConfig::new(
            "gg",
        ));
    c.groups.persist().await.unwrap();
    let groups_text = crate::store::disk::read_file(
        &*disk,
        Path::new(&format!("{ROOT}/config/subscriptionGroup.json")),
    )
    .unwrap()
    .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&groups_text).unwrap();
    assert_eq!(
        v["subscriptionGroupTable"]["gg"],
        serde_json::json!({
            "groupName": "gg", "consumeEnable": true, "consumeFromMinEnable": true,
            "consumeBroadcastEnable": true, "consumeMessageOrderly": false, "retryQueueNums": 1,
            "retryMaxTimes": 16, "brokerId": 0, "whichBrokerWhenConsumeSlowly": 1,
            "notifyConsumerIdsChangedEnable": true, "groupSysFlag": 0, "consumeTimeoutMinute": 15,
            "attributes": {}
        })
    );
    c.shutdown().await;
}

#[tokio::test]
async fn corrupt_config_file_is_a_clear_error() {
    let disk = sim_disk();
    crate::store::disk::write_file_atomic(
        &*disk,
        Path::new(&format!("{ROOT}/config/topics.json")),
        b"{\"topicConfigTable\": [",
    )
    .unwrap();
    let err = match BrokerController::open(test_config(), disk).await {
        Ok(_) => panic!("corrupt topics.json must fail the start"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("topics.json"), "{err}");
    assert!(err.contains("line 1"), "{err}");
}

#[tokio::test]
async fn send_back_goes_to_retry_then_dlq() {
    let c = open(sim_disk()).await;
    let (ch, _rx) = channel(1);
    let resp = call(
        &c,
        &ch,
        send_v1(
            "Orig",
            0,
            b"payload",
            &props_of(&[("TAGS", "t1"), ("UNIQ_KEY", "UK")]),
        ),
    )
    .await;
    assert_eq!(resp.code, rc::SUCCESS);
    let msgs = pull_all(&c, "Orig", 0, 0).await;
    let original = &msgs[0];
    let back = |max: i32| {
        let mut r = RemotingCommand::request(code::CONSUMER_SEND_MSG_BACK)
            .with_ext("offset", original.commitlog_offset)
            .with_ext("group", "cg")
            .with_ext("delayLevel", 0)
            .with_ext("originMsgId", "UK")
            .with_ext("maxReconsumeTimes", max);
        r.version = 409;
        r
    };
    let resp = call(&c, &ch, back(16)).await;
    assert_eq!(resp.code, rc::SUCCESS, "{:?}", resp.remark);
    let retried = pull_all(&c, "%RETRY%cg", 0, 0).await;
    assert_eq!(retried.len(), 1);
    let r = &retried[0];
    assert_eq!(&r.body[..], b"payload");
    assert_eq!(r.reconsume_times, 1);
    assert_eq!(
        r.properties.get(props::RETRY_TOPIC).map(String::as_str),
        Some("Orig")
    );
    assert_eq!(
        r.properties
            .get(props::ORIGIN_MESSAGE_ID)
            .map(String::as_str),
        Some("UK")
    );
    assert_eq!(r.tags(), Some("t1"));

    // reconsumeTimes 0 >= max 0: DLQ.
    let resp = call(&c, &ch, back(0)).await;
    assert_eq!(resp.code, rc::SUCCESS);
    assert_eq!(pull_all(&c, "%DLQ%cg", 0, 0).await.len(), 1);

    let mut bad = back(16);
    bad.set_ext("offset", 999_999);
    assert_eq!(call(&c, &ch, bad).await.code, rc::SYSTEM_ERROR);
}

#[tokio::test]
async fn lock_and_unlock_batch() {
    let c = open(sim_disk()).await;
    let (ch, _rx) = channel(1);
    let body = |client: &str| {
        serde_json::json!({"consumerGroup":"g","clientId":client,"onlyThisBroker":false,
            "mqSet":[{"topic":"T","brokerName":"broker-a","queueId":0},{"topic":"T","brokerName":"broker-a","queueId":1}]})
        .to_string()
    };
    let lock = |client: &str| RemotingCommand::request(code::LOCK_BATCH_MQ).with_body(body(client));
    let resp = call(&c, &ch, lock("c1")).await;
    let locked: LockBatchResponseBody = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(locked.lock_ok_mq_set.len(), 2);
    let resp = call(&c, &ch, lock("c2")).await;
    let locked: LockBatchResponseBody = serde_json::from_slice(&resp.body).unwrap();
    assert!(locked.lock_ok_mq_set.is_empty());
    let unlock = RemotingCommand::request(code::UNLOCK_BATCH_MQ).with_body(body("c1"));
    assert_eq!(call(&c, &ch, unlock).await.code, rc::SUCCESS);
    let resp = call(&c, &ch, lock("c2")).await;
    let locked: LockBatchResponseBody = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(locked.lock_ok_mq_set.len(), 2);
}

#[tokio::test]
async fn admin_topics_stats_and_runtime_info() {
    let c = open(sim_disk()).await;
    let (ch, _rx) = channel(1);
    let create = RemotingCommand::request(code::UPDATE_AND_CREATE_TOPIC)
        .with_ext("topic", "AdminT")
        .with_ext("defaultTopic", "TBW102")
        .with_ext("readQueueNums", 2)
        .with_ext("writeQueueNums", 2)
        .with_ext("perm", 6)
        .with_ext("topicFilterType", "SINGLE_TAG")
        .with_ext("order", false);
    assert_eq!(call(&c, &ch, create).await.code, rc::SUCCESS);
    for _ in 0..3 {
        assert_eq!(
            call(&c, &ch, send_v1("AdminT", 1, b"x", "")).await.code,
            rc::SUCCESS
        );
    }
    let resp = call(
        &c,
        &ch,
        RemotingCommand::request(code::GET_ALL_TOPIC_CONFIG),
    )
    .await;
    let wrapper: TopicConfigSerializeWrapper = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(wrapper.topic_config_table["AdminT"].read_queue_nums, 2);

    let resp = call(
        &c,
        &ch,
        RemotingCommand::request(code::GET_TOPIC_STATS_INFO).with_ext("topic", "AdminT"),
    )
    .await;
    assert_eq!(resp.code, rc::SUCCESS);
    let stats = TopicStatsTable::decode(std::str::from_utf8(&resp.body).unwrap()).unwrap();
    assert_eq!(stats.offset_table.len(), 2);
    let q1 = stats
        .offset_table
        .iter()
        .find(|(mq, _)| mq.queue_id == 1)
        .unwrap()
        .1;
    assert_eq!((q1.min_offset, q1.max_offset), (0, 3));
    assert!(q1.last_update_timestamp > 0);

    c.offsets.commit("cg", "AdminT", 1, 2);
    let resp = call(
        &c,
        &ch,
        RemotingCommand::request(code::GET_CONSUME_STATS).with_ext("consumerGroup", "cg"),
    )
    .await;
    let cs = ConsumeStats::decode(std::str::from_utf8(&resp.body).unwrap()).unwrap();
    let w = cs
        .offset_table
        .iter()
        .find(|(mq, _)| mq.queue_id == 1)
        .unwrap()
        .1;
    assert_eq!((w.broker_offset, w.consumer_offset), (3, 2));

    let resp = call(
        &c,
        &ch,
        RemotingCommand::request(code::GET_BROKER_RUNTIME_INFO),
    )
    .await;
    let v: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(v["table"]["msgPutTotalTodayNow"], "3");
    assert!(v["table"]["commitLogMaxOffset"].as_str().is_some());

    let resp = call(
        &c,
        &ch,
        RemotingCommand::request(code::DELETE_TOPIC_IN_BROKER).with_ext("topic", "AdminT"),
    )
    .await;
    assert_eq!(resp.code, rc::SUCCESS);
    assert!(c.topics.select("AdminT").is_none());
    assert_eq!(c.offsets.query("cg", "AdminT", 1), None);

    let group = serde_json::json!({"groupName":"newg","consumeEnable":false});
    let resp = call(
        &c,
        &ch,
        RemotingCommand::request(code::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP)
            .with_body(group.to_string()),
    )
    .await;
    assert_eq!(resp.code, rc::SUCCESS);
    assert_eq!(c.groups.get("newg").map(|g| g.consume_enable), Some(false));
    let resp = call(
        &c,
        &ch,
        pull_request("newg", "SELF_TEST_TOPIC", 0, 0, FLAG_SUBSCRIPTION),
    )
    .await;
    assert_eq!(resp.code, rc::NO_PERMISSION);
}

#[tokio::test]
async fn query_by_key_and_view_by_id() {
    let c = open(sim_disk()).await;
    let (ch, _rx) = channel(1);
    let resp = call(
        &c,
        &ch,
        send_v1(
            "QT",
            0,
            b"findme",
            &props_of(&[("KEYS", "order-1"), ("UNIQ_KEY", "UNIQ1")]),
        ),
    )
    .await;
    assert_eq!(resp.code, rc::SUCCESS);
    let msg_id = resp.ext("msgId").unwrap().to_string();
    let query = |key: &str| {
        RemotingCommand::request(code::QUERY_MESSAGE)
            .with_ext("topic", "QT")
            .with_ext("key", key)
            .with_ext("maxNum", 10)
            .with_ext("beginTimestamp", 0)
            .with_ext("endTimestamp", i64::MAX)
    };
    let resp = call(&c, &ch, query("order-1")).await;
    assert_eq!(resp.code, rc::SUCCESS, "{:?}", resp.remark);
    assert_eq!(&decode_entries(&resp.body).unwrap()[0].body[..], b"findme");
    let resp = call(&c, &ch, query("UNIQ1").with_ext("_UNIQUE_KEY_QUERY", true)).await;
    assert_eq!(resp.code, rc::SUCCESS);
    let resp = call(&c, &ch, query("nope")).await;
    assert_eq!(resp.code, rc::QUERY_NOT_FOUND);

    let (_, commitlog_offset) = crate::message::msg_id::decode_offset_msg_id(&msg_id).unwrap();
    let resp = call(
        &c,
        &ch,
        RemotingCommand::request(code::VIEW_MESSAGE_BY_ID).with_ext("offset", commitlog_offset),
    )
    .await;
    assert_eq!(resp.code, rc::SUCCESS);
    assert_eq!(&decode_entries(&resp.body).unwrap()[0].body[..], b"findme");
    let _ = decode_properties("");
}
