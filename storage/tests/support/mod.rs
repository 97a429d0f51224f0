//! Helpers shared by the storage integration tests.
#![allow(dead_code)]

use std::future::Future;
use std::sync::Mutex;

use bytes::Bytes;
use rill_storage::batch::{encode_uncompressed, RecordSpec};
use rill_storage::{FlushPolicy, LogConfig};

/// glommio executors lock memory for io_uring; running a few at a time keeps
/// parallel tests within `ulimit -l`.
static EXECUTORS: Mutex<()> = Mutex::new(());

/// Runs `f` on a fresh glommio executor on this thread.
pub fn run<F, Fut, T>(f: F) -> T
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    let _guard = EXECUTORS.lock().unwrap_or_else(|e| e.into_inner());
    glommio::LocalExecutorBuilder::default()
        .spawn(|| {
            rill_storage::io::keep_reactor_awake();
            f()
        })
        .expect("start executor")
        .join()
        .expect("executor thread")
}

/// Small segments and buffers so tests cross every boundary quickly.
pub fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 64 << 10,
        write_buffer_bytes: 16 << 10,
        writes_in_flight_max: 3,
        index_interval_bytes: 1024,
        cache_bytes_max: 8 << 10,
        preallocate_bytes: 64 << 10,
        flush: FlushPolicy::Always,
        checkpoint_interval_ms: 0,
        ..LogConfig::default()
    }
}

/// A batch of `records` records whose values are derived from `id`, so any
/// batch can be regenerated and compared byte for byte.
pub fn batch(id: u64, records: usize, value_len: usize, timestamp: i64) -> Bytes {
    let values: Vec<Vec<u8>> = (0..records)
        .map(|r| {
            let mut v = format!("id={id} r={r} ").into_bytes();
            v.resize(value_len.max(v.len()), b'a' + (id % 26) as u8);
            v
        })
        .collect();
    let key = id.to_be_bytes();
    let specs: Vec<RecordSpec> = values
        .iter()
        .enumerate()
        .map(|(r, v)| RecordSpec {
            timestamp_delta: r as i64,
            key: Some(&key),
            value: Some(v),
            headers: &[],
        })
        .collect();
    Bytes::from(encode_uncompressed(timestamp, &specs))
}

/// The id a batch made by [`batch`] carries in its first record's key.
pub fn batch_id(batch: &[u8]) -> u64 {
    // First record: length varint, attributes, ts delta, offset delta, key length (8 -> zigzag 16 = 1 byte), key.
    let records = &batch[rill_storage::batch::HEADER_BYTES..];
    let (_, used) = rill_storage::batch::varint::read_i32(records).unwrap();
    let body = &records[used..];
    // attributes(1) + ts delta varint (1 byte for 0) + offset delta (1 byte for 0) + key len (1 byte)
    u64::from_be_bytes(body[4..12].try_into().unwrap())
}

/// Splits a read result into its batches.
pub fn split_batches(mut data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let h = rill_storage::batch::BatchHeader::parse(data).unwrap();
        out.push(&data[..h.total_len()]);
        data = &data[h.total_len()..];
    }
    out
}
