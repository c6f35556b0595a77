//! Setting up rocketmq-client-rust 1.0 against a test cluster, and a listener that records what arrives.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use rocketmq_client_rust::{
    ClientConfig, ClientResult, ClientRuntime, ClientRuntimeConfig, ConsumeConcurrentlyContext,
    ConsumeConcurrentlyStatus, DefaultMQProducer, DefaultMQPushConsumer, MQPushConsumer,
    MessageListenerConcurrently,
};
use rocketmq_model::common::consumer::consume_from_where::ConsumeFromWhere;
use rocketmq_model::common::message::message_ext::MessageExt;
use rocketmq_runtime::{RuntimeConfig, RuntimeOwner};

use super::Cluster;

/// Process-wide client settings that the client only reads from the environment. Called before any client
/// exists. The rebalance period is shortened from 20 s so that queue moves after a consumer joins or leaves
/// happen within a test's patience even if the broker's NOTIFY_CONSUMER_IDS_CHANGED is not acted on.
fn init_process_env() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        std::env::set_var("rocketmq.client.rebalance.waitInterval", "2000");
        std::env::set_var("rocketmq.client.rebalance.minInterval", "500");
    });
}

/// The client's runtime owner, client runtime and telemetry guard, shut down in reverse order.
pub struct ClientEnv {
    owner: Option<RuntimeOwner>,
    runtime: Arc<ClientRuntime>,
    telemetry: Option<rocketmq_observability::TelemetryRuntimeGuard>,
}

impl ClientEnv {
    pub fn new(scope: &str) -> Result<ClientEnv> {
        init_process_env();
        let mut config = RuntimeConfig {
            thread_name: format!("interop-{scope}"),
            worker_threads: 2,
            ..Default::default()
        };
        // The push consumer runs each listener call as blocking-lane work. With the 2-core defaults the lane
        // queues hold 8-32 entries; a burst of pulled messages overflows them, the client counts the
        // rejected calls as consume failures and sends the messages back for retry. Deep queues keep the
        // tests about the broker.
        for lane in [
            &mut config.blocking_lane_policies.storage_io,
            &mut config.blocking_lane_policies.metadata_io,
            &mut config.blocking_lane_policies.cpu_crypto,
        ] {
            lane.max_queue_depth = 100_000;
        }
        let owner = RuntimeOwner::plan(config)
            .map_err(|e| anyhow!("runtime plan: {e:?}"))?
            .build()
            .map_err(|e| anyhow!("runtime build: {e:?}"))?;
        // A second install in the same process cannot replace the global tracing subscriber; the client
        // reports that in the guard and carries on, which is all the tests need.
        // The client logs a lot at info; keep test output readable (INTEROP_CLIENT_LOG=info to see it).
        let mut telemetry_config = rocketmq_observability::TelemetryBootstrapConfig::default();
        telemetry_config.logging.filter =
            std::env::var("INTEROP_CLIENT_LOG").unwrap_or_else(|_| "warn".to_string());
        let telemetry = rocketmq_observability::install_global(&telemetry_config)
            .map_err(|e| anyhow!("telemetry: {e:?}"))?;
        let runtime = ClientRuntime::try_new(
            owner.root_context().component("client"),
            ClientRuntimeConfig::default(),
            telemetry.handle(),
        )
        .map_err(|e| anyhow!("client runtime: {e}"))?;
        Ok(ClientEnv {
            owner: Some(owner),
            runtime,
            telemetry: Some(telemetry),
        })
    }

    pub fn runtime(&self) -> Arc<ClientRuntime> {
        Arc::clone(&self.runtime)
    }

    /// Bounded shutdown: a client that cannot stop must not hang the suite.
    pub async fn shutdown(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(10), self.runtime.shutdown()).await;
        if let Some(owner) = self.owner.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), owner.shutdown_tasks()).await;
            let _ = owner.shutdown_background();
        }
        if let Some(t) = self.telemetry.take() {
            let _ = t.shutdown();
        }
    }
}

/// Client config with short intervals (route refresh and heartbeat 10 s, the client's minimum; offset persistence 1 s) and a unique instance name
/// so that two clients in one process have distinct client ids (`ip@instance`).
pub fn client_config(cluster: &Cluster, instance: &str) -> ClientConfig {
    let mut cfg = ClientConfig::default();
    cfg.set_namesrv_addr(cluster.namesrv_addr().into());
    cfg.set_instance_name(instance.into());
    cfg.client_ip = Some("127.0.0.1".into());
    cfg.poll_name_server_interval = 10_000; // the client rejects less than 10 s
    cfg.persist_consumer_offset_interval = 1000;
    cfg.heartbeat_broker_interval = 10_000; // the client rejects less than 10 s
    cfg.mq_client_api_timeout = 5000;
    cfg
}

