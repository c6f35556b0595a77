//! End-to-end: an in-process name server and broker (real tokio, loopback ports, MmapDisk in a
//! tempdir) driven by Apogee's client library and by the built mqadmin binary.
#![cfg(not(madsim))]
#![allow(clippy::field_reassign_with_default)]

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use apogee::broker::Broker;
use apogee::client::{
    ClientConfig, ClientError, ConsumeFromWhere, ConsumerConfig, Message, MqClient, Producer,
    ProducerConfig, PullConsumer, SendStatus,
};
use apogee::config::{BrokerConfig, NamesrvConfig};
use apogee::namesrv::Namesrv;
use apogee::protocol::topic::TopicConfig;
use apogee::store::disk::mmap::MmapDisk;

const CLUSTER: &str = "DefaultCluster";
const BROKER: &str = "broker-a";

struct Env {
    namesrv: Namesrv,
    broker: Option<Broker>,
    _dir: tempfile::TempDir,
}

impl Env {
    fn namesrv_addr(&self) -> String {
        format!("127.0.0.1:{}", self.namesrv.local_addr().port())
    }

    fn broker_addr(&self) -> String {
        self.broker.as_ref().unwrap().broker_addr().to_string()
    }

    fn client(&self, instance: &str) -> MqClient {
        let mut config = ClientConfig::new(vec![self.namesrv_addr()]);
        config.instance_name = instance.to_string();
        MqClient::new(config)
    }

    async fn stop(mut self) {
        if let Some(b) = self.broker.take() {
            b.shutdown().await;
        }
    }
}

async fn start_env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let mut ns_config = NamesrvConfig::default();
    ns_config.listen_port = 0;
    ns_config.listen_ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let namesrv = Namesrv::start(ns_config).await.unwrap();
    let mut config = BrokerConfig::default();
    config.broker_cluster_name = CLUSTER.to_string();
    config.broker_name = BROKER.to_string();
    config.listen_port = 0;
    config.broker_ip1 = IpAddr::V4(Ipv4Addr::LOCALHOST);
    config.namesrv_addrs = vec![format!("127.0.0.1:{}", namesrv.local_addr().port())];
    config.store.store_path_root_dir = dir.path().join("store");
    config.store.mapped_file_size_commitlog = 4 * 1024 * 1024;
    config.store.mapped_file_size_consume_queue = 1000 * 20;
    config.store.max_hash_slot_num = 1000;
    config.store.max_index_num = 4000;
    // This machine class shares a nearly full volume: keep the disk-full guard (refuse writes
    // above diskSpaceWarningLevelRatio, forced cleanup) from turning a busy CI disk into failures.
    config.store.disk_space_warning_level_ratio = 0.999;
    config.store.clean_file_forcibly_enable = false;
    let broker = Broker::start(config, Arc::new(MmapDisk::new()))
        .await
        .unwrap();
    let env = Env {
        namesrv,
        broker: Some(broker),
        _dir: dir,
    };
    // Wait for the broker's first registration.
    let client = env.client("setup");
    wait_for("the broker to register", || async {
        client
            .cluster_info()
            .await
            .map(|c| c.broker_addr_table.contains_key(BROKER))
            .unwrap_or(false)
    })
    .await;
    env
}

