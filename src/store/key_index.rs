//! The store core's view of the key index (QUERY_MESSAGE by key): a narrow trait so dispatch,
//! recovery and retention do not depend on how the IndexFile service is built. The IndexFile
//! implementation (store-index helper, `index_file.rs`) plugs in through it; [`NoIndex`] is
//! used when `messageIndexEnable=false`.

use crate::store::error::StoreError;

/// Offsets found for a key, plus the index's last update (for the QUERY_MESSAGE header).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyQueryResult {
    pub commitlog_offsets: Vec<i64>,
    pub index_last_update_timestamp: i64,
    pub index_last_update_phyoffset: i64,
}

pub trait KeyIndex: Send + Sync {
    /// Indexes `<topic>#<key>` for each key of the entry at `commitlog_offset`. Entries at or
    /// below the index's last indexed offset are ignored (recovery replays).
    fn build_index(
        &self,
        topic: &str,
        keys: &[&str],
        commitlog_offset: i64,
        store_timestamp: i64,
    ) -> Result<(), StoreError>;
    /// Forgets entries at or beyond `commitlog_offset` (recovery truncated the log there).
    fn truncate_after(&self, commitlog_offset: i64) -> Result<(), StoreError>;
    fn query(
        &self,
        topic: &str,
        key: &str,
        max_num: usize,
        begin_timestamp: i64,
        end_timestamp: i64,
    ) -> Result<KeyQueryResult, StoreError>;
    /// Makes everything indexed so far durable; returns the store timestamp of the newest
    /// durable index entry (checkpoint indexMsgTimestamp), if any.
    fn flush(&self) -> Result<Option<i64>, StoreError>;
    /// Drops index files wholly below the CommitLog's min offset.
    fn delete_expired(&self, commitlog_min_offset: i64) -> Result<(), StoreError>;
    /// After an abnormal exit: what was loaded may not be durable; the next flush syncs all.
    fn mark_dirty(&self) {}
    /// Background work that maps index pages in ahead of the writer (blocking; run it off the
    /// async workers), when some is due. Nothing a query or flush depends on.
    fn warm_job(&self) -> Option<Box<dyn FnOnce() + Send>> {
        None
    }
}

/// No key index (messageIndexEnable=false): queries find nothing.
pub struct NoIndex;

impl KeyIndex for NoIndex {
    fn build_index(&self, _: &str, _: &[&str], _: i64, _: i64) -> Result<(), StoreError> {
        Ok(())
    }
    fn truncate_after(&self, _: i64) -> Result<(), StoreError> {
        Ok(())
    }
    fn query(
        &self,
        _: &str,
        _: &str,
        _: usize,
        _: i64,
        _: i64,
    ) -> Result<KeyQueryResult, StoreError> {
        Ok(KeyQueryResult::default())
    }
    fn flush(&self) -> Result<Option<i64>, StoreError> {
        Ok(None)
    }
    fn delete_expired(&self, _: i64) -> Result<(), StoreError> {
        Ok(())
    }
}

impl KeyIndex for crate::store::index_file::IndexService {
    fn build_index(
        &self,
        topic: &str,
        keys: &[&str],
        commitlog_offset: i64,
        store_timestamp: i64,
    ) -> Result<(), StoreError> {
        crate::store::index_file::IndexService::build_index(
            self,
            topic,
            keys,
            commitlog_offset,
            store_timestamp,
        )
        .map_err(StoreError::from)
    }
    fn truncate_after(&self, commitlog_offset: i64) -> Result<(), StoreError> {
        crate::store::index_file::IndexService::truncate_after(self, commitlog_offset)
            .map_err(StoreError::from)
    }
    fn query(
        &self,
        topic: &str,
        key: &str,
        max_num: usize,
        begin_timestamp: i64,
        end_timestamp: i64,
    ) -> Result<KeyQueryResult, StoreError> {
        let r = crate::store::index_file::IndexService::query(
            self,
            topic,
            key,
            max_num,
            begin_timestamp,
            end_timestamp,
        )
        .map_err(StoreError::from)?;
        Ok(KeyQueryResult {
            commitlog_offsets: r.phy_offsets,
            index_last_update_timestamp: r.index_last_update_timestamp,
            index_last_update_phyoffset: r.index_last_update_phyoffset,
        })
    }
    fn flush(&self) -> Result<Option<i64>, StoreError> {
        crate::store::index_file::IndexService::flush(self).map_err(StoreError::from)
    }
    fn mark_dirty(&self) {
        crate::store::index_file::IndexService::mark_dirty(self)
    }
    fn warm_job(&self) -> Option<Box<dyn FnOnce() + Send>> {
        crate::store::index_file::IndexService::warm_job(self)
    }
    fn delete_expired(&self, commitlog_min_offset: i64) -> Result<(), StoreError> {
        crate::store::index_file::IndexService::delete_expired(self, commitlog_min_offset)
            .map(|_| ())
            .map_err(StoreError::from)
    }
}

/// The key index the store uses for `config` (NoIndex when messageIndexEnable=false).
pub fn open_index(
    config: &crate::store::StoreConfig,
    disk: std::sync::Arc<dyn crate::store::disk::Disk>,
) -> Result<std::sync::Arc<dyn KeyIndex>, StoreError> {
    if !config.message_index_enable {
        return Ok(std::sync::Arc::new(NoIndex));
    }
    let service = crate::store::index_file::IndexService::open(
        disk,
        &config.index_dir(),
        config.max_hash_slot_num,
        config.max_index_num,
    )
    .map_err(StoreError::from)?;
    Ok(std::sync::Arc::new(service))
}
