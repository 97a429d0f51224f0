//! Appends, reads, rolls, reopen: the partition log's everyday behaviour.

mod support;

use rill_storage::batch::BatchHeader;
use rill_storage::{PartitionLog, StorageError};
use support::{batch, batch_id, run, small_config, split_batches};

#[test]
fn append_then_read_every_offset_across_segments_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let log = PartitionLog::open(&path, small_config()).await.unwrap();
        let mut expected = Vec::new();
        for id in 0..200u64 {
            let b = batch(
                id,
                1 + (id % 5) as usize,
                100 + (id as usize * 37) % 900,
                1000 + id as i64,
            );
            let info = log.append(b.clone()).await.unwrap();
            expected.push((info.base_offset, info.last_offset, b));
        }
        assert!(
            log.segment_count() > 3,
            "small segments must roll: {}",
            log.segment_count()
        );
        let check = |log: PartitionLog, expected: Vec<(i64, i64, bytes::Bytes)>| async move {
            assert_eq!(log.log_end_offset(), expected.last().unwrap().1 + 1);
            for (i, (base, last, original)) in expected.iter().enumerate() {
                for offset in *base..=*last {
                    let data = log.read(offset, 1).await.unwrap();
                    let got = split_batches(&data);
                    assert_eq!(got.len(), 1, "max_bytes=1 still returns exactly one batch");
                    let h = BatchHeader::parse(got[0]).unwrap();
                    assert_eq!(h.base_offset, *base);
                    assert_eq!(&got[0][16..], &original[16..], "batch {i} body differs");
                    assert_eq!(batch_id(got[0]), i as u64);
                }
            }
            // A large read returns consecutive whole batches.
            let data = log.read(0, 1 << 20).await.unwrap();
            let mut next = 0;
            for b in split_batches(&data) {
                let h = BatchHeader::parse(b).unwrap();
                assert_eq!(h.base_offset, next);
                next = h.next_offset();
            }
            assert!(next > 0);
            assert!(log
                .read(log.log_end_offset(), 100)
                .await
                .unwrap()
                .is_empty());
            assert!(matches!(
                log.read(log.log_end_offset() + 1, 100).await,
                Err(StorageError::OffsetOutOfRange { .. })
            ));
            log
        };
        let log = check(log, expected.clone()).await;
        log.close().await.unwrap();
        assert!(matches!(
            log.append(batch(999, 1, 10, 0)).await,
            Err(StorageError::Closed)
        ));

        // Clean reopen.
        let log = PartitionLog::open(&path, small_config()).await.unwrap();
        let log = check(log, expected.clone()).await;
        // Unclean reopen (no close): recovery scans the active segment.
        drop(log);
        let log = PartitionLog::open(&path, small_config()).await.unwrap();
        let log = check(log, expected.clone()).await;
        let info = log.append(batch(200, 2, 50, 5)).await.unwrap();
        assert_eq!(info.base_offset, expected.last().unwrap().1 + 1);
    });
}
