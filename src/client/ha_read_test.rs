//! Reads from the slave, end to end over loopback (tokio): a namesrv, a SYNC_MASTER and its SLAVE
//! (whole brokers, SimDisk stores) and Apogee's own client. The consumer must keep consuming, and
//! committing offsets, on the slave when the master is down — also while its cached route still
//! lists the master — and must follow the master's suggestWhichBrokerId to the slave when it is
//! far behind with slaveReadEnable.

#![allow(clippy::field_reassign_with_default)] // configs built field by field, as in the other broker tests

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::broker::Broker;
use crate::client::body::mq;
use crate::client::{
    ClientConfig, ConsumeFromWhere, ConsumerConfig, Message, MqClient, Producer, ProducerConfig,
    PullConsumer, PullRequest, SendStatus,
};
use crate::config::{BrokerConfig, NamesrvConfig};
use crate::ha::BrokerHa;
use crate::namesrv::Namesrv;
use crate::remoting::request_code as code;
use crate::remoting::{RemotingClient, RemotingCommand};
use crate::rt;
use crate::store::disk::sim::SimDisk;
use crate::store::BrokerRole;

const TIMEOUT_MS: u64 = 5_000;
const QUEUES: i32 = 4;

fn broker_config(ns: &str, role: BrokerRole, broker_id: i64) -> BrokerConfig {
    crate::ha::test_support::replicated_broker_config(ns, role, broker_id, "/ha-read/store")
}

fn addr(b: &Broker) -> String {
    format!("127.0.0.1:{}", b.local_addr().port())
}

fn create_topic(topic: &str) -> RemotingCommand {
    RemotingCommand::request(code::UPDATE_AND_CREATE_TOPIC)
        .with_ext("topic", topic)
        .with_ext("defaultTopic", "TBW102")
        .with_ext("readQueueNums", QUEUES)
        .with_ext("writeQueueNums", QUEUES)
        .with_ext("perm", 6)
        .with_ext("topicFilterType", "SINGLE_TAG")
}

struct Setup {
    ns: Namesrv,
    master: Option<Broker>,
    slave: Broker,
    ns_addr: String,
}

/// Namesrv + master + slave in sync, `topic` created on both (the slave's metadata sync is not
/// what these tests are about).
async fn setup(topic: &str, tune: impl Fn(&mut BrokerConfig)) -> Setup {
    let ns = Namesrv::start(NamesrvConfig {
        listen_port: 0,
        listen_ip: IpAddr::from([127, 0, 0, 1]),
        ..NamesrvConfig::default()
    })
    .await
    .expect("namesrv");
    let ns_addr = ns.local_addr().to_string();
    let mut mc = broker_config(&ns_addr, BrokerRole::SyncMaster, 0);
    tune(&mut mc);
    let master = Broker::start(mc, Arc::new(SimDisk::new()))
        .await
        .expect("master");
    let mut sc = broker_config(&ns_addr, BrokerRole::Slave, 1);
    tune(&mut sc);
    let slave = Broker::start(sc, Arc::new(SimDisk::new()))
        .await
        .expect("slave");
    let remoting = RemotingClient::new();
    for b in [&master, &slave] {
        let r = remoting
            .invoke(&addr(b), create_topic(topic), TIMEOUT_MS)
            .await
            .expect("create topic");
        assert_eq!(r.code, 0, "{:?}", r.remark);
    }
    let Some(BrokerHa::Master(service)) = master.controller().ha.get() else {
        panic!("master runs an HA service");
    };
    let mut in_sync = false;
    for _ in 0..250 {
        if service.is_slave_in_sync() {
            in_sync = true;
            break;
        }
        rt::sleep(Duration::from_millis(20)).await;
    }
    assert!(in_sync, "slave in sync");
    // The route lists both members before a client caches it.
    for _ in 0..250 {
        if ns
            .topic_route(topic)
            .is_some_and(|r| r.broker_datas.iter().any(|b| b.broker_addrs.len() == 2))
        {
            break;
        }
        rt::sleep(Duration::from_millis(20)).await;
    }
    let route = ns.topic_route(topic).expect("route");
    let ids: Vec<i64> = route.broker_datas[0].broker_addrs.keys().copied().collect();
    assert_eq!(ids, vec![0, 1], "routes show the slave under brokerId 1");
    Setup {
        ns,
        master: Some(master),
        slave,
        ns_addr,
    }
}

fn client(ns_addr: &str, route_refresh_ms: u64) -> MqClient {
    let mut config = ClientConfig::new(vec![ns_addr.to_string()]);
    config.route_refresh_interval_ms = route_refresh_ms;
    config.rpc_timeout_ms = 2_000;
    MqClient::new(config)
}

