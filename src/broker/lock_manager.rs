//! Queue locks for orderly consumers (RocketMQ `RebalanceLockManager`): a lease per
//! (group, queue), held by one client id, expiring after 60 s without renewal.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};

use crate::protocol::consumer::MessageQueue;

/// `rocketmq.broker.rebalance.lockMaxLiveTime`.
pub const LOCK_MAX_LIVE_TIME_MS: i64 = 60_000;

struct LockEntry {
    client_id: String,
    last_update_ms: i64,
}

#[derive(Default)]
pub struct RebalanceLockManager {
    table: Mutex<HashMap<(String, MessageQueue), LockEntry>>,
}

impl RebalanceLockManager {
    fn lock_table(&self) -> MutexGuard<'_, HashMap<(String, MessageQueue), LockEntry>> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Locks (or renews) each queue for `client_id` unless another live client holds it.
    /// Returns the queues now held by `client_id`.
    pub fn try_lock_batch(
        &self,
        group: &str,
        queues: &BTreeSet<MessageQueue>,
        client_id: &str,
        now_ms: i64,
    ) -> BTreeSet<MessageQueue> {
        let mut table = self.lock_table();
        let mut locked = BTreeSet::new();
        for mq in queues {
            let key = (group.to_string(), mq.clone());
            let entry = table.entry(key).or_insert_with(|| LockEntry {
                client_id: client_id.to_string(),
                last_update_ms: now_ms,
            });
            let expired = now_ms - entry.last_update_ms > LOCK_MAX_LIVE_TIME_MS;
            if entry.client_id == client_id || expired {
                entry.client_id = client_id.to_string();
                entry.last_update_ms = now_ms;
                locked.insert(mq.clone());
            }
        }
        locked
    }

    /// Releases the queues `client_id` holds.
    pub fn unlock_batch(&self, group: &str, queues: &BTreeSet<MessageQueue>, client_id: &str) {
        let mut table = self.lock_table();
        for mq in queues {
            let key = (group.to_string(), mq.clone());
            if table.get(&key).is_some_and(|e| e.client_id == client_id) {
                table.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_is_exclusive_until_expiry() {
        let m = RebalanceLockManager::default();
        let mq = MessageQueue {
            broker_name: "b".into(),
            queue_id: 0,
            topic: "T".into(),
        };
        let set: BTreeSet<_> = [mq.clone()].into_iter().collect();
        assert_eq!(m.try_lock_batch("g", &set, "c1", 0).len(), 1);
        assert!(m.try_lock_batch("g", &set, "c2", 1000).is_empty());
        assert_eq!(m.try_lock_batch("g", &set, "c1", 2000).len(), 1);
        // c1's lease lapses; c2 takes over.
        assert_eq!(m.try_lock_batch("g", &set, "c2", 70_000).len(), 1);
        m.unlock_batch("g", &set, "c1");
        assert!(m.try_lock_batch("g", &set, "c1", 70_001).is_empty());
        m.unlock_batch("g", &set, "c2");
        assert_eq!(m.try_lock_batch("g", &set, "c1", 70_002).len(), 1);
    }
}
