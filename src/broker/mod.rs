//! The broker: request processors over the store, topic/subscription/offset managers, consumer
//! membership, long polling, namesrv registration. OWNER: broker helper.
//!
//! Public API the binary, standalone mode and simulations use:
//! `Broker::start(config: BrokerConfig, disk: Arc<dyn Disk>) -> Result<Broker, BrokerError>`
//! (opens the store, binds listenPort and listenPort-2, starts registration), `shutdown()`.
//! For socket-free tests, [`BrokerController::open`] builds everything but the listeners and
//! loops, and [`BrokerController::process`] runs one request through the processors.
//!
//! Simplifications relative to RocketMQ (each answered clearly, none silently wrong):
//! * no schedule service: CONSUMER_SEND_MSG_BACK and DELAY-level sends are delivered at once;
//! * transactional (TRAN_MSG) sends are refused with NO_PERMISSION, as with
//!   `rejectTransactionMessage=true`; END_TRANSACTION is REQUEST_CODE_NOT_SUPPORTED;
//! * SQL92 filters are refused (SUBSCRIPTION_PARSE_FAILED / SYSTEM_ERROR), TAG filters only;
//! * no POP, static topics, ACL, broker-config admin (UPDATE/GET_BROKER_CONFIG) or offset reset;
//! * a slave refuses sends (SERVICE_NOT_AVAILABLE); replication itself lives elsewhere.

pub mod channel;
mod config_file;
pub mod consumer_manager;
pub mod consumer_offset;
mod lock_manager;
pub mod long_polling;
pub mod processors;
pub mod producer_manager;
mod register_loop;
pub mod response;
pub mod slave_sync;
pub mod subscription_group;
pub mod topic_config;

#[cfg(all(test, not(madsim)))]
mod loopback_test;
#[cfg(all(test, not(madsim)))]
mod slave_sync_test;
#[cfg(test)]
mod tests;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use thiserror::Error;
use tokio::sync::Notify;

pub use channel::ClientChannel;

use crate::config::BrokerConfig;
use crate::remoting::server::BoxFuture;
use crate::remoting::{
    request_code, Connection, RemotingClient, RemotingCommand, RemotingError, RemotingServer,
    RequestProcessor,
};
use crate::rt;
use crate::store::{Disk, MessageStore, StoreError};

use consumer_manager::{ConsumerManager, MembershipChange, CHANNEL_EXPIRED_TIMEOUT_MS};
use consumer_offset::ConsumerOffsetManager;
use lock_manager::RebalanceLockManager;
use long_polling::PullRequestHoldService;
use producer_manager::ProducerManager;
use subscription_group::SubscriptionGroupManager;
use topic_config::TopicConfigManager;

/// Version string reported in GET_BROKER_RUNTIME_INFO.
pub const BROKER_VERSION_DESC: &str = "V4_9_8";
/// Interval of the consumer-offset persistence loop (RocketMQ `flushConsumerOffsetInterval`).
pub const FLUSH_CONSUMER_OFFSET_INTERVAL_MS: u64 = 5_000;
/// Interval of the idle-client scan (RocketMQ's ClientHousekeepingService runs every 10 s).
pub const CLIENT_HOUSEKEEPING_INTERVAL_MS: u64 = 10_000;
/// Interval of the long-polling checker. RocketMQ checks every 5 s; a finer tick keeps timed-out
/// polls close to their deadline at negligible cost.
pub const LONG_POLLING_CHECK_INTERVAL_MS: u64 = 200;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum BrokerError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: RemotingError,
    },
    #[error("corrupt config file {path}: {reason}")]
    ConfigFile { path: PathBuf, reason: String },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid broker configuration: {0}")]
    InvalidConfig(String),
}

/// Counters shown by GET_BROKER_RUNTIME_INFO.
#[derive(Default)]
pub struct BrokerStats {
    pub msg_put_total: AtomicU64,
    pub msg_get_total: AtomicU64,
}

/// Everything a request needs: the store, the managers and the broker's identity. Shared by
/// both listeners and the background loops.
pub struct BrokerController {
    pub config: BrokerConfig,
    pub store: Arc<MessageStore>,
    pub topics: TopicConfigManager,
    pub groups: SubscriptionGroupManager,
    pub offsets: ConsumerOffsetManager,
    pub consumers: ConsumerManager,
    pub producers: ProducerManager,
    pub stats: BrokerStats,
    hold: PullRequestHoldService,
    locks: RebalanceLockManager,
    /// `brokerIP1:listenPort`, fixed once the listener is bound (port 0 in tests).
    broker_addr: RwLock<SocketAddr>,
    uniq_key_counter: AtomicU16,
    opaque_counter: AtomicI32,
    register_trigger: Arc<Notify>,
    boot_timestamp_ms: i64,
    shutting_down: AtomicBool,
    /// Replication side by role (crate::ha), set by `Broker::start`.
    pub ha: std::sync::OnceLock<crate::ha::BrokerHa>,
    /// Slave only: master address for metadata sync ([`slave_sync`]).
    pub slave_sync: slave_sync::SlaveSynchronize,
}

