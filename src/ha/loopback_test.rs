//! Master + slave stores in one process over real loopback TCP (tokio), SimDisk storage.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::wire::{encode_report, encode_transfer};
use super::*;
use crate::message::properties::{encode_properties, Properties};
use crate::rt;
use crate::store::disk::sim::SimDisk;
use crate::store::{
    BrokerRole, GetMessageStatus, MatchAll, MessageStore, MessageToStore, PutMessageStatus,
    StoreConfig,
};

const FILE_SIZE: u64 = 64 * 1024;

fn store_config(root: &str, role: BrokerRole) -> StoreConfig {
    StoreConfig {
        store_path_root_dir: PathBuf::from(root),
        mapped_file_size_commitlog: FILE_SIZE,
        mapped_file_size_consume_queue: 20 * 200,
        max_hash_slot_num: 1000,
        max_index_num: 4000,
        flush_interval_commitlog_ms: 20,
        flush_interval_consume_queue_ms: 50,
        clean_resource_interval_ms: 60_000,
        broker_role: role,
        ..StoreConfig::default()
    }
}

fn msg(topic: &str, queue_id: i32, body_len: usize, seed: u8) -> MessageToStore {
    let mut props = Properties::new();
    props.insert("TAGS".into(), "TagA".into());
    props.insert("KEYS".into(), format!("k{seed}"));
    MessageToStore {
        topic: topic.to_string(),
        queue_id,
        body: Bytes::from(vec![seed; body_len]),
        properties: encode_properties(&props),
        born_timestamp: 1,
        born_host: Some("10.0.0.9:5555".parse().expect("addr")),
        store_host: Some("10.0.0.1:10911".parse().expect("addr")),
        wait_store_msg_ok: true,
        ..MessageToStore::default()
    }
}

async fn open(root: &str, role: BrokerRole) -> (SimDisk, Arc<MessageStore>) {
    let disk = SimDisk::new();
    let store = MessageStore::open(store_config(root, role), Arc::new(disk.clone()))
        .await
        .expect("open store");
    (disk, store)
}

fn fast_config() -> HaConfig {
    HaConfig {
        send_heartbeat_interval_ms: 200,
        housekeeping_interval_ms: 2_000,
        slave_timeout_ms: 500,
        reconnect_min_ms: 50,
        reconnect_max_ms: 200,
        ..HaConfig::default()
    }
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().expect("addr")
}

/// All CommitLog bytes in [from, to).
fn commitlog_bytes(store: &MessageStore, from: i64, to: i64) -> Vec<u8> {
    let mut out = Vec::new();
    let mut at = from;
    while at < to {
        let chunk = store
            .read_commitlog_range(at, 1 << 20)
            .expect("read")
            .expect("range stored");
        at += chunk.len() as i64;
        out.extend_from_slice(&chunk);
    }
    out.truncate((to - from) as usize);
    out
}

