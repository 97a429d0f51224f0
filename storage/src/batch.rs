//! Kafka RecordBatch v2: the unit of data everywhere in Rill.
//!
//! A batch is kept as the producer's bytes. This module reads its header,
//! validates it (length, magic, CRC-32C, record count, offset deltas) and
//! patches the two fields the CRC does not cover — `baseOffset` and
//! `partitionLeaderEpoch` — so the broker assigns offsets without re-encoding.
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

use std::borrow::Cow;

use thiserror::Error;

pub mod codec;

pub use codec::CodecError;

/// Bytes before the `batchLength` field's coverage begins (baseOffset + batchLength).
pub const LOG_OVERHEAD: usize = 12;
/// Size of the fixed v2 batch header, up to and including `recordCount`.
pub const HEADER_BYTES: usize = 61;
/// The only batch format Rill accepts.
pub const MAGIC_V2: i8 = 2;

const OFF_BASE_OFFSET: usize = 0;
const OFF_BATCH_LENGTH: usize = 8;
const OFF_LEADER_EPOCH: usize = 12;
const OFF_MAGIC: usize = 16;
const OFF_CRC: usize = 17;
const OFF_ATTRIBUTES: usize = 21;
const OFF_LAST_OFFSET_DELTA: usize = 23;
const OFF_BASE_TIMESTAMP: usize = 27;
const OFF_MAX_TIMESTAMP: usize = 35;
const OFF_PRODUCER_ID: usize = 43;
const OFF_PRODUCER_EPOCH: usize = 51;
const OFF_BASE_SEQUENCE: usize = 53;
const OFF_RECORD_COUNT: usize = 57;
const ATTR_COMPRESSION: i16 = 0x07;
const ATTR_LOG_APPEND_TIME: i16 = 0x08;

/// Which validation check a batch failed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum BatchError {
    #[error("batch too short: {len} bytes, a v2 batch header needs {HEADER_BYTES}")]
    TooShort { len: usize },
    #[error("batch length field declares {declared} bytes but {actual} are present")]
    LengthMismatch { declared: i64, actual: usize },
    #[error("unsupported magic {magic}: only record batch v2 is accepted")]
    BadMagic { magic: i8 },
    #[error("CRC-32C mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    #[error("record count {count} is invalid")]
    BadRecordCount { count: i32 },
    #[error("last offset delta {last_offset_delta} does not match record count {count}")]
    LastOffsetDelta { last_offset_delta: i32, count: i32 },
    #[error("record {index} is malformed: {reason}")]
    MalformedRecord { index: i32, reason: &'static str },
    #[error("records section holds {actual} records, the header declares {declared}")]
    RecordCountMismatch { declared: i32, actual: i32 },
    #[error("batch of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("unknown compression codec {codec}")]
    UnknownCompression { codec: u8 },
    #[error(transparent)]
    Codec(#[from] CodecError),
}

/// Bound on a records section after decompression (Kafka's broker has none
/// beyond memory; 64 MiB is 64 full 1 MiB batches compressed 64:1).
pub const DECOMPRESSED_BYTES_MAX: usize = 64 << 20;

/// Compression codec named by the low three attribute bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
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
        self.base_offset + self.last_offset_delta as i64
    }

    /// Offset that follows this batch.
    pub fn next_offset(&self) -> i64 {
        self.last_offset() + 1
    }

    pub fn compression(&self) -> Result<Compression, BatchError> {
        match (self.attributes & ATTR_COMPRESSION) as u8 {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Gzip),
            2 => Ok(Compression::Snappy),
            3 => Ok(Compression::Lz4),
            4 => Ok(Compression::Zstd),
            codec => Err(BatchError::UnknownCompression { codec }),
        }
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & 0x10 != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & 0x20 != 0
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

/// CRC-32C of everything from `attributes` to the end, as stored in the header.
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[OFF_ATTRIBUTES..])
}

