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
//!
//! After a clean stop a partition starts dormant: it answers offsets and
//! sizes from the stop's record ([`crate::shard::clean_stop`]) without its
//! log open, and the first request that needs the log (a read past the end
//! it recorded, an append, a timestamp lookup, retention, cleaning) opens
//! it, once; the shard opens the others behind.

use std::cell::{Cell, OnceCell, RefCell};
use std::path::PathBuf;

use bytes::Bytes;
use rill_storage::batch::{BatchHeader, Compression};
use rill_storage::compaction::CleanerLimits;
use rill_storage::io::DmaDisk;
use rill_storage::journal::{Journal, JournalName};
use rill_storage::signal::Signal;
use rill_storage::{
    AppendInfo, CleanOutcome, FlushPolicy, LogConfig, PartitionLog, RetentionOutcome, StorageError,
    TimestampOffset,
};
use uuid::Uuid;

use crate::shard::clean_stop::Closed;

type Result<T> = std::result::Result<T, StorageError>;

pub struct Partition {
    pub topic_id: Uuid,
    /// Set once open: at once for a partition opened in full, on first
    /// need for a dormant one.
    log: OnceCell<PartitionLog>,
    /// While the log is not open: how to open it, and what the last clean
    /// stop recorded of it (see [`crate::shard::clean_stop`]).
    dormant: RefCell<Option<Dormant>>,
    /// Held while a dormant log opens, so it opens once.
    waking: async_lock::Mutex<()>,
    /// Closed before its log was opened: it never will be.
    closed_dormant: Cell<bool>,
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

/// A partition serving from its clean-stop record, its log not open yet.
pub struct Dormant {
    pub dir: PathBuf,
    pub config: LogConfig,
    /// The shard journal the log attaches to when it opens.
    pub journal: Option<(Journal<DmaDisk>, JournalName)>,
    pub closed: Closed,
}

impl Partition {
    /// See [`PartitionLog::park_begin`]; a dormant partition holds nothing.
    pub async fn park_begin(
        &self,
        idle_ms: i64,
    ) -> std::result::Result<rill_storage::log::Park, rill_storage::StorageError> {
        match self.log.get() {
            Some(log) => log.park_begin(idle_ms).await,
            None => Ok(rill_storage::log::Park::NotIdle),
        }
    }

    /// See [`PartitionLog::park_end`].
    pub async fn park_end(&self) -> std::result::Result<(), rill_storage::StorageError> {
        match self.log.get() {
            Some(log) => log.park_end().await,
            None => Ok(()),
        }
    }

    pub fn new(topic_id: Uuid, log: PartitionLog, recompress_to: Option<Compression>) -> Partition {
        let flush = log.config().flush;
        Partition::with(topic_id, OnceCell::from(log), None, flush, recompress_to)
    }

    /// A partition that serves from its clean-stop record until its log is
    /// needed (or [`open_log`](Self::open_log) opens it behind).
    pub fn dormant(
        topic_id: Uuid,
        dormant: Dormant,
        recompress_to: Option<Compression>,
    ) -> Partition {
        let flush = dormant.config.flush;
        Partition::with(
            topic_id,
            OnceCell::new(),
            Some(dormant),
            flush,
            recompress_to,
        )
    }

    fn with(
        topic_id: Uuid,
        log: OnceCell<PartitionLog>,
        dormant: Option<Dormant>,
        flush: FlushPolicy,
        recompress_to: Option<Compression>,
    ) -> Partition {
        Partition {
            topic_id,
            log,
            dormant: RefCell::new(dormant),
            waking: async_lock::Mutex::new(()),
            closed_dormant: Cell::new(false),
            moved: Signal::default(),
            synced_is_stored: Cell::new(flush == FlushPolicy::Always),
            recompress_to: Cell::new(recompress_to),
        }
    }

    /// Whether the log is open (not dormant).
    pub fn is_open(&self) -> bool {
        self.log.get().is_some()
    }

