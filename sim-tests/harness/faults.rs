//! Fault schedule for the safety phase: one fault at a time, each drawn from the seed among the
//! kinds a scenario enables, held for a bounded time and then healed, so recovery stays
//! possible (TigerBeetle VOPR keeps at least one good copy; here: one fault at a time and
//! every crashed node comes back).

use std::time::Duration;

use super::cluster::{Cluster, Role};
use super::disk::{CrashMode, DiskFault};
use super::{draw, sim_now};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// Crash a broker with its disk losing what the mode says, restart it later.
    CrashBroker(CrashMode),
    /// Crash a namesrv (no disk), restart it later.
    CrashNamesrv,
    /// Inject a disk fault on a broker, clear it later (after an EIO, restart the broker).
    Disk(DiskFault),
    /// Freeze a broker's tasks (GC pause), resume later.
    PauseBroker,
    /// Clog all traffic of a broker or a namesrv, unclog later.
    ClogNode,
    /// Clog one direction between a client and a broker.
    ClogLink,
    /// Isolate one broker from everybody.
    PartitionBroker,
    /// Raise network latency to 20..300 ms.
    Latency,
    /// Kill a consumer (it leaves the group), restart it later (it rejoins as a new client).
    ConsumerChurn,
    /// Crash a slave broker in a disk mode, restart it later (HA scenarios).
    CrashSlave(CrashMode),
    /// Cut a master from its slave (both directions), heal later (HA scenarios).
    PartitionMasterSlave,
}

#[derive(Debug, Clone)]
pub struct FaultPlan {
    pub kinds: Vec<FaultKind>,
    /// Quiet time between two faults.
    pub gap_ms: (u64, u64),
    /// How long a fault lasts.
    pub hold_ms: (u64, u64),
}

impl FaultPlan {
    pub fn none() -> Self {
        FaultPlan {
            kinds: Vec::new(),
            gap_ms: (1000, 2000),
            hold_ms: (500, 1500),
        }
    }
    pub fn new(kinds: Vec<FaultKind>) -> Self {
        FaultPlan {
            kinds,
            gap_ms: (500, 3000),
            hold_ms: (200, 3000),
        }
    }
}

/// What was injected (printed in the summary line).
#[derive(Debug, Default, Clone)]
pub struct FaultCounts {
    pub injected: u64,
    pub broker_crashes: u64,
    pub power_losses: u64,
    pub namesrv_crashes: u64,
    pub disk_faults: u64,
    pub network_faults: u64,
    pub consumer_churns: u64,
    pub slave_crashes: u64,
}

impl std::fmt::Display for FaultCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "faults={} broker_crashes={} power_losses={} namesrv_crashes={} disk_faults={} net_faults={} consumer_churn={} slave_crashes={}",
            self.injected,
            self.broker_crashes,
            self.power_losses,
            self.namesrv_crashes,
            self.disk_faults,
            self.network_faults,
            self.consumer_churns,
            self.slave_crashes
        )
    }
}

fn pick(names: &[String]) -> String {
    assert!(!names.is_empty(), "fault needs a target");
    names[draw(0, names.len() as u64) as usize].clone()
}

