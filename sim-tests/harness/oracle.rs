//! The client oracle: records every send attempt and its outcome (acked with status and queue
//! offset / failed with a response code / unknown), every consumed message, every committed
//! consumer offset the workload sent and every committed offset it read back, and the final
//! scan of every queue. It only records; the checkers in `sim-tests/invariants/` judge.
//!
//! Observation times are the *start* of the request (the earliest moment the broker could have
//! acted on it), so "was there a power loss after this write?" is answered conservatively.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use apogee::rt::Instant;
use apogee::store::FlushDiskType;
use bytes::Bytes;

use super::Trace;

/// The workload's own id for one logical message (stable across retries), carried in the
/// first 8 bytes of the body and in the KEYS property (`m<id>`).
pub type MessageId = u64;

pub const BODY_ID_BYTES: usize = 8;

/// Reads the logical id back out of a body.
pub fn body_id(body: &[u8]) -> Option<MessageId> {
    let head: [u8; BODY_ID_BYTES] = body.get(..BODY_ID_BYTES)?.try_into().ok()?;
    Some(u64::from_le_bytes(head))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// SUCCESS (0) or a "sent but" status (FLUSH_DISK_TIMEOUT 10, ...): the broker stored it.
    Acked {
        response_code: i32,
        queue_id: i32,
        /// Queue offset of this message (first + index within its batch).
        queue_offset: i64,
    },
    /// The broker answered with an error code: it says it did not store the message.
    Failed { response_code: i32, remark: String },
    /// Timeout or connection loss: stored or not, nobody knows.
    Unknown { reason: String },
}

#[derive(Debug, Clone)]
pub struct SendAttempt {
    pub broker: String,
    pub started_at: Instant,
    pub finished_at: Instant,
    pub flush: FlushDiskType,
    pub batch_size: usize,
    pub outcome: SendOutcome,
}

#[derive(Debug, Clone)]
pub struct SentMessage {
    pub id: MessageId,
    pub topic: String,
    pub tags: Option<String>,
    pub keys: String,
    pub body: Bytes,
    pub attempts: Vec<SendAttempt>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObservedBy {
    Consumer,
    FinalScan,
}

/// A message read back from a queue (by a consumer or the final scan).
#[derive(Debug, Clone)]
pub struct Consumed {
    pub by: ObservedBy,
    pub client: String,
    pub broker: String,
    pub topic: String,
    pub queue_id: i32,
    /// Queue offset the pull placed it at (position in the response).
    pub queue_offset: i64,
    /// The queue offset written inside the stored entry.
    pub stored_queue_offset: i64,
    pub stored_queue_id: i32,
    pub commitlog_offset: i64,
    pub body: Bytes,
    pub tags: Option<String>,
    pub keys: Option<String>,
    pub started_at: Instant,
    /// When the read's response arrived.
    pub finished_at: Instant,
}

/// A committed offset the workload sent (UPDATE_CONSUMER_OFFSET) or read back
/// (QUERY_CONSUMER_OFFSET).
#[derive(Debug, Clone)]
pub struct OffsetEvent {
    pub broker: String,
    /// Broker incarnation as the harness knew it when the request started.
    pub broker_incarnation: u64,
    pub group: String,
    pub topic: String,
    pub queue_id: i32,
    pub offset: i64,
    pub started_at: Instant,
    pub finished_at: Instant,
    pub kind: OffsetEventKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetEventKind {
    /// A commit the broker acknowledged (or one whose fate is unknown: `acked == false`).
    Commit { acked: bool },
    /// A value read back.
    Query,
}

#[derive(Default)]
pub struct OracleState {
    pub sends: BTreeMap<MessageId, SentMessage>,
    pub consumed: Vec<Consumed>,
    pub offset_events: Vec<OffsetEvent>,
    /// Final scan: (broker, topic, queue_id) -> (min offset, max offset) reported by the broker.
    pub scanned_queues: BTreeMap<(String, String, i32), (i64, i64)>,
    /// Broker address -> broker group (brokerName) for masters and their slaves: a committed
    /// offset read on one may have been committed on another of its group (metadata sync).
    pub broker_groups: BTreeMap<String, String>,
    /// Consumer commits the broker acknowledged, with the acknowledgement's arrival.
    pub acked_commits: Vec<OffsetEvent>,
    /// Instants of injected faults and heals (copied from the trace before checking).
    pub disturbances: Vec<Instant>,
    next_id: MessageId,
}

impl OracleState {
    /// The broker group of `addr` (the address itself when unknown).
    pub fn broker_group<'a>(&'a self, addr: &'a str) -> &'a str {
        self.broker_groups.get(addr).map_or(addr, String::as_str)
    }
}

#[derive(Clone)]
pub struct Oracle {
    state: Arc<Mutex<OracleState>>,
    trace: Trace,
}

impl Oracle {
    pub fn new(trace: Trace) -> Oracle {
        Oracle {
            state: Arc::new(Mutex::new(OracleState {
                next_id: 1,
                ..Default::default()
            })),
            trace,
        }
    }

