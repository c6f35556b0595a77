//! Retention and disk-full handling (RocketMQ `CleanCommitLogService` / `CleanConsumeQueueService`):
//! every `cleanResourceInterval`, CommitLog files older than `fileReservedTime` are deleted when
//! the hour is in `deleteWhen` or the disk is above `diskMaxUsedSpaceRatio`; above
//! `diskSpaceCleanForciblyRatio` files go regardless of age (`cleanFileForciblyEnable`); above
//! `diskSpaceWarningLevelRatio` writes are refused until usage drops again. Then ConsumeQueue
//! and index files below the CommitLog min offset are removed.

use std::sync::Arc;

use crate::rt;
use crate::store::error::StoreError;
use crate::store::StoreInner;

/// RocketMQ deletes at most this many files per round (`deleteFileBatchMax`).
pub const DELETE_FILE_BATCH_MAX: usize = 10;

/// Parses `deleteWhen` ("04", "04;05") into hours.
pub fn parse_delete_when(spec: &str) -> Vec<u32> {
    spec.split(';')
        .filter_map(|h| h.trim().parse::<u32>().ok())
        .filter(|h| *h < 24)
        .collect()
}

/// Hour of day (UTC) of a wall-clock time in ms.
pub fn hour_of_day(now_ms: i64) -> u32 {
    (now_ms.rem_euclid(86_400_000) / 3_600_000) as u32
}

/// What one round decided.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CleanRound {
    pub usage_ratio: f64,
    pub files_deleted: usize,
    pub forced: bool,
    pub writes_refused: bool,
}

/// Runs one cleanup round (also used by tests and a manual trigger).
pub fn clean_once(store: &StoreInner, manual: bool) -> Result<CleanRound, StoreError> {
    let config = &store.config;
    let dir = config.commitlog_dir();
    let space = store.disk.space(&dir).map_err(|source| StoreError::Io {
        op: "statvfs",
        path: dir.clone(),
        source,
    })?;
    let used = space.total_bytes.saturating_sub(space.available_bytes);
    let usage_ratio = if space.total_bytes == 0 {
        0.0
    } else {
        used as f64 / space.total_bytes as f64
    };
    let mut round = CleanRound {
        usage_ratio,
        ..CleanRound::default()
    };

    // The writes-refused level: set and cleared from the measured usage alone.
    if usage_ratio > config.disk_space_warning_level_ratio {
        store.set_disk_full(Some(format!(
            "disk full: CommitLog volume {:.1}% used, above diskSpaceWarningLevelRatio {:.0}%",
            usage_ratio * 100.0,
            config.disk_space_warning_level_ratio * 100.0
        )));
        round.writes_refused = true;
    } else {
        store.set_disk_full(None);
    }

    let now = rt::now_ms();
    let is_time = parse_delete_when(&config.delete_when).contains(&hour_of_day(now));
    let over_max = usage_ratio * 100.0 > config.disk_max_used_space_ratio as f64;
    let forced =
        config.clean_file_forcibly_enable && usage_ratio > config.disk_space_clean_forcibly_ratio;
    round.forced = forced;
    if !(is_time || over_max || forced || manual) {
        return Ok(round);
    }
    let reserved_ms = config.file_reserved_time_hours as i64 * 3_600_000;
    let flushed = store.log.flushed_offset();
    let reput = store.dispatcher.reput_offset();
    while round.files_deleted < DELETE_FILE_BATCH_MAX && store.log.files.count() > 1 {
        let Some(first) = store.log.files.first() else {
            break;
        };
        // Never delete what is not yet durable or not yet dispatched.
        if first.end_offset() > flushed || first.end_offset() > reput {
            break;
        }
        let modified = store
            .disk
            .modified_ms(&first.path)
            .map_err(|source| StoreError::Io {
                op: "stat",
                path: first.path.clone(),
                source,
            })?;
        let expired = now >= modified + reserved_ms;
        if !(expired || forced) {
            break;
        }
        tracing::info!(
            path = %first.path.display(),
            forced,
            usage = format!("{:.1}%", usage_ratio * 100.0),
            "deleting expired CommitLog file"
        );
        store.log.files.remove_first()?;
        round.files_deleted += 1;
    }
    if round.files_deleted > 0 {
        let min = store.log.min_offset() as i64;
        store
            .cq
            .delete_expired_files(min)
            .map_err(StoreError::from)?;
        store.index.delete_expired(min)?;
    }
    Ok(round)
}

/// The periodic cleanup loop.
pub struct CleanLoop {
    store: Arc<StoreInner>,
}

impl CleanLoop {
    pub fn new(store: Arc<StoreInner>) -> Self {
        CleanLoop { store }
    }

    pub async fn run(self) {
        let interval = self.store.config.clean_resource_interval_ms;
        let mut shutdown = self.store.shutdown_rx();
        loop {
            if *shutdown.borrow() {
                break;
            }
            let stop = rt::select! {
                biased;
                _ = shutdown.changed() => true,
                _ = rt::sleep_ms(interval) => false,
            };
            if stop || *shutdown.borrow() {
                break;
            }
            let store = self.store.clone();
            if let Err(e) = rt::blocking(move || clean_once(&store, false)).await {
                // A failed delete leaves files in place; it is retried next round. Only the
                // CommitLog's data path poisons the store.
                tracing::warn!(error = %e, "cleanup round failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delete_when_and_hours() {
        assert_eq!(parse_delete_when("04"), vec![4]);
        assert_eq!(parse_delete_when("04;05; 23;99;x"), vec![4, 5, 23]);
        assert_eq!(hour_of_day(1_700_000_000_000), 22);
    }
}
