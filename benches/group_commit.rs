//! (b) SYNC_FLUSH group commit with 1, 16 and 64 concurrent writers beside ASYNC_FLUSH with the
//! same writers (1 KiB bodies, MmapDisk). Prints msgs/s, the ratio sync/async, process CPU time
//! per message, and for SYNC_FLUSH the group-commit counters (fsync rounds, waiters released per
//! round, time in msync). First it measures the disk itself: 2000 rounds of writing 73 KiB (what
//! one round covers at 64 writers) into a file made like a CommitLog file and syncing it, with
//! the bytes stored through the mapping and written by pwrite (`WriteMode`; the CommitLog uses
//! pwrite under SYNC_FLUSH), into a fallocated file and into one pre-written with zeros. That
//! bounds SYNC_FLUSH at N writers by N / (sync latency + per-round overhead). SYNC_FLUSH runs
//! twice, the second time with warmMapedFileEnable (zeros written and synced ahead of the
//! writer, so its syncs hit pre-written blocks).
//! `cargo bench --bench group_commit`; `APOGEE_BENCH_GROUP_SECS` = seconds per run (default 3);
//! `APOGEE_BENCH_GROUP_WRITERS` = comma-separated writer counts (default `1,16,64`).
#![allow(clippy::disallowed_methods)]

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use apogee::store::commitlog::flush::GroupCommitStats;
use apogee::store::disk::mmap::MmapDisk;
use apogee::store::disk::{Disk, WriteMode};
use apogee::store::{FlushDiskType, MessageStore, PutMessageStatus};
use common::*;

struct Run {
    msgs_per_sec: f64,
    cpu_us_per_msg: f64,
    group_commit: GroupCommitStats,
}

fn run(
    rt: &tokio::runtime::Runtime,
    flush: FlushDiskType,
    warm: bool,
    writers: usize,
    secs: u64,
) -> Run {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("store");
    rt.block_on(async {
        let mut config = config(&root, flush);
        config.warm_mapped_file_enable = warm;
        let store = MessageStore::open(config, Arc::new(MmapDisk::new()))
            .await
            .expect("open store");
        let payload = body(1024);
        // The first put creates the first CommitLog file; keep that out of the timed window.
        let first = store
            .put_message(message("BenchTopic", 0, &payload, u64::MAX))
            .await;
        assert_eq!(first.status, PutMessageStatus::PutOk, "{:?}", first.remark);
        if warm {
            // It also starts the first warm-up (64 MiB of zeros written and synced); a broker
            // that has been up a while is past that, with the warm range ahead of its writer.
            tokio::time::sleep(Duration::from_millis(1000)).await;
        }
        let done = Arc::new(AtomicU64::new(0));
        let cpu_start = process_cpu_secs();
        let start = Instant::now();
        // Writers stop at a wall-clock deadline they check themselves, independent of timers.
        let deadline = start + Duration::from_secs(secs);
        let mut tasks = Vec::new();
        for w in 0..writers {
            let (store, payload, done) = (store.clone(), payload.clone(), done.clone());
            tasks.push(tokio::spawn(async move {
                let mut seq = (w as u64) << 40;
                while Instant::now() < deadline {
                    let r = store
                        .put_message(message("BenchTopic", (w % 8) as i32, &payload, seq))
                        .await;
                    assert_eq!(r.status, PutMessageStatus::PutOk, "{:?}", r.remark);
                    seq += 1;
                    done.fetch_add(1, Ordering::Relaxed);
                    // No yield here: put_message itself yields when it did not wait, so
                    // writers that never pause cannot starve the flush loops and timers.
                }
            }));
        }
        for t in tasks {
            t.await.expect("writer");
        }
        let elapsed = start.elapsed().as_secs_f64();
        let cpu = process_cpu_secs() - cpu_start;
        let group_commit = store.group_commit_stats();
        store.shutdown().await;
        let n = done.load(Ordering::Relaxed) as f64;
        Run {
            msgs_per_sec: n / elapsed,
            cpu_us_per_msg: cpu * 1e6 / n,
            group_commit,
        }
    })
}

