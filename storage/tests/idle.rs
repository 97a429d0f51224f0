//! An idle log is parked: written as a clean stop leaves it, its buffer and
//! reserved disk given back. It keeps taking appends, survives a crash
//! (the log dropped without closing) before and after them, and a log
//! parked or closed cleanly opens without writing anything.

mod support;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use rill_storage::{FlushPolicy, LogConfig, PartitionLog};
use support::{batch, run};

fn config() -> LogConfig {
    LogConfig {
        write_buffer_bytes: 64 << 10,
        preallocate_bytes: 4 << 20,
        flush: FlushPolicy::Always,
        checkpoint_interval_ms: 0,
        ..LogConfig::default()
    }
}

fn segment(dir: &Path) -> std::path::PathBuf {
    dir.join(format!("{:020}.log", 0))
}

/// Bytes of disk blocks the active segment takes.
fn allocated(dir: &Path) -> u64 {
    std::fs::metadata(segment(dir)).unwrap().blocks() * 512
}

fn modified(path: &Path) -> std::time::SystemTime {
    std::fs::metadata(path).unwrap().modified().unwrap()
}

async fn check_all(log: &PartitionLog, ids: &[u64]) {
    let mut offset = 0;
    for &id in ids {
        let got = log.read(offset, 1).await.unwrap();
        let want = batch(id, 2, 700, id as i64);
        // From the attributes on: the log sets base offset and epoch.
        assert_eq!(&got[21..want.len()], &want[21..], "batch {id}");
        offset += 2;
    }
    assert_eq!(log.log_end_offset(), offset);
}

#[test]
fn an_idle_log_is_parked_and_gives_back_what_it_holds() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    run(move || async move {
        let log = PartitionLog::open(&dir, config()).await.unwrap();
        let mut ids = Vec::new();
        // Appends in quick succession: the reservation window grows.
        for id in 0..200 {
            log.append(batch(id, 2, 700, id as i64)).await.unwrap();
            ids.push(id);
        }
        // The data's size (the file's size includes the reservation).
        let size = log.size_bytes();
        assert!(
            std::fs::metadata(segment(&dir)).unwrap().len() >= allocated(&dir) - 4096,
            "the reservation is inside the file's size"
        );
        assert!(
            allocated(&dir) > size + (64 << 10),
            "reserved ahead while busy: {} allocated for {size}",
            allocated(&dir)
        );
        assert!(!log.release_idle(60_000).await.unwrap(), "not idle yet");
        assert!(log.release_idle(0).await.unwrap(), "parked");
        assert!(!log.release_idle(0).await.unwrap(), "parked once");
        let size = std::fs::metadata(segment(&dir)).unwrap().len();
        assert_eq!(size, log.size_bytes(), "a park cuts the file to its data");
        // (One block of slack: ext4 may count an extent-tree block.)
        assert!(
            allocated(&dir) <= size.next_multiple_of(4096) + 4096,
            "reservation given back: {} allocated for {size}",
            allocated(&dir)
        );
        // Still a log: appends after the park (the tail block read back)
        // and reads of everything.
        for id in 200..230 {
            log.append(batch(id, 2, 700, id as i64)).await.unwrap();
            ids.push(id);
        }
        check_all(&log, &ids).await;

        // A crash after the appends (dropped, not closed): all there.
        drop(log);
        let log = PartitionLog::open(&dir, config()).await.unwrap();
        check_all(&log, &ids).await;

        // Parked, then a crash: the next open writes nothing.
        assert!(log.release_idle(0).await.unwrap());
        drop(log);
        let checkpoint = dir.join("checkpoint");
        let before = modified(&checkpoint);
        std::thread::sleep(std::time::Duration::from_millis(20));
        let log = PartitionLog::open(&dir, config()).await.unwrap();
        assert_eq!(modified(&checkpoint), before, "a parked log opens clean");
        check_all(&log, &ids).await;
        // Closing an unchanged log writes nothing either, and the next
        // open is clean again.
        log.close().await.unwrap();
        assert_eq!(modified(&checkpoint), before);
        let log = PartitionLog::open(&dir, config()).await.unwrap();
        assert_eq!(modified(&checkpoint), before);
        log.append(batch(230, 2, 700, 230)).await.unwrap();
        ids.push(230);
        log.close().await.unwrap();
        assert_ne!(modified(&checkpoint), before, "a changed log is sealed");
        let log = PartitionLog::open(&dir, config()).await.unwrap();
        check_all(&log, &ids).await;
        log.close().await.unwrap();
    });
}

fn syncfs(dir: &Path) {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(dir).unwrap();
    assert_eq!(unsafe { libc::syncfs(f.as_raw_fd()) }, 0);
}

