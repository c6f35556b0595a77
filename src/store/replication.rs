//! Store hooks for master/slave replication (`crate::ha`). OWNER: ha helper. Kept apart from the
//! facade so the store helper's files carry only the two call sites in `put_messages`.
//!
//! * Master side: [`MessageStore::read_commitlog_range`] hands out raw CommitLog bytes.
//! * Slave side: [`MessageStore::append_replica`] appends whole entries verbatim at the local
//!   end and dispatches them through the normal reput path.
//! * SYNC_MASTER: a [`ReplicationWaiter`] (the HA service) is consulted by `put_messages` after
//!   the flush contract; its answer is combined with the flush result.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use bytes::Bytes;

use super::{BrokerRole, MessageStore, PutMessageStatus, StoreError};

/// What waiting for the slaves gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicaWait {
    /// A slave acknowledged an offset covering the message.
    Acked,
    /// No slave is connected and in sync: answered at once (SLAVE_NOT_AVAILABLE).
    NoSlave(String),
    /// No acknowledgement within slaveTimeout (FLUSH_SLAVE_TIMEOUT).
    TimedOut(String),
}

pub type WaitFuture = Pin<Box<dyn Future<Output = ReplicaWait> + Send>>;

/// The SYNC_MASTER side of the HA service, as the store sees it.
pub trait ReplicationWaiter: Send + Sync {
    /// New bytes up to `end_offset` were appended (wakes the transfer loops).
    fn appended(&self, end_offset: i64);
    /// Resolves when a slave acknowledged `end_offset`, or why it will not.
    fn wait_replicated(&self, end_offset: i64) -> WaitFuture;
}

/// Holder for the installed waiter (none until the broker starts its HA service) and the HA
/// write fence (a master that may be shorter than its slave refuses writes).
#[derive(Default)]
pub struct ReplicationHook {
    waiter: RwLock<Option<Arc<dyn ReplicationWaiter>>>,
    fence: RwLock<Option<String>>,
    // Mirrors of `waiter.is_some()` / `fence.is_some()`: every put checks both, and a plain
    // load is cheaper than the lock's atomics when (as almost always) they are unset.
    has_waiter: AtomicBool,
    fence_up: AtomicBool,
}

/// Marker in storePathRootDir: this store served as a master to some slave (written on the
/// first valid slave report). After an abnormal recovery such a master fences its writes.
pub const SLAVE_SEEN_FILE: &str = "ha_slave_seen";
/// Marker in storePathRootDir: the write fence is up (survives restarts, even clean ones, so a
/// fenced master cannot shed the fence by a clean shutdown while still shorter than its slave).
/// An operator who gives up on the slave deletes it (see README, HA).
pub const FENCE_FILE: &str = "ha_fence";

