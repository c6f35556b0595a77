//! Tests of the ConsumeQueue (unit layout, recovery, truncation, lookups, a model-based proptest).

use super::*;
use crate::store::disk::sim::{CrashMode, SeededRng, SimDisk};
use proptest::prelude::*;

const UNIT: u64 = CQ_STORE_UNIT_SIZE;

fn disk() -> Arc<SimDisk> {
    Arc::new(SimDisk::new())
}

fn cq_dir() -> PathBuf {
    PathBuf::from("/store/consumequeue")
}

fn open(disk: &Arc<SimDisk>, units_per_file: u64) -> ConsumeQueueStore {
    ConsumeQueueStore::open(disk.clone(), &cq_dir(), units_per_file * UNIT).expect("open")
}

fn queue_file(topic: &str, queue_id: i32, start_byte_offset: u64) -> PathBuf {
    cq_dir()
        .join(topic)
        .join(queue_id.to_string())
        .join(file_name_of(start_byte_offset))
}

fn raw_read(disk: &Arc<SimDisk>, path: &Path, pos: u64, len: usize) -> Vec<u8> {
    let f = disk.open(path).expect("open raw");
    let mut buf = vec![0u8; len];
    f.read_at(pos, &mut buf).expect("read raw");
    buf
}

fn raw_write(disk: &Arc<SimDisk>, path: &Path, pos: u64, data: &[u8]) {
    let f = disk.open(path).expect("open raw");
    f.write_at(pos, data).expect("write raw");
    f.sync_all().expect("sync raw");
}

/// Puts `n` units for entries of 100 bytes laid end to end from `start_commitlog_offset`.
fn put_n(
    store: &ConsumeQueueStore,
    topic: &str,
    queue_id: i32,
    n: i64,
    start_commitlog_offset: i64,
) {
    let base = store.max_offset(topic, queue_id);
    for i in 0..n {
        let q = base + i;
        let max = store
            .put_unit(
                topic,
                queue_id,
                q,
                start_commitlog_offset + i * 100,
                100,
                q * 7,
            )
            .expect("put");
        assert_eq!(max, q + 1);
    }
}

#[test]
fn unit_layout_matches_rocketmq_bytes() {
    // commitLogOffset:i64 | size:i32 | tagsCode:i64, big-endian, built by hand.
    let bytes = encode_unit(0x0102_0304_0506_0708, 0x0A0B_0C0D, -2);
    let expected: [u8; 20] = [
        0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, // commitlog offset
        0x0A, 0x0B, 0x0C, 0x0D, // size
        0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFE, // tags code -2
    ];
    assert_eq!(bytes, expected);
    assert_eq!(
        decode_unit(&expected),
        (0x0102_0304_0506_0708, 0x0A0B_0C0D, -2)
    );
    assert_eq!(file_name_of(6_000_000), "00000000000006000000");
}

