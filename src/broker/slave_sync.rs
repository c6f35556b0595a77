//! Metadata sync from master to slave (RocketMQ `SlaveSynchronize`). OWNER: ha-meta helper.
//!
//! A slave, every `slave_sync_interval_ms` (RocketMQ: first after 3 s, then every 10 s), asks
//! its master over remoting for
//! * GET_ALL_TOPIC_CONFIG → replaces the topic table when the data version differs;
//! * GET_ALL_SUBSCRIPTIONGROUP_CONFIG → same for subscription groups;
//! * GET_ALL_CONSUMER_OFFSET → merged offset by offset, **never moving one of ours backwards**
//!   (RocketMQ 4.x overwrote them, rolling consumers back after a master outage: #1094, #1440).
//!
//! Offsets the slave holds ahead of the master (committed here while the master was down, or
//! lost by a master that crashed before persisting them) are pushed back to the master with
//! UPDATE_CONSUMER_OFFSET carrying the extra header field `onlyForward=true`; the master
//! applies such a push only if it moves its offset forward, so a push can never undo a commit
//! a consumer made on the master meanwhile. Delay offsets (GET_ALL_DELAY_OFFSET) are not
//! synced: Apogee has no schedule service, so there are none.
//!
//! The master's remoting address comes from the namesrv registration answer (`masterAddr`),
//! as in RocketMQ; tests may set it directly.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use thiserror::Error;

use super::consumer_offset::{ConsumerOffsetWrapper, OffsetAhead};
use super::subscription_group::SubscriptionGroupWrapper;
use super::BrokerController;
use crate::protocol::topic::TopicConfigSerializeWrapper;
use crate::remoting::{
    request_code, response_code, RemotingClient, RemotingCommand, RemotingError,
};
use crate::rt;

/// RocketMQ syncs every 10 s (after a 3 s initial delay).
pub const DEFAULT_SLAVE_SYNC_INTERVAL_MS: u64 = 10_000;
/// First sync after start (RocketMQ's initial delay).
pub const SLAVE_SYNC_INITIAL_DELAY_MS: u64 = 3_000;
/// Timeout of each request to the master (RocketMQ uses 3 s for these admin calls).
pub const SLAVE_SYNC_TIMEOUT_MS: u64 = 3_000;
/// Header field marking an UPDATE_CONSUMER_OFFSET that may only move the offset forward.
pub const ONLY_FORWARD_FIELD: &str = "onlyForward";

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SlaveSyncError {
    #[error("no master address known yet")]
    NoMaster,
    #[error("{op} to master {addr}: {source}")]
    Remoting {
        op: &'static str,
        addr: String,
        source: RemotingError,
    },
    #[error("{op} to master {addr} answered code {code}: {remark}")]
    Refused {
        op: &'static str,
        addr: String,
        code: i32,
        remark: String,
    },
    #[error("{op} from master {addr}: malformed body: {reason}")]
    Body {
        op: &'static str,
        addr: String,
        reason: String,
    },
    #[error("persisting synced {what}: {source}")]
    Persist {
        what: &'static str,
        source: super::BrokerError,
    },
}

/// What one sync round did (tests, logs).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SyncReport {
    pub topics_replaced: bool,
    pub groups_replaced: bool,
    /// Offsets the slave held ahead of the master and pushed to it.
    pub offsets_pushed: Vec<OffsetAhead>,
}

/// The slave's sync state: the master's remoting address.
#[derive(Default)]
pub struct SlaveSynchronize {
    master_addr: Mutex<Option<String>>,
}

