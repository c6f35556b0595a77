//! Pull consumer of one topic in a clustering group: heartbeats, queue allocation (§8) reacting
//! to NOTIFY_CONSUMER_IDS_CHANGED, long-polling PULL_MESSAGE, and offset commits through
//! UPDATE_CONSUMER_OFFSET and the pull COMMIT_OFFSET flag.
//!
//! Offsets per queue: `next_offset` is where the next pull starts; `delivered_offset` is the
//! end of what `poll` has handed out; `consumed_offset` is what the application declared
//! processed (`commit`, or the previous poll with `auto_commit`); `persisted_offset` is what the
//! broker acknowledged. A restart resumes from the broker's offset, so messages delivered but
//! not committed are delivered again (at-least-once).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};

use super::allocate::allocate_averagely;
use super::body::{
    mq_string, readable_queues, ConsumerData, HeartbeatData, MessageQueue, SubscriptionData,
    MASTER_ID,
};
use super::broker_ops::{PullRequest, PullResult, PullStatus};
use super::mq_client::{lock, MqClient};
use super::ClientError;
use crate::message::MessageExt;
use crate::rt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumeFromWhere {
    /// A group without a stored offset starts at the queue's first message.
    FirstOffset,
    /// A group without a stored offset starts after the queue's last message.
    LastOffset,
}

