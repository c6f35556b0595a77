//! Dispatch ("reput"): walks the CommitLog from the reput offset up to the written end, and for
//! each entry writes its ConsumeQueue unit, its index keys, and tells the arrival listener.
//! The same path serves appends, raw replicated bytes and recovery re-dispatch, so the
//! ConsumeQueues are always derived from the log by one piece of code.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::message::entry::{parse_entry, EntryView, MessageExt};
use crate::message::properties::{
    scan_dispatch_properties, tags_hash_code, DispatchProperties, DELAY, TAGS,
};
use crate::message::sysflag;
use crate::store::commitlog::append::{takes_queue_offset, PreparedEntry};
use crate::store::commitlog::{CommitLog, EntryKind};
use crate::store::consume_queue::{ConsumeQueue, ConsumeQueueError, ConsumeQueueStore};
use crate::store::error::StoreError;
use crate::store::key_index::KeyIndex;
use crate::store::ArrivalListener;

/// RocketMQ's schedule topic: its ConsumeQueue tags code is the delivery time.
pub const SCHEDULE_TOPIC: &str = "SCHEDULE_TOPIC_XXXX";

/// Parses RocketMQ `messageDelayLevel` ("1s 5s 10s 30s 1m ...") into milliseconds per level
/// (level 1 first). Unknown units are skipped with a warning.
pub fn parse_delay_levels(spec: &str) -> Vec<i64> {
    let mut out = Vec::new();
    for token in spec.split_whitespace() {
        let (num, unit) = token.split_at(token.len().saturating_sub(1));
        let factor = match unit {
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => {
                tracing::warn!(token, "ignoring malformed messageDelayLevel entry");
                continue;
            }
        };
        match num.parse::<i64>() {
            Ok(n) => out.push(n * factor),
            Err(_) => tracing::warn!(token, "ignoring malformed messageDelayLevel entry"),
        }
    }
    out
}

/// The ConsumeQueue tags code of an entry: the delivery time for the schedule topic, the Java
/// hash of TAGS otherwise, 0 without tags.
pub fn tags_code_of(msg: &MessageExt, delay_levels_ms: &[i64]) -> i64 {
    if msg.topic == SCHEDULE_TOPIC {
        if let Some(level) = msg
            .properties
            .get(DELAY)
            .and_then(|l| l.parse::<usize>().ok())
        {
            let level = level.clamp(1, delay_levels_ms.len().max(1));
            let delay = delay_levels_ms.get(level - 1).copied().unwrap_or(1000);
            return msg.store_timestamp + delay;
        }
    }
    msg.properties
        .get(TAGS)
        .map(|t| tags_hash_code(t))
        .unwrap_or(0)
}

/// [`tags_code_of`] for a borrowed entry (dispatch's allocation-free path).
pub fn tags_code_of_view(entry: &EntryView<'_>, delay_levels_ms: &[i64]) -> i64 {
    tags_code_of_parts(
        entry.topic,
        &scan_dispatch_properties(entry.properties),
        entry.store_timestamp,
        delay_levels_ms,
    )
}

/// [`tags_code_of`] from an entry's topic, scanned properties and store time.
pub fn tags_code_of_parts(
    topic: &str,
    props: &DispatchProperties<'_>,
    store_timestamp: i64,
    delay_levels_ms: &[i64],
) -> i64 {
    if topic == SCHEDULE_TOPIC {
        if let Some(level) = props.delay.and_then(|l| l.parse::<usize>().ok()) {
            let level = level.clamp(1, delay_levels_ms.len().max(1));
            let delay = delay_levels_ms.get(level - 1).copied().unwrap_or(1000);
            return store_timestamp + delay;
        }
    }
    props.tags.map(tags_hash_code).unwrap_or(0)
}

/// One CommitLog entry as dispatch needs it. Recovery and replicated bytes get it by parsing
/// the log ([`Dispatcher::dispatch_until`]); the append path knows every field already, having
/// just encoded the entry from them ([`Dispatcher::dispatch_appended`]). Either way one
/// function turns it into the ConsumeQueue unit and index keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DispatchEntry<'a> {
    pub commitlog_offset: u64,
    pub size: u32,
    pub topic: &'a str,
    pub queue_id: i32,
    pub queue_offset: i64,
    /// SYSFLAG as stored.
    pub sys_flag: i32,
    pub store_timestamp: i64,
    /// The encoded property string.
    pub properties: &'a str,
}

