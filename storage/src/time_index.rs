//! Sparse time index of one segment: entries (max timestamp so far, relative
//! offset of the batch where that maximum was reached). Used to find where to
//! start scanning for the first batch whose max timestamp reaches a target.

use crate::index_file::{IndexFileError, IndexKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeEntry {
    pub timestamp: i64,
    pub relative_offset: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimeIndex {
    entries: Vec<TimeEntry>,
}

impl TimeIndex {
    pub fn new() -> Self {
        TimeIndex::default()
    }

    pub fn entries(&self) -> &[TimeEntry] {
        &self.entries
    }

    /// Records a new maximum; ignored unless it exceeds the previous entry.
    pub fn push(&mut self, timestamp: i64, relative_offset: u32) {
        match self.entries.last() {
            Some(last) if timestamp <= last.timestamp => {}
            Some(last) => {
                assert!(relative_offset > last.relative_offset);
                self.entries.push(TimeEntry {
                    timestamp,
                    relative_offset,
                });
            }
            None => self.entries.push(TimeEntry {
                timestamp,
                relative_offset,
            }),
        }
    }

    /// Relative offset from which to scan for the first batch whose max
    /// timestamp is ≥ `target`: every batch before the last entry that is
    /// still below the target has a smaller max timestamp.
    pub fn scan_start(&self, target: i64) -> u32 {
        let n = self.entries.partition_point(|e| e.timestamp < target);
        if n == 0 {
            0
        } else {
            self.entries[n - 1].relative_offset
        }
    }

    pub fn truncate_from(&mut self, relative_offset: u32) {
        let n = self
            .entries
            .partition_point(|e| e.relative_offset < relative_offset);
        self.entries.truncate(n);
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(self.entries.len() * 12);
        for e in &self.entries {
            body.extend_from_slice(&e.timestamp.to_be_bytes());
            body.extend_from_slice(&e.relative_offset.to_be_bytes());
        }
        body
    }

    pub fn decode(body: &[u8]) -> Result<Self, IndexFileError> {
        if !body.len().is_multiple_of(12) {
            return Err(IndexFileError::Damaged {
                kind: IndexKind::Time,
                reason: "length not a multiple of 12",
            });
        }
        let entries: Vec<TimeEntry> = body
            .chunks_exact(12)
            .map(|c| TimeEntry {
                timestamp: i64::from_be_bytes(c[0..8].try_into().expect("8")),
                relative_offset: u32::from_be_bytes(c[8..12].try_into().expect("4")),
            })
            .collect();
        let ordered = entries.windows(2).all(|w| {
            w[0].timestamp < w[1].timestamp && w[0].relative_offset < w[1].relative_offset
        });
        if !ordered {
            return Err(IndexFileError::Damaged {
                kind: IndexKind::Time,
                reason: "entries out of order",
            });
        }
        Ok(TimeIndex { entries })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_start_is_the_last_entry_below_the_target() {
        let mut idx = TimeIndex::new();
        idx.push(100, 0);
        idx.push(90, 3); // not a new maximum
        idx.push(200, 5);
        idx.push(300, 9);
        assert_eq!(idx.entries().len(), 3);
        assert_eq!(idx.scan_start(50), 0);
        assert_eq!(idx.scan_start(100), 0);
        assert_eq!(idx.scan_start(150), 0);
        assert_eq!(idx.scan_start(250), 5);
        assert_eq!(idx.scan_start(1000), 9);
        assert_eq!(TimeIndex::decode(&idx.encode()).unwrap(), idx);
    }
}
