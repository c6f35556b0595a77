//! The `checkpoint` file in RocketMQ's layout (one 4 KiB page, big-endian i64s):
//! `physicMsgTimestamp @0 | logicsMsgTimestamp @8 | indexMsgTimestamp @16 |
//! masterFlushedOffset @24 | confirmPhyOffset @32`, plus two Apogee fields in the page's unused
//! bytes: `commitlogFlushedOffset @40 | dispatchFlushedOffset @48` (RocketMQ leaves them zero
//! and ignores them; zero means "unknown" here). Updated after CommitLog, ConsumeQueue and
//! index flushes; read at start to choose where recovery scans and re-dispatches from.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::store::disk::{Disk, SegmentFile};
use crate::store::error::StoreError;

/// Size of the checkpoint file (one OS page, as RocketMQ maps it).
pub const CHECKPOINT_FILE_SIZE: u64 = 4096;
/// RocketMQ's five fields: a shorter file is corrupt.
const FIELDS_LEN: usize = 40;
/// With the two Apogee offsets.
const ALL_FIELDS_LEN: usize = 56;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CheckpointData {
    /// Store timestamp of the newest durable CommitLog entry.
    pub physic_msg_timestamp: i64,
    /// Store timestamp of the newest entry whose ConsumeQueue unit is durable.
    pub logics_msg_timestamp: i64,
    /// Store timestamp of the newest entry whose index entry is durable.
    pub index_msg_timestamp: i64,
    pub master_flushed_offset: i64,
    pub confirm_phy_offset: i64,
    /// CommitLog offset below which every byte was durable when the checkpoint was written
    /// (an entry boundary); 0 when unknown (a checkpoint written by RocketMQ).
    pub commitlog_flushed_offset: i64,
    /// CommitLog offset below which every entry's ConsumeQueue unit and index keys were durable
    /// when the checkpoint was written; 0 when unknown.
    pub dispatch_flushed_offset: i64,
}

impl CheckpointData {
    pub fn encode(&self) -> [u8; ALL_FIELDS_LEN] {
        let mut b = [0u8; ALL_FIELDS_LEN];
        let fields = [
            self.physic_msg_timestamp,
            self.logics_msg_timestamp,
            self.index_msg_timestamp,
            self.master_flushed_offset,
            self.confirm_phy_offset,
            self.commitlog_flushed_offset,
            self.dispatch_flushed_offset,
        ];
        for (i, v) in fields.iter().enumerate() {
            b[i * 8..i * 8 + 8].copy_from_slice(&v.to_be_bytes());
        }
        b
    }

    /// Decodes RocketMQ's five fields and, when present, the two Apogee offsets.
    pub fn decode(b: &[u8]) -> CheckpointData {
        assert!(b.len() >= FIELDS_LEN, "checkpoint fields truncated");
        let at = |i: usize| {
            let Some(field) = b.get(i * 8..i * 8 + 8) else {
                return 0;
            };
            let mut a = [0u8; 8];
            a.copy_from_slice(field);
            i64::from_be_bytes(a)
        };
        CheckpointData {
            physic_msg_timestamp: at(0),
            logics_msg_timestamp: at(1),
            index_msg_timestamp: at(2),
            master_flushed_offset: at(3),
            confirm_phy_offset: at(4),
            commitlog_flushed_offset: at(5).max(0),
            dispatch_flushed_offset: at(6).max(0),
        }
    }

    /// The store timestamp before which everything is known durable in both the CommitLog
    /// and the ConsumeQueues (RocketMQ `getMinTimestamp`: min of the two, minus 3 s of slack
    /// for entries stored out of timestamp order).
    pub fn min_timestamp(&self) -> i64 {
        (self.physic_msg_timestamp.min(self.logics_msg_timestamp) - 3000).max(0)
    }
}

pub struct Checkpoint {
    path: PathBuf,
    file: Arc<dyn SegmentFile>,
    data: Mutex<CheckpointData>,
}

