//! Sparse offset index of one segment: relative offset → file position, an
//! entry every `index_interval_bytes` of log. Lookups find the last entry at or
//! before an offset; the reader scans forward from there.

use crate::index_file::{IndexFileError, IndexKind};

/// One `.index` entry: the batch starting at `base + relative_offset` begins at `position`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetEntry {
    pub relative_offset: u32,
    pub position: u32,
}

/// The in-memory sparse offset index of one segment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OffsetIndex {
    entries: Vec<OffsetEntry>,
}

impl OffsetIndex {
    pub fn new() -> Self {
        OffsetIndex::default()
    }

    pub fn from_entries(entries: Vec<OffsetEntry>) -> Self {
        debug_assert!(entries
            .windows(2)
            .all(|w| w[0].relative_offset < w[1].relative_offset && w[0].position < w[1].position));
        OffsetIndex { entries }
    }

    pub fn entries(&self) -> &[OffsetEntry] {
        &self.entries
    }

    pub fn last(&self) -> Option<OffsetEntry> {
        self.entries.last().copied()
    }

    /// Adds an entry; entries arrive in increasing offset and position order.
    pub fn push(&mut self, relative_offset: u32, position: u32) {
        if let Some(last) = self.entries.last() {
            assert!(relative_offset > last.relative_offset && position > last.position);
        }
        self.entries.push(OffsetEntry {
            relative_offset,
            position,
        });
    }

    /// Position of the last indexed batch starting at or before `relative_offset`
    /// (0 when the offset precedes every entry).
    pub fn lookup(&self, relative_offset: u32) -> u32 {
        let n = self
            .entries
            .partition_point(|e| e.relative_offset <= relative_offset);
        if n == 0 {
            0
        } else {
            self.entries[n - 1].position
        }
    }

    /// The last entry at or before `relative_offset`.
    pub fn floor(&self, relative_offset: u32) -> Option<OffsetEntry> {
        let n = self
            .entries
            .partition_point(|e| e.relative_offset <= relative_offset);
        n.checked_sub(1).map(|i| self.entries[i])
    }

    /// Drops entries for batches at or after `relative_offset`.
    pub fn truncate_from(&mut self, relative_offset: u32) {
        let n = self
            .entries
            .partition_point(|e| e.relative_offset < relative_offset);
        self.entries.truncate(n);
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(self.entries.len() * 8);
        for e in &self.entries {
            body.extend_from_slice(&e.relative_offset.to_be_bytes());
            body.extend_from_slice(&e.position.to_be_bytes());
        }
        body
    }

    pub fn decode(body: &[u8]) -> Result<Self, IndexFileError> {
        if !body.len().is_multiple_of(8) {
            return Err(IndexFileError::Damaged {
                kind: IndexKind::Offset,
                reason: "length not a multiple of 8",
            });
        }
        let entries: Vec<OffsetEntry> = body
            .chunks_exact(8)
            .map(|c| OffsetEntry {
                relative_offset: u32::from_be_bytes(c[0..4].try_into().expect("4")),
                position: u32::from_be_bytes(c[4..8].try_into().expect("4")),
            })
            .collect();
        let ordered = entries
            .windows(2)
            .all(|w| w[0].relative_offset < w[1].relative_offset && w[0].position < w[1].position);
        if !ordered {
            return Err(IndexFileError::Damaged {
                kind: IndexKind::Offset,
                reason: "entries out of order",
            });
        }
        Ok(OffsetIndex { entries })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_finds_the_floor_entry() {
        let mut idx = OffsetIndex::new();
        idx.push(0, 0);
        idx.push(10, 4100);
        idx.push(25, 8300);
        assert_eq!(idx.lookup(0), 0);
        assert_eq!(idx.lookup(9), 0);
        assert_eq!(idx.lookup(10), 4100);
        assert_eq!(idx.lookup(24), 4100);
        assert_eq!(idx.lookup(1000), 8300);
        idx.truncate_from(10);
        assert_eq!(idx.entries().len(), 1);
        let round = OffsetIndex::decode(&idx.encode()).unwrap();
        assert_eq!(round, idx);
    }
}
