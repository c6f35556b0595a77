//! Disk conformance suite run against both implementations (one list of cases, each run on
//! `MmapDisk` in a tempdir and on `SimDisk`), plus sim-only crash-mode and fault tests.
//! OWNER: store helper.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::sim::{CrashMode, Fault, FaultOp, SeededRng, SimDisk, SECTOR_SIZE};
use super::{read_file, write_file_atomic, Disk};

type Case = fn(&dyn Disk, &Path);

const CASES: &[(&str, Case)] = &[
    ("create_write_read", case_create_write_read),
    ("read_past_end_fails", case_read_past_end_fails),
    ("write_grows_file", case_write_grows_file),
    ("set_len_truncates_and_zero_extends", case_set_len),
    ("reopen_sees_data", case_reopen_sees_data),
    ("list_is_sorted_names", case_list),
    ("rename_remove_exists", case_rename_remove),
    ("remove_dir_all", case_remove_dir_all),
    ("atomic_write_replaces", case_atomic_write),
    ("lock_is_exclusive", case_lock),
    ("space_and_mtime", case_space_and_mtime),
    ("create_truncates_existing", case_create_truncates),
    ("sync_calls_succeed", case_syncs),
    ("write_many_and_in_place", case_write_many_and_in_place),
];

fn run_all(disk: &dyn Disk, root: &Path) {
    for (name, case) in CASES {
        let dir = root.join(name);
        disk.create_dir_all(&dir).expect("create case dir");
        case(disk, &dir);
    }
}

#[cfg(not(madsim))]
#[test]
fn conformance_mmap() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let disk = super::mmap::MmapDisk::new();
    run_all(&disk, tmp.path());
}

/// The same cases with every file writing through pwrite (the CommitLog under SYNC_FLUSH).
#[cfg(not(madsim))]
#[test]
fn conformance_mmap_syscall_writes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let disk = super::mmap::MmapDisk::with_write_mode(super::WriteMode::Syscall);
    run_all(&disk, tmp.path());
}

#[test]
fn conformance_sim() {
    let disk = SimDisk::new();
    run_all(&disk, Path::new("/sim/root"));
}

fn case_create_write_read(disk: &dyn Disk, dir: &Path) {
    let path = dir.join("00000000000000000000");
    let file = disk.create(&path, 4096).expect("create");
    assert_eq!(file.len(), 4096);
    file.write_at(100, b"hello").expect("write");
    let mut buf = [0u8; 7];
    file.read_at(99, &mut buf).expect("read");
    assert_eq!(&buf, b"\0hello\0");
    assert!(disk.exists(&path));
    assert!(!disk.exists(&dir.join("nope")));
    assert!(disk.open(&dir.join("nope")).is_err());
}

fn case_read_past_end_fails(disk: &dyn Disk, dir: &Path) {
    let file = disk.create(&dir.join("f"), 10).expect("create");
    let mut buf = [0u8; 4];
    assert!(file.read_at(8, &mut buf).is_err());
    file.read_at(6, &mut buf).expect("read to the end exactly");
    let mut empty = [0u8; 0];
    file.read_at(10, &mut empty).expect("empty read at end");
}

fn case_write_grows_file(disk: &dyn Disk, dir: &Path) {
    let file = disk.create(&dir.join("grow"), 0).expect("create");
    assert!(file.is_empty());
    file.write_at(0, b"abc").expect("write");
    file.write_at(5000, b"xyz").expect("write far");
    assert_eq!(file.len(), 5003);
    let mut buf = [0u8; 3];
    file.read_at(5000, &mut buf).expect("read");
    assert_eq!(&buf, b"xyz");
    file.read_at(3, &mut buf).expect("read gap");
    assert_eq!(buf, [0, 0, 0]);
}

fn case_set_len(disk: &dyn Disk, dir: &Path) {
    let file = disk.create(&dir.join("f"), 8).expect("create");
    file.write_at(0, b"abcdefgh").expect("write");
    file.set_len(4).expect("truncate");
    assert_eq!(file.len(), 4);
    file.set_len(8).expect("extend");
    let mut buf = [0u8; 8];
    file.read_at(0, &mut buf).expect("read");
    assert_eq!(&buf, b"abcd\0\0\0\0");
}

