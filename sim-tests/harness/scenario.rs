//! The scenario driver shared by every `t*` simulation: build the cluster (namesrvs, brokers on
//! SimDisks, an admin node, producers, consumers), create the topic, run the safety phase
//! (workload + seeded faults), heal, run the liveness phase (probe send, consumers catch up,
//! final scan) under a simulated-time deadline, then run every checker.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use apogee::store::{DebugBugs, FlushDiskType};

use super::cluster::{addr, broker_ip, client_ip, namesrv_ip, on_node, Cluster, NodeContext, Role};
use super::cluster::{BROKER_PORT, NAMESRV_PORT};
use super::disk::SimDiskHandle;
use super::faults::{run_safety_phase, FaultCounts, FaultPlan};
use super::nodes::{broker_main, namesrv_main, SimBrokerConfig};
use super::oracle::{OffsetEvent, OffsetEventKind, Oracle};
use super::workload::{
    self, consumer_main, create_topic, fetch_route, producer_main, BrokerInfo, StopFlag,
    WorkloadConfig,
};
use super::{SimOutcome, Trace};
use crate::invariants::{self, BrokerFacts, CheckInput, Report, Violation};

pub const TOPIC: &str = "SimTopic";
pub const STORE_ROOT: &str = "/store";

#[derive(Debug, Clone)]
pub struct BrokerSpec {
    pub flush: FlushDiskType,
    pub debug_bugs: DebugBugs,
}

