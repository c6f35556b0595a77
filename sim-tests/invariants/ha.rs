//! Master/slave checkers (issue 5), read-only over the SimDisks and the oracle:
//! - [`PREFIX`]: the slave's CommitLog is a byte prefix of the master's over the range both
//!   hold (checked at every master crash, at every network heal, periodically, and at the end);
//! - [`ACKED_ON_SLAVE`]: under SYNC_MASTER every SUCCESS ack received before a master crash or
//!   a network heal is on the slave at that instant (no false PUT_OK), and on the slave at the
//!   end;
//! - [`ASYNC_LOSS_BOUNDED`]: under ASYNC_MASTER an acked message the master lost was beyond the
//!   slave's end at every master crash after the ack (whatever the slave held, the master took
//!   back); the run reports how many were lost.
//!
//! "Holds" means the longest run of whole entries with a good body CRC from the start of each
//! file (what recovery would keep); a BLANK filler counts to the end of its file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use apogee::message::entry::{
    decode_entry, peek_header, BLANK_MAGIC_CODE, MESSAGE_MAGIC_CODE_V1, MESSAGE_MAGIC_CODE_V2,
};
use apogee::rt::Instant;
use apogee::store::BrokerRole;

use super::{CheckInput, Report, Violation};
use crate::harness::disk::SimDiskHandle;
use crate::harness::oracle::{body_id, MessageId, ObservedBy, SendOutcome};

pub const PREFIX: &str = "ha_byte_prefix";
pub const ACKED_ON_SLAVE: &str = "ha_acked_on_slave";
pub const ASYNC_LOSS_BOUNDED: &str = "ha_async_loss_bounded";

/// The CommitLog files of a disk (live image), by start offset.
pub fn commitlog_files(disk: &SimDiskHandle) -> BTreeMap<u64, (PathBuf, Vec<u8>)> {
    let dir = disk.store_root().join("commitlog");
    disk.paths()
        .into_iter()
        .filter(|p| p.parent() == Some(dir.as_path()))
        .filter_map(|p| {
            let start: u64 = p.file_name()?.to_str()?.parse().ok()?;
            let data = disk.read_live(&p)?;
            Some((start, (p, data)))
        })
        .collect()
}

/// Length of the valid prefix of one CommitLog file, calling `each` per message entry.
fn walk_file(data: &[u8], mut each: impl FnMut(u64, &[u8])) -> usize {
    let mut pos = 0usize;
    while pos + 8 <= data.len() {
        let Some((total, magic)) = peek_header(&data[pos..]) else {
            break;
        };
        if magic == BLANK_MAGIC_CODE {
            return data.len();
        }
        if magic != MESSAGE_MAGIC_CODE_V1 && magic != MESSAGE_MAGIC_CODE_V2 {
            break;
        }
        if total <= 0 || pos + total as usize > data.len() {
            break;
        }
        let entry = &data[pos..pos + total as usize];
        if decode_entry(entry, true).is_err() {
            break;
        }
        each(pos as u64, entry);
        pos += total as usize;
    }
    pos
}

/// One past the last valid byte of the log (0 when empty).
pub fn valid_end(disk: &SimDiskHandle) -> u64 {
    let files = commitlog_files(disk);
    let mut end = 0;
    for (start, (_, data)) in &files {
        let len = walk_file(data, |_, _| {}) as u64;
        if len > 0 {
            end = start + len;
        }
        if (len as usize) < data.len() {
            break;
        }
    }
    end
}

/// Body ids of every valid message on a disk, and the valid end.
pub fn message_ids(disk: &SimDiskHandle) -> (BTreeSet<MessageId>, u64) {
    let mut ids = BTreeSet::new();
    let mut end = 0;
    for (start, (_, data)) in commitlog_files(disk) {
        let len = walk_file(&data, |_, entry| {
            if let Ok((m, _)) = decode_entry(entry, false) {
                if let Some(id) = body_id(&m.body) {
                    ids.insert(id);
                }
            }
        });
        if len > 0 {
            end = start + len as u64;
        }
        if len < data.len() {
            break;
        }
    }
    (ids, end)
}

/// The slave's log must be a byte prefix of the master's where both hold valid entries.
pub fn check_prefix(
    master: &str,
    master_disk: &SimDiskHandle,
    slave_disk: &SimDiskHandle,
    when: &str,
) -> Vec<Violation> {
    let master_files = commitlog_files(master_disk);
    let mut violations = Vec::new();
    for (start, (_, slave_data)) in commitlog_files(slave_disk) {
        let Some((_, master_data)) = master_files.get(&start) else {
            continue;
        };
        let n = walk_file(&slave_data, |_, _| {}).min(walk_file(master_data, |_, _| {}));
        if let Some(i) = (0..n).find(|i| slave_data[*i] != master_data[*i]) {
            violations.push(Violation {
                invariant: PREFIX,
                detail: format!(
                    "{when}: slave of {master} differs from its master at CommitLog offset {} \
                     (file {start}, both hold {n} valid bytes of it): slave {:#04x}, master \
                     {:#04x}",
                    start + i as u64,
                    slave_data[i],
                    master_data[i]
                ),
            });
        }
    }
    violations
}

