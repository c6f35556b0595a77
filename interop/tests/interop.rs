//! Interop: the real `mqnamesrv` and `mqbroker` binaries driven by the crates.io client rocketmq-client-rust
//! 1.0 (which nobody on this project wrote). Each test starts its own namesrv + broker on loopback ports,
//! in a temp dir; process logs are printed when a test fails. Run: `cargo test -p apogee-interop`.
//! `APOGEE_INTEROP_LOGS=1` prints the logs of passing tests too; `APOGEE_LOG=debug` raises their level.

#![cfg(not(madsim))]

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use common::client::{
    shutdown_consumer, shutdown_producer, start_producer, start_push_consumer, ClientEnv, Collector,
};
use common::remoting::{self, code, response};
use common::{run_test, unique, wait_until, BrokerOptions, Cluster};
use rocketmq_client_rust::{ClientError, DefaultMQProducer, SendResult, SendStatus};
use rocketmq_model::common::message::message_single::Message;

const TEST_LIMIT: Duration = Duration::from_secs(150);
/// How long a consumer may take to drain what was sent before the test fails.
const DRAIN_LIMIT: Duration = Duration::from_secs(45);
/// Time to keep listening after everything arrived, to catch duplicates.
const QUIET: Duration = Duration::from_secs(3);

fn body(prefix: &str, i: usize) -> Vec<u8> {
    format!("{prefix}-{i:05}").into_bytes()
}

fn msg(topic: &str, body: Vec<u8>) -> Message {
    Message::builder()
        .topic(topic)
        .tags("TagA")
        .body(body)
        .build_unchecked()
}

fn check_send_ok(r: &SendResult, topic: &str) -> Result<()> {
    ensure!(
        r.send_status == SendStatus::SendOk,
        "send status {:?} (result {r:?})",
        r.send_status
    );
    ensure!(r.msg_id.is_some(), "send result has no msgId: {r:?}");
    let mq = r
        .message_queue
        .as_ref()
        .ok_or_else(|| anyhow!("send result has no queue: {r:?}"))?;
    ensure!(
        mq.topic_str() == topic,
        "send result queue topic {} != {topic}",
        mq.topic_str()
    );
    ensure!(
        r.offset_msg_id.as_deref().is_some_and(|s| s.len() == 32),
        "offsetMsgId should be 32 hex chars (store host + commitlog offset): {r:?}"
    );
    Ok(())
}

/// Per-queue offsets returned by sends on a fresh topic must be exactly 0..n for each queue.
fn check_queue_offsets_dense(results: &[SendResult]) -> Result<()> {
    let mut per_queue: BTreeMap<i32, Vec<u64>> = BTreeMap::new();
    for r in results {
        let q = r.message_queue.as_ref().map(|q| q.queue_id()).unwrap_or(-1);
        per_queue.entry(q).or_default().push(r.queue_offset);
    }
    for (q, mut offs) in per_queue {
        offs.sort_unstable();
        let expected: Vec<u64> = (0..offs.len() as u64).collect();
        ensure!(
            offs == expected,
            "queue {q}: send results' queue offsets {offs:?}, expected 0..{}",
            offs.len()
        );
    }
    Ok(())
}

async fn send_sync_n(
    producer: &DefaultMQProducer,
    topic: &str,
    prefix: &str,
    n: usize,
) -> Result<Vec<SendResult>> {
    let mut results = Vec::with_capacity(n);
    for i in 0..n {
        let r = tokio::time::timeout(
            Duration::from_secs(20),
            producer.send(msg(topic, body(prefix, i))),
        )
        .await
        .with_context(|| format!("sync send #{i} to {topic} hung"))?
        .map_err(|e| anyhow!("sync send #{i} to {topic} failed: {e}"))?
        .ok_or_else(|| anyhow!("sync send #{i} returned no SendResult"))?;
        check_send_ok(&r, topic).with_context(|| format!("sync send #{i}"))?;
        results.push(r);
    }
    Ok(results)
}

/// Sends one message so the broker auto-creates the topic, then waits for the namesrv to serve its route.
async fn create_topic_by_sending(
    cluster: &Cluster,
    producer: &DefaultMQProducer,
    topic: &str,
) -> Result<()> {
    send_sync_n(producer, topic, "warmup", 1).await?;
    let took = cluster
        .wait_topic_route(topic, Duration::from_secs(40))
        .await?;
    if took > Duration::from_secs(3) {
        eprintln!(
            "[note] route of auto-created topic {topic} reached the namesrv only after {took:?} \
             (Java brokers register right after auto-creating a topic)"
        );
    }
    Ok(())
}

