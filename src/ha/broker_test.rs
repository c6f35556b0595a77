//! Whole brokers over loopback (tokio): a namesrv, a SYNC_MASTER and its SLAVE that learns the
//! master's HA address from the registration response.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::broker::Broker;
use crate::config::{BrokerConfig, NamesrvConfig};
use crate::ha::BrokerHa;
use crate::message::properties::{encode_properties, Properties};
use crate::namesrv::Namesrv;
use crate::remoting::request_code as code;
use crate::remoting::response_code as rc;
use crate::remoting::{RemotingClient, RemotingCommand};
use crate::rt;
use crate::store::disk::sim::SimDisk;
use crate::store::BrokerRole;

const TIMEOUT_MS: u64 = 5_000;

fn broker_config(ns: &str, role: BrokerRole, broker_id: i64) -> BrokerConfig {
    crate::ha::test_support::replicated_broker_config(ns, role, broker_id, "/ha-test/store")
}

fn send(topic: &str, body: &'static [u8]) -> RemotingCommand {
    let mut p = Properties::new();
    p.insert("WAIT".into(), "true".into());
    RemotingCommand::request(code::SEND_MESSAGE_V2)
        .with_ext("a", "pg")
        .with_ext("b", topic)
        .with_ext("c", "TBW102")
        .with_ext("d", 4)
        .with_ext("e", 0)
        .with_ext("f", 0)
        .with_ext("g", 1)
        .with_ext("h", 0)
        .with_ext("i", encode_properties(&p))
        .with_body(Bytes::from_static(body))
}

fn create_topic(topic: &str) -> RemotingCommand {
    RemotingCommand::request(code::UPDATE_AND_CREATE_TOPIC)
        .with_ext("topic", topic)
        .with_ext("defaultTopic", "TBW102")
        .with_ext("readQueueNums", 4)
        .with_ext("writeQueueNums", 4)
        .with_ext("perm", 6)
        .with_ext("topicFilterType", "SINGLE_TAG")
}

fn addr(b: &Broker) -> String {
    format!("127.0.0.1:{}", b.local_addr().port())
}

#[tokio::test]
async fn sync_master_and_slave_brokers_through_the_namesrv() {
    let ns = Namesrv::start(NamesrvConfig {
        listen_port: 0,
        listen_ip: IpAddr::from([127, 0, 0, 1]),
        ..NamesrvConfig::default()
    })
    .await
    .expect("namesrv");
    let ns_addr = ns.local_addr().to_string();
    let master = Broker::start(
        broker_config(&ns_addr, BrokerRole::SyncMaster, 0),
        Arc::new(SimDisk::new()),
    )
    .await
    .expect("master");
    let client = RemotingClient::new();
    client
        .invoke(&addr(&master), create_topic("HaTopic"), TIMEOUT_MS)
        .await
        .expect("create");
    // No slave yet: stored but answered SLAVE_NOT_AVAILABLE.
    let resp = client
        .invoke(&addr(&master), send("HaTopic", b"lonely"), TIMEOUT_MS)
        .await
        .expect("send");
    assert_eq!(resp.code, rc::SLAVE_NOT_AVAILABLE, "{:?}", resp.remark);

    // The slave has no haMasterAddress: it learns it from the namesrv.
    let slave = Broker::start(
        broker_config(&ns_addr, BrokerRole::Slave, 1),
        Arc::new(SimDisk::new()),
    )
    .await
    .expect("slave");
    client
        .invoke(&addr(&slave), create_topic("HaTopic"), TIMEOUT_MS)
        .await
        .expect("create on slave");
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
    assert!(in_sync, "slave connected via the namesrv's haServerAddr");
    // Routes show the slave under brokerId 1.
    let route = ns.topic_route("HaTopic").expect("route");
    let ids: Vec<i64> = route.broker_datas[0].broker_addrs.keys().copied().collect();
    assert_eq!(ids, vec![0, 1]);

    let resp = client
        .invoke(&addr(&master), send("HaTopic", b"replicated"), TIMEOUT_MS)
        .await
        .expect("send");
    assert_eq!(resp.code, rc::SUCCESS, "{:?}", resp.remark);
    let resp = client
        .invoke(&addr(&slave), send("HaTopic", b"to-slave"), TIMEOUT_MS)
        .await
        .expect("send to slave");
    assert_eq!(resp.code, rc::SERVICE_NOT_AVAILABLE, "{:?}", resp.remark);

    // The slave serves pulls of what it replicated (queue 0 or another: check the stores).
    let master_max = master.controller().store.commitlog_max_offset();
    assert_eq!(
        slave.controller().store.commitlog_max_offset(),
        master_max,
        "SYNC_MASTER acknowledged, so the slave holds it"
    );
    // Replicated queues are readable on the slave (the pull path is role-independent and
    // tested with the broker; here the slave's own ConsumeQueues must hold both messages).
    let store = &slave.controller().store;
    let mut pulled = 0;
    for q in 0..4 {
        let r = store.get_message("HaTopic", q, 0, 32, 1 << 20, &crate::store::MatchAll);
        pulled += r.messages.len();
    }
    assert_eq!(pulled, 2, "both master messages readable on the slave");

    slave.shutdown().await;
    master.shutdown().await;
    ns.shutdown();
}

#[test]
fn ha_keys_parse_into_the_ha_config() {
    let text = "slaveTimeout=1234\nhaMaxGapNotInSync=1000\nhaTransferBatchSize=1024\n\
                haSendHeartbeatInterval=700\nhaHousekeepingInterval=9000\n";
    let (config, warnings) =
        BrokerConfig::parse_with_home(text, "t.conf", Some("/home/rmq")).expect("parses");
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(config.ha.slave_timeout_ms, 1234);
    assert_eq!(config.ha.max_gap_not_in_sync, 1000);
    assert_eq!(config.ha.transfer_batch_size, 1024);
    assert_eq!(config.ha.send_heartbeat_interval_ms, 700);
    assert_eq!(config.ha.housekeeping_interval_ms, 9000);
    assert!(
        BrokerConfig::parse_with_home("slaveTimeout=-5\n", "t.conf", Some("/home/rmq")).is_err()
    );
}
