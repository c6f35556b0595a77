//! The scenario driver shared by every `t*` simulation: build the cluster (namesrvs, brokers on
//! SimDisks, an admin node, producers, consumers), create the topic, run the safety phase
//! (workload + seeded faults), heal, run the liveness phase (probe send, consumers catch up,
//! final scan) under a simulated-time deadline, then run every checker.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use apogee::ha::HaDebugBugs;
use apogee::store::{BrokerRole, DebugBugs, FlushDiskType};

use super::cluster::{
    addr, broker_ip, client_ip, namesrv_ip, on_node, slave_ip, Cluster, HaPair, NodeContext, Role,
};
use super::cluster::{BROKER_PORT, NAMESRV_PORT};
use super::disk::SimDiskHandle;
use super::faults::{run_safety_phase, FaultCounts, FaultPlan};
use super::nodes::{broker_main, ha_port, namesrv_main, SimBrokerConfig, SimHa};
use super::oracle::{OffsetEvent, OffsetEventKind, Oracle};
use super::workload::{
    self, client_producer_main, consumer_main, create_topic, fetch_route, producer_main,
    BrokerInfo, StopFlag, WorkloadConfig,
};
use super::{SimOutcome, Trace};
use crate::invariants::{self, BrokerFacts, CheckInput, Report, SlaveFacts, Violation};

pub const TOPIC: &str = "SimTopic";
pub const STORE_ROOT: &str = "/store";

#[derive(Debug, Clone)]
pub struct BrokerSpec {
    pub flush: FlushDiskType,
    pub debug_bugs: DebugBugs,
    /// ASYNC_MASTER (RocketMQ's default) or SYNC_MASTER.
    pub role: BrokerRole,
    /// Run a SLAVE (brokerId 1, same brokerName, own SimDisk) replicating this master.
    pub with_slave: bool,
    /// Deliberate HA bugs (t90), given to both the master and its slave.
    pub ha_bugs: HaDebugBugs,
    /// warmMapedFileEnable on the master and its slave.
    pub warm_mapped_file: bool,
}

impl BrokerSpec {
    pub fn new(flush: FlushDiskType) -> Self {
        BrokerSpec {
            flush,
            debug_bugs: DebugBugs::default(),
            role: BrokerRole::AsyncMaster,
            with_slave: false,
            ha_bugs: HaDebugBugs::default(),
            warm_mapped_file: false,
        }
    }

    /// A master of `role` with a slave.
    pub fn with_slave(flush: FlushDiskType, role: BrokerRole) -> Self {
        BrokerSpec {
            role,
            with_slave: true,
            ..BrokerSpec::new(flush)
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
    /// A deliberate fault outside every contract, to show a checker fires (t90 only).
    pub sabotage: Sabotage,
    /// Consumers read and commit on a master's slave while the master is unreachable, and the
    /// slaves' committed offsets are checked too (t72).
    pub consumers_use_slaves: bool,
}

/// Harness-side deliberate bugs for checkers that no store switch (`DebugBugs`) exercises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sabotage {
    None,
    /// Flip a byte inside a consumed message's body on the broker's disk (bit rot, both images).
    BitRotBody,
    /// An unrecorded client commits a lower consumer offset (as if the broker moved it back).
    RogueOffsetCommit,
    /// One broker stays clogged after the safety phase: the cluster cannot converge.
    NeverHealBroker,
    /// After the final scan, overwrite a ConsumeQueue unit's size on disk.
    CorruptConsumeQueueUnit,
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
            sabotage: Sabotage::None,
            consumers_use_slaves: false,
        }
    }
}

