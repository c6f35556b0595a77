//! Crash-consistency tests of the whole store.
//! - Property test on SimDisk: random interleavings of appends (sizes, topics, queues,
//!   batches, SYNC/ASYNC), flushes, crashes of every mode, clean restarts; after each recovery
//!   every message the contract says is durable is readable intact, no partial or foreign
//!   message is visible, ConsumeQueue units point at valid entries, and queue offsets continue
//!   without holes.
//! - Real files (MmapDisk in a tempdir): a child process (this test binary re-executed) appends
//!   with SYNC_FLUSH (the second of three rounds with warmMapedFileEnable) and is killed with
//!   SIGKILL mid-write; the reopened store holds every
//!   acknowledged message.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use proptest::prelude::*;

use super::disk::sim::{CrashMode, SeededRng, SimDisk};
use super::store_test::test_config;
use super::*;
use crate::message::entry::decode_entry;

/// Body = 8-byte unique id + filler derived from it, so any mix-up or tear is detected.
fn body_for(id: u64, len: usize) -> Vec<u8> {
    let mut b = id.to_be_bytes().to_vec();
    b.extend((0..len).map(|i| (id as usize).wrapping_mul(31).wrapping_add(i) as u8));
    b
}

fn id_of(body: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&body[..8]);
    u64::from_be_bytes(a)
}

fn put(topic: &str, queue_id: i32, body: Vec<u8>, wait: bool) -> MessageToStore {
    MessageToStore {
        topic: topic.to_string(),
        queue_id,
        body: Bytes::from(body),
        properties: "TAGS\u{1}T\u{2}".to_string(),
        born_host: Some("10.0.0.9:1".parse().expect("addr")),
        store_host: Some("10.0.0.1:10911".parse().expect("addr")),
        wait_store_msg_ok: wait,
        ..MessageToStore::default()
    }
}

#[derive(Debug, Clone)]
enum Op {
    Put {
        topic: u8,
        queue_id: u8,
        sizes: Vec<u16>,
        wait: bool,
    },
    Flush,
    Crash(CrashMode),
    CleanRestart,
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => (0u8..3, 0u8..3, proptest::collection::vec(0u16..3000, 1..4), any::<bool>())
            .prop_map(|(topic, queue_id, sizes, wait)| Op::Put { topic, queue_id, sizes, wait }),
        2 => Just(Op::Flush),
        2 => prop_oneof![
            Just(CrashMode::ProcessCrash),
            Just(CrashMode::PowerLoss),
            Just(CrashMode::TornPowerLoss)
        ].prop_map(Op::Crash),
        1 => Just(Op::CleanRestart),
    ]
}

/// What the test knows about one acknowledged message.
#[derive(Debug, Clone)]
struct Acked {
    id: u64,
    /// Survives a power loss (SYNC_FLUSH acked, or a flush / clean shutdown completed since).
    power_durable: bool,
}

/// Reads a whole queue; checks each unit against its entry.
fn read_queue(store: &MessageStore, topic: &str, queue_id: i32) -> Vec<(i64, u64)> {
    let mut out = Vec::new();
    let mut offset = store.min_offset_in_queue(topic, queue_id);
    loop {
        let r = store.get_message(topic, queue_id, offset, 64, 1 << 22, &MatchAll);
        if r.status != GetMessageStatus::Found {
            assert!(
                matches!(
                    r.status,
                    GetMessageStatus::OffsetOverflowOne
                        | GetMessageStatus::NoMessageInQueue
                        | GetMessageStatus::NoMatchedLogicQueue
                ),
                "{topic}/{queue_id} at {offset}: {:?}",
                r.status
            );
            break;
        }
        for (raw, q) in r.messages.iter().zip(&r.queue_offsets) {
            let (m, size) = decode_entry(raw, true).expect("unit points at a valid entry");
            assert_eq!(size, raw.len());
            assert_eq!(m.topic, topic);
            assert_eq!(m.queue_id, queue_id);
            assert_eq!(m.queue_offset, *q);
            let id = id_of(&m.body);
            assert_eq!(
                m.body[..],
                body_for(id, m.body.len() - 8)[..],
                "body intact"
            );
            out.push((*q, id));
        }
        offset = r.next_begin_offset;
    }
    out
}

