//! Broker bootstrap: metadata, one pinned executor per core, listeners,
//! periodic retention, and shutdown on SIGTERM/SIGINT (a second signal exits
//! at once).

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use glommio::{LocalExecutorBuilder, Placement};

use crate::config::BrokerConfig;
use crate::controller::Controller;
use crate::metadata::ClusterMeta;
use crate::server;
use crate::shard::{Job, Router, Shard, JOB_QUEUE_MAX};

/// Runs the broker until a shutdown signal; returns after a clean shutdown.
pub fn run(mut config: BrokerConfig) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    // Resolved once, so logs name one real place and no later change of the
    // working directory can move the data.
    config.data_dir = std::fs::canonicalize(&config.data_dir)
        .with_context(|| format!("resolving data directory {}", config.data_dir.display()))?;
    let mut meta = ClusterMeta::load_or_init(&config.data_dir)?;
    if meta.fit_to_shards(config.cores) {
        meta.save(&config.data_dir)?;
    }
    // Bind once here to learn the port (the listen address may say port 0),
    // then every shard binds the same address with SO_REUSEPORT.
    let first = server::bind_reuseport(config.listen)
        .with_context(|| format!("binding {}", config.listen))?;
    let bound: SocketAddr = first.local_addr()?;
    let advertised = config
        .advertised_listener
        .clone()
        .unwrap_or_else(|| (bound.ip().to_string(), bound.port()));

    let cpus: Vec<usize> = core_affinity::get_core_ids()
        .map(|ids| ids.into_iter().map(|c| c.id).collect())
        .filter(|v: &Vec<usize>| !v.is_empty())
        .unwrap_or_else(|| (0..config.cores).collect());
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..config.cores)
        .map(|_| async_channel::bounded::<Job>(JOB_QUEUE_MAX))
        .unzip();
    let router = Router::new(senders);
    let config = Arc::new(config);
    let meta = Arc::new(meta);

    let ready = Arc::new(AtomicUsize::new(0));
    // Closed (not sent on) to stop: every shard's receiver sees it.
    let (stop_tx, stop_rx) = async_channel::bounded::<()>(1);
    // Each shard drops its sender once its logs are closed; all are dropped
    // when the last shard is done. Until then every shard keeps serving jobs,
    // so no shard sends work to one that has already gone.
    let (closed_tx, closed_rx) = async_channel::bounded::<()>(1);
    let mut listeners = vec![Some(first)];
    for _ in 1..config.cores {
        listeners.push(Some(
            server::bind_reuseport(bound).with_context(|| format!("binding {bound}"))?,
        ));
    }
    let mut handles = Vec::new();
    for (id, jobs) in receivers.into_iter().enumerate() {
        let (config, router, meta, advertised) = (
            config.clone(),
            router.clone(),
            meta.clone(),
            advertised.clone(),
        );
        let listener = listeners[id].take().expect("one listener per shard");
        let (ready, stop_rx) = (ready.clone(), stop_rx.clone());
        let (closed_tx, closed_rx) = (closed_tx.clone(), closed_rx.clone());
        let cpu = cpus[id % cpus.len()];
        let handle = LocalExecutorBuilder::new(Placement::Fixed(cpu))
            .name(&format!("shard-{id}"))
            .spawn(move || async move {
                let controller =
                    (id == 0).then(|| Controller::new(config.data_dir.clone(), (*meta).clone()));
                let shard = Rc::new(Shard::new(
                    id,
                    config.clone(),
                    router,
                    advertised,
                    meta.clone(),
                    controller,
                ));
                glommio::spawn_local(shard.clone().serve_jobs(jobs)).detach();
                shard.apply_metadata(meta).await;
                {
                    let shard = shard.clone();
                    glommio::spawn_local(async move {
                        let _ = stop_rx.recv().await;
                        shard.stop();
                    })
                    .detach();
                }
                spawn_retention(shard.clone());
                ready.fetch_add(1, Ordering::SeqCst);
                // Returns once this shard's connections are done.
                server::serve(shard.clone(), listener).await;
                shard.close_all().await;
                drop(closed_tx);
                let _ = closed_rx.recv().await;
            })
            .map_err(|e| anyhow::anyhow!("starting shard {id} on CPU {cpu}: {e}"))?;
        handles.push(handle);
    }
    drop(closed_tx);
    while ready.load(Ordering::SeqCst) < config.cores {
        std::thread::sleep(Duration::from_millis(5));
    }
    // Tests and scripts wait for this line.
    println!(
        "rill broker listening on {bound} (advertised {}:{}), {} shards, data in {}",
        advertised.0,
        advertised.1,
        config.cores,
        config.data_dir.display()
    );
    tracing::info!(%bound, shards = config.cores, "broker ready");

    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ])?;
    std::thread::spawn(move || {
        let mut seen = 0;
        for signal in signals.forever() {
            seen += 1;
            if seen == 1 {
                tracing::info!(signal, "shutting down");
                stop_tx.close();
            } else {
                tracing::warn!(signal, "second signal: exiting at once");
                std::process::exit(130);
            }
        }
    });
    for h in handles {
        h.join()
            .map_err(|e| anyhow::anyhow!("shard failed: {e:?}"))?;
    }
    tracing::info!("clean shutdown");
    Ok(())
}

fn spawn_retention(shard: Rc<Shard>) {
    let every = Duration::from_millis(shard.config.retention_check_interval_ms.max(100));
    glommio::spawn_local(async move {
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
            shard.run_retention().await;
        }
    })
    .detach();
}

/// A broker of one shard inside the current glommio executor, without a
/// listener: for the fuzz target and in-process tests. Requests go through
/// [`server::respond`].
pub async fn local_shard(config: BrokerConfig) -> anyhow::Result<Rc<Shard>> {
    std::fs::create_dir_all(&config.data_dir)?;
    let mut meta = ClusterMeta::load_or_init(&config.data_dir)?;
    meta.fit_to_shards(1);
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
    shard.apply_metadata(meta).await;
    Ok(shard)
}
