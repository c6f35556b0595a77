//! Tests of the IndexFile layout, hashing, queries with collisions, truncation and crashes.

use std::collections::BTreeMap;

use super::*;
use crate::store::disk::sim::{CrashMode, SeededRng, SimDisk};

fn disk() -> Arc<SimDisk> {
    Arc::new(SimDisk::new())
}

fn index_dir() -> PathBuf {
    PathBuf::from("/store/index")
}

fn open(d: &Arc<SimDisk>, slots: u32, entries: u32) -> IndexService {
    IndexService::open(d.clone(), &index_dir(), slots, entries).expect("open index")
}

fn all(svc: &IndexService, topic: &str, key: &str) -> Vec<i64> {
    svc.query(topic, key, 1000, 0, i64::MAX)
        .expect("query")
        .phy_offsets
}

#[test]
fn java_hash_and_index_key_hash() {
    assert_eq!(java_string_hash("Aa"), java_string_hash("BB"));
    assert_eq!(index_key_hash("T#Aa"), 2_538_191);
    assert_eq!(index_key_hash("T#BB"), 2_538_191);
    // The classic String whose hashCode is Integer.MIN_VALUE: abs() overflows, RocketMQ uses 0.
    assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
    assert_eq!(index_key_hash("polygenelubricants"), 0);
    // Negative hashes are made positive.
    let neg = "zzzzzzzz";
    assert!(java_string_hash(neg) < 0);
    assert_eq!(index_key_hash(neg), java_string_hash(neg).abs());
    assert_eq!(build_key("TopicA", "k"), "TopicA#k");
    for (topic, key) in [
        ("T", "Aa"),
        ("TopicA", "k"),
        ("T\u{e9}", "\u{1F600}"),
        ("", ""),
    ] {
        assert_eq!(
            index_key_hash_of(topic, key),
            index_key_hash(&build_key(topic, key))
        );
    }
}

#[test]
fn file_names_are_utc_creation_times() {
    assert_eq!(index_file_name(0), "19700101000000000");
    assert_eq!(index_file_name(1_700_000_000_123), "20231114221320123");
    assert_eq!(index_file_name(951_782_400_000), "20000229000000000"); // leap day
    for ms in [0i64, 1_700_000_000_123, 951_782_400_000, 4_102_444_799_999] {
        assert_eq!(parse_index_file_name(&index_file_name(ms)), Some(ms));
    }
    assert_eq!(parse_index_file_name("2023111422132012"), None);
    assert_eq!(parse_index_file_name("20231314221320123"), None);
}

#[test]
fn header_and_entry_bytes_match_the_layout_table() {
    // Hand-built from the layout: header fields at 0, 8, 16, 24, 32, 36.
    let header = IndexHeader {
        begin_timestamp: 0x0102_0304_0506_0708,
        end_timestamp: 0x1112_1314_1516_1718,
        begin_phy_offset: 0x2122_2324_2526_2728,
        end_phy_offset: 0x3132_3334_3536_3738,
        hash_slot_count: 0x4142_4344,
        index_count: 0x5152_5354,
    };
    let mut expected = Vec::new();
    for v in [0x01u8, 0x11, 0x21, 0x31] {
        expected.extend((0..8).map(|i| v + i));
    }
    expected.extend([0x41, 0x42, 0x43, 0x44, 0x51, 0x52, 0x53, 0x54]);
    assert_eq!(header.encode().to_vec(), expected);
    assert_eq!(IndexHeader::decode(&header.encode()), header);
    // indexCount 0 (never written) reads as 1.
    assert_eq!(IndexHeader::decode(&[0u8; 40]).index_count, 1);

    let entry = IndexEntry {
        key_hash: 0x0A0B_0C0D,
        phy_offset: -2,
        time_diff_secs: 7,
        prev_index: 3,
    };
    let expected: [u8; 20] = [
        0x0A, 0x0B, 0x0C, 0x0D, // keyHash
        0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFE, // phyOffset
        0, 0, 0, 7, // timeDiff
        0, 0, 0, 3, // prevIndex
    ];
    assert_eq!(entry.encode(), expected);
    assert_eq!(IndexEntry::decode(&expected), entry);
    assert_eq!(
        index_file_size(DEFAULT_MAX_HASH_SLOT_NUM, DEFAULT_MAX_INDEX_NUM),
        420_000_040
    );
}

