//! ConsumeQueue bench: put throughput, random unit lookups, batch reads, offset-by-time binary
//! search and reopen (recovery scan) on MmapDisk. Plain `harness = false` binary:
//! `cargo bench --bench cq_lookup`. `APOGEE_BENCH_CQ_UNITS` sets the queue length (default 2M).
//! std::time is fine here: benches are not the core.
#![allow(clippy::disallowed_methods)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use apogee::store::consume_queue::{ConsumeQueueStore, DEFAULT_MAPPED_FILE_SIZE_CONSUME_QUEUE};
use apogee::store::disk::mmap::MmapDisk;
use apogee::store::BoundaryType;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// xorshift64*: deterministic lookups without a rand dependency.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

fn main() {
    let units = env_u64("APOGEE_BENCH_CQ_UNITS", 2_000_000) as i64;
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("consumequeue");
    let disk = Arc::new(MmapDisk::new());
    let file_size = DEFAULT_MAPPED_FILE_SIZE_CONSUME_QUEUE;
    let store = ConsumeQueueStore::open(disk.clone(), &dir, file_size).expect("open");

    // Entries of 200 bytes laid end to end; store time = commitlog offset / 200 (1 ms each).
    let entry_size = 200i64;
    let t = Instant::now();
    for q in 0..units {
        store
            .put_unit("BenchTopic", 0, q, q * entry_size, entry_size as i32, q)
            .expect("put");
    }
    let put_s = t.elapsed().as_secs_f64();
    println!(
        "cq_lookup: put_unit        {units} units in {put_s:.3} s = {:.2} M units/s",
        units as f64 / put_s / 1e6
    );
    let t = Instant::now();
    store.flush(0).expect("flush");
    println!(
        "cq_lookup: flush(0)        {:.3} s",
        t.elapsed().as_secs_f64()
    );

    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let lookups = 1_000_000u64;
    let t = Instant::now();
    for _ in 0..lookups {
        let q = rng.below(units as u64) as i64;
        let u = store
            .read_unit("BenchTopic", 0, q)
            .expect("read")
            .expect("unit");
        assert_eq!(u.commitlog_offset, q * entry_size);
        black_box(u);
    }
    let ns = t.elapsed().as_nanos() as f64 / lookups as f64;
    println!("cq_lookup: read_unit       random, {ns:.0} ns/op");

    let batches = 200_000u64;
    let t = Instant::now();
    for _ in 0..batches {
        let q = rng.below(units as u64) as i64;
        black_box(store.read_units("BenchTopic", 0, q, 32).expect("read"));
    }
    let ns = t.elapsed().as_nanos() as f64 / batches as f64;
    println!("cq_lookup: read_units(32)  random, {ns:.0} ns/op");

    let time_of = |commitlog_offset: i64, _size: i32| Some(commitlog_offset / entry_size);
    let searches = 200_000u64;
    let t = Instant::now();
    for _ in 0..searches {
        let ts = rng.below(units as u64) as i64;
        let q = store
            .offset_by_time("BenchTopic", 0, ts, BoundaryType::Lower, &time_of)
            .expect("search");
        assert_eq!(q, ts);
    }
    let ns = t.elapsed().as_nanos() as f64 / searches as f64;
    println!("cq_lookup: offset_by_time  binary search, {ns:.0} ns/op");

    drop(store);
    let t = Instant::now();
    let store = ConsumeQueueStore::open(disk, &dir, file_size).expect("reopen");
    println!(
        "cq_lookup: reopen+recover  {:.3} s ({} files scanned: last 3)",
        t.elapsed().as_secs_f64(),
        (units as u64 * 20).div_ceil(file_size)
    );
    assert_eq!(store.max_offset("BenchTopic", 0), units);
}
