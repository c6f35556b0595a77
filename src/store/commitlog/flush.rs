//! Flushing: the CommitLog flush loop (ASYNC_FLUSH: every `flushIntervalCommitLog`, at least
//! `flushCommitLogLeastPages` dirty pages, everything every `flushCommitLogThoroughInterval`;
//! SYNC_FLUSH: group commit, woken by puts, one fsync serving every waiter appended before it),
//! and the ConsumeQueue/index flush loop that also persists the checkpoint.
//!
//! A failed fsync is never retried or swallowed: the store is poisoned (it refuses writes and
//! every waiting SYNC_FLUSH put fails) because the kernel may have dropped the dirty pages.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};

use crate::rt;
use crate::store::consume_queue::FlushPolicy;
use crate::store::{FlushDiskType, StoreInner};

/// Published after every CommitLog flush.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlushProgress {
    pub flushed_offset: u64,
    /// Set once a flush failed; the store is poisoned from then on.
    pub failed: Option<String>,
}

/// How a SYNC_FLUSH put's wait ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlushWait {
    Flushed,
    TimedOut,
    Failed(String),
}

/// The meeting point of SYNC_FLUSH puts and the flush loop.
pub struct GroupCommit {
    wake: Notify,
    progress: watch::Sender<FlushProgress>,
}

impl Default for GroupCommit {
    fn default() -> Self {
        GroupCommit::new(0)
    }
}

impl GroupCommit {
    pub fn new(flushed_offset: u64) -> GroupCommit {
        let (progress, _) = watch::channel(FlushProgress {
            flushed_offset,
            failed: None,
        });
        GroupCommit {
            wake: Notify::new(),
            progress,
        }
    }

    /// Asks the flush loop to run now (a permit is stored if it is busy: no wakeup is lost).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    pub fn publish(&self, flushed_offset: u64, failed: Option<String>) {
        self.progress.send_modify(|p| {
            p.flushed_offset = p.flushed_offset.max(flushed_offset);
            if failed.is_some() {
                p.failed = failed;
            }
        });
    }

    pub fn current(&self) -> FlushProgress {
        self.progress.borrow().clone()
    }

    /// Waits until everything below `end_offset` is durable, the flush failed, or the timeout.
    pub async fn wait_flushed(&self, end_offset: u64, timeout_ms: u64) -> FlushWait {
        let mut rx = self.progress.subscribe();
        self.wake();
        let waited = rt::timeout(
            Duration::from_millis(timeout_ms),
            rx.wait_for(|p| p.flushed_offset >= end_offset || p.failed.is_some()),
        )
        .await;
        match waited {
            Err(_) => FlushWait::TimedOut,
            Ok(Err(_)) => FlushWait::Failed("flush service stopped".into()),
            Ok(Ok(p)) => match &p.failed {
                Some(reason) if p.flushed_offset < end_offset => FlushWait::Failed(reason.clone()),
                _ => FlushWait::Flushed,
            },
        }
    }
}

/// The CommitLog flush loop (RocketMQ `FlushRealTimeService` / `GroupCommitService`).
pub struct CommitLogFlushLoop {
    store: Arc<StoreInner>,
}

impl CommitLogFlushLoop {
    pub fn new(store: Arc<StoreInner>) -> Self {
        CommitLogFlushLoop { store }
    }

    /// One flush; publishes progress; poisons the store on failure. Returns false on failure.
    async fn flush_once(&self, least_pages: u32) -> bool {
        let log = self.store.log.clone();
        let result = rt::blocking(move || log.flush(least_pages)).await;
        match result {
            Ok(_) => {
                self.store
                    .group_commit
                    .publish(self.store.log.flushed_offset(), None);
                self.store.checkpoint.update(|c| {
                    let ts = self.store.log.flushed_store_timestamp();
                    if ts > 0 {
                        c.physic_msg_timestamp = ts;
                    }
                });
                true
            }
            Err(e) => {
                let reason = format!("CommitLog flush failed: {e}");
                tracing::error!(%reason, "store poisoned");
                self.store.poison(reason.clone());
                self.store
                    .group_commit
                    .publish(self.store.log.flushed_offset(), Some(reason));
                false
            }
        }
    }

    pub async fn run(self) {
        let config = &self.store.config;
        let mut shutdown = self.store.shutdown_rx();
        let mut last_thorough_ms = rt::now_ms();
        loop {
            if *shutdown.borrow() {
                break;
            }
            let stop = match config.flush_disk_type {
                FlushDiskType::SyncFlush => {
                    rt::select! {
                        biased;
                        _ = shutdown.changed() => true,
                        _ = self.store.group_commit.wake.notified() => false,
                        // Also flush on a timer so un-awaited (WAIT=false) puts get durable.
                        _ = rt::sleep_ms(10) => false,
                    }
                }
                FlushDiskType::AsyncFlush => {
                    rt::select! {
                        biased;
                        _ = shutdown.changed() => true,
                        _ = rt::sleep_ms(config.flush_interval_commitlog_ms) => false,
                    }
                }
            };
            if stop || *shutdown.borrow() {
                break;
            }
            if config.flush_disk_type == FlushDiskType::SyncFlush {
                // Group commit: the first waiter's wake-up arrives while the other writers
                // released by the last flush are still queued to append. Let them run first,
                // so one fsync covers all of them instead of a fraction.
                rt::yield_now().await;
            }
            let least_pages = match config.flush_disk_type {
                FlushDiskType::SyncFlush => 0,
                FlushDiskType::AsyncFlush => {
                    let now = rt::now_ms();
                    if now >= last_thorough_ms + config.flush_commitlog_thorough_interval_ms as i64
                    {
                        last_thorough_ms = now;
                        0
                    } else {
                        config.flush_commitlog_least_pages
                    }
                }
            };
            if !self.flush_once(least_pages).await {
                break;
            }
        }
    }
}

/// The ConsumeQueue flush loop; also flushes the index and persists the checkpoint
/// (RocketMQ `FlushConsumeQueueService`).
pub struct ConsumeQueueFlushLoop {
    store: Arc<StoreInner>,
}

impl ConsumeQueueFlushLoop {
    pub fn new(store: Arc<StoreInner>) -> Self {
        ConsumeQueueFlushLoop { store }
    }

    pub async fn run(self) {
        let config = self.store.config.clone();
        let mut shutdown = self.store.shutdown_rx();
        let mut policy = FlushPolicy::new(
            config.flush_consume_queue_least_pages,
            config.flush_consume_queue_thorough_interval_ms,
            rt::now_ms(),
        );
        loop {
            if *shutdown.borrow() {
                break;
            }
            let stop = rt::select! {
                biased;
                _ = shutdown.changed() => true,
                _ = rt::sleep_ms(config.flush_interval_consume_queue_ms) => false,
            };
            if stop || *shutdown.borrow() {
                break;
            }
            let least_pages = policy.least_pages_at(rt::now_ms());
            let store = self.store.clone();
            let result = rt::blocking(move || store.flush_derived(least_pages)).await;
            if let Err(e) = result {
                let reason = format!("ConsumeQueue/index/checkpoint flush failed: {e}");
                tracing::error!(%reason, "store poisoned");
                self.store.poison(reason);
                break;
            }
        }
    }
}
