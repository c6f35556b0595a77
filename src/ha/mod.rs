//! Classic RocketMQ master/slave replication (4.x `HAService`, no controller). OWNER: ha helper.
//!
//! * [`master::HaService`]: listens on haListenPort; one task per slave connection reads the
//!   slave's 8-byte max-offset reports and streams raw CommitLog ranges; tracks each slave's
//!   acknowledged offset; answers SYNC_MASTER waits (as the store's [`ReplicationWaiter`]).
//! * [`slave::HaClient`]: connects to the master (haMasterAddress, or the address learnt from
//!   the namesrv registration), appends whole entries verbatim at its own end (offset checked)
//!   and reports its max offset.
//!
//! [`ReplicationWaiter`]: crate::store::replication::ReplicationWaiter

pub mod master;
pub mod slave;
pub mod wire;

#[cfg(all(test, not(madsim)))]
mod broker_test;
#[cfg(all(test, not(madsim)))]
mod loopback_test;
#[cfg(all(test, madsim))]
mod sim_test;
#[cfg(all(test, not(madsim)))]
pub(crate) mod test_support;

use thiserror::Error;

pub use master::HaService;
pub use slave::HaClient;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum HaError {
    #[error("HA protocol violation: {0}")]
    Protocol(String),
    #[error("HA i/o with {peer}: {source}")]
    Io {
        peer: String,
        source: std::io::Error,
    },
    #[error("HA peer {peer} silent for {silent_ms} ms (housekeeping)")]
    Housekeeping { peer: String, silent_ms: u64 },
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("cannot listen on {addr} for HA: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

/// HA settings (RocketMQ `MessageStoreConfig` names, RocketMQ defaults).
#[derive(Debug, Clone)]
pub struct HaConfig {
    /// haSendHeartbeatInterval: slave reports / master heartbeats at least this often.
    pub send_heartbeat_interval_ms: u64,
    /// haHousekeepingInterval: a connection silent this long is closed.
    pub housekeeping_interval_ms: u64,
    /// haTransferBatchSize.
    pub transfer_batch_size: usize,
    /// haMaxGapNotInSync (4.9 haSlaveFallbehindMax): a slave further behind is not "in sync".
    pub max_gap_not_in_sync: i64,
    /// slaveTimeout: SYNC_MASTER wait before FLUSH_SLAVE_TIMEOUT.
    pub slave_timeout_ms: u64,
    /// Slave reconnect backoff bounds.
    pub reconnect_min_ms: u64,
    pub reconnect_max_ms: u64,
    /// Deliberate bugs for the simulation checkers (t90); all off in production.
    pub debug_bugs: HaDebugBugs,
}

/// Deliberate HA bugs, each switched on only by `t90_checkers_fire` to show a checker fails.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HaDebugBugs {
    /// SYNC_MASTER answers PUT_OK without waiting for a slave's acknowledgement.
    pub ack_before_slave_confirms: bool,
    /// The slave changes each entry's storeTimestamp before appending (a slave that re-encodes
    /// instead of copying verbatim): its log is no longer a byte prefix of the master's.
    pub slave_restamps_entries: bool,
    /// A fenced master that learns its slave is longer lifts the fence and carries on without
    /// taking the tail back (it discards what only the slave holds).
    pub discard_instead_of_take_back: bool,
}

impl Default for HaConfig {
    fn default() -> Self {
        HaConfig {
            send_heartbeat_interval_ms: 5_000,
            housekeeping_interval_ms: 20_000,
            transfer_batch_size: wire::TRANSFER_BATCH_SIZE,
            max_gap_not_in_sync: 256 * 1024 * 1024,
            slave_timeout_ms: 3_000,
            reconnect_min_ms: 200,
            reconnect_max_ms: 5_000,
            debug_bugs: HaDebugBugs::default(),
        }
    }
}

/// The broker's HA side, by role: ASYNC_MASTER/SYNC_MASTER run an [`HaService`], a SLAVE an
/// [`HaClient`]. Started by `Broker::start`, stopped by `BrokerController::shutdown`.
pub enum BrokerHa {
    Master(std::sync::Arc<HaService>),
    Slave(std::sync::Arc<HaClient>),
}

impl BrokerHa {
    /// Starts the role's HA side. A master binds `bind_ip:haListenPort` (an ephemeral port when
    /// listenPort is 0, as tests use).
    pub async fn start(
        config: &crate::config::BrokerConfig,
        store: std::sync::Arc<crate::store::MessageStore>,
        bind_ip: std::net::IpAddr,
    ) -> Result<BrokerHa, HaError> {
        let ha_config = config.ha.clone();
        if config.store.broker_role == crate::store::BrokerRole::Slave {
            return Ok(BrokerHa::Slave(HaClient::start(
                store,
                config.ha_master_address.clone(),
                ha_config,
            )));
        }
        let port = if config.listen_port == 0 {
            0
        } else {
            config.ha_listen_port
        };
        let service =
            HaService::start(store, std::net::SocketAddr::new(bind_ip, port), ha_config).await?;
        Ok(BrokerHa::Master(service))
    }

    /// The bound HA listener of a master (registered to the namesrv as haServerAddr).
    pub fn listen_addr(&self) -> Option<std::net::SocketAddr> {
        match self {
            BrokerHa::Master(s) => Some(s.local_addr()),
            BrokerHa::Slave(_) => None,
        }
    }

    /// A REGISTER_BROKER answer: a slave learns its master's HA address from it.
    pub fn on_registered(&self, result: &crate::protocol::register::RegisterBrokerResult) {
        // A namesrv that does not know the master (yet, or after its restart) answers without
        // an address: keep the last one rather than dropping a working connection.
        if let (BrokerHa::Slave(client), Some(addr)) = (self, &result.ha_server_addr) {
            client.update_master_addr(Some(addr.clone()));
        }
    }

    /// HA figures for GET_BROKER_RUNTIME_INFO.
    pub fn runtime_info(&self, master_max_offset: i64) -> Vec<(String, String)> {
        match self {
            BrokerHa::Master(s) => {
                let slaves = s.slaves();
                let acked = s.push2slave_max_offset();
                let behind = if acked < 0 {
                    master_max_offset
                } else {
                    master_max_offset - acked
                };
                vec![
                    ("haConnectionCount".into(), slaves.len().to_string()),
                    ("haPush2SlaveMaxOffset".into(), acked.to_string()),
                    ("haSlaveFallBehindBytes".into(), behind.to_string()),
                    ("haSlaveInSync".into(), s.is_slave_in_sync().to_string()),
                    ("haListenAddr".into(), s.local_addr().to_string()),
                ]
            }
            BrokerHa::Slave(c) => {
                let st = c.status();
                vec![
                    ("haMasterAddress".into(), st.master_addr.unwrap_or_default()),
                    ("haConnected".into(), st.connected.to_string()),
                    (
                        "haMasterOffsetSeen".into(),
                        st.master_offset_seen.to_string(),
                    ),
                    (
                        "haSlaveFallBehindBytes".into(),
                        (st.master_offset_seen - master_max_offset)
                            .max(0)
                            .to_string(),
                    ),
                ]
            }
        }
    }

    pub async fn shutdown(&self) {
        match self {
            BrokerHa::Master(s) => s.shutdown().await,
            BrokerHa::Slave(c) => c.shutdown().await,
        }
    }
}
