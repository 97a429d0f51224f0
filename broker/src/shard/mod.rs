//! A shard: one glommio executor pinned to one core, owning its partitions
//! outright. Work for another shard's partitions travels as a `Send` closure
//! over a channel and runs on the owner; its answer comes back over a
//! one-shot channel. Record data crosses as `Bytes` (reference counted, no copy).

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;

use rill_net::kafka_protocol::ResponseError;
use rill_storage::io::{Disk, DmaDisk};
use rill_storage::log::Park;
use rill_storage::signal::Signal;

use crate::cluster::{ClusterMeta, Controller};
use crate::config::BrokerConfig;
use crate::producer_ids::ProducerIds;
use partition_table::PartitionTable;

pub mod clean_stop;
pub mod group_table;
pub mod journal;
mod metadata;
pub mod partition_table;
mod producer_id_blocks;

pub use crate::partition::Partition;

/// Work sent to a shard: runs there with access to the shard's state.
pub type Job = Box<dyn FnOnce(Rc<Shard>) -> Pin<Box<dyn Future<Output = ()>>> + Send>;

/// Bound on jobs queued for one shard before senders wait.
pub const JOB_QUEUE_MAX: usize = 4096;

/// Senders to every shard's job queue.
#[derive(Clone)]
pub struct Router {
    senders: Arc<Vec<async_channel::Sender<Job>>>,
}

impl Router {
    pub fn new(senders: Vec<async_channel::Sender<Job>>) -> Router {
        Router {
            senders: Arc::new(senders),
        }
    }

    pub fn shards(&self) -> usize {
        self.senders.len()
    }

    /// Sends `job` to shard `shard` from a thread outside the shards (the
    /// admin listener's); false if that shard has stopped.
    pub fn send_blocking(&self, shard: usize, job: Job) -> bool {
        self.senders[shard].send_blocking(job).is_ok()
    }
}

/// Where a topic-partition lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    Shard(usize),
    UnknownTopicOrPartition,
}

pub struct Shard {
    pub id: usize,
    pub config: Arc<BrokerConfig>,
    pub router: Router,
    /// Host and port clients are told to connect to.
    pub advertised: (String, u16),
    meta: RefCell<Arc<ClusterMeta>>,
    partitions: RefCell<PartitionTable>,
    /// Present on shard 0: the owner of metadata changes.
    pub controller: Option<Controller>,
    /// Present on shard 0, beside the controller: idempotent producers' ids.
    pub producer_ids: Option<ProducerIds>,
    pub stopping: Cell<bool>,
    pub stop_signal: Signal,
    /// The consumer groups whose offsets partitions this shard owns.
    pub groups: group_table::GroupTable,
    /// Held while the shard applies a metadata state.
    applying: async_lock::Mutex<()>,
    /// Partitions this shard owns that it could not open at the last apply.
    unopened: Cell<usize>,
    /// The durable step of this shard's partitions (see [`journal`]).
    journal: RefCell<Option<rill_storage::journal::Journal<rill_storage::io::DmaDisk>>>,
    /// What this shard counts for `/metrics`.
    pub counters: crate::metrics::ShardCounters,
    /// The last clean stop's records, until this shard's start has placed
    /// its partitions (see [`clean_stop`]).
    clean_stop: RefCell<Option<Arc<clean_stop::Records>>>,
}

/// A partition not appended to for this long gives back its buffers and
/// reservations ([`Shard::release_idle`]).
pub const IDLE_MS: i64 = 10_000;

