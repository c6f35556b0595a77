//! `mqadmin clusterList` and `brokerStatus` against a SYNC_MASTER and its SLAVE on loopback:
//! both rows, their roles and the replication lag; the HA fields of brokerStatus.
#![cfg(not(madsim))]

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use apogee::broker::Broker;
use apogee::client::producer::SendStatus;
use apogee::client::{ClientConfig, Message, MqClient, Producer, ProducerConfig};
use apogee::config::{BrokerConfig, NamesrvConfig};
use apogee::namesrv::Namesrv;
use apogee::protocol::topic::TopicConfig;
use apogee::store::disk::sim::SimDisk;
use apogee::store::BrokerRole;

const CLUSTER: &str = "HaCluster";

// Reads better as a list of overrides than as one struct literal with a nested store config.
#[allow(clippy::field_reassign_with_default)]
fn broker_config(ns: &str, role: BrokerRole, broker_id: i64) -> BrokerConfig {
    let mut config = BrokerConfig::default();
    config.broker_cluster_name = CLUSTER.into();
    config.broker_name = "broker-ha".into();
    config.broker_id = broker_id;
    config.listen_port = 0;
    config.broker_ip1 = IpAddr::V4(Ipv4Addr::LOCALHOST);
    config.namesrv_addrs = vec![ns.to_string()];
    config.register_name_server_period_ms = 1_000;
    config.store.broker_role = role;
    config.store.store_path_root_dir = "/cluster-list/store".into();
    config.store.mapped_file_size_commitlog = 1024 * 1024;
    config.store.mapped_file_size_consume_queue = 300 * 20;
    config.store.max_hash_slot_num = 1000;
    config.store.max_index_num = 4000;
    config
}

fn mqadmin(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mqadmin"))
        .args(args)
        .env_remove("NAMESRV_ADDR")
        .output()
        .expect("run mqadmin");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Columns of the clusterList row of broker id `bid` (whitespace-split).
fn row(out: &str, bid: &str) -> Vec<String> {
    out.lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .find(|cols| cols.len() > 3 && cols[0] == CLUSTER && cols[2] == bid)
        .unwrap_or_else(|| panic!("no row for BID {bid} in\n{out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_list_shows_master_and_slave_with_roles_and_lag() {
    let ns = Namesrv::start(NamesrvConfig {
        listen_port: 0,
        listen_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        ..NamesrvConfig::default()
    })
    .await
    .expect("namesrv");
    let ns_addr = format!("127.0.0.1:{}", ns.local_addr().port());
    let master = Broker::start(
        broker_config(&ns_addr, BrokerRole::SyncMaster, 0),
        Arc::new(SimDisk::new()),
    )
    .await
    .expect("master");
    let slave = Broker::start(
        broker_config(&ns_addr, BrokerRole::Slave, 1),
        Arc::new(SimDisk::new()),
    )
    .await
    .expect("slave");
    let client = MqClient::new(ClientConfig::new(vec![ns_addr.clone()]));
    let master_addr = format!("127.0.0.1:{}", master.local_addr().port());
    client
        .create_topic_on_broker(&master_addr, &TopicConfig::new("HaListTopic", 2, 2, 6))
        .await
        .expect("create topic");
    // A SYNC_MASTER send succeeds once the slave is in sync: then the lag is 0 on both sides.
    let producer = Producer::new(client.clone(), ProducerConfig::new("pg"));
    let mut sent = false;
    for _ in 0..100 {
        let result = producer
            .send(Message::new("HaListTopic", b"replicated".to_vec()))
            .await;
        if result.is_ok_and(|r| r.status == SendStatus::SendOk) {
            sent = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(sent, "SYNC_MASTER send acknowledged with the slave in sync");

    let ns_arg = ns_addr.as_str();
    let (master_cols, slave_cols, out) = {
        let mut last = String::new();
        let mut found = None;
        for _ in 0..50 {
            let (code, out, err) =
                tokio::task::block_in_place(|| mqadmin(&["clusterList", "-n", ns_arg]));
            assert_eq!(code, 0, "{err}");
            if out.lines().count() >= 3 {
                let (m, s) = (row(&out, "0"), row(&out, "1"));
                if m.last().map(String::as_str) == Some("0")
                    && s.last().map(String::as_str) == Some("0")
                {
                    found = Some((m, s, out));
                    break;
                }
            }
            last = out;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        found.unwrap_or_else(|| panic!("master and slave rows with lag 0 never appeared:\n{last}"))
    };
    println!("{out}");
    assert!(out.starts_with("#Cluster Name"), "{out}");
    let header: Vec<&str> = out
        .lines()
        .next()
        .unwrap_or_default()
        .split("  ")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    assert!(header.ends_with(&["#Role", "#HALag(B)"]), "{header:?}");
    let n = master_cols.len();
    assert_eq!(master_cols[n - 2], "SYNC_MASTER", "{out}");
    assert_eq!(slave_cols[slave_cols.len() - 2], "SLAVE", "{out}");
    assert_eq!(master_cols[3], master_addr, "{out}");

    // brokerStatus of the master carries the HA fields.
    let (code, out, err) = tokio::task::block_in_place(|| {
        mqadmin(&["brokerStatus", "-b", &master_addr, "-n", ns_arg])
    });
    assert_eq!(code, 0, "{err}");
    for key in [
        "haConnectionCount",
        "haPush2SlaveMaxOffset",
        "haSlaveFallBehindBytes",
        "haSlaveInSync",
        "brokerRole",
    ] {
        assert!(out.contains(key), "brokerStatus lacks {key}:\n{out}");
    }
    assert!(
        out.lines()
            .any(|l| l.starts_with("haConnectionCount") && l.trim_end().ends_with(": 1")),
        "{out}"
    );

    // The slave stops: the master row loses its lag figure ("-": no slave connected).
    slave.shutdown().await;
    let mut last = String::new();
    let mut dropped = false;
    for _ in 0..100 {
        let (code, out, err) =
            tokio::task::block_in_place(|| mqadmin(&["clusterList", "-n", ns_arg]));
        assert_eq!(code, 0, "{err}");
        let m = row(&out, "0");
        if m.last().map(String::as_str) == Some("-") {
            dropped = true;
            break;
        }
        last = out;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        dropped,
        "master row still shows a lag without a slave:\n{last}"
    );
    master.shutdown().await;
    ns.shutdown();
}
