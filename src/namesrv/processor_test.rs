//! Processor tests without sockets: `NamesrvProcessor::handle` with no connection.

use std::sync::Arc;

use super::*;
use crate::protocol::cluster::ClusterInfo;
use crate::protocol::kv::{KVTable, TopicList};
use crate::protocol::register::{RegisterBrokerBody, RegisterBrokerRequestHeader};
use crate::protocol::topic::{DataVersion, TopicConfig, TopicConfigSerializeWrapper};
use crate::remoting::{request_code, response_code, RemotingCommand};

fn processor(config: NamesrvConfig) -> NamesrvProcessor {
    NamesrvProcessor::new(Arc::new(NamesrvState::new(config)))
}

fn wrapper(counter: i64) -> TopicConfigSerializeWrapper {
    let mut wrapper = TopicConfigSerializeWrapper::default();
    for name in ["T1", "T2"] {
        wrapper
            .topic_config_table
            .insert(name.into(), TopicConfig::new(name, 4, 4, 6));
    }
    wrapper.data_version = DataVersion {
        state_version: 0,
        timestamp: 7,
        counter,
    };
    wrapper
}

fn register(broker_name: &str, broker_id: i64, addr: &str) -> RemotingCommand {
    let body = RegisterBrokerBody {
        topic_config_serialize_wrapper: wrapper(1),
        filter_server_list: vec![],
    };
    RegisterBrokerRequestHeader {
        broker_name: broker_name.into(),
        broker_addr: addr.into(),
        cluster_name: "c1".into(),
        ha_server_addr: format!("{addr}-ha"),
        broker_id,
        heartbeat_timeout_ms: None,
        compressed: false,
        body_crc32: 0,
    }
    .into_request(body.encode(false))
}

fn req(code: i32) -> RemotingCommand {
    RemotingCommand::request(code)
}

#[test]
fn register_then_query_route_cluster_and_topic_lists() {
    let p = processor(NamesrvConfig::default());
    let r = p.handle(None, &register("b1", 0, "a:10911"));
    assert_eq!(r.code, response_code::SUCCESS, "{:?}", r.remark);
    assert_eq!(r.ext("masterAddr"), None);
    let r = p.handle(None, &register("b1", 1, "s:10911"));
    assert_eq!(r.ext("masterAddr"), Some("a:10911"));
    assert_eq!(r.ext("haServerAddr"), Some("a:10911-ha"));

    let r = p.handle(
        None,
        &req(request_code::GET_ROUTEINFO_BY_TOPIC).with_ext("topic", "T1"),
    );
    assert_eq!(r.code, response_code::SUCCESS);
    let route = crate::protocol::route::TopicRouteData::decode(&r.body).unwrap();
    assert_eq!(route.broker_datas[0].broker_addrs.len(), 2);

    let r = p.handle(
        None,
        &req(request_code::GET_ROUTEINFO_BY_TOPIC).with_ext("topic", "Nope"),
    );
    assert_eq!(r.code, response_code::TOPIC_NOT_EXIST);
    assert_eq!(
        r.remark.as_deref(),
        Some(
            "No topic route info in name server for the topic: Nope\n\
             See https://rocketmq.apache.org/docs/bestPractice/06FAQ for further details."
        )
    );

    let r = p.handle(None, &req(request_code::GET_BROKER_CLUSTER_INFO));
    let info = ClusterInfo::decode(&r.body).unwrap();
    assert!(info.cluster_addr_table["c1"].contains("b1"));

    let r = p.handle(None, &req(request_code::GET_ALL_TOPIC_LIST_FROM_NAMESERVER));
    let list = TopicList::decode(&r.body).unwrap();
    assert_eq!(list.topic_list.len(), 2);
    let r = p.handle(
        None,
        &req(request_code::GET_TOPICS_BY_CLUSTER).with_ext("cluster", "c1"),
    );
    assert_eq!(TopicList::decode(&r.body).unwrap().topic_list.len(), 2);

    let r = p.handle(
        None,
        &req(request_code::DELETE_TOPIC_IN_NAMESRV)
            .with_ext("topic", "T2")
            .with_ext("clusterName", "c1"),
    );
    assert_eq!(r.code, response_code::SUCCESS);
    let r = p.handle(
        None,
        &req(request_code::GET_ROUTEINFO_BY_TOPIC).with_ext("topic", "T2"),
    );
    assert_eq!(r.code, response_code::TOPIC_NOT_EXIST);

    let r = p.handle(
        None,
        &req(request_code::UNREGISTER_BROKER)
            .with_ext("brokerName", "b1")
            .with_ext("brokerAddr", "s:10911")
            .with_ext("clusterName", "c1")
            .with_ext("brokerId", 1),
    );
    assert_eq!(r.code, response_code::SUCCESS);
    let r = p.handle(None, &req(request_code::GET_BROKER_CLUSTER_INFO));
    let info = ClusterInfo::decode(&r.body).unwrap();
    assert_eq!(info.broker_addr_table["b1"].broker_addrs.len(), 1);
}

