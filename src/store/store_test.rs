//! MessageStore tests on SimDisk: append/read, file rolling, batches, limits, flush contracts,
//! crash recovery, poisoning, disk full, retention.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;

use super::commitlog::append::Appended;
use super::disk::sim::{CrashMode, Fault, FaultOp, SeededRng, SimDisk};
use super::*;
use crate::message::entry::decode_entry;
use crate::message::properties::{encode_properties, Properties};

pub(crate) fn test_config(root: &str) -> StoreConfig {
    StoreConfig {
        store_path_root_dir: PathBuf::from(root),
        mapped_file_size_commitlog: 64 * 1024,
        mapped_file_size_consume_queue: 20 * 200,
        max_hash_slot_num: 1000,
        max_index_num: 4000,
        flush_interval_commitlog_ms: 20,
        flush_interval_consume_queue_ms: 50,
        clean_resource_interval_ms: 60_000,
        sync_flush_timeout_ms: 2000,
        ..StoreConfig::default()
    }
}

pub(crate) fn msg(topic: &str, queue_id: i32, body: &[u8]) -> MessageToStore {
    let mut props = Properties::new();
    props.insert("TAGS".into(), "TagA".into());
    props.insert("KEYS".into(), format!("k{}", body.len()));
    MessageToStore {
        topic: topic.to_string(),
        queue_id,
        body: Bytes::copy_from_slice(body),
        properties: encode_properties(&props),
        born_timestamp: 1,
        born_host: Some("10.0.0.9:5555".parse().expect("addr")),
        store_host: Some("10.0.0.1:10911".parse().expect("addr")),
        wait_store_msg_ok: true,
        ..MessageToStore::default()
    }
}

async fn open(config: &StoreConfig, disk: &SimDisk) -> Arc<MessageStore> {
    MessageStore::open(config.clone(), Arc::new(disk.clone()))
        .await
        .expect("open store")
}

fn bodies(store: &MessageStore, topic: &str, queue_id: i32) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut offset = store.min_offset_in_queue(topic, queue_id);
    loop {
        let r = store.get_message(topic, queue_id, offset, 32, 1 << 20, &MatchAll);
        if r.status != GetMessageStatus::Found {
            break;
        }
        for (m, q) in r.messages.iter().zip(&r.queue_offsets) {
            let (decoded, _) = decode_entry(m, true).expect("decode");
            assert_eq!(decoded.queue_offset, *q, "entry queue offset matches unit");
            out.push(decoded.body.to_vec());
        }
        offset = r.next_begin_offset;
    }
    out
}

#[tokio::test]
async fn put_get_round_trip() {
    let disk = SimDisk::new();
    let config = test_config("/n/store");
    let store = open(&config, &disk).await;
    for i in 0..10u8 {
        let r = store.put_message(msg("T", 1, &[i; 10])).await;
        assert_eq!(r.status, PutMessageStatus::PutOk, "{:?}", r.remark);
        let a = r.append.expect("append");
        assert_eq!(a.queue_offset, i as i64);
        assert_eq!(a.msg_id.len(), 32);
        let (host, off) = crate::message::msg_id::decode_offset_msg_id(&a.msg_id).expect("id");
        assert_eq!(off, a.wrote_offset);
        assert_eq!(host.to_string(), "10.0.0.1:10911");
        let raw = store
            .look_message_by_offset(a.wrote_offset)
            .expect("by offset");
        assert_eq!(
            &decode_entry(&raw, true).expect("decode").0.body[..],
            &[i; 10]
        );
    }
    assert_eq!(store.max_offset_in_queue("T", 1), 10);
    assert_eq!(store.max_offset_in_queue("T", 2), 0);
    let got = bodies(&store, "T", 1);
    assert_eq!(got.len(), 10);
    assert_eq!(got[3], vec![3u8; 10]);
    let r = store.get_message("T", 1, 10, 32, 1 << 20, &MatchAll);
    assert_eq!(r.status, GetMessageStatus::OffsetOverflowOne);
    assert_eq!(r.next_begin_offset, 10);
    let r = store.get_message("T", 1, 11, 32, 1 << 20, &MatchAll);
    assert_eq!(r.status, GetMessageStatus::OffsetOverflowBadly);
    let r = store.get_message("nope", 0, 0, 32, 1 << 20, &MatchAll);
    assert_eq!(r.status, GetMessageStatus::NoMatchedLogicQueue);
    // Byte limit: at least one message, then stop before exceeding.
    let r = store.get_message("T", 1, 0, 32, 150, &MatchAll);
    assert_eq!(r.messages.len(), 1);
    assert_eq!(r.next_begin_offset, 1);
    assert!(store.is_write_refused().is_none());
    let info: std::collections::BTreeMap<_, _> = store.runtime_info().into_iter().collect();
    assert_eq!(
        info["commitLogMaxOffset"],
        store.commitlog_max_offset().to_string()
    );
    assert_eq!(info["dispatchBehindBytes"], "0");
    store.shutdown().await;
}

