//! (c) Recovery time after an abnormal exit. A child process (this binary re-executed) fills a
//! store with 1 KiB messages up to `APOGEE_BENCH_RECOVERY_MB` MiB of CommitLog (default 256;
//! use 1024 and 4096 for the 1 GiB / 4 GiB figures) and exits without shutdown, leaving the
//! abort file (the page cache keeps its writes, as after a process crash). The parent then times
//! `MessageStore::open`, i.e. abnormal recovery. `cargo bench --bench recovery`;
//! `APOGEE_BENCH_LOG=1` prints recovery's own progress lines.
#![allow(clippy::disallowed_methods)]

mod common;

use std::path::PathBuf;
use std::time::Instant;

use apogee::store::{FlushDiskType, PutMessageStatus};
use common::*;

const CHILD_ENV: &str = "APOGEE_BENCH_RECOVERY_CHILD_ROOT";

fn child(root: PathBuf, log_bytes: u64) {
    let rt = runtime();
    rt.block_on(async {
        let store = open_store(&root, FlushDiskType::AsyncFlush).await;
        let payload = body(1024);
        let mut seq = 0u64;
        while (store.commitlog_max_offset() as u64) < log_bytes {
            let r = store
                .put_message(message("BenchTopic", (seq % 16) as i32, &payload, seq))
                .await;
            assert_eq!(r.status, PutMessageStatus::PutOk, "{:?}", r.remark);
            seq += 1;
        }
        println!(
            "recovery: child wrote {seq} messages, {} bytes of CommitLog; exiting without shutdown",
            store.commitlog_max_offset()
        );
    });
    // Abnormal exit: no shutdown, abort file stays, background loops die with the process.
    std::process::exit(0);
}

fn main() {
    let log_mb = env_u64("APOGEE_BENCH_RECOVERY_MB", 256);
    if let Ok(root) = std::env::var(CHILD_ENV) {
        child(PathBuf::from(root), log_mb * MIB);
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("store");
    let exe = std::env::current_exe().expect("current exe");
    let status = std::process::Command::new(exe)
        .env(CHILD_ENV, &root)
        .env("APOGEE_BENCH_RECOVERY_MB", log_mb.to_string())
        .status()
        .expect("spawn writer child");
    assert!(status.success(), "writer child failed: {status}");
    assert!(
        root.join("abort").exists(),
        "abort file must survive the abnormal exit"
    );

    if std::env::var_os("APOGEE_BENCH_LOG").is_some() {
        // Recovery's own progress lines (files, bytes, rate, re-dispatch) with timestamps.
        let _ = tracing_subscriber::fmt()
            .with_env_filter("apogee::store=info")
            .try_init();
    }
    let rt = runtime();
    rt.block_on(async {
        let t = Instant::now();
        let cpu = process_cpu_secs();
        let store = open_store(&root, FlushDiskType::AsyncFlush).await;
        let secs = t.elapsed().as_secs_f64();
        let cpu = process_cpu_secs() - cpu;
        let outcome = store.recovery_outcome();
        println!(
            "recovery: {log_mb} MiB log, abnormal recovery in {secs:.3} s wall, {cpu:.3} s CPU: scanned {} bytes in {} files ({:.0} MiB/s) from {}, {} entries re-dispatched from {}, {} bytes rewritten, valid end {}",
            outcome.bytes_scanned,
            outcome.files_scanned,
            outcome.bytes_scanned as f64 / secs / MIB as f64,
            outcome.scan_start,
            outcome.entries_dispatched,
            outcome.dispatch_start,
            outcome.bytes_rewritten,
            outcome.valid_end,
        );
        assert!(outcome.abnormal);
        assert!(store.commitlog_max_offset() as u64 >= log_mb * MIB);
        store.shutdown().await;
    });
}