#[test]
fn wipe_and_add_write_perm_report_counts() {
    let p = processor(NamesrvConfig::default());
    p.handle(None, &register("b1", 0, "a:10911"));
    let r = p.handle(
        None,
        &req(request_code::WIPE_WRITE_PERM_OF_BROKER).with_ext("brokerName", "b1"),
    );
    assert_eq!(r.code, response_code::SUCCESS);
    assert_eq!(r.ext("wipeTopicCount"), Some("2"));
    let r = p.handle(
        None,
        &req(request_code::GET_ROUTEINFO_BY_TOPIC).with_ext("topic", "T1"),
    );
    let route = crate::protocol::route::TopicRouteData::decode(&r.body).unwrap();
    assert_eq!(route.queue_datas[0].perm, 4);
    let r = p.handle(
        None,
        &req(request_code::ADD_WRITE_PERM_OF_BROKER).with_ext("brokerName", "b1"),
    );
    assert_eq!(r.ext("addTopicCount"), Some("2"));
    let r = p.handle(
        None,
        &req(request_code::ADD_WRITE_PERM_OF_BROKER).with_ext("brokerName", "zz"),
    );
    assert_eq!(r.ext("addTopicCount"), Some("0"));
}

#[test]
fn register_rejects_bad_crc_and_bad_body_and_missing_fields() {
    let p = processor(NamesrvConfig::default());
    let mut bad_crc = register("b1", 0, "a:10911");
    let good_crc: i32 = bad_crc.required("bodyCrc32").unwrap();
    bad_crc.set_ext("bodyCrc32", good_crc ^ 1);
    let r = p.handle(None, &bad_crc);
    assert_eq!(r.code, response_code::SYSTEM_ERROR);
    assert_eq!(r.remark.as_deref(), Some("crc32 not match"));
    assert!(p.state.routes().cluster_info().broker_addr_table.is_empty());

    // bodyCrc32 = 0 skips the check (older brokers).
    let mut unchecked = register("b1", 0, "a:10911");
    unchecked.set_ext("bodyCrc32", 0);
    assert_eq!(p.handle(None, &unchecked).code, response_code::SUCCESS);

    let mut garbage = register("b2", 0, "b:10911");
    garbage.set_ext("bodyCrc32", 0);
    garbage.body = bytes::Bytes::from_static(b"{\"topicConfigSerializeWrapper\":");
    let r = p.handle(None, &garbage);
    assert_eq!(r.code, response_code::SYSTEM_ERROR);
    assert!(r
        .remark
        .unwrap()
        .contains("invalid register body from b:10911"));

    let mut missing = register("b3", 0, "c:10911");
    missing.ext_fields.remove("brokerName");
    let r = p.handle(None, &missing);
    assert_eq!(r.code, response_code::SYSTEM_ERROR);
    assert!(r.remark.unwrap().contains("brokerName"));

    let mut bad_id = register("b3", 0, "c:10911");
    bad_id.set_ext("brokerId", "zero");
    let r = p.handle(None, &bad_id);
    assert_eq!(r.code, response_code::SYSTEM_ERROR);
    assert!(r.remark.unwrap().contains("brokerId"));
}