impl ReplicationHook {
    /// Why writes are refused by HA (None: accepted).
    pub(crate) fn write_fence(&self) -> Option<String> {
        if !self.fence_up.load(Ordering::Acquire) {
            return None;
        }
        self.fence.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set_fence(&self, reason: Option<String>) {
        let mut fence = self.fence.write().unwrap_or_else(|e| e.into_inner());
        self.fence_up.store(reason.is_some(), Ordering::Release);
        *fence = reason;
    }

    fn set_waiter(&self, waiter: Arc<dyn ReplicationWaiter>) {
        *self.waiter.write().unwrap_or_else(|e| e.into_inner()) = Some(waiter);
        self.has_waiter.store(true, Ordering::Release);
    }

    fn get(&self) -> Option<Arc<dyn ReplicationWaiter>> {
        if !self.has_waiter.load(Ordering::Acquire) {
            return None;
        }
        self.waiter
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn appended(&self, end_offset: i64) {
        if let Some(w) = self.get() {
            w.appended(end_offset);
        }
    }

    /// Combines the flush outcome with replication as RocketMQ 4.9 does (`handleHA` after
    /// `handleDiskFlush`): a replication failure overrides, otherwise the flush status stays.
    pub(crate) async fn combine(
        &self,
        role: BrokerRole,
        wait: bool,
        end_offset: i64,
        status: PutMessageStatus,
        remark: Option<String>,
    ) -> (PutMessageStatus, Option<String>) {
        if role != BrokerRole::SyncMaster || !wait {
            return (status, remark);
        }
        let outcome = match self.get() {
            Some(w) => w.wait_replicated(end_offset).await,
            None => ReplicaWait::NoSlave("SYNC_MASTER without a running HA service".into()),
        };
        match outcome {
            ReplicaWait::Acked => (status, remark),
            ReplicaWait::NoSlave(r) => (PutMessageStatus::SlaveNotAvailable, Some(r)),
            ReplicaWait::TimedOut(r) => (PutMessageStatus::FlushSlaveTimeout, Some(r)),
        }
    }
}

impl MessageStore {
    /// Raises (Some) or lifts (None) the HA write fence: while up, `put_messages` answers
    /// SERVICE_NOT_AVAILABLE with the reason. Persisted as [`FENCE_FILE`] (fsynced) before it
    /// takes effect in memory on lifting, and after on raising, so a crash never loses a fence.
    pub fn set_write_fence(&self, reason: Option<String>) -> Result<(), StoreError> {
        let inner = &self.inner;
        let root = inner.config.store_path_root_dir.clone();
        let path = root.join(FENCE_FILE);
        let io = |op: &'static str, path: &std::path::Path| {
            let path = path.to_path_buf();
            move |source| StoreError::Io { op, path, source }
        };
        match &reason {
            Some(r) => {
                self.replication.set_fence(Some(r.clone()));
                if !inner.disk.exists(&path) {
                    inner.disk.create(&path, 0).map_err(io("create", &path))?;
                    inner.disk.sync_dir(&root).map_err(io("sync dir", &root))?;
                }
            }
            None => {
                if inner.disk.exists(&path) {
                    inner.disk.remove_file(&path).map_err(io("remove", &path))?;
                    inner.disk.sync_dir(&root).map_err(io("sync dir", &root))?;
                }
                self.replication.set_fence(None);
            }
        }
        Ok(())
    }

    /// The HA write fence's reason, if up.
    pub fn write_fence(&self) -> Option<String> {
        self.replication.write_fence()
    }

    /// A fence persisted by an earlier incarnation ([`FENCE_FILE`] exists).
    pub fn write_fence_persisted(&self) -> bool {
        let root = &self.inner.config.store_path_root_dir;
        self.inner.disk.exists(&root.join(FENCE_FILE))
    }

    /// Has this store ever served a slave ([`SLAVE_SEEN_FILE`])?
    pub fn slave_seen_before(&self) -> bool {
        let root = &self.inner.config.store_path_root_dir;
        self.inner.disk.exists(&root.join(SLAVE_SEEN_FILE))
    }

    /// Records (durably, once) that this store serves a slave.
    pub fn mark_slave_seen(&self) -> Result<(), StoreError> {
        let root = self.inner.config.store_path_root_dir.clone();
        let path = root.join(SLAVE_SEEN_FILE);
        if self.inner.disk.exists(&path) {
            return Ok(());
        }
        self.inner
            .disk
            .create(&path, 0)
            .map_err(|source| StoreError::Io {
                op: "create",
                path: path.clone(),
                source,
            })?;
        self.inner
            .disk
            .sync_dir(&root)
            .map_err(|source| StoreError::Io {
                op: "sync dir",
                path: root.clone(),
                source,
            })
    }

    /// Installs the SYNC_MASTER waiter (the broker's HA service).
    pub fn set_replication_waiter(&self, waiter: Arc<dyn ReplicationWaiter>) {
        self.replication.set_waiter(waiter);
    }

    /// CommitLog file size (the master starts an empty slave at its last file's start).
    pub fn commitlog_file_size(&self) -> i64 {
        self.inner.log.file_size() as i64
    }

    /// Up to `max_bytes` raw CommitLog bytes from `commitlog_offset`, never crossing a file
    /// end nor the written end. `None` when the offset is not stored here (below the min
    /// offset, at or beyond the max offset).
    pub fn read_commitlog_range(
        &self,
        commitlog_offset: i64,
        max_bytes: usize,
    ) -> Result<Option<Bytes>, StoreError> {
        let log = &self.inner.log;
        if commitlog_offset < 0 {
            return Ok(None);
        }
        let offset = commitlog_offset as u64;
        if offset < log.min_offset() || offset >= log.max_offset() {
            return Ok(None);
        }
        let Some(file) = log.files.find(offset) else {
            return Ok(None);
        };
        let file_pos = offset - file.start_offset;
        let wrote = file.wrote_pos();
        if file_pos >= wrote {
            return Ok(None);
        }
        let n = (wrote - file_pos).min(max_bytes as u64) as usize;
        let mut buf = vec![0u8; n];
        file.read_at(file_pos, &mut buf)?;
        assert!(
            file.start_offset + file_pos + n as u64 <= log.max_offset(),
            "replication read past the written end"
        );
        Ok(Some(Bytes::from(buf)))
    }

    /// Appends replicated bytes verbatim at `commitlog_offset` and dispatches them. The bytes
    /// must be whole entries (a BLANK filler counts only with its whole file tail) so dispatch
    /// never sees half an entry. `commitlog_offset` must equal the local max offset; an empty
    /// store accepts a file-aligned start (the master starts a new slave at its last file).
    /// Returns the new max offset.
    pub fn append_replica(&self, commitlog_offset: i64, data: &[u8]) -> Result<i64, StoreError> {
        let inner = &self.inner;
        if commitlog_offset < 0 {
            return Err(StoreError::Poisoned(format!(
                "replica append at negative offset {commitlog_offset}"
            )));
        }
        let offset = commitlog_offset as u64;
        let local_max = inner.log.max_offset();
        if inner.log.files.count() == 0 && offset != 0 {
            let file_size = inner.log.file_size();
            if !offset.is_multiple_of(file_size) {
                return Err(StoreError::Poisoned(format!(
                    "empty slave store cannot start at {offset}: not a multiple of the \
                     CommitLog file size {file_size}"
                )));
            }
            inner.log.files.create_next(offset)?;
            // Nothing below the first file exists here: dispatch starts with it.
            if inner.dispatcher.reput_offset() < offset {
                inner.dispatcher.set_reput_offset(offset);
            }
            tracing::info!(
                commitlog_offset = offset,
                "empty slave store starts replicating at the master's last CommitLog file"
            );
        } else if offset != local_max {
            return Err(StoreError::Poisoned(format!(
                "replica append at {offset} but the local CommitLog ends at {local_max}"
            )));
        }
        let end = self.append_raw(commitlog_offset, data)?;
        assert_eq!(
            end as u64,
            offset + data.len() as u64,
            "replica append must land exactly after the previous end"
        );
        Ok(end)
    }
}
