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
mod loopback_test;

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
        }
    }
}
