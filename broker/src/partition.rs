//! A partition on its owner shard: the only way to its log. Requests append,
//! read, and wait for data here; maintenance (retention, cleaning, closing)
//! goes through it too.
//!
//! The high watermark is what consumers may read: everything the topic's
//! durability policy counts as stored. With `flush = always` that is what
//! is synced (a record is readable once it would survive a crash); with a
//! flush interval, what is written. Replication will make it the commit
//! index (what a majority holds by the same policy) without changing any
//! caller: Fetch reads up to it, ListOffsets `latest` answers it, and
//! DeleteRecords cannot pass it.

use std::cell::Cell;

use bytes::Bytes;
use rill_storage::batch::{BatchHeader, Compression};
use rill_storage::compaction::CleanerLimits;
use rill_storage::signal::Signal;
use rill_storage::{
    AppendInfo, CleanOutcome, FlushPolicy, LogConfig, PartitionLog, RetentionOutcome, StorageError,
    TimestampOffset,
};
use uuid::Uuid;

type Result<T> = std::result::Result<T, StorageError>;

pub struct Partition {
    pub topic_id: Uuid,
    log: PartitionLog,
    /// Notified when the high watermark moves and when the partition closes,
    /// for fetches waiting on new data.
    moved: Signal,
    /// Whether the high watermark is the synced offset (`flush = always`)
    /// rather than the written one.
    synced_is_stored: Cell<bool>,
    /// The topic's `compression.type` codec, when it names one: batches in
    /// another codec are recompressed on append. `None` stores them as sent.
    pub recompress_to: Cell<Option<Compression>>,
}

impl Partition {
    /// See [`PartitionLog::park_begin`].
    pub async fn park_begin(
        &self,
        idle_ms: i64,
    ) -> std::result::Result<rill_storage::log::Park, rill_storage::StorageError> {
        self.log.park_begin(idle_ms).await
    }

    /// See [`PartitionLog::park_end`].
    pub async fn park_end(&self) -> std::result::Result<(), rill_storage::StorageError> {
        self.log.park_end().await
    }

    pub fn new(topic_id: Uuid, log: PartitionLog, recompress_to: Option<Compression>) -> Partition {
        let synced_is_stored = Cell::new(log.config().flush == FlushPolicy::Always);
        Partition {
            topic_id,
            log,
            moved: Signal::default(),
            synced_is_stored,
            recompress_to: Cell::new(recompress_to),
        }
    }

    /// Segments and bytes on disk of this partition's log.
    pub fn disk_usage(&self) -> (usize, u64) {
        (self.log.segment_count(), self.log.size_bytes())
    }

    /// Bytes of recent batches this partition keeps in memory for readers.
    pub fn cache_bytes(&self) -> usize {
        self.log.cache_bytes()
    }

    /// Idempotent producers this partition remembers.
    pub fn producer_count(&self) -> usize {
        self.log.producer_count()
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log.log_start_offset()
    }

    pub fn log_end_offset(&self) -> i64 {
        self.log.log_end_offset()
    }

    /// The offset before which consumers may read (see the module docs).
    pub fn high_watermark(&self) -> i64 {
        if self.synced_is_stored.get() {
            self.log.stored_offset()
        } else {
            self.log.log_end_offset()
        }
    }

    pub fn config(&self) -> LogConfig {
        self.log.config()
    }

    pub fn reconfigure(&self, config: LogConfig) {
        self.synced_is_stored
            .set(config.flush == FlushPolicy::Always);
        self.log.reconfigure(config);
        self.moved.notify_all();
    }

    /// Appends a batch validated by the caller, without waiting for the
    /// disk: the order of appends is fixed now; [`make_durable`](Self::make_durable)
    /// before the batch is acknowledged. `awaited`: someone will wait for it
    /// to be durable (acks=all, `flush = always`), so it is queued for the
    /// shard journal's next step; otherwise the flush interval syncs it.
    pub async fn append_unsynced(
        &self,
        batch: Bytes,
        header: BatchHeader,
        awaited: bool,
    ) -> Result<AppendInfo> {
        let appended = if awaited {
            self.log.append_validated_unsynced(batch, header).await
        } else {
            self.log.append_validated_lazy(batch, header).await
        };
        if !self.synced_is_stored.get() {
            self.moved.notify_all();
        }
        appended
    }

    /// Waits until everything before `offset` is on stable storage.
    pub async fn make_durable(&self, offset: i64) -> Result<()> {
        let synced = self.log.make_durable(offset).await;
        self.moved.notify_all();
        synced
    }

    /// Validates and appends `batch`, then makes it durable.
    pub async fn append_durable(&self, batch: Bytes) -> Result<AppendInfo> {
        let info = self.log.append(batch).await?;
        self.make_durable(info.last_offset + 1).await?;
        Ok(info)
    }

    /// What a consumer is sent for a fetch at `offset`: whole batches up to
    /// `max_bytes` (at least one), none at or past the high watermark. At or
    /// past the high watermark but within the log: nothing.
    pub async fn read(&self, offset: i64, max_bytes: usize) -> Result<Bytes> {
        let high_watermark = self.high_watermark();
        if offset >= high_watermark && offset <= self.log.log_end_offset() {
            return Ok(Bytes::new());
        }
        let data = self.log.fetch(offset, max_bytes).await?;
        let keep = batches_before(&data, high_watermark);
        Ok(if keep < data.len() {
            data.slice(..keep)
        } else {
            data
        })
    }

