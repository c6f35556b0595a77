//! Client behaviour against scripted fake name servers and brokers over real loopback sockets:
//! name server failover, send retries and outcome classification, batch bodies, pulls, and
//! rebalancing on NOTIFY_CONSUMER_IDS_CHANGED.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::fakes_test::*;
use super::*;
use crate::message::decode_properties;
use crate::remoting::{request_code, response_code, Connection, RemotingCommand, RemotingServer};

struct Cluster {
    namesrv: RemotingServer,
    brokers: Vec<(Arc<FakeBroker>, RemotingServer)>,
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// Two brokers b1, b2 with 2 queues each for topic T, and one name server.
async fn cluster() -> Cluster {
    let mut brokers = Vec::new();
    let mut addrs = Vec::new();
    for name in ["b1", "b2"] {
        let fake = Arc::new(FakeBroker {
            name: name.to_string(),
            ..Default::default()
        });
        let server = RemotingServer::bind(loopback(), fake.clone())
            .await
            .unwrap();
        addrs.push((name, server.local_addr().to_string()));
        brokers.push((fake, server));
    }
    let route = fake_route(&addrs);
    let namesrv = RemotingServer::bind(loopback(), Arc::new(FakeNamesrv { route }))
        .await
        .unwrap();
    Cluster { namesrv, brokers }
}

/// A port nothing listens on (bound, then released).
async fn dead_addr() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    drop(l);
    addr
}

#[tokio::test]
async fn namesrv_failover_skips_dead_server_and_names_every_failure() {
    let c = cluster().await;
    let dead = dead_addr().await;
    let client = client_for(vec![dead.clone(), c.namesrv.local_addr().to_string()], "a");
    let route = client.fetch_topic_route("T").await.unwrap();
    assert_eq!(route.broker_datas.len(), 2);
    // A missing topic is an answer, not a failover reason.
    let err = client.fetch_topic_route("missing").await.unwrap_err();
    assert!(matches!(err, ClientError::NoRoute { .. }), "{err}");
    assert!(err.to_string().contains("missing"), "{err}");

    let dead2 = dead_addr().await;
    let client = client_for(vec![dead.clone(), dead2.clone()], "b");
    let err = client.cluster_info().await.unwrap_err();
    let line = err.to_string();
    assert!(line.contains(&dead) && line.contains(&dead2), "{line}");
    assert!(line.contains("GET_BROKER_CLUSTER_INFO"), "{line}");
    assert!(!line.contains('\n'));
}

