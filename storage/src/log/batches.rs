//! Walking a log's batches over an offset range, a read at a time: the one
//! loop behind the producer-state replay and the cleaner's two passes.

use bytes::Bytes;

use super::PartitionLog;
use crate::batch::BatchHeader;
use crate::error::Result;
use crate::io::Disk;

/// The batches of `from..end`: each one ends after `from` (the first may
/// start before it) and starts before `end`; compaction gaps are stepped
/// over.
pub(super) struct BatchWalk {
    at: i64,
    end: i64,
}

impl BatchWalk {
    pub(super) fn new(from: i64, end: i64) -> BatchWalk {
        BatchWalk { at: from, end }
    }

    /// The next read's batches, with the bytes read (for pacing); `None`
    /// once the range is done.
    pub(super) async fn next<D: Disk>(
        &mut self,
        log: &PartitionLog<D>,
    ) -> Result<Option<(Vec<(BatchHeader, Bytes)>, usize)>> {
        if self.at >= self.end {
            return Ok(None);
        }
        let data = log.read(self.at, 1 << 20).await?;
        if data.is_empty() {
            self.at = self.end;
            return Ok(None);
        }
        let mut batches = Vec::new();
        let mut pos = 0;
        while pos < data.len() {
            let header = BatchHeader::parse(&data[pos..])?;
            let batch = data.slice(pos..pos + header.total_len());
            pos += header.total_len();
            if header.next_offset() <= self.at {
                continue;
            }
            if header.base_offset >= self.end {
                self.at = self.end;
                break;
            }
            self.at = header.next_offset();
            batches.push((header, batch));
        }
        Ok(Some((batches, data.len())))
    }
}