    /// The log, opened first if the partition is dormant (concurrent
    /// callers wait for the one open).
    pub async fn open_log(&self) -> Result<&PartitionLog> {
        if let Some(log) = self.log.get() {
            return Ok(log);
        }
        let _waking = self.waking.lock().await;
        if let Some(log) = self.log.get() {
            return Ok(log);
        }
        if self.closed_dormant.get() {
            return Err(StorageError::Closed);
        }
        let (dir, config, journal) = {
            let d = self.dormant.borrow();
            let d = d.as_ref().expect("a partition without its log is dormant");
            (d.dir.clone(), d.config.clone(), d.journal.clone())
        };
        let log = PartitionLog::open(&dir, config).await?;
        if let Some((journal, name)) = journal {
            log.attach_journal(journal, name).await?;
        }
        // What the record said and the log say alike, unless the files
        // changed behind the broker's back: the log is the truth.
        let was = self.dormant.borrow_mut().take().map(|d| d.closed);
        if let Some(was) = was {
            if (was.log_start, was.log_end) != (log.log_start_offset(), log.log_end_offset()) {
                tracing::warn!(dir = %dir.display(), recorded_start = was.log_start, recorded_end = was.log_end,
                    log_start = log.log_start_offset(), log_end = log.log_end_offset(),
                    "a partition's log differs from its clean-stop record");
            }
        }
        self.synced_is_stored
            .set(log.config().flush == FlushPolicy::Always);
        let log = self.log.get_or_init(|| log);
        self.moved.notify_all();
        Ok(log)
    }

    /// What the clean-stop record says while dormant.
    fn recorded(&self) -> Option<Closed> {
        self.dormant.borrow().as_ref().map(|d| d.closed)
    }

    /// Segments and bytes on disk of this partition's log.
    pub fn disk_usage(&self) -> (usize, u64) {
        match (self.log.get(), self.recorded()) {
            (Some(log), _) => (log.segment_count(), log.size_bytes()),
            (None, Some(c)) => (c.segments, c.bytes),
            (None, None) => (0, 0),
        }
    }

    /// Bytes of recent batches this partition keeps in memory for readers.
    pub fn cache_bytes(&self) -> usize {
        self.log.get().map_or(0, |log| log.cache_bytes())
    }

    /// Idempotent producers this partition remembers.
    pub fn producer_count(&self) -> usize {
        self.log.get().map_or(0, |log| log.producer_count())
    }

    pub fn log_start_offset(&self) -> i64 {
        match self.log.get() {
            Some(log) => log.log_start_offset(),
            None => self.recorded().map_or(0, |c| c.log_start),
        }
    }

    pub fn log_end_offset(&self) -> i64 {
        match self.log.get() {
            Some(log) => log.log_end_offset(),
            None => self.recorded().map_or(0, |c| c.log_end),
        }
    }

    /// The offset before which consumers may read (see the module docs).
    /// A dormant partition's: its end at the clean stop, when all of it
    /// was synced.
    pub fn high_watermark(&self) -> i64 {
        match self.log.get() {
            Some(log) if self.synced_is_stored.get() => log.stored_offset(),
            Some(log) => log.log_end_offset(),
            None => self.recorded().map_or(0, |c| c.log_end),
        }
    }

    pub fn config(&self) -> LogConfig {
        match self.log.get() {
            Some(log) => log.config(),
            None => self
                .dormant
                .borrow()
                .as_ref()
                .map(|d| d.config.clone())
                .expect("a partition without its log is dormant"),
        }
    }

    pub fn reconfigure(&self, config: LogConfig) {
        self.synced_is_stored
            .set(config.flush == FlushPolicy::Always);
        match self.log.get() {
            Some(log) => log.reconfigure(config),
            None => {
                if let Some(d) = self.dormant.borrow_mut().as_mut() {
                    d.config = config;
                }
            }
        }
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
        let log = self.open_log().await?;
        let appended = if awaited {
            log.append_validated_unsynced(batch, header).await
        } else {
            log.append_validated_lazy(batch, header).await
        };
        if !self.synced_is_stored.get() {
            self.moved.notify_all();
        }
        appended
    }

    /// Has the shard journal's next step take the batches before `offset`
    /// without waiting (see [`PartitionLog::expect_durable`]); for a caller
    /// about to wait on several partitions one after another.
    pub fn expect_durable(&self, offset: i64) {
        if let Some(log) = self.log.get() {
            log.expect_durable(offset);
        }
    }

