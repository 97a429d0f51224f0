//! Property test: random sequences of appends (random batch sizes), reads at
//! random offsets and sizes, clean and unclean reopens, truncations, record
//! deletions and retention passes, checked against a simple in-memory model.
//! Small segments, buffers and index intervals make every boundary common.

mod support;

use proptest::prelude::*;
use rill_storage::batch::BatchHeader;
use rill_storage::{LogConfig, PartitionLog, StorageError};
use support::{batch, batch_id, run, split_batches};

#[derive(Debug, Clone)]
enum Op {
    Append {
        records: usize,
        value_len: usize,
    },
    Read {
        at: prop::sample::Index,
        max_bytes: usize,
    },
    Reopen {
        clean: bool,
    },
    Truncate {
        at: prop::sample::Index,
    },
    DeleteRecords {
        at: prop::sample::Index,
    },
    Retention,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => (1usize..6, 0usize..2500).prop_map(|(records, value_len)| Op::Append { records, value_len }),
        6 => (any::<prop::sample::Index>(), 0usize..20_000).prop_map(|(at, max_bytes)| Op::Read { at, max_bytes }),
        1 => any::<bool>().prop_map(|clean| Op::Reopen { clean }),
        1 => any::<prop::sample::Index>().prop_map(|at| Op::Truncate { at }),
        1 => any::<prop::sample::Index>().prop_map(|at| Op::DeleteRecords { at }),
        1 => Just(Op::Retention),
    ]
}

#[derive(Debug, Clone)]
struct ModelBatch {
    id: u64,
    base: i64,
    next: i64,
    len: usize,
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 24 << 10,
        write_buffer_bytes: 8 << 10,
        writes_in_flight_max: 2,
        index_interval_bytes: 512,
        cache_bytes_max: 6 << 10,
        preallocate_bytes: 16 << 10,
        retention_bytes: Some(96 << 10),
        retention_ms: None,
        checkpoint_interval_ms: 0,
        ..LogConfig::default()
    }
}

async fn check_read(
    log: &PartitionLog,
    model: &[ModelBatch],
    start: i64,
    offset: i64,
    max_bytes: usize,
) {
    let data = log.read(offset, max_bytes).await.unwrap();
    let first = model
        .iter()
        .position(|b| b.next > offset)
        .expect("offset inside the log");
    let got = split_batches(&data);
    assert!(!got.is_empty());
    assert!(
        got.len() == 1 || data.len() <= max_bytes,
        "read {} bytes for max {max_bytes}",
        data.len()
    );
    for (i, b) in got.iter().enumerate() {
        let m = &model[first + i];
        let h = BatchHeader::parse(b).unwrap();
        assert_eq!(
            (h.base_offset, h.next_offset(), b.len()),
            (m.base, m.next, m.len)
        );
        assert_eq!(batch_id(b), m.id);
    }
    // A read may stop early at a segment end or where the cache takes over,
    // as Kafka's reads stop at segment ends; it never returns a partial batch.
    assert!(model[first].base >= start || model[first].next > start);
}

/// 64 cases by default; `RILL_MODEL_CASES` runs more for a soak.
fn cases() -> u32 {
    std::env::var("RILL_MODEL_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn log_matches_model(ops in proptest::collection::vec(op(), 1..150)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        run(move || async move {
            let mut log = PartitionLog::open(&path, config()).await.unwrap();
            let mut model: Vec<ModelBatch> = Vec::new();
            let mut start = 0i64;
            let mut next_id = 0u64;
            for op in ops {
                let end = model.last().map(|b| b.next).unwrap_or(start);
                match op {
                    Op::Append { records, value_len } => {
                        let b = batch(next_id, records, value_len, next_id as i64);
                        let info = log.append(b.clone()).await.unwrap();
                        assert_eq!(info.base_offset, end);
                        model.push(ModelBatch { id: next_id, base: end, next: info.last_offset + 1, len: b.len() });
                        next_id += 1;
                    }
                    Op::Read { at, max_bytes } => {
                        if end > start {
                            let offset = start + at.index((end - start) as usize) as i64;
                            check_read(&log, &model, start, offset, max_bytes).await;
                        }
                        assert!(log.read(end, max_bytes).await.unwrap().is_empty());
                        assert!(matches!(log.read(end + 1, 10).await, Err(StorageError::OffsetOutOfRange { .. })));
                    }
                    Op::Reopen { clean } => {
                        if clean { log.close().await.unwrap(); }
                        drop(log);
                        log = PartitionLog::open(&path, config()).await.unwrap();
                    }
                    Op::Truncate { at } => {
                        let kept: Vec<usize> = (0..model.len()).filter(|&i| model[i].base >= start).collect();
                        if !kept.is_empty() {
                            let i = kept[at.index(kept.len())];
                            log.truncate_to(model[i].base).await.unwrap();
                            model.truncate(i);
                        }
                    }
                    Op::DeleteRecords { at } => {
                        if end > start {
                            let offset = start + at.index((end - start + 1) as usize) as i64;
                            assert_eq!(log.delete_records_before(offset).await.unwrap(), offset);
                            start = offset;
                            model.retain(|b| b.next > start);
                        }
                    }
                    Op::Retention => {
                        let out = log.enforce_retention(0).await.unwrap();
                        assert!(out.log_start_offset >= start);
                        start = out.log_start_offset;
                        model.retain(|b| b.next > start);
                        assert!(out.segments_deleted == 0 || log.size_bytes() >= 96 << 10);
                    }
                }
                let end = model.last().map(|b| b.next).unwrap_or(start).max(start);
                assert_eq!(log.log_end_offset(), end);
                assert_eq!(log.log_start_offset(), start);
            }
            // Finally every batch, from the start, after an unclean reopen.
            drop(log);
            let log = PartitionLog::open(&path, config()).await.unwrap();
            let mut offset = start;
            let end = log.log_end_offset();
            while offset < end {
                check_read(&log, &model, start, offset, 1).await;
                offset = model.iter().find(|b| b.next > offset).unwrap().next;
            }
        });
    }
}
