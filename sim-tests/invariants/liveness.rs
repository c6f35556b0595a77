//! Liveness after faults stop (TigerBeetle VOPR's liveness mode): once every fault is healed,
//! within a bounded simulated time the cluster must take new writes (a probe send is acked),
//! and the consumer group must catch up: its committed offset reaches every queue's max offset.
//! The waiting loop lives in the harness (`scenario::liveness_phase`); this file judges one
//! observation of progress.

use crate::harness::workload::QueueProgress;

pub const NAME: &str = "liveness";

/// None when converged, else why not (the last reason is reported if the deadline passes).
pub fn not_converged(progress: &[QueueProgress]) -> Option<String> {
    let behind: Vec<String> = progress
        .iter()
        .filter(|p| p.committed_offset < p.max_offset)
        .map(|p| {
            format!(
                "{}/{} committed {} < max {}",
                p.broker, p.queue_id, p.committed_offset, p.max_offset
            )
        })
        .collect();
    if progress.is_empty() {
        Some("no queue progress observed".into())
    } else if behind.is_empty() {
        None
    } else {
        Some(behind.join("; "))
    }
}