impl<'a> DispatchEntry<'a> {
    /// The fields of a parsed entry sitting at `commitlog_offset`.
    pub fn from_view(view: &EntryView<'a>, commitlog_offset: u64, size: usize) -> Self {
        DispatchEntry {
            commitlog_offset,
            size: size as u32,
            topic: view.topic,
            queue_id: view.queue_id,
            queue_offset: view.queue_offset,
            sys_flag: view.sys_flag,
            store_timestamp: view.store_timestamp,
            properties: view.properties,
        }
    }

    /// The fields an append just encoded `entry` from (its `properties` are the message's
    /// property string, which the encoder copied verbatim).
    pub fn from_prepared(entry: &PreparedEntry<'a>, properties: &'a str) -> Self {
        DispatchEntry {
            commitlog_offset: entry.fields.commitlog_offset as u64,
            size: entry.size as u32,
            topic: entry.fields.topic,
            queue_id: entry.fields.queue_id,
            queue_offset: entry.fields.queue_offset,
            sys_flag: entry.stored_sys_flag(),
            store_timestamp: entry.fields.store_timestamp,
            properties,
        }
    }

    fn end_offset(&self) -> u64 {
        self.commitlog_offset + self.size as u64
    }
}

/// How dispatch treats a ConsumeQueue that does not line up with the entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DispatchMode {
    /// Serving appends: any inconsistency is an error (the store gets poisoned).
    Live,
    /// Recovery replay from somewhere inside the log: an entry whose queue offset lies beyond
    /// its queue's end reveals a lost ConsumeQueue tail that starts before the replay point,
    /// reported as `ReplayGap` so recovery can replay from the first file.
    ReplayFromMiddle,
    /// Recovery replay from the first file: a queue starting mid-way is legitimate (older
    /// files were deleted by retention) and gets padded by the ConsumeQueue.
    ReplayFromStart,
}

#[derive(Debug)]
pub enum DispatchError {
    ReplayGap {
        topic: String,
        queue_id: i32,
        queue_offset: i64,
        cq_max_offset: i64,
    },
    Store(StoreError),
}

impl From<StoreError> for DispatchError {
    fn from(e: StoreError) -> Self {
        DispatchError::Store(e)
    }
}

#[derive(Default)]
struct DispatchState {
    reput_offset: u64,
    /// Store timestamp of the newest dispatched entry (checkpoint logics timestamp).
    last_store_timestamp: i64,
    /// Entry buffer reused across entries.
    buf: Vec<u8>,
    queues: QueueCache,
    /// Kept under the dispatch lock that every dispatch takes anyway (no lock of its own).
    listener: Option<ArrivalListener>,
}

/// ConsumeQueue handles dispatch used, so a unit costs no lookup in the store's shared map
/// (its lock and an `Arc` clone per message). Dropped whenever the store's generation moves
/// (a topic was deleted) or a different store is passed.
#[derive(Default)]
struct QueueCache {
    store_id: usize,
    generation: u64,
    queues: BTreeMap<String, BTreeMap<i32, Arc<ConsumeQueue>>>,
}

impl QueueCache {
    fn queue(
        &mut self,
        cq: &ConsumeQueueStore,
        topic: &str,
        queue_id: i32,
    ) -> Result<&ConsumeQueue, ConsumeQueueError> {
        let store_id = cq as *const ConsumeQueueStore as usize;
        let generation = cq.generation();
        if self.store_id != store_id || self.generation != generation {
            self.queues.clear();
            self.store_id = store_id;
            self.generation = generation;
        }
        let cached = self
            .queues
            .get(topic)
            .and_then(|qs| qs.get(&queue_id))
            .is_some();
        if !cached {
            let q = cq.find_or_create(topic, queue_id)?;
            self.queues
                .entry(topic.to_string())
                .or_default()
                .insert(queue_id, q);
        }
        Ok(&self.queues[topic][&queue_id])
    }
}

pub struct Dispatcher {
    state: Mutex<DispatchState>,
    delay_levels_ms: Vec<i64>,
    index_enabled: bool,
    /// Only with the `reuse_queue_offset_after_recovery` debug bug: let its conflicting units
    /// through instead of poisoning, so simulation checkers observe the reuse.
    tolerate_conflicts: bool,
}

impl Dispatcher {
    pub fn new(delay_levels_ms: Vec<i64>, index_enabled: bool) -> Dispatcher {
        Dispatcher {
            state: Mutex::new(DispatchState::default()),
            delay_levels_ms,
            index_enabled,
            tolerate_conflicts: false,
        }
    }