fn case_reopen_sees_data(disk: &dyn Disk, dir: &Path) {
    let path = dir.join("f");
    {
        let file = disk.create(&path, 16).expect("create");
        file.write_at(3, b"data").expect("write");
        file.sync_all().expect("sync");
    }
    let file = disk.open(&path).expect("open");
    assert_eq!(file.len(), 16);
    let mut buf = [0u8; 4];
    file.read_at(3, &mut buf).expect("read");
    assert_eq!(&buf, b"data");
}

fn case_list(disk: &dyn Disk, dir: &Path) {
    assert_eq!(
        disk.list(&dir.join("absent")).expect("list"),
        Vec::<String>::new()
    );
    for name in ["00000000000000001024", "00000000000000000000", "b"] {
        disk.create(&dir.join(name), 0).expect("create");
    }
    disk.create_dir_all(&dir.join("sub/deeper")).expect("mkdir");
    let names = disk.list(dir).expect("list");
    assert_eq!(
        names,
        vec!["00000000000000000000", "00000000000000001024", "b", "sub"]
    );
    assert_eq!(disk.list(&dir.join("sub")).expect("list"), vec!["deeper"]);
}

fn case_rename_remove(disk: &dyn Disk, dir: &Path) {
    let from = dir.join("a.tmp");
    let to = dir.join("a");
    let file = disk.create(&from, 3).expect("create");
    file.write_at(0, b"new").expect("write");
    disk.create(&to, 3)
        .expect("create old")
        .write_at(0, b"old")
        .expect("write old");
    disk.rename(&from, &to).expect("rename");
    assert!(!disk.exists(&from));
    assert_eq!(read_file(disk, &to).expect("read"), Some(b"new".to_vec()));
    disk.remove_file(&to).expect("remove");
    assert!(!disk.exists(&to));
    assert!(disk.remove_file(&to).is_err());
    assert_eq!(read_file(disk, &to).expect("read"), None);
}

fn case_remove_dir_all(disk: &dyn Disk, dir: &Path) {
    let sub = dir.join("topic/0");
    disk.create_dir_all(&sub).expect("mkdir");
    disk.create(&sub.join("00000000000000000000"), 20)
        .expect("create");
    disk.remove_dir_all(&dir.join("topic")).expect("rmdir");
    assert!(!disk.exists(&sub.join("00000000000000000000")));
    assert!(disk.list(dir).expect("list").is_empty());
    disk.remove_dir_all(&dir.join("topic"))
        .expect("removing an absent dir is fine");
}

fn case_atomic_write(disk: &dyn Disk, dir: &Path) {
    let path = dir.join("config/topics.json");
    write_file_atomic(disk, &path, b"{\"v\":1}").expect("write 1");
    write_file_atomic(disk, &path, b"{\"v\":22}").expect("write 2");
    assert_eq!(
        read_file(disk, &path).expect("read"),
        Some(b"{\"v\":22}".to_vec())
    );
    assert_eq!(
        disk.list(&dir.join("config")).expect("list"),
        vec!["topics.json"]
    );
}

fn case_lock(disk: &dyn Disk, dir: &Path) {
    let path = dir.join("lock");
    let guard = disk.try_lock(&path).expect("lock").expect("first holder");
    assert!(
        disk.try_lock(&path).expect("lock").is_none(),
        "second holder"
    );
    drop(guard);
    let again = disk.try_lock(&path).expect("lock");
    assert!(again.is_some(), "lock released on drop");
}

fn case_space_and_mtime(disk: &dyn Disk, dir: &Path) {
    let space = disk.space(dir).expect("space");
    assert!(space.total_bytes > 0);
    assert!(space.available_bytes <= space.total_bytes);
    let path = dir.join("f");
    disk.create(&path, 1).expect("create");
    let mtime = disk.modified_ms(&path).expect("mtime");
    assert!(mtime > 1_577_836_800_000, "mtime {mtime} after 2020");
}

fn case_create_truncates(disk: &dyn Disk, dir: &Path) {
    let path = dir.join("f");
    disk.create(&path, 8)
        .expect("create")
        .write_at(0, b"12345678")
        .expect("write");
    let file = disk.create(&path, 4).expect("recreate");
    assert_eq!(file.len(), 4);
    let mut buf = [0u8; 4];
    file.read_at(0, &mut buf).expect("read");
    assert_eq!(buf, [0; 4]);
}