    pub fn record_acked_commit(&self, event: OffsetEvent) {
        self.state().acked_commits.push(event);
    }

    pub fn set_broker_group(&self, addr: &str, group: &str) {
        self.state()
            .broker_groups
            .insert(addr.to_string(), group.to_string());
    }

    /// Read access for checkers.
    pub fn state(&self) -> MutexGuard<'_, OracleState> {
        self.state.lock().expect("oracle lock")
    }

    pub fn trace(&self) -> &Trace {
        &self.trace
    }

    /// Registers a new logical message before its first attempt.
    pub fn new_message(
        &self,
        topic: &str,
        tags: Option<String>,
        make_body: impl FnOnce(MessageId) -> Bytes,
    ) -> SentMessage {
        let mut st = self.state();
        let id = st.next_id;
        st.next_id += 1;
        let body = make_body(id);
        assert_eq!(
            body_id(&body),
            Some(id),
            "workload body must start with its id"
        );
        let msg = SentMessage {
            id,
            topic: topic.to_string(),
            tags,
            keys: format!("m{id}"),
            body,
            attempts: Vec::new(),
        };
        st.sends.insert(id, msg.clone());
        msg
    }

    pub fn record_attempt(&self, id: MessageId, attempt: SendAttempt) {
        let text = match &attempt.outcome {
            SendOutcome::Acked {
                response_code,
                queue_id,
                queue_offset,
            } => format!("ack m{id} code={response_code} q={queue_id} off={queue_offset}"),
            SendOutcome::Failed { response_code, .. } => {
                format!("fail m{id} code={response_code}")
            }
            SendOutcome::Unknown { .. } => format!("unknown m{id}"),
        };
        self.trace.event(text);
        let mut st = self.state();
        let msg = st
            .sends
            .get_mut(&id)
            .unwrap_or_else(|| panic!("attempt for unregistered message m{id}"));
        msg.attempts.push(attempt);
    }

    pub fn record_consumed(&self, consumed: Consumed) {
        self.trace.event(format!(
            "{:?} {} {}/{} off={} id={:?}",
            consumed.by,
            consumed.client,
            consumed.topic,
            consumed.queue_id,
            consumed.queue_offset,
            body_id(&consumed.body)
        ));
        self.state().consumed.push(consumed);
    }

    pub fn record_offset_event(&self, event: OffsetEvent) {
        self.trace.event(format!(
            "offset {:?} {} {}/{} = {}",
            event.kind, event.group, event.topic, event.queue_id, event.offset
        ));
        self.state().offset_events.push(event);
    }

    pub fn record_scanned_queue(
        &self,
        broker: &str,
        topic: &str,
        queue_id: i32,
        min_offset: i64,
        max_offset: i64,
    ) {
        self.trace.event(format!(
            "scanned {broker} {topic}/{queue_id} [{min_offset},{max_offset})"
        ));
        self.state().scanned_queues.insert(
            (broker.to_string(), topic.to_string(), queue_id),
            (min_offset, max_offset),
        );
    }

    /// Counts for the summary line.
    pub fn summary(&self) -> OracleSummary {
        let st = self.state();
        let mut s = OracleSummary::default();
        for msg in st.sends.values() {
            s.messages += 1;
            for a in &msg.attempts {
                s.attempts += 1;
                match a.outcome {
                    SendOutcome::Acked { .. } => s.acked_attempts += 1,
                    SendOutcome::Failed { .. } => s.failed_attempts += 1,
                    SendOutcome::Unknown { .. } => s.unknown_attempts += 1,
                }
            }
        }
        s.consumed = st
            .consumed
            .iter()
            .filter(|c| c.by == ObservedBy::Consumer)
            .count() as u64;
        s.scanned = st
            .consumed
            .iter()
            .filter(|c| c.by == ObservedBy::FinalScan)
            .count() as u64;
        s
    }
}

#[derive(Debug, Default, Clone)]
pub struct OracleSummary {
    pub messages: u64,
    pub attempts: u64,
    pub acked_attempts: u64,
    pub failed_attempts: u64,
    pub unknown_attempts: u64,
    pub consumed: u64,
    pub scanned: u64,
}

impl std::fmt::Display for OracleSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "msgs={} attempts={} acked={} failed={} unknown={} consumed={} scanned={}",
            self.messages,
            self.attempts,
            self.acked_attempts,
            self.failed_attempts,
            self.unknown_attempts,
            self.consumed,
            self.scanned
        )
    }
}
