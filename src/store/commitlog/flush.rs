//! Flushing: the CommitLog flush loop (ASYNC_FLUSH: every `flushIntervalCommitLog`, at least
//! `flushCommitLogLeastPages` dirty pages, everything every `flushCommitLogThoroughInterval`;
//! SYNC_FLUSH: group commit, woken by puts, one fsync serving every waiter appended before it),
//! and the ConsumeQueue/index flush loop that also persists the checkpoint.
//!
//! A failed fsync is never retried or swallowed: the store is poisoned (it refuses writes and
//! every waiting SYNC_FLUSH put fails) because the kernel may have dropped the dirty pages.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{oneshot, Notify};

use crate::rt;
use crate::store::consume_queue::FlushPolicy;
use crate::store::{FlushDiskType, StoreInner};

/// The CommitLog's durable progress as the group commit last published it.
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

/// Buckets of [`GroupCommitStats::waiters_per_round`]: 0, 1, 2-3, 4-7, 8-15, 16-31, 32-63, 64+.
pub const WAITERS_PER_ROUND_BUCKETS: usize = 8;

/// Counters of the SYNC_FLUSH group commit (benches, runtime info). Times are wall time of the
/// runtime's clock (simulated time under madsim).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupCommitStats {
    /// Flush rounds of the CommitLog flush loop that synced something.
    pub rounds: u64,
    /// SYNC_FLUSH waits that registered (the put's entry was not yet durable).
    pub waits: u64,
    /// Waiters released as flushed by a published flush.
    pub released: u64,
    /// Histogram of waiters released per flush round (see [`WAITERS_PER_ROUND_BUCKETS`]).
    pub waiters_per_round: [u64; WAITERS_PER_ROUND_BUCKETS],
    /// Time inside the CommitLog flush (msync/fsync), summed over rounds that synced.
    pub sync_ns: u64,
    /// Time from handing a round to the blocking pool until its result was back, summed
    /// (`sync_ns` plus the hand-off to and from the blocking thread).
    pub round_trip_ns: u64,
    /// Bytes made durable by those rounds.
    pub bytes: u64,
}

/// One SYNC_FLUSH put waiting for the fsync that covers its entry.
struct Waiter {
    end_offset: u64,
    done: oneshot::Sender<FlushWait>,
}

struct CommitState {
    progress: FlushProgress,
    /// Waiters not yet covered, ordered by end offset (equal offsets: registration order), so a
    /// flush releases a prefix, each waiter exactly once, in a deterministic order (no wake-up
    /// of waiters that are not covered).
    waiters: VecDeque<Waiter>,
}

#[derive(Default)]
struct Counters {
    rounds: AtomicU64,
    waits: AtomicU64,
    released: AtomicU64,
    waiters_per_round: [AtomicU64; WAITERS_PER_ROUND_BUCKETS],
    sync_ns: AtomicU64,
    round_trip_ns: AtomicU64,
    bytes: AtomicU64,
}

/// The meeting point of SYNC_FLUSH puts and the flush loop.
///
/// Not a tokio `watch`: its waiters are spread over several `Notify`s picked with tokio's
/// thread-local RNG, so their wake order would differ between two simulations in one process
/// (madsim's determinism check), and every publish woke every waiter to re-check its offset.
pub struct GroupCommit {
    wake: Notify,
    state: Mutex<CommitState>,
    counters: Counters,
}

impl Default for GroupCommit {
    fn default() -> Self {
        GroupCommit::new(0)
    }
}

