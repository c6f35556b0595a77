//! Metadata sync (slave_sync): the offset merge rules, and a namesrv + master + slave on loopback
//! through a master outage.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use super::consumer_offset::{
    offset_key, ConsumerOffsetManager, ConsumerOffsetWrapper, OffsetAhead,
};
use super::slave_sync;
use super::tests::test_config;
use super::Broker;
use crate::config::{BrokerConfig, NamesrvConfig};
use crate::namesrv::Namesrv;
use crate::remoting::request_code as code;
use crate::remoting::response_code as rc;
use crate::remoting::{RemotingClient, RemotingCommand};
use crate::rt;
use crate::store::disk::sim::SimDisk;
use crate::store::{BrokerRole, Disk};

const TIMEOUT_MS: u64 = 5_000;

fn offsets(entries: &[(&str, &str, i32, i64)]) -> ConsumerOffsetWrapper {
    let mut w = ConsumerOffsetWrapper::default();
    for (topic, group, queue_id, offset) in entries {
        w.offset_table
            .entry(offset_key(topic, group))
            .or_insert_with(BTreeMap::new)
            .insert(*queue_id, *offset);
    }
    w
}

fn manager() -> ConsumerOffsetManager {
    ConsumerOffsetManager::load(&test_config(), Arc::new(SimDisk::new())).expect("load")
}

#[test]
fn merge_takes_newer_master_offsets_and_keeps_newer_slave_offsets() {
    let m = manager();
    m.commit("g", "T", 0, 10); // slave ahead (committed here during an outage)
    m.commit("g", "T", 1, 3); // master ahead
    m.commit("g", "Local", 0, 7); // master has never seen it
    let master = offsets(&[("T", "g", 0, 4), ("T", "g", 1, 8), ("T", "g", 2, 5)]);
    let ahead = m.merge_from_master(&master, false);
    assert_eq!(m.query("g", "T", 0), Some(10), "never moved backwards");
    assert_eq!(m.query("g", "T", 1), Some(8));
    assert_eq!(m.query("g", "T", 2), Some(5));
    assert_eq!(m.query("g", "Local", 0), Some(7));
    assert_eq!(
        ahead,
        vec![
            OffsetAhead {
                topic: "Local".into(),
                group: "g".into(),
                queue_id: 0,
                queue_offset: 7
            },
            OffsetAhead {
                topic: "T".into(),
                group: "g".into(),
                queue_id: 0,
                queue_offset: 10
            },
        ]
    );
    // Once the master caught up nothing is ahead any more.
    let master = offsets(&[
        ("T", "g", 0, 10),
        ("T", "g", 1, 8),
        ("T", "g", 2, 5),
        ("Local", "g", 0, 7),
    ]);
    assert!(m.merge_from_master(&master, false).is_empty());
}

#[test]
fn merge_with_the_debug_bug_overwrites_newer_offsets() {
    let m = manager();
    m.commit("g", "T", 0, 10);
    let ahead = m.merge_from_master(&offsets(&[("T", "g", 0, 4)]), true);
    assert_eq!(
        m.query("g", "T", 0),
        Some(4),
        "the deliberate bug rolls the offset back"
    );
    assert!(ahead.is_empty());
}

#[test]
fn commit_forward_never_rewinds() {
    let m = manager();
    assert!(m.commit_forward("g", "T", 0, 5));
    assert!(!m.commit_forward("g", "T", 0, 3));
    assert!(!m.commit_forward("g", "T", 0, 5));
    assert_eq!(m.query("g", "T", 0), Some(5));
    assert!(m.commit_forward("g", "T", 0, 9));
    assert_eq!(m.query("g", "T", 0), Some(9));
}

fn broker_config(ns: &str, role: BrokerRole, broker_id: i64) -> BrokerConfig {
    let mut config =
        crate::ha::test_support::replicated_broker_config(ns, role, broker_id, "/sync-test/store");
    config.register_name_server_period_ms = 1_000;
    config.slave_sync_interval_ms = 200;
    config
}

fn addr(b: &Broker) -> String {
    format!("127.0.0.1:{}", b.local_addr().port())
}

fn create_topic(topic: &str) -> RemotingCommand {
    RemotingCommand::request(code::UPDATE_AND_CREATE_TOPIC)
        .with_ext("topic", topic)
        .with_ext("defaultTopic", "TBW102")
        .with_ext("readQueueNums", 2)
        .with_ext("writeQueueNums", 2)
        .with_ext("perm", 6)
        .with_ext("topicFilterType", "SINGLE_TAG")
}

fn commit(group: &str, topic: &str, queue_id: i32, offset: i64) -> RemotingCommand {
    RemotingCommand::request(code::UPDATE_CONSUMER_OFFSET)
        .with_ext("consumerGroup", group)
        .with_ext("topic", topic)
        .with_ext("queueId", queue_id)
        .with_ext("commitOffset", offset)
}