impl Shard {
    pub fn new(
        id: usize,
        config: Arc<BrokerConfig>,
        router: Router,
        advertised: (String, u16),
        meta: Arc<ClusterMeta>,
        controller: Option<Controller>,
    ) -> Shard {
        Shard {
            groups: group_table::GroupTable::new(config.group_limits),
            id,
            config,
            router,
            advertised,
            meta: RefCell::new(meta),
            partitions: RefCell::new(PartitionTable::default()),
            producer_ids: controller.as_ref().map(|_| ProducerIds::default()),
            controller,
            stopping: Cell::new(false),
            stop_signal: Signal::default(),
            applying: async_lock::Mutex::new(()),
            unopened: Cell::new(0),
            counters: Default::default(),
            journal: RefCell::new(None),
            clean_stop: RefCell::new(None),
        }
    }

    /// The metadata snapshot this shard currently serves.
    pub fn meta(&self) -> Arc<ClusterMeta> {
        self.meta.borrow().clone()
    }

    pub fn owner(&self, topic: &str, partition: i32) -> Owner {
        let meta = self.meta.borrow();
        match meta
            .topics
            .get(topic)
            .and_then(|t| t.partitions.get(usize::try_from(partition).ok()?))
        {
            Some(p) => Owner::Shard(p.shard),
            None => Owner::UnknownTopicOrPartition,
        }
    }

    /// The topic defaults in force under `meta`: the broker's static ones
    /// with the dynamic broker configs over them.
    pub fn topic_defaults_of(&self, meta: &ClusterMeta) -> crate::config::TopicDefaults {
        crate::config::broker_config::effective_defaults(
            &self.config.topic_defaults,
            meta,
            self.config.node_id,
        )
    }

    /// The partitions this shard has open, by name.
    pub fn partitions_snapshot(&self) -> Vec<((String, i32), Rc<Partition>)> {
        self.partitions.borrow().snapshot()
    }

    /// Partitions the metadata places here that could not be opened (they
    /// are retried).
    pub fn unopened_partitions(&self) -> usize {
        self.unopened.get()
    }

    /// How many partitions this shard has open.
    pub fn open_partitions(&self) -> usize {
        self.partitions.borrow().len()
    }

    /// A partition this shard owns and has open.
    pub fn partition(&self, topic: &str, partition: i32) -> Option<Rc<Partition>> {
        self.partitions.borrow().get(topic, partition).cloned()
    }

    /// The partition `topic`-`partition` if this shard owns it and its log
    /// is open: a request may then use it in its own task. `None` for every
    /// other case, which [`on_partition`](Self::on_partition) answers.
    pub fn open_partition_here(&self, topic: &str, partition: i32) -> Option<Rc<Partition>> {
        match self.owner(topic, partition) {
            Owner::Shard(owner) if owner == self.id => {
                self.partition(topic, partition).filter(|p| p.is_open())
            }
            _ => None,
        }
    }

    /// Runs `f` with the open partition `topic`-`partition` on the shard that
    /// owns it. The one place a request for a partition finds its owner:
    /// unknown topics and partitions are UNKNOWN_TOPIC_OR_PARTITION; one the
    /// metadata places here that is not open (yet, or any longer: opening
    /// failed and is retried, or it is being closed) is
    /// NOT_LEADER_OR_FOLLOWER, which clients retry after refreshing their
    /// metadata. With replication, "not the leader" is answered here too.
    pub async fn on_partition<T, F, Fut>(
        self: &Rc<Self>,
        topic: String,
        partition: i32,
        f: F,
    ) -> Result<T, ResponseError>
    where
        T: Send + 'static,
        F: FnOnce(Rc<Shard>, Rc<Partition>) -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
    {
        let Owner::Shard(owner) = self.owner(&topic, partition) else {
            return Err(ResponseError::UnknownTopicOrPartition);
        };
        self.on(owner, move |s| async move {
            let part = s
                .partition(&topic, partition)
                .ok_or(ResponseError::NotLeaderOrFollower)?;
            Ok(f(s, part).await)
        })
        .await
    }