#[tokio::test]
async fn rolls_files_with_blank_filler_and_batches_are_consecutive() {
    let disk = SimDisk::new();
    let config = test_config("/n/store");
    let store = open(&config, &disk).await;
    let mut expected = Vec::new();
    for i in 0..300u32 {
        let body = vec![(i % 251) as u8; 500 + (i as usize * 7) % 900];
        let r = store.put_message(msg("Roll", 0, &body)).await;
        assert_eq!(r.status, PutMessageStatus::PutOk);
        expected.push(body);
    }
    let batch: Vec<_> = (0..5u8).map(|i| msg("Roll", 0, &[i; 100])).collect();
    let r = store.put_messages(batch).await;
    assert_eq!(r.status, PutMessageStatus::PutOk);
    let a = r.append.expect("append");
    assert_eq!(a.queue_offset, 300);
    assert_eq!(a.msg_num, 5);
    assert_eq!(a.msg_id.split(',').count(), 5);
    for i in 0..5u8 {
        expected.push(vec![i; 100]);
    }
    let names = disk.list(&config.commitlog_dir()).expect("list");
    assert!(names.len() > 3, "rolled over several files: {names:?}");
    assert_eq!(names[1], "00000000000000065536");
    // Every file but the last ends with a blank filler or exactly at its end.
    assert_eq!(bodies(&store, "Roll", 0), expected);
    store.shutdown().await;

    // Clean reopen: everything is back, offsets continue.
    let store = open(&config, &disk).await;
    assert!(!store.recovery_outcome().abnormal);
    assert_eq!(bodies(&store, "Roll", 0), expected);
    let r = store.put_message(msg("Roll", 0, b"after")).await;
    assert_eq!(r.append.expect("append").queue_offset, 305);
    store.shutdown().await;
}

#[tokio::test]
async fn size_limits() {
    let disk = SimDisk::new();
    let mut config = test_config("/n/store");
    config.max_message_size = 1000;
    let store = open(&config, &disk).await;
    let r = store.put_message(msg("T", 0, &[0; 1001])).await;
    assert_eq!(r.status, PutMessageStatus::MessageIllegal);
    assert!(r.remark.expect("remark").contains("maxMessageSize"));
    let mut m = msg("T", 0, b"x");
    m.properties = "a\u{1}".to_string() + &"b".repeat(40_000) + "\u{2}";
    let r = store.put_message(m).await;
    assert_eq!(r.status, PutMessageStatus::PropertiesSizeExceeded);
    assert_eq!(store.commitlog_max_offset(), 0, "nothing written");
    store.shutdown().await;
}

#[tokio::test]
async fn sync_flush_acked_messages_survive_power_loss() {
    let disk = SimDisk::new();
    let mut config = test_config("/n/store");
    config.flush_disk_type = FlushDiskType::SyncFlush;
    let store = open(&config, &disk).await;
    let mut acked = Vec::new();
    for i in 0..50u8 {
        let r = store.put_message(msg("S", 0, &[i; 300])).await;
        assert_eq!(r.status, PutMessageStatus::PutOk);
        let a = r.append.expect("append");
        assert!(store.commitlog_flushed_offset() >= a.wrote_offset + a.wrote_bytes as i64);
        acked.push(vec![i; 300]);
    }
    disk.crash(CrashMode::PowerLoss, &mut SeededRng::new(1));
    drop(store);
    let store = open(&config, &disk).await;
    assert!(store.recovery_outcome().abnormal);
    assert_eq!(bodies(&store, "S", 0), acked);
    let r = store.put_message(msg("S", 0, b"next")).await;
    assert_eq!(r.append.expect("append").queue_offset, 50);
    store.shutdown().await;
}

