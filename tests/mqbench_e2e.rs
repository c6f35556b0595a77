//! `mqbench producer` then `mqbench consumer --verify` (the real binary, as a child process)
//! against an in-process name server and broker on loopback (ephemeral ports, MmapDisk on a
//! temporary directory). Checks the JSON summaries: everything sent is received exactly once.
#![cfg(not(madsim))]
#![allow(clippy::field_reassign_with_default)] // BrokerConfig is built up field by field, as in broker tests

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use apogee::broker::Broker;
use apogee::config::{BrokerConfig, NamesrvConfig};
use apogee::namesrv::Namesrv;
use apogee::store::disk::mmap::MmapDisk;
use apogee::store::Disk;

fn mqbench(args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_mqbench"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run mqbench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "mqbench {args:?} failed ({}):\nstdout: {stdout}\nstderr: {stderr}",
        out.status
    );
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON summary in stdout: {stdout}\nstderr: {stderr}"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("bad JSON `{line}`: {e}"))
}

#[test]
fn producer_then_consumer_verify_counts_match() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let (namesrv, broker) = runtime.block_on(async {
        let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let namesrv = Namesrv::start(NamesrvConfig {
            listen_ip: loopback,
            listen_port: 0,
            ..NamesrvConfig::default()
        })
        .await
        .expect("namesrv starts");
        let mut config = BrokerConfig::default();
        config.broker_ip1 = loopback;
        config.listen_port = 0;
        config.namesrv_addrs = vec![namesrv.local_addr().to_string()];
        config.store.store_path_root_dir = dir.path().to_path_buf();
        config.store.mapped_file_size_commitlog = 16 * 1024 * 1024;
        // This machine class shares a nearly full volume: keep the disk-full guard (refuse writes
        // above diskSpaceWarningLevelRatio, forced cleanup) from turning a busy CI disk into failures.
        config.store.disk_space_warning_level_ratio = 0.999;
        config.store.clean_file_forcibly_enable = false;
        let disk: Arc<dyn Disk> = Arc::new(MmapDisk::new());
        let broker = Broker::start(config, disk).await.expect("broker starts");
        // Wait for the first registration so the producer can find the cluster.
        for _ in 0..200 {
            if !namesrv.cluster_info().broker_addr_table.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert!(
            !namesrv.cluster_info().broker_addr_table.is_empty(),
            "broker never registered"
        );
        (namesrv, broker)
    });
    let ns = namesrv.local_addr().to_string();
    let cluster = broker.controller().config.broker_cluster_name.clone();

    let count = 600u64;
    let sync = mqbench(&[
        "producer",
        "-n",
        &ns,
        "-t",
        "BenchE2E",
        "-c",
        &cluster,
        "-w",
        "4",
        "-s",
        "100",
        "--count",
        &count.to_string(),
        "--json",
        "--quiet",
        "--tag",
        "bench",
        "-k",
    ]);
    assert_eq!(sync["sent_ok"], count, "{sync}");
    assert_eq!(sync["failed"], 0, "{sync}");
    assert_eq!(sync["unknown"], 0, "{sync}");
    assert_eq!(sync["sequences"], count, "{sync}");
    assert!(
        sync["send_latency_us"]["p50"].as_u64().unwrap() > 0,
        "{sync}"
    );
    let run_id = sync["run_id"].as_str().expect("run id").to_string();

    let consumed = mqbench(&[
        "consumer",
        "-n",
        &ns,
        "-t",
        "BenchE2E",
        "-g",
        "bench_e2e_cg",
        "-w",
        "1",
        "--from",
        "first",
        "--verify",
        "--expect",
        &count.to_string(),
        "--run-id",
        &run_id,
        "--duration-secs",
        "30",
        "--json",
        "--quiet",
    ]);
    assert_eq!(consumed["received"], count, "{consumed}");
    assert_eq!(consumed["verify"]["missing"], 0, "{consumed}");
    assert_eq!(consumed["verify"]["duplicates"], 0, "{consumed}");
    assert_eq!(consumed["verify"]["distinct"], count, "{consumed}");
    assert_eq!(consumed["verify"]["ok"], true, "{consumed}");
    assert_eq!(consumed["stopped_by_timeout"], false, "{consumed}");

    // Batch and async modes on a second topic; a consumer that expects more than was sent
    // must report the gap and fail.
    let batch = mqbench(&[
        "producer",
        "-n",
        &ns,
        "-t",
        "BenchE2EBatch",
        "-c",
        &cluster,
        "-w",
        "2",
        "-s",
        "64",
        "-b",
        "10",
        "--count",
        "200",
        "--json",
        "--quiet",
    ]);
    assert_eq!(batch["sent_ok"], 200, "{batch}");
    let async_run = mqbench(&[
        "producer",
        "-n",
        &ns,
        "-t",
        "BenchE2EBatch",
        "-c",
        &cluster,
        "-w",
        "8",
        "-s",
        "64",
        "--mode",
        "async",
        "--count",
        "200",
        "--json",
        "--quiet",
    ]);
    assert_eq!(async_run["sent_ok"], 200, "{async_run}");
    let out = Command::new(env!("CARGO_BIN_EXE_mqbench"))
        .args([
            "consumer",
            "-n",
            &ns,
            "-t",
            "BenchE2EBatch",
            "-g",
            "bench_e2e_cg2",
            "--from",
            "first",
            "--verify",
            "--expect",
            "250",
            "--run-id",
            batch["run_id"].as_str().expect("run id"),
            "--idle-exit-secs",
            "2",
            "--json",
            "--quiet",
        ])
        .output()
        .expect("run mqbench");
    assert_eq!(out.status.code(), Some(2), "a gap must fail --verify");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary: serde_json::Value =
        serde_json::from_str(stdout.lines().last().expect("summary")).expect("JSON");
    assert_eq!(summary["verify"]["distinct"], 200, "{summary}");
    assert_eq!(summary["verify"]["missing"], 50, "{summary}");
    assert_eq!(summary["verify"]["other_runs"], 1, "{summary}");
    assert_eq!(summary["received"], 400, "{summary}");

    runtime.block_on(async {
        broker.shutdown().await;
        namesrv.shutdown();
    });
}