/// Runs faults until `duration` of simulated time has passed, then returns with every fault
/// healed (nodes restarted, network and disks clean).
pub async fn run_safety_phase(
    cluster: &mut Cluster,
    plan: &FaultPlan,
    consumers: &[String],
    duration: Duration,
    counts: &mut FaultCounts,
) {
    let end = sim_now() + duration;
    cluster
        .trace()
        .event(format!("phase: safety for {}s", duration.as_secs()));
    if plan.kinds.is_empty() {
        apogee::rt::sleep(duration).await;
        return;
    }
    loop {
        let gap = Duration::from_millis(draw(plan.gap_ms.0, plan.gap_ms.1));
        if sim_now() + gap >= end {
            break;
        }
        apogee::rt::sleep(gap).await;
        let kind = plan.kinds[draw(0, plan.kinds.len() as u64) as usize];
        let hold = Duration::from_millis(draw(plan.hold_ms.0, plan.hold_ms.1));
        counts.injected += 1;
        let brokers = cluster.names(Role::Broker);
        let namesrvs = cluster.names(Role::Namesrv);
        let clients = cluster.names(Role::Client);
        match kind {
            FaultKind::CrashBroker(mode) => {
                let b = pick(&brokers);
                cluster.crash(&b, mode);
                counts.broker_crashes += 1;
                if mode != CrashMode::ProcessCrash {
                    counts.power_losses += 1;
                }
                apogee::rt::sleep(hold).await;
                cluster.restart(&b);
            }
            FaultKind::CrashNamesrv => {
                let n = pick(&namesrvs);
                cluster.crash(&n, CrashMode::ProcessCrash);
                counts.namesrv_crashes += 1;
                apogee::rt::sleep(hold).await;
                cluster.restart(&n);
            }
            FaultKind::Disk(fault) => {
                let b = pick(&brokers);
                let disk = cluster.disk(&b).expect("broker has a disk");
                disk.inject(fault);
                cluster
                    .trace()
                    .event(format!("fault: disk {fault:?} on {b}"));
                counts.disk_faults += 1;
                apogee::rt::sleep(hold).await;
                disk.clear_faults();
                cluster.trace().event(format!("heal: disk faults on {b}"));
                if fault != DiskFault::NoSpace && !cluster.is_down(&b) {
                    // After an EIO the store may have poisoned itself (a failed fsync leaves
                    // the page cache in an unknown state); the operator's answer is a restart.
                    // Freed space (ENOSPC) must be picked up without one.
                    cluster.crash(&b, CrashMode::ProcessCrash);
                    apogee::rt::sleep_ms(draw(100, 1000)).await;
                    cluster.restart(&b);
                }
            }
            FaultKind::PauseBroker => {
                let b = pick(&brokers);
                cluster.pause(&b);
                counts.network_faults += 1;
                apogee::rt::sleep(hold).await;
                cluster.resume(&b);
            }
            FaultKind::ClogNode => {
                let mut targets = brokers.clone();
                targets.extend(namesrvs.iter().cloned());
                let n = pick(&targets);
                cluster.clog_node(&n);
                counts.network_faults += 1;
                apogee::rt::sleep(hold).await;
                cluster.heal_network();
            }
            FaultKind::ClogLink => {
                let (c, b) = (pick(&clients), pick(&brokers));
                if draw(0, 2) == 0 {
                    cluster.clog_link(&c, &b);
                } else {
                    cluster.clog_link(&b, &c);
                }
                counts.network_faults += 1;
                apogee::rt::sleep(hold).await;
                cluster.heal_network();
            }
            FaultKind::PartitionBroker => {
                let b = pick(&brokers);
                cluster.partition(&[b]);
                counts.network_faults += 1;
                apogee::rt::sleep(hold).await;
                cluster.heal_network();
            }
            FaultKind::Latency => {
                cluster.set_latency(Duration::from_millis(20), Duration::from_millis(300));
                counts.network_faults += 1;
                apogee::rt::sleep(hold).await;
                cluster.heal_network();
            }
            FaultKind::CrashSlave(mode) => {
                let slaves = cluster.names(Role::Slave);
                if slaves.is_empty() {
                    continue;
                }
                let s = pick(&slaves);
                cluster.crash(&s, mode);
                counts.slave_crashes += 1;
                apogee::rt::sleep(hold).await;
                cluster.restart(&s);
            }
            FaultKind::PartitionMasterSlave => {
                let pairs: Vec<(String, String)> = cluster
                    .ha_pairs()
                    .iter()
                    .map(|p| (p.master.clone(), p.slave.clone()))
                    .collect();
                if pairs.is_empty() {
                    continue;
                }
                let (m, s) = pairs[draw(0, pairs.len() as u64) as usize].clone();
                cluster.partition_pair(&m, &s);
                counts.network_faults += 1;
                apogee::rt::sleep(hold).await;
                cluster.heal_network();
            }
            FaultKind::ConsumerChurn => {
                if consumers.is_empty() {
                    continue;
                }
                let c = pick(consumers);
                cluster.crash(&c, CrashMode::ProcessCrash);
                counts.consumer_churns += 1;
                apogee::rt::sleep(hold * 2).await;
                cluster.restart(&c);
            }
        }
    }
    cluster.heal_all();
    cluster
        .trace()
        .event("phase: safety ends, all faults healed");
}
