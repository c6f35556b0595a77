//! ConsumeQueue: per topic/queue files of 20-byte units `commitlog_offset:i64 | size:i32 |
//! tags_code:i64`, 300,000 units per file, named by starting byte offset. Derived from the
//! CommitLog by dispatch; truncatable and rebuildable. OWNER: store-index helper.
//!
//! Contract used by the store core (store-core helper calls these):
//! - `ConsumeQueueStore::open(disk, dir, file_size_bytes)` loads and recovers all queues
//!   (scan units, truncate after the last valid unit).
//! - `put_unit(topic, queue_id, queue_offset, commitlog_offset, size, tags_code)` writes the unit
//!   at `queue_offset` (asserts it equals the queue's next offset, or pads/skips as RocketMQ does
//!   for a queue starting mid-file), returns the new max offset.
//! - `max_commitlog_offset_referenced()` for recovery; `truncate_dirty(commitlog_max)` drops
//!   units whose entry ends beyond `commitlog_max`.
//! - `max_offset`, `min_offset`, `read_units(topic, queue_id, from, max_count)`, `flush(least_pages)`,
//!   `delete_topic`, `correct_min_offset(commitlog_min)`, `delete_expired_files(commitlog_min)`,
//!   `queue_offset_table()` (topic-queue → next offset, to seed the CommitLog's offset table).
