//! The fixed header of a RecordBatch v2 and the fields the broker patches.
//!
//! Layout (big-endian):
//!
//! ```text
//! 0  baseOffset i64        | 8  batchLength i32 (bytes after this field)
//! 12 partitionLeaderEpoch  | 16 magic i8 (= 2)  | 17 crc u32 (CRC-32C of 21..)
//! 21 attributes i16        | 23 lastOffsetDelta i32
//! 27 baseTimestamp i64     | 35 maxTimestamp i64
//! 43 producerId i64        | 51 producerEpoch i16 | 53 baseSequence i32
//! 57 recordCount i32       | 61 records…
//! ```

use crate::validate::BatchError;

/// Bytes before the `batchLength` field's coverage begins (baseOffset + batchLength).
pub const LOG_OVERHEAD: usize = 12;
/// Size of the fixed v2 batch header, up to and including `recordCount`.
pub const HEADER_BYTES: usize = 61;
/// The only batch format Rill accepts.
pub const MAGIC_V2: i8 = 2;

pub(crate) const OFF_BASE_OFFSET: usize = 0;
pub(crate) const OFF_BATCH_LENGTH: usize = 8;
pub(crate) const OFF_LEADER_EPOCH: usize = 12;
pub(crate) const OFF_MAGIC: usize = 16;
pub(crate) const OFF_CRC: usize = 17;
pub(crate) const OFF_ATTRIBUTES: usize = 21;
pub(crate) const OFF_LAST_OFFSET_DELTA: usize = 23;
pub(crate) const OFF_BASE_TIMESTAMP: usize = 27;
pub(crate) const OFF_MAX_TIMESTAMP: usize = 35;
pub(crate) const OFF_PRODUCER_ID: usize = 43;
pub(crate) const OFF_PRODUCER_EPOCH: usize = 51;
pub(crate) const OFF_BASE_SEQUENCE: usize = 53;
pub(crate) const OFF_RECORD_COUNT: usize = 57;
pub(crate) const ATTR_COMPRESSION: i16 = 0x07;
pub(crate) const ATTR_LOG_APPEND_TIME: i16 = 0x08;
pub(crate) const ATTR_TRANSACTIONAL: i16 = 0x10;
pub(crate) const ATTR_CONTROL: i16 = 0x20;

/// Compression codec named by the low three attribute bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    #[default]
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    /// The attribute bits naming this codec.
    pub fn attribute(self) -> i16 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }

    /// The codec named by a batch's attributes, `None` for an unknown one.
    pub fn from_attributes(attributes: i16) -> Option<Compression> {
        Some(match attributes & ATTR_COMPRESSION {
            0 => Compression::None,
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            4 => Compression::Zstd,
            _ => return None,
        })
    }

    pub const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    /// The name clients use (`none`, `gzip`, `snappy`, `lz4`, `zstd`).
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A codec name that is none of `none`, `gzip`, `snappy`, `lz4`, `zstd`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown compression {0:?} (none, gzip, snappy, lz4, zstd)")]
pub struct UnknownCompression(pub String);

impl std::str::FromStr for Compression {
    type Err = UnknownCompression;
    fn from_str(s: &str) -> Result<Self, UnknownCompression> {
        Compression::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| UnknownCompression(s.to_string()))
    }
}

/// The decoded fixed header of a v2 batch. Cheap to copy; holds no data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes(b[at..at + 2].try_into().expect("2 bytes"))
}

impl BatchHeader {
    /// Reads the fixed header from the start of `bytes` without validating
    /// anything beyond the length needed to hold it.
    pub fn parse(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
        if bytes.len() < HEADER_BYTES {
            return Err(BatchError::TooShort { len: bytes.len() });
        }
        Ok(BatchHeader {
            base_offset: be_i64(bytes, OFF_BASE_OFFSET),
            batch_length: be_i32(bytes, OFF_BATCH_LENGTH),
            leader_epoch: be_i32(bytes, OFF_LEADER_EPOCH),
            magic: bytes[OFF_MAGIC] as i8,
            crc: be_i32(bytes, OFF_CRC) as u32,
            attributes: be_i16(bytes, OFF_ATTRIBUTES),
            last_offset_delta: be_i32(bytes, OFF_LAST_OFFSET_DELTA),
            base_timestamp: be_i64(bytes, OFF_BASE_TIMESTAMP),
            max_timestamp: be_i64(bytes, OFF_MAX_TIMESTAMP),
            producer_id: be_i64(bytes, OFF_PRODUCER_ID),
            producer_epoch: be_i16(bytes, OFF_PRODUCER_EPOCH),
            base_sequence: be_i32(bytes, OFF_BASE_SEQUENCE),
            record_count: be_i32(bytes, OFF_RECORD_COUNT),
        })
    }

