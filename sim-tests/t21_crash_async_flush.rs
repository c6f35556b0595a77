//! t21: one ASYNC_FLUSH broker under load, crashed in every mode. Acks survive process
//! crashes; acks older than a power loss may be lost (counted in the summary as
//! lost_to_power_loss); offsets are never reused except where such a loss freed them.
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

const NAME: &str = "t21_crash_async_flush";

async fn run_scenario() -> SimOutcome {
    let trace = Trace::new();
    let mut spec = ScenarioSpec::new(NAME);
    spec.brokers = vec![BrokerSpec::new(FlushDiskType::AsyncFlush)];
    spec.plan = FaultPlan::new(
        CrashMode::ALL
            .iter()
            .map(|m| FaultKind::CrashBroker(*m))
            .collect(),
    );
    spec.safety = Duration::from_secs(20);
    scenario::run(spec, trace.clone()).await.assert_ok(&trace)
}

#[test]
fn t21_crash_async_flush() {
    harness::run(NAME, Duration::from_secs(900), run_scenario);
}
