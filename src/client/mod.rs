//! Apogee's own RocketMQ client over `remoting`: namesrv route lookups, producer (sync, oneway,
//! batch), pull consumer with offset commit, and admin operations. Used by mqadmin, mqbench and
//! the simulation workload. OWNER: client helper.
//!
//! Everything goes through `crate::rt` (time, tasks, randomness) and `RemotingClient`
//! (network), holds no statics and never blocks, so it runs unchanged inside madsim.
//!
//! * [`MqClient`] (cheap `Clone`): name servers tried in order from the last one that answered;
//!   route cache (`topic_route`, refreshed after `route_refresh_interval_ms`, stale route kept
//!   when every name server is unreachable), `fetch_topic_route`, `cluster_info`,
//!   `master_addr_of`; admin operations in [`admin`]; single broker requests in
//!   [`broker_ops`]. `client_id()` = `client_ip@instance_name` (set both in simulations).
//! * [`Producer`] (`Sync`, share it behind an `Arc`): `send` / `send_outcome` (round robin
//!   over writable queues, up to 1 + `retry_times_when_send_failed` attempts, avoiding the
//!   broker that just failed), `send_attempt` (exactly one request to a given queue),
//!   `send_to_queue`, `send_oneway`, `send_batch` / `send_batch_outcome`.
//!   [`SendOutcome`]: `Acknowledged(SendResult)` (stored), `Failed { code }` (answered with an
//!   error, or no connection: not stored), `Unknown` (an attempt timed out or lost its
//!   connection after sending: may be stored).
//! * [`PullConsumer`]: `start` (heartbeat + first allocation), `poll(timeout_ms)` (quick pulls,
//!   then long polls with SUSPEND), `commit` / `commit_offset`, `run(handler)` push loop,
//!   `rebalance`, `assigned_queues`, `progress`, `shutdown` (persist + unregister).
//!
//! ```ignore
//! let client = MqClient::with_namesrv("127.0.0.1:9876");
//! let producer = Producer::new(client.clone(), ProducerConfig::new("pg"));
//! let result = producer.send(Message::new("T", "hello").with_tags("a")).await?;
//! let consumer = PullConsumer::start(client, ConsumerConfig::new("cg", "T")).await?;
//! let messages = consumer.poll(3_000).await?;
//! consumer.commit().await?;
//! ```

pub mod admin;
pub mod allocate;
pub mod body;
pub mod broker_ops;
pub mod consumer;
mod error;
pub mod mq_client;
pub mod producer;

#[cfg(all(test, not(madsim)))]
mod ha_read_test;

pub use admin::{ClusterBroker, ConsumerProgress, QueueProgressRow, QueueStatus};
pub use body::{BrokerData, ClusterInfo, MessageQueue, QueueData, TopicRouteData};
pub use broker_ops::{PullRequest, PullResult, PullStatus};
pub use consumer::{ConsumeFromWhere, ConsumerConfig, PullConsumer, QueueProgress};
pub use error::ClientError;
pub use mq_client::{ClientConfig, FoundBroker, MqClient, DEFAULT_NAMESRV_ADDR};
pub use producer::{Message, Producer, ProducerConfig, SendOutcome, SendResult, SendStatus};

/// RocketMQ's name of a response code, for error lines.
pub fn response_code_name(code: i32) -> &'static str {
    use crate::remoting::response_code::*;
    match code {
        SUCCESS => "SUCCESS",
        SYSTEM_ERROR => "SYSTEM_ERROR",
        SYSTEM_BUSY => "SYSTEM_BUSY",
        REQUEST_CODE_NOT_SUPPORTED => "REQUEST_CODE_NOT_SUPPORTED",
        TRANSACTION_FAILED => "TRANSACTION_FAILED",
        FLUSH_DISK_TIMEOUT => "FLUSH_DISK_TIMEOUT",
        SLAVE_NOT_AVAILABLE => "SLAVE_NOT_AVAILABLE",
        FLUSH_SLAVE_TIMEOUT => "FLUSH_SLAVE_TIMEOUT",
        MESSAGE_ILLEGAL => "MESSAGE_ILLEGAL",
        SERVICE_NOT_AVAILABLE => "SERVICE_NOT_AVAILABLE",
        VERSION_NOT_SUPPORTED => "VERSION_NOT_SUPPORTED",
        NO_PERMISSION => "NO_PERMISSION",
        TOPIC_NOT_EXIST => "TOPIC_NOT_EXIST",
        TOPIC_EXIST_ALREADY => "TOPIC_EXIST_ALREADY",
        PULL_NOT_FOUND => "PULL_NOT_FOUND",
        PULL_RETRY_IMMEDIATELY => "PULL_RETRY_IMMEDIATELY",
        PULL_OFFSET_MOVED => "PULL_OFFSET_MOVED",
        QUERY_NOT_FOUND => "QUERY_NOT_FOUND",
        SUBSCRIPTION_PARSE_FAILED => "SUBSCRIPTION_PARSE_FAILED",
        SUBSCRIPTION_NOT_EXIST => "SUBSCRIPTION_NOT_EXIST",
        SUBSCRIPTION_NOT_LATEST => "SUBSCRIPTION_NOT_LATEST",
        SUBSCRIPTION_GROUP_NOT_EXIST => "SUBSCRIPTION_GROUP_NOT_EXIST",
        INVALID_PARAMETER => "INVALID_PARAMETER",
        CONSUMER_NOT_ONLINE => "CONSUMER_NOT_ONLINE",
        NOT_LEADER_FOR_QUEUE => "NOT_LEADER_FOR_QUEUE",
        ILLEGAL_OPERATION => "ILLEGAL_OPERATION",
        GO_AWAY => "GO_AWAY",
        _ => "UNKNOWN",
    }
}

#[cfg(all(test, not(madsim)))]
mod fake_cluster_test;
#[cfg(test)]
mod fakes_test;
#[cfg(all(test, madsim))]
mod sim_test;