/// What the slave of `master` held at an instant (a master crash or a network heal).
#[derive(Debug, Clone)]
pub struct HaSnapshot {
    /// The master's address (as in the oracle).
    pub master: String,
    pub at: Instant,
    pub why: String,
    pub master_crash: bool,
    pub slave_ids: BTreeSet<MessageId>,
    pub slave_end: u64,
}

/// Both HA checkers that use the oracle; snapshots come from the cluster.
pub fn check(input: &CheckInput, report: &mut Report) -> Vec<Violation> {
    let mut violations = Vec::new();
    let mut scanned: BTreeMap<(&str, i32, i64), &[u8]> = BTreeMap::new();
    for c in &input.oracle.consumed {
        if c.by == ObservedBy::FinalScan && c.topic == input.topic {
            scanned.insert((&c.broker, c.queue_id, c.queue_offset), &c.body[..]);
        }
    }
    let mut final_slave: BTreeMap<&str, BTreeSet<MessageId>> = BTreeMap::new();
    let (mut sync_acks, mut async_lost, mut async_acks) = (0u64, 0u64, 0u64);
    for msg in input.oracle.sends.values() {
        for attempt in &msg.attempts {
            let SendOutcome::Acked {
                response_code,
                queue_id,
                queue_offset,
            } = attempt.outcome
            else {
                continue;
            };
            let Some(facts) = input.brokers.get(&attempt.broker) else {
                continue;
            };
            let Some(slave) = &facts.slave else {
                continue;
            };
            let slave_lost_between = |from: Instant, to: Instant| {
                slave.power_losses.iter().any(|p| *p > from && *p <= to)
            };
            match facts.role {
                BrokerRole::SyncMaster if response_code == 0 => {
                    sync_acks += 1;
                    for s in input
                        .ha_snapshots
                        .iter()
                        .filter(|s| s.master == attempt.broker)
                    {
                        // The slave acknowledges from its page cache (as RocketMQ's does):
                        // its power loss after the send started may take the message back.
                        if attempt.finished_at < s.at
                            && !s.slave_ids.contains(&msg.id)
                            && !slave_lost_between(attempt.started_at, s.at)
                        {
                            violations.push(Violation {
                                invariant: ACKED_ON_SLAVE,
                                detail: format!(
                                    "m{} got SUCCESS from SYNC_MASTER {} but its slave did not \
                                     hold it at {} (slave end {})",
                                    msg.id, attempt.broker, s.why, s.slave_end
                                ),
                            });
                        }
                    }
                    let both_lost = slave.power_losses.iter().any(|p| *p > attempt.started_at)
                        && facts.power_loss_after(attempt.started_at);
                    let on_slave = final_slave
                        .entry(attempt.broker.as_str())
                        .or_insert_with(|| message_ids(&slave.disk).0)
                        .contains(&msg.id);
                    if !on_slave && !both_lost {
                        violations.push(Violation {
                            invariant: ACKED_ON_SLAVE,
                            detail: format!(
                                "m{} got SUCCESS from SYNC_MASTER {} but its slave does not \
                                 hold it at the end",
                                msg.id, attempt.broker
                            ),
                        });
                    }
                }
                BrokerRole::AsyncMaster => {
                    async_acks += 1;
                    let intact = scanned
                        .get(&(attempt.broker.as_str(), queue_id, queue_offset))
                        .is_some_and(|b| *b == &msg.body[..]);
                    if intact {
                        continue;
                    }
                    async_lost += 1;
                    for s in input.ha_snapshots.iter().filter(|s| {
                        s.master == attempt.broker && s.master_crash && s.at > attempt.finished_at
                    }) {
                        if s.slave_ids.contains(&msg.id)
                            && !slave.power_losses.iter().any(|p| *p > s.at)
                        {
                            violations.push(Violation {
                                invariant: ASYNC_LOSS_BOUNDED,
                                detail: format!(
                                    "m{} acked by ASYNC_MASTER {} is lost, yet the slave held \
                                     it when the master crashed ({}); the master must take \
                                     back what the slave holds",
                                    msg.id, attempt.broker, s.why
                                ),
                            });
                        }
                    }
                }
                _ => {}
            }
        }
    }
    report.lines.push(format!(
        "ha: sync_master_acks={sync_acks} async_master_acks={async_acks} \
         async_master_lost={async_lost} snapshots={}",
        input.ha_snapshots.len()
    ));
    violations
}
