//! Producer state on disk: snapshots (`<offset>.producers`, the state as of
//! that log offset) written at every segment roll, at a clean close and when
//! expiry drops producers; rebuilt at open and after a truncation from the
//! newest usable snapshot plus the batches after it (Kafka's
//! `ProducerStateManager` recovery).

use std::path::{Path, PathBuf};

use super::batches::BatchWalk;
use super::{PartitionLog, Writer};
use crate::error::Result;
use crate::io::Disk;
use crate::producer_state::{ProducerBatch, ProducerStates};
use crate::segment;

const SUFFIX: &str = ".producers";
/// Snapshots kept: the newest, and one to fall back on if it is torn.
const KEPT: usize = 2;

pub(super) fn snapshot_path(dir: &Path, offset: i64) -> PathBuf {
    dir.join(format!("{offset:020}{SUFFIX}"))
}

fn parse_name(name: &str) -> Option<i64> {
    let digits = name.strip_suffix(SUFFIX)?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// Offsets of the snapshots in `dir`, newest first.
fn snapshot_offsets(disk: &impl Disk, dir: &Path) -> Vec<i64> {
    snapshot_offsets_in(&disk.list_dir(dir).unwrap_or_default())
}

/// Offsets of the snapshots among a directory's `names`, newest first.
pub(super) fn snapshot_offsets_in(names: &[String]) -> Vec<i64> {
    let mut offsets: Vec<i64> = names.iter().filter_map(|n| parse_name(n)).collect();
    offsets.sort_unstable_by(|a, b| b.cmp(a));
    offsets
}

impl<D: Disk> PartitionLog<D> {
    /// Writes the state as of the log end (the caller holds the writer, so
    /// no append moves it meanwhile) and removes all but the newest
    /// [`KEPT`] snapshots. A failure is logged, not fatal: the state can
    /// always be rebuilt from an older snapshot and the log.
    pub(super) async fn snapshot_producers(&self, _writer: &Writer<D>) {
        let inner = &*self.inner;
        let (offset, bytes) = {
            let s = inner.shared.borrow();
            (s.log_end_offset, s.producers.encode(s.log_end_offset))
        };
        let path = snapshot_path(&inner.dir, offset);
        if let Err(e) = segment::write_small_file(&inner.disk, &path, &bytes).await {
            tracing::warn!(dir = %inner.dir.display(), offset, error = %e, "could not write a producer snapshot");
            return;
        }
        for old in snapshot_offsets(&inner.disk, &inner.dir)
            .into_iter()
            .skip(KEPT)
        {
            let _ = inner.disk.remove_file(&snapshot_path(&inner.dir, old));
        }
    }

    /// The state as of `end` (the log end, or where a truncation cut the
    /// log): the newest intact snapshot at or below it, then every batch
    /// from there to `end`. Snapshots past `end` describe a cut-off log and
    /// are removed.
    pub(super) async fn rebuild_producers(&self, end: i64) -> Result<ProducerStates> {
        let offsets = snapshot_offsets(&self.inner.disk, &self.inner.dir);
        self.rebuild_producers_from(end, offsets).await
    }

    /// [`rebuild_producers`](Self::rebuild_producers) with the snapshots'
    /// offsets known (newest first).
    pub(super) async fn rebuild_producers_from(
        &self,
        end: i64,
        snapshots: Vec<i64>,
    ) -> Result<ProducerStates> {
        let inner = &*self.inner;
        let mut state = ProducerStates::default();
        let mut from = i64::MIN;
        for offset in snapshots {
            let path = snapshot_path(&inner.dir, offset);
            if offset > end {
                let _ = inner.disk.remove_file(&path);
                continue;
            }
            let loaded = segment::read_small_file(&inner.disk, &path)
                .await?
                .and_then(|bytes| ProducerStates::decode(&bytes))
                .filter(|(o, _)| *o == offset);
            match loaded {
                Some((o, s)) => {
                    (from, state) = (o, s);
                    break;
                }
                None => {
                    tracing::warn!(dir = %inner.dir.display(), offset, "damaged producer snapshot, trying an older one")
                }
            }
        }
        let log_start = self.log_start_offset();
        let replay_from = from.max(log_start);
        let mut replayed = 0usize;
        let mut walk = BatchWalk::new(replay_from, end);
        while let Some((batches, _)) = walk.next(self).await? {
            for (header, _) in batches {
                if let Some(b) = ProducerBatch::of(&header) {
                    state.record(&b, header.base_offset);
                    replayed += 1;
                }
            }
        }
        state.evict_before(log_start);
        let expiration_ms = inner.config.borrow().producer_id_expiration_ms;
        state.expire(inner.disk.now_ms(), expiration_ms);
        if replayed > 0 || from == i64::MIN && !state.is_empty() {
            // Every open of a small log (which keeps no snapshot) does
            // this: not worth an info line per partition.
            tracing::debug!(
                dir = %inner.dir.display(), snapshot = from, replay_from, end, replayed, producers = state.len(),
                "rebuilt producer state"
            );
        }
        Ok(state)
    }

    /// Producer ids this partition remembers.
    pub fn producer_count(&self) -> usize {
        self.inner.shared.borrow().producers.len()
    }

    /// Forgets producers idle longer than `producer_id_expiration_ms`; if
    /// any went, snapshots the state so a restart cannot bring them back.
    pub async fn expire_producers(&self, now_ms: i64) -> usize {
        let w = self.inner.writer.lock().await;
        let expiration_ms = self.inner.config.borrow().producer_id_expiration_ms;
        let expired = self
            .inner
            .shared
            .borrow_mut()
            .producers
            .expire(now_ms, expiration_ms);
        if expired > 0 && self.inner.shared.borrow().usable().is_ok() {
            self.snapshot_producers(&w).await;
        }
        expired
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_names() {
        let p = snapshot_path(Path::new("/d"), 42);
        let name = p.file_name().unwrap().to_str().unwrap();
        assert_eq!(name, "00000000000000000042.producers");
        assert_eq!(parse_name(name), Some(42));
        assert_eq!(parse_name("42.producers"), None);
        assert_eq!(parse_name("00000000000000000042.log"), None);
    }
}