#[test]
fn file_bytes_after_puts() {
    let d = disk();
    let svc = open(&d, 7, 10);
    svc.build_index("T", &["Aa"], 1000, 5_000).expect("put");
    svc.build_index("T", &["BB"], 1200, 7_900).expect("put");
    let path = svc.file_paths()[0].clone();
    let raw = d.read_live(&path).expect("file");
    assert_eq!(raw.len() as u64, 40 + 7 * 4 + 10 * 20);
    let hash = index_key_hash("T#Aa");
    let bucket = (hash % 7) as usize;

    // Header: begin/end timestamps, begin/end phy offsets, 1 slot used, indexCount 3.
    let mut header = Vec::new();
    header.extend(5_000i64.to_be_bytes());
    header.extend(7_900i64.to_be_bytes());
    header.extend(1000i64.to_be_bytes());
    header.extend(1200i64.to_be_bytes());
    header.extend(1i32.to_be_bytes());
    header.extend(3i32.to_be_bytes());
    assert_eq!(&raw[0..40], &header[..]);
    // The shared slot points at entry 2; the others are empty.
    for slot in 0..7usize {
        let v = i32::from_be_bytes(raw[40 + slot * 4..44 + slot * 4].try_into().expect("4"));
        assert_eq!(v, if slot == bucket { 2 } else { 0 }, "slot {slot}");
    }
    // Entry 0 unused; entry 1 = (hash, 1000, 0 s, prev 0); entry 2 = (hash, 1200, 2 s, prev 1).
    let entries = 40 + 7 * 4;
    assert_eq!(&raw[entries..entries + 20], &[0u8; 20]);
    let mut e1 = Vec::new();
    e1.extend(hash.to_be_bytes());
    e1.extend(1000i64.to_be_bytes());
    e1.extend(0i32.to_be_bytes());
    e1.extend(0i32.to_be_bytes());
    assert_eq!(&raw[entries + 20..entries + 40], &e1[..]);
    let mut e2 = Vec::new();
    e2.extend(hash.to_be_bytes());
    e2.extend(1200i64.to_be_bytes());
    e2.extend(2i32.to_be_bytes()); // (7900 - 5000) / 1000, truncated
    e2.extend(1i32.to_be_bytes());
    assert_eq!(&raw[entries + 40..entries + 60], &e2[..]);
}

#[test]
fn query_returns_hash_collisions_and_respects_time_range() {
    let d = disk();
    let svc = open(&d, 3, 100); // 3 slots: plenty of bucket sharing too
    svc.build_index("T", &["Aa", "k1"], 0, 10_000).expect("put");
    svc.build_index("T", &["BB"], 100, 12_000).expect("put");
    svc.build_index("T", &["k2", "Aa"], 200, 15_000)
        .expect("put");
    svc.build_index("U", &["Aa"], 300, 16_000).expect("put");
    svc.build_index("T", &["", "k3"], 400, 20_000).expect("put");

    // "Aa" and "BB" hash alike: both are candidates, newest first; the caller re-checks keys.
    assert_eq!(all(&svc, "T", "Aa"), vec![200, 100, 0]);
    assert_eq!(all(&svc, "T", "BB"), vec![200, 100, 0]);
    assert_eq!(all(&svc, "U", "Aa"), vec![300]);
    assert_eq!(all(&svc, "T", "k1"), vec![0]);
    assert_eq!(all(&svc, "T", "k3"), vec![400]);
    assert!(all(&svc, "T", "nope").is_empty());
    // max_num caps the answer.
    assert_eq!(
        svc.query("T", "Aa", 2, 0, i64::MAX).expect("q").phy_offsets,
        vec![200, 100]
    );
    // Time range (entry times are begin + whole seconds).
    let r = svc.query("T", "Aa", 10, 11_000, 13_000).expect("q");
    assert_eq!(r.phy_offsets, vec![100]);
    assert_eq!(r.index_last_update_phyoffset, 400);
    assert_eq!(r.index_last_update_timestamp, 20_000);
    // Re-dispatch of already indexed messages is ignored.
    svc.build_index("T", &["Aa"], 200, 15_000).expect("dup");
    svc.build_index("T", &["Aa"], 0, 10_000).expect("dup");
    assert_eq!(all(&svc, "T", "Aa"), vec![200, 100, 0]);
}

