//! Name server: route table, broker liveness, KV config. OWNER: namesrv helper.
//! Public API the binaries, standalone mode and simulations use:
//! `Namesrv::start(config: NamesrvConfig) -> Result<Namesrv, NamesrvError>` binds the port and
//! spawns the processing and the expiry scan loop through `rt`; `local_addr()`; `shutdown()`.

pub mod kv_config;
pub mod processor;
pub mod route_table;
mod scan;

use std::net::SocketAddr;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use thiserror::Error;
use tokio::sync::Notify;

use crate::config::NamesrvConfig;
use crate::protocol::cluster::ClusterInfo;
use crate::protocol::route::TopicRouteData;
use crate::remoting::{RemotingError, RemotingServer};
use crate::rt;

pub use kv_config::KvConfig;
pub use processor::NamesrvProcessor;
pub use route_table::RouteTable;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum NamesrvError {
    #[error("name server cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: RemotingError,
    },
    #[error("invalid name server configuration: {0}")]
    Config(String),
}

/// State shared by the request processor and the scan loop. Locks are never held across an
/// await.
pub(crate) struct NamesrvState {
    pub(crate) config: NamesrvConfig,
    routes: RwLock<RouteTable>,
    kv: RwLock<KvConfig>,
}

impl NamesrvState {
    pub(crate) fn new(config: NamesrvConfig) -> Self {
        let routes = RouteTable::new(config.broker_channel_expired_timeout_ms);
        NamesrvState {
            config,
            routes: RwLock::new(routes),
            kv: RwLock::new(KvConfig::default()),
        }
    }
    // A panic while holding a lock leaves the tables consistent (every mutation is a short
    // synchronous step), so a poisoned lock is recovered rather than propagated.
    pub(crate) fn routes(&self) -> RwLockReadGuard<'_, RouteTable> {
        self.routes.read().unwrap_or_else(|p| p.into_inner())
    }
    pub(crate) fn routes_mut(&self) -> RwLockWriteGuard<'_, RouteTable> {
        self.routes.write().unwrap_or_else(|p| p.into_inner())
    }
    pub(crate) fn kv(&self) -> RwLockReadGuard<'_, KvConfig> {
        self.kv.read().unwrap_or_else(|p| p.into_inner())
    }
    pub(crate) fn kv_mut(&self) -> RwLockWriteGuard<'_, KvConfig> {
        self.kv.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running name server.
pub struct Namesrv {
    server: Arc<RemotingServer>,
    state: Arc<NamesrvState>,
    stop_scan: Arc<Notify>,
}

impl Namesrv {
    /// Binds `config.listen_ip:listen_port` (port 0 = any free port) and spawns the request
    /// processing and the expiry scan loop.
    pub async fn start(config: NamesrvConfig) -> Result<Namesrv, NamesrvError> {
        if config.broker_channel_expired_timeout_ms == 0 {
            return Err(NamesrvError::Config(
                "brokerChannelExpiredTimeout must be positive".to_string(),
            ));
        }
        if config.scan_not_active_broker_interval_ms == 0 {
            return Err(NamesrvError::Config(
                "scanNotActiveBrokerInterval must be positive".to_string(),
            ));
        }
        let addr = config.listen_addr();
        let state = Arc::new(NamesrvState::new(config));
        let processor = Arc::new(NamesrvProcessor::new(state.clone()));
        let server = RemotingServer::bind(addr, processor)
            .await
            .map_err(|source| NamesrvError::Bind { addr, source })?;
        let server = Arc::new(server);
        let stop_scan = Arc::new(Notify::new());
        rt::spawn(scan::scan_not_active_brokers_loop(
            state.clone(),
            server.clone(),
            stop_scan.clone(),
        ));
        tracing::info!(local_addr = %server.local_addr(), "name server started");
        Ok(Namesrv {
            server,
            state,
            stop_scan,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    pub fn config(&self) -> &NamesrvConfig {
        &self.state.config
    }

    /// Stops the scan loop, stops accepting and closes every connection. Idempotent; also run
    /// on drop.
    pub fn shutdown(&self) {
        if self.server.is_shutdown() {
            return;
        }
        // notify_one stores a permit if the loop is not waiting right now, so it cannot be lost.
        self.stop_scan.notify_one();
        self.server.shutdown();
        tracing::info!(local_addr = %self.local_addr(), "name server shut down");
    }

    /// The current route of `topic` (what GET_ROUTEINFO_BY_TOPIC would answer).
    pub fn topic_route(&self, topic: &str) -> Option<TopicRouteData> {
        self.state.routes().pickup_topic_route_data(topic)
    }

    /// The current cluster view (what GET_BROKER_CLUSTER_INFO would answer).
    pub fn cluster_info(&self) -> ClusterInfo {
        self.state.routes().cluster_info()
    }

    /// A copy of the whole route table, for simulation checkers.
    pub fn route_table_snapshot(&self) -> RouteTable {
        self.state.routes().clone()
    }
}

impl Drop for Namesrv {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod processor_test;

// Real sockets on 127.0.0.1; simulations cover the madsim build.
#[cfg(all(test, not(madsim)))]
mod loopback_test;

#[cfg(all(test, madsim))]
mod sim_test;
