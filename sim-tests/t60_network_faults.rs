//! t60: network faults between clients, namesrv and broker: one-way link clogs, broker
//! isolation, latency spikes and broker pauses, with a process crash now and then.
#![cfg(madsim)]

mod harness;
mod invariants;

use std::time::Duration;

#[allow(unused_imports)]
use apogee::store::FlushDiskType;
#[allow(unused_imports)]
use harness::disk::{CrashMode, DiskFault};
#[allow(unused_imports)]
use harness::faults::{FaultKind, FaultPlan};
use harness::scenario::{self, BrokerSpec, ScenarioSpec};
use harness::{SimOutcome, Trace};

const NAME: &str = "t60_network_faults";

async fn run_scenario() -> SimOutcome {
    let trace = Trace::new();
    let mut spec = ScenarioSpec::new(NAME);
    spec.brokers = vec![BrokerSpec::new(FlushDiskType::SyncFlush)];
    spec.plan = FaultPlan::new(vec![
        FaultKind::ClogLink,
        FaultKind::PartitionBroker,
        FaultKind::Latency,
        FaultKind::PauseBroker,
        FaultKind::CrashBroker(CrashMode::ProcessCrash),
    ]);
    spec.safety = Duration::from_secs(20);
    scenario::run(spec, trace.clone()).await.assert_ok(&trace)
}

#[test]
fn t60_network_faults() {
    harness::run(NAME, Duration::from_secs(900), run_scenario);
}