impl BrokerController {
    /// Opens the store and loads the persisted configs; binds nothing and starts no loops
    /// (the store's own loops excepted). Registers the long-polling arrival listener.
    pub async fn open(
        config: BrokerConfig,
        disk: Arc<dyn Disk>,
    ) -> Result<Arc<BrokerController>, BrokerError> {
        if config.default_topic_queue_nums <= 0 {
            return Err(BrokerError::InvalidConfig(format!(
                "defaultTopicQueueNums must be positive, got {}",
                config.default_topic_queue_nums
            )));
        }
        let register_trigger = Arc::new(Notify::new());
        let topics = TopicConfigManager::load(&config, disk.clone(), register_trigger.clone())?;
        let groups = SubscriptionGroupManager::load(&config, disk.clone())?;
        let offsets = ConsumerOffsetManager::load(&config, disk.clone())?;
        let store = MessageStore::open(config.store.clone(), disk.clone()).await?;
        let broker_addr = SocketAddr::new(config.broker_ip1, config.listen_port);
        let controller = Arc::new(BrokerController {
            store,
            topics,
            groups,
            offsets,
            consumers: ConsumerManager::default(),
            producers: ProducerManager::default(),
            stats: BrokerStats::default(),
            hold: PullRequestHoldService::default(),
            locks: RebalanceLockManager::default(),
            broker_addr: RwLock::new(broker_addr),
            uniq_key_counter: AtomicU16::new((rt::random_u64() & 0xFFFF) as u16),
            opaque_counter: AtomicI32::new(0),
            register_trigger,
            boot_timestamp_ms: rt::now_ms(),
            shutting_down: AtomicBool::new(false),
            ha: std::sync::OnceLock::new(),
            slave_sync: slave_sync::SlaveSynchronize::default(),
            config,
        });
        let weak: Weak<BrokerController> = Arc::downgrade(&controller);
        controller.store.set_arrival_listener(Arc::new(
            move |topic, queue_id, max_offset, tags_code| {
                if let Some(c) = weak.upgrade() {
                    c.notify_message_arriving(topic, queue_id, max_offset, Some(tags_code));
                }
            },
        ));
        // Write the system topics out (first start on an empty disk, or a config that changed
        // them), off the start-up path: they are re-created from the config at every start,
        // so a crash before this write lands loses nothing, and its fsync chain (~10 ms on
        // the CI volume) must not delay the first accepted send. A restart with nothing
        // changed finds the file identical and writes nothing.
        let weak = Arc::downgrade(&controller);
        rt::spawn(async move {
            let Some(controller) = weak.upgrade() else {
                return;
            };
            let text = controller.topics.encode();
            if let Err(e) = controller.topics.persist_if_changed(text).await {
                tracing::warn!("persisting topics.json failed: {e}");
            }
        });
        Ok(controller)
    }

    /// `brokerIP1:port` (registered to the namesrv, used as store host).
    pub fn broker_addr(&self) -> SocketAddr {
        *self.broker_addr.read().unwrap_or_else(|e| e.into_inner())
    }

    fn set_broker_addr(&self, addr: SocketAddr) {
        *self.broker_addr.write().unwrap_or_else(|e| e.into_inner()) = addr;
    }

    pub fn is_slave(&self) -> bool {
        self.config.store.broker_role == crate::store::BrokerRole::Slave
    }

    pub fn boot_timestamp_ms(&self) -> i64 {
        self.boot_timestamp_ms
    }

    fn next_uniq_counter(&self) -> u16 {
        self.uniq_key_counter.fetch_add(1, Ordering::Relaxed)
    }

    fn next_opaque(&self) -> i32 {
        self.opaque_counter.fetch_add(1, Ordering::Relaxed)
    }

