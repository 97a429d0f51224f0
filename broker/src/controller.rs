//! Metadata changes, made on shard 0 one at a time: apply to a copy, persist,
//! then have every shard serve the new snapshot before the client is answered.

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

use crate::metadata::ClusterMeta;
use crate::shard::{OpenFailure, Shard};

pub struct Controller {
    data_dir: PathBuf,
    meta: RefCell<ClusterMeta>,
    lock: async_lock::Mutex<()>,
}

impl Controller {
    pub fn new(data_dir: PathBuf, meta: ClusterMeta) -> Controller {
        Controller {
            data_dir,
            meta: RefCell::new(meta),
            lock: async_lock::Mutex::new(()),
        }
    }

    /// Runs `change` on a copy of the metadata. If it reports a change, the
    /// copy is saved durably and applied on every shard before this returns.
    /// A failed save changes nothing and is returned as an error. A change
    /// that places a partition its shard cannot open (a directory that
    /// cannot be created, a full or read-only disk) is undone — the previous
    /// metadata saved and applied again — and returned as an error naming the
    /// partition, so no client is told of a topic the broker cannot serve.
    pub async fn change<R>(
        &self,
        shard0: &Rc<Shard>,
        change: impl FnOnce(&mut ClusterMeta) -> (R, bool),
    ) -> Result<R, String> {
        let _serialized = self.lock.lock().await;
        let before = self.meta.borrow().clone();
        let mut next = before.clone();
        let (result, changed) = change(&mut next);
        if !changed {
            return Ok(result);
        }
        next.version += 1;
        self.install(next.clone())?;
        let failures = apply_everywhere(shard0, Arc::new(next.clone())).await;
        // Only partitions this change introduced count: one that was already
        // unopenable before is reported at startup and does not block changes.
        let new_failures: Vec<&OpenFailure> =
            failures.iter().filter(|f| !serves(&before, f)).collect();
        if new_failures.is_empty() {
            return Ok(result);
        }
        let what = new_failures
            .iter()
            .map(|f| format!("{}-{}: {}", f.topic, f.partition, f.error))
            .collect::<Vec<_>>()
            .join("; ");
        tracing::error!(failed = %what, "a metadata change placed partitions that cannot be opened; undoing it");
        let mut undo = before;
        undo.version = next.version + 1;
        self.install(undo.clone())
            .map_err(|e| format!("cannot open {what}; undoing the change also failed: {e}"))?;
        apply_everywhere(shard0, Arc::new(undo)).await;
        Err(format!("cannot open partition {what}"))
    }

    /// Saves `meta` durably and makes it the controller's current metadata.
    fn install(&self, meta: ClusterMeta) -> Result<(), String> {
        meta.save(&self.data_dir)
            .map_err(|e| format!("saving metadata failed: {e:#}"))?;
        *self.meta.borrow_mut() = meta;
        Ok(())
    }
}

/// Whether `meta` already held the partition of `failure` (same topic id).
fn serves(meta: &ClusterMeta, failure: &OpenFailure) -> bool {
    meta.topics.get(&failure.topic).is_some_and(|t| {
        t.id == failure.topic_id
            && usize::try_from(failure.partition).is_ok_and(|i| i < t.partitions.len())
    })
}

/// Applies `meta` on every shard; returns the partitions that failed to open.
async fn apply_everywhere(shard0: &Rc<Shard>, meta: Arc<ClusterMeta>) -> Vec<OpenFailure> {
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

/// What a metadata change may need to know about the broker.
pub struct Placement {
    /// Shards partitions can be placed on.
    pub shards: usize,
    /// Partition count for topics created without one.
    pub default_partitions: i32,
    /// This broker's id.
    pub node_id: i32,
}

impl Shard {
    /// Runs `change` on the controller (shard 0), from any shard: see
    /// [`Controller::change`]. `Err` says why the change could not be saved.
    pub async fn change_metadata<R, F>(self: &Rc<Self>, change: F) -> Result<R, String>
    where
        R: Send + 'static,
        F: FnOnce(&mut ClusterMeta, &Placement) -> (R, bool) + Send + 'static,
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
                .change(&s0, |meta| change(meta, &placement))
                .await
        })
        .await
    }
}
