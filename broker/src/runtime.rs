//! Broker bootstrap: metadata, one pinned executor per core, listeners,
//! periodic retention, and a clean shutdown when asked.
//!
//! [`Broker::start`] runs a whole broker inside the calling process and
//! returns a [`BrokerHandle`]; the `rill broker` binary is that plus signal
//! handling. Embedding it gives a Rust application a real broker in its own
//! tests:
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use rill_broker::{Broker, BrokerConfig};
//!
//! let dir = tempfile::tempdir()?;
//! // Port 0 on loopback, one shard, data in the temporary directory.
//! let broker = Broker::start(BrokerConfig::ephemeral(dir.path())?)?;
//! let addr = broker.addr(); // give this to any Kafka client
//! assert!(addr.ip().is_loopback() && addr.port() != 0);
//! std::net::TcpStream::connect(addr)?;
//! futures_lite::future::block_on(broker.shutdown())?;
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use glommio::{ExecutorJoinHandle, LocalExecutorBuilder, Placement};

use crate::cluster::{apply, store, ClusterMeta, Controller};
use crate::config::BrokerConfig;
use crate::error::{BrokerError, IoContext, Result};
use crate::file_limits;
use crate::server;
use crate::shard::{Job, Router, Shard, JOB_QUEUE_MAX};

/// A broker running in this process.
pub struct Broker;

/// A running broker: where it listens, and how to stop it.
pub struct BrokerHandle {
    addr: SocketAddr,
    advertised: (String, u16),
    shards: usize,
    data_dir: PathBuf,
    /// Closed (not sent on) to stop: every shard's receiver sees it.
    stop: async_channel::Sender<()>,
    /// Set when a stop begins (the admin listener then says not ready).
    stopping: Arc<std::sync::atomic::AtomicBool>,
    admin: Option<crate::admin::AdminServer>,
    threads: Vec<ExecutorJoinHandle<()>>,
}

/// How long a shard runs tasks before it goes back to io_uring, submitting
/// the reads and writes its tasks queued and taking in what completed.
/// glommio's default is 100 ms, and it sends a file's I/O only then: in
/// `many-partitions-1000` a journal step's 3 MB write was on the device for
/// about 2 ms (kernel trace) but took 9–10 ms as the shard saw it, because
/// the shard ran its tasks for 5–12 ms at a stretch before submitting the
/// write and again before taking its completion. With 0.5 ms (Seastar's
/// task quota) the same write took 6 ms (README, "Where a journal step's
/// time goes"). It costs about a tenth more CPU per GB at low load: more
/// trips into io_uring.
pub const SHARD_TASK_QUOTA: std::time::Duration = std::time::Duration::from_micros(500);

/// Memory each shard's io_uring reads and writes take their buffers from
/// (allocated and registered with the kernel once): an eighth of the
/// shard's share of the memory budget, 16 to 64 MiB (64 MiB at the default
/// budget on 2 cores). glommio's default, 10 MiB, is less than a catch-up
/// consumer's 8 MiB reads next to the write buffers: past it each buffer
/// came from the heap and was faulted in page by page for every read (about
/// a tenth of the broker's CPU in `catch-up-1kb-1p`; with a 64 MiB pool the
/// backlog was read 1.24× faster). A buffer the pool cannot hold still
/// comes from the heap.
fn io_memory_per_shard(memory_budget_bytes: usize, shards: usize) -> usize {
    (memory_budget_bytes / shards.max(1) / 8).clamp(16 << 20, 64 << 20)
}

/// Gives the partitions back what the last run's shard journals hold and
/// they lack (a crash after batches were acknowledged from a journal, before
/// their segments were synced), on an executor of its own before the
/// shards start. A journal that cannot be replayed stops the start: its
/// batches were acknowledged.
/// `unclean`: the last run left journal files
/// ([`any_to_replay`](crate::shard::journal::any_to_replay)).
fn replay_journals(config: &BrokerConfig, meta: &ClusterMeta, unclean: bool) -> Result<()> {
    if !unclean {
        return Ok(()); // a clean stop, or a first start
    }
    let (config, meta) = (config.clone(), meta.clone());
    LocalExecutorBuilder::default()
        .name("journal-replay")
        .spawn(move || async move {
            rill_storage::io::keep_reactor_awake();
            crate::shard::journal::replay_all(&config, &meta)
                .await
                .map_err(|e| e.to_string())
        })
        .map_err(|e| BrokerError::Config(format!("starting the journal replay: {e}")))?
        .join()
        .map_err(|e| BrokerError::Config(format!("the journal replay stopped: {e}")))?
        .map(|_| ())
        .map_err(|e| BrokerError::Config(format!("replaying the shard journals: {e}")))
}

