//! HA with the real binaries: the seed deployment files `conf/2m-2s-sync` and `conf/2m-2s-async`
//! (broker-a + broker-a-s) started by `mqbroker -c <file>`, replication checked over the wire, and
//! a master killed with SIGKILL while consumers (rocketmq-client-rust 1.0's push consumer and
//! Apogee's own client through `mqadmin consumeMessage`) continue from the slave.
//! Run: `cargo test -p apogee-interop --test ha`.
//!
//! What is rewritten in the copied conf files, and nothing else: `namesrvAddr` (the test's own
//! name server), `listenPort` (10911 → a free port P, 11011 → a free port S; haListenPort stays
//! unset, so the default listenPort + 1 is used, as in the seed files) and the
//! `${user.home}/store/...` prefix of the storePath* keys (→ the test's temp dir). Two lines are
//! appended: `diskSpaceWarningLevelRatio=0.999` and `cleanFileForciblyEnable=false`, because the
//! shared CI volume is often more than 90 % full and the disk-full guard would refuse writes.

#![cfg(not(madsim))]
// Real processes on real time: the runtime seam (rt::now) is the core's rule, not this harness's.
#![allow(clippy::disallowed_methods)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use common::client::{shutdown_consumer, shutdown_producer, ClientEnv, Collector};
use common::remoting::{self, code, response};
use common::{binaries, free_port_block, run_test, tail_file, unique, wait_port, wait_until, Proc};
use rocketmq_client_rust::{
    ClientConfig, DefaultMQProducer, DefaultMQPushConsumer, MQPushConsumer, SendStatus,
};
use rocketmq_model::common::consumer::consume_from_where::ConsumeFromWhere;
use rocketmq_model::common::message::message_single::Message;

const TEST_LIMIT: Duration = Duration::from_secs(170);
const UPDATE_AND_CREATE_TOPIC: i32 = 17;
const QUEUES: usize = 4;

/// A name server and broker-a (master) + broker-a-s (slave) of one seed deployment.
struct HaPair {
    dir: tempfile::TempDir,
    namesrv: Proc,
    namesrv_port: u16,
    master: Option<Proc>,
    slave: Option<Proc>,
    master_port: u16,
    slave_port: u16,
    passed: bool,
}

/// The seed file with only the documented rewrites (see the module comment).
fn rewrite_conf(text: &str, namesrv: &str, port_map: &[(u16, u16)], store_root: &Path) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        let rewritten = if trimmed.starts_with("namesrvAddr=") {
            format!("namesrvAddr={namesrv}")
        } else if let Some(v) = trimmed.strip_prefix("listenPort=") {
            let port: u16 = v.trim().parse().unwrap_or(0);
            let mapped = port_map
                .iter()
                .find(|(from, _)| *from == port)
                .map(|(_, to)| *to)
                .unwrap_or(port);
            format!("listenPort={mapped}")
        } else if trimmed.starts_with("storePath")
            || trimmed.starts_with("storeCheckpoint")
            || trimmed.starts_with("abortFile")
        {
            line.replace("${user.home}/store", &store_root.display().to_string())
        } else {
            line.to_string()
        };
        out.push_str(&rewritten);
        out.push('\n');
    }
    out.push_str("# added by the test: the shared CI volume can be nearly full\n");
    out.push_str("diskSpaceWarningLevelRatio=0.999\ncleanFileForciblyEnable=false\n");
    out
}