/// t72's scenario (shared with t90): one master (SYNC_MASTER or ASYNC_MASTER, drawn from the
/// seed; `SIM_HA_ROLE=sync|async` pins it) and its SLAVE; the master is crashed (process
/// crash) or partitioned away for seconds at a time, so consumers move to the slave, commit
/// there, and come back.
pub fn ha_offsets_outage_spec(name: &'static str) -> ScenarioSpec {
    let mut spec = ScenarioSpec::new(name);
    let mut role = if super::chance(0.5) {
        BrokerRole::SyncMaster
    } else {
        BrokerRole::AsyncMaster
    };
    // SIM_HA_ROLE=sync|async pins the role (after the draw, so the seed's other draws stay).
    match std::env::var("SIM_HA_ROLE").as_deref() {
        Ok("sync") => role = BrokerRole::SyncMaster,
        Ok("async") => role = BrokerRole::AsyncMaster,
        _ => {}
    }
    spec.brokers = vec![BrokerSpec::with_slave(FlushDiskType::SyncFlush, role)];
    // Role::Broker nodes are masters only: these faults never hit the slave.
    let mut plan = FaultPlan::new(vec![
        super::faults::FaultKind::CrashBroker(super::disk::CrashMode::ProcessCrash),
        super::faults::FaultKind::PartitionBroker,
    ]);
    // Outages long enough for consumers to move to the slave and commit there; quiet gaps
    // long enough for reconsume_window to check reads.
    plan.gap_ms = (4_000, 9_000);
    plan.hold_ms = (4_000, 10_000);
    spec.plan = plan;
    spec.safety = Duration::from_secs(30);
    spec.liveness_deadline = Duration::from_secs(60);
    spec.consumers_use_slaves = true;
    spec
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
            for v in self
                .violations
                .iter()
                .take(invariants::VIOLATIONS_SHOWN_MAX)
            {
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
    let mut slaves = BTreeMap::new();
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
            warm_mapped_file: b.warm_mapped_file,
            ha: SimHa {
                role: b.role,
                debug_bugs: b.ha_bugs,
                ..SimHa::default()
            },
        };
        cluster.add_node(
            &name,
            Role::Broker,
            ip,
            Some(disk.clone()),
            broker_main(cfg),
        );
        let slave = if b.with_slave {
            let slave_name = format!("{name}-s");
            let sip = slave_ip(i as u8);
            let slave_disk = SimDiskHandle::new(STORE_ROOT);
            let scfg = SimBrokerConfig {
                broker_name: name.clone(),
                ip: sip,
                port: BROKER_PORT,
                namesrv_addrs: namesrv_addrs.clone(),
                flush: b.flush,
                // Only the metadata-sync bugs are the slave's (t90); the store ones stay the
                // master's.
                debug_bugs: DebugBugs {
                    slave_sync_overwrites_newer_offsets: b
                        .debug_bugs
                        .slave_sync_overwrites_newer_offsets,
                    slave_sync_skips_offsets: b.debug_bugs.slave_sync_skips_offsets,
                    ..DebugBugs::default()
                },
                store_root: STORE_ROOT.into(),
                warm_mapped_file: b.warm_mapped_file,
                ha: SimHa {
                    role: BrokerRole::Slave,
                    broker_id: 1,
                    master_ha_addr: Some(addr(ip, ha_port(BROKER_PORT))),
                    debug_bugs: b.ha_bugs,
                },
            };
            cluster.add_node(
                &slave_name,
                Role::Slave,
                sip,
                Some(slave_disk.clone()),
                broker_main(scfg),
            );
            let slave_addr = addr(sip, BROKER_PORT);
            if spec.consumers_use_slaves {
                oracle.set_broker_group(&slave_addr, &name);
                slaves.insert(
                    addr(ip, BROKER_PORT),
                    BrokerInfo {
                        name: slave_name.clone(),
                        addr: slave_addr,
                        flush: b.flush,
                        status: cluster_status(&cluster, &slave_name),
                    },
                );
            }
            cluster.add_ha_pair(HaPair {
                master: name.clone(),
                master_addr: addr(ip, BROKER_PORT),
                master_disk: disk.clone(),
                slave: slave_name.clone(),
                slave_disk: slave_disk.clone(),
            });
            Some(SlaveFacts {
                name: slave_name,
                disk: slave_disk,
                power_losses: Vec::new(),
            })
        } else {
            None
        };
        oracle.set_broker_group(&addr(ip, BROKER_PORT), &name);
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
                role: b.role,
                slave,
            },
        );
    }
    let mut wcfg = WorkloadConfig::new(TOPIC, namesrv_addrs.clone(), brokers.clone());
    wcfg.body_bytes_max = spec.body_bytes_max;
    wcfg.batch_size_max = spec.batch_size_max;
    wcfg.queue_count = spec.queue_count;
    wcfg.slaves = slaves;

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
            // Even producers speak raw remoting; odd ones use Apogee's client library.
            Arc::new(move |ctx: NodeContext| {
                let name = format!("{}#{}", ctx.name, ctx.incarnation);
                if i % 2 == 0 {
                    Box::pin(producer_main(
                        name,
                        cfg.clone(),
                        oracle.clone(),
                        stop.clone(),
                    )) as super::cluster::BoxFuture
                } else {
                    Box::pin(client_producer_main(
                        name,
                        ctx.ip,
                        cfg.clone(),
                        oracle.clone(),
                        stop.clone(),
                    ))
                }
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

    // An independent observer of the group's committed offsets (for the monotonicity checker).
    {
        let (c, o, stop) = (wcfg.clone(), oracle.clone(), consumers_stop.clone());
        let node = madsim::runtime::Handle::current()
            .get_node(cluster.node_id("admin"))
            .expect("admin node");
        node.spawn(async move {
            while !stop.is_stopped() {
                apogee::rt::sleep_ms(1_000).await;
                record_committed_offsets(&c, &o).await;
            }
        });
    }

    // The byte-prefix checker also runs every second of the run (between fault checkpoints).
    let ha_stop = StopFlag::new();
    if !cluster.ha_pairs().is_empty() {
        let pairs = cluster.ha_pairs().to_vec();
        let found = cluster.ha_violations.clone();
        let stop = ha_stop.clone();
        apogee::rt::spawn(async move {
            while !stop.is_stopped() {
                apogee::rt::sleep_ms(1_000).await;
                for p in &pairs {
                    let v = invariants::ha::check_prefix(
                        &p.master,
                        &p.master_disk,
                        &p.slave_disk,
                        "periodic check",
                    );
                    found.lock().expect("violations").extend(v);
                }
            }
        });
    }

    let mut counts = FaultCounts::default();
    if violations.is_empty() {
        run_safety_phase(
            &mut cluster,
            &spec.plan,
            &consumer_names,
            spec.safety,
            &mut counts,
        )
        .await;
        sabotage_before_liveness(&mut cluster, &spec, &wcfg, &oracle, &facts).await;
        violations.extend(
            liveness_phase(
                &cluster,
                &wcfg,
                &oracle,
                &producers_stop,
                &consumers_stop,
                spec.liveness_deadline,
            )
            .await,
        );
    }
    producers_stop.stop();
    consumers_stop.stop();
    // A slave that never catches up is a liveness failure, but the final scan is complete: the
    // history and disk checkers still run (a diverged slave usually shows there too).
    let slaves_behind = if violations.is_empty() {
        wait_slaves_caught_up(&cluster, spec.liveness_deadline).await
    } else {
        Vec::new()
    };
    ha_stop.stop();

    for (addr, f) in facts.iter_mut() {
        f.power_losses = f.disk.power_losses();
        if let Some(s) = f.slave.as_mut() {
            s.power_losses = s.disk.power_losses();
        }
        let _ = addr;
    }
    let ha_snapshots = cluster.ha_snapshots.lock().expect("snapshots").clone();
    if spec.sabotage == Sabotage::CorruptConsumeQueueUnit {
        corrupt_consume_queue_unit(&cluster, &oracle, &facts);
    }
    let mut report = Report::default();
    oracle.state().disturbances = trace.disturbances();
    {
        let state = oracle.state();
        let input = CheckInput {
            oracle: &state,
            brokers: &facts,
            topic: TOPIC,
            ha_snapshots: &ha_snapshots,
        };
        if violations.is_empty() {
            violations.extend(invariants::check_final(&input, &mut report));
        } else {
            // Liveness failed: the final scan is missing, check what the history allows.
            violations.extend(invariants::check_online(&input));
        }
    }
    violations.extend(slaves_behind);
    // Byte-prefix violations found during the run (at crashes, heals, periodic checks).
    violations.extend(
        std::mem::take(&mut *cluster.ha_violations.lock().expect("violations"))
            .into_iter()
            .take(invariants::VIOLATIONS_SHOWN_MAX),
    );
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

/// Every slave reaches its master's end (both logs read from the disks) before the checkers run.
async fn wait_slaves_caught_up(cluster: &Cluster, deadline: Duration) -> Vec<Violation> {
    let end = apogee::rt::now() + deadline;
    for pair in cluster.ha_pairs() {
        loop {
            let master_end = invariants::ha::valid_end(&pair.master_disk);
            let slave_end = invariants::ha::valid_end(&pair.slave_disk);
            if slave_end == master_end {
                cluster.trace().event(format!(
                    "liveness: slave {} caught up at {slave_end}",
                    pair.slave
                ));
                break;
            }
            if apogee::rt::now() > end {
                return vec![Violation {
                    invariant: invariants::liveness::NAME,
                    detail: format!(
                        "slave {} at {slave_end} did not catch up with master {} at \
                         {master_end} within {deadline:?}",
                        pair.slave, pair.master
                    ),
                }];
            }
            apogee::rt::sleep_ms(200).await;
        }
    }
    Vec::new()
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

#[allow(unused_assignments)]
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
        match on_node(cluster, "admin", async move {
            workload::probe_send(&c, &o).await
        })
        .await
        {
            Ok(()) => break,
            Err(e) => last = e,
        }
        if apogee::rt::now() > end {
            return fail(format!(
                "no acked probe send within {deadline:?} after healing: {last}"
            ));
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
            return fail(format!(
                "consumers did not catch up within {deadline:?}: {last}"
            ));
        }
        apogee::rt::sleep_ms(500).await;
    }
    consumers_stop.stop();
    trace.event("liveness: consumers caught up");
    // 3. Every queue reads back from min to max.
    loop {
        let (c, o) = (cfg.clone(), oracle.clone());
        match on_node(cluster, "admin", async move {
            workload::final_scan("admin", &c, &o).await
        })
        .await
        {
            Ok(()) => break,
            Err(e) => last = e,
        }
        if apogee::rt::now() > end {
            return fail(format!(
                "final scan did not complete within {deadline:?}: {last}"
            ));
        }
        apogee::rt::sleep_ms(500).await;
    }
    trace.event("liveness: final scan done");
    Vec::new()
}

async fn sabotage_before_liveness(
    cluster: &mut Cluster,
    spec: &ScenarioSpec,
    cfg: &WorkloadConfig,
    oracle: &Oracle,
    facts: &BTreeMap<String, BrokerFacts>,
) {
    match spec.sabotage {
        Sabotage::None | Sabotage::CorruptConsumeQueueUnit => {}
        Sabotage::NeverHealBroker => {
            let b = cluster.names(Role::Broker)[0].clone();
            cluster.clog_node(&b);
        }
        Sabotage::BitRotBody => {
            let target = {
                let st = oracle.state();
                st.consumed
                    .iter()
                    .find(|c| c.body.len() > 16)
                    .map(|c| (c.broker.clone(), c.commitlog_offset, c.body.clone()))
            };
            let Some((broker, commitlog_offset, body)) = target else {
                return;
            };
            let disk = &facts[&broker].disk;
            let dir = disk.store_root().join("commitlog");
            let mut segments: Vec<(u64, std::path::PathBuf)> = disk
                .paths()
                .into_iter()
                .filter(|p| p.parent() == Some(dir.as_path()))
                .filter_map(|p| Some((p.file_name()?.to_str()?.parse().ok()?, p)))
                .collect();
            segments.sort();
            let Some((start, path)) = segments
                .iter()
                .rev()
                .find(|(start, _)| *start <= commitlog_offset as u64)
                .cloned()
            else {
                return;
            };
            let Some(data) = disk.read_live(&path) else {
                return;
            };
            let from = (commitlog_offset as u64 - start) as usize;
            let window = &data[from..data.len().min(from + 4096 + body.len())];
            if let Some(i) = window.windows(body.len()).position(|w| w == &body[..]) {
                let pos = (from + i + 12) as u64;
                disk.sim_disk()
                    .corrupt_byte(&path, pos)
                    .expect("corrupt inside the file");
                cluster.trace().event(format!(
                    "sabotage: bit rot in {} at {pos} (entry {commitlog_offset})",
                    path.display()
                ));
            }
        }
        Sabotage::RogueOffsetCommit => {
            let (c, o) = (cfg.clone(), oracle.clone());
            let brokers = cfg.brokers.clone();
            on_node(cluster, "admin", async move {
                let client = apogee::remoting::RemotingClient::new();
                let Ok(progress) = workload::progress(&c).await else {
                    return;
                };
                let Some(q) = progress.iter().find(|q| q.committed_offset > 1) else {
                    return;
                };
                let inc = brokers
                    .iter()
                    .find(|b| b.addr == q.broker)
                    .map(|b| b.incarnation())
                    .unwrap_or(0);
                let now = apogee::rt::now();
                o.record_offset_event(OffsetEvent {
                    broker: q.broker.clone(),
                    broker_incarnation: inc,
                    group: c.group.clone(),
                    topic: c.topic.clone(),
                    queue_id: q.queue_id,
                    offset: q.committed_offset,
                    started_at: now,
                    finished_at: now,
                    kind: OffsetEventKind::Query,
                });
                // Not recorded in the oracle: to the checker this is the broker moving back.
                let rogue = apogee::remoting::RemotingCommand::request(
                    apogee::remoting::request_code::UPDATE_CONSUMER_OFFSET,
                )
                .with_ext("consumerGroup", &c.group)
                .with_ext("topic", &c.topic)
                .with_ext("queueId", q.queue_id)
                .with_ext("commitOffset", q.committed_offset / 2);
                let _ = client.invoke(&q.broker, rogue, 3_000).await;
                o.trace().event("sabotage: rogue offset commit");
                // Read it back at once, before any consumer re-commits its own position: the
                // checker must see the broker report an offset no client committed.
                let started_at = apogee::rt::now();
                let query = apogee::remoting::RemotingCommand::request(
                    apogee::remoting::request_code::QUERY_CONSUMER_OFFSET,
                )
                .with_ext("consumerGroup", &c.group)
                .with_ext("topic", &c.topic)
                .with_ext("queueId", q.queue_id);
                if let Ok(resp) = client.invoke(&q.broker, query, 3_000).await {
                    if let Ok(offset) = resp.required::<i64>("offset") {
                        o.record_offset_event(OffsetEvent {
                            broker: q.broker.clone(),
                            broker_incarnation: inc,
                            group: c.group.clone(),
                            topic: c.topic.clone(),
                            queue_id: q.queue_id,
                            offset,
                            started_at,
                            finished_at: apogee::rt::now(),
                            kind: OffsetEventKind::Query,
                        });
                    }
                }
            })
            .await;
        }
    }
}

fn corrupt_consume_queue_unit(
    cluster: &Cluster,
    oracle: &Oracle,
    facts: &BTreeMap<String, BrokerFacts>,
) {
    let target = {
        let st = oracle.state();
        st.scanned_queues
            .iter()
            .find(|(_, (min, max))| max > min)
            .map(|((b, t, q), (min, _))| (b.clone(), t.clone(), *q, *min))
    };
    let Some((broker, topic, queue_id, min)) = target else {
        return;
    };
    let disk = &facts[&broker].disk;
    let dir = disk
        .store_root()
        .join("consumequeue")
        .join(&topic)
        .join(queue_id.to_string());
    let unit_pos = min as u64 * invariants::cq_points_at_commitlog::CQ_UNIT_SIZE;
    let mut files: Vec<(u64, std::path::PathBuf)> = disk
        .paths()
        .into_iter()
        .filter(|p| p.parent() == Some(dir.as_path()))
        .filter_map(|p| Some((p.file_name()?.to_str()?.parse().ok()?, p)))
        .collect();
    files.sort();
    if let Some((start, path)) = files.iter().rev().find(|(s, _)| *s <= unit_pos) {
        // Byte 11 is the low byte of the unit's size field.
        let pos = unit_pos - start + 11;
        if disk.sim_disk().corrupt_byte(path, pos).is_ok() {
            cluster.trace().event(format!(
                "sabotage: corrupt ConsumeQueue unit {min} of {topic}/{queue_id} on {broker}"
            ));
        }
    }
}

/// Reads the group's committed offset of every queue and records each found value as a Query.
async fn record_committed_offsets(cfg: &WorkloadConfig, oracle: &Oracle) {
    let client = apogee::remoting::RemotingClient::new();
    for b in cfg.brokers.iter().chain(cfg.slaves.values()) {
        for queue_id in 0..cfg.queue_count {
            let started_at = apogee::rt::now();
            let incarnation = b.incarnation();
            let req = apogee::remoting::RemotingCommand::request(
                apogee::remoting::request_code::QUERY_CONSUMER_OFFSET,
            )
            .with_ext("consumerGroup", &cfg.group)
            .with_ext("topic", &cfg.topic)
            .with_ext("queueId", queue_id)
            .with_ext("setZeroIfNotFound", false);
            let Ok(resp) = client.invoke(&b.addr, req, 1_000).await else {
                continue;
            };
            if resp.code != apogee::remoting::response_code::SUCCESS {
                continue;
            }
            let Ok(offset) = resp.required::<i64>("offset") else {
                continue;
            };
            // The broker restarted while we asked: the value belongs to no known incarnation.
            if b.incarnation() != incarnation {
                continue;
            }
            oracle.record_offset_event(OffsetEvent {
                broker: b.addr.clone(),
                broker_incarnation: incarnation,
                group: cfg.group.clone(),
                topic: cfg.topic.clone(),
                queue_id,
                offset,
                started_at,
                finished_at: apogee::rt::now(),
                kind: OffsetEventKind::Query,
            });
        }
    }
}