#[tokio::test]
async fn concurrent_sync_puts_share_fsyncs() {
    let disk = SimDisk::new();
    let mut config = test_config("/n/store");
    config.flush_disk_type = FlushDiskType::SyncFlush;
    let store = open(&config, &disk).await;
    let mut handles = Vec::new();
    for i in 0..20u8 {
        let store = store.clone();
        handles.push(crate::rt::spawn(async move {
            store.put_message(msg("C", (i % 3) as i32, &[i; 64])).await
        }));
    }
    for h in handles {
        let r = h.await.expect("join");
        assert_eq!(r.status, PutMessageStatus::PutOk);
    }
    let total: i64 = (0..3).map(|q| store.max_offset_in_queue("C", q)).sum();
    assert_eq!(total, 20);
    // Shared: each waiting put was released exactly once, by far fewer fsyncs than puts.
    let stats = store.group_commit_stats();
    assert_eq!(stats.released, stats.waits);
    assert!(stats.waits > 0);
    assert!(
        stats.rounds * 4 <= stats.waits,
        "{} fsyncs for {} waiting puts",
        stats.rounds,
        stats.waits
    );
    store.shutdown().await;
}

#[tokio::test]
async fn async_acked_messages_survive_process_crash() {
    let disk = SimDisk::new();
    let config = test_config("/n/store");
    let store = open(&config, &disk).await;
    let mut acked = Vec::new();
    for i in 0..40u8 {
        let r = store.put_message(msg("A", 2, &[i; 1000])).await;
        assert_eq!(r.status, PutMessageStatus::PutOk);
        acked.push(vec![i; 1000]);
    }
    disk.crash(CrashMode::ProcessCrash, &mut SeededRng::new(2));
    drop(store);
    let store = open(&config, &disk).await;
    assert!(store.recovery_outcome().abnormal);
    assert_eq!(bodies(&store, "A", 2), acked);
    // Recovery made the recovered data durable: a power loss now loses nothing acked.
    disk.crash(CrashMode::PowerLoss, &mut SeededRng::new(3));
    drop(store);
    let store = open(&config, &disk).await;
    assert_eq!(bodies(&store, "A", 2), acked);
    store.shutdown().await;
}

#[tokio::test]
async fn recovery_stops_at_corruption_and_truncates_tail() {
    let disk = SimDisk::new();
    let config = test_config("/n/store");
    let store = open(&config, &disk).await;
    let mut offsets = Vec::new();
    for i in 0..10u8 {
        let r = store.put_message(msg("R", 0, &[i; 200])).await;
        offsets.push(r.append.expect("append").wrote_offset);
    }
    store.flush_all().await.expect("flush");
    disk.crash(CrashMode::ProcessCrash, &mut SeededRng::new(4));
    drop(store);
    // Flip a body byte of the 6th message: CRC check fails there.
    let path = config.commitlog_dir().join("00000000000000000000");
    disk.corrupt_byte(&path, offsets[5] as u64 + 100)
        .expect("corrupt");
    let store = open(&config, &disk).await;
    let outcome = store.recovery_outcome().clone();
    assert_eq!(outcome.valid_end, offsets[5] as u64);
    assert!(outcome.stop_reason.expect("reason").contains("CRC"));
    assert_eq!(store.max_offset_in_queue("R", 0), 5);
    assert_eq!(bodies(&store, "R", 0).len(), 5);
    let tail = disk.read_live(&path).expect("file");
    assert!(
        tail[offsets[5] as usize..].iter().all(|b| *b == 0),
        "dirty tail zeroed"
    );
    let r = store.put_message(msg("R", 0, b"new")).await;
    let a = r.append.expect("append");
    assert_eq!(a.queue_offset, 5);
    assert_eq!(a.wrote_offset, offsets[5]);
    store.shutdown().await;
}

#[tokio::test]
async fn fsync_failure_poisons_the_store() {
    let disk = SimDisk::new();
    let mut config = test_config("/n/store");
    config.flush_disk_type = FlushDiskType::SyncFlush;
    let store = open(&config, &disk).await;
    assert_eq!(
        store.put_message(msg("P", 0, b"ok")).await.status,
        PutMessageStatus::PutOk
    );
    disk.inject_fault(Fault::once(FaultOp::Sync, config.commitlog_dir()));
    let r = store.put_message(msg("P", 0, b"lost?")).await;
    assert_eq!(r.status, PutMessageStatus::ServiceNotAvailable);
    assert!(r.remark.expect("remark").contains("flush failed"));
    let reason = store.is_write_refused().expect("poisoned");
    assert!(reason.contains("flush failed"), "{reason}");
    let r = store.put_message(msg("P", 0, b"refused")).await;
    assert_eq!(r.status, PutMessageStatus::ServiceNotAvailable);
    store.shutdown().await;
    assert!(
        disk.exists(&config.abort_path()),
        "poisoned shutdown stays abnormal"
    );
}