#[test]
fn rolls_to_new_files_and_queries_newest_first() {
    let d = disk();
    let svc = open(&d, 5, 4); // 3 entries per file
    for i in 0..10i64 {
        svc.build_index("T", &["same"], i * 10, 1_000 + i)
            .expect("put");
    }
    assert_eq!(svc.file_count(), 4);
    let names: Vec<_> = svc.file_paths();
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(names, sorted, "names strictly increasing");
    let want: Vec<i64> = (0..10).rev().map(|i| i * 10).collect();
    assert_eq!(all(&svc, "T", "same"), want);
    // The second file's header carries begin = its first entry.
    let h = IndexHeader::decode(
        &d.read_live(&names[1]).expect("f")[0..40]
            .try_into()
            .expect("40"),
    );
    assert_eq!(
        (h.begin_phy_offset, h.end_phy_offset, h.index_count),
        (30, 50, 4)
    );

    svc.flush().expect("flush");
    drop(svc);
    let svc = open(&d, 5, 4);
    assert_eq!(all(&svc, "T", "same"), want);
    assert_eq!(svc.last_indexed_commitlog_offset(), Some(90));
    // Files whose end offset is below the CommitLog min are deleted (never the newest).
    assert_eq!(svc.delete_expired(35).expect("delete"), 1);
    assert_eq!(
        all(&svc, "T", "same"),
        (3..10).rev().map(|i| i * 10).collect::<Vec<_>>()
    );
    assert_eq!(svc.delete_expired(1_000).expect("delete"), 2);
    assert_eq!(svc.file_count(), 1);
}

#[test]
fn truncate_after_cuts_exactly_and_redispatch_rebuilds() {
    let d = disk();
    let svc = open(&d, 3, 6); // 5 entries per file, 3 slots
    let keys = ["Aa", "BB", "x", "y", "Aa"];
    let mut truth: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    let put = |svc: &IndexService, i: i64, truth: &mut BTreeMap<&'static str, Vec<i64>>| {
        let key = keys[i as usize % keys.len()];
        svc.build_index("T", &[key, "all"], i * 100, 1_000 * i)
            .expect("put");
        truth.entry(key).or_default().insert(0, i * 100);
        truth.entry("all").or_default().insert(0, i * 100);
    };
    for i in 0..12 {
        put(&svc, i, &mut truth);
    }
    let files_before = svc.file_count();
    // Cut at 650: entries of messages 7.. (offsets 700..) go away.
    svc.truncate_after(650).expect("truncate");
    assert!(svc.file_count() < files_before);
    assert_eq!(svc.last_indexed_commitlog_offset(), Some(600));
    let kept = |v: &Vec<i64>| v.iter().copied().filter(|o| *o < 650).collect::<Vec<_>>();
    for (key, offsets) in &truth {
        let mut want = kept(offsets);
        if *key == "Aa" || *key == "BB" {
            want = kept(&[truth["Aa"].clone(), truth["BB"].clone()].concat());
            want.sort_by(|a, b| b.cmp(a));
        }
        assert_eq!(all(&svc, "T", key), want, "key {key}");
    }
    // Reopen after truncation: same answers (the cut is durable).
    drop(svc);
    let svc = open(&d, 3, 6);
    assert_eq!(all(&svc, "T", "all"), kept(&truth["all"]));
    // Re-dispatch from 0: already indexed messages are skipped, the tail is rebuilt.
    for i in 0..12 {
        let key = keys[i as usize % keys.len()];
        svc.build_index("T", &[key, "all"], i * 100, 1_000 * i)
            .expect("put");
    }
    assert_eq!(all(&svc, "T", "all"), truth["all"]);
    assert_eq!(all(&svc, "T", "x"), truth["x"]);
    // Cutting everything leaves no file.
    svc.truncate_after(0).expect("truncate");
    assert_eq!(svc.file_count(), 0);
    assert!(all(&svc, "T", "all").is_empty());
    assert_eq!(svc.last_indexed_commitlog_offset(), None);
}

