//! End-to-end tests over real loopback sockets (tokio): a Broker on a SimDisk and a
//! RemotingClient speaking the wire protocol.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::processors::pull::FLAG_SUBSCRIPTION;
use super::processors::send::{encode_batch_body, BatchItem};
use super::tests::test_config;
use super::*;
use crate::message::decode_entries;
use crate::message::properties::{encode_properties, Properties};
use crate::protocol::consumer::ConsumerListBody;
use crate::remoting::request_code as code;
use crate::remoting::response_code as rc;
use crate::store::disk::sim::SimDisk;

const TIMEOUT_MS: u64 = 5_000;

/// Collects server-initiated requests (NOTIFY_CONSUMER_IDS_CHANGED).
struct Collector(mpsc::UnboundedSender<RemotingCommand>);

impl RequestProcessor for Collector {
    fn process(
        self: Arc<Self>,
        _conn: Connection,
        request: RemotingCommand,
    ) -> BoxFuture<'static, Option<RemotingCommand>> {
        let _ = self.0.send(request);
        Box::pin(async { None })
    }
}

fn loopback(addr: SocketAddr) -> String {
    format!("127.0.0.1:{}", addr.port())
}

async fn start(disk: Arc<dyn Disk>) -> Broker {
    Broker::start(test_config(), disk)
        .await
        .expect("broker starts")
}

fn props(pairs: &[(&str, &str)]) -> String {
    let mut p = Properties::new();
    for (k, v) in pairs {
        p.insert(k.to_string(), v.to_string());
    }
    encode_properties(&p)
}

fn send_v2(topic: &str, body: &'static [u8], properties: &str) -> RemotingCommand {
    RemotingCommand::request(code::SEND_MESSAGE_V2)
        .with_ext("a", "pg")
        .with_ext("b", topic)
        .with_ext("c", "TBW102")
        .with_ext("d", 4)
        .with_ext("e", 0)
        .with_ext("f", 0)
        .with_ext("g", 1)
        .with_ext("h", 0)
        .with_ext("i", properties)
        .with_body(Bytes::from_static(body))
}

fn pull(topic: &str, queue_offset: i64) -> RemotingCommand {
    RemotingCommand::request(code::PULL_MESSAGE)
        .with_ext("consumerGroup", "cg")
        .with_ext("topic", topic)
        .with_ext("queueId", 0)
        .with_ext("queueOffset", queue_offset)
        .with_ext("maxMsgNums", 32)
        .with_ext("sysFlag", FLAG_SUBSCRIPTION)
        .with_ext("commitOffset", 0)
        .with_ext("suspendTimeoutMillis", 1000)
        .with_ext("subscription", "*")
        .with_ext("subVersion", 0)
}