struct Model {
    queues: BTreeMap<(String, i32), Vec<Acked>>,
    next_id: u64,
}

impl Model {
    /// After a crash of `mode` and recovery: checks the store against the model and shrinks
    /// the model to what survived.
    fn check_recovered(&mut self, store: &MessageStore, mode: Option<CrashMode>) {
        for ((topic, queue_id), acked) in self.queues.iter_mut() {
            let got = read_queue(store, topic, *queue_id);
            // Offsets contiguous from 0 (no retention in this test).
            for (i, (q, _)) in got.iter().enumerate() {
                assert_eq!(*q, i as i64, "{topic}/{queue_id}: hole or reorder");
            }
            // What survived is a prefix of what was acknowledged, in order.
            assert!(
                got.len() <= acked.len(),
                "{topic}/{queue_id}: foreign messages"
            );
            for (i, (_, id)) in got.iter().enumerate() {
                assert_eq!(*id, acked[i].id, "{topic}/{queue_id}: message {i} differs");
            }
            let required = match mode {
                None | Some(CrashMode::ProcessCrash) => acked.len(),
                Some(_) => acked
                    .iter()
                    .rposition(|a| a.power_durable)
                    .map(|p| p + 1)
                    .unwrap_or(0),
            };
            assert!(
                got.len() >= required,
                "{topic}/{queue_id}: {} of {required} durable messages after {mode:?}",
                got.len()
            );
            acked.truncate(got.len());
            assert_eq!(
                store.max_offset_in_queue(topic, *queue_id),
                got.len() as i64
            );
        }
    }

    fn mark_all_power_durable(&mut self) {
        for acked in self.queues.values_mut() {
            for a in acked.iter_mut() {
                a.power_durable = true;
            }
        }
    }
}

async fn run_ops(ops: Vec<Op>, flush_disk_type: FlushDiskType, seed: u64) {
    let disk = SimDisk::new();
    let mut config = test_config("/p/store");
    config.flush_disk_type = flush_disk_type;
    // Background flush loops stay quiet: durability comes only from the operations.
    config.flush_interval_commitlog_ms = 3_600_000;
    config.flush_interval_consume_queue_ms = 3_600_000;
    config.flush_commitlog_thorough_interval_ms = 3_600_000;
    let mut rng = SeededRng::new(seed);
    let mut store = MessageStore::open(config.clone(), Arc::new(disk.clone()))
        .await
        .expect("open");
    let mut model = Model {
        queues: BTreeMap::new(),
        next_id: 0,
    };
    for op in ops {
        match op {
            Op::Put {
                topic,
                queue_id,
                sizes,
                wait,
            } => {
                let topic = format!("T{topic}");
                let queue_id = queue_id as i32;
                let ids: Vec<u64> = sizes
                    .iter()
                    .map(|_| {
                        model.next_id += 1;
                        model.next_id
                    })
                    .collect();
                let batch: Vec<_> = ids
                    .iter()
                    .zip(&sizes)
                    .map(|(id, size)| put(&topic, queue_id, body_for(*id, *size as usize), wait))
                    .collect();
                let r = store.put_messages(batch).await;
                assert_eq!(r.status, PutMessageStatus::PutOk, "{:?}", r.remark);
                let queue = model.queues.entry((topic.clone(), queue_id)).or_default();
                let a = r.append.expect("append");
                assert_eq!(a.queue_offset, queue.len() as i64, "queue offsets continue");
                let power_durable = flush_disk_type == FlushDiskType::SyncFlush && wait;
                if power_durable {
                    assert!(
                        store.commitlog_flushed_offset() >= a.wrote_offset + a.wrote_bytes as i64
                    );
                }
                for id in ids {
                    queue.push(Acked { id, power_durable });
                }
            }
            Op::Flush => {
                store.flush_all().await.expect("flush");
                model.mark_all_power_durable();
            }
            Op::Crash(mode) => {
                disk.crash(mode, &mut rng);
                drop(store);
                store = MessageStore::open(config.clone(), Arc::new(disk.clone()))
                    .await
                    .expect("reopen after crash");
                model.check_recovered(&store, Some(mode));
                // Recovery syncs what it recovered.
                model.mark_all_power_durable();
            }
            Op::CleanRestart => {
                store.shutdown().await;
                drop(store);
                model.mark_all_power_durable();
                store = MessageStore::open(config.clone(), Arc::new(disk.clone()))
                    .await
                    .expect("reopen");
                assert!(!store.recovery_outcome().abnormal);
                model.check_recovered(&store, None);
            }
        }
    }
    // A final power loss: only the contract's durable messages are required.
    disk.crash(CrashMode::TornPowerLoss, &mut rng);
    drop(store);
    let store = MessageStore::open(config.clone(), Arc::new(disk.clone()))
        .await
        .expect("final reopen");
    model.check_recovered(&store, Some(CrashMode::TornPowerLoss));
    store.shutdown().await;
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn sync_flush_crash_recovery(ops in proptest::collection::vec(op_strategy(), 1..40), seed in any::<u64>()) {
        runtime().block_on(run_ops(ops, FlushDiskType::SyncFlush, seed));
    }

    #[test]
    fn async_flush_crash_recovery(ops in proptest::collection::vec(op_strategy(), 1..40), seed in any::<u64>()) {
        runtime().block_on(run_ops(ops, FlushDiskType::AsyncFlush, seed));
    }
}

