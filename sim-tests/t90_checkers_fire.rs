//! t90: every checker can fail. Each test switches on one deliberate bug — in the store
//! (`StoreConfig.debug_bugs`) or, for properties no store switch breaks, in the harness
//! (`Sabotage`) — runs a small seed range in this process, and passes when the targeted
//! checker reports a violation for some seed (printing which, for replay with
//! `SIM_T90_SEED=<n>`). The seed range is swept here, so `scripts/sim.sh` runs this binary
//! once, not once per seed.
#![cfg(madsim)]

mod harness;
mod invariants;

use std::time::Duration;

use apogee::ha::HaDebugBugs;
use apogee::store::{BrokerRole, DebugBugs, FlushDiskType};
use harness::disk::CrashMode;
use harness::faults::{FaultKind, FaultPlan};
use harness::scenario::{self, BrokerSpec, Sabotage, ScenarioSpec};
use harness::Trace;

/// Seeds tried per checker (the first that fires ends the search).
const SEEDS_MAX: u64 = 8;

/// Runs `make()` for seeds 1..=SEEDS_MAX (or just `SIM_T90_SEED`), one fresh runtime per seed
/// on its own thread, until `invariant` fires.
fn assert_fires(invariant: &'static str, make: fn() -> ScenarioSpec) {
    let seeds: Vec<u64> = match std::env::var("SIM_T90_SEED") {
        Ok(s) => vec![s.parse().expect("SIM_T90_SEED is a number")],
        Err(_) => (1..=SEEDS_MAX).collect(),
    };
    let mut tried = Vec::new();
    for seed in seeds {
        let outcome = std::thread::spawn(move || {
            let mut rt =
                madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
            rt.set_time_limit(Duration::from_secs(900));
            rt.block_on(async move {
                let trace = Trace::new();
                let result = scenario::run(make(), trace.clone()).await;
                let fired = result.fired(invariant);
                let first = result
                    .violations
                    .iter()
                    .find(|v| v.invariant == invariant)
                    .map(|v| v.to_string());
                let others: Vec<&'static str> =
                    result.violations.iter().map(|v| v.invariant).collect();
                (fired, first, others, result.outcome.summary)
            })
        })
        .join();
        match outcome {
            Ok((true, first, _, summary)) => {
                println!(
                    "CHECKER-FIRED {invariant} seed={seed}: {}\n  run: {summary}",
                    first.unwrap_or_default()
                );
                return;
            }
            Ok((false, _, others, summary)) => {
                tried.push(format!("seed {seed}: not fired (others: {others:?}; {summary})"))
            }
            Err(_) => tried.push(format!(
                "seed {seed}: the simulation panicked (an assertion inside the code caught the bug first)"
            )),
        }
    }
    panic!(
        "checker {invariant} never fired with its deliberate bug:\n  {}",
        tried.join("\n  ")
    );
}

fn base(name: &'static str) -> ScenarioSpec {
    let mut spec = ScenarioSpec::new(name);
    spec.safety = Duration::from_secs(10);
    spec.liveness_deadline = Duration::from_secs(40);
    spec
}

#[test]
fn acked_not_lost_fires_when_sync_flush_acks_before_fsync() {
    assert_fires(invariants::acked_not_lost::NAME, || {
        let mut spec = base("t90_ack_before_fsync");
        let mut broker = BrokerSpec::new(FlushDiskType::SyncFlush);
        broker.debug_bugs = DebugBugs {
            ack_sync_flush_before_fsync: true,
            ..DebugBugs::default()
        };
        spec.brokers = vec![broker];
        let mut plan = FaultPlan::new(vec![FaultKind::CrashBroker(CrashMode::PowerLoss)]);
        plan.gap_ms = (300, 1500);
        spec.plan = plan;
        spec
    });
}

#[test]
fn queue_offsets_fires_when_recovery_reuses_a_queue_offset() {
    assert_fires(invariants::queue_offsets::NAME, || {
        let mut spec = base("t90_reuse_queue_offset");
        let mut broker = BrokerSpec::new(FlushDiskType::SyncFlush);
        broker.debug_bugs = DebugBugs {
            reuse_queue_offset_after_recovery: true,
            ..DebugBugs::default()
        };
        spec.brokers = vec![broker];
        spec.plan = FaultPlan::new(vec![FaultKind::CrashBroker(CrashMode::ProcessCrash)]);
        spec
    });
}

#[test]
fn no_phantom_fires_on_bit_rot_in_a_body() {
    assert_fires(invariants::no_phantom::NAME, || {
        let mut spec = base("t90_bit_rot");
        spec.sabotage = Sabotage::BitRotBody;
        spec
    });
}

