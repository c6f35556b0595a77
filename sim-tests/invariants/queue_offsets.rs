//! Per-queue offsets are dense, never reused and never rewritten (RocketMQ ConsumeQueue
//! semantics: queue offset N is the N-th unit of the queue, forever).
//! - History: every observation of (broker, topic, queue, queue offset) — an ack naming it, a
//!   consumer or the final scan reading it — must name the same message, unless a power loss
//!   after the earlier observation could have dropped that (unsynced, not SYNC-acked) write.
//!   A process crash keeps the page cache, so it never excuses a change.
//! - Final scan: each queue reads back densely from min to max offset, each stored entry
//!   carries the queue id and queue offset it sits at, and CommitLog offsets increase along it.

use std::collections::BTreeMap;

use apogee::rt::Instant;
use apogee::store::FlushDiskType;

use super::{CheckInput, Violation, VIOLATIONS_SHOWN_MAX};
use crate::harness::oracle::{body_id, ObservedBy, SendOutcome};

pub const NAME: &str = "queue_offsets";

#[derive(Debug, Clone)]
struct Observation {
    at: Instant,
    id: Option<u64>,
    what: String,
    /// A SUCCESS ack under SYNC_FLUSH: nothing may ever replace it.
    durable: bool,
}

pub fn check_history(input: &CheckInput) -> Vec<Violation> {
    let mut by_key: BTreeMap<(String, String, i32, i64), Vec<Observation>> = BTreeMap::new();
    for msg in input.oracle.sends.values() {
        for a in &msg.attempts {
            if let SendOutcome::Acked {
                response_code,
                queue_id,
                queue_offset,
            } = a.outcome
            {
                by_key
                    .entry((a.broker.clone(), msg.topic.clone(), queue_id, queue_offset))
                    .or_default()
                    .push(Observation {
                        at: a.started_at,
                        id: Some(msg.id),
                        what: format!("ack of m{} (code {response_code}, {:?})", msg.id, a.flush),
                        durable: response_code == 0 && a.flush == FlushDiskType::SyncFlush,
                    });
            }
        }
    }
    for c in &input.oracle.consumed {
        by_key
            .entry((
                c.broker.clone(),
                c.topic.clone(),
                c.queue_id,
                c.queue_offset,
            ))
            .or_default()
            .push(Observation {
                at: c.started_at,
                id: body_id(&c.body),
                what: format!("{:?} by {}", c.by, c.client),
                durable: false,
            });
    }
    let mut violations = Vec::new();
    for ((broker, topic, queue_id, queue_offset), mut obs) in by_key {
        obs.sort_by_key(|o| o.at);
        let facts = input.brokers.get(&broker);
        for pair in obs.windows(2) {
            let (earlier, later) = (&pair[0], &pair[1]);
            if earlier.id == later.id {
                continue;
            }
            let excused = !earlier.durable
                && facts
                    .map(|f| f.power_loss_after(earlier.at))
                    .unwrap_or(false);
            if !excused {
                violations.push(Violation {
                    invariant: NAME,
                    detail: format!(
                        "{broker}/{topic}/{queue_id}@{queue_offset} rewritten: {} saw m{:?}, \
                         later {} saw m{:?}{}",
                        earlier.what,
                        earlier.id,
                        later.what,
                        later.id,
                        if earlier.durable {
                            " (the first was a SYNC_FLUSH ack)"
                        } else {
                            " with no power loss in between"
                        }
                    ),
                });
                break;
            }
        }
        if violations.len() > VIOLATIONS_SHOWN_MAX {
            break;
        }
    }
    violations
}

pub fn check_final_scan(input: &CheckInput) -> Vec<Violation> {
    let mut violations = Vec::new();
    let mut per_queue: BTreeMap<(&str, &str, i32), Vec<&crate::harness::oracle::Consumed>> =
        BTreeMap::new();
    for c in &input.oracle.consumed {
        if c.by == ObservedBy::FinalScan {
            per_queue
                .entry((&c.broker, &c.topic, c.queue_id))
                .or_default()
                .push(c);
        }
    }
    for ((broker, topic, queue_id), (min, max)) in input
        .oracle
        .scanned_queues
        .iter()
        .map(|((b, t, q), bounds)| ((b.as_str(), t.as_str(), *q), *bounds))
    {
        let fail = |detail: String| Violation {
            invariant: NAME,
            detail: format!("{broker}/{topic}/{queue_id} [{min},{max}): {detail}"),
        };
        if min < 0 || max < min {
            violations.push(fail("bounds make no sense".into()));
            continue;
        }
        let mut entries = per_queue
            .remove(&(broker, topic, queue_id))
            .unwrap_or_default();
        entries.sort_by_key(|c| c.queue_offset);
        let offsets: Vec<i64> = entries.iter().map(|c| c.queue_offset).collect();
        let expected: Vec<i64> = (min..max).collect();
        if offsets != expected {
            violations.push(fail(format!(
                "not dense: scan returned {} entries for {} offsets",
                offsets.len(),
                expected.len()
            )));
            continue;
        }
        let mut last_commitlog_offset = -1;
        for c in &entries {
            if c.stored_queue_offset != c.queue_offset {
                violations.push(fail(format!(
                    "entry at queue offset {} says queue offset {}",
                    c.queue_offset, c.stored_queue_offset
                )));
            }
            if c.stored_queue_id != queue_id {
                violations.push(fail(format!(
                    "entry at queue offset {} says queue id {}",
                    c.queue_offset, c.stored_queue_id
                )));
            }
            if c.commitlog_offset <= last_commitlog_offset {
                violations.push(fail(format!(
                    "CommitLog offset {} at queue offset {} does not increase (previous {})",
                    c.commitlog_offset, c.queue_offset, last_commitlog_offset
                )));
            }
            last_commitlog_offset = c.commitlog_offset;
            if violations.len() > VIOLATIONS_SHOWN_MAX {
                return violations;
            }
        }
    }
    for ((broker, topic, queue_id), entries) in per_queue {
        violations.push(Violation {
            invariant: NAME,
            detail: format!(
                "{broker}/{topic}/{queue_id}: {} scanned entries but no recorded bounds",
                entries.len()
            ),
        });
    }
    violations
}
