//! t50: consumers join and leave the group (killed and restarted as new clients) while the
//! broker crashes; committed offsets never move backwards on their own, nothing consumed is a
//! phantom, and the group catches up once faults stop.
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

const NAME: &str = "t50_consumer_churn";

async fn run_scenario() -> SimOutcome {
    let trace = Trace::new();
    let mut spec = ScenarioSpec::new(NAME);
    spec.brokers = vec![BrokerSpec::new(FlushDiskType::SyncFlush)];
    spec.consumers = 3;
    spec.plan = FaultPlan::new(vec![
        FaultKind::ConsumerChurn,
        FaultKind::ConsumerChurn,
        FaultKind::CrashBroker(CrashMode::ProcessCrash),
        FaultKind::CrashBroker(CrashMode::TornPowerLoss),
    ]);
    spec.safety = Duration::from_secs(20);
    scenario::run(spec, trace.clone()).await.assert_ok(&trace)
}

#[test]
fn t50_consumer_churn() {
    harness::run(NAME, Duration::from_secs(900), run_scenario);
}