    /// Whether the high watermark passed `seen` (or the partition closed);
    /// if not, `waker` is woken when it may have. For a fetch waiting on
    /// many partitions at once without a future for each.
    pub fn poll_data(&self, seen: i64, waker: &std::task::Waker) -> bool {
        if self.high_watermark() > seen || self.log.is_closed() {
            return true;
        }
        self.moved.register(waker);
        false
    }

    /// Resolves once the high watermark passes `seen`, or the partition closes.
    pub async fn wait_for_data(&self, seen: i64) {
        self.moved
            .wait_until(|| (self.high_watermark() > seen || self.log.is_closed()).then_some(()))
            .await
    }

    pub async fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<TimestampOffset>> {
        let found = self.log.offset_for_timestamp(timestamp).await?;
        Ok(found.filter(|f| f.offset < self.high_watermark()))
    }

    /// Moves the log start to `offset` (DeleteRecords); it cannot pass the
    /// high watermark.
    pub async fn delete_records_before(&self, offset: i64) -> Result<i64> {
        let high_watermark = self.high_watermark();
        if offset > high_watermark {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start_offset: self.log.log_start_offset(),
                log_end_offset: high_watermark,
            });
        }
        self.log.delete_records_before(offset).await
    }

    pub async fn enforce_retention(&self, now_ms: i64) -> Result<RetentionOutcome> {
        self.log.enforce_retention(now_ms).await
    }

    pub async fn expire_producers(&self, now_ms: i64) -> usize {
        self.log.expire_producers(now_ms).await
    }

    pub async fn clean(&self, limits: CleanerLimits) -> Result<Option<CleanOutcome>> {
        self.log.clean(limits).await
    }

    /// A compacted partition's clean point (records before it were cleaned
    /// against every newer key); `None` for a partition that is not compacted.
    pub fn cleaned_to(&self) -> Option<i64> {
        self.config()
            .compaction
            .map(|_| self.log.cleaned_to().max(self.log.log_start_offset()))
    }

    /// See [`PartitionLog::close_begin`]; wakes waiting fetches.
    pub async fn close_begin(&self) -> Result<bool> {
        let begun = self.log.close_begin().await;
        self.moved.notify_all();
        begun
    }

    /// See [`PartitionLog::close_end`].
    pub async fn close_end(&self) -> Result<()> {
        self.log.close_end().await
    }

    /// Closes the log (synced, indexes written) and wakes waiting fetches.
    pub async fn close(&self) -> Result<()> {
        let closed = self.log.close().await;
        self.moved.notify_all();
        closed
    }
}

/// The length of the whole batches at the start of `data` whose base offset
/// is before `end` (a trailing partial batch counts as one whole batch).
fn batches_before(data: &[u8], end: i64) -> usize {
    let mut at = 0;
    while at < data.len() {
        let Ok(header) = BatchHeader::parse(&data[at..]) else {
            return data.len();
        };
        if header.base_offset >= end {
            return at;
        }
        at += header.total_len();
    }
    data.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rill_storage::batch::{self, RecordSpec};

    fn batch_of(value: &[u8]) -> (Bytes, BatchHeader) {
        let records = [RecordSpec {
            value: Some(value),
            ..Default::default()
        }];
        let b = Bytes::from(batch::encode_uncompressed(0, &records));
        let h = batch::validate(&b, 1 << 20).unwrap();
        (b, h)
    }

    /// Under `flush = always` a record is readable once synced: before that
    /// the high watermark stays behind the log end, a read there returns
    /// nothing, ListOffsets' answer (the high watermark) does not count it,
    /// DeleteRecords cannot pass it, and a waiting fetch wakes only when the
    /// sync moves the high watermark.
    #[test]
    fn consumers_see_only_what_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p0");
        glommio::LocalExecutorBuilder::default()
            .spawn(move || async move {
                let config = LogConfig {
                    flush: FlushPolicy::Always,
                    ..LogConfig::default()
                };
                let log = PartitionLog::open(&path, config).await.unwrap();
                let part = std::rc::Rc::new(Partition::new(Uuid::nil(), log, None));
                let (b, h) = batch_of(b"one");
                part.append_unsynced(b, h, true).await.unwrap();
                assert_eq!((part.high_watermark(), part.log_end_offset()), (0, 1));
                assert!(part.read(0, 1 << 20).await.unwrap().is_empty());
                assert!(part.delete_records_before(1).await.is_err());
                let waiting = {
                    let part = part.clone();
                    glommio::spawn_local(async move { part.wait_for_data(0).await })
                };
                glommio::yield_if_needed().await;
                part.make_durable(1).await.unwrap();
                waiting.await;
                assert_eq!(part.high_watermark(), 1);
                let data = part.read(0, 1 << 20).await.unwrap();
                assert_eq!(BatchHeader::parse(&data).unwrap().base_offset, 0);
                assert_eq!(part.delete_records_before(1).await.unwrap(), 1);
                part.close().await.unwrap();
            })
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn a_read_ends_before_the_high_watermark() {
        let (one, _) = batch_of(b"one");
        let mut second = one.to_vec();
        batch::header::set_base_offset(&mut second, 1);
        let both = [one.to_vec(), second].concat();
        assert_eq!(batches_before(&both, 1), one.len());
        assert_eq!(batches_before(&both, 2), both.len());
        assert_eq!(batches_before(&both, 0), 0);
    }
}
