//! Damage on disk: flipped bytes, torn tails, lost indexes, and the line
//! between a torn tail (cut) and synced data going bad (refused loudly).

mod support;

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use rill_storage::{LogConfig, PartitionLog, StorageError};
use support::{batch, batch_id, run, small_config};

fn log_file(dir: &Path, base: i64) -> std::path::PathBuf {
    dir.join(format!("{base:020}.log"))
}

fn flip_byte(path: &Path, at: u64) {
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8];
    f.seek(SeekFrom::Start(at)).unwrap();
    f.read_exact(&mut b).unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(&[b[0] ^ 0x5a]).unwrap();
    f.sync_all().unwrap();
}

/// A config whose checkpoint keeps the recovery point of the last open/roll,
/// so writes after it are the unsynced-as-far-as-recovery-knows tail.
fn lazy_checkpoint_config() -> LogConfig {
    LogConfig {
        checkpoint_interval_ms: 3_600_000,
        segment_bytes: 1 << 20,
        ..small_config()
    }
}

/// One index entry per segment: every read scans from the segment start, so
/// reads of later batches step over the damaged one.
fn sparse_index_config() -> LogConfig {
    LogConfig {
        cache_bytes_max: 0,
        index_interval_bytes: 1 << 30,
        ..small_config()
    }
}

#[test]
fn a_flipped_byte_in_a_closed_segment_fails_that_batch_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let log = PartitionLog::open(&path, sparse_index_config())
            .await
            .unwrap();
        let mut infos = Vec::new();
        for id in 0..300 {
            infos.push(log.append(batch(id, 2, 300, 0)).await.unwrap());
        }
        let first = log.segment_bases()[0];
        assert!(log.segment_count() > 2);
        log.close().await.unwrap();
        // Batch 5 lies in the first (closed) segment; damage a byte of its value.
        let batch_len = batch(0, 2, 300, 0).len() as u64;
        flip_byte(&log_file(&path, first), 5 * batch_len + 200);

        for clean in [true, false] {
            let log = PartitionLog::open(&path, sparse_index_config())
                .await
                .unwrap();
            match log.read(infos[5].base_offset, 1 << 20).await {
                Err(StorageError::Corrupt {
                    segment_base,
                    position,
                    ..
                }) => {
                    assert_eq!((segment_base, position), (first, 5 * batch_len));
                }
                other => panic!("expected a corruption error, got {other:?}"),
            }
            // The neighbours still read, including a read that starts before
            // the damage: it stops short of the bad batch.
            assert_eq!(
                batch_id(&log.read(infos[4].base_offset, 1).await.unwrap()),
                4
            );
            assert_eq!(
                batch_id(&log.read(infos[6].base_offset, 1).await.unwrap()),
                6
            );
            let before = log.read(0, 1 << 20).await.unwrap();
            assert_eq!(support::split_batches(&before).len(), 5);
            assert_eq!(
                batch_id(&log.read(infos[299].base_offset, 1).await.unwrap()),
                299
            );
            if clean {
                log.close().await.unwrap();
            } else {
                drop(log);
            }
        }
    });
}

#[test]
fn a_torn_tail_is_cut_and_appends_continue_at_the_right_offset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let log = PartitionLog::open(&path, lazy_checkpoint_config())
            .await
            .unwrap();
        let mut infos = Vec::new();
        for id in 0..20 {
            infos.push(log.append(batch(id, 3, 100, 0)).await.unwrap());
        }
        drop(log); // unclean
                   // Cut the active segment in the middle of the last batch.
        let file = log_file(&path, 0);
        let last_len = batch(19, 3, 100, 0).len() as u64;
        let len = 20 * last_len; // logical size: the file itself is padded to a block
        let cut_at = len - last_len / 2;
        OpenOptions::new()
            .write(true)
            .open(&file)
            .unwrap()
            .set_len(cut_at)
            .unwrap();

        let log = PartitionLog::open(&path, lazy_checkpoint_config())
            .await
            .unwrap();
        assert_eq!(
            log.log_end_offset(),
            infos[19].base_offset,
            "the torn batch is gone"
        );
        assert_eq!(
            std::fs::metadata(&file).unwrap().len(),
            len - last_len,
            "the file is cut at the batch boundary"
        );
        let info = log.append(batch(100, 1, 10, 0)).await.unwrap();
        assert_eq!(info.base_offset, infos[19].base_offset);
        assert_eq!(
            batch_id(&log.read(infos[18].base_offset, 1).await.unwrap()),
            18
        );
        assert_eq!(batch_id(&log.read(info.base_offset, 1).await.unwrap()), 100);
        drop(log);

        // Garbage after the last batch (a write that landed half) is cut too.
        let len = 19 * last_len + batch(100, 1, 10, 0).len() as u64;
        let mut f = OpenOptions::new().append(true).open(&file).unwrap();
        f.write_all(&[0x17; 700]).unwrap();
        drop(f);
        let log = PartitionLog::open(&path, lazy_checkpoint_config())
            .await
            .unwrap();
        assert_eq!(log.log_end_offset(), info.last_offset + 1);
        assert_eq!(std::fs::metadata(&file).unwrap().len(), len);
    });
}