/// (queue offset, raw entry) of every message in a queue.
fn queue_units(store: &MessageStore, topic: &str, queue_id: i32) -> Vec<(i64, Bytes)> {
    let mut out = Vec::new();
    let mut offset = store.min_offset_in_queue(topic, queue_id);
    loop {
        let r = store.get_message(topic, queue_id, offset, 32, 1 << 20, &MatchAll);
        if r.status != GetMessageStatus::Found {
            break;
        }
        for (m, q) in r.messages.iter().zip(&r.queue_offsets) {
            out.push((*q, m.clone()));
        }
        offset = r.next_begin_offset;
    }
    out
}

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..500 {
        if cond() {
            return;
        }
        rt::sleep_ms(20).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn slave_replicates_byte_identical_log_and_queues() {
    let (_md, master) = open("/m/store", BrokerRole::AsyncMaster).await;
    let (_sd, slave) = open("/s/store", BrokerRole::Slave).await;
    let service = HaService::start(master.clone(), loopback(), fast_config())
        .await
        .expect("ha service");
    let client = HaClient::start(
        slave.clone(),
        Some(service.local_addr().to_string()),
        fast_config(),
    );
    wait_until("slave connected", || !service.slaves().is_empty()).await;
    // Varied sizes across several files, so transfers cut entries and carry BLANK tails.
    for i in 0..600u32 {
        let size = 50 + (i as usize * 37) % 900;
        let r = master
            .put_message(msg("TopicA", (i % 3) as i32, size, i as u8))
            .await;
        assert_eq!(r.status, PutMessageStatus::PutOk, "{:?}", r.remark);
    }
    let master_max = master.commitlog_max_offset();
    assert!(
        master_max > 3 * FILE_SIZE as i64,
        "test must span several files"
    );
    wait_until("slave caught up", || {
        slave.commitlog_max_offset() == master_max
    })
    .await;
    assert_eq!(slave.commitlog_min_offset(), 0);
    assert_eq!(
        commitlog_bytes(&slave, 0, master_max),
        commitlog_bytes(&master, 0, master_max),
        "slave CommitLog must be a byte-identical copy"
    );
    for q in 0..3 {
        assert_eq!(
            slave.max_offset_in_queue("TopicA", q),
            master.max_offset_in_queue("TopicA", q)
        );
        assert_eq!(
            queue_units(&slave, "TopicA", q),
            queue_units(&master, "TopicA", q),
            "queue {q}"
        );
    }
    wait_until("ack reaches master end", || {
        service.push2slave_max_offset() == master_max
    })
    .await;
    assert!(service.is_slave_in_sync());
    // Slaves never take sends.
    let r = slave.put_message(msg("TopicA", 0, 10, 1)).await;
    assert_eq!(r.status, PutMessageStatus::ServiceNotAvailable);
    client.shutdown().await;
    service.shutdown().await;
    wait_until("slave gone", || service.slaves().is_empty()).await;
}

#[tokio::test]
async fn empty_slave_starts_at_masters_last_file() {
    let (_md, master) = open("/m/store", BrokerRole::AsyncMaster).await;
    for i in 0..200u32 {
        let r = master.put_message(msg("T", 0, 700, i as u8)).await;
        assert_eq!(r.status, PutMessageStatus::PutOk);
    }
    let master_max = master.commitlog_max_offset();
    let last_file_start = master_max - master_max % FILE_SIZE as i64;
    assert!(last_file_start > 0);
    let (_sd, slave) = open("/s/store", BrokerRole::Slave).await;
    let service = HaService::start(master.clone(), loopback(), fast_config())
        .await
        .expect("ha service");
    let client = HaClient::start(
        slave.clone(),
        Some(service.local_addr().to_string()),
        fast_config(),
    );
    wait_until("slave caught up", || {
        slave.commitlog_max_offset() == master_max
    })
    .await;
    assert_eq!(slave.commitlog_min_offset(), last_file_start);
    assert_eq!(
        commitlog_bytes(&slave, last_file_start, master_max),
        commitlog_bytes(&master, last_file_start, master_max)
    );
    // The slave's queue holds exactly the master's units from the last file on.
    let master_units: Vec<_> = queue_units(&master, "T", 0)
        .into_iter()
        .filter(|(_, m)| {
            let (d, _) = crate::message::entry::decode_entry(m, false).expect("decode");
            d.commitlog_offset >= last_file_start
        })
        .collect();
    assert!(!master_units.is_empty());
    assert_eq!(queue_units(&slave, "T", 0), master_units);
    assert_eq!(slave.max_offset_in_queue("T", 0), 200);
    client.shutdown().await;
    service.shutdown().await;
}

#[tokio::test]
async fn sync_master_waits_for_slave_ack_and_times_out_without_one() {
    let (_md, master) = open("/m/store", BrokerRole::SyncMaster).await;
    let service = HaService::start(master.clone(), loopback(), fast_config())
        .await
        .expect("ha service");
    // No slave at all: SLAVE_NOT_AVAILABLE at once (stored, but not acknowledged as replicated).
    let started = rt::now();
    let r = master.put_message(msg("T", 0, 100, 1)).await;
    assert_eq!(
        r.status,
        PutMessageStatus::SlaveNotAvailable,
        "{:?}",
        r.remark
    );
    assert!(
        started.elapsed() < Duration::from_millis(400),
        "answered at once"
    );

    let (_sd, slave) = open("/s/store", BrokerRole::Slave).await;
    let client = HaClient::start(
        slave.clone(),
        Some(service.local_addr().to_string()),
        fast_config(),
    );
    wait_until("slave in sync", || service.is_slave_in_sync()).await;
    for i in 0..20u8 {
        let r = master.put_message(msg("T", 0, 100, i)).await;
        assert_eq!(r.status, PutMessageStatus::PutOk, "{:?}", r.remark);
        let end = r
            .append
            .as_ref()
            .map(|a| a.wrote_offset + a.wrote_bytes as i64);
        // The acknowledgement implies the slave holds the message.
        assert!(slave.commitlog_max_offset() >= end.expect("append"));
    }
    client.shutdown().await;
    wait_until("slave gone", || service.slaves().is_empty()).await;
    let r = master.put_message(msg("T", 0, 100, 2)).await;
    assert_eq!(r.status, PutMessageStatus::SlaveNotAvailable);

    // A slave that connects and reports but then hangs (stopped process): FLUSH_SLAVE_TIMEOUT.
    let mut hung = tokio::net::TcpStream::connect(service.local_addr())
        .await
        .expect("connect");
    hung.write_all(&encode_report(master.commitlog_max_offset()))
        .await
        .expect("report");
    hung.flush().await.expect("flush");
    wait_until("hung slave in sync", || service.is_slave_in_sync()).await;
    let started = rt::now();
    let r = master.put_message(msg("T", 0, 100, 3)).await;
    assert_eq!(
        r.status,
        PutMessageStatus::FlushSlaveTimeout,
        "{:?}",
        r.remark
    );
    assert!(started.elapsed() >= Duration::from_millis(450));
    assert!(
        r.append.is_some(),
        "the message is stored, only not replicated"
    );
    drop(hung);
    service.shutdown().await;
}

#[tokio::test]
async fn slave_ahead_of_master_is_refused_and_not_modified() {
    // The "slave" first ran as a master and holds more than the real master.
    let disk = SimDisk::new();
    let ahead = MessageStore::open(
        store_config("/s/store", BrokerRole::AsyncMaster),
        Arc::new(disk.clone()),
    )
    .await
    .expect("open");
    for i in 0..30u8 {
        ahead.put_message(msg("T", 0, 200, i)).await;
    }
    ahead.shutdown().await;
    drop(ahead);
    let slave = MessageStore::open(
        store_config("/s/store", BrokerRole::Slave),
        Arc::new(disk.clone()),
    )
    .await
    .expect("reopen");
    let slave_max = slave.commitlog_max_offset();
    let before = commitlog_bytes(&slave, 0, slave_max);

    let (_md, master) = open("/m/store", BrokerRole::AsyncMaster).await;
    for i in 0..5u8 {
        master.put_message(msg("T", 0, 200, i)).await;
    }
    assert!(master.commitlog_max_offset() < slave_max);
    let service = HaService::start(master.clone(), loopback(), fast_config())
        .await
        .expect("ha service");
    let client = HaClient::start(
        slave.clone(),
        Some(service.local_addr().to_string()),
        fast_config(),
    );
    wait_until("report refused", || service.rejected_reports() >= 2).await;
    assert_eq!(service.push2slave_max_offset(), -1, "never trusted");
    assert!(!service.is_slave_in_sync());
    assert_eq!(slave.commitlog_max_offset(), slave_max);
    assert_eq!(commitlog_bytes(&slave, 0, slave_max), before);
    client.shutdown().await;
    service.shutdown().await;
}

#[tokio::test]
async fn slave_closes_on_offset_mismatch_without_writing() {
    let (_sd, slave) = open("/s/store", BrokerRole::Slave).await;
    // Give the slave some data first, from a real master.
    let (_md, master) = open("/m/store", BrokerRole::AsyncMaster).await;
    for i in 0..5u8 {
        master.put_message(msg("T", 0, 200, i)).await;
    }
    let service = HaService::start(master.clone(), loopback(), fast_config())
        .await
        .expect("ha service");
    let client = HaClient::start(
        slave.clone(),
        Some(service.local_addr().to_string()),
        fast_config(),
    );
    let master_max = master.commitlog_max_offset();
    wait_until("caught up", || slave.commitlog_max_offset() == master_max).await;
    client.shutdown().await;
    service.shutdown().await;

    // A bogus master that skips 100 bytes.
    let listener = tokio::net::TcpListener::bind(loopback())
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let fake = rt::spawn(async move {
        let (mut s, _) = listener.accept().await.expect("accept");
        let mut report = [0u8; 8];
        s.read_exact(&mut report).await.expect("report");
        let reported = i64::from_be_bytes(report);
        let junk = commitlog_bytes(&master, 0, 300);
        s.write_all(&encode_transfer(reported + 100, &junk))
            .await
            .expect("write");
        s.flush().await.expect("flush");
        let mut rest = Vec::new();
        // The slave must close the connection.
        let _ = rt::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
        reported
    });
    let client = HaClient::start(slave.clone(), Some(addr.to_string()), fast_config());
    let reported = fake.await.expect("fake master");
    assert_eq!(reported, master_max, "slave reports its max on connect");
    wait_until("session failed", || client.status().failed_sessions >= 1).await;
    let status = client.status();
    let err = status.last_error.expect("error recorded");
    assert!(err.contains("expects"), "{err}");
    assert_eq!(slave.commitlog_max_offset(), master_max, "nothing written");
    client.shutdown().await;
}

/// The master-shorter-than-slave rule: a master that served a slave loses its unsynced tail in
/// a power loss; on restart it refuses writes (HA fence) until the slave reports, takes the
/// tail back verbatim (CRC-checked), dispatches it, and only then accepts writes. The slave's
/// log is never modified.
#[tokio::test]
async fn master_shorter_than_slave_takes_the_tail_back_before_writing() {
    use crate::store::disk::sim::{CrashMode, SeededRng};
    let mut master_cfg = store_config("/m/store", BrokerRole::SyncMaster);
    // ASYNC_FLUSH with a long interval: the tail stays in the page cache until the crash.
    master_cfg.flush_interval_commitlog_ms = 600_000;
    let master_disk = SimDisk::new();
    let master = MessageStore::open(master_cfg.clone(), Arc::new(master_disk.clone()))
        .await
        .expect("open master");
    let (_sd, slave) = open("/s/store", BrokerRole::Slave).await;
    let service = HaService::start(master.clone(), loopback(), fast_config())
        .await
        .expect("ha service");
    let client = HaClient::start(
        slave.clone(),
        Some(service.local_addr().to_string()),
        fast_config(),
    );
    wait_until("slave connected", || !service.slaves().is_empty()).await;
    for i in 0..120u32 {
        let r = master
            .put_message(msg(
                "TopicA",
                (i % 2) as i32,
                100 + (i as usize * 53) % 700,
                i as u8,
            ))
            .await;
        assert_eq!(r.status, PutMessageStatus::PutOk, "{:?}", r.remark);
    }
    let slave_max = slave.commitlog_max_offset();
    assert_eq!(
        slave_max,
        master.commitlog_max_offset(),
        "SYNC_MASTER acked"
    );
    let slave_bytes = commitlog_bytes(&slave, 0, slave_max);
    let slave_units = queue_units(&slave, "TopicA", 1);
    client.shutdown().await;
    service.shutdown().await;

    master_disk.crash(CrashMode::PowerLoss, &mut SeededRng::new(7));
    drop(master);
    let master = MessageStore::open(master_cfg.clone(), Arc::new(master_disk.clone()))
        .await
        .expect("reopen master");
    let lost_to = master.commitlog_max_offset();
    assert!(
        lost_to < slave_max,
        "the power loss dropped the unsynced tail"
    );
    let service = HaService::start(master.clone(), loopback(), fast_config())
        .await
        .expect("ha service");
    let refused = master.put_message(msg("TopicA", 0, 100, 200)).await;
    assert_eq!(refused.status, PutMessageStatus::ServiceNotAvailable);
    let remark = refused.remark.unwrap_or_default();
    assert!(remark.contains("HA fence"), "{remark}");
    assert_eq!(
        master.commitlog_max_offset(),
        lost_to,
        "a refused write is not stored"
    );

    let client = HaClient::start(
        slave.clone(),
        Some(service.local_addr().to_string()),
        fast_config(),
    );
    wait_until("tail taken back", || {
        master.commitlog_max_offset() == slave_max && master.write_fence().is_none()
    })
    .await;
    assert_eq!(commitlog_bytes(&master, 0, slave_max), slave_bytes);
    assert_eq!(
        commitlog_bytes(&slave, 0, slave_max),
        slave_bytes,
        "slave untouched"
    );
    wait_until("taken-back messages dispatched", || {
        queue_units(&master, "TopicA", 1) == slave_units
    })
    .await;
    let r = master.put_message(msg("TopicA", 0, 100, 201)).await;
    assert_eq!(r.status, PutMessageStatus::PutOk, "{:?}", r.remark);
    wait_until("replication resumed", || {
        slave.commitlog_max_offset() == master.commitlog_max_offset()
    })
    .await;
    client.shutdown().await;
    service.shutdown().await;
}

/// Without a slave the fence stays up, across a clean restart too (only an operator lifts it).
#[tokio::test]
async fn ha_fence_survives_a_clean_restart_without_a_slave() {
    use crate::store::disk::sim::{CrashMode, SeededRng};
    let cfg = store_config("/m/store", BrokerRole::AsyncMaster);
    let disk = SimDisk::new();
    let master = MessageStore::open(cfg.clone(), Arc::new(disk.clone()))
        .await
        .expect("open");
    master.mark_slave_seen().expect("marker");
    master.put_message(msg("T", 0, 100, 1)).await;
    disk.crash(CrashMode::ProcessCrash, &mut SeededRng::new(1));
    drop(master);
    let master = MessageStore::open(cfg.clone(), Arc::new(disk.clone()))
        .await
        .expect("reopen");
    let service = HaService::start(master.clone(), loopback(), fast_config())
        .await
        .expect("ha service");
    assert!(
        master.write_fence().is_some(),
        "abnormal + had a slave: fenced"
    );
    service.shutdown().await;
    master.shutdown().await;
    drop(master);
    let master = MessageStore::open(cfg.clone(), Arc::new(disk.clone()))
        .await
        .expect("reopen cleanly");
    assert!(!master.recovery_outcome().abnormal);
    let service = HaService::start(master.clone(), loopback(), fast_config())
        .await
        .expect("ha service");
    let r = master.put_message(msg("T", 0, 100, 2)).await;
    assert_eq!(
        r.status,
        PutMessageStatus::ServiceNotAvailable,
        "still fenced"
    );
    service.shutdown().await;
}