impl Checkpoint {
    /// Opens or creates the checkpoint. A file shorter than its fields is corrupt.
    pub fn open(disk: &dyn Disk, path: &Path) -> Result<Checkpoint, StoreError> {
        let io = |op: &'static str| {
            let path = path.to_path_buf();
            move |source| StoreError::Io { op, path, source }
        };
        let (file, data) = if disk.exists(path) {
            let file = disk.open(path).map_err(io("open"))?;
            if file.len() < FIELDS_LEN as u64 {
                return Err(StoreError::Corrupt {
                    path: path.to_path_buf(),
                    offset: file.len(),
                    reason: format!("checkpoint shorter than {FIELDS_LEN} bytes"),
                });
            }
            let n = (file.len() as usize).min(ALL_FIELDS_LEN);
            let mut b = [0u8; ALL_FIELDS_LEN];
            file.read_at(0, &mut b[..n]).map_err(io("read"))?;
            (file, CheckpointData::decode(&b[..n]))
        } else {
            let dir = path.parent().unwrap_or_else(|| Path::new("."));
            disk.create_dir_all(dir).map_err(io("create dir"))?;
            let file = disk
                .create(path, CHECKPOINT_FILE_SIZE)
                .map_err(io("create"))?;
            file.sync_all().map_err(io("fsync"))?;
            disk.sync_dir(dir).map_err(io("sync dir"))?;
            (file, CheckpointData::default())
        };
        Ok(Checkpoint {
            path: path.to_path_buf(),
            file,
            data: Mutex::new(data),
        })
    }

    pub fn get(&self) -> CheckpointData {
        *self.data.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes the in-memory values; `flush` persists them.
    pub fn update(&self, f: impl FnOnce(&mut CheckpointData)) {
        let mut d = self.data.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut d);
    }

    /// Writes the fields and fsyncs. An error is returned, never swallowed (RocketMQ's
    /// checkpoint flush only logs).
    pub fn flush(&self) -> Result<(), StoreError> {
        let data = self.get();
        let bytes = data.encode();
        let io = |op: &'static str| {
            let path = self.path.clone();
            move |source| StoreError::Io { op, path, source }
        };
        self.file.write_at(0, &bytes).map_err(io("write"))?;
        self.file
            .sync_range(0, ALL_FIELDS_LEN as u64)
            .map_err(io("fsync"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::disk::sim::{CrashMode, SeededRng, SimDisk};

    #[test]
    fn layout_and_durability() {
        let disk = SimDisk::new();
        let path = Path::new("/s/checkpoint");
        let cp = Checkpoint::open(&disk, path).expect("open");
        assert_eq!(cp.get(), CheckpointData::default());
        cp.update(|d| {
            d.physic_msg_timestamp = 0x0102_0304_0506_0708;
            d.logics_msg_timestamp = 5000;
            d.confirm_phy_offset = -1;
        });
        cp.flush().expect("flush");
        let raw = disk.read_durable(path).expect("durable");
        assert_eq!(raw.len(), 4096);
        assert_eq!(&raw[..8], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&raw[8..16], &5000i64.to_be_bytes());
        assert_eq!(&raw[32..40], &(-1i64).to_be_bytes());
        disk.crash(CrashMode::PowerLoss, &mut SeededRng::new(1));
        let cp = Checkpoint::open(&disk, path).expect("reopen");
        assert_eq!(cp.get().logics_msg_timestamp, 5000);
        assert_eq!(cp.get().min_timestamp(), 2000);
    }

    #[test]
    fn short_checkpoint_is_corrupt() {
        let disk = SimDisk::new();
        let path = Path::new("/s/checkpoint");
        disk.create_dir_all(Path::new("/s")).expect("mkdir");
        disk.create(path, 10).expect("create");
        let err = Checkpoint::open(&disk, path).err().expect("corrupt");
        assert!(err.to_string().contains("/s/checkpoint"));
    }
}