#[test]
fn committed_offsets_fire_when_an_offset_moves_back() {
    assert_fires(invariants::committed_offsets_monotonic::NAME, || {
        let mut spec = base("t90_rogue_commit");
        spec.sabotage = Sabotage::RogueOffsetCommit;
        spec
    });
}

#[test]
fn cq_checker_fires_on_a_corrupt_consume_queue_unit() {
    assert_fires(invariants::cq_points_at_commitlog::NAME, || {
        let mut spec = base("t90_corrupt_cq");
        spec.sabotage = Sabotage::CorruptConsumeQueueUnit;
        spec
    });
}

#[test]
fn liveness_fires_when_a_broker_never_heals() {
    assert_fires(invariants::liveness::NAME, || {
        let mut spec = base("t90_never_heal");
        spec.sabotage = Sabotage::NeverHealBroker;
        spec.liveness_deadline = Duration::from_secs(20);
        spec
    });
}

#[test]
fn ha_acked_on_slave_fires_when_sync_master_acks_before_the_slave() {
    assert_fires(invariants::ha::ACKED_ON_SLAVE, || {
        let mut spec = base("t90_ha_ack_before_slave");
        let mut broker = BrokerSpec::with_slave(FlushDiskType::AsyncFlush, BrokerRole::SyncMaster);
        broker.ha_bugs = HaDebugBugs {
            ack_before_slave_confirms: true,
            ..HaDebugBugs::default()
        };
        spec.brokers = vec![broker];
        spec.consumers = 1;
        spec.plan = FaultPlan::new(vec![FaultKind::PartitionMasterSlave]);
        spec
    });
}

#[test]
fn ha_byte_prefix_fires_when_the_slave_rewrites_entries() {
    assert_fires(invariants::ha::PREFIX, || {
        let mut spec = base("t90_ha_slave_restamps");
        let mut broker = BrokerSpec::with_slave(FlushDiskType::SyncFlush, BrokerRole::AsyncMaster);
        broker.ha_bugs = HaDebugBugs {
            slave_restamps_entries: true,
            ..HaDebugBugs::default()
        };
        spec.brokers = vec![broker];
        spec.consumers = 1;
        spec
    });
}

#[test]
fn ha_byte_prefix_fires_when_a_short_sync_master_discards_the_slaves_tail() {
    // The master writes new entries where the slave holds the lost ones: the logs diverge (and
    // the slave never catches up again, so liveness fails too and the final scan is missing).
    assert_fires(invariants::ha::PREFIX, || {
        let mut spec = base("t90_ha_discard_sync");
        let mut broker = BrokerSpec::with_slave(FlushDiskType::AsyncFlush, BrokerRole::SyncMaster);
        broker.ha_bugs = HaDebugBugs {
            discard_instead_of_take_back: true,
            ..HaDebugBugs::default()
        };
        spec.brokers = vec![broker];
        spec.consumers = 1;
        spec.plan = FaultPlan::new(vec![FaultKind::CrashBroker(CrashMode::PowerLoss)]);
        spec
    });
}

#[test]
fn ha_async_loss_bounded_fires_when_a_short_master_discards_the_slaves_tail() {
    assert_fires(invariants::ha::ASYNC_LOSS_BOUNDED, || {
        let mut spec = base("t90_ha_discard_async");
        let mut broker = BrokerSpec::with_slave(FlushDiskType::AsyncFlush, BrokerRole::AsyncMaster);
        broker.ha_bugs = HaDebugBugs {
            discard_instead_of_take_back: true,
            ..HaDebugBugs::default()
        };
        spec.brokers = vec![broker];
        spec.consumers = 1;
        spec.plan = FaultPlan::new(vec![FaultKind::CrashBroker(CrashMode::PowerLoss)]);
        spec
    });
}

#[test]
fn committed_offsets_monotonic_fires_when_slave_sync_overwrites_newer_offsets() {
    assert_fires(invariants::committed_offsets_monotonic::NAME, || {
        // t72's master outages, with the slave's metadata sync taking the master's older
        // offsets over the ones consumers committed on the slave (RocketMQ #1094).
        let mut spec = scenario::ha_offsets_outage_spec("t90_slave_sync_overwrites_offsets");
        for broker in &mut spec.brokers {
            broker.debug_bugs.slave_sync_overwrites_newer_offsets = true;
        }
        spec
    });
}

#[test]
fn reconsume_window_fires_when_slave_sync_skips_offsets() {
    assert_fires(invariants::reconsume_window::NAME, || {
        // t72 with a slave that never copies its master's offsets: a consumer moving to it
        // would start far behind what the group committed long ago.
        let mut spec = scenario::ha_offsets_outage_spec("t90_slave_sync_skips_offsets");
        for broker in &mut spec.brokers {
            broker.debug_bugs.slave_sync_skips_offsets = true;
        }
        spec
    });
}
