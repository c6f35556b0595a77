//! Re-consumption stays within the unavoidable window (master/slave groups, t72).
//!
//! A consumer that takes over a queue re-reads what the group consumed after the offset it
//! is given. With a master and a slave that is unavoidable only for commits that had no time
//! to spread: the slave copies offsets every second and pushes back those committed on it, so
//! an offset a consumer committed (acknowledged) on any broker of the group must be visible on
//! every broker of the group [`WINDOW_MS`] later — unless a fault or heal happened within that
//! window (a crash can lose the last commits; a master back from an outage learns the slave's
//! offsets on the next sync round).
//!
//! Rule, for every read (QUERY_CONSUMER_OFFSET by a consumer taking a queue, or by the
//! observer) on a broker of a group with a slave, taken with no fault or heal in the
//! [`WINDOW_MS`] before it: the value is at least every acknowledged commit of that queue on
//! any broker of the group that finished [`WINDOW_MS`] before the read with no fault or heal in
//! the window after it — unless a client later committed the lower value itself (a newer
//! owner's own position). Reports the group's duplicate deliveries as a figure.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use apogee::rt::Instant;

use super::{CheckInput, Report, Violation, VIOLATIONS_SHOWN_MAX};
use crate::harness::oracle::{ObservedBy, OffsetEventKind};

pub const NAME: &str = "reconsume_window";

/// Slave sync period (1 s in simulations) + one sync round cut short by its 3 s request
/// timeout, + the push round, rounded up.
pub const WINDOW_MS: u64 = 6_000;

fn quiet(disturbances: &[Instant], from: Instant, to: Instant) -> bool {
    !disturbances.iter().any(|d| *d >= from && *d <= to)
}

pub fn check(input: &CheckInput, report: &mut Report) -> Vec<Violation> {
    let state = input.oracle;
    let window = Duration::from_millis(WINDOW_MS);
    // Broker groups with more than one address (master + slave).
    let mut members: BTreeMap<&str, usize> = BTreeMap::new();
    for g in state.broker_groups.values() {
        *members.entry(g.as_str()).or_default() += 1;
    }
    let replicated = |addr: &str| members.get(state.broker_group(addr)).copied().unwrap_or(0) > 1;

    let mut violations = Vec::new();
    let mut reads_checked = 0u64;
    for q in &state.offset_events {
        if q.kind != OffsetEventKind::Query || !replicated(&q.broker) {
            continue;
        }
        let Some(window_start) = q.started_at.checked_sub(window) else {
            continue;
        };
        if !quiet(&state.disturbances, window_start, q.finished_at) {
            continue;
        }
        reads_checked += 1;
        let group_of_read = state.broker_group(&q.broker);
        let same_queue = |e: &crate::harness::oracle::OffsetEvent| {
            state.broker_group(&e.broker) == group_of_read
                && e.group == q.group
                && e.topic == q.topic
                && e.queue_id == q.queue_id
        };
        let settled = state.acked_commits.iter().filter(|k| {
            same_queue(k)
                && k.offset > q.offset
                && k.finished_at + window <= q.started_at
                && quiet(&state.disturbances, k.finished_at, k.finished_at + window)
        });
        for k in settled {
            // A client committing the lower value after K is a newer owner's own position.
            let lowered_later = state.offset_events.iter().any(|c| {
                matches!(c.kind, OffsetEventKind::Commit { .. })
                    && same_queue(c)
                    && c.offset == q.offset
                    && c.started_at > k.finished_at
            });
            if !lowered_later {
                violations.push(Violation {
                    invariant: NAME,
                    detail: format!(
                        "{} {} {}/{}: read {} although {} was committed on {} and settled {} ms before the read",
                        q.broker,
                        q.group,
                        q.topic,
                        q.queue_id,
                        q.offset,
                        k.offset,
                        k.broker,
                        WINDOW_MS
                    ),
                });
                break;
            }
        }
        if violations.len() > VIOLATIONS_SHOWN_MAX {
            break;
        }
    }
    if members.values().any(|n| *n > 1) {
        let mut seen = BTreeSet::new();
        let mut duplicates = 0u64;
        for c in state
            .consumed
            .iter()
            .filter(|c| c.by == ObservedBy::Consumer)
        {
            if !seen.insert((c.broker.as_str(), c.queue_id, c.queue_offset)) {
                duplicates += 1;
            }
        }
        report.lines.push(format!(
            "{NAME}: reads_checked={reads_checked} redeliveries={duplicates}"
        ));
    }
    violations
}
