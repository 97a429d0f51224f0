//! The log's side of the leader-epoch index ([`crate::leader_epochs`]):
//! loading or rebuilding it at open, keeping it through appends and
//! truncations, and answering epoch queries. The index is written before
//! the first batch of a new epoch, so after a crash it may name an epoch
//! whose batches were lost (cut at open by the recovered log end), never
//! miss one whose batches survived.

use std::path::Path;

use super::PartitionLog;
use crate::batch::BatchHeader;
use crate::error::{Result, StorageError};
use crate::io::Disk;
use crate::leader_epochs::LeaderEpochs;
use crate::segment;

/// The index's file in a log directory.
pub(super) const EPOCHS_FILE: &str = "leader-epochs";

/// Where a batch lies and which epoch wrote it.
#[derive(Debug, Clone, Copy)]
struct BatchSpan {
    base: i64,
    next: i64,
    epoch: i32,
}

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
    /// batch headers when it was missing or damaged. Writes it only when it
    /// changed: an empty log without one has nothing to record (its first
    /// append writes it).
    pub(super) async fn settle_epochs(&self, loaded: Option<LeaderEpochs>) -> Result<()> {
        let (start, end) = (self.log_start_offset(), self.log_end_offset());
        let (epochs, changed) = match loaded {
            Some(mut epochs) => {
                let cut = epochs.truncate_end(end) | epochs.truncate_start(start);
                (epochs, cut)
            }
            None if start == end => (LeaderEpochs::new(), false),
            None => {
                // Usual for a log of one epoch, which keeps no file (and
                // then there is none to write, or to remove).
                tracing::debug!(dir = %self.inner.dir.display(), "rebuilding the leader-epoch index from the batches");
                let epochs = self.rebuild_epochs(start, end).await?;
                let several = epochs.entries().len() > 1;
                (epochs, several)
            }
        };
        self.inner.shared.borrow_mut().epochs = epochs;
        if changed {
            self.save_epochs().await?;
        }
        Ok(())
    }

    /// The index of `start..end` from batch headers, without reading the
    /// log through: epochs only grow, so two batches of one epoch have none
    /// other between them, and each change is found by bisection — a few
    /// reads of one batch per epoch, not a read of every byte (a data
    /// directory from before the index existed opens this way).
    async fn rebuild_epochs(&self, start: i64, end: i64) -> Result<LeaderEpochs> {
        let mut epochs = LeaderEpochs::new();
        let Some(first) = self.batch_at(start).await? else {
            return Ok(epochs);
        };
        let last = self.batch_at(end - 1).await?.unwrap_or(first);
        let mut changes = vec![(first.base, first.epoch)];
        let mut pending = vec![(first, last)];
        while let Some((lo, hi)) = pending.pop() {
            if lo.epoch == hi.epoch || hi.base <= lo.base {
                continue;
            }
            // The first batch strictly between them, looking lower while a
            // compaction gap hides it behind `hi`.
            let mut at = lo.next + (hi.base - lo.next) / 2;
            let between = loop {
                match self.batch_at(at).await? {
                    Some(b) if b.base < hi.base => break Some(b),
                    _ if at > lo.next => at = lo.next + (at - lo.next) / 2,
                    _ => break None,
                }
            };
            match between {
                Some(mid) => pending.extend([(lo, mid), (mid, hi)]),
                // Adjacent: `hi` begins its epoch.
                None => changes.push((hi.base, hi.epoch)),
            }
        }
        changes.sort_unstable();
        for (base, epoch) in changes {
            // An older epoch after a newer one cannot be appended; if the
            // files hold one anyway, the newer start wins.
            let _ = epochs.observe(epoch, base);
        }
        epochs.truncate_start(start);
        Ok(epochs)
    }

    /// The first batch holding or following `offset`.
    async fn batch_at(&self, offset: i64) -> Result<Option<BatchSpan>> {
        let data = self.read(offset, 1).await?;
        if data.is_empty() {
            return Ok(None);
        }
        let h = BatchHeader::parse(&data)?;
        Ok(Some(BatchSpan {
            base: h.base_offset,
            next: h.next_offset(),
            epoch: h.leader_epoch,
        }))
    }

    /// Writes the index (synced). A log of one epoch (every log of a
    /// single broker) keeps no file: its first and last batch headers
    /// rebuild the index with two reads, and 100,000 partitions take a disk
    /// block less each. The file appears with the second epoch, before its
    /// first batch is written.
    pub(super) async fn save_epochs(&self) -> Result<()> {
        let (single, bytes) = {
            let s = self.inner.shared.borrow();
            (s.epochs.entries().len() <= 1, s.epochs.encode())
        };
        if single {
            return match self
                .inner
                .disk
                .remove_file(&self.inner.dir.join(EPOCHS_FILE))
            {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(StorageError::io("removing the leader-epoch index", e))
                }
                _ => Ok(()),
            };
        }
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
