//! t30: the namesrv crashes and restarts (and is clogged) while the broker and the clients
//! run. Producers keep their cached route; the broker re-registers; after the faults the
//! route is served again and everything converges.
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

const NAME: &str = "t30_namesrv_restart";

async fn run_scenario() -> SimOutcome {
    let trace = Trace::new();
    let mut spec = ScenarioSpec::new(NAME);
    spec.brokers = vec![BrokerSpec::new(FlushDiskType::AsyncFlush)];
    let mut plan = FaultPlan::new(vec![FaultKind::CrashNamesrv, FaultKind::ClogNode]);
    plan.hold_ms = (500, 6_000);
    spec.plan = plan;
    spec.safety = Duration::from_secs(20);
    scenario::run(spec, trace.clone()).await.assert_ok(&trace)
}

#[test]
fn t30_namesrv_restart() {
    harness::run(NAME, Duration::from_secs(900), run_scenario);
}
