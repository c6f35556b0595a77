//! t40: disk full (ENOSPC) and EIO on writes and fsyncs while a SYNC_FLUSH broker appends and
//! flushes, plus crashes. The broker must refuse writes clearly (an error code, never an ack
//! for data it could not make durable), corrupt nothing, and take writes again once the fault
//! is cleared (or after a restart).
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

const NAME: &str = "t40_disk_faults";

async fn run_scenario() -> SimOutcome {
    let trace = Trace::new();
    let mut spec = ScenarioSpec::new(NAME);
    spec.brokers = vec![BrokerSpec::new(FlushDiskType::SyncFlush)];
    spec.plan = FaultPlan::new(vec![
        FaultKind::Disk(DiskFault::NoSpace),
        FaultKind::Disk(DiskFault::WriteEio),
        FaultKind::Disk(DiskFault::SyncEio),
        FaultKind::CrashBroker(CrashMode::ProcessCrash),
        FaultKind::CrashBroker(CrashMode::PowerLoss),
    ]);
    spec.safety = Duration::from_secs(20);
    scenario::run(spec, trace.clone()).await.assert_ok(&trace)
}

#[test]
fn t40_disk_faults() {
    harness::run(NAME, Duration::from_secs(900), run_scenario);
}
