//! HA under madsim: a SYNC_MASTER node and a SLAVE node; a master–slave partition must give
//! FLUSH_SLAVE_TIMEOUT / SLAVE_NOT_AVAILABLE answers, never a success the slave does not hold.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use madsim::net::NetSim;
use madsim::runtime::Handle;

use super::*;
use crate::rt;
use crate::store::disk::sim::SimDisk;
use crate::store::{BrokerRole, MessageStore, MessageToStore, PutMessageStatus, StoreConfig};

type Slot = Arc<Mutex<Option<Arc<MessageStore>>>>;

fn store_config(role: BrokerRole) -> StoreConfig {
    StoreConfig {
        store_path_root_dir: PathBuf::from("/store"),
        mapped_file_size_commitlog: 64 * 1024,
        mapped_file_size_consume_queue: 20 * 200,
        max_hash_slot_num: 1000,
        max_index_num: 4000,
        broker_role: role,
        ..StoreConfig::default()
    }
}

fn fast_config() -> HaConfig {
    HaConfig {
        send_heartbeat_interval_ms: 200,
        housekeeping_interval_ms: 2_000,
        slave_timeout_ms: 500,
        reconnect_min_ms: 100,
        reconnect_max_ms: 500,
        ..HaConfig::default()
    }
}

fn get(slot: &Slot) -> Arc<MessageStore> {
    slot.lock().unwrap().clone().expect("store opened")
}

#[madsim::test]
async fn partition_answers_timeouts_not_false_successes() {
    let handle = Handle::current();
    let master_slot: Slot = Arc::default();
    let slave_slot: Slot = Arc::default();
    let ms = master_slot.clone();
    let master = handle
        .create_node()
        .name("master")
        .ip("10.0.3.1".parse::<IpAddr>().unwrap())
        .init(move || {
            let ms = ms.clone();
            async move {
                let store = MessageStore::open(
                    store_config(BrokerRole::SyncMaster),
                    Arc::new(SimDisk::new()),
                )
                .await
                .expect("master store");
                let _service = HaService::start(
                    store.clone(),
                    "10.0.3.1:10912".parse().unwrap(),
                    fast_config(),
                )
                .await
                .expect("ha service");
                *ms.lock().unwrap() = Some(store);
                futures::future::pending::<()>().await;
            }
        })
        .build();
    let ss = slave_slot.clone();
    let slave = handle
        .create_node()
        .name("slave")
        .ip("10.0.3.2".parse::<IpAddr>().unwrap())
        .init(move || {
            let ss = ss.clone();
            async move {
                let store =
                    MessageStore::open(store_config(BrokerRole::Slave), Arc::new(SimDisk::new()))
                        .await
                        .expect("slave store");
                let _client =
                    HaClient::start(store.clone(), Some("10.0.3.1:10912".into()), fast_config());
                *ss.lock().unwrap() = Some(store);
                futures::future::pending::<()>().await;
            }
        })
        .build();
    rt::sleep(Duration::from_secs(2)).await;
    let master_store = get(&master_slot);
    let slave_store = get(&slave_slot);

    // Each acknowledged send's end offset, checked against the slave afterwards.
    let mut acked_ends = Vec::new();
    let put = |i: u32| {
        let store = master_store.clone();
        master.spawn(async move {
            let msg = MessageToStore {
                topic: "T".into(),
                body: Bytes::from(vec![i as u8; 100]),
                wait_store_msg_ok: true,
                born_host: Some("10.0.9.9:1".parse().unwrap()),
                store_host: Some("10.0.3.1:10911".parse().unwrap()),
                ..MessageToStore::default()
            };
            let r = store.put_message(msg).await;
            let end = r
                .append
                .as_ref()
                .map(|a| a.wrote_offset + a.wrote_bytes as i64);
            (r.status, end)
        })
    };
    for i in 0..10 {
        let (status, end) = put(i).await.expect("put task");
        assert_eq!(status, PutMessageStatus::PutOk);
        acked_ends.push(end.expect("appended"));
    }
    assert!(slave_store.commitlog_max_offset() >= *acked_ends.last().unwrap());

    let net = NetSim::current();
    net.clog_link(master.id(), slave.id());
    net.clog_link(slave.id(), master.id());
    let mut refused = Vec::new();
    for i in 10..20 {
        let (status, end) = put(i).await.expect("put task");
        match status {
            PutMessageStatus::PutOk => acked_ends.push(end.expect("appended")),
            other => refused.push(other),
        }
        rt::sleep_ms(300).await;
    }
    assert_eq!(
        refused.len(),
        10,
        "no success while partitioned: {refused:?}"
    );
    assert!(refused.contains(&PutMessageStatus::FlushSlaveTimeout));
    assert!(refused.contains(&PutMessageStatus::SlaveNotAvailable));
    // Checker: every acknowledged message is on the slave.
    let slave_max = slave_store.commitlog_max_offset();
    for end in &acked_ends {
        assert!(
            *end <= slave_max,
            "acknowledged end {end} beyond slave max {slave_max}"
        );
    }

    net.unclog_link(master.id(), slave.id());
    net.unclog_link(slave.id(), master.id());
    let mut healed = false;
    for i in 20..60 {
        let (status, _) = put(i).await.expect("put task");
        if status == PutMessageStatus::PutOk {
            healed = true;
            break;
        }
        rt::sleep_ms(500).await;
    }
    assert!(healed, "replication resumes after the partition heals");
    assert_eq!(
        slave_store.commitlog_max_offset(),
        master_store.commitlog_max_offset()
    );
}