/// The checker above catches acknowledging SYNC_FLUSH before the fsync.
#[test]
fn debug_bug_ack_before_fsync_loses_acked_message() {
    runtime().block_on(async {
        let disk = SimDisk::new();
        let mut config = test_config("/p/store");
        config.flush_disk_type = FlushDiskType::SyncFlush;
        config.debug_bugs.ack_sync_flush_before_fsync = true;
        let store = MessageStore::open(config.clone(), Arc::new(disk.clone()))
            .await
            .expect("open");
        // Creates (and fsyncs) the first CommitLog file while fsync still works.
        let first = store.put_message(put("B", 0, body_for(0, 10), false)).await;
        assert_eq!(first.status, PutMessageStatus::PutOk);
        store.flush_all().await.expect("flush");
        // Every CommitLog fsync fails from now on, so whenever the flush loop runs, nothing
        // becomes durable: the ack below can only be premature.
        disk.inject_fault(super::disk::sim::Fault::sticky(
            super::disk::sim::FaultOp::Sync,
            config.commitlog_dir(),
        ));
        let r = store.put_message(put("B", 0, body_for(1, 10), true)).await;
        assert_eq!(r.status, PutMessageStatus::PutOk, "acked before the fsync");
        disk.clear_faults();
        disk.crash(CrashMode::PowerLoss, &mut SeededRng::new(1));
        drop(store);
        let store = MessageStore::open(config, Arc::new(disk.clone()))
            .await
            .expect("reopen");
        assert_eq!(
            store.max_offset_in_queue("B", 0),
            1,
            "the acked second message is lost"
        );
    });
}

/// The reuse switch hands out an already used queue offset after recovery.
#[test]
fn debug_bug_reuse_queue_offset_after_recovery() {
    runtime().block_on(async {
        let disk = SimDisk::new();
        let mut config = test_config("/p/store");
        config.debug_bugs.reuse_queue_offset_after_recovery = true;
        let store = MessageStore::open(config.clone(), Arc::new(disk.clone()))
            .await
            .expect("open");
        for i in 0..3 {
            store.put_message(put("B", 0, body_for(i, 10), true)).await;
        }
        store.shutdown().await;
        let store = MessageStore::open(config, Arc::new(disk.clone()))
            .await
            .expect("reopen");
        let r = store.put_message(put("B", 0, body_for(9, 10), true)).await;
        assert_eq!(r.status, PutMessageStatus::PutOk, "{:?}", r.remark);
        assert_eq!(r.append.expect("append").queue_offset, 2, "offset 2 reused");
        // The reused unit is never readable: a consumer checker sees the acked message lost.
        let got = read_queue(&store, "B", 0);
        assert_eq!(got.len(), 3);
        assert!(got.iter().all(|(_, id)| *id != 9));
    });
}

// ---------------------------------------------------------------------------------------
// Real files, real SIGKILL.

const CHILD_ENV: &str = "APOGEE_STORE_SIGKILL_CHILD_DIR";
/// Set for the child of the second round: it appends with warmMapedFileEnable.
const CHILD_WARM_ENV: &str = "APOGEE_STORE_SIGKILL_CHILD_WARM";