    /// Runs `f` on shard `shard` and returns its result; runs inline when that
    /// is this shard.
    pub async fn on<T, F, Fut>(self: &Rc<Self>, shard: usize, f: F) -> T
    where
        T: Send + 'static,
        F: FnOnce(Rc<Shard>) -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
    {
        if shard == self.id {
            return f(self.clone()).await;
        }
        let (tx, rx) = async_channel::bounded(1);
        let job: Job = Box::new(move |s| {
            Box::pin(async move {
                let _ = tx.send(f(s).await).await;
            })
        });
        self.router.senders[shard]
            .send(job)
            .await
            .expect("shards serve jobs until every shard has closed (runtime::run)");
        rx.recv()
            .await
            .expect("a job's answer is dropped only with its shard, which outlives every caller")
    }

    /// Runs jobs sent by other shards until the queue closes.
    pub async fn serve_jobs(self: Rc<Self>, jobs: async_channel::Receiver<Job>) {
        while let Ok(job) = jobs.recv().await {
            glommio::spawn_local(job(self.clone())).detach();
        }
    }

    /// Gives back what partitions idle for [`IDLE_MS`] hold (write
    /// buffers, caches of recent batches, disk reserved ahead): memory and
    /// disk follow the partitions being written, not the partitions there are.
    /// They are parked as a clean stop leaves them, with two filesystem
    /// syncs for all of them (as [`close_all`](Self::close_all) does) instead
    /// of two `fdatasync`s each: 80,000 partitions going idle at once take
    /// seconds, not half a minute.
    pub async fn release_idle(self: &Rc<Self>) {
        let began = std::time::Instant::now();
        let parts = self.partitions.borrow().all();
        let released = std::cell::Cell::new(0usize);
        let awaiting = std::cell::RefCell::new(Vec::new());
        futures_util::StreamExt::for_each_concurrent(
            futures_util::stream::iter(parts),
            metadata::OPENS_IN_FLIGHT,
            |part| {
                let (released, awaiting) = (&released, &awaiting);
                async move {
                    if self.stopping.get() {
                        // A stop seals every log with two `syncfs` calls in
                        // all; parking more now only delays it.
                        return;
                    }
                    match part.park_begin(IDLE_MS).await {
                        Ok(Park::NotIdle) => {}
                        Ok(Park::Parked) => released.set(released.get() + 1),
                        Ok(Park::AwaitsSync) => awaiting.borrow_mut().push(part),
                        // A failed log reports itself on its next request.
                        Err(e) => tracing::debug!(shard = self.id, error = %e, "parking an idle partition failed"),
                    }
                }
            },
        )
        .await;
        let awaiting = awaiting.into_inner();
        let written = began.elapsed();
        let sealed = awaiting.len();
        self.sync_and_finish(awaiting, "parked", |part| async move {
            match part.park_end().await {
                Ok(()) => true,
                Err(e) => {
                    tracing::debug!(shard = self.id, error = %e, "parking an idle partition failed");
                    false
                }
            }
        })
        .await;
        let released = released.get() + sealed;
        if released > 0 {
            tracing::debug!(
                shard = self.id,
                released,
                sealed,
                written_ms = written.as_millis() as u64,
                ms = began.elapsed().as_millis() as u64,
                "parked idle partitions"
            );
        }
    }