#[test]
fn put_and_read_round_trip_on_disk_layout() {
    let d = disk();
    let store = open(&d, 5);
    put_n(&store, "TopicA", 3, 12, 1000);
    assert_eq!(store.max_offset("TopicA", 3), 12);
    assert_eq!(store.min_offset("TopicA", 3), 0);
    assert_eq!(store.max_commitlog_offset_referenced(), 1000 + 12 * 100);

    // 5 units per file: files start at byte 0, 100, 200.
    for start in [0u64, 100, 200] {
        assert!(d.exists(&queue_file("TopicA", 3, start)), "file {start}");
    }
    assert!(!d.exists(&queue_file("TopicA", 3, 300)));
    // Unit 6 sits at byte 20 of the second file.
    let raw = raw_read(&d, &queue_file("TopicA", 3, 100), 20, 20);
    assert_eq!(raw, encode_unit(1600, 100, 42).to_vec());

    let units = store.read_units("TopicA", 3, 3, 6).expect("read");
    assert_eq!(units.len(), 6);
    for (i, u) in units.iter().enumerate() {
        let q = 3 + i as i64;
        assert_eq!(u.queue_offset, q);
        assert_eq!(u.commitlog_offset, 1000 + q * 100);
        assert_eq!(u.size, 100);
        assert_eq!(u.tags_code, q * 7);
    }
    // Clipped at max, empty outside [min, max).
    assert_eq!(
        store.read_units("TopicA", 3, 10, 100).expect("read").len(),
        2
    );
    assert!(store
        .read_units("TopicA", 3, 12, 1)
        .expect("read")
        .is_empty());
    assert!(store
        .read_units("TopicA", 3, -1, 1)
        .expect("read")
        .is_empty());
    assert!(store.read_units("Nope", 0, 0, 1).expect("read").is_empty());
    assert_eq!(
        store
            .read_unit("TopicA", 3, 11)
            .expect("read")
            .map(|u| u.commitlog_offset),
        Some(2100)
    );

    // Reopen: everything recovered.
    store.flush(0).expect("flush");
    drop(store);
    let store = open(&d, 5);
    assert_eq!(store.max_offset("TopicA", 3), 12);
    assert_eq!(store.max_commitlog_offset_referenced(), 2200);
    assert_eq!(
        store.read_units("TopicA", 3, 0, 100).expect("read").len(),
        12
    );
    let table = store.queue_offset_table();
    assert_eq!(table.get(&("TopicA".to_string(), 3)), Some(&12));
    assert_eq!(table.len(), 1);
}

#[test]
fn put_rules_duplicate_gap_conflict_and_invalid() {
    let d = disk();
    let store = open(&d, 5);
    put_n(&store, "T", 0, 3, 0);
    // Identical re-dispatch is ignored.
    assert_eq!(store.put_unit("T", 0, 1, 100, 100, 7).expect("dup"), 3);
    // A different unit at a taken offset is a conflict.
    assert!(matches!(
        store.put_unit("T", 0, 1, 999, 100, 7),
        Err(ConsumeQueueError::Conflict {
            queue_offset: 1,
            existing_commitlog_offset: 100,
            ..
        })
    ));
    // Gaps are refused.
    assert!(matches!(
        store.put_unit("T", 0, 5, 300, 100, 0),
        Err(ConsumeQueueError::Gap {
            expected_queue_offset: 3,
            ..
        })
    ));
    // Entry overlapping the previous one.
    assert!(matches!(
        store.put_unit("T", 0, 3, 250, 100, 0),
        Err(ConsumeQueueError::InvalidUnit { .. })
    ));
    for size in [0, -1, i32::MAX] {
        assert!(matches!(
            store.put_unit("T", 0, 3, 300, size, 0),
            Err(ConsumeQueueError::InvalidUnit { .. })
        ));
    }
    assert!(store.put_unit("T", 0, 3, -5, 10, 0).is_err());
    assert!(matches!(
        store.put_unit("../etc", 0, 0, 0, 10, 0),
        Err(ConsumeQueueError::InvalidTopic(_))
    ));
    assert_eq!(store.max_offset("T", 0), 3);
    assert_eq!(store.put_unit("T", 0, 3, 300, 100, 0).expect("next"), 4);
}