fn mmap_config(dir: &std::path::Path) -> StoreConfig {
    let mut config = test_config(dir.to_str().expect("utf-8 path"));
    config.flush_disk_type = FlushDiskType::SyncFlush;
    // Real files on a shared, possibly nearly full volume: keep the disk-full guard out.
    config.disk_space_warning_level_ratio = 0.999;
    config.clean_file_forcibly_enable = false;
    config
}

/// Child side: runs only when re-executed by the parent with the env var set. Appends forever
/// with SYNC_FLUSH, printing `ACK <queue_id> <queue_offset> <id>` after each acknowledgement.
#[test]
fn sigkill_child_entry() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    use std::io::Write;
    runtime().block_on(async move {
        let dir = std::path::PathBuf::from(dir);
        let mut config = mmap_config(&dir);
        // Zero-fill warm-ups run on blocking threads beside the appends when the kill lands.
        config.warm_mapped_file_enable = std::env::var_os(CHILD_WARM_ENV).is_some();
        let store = MessageStore::open(config, Arc::new(disk::mmap::MmapDisk::new()))
            .await
            .expect("child open");
        let mut stdout = std::io::stdout();
        for id in 0u64.. {
            let queue_id = (id % 3) as i32;
            let r = store
                .put_message(put(
                    "K",
                    queue_id,
                    body_for(id, (id as usize * 37) % 2000),
                    true,
                ))
                .await;
            assert_eq!(r.status, PutMessageStatus::PutOk);
            let a = r.append.expect("append");
            writeln!(stdout, "ACK {queue_id} {} {id}", a.queue_offset).expect("stdout");
            stdout.flush().expect("flush stdout");
        }
    });
}

#[test]
fn sigkill_mid_write_keeps_every_sync_acked_message() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let tmp = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("current exe");
    let mut acked: BTreeMap<i32, Vec<(i64, u64)>> = BTreeMap::new();
    for round in 0..3 {
        let mut command = Command::new(&exe);
        if round == 1 {
            command.env(CHILD_WARM_ENV, "1");
        }
        let mut child = command
            .args([
                "store::crash_test::sigkill_child_entry",
                "--exact",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(CHILD_ENV, tmp.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let target = 150 + round * 40;
        let mut seen = 0;
        let mut this_round = Vec::new();
        while seen < target {
            let Some(line) = lines.next() else { break };
            let line = line.expect("line");
            if let Some(rest) = line.strip_prefix("ACK ") {
                let f: Vec<&str> = rest.split(' ').collect();
                this_round.push((
                    f[0].parse::<i32>().expect("queue"),
                    f[1].parse::<i64>().expect("offset"),
                    f[2].parse::<u64>().expect("id"),
                ));
                seen += 1;
            }
        }
        // SIGKILL while it is appending; then collect acks already in the pipe.
        // SAFETY: kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGKILL) };
        assert_eq!(rc, 0, "kill child");
        for line in lines.map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("ACK ") {
                let f: Vec<&str> = rest.split(' ').collect();
                if f.len() == 3 {
                    if let (Ok(q), Ok(o), Ok(id)) = (f[0].parse(), f[1].parse(), f[2].parse()) {
                        this_round.push((q, o, id));
                    }
                }
            }
        }
        let status = child.wait().expect("wait");
        assert!(!status.success(), "child was killed");
        assert!(seen >= target, "child produced {seen} acks before dying");
        for (q, o, id) in this_round {
            acked.entry(q).or_default().push((o, id));
        }
        // Reopen in this process: every acked message is there with its offset and body.
        runtime().block_on(async {
            let store = MessageStore::open(
                mmap_config(tmp.path()),
                Arc::new(disk::mmap::MmapDisk::new()),
            )
            .await
            .expect("reopen after SIGKILL");
            assert!(store.recovery_outcome().abnormal);
            for (q, list) in &acked {
                let got = read_queue(&store, "K", *q);
                let got: BTreeMap<i64, u64> = got.into_iter().collect();
                for (offset, id) in list {
                    assert_eq!(
                        got.get(offset),
                        Some(id),
                        "queue {q} offset {offset} (round {round})"
                    );
                }
            }
            store.shutdown().await;
        });
    }
}