impl Broker {
    /// Starts a broker with `config` and returns once every shard serves.
    pub fn start(mut config: BrokerConfig) -> Result<BrokerHandle> {
        let started = std::time::Instant::now();
        file_limits::budget_open_files(file_limits::raise_nofile_limit());
        rill_storage::open_files::share_between(config.cores);
        // Nothing in it yet: no earlier process left anything unsynced.
        let fresh = std::fs::read_dir(&config.data_dir).map_or(true, |mut d| d.next().is_none());
        std::fs::create_dir_all(&config.data_dir)
            .context(|| format!("creating data directory {}", config.data_dir.display()))?;
        // Resolved once, so logs name one real place and no later change of
        // the working directory can move the data.
        config.data_dir = std::fs::canonicalize(&config.data_dir)
            .context(|| format!("resolving data directory {}", config.data_dir.display()))?;
        let meta = load_fitted(&config.data_dir, config.cores)?;
        // Taken (and removed) before anything can change a log; trusted
        // only after a clean stop, when no journal is left to replay.
        let unclean = crate::shard::journal::any_to_replay(&config.data_dir);
        let recorded = crate::shard::clean_stop::recorded(&config.data_dir);
        let clean_stop = Arc::new(
            crate::shard::clean_stop::take_all(&config.data_dir, !unclean).context(|| {
                format!(
                    "taking the clean-stop records under {}",
                    config.data_dir.display()
                )
            })?,
        );
        // What an earlier process wrote and never synced (it may have been
        // killed first) is made durable before anything is served: a log
        // it made without a sync (see `rill_storage::log`'s `sync_names`)
        // opens here as clean, and its names must be on disk before this
        // process acknowledges a write to it. A clean stop synced all it
        // wrote and then left its record; a new directory holds nothing.
        // (`syncfs` waits for every dirty page of the filesystem, however
        // unrelated, such as a build's output just written.)
        if !fresh && (unclean || !recorded) {
            let began = std::time::Instant::now();
            std::fs::File::open(&config.data_dir)
                .and_then(|dir| rill_storage::io::syncfs(&dir))
                .context(|| format!("syncing data directory {}", config.data_dir.display()))?;
            let took = began.elapsed();
            if took > std::time::Duration::from_secs(1) {
                tracing::warn!(
                    secs = took.as_secs_f64(),
                    "syncing the data directory's filesystem after an unclean stop was slow \
                     (it also flushes what other programs wrote to that filesystem)"
                );
            }
        }
        replay_journals(&config, &meta, unclean)?;
        // Bind once here to learn the port (the listen address may say port
        // 0), then every shard binds the same address with SO_REUSEPORT.
        let first = server::bind_reuseport(config.listen)
            .context(|| format!("binding {}", config.listen))?;
        let bound: SocketAddr = first
            .local_addr()
            .context(|| "reading the bound address".into())?;
        let advertised = config
            .advertised_listener
            .clone()
            .unwrap_or_else(|| (bound.ip().to_string(), bound.port()));
        let mut listeners = vec![first];
        for _ in 1..config.cores {
            listeners.push(server::bind_reuseport(bound).context(|| format!("binding {bound}"))?);
        }

        let cpus: Vec<usize> = core_affinity::get_core_ids()
            .map(|ids| ids.into_iter().map(|c| c.id).collect())
            .filter(|v: &Vec<usize>| !v.is_empty())
            .unwrap_or_else(|| (0..config.cores).collect());
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..config.cores)
            .map(|_| async_channel::bounded::<Job>(JOB_QUEUE_MAX))
            .unzip();
        let router = Router::new(senders);
        let shards = config.cores;
        let data_dir = config.data_dir.clone();
        let config = Arc::new(config);
        let meta = Arc::new(meta);
        let (stop_tx, stop_rx) = async_channel::bounded::<()>(1);
        // Each shard drops its sender once its logs are closed; all are
        // dropped when the last shard is done. Until then every shard keeps
        // serving jobs, so no shard sends work to one that has already gone.
        let (closed_tx, closed_rx) = async_channel::bounded::<()>(1);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<usize>();
        let opened = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut threads = Vec::new();
        for ((id, jobs), listener) in receivers.into_iter().enumerate().zip(listeners) {
            let opened = opened.clone();
            let clean_stop = clean_stop.clone();
            let (config, router, meta, advertised) = (
                config.clone(),
                router.clone(),
                meta.clone(),
                advertised.clone(),
            );
            let (stop_rx, closed_tx, closed_rx, ready_tx) = (
                stop_rx.clone(),
                closed_tx.clone(),
                closed_rx.clone(),
                ready_tx.clone(),
            );
            let cpu = cpus[id % cpus.len()];
            let io_memory = io_memory_per_shard(config.memory_budget_bytes, shards);
            let spawned = LocalExecutorBuilder::new(Placement::Fixed(cpu))
                .name(&format!("shard-{id}"))
                .io_memory(io_memory)
                .preempt_timer(SHARD_TASK_QUOTA)
                .spawn(move || async move {
                    rill_storage::io::keep_reactor_awake();
                    let controller = (id == 0)
                        .then(|| Controller::new(config.data_dir.clone(), (*meta).clone()));
                    let shard = Rc::new(Shard::new(
                        id,
                        config.clone(),
                        router,
                        advertised,
                        meta.clone(),
                        controller,
                    ));
                    glommio::spawn_local(shard.clone().serve_jobs(jobs)).detach();
                    shard.start_journal().await;
                    shard.use_clean_stop(clean_stop);
                    // Partitions open while the shard already serves: until
                    // one is open, requests for it are answered
                    // NOT_LEADER_OR_FOLLOWER, which clients retry.
                    {
                        let (shard, opened) = (shard.clone(), opened.clone());
                        glommio::spawn_local(async move {
                            let started = std::time::Instant::now();
                            let failed = shard.apply_metadata(meta).await.len();
                            shard.forget_clean_stop();
                            let open = shard.open_partitions();
                            tracing::info!(
                                shard = id,
                                open,
                                failed,
                                secs = started.elapsed().as_secs_f64(),
                                "partitions open"
                            );
                            if opened.fetch_add(1, std::sync::atomic::Ordering::AcqRel) + 1
                                == shards
                            {
                                tracing::info!("broker ready: every shard serves its partitions");
                            }
                            // Those serving from the clean-stop record: their
                            // logs open behind the requests.
                            let logs = shard.open_dormant().await;
                            if logs > 0 {
                                tracing::info!(
                                    shard = id,
                                    logs,
                                    secs = started.elapsed().as_secs_f64(),
                                    "partition logs open behind the clean-stop record"
                                );
                            }
                        })
                        .detach();
                    }
                    {
                        let shard = shard.clone();
                        glommio::spawn_local(async move {
                            let _ = stop_rx.recv().await;
                            shard.stop();
                        })
                        .detach();
                    }
                    spawn_retention(shard.clone());
                    spawn_idle_release(shard.clone());
                    spawn_open_retry(shard.clone());
                    spawn_cleaner(shard.clone());
                    spawn_group_clock(shard.clone());
                    let _ = ready_tx.send(id);
                    drop(ready_tx);
                    // Returns once this shard's connections are done.
                    server::serve(shard.clone(), listener).await;
                    shard.close_all().await;
                    drop(closed_tx);
                    let _ = closed_rx.recv().await;
                });
            match spawned {
                Ok(handle) => threads.push(handle),
                Err(e) => {
                    stop_tx.close();
                    return Err(BrokerError::StartShard {
                        shard: id,
                        cpu,
                        reason: e.to_string(),
                    });
                }
            }
        }
        drop((closed_tx, ready_tx));
        let stopping = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut handle = BrokerHandle {
            addr: bound,
            advertised,
            shards,
            data_dir,
            stop: stop_tx,
            stopping: stopping.clone(),
            admin: None,
            threads,
        };
        // Every shard says it is ready, or its thread ended (and with it the
        // last sender) before it could.
        // A shard that takes long (its journal is made first) is named in
        // the log every 10 s, so a start that never listens says where.
        let mut waiting: Vec<usize> = (0..shards).collect();
        while !waiting.is_empty() {
            match ready_rx.recv_timeout(std::time::Duration::from_secs(10)) {
                Ok(id) => waiting.retain(|&w| w != id),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => tracing::warn!(
                    ?waiting,
                    secs = started.elapsed().as_secs_f64(),
                    "shards not started yet (making their journals)"
                ),
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    handle.stop.close();
                    return Err(handle.wait().err().unwrap_or(BrokerError::ShardFailed(0)));
                }
            }
        }
        if let Some(admin_addr) = config.admin_listen {
            let state = crate::admin::AdminState {
                router,
                started,
                shards_opened: opened,
                stopping,
                partition_series: config.metrics_partition_series,
                data_dir: handle.data_dir.clone(),
            };
            match crate::admin::AdminServer::start(admin_addr, state) {
                Ok(admin) => {
                    tracing::info!(addr = %admin.addr(), "admin listener: /metrics, /v1/status");
                    handle.admin = Some(admin);
                }
                Err(e) => {
                    handle.stop();
                    let _ = handle.wait();
                    return Err(BrokerError::Config(format!(
                        "binding the admin listener {admin_addr}: {e} (choose another with --admin-listen, or `off`)"
                    )));
                }
            }
        }
        tracing::info!(%bound, shards, "broker listening; partitions are opening");
        Ok(handle)
    }
}

