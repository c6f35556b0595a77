//! The expiry loop (RocketMQ `scanNotActiveBroker`): every `scanNotActiveBrokerInterval`, drop
//! brokers silent for longer than their heartbeat timeout and close their connections, as the
//! Java name server does, so a half-dead broker reconnects and re-registers.

use std::sync::Arc;

use tokio::sync::Notify;

use super::NamesrvState;
use crate::remoting::RemotingServer;
use crate::rt;

pub(crate) async fn scan_not_active_brokers_loop(
    state: Arc<NamesrvState>,
    server: Arc<RemotingServer>,
    stop: Arc<Notify>,
) {
    let interval_ms = state.config.scan_not_active_broker_interval_ms;
    assert!(interval_ms > 0, "scan interval must be positive");
    loop {
        rt::select! {
            biased;
            _ = stop.notified() => return,
            _ = rt::sleep_ms(interval_ms) => {}
        }
        let removed = state.routes_mut().scan_not_active_brokers(rt::now_ms());
        for broker in removed {
            tracing::warn!(
                cluster = %broker.cluster_name,
                broker_addr = %broker.broker_addr,
                "broker expired: no registration within its heartbeat timeout; removed from routes"
            );
            let Some(id) = broker.connection_id else {
                continue;
            };
            if let Some(conn) = server.connections().into_iter().find(|c| c.id() == id) {
                conn.close();
            }
        }
    }
}
