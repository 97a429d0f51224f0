//! The log's side of the leader-epoch index ([`crate::leader_epochs`]):
//! loading or rebuilding it at open, keeping it through appends and
//! truncations, and answering epoch queries. The index is written before
//! the first batch of a new epoch, so after a crash it may name an epoch
//! whose batches were lost (cut at open by the recovered log end), never
//! miss one whose batches survived.

use std::path::Path;

use super::batches::BatchWalk;
use super::PartitionLog;
use crate::error::Result;
use crate::io::Disk;
use crate::leader_epochs::LeaderEpochs;
use crate::segment;

/// The index's file in a log directory.
pub(super) const EPOCHS_FILE: &str = "leader-epochs";

/// The stored index, if it is whole.
pub(super) async fn load(disk: &impl Disk, dir: &Path) -> Option<LeaderEpochs> {
    segment::read_small_file(disk, &dir.join(EPOCHS_FILE))
        .await
        .ok()
        .flatten()
        .and_then(|bytes| LeaderEpochs::decode(&bytes))
}

impl<D: Disk> PartitionLog<D> {
    /// Fits the loaded index to the recovered log, or rebuilds it from the
    /// batch headers when it was missing or damaged.
    pub(super) async fn settle_epochs(&self, loaded: Option<LeaderEpochs>) -> Result<()> {
        let (start, end) = (self.log_start_offset(), self.log_end_offset());
        let epochs = match loaded {
            Some(mut epochs) => {
                let cut = epochs.truncate_end(end) | epochs.truncate_start(start);
                if !cut {
                    self.inner.shared.borrow_mut().epochs = epochs;
                    return Ok(());
                }
                epochs
            }
            None if start == end => LeaderEpochs::new(),
            None => {
                tracing::info!(dir = %self.inner.dir.display(), "rebuilding the leader-epoch index from the batches");
                let mut epochs = LeaderEpochs::new();
                let mut walk = BatchWalk::new(start, end);
                while let Some((batches, _)) = walk.next(self).await? {
                    for (header, _) in batches {
                        // An older epoch after a newer one cannot be appended;
                        // if the files hold one anyway, the newer start wins.
                        let _ = epochs.observe(header.leader_epoch, header.base_offset);
                    }
                }
                epochs
            }
        };
        self.inner.shared.borrow_mut().epochs = epochs;
        self.save_epochs().await
    }

    /// Writes the index (synced).
    pub(super) async fn save_epochs(&self) -> Result<()> {
        let bytes = self.inner.shared.borrow().epochs.encode();
        segment::write_small_file_synced(
            &self.inner.disk,
            &self.inner.dir.join(EPOCHS_FILE),
            &bytes,
        )
        .await
    }

    /// The leader epoch that wrote `offset` (Raft's term at an index), if
    /// the offset is in the log.
    pub fn epoch_at(&self, offset: i64) -> Option<i32> {
        let s = self.inner.shared.borrow();
        if offset < s.log_start_offset || offset >= s.log_end_offset {
            return None;
        }
        s.epochs.epoch_at(offset)
    }

    /// Kafka's OffsetsForLeaderEpoch: the largest epoch at most `epoch` this
    /// log holds and the offset where it ends (the log end for the latest);
    /// see [`LeaderEpochs::end_of`] for the edges.
    pub fn end_of_epoch(&self, epoch: i32) -> Option<(i32, i64)> {
        let s = self.inner.shared.borrow();
        s.epochs.end_of(epoch, s.log_end_offset)
    }

    /// Every (epoch, start offset) of the log, oldest first.
    pub fn leader_epochs(&self) -> Vec<(i32, i64)> {
        self.inner.shared.borrow().epochs.entries().to_vec()
    }
}
