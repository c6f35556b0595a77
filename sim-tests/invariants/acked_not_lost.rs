//! Acknowledged-not-lost, per the durability contract (RocketMQ `FlushDiskType`):
//! - SYNC_FLUSH: a SUCCESS ack is sent only after an fsync covering the message, so the message
//!   survives process crash, power loss and torn power loss;
//! - ASYNC_FLUSH: the ack precedes the fsync, so the message survives a process crash (page
//!   cache) but may be lost by a power loss that happens after it was written. Such losses are
//!   counted and reported, not failed.
//! A FLUSH_DISK_TIMEOUT ack (code 10) promises storage, not durability: treated like ASYNC.
//! - SYNC_MASTER with a slave: a SUCCESS ack means the slave holds the message too, so it
//!   survives the master's power loss even under ASYNC_FLUSH (the master takes the tail back
//!   from the slave), unless the slave lost power as well.
//! "Survives" means the final scan finds the same message (id and bytes) at the acknowledged
//! queue offset.

use std::collections::BTreeMap;

use apogee::store::FlushDiskType;

use super::{CheckInput, Report, Violation};
use crate::harness::oracle::{body_id, ObservedBy, SendOutcome};

pub const NAME: &str = "acked_not_lost";

pub fn check(input: &CheckInput, report: &mut Report) -> Vec<Violation> {
    let mut scanned: BTreeMap<(&str, &str, i32, i64), &crate::harness::oracle::Consumed> =
        BTreeMap::new();
    for c in &input.oracle.consumed {
        if c.by == ObservedBy::FinalScan {
            scanned.insert((&c.broker, &c.topic, c.queue_id, c.queue_offset), c);
        }
    }
    let mut violations = Vec::new();
    let (mut must_survive, mut may_lose, mut lost_allowed) = (0u64, 0u64, 0u64);
    for msg in input.oracle.sends.values() {
        for attempt in &msg.attempts {
            let SendOutcome::Acked {
                response_code,
                queue_id,
                queue_offset,
            } = attempt.outcome
            else {
                continue;
            };
            let Some(facts) = input.brokers.get(&attempt.broker) else {
                violations.push(Violation {
                    invariant: NAME,
                    detail: format!("m{} acked by unknown broker {}", msg.id, attempt.broker),
                });
                continue;
            };
            let replicated_promise = response_code == 0
                && facts.role == apogee::store::BrokerRole::SyncMaster
                && facts
                    .slave
                    .as_ref()
                    .is_some_and(|s| !s.power_losses.iter().any(|p| *p > attempt.started_at));
            let durable_promise = (response_code == 0 && attempt.flush == FlushDiskType::SyncFlush)
                || replicated_promise;
            let required = durable_promise || !facts.power_loss_after(attempt.started_at);
            let found = scanned.get(&(
                attempt.broker.as_str(),
                msg.topic.as_str(),
                queue_id,
                queue_offset,
            ));
            let intact = match found {
                Some(c) => body_id(&c.body) == Some(msg.id) && c.body == msg.body,
                None => false,
            };
            if required {
                must_survive += 1;
            } else {
                may_lose += 1;
            }
            if intact {
                continue;
            }
            if required {
                let what = match found {
                    None => "nothing".to_string(),
                    Some(c) => format!("id {:?} ({} bytes)", body_id(&c.body), c.body.len()),
                };
                violations.push(Violation {
                    invariant: NAME,
                    detail: format!(
                        "m{} acked (code {response_code}, {:?}) at {}/{}/{queue_id}@{queue_offset} \
                         but the final scan holds {what} there; power losses after the send: {}",
                        msg.id,
                        attempt.flush,
                        attempt.broker,
                        msg.topic,
                        facts.power_loss_after(attempt.started_at)
                    ),
                });
            } else {
                lost_allowed += 1;
            }
        }
    }
    report.lines.push(format!(
        "{NAME}: acks_required={must_survive} acks_at_risk={may_lose} lost_to_power_loss={lost_allowed}"
    ));
    violations
}
