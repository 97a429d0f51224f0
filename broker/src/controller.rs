//! Metadata changes, made on shard 0 one at a time: apply to a copy, persist,
//! then have every shard serve the new snapshot before the client is answered.

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

use crate::metadata::ClusterMeta;
use crate::shard::Shard;

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
    /// A failed save changes nothing and is returned as an error.
    pub async fn change<R>(
        &self,
        shard0: &Rc<Shard>,
        change: impl FnOnce(&mut ClusterMeta) -> (R, bool),
    ) -> Result<R, String> {
        let _serialized = self.lock.lock().await;
        let mut next = self.meta.borrow().clone();
        let (result, changed) = change(&mut next);
        if !changed {
            return Ok(result);
        }
        next.version += 1;
        next.save(&self.data_dir)
            .map_err(|e| format!("saving metadata failed: {e:#}"))?;
        *self.meta.borrow_mut() = next.clone();
        let next = Arc::new(next);
        for s in 0..shard0.router.shards() {
            let meta = next.clone();
            shard0
                .on(
                    s,
                    move |shard| async move { shard.apply_metadata(meta).await },
                )
                .await;
        }
        Ok(result)
    }
}

/// What a metadata change may need to know about the broker.
pub struct Placement {
    /// Shards partitions can be placed on.
    pub shards: usize,
    /// Partition count for topics created without one.
    pub default_partitions: i32,
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
                default_partitions: s0.config.topic_defaults.partitions,
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