#[test]
fn corrupt_chain_is_an_error_naming_the_file() {
    let d = disk();
    let svc = open(&d, 3, 10);
    svc.build_index("T", &["Aa"], 0, 1_000).expect("put");
    svc.build_index("T", &["BB"], 100, 2_000).expect("put");
    let path = svc.file_paths()[0].clone();
    // Entry 2's prevIndex is fine but its key hash now belongs to another bucket.
    let entry2 = 40 + 3 * 4 + 2 * 20;
    let f = d.open(&path).expect("open");
    f.write_at(entry2, &(index_key_hash("T#Aa") + 1).to_be_bytes())
        .expect("write");
    let err = svc.query("T", "Aa", 10, 0, i64::MAX).expect_err("corrupt");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}

#[test]
fn wrong_file_size_is_refused() {
    let d = disk();
    let svc = open(&d, 3, 10);
    svc.build_index("T", &["a"], 0, 1_000).expect("put");
    drop(svc);
    assert!(IndexService::open(d.clone(), &index_dir(), 4, 10).is_err());
    assert!(IndexService::open(d.clone(), &index_dir(), 3, 10).is_ok());
}

/// After any crash the index answers from a consistent prefix: everything flushed is still
/// found, nothing is invented, and indexing continues without cutting chains.
#[test]
fn crashes_keep_flushed_entries_and_consistent_chains() {
    for seed in 0..120u64 {
        let mode = CrashMode::ALL[(seed % 3) as usize];
        let d = disk();
        let svc = open(&d, 4, 8);
        let keys = ["Aa", "BB", "c", "d", "e"];
        let mut truth: Vec<(usize, i64)> = Vec::new();
        let mut flushed = 0;
        let n = 5 + seed % 17;
        for i in 0..n as i64 {
            let k = (i as usize * 7 + seed as usize) % keys.len();
            svc.build_index("T", &[keys[k]], i * 10, 1_000 * i)
                .expect("put");
            truth.push((k, i * 10));
            if (seed + i as u64).is_multiple_of(5) {
                svc.flush().expect("flush");
                flushed = truth.len();
            }
        }
        drop(svc);
        d.crash(mode, &mut SeededRng::new(seed));
        let svc = open(&d, 4, 8);
        let survived = svc
            .last_indexed_commitlog_offset()
            .map_or(0, |o| o / 10 + 1) as usize;
        assert!(
            survived >= flushed,
            "seed {seed} {mode:?}: {survived} < {flushed}"
        );
        // Re-dispatch everything; then every key must be found with its full history.
        for (i, (k, offset)) in truth.iter().enumerate() {
            svc.build_index("T", &[keys[*k]], *offset, 1_000 * i as i64)
                .expect("re-put");
        }
        for (k, key) in keys.iter().enumerate() {
            let got = all(&svc, "T", key);
            let mut want: Vec<i64> = truth
                .iter()
                .filter(|(tk, _)| *tk == k || (keys[*tk].len() == 2 && key.len() == 2))
                .map(|(_, o)| *o)
                .collect();
            want.reverse();
            assert_eq!(got, want, "seed {seed} {mode:?} key {key}");
        }
    }
}