fn case_syncs(disk: &dyn Disk, dir: &Path) {
    let file = disk.create(&dir.join("f"), 8192).expect("create");
    file.write_at(4000, &[7u8; 300]).expect("write");
    file.sync_range(4000, 300).expect("sync range");
    file.sync_range(8000, 1000)
        .expect("sync range past end is clipped");
    file.sync_all().expect("sync all");
    disk.sync_dir(dir).expect("sync dir");
}

// ---------------------------------------------------------------------------------------
// Sim-only: crash modes and faults.

fn root() -> PathBuf {
    PathBuf::from("/node1/store")
}

fn setup() -> (SimDisk, PathBuf) {
    let disk = SimDisk::new();
    let dir = root().join("commitlog");
    disk.create_dir_all(&dir).expect("mkdir");
    (disk, dir)
}

#[test]
fn power_loss_drops_unsynced_keeps_synced() {
    let (disk, dir) = setup();
    let path = dir.join("00000000000000000000");
    let file = disk.create(&path, 4096).expect("create");
    disk.sync_dir(&dir).expect("sync dir");
    file.write_at(0, b"durable").expect("write");
    file.sync_range(0, 7).expect("sync");
    file.write_at(7, b"-lost").expect("write");
    disk.crash(CrashMode::PowerLoss, &mut SeededRng::new(1));
    let after = disk.read_live(&path).expect("file survives");
    assert_eq!(after.len(), 4096);
    assert_eq!(&after[..12], b"durable\0\0\0\0\0");
    assert_eq!(disk.pending_ops(), 0);
}

#[test]
fn sync_range_makes_only_the_range_durable() {
    let (disk, dir) = setup();
    let path = dir.join("f");
    let file = disk.create(&path, 0).expect("create");
    disk.sync_dir(&dir).expect("sync dir");
    file.write_at(0, &[1u8; 100]).expect("write");
    file.sync_range(10, 20).expect("sync");
    let durable = disk.read_durable(&path).expect("durable");
    assert_eq!(durable.len(), 30);
    assert!(durable[..10].iter().all(|b| *b == 0));
    assert!(durable[10..30].iter().all(|b| *b == 1));
    assert_eq!(disk.pending_ops(), 2, "two unsynced remainders");
}

#[test]
fn unsynced_directory_entry_is_lost_on_power_loss() {
    let (disk, dir) = setup();
    let path = dir.join("f");
    let file = disk.create(&path, 8).expect("create");
    file.write_at(0, b"12345678").expect("write");
    file.sync_all().expect("fsync data");
    disk.crash(CrashMode::PowerLoss, &mut SeededRng::new(2));
    assert!(!disk.exists(&path), "entry never synced");

    let file = disk.create(&path, 8).expect("create");
    file.sync_all().expect("fsync data");
    disk.sync_dir(&dir).expect("sync dir");
    disk.remove_file(&path).expect("remove");
    disk.crash(CrashMode::PowerLoss, &mut SeededRng::new(3));
    assert!(disk.exists(&path), "unsynced remove is undone");
}

#[test]
fn rename_durable_after_sync_dir() {
    let (disk, dir) = setup();
    let path = dir.join("checkpoint");
    write_file_atomic(&disk, &path, b"v1").expect("write v1");
    disk.crash(CrashMode::PowerLoss, &mut SeededRng::new(4));
    assert_eq!(read_file(&disk, &path).expect("read"), Some(b"v1".to_vec()));
    // A rename that was not followed by sync_dir may roll back to v1.
    let tmp = dir.join("checkpoint.tmp");
    let f = disk.create(&tmp, 0).expect("create");
    f.write_at(0, b"v2").expect("write");
    f.sync_all().expect("sync");
    disk.rename(&tmp, &path).expect("rename");
    disk.crash(CrashMode::PowerLoss, &mut SeededRng::new(5));
    assert_eq!(read_file(&disk, &path).expect("read"), Some(b"v1".to_vec()));
}