fn consumer_config(group: &str, topic: &str) -> ConsumerConfig {
    let mut c = ConsumerConfig::new(group, topic);
    c.consume_from = ConsumeFromWhere::FirstOffset;
    c.suspend_timeout_ms = 500;
    c.pull_rpc_timeout_ms = 2_500;
    c.heartbeat_interval_ms = 500;
    c.rebalance_interval_ms = 1_000;
    c.persist_interval_ms = 300;
    c.pull_batch_size = 4;
    c
}

async fn send_all(client: &MqClient, topic: &str, n: usize) -> BTreeSet<String> {
    let producer = Producer::new(client.clone(), ProducerConfig::new("ha_read_pg"));
    let mut sent = BTreeSet::new();
    for i in 0..n {
        let body = format!("m-{i:04}");
        let r = producer
            .send(Message::new(topic, body.clone()).with_tags("TagA"))
            .await
            .expect("send");
        assert_eq!(r.status, SendStatus::SendOk, "{r:?}");
        sent.insert(body);
    }
    sent
}

/// Polls until `want` bodies were seen (or 20 s pass); returns what was seen.
async fn consume_until(
    consumer: &PullConsumer,
    seen: &mut BTreeSet<String>,
    want: usize,
) -> BTreeSet<String> {
    let deadline = rt::now() + Duration::from_secs(20);
    while seen.len() < want && rt::now() < deadline {
        match consumer.poll(500).await {
            Ok(batch) => {
                for m in batch {
                    seen.insert(String::from_utf8_lossy(&m.body).into_owned());
                }
            }
            Err(e) => tracing::debug!(error = %e, "poll failed"),
        }
    }
    seen.clone()
}

#[tokio::test]
async fn consumer_continues_on_the_slave_when_the_master_is_down() {
    let topic = "HaReadTopic";
    let group = "ha_read_cg";
    let mut s = setup(topic, |_| {}).await;
    let master_addr = addr(s.master.as_ref().expect("master"));
    let slave_addr = addr(&s.slave);
    // A long route refresh: the consumer's cached route keeps listing the dead master, so the
    // fallback must come from the transport failure, not from a fresh route.
    let client = client(&s.ns_addr, 600_000);
    let sent = send_all(&client, topic, 40).await;
    let consumer = PullConsumer::start(client.clone(), consumer_config(group, topic))
        .await
        .expect("consumer");
    let mut seen = BTreeSet::new();
    consume_until(&consumer, &mut seen, 12).await;
    assert!(
        seen.len() >= 12,
        "consumed {} before the master went down",
        seen.len()
    );
    consumer.commit().await.expect("commit to the master");
    let before = s
        .slave
        .controller()
        .stats
        .msg_get_total
        .load(Ordering::Relaxed);

    s.master.take().expect("master").shutdown().await;
    let seen = consume_until(&consumer, &mut seen, sent.len()).await;
    let missing: Vec<&String> = sent.difference(&seen).collect();
    assert!(
        missing.is_empty(),
        "not consumed after the master went down: {missing:?}"
    );
    let served = s
        .slave
        .controller()
        .stats
        .msg_get_total
        .load(Ordering::Relaxed)
        - before;
    assert!(
        served > 0,
        "the slave served the pulls after the master died"
    );

    // Offsets committed while the master is down land on the slave.
    consumer.commit().await.expect("commit to the slave");
    let offsets = s.slave.controller().offsets.query_all(group, topic);
    let total: i64 = offsets.values().sum();
    assert_eq!(
        total,
        sent.len() as i64,
        "slave's committed offsets {offsets:?} cover every message"
    );
    // ...and are answered by the slave to a client that asks (QUERY_CONSUMER_OFFSET).
    let fresh = self::client(&s.ns_addr, 30_000);
    let mut asked = 0;
    for q in 0..QUEUES {
        let found = fresh
            .find_broker_in_admin(topic, "broker-a")
            .await
            .expect("a member of broker-a");
        assert_eq!(found.addr, slave_addr, "the master left the route");
        assert_ne!(found.addr, master_addr);
        asked += fresh
            .query_consumer_offset(&found.addr, group, &mq(topic, "broker-a", q))
            .await
            .expect("query on the slave")
            .expect("offset stored on the slave");
    }
    assert_eq!(asked, sent.len() as i64);
    // The slave took the consumer's heartbeats (rebalance works against it).
    assert!(
        s.slave.controller().consumers.group(group).is_some(),
        "slave knows the consumer group"
    );
    consumer.shutdown().await.expect("shutdown");
    s.slave.shutdown().await;
    s.ns.shutdown();
}