/// Waits until the collector holds every body in `expected`, then listens for QUIET more. Errors with the
/// missing bodies if they do not all arrive in DRAIN_LIMIT.
async fn drain(collector: &Collector, expected: &BTreeSet<Vec<u8>>, what: &str) -> Result<()> {
    let start = Instant::now();
    let all_there = wait_until(DRAIN_LIMIT, || {
        let got = collector.body_counts();
        expected.iter().all(|b| got.contains_key(b))
    })
    .await;
    if !all_there {
        let got = collector.body_counts();
        let missing: Vec<String> = expected
            .iter()
            .filter(|b| !got.contains_key(*b))
            .take(20)
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect();
        let missing_n = expected.iter().filter(|b| !got.contains_key(*b)).count();
        bail!(
            "{what}: only {}/{} messages consumed after {DRAIN_LIMIT:?}; {missing_n} missing, e.g. {missing:?}",
            expected.len() - missing_n,
            expected.len()
        );
    }
    eprintln!(
        "[harness] {what}: {} messages consumed in {:?}",
        expected.len(),
        start.elapsed()
    );
    tokio::time::sleep(QUIET).await;
    Ok(())
}

/// Every expected body exactly once, nothing else (warm-up messages excepted).
fn check_exactly_once(
    collector: &Collector,
    expected: &BTreeSet<Vec<u8>>,
    what: &str,
) -> Result<()> {
    let got = collector.body_counts();
    let dups: Vec<(String, usize)> = got
        .iter()
        .filter(|(b, n)| **n > 1 && !b.starts_with(b"warmup"))
        .map(|(b, n)| (String::from_utf8_lossy(b).into_owned(), *n))
        .take(20)
        .collect();
    ensure!(
        dups.is_empty(),
        "{what}: duplicate deliveries (body, times): {dups:?}"
    );
    let unexpected: Vec<String> = got
        .keys()
        .filter(|b| !expected.contains(*b) && !b.starts_with(b"warmup"))
        .take(20)
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .collect();
    ensure!(
        unexpected.is_empty(),
        "{what}: unexpected bodies delivered: {unexpected:?}"
    );
    let missing = expected.iter().filter(|b| !got.contains_key(*b)).count();
    ensure!(missing == 0, "{what}: {missing} messages never delivered");
    Ok(())
}

/// Starts a fresh consumer group on `topic`, drains `expected`, checks exactly-once, shuts it down.
async fn consume_expect(
    env: &ClientEnv,
    cluster: &Cluster,
    topic: &str,
    expected: &BTreeSet<Vec<u8>>,
    what: &str,
) -> Result<Collector> {
    let collector = Collector::default();
    let group = unique("cg");
    let mut consumer =
        start_push_consumer(env, cluster, &group, topic, &unique("c"), collector.clone()).await?;
    let res = drain(&collector, expected, what)
        .await
        .and_then(|_| check_exactly_once(&collector, expected, what));
    shutdown_consumer(&mut consumer).await;
    res.map(|_| collector)
}

fn bodies(prefix: &str, n: usize) -> BTreeSet<Vec<u8>> {
    (0..n).map(|i| body(prefix, i)).collect()
}

// ---------------------------------------------------------------------------------------------------------
// Name server only

