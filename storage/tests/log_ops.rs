//! Reshaping operations and queries: truncation, DeleteRecords, retention,
//! lookups by timestamp, read sizes, flush policies and the read cache.

mod support;

use std::time::Duration;

use rill_storage::batch::BatchHeader;
use rill_storage::{FlushPolicy, LogConfig, PartitionLog, StorageError};
use support::{batch, batch_id, run, small_config, split_batches};

async fn fill(log: &PartitionLog, n: u64, ts0: i64) -> Vec<(i64, i64)> {
    let mut ranges = Vec::new();
    for id in 0..n {
        let info = log
            .append(batch(id, 3, 200, ts0 + id as i64 * 10))
            .await
            .unwrap();
        ranges.push((info.base_offset, info.last_offset));
    }
    ranges
}

#[test]
fn offset_for_timestamp_finds_the_first_record_at_or_after() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let log = PartitionLog::open(&path, small_config()).await.unwrap();
        // Batch i: records at ts 1000+10i, +1, +2 (timestamp_delta = record index).
        let ranges = fill(&log, 300, 1000).await;
        assert!(log.segment_count() > 2);
        for (i, (base, _)) in ranges.iter().enumerate() {
            let ts = 1000 + i as i64 * 10;
            let hit = log.offset_for_timestamp(ts).await.unwrap().unwrap();
            assert_eq!((hit.offset, hit.timestamp), (*base, ts));
            let hit = log.offset_for_timestamp(ts + 2).await.unwrap().unwrap();
            assert_eq!((hit.offset, hit.timestamp), (base + 2, ts + 2));
            // Between batches: the next batch's first record.
            let hit = log.offset_for_timestamp(ts + 5).await.unwrap();
            match ranges.get(i + 1) {
                Some((next, _)) => assert_eq!(hit.unwrap().offset, *next),
                None => assert!(hit.is_none()),
            }
        }
        assert_eq!(
            log.offset_for_timestamp(0).await.unwrap().unwrap().offset,
            0
        );
        // Still right after a restart (indexes loaded from files, then rebuilt).
        log.close().await.unwrap();
        let log = PartitionLog::open(&path, small_config()).await.unwrap();
        assert_eq!(
            log.offset_for_timestamp(1000 + 150 * 10 + 1)
                .await
                .unwrap()
                .unwrap()
                .offset,
            ranges[150].0 + 1
        );
    });
}

#[test]
fn reads_honour_max_bytes_but_always_return_a_whole_batch() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let mut config = small_config();
        config.cache_bytes_max = 0; // force disk reads
        let log = PartitionLog::open(&path, config).await.unwrap();
        fill(&log, 50, 0).await;
        let one = log.read(0, 0).await.unwrap();
        let batch_len = BatchHeader::parse(&one).unwrap().total_len();
        assert_eq!(one.len(), batch_len);
        let three = log.read(0, batch_len * 3 + batch_len / 2).await.unwrap();
        assert_eq!(split_batches(&three).len(), 3);
        // A read from inside a batch starts with that whole batch.
        let mid = log.read(4, 1).await.unwrap();
        assert_eq!(BatchHeader::parse(&mid).unwrap().base_offset, 3);
    });
}

#[test]
fn truncate_to_drops_the_suffix_durably_and_appends_continue() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let log = PartitionLog::open(&path, small_config()).await.unwrap();
        let ranges = fill(&log, 400, 0).await;
        let segments_before = log.segment_count();
        assert!(segments_before > 3);
        // Not a batch boundary: refused, nothing changes.
        assert!(matches!(
            log.truncate_to(ranges[100].0 + 1).await,
            Err(StorageError::NotBatchBoundary { .. })
        ));
        assert_eq!(log.log_end_offset(), ranges[399].1 + 1);

        let cut = ranges[160].0;
        log.truncate_to(cut).await.unwrap();
        assert_eq!(log.log_end_offset(), cut);
        assert!(log.segment_count() < segments_before);
        assert!(matches!(
            log.read(cut + 1, 10).await,
            Err(StorageError::OffsetOutOfRange { .. })
        ));
        let last = log.read(ranges[159].0, 1 << 20).await.unwrap();
        assert_eq!(split_batches(&last).len(), 1);
        assert_eq!(batch_id(&last), 159);
        let info = log.append(batch(1000, 2, 100, 5)).await.unwrap();
        assert_eq!(info.base_offset, cut);

        // Survives an unclean restart exactly.
        drop(log);
        let log = PartitionLog::open(&path, small_config()).await.unwrap();
        assert_eq!(log.log_end_offset(), cut + 2);
        assert_eq!(batch_id(&log.read(cut, 1).await.unwrap()), 1000);
        assert_eq!(batch_id(&log.read(ranges[159].0, 1).await.unwrap()), 159);

        // Truncating to a segment's base offset empties that segment.
        let bases = log.segment_bases();
        let base = bases[1];
        log.truncate_to(base).await.unwrap();
        assert_eq!(log.log_end_offset(), base);
        assert_eq!(log.segment_count(), 2);
        log.append(batch(2000, 1, 10, 0)).await.unwrap();
        assert_eq!(batch_id(&log.read(base, 1).await.unwrap()), 2000);
    });
}

