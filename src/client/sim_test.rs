//! The client inside madsim: fake name server and brokers on their own simulated nodes, a
//! producer retrying across brokers and losing one, a consumer pulling and committing.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::fakes_test::*;
use super::*;
use crate::remoting::{response_code, RemotingServer};

#[madsim::test]
async fn producer_and_consumer_run_on_simulated_nodes() {
    let handle = madsim::runtime::Handle::current();
    let namesrv_addr: SocketAddr = "10.0.0.1:9876".parse().unwrap();
    let b1_addr: SocketAddr = "10.0.0.2:10911".parse().unwrap();
    let b2_addr: SocketAddr = "10.0.0.3:10911".parse().unwrap();
    let route = fake_route(&[("b1", b1_addr.to_string()), ("b2", b2_addr.to_string())]);
    let b1 = Arc::new(FakeBroker {
        name: "b1".into(),
        ..Default::default()
    });
    let b2 = Arc::new(FakeBroker {
        name: "b2".into(),
        ..Default::default()
    });
    let mut nodes = Vec::new();
    for (name, addr, processor) in [
        (
            "namesrv",
            namesrv_addr,
            Arc::new(FakeNamesrv { route }) as Arc<dyn crate::remoting::RequestProcessor>,
        ),
        (
            "b1",
            b1_addr,
            b1.clone() as Arc<dyn crate::remoting::RequestProcessor>,
        ),
        (
            "b2",
            b2_addr,
            b2.clone() as Arc<dyn crate::remoting::RequestProcessor>,
        ),
    ] {
        let node = handle.create_node().name(name).ip(addr.ip()).build();
        node.spawn(async move {
            let server = RemotingServer::bind(addr, processor).await.unwrap();
            std::future::pending::<()>().await;
            drop(server);
        });
        nodes.push(node);
    }
    b1.put("T", 0, "a", b"stored-before", false);
    b1.sends
        .lock()
        .unwrap()
        .push_back(Script::Code(response_code::SYSTEM_BUSY));
    b2.sends
        .lock()
        .unwrap()
        .push_back(Script::Code(response_code::SYSTEM_BUSY));
    let client_node = handle
        .create_node()
        .name("client")
        .ip("10.0.0.9".parse().unwrap())
        .build();
    let b1_probe = b1.clone();
    let b2_probe = b2.clone();
    let b1_node = nodes[1].id();
    let outcome = client_node
        .spawn(async move {
            crate::rt::sleep(Duration::from_millis(100)).await;
            let mut config = ClientConfig::new(vec![namesrv_addr.to_string()]);
            config.client_ip = "10.0.0.9".parse().unwrap();
            config.instance_name = "sim".to_string();
            let client = MqClient::new(config);
            let producer = Producer::new(client.clone(), ProducerConfig::new("pg"));
            // Busy on both brokers once, then stored: three attempts, acknowledged.
            let first = producer.send_outcome(Message::new("T", "m1")).await;
            assert!(matches!(first, SendOutcome::Acknowledged(_)), "{first:?}");
            let attempts = sends(&b1_probe).len() + sends(&b2_probe).len();
            assert_eq!(attempts, 3);

            for b in [&b1_probe, &b2_probe] {
                *b.consumer_ids.lock().unwrap() = vec![client.client_id()];
            }
            let mut cc = ConsumerConfig::new("cg", "T");
            cc.consume_from = ConsumeFromWhere::FirstOffset;
            cc.suspend_timeout_ms = 200;
            cc.pull_rpc_timeout_ms = 1_000;
            let consumer = PullConsumer::start(client.clone(), cc).await.unwrap();
            assert_eq!(consumer.assigned_queues().len(), 4);
            let got = consumer.poll(2_000).await.unwrap();
            assert_eq!(got.len(), 1);
            assert_eq!(&got[0].body[..], b"stored-before");
            consumer.commit().await.unwrap();
            (client, producer)
        })
        .await
        .unwrap();
    let (_client, producer) = outcome;

    // Kill b1: sends must still succeed on b2 (retry avoids the dead broker).
    handle.kill(b1_node);
    let before = sends(&b2).len();
    let result = client_node
        .spawn(async move {
            let mut acked = 0;
            for i in 0..4 {
                match producer
                    .send_outcome(Message::new("T", format!("after-{i}")))
                    .await
                {
                    SendOutcome::Acknowledged(r) => {
                        assert_eq!(r.queue.broker_name, "b2");
                        acked += 1;
                    }
                    other => panic!("send {i} after b1 died: {other:?}"),
                }
            }
            acked
        })
        .await
        .unwrap();
    assert_eq!(result, 4);
    assert_eq!(sends(&b2).len() - before, 4);
}