impl BrokerHandle {
    /// The address the Kafka listener is bound to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The host and port clients are told to connect to.
    pub fn advertised(&self) -> &(String, u16) {
        &self.advertised
    }

    pub fn shards(&self) -> usize {
        self.shards
    }

    /// The data directory, absolute.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Where the admin listener (metrics, health) is bound, if it runs.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|a| a.addr())
    }

    /// Starts a clean shutdown without waiting for it: listeners close, and
    /// requests in flight are answered (within a grace period) before the
    /// logs are closed.
    pub fn stop(&self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::Release);
        self.stop.close();
    }

    /// A handle that can [`stop`](Self::stop) the broker from elsewhere (a
    /// signal handler) while this one waits.
    pub fn stopper(&self) -> impl Fn() + Send + Sync + 'static {
        let (stop, stopping) = (self.stop.clone(), self.stopping.clone());
        move || {
            stopping.store(true, std::sync::atomic::Ordering::Release);
            stop.close();
        }
    }

    /// Blocks until every shard has shut down (after [`stop`](Self::stop)).
    pub fn wait(mut self) -> Result<()> {
        let mut result = Ok(());
        for (id, thread) in std::mem::take(&mut self.threads).into_iter().enumerate() {
            if thread.join().is_err() && result.is_ok() {
                result = Err(BrokerError::ShardFailed(id));
            }
        }
        result
    }

    /// Stops the broker and resolves once it has shut down cleanly. Works
    /// from any async runtime: the waiting happens on a thread of its own.
    pub async fn shutdown(self) -> Result<()> {
        self.stop();
        let (tx, rx) = async_channel::bounded(1);
        std::thread::spawn(move || {
            let _ = tx.send_blocking(self.wait());
        });
        rx.recv().await.unwrap_or(Err(BrokerError::ShardFailed(0)))
    }
}