    /// See the `tolerate_conflicts` field (debug bug only).
    pub fn with_conflicts_tolerated(mut self, tolerate: bool) -> Dispatcher {
        self.tolerate_conflicts = tolerate;
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, DispatchState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn reput_offset(&self) -> u64 {
        self.lock().reput_offset
    }

    pub fn set_reput_offset(&self, offset: u64) {
        self.lock().reput_offset = offset;
    }

    pub fn last_store_timestamp(&self) -> i64 {
        self.lock().last_store_timestamp
    }

    pub fn set_listener(&self, listener: ArrivalListener) {
        self.lock().listener = Some(listener);
    }

    /// Dispatches every entry from the reput offset up to `end`. Returns the entries done.
    pub fn dispatch_until(
        &self,
        log: &CommitLog,
        cq: &ConsumeQueueStore,
        index: &dyn KeyIndex,
        end: u64,
        mode: DispatchMode,
    ) -> Result<usize, DispatchError> {
        let mut st = self.lock();
        let mut done = 0;
        let st = &mut *st;
        // The entry buffer is taken out of the state so entries can borrow it while the
        // state is updated.
        let mut buf = std::mem::take(&mut st.buf);
        let result = (|| {
            while st.reput_offset < end {
                let offset = st.reput_offset;
                match log.read_entry_into(offset, false, &mut buf)? {
                    EntryKind::Message => {}
                    EntryKind::Blank => {
                        let file_size = log.file_size();
                        st.reput_offset = (offset / file_size + 1) * file_size;
                        continue;
                    }
                    EntryKind::Invalid(reason) => {
                        let file = log.files.find(offset);
                        return Err(DispatchError::Store(StoreError::Corrupt {
                            path: file.map(|f| f.path.clone()).unwrap_or_default(),
                            offset,
                            reason: format!(
                                "dispatch found no entry below the written end {end}: {reason}"
                            ),
                        }));
                    }
                };
                let (msg, size) =
                    parse_entry(&buf, false).map_err(|reason| StoreError::Corrupt {
                        path: log
                            .files
                            .find(offset)
                            .map(|f| f.path.clone())
                            .unwrap_or_default(),
                        offset,
                        reason,
                    })?;
                assert_eq!(
                    msg.commitlog_offset as u64, offset,
                    "entry sits at its own offset"
                );
                assert_eq!(size, buf.len());
                let entry = DispatchEntry::from_view(&msg, offset, size);
                if self.dispatch_one(st, cq, index, &entry, mode, Some(log))? {
                    done += 1;
                }
            }
            Ok(done)
        })();
        st.buf = buf;
        result
    }

    /// Dispatches entries the append path just wrote, from what it encoded them from, without
    /// reading them back. `entries` are consecutive and start at `first_offset`; `end_offset`
    /// is one past the last. When the reput offset is not at `first_offset` (entries of other
    /// puts, or a file-end blank, lie before them; or another put's catch-up already covered
    /// them) this falls back to [`Self::dispatch_until`], which reads the log.
    pub fn dispatch_appended<'a>(
        &self,
        log: &CommitLog,
        cq: &ConsumeQueueStore,
        index: &dyn KeyIndex,
        first_offset: u64,
        end_offset: u64,
        entries: impl Iterator<Item = DispatchEntry<'a>>,
    ) -> Result<usize, DispatchError> {
        let mut st = self.lock();
        if st.reput_offset >= end_offset {
            return Ok(0);
        }
        if st.reput_offset != first_offset {
            drop(st);
            return self.dispatch_until(log, cq, index, end_offset, DispatchMode::Live);
        }
        let mut done = 0;
        let mut expected = first_offset;
        for entry in entries {
            // Pair of the append's layout: the entries tile [first_offset, end_offset).
            assert_eq!(
                entry.commitlog_offset, expected,
                "appended entries are contiguous"
            );
            expected = entry.end_offset();
            if self.dispatch_one(&mut st, cq, index, &entry, DispatchMode::Live, None)? {
                done += 1;
            }
        }
        assert_eq!(
            expected, end_offset,
            "appended entries end at the append's end"
        );
        Ok(done)
    }