impl HaPair {
    /// Starts the name server, then broker-a and broker-a-s of `conf/<deployment>/`, and waits until
    /// both are registered and the slave has connected to the master's HA port.
    async fn start(deployment: &str) -> Result<HaPair> {
        let bins = binaries();
        let dir = tempfile::Builder::new().prefix("apogee-ha-").tempdir()?;
        let namesrv_port = free_port_block(1);
        let ns_conf = dir.path().join("namesrv.conf");
        std::fs::write(&ns_conf, format!("listenPort={namesrv_port}\n"))?;
        let mut namesrv = Proc::spawn(
            "mqnamesrv",
            &bins.mqnamesrv,
            &["-c", ns_conf.to_str().expect("utf-8")],
            dir.path(),
            dir.path(),
        )?;
        wait_port(&mut namesrv, namesrv_port, Duration::from_secs(15)).await?;
        // listenPort-2 (VIP), listenPort, listenPort+1 (HA) of each broker must be free.
        let master_port = free_port_block(4) + 2;
        let slave_port = free_port_block(4) + 2;
        let mut pair = HaPair {
            dir,
            namesrv,
            namesrv_port,
            master: None,
            slave: None,
            master_port,
            slave_port,
            passed: false,
        };
        let seeds = common::workspace_root().join("conf").join(deployment);
        let ports = [(10911, master_port), (11011, slave_port)];
        for (name, file) in [
            ("broker-a", "broker-a.properties"),
            ("broker-a-s", "broker-a-s.properties"),
        ] {
            let text = std::fs::read_to_string(seeds.join(file))
                .with_context(|| format!("reading conf/{deployment}/{file}"))?;
            let conf = rewrite_conf(
                &text,
                &pair.namesrv_addr(),
                &ports,
                &pair.dir.path().join("store"),
            );
            let path = pair.dir.path().join(file);
            std::fs::write(&path, conf)?;
            let proc_ = Proc::spawn(
                name,
                &bins.mqbroker,
                &["-c", path.to_str().expect("utf-8")],
                pair.dir.path(),
                pair.dir.path(),
            )?;
            if name == "broker-a" {
                pair.master = Some(proc_);
                let p = pair.master.as_mut().expect("just set");
                wait_port(p, master_port, Duration::from_secs(30)).await?;
            } else {
                pair.slave = Some(proc_);
                let p = pair.slave.as_mut().expect("just set");
                wait_port(p, slave_port, Duration::from_secs(30)).await?;
            }
        }
        pair.wait_registered(Duration::from_secs(20)).await?;
        Ok(pair)
    }

    fn namesrv_addr(&self) -> String {
        format!("127.0.0.1:{}", self.namesrv_port)
    }

    fn master_addr(&self) -> String {
        format!("127.0.0.1:{}", self.master_port)
    }

    fn slave_addr(&self) -> String {
        format!("127.0.0.1:{}", self.slave_port)
    }