impl Drop for BrokerHandle {
    /// A handle dropped without [`shutdown`](Self::shutdown) still stops the
    /// broker; its shards finish in the background.
    fn drop(&mut self) {
        self.stop.close();
    }
}

impl BrokerConfig {
    /// A broker for tests and embedding: loopback port 0, one shard, the
    /// other settings at their defaults, data in `data_dir`.
    pub fn ephemeral(data_dir: &Path) -> Result<BrokerConfig> {
        let mut config = BrokerConfig::defaults()?;
        config.data_dir = data_dir.to_path_buf();
        config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        config.admin_listen = None;
        config.cores = 1;
        Ok(config)
    }
}

/// The stored cluster state, with partitions of shards that no longer exist
/// (fewer cores than last run) moved to ones that do, and saved if so.
fn load_fitted(data_dir: &Path, shards: usize) -> Result<ClusterMeta> {
    let mut meta = store::load_or_init(data_dir)?;
    let moves = meta.fit_to_shards(shards);
    for command in &moves {
        apply(&mut meta, command).expect("moves fit the state they were made from");
    }
    if !moves.is_empty() {
        store::save(&meta, data_dir)?;
    }
    Ok(meta)
}

fn spawn_retention(shard: Rc<Shard>) {
    let every = Duration::from_millis(shard.config.retention_check_interval_ms.max(100));
    let queue = glommio::executor().current_task_queue();
    spawn_periodic(shard, every, queue, |shard| async move {
        shard.run_retention().await
    });
}

/// Idle partitions are parked (written as a clean stop leaves them) and
/// give back buffers and reserved disk, every few seconds, in a task queue
/// that yields to produce and fetch.
fn spawn_idle_release(shard: Rc<Shard>) {
    let queue = glommio::executor().create_task_queue(
        glommio::Shares::Static(100),
        glommio::Latency::NotImportant,
        "idle",
    );
    spawn_periodic(shard, Duration::from_secs(5), queue, |shard| async move {
        shard.release_idle().await
    });
}