impl SlaveSynchronize {
    pub fn master_addr(&self) -> Option<String> {
        self.master_addr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// From a registration answer; `None` (namesrv does not know the master now) keeps the
    /// last address, like the HA client does.
    pub fn update_master_addr(&self, addr: Option<String>) {
        if let Some(addr) = addr.filter(|a| !a.is_empty()) {
            let mut current = self.master_addr.lock().unwrap_or_else(|e| e.into_inner());
            if current.as_deref() != Some(addr.as_str()) {
                tracing::info!("slave sync: master address is now {addr}");
                *current = Some(addr);
            }
        }
    }
}

async fn fetch(
    client: &RemotingClient,
    addr: &str,
    op: &'static str,
    request: RemotingCommand,
) -> Result<RemotingCommand, SlaveSyncError> {
    let response = client
        .invoke(addr, request, SLAVE_SYNC_TIMEOUT_MS)
        .await
        .map_err(|source| SlaveSyncError::Remoting {
            op,
            addr: addr.to_string(),
            source,
        })?;
    if response.code != response_code::SUCCESS {
        return Err(SlaveSyncError::Refused {
            op,
            addr: addr.to_string(),
            code: response.code,
            remark: response.remark.unwrap_or_default(),
        });
    }
    Ok(response)
}

fn parse<T: serde::de::DeserializeOwned>(
    op: &'static str,
    addr: &str,
    body: &[u8],
) -> Result<T, SlaveSyncError> {
    let err = |reason: String| SlaveSyncError::Body {
        op,
        addr: addr.to_string(),
        reason,
    };
    let text = std::str::from_utf8(body).map_err(|e| err(e.to_string()))?;
    crate::protocol::parse_lenient_json(text).map_err(|e| err(e.to_string()))
}

/// The UPDATE_CONSUMER_OFFSET a slave sends to push an offset it holds ahead of the master.
pub fn push_offset_request(ahead: &OffsetAhead) -> RemotingCommand {
    RemotingCommand::request(request_code::UPDATE_CONSUMER_OFFSET)
        .with_ext("consumerGroup", &ahead.group)
        .with_ext("topic", &ahead.topic)
        .with_ext("queueId", ahead.queue_id)
        .with_ext("commitOffset", ahead.queue_offset)
        .with_ext(ONLY_FORWARD_FIELD, true)
}

/// One sync round against `master_addr`: topics, subscription groups, then consumer offsets
/// (merged, the ones ahead pushed back). Each part is persisted through the broker's config
/// files before the next is fetched.
pub async fn sync_all(
    controller: &BrokerController,
    client: &RemotingClient,
    master_addr: &str,
) -> Result<SyncReport, SlaveSyncError> {
    let mut report = SyncReport::default();

    let op = "GET_ALL_TOPIC_CONFIG";
    let resp = fetch(
        client,
        master_addr,
        op,
        RemotingCommand::request(request_code::GET_ALL_TOPIC_CONFIG),
    )
    .await?;
    let topics: TopicConfigSerializeWrapper = parse(op, master_addr, &resp.body)?;
    if controller.topics.replace_from_master(topics) {
        report.topics_replaced = true;
        // Persist and re-register so the slave's routes carry the new topics.
        controller
            .topics
            .on_changed()
            .await
            .map_err(|source| SlaveSyncError::Persist {
                what: "topics",
                source,
            })?;
    }

    let op = "GET_ALL_SUBSCRIPTIONGROUP_CONFIG";
    let resp = fetch(
        client,
        master_addr,
        op,
        RemotingCommand::request(request_code::GET_ALL_SUBSCRIPTIONGROUP_CONFIG),
    )
    .await?;
    let groups: SubscriptionGroupWrapper = parse(op, master_addr, &resp.body)?;
    if controller.groups.replace_from_master(groups) {
        report.groups_replaced = true;
        controller
            .groups
            .persist()
            .await
            .map_err(|source| SlaveSyncError::Persist {
                what: "subscription groups",
                source,
            })?;
    }

    if controller.config.store.debug_bugs.slave_sync_skips_offsets {
        return Ok(report);
    }
    let op = "GET_ALL_CONSUMER_OFFSET";
    let resp = fetch(
        client,
        master_addr,
        op,
        RemotingCommand::request(request_code::GET_ALL_CONSUMER_OFFSET),
    )
    .await?;
    let offsets: ConsumerOffsetWrapper = parse(op, master_addr, &resp.body)?;
    let overwrite = controller
        .config
        .store
        .debug_bugs
        .slave_sync_overwrites_newer_offsets;
    let ahead = controller.offsets.merge_from_master(&offsets, overwrite);
    controller
        .offsets
        .persist(false)
        .await
        .map_err(|source| SlaveSyncError::Persist {
            what: "consumer offsets",
            source,
        })?;

    let op = "UPDATE_CONSUMER_OFFSET";
    for a in ahead {
        fetch(client, master_addr, op, push_offset_request(&a)).await?;
        tracing::debug!(
            "slave sync: pushed {}@{} queue {} offset {} to master {master_addr}",
            a.topic,
            a.group,
            a.queue_id,
            a.queue_offset
        );
        report.offsets_pushed.push(a);
    }
    Ok(report)
}

/// The slave's sync loop (started by `Broker::start` for a SLAVE): first round after
/// [`SLAVE_SYNC_INITIAL_DELAY_MS`] (capped by the interval), then every interval. A failed
/// round (master down) is logged and retried on the next tick; nothing local is lost.
pub async fn run(controller: Arc<BrokerController>, client: RemotingClient) {
    let interval_ms = controller.config.slave_sync_interval_ms.max(1);
    rt::sleep(Duration::from_millis(
        SLAVE_SYNC_INITIAL_DELAY_MS.min(interval_ms),
    ))
    .await;
    loop {
        match controller.slave_sync.master_addr() {
            None => tracing::debug!("slave sync: {}", SlaveSyncError::NoMaster),
            Some(addr) => match sync_all(&controller, &client, &addr).await {
                Ok(report) => {
                    if report.topics_replaced
                        || report.groups_replaced
                        || !report.offsets_pushed.is_empty()
                    {
                        tracing::info!(
                            "slave sync from {addr}: topics replaced {}, groups replaced {}, {} offsets pushed",
                            report.topics_replaced,
                            report.groups_replaced,
                            report.offsets_pushed.len()
                        );
                    }
                }
                Err(e) => {
                    tracing::warn!("slave sync: {e}");
                    // A request that timed out leaves the cached connection open; to a master
                    // that crashed (or sat behind a partition) it may never answer again. Start
                    // the next round on a fresh connection.
                    if matches!(e, SlaveSyncError::Remoting { .. }) {
                        client.close(&addr);
                    }
                }
            },
        }
        rt::sleep(Duration::from_millis(interval_ms)).await;
    }
}