    /// Total bytes of the batch on the wire and on disk.
    pub fn total_len(&self) -> usize {
        LOG_OVERHEAD + self.batch_length.max(0) as usize
    }

    /// Offset of the batch's last record.
    pub fn last_offset(&self) -> i64 {
        // Wrapping, as Java longs do: bytes from the network may hold anything.
        self.base_offset.wrapping_add(self.last_offset_delta as i64)
    }

    /// Offset that follows this batch.
    pub fn next_offset(&self) -> i64 {
        self.last_offset().wrapping_add(1)
    }

    pub fn compression(&self) -> Result<Compression, BatchError> {
        Compression::from_attributes(self.attributes).ok_or(BatchError::UnknownCompression {
            codec: (self.attributes & ATTR_COMPRESSION) as u8,
        })
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTR_TRANSACTIONAL != 0
    }

    /// Whether every record carries the broker's append time (maxTimestamp).
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & ATTR_LOG_APPEND_TIME != 0
    }

    /// Whether the batch has a producer id (idempotent or transactional).
    pub fn has_producer_id(&self) -> bool {
        self.producer_id >= 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }
}

/// Reads the total length of the batch at the start of `bytes` from its first
/// 12 bytes, or `None` if fewer are present. Lets framing code find batch
/// boundaries before a whole header has arrived.
pub fn peek_total_len(bytes: &[u8]) -> Option<i64> {
    if bytes.len() < LOG_OVERHEAD {
        return None;
    }
    Some(LOG_OVERHEAD as i64 + be_i32(bytes, OFF_BATCH_LENGTH) as i64)
}

/// The headers of the whole batches at the start of `data` (batches back
/// to back, as a segment or a fetch response holds them; a trailing partial
/// batch, or anything after bytes that are no batch header, is not walked).
fn whole_batches(data: &[u8]) -> impl Iterator<Item = BatchHeader> + '_ {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        if data.len() - at < HEADER_BYTES {
            return None;
        }
        let h = BatchHeader::parse(&data[at..]).ok()?;
        if h.batch_length < 0 || data.len() - at < h.total_len() {
            return None;
        }
        at += h.total_len();
        Some(h)
    })
}

/// The offset after the last whole batch at the start of `data` (batches
/// back to back, as a segment or a fetch response holds them; a trailing
/// partial batch is ignored), read from the headers alone — nothing is
/// checked or decoded. `None` if `data` holds no whole batch.
pub fn next_offset_after(data: &[u8]) -> Option<i64> {
    whole_batches(data).last().map(|h| h.next_offset())
}

/// When `data` (whole batches back to back, a trailing partial batch
/// ignored) holds at least one batch and none of its batches holds a
/// record: the offset after them. `None` if any batch has records, or there
/// is no whole batch.
pub fn next_offset_after_empty(data: &[u8]) -> Option<i64> {
    let mut next = None;
    for h in whole_batches(data) {
        if h.record_count != 0 {
            return None;
        }
        next = Some(h.next_offset());
    }
    next
}

/// CRC-32C of everything from `attributes` to the end, as stored in the header.
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[OFF_ATTRIBUTES..])
}

/// Writes `baseOffset` in place. The CRC does not cover it.
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    batch[OFF_BASE_OFFSET..OFF_BASE_OFFSET + 8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Writes `partitionLeaderEpoch` in place. The CRC does not cover it.
pub fn set_leader_epoch(batch: &mut [u8], epoch: i32) {
    batch[OFF_LEADER_EPOCH..OFF_LEADER_EPOCH + 4].copy_from_slice(&epoch.to_be_bytes());
}

/// `sequence + by` for producer sequence numbers, which wrap from
/// `i32::MAX` to 0 (Kafka's `DefaultRecordBatch.incrementSequence`): the
/// last sequence of a batch is `increment_sequence(first, lastOffsetDelta)`,
/// the one after it `increment_sequence(first, recordCount)`.
pub fn increment_sequence(sequence: i32, by: i32) -> i32 {
    if sequence > i32::MAX - by {
        by - (i32::MAX - sequence) - 1
    } else {
        sequence + by
    }
}

/// Rewrites a finished batch's producer id, epoch and base sequence and its
/// CRC (which covers them): a producer giving an unsent batch new sequence
/// numbers after an epoch bump.
pub fn set_producer(batch: &mut [u8], id: i64, epoch: i16, base_sequence: i32) {
    batch[OFF_PRODUCER_ID..OFF_PRODUCER_ID + 8].copy_from_slice(&id.to_be_bytes());
    batch[OFF_PRODUCER_EPOCH..OFF_PRODUCER_EPOCH + 2].copy_from_slice(&epoch.to_be_bytes());
    batch[OFF_BASE_SEQUENCE..OFF_BASE_SEQUENCE + 4].copy_from_slice(&base_sequence.to_be_bytes());
    let crc = compute_crc(batch);
    batch[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_be_bytes());
}