/// Partitions that could not be opened (too few descriptors, a directory
/// that cannot be read) are tried again every ten seconds.
fn spawn_open_retry(shard: Rc<Shard>) {
    let queue = glommio::executor().current_task_queue();
    spawn_periodic(shard, Duration::from_secs(10), queue, |shard| async move {
        shard.retry_unopened().await;
    });
}

/// The compaction cleaner, in a task queue of its own with few shares:
/// when produce and fetch keep the shard busy, it gets about a twentieth
/// of the CPU (and yields between batches), and all of it when they do not.
fn spawn_cleaner(shard: Rc<Shard>) {
    let every = Duration::from_millis(shard.config.log_cleaner_backoff_ms.max(10));
    let queue = glommio::executor().create_task_queue(
        glommio::Shares::Static(50),
        glommio::Latency::NotImportant,
        "cleaner",
    );
    spawn_periodic(shard, every, queue, |shard| async move {
        shard.run_cleaner().await
    });
}

/// Sessions, rebalance deadlines and offset expiry of the groups this
/// shard coordinates, checked every 100 ms.
fn spawn_group_clock(shard: Rc<Shard>) {
    let queue = glommio::executor().current_task_queue();
    let retention_ms = shard
        .config
        .offsets_retention_minutes
        .saturating_mul(60_000);
    spawn_periodic(
        shard,
        Duration::from_millis(100),
        queue,
        move |shard| async move { crate::groups::coordinator::tick(&shard, Some(retention_ms)).await },
    );
}

/// Runs `job` every `every` in `queue` until the shard stops.
fn spawn_periodic<F, Fut>(
    shard: Rc<Shard>,
    every: Duration,
    queue: glommio::TaskQueueHandle,
    job: F,
) where
    F: Fn(Rc<Shard>) -> Fut + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let task = glommio::spawn_local_into(
        async move {
            loop {
                let stopped = futures_lite::future::or(
                    async {
                        glommio::timer::sleep(every).await;
                        false
                    },
                    async {
                        shard.stopped().await;
                        true
                    },
                )
                .await;
                if stopped {
                    break;
                }
                job(shard.clone()).await;
            }
        },
        queue,
    );
    match task {
        Ok(t) => {
            t.detach();
        }
        Err(e) => tracing::error!(error = %e, "could not start a periodic task"),
    }
}

/// A broker of one shard inside the current glommio executor, without a
/// listener: for the fuzz target and in-process tests. Requests go through
/// [`server::respond`].
pub async fn local_shard(config: BrokerConfig) -> Result<Rc<Shard>> {
    std::fs::create_dir_all(&config.data_dir)
        .context(|| format!("creating {}", config.data_dir.display()))?;
    let meta = load_fitted(&config.data_dir, 1)?;
    crate::shard::journal::replay_all(&config, &meta)
        .await
        .map_err(|e| BrokerError::Config(format!("replaying the shard journals: {e}")))?;
    let (tx, rx) = async_channel::bounded::<Job>(JOB_QUEUE_MAX);
    let config = Arc::new(BrokerConfig { cores: 1, ..config });
    let meta = Arc::new(meta);
    let controller = Controller::new(config.data_dir.clone(), (*meta).clone());
    let advertised = (config.listen.ip().to_string(), config.listen.port());
    let shard = Rc::new(Shard::new(
        0,
        config,
        Router::new(vec![tx]),
        advertised,
        meta.clone(),
        Some(controller),
    ));
    glommio::spawn_local(shard.clone().serve_jobs(rx)).detach();
    shard.start_journal().await;
    shard.apply_metadata(meta).await;
    Ok(shard)
}

#[cfg(test)]
mod tests {
    use super::io_memory_per_shard;

    #[test]
    fn each_shard_pools_an_eighth_of_its_memory_share_for_io_buffers() {
        // The default budget on this machine's two cores: 64 MiB each.
        assert_eq!(io_memory_per_shard(1 << 30, 2), 64 << 20);
        assert_eq!(io_memory_per_shard(1 << 30, 4), 32 << 20);
        // Never below what a few 1 MiB buffers need, nor above 64 MiB.
        assert_eq!(io_memory_per_shard(64 << 20, 2), 16 << 20);
        assert_eq!(io_memory_per_shard(64 << 30, 1), 64 << 20);
        assert_eq!(io_memory_per_shard(1 << 30, 0), 64 << 20);
    }
}