#[test]
fn queue_starting_mid_file_is_padded_with_blank_units() {
    let d = disk();
    let store = open(&d, 5);
    // First unit ever at queue offset 7: file starts at byte 100 (units 5..10), 2 blanks.
    assert_eq!(store.put_unit("T", 1, 7, 5000, 50, 1).expect("put"), 8);
    assert_eq!(store.min_offset("T", 1), 7);
    assert_eq!(store.max_offset("T", 1), 8);
    let path = queue_file("T", 1, 100);
    let raw = raw_read(&d, &path, 0, 60);
    let blank: [u8; 20] = [
        0, 0, 0, 0, 0, 0, 0, 0, 0x7F, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    assert_eq!(&raw[0..20], &blank);
    assert_eq!(&raw[20..40], &blank);
    assert_eq!(&raw[40..60], &encode_unit(5000, 50, 1));
    assert!(store.read_units("T", 1, 5, 3).expect("read").is_empty());
    assert_eq!(store.read_units("T", 1, 7, 3).expect("read").len(), 1);
    store.put_unit("T", 1, 8, 5050, 50, 1).expect("put");

    store.flush(0).expect("flush");
    drop(store);
    let store = open(&d, 5);
    assert_eq!(store.min_offset("T", 1), 7);
    assert_eq!(store.max_offset("T", 1), 9);
    assert_eq!(store.max_commitlog_offset_referenced(), 5100);
    // correct_min_offset treats blanks as below any CommitLog offset.
    store.correct_min_offset(0).expect("correct");
    assert_eq!(store.min_offset("T", 1), 7);
}

#[test]
fn recovery_truncates_torn_tail_and_zeroes_it() {
    let d = disk();
    let store = open(&d, 5);
    put_n(&store, "T", 0, 7, 0);
    store.flush(0).expect("flush");
    drop(store);
    let second = queue_file("T", 0, 100);
    // Unit 7 (byte 40 of file 2) torn: offset written, size zero. Unit 8 looks valid but sits
    // after the tear, as if its page reached the disk first.
    raw_write(&d, &second, 40, &encode_unit(700, 0, 0));
    raw_write(&d, &second, 60, &encode_unit(800, 100, 0));

    let store = open(&d, 5);
    assert_eq!(store.max_offset("T", 0), 7);
    assert_eq!(store.max_commitlog_offset_referenced(), 700);
    // The torn unit and the stray one were zeroed, so they cannot come back later.
    assert_eq!(raw_read(&d, &second, 40, 60), vec![0u8; 60]);
    // Appending continues at 7.
    assert_eq!(store.put_unit("T", 0, 7, 700, 100, 0).expect("put"), 8);
}

#[test]
fn recovery_stops_at_unit_going_backwards_and_drops_later_files() {
    let d = disk();
    let store = open(&d, 5);
    put_n(&store, "T", 0, 12, 0);
    store.flush(0).expect("flush");
    drop(store);
    // Unit 6 (byte 20 of file 2) points before unit 5's entry.
    raw_write(&d, &queue_file("T", 0, 100), 20, &encode_unit(10, 100, 0));
    let store = open(&d, 5);
    assert_eq!(store.max_offset("T", 0), 6);
    assert!(!d.exists(&queue_file("T", 0, 200)));
    assert_eq!(store.max_commitlog_offset_referenced(), 600);
}

#[test]
fn recovery_scans_only_last_three_files() {
    let d = disk();
    let store = open(&d, 2);
    put_n(&store, "T", 0, 10, 0); // 5 files of 2 units
    store.flush(0).expect("flush");
    drop(store);
    // Damage in the first file is not scanned (RocketMQ assumes older files are whole) ...
    raw_write(&d, &queue_file("T", 0, 0), 20, &encode_unit(0, 0, 0));
    // ... damage in the third-to-last file is.
    raw_write(&d, &queue_file("T", 0, 80), 20, &encode_unit(0, 0, 0));
    let store = open(&d, 2);
    assert_eq!(store.max_offset("T", 0), 5);
    // The damaged unit in file 1 now fails the read-back check.
    assert!(matches!(
        store.read_units("T", 0, 0, 5),
        Err(ConsumeQueueError::Corrupt { offset: 20, .. })
    ));
}

#[test]
fn load_rejects_wrong_sizes_and_gaps() {
    let d = disk();
    let store = open(&d, 5);
    put_n(&store, "T", 0, 12, 0);
    drop(store);
    // A middle file of the wrong size.
    let f = d.open(&queue_file("T", 0, 100)).expect("open");
    f.set_len(40).expect("set_len");
    let err = ConsumeQueueStore::open(d.clone(), &cq_dir(), 100)
        .err()
        .expect("must fail");
    assert!(err.to_string().contains("00000000000000000100"), "{err}");
    f.set_len(100).expect("set_len");
    // A gap between files.
    d.remove_file(&queue_file("T", 0, 100)).expect("rm");
    let err = ConsumeQueueStore::open(d.clone(), &cq_dir(), 100)
        .err()
        .expect("must fail");
    assert!(err.to_string().contains("gap"), "{err}");
}

#[test]
fn short_last_file_is_extended() {
    let d = disk();
    let store = open(&d, 5);
    put_n(&store, "T", 0, 7, 0);
    store.flush(0).expect("flush");
    drop(store);
    let f = d.open(&queue_file("T", 0, 100)).expect("open");
    f.set_len(30).expect("set_len"); // keeps unit 5, tears unit 6
    f.sync_all().expect("sync");
    let store = open(&d, 5);
    assert_eq!(store.max_offset("T", 0), 6);
    assert_eq!(d.open(&queue_file("T", 0, 100)).expect("open").len(), 100);
}

#[test]
fn truncate_dirty_drops_units_beyond_the_log() {
    let d = disk();
    let store = open(&d, 5);
    put_n(&store, "T", 0, 12, 0); // entries [0,100), [100,200) ... [1100,1200)
    put_n(&store, "U", 2, 3, 5000);
    store.truncate_dirty(650).expect("truncate");
    // Units ending at or before 650: 0..6 (entry 5 ends at 600).
    assert_eq!(store.max_offset("T", 0), 6);
    assert_eq!(store.max_offset("U", 2), 0);
    assert!(!d.exists(&queue_file("T", 0, 200)));
    assert_eq!(store.max_commitlog_offset_referenced(), 600);
    // Re-dispatch rebuilds the tail, and stale bytes do not resurface after reopen.
    assert_eq!(store.put_unit("T", 0, 6, 600, 100, 0).expect("put"), 7);
    store.flush(0).expect("flush");
    drop(store);
    let store = open(&d, 5);
    assert_eq!(store.max_offset("T", 0), 7);
    // Queue U had a file but no unit now: it restarts from 0 but is not "new" (no padding).
    assert_eq!(store.max_offset("U", 2), 0);
    assert_eq!(store.put_unit("U", 2, 0, 5000, 100, 0).expect("put"), 1);
    // Truncation exactly at an entry end keeps that entry.
    store.truncate_dirty(700).expect("truncate");
    assert_eq!(store.max_offset("T", 0), 7);
}

#[test]
fn delete_expired_files_and_correct_min_offset() {
    let d = disk();
    let store = open(&d, 5);
    put_n(&store, "T", 0, 12, 0); // files: units 0-4, 5-9, 10-11
                                  // CommitLog now starts at 730: files whose last unit's entry starts below are removed.
    assert_eq!(store.delete_expired_files(730).expect("delete"), 1);
    assert!(!d.exists(&queue_file("T", 0, 0)));
    assert!(d.exists(&queue_file("T", 0, 100)));
    // Unit 7 (entry at 700) starts below 730, unit 8 (800) does not.
    assert_eq!(store.min_offset("T", 0), 8);
    assert!(store.read_units("T", 0, 7, 1).expect("read").is_empty());
    assert_eq!(
        store.read_units("T", 0, 8, 1).expect("read")[0].commitlog_offset,
        800
    );
    // The last file is never deleted.
    assert_eq!(store.delete_expired_files(100_000).expect("delete"), 1);
    assert!(d.exists(&queue_file("T", 0, 200)));
    assert_eq!(store.min_offset("T", 0), 12);
    assert_eq!(store.max_offset("T", 0), 12);
    drop(store);
    let store = open(&d, 5);
    assert_eq!(store.min_offset("T", 0), 10);
    store.correct_min_offset(1150).expect("correct");
    assert_eq!(store.min_offset("T", 0), 12);
}

#[test]
fn delete_topic_removes_queues_and_files() {
    let d = disk();
    let store = open(&d, 5);
    put_n(&store, "T", 0, 3, 0);
    put_n(&store, "T", 1, 3, 300);
    put_n(&store, "K", 0, 3, 600);
    store.delete_topic("T").expect("delete");
    assert_eq!(store.max_offset("T", 0), 0);
    assert!(!d.exists(&cq_dir().join("T")));
    assert_eq!(store.queue_offset_table().len(), 1);
    drop(store);
    let store = open(&d, 5);
    assert_eq!(store.queue_offset_table().len(), 1);
    assert_eq!(store.max_offset("K", 0), 3);
}

#[test]
fn offset_by_time_lower_and_upper() {
    let d = disk();
    let store = open(&d, 4);
    // Store times by unit: 10 10 20 20 20 30 40
    let times = [10i64, 10, 20, 20, 20, 30, 40];
    put_n(&store, "T", 0, times.len() as i64, 0);
    let time_of =
        |commitlog_offset: i64, _size: i32| times.get((commitlog_offset / 100) as usize).copied();
    let lookup = |ts, b| {
        store
            .offset_by_time("T", 0, ts, b, &time_of)
            .expect("lookup")
    };
    assert_eq!(lookup(20, BoundaryType::Lower), 2);
    assert_eq!(lookup(20, BoundaryType::Upper), 4);
    assert_eq!(lookup(25, BoundaryType::Lower), 5);
    assert_eq!(lookup(25, BoundaryType::Upper), 4);
    assert_eq!(lookup(5, BoundaryType::Lower), 0);
    assert_eq!(lookup(5, BoundaryType::Upper), 0);
    assert_eq!(lookup(50, BoundaryType::Lower), 7);
    assert_eq!(lookup(50, BoundaryType::Upper), 6);
    assert_eq!(
        store
            .offset_by_time("None", 0, 1, BoundaryType::Lower, &time_of)
            .expect("x"),
        0
    );
}

#[test]
fn flush_honours_least_pages() {
    let d = disk();
    // 2,100 units per file (42,000 bytes, > 10 pages).
    let store = open(&d, 2100);
    put_n(&store, "T", 0, 100, 0); // 2,000 bytes: 0 full pages dirty
    assert!(!store.flush(2).expect("flush"));
    put_n(&store, "T", 0, 400, 10_000); // 10,000 bytes: pages 0..2
    assert!(store.flush(2).expect("flush"));
    assert!(
        !store.flush(0).expect("flush"),
        "nothing dirty after a flush"
    );
    put_n(&store, "T", 0, 1, 60_000);
    assert!(!store.flush(2).expect("flush"));
    assert!(store.flush(0).expect("flush"));

    let mut policy = FlushPolicy::new(2, 60_000, 1_000);
    assert_eq!(policy.least_pages_at(2_000), 2);
    assert_eq!(policy.least_pages_at(61_000), 0);
    assert_eq!(policy.least_pages_at(61_500), 2);
}

#[derive(Debug, Clone)]
enum Op {
    Put { queue: usize, count: u8 },
    Truncate { commitlog_back: u16 },
    Reopen,
    Read { queue: usize, from: u8, count: u8 },
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..2usize, 1..20u8).prop_map(|(queue, count)| Op::Put { queue, count }),
        1 => (0..2000u16).prop_map(|commitlog_back| Op::Truncate { commitlog_back }),
        1 => Just(Op::Reopen),
        2 => (0..2usize, any::<u8>(), 1..40u8).prop_map(|(queue, from, count)| Op::Read { queue, from, count }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// put/read/truncate/reopen against a Vec model of each queue.
    #[test]
    fn model_put_read_truncate(ops in proptest::collection::vec(op_strategy(), 1..40)) {
        let d = disk();
        let mut store = open(&d, 7);
        let mut model: [Vec<(i64, i32, i64)>; 2] = [Vec::new(), Vec::new()];
        let mut commitlog_end: i64 = 0;
        for op in ops {
            match op {
                Op::Put { queue, count } => {
                    for _ in 0..count {
                        let size = 10 + (commitlog_end % 37) as i32;
                        let q = model[queue].len() as i64;
                        let max = store.put_unit("T", queue as i32, q, commitlog_end, size, commitlog_end ^ 5).expect("put");
                        prop_assert_eq!(max, q + 1);
                        model[queue].push((commitlog_end, size, commitlog_end ^ 5));
                        commitlog_end += size as i64;
                    }
                }
                Op::Truncate { commitlog_back } => {
                    commitlog_end = (commitlog_end - commitlog_back as i64).max(0);
                    store.truncate_dirty(commitlog_end).expect("truncate");
                    for m in model.iter_mut() {
                        m.retain(|(o, s, _)| o + *s as i64 <= commitlog_end);
                    }
                }
                Op::Reopen => {
                    store.flush(0).expect("flush");
                    drop(store);
                    store = open(&d, 7);
                }
                Op::Read { queue, from, count } => {
                    let got = store.read_units("T", queue as i32, from as i64, count as usize).expect("read");
                    let want: Vec<CqUnit> = model[queue]
                        .iter()
                        .enumerate()
                        .skip(from as usize)
                        .take(count as usize)
                        .map(|(i, (o, s, t))| CqUnit { queue_offset: i as i64, commitlog_offset: *o, size: *s, tags_code: *t })
                        .collect();
                    prop_assert_eq!(got, want);
                }
            }
            for (queue, m) in model.iter().enumerate() {
                prop_assert_eq!(store.max_offset("T", queue as i32), m.len() as i64);
            }
            let max_ref = model.iter().filter_map(|m| m.last()).map(|(o, s, _)| o + *s as i64).max().unwrap_or(0);
            prop_assert_eq!(store.max_commitlog_offset_referenced(), max_ref);
        }
    }
}

#[test]
fn power_loss_keeps_exactly_the_flushed_units() {
    let d = disk();
    let store = open(&d, 5);
    put_n(&store, "T", 0, 7, 0);
    store.flush(0).expect("flush");
    put_n(&store, "T", 0, 3, 700); // units 7..9 fill file 2, not flushed
    put_n(&store, "T", 0, 2, 1000); // rolling to file 3 syncs the full file 2 first
    put_n(&store, "T", 0, 3, 1200); // units 12..14, not flushed
    drop(store);
    d.crash(CrashMode::PowerLoss, &mut SeededRng::new(1));
    let store = open(&d, 5);
    assert_eq!(store.max_offset("T", 0), 10);
    assert_eq!(store.max_commitlog_offset_referenced(), 1000);
    let units = store.read_units("T", 0, 0, 100).expect("read");
    assert_eq!(units.len(), 10);
    assert_eq!(units[9].commitlog_offset, 900);
    // Appending resumes where the durable queue ends.
    assert_eq!(store.put_unit("T", 0, 10, 1000, 100, 0).expect("put"), 11);
}

#[test]
fn torn_power_loss_recovers_a_valid_prefix() {
    for seed in 0..200u64 {
        let d = disk();
        let store = open(&d, 8);
        let mut model = Vec::new();
        let mut rng = SeededRng::new(seed);
        let mut commitlog_offset = 0i64;
        let mut flushed = 0usize;
        for round in 0..4 {
            for _ in 0..(3 + (seed as usize + round) % 9) {
                let q = model.len() as i64;
                let size = 30 + (q % 5) as i32;
                store
                    .put_unit("T", 0, q, commitlog_offset, size, q)
                    .expect("put");
                model.push((commitlog_offset, size));
                commitlog_offset += size as i64;
            }
            if (seed >> round) & 1 == 1 {
                store.flush(0).expect("flush");
                flushed = model.len();
            }
        }
        drop(store);
        d.crash(CrashMode::TornPowerLoss, &mut rng);
        let store = open(&d, 8);
        let max = store.max_offset("T", 0) as usize;
        assert!(
            max >= flushed,
            "seed {seed}: lost flushed units ({max} < {flushed})"
        );
        assert!(max <= model.len(), "seed {seed}");
        let units = store.read_units("T", 0, 0, 1000).expect("read");
        assert_eq!(units.len(), max, "seed {seed}");
        for (u, (o, s)) in units.iter().zip(&model) {
            assert_eq!((u.commitlog_offset, u.size), (*o, *s), "seed {seed}");
        }
    }
}