    /// Waits until everything before `offset` is on stable storage.
    pub async fn make_durable(&self, offset: i64) -> Result<()> {
        let synced = self.open_log().await?.make_durable(offset).await;
        self.moved.notify_all();
        synced
    }

    /// Validates and appends `batch`, then makes it durable.
    pub async fn append_durable(&self, batch: Bytes) -> Result<AppendInfo> {
        let info = self.open_log().await?.append(batch).await?;
        self.make_durable(info.last_offset + 1).await?;
        Ok(info)
    }

    /// What a consumer is sent for a fetch at `offset`: whole batches up to
    /// `max_bytes` (at least one), none at or past the high watermark. At or
    /// past the high watermark but within the log: nothing.
    pub async fn read(&self, offset: i64, max_bytes: usize) -> Result<Bytes> {
        let high_watermark = self.high_watermark();
        if offset >= high_watermark && offset <= self.log_end_offset() {
            return Ok(Bytes::new());
        }
        let data = self.open_log().await?.fetch(offset, max_bytes).await?;
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
        if self.high_watermark() > seen || self.is_closed() {
            return true;
        }
        self.moved.register(waker);
        false
    }

    /// Resolves once the high watermark passes `seen`, or the partition closes.
    pub async fn wait_for_data(&self, seen: i64) {
        self.moved
            .wait_until(|| (self.high_watermark() > seen || self.is_closed()).then_some(()))
            .await
    }

    pub async fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<TimestampOffset>> {
        let found = self
            .open_log()
            .await?
            .offset_for_timestamp(timestamp)
            .await?;
        Ok(found.filter(|f| f.offset < self.high_watermark()))
    }

