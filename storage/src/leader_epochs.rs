//! The leader-epoch index of a partition log: for each leader epoch (Raft
//! term) the offset of its first batch, as Kafka's `leader-epoch-checkpoint`.
//!
//! It answers "which epoch wrote offset O" (Raft's term at an index, for log
//! matching) and "where does epoch E end" (Kafka's OffsetsForLeaderEpoch, a
//! follower's truncation point) without reading batches. It is derived
//! data: every batch carries its `partitionLeaderEpoch`, so a missing or
//! damaged file is rebuilt from the batch headers.
//!
//! Kept in `leader-epochs` in the log directory: magic, count, then
//! (epoch i32, start offset i64) pairs, then a CRC-32C of all before it.

/// Epoch → start offset, epochs strictly increasing with their offsets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaderEpochs {
    entries: Vec<(i32, i64)>,
}

/// A batch's epoch is older than one the log already holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("epoch {epoch} at offset {offset} is older than epoch {latest} from offset {latest_start}")]
pub struct EpochRegression {
    pub epoch: i32,
    pub offset: i64,
    pub latest: i32,
    pub latest_start: i64,
}

const MAGIC: &[u8; 4] = b"RLE1";

impl LeaderEpochs {
    pub fn new() -> LeaderEpochs {
        LeaderEpochs::default()
    }

    /// (epoch, start offset) pairs, oldest first.
    pub fn entries(&self) -> &[(i32, i64)] {
        &self.entries
    }

    pub fn latest(&self) -> Option<(i32, i64)> {
        self.entries.last().copied()
    }

    /// Notes a batch of `epoch` starting at `offset` (appended at the log
    /// end). Returns whether the index changed (a new epoch began).
    pub fn observe(&mut self, epoch: i32, offset: i64) -> Result<bool, EpochRegression> {
        match self.entries.last() {
            Some(&(latest, _)) if epoch == latest => Ok(false),
            Some(&(latest, latest_start)) if epoch < latest => Err(EpochRegression {
                epoch,
                offset,
                latest,
                latest_start,
            }),
            _ => {
                debug_assert!(self.entries.last().is_none_or(|&(_, s)| s <= offset));
                self.entries.push((epoch, offset));
                Ok(true)
            }
        }
    }

    /// The epoch that wrote `offset`, if the index covers it.
    pub fn epoch_at(&self, offset: i64) -> Option<i32> {
        let i = self.entries.partition_point(|&(_, start)| start <= offset);
        i.checked_sub(1).map(|i| self.entries[i].0)
    }

    /// Kafka's OffsetsForLeaderEpoch (its `LeaderEpochFileCache.endOffsetFor`):
    /// for the latest epoch, the log end; for an older one, the largest
    /// epoch at most `epoch` and where the next one began; for one older
    /// than every epoch held, `epoch` itself and where the first began.
    /// `None` (Kafka's UNDEFINED_EPOCH) for an epoch newer than the latest,
    /// or an empty index.
    pub fn end_of(&self, epoch: i32, log_end: i64) -> Option<(i32, i64)> {
        let &(latest, _) = self.entries.last()?;
        if epoch == latest {
            return Some((latest, log_end));
        }
        let i = self.entries.partition_point(|&(e, _)| e <= epoch);
        let (_, next_start) = *self.entries.get(i)?;
        Some(match i.checked_sub(1) {
            Some(floor) => (self.entries[floor].0, next_start),
            None => (epoch, next_start),
        })
    }

    /// The log was truncated to `offset` (everything at or after it gone):
    /// epochs that began there or later go.
    pub fn truncate_end(&mut self, offset: i64) -> bool {
        let keep = self.entries.partition_point(|&(_, start)| start < offset);
        let changed = keep < self.entries.len();
        self.entries.truncate(keep);
        changed
    }