    /// Enforces retention on every partition this shard owns, and forgets
    /// its idle producer ids.
    pub async fn run_retention(self: &Rc<Self>) {
        let now = rill_storage::batch::now_ms();
        let parts = self.partitions.borrow().snapshot();
        for ((topic, partition), part) in parts {
            match part.enforce_retention(now).await {
                Ok(out) if out.segments_deleted > 0 => tracing::info!(
                    %topic, partition, deleted = out.segments_deleted, log_start = out.log_start_offset,
                    "retention deleted segments"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(%topic, partition, error = %e, "retention failed"),
            }
            let expired = part.expire_producers(now).await;
            if expired > 0 {
                tracing::info!(%topic, partition, expired, "expired idle producer ids");
            }
        }
    }

    /// One round of the compaction cleaner over this shard's compacted
    /// partitions: passes on each until none is due, at most a few, so one
    /// busy log does not hold the others back for long.
    pub async fn run_cleaner(self: &Rc<Self>) {
        const PASSES_PER_ROUND: usize = 4;
        let limits = rill_storage::compaction::CleanerLimits {
            map_bytes: self.config.log_cleaner_dedupe_buffer_bytes,
            io_bytes_per_second: self.config.log_cleaner_io_max_bytes_per_second,
        };
        let parts = self.partitions.borrow().snapshot();
        for ((topic, partition), part) in parts {
            if part.config().compaction.is_none() {
                continue;
            }
            for _ in 0..PASSES_PER_ROUND {
                if self.stopping.get() {
                    return;
                }
                match part.clean(limits).await {
                    Ok(Some(o)) => {
                        self.counters.cleaned(&o);
                        tracing::info!(
                            %topic, partition, segments_read = o.segments_read, segments_written = o.segments_written,
                            bytes_read = o.bytes_read, bytes_written = o.bytes_written,
                            records_removed = o.records_removed, cleaned_to = o.cleaned_to,
                            "compacted"
                        )
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!(%topic, partition, error = %e, "compaction failed; retrying later");
                        break;
                    }
                }
            }
        }
    }

    /// Clean shutdown of every partition: synced, indexes written, clean marker.
    pub async fn close_all(self: &Rc<Self>) {
        // Two filesystem syncs for the whole shard instead of two
        // `fdatasync`s per partition: a stop with 100,000 partitions written
        // in the last seconds takes seconds, not minutes.
        // After the opening at start (or a metadata change) is done: no
        // partition opens behind the drain.
        let began = std::time::Instant::now();
        let _applying = self.applying.lock().await;
        let parts = self.partitions.borrow_mut().drain();
        let count = parts.len();
        let closed = parts.clone();
        let all_closed = std::cell::Cell::new(true);
        let sealed = std::cell::RefCell::new(Vec::new());
        futures_util::StreamExt::for_each_concurrent(
            futures_util::stream::iter(parts),
            metadata::OPENS_IN_FLIGHT,
            |((topic, partition), part)| {
                let (all_closed, sealed) = (&all_closed, &sealed);
                async move {
                    match part.close_begin().await {
                        Ok(true) => sealed.borrow_mut().push(((topic, partition), part)),
                        Ok(false) => {}
                        Err(e) => {
                            tracing::error!(%topic, partition, error = %e, "closing a partition failed");
                            all_closed.set(false);
                        }
                    }
                }
            },
        )
        .await;
        let sealed = sealed.into_inner();
        let written = began.elapsed();
        let sealed_count = sealed.len();
        let finished = self
            .sync_and_finish(sealed, "closed", |((topic, partition), part)| async move {
                match part.close_end().await {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::error!(%topic, partition, error = %e, "closing a partition failed");
                        false
                    }
                }
            })
            .await;
        if !finished {
            all_closed.set(false);
        }
        let all_closed = all_closed.get();
        tracing::info!(
            shard = self.id,
            partitions = count,
            sealed = sealed_count,
            written_ms = written.as_millis() as u64,
            total_ms = began.elapsed().as_millis() as u64,
            "partitions closed"
        );
        // Every segment is synced: the journal holds nothing the next start
        // needs. (Otherwise it stays, and is replayed.)
        let journal = self.journal.borrow_mut().take();
        let mut journal_closed = journal.is_none();
        if let Some(j) = journal.filter(|_| all_closed) {
            match j.close().await {
                Ok(()) => journal_closed = true,
                Err(e) => {
                    tracing::warn!(shard = self.id, error = %e, "removing the shard journal failed")
                }
            }
        }
        // All closed and nothing to replay: the next start may serve these
        // partitions from what they are now before it opens their logs.
        if all_closed && journal_closed {
            let record: Vec<_> = closed
                .iter()
                .map(|((topic, partition), part)| {
                    (
                        topic.clone(),
                        *partition,
                        part.topic_id,
                        part.closed_record(),
                    )
                })
                .collect();
            let data_dir = self.config.data_dir.clone();
            let id = self.id;
            let saved = glommio::executor()
                .spawn_blocking(move || clean_stop::save(&data_dir, id, record))
                .await;
            if let Err(e) = saved {
                tracing::warn!(shard = self.id, error = %e, "writing the clean-stop record failed; the next start opens every partition first");
            }
        }
    }