    /// Writes one entry's ConsumeQueue unit and index keys, tells the listener and moves the
    /// reput offset past it. `log` is given when the entry was read from the log (it may be a
    /// replicated entry the append path never saw). Returns false for a unit the
    /// `reuse_queue_offset_after_recovery` debug bug drops.
    fn dispatch_one(
        &self,
        st: &mut DispatchState,
        cq: &ConsumeQueueStore,
        index: &dyn KeyIndex,
        entry: &DispatchEntry<'_>,
        mode: DispatchMode,
        log: Option<&CommitLog>,
    ) -> Result<bool, DispatchError> {
        let offset = entry.commitlog_offset;
        let end = entry.end_offset();
        assert_eq!(offset, st.reput_offset, "dispatch follows CommitLog order");
        let props = scan_dispatch_properties(entry.properties);
        let tags_code = tags_code_of_parts(
            entry.topic,
            &props,
            entry.store_timestamp,
            &self.delay_levels_ms,
        );
        if takes_queue_offset(entry.sys_flag) {
            if mode == DispatchMode::ReplayFromMiddle {
                let cq_max = cq.max_offset(entry.topic, entry.queue_id);
                if entry.queue_offset > cq_max {
                    return Err(DispatchError::ReplayGap {
                        topic: entry.topic.to_string(),
                        queue_id: entry.queue_id,
                        queue_offset: entry.queue_offset,
                        cq_max_offset: cq_max,
                    });
                }
            }
            let put = st
                .queues
                .queue(cq, entry.topic, entry.queue_id)
                .and_then(|q| {
                    q.put_unit(
                        entry.queue_offset,
                        offset as i64,
                        entry.size as i32,
                        tags_code,
                    )
                });
            let new_max = match put {
                Ok(max) => max,
                Err(ConsumeQueueError::Conflict { .. }) if self.tolerate_conflicts => {
                    // Deliberate bug (reuse_queue_offset_after_recovery): the entry's
                    // queue offset is already taken, so it never becomes readable.
                    tracing::warn!(topic = %entry.topic, queue_id = entry.queue_id, queue_offset = entry.queue_offset, "debug bug: reused queue offset, unit dropped");
                    st.reput_offset = end;
                    return Ok(false);
                }
                Err(e) => return Err(StoreError::from(e).into()),
            };
            // Raw (replicated) appends bypass the append path: keep its table in step.
            // Entries the append path wrote (or recovery vouched for) lie below its end.
            if let Some(log) = log {
                let mut append = log.lock_append();
                if append.last_end_offset < end {
                    let next = append
                        .queue_offsets
                        .get(entry.topic, entry.queue_id)
                        .unwrap_or(0)
                        .max(entry.queue_offset + 1);
                    append.queue_offsets.set(entry.topic, entry.queue_id, next);
                    append.last_end_offset = end;
                    append.last_store_timestamp = entry.store_timestamp;
                }
            }
            if let Some(listener) = &st.listener {
                listener(entry.topic, entry.queue_id, new_max, tags_code);
            }
        }
        if self.index_enabled
            && sysflag::transaction_type(entry.sys_flag) != sysflag::TRANSACTION_ROLLBACK_TYPE
        {
            // KEYS tokens then UNIQ_KEY, on the stack unless there are many.
            let mut inline = [""; 8];
            let mut spilled: Vec<&str> = Vec::new();
            let mut count = 0;
            for key in props.key_tokens().chain(props.uniq_key) {
                if count < inline.len() {
                    inline[count] = key;
                } else {
                    if spilled.is_empty() {
                        spilled.extend_from_slice(&inline);
                    }
                    spilled.push(key);
                }
                count += 1;
            }
            let keys = if count <= inline.len() {
                &inline[..count]
            } else {
                &spilled[..]
            };
            if !keys.is_empty() {
                index.build_index(entry.topic, keys, offset as i64, entry.store_timestamp)?;
            }
        }
        st.reput_offset = end;
        st.last_store_timestamp = entry.store_timestamp;
        Ok(true)
    }
}

/// Shared handles dispatch needs (kept together so the facade can pass one thing).
pub struct DispatchTargets {
    pub cq: Arc<ConsumeQueueStore>,
    pub index: Arc<dyn KeyIndex>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_levels_parse() {
        let levels = parse_delay_levels("1s 5s 10s 30s 1m 2m 1h 2d x");
        assert_eq!(
            levels,
            vec![
                1000,
                5000,
                10_000,
                30_000,
                60_000,
                120_000,
                3_600_000,
                172_800_000
            ]
        );
    }
}
