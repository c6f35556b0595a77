//! t70: a master with a slave under load; the master crashes again and again in every mode
//! (process crash, power loss, torn power loss). Per seed: SYNC_MASTER or ASYNC_MASTER, and
//! SYNC_FLUSH or ASYNC_FLUSH. Checkers, besides the single-broker ones:
//! - the slave's CommitLog is always a byte prefix of the master's (at every crash, every
//!   second, at the end);
//! - SYNC_MASTER: every SUCCESS is on the slave when the master dies, and survives the
//!   master's power loss even under ASYNC_FLUSH (the master takes the tail back);
//! - ASYNC_MASTER: what is lost lay beyond the slave's end at the crash; the count is reported.
#![cfg(madsim)]

mod harness;
mod invariants;

use std::time::Duration;

use apogee::store::{BrokerRole, FlushDiskType};
use harness::disk::CrashMode;
use harness::faults::{FaultKind, FaultPlan};
use harness::scenario::{self, BrokerSpec, ScenarioSpec};
use harness::{chance, SimOutcome, Trace};

const NAME: &str = "t70_ha_master_crash";

async fn run_scenario() -> SimOutcome {
    let trace = Trace::new();
    let mut spec = ScenarioSpec::new(NAME);
    // Three SYNC_MASTER seeds in four: that is where the acknowledgement promise is.
    let role = if chance(0.75) {
        BrokerRole::SyncMaster
    } else {
        BrokerRole::AsyncMaster
    };
    let flush = if chance(0.5) {
        FlushDiskType::SyncFlush
    } else {
        FlushDiskType::AsyncFlush
    };
    trace.event(format!("t70: master {role:?} with {flush:?}"));
    spec.brokers = vec![BrokerSpec::with_slave(flush, role)];
    spec.plan = FaultPlan::new(
        CrashMode::ALL
            .iter()
            .map(|m| FaultKind::CrashBroker(*m))
            .collect(),
    );
    spec.consumers = 1;
    spec.safety = Duration::from_secs(20);
    let mut outcome = scenario::run(spec, trace.clone()).await.assert_ok(&trace);
    outcome.summary = format!("role={role:?} flush={flush:?} {}", outcome.summary);
    outcome
}

#[test]
fn t70_ha_master_crash() {
    harness::run(NAME, Duration::from_secs(900), run_scenario);
}
