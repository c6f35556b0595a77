//! (a) Append throughput of MessageStore::put_message (ASYNC_FLUSH, MmapDisk, 1 GiB CommitLog
//! files) for 128 B, 1 KiB and 4 KiB bodies, beside a raw baseline: plain memcpy of entries of
//! the same size into an mmap of the same total size. Prints the ratio store/raw.
//! `cargo bench --bench store_append`; `APOGEE_BENCH_APPEND_MB` = MiB written per size
//! (default 128); `APOGEE_BENCH_APPEND_SIZES` = comma-separated body sizes in bytes (default
//! `128,1024,4096`), e.g. to profile one size alone.
//!
//! Messages are built before the clock starts (building them is the caller's work, as the
//! raw baseline's entry is). Both sides report wall time and process CPU time (all threads:
//! the store's flush and prefault work counts): on a shared, loaded machine the CPU-time
//! ratio is the stable one, the wall-time ratio swings with the other load.
#![allow(clippy::disallowed_methods)]

mod common;

use std::time::Instant;

use apogee::store::{FlushDiskType, PutMessageStatus};
use common::*;

/// (wall seconds, process CPU seconds)
fn raw_baseline(dir: &std::path::Path, entry_size: usize, count: u64) -> (f64, f64) {
    let path = dir.join("raw.bin");
    let total = entry_size as u64 * count;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .expect("raw file");
    file.set_len(total).expect("set_len");
    // SAFETY: the file is private to this bench and outlives the mapping.
    let mut map = unsafe { memmap2::MmapMut::map_mut(&file) }.expect("mmap");
    let entry: Vec<u8> = (0..entry_size).map(|i| i as u8).collect();
    let t = Instant::now();
    let cpu = process_cpu_secs();
    let mut pos = 0usize;
    for _ in 0..count {
        map[pos..pos + entry_size].copy_from_slice(&entry);
        pos += entry_size;
    }
    let secs = t.elapsed().as_secs_f64();
    let cpu = process_cpu_secs() - cpu;
    std::hint::black_box(&map);
    drop(map);
    let _ = std::fs::remove_file(&path);
    (secs, cpu)
}

fn main() {
    let mb_per_size = env_u64("APOGEE_BENCH_APPEND_MB", 128);
    let rt = runtime();
    println!("store_append: {mb_per_size} MiB per body size, ASYNC_FLUSH, MmapDisk");
    let sizes: Vec<usize> = std::env::var("APOGEE_BENCH_APPEND_SIZES")
        .unwrap_or_else(|_| "128,1024,4096".to_string())
        .split(',')
        .map(|s| {
            s.trim()
                .parse()
                .expect("APOGEE_BENCH_APPEND_SIZES: body sizes in bytes")
        })
        .collect();
    for body_size in sizes {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("store");
        let payload = body(body_size);
        let (entry_size, count, store_secs, store_cpu) = rt.block_on(async {
            let store = open_store(&root, FlushDiskType::AsyncFlush).await;
            // Warm-up message gives the entry size (body + header + topic + properties).
            let first = store
                .put_message(message("BenchTopic", 0, &payload, 0))
                .await;
            assert_eq!(first.status, PutMessageStatus::PutOk, "{:?}", first.remark);
            let entry_size = first.append.expect("append").wrote_bytes as usize;
            let count = mb_per_size * MIB / entry_size as u64;
            let messages: Vec<_> = (1..=count)
                .map(|seq| message("BenchTopic", (seq % 8) as i32, &payload, seq))
                .collect();
            let t = Instant::now();
            let cpu = process_cpu_secs();
            for m in messages {
                let r = store.put_message(m).await;
                assert_eq!(r.status, PutMessageStatus::PutOk, "{:?}", r.remark);
            }
            let secs = t.elapsed().as_secs_f64();
            let cpu = process_cpu_secs() - cpu;
            store.shutdown().await;
            (entry_size, count, secs, cpu)
        });
        let (raw_secs, raw_cpu) = raw_baseline(tmp.path(), entry_size, count);
        let bytes = (entry_size as u64 * count) as f64;
        println!(
            "store_append: body {body_size:>4} B (entry {entry_size} B): store {:>9.0} msg/s {:>7.1} MiB/s | raw memcpy {:>10.0} msg/s {:>7.1} MiB/s | store/raw = {:.3} (wall), {:.3} (CPU: store {:.2} us/msg, raw {:.2} us/msg)",
            count as f64 / store_secs,
            bytes / store_secs / MIB as f64,
            count as f64 / raw_secs,
            bytes / raw_secs / MIB as f64,
            raw_secs / store_secs,
            raw_cpu / store_cpu,
            store_cpu * 1e6 / count as f64,
            raw_cpu * 1e6 / count as f64,
        );
    }
}