#[test]
fn process_crash_keeps_pending_until_power_loss() {
    let (disk, dir) = setup();
    let path = dir.join("f");
    let file = disk.create(&path, 16).expect("create");
    disk.sync_dir(&dir).expect("sync dir");
    file.sync_all().expect("sync");
    file.write_at(0, b"cache").expect("write");
    disk.crash(CrashMode::ProcessCrash, &mut SeededRng::new(6));
    assert_eq!(&disk.read_live(&path).expect("live")[..5], b"cache");
    // The old handle belongs to the dead process.
    assert!(file.write_at(0, b"zombie").is_err());
    let mut buf = [0u8; 5];
    assert!(file.read_at(0, &mut buf).is_err());
    assert!(disk.pending_ops() > 0);
    disk.crash(CrashMode::PowerLoss, &mut SeededRng::new(7));
    assert_eq!(&disk.read_live(&path).expect("live")[..5], &[0u8; 5]);
}

#[test]
fn torn_power_loss_keeps_an_ordered_prefix_cut_at_sectors() {
    let mut saw_torn = false;
    let mut saw_none = false;
    let mut saw_all = false;
    for seed in 0..200 {
        let (disk, dir) = setup();
        let path = dir.join("f");
        let file = disk.create(&path, 4 * 4096).expect("create");
        disk.sync_dir(&dir).expect("sync dir");
        file.sync_all().expect("sync");
        // Three writes in order, each of a distinct byte value.
        file.write_at(100, &[1u8; 1000]).expect("write 1");
        file.write_at(1100, &[2u8; 2000]).expect("write 2");
        file.write_at(3100, &[3u8; 3000]).expect("write 3");
        disk.crash(CrashMode::TornPowerLoss, &mut SeededRng::new(seed));
        let data = disk.read_live(&path).expect("file");
        assert_eq!(data.len(), 4 * 4096);
        // Survivors form a prefix of the byte stream 100..6100 with one cut; the cut (if
        // inside a write) is on a sector boundary.
        let written = &data[100..6100];
        let survived = written.iter().take_while(|b| **b != 0).count();
        assert!(
            written[survived..].iter().all(|b| *b == 0),
            "seed {seed}: holes"
        );
        let end = 100 + survived as u64;
        let on_write_boundary = [100u64, 1100, 3100, 6100].contains(&end);
        assert!(
            on_write_boundary || end.is_multiple_of(SECTOR_SIZE),
            "seed {seed}: cut at {end}"
        );
        saw_torn |= !on_write_boundary;
        saw_none |= survived == 0;
        saw_all |= survived == 6000;
    }
    assert!(saw_torn, "no torn write seen");
    assert!(saw_none, "no run lost everything");
    assert!(saw_all, "no run kept everything");
}

#[test]
fn crash_releases_locks() {
    let (disk, _) = setup();
    let lock = root().join("lock");
    let guard = disk.try_lock(&lock).expect("lock").expect("held");
    disk.crash(CrashMode::ProcessCrash, &mut SeededRng::new(8));
    let new_guard = disk.try_lock(&lock).expect("lock");
    assert!(new_guard.is_some(), "dead holder's lock released");
    drop(guard); // stale: must not release the new holder's lock
    assert!(disk.try_lock(&lock).expect("lock").is_none());
}

#[test]
fn eio_faults_one_shot_and_sticky() {
    let (disk, dir) = setup();
    let file = disk.create(&dir.join("f"), 64).expect("create");
    disk.inject_fault(Fault::once(FaultOp::Write, &dir));
    let err = file.write_at(0, b"x").expect_err("one-shot write fault");
    assert_eq!(err.raw_os_error(), Some(libc::EIO));
    file.write_at(0, b"x").expect("fault consumed");

    disk.inject_fault(Fault::sticky(FaultOp::Read, dir.join("f")));
    let mut buf = [0u8; 1];
    assert!(file.read_at(0, &mut buf).is_err());
    assert!(file.read_at(0, &mut buf).is_err());
    disk.clear_faults();
    file.read_at(0, &mut buf).expect("cleared");
    assert_eq!(&buf, b"x");

    disk.inject_fault(Fault::once(FaultOp::CorruptRead, &dir));
    let mut buf = [0u8; 3];
    file.read_at(0, &mut buf).expect("corrupt read succeeds");
    assert_eq!(buf, [b'x', 1, 0], "middle byte flipped");
}

