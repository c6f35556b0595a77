//! Helpers shared by the store benches (not part of the core: std::time and std::fs are fine).
#![allow(dead_code, clippy::disallowed_methods)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use apogee::message::properties::{encode_properties, Properties, UNIQ_KEY, WAIT};
use apogee::store::disk::mmap::MmapDisk;
use apogee::store::{FlushDiskType, MessageStore, MessageToStore, StoreConfig};
use bytes::Bytes;

pub const MIB: u64 = 1024 * 1024;

pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Store config rooted at `root` with RocketMQ defaults (1 GiB CommitLog files), except the
/// disk-usage guards: bench machines share a nearly full volume, and the benches measure
/// throughput, not retention, so writes must not be refused or files cleaned forcibly.
pub fn config(root: &Path, flush: FlushDiskType) -> StoreConfig {
    StoreConfig {
        store_path_root_dir: root.to_path_buf(),
        flush_disk_type: flush,
        disk_max_used_space_ratio: 99,
        disk_space_clean_forcibly_ratio: 0.99,
        disk_space_warning_level_ratio: 0.995,
        clean_file_forcibly_enable: false,
        ..StoreConfig::default()
    }
}

pub async fn open_store(root: &Path, flush: FlushDiskType) -> Arc<MessageStore> {
    MessageStore::open(config(root, flush), Arc::new(MmapDisk::new()))
        .await
        .expect("open store")
}

/// A message shaped like a Java producer's: UNIQ_KEY and WAIT properties, `body_size` bytes.
pub fn message(topic: &str, queue_id: i32, body: &Bytes, seq: u64) -> MessageToStore {
    let mut props = Properties::new();
    props.insert(
        UNIQ_KEY.to_string(),
        format!("7F00000100002A9F0000{seq:012X}"),
    );
    props.insert(WAIT.to_string(), "true".to_string());
    let host: SocketAddr = "127.0.0.1:10911".parse().expect("addr");
    MessageToStore {
        topic: topic.to_string(),
        queue_id,
        body: body.clone(),
        properties: encode_properties(&props),
        born_timestamp: 1_700_000_000_000,
        born_host: Some(host),
        store_host: Some(host),
        wait_store_msg_ok: true,
        ..MessageToStore::default()
    }
}

pub fn body(size: usize) -> Bytes {
    Bytes::from((0..size).map(|i| (i % 251) as u8).collect::<Vec<u8>>())
}

/// CPU time of the whole process (every thread), in seconds.
pub fn process_cpu_secs() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we pass.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime");
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}