pub async fn start_producer(
    env: &ClientEnv,
    cluster: &Cluster,
    group: &str,
) -> Result<DefaultMQProducer> {
    let mut producer = DefaultMQProducer::builder(env.runtime())
        .client_config(client_config(cluster, &super::unique("producer")))
        .producer_group(group.to_string())
        .send_msg_timeout(5000)
        .build();
    tokio::time::timeout(Duration::from_secs(20), producer.start())
        .await
        .context("producer.start() timed out")?
        .map_err(|e| anyhow!("producer.start(): {e}"))?;
    Ok(producer)
}

/// What a consumer saw of one delivered message.
#[derive(Clone, Debug)]
pub struct Received {
    pub msg_id: String,
    pub topic: String,
    pub queue_id: i32,
    pub queue_offset: i64,
    pub commitlog_offset: i64,
    pub body: Vec<u8>,
    pub tags: Option<String>,
    pub keys: Vec<String>,
    pub properties: HashMap<String, String>,
    pub reconsume_times: i32,
    pub born_host: String,
    pub store_host: String,
}

/// Records every delivered message and acknowledges it (ConsumeSuccess).
#[derive(Clone, Default)]
pub struct Collector {
    pub received: Arc<Mutex<Vec<Received>>>,
}

impl Collector {
    pub fn len(&self) -> usize {
        self.received.lock().expect("collector").len()
    }

    pub fn snapshot(&self) -> Vec<Received> {
        self.received.lock().expect("collector").clone()
    }

    /// Bodies received, with how many times each arrived.
    pub fn body_counts(&self) -> BTreeMap<Vec<u8>, usize> {
        let mut m = BTreeMap::new();
        for r in self.received.lock().expect("collector").iter() {
            *m.entry(r.body.clone()).or_insert(0) += 1;
        }
        m
    }

    pub fn queue_ids(&self) -> HashSet<i32> {
        self.received
            .lock()
            .expect("collector")
            .iter()
            .map(|r| r.queue_id)
            .collect()
    }
}

impl MessageListenerConcurrently for Collector {
    fn consume_message(
        &self,
        msgs: &[&MessageExt],
        _context: &ConsumeConcurrentlyContext,
    ) -> ClientResult<ConsumeConcurrentlyStatus> {
        let mut out = self.received.lock().expect("collector");
        for m in msgs {
            let inner = m.message_inner();
            out.push(Received {
                msg_id: m.msg_id().to_string(),
                topic: m.topic().to_string(),
                queue_id: m.queue_id(),
                queue_offset: m.queue_offset(),
                commitlog_offset: m.commit_log_offset(),
                body: inner.body_slice().to_vec(),
                tags: inner.tags().map(str::to_string),
                keys: inner.keys().unwrap_or_default(),
                properties: m
                    .properties()
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                reconsume_times: m.reconsume_times(),
                born_host: m.born_host().to_string(),
                store_host: m.store_host().to_string(),
            });
        }
        Ok(ConsumeConcurrentlyStatus::ConsumeSuccess)
    }
}

pub async fn start_push_consumer(
    env: &ClientEnv,
    cluster: &Cluster,
    group: &str,
    topic: &str,
    instance: &str,
    collector: Collector,
) -> Result<DefaultMQPushConsumer> {
    let mut consumer = DefaultMQPushConsumer::builder(env.runtime())
        .client_config(client_config(cluster, instance))
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

/// Bounded consumer shutdown (persists offsets, unregisters).
pub async fn shutdown_consumer(consumer: &mut DefaultMQPushConsumer) {
    if tokio::time::timeout(Duration::from_secs(15), consumer.shutdown())
        .await
        .is_err()
    {
        eprintln!("[harness] consumer.shutdown() did not finish within 15 s");
    }
}

pub async fn shutdown_producer(producer: &mut DefaultMQProducer) {
    if tokio::time::timeout(Duration::from_secs(10), producer.shutdown())
        .await
        .is_err()
    {
        eprintln!("[harness] producer.shutdown() did not finish within 10 s");
    }
}

/// The client's errors print a generic code and redact their message; the source chain has the detail.
pub fn describe(e: &rocketmq_client_rust::ClientError) -> String {
    let mut s = format!("{e} [{e:?}]");
    let mut src = std::error::Error::source(e);
    while let Some(cause) = src {
        s.push_str(&format!(" <- {cause}"));
        src = cause.source();
    }
    s
}
