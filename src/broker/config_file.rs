//! One persisted broker JSON config file (topics.json, consumerOffset.json,
//! subscriptionGroup.json) on the disk seam: lenient load, atomic replace.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::de::DeserializeOwned;

use super::BrokerError;
use crate::store::disk::{self, Disk};

pub struct ConfigFile {
    disk: Arc<dyn Disk>,
    path: PathBuf,
    /// Serializes writers so a later snapshot is never overwritten by an earlier one. Holds
    /// the number of persist requests the file on disk already covers.
    write_lock: tokio::sync::Mutex<u64>,
    /// Persist requests so far (group commit of config changes, see [`ConfigFile::persist`]).
    requested: AtomicU64,
}

impl ConfigFile {
    pub fn new(disk: Arc<dyn Disk>, path: PathBuf) -> Self {
        ConfigFile {
            disk,
            path,
            write_lock: tokio::sync::Mutex::new(0),
            requested: AtomicU64::new(0),
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
    ///
    /// Group commit: callers change the in-memory table *before* calling this, so a snapshot
    /// taken after request N was counted contains N's change. A request that finds, once it
    /// holds the lock, that a write started after it was counted has nothing left to do: a
    /// burst of N changes (topics auto-created by many producers at once) costs one or two
    /// fsync chains instead of N, and every caller still returns only once its change is durable.
    pub async fn persist(&self, snapshot: impl FnOnce() -> String) -> Result<(), BrokerError> {
        let ticket = self.requested.fetch_add(1, Ordering::SeqCst) + 1;
        let mut covered = self.write_lock.lock().await;
        if *covered >= ticket {
            return Ok(());
        }
        // Every request counted up to here changed the table before it was counted.
        let upto = self.requested.load(Ordering::SeqCst);
        let text = snapshot();
        self.write(text).await?;
        *covered = upto;
        Ok(())
    }

    /// Writes `text` unless the file already holds exactly that (a restart with nothing
    /// changed): start-up then costs a read instead of a write and two fsyncs.
    pub async fn persist_if_changed(&self, text: String) -> Result<(), BrokerError> {
        let _guard = self.write_lock.lock().await;
        let path = self.path.clone();
        if let Ok(Some(current)) = disk::read_file(&*self.disk, &path) {
            if current == text.as_bytes() {
                return Ok(());
            }
        }
        self.write(text).await
    }

    async fn write(&self, text: String) -> Result<(), BrokerError> {
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

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::atomic::AtomicUsize;

    use super::*;
    use crate::store::disk::sim::SimDisk;

    #[tokio::test]
    async fn concurrent_persists_share_writes_and_the_last_change_lands() {
        let disk: Arc<dyn Disk> = Arc::new(SimDisk::new());
        let file = Arc::new(ConfigFile::new(disk.clone(), "/cfg/x.json".into()));
        let table = Arc::new(AtomicUsize::new(0));
        let snapshots = Arc::new(AtomicUsize::new(0));
        // Hold the write lock while the 10 requests arrive, as a slow fsync would.
        let guard = file.write_lock.lock().await;
        let mut tasks = Vec::new();
        for _ in 0..10 {
            // Change first, then persist (the callers' contract).
            table.fetch_add(1, Ordering::SeqCst);
            let (file, table, snapshots) = (file.clone(), table.clone(), snapshots.clone());
            tasks.push(crate::rt::spawn(async move {
                file.persist(|| {
                    snapshots.fetch_add(1, Ordering::SeqCst);
                    table.load(Ordering::SeqCst).to_string()
                })
                .await
            }));
        }
        while file.requested.load(Ordering::SeqCst) < 10 {
            crate::rt::sleep(std::time::Duration::from_millis(1)).await;
        }
        drop(guard);
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let n = snapshots.load(Ordering::SeqCst);
        assert_eq!(n, 1, "10 queued persists took {n} writes");
        let text = disk::read_file(&*disk, Path::new("/cfg/x.json"))
            .unwrap()
            .unwrap();
        assert_eq!(text, b"10");
        // A later change is written again.
        table.fetch_add(1, Ordering::SeqCst);
        file.persist(|| table.load(Ordering::SeqCst).to_string())
            .await
            .unwrap();
        let text = disk::read_file(&*disk, Path::new("/cfg/x.json"))
            .unwrap()
            .unwrap();
        assert_eq!(text, b"11");
    }
}