/// msync latency of this disk: `rounds` times, write `dirty` bytes of a mapped 256 MiB file
/// (created the way the CommitLog does) in `mode` and sync exactly that range. Many rounds,
/// because this disk syncs fast only until a few tens of MiB were synced, then settles.
/// Returns (p50 of the last half, syncs per second over the whole run).
fn msync_latency_us(dirty: usize, rounds: usize, mode: WriteMode, prewritten: bool) -> (f64, f64) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("00000000000000000000");
    let len = 256 * MIB;
    let file = MmapDisk::with_write_mode(mode)
        .create(&path, len)
        .expect("create");
    if prewritten {
        // What warmMapedFileEnable does ahead of the writer: zeros written and synced, so
        // the blocks are no longer unwritten extents.
        let zeros = vec![0u8; MIB as usize];
        for pos in (0..len).step_by(MIB as usize) {
            file.write_at(pos, &zeros).expect("zero fill");
        }
        file.sync_all().expect("sync");
    }
    if file.supports_prefault() {
        file.prefault(0, len, true).expect("prefault");
    }
    let chunk = vec![0xA5u8; dirty];
    let mut samples = Vec::with_capacity(rounds);
    let mut pos = 0u64;
    let start = Instant::now();
    for _ in 0..rounds {
        if pos + dirty as u64 > len {
            pos = 0;
        }
        file.write_at(pos, &chunk).expect("write");
        let t = Instant::now();
        file.sync_range(pos, dirty as u64).expect("msync");
        samples.push(t.elapsed().as_secs_f64() * 1e6);
        pos += dirty as u64;
    }
    let per_sec = rounds as f64 / start.elapsed().as_secs_f64();
    let mut settled = samples.split_off(rounds / 2);
    settled.sort_by(f64::total_cmp);
    (settled[settled.len() / 2], per_sec)
}

fn describe(s: &GroupCommitStats) -> String {
    if s.rounds == 0 {
        return "no fsync rounds".into();
    }
    let hist: Vec<String> = ["0", "1", "2-3", "4-7", "8-15", "16-31", "32-63", "64+"]
        .iter()
        .zip(s.waiters_per_round)
        .filter(|(_, n)| *n > 0)
        .map(|(b, n)| format!("{b}:{n}"))
        .collect();
    format!(
        "{} fsyncs, {:.1} waiters released/fsync (waits {}, released {}), {:.1} KiB/fsync, \
         msync {:.0} us, blocking round trip {:.0} us per fsync; waiters/fsync histogram [{}]",
        s.rounds,
        s.released as f64 / s.rounds as f64,
        s.waits,
        s.released,
        s.bytes as f64 / 1024.0 / s.rounds as f64,
        s.sync_ns as f64 / 1e3 / s.rounds as f64,
        s.round_trip_ns as f64 / 1e3 / s.rounds as f64,
        hist.join(" ")
    )
}

fn main() {
    let secs = env_u64("APOGEE_BENCH_GROUP_SECS", 3);
    let writer_counts: Vec<usize> = std::env::var("APOGEE_BENCH_GROUP_WRITERS")
        .ok()
        .map(|v| v.split(',').filter_map(|w| w.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 16, 64]);
    let rt = runtime();
    println!("group_commit: 1 KiB bodies, {secs} s per run, MmapDisk");
    for (mode, prewritten) in [
        (WriteMode::Mapped, false),
        (WriteMode::Syscall, false),
        (WriteMode::Syscall, true),
    ] {
        let (p50, per_sec) = msync_latency_us(73 * 1024, 2000, mode, prewritten);
        let file = if prewritten {
            "pre-written file"
        } else {
            "fallocated file"
        };
        println!(
            "group_commit: disk: write 73 KiB ({mode:?}) + msync, {file}, 2000 rounds: {per_sec:.0} syncs/s, settled p50 {p50:.0} us"
        );
    }
    for writers in writer_counts {
        let sync = run(&rt, FlushDiskType::SyncFlush, false, writers, secs);
        let warm = run(&rt, FlushDiskType::SyncFlush, true, writers, secs);
        let asynchronous = run(&rt, FlushDiskType::AsyncFlush, false, writers, secs);
        println!(
            "group_commit: {writers:>2} writers: SYNC_FLUSH {:>9.0} msg/s | ASYNC_FLUSH {:>9.0} msg/s | sync/async = {:.3} | CPU per message {:.2} us vs {:.2} us",
            sync.msgs_per_sec,
            asynchronous.msgs_per_sec,
            sync.msgs_per_sec / asynchronous.msgs_per_sec,
            sync.cpu_us_per_msg,
            asynchronous.cpu_us_per_msg,
        );
        println!(
            "group_commit: {writers:>2} writers: SYNC_FLUSH {}",
            describe(&sync.group_commit)
        );
        println!(
            "group_commit: {writers:>2} writers: SYNC_FLUSH + warmMapedFileEnable {:>9.0} msg/s | sync/async = {:.3} | CPU per message {:.2} us",
            warm.msgs_per_sec,
            warm.msgs_per_sec / asynchronous.msgs_per_sec,
            warm.cpu_us_per_msg,
        );
        println!(
            "group_commit: {writers:>2} writers: SYNC_FLUSH + warmMapedFileEnable {}",
            describe(&warm.group_commit)
        );
    }
}
