//! Idempotent producers through the real log: duplicates answered with the
//! original offsets, order enforced, and the state kept across segment
//! rolls, clean and unclean restarts, truncation, DeleteRecords and expiry.

mod support;

use bytes::Bytes;
use rill_storage::batch::{BatchBuilder, Compression, ProducerFields};
use rill_storage::producer_state::SequenceError;
use rill_storage::{AppendInfo, LogConfig, PartitionLog, StorageError};
use support::{run, small_config};

/// A batch of `n` records from producer `pid`, epoch `epoch`, first sequence `seq`.
fn idem(pid: i64, epoch: i16, seq: i32, n: usize, timestamp: i64) -> Bytes {
    let mut b = BatchBuilder::new(4096);
    b.producer(ProducerFields {
        id: pid,
        epoch,
        base_sequence: seq,
        transactional: false,
    });
    for r in 0..n {
        let value = format!("pid={pid} seq={} {}", seq + r as i32, "x".repeat(900));
        b.push(timestamp, None, Some(value.as_bytes()), &[]);
    }
    b.finish(Compression::None).unwrap()
}

async fn append(log: &PartitionLog, b: Bytes) -> Result<AppendInfo, StorageError> {
    log.append(b).await
}

fn now() -> i64 {
    rill_storage::batch::now_ms()
}

fn config() -> LogConfig {
    small_config()
}

#[test]
fn retries_are_answered_not_stored_and_order_is_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p");
    run(move || async move {
        let log = PartitionLog::open(&path, config()).await.unwrap();
        let first = append(&log, idem(1, 0, 0, 3, now())).await.unwrap();
        assert!(!first.duplicate);
        let again = append(&log, idem(1, 0, 0, 3, now())).await.unwrap();
        assert!(again.duplicate);
        assert_eq!(
            (again.base_offset, again.last_offset),
            (first.base_offset, first.last_offset)
        );
        assert_eq!(log.log_end_offset(), 3);
        // A gap and a stale epoch are refused and store nothing.
        let gap = append(&log, idem(1, 0, 5, 1, now())).await.unwrap_err();
        assert!(matches!(
            gap,
            StorageError::Sequence(SequenceError::OutOfOrder { .. })
        ));
        append(&log, idem(1, 0, 3, 1, now())).await.unwrap();
        append(&log, idem(1, 1, 0, 1, now())).await.unwrap();
        let stale = append(&log, idem(1, 0, 4, 1, now())).await.unwrap_err();
        assert!(matches!(
            stale,
            StorageError::Sequence(SequenceError::StaleEpoch { .. })
        ));
        assert_eq!(log.log_end_offset(), 5);
        // Batches without a producer id are never checked.
        let plain = support::batch(9, 2, 10, now());
        append(&log, plain.clone()).await.unwrap();
        append(&log, plain).await.unwrap();
        assert_eq!(log.log_end_offset(), 9);
        log.close().await.unwrap();
    });
}

/// Appends `count` one-record batches of producer `pid` from sequence `from`.
async fn produce(log: &PartitionLog, pid: i64, from: i32, count: i32) -> Vec<AppendInfo> {
    let mut out = Vec::new();
    for seq in from..from + count {
        out.push(append(log, idem(pid, 0, seq, 1, now())).await.unwrap());
    }
    out
}

/// Checks that the last five batches of `pid` (ending before `next`) are
/// recognised as duplicates and `next` is the sequence accepted.
async fn assert_state(log: &PartitionLog, pid: i64, next: i32, stored: &[AppendInfo]) {
    let end = log.log_end_offset();
    for (i, seq) in (next - 5..next).enumerate() {
        let info = append(log, idem(pid, 0, seq, 1, now())).await.unwrap();
        assert!(info.duplicate, "seq {seq} is a duplicate");
        assert_eq!(info.base_offset, stored[stored.len() - 5 + i].base_offset);
    }
    assert_eq!(log.log_end_offset(), end, "duplicates store nothing");
    let gap = append(log, idem(pid, 0, next + 1, 1, now())).await;
    assert!(gap.is_err(), "a gap after {next} is refused");
}

