//! The classic HA wire format (RocketMQ 4.x `HAConnection` / `HAClient`):
//! * slave → master: 8-byte big-endian i64, the slave's CommitLog max offset;
//! * master → slave: `offset:i64 | size:i32` header, then `size` raw CommitLog bytes
//!   (`size` 0 = heartbeat).
//!
//! Plus the slave's splitter that keeps only whole entries for the store.

use bytes::{Buf, Bytes, BytesMut};

use super::HaError;

pub const REPORT_LEN: usize = 8;
pub const TRANSFER_HEADER_LEN: usize = 12;
/// RocketMQ `haTransferBatchSize`.
pub const TRANSFER_BATCH_SIZE: usize = 32 * 1024;

/// Apogee extension (take-back, see ARCHITECTURE.md "HA: master shorter than slave"): a
/// master → slave header with this offset and 8 bytes of data asks the slave to send back its
/// CommitLog from the offset in the data. Negative, so no RocketMQ master sends it; a RocketMQ
/// slave receiving it sees an offset mismatch and closes the connection (the master then stays
/// fenced). The master sends it only to a slave that reported more than the master holds.
pub const TAKE_BACK_REQUEST: i64 = -0x4150_4F47_4545_0001;
/// Apogee extension: a slave → master "report" with this value announces take-back frames
/// (`offset:i64 | size:i32 | data`, the master's own transfer format); a frame of size 0 ends
/// them and the stream returns to 8-byte reports. No RocketMQ slave reports a negative offset.
pub const TAKE_BACK_BEGIN: i64 = -0x4150_4F47_4545_0002;

/// The 8 bytes a slave sends.
pub fn encode_report(max_offset: i64) -> [u8; REPORT_LEN] {
    max_offset.to_be_bytes()
}

/// Collects report bytes (they may arrive split or several at once) and yields the last
/// complete 8-byte value, like RocketMQ's `position - position % 8`.
#[derive(Debug, Default)]
pub struct ReportReader {
    buf: BytesMut,
}

impl ReportReader {
    pub fn feed(&mut self, bytes: &[u8]) -> Option<i64> {
        self.buf.extend_from_slice(bytes);
        let whole = self.buf.len() - self.buf.len() % REPORT_LEN;
        if whole == 0 {
            return None;
        }
        let mut complete = self.buf.split_to(whole);
        complete.advance(whole - REPORT_LEN);
        Some(complete.get_i64())
    }
}

/// A transfer header plus its data.
pub fn encode_transfer(commitlog_offset: i64, data: &[u8]) -> Vec<u8> {
    assert!(data.len() <= i32::MAX as usize, "transfer chunk too large");
    let mut out = Vec::with_capacity(TRANSFER_HEADER_LEN + data.len());
    out.extend_from_slice(&commitlog_offset.to_be_bytes());
    out.extend_from_slice(&(data.len() as i32).to_be_bytes());
    out.extend_from_slice(data);
    out
}

/// One decoded master → slave message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    pub commitlog_offset: i64,
    /// Empty for a heartbeat.
    pub data: Bytes,
}

/// Splits the master's stream into transfers; rejects negative offsets and sizes above
/// `max_size` (a corrupt or foreign stream).
#[derive(Debug)]
pub struct TransferDecoder {
    buf: BytesMut,
    max_size: usize,
}

impl TransferDecoder {
    pub fn new(max_size: usize) -> Self {
        TransferDecoder {
            buf: BytesMut::new(),
            max_size,
        }
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    pub fn next_transfer(&mut self) -> Result<Option<Transfer>, HaError> {
        if self.buf.len() < TRANSFER_HEADER_LEN {
            return Ok(None);
        }
        let offset = i64::from_be_bytes(self.buf[0..8].try_into().expect("8 bytes"));
        let size = i32::from_be_bytes(self.buf[8..12].try_into().expect("4 bytes"));
        let take_back = offset == TAKE_BACK_REQUEST && size == 8;
        if (offset < 0 && !take_back) || size < 0 || size as usize > self.max_size {
            return Err(HaError::Protocol(format!(
                "bad transfer header: offset {offset}, size {size} (max {})",
                self.max_size
            )));
        }
        if self.buf.len() < TRANSFER_HEADER_LEN + size as usize {
            return Ok(None);
        }
        self.buf.advance(TRANSFER_HEADER_LEN);
        let data = self.buf.split_to(size as usize).freeze();
        Ok(Some(Transfer {
            commitlog_offset: offset,
            data,
        }))
    }
}

/// One decoded slave → master message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlaveMessage {
    /// The slave's max offset (classic protocol).
    Report(i64),
    /// A take-back frame: raw CommitLog bytes of the slave from `commitlog_offset`.
    TakeBackFrame(Transfer),
    /// The slave sent everything it was asked for.
    TakeBackEnd,
}

