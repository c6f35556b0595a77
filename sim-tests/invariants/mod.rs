//! The checkers: one file per property, each read-only over the oracle's history and the
//! brokers' disks, drawing no randomness. Each returns its violations (never panics), so the
//! scenarios can fail loudly and the `t90_checkers_fire` tests can show each checker firing.
#![allow(dead_code)]

pub mod acked_not_lost;
pub mod committed_offsets_monotonic;
pub mod cq_points_at_commitlog;
pub mod ha;
pub mod liveness;
pub mod no_phantom;
pub mod queue_offsets;
pub mod reconsume_window;

use std::collections::BTreeMap;

use apogee::rt::Instant;
use apogee::store::{BrokerRole, FlushDiskType};

use crate::harness::disk::SimDiskHandle;
use crate::harness::oracle::OracleState;

/// What the checkers know about one broker, keyed by its address in [`CheckInput::brokers`].
#[derive(Clone)]
pub struct BrokerFacts {
    pub name: String,
    pub flush: FlushDiskType,
    /// Instants of the crashes that dropped unsynced data (power loss, torn power loss).
    pub power_losses: Vec<Instant>,
    pub disk: SimDiskHandle,
    /// ASYNC_MASTER (RocketMQ's default) or SYNC_MASTER.
    pub role: BrokerRole,
    /// The broker's slave, if the scenario runs one.
    pub slave: Option<SlaveFacts>,
}

/// A master's slave as the checkers see it.
#[derive(Clone)]
pub struct SlaveFacts {
    pub name: String,
    pub disk: SimDiskHandle,
    /// Instants of the slave's crashes that dropped unsynced data.
    pub power_losses: Vec<Instant>,
}

impl BrokerFacts {
    /// Was there a power loss strictly after `t`?
    pub fn power_loss_after(&self, t: Instant) -> bool {
        self.power_losses.iter().any(|p| *p > t)
    }

    /// Was there a power loss in `(from, to]`?
    pub fn power_loss_between(&self, from: Instant, to: Instant) -> bool {
        self.power_losses.iter().any(|p| *p > from && *p <= to)
    }
}

pub struct CheckInput<'a> {
    pub oracle: &'a OracleState,
    pub brokers: &'a BTreeMap<String, BrokerFacts>,
    pub topic: &'a str,
    /// What each slave held at every master crash and network heal (HA scenarios).
    pub ha_snapshots: &'a [ha::HaSnapshot],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub invariant: &'static str,
    pub detail: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}] {}", self.invariant, self.detail)
    }
}

/// Figures a checker reports even when it passes (e.g. ASYNC_FLUSH acks lost to power loss,
/// which the contract allows but the run must count).
#[derive(Debug, Default, Clone)]
pub struct Report {
    pub lines: Vec<String>,
}

/// Keeps violation lists readable: the first few in full, then a count.
pub const VIOLATIONS_SHOWN_MAX: usize = 20;

/// Runs the history checkers that are valid at any moment (phantoms, offsets rewritten,
/// committed offsets moving backwards).
pub fn check_online(input: &CheckInput) -> Vec<Violation> {
    let mut v = Vec::new();
    v.extend(no_phantom::check(input));
    v.extend(queue_offsets::check_history(input));
    v.extend(committed_offsets_monotonic::check(input));
    v
}

/// Runs every checker that needs the final scan (call once the cluster is quiet).
pub fn check_final(input: &CheckInput, report: &mut Report) -> Vec<Violation> {
    let mut v = check_online(input);
    v.extend(acked_not_lost::check(input, report));
    v.extend(queue_offsets::check_final_scan(input));
    v.extend(committed_offsets_monotonic::check_final(input));
    v.extend(reconsume_window::check(input, report));
    for (addr, facts) in input.brokers {
        if let Some(slave) = &facts.slave {
            v.extend(ha::check_prefix(
                addr,
                &facts.disk,
                &slave.disk,
                "at the end",
            ));
        }
    }
    if input.brokers.values().any(|b| b.slave.is_some()) {
        v.extend(ha::check(input, report));
    }
    for (addr, facts) in input.brokers {
        let bounds: BTreeMap<i32, (i64, i64)> = input
            .oracle
            .scanned_queues
            .iter()
            .filter(|((b, t, _), _)| b == addr && t == input.topic)
            .map(|((_, _, q), bounds)| (*q, *bounds))
            .collect();
        v.extend(cq_points_at_commitlog::check(
            addr,
            facts,
            input.topic,
            &bounds,
            report,
        ));
    }
    v
}