/// Checks the batch structure and CRC only: the checks recovery and reads
/// apply to bytes that were already accepted once.
pub fn check_integrity(batch: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(batch)?;
    let declared = LOG_OVERHEAD as i64 + header.batch_length as i64;
    if declared != batch.len() as i64 {
        return Err(BatchError::LengthMismatch {
            declared,
            actual: batch.len(),
        });
    }
    if header.magic != MAGIC_V2 {
        return Err(BatchError::BadMagic {
            magic: header.magic,
        });
    }
    let computed = compute_crc(batch);
    if computed != header.crc {
        return Err(BatchError::CrcMismatch {
            stored: header.crc,
            computed,
        });
    }
    Ok(header)
}

/// Full validation of a batch arriving from a producer: integrity, record
/// count, offset deltas and (for uncompressed batches) the records themselves,
/// walked without copying. `max_bytes` bounds the batch size.
pub fn validate(batch: &[u8], max_bytes: usize) -> Result<BatchHeader, BatchError> {
    if batch.len() > max_bytes {
        return Err(BatchError::TooLarge {
            len: batch.len(),
            max: max_bytes,
        });
    }
    let header = check_integrity(batch)?;
    let count = header.record_count;
    if count <= 0 {
        return Err(BatchError::BadRecordCount { count });
    }
    if header.last_offset_delta != count - 1 {
        return Err(BatchError::LastOffsetDelta {
            last_offset_delta: header.last_offset_delta,
            count,
        });
    }
    if header.compression()? == Compression::None {
        walk_records(&batch[HEADER_BYTES..], count)?;
    }
    Ok(header)
}

/// Walks an uncompressed records section: every record's length must fit,
/// offset deltas must run 0, 1, 2, … and the records must fill the section
/// exactly.
fn walk_records(mut records: &[u8], declared: i32) -> Result<(), BatchError> {
    let mut index: i32 = 0;
    while !records.is_empty() {
        if index >= declared {
            return Err(BatchError::RecordCountMismatch {
                declared,
                actual: index + 1,
            });
        }
        let malformed = |reason| BatchError::MalformedRecord { index, reason };
        let (len, used) = varint::read_i32(records).ok_or(malformed("bad length varint"))?;
        records = &records[used..];
        if len < 0 || len as usize > records.len() {
            return Err(malformed("length exceeds the batch"));
        }
        let body = &records[..len as usize];
        // attributes (1 byte), timestampDelta (varlong), offsetDelta (varint)
        let rest = body.get(1..).ok_or(malformed("record body too short"))?;
        let (_ts_delta, used_ts) =
            varint::read_i64(rest).ok_or(malformed("bad timestamp delta"))?;
        let (offset_delta, _) =
            varint::read_i32(&rest[used_ts..]).ok_or(malformed("bad offset delta"))?;
        if offset_delta != index {
            return Err(malformed("offset deltas are not consecutive"));
        }
        records = &records[len as usize..];
        index += 1;
    }
    if index != declared {
        return Err(BatchError::RecordCountMismatch {
            declared,
            actual: index,
        });
    }
    Ok(())
}

/// The records section of a batch, decompressed when the batch is
/// compressed (borrowed as is when it is not).
pub fn records_section(batch: &[u8]) -> Result<Cow<'_, [u8]>, BatchError> {
    let header = BatchHeader::parse(batch)?;
    let records = batch.get(HEADER_BYTES..).unwrap_or_default();
    Ok(match header.compression()? {
        Compression::None => Cow::Borrowed(records),
        c => Cow::Owned(codec::decompress(c, records, DECOMPRESSED_BYTES_MAX)?),
    })
}

