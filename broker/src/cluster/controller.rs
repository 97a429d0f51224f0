//! The controller: metadata changes, one at a time, on shard 0. A change is
//! decided against the current state as [`MetadataCommand`](super::MetadataCommand)s (in a
//! [`Draft`]), the resulting state saved durably off the executor, and then
//! published to every shard before the client is answered. The controller
//! knows nothing of shards: publishing is a function it is given.

use std::cell::RefCell;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use uuid::Uuid;

use super::command::Draft;
use super::state::ClusterMeta;
use super::store;
use crate::error::BrokerError;

/// A partition the metadata places on a shard that the shard could not open.
#[derive(Debug, Clone)]
pub struct OpenFailure {
    pub topic: String,
    pub partition: i32,
    pub topic_id: Uuid,
    pub error: String,
}

/// What deciding a change may need to know about the broker.
pub struct Placement {
    /// Shards partitions can be placed on.
    pub shards: usize,
    /// Partition count for topics created without one.
    pub default_partitions: i32,
    /// This broker's id.
    pub node_id: i32,
}

/// Why a change did not take effect.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error("saving metadata failed: {0}")]
    Save(#[source] BrokerError),
    /// The change placed partitions that cannot be opened; it was undone.
    #[error("cannot open {0}; the change was undone")]
    Unopenable(String),
    #[error("cannot open {what}; undoing the change also failed: {source}")]
    UndoFailed {
        what: String,
        #[source]
        source: BrokerError,
    },
}

pub struct Controller {
    data_dir: PathBuf,
    state: RefCell<ClusterMeta>,
    lock: async_lock::Mutex<()>,
}

impl Controller {
    pub fn new(data_dir: PathBuf, state: ClusterMeta) -> Controller {
        Controller {
            data_dir,
            state: RefCell::new(state),
            lock: async_lock::Mutex::new(()),
        }
    }

    /// Decides a change with `decide`, which pushes commands onto a draft of
    /// the current state. If it pushes any, the new state is saved durably
    /// and `publish`ed (made served on every shard) before this returns. A
    /// failed save changes nothing. A change that places a partition its
    /// shard cannot open (a directory that cannot be created, a full or
    /// read-only disk) is undone — the previous state saved and published
    /// again — so no client is told of a topic the broker cannot serve.
    pub async fn change<R, P, Fut>(
        &self,
        decide: impl FnOnce(&mut Draft) -> R,
        publish: P,
    ) -> Result<R, ChangeError>
    where
        P: Fn(Arc<ClusterMeta>) -> Fut,
        Fut: Future<Output = Vec<OpenFailure>>,
    {
        let _serialized = self.lock.lock().await;
        let before = self.state.borrow().clone();
        let mut draft = Draft::new(before.clone());
        let result = decide(&mut draft);
        let (next, commands) = draft.into_parts();
        if commands.is_empty() {
            return Ok(result);
        }
        tracing::debug!(?commands, version = next.version, "metadata change");
        self.install(next.clone())
            .await
            .map_err(ChangeError::Save)?;
        let failures = publish(Arc::new(next.clone())).await;
        // Only partitions this change introduced count: one that was already
        // unopenable before is reported at startup and does not block changes.
        let new_failures: Vec<&OpenFailure> =
            failures.iter().filter(|f| !serves(&before, f)).collect();
        if new_failures.is_empty() {
            return Ok(result);
        }
        let what = summary(&new_failures);
        tracing::error!(failed = %what, "a metadata change placed partitions that cannot be opened; undoing it");
        let undo = Arc::new(undo_state(before, &next));
        if self.install((*undo).clone()).await.is_err() {
            // Most likely no descriptor was left to save with: closing the
            // partitions the change opened gives them back. The state is
            // published before it is saved, so a crash in between reopens
            // the change's (empty) partitions at start-up.
            publish(undo.clone()).await;
            if let Err(source) = self.install((*undo).clone()).await {
                return Err(ChangeError::UndoFailed { what, source });
            }
            return Err(ChangeError::Unopenable(what));
        }
        publish(undo).await;
        Err(ChangeError::Unopenable(what))
    }

    /// Saves `state` durably (on a blocking thread, not on the executor) and
    /// makes it the controller's current state.
    async fn install(&self, state: ClusterMeta) -> Result<(), BrokerError> {
        let (dir, copy) = (self.data_dir.clone(), state.clone());
        glommio::executor()
            .spawn_blocking(move || store::save(&copy, &dir))
            .await?;
        *self.state.borrow_mut() = state;
        Ok(())
    }
}

/// The state before a change, at a version past the change's: versions only
/// grow, so every shard takes it as news. Producer ids only grow too: none
/// handed out is ever handed out again.
fn undo_state(before: ClusterMeta, next: &ClusterMeta) -> ClusterMeta {
    ClusterMeta {
        version: next.version + 1,
        next_producer_id: next.next_producer_id.max(before.next_producer_id),
        ..before
    }
}

/// Partitions that could not be opened, said once: how many, and the
/// first of them with its cause.
pub fn summary(failures: &[&OpenFailure]) -> String {
    match failures {
        [] => "no partition".to_string(),
        [f] => format!("{}-{}: {}", f.topic, f.partition, f.error),
        [f, rest @ ..] => format!(
            "{} partitions (the first, {}-{}: {}; {} more)",
            failures.len(),
            f.topic,
            f.partition,
            f.error,
            rest.len()
        ),
    }
}

/// Whether `state` already held the partition of `failure` (same topic id).
fn serves(state: &ClusterMeta, failure: &OpenFailure) -> bool {
    state.topics.get(&failure.topic).is_some_and(|t| {
        t.id == failure.topic_id
            && usize::try_from(failure.partition).is_ok_and(|i| i < t.partitions.len())
    })
}