    /// Runs one request through the processors. `None` = no response now (oneway request, or a
    /// long poll parked until data arrives or it times out; its answer goes to `channel`).
    pub async fn process(
        self: &Arc<Self>,
        channel: &ClientChannel,
        request: RemotingCommand,
    ) -> Option<RemotingCommand> {
        use processors::*;
        let result = match request.code {
            request_code::SEND_MESSAGE
            | request_code::SEND_MESSAGE_V2
            | request_code::SEND_BATCH_MESSAGE => send::process_send(self, channel, &request).await,
            request_code::CONSUMER_SEND_MSG_BACK => {
                send::consumer_send_msg_back(self, channel, &request).await
            }
            request_code::PULL_MESSAGE | request_code::LITE_PULL_MESSAGE => {
                pull::process_pull(self, channel, request.clone(), true).await
            }
            request_code::QUERY_CONSUMER_OFFSET => offset::query_consumer_offset(self, &request),
            request_code::UPDATE_CONSUMER_OFFSET => offset::update_consumer_offset(self, &request),
            request_code::GET_MAX_OFFSET => offset::get_max_offset(self, &request),
            request_code::GET_MIN_OFFSET => offset::get_min_offset(self, &request),
            request_code::GET_EARLIEST_MSG_STORETIME => {
                offset::get_earliest_msg_storetime(self, &request)
            }
            request_code::SEARCH_OFFSET_BY_TIMESTAMP => {
                offset::search_offset_by_timestamp(self, &request)
            }
            request_code::HEART_BEAT => heartbeat::heart_beat(self, channel, &request).await,
            request_code::UNREGISTER_CLIENT => {
                heartbeat::unregister_client(self, channel, &request)
            }
            request_code::GET_CONSUMER_LIST_BY_GROUP => {
                heartbeat::get_consumer_list_by_group(self, &request)
            }
            request_code::LOCK_BATCH_MQ => heartbeat::lock_batch_mq(self, &request),
            request_code::UNLOCK_BATCH_MQ => heartbeat::unlock_batch_mq(self, &request),
            request_code::QUERY_MESSAGE => query::query_message(self, &request),
            request_code::VIEW_MESSAGE_BY_ID => query::view_message_by_id(self, &request),
            request_code::GET_BROKER_RUNTIME_INFO => admin::get_broker_runtime_info(self, &request),
            request_code::UPDATE_AND_CREATE_TOPIC => {
                admin::update_and_create_topic(self, &request).await
            }
            request_code::DELETE_TOPIC_IN_BROKER => admin::delete_topic(self, &request).await,
            request_code::GET_ALL_TOPIC_CONFIG => admin::get_all_topic_config(self, &request),
            request_code::GET_TOPIC_CONFIG => admin::get_topic_config(self, &request),
            request_code::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP => {
                admin::update_and_create_subscription_group(self, &request).await
            }
            request_code::DELETE_SUBSCRIPTIONGROUP => {
                admin::delete_subscription_group(self, &request).await
            }
            request_code::GET_ALL_SUBSCRIPTIONGROUP_CONFIG => {
                admin::get_all_subscription_group(self, &request)
            }
            request_code::GET_ALL_CONSUMER_OFFSET => admin::get_all_consumer_offset(self, &request),
            request_code::GET_TOPIC_STATS_INFO => admin::get_topic_stats_info(self, &request),
            request_code::GET_CONSUME_STATS => admin::get_consume_stats(self, &request),
            request_code::GET_CONSUMER_CONNECTION_LIST => {
                admin::get_consumer_connection_list(self, &request)
            }
            request_code::GET_PRODUCER_CONNECTION_LIST => {
                admin::get_producer_connection_list(self, &request)
            }
            code => Ok(Some(request.response(
                crate::remoting::response_code::REQUEST_CODE_NOT_SUPPORTED,
                format!(" request type {code} not supported"),
            ))),
        };
        match result {
            Ok(response) => response,
            Err(err) => {
                tracing::debug!(code = request.code, "request failed: {err}");
                Some(response::error_response(&request, &err))
            }
        }
    }

    /// A connection closed: drop its consumers/producers and tell the remaining members.
    pub fn on_channel_closed(&self, channel_id: u64) {
        self.producers.on_channel_closed(channel_id);
        let changes = self.consumers.on_channel_closed(channel_id);
        self.notify_membership_changes(changes);
    }

    /// Drops clients silent for 120 s.
    pub fn scan_idle_clients(&self) {
        let now = rt::now_ms();
        self.producers.scan_expired(now, CHANNEL_EXPIRED_TIMEOUT_MS);
        let changes = self.consumers.scan_expired(now, CHANNEL_EXPIRED_TIMEOUT_MS);
        self.notify_membership_changes(changes);
    }

