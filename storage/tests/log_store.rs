//! The `LogStore` contract, checked the same way over the on-disk
//! `PartitionLog` and the in-memory `MemLog` the simulator will use: offsets,
//! reads, durability, truncation; and `MemLog`'s crash model.

mod support;

use rill_storage::batch::{self, BatchHeader};
use rill_storage::log_store::{LogStore, MemLog};
use rill_storage::{FlushPolicy, LogConfig, PartitionLog, StorageError};
use support::{batch, run, small_config, split_batches};

async fn append(log: &impl LogStore, id: u64, records: usize) -> (i64, i64) {
    let b = batch(id, records, 100, 1_000 + id as i64);
    let header = batch::validate(&b, 1 << 20).unwrap();
    let info = log.append_unsynced(b, header).await.unwrap();
    (info.base_offset, info.last_offset)
}

/// Ids of the batches `read` returns from `offset` on.
async fn ids_from(log: &impl LogStore, offset: i64) -> Vec<i64> {
    let data = log.read(offset, 1 << 20).await.unwrap();
    split_batches(&data)
        .into_iter()
        .map(|b| BatchHeader::parse(b).unwrap().base_offset)
        .collect()
}

async fn contract(log: impl LogStore) {
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 0));
    log.set_leader_epoch(3);
    let mut ranges = Vec::new();
    for id in 0..20 {
        ranges.push(append(&log, id, 1 + (id % 4) as usize).await);
    }
    let end = ranges.last().unwrap().1 + 1;
    assert_eq!(log.log_end_offset(), end);
    // Offsets are contiguous, batch after batch.
    for w in ranges.windows(2) {
        assert_eq!(w[1].0, w[0].1 + 1);
    }
    // Stored batches carry their offsets and the leader epoch.
    let data = log.read(0, 1 << 20).await.unwrap();
    let stored: Vec<BatchHeader> = split_batches(&data)
        .into_iter()
        .map(|b| BatchHeader::parse(b).unwrap())
        .collect();
    assert_eq!(stored.len(), 20);
    assert!(stored.iter().all(|h| h.leader_epoch == 3));
    assert!(split_batches(&data)
        .iter()
        .all(|b| batch::check_integrity(b).is_ok()));
    // A read inside a batch starts with that batch; at the end it is empty;
    // past it, an error.
    let (base, last) = ranges[5];
    assert_eq!(ids_from(&log, last).await[0], base);
    assert!(log.read(end, 1 << 20).await.unwrap().is_empty());
    assert!(matches!(
        log.read(end + 1, 1 << 20).await,
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    // At least one batch, however small the limit.
    assert_eq!(split_batches(&log.read(0, 1).await.unwrap()).len(), 1);

    log.make_durable(end).await.unwrap();
    assert_eq!(log.durable_offset(), end);

    // Truncation: only at a batch start, never below the log start.
    assert!(
        ranges[10].1 > ranges[10].0,
        "batch 10 holds several records"
    );
    assert!(matches!(
        log.truncate_to(ranges[10].0 + 1).await,
        Err(StorageError::NotBatchBoundary { .. })
    ));
    log.truncate_to(ranges[10].0).await.unwrap();
    assert_eq!(log.log_end_offset(), ranges[10].0);
    assert!(log.durable_offset() <= ranges[10].0);
    let (b, _) = append(&log, 99, 2).await;
    assert_eq!(b, ranges[10].0, "appends continue at the cut");
    log.truncate_to(log.log_end_offset() + 5).await.unwrap();
    assert_eq!(log.log_end_offset(), ranges[10].0 + 2);
}

#[test]
fn partition_log_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let config = LogConfig {
            flush: FlushPolicy::Always,
            ..small_config()
        };
        contract(PartitionLog::open(&path, config).await.unwrap()).await;
    });
}

#[test]
fn mem_log_keeps_the_contract() {
    futures_lite::future::block_on(contract(MemLog::new()));
}

#[test]
fn a_crash_loses_unsynced_batches_and_tears_the_last_write() {
    futures_lite::future::block_on(async {
        let log = MemLog::new();
        let mut ranges = Vec::new();
        for id in 0..6 {
            ranges.push(append(&log, id, 2).await);
        }
        log.make_durable(ranges[2].1 + 1).await.unwrap();
        assert_eq!(log.unsynced(), 3);
        for reached in 0..=3 {
            let after = log.after_crash(reached);
            // The durable prefix always survives; of the rest, the writes
            // that reached the disk, in order.
            assert_eq!(after.log_end_offset(), ranges[2 + reached].1 + 1);
            assert_eq!(after.durable_offset(), after.log_end_offset());
            assert_eq!(after.unsynced(), 0);
        }
        // More than were written: all of them, no more.
        assert_eq!(log.after_crash(10).log_end_offset(), ranges[5].1 + 1);
    });
}
