//! A shard's side of metadata: serving a new state (opening and closing its
//! partitions), and asking the controller on shard 0 for a change.

use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

use futures_util::StreamExt;
use rill_storage::batch::Compression;
use rill_storage::PartitionLog;
use uuid::Uuid;

use super::{Partition, Shard};
use crate::cluster::{partition_dir, ChangeError, ClusterMeta, Draft, OpenFailure, Placement};
use crate::config::topic_config;

/// Partitions a shard opens (or closes) at once.
pub const OPENS_IN_FLIGHT: usize = 64;

impl Shard {
    /// Cache bytes for each partition this shard owns under `meta`.
    fn cache_bytes_per_partition(&self, meta: &ClusterMeta) -> usize {
        let owned = meta
            .topics
            .values()
            .flat_map(|t| &t.partitions)
            .filter(|p| p.shard == self.id)
            .count();
        let shard_budget = self.config.memory_budget_bytes / self.router.shards();
        (shard_budget / owned.max(1)).min(64 << 20)
    }

    /// Makes this shard serve `meta`: opens partitions newly placed here,
    /// closes those that left, deletes the data of deleted topics (and of
    /// partitions past a topic's count), and applies config changes. Returns
    /// once done, with the partitions that could not be opened, so callers can
    /// refuse the change before answering the client.
    pub async fn apply_metadata(self: &Rc<Self>, meta: Arc<ClusterMeta>) -> Vec<OpenFailure> {
        // One at a time: a retry of unopened partitions and a published
        // change must not open the same partition twice.
        let _applying = self.applying.lock().await;
        if meta.version < self.meta.borrow().version {
            // A retry that waited behind a newer change has nothing to do.
            return Vec::new();
        }
        let mut failures = Vec::new();
        let cache = self.cache_bytes_per_partition(&meta);
        let defaults = self.topic_defaults_of(&meta);
        type Wanted = (Uuid, PathBuf, rill_storage::LogConfig, Option<Compression>);
        let mut wanted: HashMap<(String, i32), Wanted> = HashMap::new();
        for t in meta.topics.values() {
            let log_config =
                topic_config::log_config(&t.configs, &defaults, cache, self.config.write_sizing);
            let codec = topic_config::compression(&t.configs, &defaults);
            for (i, p) in t.partitions.iter().enumerate() {
                if p.shard == self.id {
                    let dir = partition_dir(&self.config.data_dir, &t.name, i as i32);
                    wanted.insert(
                        (t.name.clone(), i as i32),
                        (t.id, dir, log_config.clone(), codec),
                    );
                }
            }
        }
        // Close what is no longer ours (deleted, re-created under a new id, or moved).
        let leaving: Vec<((String, i32), Rc<Partition>)> = self
            .partitions
            .borrow()
            .snapshot()
            .into_iter()
            .filter(|(key, p)| wanted.get(key).is_none_or(|w| w.0 != p.topic_id))
            .collect();
        for (key, part) in leaving {
            self.partitions.borrow_mut().remove(&key.0, key.1);
            if let Err(e) = part.close().await {
                tracing::warn!(shard = self.id, topic = %key.0, partition = key.1, error = %e, "closing a partition failed");
            }
            let deleted = meta.topics.get(&key.0).is_none_or(|t| {
                t.id != part.topic_id
                    || usize::try_from(key.1).is_ok_and(|i| i >= t.partitions.len())
            });
            if deleted {
                let dir = partition_dir(&self.config.data_dir, &key.0, key.1);
                if let Err(e) = std::fs::remove_dir_all(&dir) {
                    tracing::warn!(dir = %dir.display(), error = %e, "removing a deleted partition failed");
                }
            }
        }
        // Partitions of deleted topics that were never opened (retried
        // until now) have data on disk too.
        let unopened_deleted: Vec<(String, i32)> = self
            .meta
            .borrow()
            .topics
            .values()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| p.shard == self.id)
                    .map(move |(i, _)| (t, i as i32))
            })
            .filter(|(t, i)| {
                let deleted = meta.topics.get(&t.name).is_none_or(|now| {
                    now.id != t.id || usize::try_from(*i).is_ok_and(|i| i >= now.partitions.len())
                });
                deleted && self.partition(&t.name, *i).is_none()
            })
            .map(|(t, i)| (t.name.clone(), i))
            .collect();
        for (topic, partition) in unopened_deleted {
            let dir = partition_dir(&self.config.data_dir, &topic, partition);
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(dir = %dir.display(), error = %e, "removing a deleted partition failed");
                }
            }
        }
        *self.meta.borrow_mut() = meta;
        let mut to_open = Vec::new();
        for (key, (topic_id, dir, log_config, codec)) in wanted {
            if let Some(existing) = self.partition(&key.0, key.1) {
                existing.reconfigure(log_config);
                existing.recompress_to.set(codec);
                continue;
            }
            to_open.push((key, topic_id, dir, log_config, codec));
        }
        // Internal topics first (the group coordinator and producer state
        // live there: groups answer COORDINATOR_LOAD_IN_PROGRESS until their
        // partition is open), then in name order, so a start's progress is
        // predictable.
        to_open.sort_unstable_by(|a, b| {
            (!a.0 .0.starts_with("__"), &a.0).cmp(&(!b.0 .0.starts_with("__"), &b.0))
        });
        // Partitions the last clean stop recorded serve from the record at
        // once; their logs open on first need or behind (`open_dormant`).
        let records = self.clean_stop.borrow().clone();
        if let Some(records) = records {
            to_open.retain(|(key, topic_id, dir, log_config, codec)| {
                let Some((_, closed)) = records.get(key).filter(|(id, _)| id == topic_id) else {
                    return true;
                };
                let journal = self
                    .journal()
                    .map(|j| (j, super::journal::journal_name(&key.0, key.1, *topic_id)));
                let dormant = crate::partition::Dormant {
                    dir: dir.clone(),
                    config: log_config.clone(),
                    journal,
                    closed: *closed,
                };
                let part = Rc::new(Partition::dormant(*topic_id, dormant, *codec));
                self.partitions
                    .borrow_mut()
                    .insert(key.0.clone(), key.1, part);
                false
            });
        }
        // Opens overlap (each is a few small reads and writes, and after an
        // unclean stop a sync): thousands of partitions open in a fraction
        // of the time one after another would take.
        let failed = std::cell::RefCell::new(Vec::new());
        futures_util::stream::iter(to_open)
            .for_each_concurrent(OPENS_IN_FLIGHT, |(key, topic_id, dir, log_config, codec)| {
                let failed = &failed;
                async move {
                    let opened = match PartitionLog::open(&dir, log_config).await {
                        Ok(log) => match self.journal() {
                            Some(j) => log
                                .attach_journal(
                                    j,
                                    super::journal::journal_name(&key.0, key.1, topic_id),
                                )
                                .await
                                .map(|()| log),
                            None => Ok(log),
                        },
                        Err(e) => Err(e),
                    };
                    match opened {
                        Ok(log) => {
                            let part = Rc::new(Partition::new(topic_id, log, codec));
                            self.partitions.borrow_mut().insert(key.0, key.1, part);
                        }
                        Err(e) => {
                            // Answered NOT_LEADER_OR_FOLLOWER (retriable) until it
                            // opens; never truncated. Retried by the shard.
                            tracing::debug!(shard = self.id, topic = %key.0, partition = key.1, dir = %dir.display(), error = %e, "cannot open partition");
                            failed.borrow_mut().push(OpenFailure {
                                topic: key.0,
                                partition: key.1,
                                topic_id,
                                error: e.to_string(),
                            });
                        }
                    }
                }
            })
            .await;
        failures.extend(failed.into_inner());
        self.unopened.set(failures.len());
        if !failures.is_empty() {
            let what = crate::cluster::summary(&failures.iter().collect::<Vec<_>>());
            tracing::error!(shard = self.id, failed = %what, "cannot open partitions; the others are served, these are retried");
        }
        failures
    }

    /// Opens the partitions this shard owns that could not be opened before
    /// (for want of descriptors, say, until a topic is deleted); returns
    /// whether any are still closed.
    pub async fn retry_unopened(self: &Rc<Self>) -> bool {
        if self.unopened.get() == 0 {
            return false;
        }
        let before = self.unopened.get();
        self.apply_metadata(self.meta()).await;
        let after = self.unopened.get();
        if after < before {
            tracing::info!(
                shard = self.id,
                opened = before - after,
                still_closed = after,
                "opened partitions on retry"
            );
        }
        after > 0
    }

    /// Decides a metadata change on the controller (shard 0), from any
    /// shard: `decide` pushes commands onto a draft of the current state; see
    /// [`Controller::change`](crate::cluster::Controller::change).
    pub async fn change_metadata<R, F>(self: &Rc<Self>, decide: F) -> Result<R, ChangeError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Draft, &Placement) -> R + Send + 'static,
    {
        self.on(0, move |s0| async move {
            let placement = Placement {
                shards: s0.router.shards(),
                default_partitions: s0.topic_defaults_of(&s0.meta()).partitions,
                node_id: s0.config.node_id,
            };
            let controller = s0
                .controller
                .as_ref()
                .expect("shard 0 hosts the controller");
            controller
                .change(
                    |draft| decide(draft, &placement),
                    |meta| publish(s0.clone(), meta),
                )
                .await
        })
        .await
    }
}

/// Has every shard serve `meta`; returns the partitions that failed to open.
async fn publish(shard0: Rc<Shard>, meta: Arc<ClusterMeta>) -> Vec<OpenFailure> {
    let mut failures = Vec::new();
    for s in 0..shard0.router.shards() {
        let meta = meta.clone();
        failures.extend(
            shard0
                .on(
                    s,
                    move |shard| async move { shard.apply_metadata(meta).await },
                )
                .await,
        );
    }
    failures
}