/// Logs at `a` and `b`, each with the same 50 batches; their ids.
async fn two_logs(a: &Path, b: &Path) -> (PartitionLog, PartitionLog, Vec<u64>) {
    let la = PartitionLog::open(a, config()).await.unwrap();
    let lb = PartitionLog::open(b, config()).await.unwrap();
    for id in 0..50 {
        la.append(batch(id, 2, 700, id as i64)).await.unwrap();
        lb.append(batch(id, 2, 700, id as i64)).await.unwrap();
    }
    (la, lb, (0..50).collect())
}

/// Closing many logs with two filesystem syncs in all: after both steps the
/// next open is clean; stopped between them, the next open recovers
/// everything (it was written, only not marked clean).
#[test]
fn a_close_in_two_steps_around_a_filesystem_sync() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    run(move || async move {
        let (a, b) = (root.join("a"), root.join("b"));
        let (la, lb, ids) = two_logs(&a, &b).await;
        assert!(la.close_begin().await.unwrap());
        assert!(lb.close_begin().await.unwrap());
        assert!(la.append(batch(99, 2, 700, 99)).await.is_err(), "closed");
        syncfs(&root);
        la.close_end().await.unwrap();
        syncfs(&root);
        // `b` never gets its second step (a stop cut short).
        drop((la, lb));
        let checkpoint = a.join("checkpoint");
        let before = modified(&checkpoint);
        std::thread::sleep(std::time::Duration::from_millis(20));
        let la = PartitionLog::open(&a, config()).await.unwrap();
        assert_eq!(
            modified(&checkpoint),
            before,
            "closed in two steps: opens clean"
        );
        check_all(&la, &ids).await;
        let lb = PartitionLog::open(&b, config()).await.unwrap();
        check_all(&lb, &ids).await;
        // A log with nothing new needs no second step.
        assert!(!la.close_begin().await.unwrap());
        lb.close().await.unwrap();
    });
}

/// Parking many logs with two filesystem syncs in all: a log parked in two
/// steps opens clean; one appended to between the steps is not marked
/// clean, and loses nothing in a crash.
#[test]
fn a_park_in_two_steps_around_a_filesystem_sync() {
    use rill_storage::log::Park;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    run(move || async move {
        let (a, b) = (root.join("a"), root.join("b"));
        let (la, lb, mut ids) = two_logs(&a, &b).await;
        assert_eq!(la.park_begin(60_000).await.unwrap(), Park::NotIdle);
        assert_eq!(la.park_begin(0).await.unwrap(), Park::AwaitsSync);
        assert_eq!(lb.park_begin(0).await.unwrap(), Park::AwaitsSync);
        assert_eq!(la.park_begin(0).await.unwrap(), Park::NotIdle, "once");
        // `b` takes an append between the steps.
        lb.append(batch(50, 2, 700, 50)).await.unwrap();
        syncfs(&root);
        la.park_end().await.unwrap();
        lb.park_end().await.unwrap();
        syncfs(&root);
        let (ca, cb) = (a.join("checkpoint"), b.join("checkpoint"));
        let (before_a, before_b) = (modified(&ca), modified(&cb));
        drop((la, lb));
        std::thread::sleep(std::time::Duration::from_millis(20));
        let la = PartitionLog::open(&a, config()).await.unwrap();
        assert_eq!(modified(&ca), before_a, "parked in two steps: opens clean");
        check_all(&la, &ids).await;
        let lb = PartitionLog::open(&b, config()).await.unwrap();
        assert_ne!(modified(&cb), before_b, "not parked: recovered at open");
        ids.push(50);
        check_all(&lb, &ids).await;
        // A clean log parks without a sync step.
        assert_eq!(la.park_begin(0).await.unwrap(), Park::Parked);
        la.close().await.unwrap();
        // A stop that begins between a park's two steps: the park leaves
        // the log to the stop's second step, which marks it clean.
        lb.append(batch(51, 2, 700, 51)).await.unwrap();
        ids.push(51);
        assert_eq!(lb.park_begin(0).await.unwrap(), Park::AwaitsSync);
        assert!(lb.close_begin().await.unwrap());
        syncfs(&root);
        lb.park_end().await.unwrap();
        lb.close_end().await.unwrap();
        syncfs(&root);
        drop(lb);
        let before_b = modified(&cb);
        std::thread::sleep(std::time::Duration::from_millis(20));
        let lb = PartitionLog::open(&b, config()).await.unwrap();
        assert_eq!(modified(&cb), before_b, "closed mid-park: opens clean");
        check_all(&lb, &ids).await;
        lb.close().await.unwrap();
    });
}