/// The master's reader of the slave stream: 8-byte reports, and (Apogee extension) take-back
/// frames between a [`TAKE_BACK_BEGIN`] report and a frame of size 0.
#[derive(Debug)]
pub struct SlaveStreamReader {
    buf: BytesMut,
    in_frames: bool,
    max_size: usize,
}

impl SlaveStreamReader {
    pub fn new(max_size: usize) -> Self {
        SlaveStreamReader {
            buf: BytesMut::new(),
            in_frames: false,
            max_size,
        }
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    pub fn next_message(&mut self) -> Result<Option<SlaveMessage>, HaError> {
        loop {
            if !self.in_frames {
                if self.buf.len() < REPORT_LEN {
                    return Ok(None);
                }
                let value = self.buf.get_i64();
                if value == TAKE_BACK_BEGIN {
                    self.in_frames = true;
                    continue;
                }
                return Ok(Some(SlaveMessage::Report(value)));
            }
            if self.buf.len() < TRANSFER_HEADER_LEN {
                return Ok(None);
            }
            let offset = i64::from_be_bytes(self.buf[0..8].try_into().expect("8 bytes"));
            let size = i32::from_be_bytes(self.buf[8..12].try_into().expect("4 bytes"));
            if offset < 0 || size < 0 || size as usize > self.max_size {
                return Err(HaError::Protocol(format!(
                    "bad take-back frame from the slave: offset {offset}, size {size} (max {})",
                    self.max_size
                )));
            }
            if self.buf.len() < TRANSFER_HEADER_LEN + size as usize {
                return Ok(None);
            }
            self.buf.advance(TRANSFER_HEADER_LEN);
            if size == 0 {
                self.in_frames = false;
                return Ok(Some(SlaveMessage::TakeBackEnd));
            }
            let data = self.buf.split_to(size as usize).freeze();
            return Ok(Some(SlaveMessage::TakeBackFrame(Transfer {
                commitlog_offset: offset,
                data,
            })));
        }
    }
}

/// Length of the longest prefix of `buf` (which starts at CommitLog offset `start`, on an entry
/// boundary) made of whole entries: a message entry counts once all its bytes are there, a
/// BLANK filler once the whole rest of its file is there. Anything that is neither is an error
/// naming the offset (the slave would otherwise store garbage).
pub fn whole_entries_prefix(start: u64, buf: &[u8], file_size: u64) -> Result<usize, HaError> {
    use crate::message::entry::{
        peek_header, BLANK_MAGIC_CODE, MESSAGE_MAGIC_CODE_V1, MESSAGE_MAGIC_CODE_V2, MIN_ENTRY_SIZE,
    };
    const MIN_BLANK: u64 = crate::store::commitlog::END_FILE_MIN_BLANK_LENGTH;
    let mut pos = 0usize;
    loop {
        let abs = start + pos as u64;
        let file_rem = file_size - abs % file_size;
        let avail = buf.len() - pos;
        if avail < 8 {
            return Ok(pos);
        }
        let Some((total, magic)) = peek_header(&buf[pos..]) else {
            return Ok(pos);
        };
        let need = match magic {
            BLANK_MAGIC_CODE => {
                if total < 0 || total as u64 != file_rem {
                    return Err(HaError::Protocol(format!(
                        "BLANK filler at CommitLog offset {abs} declares {total} bytes but \
                         {file_rem} remain in the file"
                    )));
                }
                file_rem
            }
            MESSAGE_MAGIC_CODE_V1 | MESSAGE_MAGIC_CODE_V2 => {
                if total < MIN_ENTRY_SIZE as i32 || total as u64 + MIN_BLANK > file_rem {
                    return Err(HaError::Protocol(format!(
                        "entry at CommitLog offset {abs} declares impossible size {total} \
                         ({file_rem} bytes left in the file)"
                    )));
                }
                total as u64
            }
            other => {
                return Err(HaError::Protocol(format!(
                    "no entry at CommitLog offset {abs}: magic {:#010X}, size {total}",
                    other as u32
                )))
            }
        };
        if (avail as u64) < need {
            return Ok(pos);
        }
        pos += need as usize;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_reader_takes_last_complete_value() {
        let mut r = ReportReader::default();
        assert_eq!(r.feed(&[0, 0, 0]), None, "3 bytes are not a report");
        assert_eq!(r.feed(&[0, 0, 0, 0, 7]), Some(7));
        let mut two = Vec::new();
        two.extend_from_slice(&encode_report(100));
        two.extend_from_slice(&encode_report(200));
        two.extend_from_slice(&encode_report(300)[..5]);
        assert_eq!(r.feed(&two), Some(200), "the partial third value waits");
        assert_eq!(r.feed(&encode_report(300)[5..]), Some(300));
        assert_eq!(r.feed(&[]), None);
    }

    #[test]
    fn transfer_round_trip_in_pieces() {
        let data: Vec<u8> = (0..100u8).collect();
        let mut stream = encode_transfer(4096, &data);
        stream.extend_from_slice(&encode_transfer(4196, &[]));
        let mut d = TransferDecoder::new(TRANSFER_BATCH_SIZE);
        let mut got = Vec::new();
        for piece in stream.chunks(7) {
            d.feed(piece);
            while let Some(t) = d.next_transfer().expect("valid") {
                got.push(t);
            }
        }
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].commitlog_offset, 4096);
        assert_eq!(&got[0].data[..], &data[..]);
        assert_eq!(got[1].commitlog_offset, 4196);
        assert!(got[1].data.is_empty(), "heartbeat");
    }