#[test]
fn failed_fsync_loses_covered_data_on_power_loss() {
    let (disk, dir) = setup();
    let path = dir.join("f");
    let file = disk.create(&path, 8).expect("create");
    disk.sync_dir(&dir).expect("sync dir");
    file.sync_all().expect("sync");
    file.write_at(0, b"abcd").expect("write");
    disk.inject_fault(Fault::once(FaultOp::Sync, &dir));
    assert!(file.sync_all().is_err());
    file.sync_all()
        .expect("second fsync 'succeeds' (Linux fsyncgate)");
    assert_eq!(&disk.read_live(&path).expect("live")[..4], b"abcd");
    disk.crash(CrashMode::PowerLoss, &mut SeededRng::new(9));
    assert_eq!(&disk.read_live(&path).expect("live")[..4], &[0u8; 4]);
}

#[test]
fn capacity_limit_gives_enospc_and_changes_nothing() {
    let (disk, dir) = setup();
    disk.set_capacity_bytes(Some(1000));
    let file = disk.create(&dir.join("a"), 600).expect("fits");
    let Err(err) = disk.create(&dir.join("b"), 600) else {
        panic!("create beyond capacity succeeded");
    };
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC));
    assert!(!disk.exists(&dir.join("b")));
    file.write_at(0, &[1u8; 600])
        .expect("overwrite in place needs no space");
    let err = file.write_at(900, &[1u8; 200]).expect_err("grow beyond");
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC));
    assert_eq!(file.len(), 600);
    let space = disk.space(&dir).expect("space");
    assert_eq!(space.total_bytes, 1000);
    assert_eq!(space.available_bytes, 400);
    disk.remove_file(&dir.join("a")).expect("remove");
    disk.create(&dir.join("b"), 600).expect("fits after remove");
}

#[test]
fn corrupt_byte_hits_both_images() {
    let (disk, dir) = setup();
    let path = dir.join("f");
    let file = disk.create(&path, 4).expect("create");
    disk.sync_dir(&dir).expect("sync dir");
    file.sync_all().expect("sync");
    disk.corrupt_byte(&path, 2).expect("corrupt");
    disk.crash(CrashMode::PowerLoss, &mut SeededRng::new(10));
    assert_eq!(disk.read_live(&path).expect("live"), vec![0, 0, 0xFF, 0]);
}

#[test]
fn clones_share_state() {
    let (disk, dir) = setup();
    let other: Arc<dyn Disk> = Arc::new(disk.clone());
    other.create(&dir.join("f"), 1).expect("create");
    assert!(disk.exists(&dir.join("f")));
}

fn case_write_many_and_in_place(disk: &dyn Disk, dir: &Path) {
    let path = dir.join("f");
    let file = disk.create(&path, 64).expect("create");
    file.write_at_many(&[(0, b"ab"), (10, b"cd"), (1, b"X"), (20, b"")])
        .expect("write many");
    // In place inside the file, and growing it (the fill sees exactly `len` bytes).
    file.write_in_place(30, 4, &mut |buf: &mut [u8]| {
        assert_eq!(buf.len(), 4);
        buf.copy_from_slice(b"wxyz");
    })
    .expect("in place");
    file.write_in_place(62, 4, &mut |buf: &mut [u8]| buf.copy_from_slice(b"1234"))
        .expect("in place, growing");
    file.write_at_many(&[(66, b"56"), (0, b"A")])
        .expect("write many, growing");
    assert_eq!(file.len(), 68);
    let mut buf = vec![0u8; 68];
    file.read_at(0, &mut buf).expect("read");
    let mut expected = vec![0u8; 68];
    expected[..2].copy_from_slice(b"AX");
    expected[10..12].copy_from_slice(b"cd");
    expected[30..34].copy_from_slice(b"wxyz");
    expected[62..68].copy_from_slice(b"123456");
    assert_eq!(buf, expected);
    drop(file);
    let mut again = vec![0u8; 68];
    disk.open(&path)
        .expect("reopen")
        .read_at(0, &mut again)
        .expect("read again");
    assert_eq!(again, expected);
}
