use super::*;

const TIMEOUT_MS: u64 = 120_000;

fn topics(version_counter: i64, names: &[(&str, i32)]) -> TopicConfigSerializeWrapper {
    let mut wrapper = TopicConfigSerializeWrapper::default();
    for (name, queues) in names {
        wrapper.topic_config_table.insert(
            name.to_string(),
            TopicConfig::new(name, *queues, *queues, 6),
        );
    }
    wrapper.data_version = DataVersion {
        state_version: 0,
        timestamp: 1000,
        counter: version_counter,
    };
    wrapper
}

fn registration(
    broker_name: &str,
    broker_id: i64,
    addr: &str,
    wrapper: TopicConfigSerializeWrapper,
    connection_id: u64,
) -> BrokerRegistration {
    BrokerRegistration {
        cluster_name: "c1".into(),
        broker_addr: addr.into(),
        broker_name: broker_name.into(),
        broker_id,
        ha_server_addr: addr.replace(":10911", ":10912"),
        heartbeat_timeout_ms: None,
        topic_config_wrapper: wrapper,
        filter_server_list: vec![],
        connection_id: Some(connection_id),
    }
}

fn perm_of(table: &RouteTable, topic: &str, broker: &str) -> i32 {
    let route = table.pickup_topic_route_data(topic).unwrap();
    route
        .queue_datas
        .iter()
        .find(|q| q.broker_name == broker)
        .unwrap()
        .perm
}

#[test]
fn register_master_and_slave() {
    let mut table = RouteTable::new(TIMEOUT_MS);
    let outcome = table.register_broker(
        registration("b1", 0, "10.0.0.1:10911", topics(1, &[("T", 4)]), 1),
        0,
    );
    assert_eq!(
        outcome,
        RegistrationOutcome::default(),
        "a master gets no master address"
    );
    // The slave sends a different topic table: ignored, only masters update queue data.
    let outcome = table.register_broker(
        registration(
            "b1",
            1,
            "10.0.0.2:10911",
            topics(9, &[("T", 1), ("OnlySlave", 2)]),
            2,
        ),
        10,
    );
    assert_eq!(outcome.master_addr.as_deref(), Some("10.0.0.1:10911"));
    assert_eq!(outcome.ha_server_addr.as_deref(), Some("10.0.0.1:10912"));

    let route = table.pickup_topic_route_data("T").unwrap();
    assert_eq!(route.queue_datas.len(), 1);
    assert_eq!(route.queue_datas[0].read_queue_nums, 4);
    assert_eq!(route.queue_datas[0].write_queue_nums, 4);
    assert_eq!(route.broker_datas.len(), 1);
    let addrs = &route.broker_datas[0].broker_addrs;
    assert_eq!(addrs.get(&0).map(String::as_str), Some("10.0.0.1:10911"));
    assert_eq!(addrs.get(&1).map(String::as_str), Some("10.0.0.2:10911"));
    assert!(table.pickup_topic_route_data("OnlySlave").is_none());
    assert!(table.pickup_topic_route_data("Nope").is_none());

    let info = table.cluster_info();
    assert_eq!(
        info.cluster_addr_table["c1"].iter().collect::<Vec<_>>(),
        vec!["b1"]
    );
    assert_eq!(info.broker_addr_table["b1"].broker_addrs.len(), 2);
    assert_eq!(table.live_broker_count(), 2);
    assert_eq!(table.all_topics().topic_list.len(), 1);
}

#[test]
fn slave_registering_before_master_gets_no_master_address() {
    let mut table = RouteTable::new(TIMEOUT_MS);
    let outcome = table.register_broker(
        registration("b1", 1, "10.0.0.2:10911", topics(1, &[]), 2),
        0,
    );
    assert_eq!(outcome.master_addr, None);
    assert_eq!(outcome.ha_server_addr, None);
}