    fn notify_membership_changes(&self, changes: Vec<MembershipChange>) {
        for change in changes {
            let enabled = self
                .groups
                .get(&change.group)
                .is_none_or(|g| g.notify_consumer_ids_changed_enable);
            if enabled {
                self.notify_consumer_ids_changed(&change.group, &change.notify);
            }
        }
    }

    /// Sends NOTIFY_CONSUMER_IDS_CHANGED (oneway) to each channel.
    pub fn notify_consumer_ids_changed(&self, group: &str, channels: &[ClientChannel]) {
        for channel in channels {
            let request = RemotingCommand::request(request_code::NOTIFY_CONSUMER_IDS_CHANGED)
                .with_ext("consumerGroup", group);
            if let Err(e) = channel.send_oneway(request, self.next_opaque()) {
                tracing::debug!(
                    group,
                    "notify consumer ids changed to {} failed: {e}",
                    channel.peer_addr()
                );
            }
        }
    }

    /// Store arrival listener and checker entry: wakes parked pulls that can now progress.
    pub fn notify_message_arriving(
        self: &Arc<Self>,
        topic: &str,
        queue_id: i32,
        max_offset: i64,
        tags_code: Option<i64>,
    ) {
        let woken = self
            .hold
            .take_arrived(topic, queue_id, max_offset, tags_code);
        if !woken.is_empty() {
            let controller = self.clone();
            rt::spawn(async move { controller.rerun_held_pulls(woken).await });
        }
    }

    async fn rerun_held_pulls(self: Arc<Self>, held: Vec<long_polling::HeldPull>) {
        for pull in held {
            let channel = pull.channel.clone();
            let response =
                match processors::pull::process_pull(&self, &channel, pull.request.clone(), false)
                    .await
                {
                    Ok(r) => r,
                    Err(err) => Some(response::error_response(&pull.request, &err)),
                };
            if let Some(response) = response {
                if let Err(e) = channel.send(response) {
                    tracing::debug!("long-poll response to {} lost: {e}", channel.peer_addr());
                }
            }
        }
    }

    /// One pass of the long-polling checker: timed-out pulls and pulls whose queue grew.
    pub fn check_held_pulls(self: &Arc<Self>) {
        let now = rt::now();
        let store = self.store.clone();
        let woken = self.hold.take_ready(now, |topic, queue_id| {
            store.max_offset_in_queue(topic, queue_id)
        });
        if !woken.is_empty() {
            let controller = self.clone();
            rt::spawn(async move { controller.rerun_held_pulls(woken).await });
        }
    }

    /// Number of pulls currently parked (tests, runtime info).
    pub fn held_pull_count(&self) -> usize {
        self.hold.len()
    }

    /// Persists every config file (shutdown, tests).
    pub async fn persist_all(&self) -> Result<(), BrokerError> {
        self.offsets.persist(true).await?;
        self.topics.persist().await?;
        self.groups.persist().await
    }

    /// Final persist and store shutdown.
    pub async fn shutdown(&self) {
        if self.shutting_down.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Some(ha) = self.ha.get() {
            ha.shutdown().await;
        }
        if let Err(e) = self.persist_all().await {
            tracing::error!("persisting broker configs at shutdown failed: {e}");
        }
        self.store.shutdown().await;
    }
}

/// Adapts the controller to the remoting server.
struct BrokerRequestProcessor {
    controller: Arc<BrokerController>,
}

impl RequestProcessor for BrokerRequestProcessor {
    fn process(
        self: Arc<Self>,
        conn: Connection,
        request: RemotingCommand,
    ) -> BoxFuture<'static, Option<RemotingCommand>> {
        Box::pin(async move {
            let channel = ClientChannel::from_connection(conn);
            self.controller.process(&channel, request).await
        })
    }

    fn on_connection_closed(&self, conn: &Connection) {
        self.controller.on_channel_closed(conn.id());
    }
}

/// A running broker: controller, both listeners and the background loops.
pub struct Broker {
    controller: Arc<BrokerController>,
    servers: Vec<RemotingServer>,
    tasks: Vec<rt::JoinHandle<()>>,
    namesrv_client: RemotingClient,
}