async fn invoke_ok(client: &RemotingClient, to: &str, request: RemotingCommand) {
    let resp = client
        .invoke(to, request, TIMEOUT_MS)
        .await
        .expect("invoke");
    assert_eq!(resp.code, rc::SUCCESS, "{:?}", resp.remark);
}

/// Polls `cond` every 50 ms for up to 10 s.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..200 {
        if cond() {
            return;
        }
        rt::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}

#[tokio::test]
async fn slave_copies_metadata_and_keeps_offsets_committed_during_a_master_outage() {
    let ns = Namesrv::start(NamesrvConfig {
        listen_port: 0,
        listen_ip: IpAddr::from([127, 0, 0, 1]),
        ..NamesrvConfig::default()
    })
    .await
    .expect("namesrv");
    let ns_addr = ns.local_addr().to_string();
    let master_disk: Arc<dyn Disk> = Arc::new(SimDisk::new());
    let master = Broker::start(
        broker_config(&ns_addr, BrokerRole::AsyncMaster, 0),
        master_disk.clone(),
    )
    .await
    .expect("master");
    let client = RemotingClient::new();
    invoke_ok(&client, &addr(&master), create_topic("SyncTopic")).await;
    let group = RemotingCommand::request(code::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP)
        .with_body(br#"{"groupName":"SyncGroup","retryMaxTimes":7}"#.to_vec());
    invoke_ok(&client, &addr(&master), group).await;
    invoke_ok(
        &client,
        &addr(&master),
        commit("SyncGroup", "SyncTopic", 0, 5),
    )
    .await;

    let slave = Broker::start(
        broker_config(&ns_addr, BrokerRole::Slave, 1),
        Arc::new(SimDisk::new()),
    )
    .await
    .expect("slave");
    let sc = slave.controller().clone();
    eventually("topic, group and offset on the slave", || {
        sc.topics.contains("SyncTopic")
            && sc
                .groups
                .get("SyncGroup")
                .is_some_and(|g| g.retry_max_times == 7)
            && sc.offsets.query("SyncGroup", "SyncTopic", 0) == Some(5)
    })
    .await;
    assert_eq!(
        sc.slave_sync.master_addr(),
        Some(addr(&master)),
        "learnt from the namesrv"
    );

    // Newer offsets on the master reach the slave.
    invoke_ok(
        &client,
        &addr(&master),
        commit("SyncGroup", "SyncTopic", 0, 8),
    )
    .await;
    eventually("offset 8 on the slave", || {
        sc.offsets.query("SyncGroup", "SyncTopic", 0) == Some(8)
    })
    .await;

    // Master down: the consumer commits on the slave; syncs fail but keep everything.
    master.shutdown().await;
    invoke_ok(
        &client,
        &addr(&slave),
        commit("SyncGroup", "SyncTopic", 0, 20),
    )
    .await;
    invoke_ok(
        &client,
        &addr(&slave),
        commit("SyncGroup", "SyncTopic", 1, 4),
    )
    .await;
    rt::sleep(Duration::from_millis(600)).await;
    assert_eq!(sc.offsets.query("SyncGroup", "SyncTopic", 0), Some(20));

    // Master back (its offsets file says 8 for queue 0, nothing for queue 1): it learns the
    // newer ones from the slave, and the slave never goes back to 8.
    let master = Broker::start(
        broker_config(&ns_addr, BrokerRole::AsyncMaster, 0),
        master_disk,
    )
    .await
    .expect("master restarts");
    let mc = master.controller().clone();
    assert_eq!(
        mc.offsets.query("SyncGroup", "SyncTopic", 0),
        Some(8),
        "persisted at shutdown"
    );
    for _ in 0..60 {
        assert!(
            sc.offsets.query("SyncGroup", "SyncTopic", 0).unwrap_or(0) >= 20,
            "slave offset went back"
        );
        if mc.offsets.query("SyncGroup", "SyncTopic", 0) == Some(20)
            && mc.offsets.query("SyncGroup", "SyncTopic", 1) == Some(4)
        {
            break;
        }
        rt::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        mc.offsets.query("SyncGroup", "SyncTopic", 0),
        Some(20),
        "master learnt the slave's offset"
    );
    assert_eq!(mc.offsets.query("SyncGroup", "SyncTopic", 1), Some(4));

    // A forward-only push never rewinds the master; a consumer's own commit may.
    invoke_ok(
        &client,
        &addr(&master),
        slave_sync::push_offset_request(&OffsetAhead {
            topic: "SyncTopic".into(),
            group: "SyncGroup".into(),
            queue_id: 0,
            queue_offset: 11,
        }),
    )
    .await;
    assert_eq!(mc.offsets.query("SyncGroup", "SyncTopic", 0), Some(20));
    invoke_ok(
        &client,
        &addr(&master),
        commit("SyncGroup", "SyncTopic", 0, 25),
    )
    .await;
    eventually("offset 25 on the slave", || {
        sc.offsets.query("SyncGroup", "SyncTopic", 0) == Some(25)
    })
    .await;

    slave.shutdown().await;
    master.shutdown().await;
    ns.shutdown();
}
