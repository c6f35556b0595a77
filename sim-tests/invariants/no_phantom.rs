//! No phantom message: everything a consumer or the final scan read was sent by the workload,
//! byte for byte (body, topic, tags, keys), and its first send started before the read ended.

use super::{CheckInput, Violation};
use crate::harness::oracle::body_id;

pub const NAME: &str = "no_phantom";

pub fn check(input: &CheckInput) -> Vec<Violation> {
    let mut violations = Vec::new();
    for c in &input.oracle.consumed {
        let fail = |detail: String| Violation {
            invariant: NAME,
            detail: format!(
                "{:?} by {} at {}/{}/{}@{}: {detail}",
                c.by, c.client, c.broker, c.topic, c.queue_id, c.queue_offset
            ),
        };
        let Some(id) = body_id(&c.body) else {
            violations.push(fail(format!(
                "body of {} bytes carries no id",
                c.body.len()
            )));
            continue;
        };
        let Some(sent) = input.oracle.sends.get(&id) else {
            violations.push(fail(format!("id {id} was never sent")));
            continue;
        };
        if sent.body != c.body {
            let first_diff = sent
                .body
                .iter()
                .zip(c.body.iter())
                .position(|(a, b)| a != b)
                .unwrap_or(sent.body.len().min(c.body.len()));
            violations.push(fail(format!(
                "m{id} body differs: sent {} bytes, read {} bytes, first difference at byte {first_diff}",
                sent.body.len(),
                c.body.len()
            )));
        }
        if sent.topic != c.topic {
            violations.push(fail(format!(
                "m{id} topic {} read as {}",
                sent.topic, c.topic
            )));
        }
        if sent.tags != c.tags {
            violations.push(fail(format!(
                "m{id} tags {:?} read as {:?}",
                sent.tags, c.tags
            )));
        }
        let keys_ok = c
            .keys
            .as_deref()
            .map(|k| k.split(' ').any(|k| k == sent.keys))
            .unwrap_or(false);
        if !keys_ok {
            violations.push(fail(format!(
                "m{id} keys {:?} read as {:?}",
                sent.keys, c.keys
            )));
        }
        let first_attempt = sent.attempts.iter().map(|a| a.started_at).min();
        match first_attempt {
            None => violations.push(fail(format!("m{id} read but no send attempt recorded"))),
            // The pull may start before the send (it is processed later); it may not *end* first.
            Some(t) if t > c.finished_at => {
                violations.push(fail(format!("m{id} read before it was first sent")))
            }
            Some(_) => {}
        }
        if violations.len() > super::VIOLATIONS_SHOWN_MAX {
            break;
        }
    }
    violations
}
