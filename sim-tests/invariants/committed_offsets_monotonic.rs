//! Committed consumer offsets never move backwards on their own and are never invented
//! (RocketMQ ConsumerOffsetManager: the stored value is the last one a client committed).
//! For each (broker, group, topic, queue):
//! - every value read back (QUERY_CONSUMER_OFFSET) is a value some client committed before the
//!   read finished (or 0 for nothing committed yet is never recorded: NOT_FOUND);
//! - within one broker incarnation, a read lower than an earlier read is allowed only if a
//!   client committed that lower value after the earlier read started (a slow consumer's late
//!   commit). A restart may roll back to the last persisted value; that is checked by the
//!   first rule only.
//! With master/slave groups (t72) "some client committed" means on any broker of the group
//! (`OracleState::broker_groups`): a slave copies its master's offsets and pushes back the ones
//! committed on it, so values travel between them; the second rule stays per broker address,
//! so a slave whose sync overwrites a newer offset with the master's older one fails it.

use std::collections::BTreeMap;

use super::{CheckInput, Violation, VIOLATIONS_SHOWN_MAX};
use crate::harness::oracle::{OffsetEvent, OffsetEventKind};

pub const NAME: &str = "committed_offsets_monotonic";

pub fn check(input: &CheckInput) -> Vec<Violation> {
    let mut by_key: BTreeMap<(&str, &str, &str, i32), Vec<&OffsetEvent>> = BTreeMap::new();
    for e in &input.oracle.offset_events {
        by_key
            .entry((&e.broker, &e.group, &e.topic, e.queue_id))
            .or_default()
            .push(e);
    }
    // Commits by (broker group, group, topic, queue): where a read value may come from.
    let state = input.oracle;
    let mut group_commits: BTreeMap<(&str, &str, &str, i32), Vec<&OffsetEvent>> = BTreeMap::new();
    for e in &state.offset_events {
        if matches!(e.kind, OffsetEventKind::Commit { .. }) {
            group_commits
                .entry((
                    state.broker_group(&e.broker),
                    &e.group,
                    &e.topic,
                    e.queue_id,
                ))
                .or_default()
                .push(e);
        }
    }
    let no_commits = Vec::new();
    let mut violations = Vec::new();
    for ((broker, group, topic, queue_id), mut events) in by_key {
        events.sort_by_key(|e| e.started_at);
        let commits: Vec<&&OffsetEvent> = events
            .iter()
            .filter(|e| matches!(e.kind, OffsetEventKind::Commit { .. }))
            .collect();
        let commits_in_group = group_commits
            .get(&(state.broker_group(broker), group, topic, queue_id))
            .unwrap_or(&no_commits);
        // (incarnation, highest read, when that read started)
        let mut high: Option<(u64, i64, apogee::rt::Instant)> = None;
        for e in events.iter().filter(|e| e.kind == OffsetEventKind::Query) {
            let fail = |detail: String| Violation {
                invariant: NAME,
                detail: format!("{broker} {group} {topic}/{queue_id}: {detail}"),
            };
            let committed_before = commits_in_group
                .iter()
                .any(|c| c.offset == e.offset && c.started_at < e.finished_at);
            if !committed_before {
                violations.push(fail(format!(
                    "read {} which no client committed before the read",
                    e.offset
                )));
            }
            match high {
                Some((inc, h, h_at)) if inc == e.broker_incarnation && e.offset < h => {
                    let explained = commits
                        .iter()
                        .any(|c| c.offset == e.offset && c.finished_at > h_at);
                    if !explained {
                        violations.push(fail(format!(
                            "moved backwards from {h} to {} within broker incarnation {inc}",
                            e.offset
                        )));
                    }
                    high = Some((inc, e.offset, e.started_at));
                }
                Some((inc, h, _)) if inc == e.broker_incarnation && e.offset <= h => {}
                _ => high = Some((e.broker_incarnation, e.offset, e.started_at)),
            }
            if violations.len() > VIOLATIONS_SHOWN_MAX {
                return violations;
            }
        }
    }
    violations
}

/// Committed offsets never exceed the queue's max offset at the end.
pub fn check_final(input: &CheckInput) -> Vec<Violation> {
    let mut violations = Vec::new();
    for e in &input.oracle.offset_events {
        if e.kind != OffsetEventKind::Query {
            continue;
        }
        if let Some((_, max)) =
            input
                .oracle
                .scanned_queues
                .get(&(e.broker.clone(), e.topic.clone(), e.queue_id))
        {
            // Offsets beyond max are only possible after an ASYNC power loss shrank the queue.
            let shrunk = input
                .brokers
                .get(&e.broker)
                .map(|f| f.power_loss_after(e.started_at) || !f.power_losses.is_empty())
                .unwrap_or(false);
            if e.offset > *max && !shrunk {
                violations.push(Violation {
                    invariant: NAME,
                    detail: format!(
                        "{} {} {}/{}: committed {} beyond the queue's max offset {}",
                        e.broker, e.group, e.topic, e.queue_id, e.offset, max
                    ),
                });
            }
        }
    }
    violations
}