    /// broker-a's addresses by broker id, as GET_BROKER_CLUSTER_INFO lists them.
    async fn broker_a_addrs(&self) -> Result<BTreeMap<i64, String>> {
        let r = remoting::call(
            &self.namesrv_addr(),
            code::GET_BROKER_CLUSTER_INFO,
            &[],
            &[],
            Duration::from_secs(3),
        )
        .await?;
        ensure!(r.code == response::SUCCESS, "cluster info: {r:?}");
        // fastjson may write unquoted numeric keys: quote them before parsing.
        let text = quote_numeric_keys(&r.body_text());
        let v: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("cluster info body: {text}"))?;
        let mut out = BTreeMap::new();
        if let Some(addrs) = v["brokerAddrTable"]["broker-a"]["brokerAddrs"].as_object() {
            for (id, addr) in addrs {
                out.insert(
                    id.parse::<i64>()?,
                    addr.as_str().unwrap_or_default().to_string(),
                );
            }
        }
        Ok(out)
    }

    async fn wait_registered(&mut self, timeout: Duration) -> Result<()> {
        let want: BTreeMap<i64, String> = [(0, self.master_addr()), (1, self.slave_addr())].into();
        let deadline = Instant::now() + timeout;
        loop {
            for p in [self.master.as_mut(), self.slave.as_mut()]
                .into_iter()
                .flatten()
            {
                p.check_alive()?;
            }
            let got = self.broker_a_addrs().await.unwrap_or_default();
            if got == want {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "broker-a members in the namesrv: {got:?}, expected {want:?}\n{}",
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// UPDATE_AND_CREATE_TOPIC on both brokers (the slave copies metadata from its master only
    /// with the metadata sync; creating it on both keeps this test about reads and replication).
    async fn create_topic(&self, topic: &str) -> Result<()> {
        let queues = QUEUES.to_string();
        for addr in [self.master_addr(), self.slave_addr()] {
            let r = remoting::call(
                &addr,
                UPDATE_AND_CREATE_TOPIC,
                &[
                    ("topic", topic),
                    ("defaultTopic", "TBW102"),
                    ("readQueueNums", &queues),
                    ("writeQueueNums", &queues),
                    ("perm", "6"),
                    ("topicFilterType", "SINGLE_TAG"),
                ],
                &[],
                Duration::from_secs(5),
            )
            .await?;
            ensure!(r.code == response::SUCCESS, "create topic on {addr}: {r:?}");
        }
        // The master's next registration carries the topic; wait for its route.
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            let r = remoting::call(
                &self.namesrv_addr(),
                code::GET_ROUTEINFO_BY_TOPIC,
                &[("topic", topic)],
                &[],
                Duration::from_secs(3),
            )
            .await?;
            if r.code == response::SUCCESS {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("no route for {topic}: {r:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Sum over the queues of GET_MAX_OFFSET on `addr`.
    async fn total_messages(&self, addr: &str, topic: &str) -> Result<i64> {
        let mut total = 0;
        for q in 0..QUEUES {
            let q = q.to_string();
            let r = remoting::call(
                addr,
                code::GET_MAX_OFFSET,
                &[("topic", topic), ("queueId", &q)],
                &[],
                Duration::from_secs(5),
            )
            .await?;
            ensure!(
                r.code == response::SUCCESS,
                "GET_MAX_OFFSET on {addr}: {r:?}"
            );
            total += r.ext_i64("offset")?;
        }
        Ok(total)
    }

    fn kill9_master(&mut self) {
        if let Some(mut m) = self.master.take() {
            m.kill9();
        }
    }

    fn logs(&self) -> String {
        let mut s = String::new();
        for name in ["mqnamesrv", "broker-a", "broker-a-s"] {
            let p = self.dir.path().join(format!("{name}.log"));
            if p.exists() {
                s.push_str(&format!(
                    "----- {name} log (tail) -----\n{}\n",
                    tail_file(&p, 120)
                ));
            }
        }
        for f in ["broker-a.properties", "broker-a-s.properties"] {
            if let Ok(conf) = std::fs::read_to_string(self.dir.path().join(f)) {
                s.push_str(&format!("----- {f} (rewritten) -----\n{conf}"));
            }
        }
        s
    }
}

impl Drop for HaPair {
    fn drop(&mut self) {
        for p in [self.master.as_mut(), self.slave.as_mut()]
            .into_iter()
            .flatten()
        {
            p.kill9();
        }
        self.namesrv.kill9();
        if !self.passed || std::env::var_os("APOGEE_INTEROP_LOGS").is_some() {
            eprintln!(
                "===== process logs ({}) =====\n{}",
                self.dir.path().display(),
                self.logs()
            );
        }
    }
}

/// `{0:"a"}` → `{"0":"a"}` (fastjson's legacy unquoted numeric keys).
fn quote_numeric_keys(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let bytes: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        out.push(c);
        if c == '{' || c == ',' {
            let mut j = i + 1;
            while j < bytes.len() && bytes[j].is_ascii_digit() {
                j += 1;
            }
            if j > i + 1 && j < bytes.len() && bytes[j] == ':' {
                out.push('"');
                out.extend(&bytes[i + 1..j]);
                out.push('"');
                i = j;
                continue;
            }
        }
        i += 1;
    }
    out
}

fn client_config(namesrv: &str, instance: &str) -> ClientConfig {
    let mut cfg = ClientConfig::default();
    cfg.set_namesrv_addr(namesrv.into());
    cfg.set_instance_name(instance.into());
    cfg.client_ip = Some("127.0.0.1".into());
    cfg.poll_name_server_interval = 10_000; // the client's minimum
    cfg.persist_consumer_offset_interval = 1000;
    cfg.heartbeat_broker_interval = 10_000; // the client's minimum
    cfg.mq_client_api_timeout = 5000;
    cfg
}

async fn start_producer(env: &ClientEnv, namesrv: &str) -> Result<DefaultMQProducer> {
    let mut producer = DefaultMQProducer::builder(env.runtime())
        .client_config(client_config(namesrv, &unique("producer")))
        .producer_group(unique("ha_pg"))
        .send_msg_timeout(5000)
        .build();
    tokio::time::timeout(Duration::from_secs(20), producer.start())
        .await
        .context("producer.start() timed out")?
        .map_err(|e| anyhow!("producer.start(): {e}"))?;
    Ok(producer)
}

async fn start_consumer(
    env: &ClientEnv,
    namesrv: &str,
    group: &str,
    topic: &str,
    collector: Collector,
) -> Result<DefaultMQPushConsumer> {
    let mut consumer = DefaultMQPushConsumer::builder(env.runtime())
        .client_config(client_config(namesrv, &unique("consumer")))
        .consumer_group(group.to_string())
        .consume_from_where(ConsumeFromWhere::ConsumeFromFirstOffset)
        .build();
    consumer
        .subscribe(topic, "*")
        .await
        .map_err(|e| anyhow!("subscribe({topic}): {e}"))?;
    consumer.register_message_listener_concurrently(collector);
    tokio::time::timeout(Duration::from_secs(20), consumer.start())
        .await
        .context("consumer.start() timed out")?
        .map_err(|e| anyhow!("consumer.start(): {e}"))?;
    Ok(consumer)
}

/// Sends `n` messages `<prefix>-<i>`; every one must be acknowledged SEND_OK. Returns the bodies.
async fn send_n(
    producer: &DefaultMQProducer,
    topic: &str,
    prefix: &str,
    n: usize,
) -> Result<BTreeSet<Vec<u8>>> {
    let mut acked = BTreeSet::new();
    for i in 0..n {
        let body = format!("{prefix}-{i:05}").into_bytes();
        let m = Message::builder()
            .topic(topic)
            .tags("TagA")
            .body(body.clone())
            .build_unchecked();
        let r = tokio::time::timeout(Duration::from_secs(20), producer.send(m))
            .await
            .with_context(|| format!("send #{i} hung"))?
            .map_err(|e| anyhow!("send #{i}: {e}"))?
            .ok_or_else(|| anyhow!("send #{i}: no result"))?;
        ensure!(r.send_status == SendStatus::SendOk, "send #{i}: {r:?}");
        acked.insert(body);
    }
    Ok(acked)
}

fn missing<'a>(expected: &'a BTreeSet<Vec<u8>>, got: &BTreeMap<Vec<u8>, usize>) -> Vec<&'a [u8]> {
    expected
        .iter()
        .filter(|b| !got.contains_key(*b))
        .map(|b| b.as_slice())
        .collect()
}

/// Bodies `mqadmin consumeMessage` (Apogee's own client library) prints for `topic`.
fn mqadmin_consume(pair: &HaPair, topic: &str, count: usize) -> Result<BTreeSet<Vec<u8>>> {
    let out = Command::new(&binaries().mqadmin)
        .args([
            "consumeMessage",
            "-n",
            &pair.namesrv_addr(),
            "-t",
            topic,
            "-c",
            &count.to_string(),
        ])
        .output()
        .context("running mqadmin consumeMessage")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "mqadmin consumeMessage failed ({}): {stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(stdout
        .lines()
        .filter_map(|l| l.split(" BODY: ").nth(1))
        .map(|b| b.as_bytes().to_vec())
        .collect())
}

/// Deployment files start as written (modulo the rewrites above); both members register under
/// brokerId 0 and 1; every acknowledged message is on the slave, readable there.
fn deployment_registers_and_replicates(deployment: &'static str) {
    binaries(); // built (once) outside the test's deadline
    run_test(TEST_LIMIT, || async move {
        let mut pair = HaPair::start(deployment).await?;
        let env = ClientEnv::new("ha-conf")?;
        let topic = unique("HaConf");
        pair.create_topic(&topic).await?;
        let mut producer = start_producer(&env, &pair.namesrv_addr()).await?;
        let acked = send_n(&producer, &topic, "conf", 60).await?;
        shutdown_producer(&mut producer).await;
        let on_master = pair.total_messages(&pair.master_addr(), &topic).await?;
        ensure!(
            on_master == 60,
            "master holds {on_master} messages of {topic}"
        );
        // SYNC_MASTER: on the slave when acknowledged; ASYNC_MASTER: shortly after.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut on_slave = 0;
        while Instant::now() < deadline {
            on_slave = pair.total_messages(&pair.slave_addr(), &topic).await?;
            // SYNC_MASTER acknowledged only what the slave holds: no waiting allowed there.
            if on_slave == on_master || deployment == "2m-2s-sync" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        ensure!(
            on_slave == on_master,
            "{deployment}: slave holds {on_slave} of the {on_master} acknowledged messages"
        );
        // Readable on the slave through Apogee's own client once the master is gone.
        pair.kill9_master();
        let read = mqadmin_consume(&pair, &topic, 60)?;
        ensure!(
            read == acked,
            "read from the slave: {} of {} bodies",
            read.len(),
            acked.len()
        );
        env.shutdown().await;
        pair.passed = true;
        Ok(())
    });
}

#[test]
fn conf_2m_2s_sync_broker_a_and_slave_register_and_replicate() {
    deployment_registers_and_replicates("2m-2s-sync");
}

#[test]
fn conf_2m_2s_async_broker_a_and_slave_register_and_replicate() {
    deployment_registers_and_replicates("2m-2s-async");
}

/// Issue item 8: SYNC_MASTER + slave from the seed files; N messages produced with
/// rocketmq-client-rust; part consumed; the master is killed (SIGKILL); consumption continues
/// from the slave and every acknowledged message is consumed.
#[test]
fn master_killed_consumers_continue_from_the_slave() {
    binaries(); // built (once) outside the test's deadline
    run_test(TEST_LIMIT, || async move {
        let mut pair = HaPair::start("2m-2s-sync").await?;
        let env = ClientEnv::new("ha-kill")?;
        let topic = unique("HaKill");
        let group = unique("ha_cg");
        pair.create_topic(&topic).await?;
        let mut producer = start_producer(&env, &pair.namesrv_addr()).await?;
        let first = send_n(&producer, &topic, "before", 100).await?;

        // Consume the first half with rocketmq-client-rust's push consumer, then stop it
        // (its shutdown persists the offsets on the master).
        let collector = Collector::default();
        let mut consumer = start_consumer(
            &env,
            &pair.namesrv_addr(),
            &group,
            &topic,
            collector.clone(),
        )
        .await?;
        let ok = wait_until(Duration::from_secs(45), || {
            missing(&first, &collector.body_counts()).is_empty()
        })
        .await;
        ensure!(
            ok,
            "before the kill: {} of {} consumed",
            collector.body_counts().len(),
            first.len()
        );
        shutdown_consumer(&mut consumer).await;

        let second = send_n(&producer, &topic, "after", 100).await?;
        shutdown_producer(&mut producer).await;
        let acked: BTreeSet<Vec<u8>> = first.union(&second).cloned().collect();

        pair.kill9_master();
        eprintln!("[ha] master killed (SIGKILL)");
        // The namesrv drops the master when its connection closes.
        let deadline = Instant::now() + Duration::from_secs(30);
        while pair.broker_a_addrs().await?.contains_key(&0) {
            ensure!(
                Instant::now() < deadline,
                "namesrv still lists the killed master"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }

        // Apogee's own client (mqadmin consumeMessage): every acknowledged message, from the slave.
        let read = mqadmin_consume(&pair, &topic, acked.len())?;
        let not_read: Vec<String> = acked
            .difference(&read)
            .take(10)
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect();
        ensure!(
            not_read.is_empty(),
            "Apogee client: acknowledged but not read from the slave: {not_read:?}"
        );

        // rocketmq-client-rust: the same group continues from the slave; the messages produced
        // after the first consumer stopped must all arrive (earlier ones may come again: the
        // offsets it committed were on the master).
        let collector = Collector::default();
        let mut consumer = start_consumer(
            &env,
            &pair.namesrv_addr(),
            &group,
            &topic,
            collector.clone(),
        )
        .await?;
        let ok = wait_until(Duration::from_secs(45), || {
            missing(&second, &collector.body_counts()).is_empty()
        })
        .await;
        let got = collector.body_counts();
        let miss: Vec<String> = missing(&second, &got)
            .iter()
            .take(10)
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect();
        shutdown_consumer(&mut consumer).await;
        ensure!(
            ok,
            "rocketmq-client-rust after the kill: {} of {} consumed from the slave, missing e.g. {miss:?}",
            second.len() - missing(&second, &got).len(),
            second.len()
        );
        env.shutdown().await;
        pair.passed = true;
        Ok(())
    });
}

/// `conf/2m-noslave`: broker-a and broker-b (both listenPort 10911 in the seed files, so each is
/// mapped to its own free port here, as two hosts would separate them) start and register as the
/// masters (brokerId 0) of two broker groups of DefaultCluster.
#[test]
fn conf_2m_noslave_two_masters_register() {
    binaries(); // built (once) outside the test's deadline
    run_test(TEST_LIMIT, || async move {
        let bins = binaries();
        let dir = tempfile::Builder::new().prefix("apogee-ha-").tempdir()?;
        let namesrv_port = free_port_block(1);
        let ns_conf = dir.path().join("namesrv.conf");
        std::fs::write(&ns_conf, format!("listenPort={namesrv_port}\n"))?;
        let mut namesrv = Proc::spawn(
            "mqnamesrv",
            &bins.mqnamesrv,
            &["-c", ns_conf.to_str().expect("utf-8")],
            dir.path(),
            dir.path(),
        )?;
        wait_port(&mut namesrv, namesrv_port, Duration::from_secs(15)).await?;
        let ns_addr = format!("127.0.0.1:{namesrv_port}");
        let seeds = common::workspace_root().join("conf").join("2m-noslave");
        let mut brokers = Vec::new();
        let mut want = BTreeMap::new();
        for name in ["broker-a", "broker-b"] {
            let port = free_port_block(4) + 2;
            let text = std::fs::read_to_string(seeds.join(format!("{name}.properties")))?;
            let conf = rewrite_conf(&text, &ns_addr, &[(10911, port)], &dir.path().join("store"));
            let path = dir.path().join(format!("{name}.properties"));
            std::fs::write(&path, conf)?;
            let mut p = Proc::spawn(
                name,
                &bins.mqbroker,
                &["-c", path.to_str().expect("utf-8")],
                dir.path(),
                dir.path(),
            )?;
            wait_port(&mut p, port, Duration::from_secs(30)).await?;
            brokers.push(p);
            want.insert(name.to_string(), format!("127.0.0.1:{port}"));
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let r = remoting::call(
                &ns_addr,
                code::GET_BROKER_CLUSTER_INFO,
                &[],
                &[],
                Duration::from_secs(3),
            )
            .await?;
            let text = quote_numeric_keys(&r.body_text());
            let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            let got: BTreeMap<String, String> = want
                .keys()
                .filter_map(|name| {
                    let data = &v["brokerAddrTable"][name.as_str()];
                    let ids = data["brokerAddrs"].as_object()?;
                    // Exactly one member, the master, in DefaultCluster.
                    if ids.len() != 1 || data["cluster"] != "DefaultCluster" {
                        return None;
                    }
                    Some((name.clone(), ids.get("0")?.as_str()?.to_string()))
                })
                .collect();
            if got == want {
                break;
            }
            if Instant::now() > deadline {
                let logs: Vec<String> = brokers.iter().map(|p| p.log_tail(60)).collect();
                bail!(
                    "registered {got:?}, expected {want:?}; cluster info {text}\n{}",
                    logs.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        for mut p in brokers {
            p.check_alive()?;
            p.kill9();
        }
        namesrv.kill9();
        Ok(())
    });
}
