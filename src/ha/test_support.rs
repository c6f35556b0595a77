//! Test-only: the broker config every master/slave loopback test starts from (small files,
//! loopback address, port 0), so HA, slave-sync and slave-read tests share one definition.

use std::net::IpAddr;

use crate::config::BrokerConfig;
use crate::store::BrokerRole;

/// A `broker-a` broker with `role` and `broker_id`, registering at `namesrv_addr`, its store
/// under `store_root` (tests run on SimDisk, so the path only has to be distinct per test file).
// Reads better as a list of overrides than as one struct literal with a nested store config.
#[allow(clippy::field_reassign_with_default)]
pub(crate) fn replicated_broker_config(
    namesrv_addr: &str,
    role: BrokerRole,
    broker_id: i64,
    store_root: &str,
) -> BrokerConfig {
    let mut config = BrokerConfig::default();
    config.listen_port = 0;
    config.broker_ip1 = IpAddr::from([127, 0, 0, 1]);
    config.broker_name = "broker-a".into();
    config.broker_id = broker_id;
    config.namesrv_addrs = vec![namesrv_addr.to_string()];
    config.store.broker_role = role;
    config.store.store_path_root_dir = store_root.into();
    config.store.mapped_file_size_commitlog = 1024 * 1024;
    config.store.mapped_file_size_consume_queue = 300 * 20;
    config.store.max_hash_slot_num = 1000;
    config.store.max_index_num = 4000;
    config
}