/// Works before any broker exists: the namesrv answers route lookups (raw protocol and through the client).
#[test]
fn namesrv_route_lookup_unknown_topic() {
    run_test(TEST_LIMIT, || async {
        let cluster = Cluster::start_namesrv_only().await?;
        let r = remoting::call(
            &cluster.namesrv_addr(),
            code::GET_ROUTEINFO_BY_TOPIC,
            &[("topic", "NoSuchTopic")],
            &[],
            Duration::from_secs(5),
        )
        .await?;
        ensure!(
            r.code == response::TOPIC_NOT_EXIST,
            "GET_ROUTEINFO_BY_TOPIC of an unknown topic: expected code 17 TOPIC_NOT_EXIST, got {r:?}"
        );
        ensure!(
            r.flag & 1 == 1,
            "response flag must have the RESPONSE bit: {r:?}"
        );
        let r = remoting::call(
            &cluster.namesrv_addr(),
            code::GET_BROKER_CLUSTER_INFO,
            &[],
            &[],
            Duration::from_secs(5),
        )
        .await?;
        ensure!(
            r.code == response::SUCCESS,
            "GET_BROKER_CLUSTER_INFO on an empty namesrv: {r:?}"
        );
        let v: serde_json::Value = serde_json::from_slice(&r.body)
            .with_context(|| format!("GET_BROKER_CLUSTER_INFO body is not JSON: {r:?}"))?;
        ensure!(
            v.get("brokerAddrTable").is_some(),
            "cluster info lacks brokerAddrTable: {r:?}"
        );

        // The client must get an error (no route), not hang.
        let env = ClientEnv::new("namesrv-only")?;
        let producer = start_producer(&env, &cluster, &unique("pg")).await?;
        let started = Instant::now();
        let res = tokio::time::timeout(
            Duration::from_secs(30),
            producer.send(msg("NoSuchTopic", b"x".to_vec())),
        )
        .await
        .context("send to a topic without route hung for 30 s")?;
        ensure!(
            res.is_err(),
            "send without any broker must fail, got {res:?}"
        );
        eprintln!(
            "[harness] send without route failed after {:?}: {}",
            started.elapsed(),
            res.unwrap_err()
        );
        env.shutdown().await;
        cluster.pass();
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------------------
// Producer paths

#[test]
fn sync_send_then_consume() {
    run_test(TEST_LIMIT, || async {
        let cluster = Cluster::start(BrokerOptions::default()).await?;
        let env = ClientEnv::new("sync")?;
        let topic = unique("SyncTopic");
        let producer = start_producer(&env, &cluster, &unique("pg")).await?;
        let results = send_sync_n(&producer, &topic, "sync", 200).await?;
        check_queue_offsets_dense(&results)?;
        let ids: HashSet<String> = results
            .iter()
            .filter_map(|r| r.msg_id.as_ref().map(|s| s.to_string()))
            .collect();
        ensure!(
            ids.len() == results.len(),
            "msgIds of 200 sends are not distinct"
        );
        let queues: BTreeSet<i32> = results
            .iter()
            .filter_map(|r| r.message_queue.as_ref().map(|q| q.queue_id()))
            .collect();
        ensure!(
            queues.len() >= 2,
            "200 sends all went to queues {queues:?}: expected round robin over the queues"
        );
        cluster
            .wait_topic_route(&topic, Duration::from_secs(40))
            .await?;

        let collector =
            consume_expect(&env, &cluster, &topic, &bodies("sync", 200), "sync").await?;
        // What the consumer got must match what the broker acknowledged: queue, queue offset, msgId (UNIQ_KEY).
        let by_uniq: HashMap<String, &SendResult> = results
            .iter()
            .map(|r| (r.msg_id.as_ref().expect("checked").to_string(), r))
            .collect();
        for m in collector.snapshot() {
            let uniq = m.properties.get("UNIQ_KEY").cloned().unwrap_or_default();
            let r = by_uniq
                .get(&uniq)
                .ok_or_else(|| anyhow!("consumed message with unknown UNIQ_KEY {uniq}: {m:?}"))?;
            let q = r.message_queue.as_ref().expect("checked");
            ensure!(
                m.queue_id == q.queue_id() && m.queue_offset as u64 == r.queue_offset,
                "message {uniq}: sent to queue {} offset {}, consumed from queue {} offset {}",
                q.queue_id(),
                r.queue_offset,
                m.queue_id,
                m.queue_offset
            );
            ensure!(m.topic == topic, "consumed topic {} != {topic}", m.topic);
            ensure!(
                m.store_host.ends_with(&format!(":{}", cluster.broker_port)),
                "storeHost {} is not the broker's address",
                m.store_host
            );
        }
        env.shutdown().await;
        cluster.pass();
        Ok(())
    });
}

#[test]
fn async_send_with_64_in_flight() {
    run_test(TEST_LIMIT, || async {
        let cluster = Cluster::start(BrokerOptions::default()).await?;
        let env = ClientEnv::new("async")?;
        let topic = unique("AsyncTopic");
        let producer = start_producer(&env, &cluster, &unique("pg")).await?;
        create_topic_by_sending(&cluster, &producer, &topic).await?;

        const N: usize = 500;
        let window = Arc::new(tokio::sync::Semaphore::new(64));
        let outcomes: Arc<Mutex<Vec<std::result::Result<SendResult, String>>>> = Arc::default();
        for i in 0..N {
            let permit =
                tokio::time::timeout(Duration::from_secs(30), Arc::clone(&window).acquire_owned())
                    .await
                    .context("async send window never freed: callbacks are not being called")??;
            let permit = Mutex::new(Some(permit));
            let outcomes2 = Arc::clone(&outcomes);
            producer
                .send_with_callback(
                    msg(&topic, body("async", i)),
                    move |r: Option<&SendResult>, e: Option<&ClientError>| {
                        let outcome = match (r, e) {
                            (Some(r), _) => Ok(r.clone()),
                            (None, Some(e)) => Err(e.to_string()),
                            (None, None) => {
                                Err("callback with neither result nor error".to_string())
                            }
                        };
                        outcomes2.lock().expect("outcomes").push(outcome);
                        permit.lock().expect("permit").take(); // frees the window slot
                    },
                )
                .await
                .map_err(|e| anyhow!("async send #{i} rejected: {e}"))?;
        }
        let done = wait_until(Duration::from_secs(30), || {
            outcomes.lock().expect("outcomes").len() == N
        })
        .await;
        let outcomes = outcomes.lock().expect("outcomes").clone();
        ensure!(done, "only {}/{N} async callbacks fired", outcomes.len());
        let errors: Vec<&String> = outcomes
            .iter()
            .filter_map(|o| o.as_ref().err())
            .take(10)
            .collect();
        ensure!(errors.is_empty(), "async sends failed: {errors:?}");
        let results: Vec<SendResult> = outcomes.into_iter().map(|o| o.expect("checked")).collect();
        for r in &results {
            check_send_ok(r, &topic)?;
        }
        let offsets: HashSet<(i32, u64)> = results
            .iter()
            .map(|r| {
                (
                    r.message_queue.as_ref().expect("checked").queue_id(),
                    r.queue_offset,
                )
            })
            .collect();
        ensure!(
            offsets.len() == N,
            "async sends got duplicate (queue, queueOffset) pairs"
        );
        consume_expect(&env, &cluster, &topic, &bodies("async", N), "async").await?;
        env.shutdown().await;
        cluster.pass();
        Ok(())
    });
}

#[test]
fn oneway_send_then_consume() {
    run_test(TEST_LIMIT, || async {
        let cluster = Cluster::start(BrokerOptions::default()).await?;
        let env = ClientEnv::new("oneway")?;
        let topic = unique("OnewayTopic");
        let producer = start_producer(&env, &cluster, &unique("pg")).await?;
        create_topic_by_sending(&cluster, &producer, &topic).await?;
        for i in 0..100 {
            tokio::time::timeout(
                Duration::from_secs(10),
                producer.send_oneway(msg(&topic, body("oneway", i))),
            )
            .await
            .context("oneway send hung")?
            .map_err(|e| anyhow!("oneway send #{i}: {e}"))?;
        }
        consume_expect(&env, &cluster, &topic, &bodies("oneway", 100), "oneway").await?;
        env.shutdown().await;
        cluster.pass();
        Ok(())
    });
}

#[test]
fn batch_send_then_consume() {
    run_test(TEST_LIMIT, || async {
        let cluster = Cluster::start(BrokerOptions::default()).await?;
        let env = ClientEnv::new("batch")?;
        let topic = unique("BatchTopic");
        let producer = start_producer(&env, &cluster, &unique("pg")).await?;
        create_topic_by_sending(&cluster, &producer, &topic).await?;
        let mut n = 0;
        let mut batch_results = Vec::new();
        for b in 0..10 {
            let batch: Vec<Message> = (0..20)
                .map(|_| {
                    let m = Message::builder()
                        .topic(topic.as_str())
                        .tags("BatchTag")
                        .key(format!("batch-key-{n}"))
                        .body(body("batch", n))
                        .build_unchecked();
                    n += 1;
                    m
                })
                .collect();
            let r = tokio::time::timeout(Duration::from_secs(20), producer.send_batch(batch))
                .await
                .context("batch send hung")?
                .map_err(|e| anyhow!("batch #{b} failed: {e}"))?;
            ensure!(r.send_status == SendStatus::SendOk, "batch #{b}: {r:?}");
            batch_results.push(r.clone());
            let ids = r.msg_id.as_ref().map(|s| s.to_string()).unwrap_or_default();
            ensure!(
                ids.split(',').count() == 20,
                "batch #{b}: expected 20 comma-separated msgIds, got `{ids}`"
            );
        }
        let collector =
            consume_expect(&env, &cluster, &topic, &bodies("batch", n), "batch").await?;
        // Within one batch the messages land in one queue at consecutive offsets.
        for m in collector
            .snapshot()
            .iter()
            .filter(|m| m.body.starts_with(b"batch"))
        {
            ensure!(
                m.tags.as_deref() == Some("BatchTag"),
                "batch message lost its tag: {m:?}"
            );
            let i: usize = String::from_utf8_lossy(&m.body[6..]).parse()?;
            ensure!(
                m.keys == vec![format!("batch-key-{i}")],
                "batch message {i} keys {:?}",
                m.keys
            );
        }
        let snap = collector.snapshot();
        for (b, sent) in batch_results.iter().enumerate() {
            let mut in_batch: Vec<(i32, i64)> = snap
                .iter()
                .filter(|m| {
                    m.body.starts_with(b"batch")
                        && String::from_utf8_lossy(&m.body[6..])
                            .parse::<usize>()
                            .map(|i| i / 20 == b)
                            .unwrap_or(false)
                })
                .map(|m| (m.queue_id, m.queue_offset))
                .collect();
            in_batch.sort_unstable();
            let sent_queue = sent
                .message_queue
                .as_ref()
                .map(|q| q.queue_id())
                .unwrap_or(-1);
            let expected: Vec<(i32, i64)> = (0..20)
                .map(|k| (sent_queue, sent.queue_offset as i64 + k))
                .collect();
            if in_batch != expected {
                let detail: Vec<String> = snap
                    .iter()
                    .filter(|m| {
                        m.body.starts_with(b"batch")
                            && String::from_utf8_lossy(&m.body[6..])
                                .parse::<usize>()
                                .map(|i| i / 20 == b)
                                .unwrap_or(false)
                    })
                    .map(|m| {
                        format!(
                            "{} q{} qoff{} clog{} id{}",
                            String::from_utf8_lossy(&m.body),
                            m.queue_id,
                            m.queue_offset,
                            m.commitlog_offset,
                            m.msg_id
                        )
                    })
                    .collect();
                bail!(
                    "batch #{b} was acknowledged as queue {sent_queue} offsets {}..{} (offsetMsgIds {:?}) but consumed \
                     as (queue, queueOffset) {in_batch:?}; per message: {detail:#?}",
                    sent.queue_offset,
                    sent.queue_offset + 20,
                    sent.offset_msg_id
                );
            }
        }
        env.shutdown().await;
        cluster.pass();
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------------------
// Message content

#[test]
fn tags_keys_and_user_properties_arrive_intact() {
    run_test(TEST_LIMIT, || async {
        let cluster = Cluster::start(BrokerOptions::default()).await?;
        let env = ClientEnv::new("props")?;
        let topic = unique("PropsTopic");
        let producer = start_producer(&env, &cluster, &unique("pg")).await?;
        create_topic_by_sending(&cluster, &producer, &topic).await?;
        let mut sent = BTreeMap::new();
        for i in 0..20usize {
            // Unicode, separators-adjacent characters and an empty-ish body edge case.
            let body = if i == 0 {
                b"".to_vec()
            } else {
                format!("props-{i}-é✓").into_bytes()
            };
            let tag = format!("Tag{}", i % 3);
            let keys = vec![format!("k1-{i}"), format!("k2-{i}")];
            let m = Message::builder()
                .topic(topic.as_str())
                .tags(tag.clone())
                .keys(keys.clone())
                .body(if body.is_empty() {
                    b"-".to_vec()
                } else {
                    body.clone()
                })
                .raw_property("color", format!("blue-{i}"))
                .map_err(|e| anyhow!("{e}"))?
                .raw_property("unicode", "ü€😀")
                .map_err(|e| anyhow!("{e}"))?
                .raw_property("with space", "a b=c")
                .map_err(|e| anyhow!("{e}"))?
                .build_unchecked();
            let r = producer
                .send(m)
                .await
                .map_err(|e| anyhow!("send #{i}: {e}"))?
                .ok_or_else(|| anyhow!("no result"))?;
            check_send_ok(&r, &topic)?;
            let body = if body.is_empty() { b"-".to_vec() } else { body };
            sent.insert(body, (tag, keys, i));
        }
        let expected: BTreeSet<Vec<u8>> = sent.keys().cloned().collect();
        let collector = consume_expect(&env, &cluster, &topic, &expected, "props").await?;
        for m in collector
            .snapshot()
            .iter()
            .filter(|m| !m.body.starts_with(b"warmup"))
        {
            let (tag, keys, i) = sent
                .get(&m.body)
                .ok_or_else(|| anyhow!("unknown body {m:?}"))?;
            ensure!(
                m.tags.as_deref() == Some(tag.as_str()),
                "msg {i}: tags {:?} != {tag}",
                m.tags
            );
            ensure!(&m.keys == keys, "msg {i}: keys {:?} != {keys:?}", m.keys);
            let p = |k: &str| m.properties.get(k).map(String::as_str);
            ensure!(
                p("color") == Some(format!("blue-{i}").as_str()),
                "msg {i}: color {:?}; props {:?}",
                p("color"),
                m.properties
            );
            ensure!(
                p("unicode") == Some("ü€😀"),
                "msg {i}: unicode {:?}",
                p("unicode")
            );
            ensure!(
                p("with space") == Some("a b=c"),
                "msg {i}: `with space` {:?}",
                p("with space")
            );
            ensure!(
                p("UNIQ_KEY").is_some_and(|u| !u.is_empty()),
                "msg {i}: UNIQ_KEY missing: {:?}",
                m.properties
            );
        }
        env.shutdown().await;
        cluster.pass();
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------------------
// Consumers

#[test]
fn push_consumer_clustering_receives_each_message_once() {
    run_test(TEST_LIMIT, || async {
        let cluster = Cluster::start(BrokerOptions::default()).await?;
        let env = ClientEnv::new("once")?;
        let topic = unique("OnceTopic");
        let producer = start_producer(&env, &cluster, &unique("pg")).await?;
        create_topic_by_sending(&cluster, &producer, &topic).await?;
        // Half before the consumer starts (pulled from the store), half while it runs (long polling wake-up).
        let collector = Collector::default();
        send_sync_n(&producer, &topic, "before", 300).await?;
        let group = unique("cg");
        let mut consumer =
            start_push_consumer(&env, &cluster, &group, &topic, "once-1", collector.clone())
                .await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        send_sync_n(&producer, &topic, "during", 300).await?;
        let mut expected = bodies("before", 300);
        expected.extend(bodies("during", 300));
        drain(&collector, &expected, "clustering").await?;
        check_exactly_once(&collector, &expected, "clustering")?;
        shutdown_consumer(&mut consumer).await;
        env.shutdown().await;
        cluster.pass();
        Ok(())
    });
}

#[test]
fn two_consumers_in_one_group_split_the_queues() {
    run_test(TEST_LIMIT, || async {
        let cluster = Cluster::start(BrokerOptions::default()).await?;
        let env = ClientEnv::new("split")?;
        let topic = unique("SplitTopic");
        let producer = start_producer(&env, &cluster, &unique("pg")).await?;
        create_topic_by_sending(&cluster, &producer, &topic).await?;
        let group = unique("cg");
        let (c1, c2) = (Collector::default(), Collector::default());
        let mut consumer1 =
            start_push_consumer(&env, &cluster, &group, &topic, "split-1", c1.clone()).await?;
        let mut consumer2 =
            start_push_consumer(&env, &cluster, &group, &topic, "split-2", c2.clone()).await?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let n = cluster.consumer_count(&group).await?;
            if n == 2 {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "broker lists {n} consumers for group {group}, expected 2"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // Let both clients rebalance (notification from the broker, or their 2 s rebalance period).
        tokio::time::sleep(Duration::from_secs(5)).await;

        send_sync_n(&producer, &topic, "split", 400).await?;
        let expected = bodies("split", 400);
        let union = Collector::default();
        let ok = wait_until(DRAIN_LIMIT, || {
            let mut all = c1.body_counts();
            for (b, n) in c2.body_counts() {
                *all.entry(b).or_insert(0) += n;
            }
            expected.iter().all(|b| all.contains_key(b))
        })
        .await;
        tokio::time::sleep(QUIET).await;
        {
            let mut u = union.received.lock().expect("union");
            u.extend(c1.snapshot());
            u.extend(c2.snapshot());
        }
        ensure!(
            ok,
            "two consumers together received {} of 400 distinct messages (c1 {}, c2 {})",
            union
                .body_counts()
                .keys()
                .filter(|b| expected.contains(*b))
                .count(),
            c1.len(),
            c2.len()
        );
        check_exactly_once(&union, &expected, "split (union of both consumers)")?;
        let (q1, q2) = (c1.queue_ids(), c2.queue_ids());
        let n1 = c1
            .snapshot()
            .iter()
            .filter(|m| m.body.starts_with(b"split"))
            .count();
        let n2 = c2
            .snapshot()
            .iter()
            .filter(|m| m.body.starts_with(b"split"))
            .count();
        ensure!(
            n1 > 0 && n2 > 0,
            "queues were not split: consumer1 got {n1}, consumer2 got {n2}"
        );
        ensure!(
            q1.is_disjoint(&q2),
            "both consumers consumed from the same queues: {q1:?} vs {q2:?}"
        );
        eprintln!("[harness] split: consumer1 {n1} msgs from queues {q1:?}, consumer2 {n2} msgs from queues {q2:?}");
        shutdown_consumer(&mut consumer1).await;
        shutdown_consumer(&mut consumer2).await;
        env.shutdown().await;
        cluster.pass();
        Ok(())
    });
}

#[test]
fn restarted_consumer_resumes_from_committed_offset() {
    run_test(TEST_LIMIT, || async {
        let cluster = Cluster::start(BrokerOptions::default()).await?;
        let env = ClientEnv::new("resume")?;
        let topic = unique("ResumeTopic");
        let mut producer = start_producer(&env, &cluster, &unique("pg")).await?;
        create_topic_by_sending(&cluster, &producer, &topic).await?;
        let group = unique("cg");

        // Consumer A consumes batch 1 completely, waits for offsets to be persisted (1 s period), stops.
        send_sync_n(&producer, &topic, "first", 200).await?;
        let a = Collector::default();
        let mut consumer_a =
            start_push_consumer(&env, &cluster, &group, &topic, "resume-a", a.clone()).await?;
        let first = bodies("first", 200);
        drain(&a, &first, "consumer A").await?;
        check_exactly_once(&a, &first, "consumer A")?;
        shutdown_consumer(&mut consumer_a).await;

        // What the broker now holds as committed, per queue, vs. the queue's end.
        let queues = producer
            .fetch_publish_message_queues(&topic)
            .await
            .map_err(|e| anyhow!("fetch queues: {e}"))?;
        ensure!(
            !queues.is_empty(),
            "topic {topic} has no queues in its route"
        );
        let mut committed = HashMap::new();
        for mq in &queues {
            let q = mq.queue_id();
            let max = cluster.max_offset(&topic, q).await?;
            let c = cluster.committed_offset(&group, &topic, q).await?;
            ensure!(
                max == 0 || c == Some(max),
                "queue {q}: broker's committed offset for {group} is {c:?} but consumer A consumed up to {max} \
                 (all messages acked and shut down cleanly)"
            );
            committed.insert(q, c.unwrap_or(0));
        }

        // Consumer B, same group: must start at the committed offsets.
        let b = Collector::default();
        let mut consumer_b =
            start_push_consumer(&env, &cluster, &group, &topic, "resume-b", b.clone()).await?;
        send_sync_n(&producer, &topic, "second", 100).await?;
        let second = bodies("second", 100);
        drain(&b, &second, "consumer B").await?;
        let redelivered: Vec<String> = b
            .snapshot()
            .iter()
            .filter(|m| m.queue_offset < *committed.get(&m.queue_id).unwrap_or(&0))
            .take(20)
            .map(|m| {
                format!(
                    "{} (queue {} offset {})",
                    String::from_utf8_lossy(&m.body),
                    m.queue_id,
                    m.queue_offset
                )
            })
            .collect();
        ensure!(
            redelivered.is_empty(),
            "consumer B got messages before the committed offsets {committed:?}: {redelivered:?}"
        );
        check_exactly_once(&b, &second, "consumer B")?;
        shutdown_consumer(&mut consumer_b).await;
        shutdown_producer(&mut producer).await;
        env.shutdown().await;
        cluster.pass();
        Ok(())
    });
}

/// Offsets committed by a consumer survive a graceful broker restart (SIGTERM; consumerOffset.json), and a
/// consumer of the same group then starts from them: nothing before them is delivered again.
#[test]
fn broker_restart_keeps_committed_offsets() {
    run_test(TEST_LIMIT, || async {
        let mut cluster = Cluster::start(BrokerOptions::default()).await?;
        let env = ClientEnv::new("brestart")?;
        let topic = unique("BrokerRestartTopic");
        let mut producer = start_producer(&env, &cluster, &unique("pg")).await?;
        create_topic_by_sending(&cluster, &producer, &topic).await?;
        let group = unique("cg");
        send_sync_n(&producer, &topic, "first", 100).await?;
        let a = Collector::default();
        let mut consumer_a =
            start_push_consumer(&env, &cluster, &group, &topic, "brestart-a", a.clone()).await?;
        let first = bodies("first", 100);
        drain(&a, &first, "consumer A").await?;
        shutdown_consumer(&mut consumer_a).await;
        let queues: Vec<i32> = producer
            .fetch_publish_message_queues(&topic)
            .await
            .map_err(|e| anyhow!("fetch queues: {e}"))?
            .iter()
            .map(|q| q.queue_id())
            .collect();
        shutdown_producer(&mut producer).await;
        let mut before = BTreeMap::new();
        for &q in &queues {
            before.insert(q, cluster.committed_offset(&group, &topic, q).await?);
        }

        ensure!(
            cluster.stop_broker(Duration::from_secs(15)).await,
            "broker did not exit within 15 s of SIGTERM"
        );
        cluster
            .start_broker()
            .await
            .context("broker restart after SIGTERM")?;
        let mut after = BTreeMap::new();
        for &q in &queues {
            after.insert(q, cluster.committed_offset(&group, &topic, q).await?);
        }
        ensure!(before == after, "committed offsets changed across a graceful restart: before {before:?}, after {after:?}");

        let producer = start_producer(&env, &cluster, &unique("pg")).await?;
        let b = Collector::default();
        let mut consumer_b =
            start_push_consumer(&env, &cluster, &group, &topic, "brestart-b", b.clone()).await?;
        send_sync_n(&producer, &topic, "second", 50).await?;
        let second = bodies("second", 50);
        drain(&b, &second, "consumer B after broker restart").await?;
        check_exactly_once(&b, &second, "consumer B after broker restart")?;
        shutdown_consumer(&mut consumer_b).await;
        env.shutdown().await;
        cluster.pass();
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------------------
// Query / errors / crash

#[test]
fn query_message_by_key_and_view_by_id() {
    run_test(TEST_LIMIT, || async {
        let cluster = Cluster::start(BrokerOptions::default()).await?;
        let env = ClientEnv::new("query")?;
        let topic = unique("QueryTopic");
        let mut producer = start_producer(&env, &cluster, &unique("pg")).await?;
        create_topic_by_sending(&cluster, &producer, &topic).await?;
        let key = unique("order");
        let begin = now_ms().saturating_sub(60_000);
        let mut target = None;
        for i in 0..30usize {
            let m = Message::builder()
                .topic(topic.as_str())
                .key(if i == 17 {
                    key.clone()
                } else {
                    format!("other-{i}")
                })
                .body(body("query", i))
                .build_unchecked();
            let r = producer
                .send(m)
                .await
                .map_err(|e| anyhow!("send: {e}"))?
                .ok_or_else(|| anyhow!("no result"))?;
            check_send_ok(&r, &topic)?;
            if i == 17 {
                target = Some(r);
            }
        }
        let target = target.expect("sent");
        let end = now_ms() + 60_000;

        // The index may be built asynchronously: retry for a while.
        let deadline = Instant::now() + Duration::from_secs(15);
        let found = loop {
            let res = tokio::time::timeout(
                Duration::from_secs(10),
                producer.query_message(&topic, &key, 32, begin, end),
            )
            .await
            .context("query_message hung")?;
            match res {
                Ok(q) if !q.message_list().is_empty() => break q,
                other => {
                    if Instant::now() > deadline {
                        let raw = raw_query_message(&cluster, &topic, &key, begin, end).await;
                        bail!(
                            "query by key {key} found nothing within 15 s; last client result {}; \
                             the same QUERY_MESSAGE sent raw gets {raw:?}",
                            match other {
                                Ok(q) => format!("{} messages", q.message_list().len()),
                                Err(e) => common::client::describe(&e),
                            }
                        );
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        let list = found.message_list();
        ensure!(
            list.len() == 1,
            "query by key {key} returned {} messages (expected exactly 1)",
            list.len()
        );
        let m = &list[0];
        ensure!(
            m.message_inner().body_slice() == body("query", 17).as_slice(),
            "query returned the wrong message: {m:?}"
        );
        ensure!(
            m.topic().as_str() == topic,
            "query result topic {}",
            m.topic()
        );

        // VIEW_MESSAGE_BY_ID with the offset msgId from the send result.
        let offset_id = target
            .offset_msg_id
            .clone()
            .ok_or_else(|| anyhow!("no offsetMsgId"))?;
        let viewed = tokio::time::timeout(
            Duration::from_secs(10),
            producer.view_message(&topic, &offset_id),
        )
        .await
        .context("view_message hung")?
        .map_err(|e| anyhow!("view_message({offset_id}): {e}"))?;
        ensure!(
            viewed.message_inner().body_slice() == body("query", 17).as_slice(),
            "view_message returned body {:?}",
            String::from_utf8_lossy(viewed.message_inner().body_slice())
        );
        shutdown_producer(&mut producer).await;
        env.shutdown().await;
        cluster.pass();
        Ok(())
    });
}

#[test]
fn unknown_topic_without_autocreate_is_an_error() {
    run_test(TEST_LIMIT, || async {
        let cluster = Cluster::start(BrokerOptions {
            auto_create_topic_enable: false,
            ..Default::default()
        })
        .await?;
        let topic = unique("NoAutoCreate");

        // Straight to the broker: SEND_MESSAGE for a topic it does not have.
        let born = now_ms().to_string();
        let r = remoting::call(
            &cluster.broker_addr(),
            code::SEND_MESSAGE,
            &[
                ("producerGroup", "raw_pg"),
                ("topic", &topic),
                ("defaultTopic", "TBW102"),
                ("defaultTopicQueueNums", "4"),
                ("queueId", "0"),
                ("sysFlag", "0"),
                ("bornTimestamp", &born),
                ("flag", "0"),
                ("properties", ""),
                ("reconsumeTimes", "0"),
                ("unitMode", "false"),
                ("batch", "false"),
            ],
            b"hello",
            Duration::from_secs(10),
        )
        .await?;
        ensure!(
            r.code == response::TOPIC_NOT_EXIST,
            "SEND_MESSAGE to unknown topic with autoCreateTopicEnable=false: expected code 17 TOPIC_NOT_EXIST, got {r:?}"
        );

        // Through the client: an error in bounded time, not a hang.
        let env = ClientEnv::new("noauto")?;
        let producer = start_producer(&env, &cluster, &unique("pg")).await?;
        let started = Instant::now();
        let res = tokio::time::timeout(
            Duration::from_secs(30),
            producer.send(msg(&topic, b"x".to_vec())),
        )
        .await
        .context("client send to an unknown topic hung for 30 s")?;
        ensure!(
            res.is_err(),
            "client send to unknown topic with autoCreateTopicEnable=false succeeded: {res:?}"
        );
        eprintln!(
            "[harness] unknown topic: client error after {:?}: {}",
            started.elapsed(),
            res.unwrap_err()
        );
        // And the namesrv must not have learned a route for it.
        let r = remoting::call(
            &cluster.namesrv_addr(),
            code::GET_ROUTEINFO_BY_TOPIC,
            &[("topic", &topic)],
            &[],
            Duration::from_secs(5),
        )
        .await?;
        ensure!(
            r.code == response::TOPIC_NOT_EXIST,
            "namesrv has a route for a never-created topic: {r:?}"
        );
        env.shutdown().await;
        cluster.pass();
        Ok(())
    });
}

/// kill -9 the broker after sends were acknowledged; after restart on the same store every acknowledged
/// message is still delivered and new sends continue the queue offsets (nothing overwritten).
#[test]
fn broker_kill9_keeps_acknowledged_messages() {
    run_test(TEST_LIMIT, || async {
        let mut cluster = Cluster::start(BrokerOptions::default()).await?;
        let env = ClientEnv::new("kill9")?;
        let topic = unique("CrashTopic");
        let mut producer = start_producer(&env, &cluster, &unique("pg")).await?;
        create_topic_by_sending(&cluster, &producer, &topic).await?;
        let before = send_sync_n(&producer, &topic, "precrash", 150).await?;
        let mut max_before: HashMap<i32, u64> = HashMap::new();
        for r in &before {
            let q = r.message_queue.as_ref().expect("checked").queue_id();
            let e = max_before.entry(q).or_insert(0);
            *e = (*e).max(r.queue_offset);
        }
        shutdown_producer(&mut producer).await;

        cluster.kill9_broker();
        cluster
            .start_broker()
            .await
            .context("broker restart after kill -9")?;

        let producer = start_producer(&env, &cluster, &unique("pg")).await?;
        let after = send_sync_n(&producer, &topic, "postcrash", 50).await?;
        for r in &after {
            let q = r.message_queue.as_ref().expect("checked").queue_id();
            if let Some(prev) = max_before.get(&q) {
                ensure!(
                    r.queue_offset > *prev,
                    "after restart queue {q} handed out offset {} although {prev} was acknowledged before the crash",
                    r.queue_offset
                );
            }
        }
        let mut expected = bodies("precrash", 150);
        expected.extend(bodies("postcrash", 50));
        consume_expect(&env, &cluster, &topic, &expected, "after kill -9").await?;
        env.shutdown().await;
        cluster.pass();
        Ok(())
    });
}

/// QUERY_MESSAGE (12) sent with the raw client, for diagnostics when the crates.io client fails.
async fn raw_query_message(
    cluster: &Cluster,
    topic: &str,
    key: &str,
    begin: u64,
    end: u64,
) -> Result<remoting::RawResponse> {
    let (b, e) = (begin.to_string(), end.to_string());
    remoting::call(
        &cluster.broker_addr(),
        code::QUERY_MESSAGE,
        &[
            ("topic", topic),
            ("key", key),
            ("maxNum", "32"),
            ("beginTimestamp", &b),
            ("endTimestamp", &e),
            ("indexType", "K"),
        ],
        &[],
        Duration::from_secs(10),
    )
    .await
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
