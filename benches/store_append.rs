//! (a) Append throughput of MessageStore::put_message (ASYNC_FLUSH, MmapDisk, 1 GiB CommitLog
//! files) for 128 B, 1 KiB and 4 KiB bodies, beside a raw baseline: plain memcpy of entries of
//! the same size into an mmap of the same total size. Prints the ratio store/raw.
//! `cargo bench --bench store_append`; `APOGEE_BENCH_APPEND_MB` = MiB written per size
//! (default 128).
#![allow(clippy::disallowed_methods)]

mod common;

use std::time::Instant;

use apogee::store::{FlushDiskType, PutMessageStatus};
use common::*;

fn raw_baseline(dir: &std::path::Path, entry_size: usize, count: u64) -> f64 {
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
    let mut pos = 0usize;
    for _ in 0..count {
        map[pos..pos + entry_size].copy_from_slice(&entry);
        pos += entry_size;
    }
    let secs = t.elapsed().as_secs_f64();
    std::hint::black_box(&map);
    drop(map);
    let _ = std::fs::remove_file(&path);
    secs
}

fn main() {
    let mb_per_size = env_u64("APOGEE_BENCH_APPEND_MB", 128);
    let rt = runtime();
    println!("store_append: {mb_per_size} MiB per body size, ASYNC_FLUSH, MmapDisk");
    for body_size in [128usize, 1024, 4096] {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("store");
        let payload = body(body_size);
        let (entry_size, count, store_secs) = rt.block_on(async {
            let store = open_store(&root, FlushDiskType::AsyncFlush).await;
            // Warm-up message gives the entry size (body + header + topic + properties).
            let first = store
                .put_message(message("BenchTopic", 0, &payload, 0))
                .await;
            assert_eq!(first.status, PutMessageStatus::PutOk, "{:?}", first.remark);
            let entry_size = first.append.expect("append").wrote_bytes as usize;
            let count = mb_per_size * MIB / entry_size as u64;
            let t = Instant::now();
            for seq in 1..=count {
                let r = store
                    .put_message(message("BenchTopic", (seq % 8) as i32, &payload, seq))
                    .await;
                assert_eq!(r.status, PutMessageStatus::PutOk, "{:?}", r.remark);
            }
            let secs = t.elapsed().as_secs_f64();
            store.shutdown().await;
            (entry_size, count, secs)
        });
        let raw_secs = raw_baseline(tmp.path(), entry_size, count);
        let bytes = (entry_size as u64 * count) as f64;
        println!(
            "store_append: body {body_size:>4} B (entry {entry_size} B): store {:>9.0} msg/s {:>7.1} MiB/s | raw memcpy {:>10.0} msg/s {:>7.1} MiB/s | store/raw = {:.3}",
            count as f64 / store_secs,
            bytes / store_secs / MIB as f64,
            count as f64 / raw_secs,
            bytes / raw_secs / MIB as f64,
            raw_secs / store_secs,
        );
    }
}
