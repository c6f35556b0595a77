//! Dispatch ("reput"): walks the CommitLog from the reput offset up to the written end, and for
//! each entry writes its ConsumeQueue unit, its index keys, and tells the arrival listener.
//! The same path serves appends, raw replicated bytes and recovery re-dispatch, so the
//! ConsumeQueues are always derived from the log by one piece of code.

use std::sync::{Arc, Mutex, RwLock};

use crate::message::entry::{parse_entry, EntryView, MessageExt};
use crate::message::properties::{tags_hash_code, DELAY, TAGS};
use crate::message::sysflag;
use crate::store::commitlog::append::takes_queue_offset;
use crate::store::commitlog::{CommitLog, EntryKind};
use crate::store::consume_queue::{ConsumeQueueError, ConsumeQueueStore};
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
    if entry.topic == SCHEDULE_TOPIC {
        if let Some(level) = entry.property(DELAY).and_then(|l| l.parse::<usize>().ok()) {
            let level = level.clamp(1, delay_levels_ms.len().max(1));
            let delay = delay_levels_ms.get(level - 1).copied().unwrap_or(1000);
            return entry.store_timestamp + delay;
        }
    }
    entry.property(TAGS).map(tags_hash_code).unwrap_or(0)
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

#[derive(Debug, Default)]
struct DispatchState {
    reput_offset: u64,
    /// Store timestamp of the newest dispatched entry (checkpoint logics timestamp).
    last_store_timestamp: i64,
    /// Entry buffer reused across entries.
    buf: Vec<u8>,
}

pub struct Dispatcher {
    state: Mutex<DispatchState>,
    listener: RwLock<Option<ArrivalListener>>,
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
            listener: RwLock::new(None),
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
        *self.listener.write().unwrap_or_else(|e| e.into_inner()) = Some(listener);
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
        let listener = self
            .listener
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut done = 0;
        let st = &mut *st;
        while st.reput_offset < end {
            let offset = st.reput_offset;
            match log.read_entry_into(offset, false, &mut st.buf)? {
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
                parse_entry(&st.buf, false).map_err(|reason| StoreError::Corrupt {
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
            assert_eq!(size, st.buf.len());
            let tags_code = tags_code_of_view(&msg, &self.delay_levels_ms);
            if takes_queue_offset(msg.sys_flag) {
                let cq_max = cq.max_offset(msg.topic, msg.queue_id);
                if mode == DispatchMode::ReplayFromMiddle && msg.queue_offset > cq_max {
                    return Err(DispatchError::ReplayGap {
                        topic: msg.topic.to_string(),
                        queue_id: msg.queue_id,
                        queue_offset: msg.queue_offset,
                        cq_max_offset: cq_max,
                    });
                }
                let put = cq.put_unit(
                    msg.topic,
                    msg.queue_id,
                    msg.queue_offset,
                    offset as i64,
                    size as i32,
                    tags_code,
                );
                let new_max = match put {
                    Ok(max) => max,
                    Err(ConsumeQueueError::Conflict { .. }) if self.tolerate_conflicts => {
                        // Deliberate bug (reuse_queue_offset_after_recovery): the entry's
                        // queue offset is already taken, so it never becomes readable.
                        tracing::warn!(topic = %msg.topic, queue_id = msg.queue_id, queue_offset = msg.queue_offset, "debug bug: reused queue offset, unit dropped");
                        st.reput_offset = offset + size as u64;
                        continue;
                    }
                    Err(e) => return Err(StoreError::from(e).into()),
                };
                // Raw (replicated) appends bypass the append path: keep its table in step.
                // Entries the append path wrote (or recovery vouched for) lie below its end.
                {
                    let mut append = log.lock_append();
                    if append.last_end_offset < offset + size as u64 {
                        let next = append
                            .queue_offsets
                            .entry((msg.topic.to_string(), msg.queue_id))
                            .or_insert(0);
                        *next = (*next).max(msg.queue_offset + 1);
                        append.last_end_offset = offset + size as u64;
                        append.last_store_timestamp = msg.store_timestamp;
                    }
                }
                if let Some(listener) = &listener {
                    listener(msg.topic, msg.queue_id, new_max, tags_code);
                }
            }
            if self.index_enabled
                && sysflag::transaction_type(msg.sys_flag) != sysflag::TRANSACTION_ROLLBACK_TYPE
            {
                let mut keys: Vec<&str> = msg.keys().collect();
                if let Some(uniq) = msg.uniq_key() {
                    keys.push(uniq);
                }
                if !keys.is_empty() {
                    index.build_index(msg.topic, &keys, offset as i64, msg.store_timestamp)?;
                }
            }
            st.reput_offset = offset + size as u64;
            st.last_store_timestamp = msg.store_timestamp;
            done += 1;
        }
        Ok(done)
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