async fn wait_for<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = apogee::rt::now() + Duration::from_secs(10);
    while !check().await {
        assert!(apogee::rt::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn create_topic(client: &MqClient, topic: &str, queues: i32) {
    let addrs = client
        .create_topic_on_cluster(CLUSTER, &TopicConfig::new(topic, queues, queues, 6))
        .await
        .unwrap();
    assert_eq!(addrs.len(), 1);
    wait_for("the topic route", || async {
        client
            .fetch_topic_route(topic)
            .await
            .map(|r| r.queue_datas.iter().any(|q| q.write_queue_nums == queues))
            .unwrap_or(false)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_consume_and_admin_operations() {
    let env = start_env().await;
    let client = env.client("e2e");
    create_topic(&client, "T", 4).await;
    assert!(client
        .topic_list()
        .await
        .unwrap()
        .contains(&"T".to_string()));

    // Sync sends, round robin over the 4 queues.
    let producer = Producer::new(client.clone(), ProducerConfig::new("pg"));
    let mut sent = Vec::new();
    for i in 0..20 {
        let msg = Message::new("T", format!("body-{i}"))
            .with_tags(if i % 2 == 0 { "even" } else { "odd" })
            .with_keys(&[format!("key-{i}")]);
        let r = producer.send(msg).await.unwrap();
        assert_eq!(r.status, SendStatus::SendOk);
        assert_eq!(r.offset_msg_id.len(), 32);
        sent.push(r);
    }
    let queues: BTreeSet<i32> = sent.iter().map(|r| r.queue.queue_id).collect();
    assert_eq!(queues.len(), 4, "round robin covers every queue");
    let ids: BTreeSet<&str> = sent.iter().map(|r| r.msg_id.as_str()).collect();
    assert_eq!(ids.len(), 20, "UNIQ_KEYs are unique");

    // A batch lands in one queue with consecutive offsets.
    let batch = (0..3)
        .map(|i| Message::new("T", format!("batch-{i}")))
        .collect();
    let b = producer.send_batch(batch).await.unwrap();
    assert_eq!(b.msg_id.split(',').count(), 3);
    assert_eq!(b.offset_msg_id.split(',').count(), 3);

    // Oneway: no answer, but it is stored.
    producer
        .send_oneway(Message::new("T", "oneway"))
        .await
        .unwrap();

    // Consume everything from the first offset.
    let mut config = ConsumerConfig::new("cg", "T");
    config.consume_from = ConsumeFromWhere::FirstOffset;
    let consumer = PullConsumer::start(client.clone(), config).await.unwrap();
    assert_eq!(consumer.assigned_queues().len(), 4);
    let mut bodies = BTreeSet::new();
    let deadline = apogee::rt::now() + Duration::from_secs(10);
    while bodies.len() < 24 {
        assert!(apogee::rt::now() < deadline, "only got {bodies:?}");
        for m in consumer.poll(1_000).await.unwrap() {
            assert!(
                bodies.insert(String::from_utf8(m.body.to_vec()).unwrap()),
                "duplicate"
            );
        }
    }
    for i in 0..20 {
        assert!(bodies.contains(&format!("body-{i}")));
    }
    assert!(bodies.contains("batch-2") && bodies.contains("oneway"));
    consumer.commit().await.unwrap();

    // Progress: committed everything, so the diff is zero.
    let progress = client.consumer_progress("cg", Some("T")).await.unwrap();
    assert_eq!(progress.rows.len(), 4);
    assert_eq!(
        progress.rows.iter().map(|r| r.broker_offset).sum::<i64>(),
        24
    );
    assert_eq!(progress.diff_total(), 0);

    // Without a topic, progress is found through the group's retry topic route.
    let all_topics = client.consumer_progress("cg", None).await.unwrap();
    assert!(
        all_topics.rows.iter().any(|r| r.queue.topic == "T"),
        "{all_topics:?}"
    );
    assert_eq!(all_topics.diff_total(), 0);

    let status = client.topic_status("T").await.unwrap();
    assert_eq!(status.len(), 4);
    assert_eq!(status.iter().map(|s| s.max_offset).sum::<i64>(), 24);

    // A new message after the commit: a consumer restarted from the stored offsets sees only it.
    consumer.shutdown().await.unwrap();
    producer
        .send(Message::new("T", "after-restart"))
        .await
        .unwrap();
    let consumer = PullConsumer::start(client.clone(), ConsumerConfig::new("cg", "T"))
        .await
        .unwrap();
    let mut got = Vec::new();
    let deadline = apogee::rt::now() + Duration::from_secs(10);
    while got.is_empty() {
        assert!(apogee::rt::now() < deadline);
        got = consumer.poll(2_000).await.unwrap();
    }
    assert_eq!(got.len(), 1);
    assert_eq!(&got[0].body[..], b"after-restart");
    consumer.shutdown().await.unwrap();

    // Query by offset msgId and by key.
    let viewed = client.view_message(&sent[3].offset_msg_id).await.unwrap();
    assert_eq!(&viewed.body[..], b"body-3");
    assert_eq!(viewed.uniq_key(), Some(sent[3].msg_id.as_str()));
    let by_key = client
        .query_message_by_key("T", "key-7", 32, 0, i64::MAX)
        .await
        .unwrap();
    assert_eq!(by_key.len(), 1);
    assert_eq!(&by_key[0].body[..], b"body-7");

    let runtime = client
        .broker_runtime_info(&env.broker_addr())
        .await
        .unwrap();
    assert!(!runtime.is_empty());
    let list = client.cluster_list().await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].broker_name, BROKER);
    assert!(list[0].runtime.is_ok());

    // Wipe write perm: sends fail; add it back: sends work.
    let wiped = client.wipe_write_perm(BROKER).await;
    assert!(wiped.iter().all(|r| r.result.is_ok()), "{wiped:?}");
    client.invalidate_route("T");
    let err = producer.send(Message::new("T", "nope")).await.unwrap_err();
    assert!(matches!(err, ClientError::NoRoute { .. }), "{err}");
    let added = client.add_write_perm(BROKER).await;
    assert!(added.iter().all(|r| r.result.is_ok()), "{added:?}");
    client.invalidate_route("T");
    producer.send(Message::new("T", "yes")).await.unwrap();

    // Delete: the name server forgets the route.
    client.delete_topic("T", CLUSTER).await.unwrap();
    let err = client.fetch_topic_route("T").await.unwrap_err();
    assert!(matches!(err, ClientError::NoRoute { .. }), "{err}");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_consumers_split_the_queues() {
    let env = start_env().await;
    let setup = env.client("setup2");
    create_topic(&setup, "S", 4).await;
    let mut config = ConsumerConfig::new("split", "S");
    config.rebalance_interval_ms = 500;
    let c1 = PullConsumer::start(env.client("one"), config.clone())
        .await
        .unwrap();
    let c2 = PullConsumer::start(env.client("two"), config)
        .await
        .unwrap();
    // c1 learns about c2 by notification or by its periodic rebalance.
    wait_for("the split", || async {
        c1.assigned_queues().len() == 2 && c2.assigned_queues().len() == 2
    })
    .await;
    let a: BTreeSet<_> = c1.assigned_queues().into_iter().collect();
    let b: BTreeSet<_> = c2.assigned_queues().into_iter().collect();
    assert!(a.is_disjoint(&b));
    c2.shutdown().await.unwrap();
    wait_for("c1 to take all queues", || async {
        c1.assigned_queues().len() == 4
    })
    .await;
    c1.shutdown().await.unwrap();
    env.stop().await;
}

fn mqadmin(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mqadmin"))
        .args(args)
        .env_remove("NAMESRV_ADDR")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqadmin_binary_verbs_and_errors() {
    let env = start_env().await;
    let ns = env.namesrv_addr();
    let ns = ns.as_str();
    let run = |args: Vec<&str>| {
        let mut full = args.clone();
        full.extend(["-n", ns]);
        tokio::task::block_in_place(|| mqadmin(&full))
    };

    let (code, out, err) = run(vec!["clusterList"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("#Cluster Name"), "{out}");
    assert!(out.contains(CLUSTER) && out.contains(BROKER), "{out}");

    let (code, out, err) = run(vec![
        "updateTopic",
        "-t",
        "A",
        "-c",
        CLUSTER,
        "-r",
        "2",
        "-w",
        "2",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("create topic to") && out.contains("success."),
        "{out}"
    );
    assert!(
        out.contains("readQueueNums=2") && out.contains("perm=RW-"),
        "{out}"
    );
    let client = env.client("admin-check");
    wait_for("topic A's route", || async {
        client.fetch_topic_route("A").await.is_ok()
    })
    .await;

    let (code, out, err) = run(vec![
        "sendMessage",
        "-t",
        "A",
        "-p",
        "hello",
        "-k",
        "K1",
        "-c",
        "tagx",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("SEND_OK") && out.contains(BROKER), "{out}");

    let (code, out, err) = run(vec!["topicList"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.lines().any(|l| l == "A"), "{out}");

    let (code, out, err) = run(vec!["topicRoute", "-t", "A"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"brokerName\": \"broker-a\""), "{out}");

    let (code, out, err) = run(vec!["topicStatus", "-t", "A"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("#Broker Name"), "{out}");
    assert_eq!(out.lines().count(), 3, "{out}");

    let (code, out, err) = run(vec!["queryMsgByKey", "-t", "A", "-k", "K1"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 2, "{out}");

    // queryMsgById with the offset msgId, and with the UNIQ_KEY plus the topic.
    let stored = client
        .query_message_by_key("A", "K1", 4, 0, i64::MAX)
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    let offset_id = stored[0].offset_msg_id();
    let (code, out, err) = run(vec!["queryMsgById", "-i", &offset_id]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Message Body:        hello"), "{out}");
    assert!(
        out.contains(&format!("OffsetID:            {offset_id}")),
        "{out}"
    );
    let uniq = stored[0].uniq_key().unwrap().to_string();
    let (code, out, err) = run(vec!["queryMsgById", "-i", &uniq, "-t", "A"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Keys:                [K1]"), "{out}");
    let (code, _, err) = run(vec!["queryMsgById", "-i", "not-an-id"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("not-an-id") && err.trim().lines().count() == 1,
        "{err}"
    );

    let (code, out, err) = run(vec!["consumeMessage", "-t", "A", "-c", "5"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("BODY: hello") && out.contains("TAGS: tagx"),
        "{out}"
    );

    let (code, out, err) = run(vec!["brokerStatus", "-b", &env.broker_addr()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.lines().count() > 3, "{out}");

    let (code, out, err) = run(vec!["consumerProgress", "-g", "nobody", "-t", "A"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Diff Total"), "{out}");

    let (code, out, err) = run(vec!["wipeWritePerm", "-b", BROKER]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("OK"), "{out}");
    let (code, _, err) = run(vec!["addWritePerm", "-b", BROKER]);
    assert_eq!(code, 0, "{err}");

    let (code, out, err) = run(vec!["deleteTopic", "-t", "A", "-c", CLUSTER]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("delete topic [A] from NameServer success."),
        "{out}"
    );

    // Errors: one line naming what failed, exit code 1.
    let (code, _, err) = run(vec!["topicRoute", "-t", "A"]);
    assert_eq!(code, 1);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("topic A") && err.contains(ns), "{err}");

    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let (code, out, err) = tokio::task::block_in_place(|| mqadmin(&["clusterList", "-n", &dead]));
    assert_eq!(code, 1);
    assert!(out.is_empty(), "{out}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains(&dead) && err.contains("GET_BROKER_CLUSTER_INFO"),
        "{err}"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_wakes_on_arrival_and_broker_loss_is_reported() {
    let env = start_env().await;
    let client = env.client("lp");
    create_topic(&client, "L", 2).await;
    let consumer = PullConsumer::start(client.clone(), ConsumerConfig::new("lp", "L"))
        .await
        .unwrap();
    assert!(consumer.poll(200).await.unwrap().is_empty());
    let producer = Producer::new(client.clone(), ProducerConfig::new("pg"));
    let sender = apogee::rt::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        producer.send(Message::new("L", "wake")).await.unwrap();
        producer
    });
    // The poll parks on the broker (SUSPEND) and must come back when the message arrives,
    // well before its 10 s budget or the broker's 5 s checker.
    let started = apogee::rt::now();
    let got = consumer.poll(10_000).await.unwrap();
    let waited = started.elapsed();
    assert_eq!(got.len(), 1);
    assert_eq!(&got[0].body[..], b"wake");
    assert!(waited < Duration::from_secs(3), "long poll took {waited:?}");
    let producer = sender.await.unwrap();
    consumer.shutdown().await.unwrap();

    // Broker gone: sends fail with a line naming the broker or the missing route; mqadmin
    // brokerStatus against it exits 1 with one line naming it.
    let broker_addr = env.broker_addr();
    let ns = env.namesrv_addr();
    let Env {
        namesrv,
        broker,
        _dir,
    } = env;
    broker.unwrap().shutdown().await;
    let err = producer.send(Message::new("L", "lost")).await.unwrap_err();
    let line = err.to_string();
    eprintln!("send after broker loss: {line}");
    assert!(
        line.contains(&broker_addr) || line.contains("topic L"),
        "{line}"
    );
    let (code, _, err) =
        tokio::task::block_in_place(|| mqadmin(&["brokerStatus", "-b", &broker_addr, "-n", &ns]));
    assert_eq!(code, 1);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains(&broker_addr), "{err}");
    drop(namesrv);
}