#[test]
fn new_master_version_updates_queue_data_and_same_version_keeps_wiped_perm() {
    let mut table = RouteTable::new(TIMEOUT_MS);
    table.register_broker(
        registration("b1", 0, "a:10911", topics(1, &[("T", 4)]), 1),
        0,
    );
    table.register_broker(
        registration("b2", 0, "b:10911", topics(1, &[("T", 2)]), 2),
        0,
    );
    assert_eq!(table.wipe_write_perm_of_broker("b1"), 1);
    assert_eq!(perm_of(&table, "T", "b1"), PERM_READ);
    assert_eq!(perm_of(&table, "T", "b2"), PERM_READ | PERM_WRITE);
    // Periodic re-registration with an unchanged data version must not restore the write bit.
    table.register_broker(
        registration("b1", 0, "a:10911", topics(1, &[("T", 4)]), 1),
        5,
    );
    assert_eq!(perm_of(&table, "T", "b1"), PERM_READ);
    assert_eq!(table.add_write_perm_of_broker("b1"), 1);
    assert_eq!(perm_of(&table, "T", "b1"), PERM_READ | PERM_WRITE);
    assert_eq!(table.wipe_write_perm_of_broker("unknown"), 0);

    // A changed version (topic table changed) re-applies the broker's topic configs.
    table.wipe_write_perm_of_broker("b1");
    table.register_broker(
        registration("b1", 0, "a:10911", topics(2, &[("T", 8), ("U", 1)]), 1),
        6,
    );
    assert_eq!(perm_of(&table, "T", "b1"), 6);
    let route = table.pickup_topic_route_data("T").unwrap();
    let b1 = route
        .queue_datas
        .iter()
        .find(|q| q.broker_name == "b1")
        .unwrap();
    assert_eq!(b1.write_queue_nums, 8);
    assert!(table.pickup_topic_route_data("U").is_some());
}

#[test]
fn expiry_by_time_removes_group_and_its_topics() {
    let mut table = RouteTable::new(TIMEOUT_MS);
    table.register_broker(
        registration("b1", 0, "a:10911", topics(1, &[("T", 4)]), 1),
        1_000,
    );
    let mut short = registration("b2", 0, "b:10911", topics(1, &[("T", 4), ("V", 1)]), 2);
    short.heartbeat_timeout_ms = Some(5_000);
    table.register_broker(short, 1_000);

    assert!(
        table.scan_not_active_brokers(1_000 + 5_000).is_empty(),
        "not yet past timeout"
    );
    let removed = table.scan_not_active_brokers(1_000 + 5_001);
    assert_eq!(
        removed,
        vec![RemovedBroker {
            cluster_name: "c1".into(),
            broker_addr: "b:10911".into(),
            connection_id: Some(2),
        }]
    );
    assert!(table.pickup_topic_route_data("V").is_none());
    let route = table.pickup_topic_route_data("T").unwrap();
    assert_eq!(route.queue_datas.len(), 1);
    assert_eq!(route.queue_datas[0].broker_name, "b1");
    assert!(!table.cluster_info().broker_addr_table.contains_key("b2"));

    // A heartbeat (re-registration) resets the clock.
    table.register_broker(
        registration("b1", 0, "a:10911", topics(1, &[("T", 4)]), 1),
        100_000,
    );
    assert!(table.scan_not_active_brokers(1_000 + 120_001).is_empty());
    assert_eq!(table.scan_not_active_brokers(100_000 + 120_001).len(), 1);
    assert!(table.pickup_topic_route_data("T").is_none());
    let info = table.cluster_info();
    assert!(info.cluster_addr_table.is_empty(), "{info:?}");
    assert!(info.broker_addr_table.is_empty());
    assert_eq!(table.live_broker_count(), 0);
}

#[test]
fn connection_close_removes_only_that_broker_and_slave_keeps_route() {
    let mut table = RouteTable::new(TIMEOUT_MS);
    table.register_broker(
        registration("b1", 0, "m:10911", topics(1, &[("T", 4)]), 7),
        0,
    );
    table.register_broker(
        registration("b1", 1, "s:10911", topics(1, &[("T", 4)]), 8),
        0,
    );
    assert!(table.on_connection_closed(99).is_empty());

    // Master gone: the group survives through its slave, so the route still serves reads.
    let removed = table.on_connection_closed(7);
    assert_eq!(removed.len(), 1);
    assert_eq!(removed[0].broker_addr, "m:10911");
    let route = table.pickup_topic_route_data("T").unwrap();
    let addrs = &route.broker_datas[0].broker_addrs;
    assert_eq!(addrs.len(), 1);
    assert_eq!(addrs.get(&1).map(String::as_str), Some("s:10911"));
    assert_eq!(route.broker_datas[0].master_addr(), None);

    // A slave re-registering while the master is gone learns no master.
    let outcome = table.register_broker(
        registration("b1", 1, "s:10911", topics(1, &[("T", 4)]), 8),
        1,
    );
    assert_eq!(outcome.master_addr, None);

    table.on_connection_closed(8);
    assert!(table.pickup_topic_route_data("T").is_none());
    assert!(table.cluster_info().broker_addr_table.is_empty());
}