#[test]
fn legacy_broker_sends_bare_wrapper() {
    let p = processor(NamesrvConfig::default());
    let mut request = register("b1", 0, "a:10911");
    request.version = 30;
    request.set_ext("bodyCrc32", 0);
    request.body = serde_json::to_vec(&wrapper(1)).unwrap().into();
    assert_eq!(p.handle(None, &request).code, response_code::SUCCESS);
    assert!(p.state.routes().pickup_topic_route_data("T1").is_some());
}

#[test]
fn kv_config_commands() {
    let p = processor(NamesrvConfig::default());
    let put = req(request_code::PUT_KV_CONFIG)
        .with_ext("namespace", "ORDER_TOPIC_CONFIG")
        .with_ext("key", "T1")
        .with_ext("value", "b1:4");
    assert_eq!(p.handle(None, &put).code, response_code::SUCCESS);
    let get = req(request_code::GET_KV_CONFIG)
        .with_ext("namespace", "ORDER_TOPIC_CONFIG")
        .with_ext("key", "T1");
    let r = p.handle(None, &get);
    assert_eq!(r.ext("value"), Some("b1:4"));
    let r = p.handle(
        None,
        &req(request_code::GET_KVLIST_BY_NAMESPACE).with_ext("namespace", "ORDER_TOPIC_CONFIG"),
    );
    assert_eq!(KVTable::decode(&r.body).unwrap().table["T1"], "b1:4");
    // A registering broker gets the order-topic table back.
    let r = p.handle(None, &register("b1", 0, "a:10911"));
    assert_eq!(KVTable::decode(&r.body).unwrap().table["T1"], "b1:4");

    let del = req(request_code::DELETE_KV_CONFIG)
        .with_ext("namespace", "ORDER_TOPIC_CONFIG")
        .with_ext("key", "T1");
    assert_eq!(p.handle(None, &del).code, response_code::SUCCESS);
    let r = p.handle(None, &get);
    assert_eq!(r.code, response_code::QUERY_NOT_FOUND);
    assert_eq!(
        r.remark.as_deref(),
        Some("No config item, Namespace: ORDER_TOPIC_CONFIG Key: T1")
    );
    let r = p.handle(
        None,
        &req(request_code::GET_KVLIST_BY_NAMESPACE).with_ext("namespace", "ORDER_TOPIC_CONFIG"),
    );
    assert_eq!(r.code, response_code::QUERY_NOT_FOUND);
    let r = p.handle(
        None,
        &req(request_code::PUT_KV_CONFIG).with_ext("namespace", "n"),
    );
    assert_eq!(r.code, response_code::SYSTEM_ERROR);
    assert!(r.remark.unwrap().contains("key"));
}

#[test]
fn query_data_version_and_disabled_topic_list_and_unknown_code() {
    let p = processor(NamesrvConfig {
        enable_all_topic_list: false,
        ..NamesrvConfig::default()
    });
    p.handle(None, &register("b1", 0, "a:10911"));
    let query = |version: &DataVersion| {
        req(request_code::QUERY_DATA_VERSION)
            .with_ext("brokerName", "b1")
            .with_ext("brokerAddr", "a:10911")
            .with_ext("clusterName", "c1")
            .with_ext("brokerId", 0)
            .with_body(serde_json::to_vec(version).unwrap())
    };
    let r = p.handle(None, &query(&wrapper(1).data_version));
    assert_eq!(r.code, response_code::SUCCESS);
    assert_eq!(r.ext("changed"), Some("false"));
    let stored: DataVersion = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(stored, wrapper(1).data_version);
    let r = p.handle(None, &query(&wrapper(2).data_version));
    assert_eq!(r.ext("changed"), Some("true"));

    let r = p.handle(None, &req(request_code::GET_ALL_TOPIC_LIST_FROM_NAMESERVER));
    assert_eq!(r.code, response_code::SYSTEM_ERROR);
    assert_eq!(r.remark.as_deref(), Some("disable"));

    let r = p.handle(None, &req(12_345));
    assert_eq!(r.code, response_code::REQUEST_CODE_NOT_SUPPORTED);
    assert_eq!(
        r.remark.as_deref(),
        Some(" request type 12345 not supported")
    );
}