impl GroupCommit {
    pub fn new(flushed_offset: u64) -> GroupCommit {
        GroupCommit {
            wake: Notify::new(),
            state: Mutex::new(CommitState {
                progress: FlushProgress {
                    flushed_offset,
                    failed: None,
                },
                waiters: VecDeque::new(),
            }),
            counters: Counters::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CommitState> {
        // Poisoned only by a panic while the lock was held; the state is updated atomically
        // under it, so it stays consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks the flush loop to run now (a permit is stored if it is busy: no wakeup is lost).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Records that everything below `flushed_offset` is durable (and, with `failed`, that a
    /// flush failed): releases the covered waiters, and with a failure every other one.
    pub fn publish(&self, flushed_offset: u64, failed: Option<String>) {
        self.release(flushed_offset, failed);
    }

    /// [`Self::publish`], returning how many waiters were released as flushed.
    fn release(&self, flushed_offset: u64, failed: Option<String>) -> usize {
        let mut flushed = Vec::new();
        let mut failing = Vec::new();
        let reason = {
            let mut st = self.lock();
            let p = &mut st.progress;
            p.flushed_offset = p.flushed_offset.max(flushed_offset);
            if failed.is_some() {
                p.failed = failed;
            }
            let covered = p.flushed_offset;
            let reason = p.failed.clone();
            while st.waiters.front().is_some_and(|w| w.end_offset <= covered) {
                flushed.extend(st.waiters.pop_front());
            }
            if reason.is_some() {
                failing.extend(st.waiters.drain(..));
            }
            reason
        };
        // Wake outside the lock, in offset order. A waiter that timed out dropped its receiver.
        let released = flushed.len();
        for w in flushed {
            let _ = w.done.send(FlushWait::Flushed);
        }
        if let Some(reason) = reason {
            for w in failing {
                let _ = w.done.send(FlushWait::Failed(reason.clone()));
            }
        }
        if released > 0 {
            let c = &self.counters;
            c.released.fetch_add(released as u64, Ordering::Relaxed);
        }
        released
    }

    pub fn current(&self) -> FlushProgress {
        self.lock().progress.clone()
    }

    /// SYNC_FLUSH waits registered so far (monotonic; the flush loop watches it grow).
    fn waits_registered(&self) -> u64 {
        self.counters.waits.load(Ordering::Relaxed)
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> GroupCommitStats {
        let c = &self.counters;
        let mut waiters_per_round = [0; WAITERS_PER_ROUND_BUCKETS];
        for (out, bucket) in waiters_per_round.iter_mut().zip(&c.waiters_per_round) {
            *out = bucket.load(Ordering::Relaxed);
        }
        GroupCommitStats {
            rounds: c.rounds.load(Ordering::Relaxed),
            waits: c.waits.load(Ordering::Relaxed),
            released: c.released.load(Ordering::Relaxed),
            waiters_per_round,
            sync_ns: c.sync_ns.load(Ordering::Relaxed),
            round_trip_ns: c.round_trip_ns.load(Ordering::Relaxed),
            bytes: c.bytes.load(Ordering::Relaxed),
        }
    }

    fn record_round(&self, released: usize, bytes: u64, sync_ns: u64, round_trip_ns: u64) {
        let c = &self.counters;
        c.rounds.fetch_add(1, Ordering::Relaxed);
        let bucket = match released {
            0 => 0,
            n => (usize::BITS - n.leading_zeros()) as usize,
        };
        c.waiters_per_round[bucket.min(WAITERS_PER_ROUND_BUCKETS - 1)]
            .fetch_add(1, Ordering::Relaxed);
        c.sync_ns.fetch_add(sync_ns, Ordering::Relaxed);
        c.round_trip_ns.fetch_add(round_trip_ns, Ordering::Relaxed);
        c.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Waits until everything below `end_offset` is durable, the flush failed, or the timeout.
    pub async fn wait_flushed(&self, end_offset: u64, timeout_ms: u64) -> FlushWait {
        let rx = {
            let mut st = self.lock();
            if st.progress.flushed_offset >= end_offset {
                return FlushWait::Flushed;
            }
            if let Some(reason) = &st.progress.failed {
                return FlushWait::Failed(reason.clone());
            }
            let (done, rx) = oneshot::channel();
            // Entries are appended in offset order and register right after, so the right
            // place is nearly always at (or a few entries before) the back.
            let at = st
                .waiters
                .iter()
                .rposition(|w| w.end_offset <= end_offset)
                .map_or(0, |i| i + 1);
            st.waiters.insert(at, Waiter { end_offset, done });
            self.counters.waits.fetch_add(1, Ordering::Relaxed);
            rx
        };
        self.wake();
        match rt::timeout(Duration::from_millis(timeout_ms), rx).await {
            Err(_) => FlushWait::TimedOut,
            Ok(Err(_)) => FlushWait::Failed("flush service stopped".into()),
            Ok(Ok(outcome)) => outcome,
        }
    }
}

/// At most this many yields while writers released by the last fsync are still appending (see
/// [`CommitLogFlushLoop::gather`]); bounds the delay a stream of new waiters can cause.
const MAX_GATHER_YIELDS: u32 = 64;

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
        let before = log.flushed_offset();
        let started = rt::now();
        let (result, sync_ns) = rt::blocking(move || {
            let sync_started = rt::now();
            let result = log.flush(least_pages);
            (result, (rt::now() - sync_started).as_nanos() as u64)
        })
        .await;
        let round_trip_ns = (rt::now() - started).as_nanos() as u64;
        let group_commit = &self.store.group_commit;
        match result {
            Ok(synced) => {
                let flushed = self.store.log.flushed_offset();
                let released = group_commit.release(flushed, None);
                if synced {
                    group_commit.record_round(
                        released,
                        flushed.saturating_sub(before),
                        sync_ns,
                        round_trip_ns,
                    );
                }
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
                group_commit.publish(self.store.log.flushed_offset(), Some(reason));
                false
            }
        }
    }

    /// Before a SYNC_FLUSH round: the waiter whose wake-up started it is usually the first of
    /// the writers the last fsync released; the others are runnable and about to append. Yield
    /// while new waiters keep registering, so one fsync covers them all instead of a fraction
    /// (each fsync costs the same whatever it covers). Stops as soon as a yield brought no new
    /// waiter: then nobody runnable is about to wait.
    async fn gather(&self) {
        let group_commit = &self.store.group_commit;
        let mut seen = group_commit.waits_registered();
        for _ in 0..MAX_GATHER_YIELDS {
            rt::yield_now().await;
            let now = group_commit.waits_registered();
            if now == seen {
                break;
            }
            seen = now;
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
                self.gather().await;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn waiting_offsets(gc: &GroupCommit) -> Vec<u64> {
        gc.lock().waiters.iter().map(|w| w.end_offset).collect()
    }

    /// Lets spawned waiters run until they are parked (single-threaded test runtime).
    async fn settle() {
        for _ in 0..8 {
            rt::yield_now().await;
        }
    }

    #[tokio::test]
    async fn waiters_are_released_in_offset_order_once_covered() {
        let gc = Arc::new(GroupCommit::new(0));
        let mut handles = Vec::new();
        for end in [300u64, 100, 200, 100] {
            let gc = gc.clone();
            handles.push((
                end,
                rt::spawn(async move { gc.wait_flushed(end, 60_000).await }),
            ));
        }
        settle().await;
        assert_eq!(waiting_offsets(&gc), vec![100, 100, 200, 300]);
        assert_eq!(gc.stats().waits, 4);

        assert_eq!(
            gc.release(150, None),
            2,
            "only the two waiters at 100 are covered"
        );
        assert_eq!(waiting_offsets(&gc), vec![200, 300]);
        assert_eq!(gc.release(150, None), 0, "a waiter is released once");
        assert_eq!(gc.release(120, None), 0, "progress never moves back");
        assert_eq!(gc.current().flushed_offset, 150);
        settle().await;
        for (end, h) in &handles {
            assert_eq!(h.is_finished(), *end <= 150, "waiter at {end}");
        }
        assert_eq!(gc.release(300, None), 2);
        for (_, h) in handles {
            assert_eq!(h.await.expect("join"), FlushWait::Flushed);
        }
        assert_eq!(gc.stats().released, 4);
        assert_eq!(
            gc.wait_flushed(300, 1).await,
            FlushWait::Flushed,
            "covered: no wait"
        );
        assert_eq!(
            gc.stats().waits,
            4,
            "an already covered put does not register"
        );
    }

    #[tokio::test]
    async fn a_failed_flush_fails_every_uncovered_waiter_and_later_waits() {
        let gc = Arc::new(GroupCommit::new(0));
        let covered = {
            let gc = gc.clone();
            rt::spawn(async move { gc.wait_flushed(50, 60_000).await })
        };
        let uncovered = {
            let gc = gc.clone();
            rt::spawn(async move { gc.wait_flushed(500, 60_000).await })
        };
        settle().await;
        gc.publish(100, Some("fsync: EIO".into()));
        assert_eq!(covered.await.expect("join"), FlushWait::Flushed);
        assert_eq!(
            uncovered.await.expect("join"),
            FlushWait::Failed("fsync: EIO".into())
        );
        assert!(waiting_offsets(&gc).is_empty());
        assert_eq!(
            gc.wait_flushed(101, 60_000).await,
            FlushWait::Failed("fsync: EIO".into())
        );
        assert_eq!(gc.wait_flushed(100, 60_000).await, FlushWait::Flushed);
    }

    #[tokio::test]
    async fn a_wait_times_out_and_a_later_flush_still_releases_the_list() {
        let gc = GroupCommit::new(0);
        assert_eq!(gc.wait_flushed(10, 5).await, FlushWait::TimedOut);
        assert_eq!(waiting_offsets(&gc), vec![10]);
        assert_eq!(
            gc.release(10, None),
            1,
            "a timed-out waiter's entry is dropped"
        );
        assert!(waiting_offsets(&gc).is_empty());
    }
}