impl BrokerSpec {
    pub fn new(flush: FlushDiskType) -> Self {
        BrokerSpec {
            flush,
            debug_bugs: DebugBugs::default(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ScenarioSpec {
    pub name: &'static str,
    pub namesrvs: usize,
    pub brokers: Vec<BrokerSpec>,
    pub producers: usize,
    pub consumers: usize,
    pub plan: FaultPlan,
    pub safety: Duration,
    /// Simulated time the cluster gets to converge once faults stop.
    pub liveness_deadline: Duration,
    pub body_bytes_max: usize,
    pub batch_size_max: usize,
    pub queue_count: i32,
}

impl ScenarioSpec {
    pub fn new(name: &'static str) -> Self {
        ScenarioSpec {
            name,
            namesrvs: 1,
            brokers: vec![BrokerSpec::new(FlushDiskType::SyncFlush)],
            producers: 2,
            consumers: 2,
            plan: FaultPlan::none(),
            safety: Duration::from_secs(20),
            liveness_deadline: Duration::from_secs(60),
            body_bytes_max: 1024,
            batch_size_max: 4,
            queue_count: 4,
        }
    }
}

pub struct ScenarioResult {
    pub outcome: SimOutcome,
    pub violations: Vec<Violation>,
    pub report: Report,
}

impl ScenarioResult {
    /// Panics with every violation and the recent trace (the seed is printed by madsim).
    pub fn assert_ok(self, trace: &Trace) -> SimOutcome {
        if !self.violations.is_empty() {
            let mut text = format!("{} invariant violation(s):\n", self.violations.len());
            for v in self.violations.iter().take(invariants::VIOLATIONS_SHOWN_MAX) {
                text.push_str(&format!("  {v}\n"));
            }
            text.push_str("report:\n");
            for l in &self.report.lines {
                text.push_str(&format!("  {l}\n"));
            }
            text.push_str("recent trace:\n");
            for l in trace.recent() {
                text.push_str(&format!("  {l}\n"));
            }
            panic!("{text}");
        }
        self.outcome
    }

    pub fn fired(&self, invariant: &str) -> bool {
        self.violations.iter().any(|v| v.invariant == invariant)
    }
}

pub async fn run(spec: ScenarioSpec, trace: Trace) -> ScenarioResult {
    let oracle = Oracle::new(trace.clone());
    let mut cluster = Cluster::new(trace.clone());
    trace.event(format!("scenario {} starts", spec.name));

    let namesrv_addrs: Vec<String> = (0..spec.namesrvs)
        .map(|i| addr(namesrv_ip(i as u8), NAMESRV_PORT))
        .collect();
    for i in 0..spec.namesrvs {
        let name = format!("namesrv-{i}");
        cluster.add_node(
            &name,
            Role::Namesrv,
            namesrv_ip(i as u8),
            None,
            namesrv_main(NAMESRV_PORT),
        );
    }
    let mut brokers = Vec::new();
    let mut facts = BTreeMap::new();
    for (i, b) in spec.brokers.iter().enumerate() {
        let name = format!("broker-{}", (b'a' + i as u8) as char);
        let ip = broker_ip(i as u8);
        let disk = SimDiskHandle::new(STORE_ROOT);
        let cfg = SimBrokerConfig {
            broker_name: name.clone(),
            ip,
            port: BROKER_PORT,
            namesrv_addrs: namesrv_addrs.clone(),
            flush: b.flush,
            debug_bugs: b.debug_bugs,
            store_root: STORE_ROOT.into(),
        };
        cluster.add_node(&name, Role::Broker, ip, Some(disk.clone()), broker_main(cfg));
        let status = cluster_status(&cluster, &name);
        brokers.push(BrokerInfo {
            name: name.clone(),
            addr: addr(ip, BROKER_PORT),
            flush: b.flush,
            status,
        });
        facts.insert(
            addr(ip, BROKER_PORT),
            BrokerFacts {
                name: name.clone(),
                flush: b.flush,
                power_losses: Vec::new(),
                disk,
            },
        );
    }
    let mut wcfg = WorkloadConfig::new(TOPIC, namesrv_addrs.clone(), brokers.clone());
    wcfg.body_bytes_max = spec.body_bytes_max;
    wcfg.batch_size_max = spec.batch_size_max;
    wcfg.queue_count = spec.queue_count;

    // Admin node: topic creation, probes, progress queries and the final scan.
    cluster.add_node(
        "admin",
        Role::Client,
        client_ip(250),
        None,
        Arc::new(|_ctx: NodeContext| Box::pin(futures::future::pending::<()>())),
    );
    let mut violations = Vec::new();
    if let Err(e) = setup_topic(&cluster, &wcfg).await {
        violations.push(Violation {
            invariant: invariants::liveness::NAME,
            detail: format!("setup: {e}"),
        });
    }

    let producers_stop = StopFlag::new();
    let consumers_stop = StopFlag::new();
    for i in 0..spec.producers {
        let (cfg, oracle, stop) = (wcfg.clone(), oracle.clone(), producers_stop.clone());
        let name = format!("producer-{i}");
        cluster.add_node(
            &name,
            Role::Client,
            client_ip(i as u8),
            None,
            Arc::new(move |ctx: NodeContext| {
                Box::pin(producer_main(
                    format!("{}#{}", ctx.name, ctx.incarnation),
                    cfg.clone(),
                    oracle.clone(),
                    stop.clone(),
                ))
            }),
        );
    }
    let mut consumer_names = Vec::new();
    for i in 0..spec.consumers {
        let (cfg, oracle, stop) = (wcfg.clone(), oracle.clone(), consumers_stop.clone());
        let name = format!("consumer-{i}");
        consumer_names.push(name.clone());
        cluster.add_node(
            &name,
            Role::Client,
            client_ip(100 + i as u8),
            None,
            Arc::new(move |ctx: NodeContext| {
                Box::pin(consumer_main(
                    ctx.name.clone(),
                    ctx.ip,
                    ctx.incarnation,
                    cfg.clone(),
                    oracle.clone(),
                    stop.clone(),
                ))
            }),
        );
    }

    let mut counts = FaultCounts::default();
    if violations.is_empty() {
        run_safety_phase(&mut cluster, &spec.plan, &consumer_names, spec.safety, &mut counts)
            .await;
        violations.extend(
            liveness_phase(&cluster, &wcfg, &oracle, &producers_stop, &consumers_stop, spec.liveness_deadline)
                .await,
        );
    }
    producers_stop.stop();
    consumers_stop.stop();

    for (addr, f) in facts.iter_mut() {
        f.power_losses = f.disk.power_losses();
        let _ = addr;
    }
    let mut report = Report::default();
    {
        let state = oracle.state();
        let input = CheckInput {
            oracle: &state,
            brokers: &facts,
            topic: TOPIC,
        };
        if violations.is_empty() {
            violations.extend(invariants::check_final(&input, &mut report));
        } else {
            // Liveness failed: the final scan is missing, check what the history allows.
            violations.extend(invariants::check_online(&input));
        }
    }
    let summary = format!("{} {} {}", oracle.summary(), counts, report.lines.join(" "));
    trace.event(format!("scenario {} ends: {summary}", spec.name));
    ScenarioResult {
        outcome: SimOutcome {
            trace_digest: trace.digest(),
            trace_events: trace.events(),
            sim_elapsed: trace.elapsed(),
            summary,
        },
        violations,
        report,
    }
}

fn cluster_status(
    cluster: &Cluster,
    name: &str,
) -> Arc<std::sync::Mutex<super::cluster::NodeStatus>> {
    cluster.status_handle(name)
}

/// Creates the topic on every broker and waits until a namesrv routes it (bounded).
async fn setup_topic(cluster: &Cluster, cfg: &WorkloadConfig) -> Result<(), String> {
    let cfg = cfg.clone();
    let trace = cluster.trace().clone();
    on_node(cluster, "admin", async move {
        let client = apogee::remoting::RemotingClient::new();
        let deadline = apogee::rt::now() + Duration::from_secs(30);
        for b in &cfg.brokers {
            loop {
                match create_topic(&client, &b.addr, &cfg.topic, cfg.queue_count).await {
                    Ok(()) => break,
                    Err(e) if apogee::rt::now() > deadline => {
                        return Err(format!("create topic on {}: {e}", b.addr))
                    }
                    Err(_) => apogee::rt::sleep_ms(200).await,
                }
            }
        }
        loop {
            for ns in &cfg.namesrv_addrs {
                if let Some(r) = fetch_route(&client, ns, &cfg.topic).await {
                    if r.brokers.len() == cfg.brokers.len() {
                        trace.event(format!("setup: topic routed {r:?}"));
                        return Ok(());
                    }
                }
            }
            if apogee::rt::now() > deadline {
                return Err("topic never appeared in a namesrv route".into());
            }
            apogee::rt::sleep_ms(200).await;
        }
    })
    .await
}

/// Faults are off: the cluster must take writes and the group must catch up before the
/// deadline; then the final scan reads every queue.
async fn liveness_phase(
    cluster: &Cluster,
    cfg: &WorkloadConfig,
    oracle: &Oracle,
    producers_stop: &StopFlag,
    consumers_stop: &StopFlag,
    deadline: Duration,
) -> Vec<Violation> {
    let trace = cluster.trace().clone();
    trace.event("phase: liveness");
    let end = apogee::rt::now() + deadline;
    let fail = |detail: String| {
        vec![Violation {
            invariant: invariants::liveness::NAME,
            detail,
        }]
    };
    // 1. New writes are acknowledged again.
    let mut last = String::new();
    loop {
        let (c, o) = (cfg.clone(), oracle.clone());
        match on_node(cluster, "admin", async move { workload::probe_send(&c, &o).await }).await {
            Ok(()) => break,
            Err(e) => last = e,
        }
        if apogee::rt::now() > end {
            return fail(format!("no acked probe send within {deadline:?} after healing: {last}"));
        }
        apogee::rt::sleep_ms(500).await;
    }
    producers_stop.stop();
    while producers_stop.running() > 0 {
        if apogee::rt::now() > end {
            return fail("producers did not finish their last send".into());
        }
        apogee::rt::sleep_ms(100).await;
    }
    trace.event("liveness: probe acked, producers stopped");
    // 2. The consumer group catches up with every queue.
    loop {
        let (c, o) = (cfg.clone(), oracle.clone());
        let brokers = cfg.brokers.clone();
        let progress = on_node(cluster, "admin", async move {
            let started_at = apogee::rt::now();
            let p = workload::progress(&c).await;
            if let Ok(list) = &p {
                for q in list {
                    let inc = brokers
                        .iter()
                        .find(|b| b.addr == q.broker)
                        .map(|b| b.incarnation())
                        .unwrap_or(0);
                    if q.committed_offset > 0 {
                        o.record_offset_event(OffsetEvent {
                            broker: q.broker.clone(),
                            broker_incarnation: inc,
                            group: c.group.clone(),
                            topic: c.topic.clone(),
                            queue_id: q.queue_id,
                            offset: q.committed_offset,
                            started_at,
                            finished_at: apogee::rt::now(),
                            kind: OffsetEventKind::Query,
                        });
                    }
                }
            }
            p
        })
        .await;
        match progress {
            Ok(p) => match invariants::liveness::not_converged(&p) {
                None => break,
                Some(why) => last = why,
            },
            Err(e) => last = e,
        }
        if apogee::rt::now() > end {
            return fail(format!("consumers did not catch up within {deadline:?}: {last}"));
        }
        apogee::rt::sleep_ms(500).await;
    }
    consumers_stop.stop();
    trace.event("liveness: consumers caught up");
    // 3. Every queue reads back from min to max.
    loop {
        let (c, o) = (cfg.clone(), oracle.clone());
        match on_node(cluster, "admin", async move { workload::final_scan("admin", &c, &o).await })
            .await
        {
            Ok(()) => break,
            Err(e) => last = e,
        }
        if apogee::rt::now() > end {
            return fail(format!("final scan did not complete within {deadline:?}: {last}"));
        }
        apogee::rt::sleep_ms(500).await;
    }
    trace.event("liveness: final scan done");
    Vec::new()
}
