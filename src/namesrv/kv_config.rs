//! The name server's namespaced key/value store (RocketMQ `KVConfigManager`), e.g. the
//! ORDER_TOPIC_CONFIG namespace. In memory only: Apogee does not persist kvConfig.json yet.

use std::collections::BTreeMap;

use crate::protocol::kv::KVTable;

#[derive(Debug, Clone, Default)]
pub struct KvConfig {
    /// namespace → key → value
    table: BTreeMap<String, BTreeMap<String, String>>,
}

impl KvConfig {
    pub fn put(&mut self, namespace: &str, key: &str, value: &str) {
        self.table
            .entry(namespace.to_string())
            .or_default()
            .insert(key.to_string(), value.to_string());
    }

    pub fn get(&self, namespace: &str, key: &str) -> Option<&str> {
        self.table.get(namespace)?.get(key).map(String::as_str)
    }

    /// Removes a key; an emptied namespace disappears. Returns whether the key existed.
    pub fn delete(&mut self, namespace: &str, key: &str) -> bool {
        let Some(entries) = self.table.get_mut(namespace) else {
            return false;
        };
        let existed = entries.remove(key).is_some();
        if entries.is_empty() {
            self.table.remove(namespace);
        }
        existed
    }

    /// The whole namespace, or None if it has no keys.
    pub fn list(&self, namespace: &str) -> Option<KVTable> {
        self.table.get(namespace).map(|entries| KVTable {
            table: entries.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_delete_list() {
        let mut kv = KvConfig::default();
        assert_eq!(kv.get("ns", "k"), None);
        kv.put("ns", "k", "v1");
        kv.put("ns", "k", "v2");
        kv.put("ns", "j", "w");
        assert_eq!(kv.get("ns", "k"), Some("v2"));
        assert_eq!(kv.get("other", "k"), None);
        assert_eq!(kv.list("ns").unwrap().table.len(), 2);
        assert!(kv.delete("ns", "k"));
        assert!(!kv.delete("ns", "k"));
        assert!(kv.delete("ns", "j"));
        assert!(kv.list("ns").is_none(), "emptied namespace is gone");
    }
}