#[test]
fn delete_records_moves_the_log_start_and_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let log = PartitionLog::open(&path, small_config()).await.unwrap();
        let ranges = fill(&log, 200, 0).await;
        let segments = log.segment_count();
        let start = ranges[120].0 + 1;
        assert_eq!(log.delete_records_before(start).await.unwrap(), start);
        assert_eq!(log.log_start_offset(), start);
        assert!(
            log.segment_count() < segments,
            "whole segments below the start are deleted"
        );
        assert!(matches!(
            log.read(start - 1, 10).await,
            Err(StorageError::OffsetOutOfRange { .. })
        ));
        // The batch holding the new start is still served whole.
        assert_eq!(batch_id(&log.read(start, 1).await.unwrap()), 120);
        // Moving it backwards is a no-op; beyond the end is an error.
        assert_eq!(log.delete_records_before(5).await.unwrap(), start);
        assert!(log
            .delete_records_before(log.log_end_offset() + 1)
            .await
            .is_err());
        drop(log);
        let log = PartitionLog::open(&path, small_config()).await.unwrap();
        assert_eq!(log.log_start_offset(), start);
        assert_eq!(
            log.offset_for_timestamp(0).await.unwrap().unwrap().offset,
            start
        );
    });
}

#[test]
fn retention_by_time_and_size_deletes_closed_segments_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let mut config = small_config();
        config.retention_bytes = Some(150 << 10);
        config.retention_ms = Some(1000);
        let log = PartitionLog::open(&path, config.clone()).await.unwrap();
        fill(&log, 600, 10_000).await; // ~450 KiB across ~8 segments, timestamps 10_000..16_000
        let before = log.size_bytes();
        // Size: the time limit is not reached at now=16_500 (newest of the oldest segment is ~10_700).
        let out = log.enforce_retention(10_500).await.unwrap();
        assert!(out.segments_deleted > 0);
        assert!(
            log.size_bytes() >= 150 << 10,
            "size retention keeps at least the limit"
        );
        assert!(log.size_bytes() < before);
        assert_eq!(log.log_start_offset(), log.segment_bases()[0]);
        // Time: far in the future every closed segment has expired; the active one stays.
        let out = log.enforce_retention(1_000_000).await.unwrap();
        assert!(out.segments_deleted > 0);
        assert_eq!(log.segment_count(), 1);
        assert_eq!(log.log_start_offset(), log.segment_bases()[0]);
        let start = log.log_start_offset();
        assert!(log.read(start, 100).await.is_ok());
        drop(log);
        let log = PartitionLog::open(&path, config).await.unwrap();
        assert_eq!(log.log_start_offset(), start);
    });
}

#[test]
fn segment_ms_rolls_by_age() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let config = LogConfig {
            segment_ms: 50,
            ..small_config()
        };
        let log = PartitionLog::open(&path, config).await.unwrap();
        log.append(batch(0, 1, 10, 0)).await.unwrap();
        log.append(batch(1, 1, 10, 0)).await.unwrap();
        assert_eq!(log.segment_count(), 1);
        glommio::timer::sleep(Duration::from_millis(60)).await;
        log.append(batch(2, 1, 10, 0)).await.unwrap();
        assert_eq!(log.segment_count(), 2);
    });
}

#[test]
fn interval_flush_makes_data_durable_without_explicit_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let config = LogConfig {
            flush: FlushPolicy::Interval(Duration::from_millis(20)),
            ..small_config()
        };
        let log = PartitionLog::open(&path, config).await.unwrap();
        for id in 0..20 {
            log.append(batch(id, 1, 100, 0)).await.unwrap();
        }
        assert_eq!(log.log_end_offset(), 20);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while log.durable_offset() < 20 {
            assert!(
                std::time::Instant::now() < deadline,
                "interval flush never happened"
            );
            glommio::timer::sleep(Duration::from_millis(10)).await;
        }
    });
}

#[test]
fn tailing_reads_come_from_the_bounded_cache() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let config = LogConfig {
            cache_bytes_max: 64 << 10,
            ..small_config()
        };
        let log = PartitionLog::open(&path, config).await.unwrap();
        let ranges = fill(&log, 500, 0).await;
        assert!(
            log.cache_bytes() <= 64 << 10 && log.cache_bytes() > 32 << 10,
            "cache holds {}",
            log.cache_bytes()
        );
        // Remove the segment files: recent offsets are still served (from memory).
        for base in log.segment_bases() {
            std::fs::remove_file(path.join(format!("{base:020}.log"))).unwrap();
        }
        let tail = ranges[499].0;
        assert_eq!(batch_id(&log.read(tail, 1).await.unwrap()), 499);
    });
}

#[test]
fn concurrent_appends_share_syncs_and_keep_offsets_contiguous() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let log = PartitionLog::open(&path, small_config()).await.unwrap();
        let mut tasks = Vec::new();
        for t in 0..8u64 {
            let log = log.clone();
            tasks.push(glommio::spawn_local(async move {
                let mut infos = Vec::new();
                for i in 0..50u64 {
                    infos.push(log.append(batch(t * 1000 + i, 2, 300, 0)).await.unwrap());
                }
                infos
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await);
        }
        all.sort_by_key(|i| i.base_offset);
        for w in all.windows(2) {
            assert_eq!(w[0].last_offset + 1, w[1].base_offset);
        }
        assert_eq!(log.log_end_offset(), 800);
        assert_eq!(log.durable_offset(), 800);
    });
}

/// A relative directory (as `--data-dir data` gives) opens, takes appends
/// (which sync the directory) and reopens.
#[test]
fn relative_log_directory() {
    // Tests run in the crate directory; a temp dir under it gives a relative path.
    let dir = tempfile::tempdir_in(".").unwrap();
    let name = dir.path().file_name().unwrap().to_owned();
    let rel = std::path::PathBuf::from(".").join(name).join("p-0");
    run(move || async move {
        let log = PartitionLog::open(&rel, small_config()).await.unwrap();
        fill(&log, 50, 1000).await;
        let end = log.log_end_offset();
        log.close().await.unwrap();
        let log = PartitionLog::open(&rel, small_config()).await.unwrap();
        assert_eq!(log.log_end_offset(), end);
        log.close().await.unwrap();
    });
}
