//! One persisted broker JSON config file (topics.json, consumerOffset.json,
//! subscriptionGroup.json) on the disk seam: lenient load, atomic replace.

use std::path::PathBuf;
use std::sync::Arc;

use serde::de::DeserializeOwned;

use super::BrokerError;
use crate::store::disk::{self, Disk};

pub struct ConfigFile {
    disk: Arc<dyn Disk>,
    path: PathBuf,
    /// Serializes writers so a later snapshot is never overwritten by an earlier one.
    write_lock: tokio::sync::Mutex<()>,
}

impl ConfigFile {
    pub fn new(disk: Arc<dyn Disk>, path: PathBuf) -> Self {
        ConfigFile {
            disk,
            path,
            write_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// Reads and parses the file; `None` when it does not exist (or is empty). Unquoted
    /// numeric keys written by fastjson are accepted.
    pub fn load<T: DeserializeOwned>(&self) -> Result<Option<T>, BrokerError> {
        let bytes = disk::read_file(&*self.disk, &self.path).map_err(|source| BrokerError::Io {
            op: "read",
            path: self.path.clone(),
            source,
        })?;
        let Some(bytes) = bytes else {
            return Ok(None);
        };
        let text = std::str::from_utf8(&bytes).map_err(|e| BrokerError::ConfigFile {
            path: self.path.clone(),
            reason: format!("not UTF-8 at byte offset {}", e.valid_up_to()),
        })?;
        if text.trim().is_empty() {
            return Ok(None);
        }
        crate::protocol::parse_lenient_json(text)
            .map(Some)
            .map_err(|e| BrokerError::ConfigFile {
                path: self.path.clone(),
                reason: format!("line {} column {}: {e}", e.line(), e.column()),
            })
    }

    /// Atomically replaces the file with the text `snapshot` returns. The snapshot is taken
    /// under the write lock so concurrent persists land in order.
    pub async fn persist(&self, snapshot: impl FnOnce() -> String) -> Result<(), BrokerError> {
        let _guard = self.write_lock.lock().await;
        let text = snapshot();
        let disk = self.disk.clone();
        let path = self.path.clone();
        let result =
            crate::rt::blocking(move || disk::write_file_atomic(&*disk, &path, text.as_bytes()))
                .await;
        result.map_err(|source| BrokerError::Io {
            op: "persist",
            path: self.path.clone(),
            source,
        })
    }
}