#[test]
fn damage_below_the_recovery_point_is_refused_not_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(move || async move {
        // checkpoint_interval_ms = 0: every sync records its recovery point.
        let log = PartitionLog::open(
            &path,
            LogConfig {
                segment_bytes: 1 << 20,
                ..small_config()
            },
        )
        .await
        .unwrap();
        for id in 0..20 {
            log.append(batch(id, 3, 100, 0)).await.unwrap();
        }
        drop(log);
        let file = log_file(&path, 0);
        let padded = std::fs::metadata(&file).unwrap().len();
        let batch_len = batch(0, 3, 100, 0).len() as u64;
        let size = 20 * batch_len;
        flip_byte(&file, 7 * batch_len + 100);
        match PartitionLog::open(&path, small_config()).await {
            Err(StorageError::CorruptFlushedData {
                segment_base: 0,
                position,
                recovery_point,
                ..
            }) => {
                assert_eq!(position, 7 * batch_len);
                assert_eq!(recovery_point, 60);
            }
            Err(other) => panic!("wrong error: {other}"),
            Ok(_) => panic!("opened a log whose synced data is damaged"),
        }
        assert_eq!(
            std::fs::metadata(&file).unwrap().len(),
            padded,
            "nothing was truncated"
        );

        // Losing synced bytes at the end is refused the same way.
        flip_byte(&file, 7 * batch_len + 100); // repair
        OpenOptions::new()
            .write(true)
            .open(&file)
            .unwrap()
            .set_len(size - 10)
            .unwrap();
        assert!(matches!(
            PartitionLog::open(&path, small_config()).await,
            Err(StorageError::CorruptFlushedData { .. })
        ));
    });
}

#[test]
fn missing_or_damaged_index_files_are_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let log = PartitionLog::open(&path, small_config()).await.unwrap();
        let mut infos = Vec::new();
        for id in 0..300 {
            infos.push(
                log.append(batch(id, 2, 300, 1000 + id as i64))
                    .await
                    .unwrap(),
            );
        }
        let bases = log.segment_bases();
        log.close().await.unwrap();
        let index = path.join(format!("{:020}.index", bases[0]));
        let time_index = path.join(format!("{:020}.timeindex", bases[1]));
        let original = std::fs::read(&index).unwrap();
        std::fs::remove_file(&index).unwrap();
        flip_byte(&time_index, 40);

        let log = PartitionLog::open(&path, small_config()).await.unwrap();
        let rebuilt = std::fs::read(&index).unwrap();
        assert_eq!(rebuilt.len(), original.len());
        assert_eq!(
            rebuilt, original,
            "the rebuilt index matches the one written at roll"
        );
        for (id, info) in infos.iter().enumerate() {
            assert_eq!(
                batch_id(&log.read(info.base_offset, 1).await.unwrap()),
                id as u64
            );
        }
        // Batch i holds records stamped 1000+i and 1000+i+1.
        let hit = log.offset_for_timestamp(1000 + 150).await.unwrap().unwrap();
        assert_eq!(hit.offset, infos[149].base_offset + 1);
    });
}

#[test]
fn a_batch_starting_just_before_a_scan_chunk_boundary_is_recovered() {
    // Regression (found by the kill -9 broker test): recovery scans 1 MiB at a
    // time; a batch starting a few bytes before a chunk boundary showed only
    // the zero high bytes of its base offset and was taken for the end of the
    // data, so a synced log refused to open.
    const CHUNK: u64 = 1 << 20;
    for short_by in [1u64, 2, 7, 11] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        run(move || async move {
            let config = LogConfig {
                segment_bytes: 8 << 20,
                ..lazy_checkpoint_config()
            };
            let log = PartitionLog::open(&path, config.clone()).await.unwrap();
            let target = CHUNK - short_by;
            let mut position = 0u64;
            let mut id = 0u64;
            while position < target {
                let left = target - position;
                let b = if left > 20_000 {
                    batch(id, 1, 8_000, 0)
                } else {
                    // Grow a one-record batch until it ends exactly at the target.
                    let mut v = 0;
                    loop {
                        let b = batch(id, 1, v, 0);
                        if b.len() as u64 >= left {
                            break b;
                        }
                        v += 1;
                    }
                };
                position += b.len() as u64;
                log.append(b).await.unwrap();
                id += 1;
            }
            assert_eq!(
                position, target,
                "filler lands the next batch at the target"
            );
            let straddling = log.append(batch(id, 3, 100, 0)).await.unwrap();
            let last = log.append(batch(id + 1, 3, 100, 0)).await.unwrap();
            drop(log); // unclean: recovery scans the whole active segment

            let log = PartitionLog::open(&path, config).await.unwrap();
            assert_eq!(log.log_end_offset(), last.last_offset + 1);
            let data = log.read(straddling.base_offset, 1).await.unwrap();
            assert_eq!(batch_id(&data), id, "short by {short_by}");
        });
    }
}

/// A roll creates the next segment and reserves its space before it seals
/// the active one; a crash between the two leaves a next segment of zeros
/// (its size is the reservation) after an unsealed one with zeros after its
/// data. The open drops the empty segment and recovers the other.
#[test]
fn a_roll_stopped_after_reserving_its_new_segment_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let log = PartitionLog::open(&path, lazy_checkpoint_config())
            .await
            .unwrap();
        for id in 0..20 {
            log.append(batch(id, 3, 100, 0)).await.unwrap();
        }
        log.sync().await.unwrap();
        let end = log.log_end_offset();
        drop(log); // unclean
        let active = log_file(&path, 0);
        let data = std::fs::metadata(&active).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&active)
            .unwrap()
            .set_len(data + (256 << 10))
            .unwrap();
        let next = log_file(&path, end);
        std::fs::File::create(&next)
            .unwrap()
            .set_len(64 << 10)
            .unwrap();

        let log = PartitionLog::open(&path, lazy_checkpoint_config())
            .await
            .unwrap();
        assert_eq!(log.log_end_offset(), end);
        assert!(!next.exists(), "the empty next segment is removed");
        for id in 0..20 {
            assert_eq!(batch_id(&log.read(id as i64 * 3, 1).await.unwrap()), id);
        }
        let info = log.append(batch(100, 1, 10, 0)).await.unwrap();
        assert_eq!(info.base_offset, end);
    });
}