#[tokio::test]
async fn master_sends_a_far_behind_consumer_to_the_slave() {
    let topic = "HaSuggestTopic";
    let group = "ha_suggest_cg";
    // Ratio 0: any lag counts as "far behind" (the default is 40% of physical memory).
    let s = setup(topic, |c| {
        c.slave_read_enable = true;
        c.store.access_message_in_memory_max_ratio = 0;
    })
    .await;
    let master = s.master.as_ref().expect("master");
    let client = client(&s.ns_addr, 30_000);
    let sent = send_all(&client, topic, 24).await;

    // The raw response: suggestWhichBrokerId = whichBrokerWhenConsumeSlowly (1).
    let pull = PullRequest {
        group: group.to_string(),
        queue: mq(topic, "broker-a", 0),
        queue_offset: 0,
        max_msg_nums: 1,
        commit_offset: None,
        suspend_timeout_ms: 0,
        subscription: Some("*".to_string()),
        sub_version: 1,
    };
    let r = client
        .pull_message(&addr(master), &pull, TIMEOUT_MS)
        .await
        .expect("pull");
    assert_eq!(r.suggest_which_broker_id, 1, "master suggests the slave");

    let master_before = master
        .controller()
        .stats
        .msg_get_total
        .load(Ordering::Relaxed);
    // One message per pull: the master answers each queue's first pull, then redirects.
    let mut config = consumer_config(group, topic);
    config.pull_batch_size = 1;
    let consumer = PullConsumer::start(client.clone(), config)
        .await
        .expect("consumer");
    let mut seen = BTreeSet::new();
    let seen = consume_until(&consumer, &mut seen, sent.len()).await;
    assert_eq!(seen, sent);
    let from_master = master
        .controller()
        .stats
        .msg_get_total
        .load(Ordering::Relaxed)
        - master_before;
    let from_slave = s
        .slave
        .controller()
        .stats
        .msg_get_total
        .load(Ordering::Relaxed);
    assert!(
        from_master <= QUEUES as u64 && from_slave >= sent.len() as u64 - from_master,
        "the slave served most messages ({from_slave} vs {from_master} from the master)"
    );
    consumer.shutdown().await.expect("shutdown");
    let Setup {
        ns, master, slave, ..
    } = s;
    slave.shutdown().await;
    if let Some(m) = master {
        m.shutdown().await;
    }
    ns.shutdown();
}

#[tokio::test]
async fn without_slave_read_enable_the_master_keeps_the_consumer() {
    let topic = "HaNoSuggestTopic";
    let s = setup(topic, |c| c.store.access_message_in_memory_max_ratio = 0).await;
    let master = s.master.as_ref().expect("master");
    let client = client(&s.ns_addr, 30_000);
    send_all(&client, topic, 8).await;
    for q in 0..QUEUES {
        let pull = PullRequest {
            group: "ha_nosuggest_cg".to_string(),
            queue: mq(topic, "broker-a", q),
            queue_offset: 0,
            max_msg_nums: 1,
            commit_offset: None,
            suspend_timeout_ms: 0,
            subscription: Some("*".to_string()),
            sub_version: 1,
        };
        let r = client
            .pull_message(&addr(master), &pull, TIMEOUT_MS)
            .await
            .expect("pull");
        assert_eq!(
            r.suggest_which_broker_id, 0,
            "slaveReadEnable=false: master"
        );
    }
    let Setup {
        ns, master, slave, ..
    } = s;
    slave.shutdown().await;
    if let Some(m) = master {
        m.shutdown().await;
    }
    ns.shutdown();
}

#[test]
fn broker_selection_prefers_the_suggested_then_the_master_then_a_reachable_slave() {
    use crate::client::mq_client::select_broker;
    use std::collections::BTreeMap;
    let addrs: BTreeMap<i64, String> = [
        (0, "m:1".to_string()),
        (1, "s1:1".to_string()),
        (2, "s2:1".to_string()),
    ]
    .into();
    let id = |wanted: i64, down: &[&str]| {
        select_broker(&addrs, wanted, |a| down.contains(&a)).map(|f| (f.broker_id, f.is_slave()))
    };
    assert_eq!(id(0, &[]), Some((0, false)));
    assert_eq!(id(1, &[]), Some((1, true)), "suggested slave");
    assert_eq!(id(7, &[]), Some((0, false)), "unknown id: the master");
    assert_eq!(
        id(0, &["m:1"]),
        Some((1, true)),
        "master unreachable: first reachable slave"
    );
    assert_eq!(
        id(1, &["s1:1"]),
        Some((0, false)),
        "suggested slave down: the master"
    );
    assert_eq!(id(0, &["m:1", "s1:1"]), Some((2, true)));
    assert_eq!(
        id(1, &["m:1", "s1:1", "s2:1"]),
        Some((1, true)),
        "all down: keep probing the wanted one"
    );
    let only_slave: BTreeMap<i64, String> = [(1, "s1:1".to_string())].into();
    assert_eq!(
        select_broker(&only_slave, 0, |_| false).map(|f| f.addr),
        Some("s1:1".to_string()),
        "master absent from the route"
    );
    assert!(select_broker(&BTreeMap::new(), 0, |_| false).is_none());
}
