//! Node bodies for the real Apogee servers: a namesrv (`Namesrv::start`) and a broker
//! (`Broker::start` on the node's SimDisk). Each incarnation retries its start until it
//! succeeds (as systemd would restart a failed service) and then keeps the server alive until
//! madsim kills the node; start failures are recorded in the node's status.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use apogee::config::{BrokerConfig, NamesrvConfig};
use apogee::ha::HaDebugBugs;
use apogee::store::{BrokerRole, DebugBugs, FlushDiskType};

use super::cluster::{NodeContext, NodeMain};

/// Delay before a failed start is retried.
pub const START_RETRY_MS: u64 = 1_000;

pub fn namesrv_main(port: u16) -> NodeMain {
    Arc::new(move |ctx: NodeContext| {
        Box::pin(async move {
            let config = NamesrvConfig {
                listen_port: port,
                listen_ip: ctx.ip,
                // Short enough that a crashed broker disappears within a simulation.
                broker_channel_expired_timeout_ms: 30_000,
                scan_not_active_broker_interval_ms: 5_000,
                ..NamesrvConfig::default()
            };
            loop {
                match apogee::namesrv::Namesrv::start(config.clone()).await {
                    Ok(namesrv) => {
                        ctx.status.lock().expect("status").serving = true;
                        ctx.trace.event(format!("{} serving", ctx.name));
                        futures::future::pending::<()>().await;
                        drop(namesrv);
                    }
                    Err(e) => record_start_failure(&ctx, e.to_string()).await,
                }
            }
        })
    })
}

/// What the harness decides about a simulated broker; everything else is RocketMQ's default.
#[derive(Debug, Clone)]
pub struct SimBrokerConfig {
    pub broker_name: String,
    pub ip: IpAddr,
    pub port: u16,
    pub namesrv_addrs: Vec<String>,
    pub flush: FlushDiskType,
    pub debug_bugs: DebugBugs,
    pub store_root: PathBuf,
    /// warmMapedFileEnable: zeros written and synced ahead of the CommitLog's writer.
    pub warm_mapped_file: bool,
    /// Master/slave settings (default: a lone ASYNC_MASTER, RocketMQ's default role).
    pub ha: SimHa,
}

/// The HA part of a simulated broker.
#[derive(Debug, Clone)]
pub struct SimHa {
    pub role: BrokerRole,
    /// 0 for a master, > 0 for a slave.
    pub broker_id: i64,
    /// haMasterAddress of a slave (`ip:haListenPort`).
    pub master_ha_addr: Option<String>,
    pub debug_bugs: HaDebugBugs,
}

impl Default for SimHa {
    fn default() -> Self {
        SimHa {
            role: BrokerRole::AsyncMaster,
            broker_id: 0,
            master_ha_addr: None,
            debug_bugs: HaDebugBugs::default(),
        }
    }
}

/// haListenPort of a simulated broker (listenPort + 1, RocketMQ's default).
pub fn ha_port(port: u16) -> u16 {
    port + 1
}

/// A slave's metadata sync period in simulations (RocketMQ's 10 s would leave a scenario
/// few rounds).
pub const SIM_SLAVE_SYNC_INTERVAL_MS: u64 = 1_000;

impl SimBrokerConfig {
    pub fn to_broker_config(&self) -> BrokerConfig {
        let mut c = BrokerConfig {
            broker_cluster_name: "SimCluster".into(),
            broker_name: self.broker_name.clone(),
            broker_id: self.ha.broker_id,
            namesrv_addrs: self.namesrv_addrs.clone(),
            ha_listen_port: ha_port(self.port),
            ha_master_address: self.ha.master_ha_addr.clone(),
            listen_port: self.port,
            broker_ip1: self.ip,
            // Re-register often, so a restarted namesrv learns the routes within seconds.
            register_name_server_period_ms: 3_000,
            ..BrokerConfig::default()
        };
        // Faster HA timers than RocketMQ's defaults, so a run sees several reconnects.
        c.ha.send_heartbeat_interval_ms = 1_000;
        c.ha.housekeeping_interval_ms = 5_000;
        c.ha.slave_timeout_ms = 2_000;
        c.ha.reconnect_min_ms = 100;
        c.ha.reconnect_max_ms = 1_000;
        c.ha.debug_bugs = self.ha.debug_bugs;
        c.slave_sync_interval_ms = SIM_SLAVE_SYNC_INTERVAL_MS;
        let s = &mut c.store;
        s.broker_role = self.ha.role;
        s.store_path_root_dir = self.store_root.clone();
        // Small files: every run rolls CommitLog and ConsumeQueue files several times.
        s.mapped_file_size_commitlog = 256 * 1024;
        s.mapped_file_size_consume_queue = 20 * 500;
        s.flush_disk_type = self.flush;
        s.flush_interval_commitlog_ms = 200;
        s.flush_interval_consume_queue_ms = 500;
        s.sync_flush_timeout_ms = 2_000;
        s.debug_bugs = self.debug_bugs;
        s.warm_mapped_file_enable = self.warm_mapped_file;
        c
    }
}

pub fn broker_main(cfg: SimBrokerConfig) -> NodeMain {
    Arc::new(move |ctx: NodeContext| {
        let config = cfg.to_broker_config();
        Box::pin(async move {
            let disk = ctx.disk.clone().expect("a broker node has a disk");
            loop {
                match apogee::broker::Broker::start(config.clone(), disk.as_disk()).await {
                    Ok(broker) => {
                        ctx.status.lock().expect("status").serving = true;
                        ctx.trace.event(format!("{} serving", ctx.name));
                        futures::future::pending::<()>().await;
                        drop(broker);
                    }
                    Err(e) => record_start_failure(&ctx, e.to_string()).await,
                }
            }
        })
    })
}

async fn record_start_failure(ctx: &NodeContext, error: String) {
    {
        let mut st = ctx.status.lock().expect("status");
        st.start_failures += 1;
        st.last_start_error = Some(error.clone());
    }
    ctx.trace
        .event(format!("{} start failed: {error}", ctx.name));
    apogee::rt::sleep_ms(START_RETRY_MS).await;
}
