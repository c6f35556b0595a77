//! t71: HA faults other than a plain master crash, on a SYNC_MASTER (three seeds in four) or an
//! ASYNC_MASTER with a slave:
//! - the slave crashes (any mode) and restarts mid-transfer: it catches up, the prefix holds;
//! - master and slave are cut apart: SYNC_MASTER answers FLUSH_SLAVE_TIMEOUT or
//!   SLAVE_NOT_AVAILABLE, never a SUCCESS for a message the slave lacks;
//! - the master loses power under ASYNC_FLUSH after the slave received the tail: it comes back
//!   shorter than its slave, refuses writes, takes the tail back, and loses no SUCCESS.
#![cfg(madsim)]

mod harness;
mod invariants;

use std::time::Duration;

use apogee::store::{BrokerRole, FlushDiskType};
use harness::disk::CrashMode;
use harness::faults::{FaultKind, FaultPlan};
use harness::scenario::{self, BrokerSpec, ScenarioSpec};
use harness::{chance, SimOutcome, Trace};

const NAME: &str = "t71_ha_faults";

async fn run_scenario() -> SimOutcome {
    let trace = Trace::new();
    let mut spec = ScenarioSpec::new(NAME);
    let role = if chance(0.75) {
        BrokerRole::SyncMaster
    } else {
        BrokerRole::AsyncMaster
    };
    trace.event(format!("t71: master {role:?} with ASYNC_FLUSH"));
    // ASYNC_FLUSH: a master power loss drops a tail the slave may already hold.
    spec.brokers = vec![BrokerSpec::with_slave(FlushDiskType::AsyncFlush, role)];
    spec.plan = FaultPlan::new(vec![
        FaultKind::CrashSlave(CrashMode::ProcessCrash),
        FaultKind::CrashSlave(CrashMode::PowerLoss),
        FaultKind::CrashSlave(CrashMode::TornPowerLoss),
        FaultKind::PartitionMasterSlave,
        FaultKind::PartitionMasterSlave,
        FaultKind::CrashBroker(CrashMode::PowerLoss),
        FaultKind::CrashBroker(CrashMode::TornPowerLoss),
    ]);
    spec.consumers = 1;
    spec.safety = Duration::from_secs(20);
    let mut outcome = scenario::run(spec, trace.clone()).await.assert_ok(&trace);
    outcome.summary = format!("role={role:?} {}", outcome.summary);
    outcome
}

#[test]
fn t71_ha_faults() {
    harness::run(NAME, Duration::from_secs(900), run_scenario);
}