#[test]
fn unregister_and_slave_promotion_keep_one_id_per_address() {
    let mut table = RouteTable::new(TIMEOUT_MS);
    table.register_broker(
        registration("b1", 1, "s:10911", topics(1, &[("T", 4)]), 1),
        0,
    );
    // The slave is promoted and registers the same address as master.
    table.register_broker(
        registration("b1", 0, "s:10911", topics(1, &[("T", 4)]), 1),
        1,
    );
    let info = table.cluster_info();
    let addrs = &info.broker_addr_table["b1"].broker_addrs;
    assert_eq!(addrs.len(), 1);
    assert_eq!(addrs.get(&0).map(String::as_str), Some("s:10911"));
    assert!(
        table.pickup_topic_route_data("T").is_some(),
        "promoted master publishes topics"
    );

    // Unregister with a mismatched id does not remove the member.
    table.unregister_broker("c1", "s:10911", "b1", 5);
    assert!(table.cluster_info().broker_addr_table.contains_key("b1"));
    table.unregister_broker("c1", "s:10911", "b1", 0);
    assert!(table.cluster_info().broker_addr_table.is_empty());
    assert!(table.pickup_topic_route_data("T").is_none());
}

#[test]
fn delete_topic_everywhere_or_per_cluster_and_topics_by_cluster() {
    let mut table = RouteTable::new(TIMEOUT_MS);
    table.register_broker(
        registration("b1", 0, "a:10911", topics(1, &[("T", 4), ("X", 1)]), 1),
        0,
    );
    let mut other = registration("b2", 0, "b:10911", topics(1, &[("T", 4)]), 2);
    other.cluster_name = "c2".into();
    table.register_broker(other, 0);

    let c1: Vec<String> = table
        .topics_by_cluster("c1")
        .topic_list
        .into_iter()
        .collect();
    assert_eq!(c1, vec!["T", "X"]);
    let c2: Vec<String> = table
        .topics_by_cluster("c2")
        .topic_list
        .into_iter()
        .collect();
    assert_eq!(c2, vec!["T"]);
    assert!(table.topics_by_cluster("nope").topic_list.is_empty());

    table.delete_topic("T", Some("c1"));
    let route = table.pickup_topic_route_data("T").unwrap();
    assert_eq!(route.queue_datas.len(), 1);
    assert_eq!(route.queue_datas[0].broker_name, "b2");
    table.delete_topic("T", Some("unknown-cluster"));
    assert!(table.pickup_topic_route_data("T").is_some());
    table.delete_topic("X", None);
    assert!(table.pickup_topic_route_data("X").is_none());
    table.delete_topic("T", Some("c2"));
    assert!(table.pickup_topic_route_data("T").is_none());
    assert!(table.all_topics().topic_list.is_empty());
}

#[test]
fn data_version_change_detection_and_timestamp_update() {
    let mut table = RouteTable::new(1_000);
    let wrapper = topics(3, &[("T", 1)]);
    let version = wrapper.data_version.clone();
    assert!(table.is_broker_topic_config_changed("c1", "a:10911", &version));
    table.register_broker(registration("b1", 0, "a:10911", wrapper, 1), 0);
    assert!(!table.is_broker_topic_config_changed("c1", "a:10911", &version));
    let mut newer = version.clone();
    newer.next_version(5);
    assert!(table.is_broker_topic_config_changed("c1", "a:10911", &newer));
    table.update_broker_timestamp("c1", "a:10911", 900);
    assert!(table.scan_not_active_brokers(1_900).is_empty());
    assert_eq!(table.scan_not_active_brokers(1_901).len(), 1);
}

#[test]
fn broker_moving_clusters_is_removed_everywhere_on_close() {
    let mut table = RouteTable::new(TIMEOUT_MS);
    table.register_broker(
        registration("b1", 0, "a:10911", topics(1, &[("T", 4)]), 1),
        0,
    );
    let mut moved = registration("b1", 0, "a:10911", topics(1, &[("T", 4)]), 2);
    moved.cluster_name = "c2".into();
    table.register_broker(moved, 1);
    assert!(table.cluster_info().cluster_addr_table["c2"].contains("b1"));
    // Both liveness records (one per cluster) go with their connections.
    assert_eq!(table.on_connection_closed(2).len(), 1);
    assert_eq!(table.on_connection_closed(1).len(), 1);
    let info = table.cluster_info();
    assert!(info.broker_addr_table.is_empty(), "{info:?}");
    assert!(info.cluster_addr_table.is_empty(), "{info:?}");
    assert!(table.pickup_topic_route_data("T").is_none());
    assert_eq!(table.live_broker_count(), 0);
}