impl ConsumeFromWhere {
    pub fn as_java(&self) -> &'static str {
        match self {
            ConsumeFromWhere::FirstOffset => "CONSUME_FROM_FIRST_OFFSET",
            ConsumeFromWhere::LastOffset => "CONSUME_FROM_LAST_OFFSET",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    pub group: String,
    pub topic: String,
    /// `*` or `tagA || tagB`.
    pub sub_expression: String,
    pub consume_from: ConsumeFromWhere,
    pub pull_batch_size: i32,
    /// Broker-side hold of a long poll (Java 15 s).
    pub suspend_timeout_ms: u64,
    /// RPC timeout of a long poll (Java 30 s); must exceed `suspend_timeout_ms`.
    pub pull_rpc_timeout_ms: u64,
    pub heartbeat_interval_ms: u64,
    pub rebalance_interval_ms: u64,
    /// How often consumed offsets are persisted with UPDATE_CONSUMER_OFFSET (Java 5 s).
    pub persist_interval_ms: u64,
    /// Treat what the previous `poll` returned as consumed when `poll` is called again.
    pub auto_commit: bool,
}

impl ConsumerConfig {
    pub fn new(group: &str, topic: &str) -> Self {
        ConsumerConfig {
            group: group.to_string(),
            topic: topic.to_string(),
            sub_expression: "*".to_string(),
            consume_from: ConsumeFromWhere::LastOffset,
            pull_batch_size: 32,
            suspend_timeout_ms: 15_000,
            pull_rpc_timeout_ms: 30_000,
            heartbeat_interval_ms: 30_000,
            rebalance_interval_ms: 20_000,
            persist_interval_ms: 5_000,
            auto_commit: false,
        }
    }
}

/// Builds RocketMQ `SubscriptionData` from a TAG expression (`*`, `a || b`).
pub fn build_subscription(
    topic: &str,
    expression: &str,
    sub_version: i64,
) -> Result<SubscriptionData, ClientError> {
    SubscriptionData::build(topic, Some(expression), None, sub_version).map_err(|e| {
        ClientError::InvalidArgument(format!("subscription `{expression}` of {topic}: {e}"))
    })
}

/// Client-side tag re-check (the broker filters by tag hash, which can collide).
pub fn subscription_matches(sub: &SubscriptionData, msg: &MessageExt) -> bool {
    if sub.matches_all() {
        return true;
    }
    match msg.tags() {
        Some(tag) => sub.tags_set.contains(tag),
        None => false,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueProgress {
    pub next_offset: i64,
    pub delivered_offset: i64,
    pub consumed_offset: i64,
    pub persisted_offset: Option<i64>,
}

#[derive(Default)]
struct State {
    queues: BTreeMap<MessageQueue, QueueProgress>,
    /// Where the next poll starts its scan (fairness across queues).
    round_robin: usize,
    /// Broker id the last pull response of each queue suggested for the next pull (Java
    /// `PullAPIWrapper.pullFromWhichNodeTable`): 1 when the master finds the consumer far
    /// behind and slaveReadEnable is on, back to 0 when a broker suggests the master.
    pull_from_which_node: BTreeMap<MessageQueue, i64>,
}

struct ConsumerInner {
    client: MqClient,
    config: ConsumerConfig,
    subscription: SubscriptionData,
    state: Mutex<State>,
    /// Serializes rebalances (timer, notification and explicit calls).
    rebalance_lock: tokio::sync::Mutex<()>,
}

/// A pull consumer; dropping it stops its background tasks (call `shutdown` to also persist
/// offsets and unregister).
pub struct PullConsumer {
    inner: Arc<ConsumerInner>,
    tasks: Vec<rt::JoinHandle<()>>,
}

impl Drop for PullConsumer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl PullConsumer {
    /// Heartbeats, allocates queues, and starts the heartbeat/rebalance/persist loops.
    pub async fn start(
        client: MqClient,
        config: ConsumerConfig,
    ) -> Result<PullConsumer, ClientError> {
        if config.pull_rpc_timeout_ms <= config.suspend_timeout_ms {
            return Err(ClientError::InvalidArgument(format!(
                "pull RPC timeout {} ms must exceed the suspend timeout {} ms",
                config.pull_rpc_timeout_ms, config.suspend_timeout_ms
            )));
        }
        let subscription = build_subscription(&config.topic, &config.sub_expression, rt::now_ms())?;
        let notify = client.consumer_notifier(&config.group);
        let inner = Arc::new(ConsumerInner {
            client,
            config,
            subscription,
            state: Mutex::new(State::default()),
            rebalance_lock: tokio::sync::Mutex::new(()),
        });
        inner.heartbeat().await?;
        inner.rebalance().await?;
        let mut tasks = Vec::new();
        let weak = Arc::downgrade(&inner);
        let heartbeat_ms = inner.config.heartbeat_interval_ms;
        tasks.push(rt::spawn(periodic(
            weak.clone(),
            heartbeat_ms,
            |c| async move {
                if let Err(e) = c.heartbeat().await {
                    tracing::warn!(group = %c.config.group, error = %e, "heartbeat failed");
                }
            },
        )));
        let rebalance_ms = inner.config.rebalance_interval_ms;
        let weak_rb = weak.clone();
        tasks.push(rt::spawn(async move {
            loop {
                rt::select! {
                    biased;
                    _ = notify.notified() => {}
                    _ = rt::sleep_ms(rebalance_ms) => {}
                }
                let Some(c) = weak_rb.upgrade() else { return };
                if let Err(e) = c.rebalance().await {
                    tracing::warn!(group = %c.config.group, error = %e, "rebalance failed");
                }
            }
        }));
        if inner.config.auto_commit {
            let persist_ms = inner.config.persist_interval_ms;
            tasks.push(rt::spawn(periodic(weak, persist_ms, |c| async move {
                if let Err(e) = c.persist_offsets().await {
                    tracing::warn!(group = %c.config.group, error = %e, "offset persist failed");
                }
            })));
        }
        Ok(PullConsumer { inner, tasks })
    }

    pub fn client(&self) -> &MqClient {
        &self.inner.client
    }

    /// The queues currently allocated to this consumer.
    pub fn assigned_queues(&self) -> Vec<MessageQueue> {
        lock(&self.inner.state).queues.keys().cloned().collect()
    }

    pub fn progress(&self) -> BTreeMap<MessageQueue, QueueProgress> {
        lock(&self.inner.state).queues.clone()
    }

    /// Re-reads the group membership and the route and re-allocates queues now.
    pub async fn rebalance(&self) -> Result<(), ClientError> {
        self.inner.rebalance().await
    }

    pub async fn heartbeat(&self) -> Result<(), ClientError> {
        self.inner.heartbeat().await
    }

    /// Returns the next messages of the allocated queues, waiting up to `timeout_ms` (long
    /// polling) when none are available. Empty on timeout.
    pub async fn poll(&self, timeout_ms: u64) -> Result<Vec<MessageExt>, ClientError> {
        self.inner.poll(timeout_ms).await
    }

    /// Declares everything `poll` returned so far consumed and persists it to the brokers.
    pub async fn commit(&self) -> Result<(), ClientError> {
        {
            let mut state = lock(&self.inner.state);
            for p in state.queues.values_mut() {
                p.consumed_offset = p.delivered_offset;
            }
        }
        self.inner.persist_offsets().await
    }

    /// Declares `queue` consumed up to (excluding) `next_offset` and persists it.
    pub async fn commit_offset(
        &self,
        queue: &MessageQueue,
        next_offset: i64,
    ) -> Result<(), ClientError> {
        {
            let mut state = lock(&self.inner.state);
            match state.queues.get_mut(queue) {
                Some(p) => p.consumed_offset = next_offset,
                None => {
                    return Err(ClientError::InvalidArgument(format!(
                        "{} is not allocated to this consumer",
                        mq_string(queue)
                    )))
                }
            }
        }
        self.inner.persist_offsets().await
    }

    /// Push-style loop: polls, hands each non-empty batch to `handler`, commits after it
    /// returns; stops when the handler returns false.
    pub async fn run<F, Fut>(&self, mut handler: F) -> Result<(), ClientError>
    where
        F: FnMut(Vec<MessageExt>) -> Fut,
        Fut: Future<Output = bool>,
    {
        loop {
            let batch = self.poll(self.inner.config.suspend_timeout_ms).await?;
            if batch.is_empty() {
                continue;
            }
            let keep_going = handler(batch).await;
            self.commit().await?;
            if !keep_going {
                return Ok(());
            }
        }
    }

    /// Persists offsets, unregisters from the brokers and stops the background loops.
    pub async fn shutdown(mut self) -> Result<(), ClientError> {
        for t in self.tasks.drain(..) {
            t.abort();
        }
        let persisted = self.inner.persist_offsets().await;
        let group = self.inner.config.group.clone();
        if let Ok(route) = self
            .inner
            .client
            .topic_route(&self.inner.config.topic)
            .await
        {
            for bd in &route.broker_datas {
                for addr in bd.broker_addrs.values() {
                    if let Err(e) = self
                        .inner
                        .client
                        .unregister_client(addr, None, Some(&group))
                        .await
                    {
                        tracing::debug!(broker = %addr, error = %e, "unregister failed");
                    }
                }
            }
        }
        self.inner.client.remove_consumer_notifier(&group);
        persisted
    }
}

/// Runs `f` every `interval_ms` while the consumer is alive.
async fn periodic<F, Fut>(weak: Weak<ConsumerInner>, interval_ms: u64, f: F)
where
    F: Fn(Arc<ConsumerInner>) -> Fut,
    Fut: Future<Output = ()>,
{
    loop {
        rt::sleep_ms(interval_ms).await;
        let Some(c) = weak.upgrade() else { return };
        f(c).await;
    }
}

impl ConsumerInner {
    fn heartbeat_data(&self) -> HeartbeatData {
        HeartbeatData {
            client_id: self.client.client_id(),
            producer_data_set: vec![],
            consumer_data_set: vec![ConsumerData {
                group_name: self.config.group.clone(),
                consume_type: "CONSUME_PASSIVELY".to_string(),
                message_model: "CLUSTERING".to_string(),
                consume_from_where: self.config.consume_from.as_java().to_string(),
                subscription_data_set: vec![self.subscription.clone()],
                unit_mode: false,
            }],
            heartbeat_fingerprint: 0,
            without_sub: false,
        }
    }

    /// HEART_BEAT to every broker address (masters and slaves) of the topic's route.
    async fn heartbeat(&self) -> Result<(), ClientError> {
        let route = self.client.topic_route(&self.config.topic).await?;
        let data = self.heartbeat_data();
        let mut last_error = None;
        let mut sent = 0;
        for bd in &route.broker_datas {
            for addr in bd.broker_addrs.values() {
                match self.client.send_heartbeat(addr, &data).await {
                    Ok(()) => sent += 1,
                    Err(e) => {
                        tracing::warn!(broker = %addr, error = %e, "heartbeat failed");
                        last_error = Some(e);
                    }
                }
            }
        }
        match last_error {
            Some(e) if sent == 0 => Err(e),
            _ => Ok(()),
        }
    }

    async fn rebalance(&self) -> Result<(), ClientError> {
        let _serial = self.rebalance_lock.lock().await;
        let topic = &self.config.topic;
        let route = self.client.topic_route(topic).await?;
        let mq_all = readable_queues(topic, &route);
        // Membership from one broker of the topic (all brokers see the same heartbeats);
        // start at a random one and fall back to the others.
        // Masters first (as Java), then slaves: a slave sees the same heartbeats, so the group
        // keeps rebalancing while its master is down. Recently unreachable addresses go last.
        let masters: Vec<String> = route
            .broker_datas
            .iter()
            .filter_map(|b| b.master_addr().map(str::to_string))
            .collect();
        let slaves: Vec<String> = route
            .broker_datas
            .iter()
            .flat_map(|b| b.broker_addrs.iter())
            .filter(|(id, _)| **id != MASTER_ID)
            .map(|(_, a)| a.clone())
            .collect();
        if masters.is_empty() && slaves.is_empty() {
            return Err(ClientError::NoRoute {
                topic: topic.clone(),
                detail: "no broker address".to_string(),
            });
        }
        let mut candidates = masters;
        if !candidates.is_empty() {
            let first = rt::random_below(candidates.len() as u64) as usize;
            candidates.rotate_left(first);
        }
        candidates.extend(slaves);
        candidates.sort_by_key(|a| self.client.is_unreachable(a));
        let mut cid_all = None;
        let mut last_error = None;
        for addr in &candidates {
            match self.client.consumer_id_list(addr, &self.config.group).await {
                Ok(list) => {
                    self.client.mark_reachable(addr);
                    cid_all = Some(list);
                    break;
                }
                Err(e) => {
                    if e.is_transport() {
                        self.client.mark_unreachable(addr);
                    }
                    last_error = Some(e);
                }
            }
        }
        let Some(cid_all) = cid_all else {
            return Err(last_error.unwrap_or_else(|| ClientError::NoRoute {
                topic: topic.clone(),
                detail: "no broker answered GET_CONSUMER_LIST_BY_GROUP".to_string(),
            }));
        };
        let mine: BTreeSet<MessageQueue> =
            allocate_averagely(&self.client.client_id(), &mq_all, &cid_all)
                .into_iter()
                .collect();
        let current: BTreeSet<MessageQueue> = lock(&self.state).queues.keys().cloned().collect();
        if mine == current {
            return Ok(());
        }
        tracing::info!(
            group = %self.config.group,
            client = %self.client.client_id(),
            consumers = cid_all.len(),
            queues = mine.len(),
            "queue allocation changed"
        );
        // Hand back removed queues with their consumed offsets persisted.
        let removed: Vec<MessageQueue> = current.difference(&mine).cloned().collect();
        for mq in &removed {
            let progress = lock(&self.state).queues.get(mq).cloned();
            if let Some(p) = progress {
                if p.persisted_offset != Some(p.consumed_offset) {
                    if let Err(e) = self.persist_one(mq, p.consumed_offset).await {
                        tracing::warn!(queue = %mq_string(mq), error = %e, "persisting a released queue's offset failed");
                    }
                }
            }
            lock(&self.state).queues.remove(mq);
        }
        for mq in mine.difference(&current) {
            match self.initial_offset(mq).await {
                Ok(offset) => {
                    lock(&self.state).queues.insert(
                        mq.clone(),
                        QueueProgress {
                            next_offset: offset,
                            delivered_offset: offset,
                            consumed_offset: offset,
                            persisted_offset: None,
                        },
                    );
                }
                Err(e) => {
                    // Leave it unallocated; the next rebalance tries again.
                    tracing::warn!(queue = %mq_string(mq), error = %e, "cannot determine the start offset");
                }
            }
        }
        Ok(())
    }

    /// Where a newly allocated queue starts: the group's stored offset, else first/last.
    async fn initial_offset(&self, mq: &MessageQueue) -> Result<i64, ClientError> {
        self.on_admin_broker(mq, |addr| async move {
            if let Some(offset) = self
                .client
                .query_consumer_offset(&addr, &self.config.group, mq)
                .await?
            {
                return Ok(offset);
            }
            match self.config.consume_from {
                ConsumeFromWhere::FirstOffset => self.client.get_min_offset(&addr, mq).await,
                ConsumeFromWhere::LastOffset => self.client.get_max_offset(&addr, mq).await,
            }
        })
        .await
    }

    /// Runs `op` on the master of the queue's broker group, else on a slave (offset queries and
    /// commits continue on the slave while the master is down, as with RocketMQ's client). A
    /// transport failure marks the address unreachable and tries the next choice once.
    async fn on_admin_broker<'a, T, F, Fut>(
        &'a self,
        mq: &'a MessageQueue,
        op: F,
    ) -> Result<T, ClientError>
    where
        F: Fn(String) -> Fut,
        Fut: Future<Output = Result<T, ClientError>> + 'a,
    {
        let mut tried = Vec::new();
        loop {
            let found = self
                .client
                .find_broker_in_admin(&mq.topic, &mq.broker_name)
                .await?;
            if tried.contains(&found.addr) {
                // Every member failed in this call: report the last failure.
                return op(found.addr).await;
            }
            tried.push(found.addr.clone());
            match op(found.addr.clone()).await {
                Err(e) if e.is_transport() => {
                    tracing::debug!(broker = %found.addr, error = %e, "broker unreachable, trying another member");
                    self.client.mark_unreachable(&found.addr);
                }
                other => {
                    if other.is_ok() {
                        self.client.mark_reachable(&found.addr);
                    }
                    return other;
                }
            }
        }
    }

    async fn persist_one(&self, mq: &MessageQueue, offset: i64) -> Result<(), ClientError> {
        self.on_admin_broker(mq, |addr| async move {
            self.client
                .update_consumer_offset(&addr, &self.config.group, mq, offset)
                .await
        })
        .await?;
        if let Some(p) = lock(&self.state).queues.get_mut(mq) {
            p.persisted_offset = Some(offset);
        }
        Ok(())
    }

    /// UPDATE_CONSUMER_OFFSET for every queue whose consumed offset is not yet persisted.
    async fn persist_offsets(&self) -> Result<(), ClientError> {
        let pending: Vec<(MessageQueue, i64)> = lock(&self.state)
            .queues
            .iter()
            .filter(|(_, p)| p.persisted_offset != Some(p.consumed_offset))
            .map(|(mq, p)| (mq.clone(), p.consumed_offset))
            .collect();
        let mut first_error = None;
        for (mq, offset) in pending {
            if let Err(e) = self.persist_one(&mq, offset).await {
                first_error.get_or_insert(e);
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn pull_request(
        &self,
        mq: &MessageQueue,
        p: &QueueProgress,
        suspend_timeout_ms: u64,
    ) -> PullRequest {
        PullRequest {
            group: self.config.group.clone(),
            queue: mq.clone(),
            queue_offset: p.next_offset,
            max_msg_nums: self.config.pull_batch_size,
            // Piggyback the consumed offset like the Java push consumer (offset > 0 only).
            commit_offset: (p.consumed_offset > 0).then_some(p.consumed_offset),
            suspend_timeout_ms,
            subscription: Some(self.subscription.sub_string.clone()),
            sub_version: self.subscription.sub_version,
        }
    }

    /// Snapshot of the queues to pull, rotated for fairness.
    fn pull_plan(&self, suspend_timeout_ms: u64) -> Vec<PullRequest> {
        let mut state = lock(&self.state);
        if self.config.auto_commit {
            for p in state.queues.values_mut() {
                p.consumed_offset = p.delivered_offset;
            }
        }
        let n = state.queues.len();
        if n == 0 {
            return Vec::new();
        }
        let start = state.round_robin % n;
        state.round_robin = state.round_robin.wrapping_add(1);
        let mut plan: Vec<PullRequest> = state
            .queues
            .iter()
            .map(|(mq, p)| self.pull_request(mq, p, suspend_timeout_ms))
            .collect();
        plan.rotate_left(start);
        plan
    }

    /// Applies a pull result if the queue is still ours and still at the pulled offset;
    /// returns the messages to deliver.
    fn apply_pull(&self, pull: &PullRequest, result: PullResult) -> Vec<MessageExt> {
        let mut state = lock(&self.state);
        let Some(p) = state.queues.get_mut(&pull.queue) else {
            return Vec::new();
        };
        if p.next_offset != pull.queue_offset {
            return Vec::new();
        }
        match result.status {
            PullStatus::Found => {
                let messages: Vec<MessageExt> = result
                    .messages
                    .into_iter()
                    .filter(|m| m.queue_offset >= pull.queue_offset)
                    .filter(|m| subscription_matches(&self.subscription, m))
                    .collect();
                // Offsets only move forward on FOUND; a broker answering otherwise is
                // wrong, and its messages are not delivered (the pull is retried).
                if result.next_begin_offset < pull.queue_offset {
                    tracing::error!(
                        queue = %mq_string(&pull.queue),
                        from = pull.queue_offset,
                        to = result.next_begin_offset,
                        "broker moved the pull offset backwards on FOUND; ignoring the result"
                    );
                    return Vec::new();
                }
                p.next_offset = result.next_begin_offset;
                p.delivered_offset = result.next_begin_offset;
                messages
            }
            PullStatus::NoNewMsg | PullStatus::NoMatchedMsg => {
                p.next_offset = result.next_begin_offset;
                if p.delivered_offset < p.next_offset {
                    p.delivered_offset = p.next_offset;
                }
                Vec::new()
            }
            PullStatus::OffsetIllegal => {
                tracing::warn!(
                    queue = %mq_string(&pull.queue),
                    from = pull.queue_offset,
                    to = result.next_begin_offset,
                    "pull offset moved by the broker"
                );
                p.next_offset = result.next_begin_offset;
                p.delivered_offset = result.next_begin_offset;
                // Like Java, the corrected offset becomes the consumed one.
                p.consumed_offset = result.next_begin_offset;
                Vec::new()
            }
        }
    }

    async fn pull_one(
        &self,
        pull: PullRequest,
        rpc_timeout_ms: u64,
    ) -> (PullRequest, Result<PullResult, ClientError>) {
        let wanted = lock(&self.state)
            .pull_from_which_node
            .get(&pull.queue)
            .copied()
            .unwrap_or(MASTER_ID);
        let found = match self
            .client
            .find_broker_in_subscribe(&pull.queue.topic, &pull.queue.broker_name, wanted)
            .await
        {
            Ok(f) => f,
            Err(e) => return (pull, Err(e)),
        };
        let mut request = pull.clone();
        if found.is_slave() {
            // A slave does not store offsets piggybacked on pulls (Java clears the flag too);
            // they are committed by UPDATE_CONSUMER_OFFSET instead.
            request.commit_offset = None;
        }
        let result = self
            .client
            .pull_message(&found.addr, &request, rpc_timeout_ms)
            .await;
        match &result {
            Ok(r) => {
                self.client.mark_reachable(&found.addr);
                lock(&self.state)
                    .pull_from_which_node
                    .insert(pull.queue.clone(), r.suggest_which_broker_id);
            }
            Err(e) if e.is_transport() => {
                tracing::debug!(broker = %found.addr, error = %e, "pull: broker unreachable");
                self.client.mark_unreachable(&found.addr);
            }
            Err(_) => {}
        }
        (pull, result)
    }

    async fn poll(&self, timeout_ms: u64) -> Result<Vec<MessageExt>, ClientError> {
        let deadline = rt::now() + Duration::from_millis(timeout_ms);
        let mut last_error = None;
        loop {
            // First a quick pass without suspension, so ready queues answer at once.
            let plan = self.pull_plan(0);
            if plan.is_empty() {
                let left = deadline.saturating_duration_since(rt::now());
                if left.is_zero() {
                    return Ok(Vec::new());
                }
                // No queue allocated (more consumers than queues, or not yet rebalanced).
                rt::sleep(left.min(Duration::from_millis(1_000))).await;
                continue;
            }
            let mut in_flight: FuturesUnordered<_> = plan
                .into_iter()
                .map(|p| self.pull_one(p, self.client.rpc_timeout_ms()))
                .collect();
            let mut out = Vec::new();
            let mut errors = 0;
            let mut pulls = 0;
            while let Some((pull, result)) = in_flight.next().await {
                pulls += 1;
                match result {
                    Ok(r) => out.extend(self.apply_pull(&pull, r)),
                    Err(e) => {
                        errors += 1;
                        tracing::debug!(queue = %mq_string(&pull.queue), error = %e, "pull failed");
                        last_error = Some(e);
                    }
                }
            }
            if !out.is_empty() {
                return Ok(out);
            }
            let left = deadline.saturating_duration_since(rt::now());
            if left.is_zero() {
                return Ok(Vec::new());
            }
            if errors == pulls {
                // Every queue failed: back off instead of spinning; report if time is up.
                let pause = left.min(Duration::from_millis(1_000));
                rt::sleep(pause).await;
                if rt::now() >= deadline {
                    return match last_error {
                        Some(e) => Err(e),
                        None => Ok(Vec::new()),
                    };
                }
                continue;
            }
            // Nothing ready: long-poll all queues and return with the first that has data.
            let suspend_ms = (left.as_millis() as u64).min(self.config.suspend_timeout_ms);
            if suspend_ms < 100 {
                return Ok(Vec::new());
            }
            let rpc_timeout_ms =
                suspend_ms + (self.config.pull_rpc_timeout_ms - self.config.suspend_timeout_ms);
            let plan = self.pull_plan(suspend_ms);
            let mut in_flight: FuturesUnordered<_> = plan
                .into_iter()
                .map(|p| self.pull_one(p, rpc_timeout_ms))
                .collect();
            let waited = rt::timeout(left, async {
                let mut delivered = Vec::new();
                while let Some((pull, result)) = in_flight.next().await {
                    match result {
                        Ok(r) => delivered.extend(self.apply_pull(&pull, r)),
                        Err(e) => {
                            tracing::debug!(queue = %mq_string(&pull.queue), error = %e, "long poll failed")
                        }
                    }
                    if !delivered.is_empty() {
                        break;
                    }
                }
                delivered
            })
            .await;
            // Dropping the remaining long polls is safe: offsets only move on applied results.
            match waited {
                Ok(delivered) if !delivered.is_empty() => return Ok(delivered),
                Ok(_) => {
                    // Every long poll came back empty (held to its timeout, or a broker that
                    // does not hold requests): pause briefly so the loop never spins.
                    let left = deadline.saturating_duration_since(rt::now());
                    rt::sleep(left.min(Duration::from_millis(100))).await;
                }
                Err(_) => return Ok(Vec::new()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscription_from_expression() {
        let all = build_subscription("T", " * ", 5).unwrap();
        assert_eq!(all.sub_string, "*");
        assert!(all.tags_set.is_empty() && all.code_set.is_empty());
        let some = build_subscription("T", "TagA || TagB||TagA", 5).unwrap();
        assert_eq!(
            some.tags_set.iter().collect::<Vec<_>>(),
            vec!["TagA", "TagB"]
        );
        assert_eq!(
            some.code_set.iter().copied().collect::<Vec<_>>(),
            vec![2598919, 2598920]
        );
        assert_eq!(some.sub_version, 5);
        let v = serde_json::to_value(&some).unwrap();
        assert_eq!(v["subString"], "TagA || TagB||TagA");
        assert_eq!(v["expressionType"], "TAG");
        assert_eq!(v["classFilterMode"], false);
    }
}