#[tokio::test]
async fn enospc_fails_cleanly_and_recovers_when_space_frees() {
    let disk = SimDisk::new();
    let config = test_config("/n/store");
    let store = open(&config, &disk).await;
    assert_eq!(
        store.put_message(msg("F", 0, b"one")).await.status,
        PutMessageStatus::PutOk
    );
    let used = disk.used_bytes();
    disk.set_capacity_bytes(Some(used + 1000));
    // Fill the first file; the roll to a second file needs 64 KiB that are not there.
    let mut refused_seen = false;
    let mut acked = 1;
    for _ in 0..100 {
        let r = store.put_message(msg("F", 0, &[7; 1000])).await;
        match r.status {
            PutMessageStatus::PutOk => acked += 1,
            PutMessageStatus::ServiceNotAvailable => {
                assert!(r.remark.expect("remark").contains("disk full"));
                refused_seen = true;
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(refused_seen);
    assert!(store.is_write_refused().is_none(), "ENOSPC is not poison");
    assert_eq!(store.max_offset_in_queue("F", 0), acked);
    disk.set_capacity_bytes(None);
    let r = store.put_message(msg("F", 0, b"after")).await;
    assert_eq!(r.status, PutMessageStatus::PutOk);
    assert_eq!(r.append.expect("append").queue_offset, acked);
    store.shutdown().await;
    let store = open(&config, &disk).await;
    assert_eq!(bodies(&store, "F", 0).len() as i64, acked + 1);
    store.shutdown().await;
}

#[tokio::test]
async fn disk_full_level_refuses_writes_until_space_frees() {
    let disk = SimDisk::new();
    let config = test_config("/n/store");
    let store = open(&config, &disk).await;
    assert_eq!(
        store.put_message(msg("D", 0, b"x")).await.status,
        PutMessageStatus::PutOk
    );
    let used = disk.used_bytes();
    disk.set_capacity_bytes(Some(used + used / 20));
    let round = store.clean_now(false).await.expect("clean");
    assert!(round.writes_refused);
    let r = store.put_message(msg("D", 0, b"y")).await;
    assert_eq!(r.status, PutMessageStatus::ServiceNotAvailable);
    assert!(r.remark.expect("remark").contains("disk full"));
    disk.set_capacity_bytes(Some(used * 10));
    let round = store.clean_now(false).await.expect("clean");
    assert!(!round.writes_refused);
    assert_eq!(
        store.put_message(msg("D", 0, b"z")).await.status,
        PutMessageStatus::PutOk
    );
    store.shutdown().await;
}

#[tokio::test]
async fn retention_deletes_old_files_and_cq_follows() {
    let disk = SimDisk::new();
    let mut config = test_config("/n/store");
    config.file_reserved_time_hours = 0;
    let store = open(&config, &disk).await;
    for i in 0..200u32 {
        store.put_message(msg("Old", 0, &[i as u8; 1000])).await;
    }
    store.flush_all().await.expect("flush");
    let files_before = disk.list(&config.commitlog_dir()).expect("list").len();
    let round = store.clean_now(true).await.expect("clean");
    assert_eq!(
        round.files_deleted,
        files_before - 1,
        "all but the last file"
    );
    assert_eq!(disk.list(&config.commitlog_dir()).expect("list").len(), 1);
    let min = store.min_offset_in_queue("Old", 0);
    assert!(min > 0);
    let r = store.get_message("Old", 0, 0, 32, 1 << 20, &MatchAll);
    assert_eq!(r.status, GetMessageStatus::OffsetTooSmall);
    assert_eq!(r.next_begin_offset, min);
    let remaining = bodies(&store, "Old", 0);
    assert_eq!(remaining.len() as i64, 200 - min);
    store.shutdown().await;
    let store = open(&config, &disk).await;
    assert_eq!(store.min_offset_in_queue("Old", 0), min);
    assert_eq!(
        store
            .put_message(msg("Old", 0, b"n"))
            .await
            .append
            .expect("a")
            .queue_offset,
        200
    );
    store.shutdown().await;
}

#[tokio::test]
async fn lock_and_abort_files() {
    let disk = SimDisk::new();
    let config = test_config("/n/store");
    let store = open(&config, &disk).await;
    assert!(disk.exists(&config.abort_path()));
    let second = MessageStore::open(config.clone(), Arc::new(disk.clone())).await;
    assert!(matches!(second.err(), Some(StoreError::Locked { .. })));
    store.shutdown().await;
    assert!(!disk.exists(&config.abort_path()));
    let store = open(&config, &disk).await;
    assert!(!store.recovery_outcome().abnormal);
    store.shutdown().await;
}

#[tokio::test]
async fn foreign_file_in_commitlog_dir_is_an_error_naming_it() {
    let disk = SimDisk::new();
    let config = test_config("/n/store");
    disk.create_dir_all(&config.commitlog_dir()).expect("mkdir");
    disk.create(&config.commitlog_dir().join("00000000000000000000"), 1000)
        .expect("create")
        .write_at(0, b"not a commitlog")
        .expect("write");
    let err = MessageStore::open(config.clone(), Arc::new(disk.clone()))
        .await
        .err()
        .expect("must fail");
    let text = err.to_string();
    assert!(
        text.contains("00000000000000000000") && text.contains("1000"),
        "{text}"
    );
}

#[tokio::test]
async fn lost_consume_queue_is_rebuilt_from_the_log() {
    let disk = SimDisk::new();
    let config = test_config("/n/store");
    let store = open(&config, &disk).await;
    for i in 0..150u32 {
        store
            .put_message(msg("Q", (i % 2) as i32, &[i as u8; 700]))
            .await;
    }
    store.shutdown().await;
    disk.remove_dir_all(&config.consume_queue_dir())
        .expect("rm cq");
    let store = open(&config, &disk).await;
    assert_eq!(store.max_offset_in_queue("Q", 0), 75);
    assert_eq!(store.max_offset_in_queue("Q", 1), 75);
    assert_eq!(bodies(&store, "Q", 1).len(), 75);
    store.shutdown().await;
}

#[tokio::test]
async fn query_by_key_after_recovery() {
    let disk = SimDisk::new();
    let config = test_config("/n/store");
    let store = open(&config, &disk).await;
    let mut m = msg("K", 0, b"keyed");
    m.properties = "KEYS\u{1}order-7 order-8\u{2}UNIQ_KEY\u{1}U1\u{2}".to_string();
    assert_eq!(store.put_message(m).await.status, PutMessageStatus::PutOk);
    for key in ["order-7", "order-8", "U1"] {
        let r = store.query_message("K", key, 10, 0, i64::MAX);
        assert_eq!(r.messages.len(), 1, "key {key}");
    }
    assert!(store
        .query_message("K", "order-9", 10, 0, i64::MAX)
        .messages
        .is_empty());
    assert!(store
        .query_message("Other", "order-7", 10, 0, i64::MAX)
        .messages
        .is_empty());
    disk.crash(CrashMode::ProcessCrash, &mut SeededRng::new(9));
    drop(store);
    let store = open(&config, &disk).await;
    assert_eq!(
        store
            .query_message("K", "order-7", 10, 0, i64::MAX)
            .messages
            .len(),
        1
    );
    store.shutdown().await;
}

#[tokio::test]
async fn arrival_listener_sees_each_unit() {
    let disk = SimDisk::new();
    let config = test_config("/n/store");
    let store = open(&config, &disk).await;
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let s2 = seen.clone();
    store.set_arrival_listener(Arc::new(move |t: &str, q: i32, max: i64, _tags: i64| {
        s2.lock().expect("lock").push((t.to_string(), q, max));
    }));
    store.put_message(msg("L", 3, b"a")).await;
    store
        .put_messages(vec![msg("L", 3, b"b"), msg("L", 3, b"c")])
        .await;
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(
        seen,
        vec![("L".into(), 3, 1), ("L".into(), 3, 2), ("L".into(), 3, 3)]
    );
    store.shutdown().await;
}

/// fsyncgate: a failed fsync drops the dirty pages from the write-back queue while reads still
/// see them. After a process restart, recovery must re-write that region, or a later power
/// loss opens a hole that hides every message acknowledged after the restart.
#[tokio::test]
async fn failed_fsync_region_is_rewritten_by_recovery() {
    let disk = SimDisk::new();
    let mut config = test_config("/n/store");
    config.flush_disk_type = FlushDiskType::SyncFlush;
    let store = open(&config, &disk).await;
    assert_eq!(
        store.put_message(msg("G", 0, b"first")).await.status,
        PutMessageStatus::PutOk
    );
    disk.inject_fault(Fault::once(FaultOp::Sync, config.commitlog_dir()));
    let r = store.put_message(msg("G", 0, b"unsynced")).await;
    assert_eq!(r.status, PutMessageStatus::ServiceNotAvailable);
    disk.crash(CrashMode::ProcessCrash, &mut SeededRng::new(11));
    drop(store);
    let store = open(&config, &disk).await;
    assert!(store.recovery_outcome().bytes_rewritten > 0);
    // The unacknowledged message is still in the page cache, so it is recovered.
    assert_eq!(store.max_offset_in_queue("G", 0), 2);
    for body in [&b"after-1"[..], b"after-2"] {
        assert_eq!(
            store.put_message(msg("G", 0, body)).await.status,
            PutMessageStatus::PutOk
        );
    }
    disk.crash(CrashMode::PowerLoss, &mut SeededRng::new(12));
    drop(store);
    let store = open(&config, &disk).await;
    let got = bodies(&store, "G", 0);
    assert_eq!(
        got.len(),
        4,
        "acked messages after the restart survive the power loss"
    );
    assert_eq!(got[3], b"after-2".to_vec());
    store.shutdown().await;
}

/// Abnormal recovery re-dispatches only what the checkpoint does not prove durable: the
/// ConsumeQueues and index were flushed up to the last `flush_all`, so only the later entries
/// are dispatched again; everything stays readable.
#[tokio::test]
async fn abnormal_recovery_redispatches_from_the_checkpoint_dispatch_point() {
    let disk = SimDisk::new();
    let config = test_config("/d/store");
    let store = open(&config, &disk).await;
    for i in 0..50u8 {
        store.put_message(msg("D", (i % 2) as i32, &[i; 100])).await;
    }
    store.flush_all().await.expect("flush");
    let proven = store.commitlog_max_offset() as u64;
    for i in 50..55u8 {
        store.put_message(msg("D", (i % 2) as i32, &[i; 100])).await;
    }
    disk.crash(CrashMode::ProcessCrash, &mut SeededRng::new(7));
    drop(store);
    let store = open(&config, &disk).await;
    let outcome = store.recovery_outcome().clone();
    assert!(outcome.abnormal);
    assert_eq!(outcome.dispatch_start, proven, "{outcome:?}");
    assert_eq!(outcome.entries_dispatched, 5, "{outcome:?}");
    let got: usize = (0..2).map(|q| bodies(&store, "D", q).len()).sum();
    assert_eq!(got, 55);
    // A power loss now keeps everything: recovery made the re-dispatched tail durable and
    // the new checkpoint vouches for it.
    disk.crash(CrashMode::PowerLoss, &mut SeededRng::new(8));
    drop(store);
    let store = open(&config, &disk).await;
    let got: usize = (0..2).map(|q| bodies(&store, "D", q).len()).sum();
    assert_eq!(got, 55);
    assert_eq!(store.recovery_outcome().entries_dispatched, 0);
    store.shutdown().await;
}

#[test]
fn checkpoint_safe_offsets_survive_reopen() {
    use super::checkpoint::{Checkpoint, CheckpointData};
    let disk = SimDisk::new();
    let path = std::path::Path::new("/c/checkpoint");
    let cp = Checkpoint::open(&disk, path).expect("open");
    cp.update(|c| {
        c.commitlog_flushed_offset = 1 << 33;
        c.dispatch_flushed_offset = 12345;
    });
    cp.flush().expect("flush");
    disk.crash(CrashMode::PowerLoss, &mut SeededRng::new(1));
    let cp = Checkpoint::open(&disk, path).expect("reopen");
    let CheckpointData {
        commitlog_flushed_offset,
        dispatch_flushed_offset,
        ..
    } = cp.get();
    assert_eq!(commitlog_flushed_offset, 1 << 33);
    assert_eq!(dispatch_flushed_offset, 12345);
}

#[tokio::test]
async fn a_put_whose_dispatch_finds_other_entries_pending_reads_them_from_the_log() {
    let disk = SimDisk::new();
    let store = open(&test_config("/s-pending"), &disk).await;
    let inner = &store.inner;
    // Two appends nobody has dispatched yet (as when two puts interleave between append and
    // dispatch): A then B.
    let (a, b) = (msg("T", 0, b"aaa"), msg("T", 0, b"bbbb"));
    let mut prepared_a = [prepare_message(&a, 1 << 20, None).expect("prepare")];
    let mut prepared_b = [prepare_message(&b, 1 << 20, None).expect("prepare")];
    let now = || 7;
    let at_a = inner.log.append(&mut prepared_a, &now).expect("append a");
    let at_b = inner.log.append(&mut prepared_b, &now).expect("append b");
    // Dispatches one appended entry the way put_message does; returns how many were dispatched.
    let dispatch = |p: &PreparedEntry, m: &MessageToStore, at: &Appended| {
        inner
            .dispatcher
            .dispatch_appended(
                &inner.log,
                &inner.cq,
                &*inner.index,
                at.wrote_offset,
                at.wrote_offset + at.wrote_bytes,
                std::iter::once(DispatchEntry::from_prepared(p, &m.properties)),
            )
            .map_err(|e| format!("{e:?}"))
            .expect("dispatch")
    };
    // B first: A is pending before it, so B's dispatch reads A and B from the log.
    let end_b = at_b.wrote_offset + at_b.wrote_bytes;
    let done = dispatch(&prepared_b[0], &b, &at_b);
    assert_eq!(done, 2, "A and B dispatched from the log");
    // A's own dispatch then finds nothing left to do.
    let done = dispatch(&prepared_a[0], &a, &at_a);
    assert_eq!(done, 0);
    assert_eq!(inner.dispatcher.reput_offset(), end_b);
    assert_eq!(
        bodies(&store, "T", 0),
        vec![b"aaa".to_vec(), b"bbbb".to_vec()]
    );
    // A third put takes the direct path and lands after them.
    let r = store.put_message(msg("T", 0, b"c")).await;
    assert_eq!(r.status, PutMessageStatus::PutOk);
    assert_eq!(r.append.expect("append").queue_offset, 2);
    assert_eq!(
        bodies(&store, "T", 0),
        vec![b"aaa".to_vec(), b"bbbb".to_vec(), b"c".to_vec()]
    );
    // Index keys came through both paths.
    for key in ["k3", "k4", "k1"] {
        assert_eq!(
            store
                .query_message("T", key, 10, 0, i64::MAX)
                .messages
                .len(),
            1,
            "{key}"
        );
    }
    store.shutdown().await;
}

/// warmMapedFileEnable: appends `n` messages straight into the log (no put path, so no
/// background warm-up job starts by itself); returns the end offset.
fn append_direct(store: &MessageStore, n: usize, body_len: usize) -> u64 {
    let mut end = 0;
    for i in 0..n {
        let m = msg("W", 0, &vec![i as u8; body_len]);
        let mut prepared = [prepare_message(&m, 1 << 20, None).expect("prepare")];
        let at = store
            .inner
            .log
            .append(&mut prepared, &|| 7)
            .expect("append");
        end = at.wrote_offset + at.wrote_bytes;
    }
    end
}

/// The bodies of the entries in the log's first file, decoded (CRC checked) up to `end`.
fn log_bodies(store: &MessageStore, end: u64) -> Vec<Vec<u8>> {
    let file = store.inner.log.files.find(0).expect("first file");
    let mut buf = vec![0u8; end as usize];
    file.read_at(0, &mut buf).expect("read");
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let (entry, size) = decode_entry(&buf[pos..], true).expect("decode");
        out.push(entry.body.to_vec());
        pos += size;
    }
    out
}

#[tokio::test]
async fn warm_up_writes_and_syncs_zeros_ahead_of_the_writer() {
    let disk = SimDisk::new();
    let mut config = test_config("/s-warm");
    config.flush_disk_type = FlushDiskType::SyncFlush;
    // Off: a disk without mappings gets no warm-up job at all.
    let store = open(&config, &disk).await;
    let end = append_direct(&store, 3, 100);
    assert!(store.inner.log.warm_job(end).is_none());
    store.shutdown().await;

    config.store_path_root_dir = PathBuf::from("/s-warm-on");
    config.warm_mapped_file_enable = true;
    config.flush_least_pages_when_warm_mapped_file = 2;
    let store = open(&config, &disk).await;
    let end = append_direct(&store, 3, 100);
    let path = store.inner.log.files.find(0).expect("file").path.clone();
    // Nonzero bytes ahead of the writer (the sim's new file is zeros) make the job's writes
    // visible: one on the next page, one near the file end, one on the writer's own page.
    let (next_page, near_end, same_page) = (4096 + 10, 64 * 1024 - 1, end + 5);
    for pos in [next_page, near_end, same_page] {
        disk.corrupt_byte(&path, pos).expect("flip");
    }
    let job = store
        .inner
        .log
        .warm_job(end)
        .expect("a job: warmMapedFileEnable");
    assert!(store.inner.log.warm_job(end).is_none(), "one job at a time");
    store.inner.log.warm(job);
    let durable = disk.read_durable(&path).expect("durable image");
    assert_eq!(durable[next_page as usize], 0, "zero written and synced");
    assert_eq!(durable[near_end as usize], 0, "to the end of the file");
    assert_eq!(
        durable[same_page as usize], 0xFF,
        "the writer's page is left alone (the job starts at the next page)"
    );
    assert_eq!(
        log_bodies(&store, end),
        vec![vec![0u8; 100], vec![1; 100], vec![2; 100]]
    );
    // The range is warm: no new job until the writer comes within half a warm-up of its end,
    // which here (a 64 KiB file) is the end of the file.
    assert!(store.inner.log.warm_job(end).is_none());
    store.shutdown().await;
}

#[tokio::test]
async fn warm_up_stops_when_the_writer_reaches_its_range() {
    let disk = SimDisk::new();
    let mut config = test_config("/s-warm-race");
    config.flush_disk_type = FlushDiskType::SyncFlush;
    config.warm_mapped_file_enable = true;
    let store = open(&config, &disk).await;
    let end = append_direct(&store, 1, 100);
    let job = store.inner.log.warm_job(end).expect("job");
    // The writer moves on past the next page boundary before the job runs (as when the job
    // waits for a blocking thread under load).
    let end = append_direct(&store, 30, 300);
    assert!(end > 4096 + 4096, "the writer is inside the job's range");
    let path = store.inner.log.files.find(0).expect("file").path.clone();
    let ahead = end + 4096;
    disk.corrupt_byte(&path, ahead).expect("flip");
    store.inner.log.warm(job);
    // Nothing was zeroed: not the appended entries, not the byte beyond them.
    let bodies = log_bodies(&store, store.inner.log.max_offset());
    assert_eq!(bodies.len(), 31);
    assert_eq!(bodies[30], vec![29u8; 300]);
    assert_eq!(disk.read_live(&path).expect("live")[ahead as usize], 0xFF);
    store.shutdown().await;
}

/// Real files, real threads: puts from many tasks while the put path runs warm-up jobs
/// (zeros written by pwrite ahead of the writer) on blocking threads. Every acknowledged
/// message must read back intact, across several file rolls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_up_jobs_racing_appends_never_touch_appended_bytes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(tmp.path().to_str().expect("utf-8 path"));
    config.flush_disk_type = FlushDiskType::SyncFlush;
    config.warm_mapped_file_enable = true;
    config.flush_least_pages_when_warm_mapped_file = 16;
    config.mapped_file_size_commitlog = 4 * 1024 * 1024;
    config.disk_space_warning_level_ratio = 0.999;
    config.clean_file_forcibly_enable = false;
    let store = MessageStore::open(config, Arc::new(disk::mmap::MmapDisk::new()))
        .await
        .expect("open");
    let mut tasks = Vec::new();
    for w in 0..8u8 {
        let store = store.clone();
        tasks.push(crate::rt::spawn(async move {
            for i in 0..400usize {
                let body = vec![w.wrapping_mul(31).wrapping_add(i as u8); 100 + (i * 53) % 3000];
                let r = store.put_message(msg("R", w as i32, &body)).await;
                assert_eq!(r.status, PutMessageStatus::PutOk);
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer");
    }
    assert!(store.inner.log.files.count() >= 2, "the log rolled");
    for w in 0..8u8 {
        let got = bodies(&store, "R", w as i32);
        assert_eq!(got.len(), 400);
        for (i, body) in got.iter().enumerate() {
            let want = vec![w.wrapping_mul(31).wrapping_add(i as u8); 100 + (i * 53) % 3000];
            assert_eq!(body, &want, "queue {w} offset {i}");
        }
    }
    store.shutdown().await;
}

/// The writer's side of the fence: an append whose bytes reach a range a warm-up step is
/// zeroing waits until the step is done (the step's claim is set by hand here).
#[tokio::test]
async fn an_append_waits_while_a_warm_up_step_zeroes_its_range() {
    let disk = SimDisk::new();
    let mut config = test_config("/s-warm-fence");
    config.warm_mapped_file_enable = true;
    let store = open(&config, &disk).await;
    let end = append_direct(&store, 1, 100);
    let log = &store.inner.log;
    log.zeroing_from.store(end + 50, Ordering::SeqCst);
    let appended = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            append_direct(&store, 1, 100);
            appended.store(true, Ordering::SeqCst);
        });
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(
            !appended.load(Ordering::SeqCst),
            "the append waited for the step"
        );
        // Two entries of the same size: the second ends at twice the first's end.
        assert_eq!(
            log.writer_end.load(Ordering::SeqCst),
            2 * end,
            "end published"
        );
        log.zeroing_from.store(u64::MAX, Ordering::SeqCst);
    });
    assert!(appended.load(Ordering::SeqCst));
    assert_eq!(log_bodies(&store, log.max_offset()).len(), 2);
    store.shutdown().await;
}
