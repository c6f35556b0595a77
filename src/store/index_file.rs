//! IndexFile: RocketMQ's hash index over `<topic>#<key>` (header 40 B, slots of i32, entries of
//! 20 B), for QUERY_MESSAGE by key. Derived from the CommitLog by dispatch. OWNER: store-index
//! helper.
//!
//! Contract used by the store core:
//! - `IndexService::open(disk, dir, max_hash_slot_num, max_index_num)` loads index files;
//!   `truncate_after(commitlog_offset)` discards what recovery dropped (or rebuilds).
//! - `build_index(topic, keys: &[&str], commitlog_offset, store_timestamp)`.
//! - `query(topic, key, max_num, begin_ts, end_ts) -> Vec<i64 commitlog_offset>`, plus last
//!   update timestamp / phy offset; `flush()`, `delete_expired(commitlog_min)`.
