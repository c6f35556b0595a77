//! The name server under madsim: a broker node registering every second, a client node reading
//! the route. Killing the broker removes its route at once (connection close); a partition
//! removes it after the heartbeat timeout (expiry scan); healing brings it back.

use std::net::IpAddr;
use std::time::Duration;

use madsim::net::NetSim;
use madsim::runtime::Handle;

use super::*;
use crate::protocol::register::{RegisterBrokerBody, RegisterBrokerRequestHeader};
use crate::protocol::topic::{TopicConfig, TopicConfigSerializeWrapper};
use crate::remoting::{request_code, response_code, RemotingClient, RemotingCommand};

const NAMESRV_ADDR: &str = "10.0.0.1:9876";
const EXPIRY_MS: u64 = 5_000;

fn register_request() -> RemotingCommand {
    let mut wrapper = TopicConfigSerializeWrapper::default();
    wrapper
        .topic_config_table
        .insert("SimTopic".into(), TopicConfig::new("SimTopic", 4, 4, 6));
    let body = RegisterBrokerBody {
        topic_config_serialize_wrapper: wrapper,
        filter_server_list: vec![],
    };
    RegisterBrokerRequestHeader {
        broker_name: "broker-a".into(),
        broker_addr: "10.0.1.1:10911".into(),
        cluster_name: "DefaultCluster".into(),
        ha_server_addr: "10.0.1.1:10912".into(),
        broker_id: 0,
        heartbeat_timeout_ms: None,
        compressed: false,
        body_crc32: 0,
    }
    .into_request(body.encode(false))
}

/// The route's response code as seen from the client node (a fresh connection each time, so a
/// stalled old one cannot hide the answer).
async fn route_code(client: &madsim::runtime::NodeHandle) -> i32 {
    client
        .spawn(async {
            let request = RemotingCommand::request(request_code::GET_ROUTEINFO_BY_TOPIC)
                .with_ext("topic", "SimTopic");
            match RemotingClient::new()
                .invoke(NAMESRV_ADDR, request, 1_000)
                .await
            {
                Ok(response) => response.code,
                Err(_) => -1,
            }
        })
        .await
        .expect("client task")
}

#[madsim::test]
async fn routes_follow_broker_kill_restart_and_partition() {
    let handle = Handle::current();
    let namesrv = handle
        .create_node()
        .name("namesrv")
        .ip("10.0.0.1".parse::<IpAddr>().unwrap())
        .init(|| async {
            let config = NamesrvConfig {
                listen_ip: "10.0.0.1".parse().unwrap(),
                listen_port: 9876,
                broker_channel_expired_timeout_ms: EXPIRY_MS,
                scan_not_active_broker_interval_ms: 500,
                ..NamesrvConfig::default()
            };
            let namesrv = Namesrv::start(config).await.expect("namesrv starts");
            futures::future::pending::<()>().await;
            drop(namesrv);
        })
        .build();
    let broker = handle
        .create_node()
        .name("broker")
        .ip("10.0.1.1".parse::<IpAddr>().unwrap())
        .init(|| async {
            let client = RemotingClient::new();
            loop {
                let _ = client.invoke(NAMESRV_ADDR, register_request(), 1_000).await;
                rt::sleep_ms(1_000).await;
            }
        })
        .build();
    let client = handle
        .create_node()
        .name("client")
        .ip("10.0.2.1".parse::<IpAddr>().unwrap())
        .build();

    rt::sleep(Duration::from_secs(2)).await;
    assert_eq!(route_code(&client).await, response_code::SUCCESS);

    // Kill: the broker's connection closes, the route goes without waiting for expiry.
    handle.kill(broker.id());
    rt::sleep_ms(300).await;
    assert_eq!(route_code(&client).await, response_code::TOPIC_NOT_EXIST);

    handle.restart(broker.id());
    rt::sleep(Duration::from_secs(2)).await;
    assert_eq!(route_code(&client).await, response_code::SUCCESS);

    // Partition: no close is seen, so the route survives until the heartbeat timeout...
    let net = NetSim::current();
    net.clog_link(broker.id(), namesrv.id());
    net.clog_link(namesrv.id(), broker.id());
    rt::sleep_ms(EXPIRY_MS / 2).await;
    assert_eq!(route_code(&client).await, response_code::SUCCESS);
    // ...and is gone once it has passed (plus one scan interval).
    rt::sleep_ms(EXPIRY_MS).await;
    assert_eq!(route_code(&client).await, response_code::TOPIC_NOT_EXIST);

    // Heal: the broker registers again.
    net.unclog_link(broker.id(), namesrv.id());
    net.unclog_link(namesrv.id(), broker.id());
    let mut back = false;
    for _ in 0..30 {
        rt::sleep_ms(1_000).await;
        if route_code(&client).await == response_code::SUCCESS {
            back = true;
            break;
        }
    }
    assert!(back, "route did not come back after the partition healed");
}