impl Broker {
    /// Opens the store, loads configs, binds `listenPort` and `listenPort - 2` (on 0.0.0.0, or
    /// on brokerIP1 when that is a loopback address; port 0 binds ephemeral ports for tests),
    /// and starts the loops: namesrv
    /// registration, offset persistence, client housekeeping, long-polling checker.
    pub async fn start(config: BrokerConfig, disk: Arc<dyn Disk>) -> Result<Broker, BrokerError> {
        let controller = BrokerController::open(config, disk).await?;
        let processor: Arc<dyn RequestProcessor> = Arc::new(BrokerRequestProcessor {
            controller: controller.clone(),
        });
        let port = controller.config.listen_port;
        // A broker advertising a loopback address is only reachable there: bind loopback
        // (standalone mode, tests). Otherwise listen on every interface, as RocketMQ does.
        let any = if controller.config.broker_ip1.is_loopback() {
            controller.config.broker_ip1
        } else {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        };
        // HA (crate::ha): masters listen on haListenPort, slaves replicate from the master.
        match crate::ha::BrokerHa::start(&controller.config, controller.store.clone(), any).await {
            Ok(ha) => {
                let _ = controller.ha.set(ha);
            }
            Err(e) => {
                controller.shutdown().await;
                return Err(BrokerError::InvalidConfig(format!("HA: {e}")));
            }
        }
        let main_addr = SocketAddr::new(any, port);
        let main = match RemotingServer::bind(main_addr, processor.clone()).await {
            Ok(s) => s,
            Err(source) => {
                controller.shutdown().await;
                return Err(BrokerError::Bind {
                    addr: main_addr,
                    source,
                });
            }
        };
        let bound_port = main.local_addr().port();
        controller.set_broker_addr(SocketAddr::new(controller.config.broker_ip1, bound_port));
        let vip_port = port.saturating_sub(2);
        let vip_addr = SocketAddr::new(any, vip_port);
        let vip = match RemotingServer::bind(vip_addr, processor).await {
            Ok(s) => s,
            Err(source) => {
                controller.shutdown().await;
                return Err(BrokerError::Bind {
                    addr: vip_addr,
                    source,
                });
            }
        };
        tracing::info!(
            "broker {} of cluster {} listening on {} (VIP {}), registering as {} to [{}]",
            controller.config.broker_name,
            controller.config.broker_cluster_name,
            main.local_addr(),
            vip.local_addr(),
            controller.broker_addr(),
            controller.config.namesrv_addrs.join(";")
        );

        let namesrv_client = RemotingClient::new();
        let mut tasks = Vec::new();
        tasks.push(rt::spawn(register_loop::run(
            controller.clone(),
            namesrv_client.clone(),
            controller.register_trigger.clone(),
        )));
        let c = controller.clone();
        tasks.push(rt::spawn(async move {
            loop {
                rt::sleep(Duration::from_millis(FLUSH_CONSUMER_OFFSET_INTERVAL_MS)).await;
                if let Err(e) = c.offsets.persist(false).await {
                    tracing::warn!("persisting consumer offsets failed: {e}");
                }
            }
        }));
        let c = controller.clone();
        tasks.push(rt::spawn(async move {
            loop {
                rt::sleep(Duration::from_millis(CLIENT_HOUSEKEEPING_INTERVAL_MS)).await;
                c.scan_idle_clients();
            }
        }));
        tasks.push(rt::spawn(long_polling::run_checker(controller.clone())));
        if controller.is_slave() {
            tasks.push(rt::spawn(slave_sync::run(
                controller.clone(),
                namesrv_client.clone(),
            )));
        }
        Ok(Broker {
            controller,
            servers: vec![main, vip],
            tasks,
            namesrv_client,
        })
    }

    pub fn controller(&self) -> &Arc<BrokerController> {
        &self.controller
    }

    /// Address of the main listener (as bound).
    pub fn local_addr(&self) -> SocketAddr {
        self.servers[0].local_addr()
    }

    /// Address of the VIP listener (listenPort - 2).
    pub fn vip_addr(&self) -> SocketAddr {
        self.servers[1].local_addr()
    }

    /// `brokerIP1:listenPort` as registered to the namesrv.
    pub fn broker_addr(&self) -> SocketAddr {
        self.controller.broker_addr()
    }

    /// Stops the loops, unregisters from every namesrv, persists configs and shuts the store
    /// down. Parked long polls are dropped (clients time out and retry elsewhere).
    pub async fn shutdown(mut self) {
        for task in self.tasks.drain(..) {
            task.abort();
        }
        register_loop::unregister_all(&self.controller, &self.namesrv_client).await;
        for server in &self.servers {
            server.shutdown();
        }
        // The ports are free again once shutdown returns (restart in the same process).
        for server in self.servers.drain(..) {
            server.wait_stopped().await;
        }
        self.controller.shutdown().await;
        tracing::info!("broker {} shut down", self.controller.config.broker_name);
    }
}
