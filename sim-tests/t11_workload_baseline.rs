//! t11: the full workload (producers with batches and retries, a consumer group) and every
//! checker, with no faults. The baseline every fault scenario is compared against.
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

const NAME: &str = "t11_workload_baseline";

async fn run_scenario() -> SimOutcome {
    let trace = Trace::new();
    let mut spec = ScenarioSpec::new(NAME);
    spec.brokers = vec![BrokerSpec::new(FlushDiskType::SyncFlush)];
    spec.safety = Duration::from_secs(10);
    scenario::run(spec, trace.clone()).await.assert_ok(&trace)
}

#[test]
fn t11_workload_baseline() {
    harness::run(NAME, Duration::from_secs(900), run_scenario);
}