/// The first record of a batch whose timestamp is at or after `timestamp`,
/// as (offset, timestamp), for every codec (compressed records are
/// decompressed). With LogAppendTime every record carries the batch's max
/// timestamp. `None` when no record qualifies or the records do not decode.
pub fn first_record_at_or_after(batch: &[u8], timestamp: i64) -> Option<(i64, i64)> {
    let header = BatchHeader::parse(batch).ok()?;
    if header.attributes & ATTR_LOG_APPEND_TIME != 0 {
        return (header.max_timestamp >= timestamp)
            .then_some((header.base_offset, header.max_timestamp));
    }
    let section = records_section(batch).ok()?;
    let mut records: &[u8] = &section;
    for _ in 0..header.record_count {
        let (len, used) = varint::read_i32(records)?;
        records = records.get(used..)?;
        let body = records.get(..usize::try_from(len).ok()?)?;
        let (ts_delta, used_ts) = varint::read_i64(body.get(1..)?)?;
        let (offset_delta, _) = varint::read_i32(body.get(1 + used_ts..)?)?;
        let ts = header.base_timestamp + ts_delta;
        if ts >= timestamp {
            return Some((header.base_offset + offset_delta as i64, ts));
        }
        records = &records[len as usize..];
    }
    None
}

/// The same batch with its records compressed by `to` instead: records,
/// offsets, timestamps and producer fields unchanged, the attributes' codec
/// bits, the length and the CRC rewritten. The records are checked as
/// [`validate`] checks uncompressed ones. This is the one place the broker
/// re-encodes a batch: a topic whose `compression.type` names a codec.
pub fn recompress(batch: &[u8], to: Compression) -> Result<Vec<u8>, BatchError> {
    let header = check_integrity(batch)?;
    let section = records_section(batch)?;
    walk_records(&section, header.record_count)?;
    let body = codec::compress(to, &section)?;
    let mut out = Vec::with_capacity(HEADER_BYTES + body.len());
    out.extend_from_slice(&batch[..HEADER_BYTES]);
    out.extend_from_slice(&body);
    let batch_length = (out.len() - LOG_OVERHEAD) as i32;
    out[OFF_BATCH_LENGTH..OFF_BATCH_LENGTH + 4].copy_from_slice(&batch_length.to_be_bytes());
    let attributes = (header.attributes & !ATTR_COMPRESSION) | to.attribute();
    out[OFF_ATTRIBUTES..OFF_ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
    let crc = compute_crc(&out);
    out[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(out)
}

/// Writes `baseOffset` in place. The CRC does not cover it.
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    batch[OFF_BASE_OFFSET..OFF_BASE_OFFSET + 8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Writes `partitionLeaderEpoch` in place. The CRC does not cover it.
pub fn set_leader_epoch(batch: &mut [u8], epoch: i32) {
    batch[OFF_LEADER_EPOCH..OFF_LEADER_EPOCH + 4].copy_from_slice(&epoch.to_be_bytes());
}

/// Zigzag varints as Kafka records use them.
pub mod varint {
    /// Decodes a zigzag varint of at most 5 bytes; returns (value, bytes used).
    pub fn read_i32(b: &[u8]) -> Option<(i32, usize)> {
        let (raw, used) = read_raw(b, 5)?;
        let raw = raw as u32;
        Some((((raw >> 1) as i32) ^ -((raw & 1) as i32), used))
    }

    /// Decodes a zigzag varlong of at most 10 bytes; returns (value, bytes used).
    pub fn read_i64(b: &[u8]) -> Option<(i64, usize)> {
        let (raw, used) = read_raw(b, 10)?;
        Some((((raw >> 1) as i64) ^ -((raw & 1) as i64), used))
    }

    fn read_raw(b: &[u8], max_len: usize) -> Option<(u64, usize)> {
        let mut value: u64 = 0;
        for (i, byte) in b.iter().take(max_len).enumerate() {
            value |= ((byte & 0x7f) as u64) << (7 * i);
            if byte & 0x80 == 0 {
                return Some((value, i + 1));
            }
        }
        None
    }

    /// Appends a zigzag varint.
    pub fn write_i32(out: &mut Vec<u8>, v: i32) {
        write_raw(out, ((v << 1) ^ (v >> 31)) as u32 as u64);
    }

    /// Appends a zigzag varlong.
    pub fn write_i64(out: &mut Vec<u8>, v: i64) {
        write_raw(out, ((v << 1) ^ (v >> 63)) as u64);
    }

    fn write_raw(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
}

/// A record to encode with [`encode_uncompressed`].
#[derive(Debug, Clone, Default)]
pub struct RecordSpec<'a> {
    pub timestamp_delta: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: &'a [(&'a str, &'a [u8])],
}

/// Encodes an uncompressed v2 batch with base offset 0, no producer id and a
/// correct CRC. Used by tests, benchmarks and tools that need real batches
/// without a Kafka client.
pub fn encode_uncompressed(base_timestamp: i64, records: &[RecordSpec<'_>]) -> Vec<u8> {
    assert!(!records.is_empty(), "a batch holds at least one record");
    let mut out = vec![0u8; HEADER_BYTES];
    let mut rec = Vec::with_capacity(64);
    let mut max_ts = base_timestamp;
    for (i, r) in records.iter().enumerate() {
        rec.clear();
        rec.push(0); // record attributes
        varint::write_i64(&mut rec, r.timestamp_delta);
        varint::write_i32(&mut rec, i as i32);
        write_opt_bytes(&mut rec, r.key);
        write_opt_bytes(&mut rec, r.value);
        varint::write_i32(&mut rec, r.headers.len() as i32);
        for (k, v) in r.headers {
            varint::write_i32(&mut rec, k.len() as i32);
            rec.extend_from_slice(k.as_bytes());
            varint::write_i32(&mut rec, v.len() as i32);
            rec.extend_from_slice(v);
        }
        varint::write_i32(&mut out, rec.len() as i32);
        out.extend_from_slice(&rec);
        max_ts = max_ts.max(base_timestamp + r.timestamp_delta);
    }
    let batch_length = (out.len() - LOG_OVERHEAD) as i32;
    out[OFF_BATCH_LENGTH..OFF_BATCH_LENGTH + 4].copy_from_slice(&batch_length.to_be_bytes());
    out[OFF_LEADER_EPOCH..OFF_LEADER_EPOCH + 4].copy_from_slice(&(-1i32).to_be_bytes());
    out[OFF_MAGIC] = MAGIC_V2 as u8;
    out[OFF_LAST_OFFSET_DELTA..OFF_LAST_OFFSET_DELTA + 4]
        .copy_from_slice(&(records.len() as i32 - 1).to_be_bytes());
    out[OFF_BASE_TIMESTAMP..OFF_BASE_TIMESTAMP + 8].copy_from_slice(&base_timestamp.to_be_bytes());
    out[OFF_MAX_TIMESTAMP..OFF_MAX_TIMESTAMP + 8].copy_from_slice(&max_ts.to_be_bytes());
    out[OFF_PRODUCER_ID..OFF_PRODUCER_ID + 8].copy_from_slice(&(-1i64).to_be_bytes());
    out[OFF_PRODUCER_EPOCH..OFF_PRODUCER_EPOCH + 2].copy_from_slice(&(-1i16).to_be_bytes());
    out[OFF_BASE_SEQUENCE..OFF_BASE_SEQUENCE + 4].copy_from_slice(&(-1i32).to_be_bytes());
    out[OFF_RECORD_COUNT..OFF_RECORD_COUNT + 4]
        .copy_from_slice(&(records.len() as i32).to_be_bytes());
    let crc = compute_crc(&out);
    out[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_be_bytes());
    out
}

fn write_opt_bytes(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        None => varint::write_i32(out, -1),
        Some(b) => {
            varint::write_i32(out, b.len() as i32);
            out.extend_from_slice(b);
        }
    }
}

#[cfg(test)]
mod tests;
