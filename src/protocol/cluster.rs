//! GET_BROKER_CLUSTER_INFO body (RocketMQ `ClusterInfo`). OWNER: namesrv helper.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::parse_lenient_json;
use super::route::BrokerData;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterInfo {
    /// broker name → broker group
    #[serde(default)]
    pub broker_addr_table: BTreeMap<String, BrokerData>,
    /// cluster name → broker names
    #[serde(default)]
    pub cluster_addr_table: BTreeMap<String, BTreeSet<String>>,
}

impl ClusterInfo {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn decode(body: &[u8]) -> serde_json::Result<ClusterInfo> {
        parse_lenient_json(&String::from_utf8_lossy(body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_info_json_shape() {
        let mut info = ClusterInfo::default();
        let mut b = BrokerData::new("c1", "b1");
        b.broker_addrs.insert(0, "1.1.1.1:10911".into());
        info.broker_addr_table.insert("b1".into(), b);
        info.cluster_addr_table
            .insert("c1".into(), ["b1".to_string()].into_iter().collect());
        let json = String::from_utf8(info.encode()).unwrap();
        assert_eq!(
            json,
            r#"{"brokerAddrTable":{"b1":{"brokerAddrs":{"0":"1.1.1.1:10911"},"brokerName":"b1","cluster":"c1","enableActingMaster":false}},"clusterAddrTable":{"c1":["b1"]}}"#
        );
        assert_eq!(ClusterInfo::decode(json.as_bytes()).unwrap(), info);
        let legacy = r#"{"brokerAddrTable":{"b1":{"brokerAddrs":{0:"1.1.1.1:10911"},"brokerName":"b1","cluster":"c1"}},"clusterAddrTable":{"c1":["b1"]}}"#;
        assert_eq!(ClusterInfo::decode(legacy.as_bytes()).unwrap(), info);
    }
}
