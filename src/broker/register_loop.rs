//! Namesrv registration (RocketMQ `BrokerOuterAPI.registerBrokerAll`): REGISTER_BROKER to every
//! namesrv every `registerNameServerPeriod`, and at once when the topic table changes.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use super::BrokerController;
use crate::remoting::{request_code, response_code, RemotingClient, RemotingCommand};
use crate::rt;

/// RPC timeout of one registration (RocketMQ `registerBrokerTimeoutMills`).
pub const REGISTER_BROKER_TIMEOUT_MS: u64 = 6_000;

pub async fn run(controller: Arc<BrokerController>, client: RemotingClient, trigger: Arc<Notify>) {
    let period_ms = controller.config.register_name_server_period_ms.max(1_000);
    loop {
        register_all(&controller, &client).await;
        rt::select! {
            biased;
            _ = trigger.notified() => {}
            _ = rt::sleep(Duration::from_millis(period_ms)) => {}
        }
    }
}

/// `RegisterBrokerBody` JSON: the topic config wrapper and an empty filter-server list.
pub fn register_body(controller: &BrokerController) -> Vec<u8> {
    let body = serde_json::json!({
        "topicConfigSerializeWrapper": controller.topics.wrapper(),
        "filterServerList": [],
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

/// The REGISTER_BROKER request (header + body + bodyCrc32).
pub fn register_request(controller: &BrokerController) -> RemotingCommand {
    let config = &controller.config;
    let body = register_body(controller);
    let crc = (crc32fast::hash(&body) & 0x7FFF_FFFF) as i32;
    let broker_addr = controller.broker_addr();
    let ha_ip = config.broker_ip2.unwrap_or(config.broker_ip1);
    // The bound HA port (ephemeral in tests), else the configured one.
    let ha_port = controller
        .ha
        .get()
        .and_then(|ha| ha.listen_addr())
        .map_or(config.ha_listen_port, |a| a.port());
    RemotingCommand::request(request_code::REGISTER_BROKER)
        .with_ext("brokerName", &config.broker_name)
        .with_ext("brokerAddr", broker_addr)
        .with_ext("clusterName", &config.broker_cluster_name)
        .with_ext("haServerAddr", format!("{ha_ip}:{ha_port}"))
        .with_ext("brokerId", config.broker_id)
        .with_ext("compressed", false)
        .with_ext("bodyCrc32", crc)
        .with_body(body)
}

pub async fn register_all(controller: &BrokerController, client: &RemotingClient) {
    let addrs = &controller.config.namesrv_addrs;
    let futures = addrs.iter().map(|addr| {
        let request = register_request(controller);
        async move {
            match client
                .invoke(addr, request, REGISTER_BROKER_TIMEOUT_MS)
                .await
            {
                Ok(resp) if resp.code == response_code::SUCCESS => {
                    tracing::debug!("registered to namesrv {addr}");
                    let result =
                        crate::protocol::register::RegisterBrokerResult::from_response(&resp);
                    // A slave learns its master's HA address here (crate::ha), and the
                    // master's remoting address for metadata sync.
                    if let Some(ha) = controller.ha.get() {
                        ha.on_registered(&result);
                    }
                    if controller.is_slave() {
                        controller
                            .slave_sync
                            .update_master_addr(result.master_addr.clone());
                    }
                }
                Ok(resp) => tracing::warn!(
                    "namesrv {addr} refused registration: code {} {}",
                    resp.code,
                    resp.remark.unwrap_or_default()
                ),
                Err(e) => tracing::warn!("register to namesrv {addr} failed: {e}"),
            }
        }
    });
    futures::future::join_all(futures).await;
}

pub async fn unregister_all(controller: &BrokerController, client: &RemotingClient) {
    let config = &controller.config;
    let futures = config.namesrv_addrs.iter().map(|addr| {
        let request = RemotingCommand::request(request_code::UNREGISTER_BROKER)
            .with_ext("brokerName", &config.broker_name)
            .with_ext("brokerAddr", controller.broker_addr())
            .with_ext("clusterName", &config.broker_cluster_name)
            .with_ext("brokerId", config.broker_id);
        async move {
            if let Err(e) = client.invoke(addr, request, 3_000).await {
                tracing::warn!("unregister from namesrv {addr} failed: {e}");
            }
        }
    });
    futures::future::join_all(futures).await;
}
