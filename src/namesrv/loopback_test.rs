//! End-to-end: a Namesrv on 127.0.0.1:0, a broker registering through RemotingClient, a client
//! reading the route, then expiry and connection-close removal.

use std::time::Duration;

use super::*;
use crate::protocol::register::{
    RegisterBrokerBody, RegisterBrokerRequestHeader, RegisterBrokerResult,
};
use crate::protocol::topic::{TopicConfig, TopicConfigSerializeWrapper};
use crate::remoting::{request_code, response_code, RemotingClient, RemotingCommand};

const TIMEOUT_MS: u64 = 3_000;

async fn start(expiry_ms: u64) -> Namesrv {
    let config = NamesrvConfig {
        listen_ip: "127.0.0.1".parse().unwrap(),
        listen_port: 0,
        broker_channel_expired_timeout_ms: expiry_ms,
        scan_not_active_broker_interval_ms: 20,
        ..NamesrvConfig::default()
    };
    Namesrv::start(config).await.unwrap()
}

fn register_request(broker_id: i64, broker_addr: &str, compressed: bool) -> RemotingCommand {
    let mut wrapper = TopicConfigSerializeWrapper::default();
    wrapper
        .topic_config_table
        .insert("TopicTest".into(), TopicConfig::new("TopicTest", 4, 4, 6));
    wrapper.data_version.next_version(1);
    let body = RegisterBrokerBody {
        topic_config_serialize_wrapper: wrapper,
        filter_server_list: vec![],
    };
    RegisterBrokerRequestHeader {
        broker_name: "broker-a".into(),
        broker_addr: broker_addr.into(),
        cluster_name: "DefaultCluster".into(),
        ha_server_addr: broker_addr.replace(":10911", ":10912"),
        broker_id,
        heartbeat_timeout_ms: None,
        compressed,
        body_crc32: 0,
    }
    .into_request(body.encode(compressed))
}

async fn get_route(client: &RemotingClient, addr: &str) -> RemotingCommand {
    let request = RemotingCommand::request(request_code::GET_ROUTEINFO_BY_TOPIC)
        .with_ext("topic", "TopicTest");
    client.invoke(addr, request, TIMEOUT_MS).await.unwrap()
}

async fn wait_for_route_gone(client: &RemotingClient, addr: &str) {
    for _ in 0..200 {
        if get_route(client, addr).await.code == response_code::TOPIC_NOT_EXIST {
            return;
        }
        rt::sleep(Duration::from_millis(10)).await;
    }
    panic!("route still present after 2 s");
}

#[tokio::test]
async fn register_route_and_expire() {
    let namesrv = start(300).await;
    let addr = namesrv.local_addr().to_string();
    let broker = RemotingClient::new();
    let reader = RemotingClient::new();

    let response = broker
        .invoke(
            &addr,
            register_request(0, "127.0.0.1:10911", false),
            TIMEOUT_MS,
        )
        .await
        .unwrap();
    assert_eq!(
        response.code,
        response_code::SUCCESS,
        "{:?}",
        response.remark
    );
    // The slave registers compressed and learns its master.
    let slave = RemotingClient::new();
    let response = slave
        .invoke(
            &addr,
            register_request(1, "127.0.0.2:10911", true),
            TIMEOUT_MS,
        )
        .await
        .unwrap();
    assert_eq!(
        response.code,
        response_code::SUCCESS,
        "{:?}",
        response.remark
    );
    let result = RegisterBrokerResult::from_response(&response);
    assert_eq!(result.master_addr.as_deref(), Some("127.0.0.1:10911"));
    assert_eq!(result.ha_server_addr.as_deref(), Some("127.0.0.1:10912"));

    let response = get_route(&reader, &addr).await;
    assert_eq!(response.code, response_code::SUCCESS);
    let body = std::str::from_utf8(&response.body).unwrap();
    assert!(
        body.contains(r#""brokerAddrs":{"0":"127.0.0.1:10911","1":"127.0.0.2:10911"}"#),
        "{body}"
    );
    let route = TopicRouteData::decode(&response.body).unwrap();
    assert_eq!(route.queue_datas[0].write_queue_nums, 4);
    assert_eq!(namesrv.topic_route("TopicTest"), Some(route));

    // Both brokers stop registering: after 300 ms the scan loop drops them.
    wait_for_route_gone(&reader, &addr).await;
    let miss = get_route(&reader, &addr).await;
    assert_eq!(
        miss.remark.as_deref(),
        Some(processor::topic_not_exist_remark("TopicTest").as_str())
    );
    assert!(namesrv.cluster_info().broker_addr_table.is_empty());
    namesrv.shutdown();
}

#[tokio::test]
async fn connection_close_removes_broker() {
    let namesrv = start(120_000).await;
    let addr = namesrv.local_addr().to_string();
    let broker = RemotingClient::new();
    let reader = RemotingClient::new();
    let response = broker
        .invoke(
            &addr,
            register_request(0, "127.0.0.1:10911", false),
            TIMEOUT_MS,
        )
        .await
        .unwrap();
    assert_eq!(response.code, response_code::SUCCESS);
    assert_eq!(get_route(&reader, &addr).await.code, response_code::SUCCESS);

    // The reader's connection closing must not affect the broker's registration.
    reader.close(&addr);
    let reader = RemotingClient::new();
    rt::sleep(Duration::from_millis(50)).await;
    assert_eq!(get_route(&reader, &addr).await.code, response_code::SUCCESS);

    broker.close(&addr);
    wait_for_route_gone(&reader, &addr).await;
    namesrv.shutdown();
}

#[tokio::test]
async fn errors_over_the_wire() {
    let namesrv = start(120_000).await;
    let addr = namesrv.local_addr().to_string();
    let client = RemotingClient::new();

    let mut bad_crc = register_request(0, "127.0.0.1:10911", false);
    bad_crc.set_ext("bodyCrc32", 12345);
    let response = client.invoke(&addr, bad_crc, TIMEOUT_MS).await.unwrap();
    assert_eq!(response.code, response_code::SYSTEM_ERROR);
    assert_eq!(response.remark.as_deref(), Some("crc32 not match"));

    let response = client
        .invoke(
            &addr,
            RemotingCommand::request(request_code::GET_ROUTEINFO_BY_TOPIC),
            TIMEOUT_MS,
        )
        .await
        .unwrap();
    assert_eq!(response.code, response_code::SYSTEM_ERROR);
    assert!(response.remark.unwrap().contains("topic"));

    let response = client
        .invoke(&addr, RemotingCommand::request(31_999), TIMEOUT_MS)
        .await
        .unwrap();
    assert_eq!(response.code, response_code::REQUEST_CODE_NOT_SUPPORTED);

    namesrv.shutdown();
    // After shutdown the port no longer answers.
    let after = RemotingClient::new()
        .invoke(
            &addr,
            RemotingCommand::request(request_code::GET_BROKER_CLUSTER_INFO),
            500,
        )
        .await;
    assert!(after.is_err());
}