#[test]
fn state_survives_rolls_and_clean_and_unclean_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p");
    run(move || async move {
        // ~1 KiB batches in 64 KiB segments: 200 batches roll a few times.
        let log = PartitionLog::open(&path, config()).await.unwrap();
        let mut stored = produce(&log, 7, 0, 200).await;
        stored.extend(produce(&log, 8, 0, 10).await);
        assert!(log.segment_count() > 2);
        let snapshots = std::fs::read_dir(&path)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "producers")
            })
            .count();
        assert_eq!(snapshots, 2, "the newest two snapshots are kept");
        log.close().await.unwrap();

        // Clean: the close's snapshot.
        let log = PartitionLog::open(&path, config()).await.unwrap();
        let sevens: Vec<AppendInfo> = stored[..200].to_vec();
        assert_state(&log, 7, 200, &sevens).await;
        assert_eq!(log.producer_count(), 2);
        // Unclean: more batches after the last roll, then the log is
        // dropped without a close; the state comes from the roll's snapshot
        // and the batches after it.
        let mut more = sevens.clone();
        more.extend(produce(&log, 7, 200, 30).await);
        drop(log);
        let log = PartitionLog::open(&path, config()).await.unwrap();
        assert_state(&log, 7, 230, &more).await;
        // Without any snapshot the whole log is replayed.
        drop(log);
        for e in std::fs::read_dir(&path).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "producers") {
                std::fs::remove_file(p).unwrap();
            }
        }
        let log = PartitionLog::open(&path, config()).await.unwrap();
        assert_state(&log, 7, 230, &more).await;
        // A torn snapshot falls back to an older one (or the log).
        produce(&log, 7, 230, 40).await;
        log.close().await.unwrap();
        let mut newest: Vec<_> = std::fs::read_dir(&path)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "producers"))
            .collect();
        newest.sort();
        let newest = newest.pop().unwrap();
        let mut bytes = std::fs::read(&newest).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        std::fs::write(&newest, bytes).unwrap();
        let log = PartitionLog::open(&path, config()).await.unwrap();
        let ok = append(&log, idem(7, 0, 270, 1, now())).await.unwrap();
        assert!(!ok.duplicate);
        let dup = append(&log, idem(7, 0, 269, 1, now())).await.unwrap();
        assert!(dup.duplicate);
        log.close().await.unwrap();
    });
}

#[test]
fn truncation_delete_records_and_expiry_keep_the_state_right() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p");
    run(move || async move {
        let log = PartitionLog::open(&path, config()).await.unwrap();
        let stored = produce(&log, 3, 0, 120).await;
        // Replication cuts the log back to batch 100: sequence 100 is next
        // again, and 95..99 are the duplicates.
        log.truncate_to(stored[100].base_offset).await.unwrap();
        assert_state(&log, 3, 100, &stored[..100]).await;
        let redo = produce(&log, 3, 100, 20).await;
        assert!(redo.iter().all(|i| !i.duplicate));

        // DeleteRecords past every batch of producer 4 forgets it; producer
        // 3 (batches above the new start) stays.
        let four = produce(&log, 4, 0, 3).await;
        produce(&log, 3, 120, 1).await;
        let start = four[2].last_offset + 1;
        log.delete_records_before(start).await.unwrap();
        assert_eq!(log.producer_count(), 1);
        // An unknown producer may start at any sequence (Kafka's rule since KIP-360).
        assert!(
            !append(&log, idem(4, 0, 77, 1, now()))
                .await
                .unwrap()
                .duplicate
        );
        assert_eq!(log.producer_count(), 2);

        // Expiry by the batches' timestamps; what expired stays expired
        // after a restart.
        let day = LogConfig::default().producer_id_expiration_ms as i64;
        assert_eq!(log.expire_producers(now() + day - 60_000).await, 0);
        assert_eq!(log.expire_producers(now() + day + 60_000).await, 2);
        assert_eq!(log.producer_count(), 0);
        drop(log);
        let log = PartitionLog::open(&path, config()).await.unwrap();
        assert_eq!(log.producer_count(), 0);
        log.close().await.unwrap();
    });
}