#[tokio::test]
async fn retryable_code_moves_to_the_other_broker_with_the_same_uniq_key() {
    let c = cluster().await;
    let client = client_for(vec![c.namesrv.local_addr().to_string()], "p");
    for (b, _) in &c.brokers {
        b.sends
            .lock()
            .unwrap()
            .push_back(Script::Code(response_code::SYSTEM_BUSY));
    }
    let producer = Producer::new(client, ProducerConfig::new("pg"));
    let outcome = producer
        .send_outcome(Message::new("T", "hello").with_tags("a"))
        .await;
    let result = match outcome {
        SendOutcome::Acknowledged(r) => r,
        other => panic!("expected an ack, got {other:?}"),
    };
    assert_eq!(result.status, SendStatus::SendOk);
    let (first, second) = (&c.brokers[0].0, &c.brokers[1].0);
    let mut all: Vec<RemotingCommand> = sends(first).into_iter().chain(sends(second)).collect();
    all.sort_by_key(|r| r.opaque);
    // Busy on the first broker tried, busy on the other one, then success on the first again:
    // each retry avoids the broker that just failed.
    assert_eq!(all.len(), 3, "{all:?}");
    assert_ne!(all[0].ext("n"), all[1].ext("n"));
    assert_ne!(all[1].ext("n"), all[2].ext("n"));
    assert_eq!(Some(result.queue.broker_name.as_str()), all[2].ext("n"));
    let uniq: Vec<String> = all
        .iter()
        .map(|r| decode_properties(r.ext("i").unwrap())["UNIQ_KEY"].clone())
        .collect();
    assert!(uniq.iter().all(|u| u == &uniq[0]));
    assert_eq!(result.msg_id, uniq[0]);
    assert_eq!(decode_properties(all[0].ext("i").unwrap())["TAGS"], "a");

    // Busy everywhere for all three attempts: a definite failure carrying the last code.
    for (b, _) in &c.brokers {
        b.sends
            .lock()
            .unwrap()
            .extend([Script::Code(response_code::SYSTEM_BUSY); 2]);
    }
    match producer.send_outcome(Message::new("T", "again")).await {
        SendOutcome::Failed { code, .. } => assert_eq!(code, Some(response_code::SYSTEM_BUSY)),
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[tokio::test]
async fn non_retryable_code_fails_at_once_and_timeouts_are_unknown() {
    let c = cluster().await;
    let client = client_for(vec![c.namesrv.local_addr().to_string()], "p2");
    for (b, _) in &c.brokers {
        b.sends
            .lock()
            .unwrap()
            .push_back(Script::Code(response_code::MESSAGE_ILLEGAL));
    }
    let producer = Producer::new(client.clone(), ProducerConfig::new("pg"));
    match producer.send_outcome(Message::new("T", "x")).await {
        SendOutcome::Failed { code, error } => {
            assert_eq!(code, Some(response_code::MESSAGE_ILLEGAL));
            assert!(error.to_string().contains("MESSAGE_ILLEGAL"), "{error}");
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    let total: usize = c.brokers.iter().map(|(b, _)| sends(b).len()).sum();
    assert_eq!(total, 1);

    // Every attempt hangs: the message may be stored, so the outcome is unknown.
    for (b, _) in &c.brokers {
        let mut s = b.sends.lock().unwrap();
        s.clear();
        s.extend([Script::Hang, Script::Hang]);
    }
    let mut config = ProducerConfig::new("pg");
    config.send_timeout_ms = 200;
    config.retry_times_when_send_failed = 1;
    let producer = Producer::new(client, config);
    match producer.send_outcome(Message::new("T", "y")).await {
        SendOutcome::Unknown { error } => assert!(error.is_outcome_unknown(), "{error}"),
        other => panic!("expected unknown, got {other:?}"),
    }
}

#[tokio::test]
async fn batch_body_carries_each_message_with_its_own_uniq_key() {
    let c = cluster().await;
    let client = client_for(vec![c.namesrv.local_addr().to_string()], "p3");
    let producer = Producer::new(client, ProducerConfig::new("pg"));
    let msgs = (0..3)
        .map(|i| Message::new("T", format!("m{i}")).with_keys(&[format!("k{i}")]))
        .collect();
    let result = producer.send_batch(msgs).await.unwrap();
    let batch: Vec<RemotingCommand> = c.brokers.iter().flat_map(|(b, _)| sends(b)).collect();
    assert_eq!(batch.len(), 1);
    assert_eq!(batch[0].code, request_code::SEND_BATCH_MESSAGE);
    assert_eq!(batch[0].ext("m"), Some("true"));
    let entries = producer::decode_batch_body(&batch[0].body).unwrap();
    assert_eq!(entries.len(), 3);
    let mut uniq = Vec::new();
    for (i, (_, body, props)) in entries.iter().enumerate() {
        assert_eq!(&body[..], format!("m{i}").as_bytes());
        let p = decode_properties(props);
        assert_eq!(p["KEYS"], format!("k{i}"));
        uniq.push(p["UNIQ_KEY"].clone());
    }
    uniq.dedup();
    assert_eq!(uniq.len(), 3);
    assert_eq!(result.msg_id, uniq.join(","));
}

#[tokio::test]
async fn consumer_rebalances_on_notify_consumer_ids_changed() {
    let c = cluster().await;
    let client = client_for(vec![c.namesrv.local_addr().to_string()], "c1");
    let me = client.client_id();
    for (b, _) in &c.brokers {
        *b.consumer_ids.lock().unwrap() = vec![me.clone()];
    }
    let mut config = ConsumerConfig::new("cg", "T");
    config.rebalance_interval_ms = 600_000;
    let consumer = PullConsumer::start(client, config).await.unwrap();
    assert_eq!(consumer.assigned_queues().len(), 4);
    assert!(c
        .brokers
        .iter()
        .all(|(b, _)| *b.heartbeats.lock().unwrap() >= 1));

    // A second consumer sorts before us ("0..." < "127..."): we keep the last half.
    for (b, _) in &c.brokers {
        b.consumer_ids
            .lock()
            .unwrap()
            .push("0.0.0.0@other".to_string());
    }
    let conns: Vec<Connection> = c.brokers[0].0.connections.lock().unwrap().clone();
    let notify = RemotingCommand::request(request_code::NOTIFY_CONSUMER_IDS_CHANGED)
        .with_ext("consumerGroup", "cg");
    conns.last().unwrap().send_oneway(notify).unwrap();
    let deadline = crate::rt::now() + Duration::from_secs(5);
    while consumer.assigned_queues().len() != 2 {
        assert!(
            crate::rt::now() < deadline,
            "no rebalance after the notification"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let queues = consumer.assigned_queues();
    assert!(queues.iter().all(|q| q.broker_name == "b2"), "{queues:?}");
    // A poll with nothing to read returns empty after its timeout.
    assert!(consumer.poll(300).await.unwrap().is_empty());
    consumer.shutdown().await.unwrap();
    let unregistered = c.brokers[0]
        .0
        .received
        .lock()
        .unwrap()
        .iter()
        .any(|r| r.code == request_code::UNREGISTER_CLIENT);
    assert!(unregistered);
}

#[tokio::test]
async fn pull_decodes_decompresses_filters_tags_and_follows_offset_moves() {
    let c = cluster().await;
    let (b1, b2) = (&c.brokers[0].0, &c.brokers[1].0);
    b1.put("T", 0, "a", b"first", false);
    b1.put("T", 0, "b", b"not-mine", false);
    b1.put("T", 0, "a", &vec![b'z'; 10_000], true);
    // b2 queue 1 starts at offset 5 (older messages deleted): the consumer's offset 0 is moved.
    b2.store.lock().unwrap().insert(1, (5, Vec::new()));
    b2.put("T", 1, "a", b"moved", false);

    let client = client_for(vec![c.namesrv.local_addr().to_string()], "puller");
    let me = client.client_id();
    for (b, _) in &c.brokers {
        *b.consumer_ids.lock().unwrap() = vec![me.clone()];
    }
    let mut config = ConsumerConfig::new("cg", "T");
    config.sub_expression = "a".to_string();
    config.suspend_timeout_ms = 200;
    config.pull_rpc_timeout_ms = 1_200;
    let consumer = PullConsumer::start(client, config).await.unwrap();
    let mut bodies = Vec::new();
    let deadline = crate::rt::now() + Duration::from_secs(5);
    while bodies.len() < 3 {
        assert!(crate::rt::now() < deadline, "got {bodies:?}");
        for m in consumer.poll(300).await.unwrap() {
            assert_eq!(m.tags(), Some("a"));
            bodies.push(m.body.to_vec());
        }
    }
    bodies.sort();
    assert_eq!(
        bodies,
        vec![b"first".to_vec(), b"moved".to_vec(), vec![b'z'; 10_000]]
    );
    let progress = consumer.progress();
    let q0 = progress
        .iter()
        .find(|(q, _)| q.broker_name == "b1" && q.queue_id == 0)
        .unwrap()
        .1;
    assert_eq!(q0.next_offset, 3);
    let q1 = progress
        .iter()
        .find(|(q, _)| q.broker_name == "b2" && q.queue_id == 1)
        .unwrap()
        .1;
    assert_eq!(q1.next_offset, 6);
    // Nothing is consumed until commit; then every queue's delivered offset is stored.
    consumer.commit().await.unwrap();
    let commits: Vec<(String, String)> = b1
        .received
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.code == request_code::UPDATE_CONSUMER_OFFSET)
        .map(|r| {
            (
                r.ext("queueId").unwrap().to_string(),
                r.ext("commitOffset").unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        commits.contains(&("0".to_string(), "3".to_string())),
        "{commits:?}"
    );
    // Pulls after the commit piggyback it with the COMMIT_OFFSET flag.
    let _ = consumer.poll(100).await.unwrap();
    let piggybacked = b1.received.lock().unwrap().iter().any(|r| {
        r.code == request_code::PULL_MESSAGE
            && r.ext("queueId") == Some("0")
            && r.ext("commitOffset") == Some("3")
            && r.required::<i32>("sysFlag").unwrap() & 0x1 != 0
    });
    assert!(piggybacked);
}

#[tokio::test]
async fn send_attempt_makes_exactly_one_request_and_classifies_it() {
    let c = cluster().await;
    let client = client_for(vec![c.namesrv.local_addr().to_string()], "attempts");
    let mut config = ProducerConfig::new("pg");
    config.send_timeout_ms = 200;
    let producer = Producer::new(client, config);
    let b2 = &c.brokers[1].0;
    b2.sends
        .lock()
        .unwrap()
        .extend([Script::Code(response_code::SYSTEM_BUSY), Script::Hang]);
    let q = body::mq("T", "b2", 1);
    match producer.send_attempt(Message::new("T", "1"), &q).await {
        SendOutcome::Failed { code, .. } => assert_eq!(code, Some(response_code::SYSTEM_BUSY)),
        other => panic!("{other:?}"),
    }
    assert_eq!(sends(b2).len(), 1);
    match producer.send_attempt(Message::new("T", "2"), &q).await {
        SendOutcome::Unknown { error } => assert!(error.is_outcome_unknown()),
        other => panic!("{other:?}"),
    }
    match producer.send_attempt(Message::new("T", "3"), &q).await {
        SendOutcome::Acknowledged(r) => {
            assert_eq!(r.queue, q);
            assert_eq!(r.queue_offset, 5);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(sends(b2).len(), 3);
    assert!(sends(&c.brokers[0].0).is_empty());
    assert!(sends(b2)
        .iter()
        .all(|r| r.ext("e") == Some("1") && r.ext("n") == Some("b2")));
}