    /// Hands this shard the last clean stop's records for its start.
    pub fn use_clean_stop(&self, records: Arc<clean_stop::Records>) {
        *self.clean_stop.borrow_mut() = Some(records);
    }

    /// The start has placed its partitions: the records are stale from
    /// here on.
    pub fn forget_clean_stop(&self) {
        self.clean_stop.borrow_mut().take();
    }

    /// Opens the logs of partitions still serving from the clean-stop
    /// record, a few at a time, behind the requests that open them on
    /// demand; returns how many it opened.
    pub async fn open_dormant(self: &Rc<Self>) -> usize {
        let dormant: Vec<_> = self
            .partitions
            .borrow()
            .all()
            .into_iter()
            .filter(|p| !p.is_open())
            .collect();
        let opened = Cell::new(0usize);
        futures_util::StreamExt::for_each_concurrent(
            futures_util::stream::iter(dormant),
            metadata::OPENS_IN_FLIGHT,
            |part| {
                let opened = &opened;
                async move {
                    if self.stopping.get() {
                        return;
                    }
                    match part.open_log().await {
                        Ok(_) => opened.set(opened.get() + 1),
                        // Deleted (or moved) while it waited here.
                        Err(rill_storage::StorageError::Closed) => {}
                        // Its next request opens it again and reports why.
                        Err(e) => tracing::warn!(shard = self.id, error = %e, "opening a partition's log failed"),
                    }
                }
            },
        )
        .await;
        opened.get()
    }

    /// The rest of sealing many logs with two filesystem syncs in all (a
    /// stop, an idle sweep) after each one's first step: one `syncfs` makes
    /// what they wrote out durable, `finish` writes each one's clean
    /// checkpoint (false: it failed), and a second `syncfs` makes those
    /// durable. Returns whether all of it worked; a log left short of it is
    /// recovered at its next open, and the journal keeps its batches.
    async fn sync_and_finish<T, F, Fut>(&self, sealed: Vec<T>, what: &str, finish: F) -> bool
    where
        F: Fn(T) -> Fut,
        Fut: Future<Output = bool>,
    {
        if sealed.is_empty() {
            return true;
        }
        if let Err(e) = DmaDisk.sync_filesystem(&self.config.data_dir).await {
            tracing::error!(shard = self.id, error = %e, "syncing the {what} partitions failed; their next open recovers them");
            return false;
        }
        let all = Cell::new(true);
        futures_util::StreamExt::for_each_concurrent(
            futures_util::stream::iter(sealed),
            metadata::OPENS_IN_FLIGHT,
            |t| {
                let (all, finished) = (&all, finish(t));
                async move {
                    if !finished.await {
                        all.set(false);
                    }
                }
            },
        )
        .await;
        if let Err(e) = DmaDisk.sync_filesystem(&self.config.data_dir).await {
            tracing::error!(shard = self.id, error = %e, "syncing the {what} partitions' clean checkpoints failed; their next open recovers them");
            all.set(false);
        }
        all.get()
    }

    pub fn stop(&self) {
        self.stopping.set(true);
        self.stop_signal.notify_all();
    }

    /// Resolves once shutdown has begun.
    pub async fn stopped(&self) {
        self.stop_signal
            .wait_until(|| self.stopping.get().then_some(()))
            .await
    }
}