mod model {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Build { keys: Vec<usize>, gap: u8 },
        Truncate { back: u16 },
        Reopen,
        Query { key: usize },
    }

    const KEYS: [&str; 6] = ["Aa", "BB", "k", "m", "polygenelubricants", "z"];

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            5 => (proptest::collection::vec(0..KEYS.len(), 0..3), 1..50u8)
                .prop_map(|(keys, gap)| Op::Build { keys, gap }),
            1 => (0..400u16).prop_map(|back| Op::Truncate { back }),
            1 => Just(Op::Reopen),
            3 => (0..KEYS.len()).prop_map(|key| Op::Query { key }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// build/truncate/reopen/query against a list of (key, offset) in CommitLog order.
        #[test]
        fn index_matches_model(ops in proptest::collection::vec(op(), 1..60)) {
            let d = disk();
            let mut svc = open(&d, 3, 5);
            let mut model: Vec<(usize, i64)> = Vec::new();
            let mut next_offset = 0i64;
            for op in ops {
                match op {
                    Op::Build { keys, gap } => {
                        let names: Vec<&str> = keys.iter().map(|k| KEYS[*k]).collect();
                        svc.build_index("T", &names, next_offset, 1_000 + next_offset).expect("build");
                        for k in keys {
                            model.push((k, next_offset));
                        }
                        next_offset += gap as i64;
                    }
                    Op::Truncate { back } => {
                        next_offset = (next_offset - back as i64).max(0);
                        svc.truncate_after(next_offset).expect("truncate");
                        model.retain(|(_, o)| *o < next_offset);
                    }
                    Op::Reopen => {
                        svc.flush().expect("flush");
                        drop(svc);
                        svc = open(&d, 3, 5);
                    }
                    Op::Query { key } => {
                        let hash = index_key_hash(&build_key("T", KEYS[key]));
                        let mut want: Vec<i64> = model
                            .iter()
                            .filter(|(k, _)| index_key_hash(&build_key("T", KEYS[*k])) == hash)
                            .map(|(_, o)| *o)
                            .collect();
                        want.reverse();
                        prop_assert_eq!(all(&svc, "T", KEYS[key]), want);
                    }
                }
                prop_assert_eq!(
                    svc.last_indexed_commitlog_offset(),
                    model.last().map(|(_, o)| *o)
                );
            }
        }
    }
}

#[cfg(not(madsim))]
#[test]
fn warm_jobs_map_in_the_slot_table_then_entries_ahead_of_the_writer() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let disk = Arc::new(crate::store::disk::mmap::MmapDisk::new());
    // 1000 slots (4 KB), 200,000 entries (4 MB): several warm-up windows.
    let svc = IndexService::open(disk, tmp.path(), 1000, 200_000).expect("open");
    assert!(svc.warm_job().is_none(), "nothing written, nothing due");
    svc.build_index("T", &["k0"], 0, 1_000).expect("put");
    assert!(
        svc.warm_job().is_none(),
        "a few puts map nothing in (idle RSS)"
    );
    let first_warm = INDEX_WARM_MIN_ENTRIES as i64;
    for i in 1..first_warm - 1 {
        svc.build_index("T", &["w"], i * 100, 1_000 + i)
            .expect("put");
    }
    assert!(svc.warm_job().is_none(), "below the threshold");
    svc.build_index("T", &["w"], (first_warm - 1) * 100, 1_000 + first_warm - 1)
        .expect("put");
    let job = svc
        .warm_job()
        .expect("the threshold-th put wants the slot table");
    assert!(svc.warm_job().is_none(), "one job at a time");
    job();
    let file = svc.files().last().cloned().expect("file");
    let slots_end = INDEX_HEADER_SIZE + 1000 * HASH_SLOT_SIZE;
    let warmed = file.warmed_to.load(Ordering::Acquire);
    assert!(
        warmed >= slots_end + first_warm as u64 * INDEX_ENTRY_SIZE + INDEX_WARM_AHEAD_BYTES,
        "{warmed}"
    );
    svc.build_index("T", &["k1"], first_warm * 100, 1_000 + first_warm)
        .expect("put");
    assert!(svc.warm_job().is_none(), "far from the warmed end");
    // Write until the newest entry is within half a window of the warmed end.
    let per_half = INDEX_WARM_AHEAD_BYTES / 2 / INDEX_ENTRY_SIZE;
    for i in first_warm + 1..first_warm + (per_half + 10) as i64 {
        svc.build_index("T", &["k"], i * 100, 1_000 + i)
            .expect("put");
    }
    let job = svc.warm_job().expect("writer came near the warmed end");
    job();
    assert!(file.warmed_to.load(Ordering::Acquire) > warmed);
    // Warming changes no byte: every key is still found.
    assert_eq!(all(&svc, "T", "k0"), vec![0]);
    assert_eq!(all(&svc, "T", "k1"), vec![first_warm * 100]);
}