#[tokio::test]
async fn send_v2_batch_and_pull_over_tcp() {
    let broker = start(Arc::new(SimDisk::new())).await;
    let addr = loopback(broker.local_addr());
    let client = RemotingClient::new();
    let resp = client
        .invoke(
            &addr,
            send_v2(
                "E2E",
                b"over the wire",
                &props(&[("TAGS", "t"), ("KEYS", "k")]),
            ),
            TIMEOUT_MS,
        )
        .await
        .unwrap();
    assert_eq!(resp.code, rc::SUCCESS, "{:?}", resp.remark);
    assert_eq!(resp.ext("MSG_REGION"), Some("DefaultRegion"));
    assert_eq!(resp.ext("TRACE_ON"), Some("true"));

    let items = vec![
        BatchItem {
            flag: 0,
            body: Bytes::from_static(b"b1"),
            properties: props(&[("TAGS", "x")]),
        },
        BatchItem {
            flag: 0,
            body: Bytes::from_static(b"b2"),
            properties: String::new(),
        },
    ];
    let batch = send_v2("E2E", b"", "")
        .with_body(encode_batch_body(&items))
        .with_ext("m", true);
    let mut batch = batch;
    batch.code = code::SEND_BATCH_MESSAGE;
    // The VIP port serves the same processor.
    let resp = client
        .invoke(&loopback(broker.vip_addr()), batch, TIMEOUT_MS)
        .await
        .unwrap();
    assert_eq!(resp.code, rc::SUCCESS, "{:?}", resp.remark);

    let resp = client
        .invoke(&addr, pull("E2E", 0), TIMEOUT_MS)
        .await
        .unwrap();
    assert_eq!(resp.code, rc::SUCCESS, "{:?}", resp.remark);
    let msgs = decode_entries(&resp.body).unwrap();
    let bodies: Vec<&[u8]> = msgs.iter().map(|m| &m.body[..]).collect();
    assert_eq!(bodies, vec![&b"over the wire"[..], b"b1", b"b2"]);
    assert_eq!(msgs[0].tags(), Some("t"));
    assert_eq!(msgs[0].keys(), vec!["k"]);
    assert_eq!(
        msgs[0].born_host.ip(),
        std::net::IpAddr::from([127, 0, 0, 1])
    );

    // Offset moved and not found (with SUSPEND it would park; here a 1 s long poll times out).
    let resp = client
        .invoke(&addr, pull("E2E", 9), TIMEOUT_MS)
        .await
        .unwrap();
    assert_eq!(resp.code, rc::PULL_OFFSET_MOVED);
    let mut parked = pull("E2E", 3);
    parked.set_ext(
        "sysFlag",
        FLAG_SUBSCRIPTION | super::processors::pull::FLAG_SUSPEND,
    );
    parked.set_ext("suspendTimeoutMillis", 300);
    let started = rt::now();
    let resp = client.invoke(&addr, parked, TIMEOUT_MS).await.unwrap();
    assert_eq!(resp.code, rc::PULL_NOT_FOUND);
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "answered only after the suspend timeout"
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn long_poll_over_tcp_wakes_on_send() {
    let broker = start(Arc::new(SimDisk::new())).await;
    let addr = loopback(broker.local_addr());
    let consumer = RemotingClient::new();
    let producer = RemotingClient::new();
    let mut parked = pull("SELF_TEST_TOPIC", 0);
    parked.set_ext(
        "sysFlag",
        FLAG_SUBSCRIPTION | super::processors::pull::FLAG_SUSPEND,
    );
    parked.set_ext("suspendTimeoutMillis", 4000);
    let addr2 = addr.clone();
    let waiter = rt::spawn(async move { consumer.invoke(&addr2, parked, 10_000).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = rt::now();
    let resp = producer
        .invoke(&addr, send_v2("SELF_TEST_TOPIC", b"wake", ""), TIMEOUT_MS)
        .await
        .unwrap();
    assert_eq!(resp.code, rc::SUCCESS);
    let resp = waiter.await.unwrap().unwrap();
    assert_eq!(resp.code, rc::SUCCESS);
    assert!(
        started.elapsed() < Duration::from_millis(2000),
        "woken by the arrival, not the timeout"
    );
    assert_eq!(&decode_entries(&resp.body).unwrap()[0].body[..], b"wake");
    broker.shutdown().await;
}

#[tokio::test]
async fn heartbeat_notify_push_and_consumer_list() {
    let broker = start(Arc::new(SimDisk::new())).await;
    let addr = loopback(broker.local_addr());
    let (tx1, mut rx1) = mpsc::unbounded_channel();
    let c1 = RemotingClient::with_handler(Arc::new(Collector(tx1)));
    let (tx2, _rx2) = mpsc::unbounded_channel();
    let c2 = RemotingClient::with_handler(Arc::new(Collector(tx2)));
    let hb = |id: &str| {
        let body = serde_json::json!({"clientID": id, "producerDataSet": [], "consumerDataSet": [{
            "groupName": "cg", "consumeType": "CONSUME_PASSIVELY", "messageModel": "CLUSTERING",
            "consumeFromWhere": "CONSUME_FROM_LAST_OFFSET", "unitMode": false,
            "subscriptionDataSet": [{"classFilterMode": false, "topic": "T", "subString": "*",
                "tagsSet": [], "codeSet": [], "subVersion": 1, "expressionType": "TAG"}]}]});
        RemotingCommand::request(code::HEART_BEAT).with_body(body.to_string())
    };
    assert_eq!(
        c1.invoke(&addr, hb("127.0.0.1@one"), TIMEOUT_MS)
            .await
            .unwrap()
            .code,
        rc::SUCCESS
    );
    let first = tokio::time::timeout(Duration::from_secs(5), rx1.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.code, code::NOTIFY_CONSUMER_IDS_CHANGED);
    assert_eq!(
        c2.invoke(&addr, hb("127.0.0.1@two"), TIMEOUT_MS)
            .await
            .unwrap()
            .code,
        rc::SUCCESS
    );
    let pushed = tokio::time::timeout(Duration::from_secs(5), rx1.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(pushed.code, code::NOTIFY_CONSUMER_IDS_CHANGED);
    assert_eq!(pushed.ext("consumerGroup"), Some("cg"));

    let list_req =
        RemotingCommand::request(code::GET_CONSUMER_LIST_BY_GROUP).with_ext("consumerGroup", "cg");
    let resp = c1
        .invoke(&addr, list_req.clone(), TIMEOUT_MS)
        .await
        .unwrap();
    let list: ConsumerListBody = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(
        list.consumer_id_list,
        vec!["127.0.0.1@one", "127.0.0.1@two"]
    );

    // Closing client 2's connection removes it and pushes a notify to client 1.
    c2.close(&addr);
    let pushed = tokio::time::timeout(Duration::from_secs(5), rx1.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(pushed.code, code::NOTIFY_CONSUMER_IDS_CHANGED);
    let resp = c1.invoke(&addr, list_req, TIMEOUT_MS).await.unwrap();
    let list: ConsumerListBody = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(list.consumer_id_list, vec!["127.0.0.1@one"]);
    broker.shutdown().await;
}

#[tokio::test]
async fn garbage_closes_only_that_connection() {
    let broker = start(Arc::new(SimDisk::new())).await;
    let addr = loopback(broker.local_addr());
    let client = RemotingClient::new();
    let ok = RemotingCommand::request(code::GET_MAX_OFFSET)
        .with_ext("topic", "SELF_TEST_TOPIC")
        .with_ext("queueId", 0);
    assert_eq!(
        client
            .invoke(&addr, ok.clone(), TIMEOUT_MS)
            .await
            .unwrap()
            .code,
        rc::SUCCESS
    );

    let mut raw = tokio::net::TcpStream::connect(&addr).await.unwrap();
    raw.write_all(&[0xFF, 0xFF, 0xFF, 0xF0, 1, 2, 3, 4, 5, 6, 7, 8])
        .await
        .unwrap();
    raw.flush().await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), raw.read(&mut buf))
        .await
        .expect("the broker closes the garbage connection")
        .unwrap_or(0);
    assert_eq!(n, 0, "no answer to garbage, just EOF");

    let resp = client.invoke(&addr, ok, TIMEOUT_MS).await.unwrap();
    assert_eq!(resp.code, rc::SUCCESS, "other connections keep working");
    assert_eq!(resp.ext("offset"), Some("0"));
    broker.shutdown().await;
}

#[tokio::test]
async fn offsets_survive_broker_restart() {
    let disk: Arc<dyn Disk> = Arc::new(SimDisk::new());
    let broker = start(disk.clone()).await;
    let addr = loopback(broker.local_addr());
    let client = RemotingClient::new();
    let update = RemotingCommand::request(code::UPDATE_CONSUMER_OFFSET)
        .with_ext("consumerGroup", "cg")
        .with_ext("topic", "SELF_TEST_TOPIC")
        .with_ext("queueId", 0)
        .with_ext("commitOffset", 17);
    client.invoke_oneway(&addr, update).await.unwrap();
    let query = RemotingCommand::request(code::QUERY_CONSUMER_OFFSET)
        .with_ext("consumerGroup", "cg")
        .with_ext("topic", "SELF_TEST_TOPIC")
        .with_ext("queueId", 0);
    // The oneway update is processed in order before this query on the same connection...
    // but processing may be concurrent, so poll briefly.
    let mut seen = None;
    for _ in 0..50 {
        let resp = client
            .invoke(&addr, query.clone(), TIMEOUT_MS)
            .await
            .unwrap();
        if resp.ext("offset") == Some("17") {
            seen = Some(17);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(seen, Some(17));
    broker.shutdown().await;
    drop(client);

    let broker = start(disk).await;
    let client = RemotingClient::new();
    let resp = client
        .invoke(&loopback(broker.local_addr()), query, TIMEOUT_MS)
        .await
        .unwrap();
    assert_eq!(resp.ext("offset"), Some("17"));
    broker.shutdown().await;
}

#[tokio::test]
async fn registers_to_namesrv_and_unregisters_on_shutdown() {
    use crate::config::NamesrvConfig;
    use crate::namesrv::Namesrv;
    let ns = Namesrv::start(NamesrvConfig {
        listen_port: 0,
        listen_ip: std::net::IpAddr::from([127, 0, 0, 1]),
        ..NamesrvConfig::default()
    })
    .await
    .expect("namesrv starts");
    let mut config = test_config();
    config.namesrv_addrs = vec![ns.local_addr().to_string()];
    let broker = Broker::start(config, Arc::new(SimDisk::new()))
        .await
        .unwrap();
    let broker_addr = broker.broker_addr().to_string();
    let routed = |topic: &str| {
        ns.topic_route(topic).is_some_and(|r| {
            r.broker_datas
                .iter()
                .any(|b| b.broker_addrs.get(&0) == Some(&broker_addr))
        })
    };
    let mut registered = false;
    for _ in 0..100 {
        if routed("TBW102") {
            registered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(registered, "TBW102 routed to {broker_addr}");

    // A new topic is registered at once, not after registerNameServerPeriod (30 s).
    let client = RemotingClient::new();
    let create = RemotingCommand::request(code::UPDATE_AND_CREATE_TOPIC)
        .with_ext("topic", "Fresh")
        .with_ext("defaultTopic", "TBW102")
        .with_ext("readQueueNums", 2)
        .with_ext("writeQueueNums", 2)
        .with_ext("perm", 6)
        .with_ext("topicFilterType", "SINGLE_TAG");
    let resp = client
        .invoke(&loopback(broker.local_addr()), create, TIMEOUT_MS)
        .await
        .unwrap();
    assert_eq!(resp.code, rc::SUCCESS);
    let mut fresh = false;
    for _ in 0..100 {
        if routed("Fresh") {
            fresh = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(fresh, "Fresh routed within 2 s");
    let q = ns.topic_route("Fresh").unwrap().queue_datas;
    assert_eq!(
        (q[0].read_queue_nums, q[0].write_queue_nums, q[0].perm),
        (2, 2, 6)
    );

    broker.shutdown().await;
    assert!(!routed("Fresh"), "unregistered on shutdown");
    ns.shutdown();
}