    /// The log start moved to `offset`: epochs wholly before it go, and the
    /// one in force there now starts there.
    pub fn truncate_start(&mut self, offset: i64) -> bool {
        let i = self.entries.partition_point(|&(_, start)| start <= offset);
        if i == 0 {
            return false;
        }
        let first = i - 1;
        let changed = first > 0 || self.entries[first].1 != offset;
        self.entries.drain(..first);
        self.entries[0].1 = offset;
        changed
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(12 + 12 * self.entries.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(self.entries.len() as u32).to_be_bytes());
        for &(epoch, start) in &self.entries {
            out.extend_from_slice(&epoch.to_be_bytes());
            out.extend_from_slice(&start.to_be_bytes());
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    /// `None` for anything but a whole, intact, well-ordered index.
    pub fn decode(bytes: &[u8]) -> Option<LeaderEpochs> {
        if bytes.len() < 12 || &bytes[..4] != MAGIC {
            return None;
        }
        let count = u32::from_be_bytes(bytes[4..8].try_into().ok()?) as usize;
        let body = 8 + count.checked_mul(12)?;
        if bytes.len() != body + 4 {
            return None;
        }
        let crc = u32::from_be_bytes(bytes[body..].try_into().ok()?);
        if crc32c::crc32c(&bytes[..body]) != crc {
            return None;
        }
        let mut entries = Vec::with_capacity(count);
        for c in bytes[8..body].chunks_exact(12) {
            let epoch = i32::from_be_bytes(c[..4].try_into().ok()?);
            let start = i64::from_be_bytes(c[4..].try_into().ok()?);
            if entries
                .last()
                .is_some_and(|&(e, s): &(i32, i64)| e >= epoch || s > start)
            {
                return None;
            }
            entries.push((epoch, start));
        }
        Some(LeaderEpochs { entries })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index() -> LeaderEpochs {
        let mut l = LeaderEpochs::new();
        for (e, o) in [(0, 0), (0, 5), (2, 10), (2, 12), (5, 20)] {
            l.observe(e, o).unwrap();
        }
        l
    }

    #[test]
    fn epochs_start_where_their_first_batch_does() {
        let l = index();
        assert_eq!(l.entries(), &[(0, 0), (2, 10), (5, 20)]);
        assert_eq!(l.epoch_at(0), Some(0));
        assert_eq!(l.epoch_at(9), Some(0));
        assert_eq!(l.epoch_at(10), Some(2));
        assert_eq!(l.epoch_at(25), Some(5));
        let mut l = l;
        assert!(
            l.observe(3, 30).is_err(),
            "an older epoch after a newer one"
        );
    }

    #[test]
    fn end_of_an_epoch_is_where_the_next_begins() {
        let l = index();
        assert_eq!(l.end_of(0, 30), Some((0, 10)));
        assert_eq!(
            l.end_of(1, 30),
            Some((0, 10)),
            "epoch 1 never wrote: epoch 0's end"
        );
        assert_eq!(l.end_of(2, 30), Some((2, 20)));
        assert_eq!(
            l.end_of(5, 30),
            Some((5, 30)),
            "the latest ends at the log end"
        );
        assert_eq!(l.end_of(9, 30), None, "newer than the latest");
        assert_eq!(LeaderEpochs::new().end_of(3, 0), None);
        let mut newer = LeaderEpochs::new();
        newer.observe(4, 7).unwrap();
        assert_eq!(
            newer.end_of(3, 9),
            Some((3, 7)),
            "older than all: where the first began"
        );
    }

    #[test]
    fn truncation_at_either_end() {
        let mut l = index();
        assert!(l.truncate_end(20));
        assert_eq!(l.entries(), &[(0, 0), (2, 10)]);
        assert!(!l.truncate_end(15));
        assert!(l.truncate_start(12));
        assert_eq!(l.entries(), &[(2, 12)]);
        assert!(!l.truncate_start(12));
    }

    #[test]
    fn the_file_round_trips_and_damage_is_refused() {
        let l = index();
        let bytes = l.encode();
        assert_eq!(LeaderEpochs::decode(&bytes), Some(l));
        for cut in 0..bytes.len() {
            assert_eq!(LeaderEpochs::decode(&bytes[..cut]), None, "cut at {cut}");
        }
        let mut flipped = bytes.clone();
        flipped[10] ^= 1;
        assert_eq!(LeaderEpochs::decode(&flipped), None);
    }
}