    #[test]
    fn slave_stream_switches_between_reports_and_take_back_frames() {
        let mut stream = encode_report(100).to_vec();
        stream.extend_from_slice(&encode_report(TAKE_BACK_BEGIN));
        stream.extend_from_slice(&encode_transfer(90, &[1, 2, 3]));
        stream.extend_from_slice(&encode_transfer(93, &[]));
        stream.extend_from_slice(&encode_report(100));
        let mut r = SlaveStreamReader::new(16);
        let mut got = Vec::new();
        for piece in stream.chunks(5) {
            r.feed(piece);
            while let Some(m) = r.next_message().expect("valid") {
                got.push(m);
            }
        }
        assert_eq!(
            got,
            vec![
                SlaveMessage::Report(100),
                SlaveMessage::TakeBackFrame(Transfer {
                    commitlog_offset: 90,
                    data: Bytes::from_static(&[1, 2, 3]),
                }),
                SlaveMessage::TakeBackEnd,
                SlaveMessage::Report(100),
            ]
        );
        // A take-back request reaches the slave's decoder; other negative offsets do not.
        let mut d = TransferDecoder::new(16);
        d.feed(&encode_transfer(TAKE_BACK_REQUEST, &7i64.to_be_bytes()));
        let t = d.next_transfer().expect("valid").expect("whole");
        assert_eq!(t.commitlog_offset, TAKE_BACK_REQUEST);
        let mut d = TransferDecoder::new(16);
        d.feed(&encode_transfer(TAKE_BACK_REQUEST, &[0u8; 4]));
        assert!(
            d.next_transfer().is_err(),
            "a request carries exactly 8 bytes"
        );
    }

    #[test]
    fn transfer_rejects_oversized_and_negative() {
        let mut d = TransferDecoder::new(16);
        d.feed(&encode_transfer(0, &[0u8; 17]));
        assert!(d.next_transfer().is_err());
        let mut d = TransferDecoder::new(16);
        let mut bad = (-5i64).to_be_bytes().to_vec();
        bad.extend_from_slice(&0i32.to_be_bytes());
        d.feed(&bad);
        assert!(d.next_transfer().is_err());
    }

    fn fake_entry(size: usize) -> Vec<u8> {
        let mut e = vec![0u8; size];
        e[..4].copy_from_slice(&(size as i32).to_be_bytes());
        e[4..8].copy_from_slice(&crate::message::entry::MESSAGE_MAGIC_CODE_V1.to_be_bytes());
        e
    }

    #[test]
    fn prefix_keeps_whole_entries_only() {
        let size = crate::message::entry::MIN_ENTRY_SIZE + 10;
        let mut buf = fake_entry(size);
        buf.extend_from_slice(&fake_entry(size));
        let file_size = 1 << 20;
        assert_eq!(whole_entries_prefix(0, &buf, file_size).unwrap(), 2 * size);
        assert_eq!(
            whole_entries_prefix(0, &buf[..2 * size - 1], file_size).unwrap(),
            size
        );
        assert_eq!(whole_entries_prefix(0, &buf[..5], file_size).unwrap(), 0);
        // A blank counts only with the whole file tail.
        let file_size = (3 * size) as u64;
        let mut blank = vec![0u8; size];
        blank[..4].copy_from_slice(&(size as i32).to_be_bytes());
        blank[4..8].copy_from_slice(&crate::message::entry::BLANK_MAGIC_CODE.to_be_bytes());
        let mut with_blank = buf.clone();
        with_blank.extend_from_slice(&blank);
        assert_eq!(
            whole_entries_prefix(0, &with_blank[..with_blank.len() - 1], file_size).unwrap(),
            2 * size
        );
        assert_eq!(
            whole_entries_prefix(0, &with_blank, file_size).unwrap(),
            3 * size
        );
        // Garbage is an error naming the offset.
        let mut garbage = buf.clone();
        garbage.extend_from_slice(&[0xAB; 16]);
        let err = whole_entries_prefix(0, &garbage, 1 << 20).unwrap_err();
        assert!(err.to_string().contains(&format!("{}", 2 * size)), "{err}");
    }
}
