//! Validation of a batch arriving from a producer, and the integrity check
//! applied to bytes that were accepted once (recovery, reads).

use thiserror::Error;

use crate::codec::CodecError;
use crate::header::*;
use crate::varint;

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
pub(crate) fn walk_records(mut records: &[u8], declared: i32) -> Result<(), BatchError> {
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
