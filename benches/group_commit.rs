//! (b) SYNC_FLUSH group commit with 1, 16 and 64 concurrent writers beside ASYNC_FLUSH with the
//! same writers (1 KiB bodies, MmapDisk). Prints msgs/s and the ratio sync/async.
//! `cargo bench --bench group_commit`; `APOGEE_BENCH_GROUP_SECS` = seconds per run (default 3).
#![allow(clippy::disallowed_methods)]

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use apogee::store::{FlushDiskType, PutMessageStatus};
use common::*;

fn run(rt: &tokio::runtime::Runtime, flush: FlushDiskType, writers: usize, secs: u64) -> f64 {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("store");
    rt.block_on(async {
        let store = open_store(&root, flush).await;
        let payload = body(1024);
        let done = Arc::new(AtomicU64::new(0));
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
        store.shutdown().await;
        done.load(Ordering::Relaxed) as f64 / elapsed
    })
}

fn main() {
    let secs = env_u64("APOGEE_BENCH_GROUP_SECS", 3);
    let rt = runtime();
    println!("group_commit: 1 KiB bodies, {secs} s per run, MmapDisk");
    for writers in [1usize, 16, 64] {
        let sync = run(&rt, FlushDiskType::SyncFlush, writers, secs);
        let asynchronous = run(&rt, FlushDiskType::AsyncFlush, writers, secs);
        println!(
            "group_commit: {writers:>2} writers: SYNC_FLUSH {sync:>9.0} msg/s | ASYNC_FLUSH {asynchronous:>9.0} msg/s | sync/async = {:.3}",
            sync / asynchronous
        );
    }
}