    /// Moves the log start to `offset` (DeleteRecords); it cannot pass the
    /// high watermark.
    pub async fn delete_records_before(&self, offset: i64) -> Result<i64> {
        let high_watermark = self.high_watermark();
        if offset > high_watermark {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start_offset: self.log_start_offset(),
                log_end_offset: high_watermark,
            });
        }
        self.open_log().await?.delete_records_before(offset).await
    }

    pub async fn enforce_retention(&self, now_ms: i64) -> Result<RetentionOutcome> {
        self.open_log().await?.enforce_retention(now_ms).await
    }

    /// A dormant partition's log has no producers in memory to expire.
    pub async fn expire_producers(&self, now_ms: i64) -> usize {
        match self.log.get() {
            Some(log) => log.expire_producers(now_ms).await,
            None => 0,
        }
    }

    pub async fn clean(&self, limits: CleanerLimits) -> Result<Option<CleanOutcome>> {
        self.open_log().await?.clean(limits).await
    }

    /// A compacted partition's clean point (records before it were cleaned
    /// against every newer key); `None` for a partition that is not compacted.
    pub fn cleaned_to(&self) -> Option<i64> {
        self.config()
            .compaction
            .map(|_| self.log_cleaned_to().max(self.log_start_offset()))
    }

    /// The log's own clean point (0 before any cleaning).
    fn log_cleaned_to(&self) -> i64 {
        match self.log.get() {
            Some(log) => log.cleaned_to(),
            None => self.recorded().map_or(0, |c| c.cleaned_to),
        }
    }

    /// What a clean stop records of this partition once it is closed.
    pub fn closed_record(&self) -> Closed {
        let (segments, bytes) = self.disk_usage();
        Closed {
            log_start: self.log_start_offset(),
            log_end: self.log_end_offset(),
            segments,
            bytes,
            cleaned_to: self.log_cleaned_to(),
        }
    }

    fn is_closed(&self) -> bool {
        match self.log.get() {
            Some(log) => log.is_closed(),
            None => self.closed_dormant.get(),
        }
    }

    /// Marks a dormant partition closed (its files are as the last clean
    /// stop left them): true if it was dormant. Waits for an open under way.
    async fn close_dormant(&self) -> bool {
        let _waking = self.waking.lock().await;
        if self.log.get().is_some() {
            return false;
        }
        self.closed_dormant.set(true);
        self.moved.notify_all();
        true
    }

    /// See [`PartitionLog::close_begin`]; wakes waiting fetches.
    pub async fn close_begin(&self) -> Result<bool> {
        if self.close_dormant().await {
            return Ok(false);
        }
        let log = self.log.get().expect("open");
        let begun = log.close_begin().await;
        self.moved.notify_all();
        begun
    }

    /// See [`PartitionLog::close_end`].
    pub async fn close_end(&self) -> Result<()> {
        match self.log.get() {
            Some(log) => log.close_end().await,
            None => Ok(()),
        }
    }

    /// Closes the log (synced, indexes written) and wakes waiting fetches.
    pub async fn close(&self) -> Result<()> {
        if self.close_dormant().await {
            return Ok(());
        }
        let closed = self.log.get().expect("open").close().await;
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
    /// Runs `f` on a glommio executor with a log directory of its own.
    fn with_log_dir<F, Fut>(f: F)
    where
        F: FnOnce(std::path::PathBuf) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + 'static,
    {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p0");
        glommio::LocalExecutorBuilder::default()
            .spawn(move || f(path))
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn consumers_see_only_what_is_stored() {
        with_log_dir(|path| async move {
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
        });
    }

    /// A partition serving from its clean-stop record answers offsets and
    /// sizes without opening its log; a read, an append or a timestamp
    /// lookup opens it once (concurrent ones share the open) and goes on
    /// from where the log really ends; a dormant partition closed never
    /// opens.
    #[test]
    fn a_dormant_partition_answers_from_its_record_and_opens_on_need() {
        with_log_dir(|path| async move {
            let config = LogConfig::default();
            let log = PartitionLog::open(&path, config.clone()).await.unwrap();
            let first = std::rc::Rc::new(Partition::new(Uuid::nil(), log, None));
            for v in [b"one", b"two"] {
                let (b, h) = batch_of(v);
                let info = first.append_unsynced(b, h, true).await.unwrap();
                first.make_durable(info.last_offset + 1).await.unwrap();
            }
            first.close().await.unwrap();
            let closed = first.closed_record();
            assert_eq!(
                (closed.log_start, closed.log_end, closed.segments),
                (0, 2, 1)
            );
            let dormant = |config: LogConfig| Dormant {
                dir: path.clone(),
                config,
                journal: None,
                closed,
            };
            let part = std::rc::Rc::new(Partition::dormant(
                Uuid::nil(),
                dormant(config.clone()),
                None,
            ));
            assert!(!part.is_open());
            assert_eq!(
                (
                    part.log_start_offset(),
                    part.high_watermark(),
                    part.log_end_offset()
                ),
                (0, 2, 2)
            );
            assert_eq!(part.disk_usage(), (closed.segments, closed.bytes));
            // At the end: nothing to read, and no open for it.
            assert!(part.read(2, 1 << 20).await.unwrap().is_empty());
            assert!(!part.is_open());
            // Two reads at once: one open, both answered.
            let (a, b) = futures_util::join!(part.read(0, 1 << 20), part.read(1, 1 << 20));
            assert_eq!(BatchHeader::parse(&a.unwrap()).unwrap().base_offset, 0);
            assert_eq!(BatchHeader::parse(&b.unwrap()).unwrap().base_offset, 1);
            assert!(part.is_open());
            let (b, h) = batch_of(b"three");
            let info = part.append_unsynced(b, h, true).await.unwrap();
            assert_eq!(info.base_offset, 2);
            part.make_durable(3).await.unwrap();
            assert_eq!(part.high_watermark(), 3);
            part.close().await.unwrap();
            // Closed while dormant: it never opens, and waiting
            // fetches are let go.
            let closed = part.closed_record();
            assert_eq!(closed.log_end, 3);
            let part = Partition::dormant(
                Uuid::nil(),
                Dormant {
                    closed,
                    ..dormant(config)
                },
                None,
            );
            assert!(!part.close_begin().await.unwrap());
            assert!(part.poll_data(3, &futures_util::task::noop_waker()));
            assert!(matches!(part.open_log().await, Err(StorageError::Closed)));
            assert!(matches!(
                part.append_unsynced(batch_of(b"x").0, batch_of(b"x").1, true)
                    .await,
                Err(StorageError::Closed)
            ));
        });
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
