//! Long polling (RocketMQ `PullRequestHoldService`): PULL_NOT_FOUND pulls with the SUSPEND flag
//! are parked per `topic@queueId` until a message arrives (store arrival listener) or their
//! suspend timeout passes (checker loop below); then they are re-run once without suspension
//! and the answer is written to the client's channel.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::channel::ClientChannel;
use super::BrokerController;
use crate::protocol::heartbeat::SubscriptionData;
use crate::remoting::RemotingCommand;
use crate::rt::{self, Instant};

/// A parked pull request.
pub struct HeldPull {
    pub channel: ClientChannel,
    pub request: RemotingCommand,
    pub queue_offset: i64,
    pub deadline: Instant,
    /// Filter used to decide whether an arrival is interesting (None = everything).
    pub subscription: Option<SubscriptionData>,
}

fn key(topic: &str, queue_id: i32) -> String {
    format!("{topic}@{queue_id}")
}

#[derive(Default)]
pub struct PullRequestHoldService {
    table: Mutex<HashMap<String, Vec<HeldPull>>>,
}

impl PullRequestHoldService {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Vec<HeldPull>>> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn hold(&self, topic: &str, queue_id: i32, pull: HeldPull) {
        self.lock()
            .entry(key(topic, queue_id))
            .or_default()
            .push(pull);
    }

    pub fn len(&self) -> usize {
        self.lock().values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes and returns the pulls on this queue that the arrival satisfies: the queue now
    /// extends past their offset and (when the tags code is known) their filter matches.
    pub fn take_arrived(
        &self,
        topic: &str,
        queue_id: i32,
        max_offset: i64,
        tags_code: Option<i64>,
    ) -> Vec<HeldPull> {
        let mut table = self.lock();
        let k = key(topic, queue_id);
        let Some(list) = table.get_mut(&k) else {
            return Vec::new();
        };
        let mut woken = Vec::new();
        let mut i = 0;
        while i < list.len() {
            let p = &list[i];
            let matches = match (tags_code, &p.subscription) {
                (Some(code), Some(sub)) => sub.matches_tags_code(code),
                _ => true,
            };
            if max_offset > p.queue_offset && matches {
                woken.push(list.swap_remove(i));
            } else {
                i += 1;
            }
        }
        if list.is_empty() {
            table.remove(&k);
        }
        woken
    }

    /// Removes and returns pulls that timed out or whose queue grew past their offset.
    pub fn take_ready(&self, now: Instant, max_offset: impl Fn(&str, i32) -> i64) -> Vec<HeldPull> {
        let mut table = self.lock();
        let mut woken = Vec::new();
        table.retain(|k, list| {
            let (topic, queue_id) = match k.rsplit_once('@') {
                Some((t, q)) => (t, q.parse::<i32>().unwrap_or(-1)),
                None => (k.as_str(), -1),
            };
            let max = max_offset(topic, queue_id);
            let mut i = 0;
            while i < list.len() {
                if now >= list[i].deadline || max > list[i].queue_offset {
                    woken.push(list.swap_remove(i));
                } else {
                    i += 1;
                }
            }
            !list.is_empty()
        });
        woken
    }
}

/// The checker loop: wakes timed-out pulls (and any the arrival listener missed).
pub async fn run_checker(controller: Arc<BrokerController>) {
    loop {
        rt::sleep(Duration::from_millis(super::LONG_POLLING_CHECK_INTERVAL_MS)).await;
        controller.check_held_pulls();
    }
}
