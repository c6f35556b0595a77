//! t20: one SYNC_FLUSH broker under load, crashed again and again in every mode (process
//! crash, power loss, torn power loss). Every SUCCESS ack must survive every crash; offsets
//! stay dense and are never reused; consumers never see phantoms. Even seeds run the broker
//! with warmMapedFileEnable (zeros written and synced ahead of the writer, pending at crashes);
//! the seed decides without drawing from the RNG, so odd seeds replay as before.
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

const NAME: &str = "t20_crash_sync_flush";

async fn run_scenario() -> SimOutcome {
    let trace = Trace::new();
    let mut spec = ScenarioSpec::new(NAME);
    let warm = madsim::runtime::Handle::current().seed() % 2 == 0;
    spec.brokers = vec![BrokerSpec {
        warm_mapped_file: warm,
        ..BrokerSpec::new(FlushDiskType::SyncFlush)
    }];
    spec.plan = FaultPlan::new(
        CrashMode::ALL
            .iter()
            .map(|m| FaultKind::CrashBroker(*m))
            .collect(),
    );
    spec.safety = Duration::from_secs(20);
    let mut outcome = scenario::run(spec, trace.clone()).await.assert_ok(&trace);
    outcome.summary = format!("warm_mapped_file={warm} {}", outcome.summary);
    outcome
}

#[test]
fn t20_crash_sync_flush() {
    harness::run(NAME, Duration::from_secs(900), run_scenario);
}
