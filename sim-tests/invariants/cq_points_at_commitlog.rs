//! Every ConsumeQueue unit in a queue's valid range points at a valid CommitLog entry: the
//! 20-byte unit (commitlog_offset i64, size i32, tags_code i64, big-endian; RocketMQ
//! `ConsumeQueue`) names an entry that decodes with a correct body CRC, has exactly that size,
//! and carries the topic, queue id and queue offset of the unit, and the tags hash of its TAGS.
//! Read straight from the broker's simulated disk (page-cache view), independent of the
//! broker's own read path. Runs once the cluster is quiet, over the final scan's bounds.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use apogee::message::properties::tags_hash_code;

use super::{BrokerFacts, Report, Violation, VIOLATIONS_SHOWN_MAX};

pub const NAME: &str = "cq_points_at_commitlog";
pub const CQ_UNIT_SIZE: u64 = 20;

/// Files directly under `dir` named by a 20-digit start offset, sorted by it.
fn segments(facts: &BrokerFacts, dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut out: Vec<(u64, PathBuf)> = facts
        .disk
        .paths()
        .into_iter()
        .filter(|p| p.parent() == Some(dir))
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?;
            if name.len() == 20 && name.bytes().all(|b| b.is_ascii_digit()) {
                Some((name.parse().ok()?, p))
            } else {
                None
            }
        })
        .collect();
    out.sort();
    out
}

/// A segmented file set (CommitLog or one ConsumeQueue) loaded once: (start offset, bytes).
struct Segments {
    files: Vec<(u64, Vec<u8>)>,
}

impl Segments {
    fn load(facts: &BrokerFacts, dir: &Path) -> Segments {
        let files = segments(facts, dir)
            .into_iter()
            .filter_map(|(start, path)| Some((start, facts.disk.read_live(&path)?)))
            .collect();
        Segments { files }
    }

    /// Bytes `[pos, pos+len)` (None if not inside one segment).
    fn read(&self, pos: u64, len: u64) -> Option<&[u8]> {
        let (start, data) = self.files.iter().rev().find(|(start, _)| *start <= pos)?;
        let from = (pos - start) as usize;
        let to = from.checked_add(len as usize)?;
        data.get(from..to)
    }
}

/// `bounds`: queue id -> [min, max) queue offsets the broker reported in the final scan; units
/// in that range must be valid. Queues without bounds are walked to their first empty unit.
pub fn check(
    addr: &str,
    facts: &BrokerFacts,
    topic: &str,
    bounds: &BTreeMap<i32, (i64, i64)>,
    report: &mut Report,
) -> Vec<Violation> {
    let root = facts.disk.store_root().to_path_buf();
    let commitlog = Segments::load(facts, &root.join("commitlog"));
    let queue_root = root.join("consumequeue").join(topic);
    let mut queue_ids: Vec<i32> = facts
        .disk
        .paths()
        .into_iter()
        .filter_map(|p| {
            let rel = p.strip_prefix(&queue_root).ok()?;
            rel.components().next()?.as_os_str().to_str()?.parse().ok()
        })
        .chain(bounds.keys().copied())
        .collect();
    queue_ids.sort();
    queue_ids.dedup();
    let mut violations = Vec::new();
    let mut units_checked = 0u64;
    for queue_id in queue_ids {
        let fail = |detail: String| Violation {
            invariant: NAME,
            detail: format!("{addr} ({}) {topic}/{queue_id}: {detail}", facts.name),
        };
        let cq = Segments::load(facts, &queue_root.join(queue_id.to_string()));
        let (from, to) = match bounds.get(&queue_id) {
            Some((min, max)) => (*min, Some(*max)),
            None => (0, None),
        };
        let mut queue_offset = from;
        loop {
            if let Some(to) = to {
                if queue_offset >= to {
                    break;
                }
            }
            let unit = cq.read(queue_offset as u64 * CQ_UNIT_SIZE, CQ_UNIT_SIZE);
            let Some(unit) = unit else {
                if to.is_some() {
                    violations.push(fail(format!(
                        "no ConsumeQueue unit on disk for queue offset {queue_offset} \
                         (broker reports max {to:?})"
                    )));
                }
                break;
            };
            let commitlog_offset = i64::from_be_bytes(unit[0..8].try_into().expect("8 bytes"));
            let size = i32::from_be_bytes(unit[8..12].try_into().expect("4 bytes"));
            let tags_code = i64::from_be_bytes(unit[12..20].try_into().expect("8 bytes"));
            if to.is_none() && size == 0 && commitlog_offset == 0 && tags_code == 0 {
                break;
            }
            units_checked += 1;
            let unit = Unit {
                queue_id,
                queue_offset,
                commitlog_offset,
                size,
                tags_code,
            };
            if let Some(problem) = check_unit(&commitlog, topic, &unit) {
                violations.push(fail(format!("unit {queue_offset}: {problem}")));
                if violations.len() > VIOLATIONS_SHOWN_MAX {
                    return violations;
                }
            }
            queue_offset += 1;
        }
    }
    report
        .lines
        .push(format!("{NAME}: {addr} units_checked={units_checked}"));
    violations
}

struct Unit {
    queue_id: i32,
    queue_offset: i64,
    commitlog_offset: i64,
    size: i32,
    tags_code: i64,
}

fn check_unit(commitlog: &Segments, topic: &str, unit: &Unit) -> Option<String> {
    let Unit {
        queue_id,
        queue_offset,
        commitlog_offset,
        size,
        tags_code,
    } = *unit;
    if commitlog_offset < 0 || size <= 0 {
        return Some(format!(
            "bad unit (commitlog_offset {commitlog_offset}, size {size})"
        ));
    }
    let Some(bytes) = commitlog.read(commitlog_offset as u64, size as u64) else {
        return Some(format!(
            "points at CommitLog [{commitlog_offset}, +{size}) which no segment holds"
        ));
    };
    let (msg, decoded_size) = match apogee::message::decode_entry(bytes, true) {
        Ok(x) => x,
        Err(e) => {
            return Some(format!(
                "CommitLog entry at {commitlog_offset} invalid: {e}"
            ))
        }
    };
    if decoded_size != size as usize {
        return Some(format!(
            "unit size {size} but entry at {commitlog_offset} is {decoded_size} bytes"
        ));
    }
    if msg.topic != topic || msg.queue_id != queue_id || msg.queue_offset != queue_offset {
        return Some(format!(
            "entry at {commitlog_offset} is {}/{}@{}",
            msg.topic, msg.queue_id, msg.queue_offset
        ));
    }
    if msg.commitlog_offset != commitlog_offset {
        return Some(format!(
            "entry at {commitlog_offset} records physical offset {}",
            msg.commitlog_offset
        ));
    }
    let expected_tags = msg.tags().map(tags_hash_code).unwrap_or(0);
    if expected_tags != tags_code {
        return Some(format!(
            "tags code {tags_code}, entry's TAGS hash to {expected_tags}"
        ));
    }
    None
}
